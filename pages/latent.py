"""Latent: what the self-supervised blind-spot encoder's latent knows about Teff, log g and [M/H].
The encoder's denoising, the layer x pooling grid of probe R² (core/analysis/latent.py runs and reads it),
probe R² against the number of labelled spectra, the frozen and fine-tuned heads against the best
probe, and a PCA of the latent coloured by each label."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.analysis import latent
from core.data import LABEL_TITLES, LABELS
from core.engine.suites import latent as suite_latent
from models import blindspot, latent_features, probes
from pages._ui import appstate, job_panels
from pages._ui.conclusion import page_conclusion

st.title("Latent: what the blind-spot encoder knows")
ds = appstate.require_dataset()
profile = st.session_state.get("profile", "quick")
noise = float(st.session_state.get("noise_level", 1.0))
conc = page_conclusion("latent", profile, ds)
CMD = f"python -m core train --suite latent --profile {profile}"
st.caption("The team trained a self-supervised blind-spot denoiser and read its latent with probes: Teff and [M/H] "
           "came out well (R² ≈ 0.97, 0.95), log g weakly (0.22), rising to 0.55 with enc_pre_latent + seg_mean_K8 "
           "and 0.61 with a frozen encoder + MLP head. Here the same questions on this data set, at the sidebar's "
           f"noise level ({noise:g}).")


@st.cache_data(show_spinner=False, ttl=10)
def load(profile: str, name: str, fp: str) -> dict:
    return {"grid": latent.grid(profile, name).drop(columns=["spec"]),
            "sweep": latent.size_sweep(profile, name).drop(columns=["spec"], errors="ignore"),
            "enc": latent.encoders(profile, name).drop(columns=["spec"]),
            "heads": latent.heads(profile, name).drop(columns=["spec"], errors="ignore")}


specs = suite_latent.suite_specs(profile, ds.name)
res = load(profile, ds.name, ds.fingerprint)
grid, sweep, enc, heads = res["grid"], res["sweep"], res["enc"], res["heads"]
n_done = int(grid["r2"].notna().sum()) + int(enc["run_id"].notna().sum())
if n_done == 0:
    st.caption(f"No latent run has finished on this data set yet: `{CMD}` "
               f"({len(specs)} runs at the {profile} profile)" + (", or queue it above." if conc.verdict == "not run" else "."))
    if conc.verdict != "not run":
        job_panels.retrain_button(specs, f"latent, {profile}", "latent_empty")
    st.stop()
st.caption(f"{int(grid['run_id'].notna().sum())} of {len(grid)} grid cells filled; {len(specs)} runs in the "
           f"{profile} plan. Fill the rest with `{CMD}`.")
NAMES = {"teff": "Teff", "logg": "log g", "mh": "[M/H]"}

# --------------------------------------------------------------------------- the encoder
st.subheader("The encoder: denoising")
e = enc[enc["run_id"].notna()].copy()
if e.empty:
    st.caption(f"No encoder has finished yet: `{CMD}`.")
else:
    e["encoder"] = e.apply(lambda r: f"{r['variant']} @ noise {r['noise']:g}", axis=1)
    long = pd.concat([e.assign(what="noisy input", mse=e["noisy_mse"]),
                      e.assign(what="blind-spot output", mse=e["denoise_mse"]),
                      e.assign(what="non-blind output", mse=e["denoise_mse_nonblind"])])
    dots = alt.Chart(long).mark_point(filled=True, size=140).encode(
        y=alt.Y("encoder:N", title=None, axis=alt.Axis(labelLimit=240)),
        x=alt.X("mse:Q", title="MSE to the clean flux [(normalised flux)²], log scale", scale=alt.Scale(type="log")),
        color=alt.Color("what:N", title=None, sort=["noisy input", "blind-spot output", "non-blind output"],
                        legend=alt.Legend(orient="top")),
        shape=alt.Shape("what:N", title=None, legend=None),
        tooltip=["encoder", "what", alt.Tooltip("mse:Q", format=".2e")])
    st.altair_chart(dots.properties(title="Denoising on the test split: noisy input against the encoder's output",
                                    height=alt.Step(40)), width="stretch")
    st.caption("Blind-spot output: every pixel predicted with its own value masked (the training objective, "
               "J-invariant); non-blind: the same network seeing every pixel. Lower is better; labels never touch "
               "the encoder.")
    show = e[["encoder", "noisy_mse", "denoise_mse", "denoise_ratio", "denoise_mse_nonblind", "readout_r2", "epochs",
              "fit_s", "n_params"]].rename(columns={
        "noisy_mse": "noisy MSE", "denoise_mse": "blind MSE", "denoise_ratio": "blind / noisy",
        "denoise_mse_nonblind": "non-blind MSE", "readout_r2": "Ridge read-out R² (log g, 384-d latent)",
        "fit_s": "training time [s]", "n_params": "parameters"})
    st.dataframe(show, hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(c, format="%.2e") for c in ("noisy MSE", "blind MSE", "non-blind MSE")})

# --------------------------------------------------------------------------- the grid
st.subheader("Which layer and which pooling carry the label")
have = grid[grid["r2"].notna()]
variants = [v for v in suite_latent.VARIANTS if v in set(have["variant"])] or ["flux"]
c1, c2, c3 = st.columns(3)
label = c1.radio("Label", LABELS, index=1, format_func=NAMES.get, horizontal=True, key="latent_label")
probe = c2.radio("Probe", probes.PROBES, format_func=suite_latent.PROBE_TITLES.get, horizontal=True, key="latent_probe")
variant = c3.selectbox("Encoder", variants, key="latent_variant",
                       format_func=lambda v: "trained on flux" if v == "flux" else "trained on flux + error")
cells = grid[(grid["variant"] == variant) & (grid["noise"] == noise) & (grid["label"] == label) & (grid["probe"] == probe)]
if cells.empty:
    st.info(f"The {profile} plan has no {suite_latent.PROBE_TITLES[probe]} probes of the '{variant}' encoder at noise "
            f"{noise:g}. Switch the noise level or the probe, or run the default profile "
            f"(`python -m core train --suite latent --profile default`).")
else:
    layers = [lay for lay in blindspot.LAYERS if lay in set(cells["layer"])]
    frame = pd.DataFrame([{"layer": lay, "pooling": p} for lay in layers for p in latent_features.POOLINGS]).merge(
        cells[["layer", "pooling", "r2", "runs_as", "dims", "run_id"]], on=["layer", "pooling"], how="left")
    shapes = {lay: blindspot.nominal_shape(lay, ds.n_pix) for lay in layers}
    frame["text"] = [("n/a" if not latent_features.valid_pooling(shapes[r.layer], r.pooling) else
                      (f"{r.r2:.2f}" if pd.notna(r.r2) else "–")) for r in frame.itertuples()]
    frame["note"] = [("does not apply (K > positions, or flat too large)" if t == "n/a" else
                      (f"same run as {r.runs_as}" if isinstance(r.runs_as, str) and r.runs_as != r.pooling else ""))
                     for t, r in zip(frame["text"], frame.itertuples())]
    frame["layer shape"] = frame["layer"].map(lambda lay: f"{shapes[lay][0]} channels x {shapes[lay][1]} positions")
    base = alt.Chart(frame).encode(x=alt.X("pooling:N", sort=list(latent_features.POOLINGS), title="pooling",
                                           axis=alt.Axis(labelAngle=-30, labelOverlap=False)),
                                   y=alt.Y("layer:N", sort=list(blindspot.LAYERS), title="encoder layer"))
    lo = float(min(0.0, np.nanmin(frame["r2"])) if frame["r2"].notna().any() else 0.0)
    heat = base.mark_rect().encode(
        color=alt.Color("r2:Q", title="test R²", scale=alt.Scale(domain=[max(lo, -0.5), 1], scheme="viridis", clamp=True)),
        tooltip=["layer", "layer shape", "pooling", alt.Tooltip("r2:Q", format=".3f", title="test R²"),
                 alt.Tooltip("dims:Q", title="features"), "note", "run_id"])
    frame["ink"] = np.where(frame["r2"].isna(), "grey", np.where(frame["r2"] > 0.6, "black", "white"))
    inks = ["black", "white", "grey"]
    txt = base.mark_text(fontSize=12).encode(text="text:N", color=alt.Color(
        "ink:N", scale=alt.Scale(domain=inks, range=inks), legend=None))
    st.altair_chart((heat + txt).properties(
        title=f"{suite_latent.PROBE_TITLES[probe]} probe R² of {NAMES[label]} by layer and pooling "
              f"(encoder on {variant}, noise {noise:g})", height=alt.Step(42)), width="stretch")
    best = latent.best_extraction(grid, variant, noise, label, probe)
    best_any = latent.best_extraction(grid, variant, noise, label)
    line = "Cells: test R² (unitless) of the probe on that extraction; n/a: the pooling does not apply; –: not run yet."
    if best:
        line += (f" Best here: {best['layer']} + {best['pooling']} (R² {best['r2']:.3f}); over all probes: "
                 f"{best_any['layer']} + {best_any['pooling']} with {suite_latent.PROBE_TITLES[best_any['probe']]} "
                 f"(R² {best_any['r2']:.3f}).")
        if label == "logg":
            line += " Team report (Ridge, log g): enc_last + global_mean 0.22 → enc_pre_latent + seg_mean_K8 0.55."
    st.caption(line)
    job_panels.retrain_button([c for c in specs if c["model"] == "latent_probe"
                            and c["params"]["encoder"] == variant and c["noise_level"] == noise
                            and c["target"] == label and c["params"]["probe"] == probe],
                           f"latent grid: {variant}, {label}, {probe}, noise {noise:g}, {profile}", f"latent_grid_{label}_{probe}")

# flux versus flux + error
both = have[have["noise"] == noise].copy()
pairs = both.groupby(["layer", "pooling", "probe", "label"])["variant"].nunique()
pairs = pairs[pairs > 1].reset_index()[["layer", "pooling", "probe", "label"]]
if len(pairs):
    st.subheader("Encoder trained on flux, or on flux + error")
    d = both.merge(pairs, on=["layer", "pooling", "probe", "label"])
    d["extraction"] = d["layer"] + " + " + d["pooling"] + " · " + d["probe"].map(suite_latent.PROBE_TITLES)
    d["label name"] = d["label"].map(NAMES)
    d = d.drop_duplicates(["variant", "extraction", "label"])
    ch = alt.Chart(d).mark_bar().encode(
        x=alt.X("r2:Q", title="test R² (unitless)"), y=alt.Y("extraction:N", title=None, axis=alt.Axis(labelLimit=320)),
        yOffset=alt.YOffset("variant:N"), color=alt.Color("variant:N", title="encoder inputs", legend=alt.Legend(orient="top")),
        column=alt.Column("label name:N", title=None, sort=[NAMES[k] for k in LABELS]),
        tooltip=["variant", "extraction", "label name", alt.Tooltip("r2:Q", format=".3f")])
    st.altair_chart(ch.properties(title=f"Probe R² with and without the error channel (noise {noise:g})",
                                  width=150, height=alt.Step(18)))
    st.caption("Same extraction and probe on the two encoders: a gain with the error channel means the latent's "
               "information comes partly from the error vector (the team's 'error shortcut', question 2).")

# --------------------------------------------------------------------------- size sweep
st.subheader("Probe R² against the number of labelled spectra")
sw = sweep[(sweep["noise"] == noise) & sweep["r2"].notna()].copy() if not sweep.empty else sweep
if sw.empty:
    st.caption(f"No size-sweep runs at noise {noise:g} yet: `{CMD}`.")
else:
    sw["probe name"] = sw["probe"].map(suite_latent.PROBE_TITLES)
    sw["label name"] = sw["label"].map(NAMES)
    ch = alt.Chart(sw).mark_line(point=True).encode(
        x=alt.X("n_train:Q", title="labelled training spectra (log scale)", scale=alt.Scale(type="log")),
        y=alt.Y("r2:Q", title="test R² (unitless)", scale=alt.Scale(zero=False)),
        color=alt.Color("probe name:N", title="probe"), strokeDash=alt.StrokeDash("extraction:N", title="extraction"),
        column=alt.Column("label name:N", title=None),
        tooltip=["probe name", "extraction", "label name", "n_train", alt.Tooltip("r2:Q", format=".3f")])
    st.altair_chart(ch.properties(title=f"Probe R² against training-set size (noise {noise:g})", width=320, height=260))
    st.caption("The encoder is the same (self-supervised on every training spectrum); only the probe's labelled "
               "spectra change. The team saw LightGBM overfit at 1k; sizes the data set lacks are left out.")

# --------------------------------------------------------------------------- heads
st.subheader("Heads on the encoder against the best probe (log g)")
h = heads[(heads["noise"] == noise) & heads["r2"].notna()].copy() if not heads.empty else heads
bp = latent.best_extraction(grid, "flux", noise, "logg")
rows = []
if bp:
    rows.append({"method": f"best probe: {bp['layer']} + {bp['pooling']}, {suite_latent.PROBE_TITLES[bp['probe']]}",
                 "r2": bp["r2"], "variant": "flux"})
for r in h.itertuples():
    rows.append({"method": f"{r.method} ({r.extraction})", "r2": r.r2, "variant": r.variant})
if not rows:
    st.caption(f"No head or log g probe has finished at noise {noise:g}: `{CMD}`.")
else:
    hd = pd.DataFrame(rows)
    hd["encoder"] = hd["variant"].map(lambda v: f"trained on {v}")
    team = pd.DataFrame([{"r2": 0.5516, "what": "team: best probe (enc_pre_latent + seg_mean_K8, Ridge)"},
                         {"r2": 0.6117, "what": "team: frozen encoder + MLP head"}])
    bars = alt.Chart(hd).mark_bar().encode(
        y=alt.Y("method:N", title=None, sort=None, axis=alt.Axis(labelLimit=420)),
        x=alt.X("r2:Q", title="test R² of log g (unitless)"), color=alt.Color("encoder:N", title=None),
        tooltip=["method", "encoder", alt.Tooltip("r2:Q", format=".3f")])
    rules = alt.Chart(team).mark_rule(strokeDash=[4, 3], color="grey").encode(
        x="r2:Q", tooltip=["what", alt.Tooltip("r2:Q", format=".4f")])
    st.altair_chart((bars + rules).properties(title=f"Frozen and fine-tuned heads against the best probe, noise {noise:g}",
                                              height=alt.Step(32)), width="stretch")
    st.caption("Dashed lines: the team report 2025-12-01 (their data set, noise level unspecified). The fine-tuned "
               "head starts from the frozen head and then trains the encoder too.")

# --------------------------------------------------------------------------- PCA
st.subheader("The latent in two dimensions")
er = enc[(enc["variant"] == "flux") & (enc["noise"] == noise) & enc["run_id"].notna()]
if er.empty:
    st.caption(f"Needs the 'flux' encoder at noise {noise:g}: `{CMD}`.")
else:
    pca_layers = [lay for lay in blindspot.LAYERS if lay in set(grid["layer"])] or ["enc_last"]
    opts = [(lay, p) for lay in pca_layers for p in latent_features.POOLINGS
            if latent_features.valid_pooling(blindspot.nominal_shape(lay, ds.n_pix), p)]
    default = (bp["layer"], bp["pooling"]) if bp and (bp["layer"], bp["pooling"]) in opts else suite_latent.TEAM_BEST
    choice = st.selectbox("Extraction", opts, index=opts.index(default) if default in opts else 0,
                          format_func=lambda t: f"{t[0]} + {t[1]}", key="latent_pca")
    rid = er["run_id"].iloc[0]

    @st.cache_data(show_spinner="Encoding the test spectra...", max_entries=8)
    def projection(run_id: str, layer: str, pooling: str, noise: float, name: str, fp: str) -> tuple[pd.DataFrame, list]:
        d = appstate.load_dataset(name)
        view = d.view("test", noise, "flux", limit=2000)
        f = latent_features.features(latent.encoder_by_run(run_id), run_id, view, layer, pooling)
        z, ev = latent.pca2(f)
        out = pd.DataFrame({"pc1": z[:, 0], "pc2": z[:, 1]})
        for i, k in enumerate(LABELS):
            out[k] = view.y[:, i]
        return out, [float(v) for v in ev]

    pts, ev = projection(rid, choice[0], choice[1], noise, ds.name, ds.fingerprint)
    charts = [alt.Chart(pts).mark_circle(size=14, opacity=0.8).encode(
        x=alt.X("pc1:Q", title=f"PC 1 [std. units] ({ev[0]:.0%})"),
        y=alt.Y("pc2:Q", title=f"PC 2 [std. units] ({ev[1]:.0%})"),
        color=alt.Color(f"{k}:Q", title=LABEL_TITLES[k], scale=alt.Scale(scheme="viridis"),
                        legend=alt.Legend(orient="top", gradientLength=150)),
        tooltip=[alt.Tooltip(f"{c}:Q", format=".2f", title=LABEL_TITLES[c]) for c in LABELS]
    ).properties(title=f"coloured by {NAMES[k]}", width=300, height=240) for k in LABELS]
    st.altair_chart(alt.concat(*charts, columns=3).resolve_scale(color="independent").properties(
        title=f"PCA of {choice[0]} + {choice[1]} on {len(pts)} test spectra (encoder on flux, noise {noise:g})"))
    st.caption(f"{len(pts)} test spectra (encoder trained on flux, noise {noise:g}; features standardised, PC share of "
               "variance in brackets). A smooth colour gradient across the plane means the label lies along the "
               "latent's main directions; a speckled one that it does not.")

with st.expander("The team report's latent numbers (team report 2025-12-01)"):
    st.dataframe(latent.team_numbers(), hide_index=True, width="stretch")
    st.caption("Measured on the team's own data set; shown for comparison, never used to tune anything here.")
job_panels.retrain_button(specs, f"latent, {profile}", "latent_all")
