"""The one-sentence conclusion a result page opens with, and the button that queues what it lacks.
The sentences are made in core/analysis/conclusions.py; this only draws and caches them."""
from __future__ import annotations

import streamlit as st

from core.analysis import breakdown, conclusions
from pages._ui import job_panels


@st.cache_data(show_spinner=False, max_entries=16)
def _page(name: str, profile: str, dataset: str, fp: str, state: tuple) -> conclusions.Conclusion:
    """`state` (finished runs, last update: breakdown.registry_state) refreshes it when a run finishes."""
    return conclusions.page(name, profile, dataset)


def queue_button(specs: list[dict], label: str, key: str, text: str | None = None) -> None:
    """A button that queues `specs` as one background job (admin token and read-only registry respected)."""
    no_write = job_panels.read_only()
    tok = job_panels.token_input(key)
    if st.button(text or f"Queue the {len(specs)} unfinished runs", key=f"queue_{key}", icon=":material/play_arrow:",
                 disabled=not specs or bool(no_write), help=no_write or f"one background job: {label}"):
        job_panels.launch(specs, label, tok)


def show(c: conclusions.Conclusion, key: str) -> None:
    """The sentence in an info box, and a queue button when they are."""
    st.info(f"**Conclusion.** {c.text}",
            icon=":material/pending:" if c.verdict == "not run" else ":material/lightbulb:")
    if c.verdict == "not run" and c.todo:
        queue_button(c.todo, c.label, key)


def page_conclusion(name: str, profile: str, ds) -> conclusions.Conclusion:
    """Compute (cached on the registry's state) and draw the conclusion of result page `name`."""
    c = _page(name, profile, ds.name, ds.fingerprint, breakdown.registry_state(ds.name))
    show(c, f"conclusion_{name}")
    return c
