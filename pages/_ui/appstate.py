"""Shared helpers for the Streamlit pages: the sidebar, the active data set, cached loaders,
one-line error reporting and the first-start bootstrap. What the pages compute lives in core/
(the Data page's numbers: core/analysis/data_summary.py).

Session state keys (set by the sidebar that app.py draws on every run):
  dataset      name of the active data set (a file artifacts/data/NAME.h5)
  profile      'quick' | 'default' | 'full' (sizes and epochs for new runs; core/config.py)
  noise_level  0.1 | 1.0, the noise level model pages default to
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import pandas as pd
import streamlit as st

from core import config, data
from core.analysis.data_summary import snr_table

log = logging.getLogger("logg.app")

# Zoom windows of the spectrum charts, in Angstrom: the two log g regions, then the whole range.
# --------------------------------------------------------------------------- errors
def one_line(e: BaseException) -> str:
    """A one-line, user-facing reason for an exception (no traceback)."""
    msg = str(e).strip().splitlines()[0].strip() if str(e).strip() else ""
    if isinstance(e, (data.DataError, FileNotFoundError)) and msg:
        text = msg
    else:
        text = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@contextmanager
def friendly_errors(what: str = "This page"):
    """Run a block; an exception becomes one st.error line (the traceback goes to the server log).
    Streamlit's own control flow (st.rerun, st.stop, st.switch_page) is not an Exception and passes."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - the point is to catch everything a page raises
        log.exception("%s failed", what)
        st.error(f"{what} stopped: {one_line(e)}", icon=":material/error:")


# --------------------------------------------------------------------------- device
def device() -> str:
    """'cuda', 'mps' or 'cpu': the device torch models train on here (the trainer's own choice)."""
    from models.trainer import pick_device
    return pick_device()


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    import torch
    d = device()
    if d == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"{d} ({torch.get_num_threads()} threads)" if d == "cpu" else d


# --------------------------------------------------------------------------- loaders
@st.cache_resource(show_spinner=False, max_entries=8)
def _load_dataset(path: str, mtime_ns: int) -> data.Dataset:
    return data.Dataset(Path(path))


def load_dataset(name: str) -> data.Dataset:
    """The data set NAME, opened once per file version (a rebuilt file is re-read)."""
    p = data.dataset_path(name)
    if not p.exists():
        raise data.DataError(f"data set {name!r} not found in {p.parent}")
    return _load_dataset(str(p), p.stat().st_mtime_ns)


@st.cache_resource(show_spinner=False)
def simulator():
    """The built-in simulator on the CPU (one spectrum at a time is faster there than on a GPU)."""
    from core.physics import simulate
    return simulate.default_simulator("cpu")


@st.cache_data(show_spinner=False, max_entries=16)
def _snr_cached(path: str, fingerprint: str, mtime_ns: int, max_rows: int) -> pd.DataFrame:
    return snr_table(data.Dataset(Path(path)), max_rows=max_rows)


def snr_table_cached(ds: data.Dataset, max_rows: int = 20000) -> pd.DataFrame:
    return _snr_cached(str(ds.path), ds.fingerprint, ds.path.stat().st_mtime_ns, max_rows)


# --------------------------------------------------------------------------- active data set / sidebar
def datasets() -> list[str]:
    return data.list_datasets()


def active_dataset() -> str | None:
    """The data set chosen in the sidebar, or the first one there is (None when there is none)."""
    names = datasets()
    if not names:
        return None
    cur = st.session_state.get("dataset")
    return cur if cur in names else names[0]


def require_dataset() -> data.Dataset:
    """The active data set, or an info box and st.stop() when there is none."""
    leave_legacy_multipage_mode()  # every page calls this first; see the function
    name = active_dataset()
    if name is None:
        st.info("No data set yet. Reload the app to build the quick one, or run "
                "`python -m core data build --profile quick`.")
        st.stop()
    return load_dataset(name)


def _profile_label(name: str) -> str:
    p = config.PROFILES[name]
    return f"{name} · {p['n_spectra']:,} spectra"


