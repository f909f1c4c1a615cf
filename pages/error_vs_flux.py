"""Error versus flux: the ablation matrix (input x model x noise), the residual analysis, and a
plain-language verdict computed from the numbers (core/analysis/ablation.py holds the rules)."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core.analysis import ablation
from pages._ui import appstate, job_panels
from pages._ui.conclusion import page_conclusion

st.title("Error versus flux")
ds = appstate.require_dataset()
profile = st.session_state.get("profile", "quick")
conc = page_conclusion("error_vs_flux", profile, ds)
st.caption("The team found that the error vector alone predicts log g (R² ≈ 0.91 on their data) and feared their "
           "models learned that shortcut. Here the same models are trained on the flux, on the error, on both, and on "
           "controls that break the link between a star and its own error vector.")


@st.cache_data(show_spinner=False, ttl=10)
def load(profile: str, name: str, fp: str) -> pd.DataFrame:
    return ablation.results(profile, name).drop(columns=["result"])


df = load(profile, ds.name, ds.fingerprint)
n_done = int(df["r2"].notna().sum())
specs = ablation.suite_specs(profile, ds.name)
if n_done == 0:
    st.caption(f"No ablation run has finished on this data set yet: `python -m core train --suite error_ablation "
               f"--profile {profile}`" + (", or queue it above." if conc.verdict == "not run" else "."))
    if conc.verdict != "not run":
        job_panels.retrain_button(specs, f"error_ablation, {profile}", "ablation_empty")
    st.stop()
st.caption(f"{n_done} of {len(df)} runs finished.")

for noise in sorted(df["noise"].unique()):
    st.markdown(f"**Verdict.** {ablation.verdict(df, noise)}")

d = df.dropna(subset=["r2"]).copy()
d["noise level"] = d["noise"].map(lambda x: f"noise {x:g}")
order = list(ablation.INPUT_LABELS.values())
base = alt.Chart(d).encode(y=alt.Y("input:N", sort=order, title=None, axis=alt.Axis(labelLimit=320)),
                           x=alt.X("model:N", title=None))
heat = base.mark_rect().encode(color=alt.Color("r2:Q", title="test R²", scale=alt.Scale(domain=[0, 1], scheme="viridis", clamp=True)),
                               tooltip=["input", "model", "noise level", alt.Tooltip("r2:Q", format=".3f")])
txt = base.mark_text(fontSize=12).encode(text=alt.Text("r2:Q", format=".2f"),
                                         color=alt.condition("datum.r2 > 0.55", alt.value("black"), alt.value("white")))
st.altair_chart((heat + txt).properties(width=170, height=alt.Step(28)).facet(column=alt.Column("noise level:N", title=None))
                .properties(title="Ablation matrix: test R² of log g by input and model"))
st.caption("Controls: 'shuffled' gives each star the error vector of a random other star; 'constant' a flat error; "
           "'another log g' the error of the star with the nearest Teff and [M/H] whose log g differs by ≥ 1 dex. "
           "R² below 0 is shown at the bottom of the colour scale. 'latent probe': Ridge on the blind-spot encoder's "
           "enc_pre_latent map (mean over 8 segments), for the encoder trained on the flux alone and the one trained "
           "on flux + error (see the Latent page).")
st.download_button("Download the matrix (CSV)", d.drop(columns=["noise level"]).to_csv(index=False).encode(),
                   "error_ablation.csv", "text/csv")

st.subheader("Residual analysis")
full = ablation.results(profile, ds.name)
rows = [ablation.residual_analysis(full, m, n) for m in ablation.ABLATION_MODELS for n in sorted(full["noise"].unique())]
rows = [r for r in rows if r]
if rows:
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in rows[0] if c not in ("model", "noise")})
    st.caption("If the error vector carried log g information that the flux model misses, the flux model's residuals "
               "would correlate with the error-only prediction, and adding the error channel would gain R² beyond its "
               "bootstrap standard error.")
else:
    st.caption("Needs the flux-only and error-only runs of a model.")
job_panels.retrain_button(specs, f"error_ablation, {profile}", "ablation")
