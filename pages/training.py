"""Training: launch suites or single models as background jobs, watch the queue live,
tail a job's log, cancel a job. Training never runs inside the page: a worker process does it."""
from __future__ import annotations

import streamlit as st

from core import config
from core.analysis import conclusions
from core.engine import executor, jobs, suites
from core.engine.spec import replicates
from pages._ui import appstate, job_panels

st.title("Training")
ds = appstate.require_dataset()
st.caption("Runs go to a background worker; this page stays responsive, and a reload or a second browser "
           "sees the same queue. Finished runs are cached by spec: launching them again costs nothing.")


@st.cache_data(ttl=300, show_spinner=False)
def _dask_dashboard(address: str) -> str | None:
    from core.engine import cluster
    return cluster.dashboard_link(address)


if executor.scheduler_address():   # LOGG_SCHEDULER: the jobs' fits go to the group's Dask cluster
    link = _dask_dashboard(executor.scheduler_address())
    st.info(f"Fits run on the Dask cluster at `{executor.scheduler_address()}`: "
            + (f"[its dashboard]({link}) shows the workers and the tasks." if link else
               "**the scheduler does not answer**; jobs will fail until it is back (or unset LOGG_SCHEDULER)."),
            icon=":material/hub:")

c1, c2, c3 = st.columns([2, 2, 1])
suite_name = c1.selectbox("Suite", list(suites.SUITES), help="Named lists of specs (core/engine/suites/)")
profile = c3.selectbox("Profile", list(config.PROFILES), index=list(config.PROFILES).index(st.session_state.get("profile", "quick")))
all_specs = suites.suite(suite_name, profile, ds.name)
models = sorted({s["model"] for s in all_specs})
chosen = c2.multiselect("Models (empty = all of the suite)", models)
n1, n2 = st.columns([4, 1])
noises = n1.multiselect("Noise levels", list(config.NOISE_LEVELS), default=list(config.NOISE_LEVELS))
seeds = n2.number_input("Training seeds", 1, 10, config.PROFILE_SEEDS[profile], key=f"seeds_{profile}",
                        help="Replicates per spec with another training seed, the same data and test noise (as "
                             "`train --seeds`; the profile's default). Fits that use no seed (Ridge, the Cannon, "
                             "the ceiling) get one.")
specs = replicates([s for s in all_specs if (not chosen or s["model"] in chosen) and s["noise_level"] in noises],
                   int(seeds))


@st.cache_data(ttl=30, show_spinner=False)
def typical_fit_seconds(profile: str) -> dict:
    return conclusions.typical_fit_seconds(profile)


est = conclusions.estimate(specs, profile, typical=typical_fit_seconds(profile))
todo = est["todo"]
cost = conclusions.cost_phrase(est)
st.info(f"**{len(specs)} specs**: {est['n_done']} already finished (reused), {len(todo)} to fit. {cost}.",
        icon=":material/schedule:")
with st.expander(f"What will run: {len(specs)} specs ({len(todo)} to fit)", icon=":material/list:"):
    if specs:
        st.dataframe(job_panels.specs_frame(specs, todo), hide_index=True, width="stretch",
                     column_config={"noise": st.column_config.NumberColumn("noise", format="%g"),
                                    "replicate": st.column_config.NumberColumn("replicate", format="%d",
                                                                              help="training seed index (0: the first)")})
    else:
        st.caption("No spec matches the models and noise levels chosen.")
tok = job_panels.token_input("launch")
label = f"{suite_name}" + (f" ({', '.join(chosen)})" if chosen else "") + f", {profile}, noise {', '.join(f'{n:g}' for n in noises)}" \
    + (f", {int(seeds)} seeds" if seeds > 1 else "")
no_write = job_panels.read_only()
if no_write:
    st.warning(f"Browsing only: {no_write}", icon=":material/block:")
if st.button("Launch", type="primary", disabled=not specs or bool(no_write)):
    job_panels.launch(specs, label, tok)
job_panels.progress_panel()


def live_queue():
    st.subheader("Queue")
    df = job_panels.show_queue()
    if df.empty:
        return
    ids = df["job"].tolist()
    # the picker follows the job launched last (here or from a 'retrain' button), even over an earlier pick
    last = st.session_state.get("last_job")
    if last in ids and st.session_state.get("_followed_job") != last:
        st.session_state["job_pick"] = last
        st.session_state["_followed_job"] = last
    if st.session_state.get("job_pick") not in ids:
        st.session_state["job_pick"] = ids[0]
    jid = st.selectbox("Job", ids, key="job_pick")
    j = jobs.get(int(jid))
    a, b = st.columns([4, 1])
    with a:
        st.code(jobs.tail(int(jid), 25) or "(no log yet)", language=None)
    with b:
        if j and j["state"] in ("queued", "running"):
            ctok = job_panels.token_input("cancel")
            if st.button("Cancel job", key="cancel_btn", disabled=job_panels.is_cancelling(j)):
                try:
                    msg = jobs.cancel(int(jid), token=ctok)
                    job_panels.mark_cancelling(int(jid))
                    j = jobs.get(int(jid)) or j
                    st.caption(msg)
                except jobs.NotAllowed as e:
                    st.error(str(e))
            if job_panels.is_cancelling(j):
                st.info("cancelling… (the worker stops at its next progress update)", icon=":material/hourglass_top:")
            eta = job_panels.eta_text(j)
            if eta:
                st.caption(eta)
        elif j and j["state"] in ("interrupted", "failed", "cancelled"):
            rtok = job_panels.token_input("requeue")
            if st.button("Queue again (resumes)", key="requeue_btn"):
                job_panels.launch(j["specs"], j["label"], rtok)
    if j and j["state"] == "done":     # under the log, full width: in the narrow column its label was cut
        job_panels.results_link(j)


# the queue refreshes itself every 2 s while a job is active, every 15 s otherwise (job_panels.poll_seconds)
st.fragment(run_every=2 if job_panels.active_jobs() else job_panels.IDLE_POLL_S)(live_queue)()
