"""The dashboard's entry point: `streamlit run app.py`.

Draws the sidebar (data set, profile, noise level, device), builds the quick data set on the
very first start, starts the warm-up of the first pages' numbers (pages/_ui/warm.py), and runs the page chosen in
the navigation (the Summary by default). Pages live in pages/, one file a view; add a page to its section of PAGES.
"""
import streamlit as st

st.set_page_config(page_title="log g from spectra", page_icon="⭐", layout="wide")

import os  # noqa: E402

from pages._ui import appstate, warm  # noqa: E402  (set_page_config must be the first Streamlit call)

# once per server process: libraries imported and the landing pages' numbers read in the background, so
# the first visitor does not wait for them (pages/_ui/warm.py; LOGG_WARM_START=0 turns it off)
if os.environ.get("LOGG_WARM_START", "1") != "0":
    warm.start(os.environ.get("LOGG_PROFILE", "quick"))

# the sidebar's sections, in the order a review meeting reads them; every page is listed (expanded=True:
# Streamlit would otherwise fold a navigation of more than 10 pages behind "View more")
PAGES = {
    "The answer": [
        st.Page("pages/summary.py", title="Summary", icon=":material/dashboard:", default=True),
        st.Page("pages/overview.py", title="Overview", icon=":material/leaderboard:"),
        st.Page("pages/digest.py", title="Digest", icon=":material/summarize:"),
    ],
    "The team's questions": [
        st.Page("pages/error_vs_flux.py", title="Error vs flux", icon=":material/compare_arrows:"),
        st.Page("pages/dilation.py", title="Dilation", icon=":material/blur_on:"),
        st.Page("pages/saliency.py", title="Saliency", icon=":material/visibility:"),
        st.Page("pages/latent.py", title="Latent", icon=":material/hub:"),
    ],
    "How far it holds": [
        st.Page("pages/limit.py", title="Limit", icon=":material/trending_up:"),
        st.Page("pages/robustness.py", title="Robustness", icon=":material/shield:"),
        st.Page("pages/transfer.py", title="Transfer", icon=":material/swap_horiz:"),
    ],
    "Data and work": [
        st.Page("pages/data.py", title="Data", icon=":material/database:"),
        st.Page("pages/training.py", title="Training", icon=":material/model_training:"),
        st.Page("pages/predict.py", title="Predict", icon=":material/query_stats:"),
    ],
}


def first_start() -> None:
    """No data set in artifacts/ yet: build the quick one here, with a progress bar, then rerun."""
    st.title("Setting up: building the quick data set")
    n = appstate.bootstrap_size()
    secs = 10 + n / 60  # starting torch and the simulator, then about 60 spectra a second on 2 CPU cores
    when = (f"under {10 * (int(secs) // 10 + 1)} seconds" if secs <= 45 else
            "about a minute" if secs < 90 else f"about {secs / 60:.0f} minutes")
    st.write(f"There is no data set in `artifacts/data/` yet, so the app simulates the quick one "
             f"({n:,} spectra). This happens once and takes {when} on a 2-core CPU.")
    bar = st.progress(0.0, text="starting the simulator")
    appstate.bootstrap(progress=lambda frac, msg: bar.progress(float(frac), text=msg))
    bar.progress(1.0, text="done")
    st.rerun()


# Navigation first: before it is called, Streamlit would list every file of pages/ on its own.
page = st.navigation(PAGES, position="sidebar", expanded=True)

with appstate.friendly_errors("Setting up"):
    if appstate.needs_bootstrap():
        first_start()

with appstate.friendly_errors("The sidebar"):
    appstate.sidebar()
with appstate.friendly_errors(f"The {page.title} page"):
    page.run()
