"""Shared helpers for the Streamlit pages: the sidebar, the active data set, cached loaders,
one-line error reporting, the first-start bootstrap, and the small computations the Data
page draws (kept here, as plain functions of numpy arrays, so tests can call them).

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

import numpy as np
import pandas as pd
import streamlit as st

from core import config, data

log = logging.getLogger("logg.app")

# Zoom windows of the spectrum charts, in Angstrom: the two log g regions, then the whole range.
LINE_REGIONS: dict[str, tuple[float, float]] = {
    "Ca II triplet 8480-8680 Å": (8480.0, 8680.0),
    "Na I 8183/8195 Å": (8170.0, 8210.0),
}


def zoom_windows(lo: float, hi: float) -> dict[str, tuple[float, float]]:
    """The line regions that overlap [lo, hi] (clipped to it), then the whole range."""
    out = {k: (max(a, lo), min(b, hi)) for k, (a, b) in LINE_REGIONS.items() if a < hi and b > lo}
    out[f"Whole range {lo:.0f}-{hi:.0f} Å"] = (float(lo), float(hi))
    return out


ZOOMS = zoom_windows(7100.0, 8850.0)  # the built-in simulator's window
# Pixels whose OH sky emission is at least this strong (relative intensity, brightest lines ~1-2.5)
# are shaded in the spectrum charts: there the sky is >= 5x its continuum (40 + 800 * 0.2 = 200 counts).
OH_SHADE_THRESHOLD = 0.2
INDEPENDENCE_LIMIT = 0.05
LABEL_NAMES = {"teff": "Teff", "logg": "log g", "mh": "[M/H]"}
LABEL_UNITS = {"teff": "K", "logg": "dex", "mh": "dex"}


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
    from core.trainer import pick_device
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
    from core import simulate
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
    return f"{name} · {p['n_spectra']:,} spectra, {p['epochs']} epochs"


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


# --------------------------------------------------------------------------- Data page computations
def histogram_frame(values: np.ndarray, bins: int = 30, log: bool = False) -> pd.DataFrame:
    """Pre-binned histogram (lo, hi, count): the chart carries 30 rows, not every spectrum."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if log:
        v = v[v > 0]
    if v.size == 0:
        return pd.DataFrame({"lo": [], "hi": [], "count": []})
    if log:
        edges = np.logspace(np.log10(v.min()), np.log10(v.max()) + 1e-9, bins + 1)
    else:
        lo, hi = v.min(), v.max()
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    counts, edges = np.histogram(v, bins=edges)
    return pd.DataFrame({"lo": edges[:-1], "hi": edges[1:], "count": counts})


def correlation_frame(labels: np.ndarray) -> tuple[pd.DataFrame, float, str]:
    """Pearson r between Teff, log g, [M/H]: long frame (a, b, r), the largest off-diagonal
    |r| and the pair it belongs to."""
    r = np.corrcoef(np.asarray(labels, dtype=np.float64).T)
    names = [LABEL_NAMES[k] for k in data.LABELS]
    rows = [(names[i], names[j], float(r[i, j])) for i in range(3) for j in range(3)]
    iu = np.triu_indices(3, 1)
    off = np.abs(r[iu])
    k = int(np.argmax(off))
    pair = f"{names[iu[0][k]]}–{names[iu[1][k]]}"
    return pd.DataFrame(rows, columns=["a", "b", "r"]), float(off[k]), pair


def snr_table(ds: data.Dataset, max_rows: int = 20000, chunk: int = 2048) -> pd.DataFrame:
    """Per-spectrum S/N at noise level 1.0: median over pixels of clean flux / 1-sigma error.
    At most max_rows spectra (evenly spaced) are read, in chunks."""
    n = ds.n
    rows = np.arange(n) if n <= max_rows else np.unique(np.linspace(0, n - 1, max_rows).astype(np.int64))
    out = np.empty(rows.size)
    for i in range(0, rows.size, chunk):
        fl, er = ds.read(rows[i:i + chunk])
        out[i:i + chunk] = np.median(fl / er, axis=1)
    split = np.full(n, "", dtype=object)
    for k, v in ds.splits.items():
        split[v] = k
    return pd.DataFrame({"row": rows, "split": split[rows], "snr": out})


def example_spectrum(ds: data.Dataset, row: int, noise_level: float, seed: int = 0) -> pd.DataFrame:
    """One star's spectrum as every model sees it at this noise level (the same noise draw as
    Dataset.view): wave, noisy flux, clean flux, sigma (the 1-sigma error), and flux +- sigma.
    (Not 'error': Vega-Lite cannot plot a field of that name.)"""
    rows = np.array([int(row)])
    flux, err = ds.read(rows)
    sig = noise_level * err[0]
    noisy = flux[0] + sig * ds.noise(rows, noise_level, seed)[0]
    return pd.DataFrame({"wave": ds.wave, "flux": noisy, "clean": flux[0], "sigma": sig,
                         "lo": noisy - sig, "hi": noisy + sig})


def sky_intervals(ds: data.Dataset, threshold: float = OH_SHADE_THRESHOLD) -> pd.DataFrame | None:
    """Wavelength intervals (start, end) where OH sky emission is strong; None without sky metadata."""
    if not getattr(ds, "has_meta", False):
        return None
    oh = getattr(ds, "oh_relative", None)
    if oh is None:  # older files: recover the OH part from the sky counts
        sky = np.asarray(ds.sky_counts, dtype=np.float64)
        oh = (sky - np.percentile(sky, 5)) / 800.0
    mask = np.asarray(oh) > threshold
    return mask_intervals(ds.wave, mask)


