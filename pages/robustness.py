"""Robustness to nuisances: how much R² the report's predictors lose on perturbed copies of the test set
(RV error, resolution, continuum tilt, tellurics), trained without and with nuisance augmentation side
by side. The numbers and the sentence come from core/analysis/robustness.py; this page only draws."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core import config
from core.analysis import robustness, robustness_ceiling
from core.analysis.conclusions import minutes
from core.data import DataError
from core.engine import suites
from core.engine.suites import robustness as rsuite
from pages._ui import appstate, job_panels
from pages._ui.conclusion import queue_button

st.title("Robustness to nuisances")
ds = appstate.require_dataset()
profile = st.session_state.get("profile", "quick")
name = ds.name.removesuffix(f"-{rsuite.RECIPE}")        # the survey twin in the sidebar: its clean data set
dataset = None if name == config.profile(profile)["dataset"] else name


@st.cache_data(show_spinner="Reading the evaluations...", max_entries=8)
def load(profile: str, dataset: str | None, fp: str, state: tuple) -> tuple[pd.DataFrame, dict, dict]:
    """(the evaluated rows, what is not run, finished runs without cached predictions); `state`
    (robustness.state) refreshes it when a run finishes or an evaluation is cached."""
    df, pending = robustness.results(profile, dataset, compute=False)
    todo = robustness.not_run(profile, dataset)
    return df, {k: todo[k] for k in ("n_todo", "n_all", "text", "todo")}, pending


try:
    robustness.clean_dataset(profile, dataset)
    df, todo, pending = load(profile, dataset, ds.fingerprint, robustness.state(profile, dataset))
except DataError as e:
    st.info(f"**Conclusion.** {appstate.one_line(e)}", icon=":material/pending:")
    st.stop()

ceiling = robustness_ceiling.rows(profile, dataset, compute=False)      # cached only: `benchmarks/robustness.py` makes it
st.info(f"**Conclusion.** {robustness.conclusion(df, todo['text'])} {robustness_ceiling.sentence(ceiling, df)}",
        icon=":material/lightbulb:" if robustness.verdict(df) else ":material/pending:")
st.caption("ΔR² = R² on the unperturbed test set − R² on the perturbed one (positive: the predictor loses). A perturbed "
           "set is the clean test stars with one nuisance of core/physics/nuisance.py applied, then the same test noise "
           "draw: the comparison is paired star by star. ± : paired bootstrap over the test stars (and the spread of the "
           f"training seeds where there are two or more). Trained with augmentation: on `{rsuite.augmented_name(profile, dataset)}`, "
           "the same stars with survey nuisances drawn per star (RV 3 km/s rms, R 4500-5500, tilt ±2 %, tellurics).")

if todo["n_todo"]:
    st.caption(todo["text"])
    if not rsuite.missing_datasets(profile, dataset):
        queue_button(todo["todo"], f"{rsuite.SUITE}, {profile}", "robustness_queue")
if pending["runs"]:
    st.caption(f"{pending['runs']} finished run(s) not yet evaluated on the {len(robustness.PERTURBATIONS)} perturbed "
               f"test sets: {minutes(pending['seconds'])} (their own predict times; then cached).")
    if st.button(f"Evaluate {pending['runs']} run(s)", icon=":material/play_arrow:", disabled=bool(job_panels.read_only()),
                 help=job_panels.read_only() or "simulates the perturbed test sets and predicts them; cached"):
        bar = st.progress(0.0, text="simulating the perturbed test sets")
        robustness.evaluate(profile, dataset, progress=lambda f, t: bar.progress(float(f), text=t))
        load.clear()
        st.rerun()
if df.empty:
    st.stop()

noise = st.radio("Noise level", sorted(df["noise"].unique()), horizontal=True, key="robustness_noise",
                 index=sorted(df["noise"].unique()).index(robustness.TARGET_NOISE)
                 if robustness.TARGET_NOISE in set(df["noise"]) else 0)
if noise == robustness.TARGET_NOISE and len(ceiling):   # the physics' own loss, on the augmented side
    df = pd.concat([df, ceiling.assign(training=rsuite.RECIPE)], ignore_index=True)
bases = (robustness.BASE_KEY, robustness.BASE_KEY + robustness.TELL_SUFFIX)
meant = {tr: {p.key for p in robustness.sky_sets(tr)} for tr in robustness.TRAINING_LABEL}   # each training's sky
own_sky = pd.Series([k in meant.get(t, ()) for k, t in zip(df["key"], df["training"])], index=df.index, dtype=bool)
d = df[(df["noise"] == noise) & ~df["key"].isin(bases) & own_sky].copy()
# each training's unperturbed R² on the sky it trained on: telluric-free (no augmentation), typical tellurics (with)
sky = df[(df["noise"] == noise) & ((df["key"] == "tilt_0") & (df["training"] == "none")
                                   | (df["key"] == "tilt_1" + robustness.TELL_SUFFIX) & (df["training"] == rsuite.RECIPE))]
sky = sky.assign(training=sky["training"].map(robustness.TRAINING_LABEL))
d["training"] = d["training"].map(robustness.TRAINING_LABEL)
order = d.groupby("method")["r2_clean"].max().sort_values(ascending=False).index.tolist()
d["text"] = d["drop"].map(lambda v: f"{v:.3f}")
d["± error"] = d["err"].map(lambda v: f"{v:.3f}")
hi = max(0.1, float(d["drop"].quantile(0.9)))
clean = sky.pivot_table(index="method", columns="training", values="r2_clean").reindex(order).dropna(how="all")
clean = clean[[c for c in robustness.TRAINING_LABEL.values() if c in clean.columns]]
st.dataframe(clean, width=620, column_config={c: st.column_config.NumberColumn(f"R² {c}", format="%.3f") for c in clean.columns})
st.caption("R² on the unperturbed test set of each training's own sky: telluric-free spectra without augmentation, "
           "typical tellurics (PWV 2 mm, airmass 1.2) with it. The augmented training set always has tellurics "
           "(airmass ≥ 1, PWV ≥ 0.3 mm), so its networks can score much worse on telluric-free spectra (the families "
           "RV error … tellurics below, against the telluric-free set); the target is judged on the last family, "
           "the same perturbations over typical tellurics.")
for family in robustness.FAMILIES:
    f = d[d["family"] == family]
    if f.empty:
        continue
    levels = [p.level for p in robustness.SETS if p.family == family and p.key in set(f["key"])]
    base = alt.Chart(f).encode(x=alt.X("level:N", sort=levels, title=None, axis=alt.Axis(labelAngle=0)),
                               y=alt.Y("method:N", sort=order, title=None, axis=alt.Axis(labelLimit=260)))
    heat = base.mark_rect().encode(
        color=alt.Color("drop:Q", title="ΔR²", scale=alt.Scale(scheme="orangered", domain=[0, hi], clamp=True)),
        tooltip=["method", "training", "perturbation", alt.Tooltip("r2_clean:Q", format=".3f", title="R² unperturbed"),
                 alt.Tooltip("r2:Q", format=".3f", title="R² perturbed"), alt.Tooltip("drop:Q", format=".3f", title="ΔR²"),
                 "± error", "seeds"])
    txt = base.mark_text(fontSize=10).encode(text="text:N", color=alt.condition(f"datum.drop > {hi / 2}", alt.value("white"),
                                                                                  alt.value("black")))
    st.subheader(family)
    st.altair_chart((heat + txt).properties(width=max(150, 62 * len(levels)), height=alt.Step(22))
                    .facet(column=alt.Column("training:N", title=None, sort=list(robustness.TRAINING_LABEL.values()))))
st.caption(f"Rows: the report's predictors (best unperturbed R² first); noise level {noise:g}"
           + (f"; with augmentation also the likelihood ceiling that marginalises the {rsuite.RECIPE} priors' nuisances, "
              f"on the first {ceiling.attrs.get('n_stars')} test stars of the target's sets: what the spectrum itself loses"
              if len(ceiling) and noise == robustness.TARGET_NOISE else "") + f". Colour clipped at ΔR² "
           f"{hi:.2f}; values below 0 (the perturbed set scored better) take the palest colour. Target of #18: with augmentation "
           f"the best predictor loses ≤ {robustness.TARGET_DROP} on RV ≤ 5 km/s, R ± 10 % and tilts ≤ ±2 % at noise 0.1.")
st.download_button("Download the table (CSV)", df.to_csv(index=False).encode(), "robustness.csv", "text/csv")
st.caption(f"{len(suites.suite(rsuite.SUITE, profile, dataset))} specs in the suite: `python -m core train --suite "
           f"{rsuite.SUITE} --profile {profile}`; numbers: `python benchmarks/robustness.py`.")
