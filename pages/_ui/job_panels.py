"""Streamlit widgets for the job queue, shared by the Training page and the 'retrain this'
button of every result page. The logic (queue, worker, token) is in core/engine/jobs.py."""
from __future__ import annotations

import datetime as _dt
import os

import pandas as pd
import streamlit as st

from core.engine import jobs, registry, suites

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
        where = running_text(p, j.get("specs") or [], loss=True) if p else ""
        frac = (p.get("spec", 0) - (0 if j["state"] in ("done",) else 1)) / max(1, p.get("of", 1)) if p else 0.0
        if j["state"] == "done":
            frac = 1.0
        state = "cancelling…" if is_cancelling(j) else j["state"]
        rows.append({"job": j["job_id"], "state": f"{STATE_ICON.get(j['state'], '')} {state}", "what": j["label"],
                     "progress": max(0.0, min(1.0, frac)),
                     "now": f"error: {j['error']}" if j["error"] else where,
                     "queued": _short_time(j["created"]), "finished": _short_time(j["finished"])})
    return pd.DataFrame(rows)


def _short_time(stamp: str | None) -> str:
    """'2026-12-06T20:49:14+00:00' -> '12-06 20:49' (UTC, as the registry stores it). The queue had three
    full timestamps and an error column: at 1280 px, 'now' was cut and the rest needed a scroll."""
    return f"{stamp[5:10]} {stamp[11:16]}" if stamp and len(stamp) >= 16 else (stamp or "")


def show_queue(limit: int = 30) -> pd.DataFrame:
    df = queue_frame(limit)
    if df.empty:
        st.caption("No jobs yet.")
        return df
    text = st.column_config.TextColumn      # the widths add up to 795 px: the main column at 1280 px
    st.dataframe(df, hide_index=True, width="stretch", column_config={
        "job": st.column_config.NumberColumn("job", width=40), "state": text("state", width=105),
        "what": text("what", width=190), "now": text("now", width=200, help="the spec running, or the error"),
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                    width=90),
        **{k: text(k, width=85, help="UTC") for k in ("queued", "finished")}})
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


# how often the live panels look at the queue: often while a job runs, rarely when none does (a page that
# reran every 2 s while idle kept the app busy and its status widget on, for nothing)
ACTIVE_POLL_S, IDLE_POLL_S = 3, 15


def poll_seconds() -> int:
    return ACTIVE_POLL_S if active_jobs() else IDLE_POLL_S


def progress_panel() -> None:
    """Live progress of queued/running jobs, polled every ACTIVE_POLL_S while one is active (IDLE_POLL_S
    otherwise); reruns the whole page when one finishes so the results it produced appear."""
    st.fragment(run_every=poll_seconds())(_progress_panel)()


def _progress_panel() -> None:
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
        what = f"job {j['job_id']} ({j['label']}): {'cancelling…' if is_cancelling(j) else j['state']}"
        if p:
            what += " - " + running_text(p, j.get("specs") or [])
        eta = eta_text(j)
        st.progress(min(1.0, frac), text=what + (f" · {eta}" if eta else ""))


# --------------------------------------------------------------------------- what a job runs, in words
INPUT_NAMES = {"meta": "metadata", "flux": "flux", "flux+error": "flux + error"}
# the page that shows a suite's results (pages not named here: the Overview)
RESULT_PAGES = {"report": ("pages/overview.py", "Overview"), "dilation": ("pages/dilation.py", "Dilation"),
                "topk": ("pages/saliency.py", "Saliency"), "latent": ("pages/latent.py", "Latent"),
                "error_ablation": ("pages/error_vs_flux.py", "Error vs flux")}


def input_of(spec: dict) -> str:
    """The spec's input in words: its own `inputs`, or its family's usual one."""
    from models import MODELS
    inp = spec.get("inputs") or getattr(MODELS.get(spec.get("model")), "inputs", None) or "?"
    from core.engine.suites.ablation import INPUT_LABELS
    return INPUT_NAMES.get(inp) or INPUT_LABELS.get(inp, inp)


