"""Summary, the landing page: what the review meeting came for on one screen. The best predictor at each
noise level (± its combined error over training seeds and test stars) and its fraction of the physics
ceiling, the largest differences from the team's report, every verdict, what changed since a date, and
what has not run with its cost and a button to queue it. The numbers: core/analysis/conclusions.py."""
from __future__ import annotations

import datetime as _dt

import pandas as pd
import streamlit as st

from core.analysis import breakdown, conclusions
from core.analysis.reference import REPORT_LABEL
from core.engine import suites
from pages._ui import appstate, job_panels
from pages._ui.conclusion import queue_button

st.title("Summary")
ds = appstate.require_dataset()
profile = st.session_state.get("profile", "quick")
st.caption(f"Data set **{ds.name}**, profile `{profile}`. R² of log g on the held-out test split; ± is the "
           "combined error of a mean over training seeds: √(bootstrap SE over the test stars² + sd over seeds² / N).")
state = breakdown.registry_state(ds.name)


@st.cache_data(show_spinner="Reading the registry...", max_entries=8)
def headline(profile: str, dataset: str, fp: str, state: tuple) -> dict:
    """Every number of the page but the date-dependent one; `state` refreshes it when a run finishes."""
    return {"best": conclusions.best_per_noise(profile, dataset),
            "team": conclusions.team_differences(profile, dataset),
            "verdicts": conclusions.verdict_table(profile, dataset) if state[0] else pd.DataFrame(),
            "todo": conclusions.suites_not_run(profile, dataset)}


@st.cache_data(show_spinner=False, max_entries=8)
def changes(since: str, dataset: str, state: tuple) -> pd.DataFrame:
    return conclusions.changes_since(since, dataset)


@st.cache_data(show_spinner=False, max_entries=8)
def unfinished(suite: str, profile: str, dataset: str, state: tuple) -> list[dict]:
    return conclusions.estimate(suites.suite(suite, profile, dataset), profile)["todo"]


if profile == "quick" and job_panels.first_start_runs(ds.name):
    st.toast("First start: the quick report suite is queued in the background.")
job_panels.progress_panel()
h = headline(profile, ds.name, ds.fingerprint, state)
todo = h["todo"]

# ---- the best predictor at each noise level
st.subheader("Best predictor")
if not h["best"]:
    rep = todo[todo["suite"] == "report"].iloc[0]
    st.info(f"Nothing has finished on **{ds.name}** at the `{profile}` profile yet, so there is no best method. "
            f"Run the report suite first: {int(rep['not finished'])} specs, {rep['cost']} "
            f"(`python -m core train --suite report --profile {profile}`), then the ceiling suite for the physics "
            "bound. The button queues both.", icon=":material/play_circle:")
    specs = (unfinished("report", profile, ds.name, state) + unfinished("ceiling", profile, ds.name, state))
    queue_button(specs, f"report + ceiling, {profile}", "summary_empty", text=f"Queue the report suite ({len(specs)} runs)")
else:
    cols = st.columns(len(h["best"]))
    for col, b in zip(cols, h["best"]):
        col.metric(f"noise {b['noise']:g}: {b['method']}", f"R² {b['r2_text']}",
                   help=f"{b['errors']}; mean over {b['n_seeds']} training seed(s)")
    for b in h["best"]:
        st.markdown(conclusions.best_sentence(b))
    st.caption("Learned methods of the report suite (the metadata baselines left out). Fraction of the ceiling: our "
               "R² over the likelihood ceiling's R² on the same test stars, its error from the same bootstrap. "
               "A lead within 2 combined errors is a tie. Details: the Overview page.")

# ---- where we differ from the team
st.subheader("Biggest differences from the team's report")
if h["team"].empty:
    st.caption("No finished run has a number in the team report to compare with yet.")
else:
    # a static table: its cells wrap, so nothing is cut at a projector's 1280 px (a data grid scrolls instead)
    st.table(h["team"].rename(columns={"errors": "our error"}).style.hide(axis="index").format({"noise": "{:g}"}))
    st.caption(f"The three largest |ours − team| in test R²; team: {REPORT_LABEL} (their data set, no error given). "
               "Different data: a difference is a finding to explain, not an error.")

# ---- the verdicts
st.subheader("Verdicts")
if h["verdicts"].empty:
    st.caption("No verdict before the first runs finish.")
else:
    v = h["verdicts"]
    st.table(v.style.hide(axis="index"))
    counts = v["verdict"].value_counts()
    st.caption(" · ".join(f"{n} {k}" for k, n in counts.items()) + ". Verified or refuted: the statistic is more "
               "than 2 combined errors from its threshold; the rules are in the Digest.")

# ---- what changed
st.subheader("What changed")
since = st.date_input("Since", value=_dt.date.today() - _dt.timedelta(days=7), key="summary_since")
ch = changes(since.isoformat(), ds.name, state)
if ch.empty:
    st.caption(f"No run of this data set finished since {since.isoformat()}.")
else:
    moved = ch["change"].notna()
    st.markdown(f"**{len(ch)} runs** finished since {since.isoformat()}: {int((~moved).sum())} first fits, "
                f"{int(moved.sum())} refits" + (f" (largest move in R² {ch.loc[ch['change'].abs().idxmax(), 'change']:+.3f}, "
                                               f"{ch.loc[ch['change'].abs().idxmax(), 'method']})" if moved.any() else "") + ".")
    with st.expander("The runs", icon=":material/history:"):
        st.dataframe(ch, hide_index=True, width="stretch", column_config={
            c: st.column_config.NumberColumn(c, format="%.3f") for c in ("R2 before", "R2 now", "change")})

# ---- what has not run
st.subheader("What has not run")
missing = todo[todo["not finished"] > 0]
if missing.empty:
    st.success(f"Every spec of every suite has finished at the `{profile}` profile.")
else:
    for _, r in missing.iterrows():
        st.markdown(f"- `{r['suite']}`: **{int(r['not finished'])} of {int(r['specs'])}** specs not finished, "
                    f"{r['cost']}" + (f" (+{int(r['never timed'])} of models never timed here)"
                                      if r["never timed"] and r["cost"] != "cost unknown" else ""))
    st.caption("Cost: medians of earlier fit times of the same model at this profile, "
               "side by side on the job's workers (the Training page's estimate).")
    c1, c2 = st.columns([2, 3])
    pick = c1.selectbox("Suite to queue", list(missing["suite"]), key="summary_suite")
    specs = unfinished(pick, profile, ds.name, state)
    with c2:
        st.write("")
        queue_button(specs, f"{pick}, {profile}", "summary_missing", text=f"Queue the {len(specs)} unfinished runs "
                     f"of {pick}")
