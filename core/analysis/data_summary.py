"""What the Data page shows, as plain functions of a data set and numpy arrays (no Streamlit, so tests
call them): histograms, label correlations, S/N, one star's spectrum, sky and mask intervals,
simulated spectra at two log g, the strong lines of a window, the data set's summary."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core import data

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
        edges = np.logspace(np.log10(v.min()), np.log10(v.max()), bins + 1)
        edges[0], edges[-1] = v.min(), v.max()   # 10**log10(x) can round below x and drop the largest value
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
    noisy, flux, err = ds.noisy(np.array([int(row)]), noise_level, seed)
    noisy, sig = noisy[0], noise_level * err[0]
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

    from core.physics import simulate
    sim = sim or simulate.default_simulator("cpu")
    lab = torch.tensor([[float(teff), float(logg), float(mh)]], dtype=sim.dtype, device=sim.wave.device)
    with torch.no_grad():
        return sim(lab)[0].detach().cpu().numpy()


def logg_comparison(teff: float, logg: float, mh: float, ref_logg: float,
                    window: tuple[float, float] | None = None, sim=None) -> pd.DataFrame:
    """Long frame (wave, flux, curve, diff) of the spectrum at log g and at ref_logg, same Teff
    and [M/H], cut to the zoom window; diff = flux(log g) - flux(ref) on the same pixels."""
    from core.physics import simulate
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
    from core.physics import lines
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
    than the one in core/physics/simulate.py now (its spectra no longer match the live simulator)."""
    if ds.attrs.get("source") != "simulator":
        return None
    from core.physics import simulate
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




# --------------------------------------------------------------------------- nuisances (#18)
NUISANCE_TITLES = {"rv": ("radial velocity", "km/s"), "resolution": ("resolving power R", ""),
                   "tilt_c1": ("continuum tilt c1 (P1)", ""), "tilt_c2": ("continuum curvature c2 (P2)", ""),
                   "pwv": ("precipitable water vapour", "mm"), "airmass": ("airmass", "")}


def nuisance_frames(ds: data.Dataset) -> list[tuple[str, str, pd.DataFrame]]:
    """(title, unit, 30-bin histogram frame) per nuisance the data set drew (those that vary), [] without any."""
    out = []
    for k in NUISANCE_TITLES:
        if k not in (ds.nuisance or {}):
            continue
        v = np.asarray(ds.nuisance[k], np.float64)
        if k in NUISANCE_TITLES and v.size and np.ptp(v) > 0:
            out.append((*NUISANCE_TITLES[k], histogram_frame(v, bins=30)))
    return out


TELLURIC_WINDOWS = {"H2O 7150-7400 Å": (7150.0, 7400.0), "O2 A band and K I": (7580.0, 7720.0),
                    "H2O over Na I 8183/8195": (8120.0, 8400.0)}


def telluric_comparison(labels: np.ndarray, pwv: float, airmass: float, window: tuple[float, float],
                        sim=None) -> pd.DataFrame:
    """Long frame (wave, flux, curve) of a star without and with telluric absorption (PWV mm, airmass; at rest,
    before the LSF, as core/physics/nuisance.observe makes it), cut to window."""
    import torch

    from core.physics import nuisance, simulate
    sim = sim or simulate.default_simulator("cpu")
    wave = sim.wave.detach().cpu().double().numpy()
    lab = torch.as_tensor(np.atleast_2d(labels), dtype=sim.dtype)
    nu = {k: np.array([v]) for k, v in nuisance.NEUTRAL.items()}
    with torch.no_grad():
        clean = sim(lab)[0].double().numpy()
        tell = nuisance.observe(sim, lab, {**nu, "pwv": np.array([pwv]), "airmass": np.array([airmass])})[0]
    m = (wave >= window[0]) & (wave <= window[1])
    return pd.concat([pd.DataFrame({"wave": wave[m], "flux": clean[m], "curve": "without tellurics"}),
                      pd.DataFrame({"wave": wave[m], "flux": tell.double().numpy()[m],
                                    "curve": f"with tellurics (PWV {pwv:g} mm, airmass {airmass:g})"})],
                     ignore_index=True)
