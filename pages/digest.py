"""Digest: the group's meeting report written from the registry (core/analysis/digest.py), in English or
Chinese, downloadable as Markdown to paste or as one HTML file with the key charts (digest_html.py). Every
number of ours carries a reference [rN] into the footnote of run ids at its end."""
from __future__ import annotations

import datetime as _dt

import streamlit as st

from core.analysis import digest, digest_html
from pages._ui import appstate

st.title("Meeting digest")
ds = appstate.require_dataset()
profile = st.session_state.get("profile", "quick")
c1, c2 = st.columns(2)
lang = c1.radio("Language", ["en", "zh"], format_func=lambda x: {"en": "English", "zh": "中文"}[x], horizontal=True)
since = c2.date_input("Mark questions answered since", value=_dt.date.today() - _dt.timedelta(days=7))
md = digest.build(profile, ds.name, since=since.isoformat(), lang=lang)
b1, b2, _ = st.columns([1, 1, 3])
b1.download_button("Download Markdown", md.encode(), f"digest_{ds.name}_{lang}.md", "text/markdown")
# the HTML draws its charts (a few seconds): only when the button is pressed, on Streamlit's download thread
b2.download_button("Download HTML with charts",
                   lambda: digest_html.build(profile, ds.name, since=since.isoformat(), lang=lang).encode(),
                   f"digest_{ds.name}_{lang}.html", "text/html")
st.caption("Verdicts come from the rules written next to each hypothesis in core/analysis/hypotheses.py, each gap "
           "judged against 2 combined errors (bootstrap over the test stars and spread over training seeds, "
           "core/analysis/verdicts.py); a hypothesis whose runs are missing reads 'not run'. [rN] points to the "
           "footnote of run ids at the end.")
st.markdown(md)
