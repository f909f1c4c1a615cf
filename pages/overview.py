"""Overview: where each method fails (RMSE, bias, R², slope per S/N quartile or log g bin, against the
likelihood ceiling), the performance matrix (methods x noise levels) with the team report beside ours,
whether the error bars hold (coverage of the 68 % and 95 % intervals), and predicted-versus-true /
residual plots for the method the reader picks."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core import config
from core.analysis import breakdown, report
from core.analysis.reference import REPORT_LABEL
from core.engine import suites, train
from models import MODELS
from pages._ui import appstate, job_panels

st.title("Performance matrix")
ds = appstate.require_dataset()
profile = st.session_state.get("profile", "quick")
st.caption(f"Every method of the study on the test split of **{ds.name}** (profile `{profile}`), at noise "
           "levels 0.1 (high S/N) and 1.0 (nominal S/N): where it fails (by the stars' S/N and log g, against the "
           f"likelihood ceiling), its R² beside the {REPORT_LABEL} numbers (measured on the team's own data: "
           "never used to tune anything), and whether its error bars hold.")


@st.cache_data(show_spinner=False, ttl=10)
def load_matrix(profile: str, dataset: str, fp: str):
    return report.matrix("report", profile, dataset), report.suite_results("report", profile, dataset)


@st.cache_data(show_spinner="Scoring the test stars by S/N and log g...", max_entries=4)
def load_breakdown(profile: str, dataset: str, fp: str, state: tuple):
    """Per-bin metrics and coverage, both binnings; `state` (finished runs, last update) refreshes it."""
    arms = breakdown.load("report", profile, dataset)
    return ({by: breakdown.table(by=by, arms=arms) for by in breakdown.BY},
            {by: breakdown.coverage_table(by=by, arms=arms) for by in breakdown.BY})


METRIC_TITLES = {"rmse": "RMSE [dex]", "bias": "bias, predicted − true [dex]", "r2": "R²",
                 "slope": "slope of predicted on true log g"}


def _badness(metric: str, t: pd.DataFrame) -> pd.DataFrame:
    """0 (fine) to 1 (bad) per cell of breakdown.wide(t, metric): RMSE by its ratio to the ceiling."""
    if metric == "rmse" and "ratio" in t.columns:
        v = np.log(breakdown.grid(t, "ratio").iloc[:, 2:].astype(float)) / np.log(10)
    else:
        g = breakdown.grid(t, metric).iloc[:, 2:].astype(float)
        v = {"rmse": g / 1.2, "bias": g.abs() / 0.2, "r2": 1 - g, "slope": (1 - g).abs() / 0.5}[metric]
    return v.fillna(0).clip(0, 1)


def _styled(w: pd.DataFrame, bad: pd.DataFrame):
    css = pd.DataFrame("", index=w.index, columns=w.columns)
    for c in bad.columns:
        if c in css.columns:
            css[c] = [f"background-color: rgba(214, 96, 77, {0.7 * b:.2f})" for b in bad[c].to_numpy()]
    return w.style.apply(lambda _: css, axis=None)


def where_it_fails(tables: dict) -> None:
    st.subheader("Where each method fails")
    c1, c2, c3 = st.columns([2, 3, 2])
    by = c1.radio("Test stars by", list(breakdown.BY), format_func=breakdown.BY.get, horizontal=True, key="bd_by")
    metric = c2.radio("Metric", list(METRIC_TITLES), format_func=lambda m: METRIC_TITLES[m].split(",")[0].split(" [")[0],
                      horizontal=True, key="bd_metric")
    t = tables[by]
    noises = sorted(t["noise"].unique())
    pick = st.session_state.get("noise_level")
    noise = c3.radio("Noise level", noises, horizontal=True, key="bd_noise",
                     index=noises.index(pick) if pick in noises else len(noises) - 1)
    t = t[t["noise"] == noise]
    w = breakdown.wide(t, metric, nd=2).drop(columns="noise")
    # fits without a seed (Ridge, the Cannon, the ceiling) have one replicate by design
    seeded = t["model"].map(lambda m: getattr(MODELS.get(m), "seed_dependent", True))
    learned = t[seeded]["seeds"].unique()
    seeds = ""
    if len(learned) == 1:        # one number of seeds for every method: in the caption, not a column (width)
        w = w.drop(columns="seeds")
        seeds = (f"Cells: mean ± sd over {int(learned[0])} training seeds (Ridge, the Cannon and the ceiling, "
                 f"whose fits use no seed: one run). "
                 if learned[0] > 1 else "One training run per method: no sd. ")
    st.markdown(f"**{METRIC_TITLES[metric]} by {breakdown.BY[by]}, noise {noise:g}**")
    cfg = {"method": st.column_config.TextColumn("method", width=215),   # "Top-K window transformer (K=64)" in full
           "seeds": st.column_config.NumberColumn("seeds", width="small", help="training replicates: cells are their "
                                                  "mean ± sd")}
    st.dataframe(_styled(w, _badness(metric, t)), hide_index=True, width="stretch", column_config=cfg,
                 height=35 * (len(w) + 1) + 3)
    st.caption(breakdown.edges_text(t, by) + " " + (seeds or "With several training seeds: mean ± sd over them "
                                                    "(seeds column). ")
               + ("(×): RMSE over the likelihood ceiling's RMSE on the same stars; the redder, the further from it. "
                  if metric == "rmse" else "")
               + ("R² in a bin: 1 − its mean squared error / the variance of true log g over every test star. "
                  if metric == "r2" else "")
               + ("Slope 1: unbiased; below 1 the predictions shrink toward the mean log g. " if metric == "slope" else "")
               + "`python -m core report --by snr|logg` prints every metric.")


def error_bars(covs: dict) -> None:
    st.subheader("Are the error bars calibrated?")
    cov = covs["snr"]
    if cov.empty:
        st.info("No method here reports an error bar (no y_std in its predictions) and no torch model has two "
                "training replicates yet: `python -m core train --suite report --seeds 2` gives replicate ensembles.")
        return
    c1, c2 = st.columns([2, 2])
    by = c1.radio("Test stars by", list(breakdown.BY), format_func=breakdown.BY.get, horizontal=True, key="cov_by")
    cov = covs[by]
    noises = sorted(cov["noise"].unique())
    noise = c2.radio("Noise level", noises, horizontal=True, key="cov_noise", index=len(noises) - 1)
    c = cov[cov["noise"] == noise]
    table_c, c = c, c[c["bin"] != "all"]          # the chart: bins only ("all" is in the table)
    label = c["method"].where(c["source"].str.startswith("ensemble"), c["method"] + " (own σ)")
    long = pd.concat([pd.DataFrame({"method": label, "error bar": c["source"], "bin": c["bin"], "n": c["n"],
                                    "interval": f"{name} % interval", "coverage": c[f"cov{name}"], "nominal": nominal,
                                    "median sigma": c["sigma"]})
                      for name, (_, nominal) in breakdown.INTERVALS.items()], ignore_index=True)
    order = list(dict.fromkeys(c["bin"]))
    base = alt.Chart(long)
    lines = base.mark_line(point=True).encode(
        x=alt.X("bin:N", sort=order, title=breakdown.BY[by], axis=alt.Axis(labelAngle=0)),
        y=alt.Y("coverage:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="stars inside"),
        color=alt.Color("method:N", title=None, legend=alt.Legend(orient="bottom", columns=3, labelLimit=260)),
        tooltip=["method", "error bar", "bin", "n", alt.Tooltip("coverage:Q", format=".0%"),
                 alt.Tooltip("median sigma:Q", format=".3f", title="median σ [dex]")])
    nominal = base.mark_rule(color="black", strokeDash=[5, 4]).encode(y="mean(nominal):Q")
    st.altair_chart(alt.layer(lines, nominal).properties(width=330, height=240).facet(
        column=alt.Column("interval:N", title=None, header=alt.Header(labelFontSize=14))).properties(
        title=f"Coverage of the error bars at noise {noise:g} (dashed: nominal 68 % and 95 %)"))
    msg = breakdown.summary(cov)
    (st.warning if cov[["far68", "far95"]].to_numpy().any() else st.success)(msg)
    st.caption("Coverage: the fraction of test stars with |predicted − true| ≤ 1 σ (68 % interval) or ≤ 1.96 σ "
               "(95 %). Each line is a torch model's ensemble over its training replicates, or, marked (own σ), a "
               "model's own error bar. The ensemble: the mean "
               "prediction, σ² = the variance across replicates (+ each replicate's own σ², where it gives one). "
               f"Far from nominal: more than {breakdown.FAR_SE:g} binomial standard errors of its bin.")
    with st.expander("Coverage table", icon=":material/table:"):
        st.dataframe(breakdown.coverage_wide(table_c), hide_index=True, width="stretch")
        st.caption("Cells: % inside the 68 % / 95 % interval; '!': far from nominal.")


if profile == "quick" and job_panels.first_start_runs(ds.name):
    st.toast("First start: the quick report suite is queued in the background.")
job_panels.progress_panel()
mat, res = load_matrix(profile, ds.name, ds.fingerprint)
n_done = int(res["r2"].notna().sum())
if n_done == 0:
    st.info(f"No finished runs for this data set and profile yet. Launch them from the Training page or run "
            f"`python -m core train --suite report --profile {profile}"
            + (f" --dataset {ds.name}`" if ds.name != config.profile(profile)["dataset"] else "`")
            + " (the quick profile takes a few minutes on a 2-core CPU).")
    job_panels.retrain_button(suites.suite("report", profile, ds.name), f"report, {profile}", "overview_empty")
    st.stop()
st.caption(f"{n_done} of {len(res)} runs finished.")
tables, covs = load_breakdown(profile, ds.name, ds.fingerprint, breakdown.registry_state(ds.name))
if tables["snr"].empty:
    st.info("No stored test predictions to break down yet.")
else:
    where_it_fails(tables)

# ---- the matrix as a heat map: ours and the team's side by side
UNSEEDED = {m for m, fam in zip(res["method"], res["model"]) if not getattr(MODELS.get(fam), "seed_dependent", True)}
long = []
for _, r in res.iterrows():
    ours = r["r2_mean"] if pd.notna(r.get("r2_mean")) else r["r2"]      # the mean over training seeds
    sd = None if r["method"] in UNSEEDED else r.get("r2_sd")      # Ridge, the Cannon: every seed the same fit
    long.append({"method": r["method"], "noise": f"noise {r['noise']:g}", "source": "ours", "R2": ours,
                 "seeds": r.get("n_seeds"), "sd": sd,
                 "text": "" if pd.isna(ours) else f"{ours:.2f}" + (f" ± {sd:.2f}" if sd is not None and pd.notna(sd) else "")})
    if r["team_r2"] is not None and pd.notna(r["team_r2"]):
        long.append({"method": r["method"], "noise": f"noise {r['noise']:g}", "source": "team report", "R2": r["team_r2"],
                     "text": f"{r['team_r2']:.2f}"})
long = pd.DataFrame(long)
order = [m for m in mat["method"]]
base = alt.Chart(long).encode(
    x=alt.X("source:N", title=None, sort=["ours", "team report"]),
    y=alt.Y("method:N", sort=order, title=None, axis=alt.Axis(labelLimit=320)),
)
heat = base.mark_rect().encode(
    color=alt.Color("R2:Q", scale=alt.Scale(domain=[0, 1], scheme="viridis"), title="test R²"),
    tooltip=["method", "noise", "source", alt.Tooltip("R2:Q", format=".3f"), alt.Tooltip("sd:Q", format=".3f",
                                                                                        title="sd over seeds"),
             alt.Tooltip("seeds:Q", title="seeds")])
text = base.mark_text(fontSize=12).encode(
    text=alt.Text("text:N"),
    color=alt.condition("datum.R2 > 0.55", alt.value("black"), alt.value("white")))
chart = (heat + text).properties(width=140, height=alt.Step(26)).facet(
    column=alt.Column("noise:N", title=None, header=alt.Header(labelFontSize=14))).properties(
    title="Test R² of log g per method and noise level (ours vs team report)")
st.altair_chart(chart)
st.caption("Each cell is the coefficient of determination of log g on the held-out test split (with several "
           "training seeds, their mean ± sd over them; N in the table and the tooltip); blank cells: not run, or the team "
           "report gives no number. Colour scale clipped at 0.")

# ---- the table: numbers stay numbers (sortable), ± in its own column, the best of each column highlighted
show = mat.copy()
for c in show.columns:
    if c not in ("method", "device", "disagrees with team"):
        show[c] = pd.to_numeric(show[c], errors="coerce")
flag_col = "disagrees with team"
st.subheader("Numbers")
noise_tags = [f"{n:g}" for n in config.NOISE_LEVELS]
main_cols = ["method"] + [c for n in noise_tags for c in (f"R2 @{n}", f"R2 sd @{n}", f"of ceiling @{n}", f"team R2 @{n}")
                          if c in show.columns]
main = show[main_cols].rename(columns={f"R2 sd @{n}": f"± @{n}" for n in noise_tags})
for c in main.columns:
    if c.startswith("± @"):                # a fit that uses no seed has one value however many seeds ran
        main.loc[main["method"].isin(UNSEEDED), c] = np.nan
BEST = "background-color: rgba(44, 160, 44, 0.30); font-weight: bold"


def _best_css(t: pd.DataFrame) -> pd.DataFrame:
    """The best learned method of each R² / fraction-of-ceiling column (the ceiling is the yardstick)."""
    css = pd.DataFrame("", index=t.index, columns=t.columns)
    learned = ~t["method"].astype(str).str.startswith(suites.CEILING_LABEL)
    for c in t.columns:
        if c.startswith(("R2 @", "of ceiling @")) and t.loc[learned, c].notna().any():
            css.loc[t.loc[learned, c].astype(float).idxmax(), c] = BEST
    return css


styled = main.style.apply(_best_css, axis=None).format(
    {c: "{:.3f}" for c in main.columns if c.startswith(("R2 @", "± @", "team R2 @"))} |
    {c: "{:.0%}" for c in main.columns if c.startswith("of ceiling @")}, na_rep="–")
cfg = {"method": st.column_config.TextColumn("method", width=220)}
cfg.update({c: st.column_config.NumberColumn(c, help="sd of R² over the training seeds (blank: one run)")
            for c in main.columns if c.startswith("± @")})
cfg.update({c: st.column_config.NumberColumn(c, help="our R² / the likelihood ceiling's R²")
            for c in main.columns if c.startswith("of ceiling")})
st.dataframe(styled, hide_index=True, column_config=cfg, width="stretch", key="numbers_table",
             height=35 * (len(main) + 1) + 3)
st.caption("Click a column header to sort. Green: the best learned method of the column (the likelihood ceiling is "
           "the physics limit, not a competitor). R2: mean over training seeds; ±: their sd (None: one run, or a fit "
           "that uses no seed).")
with st.expander("MAE, parameters, fit time, device, seeds", icon=":material/table:"):
    rest = ["method"] + [c for c in show.columns if c.startswith(("MAE", "fit s", "seeds"))] + \
        [c for c in ("params", "device") if c in show.columns]
    more = {c: st.column_config.NumberColumn(c, format="%.3f") for c in rest if c.startswith("MAE")}
    more.update({c: st.column_config.NumberColumn(c + " [s]", format="%.1f") for c in rest if c.startswith("fit s")})
    more["params"] = st.column_config.NumberColumn("parameters", format="%d")
    more.update({c: st.column_config.NumberColumn(c, format="%d", help="training replicates found (train --seeds N)")
                 for c in rest if c.startswith("seeds")})
    st.dataframe(show[rest], hide_index=True, column_config=more, width="stretch")
dis = show[show[flag_col].astype(bool)]
if len(dis):
    st.warning("Where our data disagree with the team report by more than "
               f"{report.DISAGREE_R2:.2f} in R²: " + "; ".join(f"**{r['method']}** {r[flag_col]}" for _, r in dis.iterrows())
               + ". Different data sets: a disagreement is a finding, not an error.")
st.download_button("Download the matrix (CSV)", show.to_csv(index=False).encode(), "performance_matrix.csv", "text/csv")
job_panels.retrain_button(suites.suite("report", profile, ds.name) + suites.suite("ceiling", profile, ds.name),
                       f"report + ceiling, {profile}", "overview")
if not tables["snr"].empty:
    error_bars(covs)

# ---- history
with st.expander("How the numbers moved", icon=":material/history:"):
    import datetime as _dt
    mode = st.radio("Compare with", ["the previous fit of the same spec", "the last fit before a date"], horizontal=True)
    since = None
    if mode.startswith("the last"):
        since = st.date_input("Date", value=_dt.date.today() - _dt.timedelta(days=7)).isoformat()
    hist = report.history("report", profile, ds.name, since)
    if hist.empty:
        st.caption("No earlier fits to compare with yet: every run here has been fitted once.")
    else:
        st.dataframe(hist, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in ("R2 then", "R2 now", "change")})
        st.download_button("Download (CSV)", hist.to_csv(index=False).encode(), "history.csv", "text/csv")

# ---- predicted vs true for one method: the best at the chosen noise level unless the reader picks another
def r2_boot_se(y: np.ndarray, p: np.ndarray, n_boot: int = 200) -> float:
    """Bootstrap standard error of R² over the test stars (seeded: the same number on every rerun)."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(y), (n_boot, len(y)))
    yy, pp = y[idx], p[idx]
    r2 = 1 - ((pp - yy) ** 2).sum(1) / ((yy - yy.mean(1, keepdims=True)) ** 2).sum(1)
    return float(np.std(r2, ddof=1))


