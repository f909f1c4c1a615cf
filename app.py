"""The dashboard's entry point: `streamlit run app.py`.

Draws the sidebar (data set, profile, noise level, device), builds the quick data set on the
very first start, and runs the page chosen in the navigation. Pages live in pages/, one file
a view; add a page by appending to PAGES.
"""
import streamlit as st

st.set_page_config(page_title="log g from spectra", page_icon=":material/star:", layout="wide")

from core import appstate  # noqa: E402  (set_page_config must be the first Streamlit call)

PAGES = [
    st.Page("pages/data.py", title="Data", icon=":material/database:", default=True),
]


def first_start() -> None:
    """No data set in artifacts/ yet: build the quick one here, with a progress bar, then rerun."""
    st.title("Setting up: building the quick data set")
    n = appstate.bootstrap_size()
    st.write(f"There is no data set in `artifacts/data/` yet, so the app simulates the quick one "
             f"({n:,} spectra). This happens once and takes about a minute on a 2-core CPU.")
    bar = st.progress(0.0, text="starting the simulator")
    appstate.bootstrap(progress=lambda frac, msg: bar.progress(float(frac), text=msg))
    bar.progress(1.0, text="done")
    st.rerun()


with appstate.friendly_errors("Setting up"):
    if appstate.needs_bootstrap():
        first_start()

page = st.navigation(PAGES, position="sidebar")
device_slot = None
with appstate.friendly_errors("The sidebar"):
    device_slot = appstate.sidebar()
try:
    with appstate.friendly_errors(f"The {page.title} page"):
        page.run()
finally:
    with appstate.friendly_errors("The device check"):
        appstate.show_device(device_slot)