def mask_intervals(wave: np.ndarray, mask: np.ndarray) -> pd.DataFrame:
    """Contiguous runs of True in mask as (start, end) wavelengths, half a pixel wider each side."""
    wave = np.asarray(wave, dtype=np.float64)
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(np.int8))
    starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0] - 1
    half = np.gradient(wave) / 2.0
    return pd.DataFrame({"start": wave[starts] - half[starts], "end": wave[ends] + half[ends]})


def simulate_spectrum(teff: float, logg: float, mh: float, sim=None) -> np.ndarray:
    """Noise-free normalised flux (4096 pixels) of the built-in simulator for one star."""
    import torch
    from core import simulate
    sim = sim or simulate.default_simulator("cpu")
    lab = torch.tensor([[float(teff), float(logg), float(mh)]], dtype=sim.dtype, device=sim.wave.device)
    with torch.no_grad():
        return sim(lab)[0].detach().cpu().numpy()


def logg_comparison(teff: float, logg: float, mh: float, ref_logg: float,
                    window: tuple[float, float] | None = None, sim=None) -> pd.DataFrame:
    """Long frame (wave, flux, curve, diff) of the spectrum at log g and at ref_logg, same Teff
    and [M/H], cut to the zoom window; diff = flux(log g) - flux(ref) on the same pixels."""
    from core import simulate
    sim = sim or simulate.default_simulator("cpu")
    wave = sim.wave.detach().cpu().double().numpy()
    f = simulate_spectrum(teff, logg, mh, sim)
    fr = simulate_spectrum(teff, ref_logg, mh, sim)
    m = np.ones(wave.size, bool) if window is None else (wave >= window[0]) & (wave <= window[1])
    cur = f"log g = {logg:.2f}"
    ref = f"reference log g = {ref_logg:.2f}"
    if cur == ref.replace("reference ", ""):
        cur += " (same)"
    return pd.concat([
        pd.DataFrame({"wave": wave[m], "flux": f[m], "curve": cur, "diff": f[m] - fr[m]}),
        pd.DataFrame({"wave": wave[m], "flux": fr[m], "curve": ref, "diff": 0.0}),
    ], ignore_index=True)


def strong_lines(window: tuple[float, float]) -> pd.DataFrame:
    """Named strong lines (Ca II, Na I, K I, Mg I, O I, Paschen) inside a window: wave, name."""
    from core import lines
    rows = [(w, f"{el} {ion} {w:.0f}") for w, el, ion, *_ in lines.STRONG_LINES]
    rows += [(w, f"Pa{n}") for n, w in lines.PASCHEN]
    df = pd.DataFrame(rows, columns=["wave", "name"])
    df = df[(df.wave >= window[0]) & (df.wave <= window[1])]
    if window[1] - window[0] > 1000:  # whole range: one label per multiplet is enough
        df = df[~df.name.str.startswith("Pa")]
        df = df[~df.name.isin(["O I 7774", "O I 7775", "Ca II 8498", "Ca II 8662", "Na I 8195", "K I 7699",
                               "Mg I 8736"])]
    return df.sort_values("wave").reset_index(drop=True)


def stale_simulator(ds: data.Dataset) -> str | None:
    """A one-line warning when a built-in data set was simulated by another simulator version
    than the one in core/simulate.py now (its spectra no longer match the live simulator)."""
    if ds.attrs.get("source") != "simulator":
        return None
    from core import simulate
    built, now = str(ds.attrs.get("simulator_version", "")), simulate.SIMULATOR_VERSION
    if built == now:
        return None
    return (f"{ds.name} was simulated by simulator v{built or '?'}; the code is now v{now}. Rebuild it with "
            f"`python -m core data build --profile {ds.attrs.get('profile') or 'quick'}` so that the data, "
            f"the live simulator below and new runs agree.")


def info_frame(ds: data.Dataset) -> pd.DataFrame:
    """The data set's provenance as a two-column table (field, value)."""
    info = ds.info()
    size = ds.path.stat().st_size
    rows = [("name", info["name"]), ("spectra", f"{ds.n:,}"), ("pixels", f"{ds.n_pix:,}"),
            ("file size", f"{size / 2**20:,.1f} MB"), ("fingerprint", info.get("fingerprint", "")),
            ("source", info.get("source", "")), ("created (UTC)", info.get("created", "")),
            ("simulator version", info.get("simulator_version", "") or "—"),
            ("seed", info.get("seed", "")), ("profile", info.get("profile", "") or "—"),
            ("wavelength", info["wavelength"].replace(" A", " Å")),
            ("splits train / val / test", " / ".join(f"{v.size:,}" for v in ds.splits.values())),
            ("normalisation", info.get("normalisation", "")), ("path", info["path"])]
    for i, k in enumerate(data.LABELS):
        lo, hi = ds.labels[:, i].min(), ds.labels[:, i].max()
        fmt = ".0f" if k == "teff" else ".2f"
        rows.append((f"{LABEL_NAMES[k]} range", f"{lo:{fmt}} to {hi:{fmt}} {LABEL_UNITS[k]}"))
    return pd.DataFrame(rows, columns=["field", "value"]).astype(str)


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
