"""Limit: how close a learned model gets to the physical limit, and with how much data. Test R² of
log g at noise 1.0 against the number of training spectra (log axis), one line per method and
training-noise mode, the likelihood ceiling on the same test stars as a horizontal band
(the learning_curve suite; core/analysis/learning.py). Then the posterior suite's calibration: SBC
rank histograms and the coverage of log g's intervals per S/N quartile (core/analysis/calibration.py)."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core.analysis import calibration, learning
from core.data import LABEL_TITLES
from core.engine import suites
from pages._ui import appstate, job_panels

st.title("Limit: learning curves against the ceiling")
ds = appstate.require_dataset()
profile = st.session_state.get("profile", "quick")
st.caption("Test R² of log g at noise level 1.0 against the number of training spectra, for Ridge, LightGBM, "
           "the pixel MLP, the top-K window CNN and the FiLM fusion, each trained on one fixed noise draw per "
           "spectrum or on a fresh draw every epoch, the networks until their validation loss is flat; the MLP and "
           "the FiLM fusion also on new simulated stars every epoch (a stream from the data set's recipe: the "
           "infinite-data limit, placed at the distinct stars they saw); the band "
           "is the likelihood fit of the simulator itself on the same test stars, the best the physics allows. "
           "What each trick buys on its own (fixed / fresh noise x epoch budget / to convergence): "
           "`python -m core report --suite noise_ablation`.")


@st.cache_data(show_spinner=False, ttl=10)
def load(profile: str, dataset: str, fp: str) -> tuple[pd.DataFrame, float | None]:
    return learning.table(profile, dataset), learning.ceiling_r2(profile, dataset)


df, ceil = load(profile, ds.name, ds.fingerprint)
st.info(learning.conclusion(df, ceil), icon=":material/flag:")
done = df[df["r2"].notna()].copy()
if done.empty:
    st.caption(f"No learning-curve run has finished on this data set yet: `python -m core train --suite "
               f"learning_curve --profile {profile}`, or queue it below.")
else:
    done["line"] = done["method"] + " (" + done["mode"] + " noise)"
    done["lo"] = done["r2"] - done["r2_sd"].fillna(0)
    done["hi"] = done["r2"] + done["r2_sd"].fillna(0)
    x = alt.X("n_train:Q", title="training spectra (log scale)", scale=alt.Scale(type="log"))
    color = alt.Color("method:N", title="method")
    dash = alt.StrokeDash("mode:N", title="training noise",   # fresh solid, fixed dashed (the caption says so)
                          scale=alt.Scale(domain=["fresh", "fixed", "stream"], range=[[1, 0], [6, 4], [1, 0]]),
                          legend=None)   # a dash legend draws no visible symbol here: the caption names them
    layers = [
        alt.Chart(done).mark_line(point=True).encode(
            x=x, y=alt.Y("r2:Q", title="test R² of log g", scale=alt.Scale(zero=False)), color=color,
            strokeDash=dash, detail="line:N",
            tooltip=["method", "mode", "n_train", alt.Tooltip("r2:Q", format=".3f"),
                     alt.Tooltip("r2_sd:Q", format=".3f", title="sd over seeds"), "n_seeds",
                     alt.Tooltip("of_ceiling:Q", format=".1%", title="of the ceiling")]),
        alt.Chart(done).mark_errorbar().encode(x=x, y="lo:Q", y2="hi:Q", color=color, detail="line:N"),
    ]
    if ceil is not None:
        band = pd.DataFrame({"lo": [ceil - 0.005], "hi": [ceil + 0.005], "r2": [ceil],
                             "what": [f"{suites.CEILING_LABEL}: R² {ceil:.3f}"]})
        layers.insert(0, alt.Chart(band).mark_rect(color="gray", opacity=0.3).encode(
            y="lo:Q", y2="hi:Q", tooltip=["what"]))
        layers.append(alt.Chart(band).mark_rule(color="black", strokeDash=[2, 2]).encode(y="r2:Q", tooltip=["what"]))
    st.altair_chart(alt.layer(*layers).properties(title="R² against training spectra, noise 1.0", height=380),
                    width="stretch")
    st.caption("Solid lines: fresh training noise; dashed: fixed (Ridge and LightGBM train on the fixed "
               "draw); a lone point far right: new stars every epoch, at the number of distinct stars seen; bars: ± 1 sd over training seeds where there are several; grey band: the likelihood "
               "ceiling on the same test stars.")
    rows = done[done["mode"] != "stream"]
    wide = rows.pivot_table(index=["method", "mode"], columns="n_train", values="r2", sort=False)
    wide = wide.map(lambda v: "-" if pd.isna(v) else f"{v:.3f}")
    wide.columns = [f"R² @ {int(c):,}" for c in wide.columns]
    stream = {(r["method"], r["mode"]): f"{r['r2']:.3f} ({int(r['n_train']):,} seen)"
              for _, r in done[done["mode"] == "stream"].iterrows()}
    if stream:                  # the infinite-data end: one column, the R² and the distinct stars seen
        extra = pd.DataFrame({"new stars every epoch": list(stream.values())},
                             index=pd.MultiIndex.from_tuples(list(stream), names=["method", "mode"]))
        wide = pd.concat([wide, extra]).fillna("-")
        order = {m: i for i, m in enumerate(dict.fromkeys(done["method"]))}
        wide = wide.sort_index(key=lambda ix: ix.map(order) if ix.name == "method" else
                               ix.map({"fixed": 0, "fresh": 1, "stream": 2}))
    st.dataframe(wide.reset_index(), hide_index=True, width="content",
                 column_config={"method": st.column_config.TextColumn(width="medium")})
job_panels.retrain_button(suites.suite("learning_curve", profile, ds.name), f"learning curve, {profile}",
                          "learning_curve")

# --------------------------------------------------------------------------- posteriors (#17 part 4)
st.subheader("Posteriors: are the error bars honest?")
st.caption("Neural posterior estimation (a normalizing flow over Teff, log g and [M/H] conditioned on a learned "
           "summary of the spectrum and the star's S/N; the posterior suite). For each test star "
           f"{calibration.N_SAMPLES} posterior samples: the rank of the true label among them is uniform when the "
           "posterior is calibrated (simulation-based calibration), and the central 68 % and 95 % intervals should "
           "hold 68 % and 95 % of the true log g in every S/N quartile.")


@st.cache_data(show_spinner="Drawing posterior samples for the test stars (once per run) ...", ttl=60)
def load_calibration(profile: str, dataset: str, fp: str):
    arms = calibration.load(profile, dataset)
    return calibration.sbc_table(arms), calibration.coverage_table(arms), calibration.rank_counts(arms)


sbc, cov, ranks = load_calibration(profile, ds.name, ds.fingerprint)
st.info(calibration.conclusion(sbc, cov), icon=":material/flag:")
if sbc.empty:
    st.caption(f"`python -m core train --suite posterior --profile {profile}`, or queue it below.")
else:
    shown = {calibration.KINDS[0], calibration.kinds_present(cov)[0]}     # as fitted and the headline kind
    ranks = ranks[ranks["posterior"].isin(shown)].copy()
    ranks["noise level"] = [f"noise {v:g}, {k}" for v, k in zip(ranks["noise"], ranks["posterior"])]
    ranks["label"] = ranks["label"].map(LABEL_TITLES)
    base = alt.Chart().encode(x=alt.X("rank_lo:Q", title="rank of the true label / samples", bin=False,
                                      scale=alt.Scale(domain=[0, 1])))
    bars = base.mark_bar(width=15, opacity=0.8).encode(
        y=alt.Y("count:Q", title="test stars"), tooltip=["label", "noise level", "count", "expected"])
    flat = alt.Chart().mark_rule(color="black", strokeDash=[3, 3]).encode(y="mean(expected):Q")
    order = [LABEL_TITLES[k] for k in ("logg", "teff", "mh")]
    st.altair_chart(alt.layer(bars, flat, data=ranks).properties(width=200, height=140).facet(
        column=alt.Column("label:N", title=None, sort=order), row=alt.Row("noise level:N", title=None)))
    st.caption("SBC rank histograms, 10 bins, as fitted and for the headline posterior (the table below has every "
               "kind); dashed: what uniform ranks give. U-shaped: over-confident "
               "posteriors; a hump: under-confident; a slope: biased. 'Recalibrated': each test star's rank mapped "
               f"through the ranks of {calibration.RECAL_DRAWS} noise draws of every star of the data set's "
               f"calibration set (new simulated stars no fit has seen), in {calibration.RECAL_BINS} S/N bins. "
               "'Seed ensemble': the training replicates' flows as one equal-weight mixture, so the spread between "
               "the fits widens the intervals.")
    draws = int(cov["draws"].max())
    table = pd.DataFrame({
        "noise": cov["noise"].map(lambda v: f"{v:g}"), "posterior": cov["posterior"], "quartile": cov["quartile"],
        "S/N": [f"{lo:.0f}-{hi:.0f}" for lo, hi in zip(cov["snr_lo"], cov["snr_hi"])], "stars": cov["n"],
        f"68 % ({draws} draws)": [f"{c:.1%} ± {e:.1%}" for c, e in zip(cov["cov68_draws"], cov["se68_draws"])],
        f"95 % ({draws} draws)": [f"{c:.1%} ± {e:.1%}" for c, e in zip(cov["cov95_draws"], cov["se95_draws"])],
        "±3 points": cov["within"].map({True: "yes", False: "no"}),
        "68 / 95 % (own draw)": [f"{a:.0%} / {b:.0%}" for a, b in zip(cov["cov68"], cov["cov95"])]})
    st.dataframe(table, hide_index=True, width="content", height=38 + 35 * len(table),   # every row, no inner scroll
                 column_config={"posterior": st.column_config.TextColumn("posterior", width=190)})   # names in full
    st.caption(f"Coverage of log g's central intervals per S/N quartile (Q1 lowest) over {draws} noise draws of the "
               "test stars (± SE over stars; the verdict) and on the test split's own draw (its binomial SE at "
               "nominal: 4.4 points for 68 %, 2.1 for 95 % with ~110 stars, so one draw alone cannot show ±3 points). SBC chi² "
               "tests on the own draw: " + "; ".join(
                   f"{r['label']} @ {r['noise']:g} ({r['posterior']}): p {r['p']:.2g}" for _, r in sbc.iterrows()) + ".")
job_panels.retrain_button(suites.suite("posterior", profile, ds.name), f"posterior, {profile}", "posterior")
