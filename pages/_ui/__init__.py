"""Streamlit helpers the pages share: the sidebar and loaders (appstate.py), job launch and progress
widgets (job_panels.py). The only place besides pages/ and app.py that imports streamlit."""