def best_method(done: pd.DataFrame, noise: float) -> str:
    """The learned method with the highest R² (mean over seeds) at `noise`; the ceiling is the yardstick."""
    d = done[(done["noise"] == noise) & (done["model"] != "likelihood_ceiling")]
    if d.empty:
        return str(done["method"].iloc[0])
    score = d["r2_mean"].where(d["r2_mean"].notna(), d["r2"]).astype(float)
    return str(d.loc[score.idxmax(), "method"])


st.subheader("Predicted versus true log g")
done = res[res["r2"].notna()]
c1, c2 = st.columns([3, 1])
noise_all = sorted(done["noise"].unique())
pick = st.session_state.get("noise_level")
noise = c2.radio("Noise level", noise_all, horizontal=True, key="pvt_noise",
                 index=noise_all.index(pick) if pick in noise_all else 0)
methods = list(dict.fromkeys(done[done["noise"] == noise]["method"]))
best = best_method(done, noise)
if st.session_state.get("_pvt_best") != (noise, best) or st.session_state.get("pvt_method") not in methods:
    st.session_state["pvt_method"] = best       # a new noise level or a new best: back to the best
    st.session_state["_pvt_best"] = (noise, best)
method = c1.selectbox("Method (default: the best R² at this noise level)", methods, key="pvt_method")
row = done[(done["method"] == method) & (done["noise"] == noise)].iloc[0]
spec = [s for s in suites.suite("report", profile, ds.name) + suites.suite("ceiling", profile, ds.name)
        if suites.row_label(s) == method and s["noise_level"] == noise][0]
