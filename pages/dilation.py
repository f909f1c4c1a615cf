"""Dilation: R^2 of the dilated CNN against dilation, and each run's receptive field drawn
against the distribution of the simulator's line widths (FWHM and 10 %-depth width, in pixels)."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.analysis import report
from core.analysis.linewidths import line_widths
from core.engine import suites
from pages._ui import appstate, job_panels
from pages._ui.conclusion import page_conclusion

st.title("Dilation, receptive field and line width")
ds = appstate.require_dataset()
profile = st.session_state.get("profile", "quick")
page_conclusion("dilation", profile, ds)
st.caption("The team found dilation 2 best and explained it by the receptive field matching the width of "
           "absorption lines (~10-20 pixels). Here: our R² per dilation, and the receptive fields of our "
           "runs against the widths of the simulator's lines measured on the pixel grid.")


@st.cache_data(show_spinner=False, ttl=10)
def load(profile: str, dataset: str, fp: str) -> pd.DataFrame:
    return report.suite_results("dilation", profile, dataset)


@st.cache_data(show_spinner="Measuring line widths on simulated spectra...")
def widths() -> pd.DataFrame:
    return line_widths(n_stars=24, seed=0)


res = load(profile, ds.name, ds.fingerprint)
res["dilation"] = res["params"].apply(lambda p: p.get("dilation"))
done = res[res["r2"].notna()]
if done.empty:
    st.caption(f"No dilation run has finished on this data set yet: `python -m core train --suite dilation "
               f"--profile {profile}`, or queue it above.")
else:
    d = done[done["model"] == "dilated_cnn"].copy()
    d["noise level"] = d["noise"].map(lambda x: f"{x:g}")
    line = alt.Chart(d).mark_line(point=True).encode(
        x=alt.X("dilation:O", title="dilation (pixels between kernel taps)"),
        y=alt.Y("r2:Q", title="test R² of log g", scale=alt.Scale(zero=False)),
        color=alt.Color("noise level:N", title="noise level"),
        tooltip=["dilation", "noise level", alt.Tooltip("r2:Q", format=".3f"), "receptive_field_px", "n_params"])
    ms = done[done["model"] == "multiscale_cnn"].copy()
    layers = [line]
    if len(ms):
        ms["noise level"] = ms["noise"].map(lambda x: f"{x:g}")
        layers.append(alt.Chart(ms).mark_rule(strokeDash=[5, 3]).encode(
            y="r2:Q", color="noise level:N", tooltip=[alt.Tooltip("r2:Q", format=".3f", title="multi-scale R²")]))
    st.altair_chart(alt.layer(*layers).properties(title="Dilated CNN: R² against dilation", height=320), width="stretch")
    st.caption("Points: one run per dilation at fixed depth and kernel; dashed lines: the multi-scale CNN "
               "(parallel branches d = 1, 2, 4) at the same noise level.")

w = widths()
long = pd.concat([pd.DataFrame({"width_px": w["fwhm_px"], "measure": "FWHM"}),
                  pd.DataFrame({"width_px": w["fw10_px"], "measure": "full width at 10% depth (wings)"})])
# counts per whole pixel, drawn on a log axis: line widths (a few px) and receptive fields (hundreds to
# thousands of px) are orders of magnitude apart
counts = (long.assign(lo=np.floor(long["width_px"].clip(lower=1)))
          .groupby(["measure", "lo"]).size().rename("lines").reset_index())
counts["hi"] = counts["lo"] + 1
xscale = alt.Scale(type="log")
hist = alt.Chart(counts).mark_bar(opacity=0.6).encode(
    x=alt.X("lo:Q", scale=xscale, title="line width or receptive field [pixels, log scale]"), x2="hi:Q",
    y=alt.Y("lines:Q", title="lines (x stars)", stack=None), y2=alt.datum(0),
    color=alt.Color("measure:N", title=None, legend=alt.Legend(orient="top")),
    tooltip=["measure", alt.Tooltip("lo:Q", title="width from [px]"), "lines"])
layers = [hist]
rf = done[done["receptive_field_px"].notna()] if not done.empty else pd.DataFrame()
if len(rf):
    rf = rf.drop_duplicates("method")[["method", "receptive_field_px"]].sort_values("receptive_field_px")
    rf["label_y"] = [12 + 40 * (k % 3) for k in range(len(rf))]   # staggered: close rules keep readable labels
    layers.append(alt.Chart(rf).mark_rule(color="black", strokeWidth=2).encode(
        x=alt.X("receptive_field_px:Q", scale=xscale),
        tooltip=["method", alt.Tooltip("receptive_field_px:Q", title="receptive field [px]")]))
    layers.append(alt.Chart(rf).mark_text(align="right", dx=-4, fontSize=11).encode(
        x=alt.X("receptive_field_px:Q", scale=xscale), y=alt.Y("label_y:Q", scale=None), text="method"))
st.altair_chart(alt.layer(*layers).properties(
    title="Receptive fields of the runs (black rules) against the widths of the simulator's lines", height=340),
    width="stretch")
st.caption(f"{len(w)} line measurements over 24 stars drawn from the label box (lines deeper than 5 % of the "
           "continuum, after the R = 5000 LSF of 3.7 px FWHM). Receptive field in input pixels, from kernel, "
           "dilation and strides of the whole network.")
summary = w.groupby("species")[["fwhm_px", "fw10_px"]].median().rename(
    columns={"fwhm_px": "median FWHM [px]", "fw10_px": "median 10%-depth width [px]"})
summary["lines x stars"] = w.groupby("species").size()
st.dataframe(summary, width="content")
job_panels.retrain_button(suites.suite("dilation", profile, ds.name), f"dilation, {profile}", "dilation")