def spec_text(spec: dict) -> str:
    """'MLP on flux': the method's human label (suites.row_label) and its input."""
    return f"{suites.row_label(spec)} on {input_of(spec)}"


def specs_frame(specs: list[dict], todo: list[dict] | None = None) -> pd.DataFrame:
    """One row per spec: what will run (label, input, noise level, replicate) and whether it is reused."""
    fit = {id(s) for s in todo} if todo is not None else None
    return pd.DataFrame([{"method": suites.row_label(s), "input": input_of(s), "noise": float(s["noise_level"]),
                          "replicate": int(s.get("replicate") or 0),
                          **({"status": "to fit" if id(s) in fit else "cached (reused)"}
                             if fit is not None else {})} for s in specs])


def _strip(params: dict | None) -> dict:
    return {k: v for k, v in (params or {}).items() if k not in ("noise_mode", "training")}


def running_text(p: dict, specs: list[dict], loss: bool = False) -> str:
    """'spec 3/8: MLP on flux @ noise 0.1, epoch 4/30' from a job's progress; the method and input come from
    the job's own specs (progress names only the model families being fitted, " + "-joined)."""
    out = f"spec {p.get('spec')}/{p.get('of')}"
    names = [m for m in str(p.get("model", "")).split(" + ") if m]
    if names:
        noise, texts = p.get("noise_level"), []
        for i, m in enumerate(names):
            cands = [s for s in specs if s.get("model") == m]
            best = [s for s in cands if s.get("noise_level") == noise and (i or _strip(s.get("params")) == _strip(p.get("params")))]
            s = (best or cands or [None])[0]
            texts.append(spec_text(s) if s else m)
        texts = list(dict.fromkeys(texts))
        out += ": " + " + ".join(texts) + (f" @ noise {float(noise):g}" if noise not in (None, "") else "")
    if "epoch" in p:
        if p.get("until") == "flat":   # training to convergence: the epoch count is a ceiling
            out += f", epoch {p['epoch']} (until the validation loss is flat, at most {p.get('epochs', '?')})"
        else:
            out += f", epoch {p['epoch']}" + (f"/{p['epochs']}" if "epochs" in p else "")
        if loss and "val_loss" in p:
            out += f", val loss {float(p['val_loss']):.4f}"
    if "building" in p:
        out += f" ({p['building']})"
    return out


def _seconds_since(stamp: str | None) -> float | None:
    try:
        t = _dt.datetime.fromisoformat(str(stamp))
    except (TypeError, ValueError):
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, (_dt.datetime.now(_dt.timezone.utc) - t).total_seconds())


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def eta_text(job: dict) -> str | None:
    """'elapsed 2.1 min · ETA ~3.4 min (mean 25 s per finished spec × 8 left)' for a running job; the ETA
    only once a spec has finished (the job's own pace, cached specs included)."""
    if job.get("state") != "running":
        return None
    el = _seconds_since(job.get("started"))
    if el is None:
        return None
    p = job.get("progress") or {}
    n_fin, of = int(p.get("spec", 1)) - 1, int(p.get("of", 0) or 0)
    if n_fin < 1 or of <= n_fin:
        return f"elapsed {_dur(el)}"
    per = el / n_fin
    return f"elapsed {_dur(el)} · ETA ~{_dur(per * (of - n_fin))} (mean {_dur(per)} per finished spec × {of - n_fin} left)"


def is_cancelling(job: dict) -> bool:
    """Cancel asked (here, or by anyone: the registry's flag) and the job not stopped yet."""
    asked = bool(job.get("cancel")) or job.get("job_id") in st.session_state.get("_cancelling", set())
    return asked and job.get("state") in ("queued", "running")


def mark_cancelling(job_id: int) -> None:
    st.session_state.setdefault("_cancelling", set()).add(job_id)


def results_link(job: dict) -> None:
    """A finished job: a link to the page showing its suite's results."""
    suite = next((s.get("suite") for s in job.get("specs") or [] if s.get("suite")), None)
    path, title = RESULT_PAGES.get(suite, ("pages/overview.py", "Overview"))
    st.page_link(path, label=f"Results of job {job['job_id']}: the {title} page", icon=":material/arrow_forward:")