r = train.cached_result(spec)
if r is not None:
    p = r.predictions()
    rows, snr = breakdown.test_snr(ds, noise)
    pos = np.clip(np.searchsorted(rows, p["index"]), 0, max(0, len(rows) - 1))
    star_snr = np.where(rows[pos] == p["index"], snr[pos], np.nan) if len(rows) else np.full(len(p["index"]), np.nan)
    df = pd.DataFrame({"true log g": p["y_true"], "predicted log g": p["y_pred"],
                       "residual": p["y_pred"] - p["y_true"], "|error|": np.abs(p["y_pred"] - p["y_true"]),
                       "Teff": p["labels"][:, 0], "M_H": p["labels"][:, 2], "S/N": star_snr})
    se = r2_boot_se(np.asarray(p["y_true"], float), np.asarray(p["y_pred"], float))
    sd = None if method in UNSEEDED else row.get("r2_sd")
    seeded = sd is not None and pd.notna(sd)
    r2_txt = f"R² {row['r2_mean']:.3f} ± {sd:.3f}" if seeded else f"R² {row['r2']:.3f} ± {se:.3f}"
    pm_txt = (f"±: sd over {int(row['n_seeds'])} training seeds (bootstrap SE over the test stars of one run "
              f"{se:.3f}); " if seeded else "±: bootstrap standard error over the test stars (200 resamples); ")
    lim = [float(min(df["true log g"].min(), df["predicted log g"].min())) - 0.1,
           float(max(df["true log g"].max(), df["predicted log g"].max())) + 0.1]
    pts = alt.Chart(df).mark_circle(size=18, opacity=0.6)
    sc = pts.encode(
        x=alt.X("true log g:Q", scale=alt.Scale(domain=lim), title="true log g [dex]"),
        y=alt.Y("predicted log g:Q", scale=alt.Scale(domain=lim), title="predicted log g [dex]"),
        color=alt.Color("Teff:Q", scale=alt.Scale(scheme="redblue", reverse=True), title="Teff [K]"),
        tooltip=["true log g", "predicted log g", "Teff", alt.Tooltip("M_H:Q", title="[M/H]")])
    one = alt.Chart(pd.DataFrame({"x": lim, "y": lim})).mark_line(color="gray", strokeDash=[4, 4]).encode(x="x", y="y")
    res_chart = pts.encode(
        x=alt.X("true log g:Q", scale=alt.Scale(zero=False), title="true log g [dex]"),
        y=alt.Y("residual:Q", title="predicted - true [dex]"),
        color=alt.Color("M_H:Q", scale=alt.Scale(scheme="viridis"), title="[M/H] [dex]"))
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="gray").encode(y="y")
    snr_chart = pts.encode(
        x=alt.X("S/N:Q", scale=alt.Scale(type="log"), title="S/N of the test spectrum (median per pixel)"),
        y=alt.Y("residual:Q", title="predicted - true [dex]"),
        color=alt.Color("true log g:Q", scale=alt.Scale(scheme="viridis"), title="true log g [dex]"),
        tooltip=[alt.Tooltip("S/N:Q", format=".1f"), "true log g", "predicted log g"])
    err_max = float(max(0.05, np.nanquantile(df["|error|"], 0.95)))
    kiel = pts.encode(
        x=alt.X("Teff:Q", scale=alt.Scale(reverse=True, zero=False), title="Teff [K]"),
        y=alt.Y("true log g:Q", scale=alt.Scale(reverse=True, zero=False), title="true log g [dex]"),
        color=alt.Color("|error|:Q", scale=alt.Scale(scheme="inferno", reverse=True, domain=[0, err_max], clamp=True),
                        title="|error| [dex]"),
        tooltip=["Teff", "true log g", "predicted log g", alt.Tooltip("|error|:Q", format=".3f")])
    a, b = st.columns(2)
    a.altair_chart((sc + one).properties(title=f"{method} @ {noise:g}: {r2_txt}", height=340), width="stretch")
    b.altair_chart((res_chart + zero).properties(title="Residuals against true log g", height=340), width="stretch")
    a, b = st.columns(2)
    a.altair_chart((snr_chart + zero).properties(title="Residuals against S/N", height=340), width="stretch")
    b.altair_chart(kiel.properties(title="Kiel diagram of the test stars, coloured by |error|", height=340),
                   width="stretch")
    st.caption(f"{len(df)} test spectra; {pm_txt}dashed line: perfect prediction; slope of predicted on true log g "
               f"{breakdown.slope(p['y_true'], p['y_pred']):.2f} (1: unbiased); MAE {row['mae']:.3f} dex. "
               f"S/N: as on the Predict page (core/analysis/breakdown.test_snr). Kiel colour clipped at the 95th "
               f"percentile of |error| ({err_max:.2f} dex). Run `{r.run_id}`, "
               f"fit {r.timings.get('fit_s', float('nan')):.1f} s on {r.timings.get('device', '?')}.")
    bins = pd.DataFrame(r.metrics.get("bins", []))
    if len(bins):
        bins["log g bin"] = bins.apply(lambda x: f"{x['lo']:g}-{x['hi']:g}", axis=1)
        st.dataframe(bins[["log g bin", "n", "bias", "rmse"]].rename(columns={"bias": "bias [dex]", "rmse": "RMSE [dex]"}),
                     hide_index=True)
