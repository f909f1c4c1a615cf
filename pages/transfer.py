"""Transfer: each key method trained on one physics variant of the simulator and tested on every other
(the transfer suite, core/analysis/transfer.py): one heatmap of R² per method, and which of the lab's
conclusions survive a change of the simulator's assumptions."""
from __future__ import annotations

import altair as alt
import streamlit as st

from core import config
from core.analysis import breakdown, transfer
from core.engine.suites import transfer as tsuite
from pages._ui import appstate
from pages._ui.conclusion import queue_button

st.title("Transfer across simulator assumptions")
ds = appstate.require_dataset()
profile = st.session_state.get("profile", "quick")
# the variants are built around the profile's data set (or around a data set of the user's own)
base = None if (ds.name == config.profile(profile)["dataset"] or ds.physics_recipe is not None) else ds.name


def _cell_files() -> int:
    folder = config.artifacts_dir() / "transfer"
    return len(list(folder.glob("*.npz"))) if folder.exists() else 0


@st.cache_data(show_spinner=False, ttl=10)
def load(profile: str, base: str | None, state: tuple, cells: int) -> dict:
    """`state` (the registry's) and `cells` (cached cell files) refresh it."""
    return transfer.page_data(profile, base)


state = tuple(breakdown.registry_state(tsuite.variant_dataset(profile, base, v)) for v in tsuite.VARIANTS)
d = load(profile, base, state, _cell_files())
st.info(f"**Conclusion.** {d['sentence']}", icon=":material/lightbulb:" if len(d["cells"]) else ":material/pending:")
st.caption(f"Each model is trained on one variant of the simulator (rows) and scored on the test split of every "
           f"variant (columns), at noise {d['noise']:g}; the diagonal is its own test R². The variants change one "
           "assumption each: the majority-species gravity scaling x (0.4 as built) and the seed of the invented "
           "weak Fe I forest (docs/simulator.md, 'Physics variants'). "
           + ("Every variant holds the same stars (labels, S/N, splits): only the physics that made the spectra "
              "differs." if d["same_stars"] else "The variants do NOT hold the same stars (built with other seeds "
                                                 "or sizes): cells compare different test sets.")
           + f" The likelihood ceiling (a fit with the training variant's simulator) is scored on the first "
             f"{d['ceiling_stars']} test stars only.")

if d["missing_runs"]:
    st.caption(f"{len(d['missing_runs'])} of the suite's runs have not finished (`python -m core train --suite "
               f"transfer --profile {profile}`); missing variant data sets are built by the job.")
    queue_button(d["missing_runs"], f"transfer, {profile}", "transfer")
if d["missing_cells"]:
    st.caption(f"{d['missing_cells']} cells have their runs but no score yet (the ceiling's are the slow ones: "
               f"a likelihood fit per star, {d['ceiling_stars']} stars a cell).")
    if st.button(f"Score the {d['missing_cells']} missing cells", icon=":material/calculate:"):
        bar = st.progress(0.0, text="scoring")
        transfer.page_data(profile, base, compute=True)
        bar.progress(1.0, text="done")
        load.clear()
        st.rerun()

cells = d["cells"]
if len(cells):
    lo = float(max(-1.0, min(0.0, cells["r2"].min())))     # R² below -1 all look alike (the text says how low)
    color = alt.Color("r2:Q", legend=None, scale=alt.Scale(domain=[lo, 1.0], scheme="viridis", clamp=True))
    st.caption(f"Colour: R² from {lo:g} or below (dark) to 1 (yellow); 'as built' is x = 0.4 with the version's "
               "forest, 'forest 1' and 'forest 2' the weak Fe I forest drawn with seeds 1 and 2.")
    order = d["labels"]
    methods = [m for m in d["methods"] if (cells["method"] == m).any()]
    for k in range(0, len(methods), 2):
        cols = st.columns(2)
        for col, method in zip(cols, methods[k:k + 2]):
            c = cells[cells["method"] == method]
            base_chart = alt.Chart(c).encode(
                x=alt.X("tested on:N", sort=order, title="tested on",
                        axis=alt.Axis(labelAngle=0, labelOverlap=False, labelFontSize=12, orient="top")),
                y=alt.Y("trained on:N", sort=order, title="trained on", axis=alt.Axis(labelFontSize=12)))
            rect = base_chart.mark_rect(stroke="white").encode(
                color=color, tooltip=["trained on", "tested on", alt.Tooltip("r2:Q", format=".3f"), "n_test"])
            text = base_chart.mark_text(fontSize=13).encode(
                text=alt.Text("r2:Q", format=".2f"),
                color=alt.condition(alt.datum.r2 > lo + 0.6 * (1.0 - lo), alt.value("black"), alt.value("white")))
            n = int(c["n_test"].iloc[0]) if c["n_test"].notna().any() else None
            col.altair_chart((rect + text).properties(title=f"{method}" + (f" ({n} test stars)" if n else ""),
                                                      height=260), width="stretch")
    st.subheader("Which conclusions survive")
    st.caption("A method ordering found on the simulator as built (a gap beyond 2 combined errors: paired "
               "bootstrap over the test stars and the training spread) is judged again within every other variant; "
               "it survives when it holds in all. A transfer claim holds when the R² a model trained as built "
               f"keeps on a variant falls by less than {transfer.DROP:g}.")
    if len(d["claims"]):
        st.dataframe(d["claims"], hide_index=True, width="stretch")
    st.subheader("Summary")
    st.markdown(d["summary"])
else:
    st.caption("No transfer run has finished yet.")
