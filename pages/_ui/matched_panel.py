"""The Predict page's 'Models matched to this spectrum' box: for an upload whose window, pixels or resolution
differ from the data set's, the matched data set and predictors (core/predict/matched.py), a button that
queues them as a background job, its progress, and, once they are trained, the switch that answers with them."""
from __future__ import annotations

import hashlib

import streamlit as st

from core import predict as P
from core.analysis import breakdown
from core.engine import estimates
from core.predict import matched
from pages._ui import appstate, job_panels


@st.cache_data(show_spinner=False, max_entries=16)
def _plan(digest: str, data: bytes, name: str, ds_name: str, fingerprint: str, medium: str, resolution, state: tuple):
    """The plan of an upload (cached per content, data set, medium and the registry's finished runs)."""
    item = P.read_bytes(data, name)
    if isinstance(item, P.Batch):
        return None
    p = matched.plan(item, appstate.load_dataset(ds_name), medium, resolution=resolution)
    return p, estimates.estimate(p.specs, p.recipe["profile"]) if p.needed else None


def offer(data: bytes, name: str, ds, medium: str, resolution="auto") -> str | None:
    """Draw the box when the upload needs matched models; the data set to answer with (None: ds's own)."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        out = _plan(digest, data, name, ds.name, ds.fingerprint, medium, resolution, breakdown.registry_state(None))
    except P.PredictError as e:
        st.caption(f"Matched models: {appstate.one_line(e)}")
        return None
    if out is None or not out[0].needed:
        return None
    p, est = out
    reasons = p.reasons_text()
    with st.container(border=True):
        st.markdown("**Models matched to this spectrum**")
        if p.advice:
            st.warning(p.advice[0].upper() + p.advice[1:] + ".", icon=":material/tune:")
        if p.ready:
            use = st.toggle(f"Answer with the models matched to this spectrum ({p.n_done} of {len(p.specs)} trained)",
                            value=True, key=f"matched_use_{digest[:12]}",
                            help=f"{p.summary()}. Off: the models of {ds.name}.")
            st.caption(f"This spectrum {reasons}. Matched data set **{p.name}**: the stars of {p.base} simulated on "
                       f"{p.window[0]:.0f}-{p.window[1]:.0f} Å ({p.pixels:,} pixels) at R = {p.resolution:.0f} "
                       f"({p.resolution_how}).")
            return p.name if use else None
        st.write(f"This spectrum {reasons}: the models of {ds.name} were not trained for it. "
                 f"Train the report suite's {len(p.specs)} predictors on the same stars simulated on "
                 f"{p.window[0]:.0f}-{p.window[1]:.0f} Å ({p.pixels:,} pixels) at R = {p.resolution:.0f} "
                 f"({p.resolution_how}): {estimates.minutes(est['seconds'])}, as a background job; the answer "
                 f"follows when it is done.")
        if p.dropped:
            st.caption(f"Not fitted there: {p.dropped_text()}.")
        no_write = job_panels.read_only()
        tok = job_panels.token_input("matched")
        if st.button(f"Train matched models ({len(p.specs)} fits)", key="matched_queue", icon=":material/play_arrow:",
                     disabled=not p.specs or bool(no_write), help=no_write or f"data set {p.name}"):
            try:
                jid, created = matched.request(p, f"matched models for {name}: {p.name}", tok)
            except (P.PredictError, PermissionError, OSError) as e:
                st.error(appstate.one_line(e), icon=":material/error:")
            else:
                started = job_panels.jobs.ensure_worker()
                st.session_state["last_job"] = jid
                st.success(f"Queued job {jid}" + (" - worker started." if started else ".") if created else
                           f"Already queued as job {jid}.")
        job_panels.progress_panel()
    return None
