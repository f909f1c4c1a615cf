"""Saliency: where in wavelength each model takes its log g from, aligned with the mean spectrum,
its line identifications and the physics' own answer (Fisher information per pixel), plus the
top bands by each measure and how much log g information the top-K pixels hold."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.analysis import report, saliency
from core.engine import suites, train
from core.physics.lines import stellar_lines
from pages._ui import appstate
from pages._ui.conclusion import page_conclusion

st.title("Saliency and Fisher information")
ds = appstate.require_dataset()
profile = st.session_state.get("profile", "quick")
noise = float(st.session_state.get("noise_level", 1.0))
page_conclusion("saliency", profile, ds)
st.caption(f"Data set **{ds.name}**, noise level **{noise:g}** (sidebar). Saliency: |gradient × input|, "
           "|integrated gradients| and occlusion for neural models, averaged over test spectra; coefficients "
           "for Ridge and the Cannon; gain for LightGBM. Fisher information: (d flux / d log g)² / σ² per pixel "
           "from the simulator's autograd Jacobian, with Teff and [M/H] marginalised.")

ZOOMS = {"whole range": (7100, 8850), "Ca II triplet + Paschen 8420-8700 Å": (8420, 8700),
         "Na I 8170-8210 Å": (8170, 8210), "K I + O I 7650-7790 Å": (7650, 7790), "Mg I 8790-8825 Å": (8790, 8825)}
zoom = st.radio("Zoom", list(ZOOMS), horizontal=True)
lo, hi = ZOOMS[zoom]


@st.cache_data(show_spinner="Fisher information from the simulator's Jacobian (once per data set)...")
def physics(name: str, fp: str, noise: float):
    return saliency.dataset_physics(appstate.load_dataset(name), noise, max_stars=saliency.SALIENCY_STARS)


@st.cache_data(show_spinner=False, ttl=10)
def finished(profile: str, name: str, fp: str, noise: float) -> pd.DataFrame:
    res = report.suite_results("report", profile, name)
    return res[(res["r2"].notna()) & (res["noise"] == noise)]


phys, phys_err = None, None
try:
    phys = physics(ds.name, ds.fingerprint, noise)
except ValueError as e:
    phys_err = str(e)

done = finished(profile, ds.name, ds.fingerprint, noise)
choices = [m for m in done["method"] if not m.startswith("Metadata")]
# by default a linear model beside a network whose saliency is its gradients (integrated gradients)
preferred = [m for m in ("Ridge", "Dilated CNN (d=2)") if m in choices]
picked = st.multiselect("Models to compare", choices, default=preferred if len(preferred) == 2 else choices[:2],
                        help="Saliency is computed once per run (seconds to a minute) and cached with it.")

wave = ds.wave
sel = (wave >= lo) & (wave <= hi)
rows = []
# over the whole range a per-pixel curve is a comb of spikes no one can read on a projector: there each
# measure is summed in BAND_A-wide bands (drawn as steps); a zoom keeps every pixel
BAND_A = 10.0
banded = (hi - lo) > 400


def curve(values: np.ndarray, measure: str) -> pd.DataFrame:
    """One measure over the zoom, scaled to its maximum (per pixel, or per BAND_A band on the whole range)."""
    w, v = wave[sel], np.nan_to_num(np.abs(np.asarray(values, dtype=float)[sel]))
    if banded:
        k = np.floor((w - lo) / BAND_A).astype(int)
        v = np.bincount(k, weights=v)
        w = lo + (np.arange(v.size) + 0.5) * BAND_A
    return pd.DataFrame({"wavelength": w, "value": v / max(v.max(), 1e-30), "measure": measure})


if phys is not None:
    mean_flux = phys["mean_flux"]
    rows.append(curve(phys["pixel_info_marg"], "Fisher information (marginalised)"))
else:
    mean_flux = ds.view("test", 0.0, "flux", limit=200).x[:, 0].mean(0)
sal_tables = {}
for method in picked:
    spec = [s for s in suites.suite("report", profile, ds.name)
            if suites.row_label(s) == method and s["noise_level"] == noise][0]
    r = train.cached_result(spec)
    if r is None:
        continue
    with st.spinner(f"Saliency of {method}..."):
        try:
            sal = saliency.run_saliency(r, ds)
        except Exception as e:  # noqa: BLE001 - shown as one line
            st.warning(f"{method}: {appstate.one_line(e)}")
            continue
    key = "ig" if "ig" in sal else "importance"
    v = np.asarray(sal[key], dtype=float)
    sal_tables[method] = v
    rows.append(curve(v, f"{method} ({'integrated gradients' if key == 'ig' else 'coefficients / gain'})"))
    if "ig_completeness" in sal:
        st.caption(f"{method}: integrated gradients completeness error {float(sal['ig_completeness']) * 100:.2f} % "
                   f"(median over spectra); saliency took {float(sal['seconds']):.1f} s.")

spec_df = pd.DataFrame({"wavelength": wave[sel], "flux": mean_flux[sel]})
lines = stellar_lines()
strong = pd.DataFrame({"wavelength": lines["wave"], "species": lines["species"]})
strong = strong[(lines["strong"] >= 1) & (strong["wavelength"] >= lo) & (strong["wavelength"] <= hi)]
x = alt.X("wavelength:Q", title="wavelength [Å]", scale=alt.Scale(domain=[lo, hi], nice=False))
# two charts, one above the other, aligned in wavelength: the same x domain and a y axis of the same width
# (a vconcat would not take the container's width and was cut at the right on a 1280 px screen)
Y_AXIS = alt.Axis(minExtent=70, maxExtent=70)
top = alt.Chart(spec_df).mark_line(color="black", strokeWidth=1).encode(
    x=x, y=alt.Y("flux:Q", title="mean flux (normalised)", axis=Y_AXIS))
ticks = alt.Chart(strong).mark_rule(color="#c44", opacity=0.5).encode(x="wavelength:Q", tooltip=["species", "wavelength"])
labels = alt.Chart(strong).mark_text(angle=270, align="left", dy=-4, fontSize=10, color="#c44").encode(
    x="wavelength:Q", y=alt.value(2), text="species")
top_chart = (top + ticks + labels).properties(height=200, title="Mean test spectrum with the strong lines")
charts = [top_chart]
if rows:
    long = pd.concat(rows)
    bottom = alt.Chart(long).mark_line(strokeWidth=1.5 if banded else 1, interpolate="step" if banded else "linear").encode(
        x=x, y=alt.Y("value:Q", title=f"importance per {BAND_A:g} Å (max = 1)" if banded else
                     "relative importance (max = 1)", axis=Y_AXIS),
        color=alt.Color("measure:N", title=None, legend=alt.Legend(orient="bottom", columns=1, labelLimit=500)))
    charts.append(bottom.properties(height=260, title="Where log g comes from, aligned in wavelength"))
for chart in charts:
    st.altair_chart(chart, width="stretch")
st.caption(("Each measure summed in 10-Å bands (absolute values) and scaled to its largest band" if banded else
            "Each measure per pixel, scaled to its own maximum in this zoom") +
           ", so shapes compare, heights do not. Zoom in for single lines.")
if phys_err:
    st.info(f"Fisher information not shown: {phys_err}")

# ---- top bands and their overlap
measures = dict(sal_tables)
if phys is not None:
    measures["Fisher information"] = phys["pixel_info_marg"]
if measures:
    st.subheader("Top 25-Å bands by each measure")
    tb = {m: saliency.top_bands(v, wave, 25.0, 8) for m, v in measures.items()}
    table = pd.DataFrame({m: [f"{a:.0f}-{b:.0f}" for a, b in bands] for m, bands in tb.items()})
    table.index = [f"#{i + 1}" for i in range(len(table))]
    st.dataframe(table, width="stretch")
    names = list(tb)
    if len(names) > 1:
        ov = pd.DataFrame(index=names, columns=names, dtype=float)
        for a in names:
            for b in names:
                sa, sb = set(tb[a]), set(tb[b])
                ov.loc[a, b] = len(sa & sb) / len(sa | sb)
        st.caption("Overlap of the top-8 band sets (Jaccard index: 1 = the same bands).")
        st.dataframe(ov.style.format("{:.2f}"), width="stretch")

# ---- physics-guided K
if phys is not None:
    st.subheader("How much log g information the top-K pixels hold")
    cum = pd.DataFrame(saliency.topk_information(phys["pixel_info_marg"]), columns=["K", "fraction"])
    ch = alt.Chart(cum).mark_line(point=True).encode(
        x=alt.X("K:Q", scale=alt.Scale(type="log", base=2), title="K (most informative pixels, log scale)"),
        y=alt.Y("fraction:Q", title="fraction of total Fisher information", scale=alt.Scale(domain=[0, 1])),
        tooltip=["K", alt.Tooltip("fraction:Q", format=".3f")])
    st.altair_chart(ch.properties(height=300), width="stretch")
    k256 = dict(saliency.topk_information(phys["pixel_info_marg"], ks=(256,)))[256]
    st.caption(f"The 256 most informative pixels hold {k256 * 100:.0f} % of the log g information at noise {noise:g} "
               f"(mean over {len(phys['rows'])} test stars). Cramér-Rao σ(log g), Teff and [M/H] marginalised: median "
               f"{np.median(phys['sigma_logg']):.3f} dex; the R² an unbiased estimator at that bound reaches: "
               f"{float(phys['r2_cr']):.3f} (ignores the prior box; the likelihood ceiling does not).")