def sidebar() -> None:
    """Data set, profile and noise level, kept in st.session_state across pages, and the device."""
    names = datasets()
    if st.session_state.get("dataset") not in names:
        st.session_state["dataset"] = names[0] if names else None
    st.session_state.setdefault("profile", os.environ.get("LOGG_PROFILE", "quick")
                                if os.environ.get("LOGG_PROFILE") in config.PROFILES else "quick")
    st.session_state.setdefault("noise_level", config.NOISE_LEVELS[-1])
    with st.sidebar:
        st.selectbox("Data set", names, key="dataset",
                     help="HDF5 files in artifacts/data/ (build with `python -m core data build`, "
                          "import with `python -m core data import FILE.h5`)")
        if st.session_state.get("dataset"):
            try:
                ds = load_dataset(st.session_state["dataset"])
                st.caption(f"{ds.n:,} spectra × {ds.n_pix:,} pixels · fingerprint `{ds.fingerprint}`")
            except Exception as e:  # noqa: BLE001
                st.error(one_line(e), icon=":material/error:")
        st.selectbox("Profile", list(config.PROFILES), key="profile", format_func=_profile_label,
                     help="Sizes and epochs for new runs (core/config.py): quick for CI and a first "
                          "look, default for a laptop reproduction, full for a GPU.")
        st.radio("Noise level", config.NOISE_LEVELS, key="noise_level", horizontal=True,
                 help="The error vector is multiplied by this before noise is drawn; "
                      "model pages use it. The Data page shows both levels.")
        # before the page runs: a page that calls st.stop() (Predict, waiting for a file) ends the
        # script run, and nothing can be drawn after it
        st.caption(f"Device: **{device_label()}**")


# --------------------------------------------------------------------------- first start
_BOOTSTRAP_LOCK = threading.Lock()


def bootstrap_size() -> int:
    """Spectra in the first-start data set: the quick profile, or LOGG_BOOTSTRAP_N when set."""
    env = os.environ.get("LOGG_BOOTSTRAP_N", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise data.DataError(f"LOGG_BOOTSTRAP_N must be a whole number, got {env!r}") from None
        return n
    return int(config.profile("quick")["n_spectra"])


def needs_bootstrap() -> bool:
    return not datasets()


def bootstrap(progress: Callable[[float, str], None] | None = None) -> Path | None:
    """Build the quick data set when artifacts/data/ is empty. Sessions of one server run in
    threads of one process, so a lock keeps two first visits from building the same file."""
    with _BOOTSTRAP_LOCK:
        if datasets():
            return None
        return data.build(profile="quick", n=bootstrap_size(), progress=progress)


# --------------------------------------------------------------------------- entry point
def _running_inside(script_path: str) -> bool:
    """Whether a frame of the script at script_path is on the call stack (Streamlit compiles
    each script with its own path as the code's file name)."""
    target = os.path.realpath(script_path)
    f = sys._getframe(1)
    while f is not None:
        if os.path.realpath(f.f_code.co_filename) == target:
            return True
        f = f.f_back
    return False


def leave_legacy_multipage_mode() -> None:
    """Streamlit treats an app with a pages/ folder beside it as an old-style multipage app until
    the entry script has called st.navigation once in the server process: on a fresh server, a
    first request for /training would run pages/training.py alone (Streamlit's own list of the
    pages/ files, no sidebar, no error guard, no wide layout). Every page imports this module and
    calls require_dataset(), so this runs early on every page: it switches the process to
    st.navigation mode and, when app.py is not the script running, reruns through app.py.
    (AppTest resets Streamlit's flag before each run and then runs the page it finished on
    directly, so the same path keeps widget reruns in tests going through app.py.)"""
    try:
        from streamlit.runtime.pages_manager import PagesManager
        from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx
    except ImportError:  # pragma: no cover - a Streamlit without these internals
        return
    ctx = get_script_run_ctx()
    if ctx is None or not getattr(PagesManager, "uses_pages_directory", None):
        return
    PagesManager.uses_pages_directory = False
    main = getattr(getattr(ctx, "pages_manager", None), "main_script_path", None)
    if main and not _running_inside(main):
        st.rerun()


leave_legacy_multipage_mode()
