"""Streamlit widgets for the job queue, shared by the Training page and the 'retrain this'
button of every result page. The logic (queue, worker, token) is in core/engine/jobs.py."""
from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from core.engine import jobs, registry

STATE_ICON = {"queued": "⏳", "running": "▶️", "done": "✅", "failed": "❌", "cancelled": "⏹️", "interrupted": "⚠️"}


def token_input(key: str) -> str | None:
    """A password field, shown only when the server has an admin token (LOGG_ADMIN_TOKEN or _FILE)."""
    if not (os.environ.get("LOGG_ADMIN_TOKEN") or os.environ.get("LOGG_ADMIN_TOKEN_FILE")):
        return None
    return st.text_input("Admin token", type="password", key=f"token_{key}",
                         help="This server asks for a token before launching or cancelling jobs.")


def read_only() -> str | None:
    """Why this artifacts folder takes no jobs (read-only, full disk, ulimit -f), or None."""
    try:
        registry.require_writable(jobs.connect())
    except registry.StorageError as e:
        return str(e).replace("; nothing was changed", "")
    return None


def launch(specs: list[dict], label: str, token: str | None) -> int | None:
    """Queue specs and make sure a worker runs; reports the outcome in the page."""
    try:
        jid, created = jobs.submit(specs, label=label, token=token)
    except jobs.NotAllowed as e:
        st.error(str(e), icon=":material/lock:")
        return None
    except registry.StorageError as e:
        st.error(str(e), icon=":material/block:")
        return None
    started = jobs.ensure_worker()
    if created:
        st.success(f"Queued job {jid}: {label} ({len(specs)} specs)" + (" - worker started." if started else "."))
    else:
        st.info(f"The same specs are already queued or running as job {jid}; not queued twice.")
    st.session_state["last_job"] = jid
    return jid


def retrain_button(specs: list[dict], label: str, key: str) -> None:
    """'Retrain this': enqueue exactly the specs behind a view (refitting them: force via new seed is
    not used; finished runs are cached, so this fills what is missing or failed)."""
    with st.expander("Retrain this view", icon=":material/model_training:"):
        st.caption(f"Queues the {len(specs)} specs behind this view as one background job. Finished runs are "
                   "reused from the cache; missing or failed ones are fitted.")
        tok = token_input(key)
        if st.button("Queue these runs", key=f"retrain_{key}"):
            launch(specs, label, tok)


def queue_frame(limit: int = 30) -> pd.DataFrame:
    rows = []
    for j in jobs.list_jobs(limit):
        p = j["progress"] or {}
        where = ""
        if p:
            where = f"spec {p.get('spec')}/{p.get('of')}: {p.get('model', '')} @ noise {p.get('noise_level', '')}"
            if "epoch" in p:
                where += f", epoch {p['epoch']}" + (f"/{p['epochs']}" if "epochs" in p else "")
                if "val_loss" in p:
                    where += f", val loss {float(p['val_loss']):.4f}"
            if "building" in p:
                where += f" ({p['building']})"
        frac = (p.get("spec", 0) - (0 if j["state"] in ("done",) else 1)) / max(1, p.get("of", 1)) if p else 0.0
        if j["state"] == "done":
            frac = 1.0
        rows.append({"job": j["job_id"], "state": f"{STATE_ICON.get(j['state'], '')} {j['state']}", "what": j["label"],
                     "progress": max(0.0, min(1.0, frac)), "now": where, "queued": j["created"],
                     "started": j["started"] or "", "finished": j["finished"] or "", "error": j["error"] or ""})
    return pd.DataFrame(rows)


def show_queue(limit: int = 30) -> pd.DataFrame:
    df = queue_frame(limit)
    if df.empty:
        st.caption("No jobs yet.")
        return df
    st.dataframe(df, hide_index=True, width="stretch", column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent")})
    st.caption(f"Worker: {'running' if jobs.worker_alive() else 'idle (starts when a job is queued)'} · "
               f"registry {registry.now()}")
    return df


def first_start_runs(dataset: str | None) -> int | None:
    """First start: with no runs and no jobs in the registry, queue the quick report suite (the
    worker builds the quick data set if it is missing). Returns the job id queued, if any.
    Writes no token check: it only runs when nothing has ever been run here."""
    from core.engine import suites
    if os.environ.get("LOGG_FIRST_START", "1") == "0":  # the test suite turns the automatic first run off
        return None
    con = jobs.connect()
    if con.readonly or not jobs.registry_is_empty(con):   # a read-only archive is shown, never trained into
        return None
    specs = suites.suite("report", "quick", dataset)
    jid, _ = jobs.submit(specs, label="first start: report suite, quick", token=jobs.admin_token(), con=con)
    jobs.ensure_worker()
    return jid


def active_jobs() -> list[dict]:
    return [j for j in jobs.list_jobs(20) if j["state"] in ("queued", "running")]


@st.fragment(run_every=3)
def progress_panel() -> None:
    """Live progress of queued/running jobs; reruns the whole page when one finishes so the
    results it produced appear."""
    act = active_jobs()
    was = st.session_state.get("_active_jobs", set())
    now_ids = {j["job_id"] for j in act}
    st.session_state["_active_jobs"] = now_ids
    if was - now_ids:
        st.cache_data.clear()
        st.rerun(scope="app")
    if not act:
        return
    for j in act:
        p = j["progress"] or {}
        frac = (max(0, p.get("spec", 1) - 1) / max(1, p.get("of", 1))) if p else 0.0
        what = f"job {j['job_id']} ({j['label']}): {j['state']}"
        if p:
            what += f" - spec {p.get('spec')}/{p.get('of')} {p.get('model', '')} @ noise {p.get('noise_level', '')}"
            if "epoch" in p:
                what += f", epoch {p['epoch']}" + (f"/{p['epochs']}" if "epochs" in p else "")
            if "building" in p:
                what += f" - {p['building']}"
        st.progress(min(1.0, frac), text=what)
