"""Predict: log g (and Teff, [M/H] where models exist) for an uploaded spectrum, with every trained model.

The path an upload takes (docs/predict.md says why each step is the way it is):

    bytes -> read_bytes()        CSV/TSV/whitespace text, .npy/.npz, FITS image or table, HDF5 (batch)
          -> checks              NaN/inf, errors <= 0, order, duplicates, units, too few points, size
          -> Resampler           flux-conserving spline: a cubic spline through the running integral of
                                 the upload's flux at its bin edges, differenced at the model pixels' edges
                                 (errors through the overlap weights); gaps are not bridged
          -> prepare()           coverage + masking, S/N (from the error, else DER_SNR), the noise level,
                                 the continuum level fitted against the training spectra (or kept when the
                                 upload is already normalised), uncovered pixels filled with the PCA
                                 reconstruction
          -> predict()           every trained model of the data set at that noise level, side by side,
                                 an uncertainty per model, a recommended value, an out-of-distribution check

Nothing here writes anywhere: the registry is only read, models and training statistics are cached
in memory. Bad input raises PredictError (a core.data.DataError) with a one-line message.
`python -m core predict FILE [--json]` (add_parser / cmd_predict) prints the same answer.
"""
from __future__ import annotations

import io
import json
import math
import re
import sys
import threading
import time
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import config
from core.data import LABELS, DataError, Dataset, View

# --------------------------------------------------------------------------- settings
MIN_POINTS = 100            # fewer samples than this: refused
MIN_COVERAGE = 0.5          # fraction of the model grid an upload must cover
GAP_FACTOR = 3.0            # a step this many times the typical one is a gap (chip gap, masked run)
N_PCA = 16                  # principal components of the training flux (scale fit, gap fill, OOD)
PCA_MAX_TRAIN = 3000        # training spectra the PCA is fitted on
REF_MAX = 1000              # validation spectra that give the OOD reference distribution
BATCH_SLOW_MAX = 200       # a batch larger than this skips per-spectrum fitters (the Cannon) unless asked
MC_DRAWS = 32               # input-noise re-draws per spectrum for the MC spread
OOD_PCT = 99.0              # percentile of the validation spectra above which a spectrum is 'unusual'
SNR_PCT = (1.0, 99.0)       # training S/N range (percentiles) outside which the S/N is flagged
COARSE_FACTOR = 4.0         # upload pixels this many times wider than the model's: flagged
COVER_SLACK = 0.01          # a model pixel counts as covered when at most 1% of its width is outside the upload
OOD_MISSING = 0.05          # more than this fraction of the grid missing: flagged
CANNON_MASK_ERROR = 1e3     # error given to filled pixels for chi^2 fitters: they ignore them
CA_TRIPLET = (8480.0, 8680.0)

WAVE_NAMES = ("wavelength", "wave", "lambda", "lam", "wl", "wavelen", "wavelengths", "loglam", "log_lambda",
              "log_wave", "lambda_air", "lambda_vac", "wave_air", "wave_vac")
FLUX_NAMES = ("flux", "f", "fl", "flux_density", "fluxes", "spec", "spectrum", "intensity", "norm_flux",
              "normalized_flux", "normalised_flux")
ERR_NAMES = ("error", "err", "sigma", "flux_err", "flux_error", "fluxerr", "e_flux", "eflux", "uncertainty",
             "unc", "noise", "std", "dflux", "flux_sigma", "errors")
IVAR_NAMES = ("ivar", "inverse_variance", "invvar", "flux_ivar", "inv_var")
VAR_NAMES = ("var", "variance", "flux_var")
UNIT_FACTORS = {"angstrom": 1.0, "angstroms": 1.0, "aa": 1.0, "a": 1.0, "å": 1.0, "ang": 1.0,
                "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "nanometre": 10.0, "nanometres": 10.0,
                "um": 1e4, "µm": 1e4, "μm": 1e4, "micron": 1e4, "microns": 1e4, "micrometer": 1e4,
                "micrometre": 1e4, "m": 1e10, "cm": 1e8}
UNCERTAINTY_KINDS = {
    "mc": "input-noise MC spread",
    "own": "the model's own 1σ",
    "mc_level": "MC spread over input noise and continuum level",
    "fisher": "formal χ² 1σ (inverse Fisher matrix)",
}
COMMENT_CHARS = ("#", "%", "!", ";", "//", "\\")


class PredictError(DataError):
    """An upload (or a request) that cannot be predicted; the message names the problem in one line."""


# --------------------------------------------------------------------------- containers
@dataclass
class Spectrum:
    """One spectrum as read: wavelength in Angstrom (increasing), flux, 1-sigma error or None."""
    wave: np.ndarray
    flux: np.ndarray
    error: np.ndarray | None
    name: str = "spectrum"
    fmt: str = ""
    notes: list[str] = field(default_factory=list)
    truth: dict | None = None          # true labels (the example path)


@dataclass
class Batch:
    """Many spectra on one wavelength grid (HDF5 in the project's schema)."""
    wave: np.ndarray
    flux: np.ndarray                    # (n, N)
    error: np.ndarray | None           # (n, N) or None
    labels: np.ndarray | None          # (n, 3) teff, logg, mh, when the file has them
    name: str = "batch"
    fmt: str = "HDF5"
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- upload limit
def upload_limit_mb() -> float:
    """server.maxUploadSize of .streamlit/config.toml (Streamlit's default, 200 MB, when unset)."""
    p = config.ROOT / ".streamlit" / "config.toml"
    try:
        with open(p, "rb") as f:
            return float(tomllib.load(f).get("server", {}).get("maxUploadSize", 200))
    except (OSError, tomllib.TOMLDecodeError, TypeError, ValueError):
        return 200.0


# --------------------------------------------------------------------------- reading
def _norm_name(name: str) -> tuple[str, str | None]:
    """Column name -> (base name, declared wavelength unit or None): 'Wavelength [nm]' -> ('wavelength', 'nm')."""
    s = str(name).strip().lower()
    unit = None
    m = re.search(r"[\[\(\{]\s*([^\]\)\}]*)\s*[\]\)\}]\s*$", s)
    if m:
        unit = m.group(1).strip() or None
        s = s[:m.start()].strip()
    else:
        m = re.match(r"^(.*?)[_\-\s]+(angstroms?|aa|ang|nm|um|µm|μm|microns?)$", s)
        if m:
            s, unit = m.group(1), m.group(2)
    s = re.sub(r"[\s\-]+", "_", s.strip())
    return s, unit


def _unit_factor(unit: str | None, what: str) -> float | None:
    if unit is None:
        return None
    u = str(unit).strip().lower().replace(" ", "")
    if u in ("", "none", "pix", "pixel"):
        return None
    if u in UNIT_FACTORS:
        return UNIT_FACTORS[u]
    if u in ("0.1nm",):
        return 1.0
    raise PredictError(f"{what}: unknown wavelength unit {unit!r} (use Angstrom, nm or micron)")


def _pick(names: list[str], wanted: tuple[str, ...]) -> int | None:
    for w in wanted:
        for i, n in enumerate(names):
            if n == w:
                return i
    return None


@dataclass
class _Columns:
    wave: np.ndarray
    flux: np.ndarray
    err: np.ndarray | None
    err_kind: str | None      # 'error' | 'ivar' | 'var'
    wave_kind: str            # 'linear' | 'log10'
    unit: str | None          # declared unit of the wavelength
    rows: np.ndarray | None = None  # file line numbers of the data rows (text)


def _columns_from_names(names: list[str], get, what: str, units: list[str | None] | None = None) -> _Columns:
    """Choose wavelength / flux / error columns by name; get(i) returns column i as float64."""
    base, declared = zip(*[_norm_name(n) for n in names]) if names else ((), ())
    base, declared = list(base), list(declared)
    if units:
        declared = [d or (u if u else None) for d, u in zip(declared, units)]
    iw = _pick(base, WAVE_NAMES)
    if iw is None:
        raise PredictError(f"{what}: no wavelength column among {', '.join(map(str, names))} "
                           f"(name one wavelength, wave, lambda or loglam)")
    iflux = _pick(base, FLUX_NAMES)
    if iflux is None:
        raise PredictError(f"{what}: no flux column among {', '.join(map(str, names))} (name one flux)")
    err, kind = None, None
    for kind_, names_ in (("error", ERR_NAMES), ("ivar", IVAR_NAMES), ("var", VAR_NAMES)):
        i = _pick(base, names_)
        if i is not None:
            err, kind = get(i), kind_
            break
    wave_kind = "log10" if base[iw] in ("loglam", "log_lambda", "log_wave") else "linear"
    return _Columns(get(iw), get(iflux), err, kind, wave_kind, declared[iw])


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _read_text(data: bytes, name: str) -> Spectrum:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    lines = text.splitlines()
    comments, body = [], []  # (line number, text)
    for i, ln in enumerate(lines, 1):
        s = ln.strip()
        if not s:
            continue
        if s.startswith(COMMENT_CHARS):
            comments.append((i, s.lstrip("#%!;/\\ ").strip()))
        else:
            body.append((i, s))
    if not body:
        raise PredictError(f"{name}: no data rows (only comments or blank lines)")
    first = body[0][1]
    sep = "," if "," in first else ("\t" if "\t" in first else None)

    def split(s):
        return [t.strip() for t in (s.split(sep) if sep else s.split())]

    header = None
    toks = split(first)
    if not all(_is_number(t) for t in toks if t):
        header = toks
        body = body[1:]
    if not body:
        raise PredictError(f"{name}: a header but no data rows")
    ncol = len(split(body[0][1]))
    if header is None:  # a commented header just above the data ('# wave flux error')
        for ln_no, c in reversed(comments):
            if ln_no < body[0][0]:
                t = split(c) if sep else c.split()
                if len(t) == ncol and not any(_is_number(x) for x in t):
                    header = t
                break
    vals = np.empty((len(body), ncol))
    for r, (ln_no, s) in enumerate(body):
        t = split(s)
        if len(t) != ncol:
            raise PredictError(f"{name}: line {ln_no} has {len(t)} columns, the first data row has {ncol}")
        try:
            vals[r] = [float(x) for x in t]
        except ValueError:
            bad = next(x for x in t if not _is_number(x))
            raise PredictError(f"{name}: line {ln_no}: {bad[:30]!r} is not a number") from None
    line_no = np.array([b[0] for b in body])
    kind = {",": "CSV", "\t": "TSV", None: "whitespace-separated text"}[sep]
    if header is not None:
        if len(header) != ncol:
            raise PredictError(f"{name}: the header names {len(header)} columns, the data rows have {ncol}")
        cols = _columns_from_names(header, lambda i: vals[:, i], name)
        used = "header"
    else:
        if ncol not in (2, 3):
            raise PredictError(f"{name}: no header and {ncol} columns: cannot tell which is which; add a header "
                               f"line naming wavelength, flux and error")
        cols = _Columns(vals[:, 0], vals[:, 1], vals[:, 2] if ncol == 3 else None, "error" if ncol == 3 else None,
                        "linear", None)
        used = "no header: columns taken as wavelength, flux" + (", error" if ncol == 3 else "")
    cols.rows = line_no
    return _finish(cols, name, f"{kind}, {len(body):,} rows ({used})")


def _read_npy(data: bytes, name: str) -> Spectrum:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise PredictError(f"{name}: holds pickled Python objects, which are never loaded "
                               f"(allow_pickle=False); save a plain numeric array") from None
        raise PredictError(f"{name}: not a readable .npy array ({str(e).splitlines()[0][:120]})") from None
    except Exception as e:  # noqa: BLE001 - any failure of a corrupt file is a bad upload
        raise PredictError(f"{name}: not a readable .npy array ({type(e).__name__})") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        return _npz(arr, name)
    if arr.dtype.names:
        return _finish(_columns_from_names(list(arr.dtype.names), lambda i: _num(arr[arr.dtype.names[i]], name),
                                           name), name, f"NumPy structured array, {arr.size:,} rows")
    if not np.issubdtype(arr.dtype, np.number):
        raise PredictError(f"{name}: array of dtype {arr.dtype}; expected numbers")
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim != 2 or 2 not in a.shape and 3 not in a.shape:
        raise PredictError(f"{name}: array of shape {a.shape}; expected (N, 2) or (N, 3) columns "
                           f"wavelength, flux[, error] (or their transpose)")
    if a.shape[0] in (2, 3) and a.shape[1] > 3:
        a = a.T
    cols = _Columns(a[:, 0], a[:, 1], a[:, 2] if a.shape[1] == 3 else None,
                    "error" if a.shape[1] == 3 else None, "linear", None)
    return _finish(cols, name, f"NumPy array {a.shape[0]:,} x {a.shape[1]} (wavelength, flux"
                   + (", error)" if a.shape[1] == 3 else ")"))


def _num(a, name) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.number):
        raise PredictError(f"{name}: a column of dtype {a.dtype}; expected numbers")
    return np.asarray(a, dtype=np.float64).reshape(-1)


def _npz(z, name: str) -> Spectrum:
    try:
        keys = list(z.files)

        def get(i):
            return _num(z[keys[i]], name)

        cols = _columns_from_names(keys, get, name)
    except ValueError as e:
        if isinstance(e, PredictError):
            raise
        raise PredictError(f"{name}: holds pickled Python objects, which are never loaded (allow_pickle=False); "
                           f"save plain numeric arrays") from None
    return _finish(cols, name, f"NumPy .npz ({', '.join(keys)})")


def _read_fits(data: bytes, name: str) -> Spectrum:
    try:
        from astropy.io import fits
    except ImportError:  # pragma: no cover
        raise PredictError("reading FITS needs astropy (pip install astropy)") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            hdul = fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=False)
            hdul.verify("silentfix")
        except Exception as e:  # noqa: BLE001
            raise PredictError(f"{name}: not a readable FITS file ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:100] if str(e) else ''})") from None
        with hdul:
            try:
                return _fits_spectrum(hdul, name)
            except PredictError:
                raise
            except Exception as e:  # noqa: BLE001
                raise PredictError(f"{name}: cannot read a spectrum from this FITS file "
                                   f"({type(e).__name__}: {str(e)[:100]})") from None


def _fits_spectrum(hdul, name: str) -> Spectrum:
    from astropy.io import fits
    # 1) a binary table with wavelength / flux columns (SDSS 'COADD': loglam, flux, ivar)
    for h in hdul:
        if isinstance(h, (fits.BinTableHDU, fits.TableHDU)) and h.data is not None and len(h.columns):
            names = [c.name for c in h.columns]
            base = [_norm_name(n)[0] for n in names]
            if _pick(base, WAVE_NAMES) is None or _pick(base, FLUX_NAMES) is None:
                continue
            tab = h.data
            units = [c.unit for c in h.columns]

            def get(i, tab=tab, names=names):
                col = np.asarray(tab[names[i]])
                if len(tab) == 1 and col.ndim == 2:  # one row of array columns (ESO-style)
                    col = col[0]
                return _num(col, name)

            cols = _columns_from_names(names, get, name, units=units)
            return _finish(cols, name, f"FITS binary table '{h.name}' ({len(cols.wave):,} rows)")
    # 2) named image extensions FLUX + WAVELENGTH (PFS-style)
    by_name = {h.name.upper(): h for h in hdul if getattr(h, "data", None) is not None and h.is_image}
    if "FLUX" in by_name and any(k in by_name for k in ("WAVELENGTH", "WAVE", "LAMBDA")):
        wh = next(by_name[k] for k in ("WAVELENGTH", "WAVE", "LAMBDA") if k in by_name)
        flux = _squeeze(by_name["FLUX"].data, name)
        wave = _squeeze(wh.data, name)
        err, kind = _fits_error_hdu(by_name, flux.size, name)
        unit = wh.header.get("BUNIT") or wh.header.get("CUNIT1")
        return _finish(_Columns(wave, flux, err, kind, "linear", unit), name, "FITS image extensions FLUX, "
                       + wh.name + (f", {kind.upper()}" if kind else ""))
    # 3) a 1-D image with a wavelength solution in its header
    for h in hdul:
        if h.is_image and h.data is not None and h.data.size > 1:
            flux = _squeeze(h.data, name)
            wave, unit, how = _fits_wcs(h.header, flux.size, name)
            err, kind = _fits_error_hdu(by_name, flux.size, name)
            return _finish(_Columns(wave, flux, err, kind, "linear", unit), name,
                           f"FITS 1-D image ({flux.size:,} pixels, {how})" + (f" + {kind} extension" if kind else ""))
    raise PredictError(f"{name}: no spectrum in this FITS file: expected a 1-D image with CRVAL1/CDELT1 or a "
                       f"binary table with wavelength and flux columns")


def _squeeze(a, name) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim > 1:
        sq = np.squeeze(a)
        if sq.ndim != 1:
            raise PredictError(f"{name}: FITS image of shape {a.shape}; a 1-D spectrum is expected")
        a = sq
    return _num(a, name)


def _fits_error_hdu(by_name: dict, n: int, name: str):
    for kind, keys in (("error", ("ERROR", "ERR", "SIGMA", "UNCERTAINTY", "NOISE")), ("ivar", ("IVAR",)),
                       ("var", ("VARIANCE", "VAR"))):
        for k in keys:
            if k in by_name:
                e = _squeeze(by_name[k].data, name)
                if e.size == n:
                    return e, kind
    return None, None


def _fits_wcs(h, n: int, name: str):
    pix = np.arange(n, dtype=np.float64)
    if "COEFF0" in h and "COEFF1" in h and "CRVAL1" not in h:  # SDSS spSpec: log10(lambda) = COEFF0 + COEFF1 i
        return 10.0 ** (float(h["COEFF0"]) + float(h["COEFF1"]) * pix), None, "COEFF0/COEFF1 log-linear"
    if "CRVAL1" not in h:
        raise PredictError(f"{name}: FITS image without a wavelength solution (CRVAL1 and CDELT1 or CD1_1 missing)")
    step = h.get("CDELT1", h.get("CD1_1"))
    if step is None:
        raise PredictError(f"{name}: FITS header has CRVAL1 but neither CDELT1 nor CD1_1")
    crpix = float(h.get("CRPIX1", 1.0))
    x = float(h["CRVAL1"]) + (pix + 1.0 - crpix) * float(step)
    dcflag = int(h.get("DC-FLAG", 0) or 0)
    ctype = str(h.get("CTYPE1", "")).upper()
    if dcflag == 1:
        return 10.0 ** x, h.get("CUNIT1"), "log-linear, DC-FLAG = 1"
    if "LOG" in ctype and float(h["CRVAL1"]) < 10:
        return 10.0 ** x, h.get("CUNIT1"), f"log-linear, CTYPE1 = {ctype}"
    return x, h.get("CUNIT1"), "linear, CRVAL1/CDELT1"


def _finish(c: _Columns, name: str, fmt: str) -> Spectrum:
    """Checks common to every format; returns the spectrum in Angstrom, increasing."""
    notes = []
    wave, flux, err = c.wave, c.flux, c.err
    n = wave.size
    if flux.size != n or (err is not None and err.size != n):
        raise PredictError(f"{name}: wavelength, flux and error have different lengths "
                           f"({n}, {flux.size}{'' if err is None else f', {err.size}'})")
    rowname = (lambda i: f"line {int(c.rows[i])}") if c.rows is not None else (lambda i: f"row {int(i)}")
    for what, a in (("wavelength", wave), ("flux", flux), (c.err_kind or "error", err)):
        if a is None:
            continue
        bad = ~np.isfinite(a)
        if bad.any():
            raise PredictError(f"{name}: {what} has {int(bad.sum())} NaN/inf value(s) (first at "
                               f"{rowname(int(np.argmax(bad)))}); remove those rows or give finite values")
    if n < MIN_POINTS:
        raise PredictError(f"{name}: only {n} points; at least {MIN_POINTS} are needed")
    keep = np.ones(n, bool)
    if err is not None:
        if c.err_kind == "ivar":
            if (err < 0).any():
                i = int(np.argmax(err < 0))
                raise PredictError(f"{name}: ivar has {int((err < 0).sum())} negative value(s) (first at {rowname(i)})")
            zero = err == 0
            if zero.any():
                notes.append(f"{int(zero.sum()):,} pixels with ivar = 0 (no data) were masked")
                keep &= ~zero
            err = np.where(zero, np.inf, 1.0 / np.sqrt(np.where(zero, 1.0, err)))
        else:
            if (err <= 0).any():
                i = int(np.argmax(err <= 0))
                raise PredictError(f"{name}: {c.err_kind or 'error'} has {int((err <= 0).sum())} zero or negative "
                                   f"value(s) (first at {rowname(i)}); errors must be > 0")
            if c.err_kind == "var":
                err = np.sqrt(err)
    # units: declared ones are honoured, undeclared non-Angstrom values are refused with the likely unit
    if c.wave_kind == "log10":
        wave = 10.0 ** wave
        notes.append("wavelength given as log10(λ/Å) (loglam) and converted")
    else:
        f = _unit_factor(c.unit, name)
        if f is not None and f != 1.0:
            wave = wave * f
            notes.append(f"wavelength converted from {c.unit} to Å (unit declared in the file)")
    d = np.diff(wave)
    if (d == 0).any():
        i = int(np.argmax(d == 0))
        raise PredictError(f"{name}: duplicated wavelength {wave[i]:.6g} ({rowname(i)} and {rowname(i + 1)})")
    if (d < 0).all():
        wave, flux, keep = wave[::-1], flux[::-1], keep[::-1]
        err = None if err is None else err[::-1]
        notes.append("wavelengths were decreasing; the spectrum was reversed")
    elif (d < 0).any():
        i = int(np.argmax(d < 0))
        raise PredictError(f"{name}: wavelengths are not monotonic: {wave[i]:.6g} -> {wave[i + 1]:.6g} at "
                           f"{rowname(i + 1)}")
    if err is not None and not np.isfinite(err[keep]).all():  # pragma: no cover - guarded above
        raise PredictError(f"{name}: error has non-finite values")
    wave, flux = wave[keep], flux[keep]
    err = None if err is None else err[keep]
    if wave.size < MIN_POINTS:
        raise PredictError(f"{name}: only {wave.size} usable points after masking; at least {MIN_POINTS} are needed")
    return Spectrum(wave, flux, err, name=name, fmt=fmt, notes=notes)


def check_units(wave: np.ndarray, grid: np.ndarray, name: str) -> None:
    """Refuse wavelengths that look like nm, micron or log10(Å) (they miss the grid as Å but hit it converted)."""
    lo, hi = float(grid[0]), float(grid[-1])

    def hits(w):
        return np.any((w >= lo) & (w <= hi)) or (w[0] <= lo and w[-1] >= hi)

    if hits(wave):
        return
    rng = f"{wave[0]:.6g}-{wave[-1]:.6g}"
    for factor, unit, fix in ((10.0, "nanometres (nm)", "multiply by 10"), (1e4, "micron (µm)", "multiply by 10^4")):
        if hits(wave * factor):
            raise PredictError(f"{name}: wavelengths run {rng}, which looks like {unit}: {fix} to get Å, or name the "
                               f"unit in the header (e.g. 'wavelength [nm]'); the models' grid is {lo:.0f}-{hi:.0f} Å")
    if 2.0 < wave[0] < 6.0 and hits(10.0 ** wave):
        raise PredictError(f"{name}: wavelengths run {rng}, which looks like log10(λ/Å): name the column 'loglam' "
                           f"or convert to Å; the models' grid is {lo:.0f}-{hi:.0f} Å")
    raise PredictError(f"{name}: wavelengths {rng} Å do not overlap the models' grid ({lo:.0f}-{hi:.0f} Å)")


def _read_hdf5(data: bytes, name: str) -> Batch:
    import h5py
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except Exception as e:  # noqa: BLE001
        raise PredictError(f"{name}: cannot be opened as HDF5 ({type(e).__name__})") from None
    schema = "the project's schema: /wave, /flux, optional /error or /ivar and /labels/{teff,logg,mh}"
    with f:
        for k in ("wave", "flux"):
            if k not in f or not isinstance(f[k], h5py.Dataset):
                raise PredictError(f"{name}: missing dataset /{k} ({schema})")
        try:
            wave = np.asarray(f["wave"][()], dtype=np.float64)
            flux = np.asarray(f["flux"][()], dtype=np.float64)
        except (TypeError, ValueError):
            raise PredictError(f"{name}: /wave and /flux must be numeric") from None
        if wave.ndim != 1:
            raise PredictError(f"{name}: /wave has shape {wave.shape}; expected 1-D")
        if flux.ndim == 1:
            flux = flux[None]
        if flux.ndim != 2 or flux.shape[1] != wave.size:
            raise PredictError(f"{name}: /flux has shape {flux.shape}; expected (n_spectra, {wave.size}) to match /wave")
        err, kind = None, None
        for k in ("error", "ivar"):
            if k in f:
                err = np.asarray(f[k][()], dtype=np.float64)
                err = err[None] if err.ndim == 1 else err
                kind = k
                if err.shape != flux.shape:
                    raise PredictError(f"{name}: /{k} has shape {err.shape}; expected {flux.shape} like /flux")
                break
        labels = None
        if "labels" in f and isinstance(f["labels"], h5py.Group) and all(k in f["labels"] for k in LABELS):
            labels = np.stack([np.asarray(f["labels"][k][()], dtype=np.float64).reshape(-1) for k in LABELS], 1)
            if labels.shape[0] != flux.shape[0]:
                raise PredictError(f"{name}: /labels have {labels.shape[0]} rows, /flux has {flux.shape[0]}")
    notes = []
    for what, a in (("/wave", wave), ("/flux", flux), (f"/{kind}", err)):
        if a is None:
            continue
        bad = ~np.isfinite(a)
        if bad.any():
            where = f"spectrum {int(np.argmax(bad.any(axis=1)))}" if a.ndim == 2 else f"pixel {int(np.argmax(bad))}"
            raise PredictError(f"{name}: {what} has {int(bad.sum())} NaN/inf value(s) (first in {where})")
    if wave.size < MIN_POINTS:
        raise PredictError(f"{name}: /wave has only {wave.size} points; at least {MIN_POINTS} are needed")
    d = np.diff(wave)
    if (d == 0).any():
        raise PredictError(f"{name}: /wave has a duplicated wavelength {wave[int(np.argmax(d == 0))]:.6g}")
    if not (d > 0).all():
        i = int(np.argmax(d <= 0))
        raise PredictError(f"{name}: /wave is not increasing ({wave[i]:.6g} -> {wave[i + 1]:.6g} at pixel {i + 1})")
    if err is not None:
        if kind == "ivar":
            if (err <= 0).any():
                raise PredictError(f"{name}: /ivar has zero or negative values (first in spectrum "
                                   f"{int(np.argmax((err <= 0).any(axis=1)))}); ivar must be > 0")
            err = 1.0 / np.sqrt(err)
            notes.append("ivar converted to a 1σ error")
        elif (err <= 0).any():
            raise PredictError(f"{name}: /error has zero or negative values (first in spectrum "
                               f"{int(np.argmax((err <= 0).any(axis=1)))}); errors must be > 0")
    if flux.shape[0] == 0:
        raise PredictError(f"{name}: /flux holds no spectra")
    return Batch(wave, flux, err, labels, name=name, fmt=f"HDF5, {flux.shape[0]:,} spectra x {wave.size:,} pixels",
                 notes=notes)


MAGIC = {b"SIMPLE  =": "fits", b"\x89HDF\r\n\x1a\n": "hdf5", b"\x93NUMPY": "npy", b"PK\x03\x04": "npz"}
EXT = {".csv": "text", ".tsv": "text", ".txt": "text", ".dat": "text", ".tab": "text", ".ascii": "text",
       ".npy": "npy", ".npz": "npz", ".fits": "fits", ".fit": "fits", ".fts": "fits", ".h5": "hdf5", ".hdf5": "hdf5",
       ".hdf": "hdf5"}
UPLOAD_TYPES = sorted({e.lstrip(".") for e in EXT} | {"gz"})


def read_bytes(data: bytes, name: str = "upload", limit_mb: float | None = None) -> Spectrum | Batch:
    """Read an upload. Raises PredictError with one line on anything unusable."""
    limit_mb = upload_limit_mb() if limit_mb is None else limit_mb
    size = len(data)
    if size == 0:
        raise PredictError(f"{name}: empty file (0 bytes)")
    if limit_mb and size > limit_mb * 2 ** 20:
        raise PredictError(f"{name}: {size / 2 ** 20:.1f} MB is above the upload limit of {limit_mb:g} MB "
                           f"(server.maxUploadSize in .streamlit/config.toml)")
    ext = Path(name).suffix.lower()
    if ext == ".gz" or data[:2] == b"\x1f\x8b":
        import gzip
        try:
            data = gzip.decompress(data)
        except Exception:  # noqa: BLE001
            raise PredictError(f"{name}: a corrupt gzip file") from None
        if limit_mb and len(data) > 4 * limit_mb * 2 ** 20:
            raise PredictError(f"{name}: unpacks to {len(data) / 2 ** 20:.0f} MB, above 4x the upload limit")
        return read_bytes(data, name[:-3] if name.lower().endswith(".gz") else name, limit_mb=0)
    kind = next((k for m, k in MAGIC.items() if data.startswith(m)), None)
    if kind is None and data[:1] == b"\x80" and ext in (".npy", ".npz"):
        raise PredictError(f"{name}: a Python pickle, not a NumPy array; pickles are never loaded "
                           f"(allow_pickle=False): save with numpy.save")
    if kind is None:
        head = data[:4096]
        printable = sum(32 <= b < 127 or b in (9, 10, 13) or b >= 128 for b in head)
        if b"\x00" in head or printable < 0.95 * len(head):
            raise PredictError(f"{name}: binary data in no format read here (expected text CSV/TSV, .npy/.npz, "
                               f"FITS or HDF5)")
        kind = "text"
    if ext in EXT and EXT[ext] not in (kind, "npy" if kind == "npz" else kind) and not (ext == ".npy" and kind == "npz"):
        if kind == "text" and EXT[ext] in ("npy", "npz", "fits", "hdf5"):
            raise PredictError(f"{name}: the name says {EXT[ext].upper()} but the content is text "
                               f"(not a valid {ext} file)")
    reader = {"text": _read_text, "npy": _read_npy, "npz": _read_npy, "fits": _read_fits, "hdf5": _read_hdf5}[kind]
    try:
        return reader(data, name)
    except PredictError:
        raise
    except Exception as e:  # noqa: BLE001 - never a traceback for a user's file
        raise PredictError(f"{name}: unreadable {kind} file ({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''})") from None


def read_file(path: str | Path, limit_mb: float | None = None) -> Spectrum | Batch:
    p = Path(path)
    if not p.exists():
        raise PredictError(f"{path}: no such file")
    if p.is_dir():
        raise PredictError(f"{path}: a folder, not a file")
    limit_mb = upload_limit_mb() if limit_mb is None else limit_mb
    if limit_mb and p.stat().st_size > limit_mb * 2 ** 20:
        raise PredictError(f"{p.name}: {p.stat().st_size / 2 ** 20:.1f} MB is above the upload limit of "
                           f"{limit_mb:g} MB (server.maxUploadSize in .streamlit/config.toml)")
    return read_bytes(p.read_bytes(), p.name, limit_mb=limit_mb)


# --------------------------------------------------------------------------- resampling
def pixel_edges(wave: np.ndarray) -> np.ndarray:
    """N+1 edges of the pixels centred on wave: half-way between neighbours, mirrored at the ends."""
    w = np.asarray(wave, dtype=np.float64)
    mid = 0.5 * (w[1:] + w[:-1])
    return np.concatenate([[w[0] - (mid[0] - w[0])], mid, [w[-1] + (w[-1] - mid[-1])]])


def source_bins(wave: np.ndarray, gap_factor: float = GAP_FACTOR, min_gap: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Bins (lo, hi) of the upload's samples. A step more than gap_factor times the local typical step
    (and wider than min_gap) is a gap: the bins on either side stop half a typical step from their
    sample, leaving it uncovered."""
    w = np.asarray(wave, dtype=np.float64)
    d = np.diff(w)
    k = min(25, d.size)
    # typical step: running median over k steps (robust to a few gaps, follows log-linear sampling)
    pad = np.pad(d, (k // 2, k - 1 - k // 2), mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(pad, k)
    typ = np.median(win, axis=1)
    gap = (d > gap_factor * typ) & (d > min_gap)
    half_left = np.where(gap, 0.5 * typ, 0.5 * d)        # reach of sample i to the right
    lo = np.empty_like(w)
    hi = np.empty_like(w)
    hi[:-1] = w[:-1] + half_left
    lo[1:] = w[1:] - np.where(gap, 0.5 * typ, 0.5 * d)
    lo[0] = w[0] - 0.5 * d[0]
    hi[-1] = w[-1] + 0.5 * d[-1]
    return lo, hi


def rebin_matrix(src_wave: np.ndarray, dst_wave: np.ndarray, gap_factor: float = GAP_FACTOR):
    """Sparse (P, N) matrix R and coverage (P,): R[k, j] = overlap(source bin j, model pixel k) / width(k).
    R @ flux is the mean flux density over each model pixel of the upload taken as constant over each of
    its bins, which conserves the integral of the flux over any span of whole pixels; coverage[k] is the
    fraction of model pixel k that the upload covers."""
    from scipy import sparse
    e = pixel_edges(dst_wave)
    lo, hi = source_bins(src_wave, gap_factor, min_gap=2.0 * float(np.median(np.diff(e))))
    a, b = e[:-1], e[1:]
    j0 = np.searchsorted(hi, a, side="right")          # first bin ending after a
    j1 = np.searchsorted(lo, b, side="left")           # bins starting before b: [j0, j1)
    cnt = np.clip(j1 - j0, 0, None)
    rows = np.repeat(np.arange(a.size), cnt)
    offs = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    cols = j0[rows] + offs
    ov = np.clip(np.minimum(hi[cols], b[rows]) - np.maximum(lo[cols], a[rows]), 0.0, None)
    width = b - a
    R = sparse.csr_matrix((ov / width[rows], (rows, cols)), shape=(a.size, src_wave.size))
    coverage = np.asarray(R.sum(axis=1)).ravel()
    return R, coverage


class Resampler:
    """Resampling from an upload's wavelengths onto the model grid, built once per source grid.

    Flux: the flux-conserving spline. The upload's samples are pixel means over bins whose edges lie
    half-way between samples; their running integral C(lambda) is known exactly at every bin edge. A
    cubic spline through those values gives C anywhere, and each model pixel [a, b] gets
    (C(b) - C(a)) / (b - a): the integral of the flux over any span between model-pixel edges is the
    upload's, and an upload already on the model grid comes back unchanged. Contiguous runs of bins
    are splined separately, so nothing is interpolated across a gap.
    Error: propagated through the overlap weights R (R[k, j] = overlap of bin j with pixel k / width
    of k): sigma_k^2 = sum_j R_kj^2 sigma_j^2.
    covered: model pixels lying entirely inside one contiguous run of the upload's bins."""

    def __init__(self, src_wave: np.ndarray, dst_wave: np.ndarray, gap_factor: float = GAP_FACTOR):
        self.src = np.asarray(src_wave, np.float64)
        self.dst = np.asarray(dst_wave, np.float64)
        self.R, cov = rebin_matrix(self.src, self.dst, gap_factor)
        e = pixel_edges(self.dst)
        lo, hi = source_bins(self.src, gap_factor, min_gap=2.0 * float(np.median(np.diff(e))))
        self.lo, self.hi = lo, hi
        self.a, self.b = e[:-1], e[1:]
        slack = COVER_SLACK * (self.b - self.a)   # wavelengths rounded in a text file still cover the end pixels
        brk = np.nonzero(lo[1:] > hi[:-1] + 1e-9 * np.abs(hi[:-1]))[0] + 1
        self.segments = []               # (first bin, last bin + 1, model pixels inside)
        covered = np.zeros(self.dst.size, bool)
        for s0, s1 in zip(np.concatenate([[0], brk]), np.concatenate([brk, [self.src.size]])):
            inside = np.nonzero((self.a >= lo[s0] - slack) & (self.b <= hi[s1 - 1] + slack))[0]
            if inside.size:
                self.segments.append((int(s0), int(s1), inside))
                covered[inside] = True
        self.covered = covered & (cov > 1 - 2 * COVER_SLACK)
        # already on the model grid (to 1% of a pixel, e.g. wavelengths rounded in a text file): used as is
        self.identity = bool(self.src.size == self.dst.size
                             and np.all(np.abs(self.src - self.dst) <= COVER_SLACK * (self.b - self.a)))
        if self.identity:
            self.covered = np.ones(self.dst.size, bool)

    def flux(self, f: np.ndarray) -> np.ndarray:
        """(n, N) -> (n, P); uncovered pixels are NaN."""
        from scipy.interpolate import CubicSpline
        f = np.atleast_2d(np.asarray(f, np.float64))
        if self.identity:
            return f
        out = np.full((f.shape[0], self.dst.size), np.nan)
        for s0, s1, inside in self.segments:
            edges = np.concatenate([[self.lo[s0]], self.hi[s0:s1]])
            cum = np.zeros((edges.size, f.shape[0]))                 # running integral, pixels along axis 0
            np.cumsum(f[:, s0:s1].T * np.diff(edges)[:, None], axis=0, out=cum[1:])
            if edges.size >= 4:
                C = CubicSpline(edges, cum, axis=0)
                ca, cb = C(self.a[inside]), C(self.b[inside])
            else:  # two or three bins: the piecewise-constant integral
                ca = np.stack([np.interp(self.a[inside], edges, c) for c in cum.T], axis=1)
                cb = np.stack([np.interp(self.b[inside], edges, c) for c in cum.T], axis=1)
            out[:, inside] = ((cb - ca) / (self.b[inside] - self.a[inside])[:, None]).T
        # a model pixel overhanging the upload's first or last bin by up to COVER_SLACK: the spline's
        # end extrapolates the running integral linearly, which is the end bin's flux
        out[:, ~self.covered] = np.nan
        return out

    def error(self, e: np.ndarray) -> np.ndarray:
        if self.identity:
            return np.atleast_2d(np.asarray(e, np.float64))
        e2 = np.atleast_2d(np.asarray(e, np.float64)) ** 2
        out = np.sqrt(np.asarray(self.R.multiply(self.R) @ e2.T).T)
        out[:, ~self.covered] = np.nan
        return out


def resample(wave, flux, dst_wave, error=None):
    """Flux (and error, propagated) of one or many spectra on dst_wave; returns flux, error, covered.
    Pixels not fully covered are NaN (the caller masks them)."""
    rs = Resampler(wave, dst_wave)
    out = rs.flux(flux)
    err = None if error is None else rs.error(error)
    if np.ndim(flux) == 1:
        out = out[0]
        err = None if err is None else err[0]
    return out, err, rs.covered


def der_snr(flux: np.ndarray) -> float:
    """DER_SNR (Stoehr et al. 2008): median flux / (1.482602/sqrt(6) median|2f_i - f_i-2 - f_i+2|)."""
    f = np.asarray(flux, np.float64)
    f = f[np.isfinite(f)]
    if f.size < 5:
        return float("nan")
    noise = 1.482602 / math.sqrt(6.0) * np.median(np.abs(2.0 * f[2:-2] - f[:-4] - f[4:]))
    sig = np.median(f)
    return float(sig / noise) if noise > 0 else float("inf")


# --------------------------------------------------------------------------- trained models
@dataclass
class Entry:
    """One finished run that Predict can use."""
    run_id: str
    spec: dict
    metrics: dict
    artifact: Path
    label: str
    usable: bool
    why: str = ""

    @property
    def noise_level(self) -> float:
        return float(self.spec["noise_level"])

    @property
    def target(self) -> str:
        return self.spec.get("target", "logg")


FORMABLE = {"flux": "flux", "error": "error", "flux+error": "flux and error", "snr": "flux / error",
            "error_pipeline": "error"}


def trained_models(ds: Dataset) -> list[Entry]:
    """Finished runs of this data set (same fingerprint, artifact in place), read from the registry
    without writing to it. Entries whose inputs cannot be formed from a spectrum are kept with usable=False."""
    from core import registry, suites
    if not config.registry_path().exists():
        return []
    con = registry.connect()
    try:
        rows = registry.runs(con, status="done", dataset=ds.name)
    finally:
        con.close()
    out = []
    for r in rows:
        if r.get("dataset_fp") != ds.fingerprint or not r.get("artifact_path"):
            continue
        art = Path(r["artifact_path"])
        if not (art / "run.json").exists():
            continue
        spec, inputs = r["spec"], r["spec"].get("inputs", "flux")
        label = suites.row_label(spec)
        if inputs == "meta":
            usable, why = False, "needs Teff and [M/H] as inputs, which a spectrum does not give"
        elif inputs in FORMABLE:
            usable, why = True, ""
        elif inputs == "flux_clean":
            usable, why = False, "was trained on noise-free flux, which an observed spectrum is not"
        else:
            usable, why = False, f"an ablation model (inputs '{inputs}') that only makes sense on the data set"
        out.append(Entry(r["run_id"], spec, r.get("metrics") or {}, art, label, usable, why))
    # tell apart runs with the same label (profiles, seeds)
    seen: dict[tuple, list[Entry]] = {}
    for e in out:
        seen.setdefault((e.label, e.noise_level, e.target), []).append(e)
    for group in seen.values():
        if len(group) > 1:
            for e in group:
                e.label += f" ({e.spec.get('profile')}, seed {e.spec.get('seed')})"
    out.sort(key=lambda e: (e.noise_level, e.target != "logg", -(e.metrics.get("r2") or -9)))
    return out


_CACHE: dict = {}
_LOCK = threading.Lock()


def _cached(key, make):
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    val = make()
    with _LOCK:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = val
    return val


def load(entry: Entry):
    """The fitted model of a run, loaded once per process (keyed by its artifact's run.json mtime)."""
    from core.train import load_model
    key = ("model", str(entry.artifact), (entry.artifact / "run.json").stat().st_mtime_ns)
    return _cached(key, lambda: load_model(entry.artifact))


@dataclass
class Reference:
    """What a data set's training spectra look like at one noise level."""
    noise_level: float
    mu: np.ndarray          # (P,) mean training flux
    comps: np.ndarray       # (K, P) principal components
    score_var: np.ndarray   # (K,) variance of the training scores
    ref_dist: np.ndarray    # sorted PCA (Mahalanobis) distances of validation spectra
    ref_chi2: np.ndarray    # sorted reduced chi^2 of their PCA reconstruction
    err_median: np.ndarray  # (P,) median training 1-sigma error at this level
    snr: np.ndarray         # sorted per-spectrum median S/N of the training split at this level
    scale_rms: float = 0.0  # RMS error of the fitted continuum level on validation spectra (true level: 1)


def reference(ds: Dataset, noise_level: float) -> Reference:
    key = ("ref", str(ds.path), ds.fingerprint, float(noise_level))
    return _cached(key, lambda: _make_reference(ds, float(noise_level)))


def _make_reference(ds: Dataset, nl: float) -> Reference:
    rows = ds.split_rows("train")
    rows = rows if rows.size <= PCA_MAX_TRAIN else rows[np.linspace(0, rows.size - 1, PCA_MAX_TRAIN).astype(int)]
    fl, er = ds.read(rows)                                        # noise-free flux and its 1-sigma at level 1
    X = fl.astype(np.float64)
    mu = X.mean(0)
    k = int(min(N_PCA, max(1, X.shape[0] - 2)))
    S, Vt = _top_components(X - mu, k)
    score_var = (S ** 2) / max(1, X.shape[0] - 1)
    err_med = nl * np.median(er, axis=0).astype(np.float64)
    snr = np.sort(np.median(fl / (nl * er), axis=1))
    ref = Reference(nl, mu, Vt, score_var, np.array([]), np.array([]), err_med, snr)
    val = ds.view("val", nl, "flux+error", limit=REF_MAX)
    if len(val.y) == 0:
        val = ds.view("test", nl, "flux+error", limit=REF_MAX)
    if len(val.y):
        f, e = val.x[:, 0].astype(np.float64), val.x[:, 1].astype(np.float64)
        scale, coef, chi2 = _fit_scale(ref, f, e, np.ones(f.shape[1], bool))
        ref.ref_dist = np.sort(_mahalanobis(ref, coef / scale[:, None]))
        ref.ref_chi2 = np.sort(chi2)
        ref.scale_rms = float(np.sqrt(np.mean((scale - 1.0) ** 2)))
    return ref


def _top_components(Xc: np.ndarray, k: int, iters: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Top-k singular values and right singular vectors of Xc by randomised subspace iteration
    (Halko et al. 2011), seeded. Only small (m x m, m = k + 10) eigen-problems are solved: a few
    matrix products instead of a full SVD."""
    rng = np.random.default_rng(0)

    def orth(Y):
        w, V = np.linalg.eigh(Y.T @ Y)
        keep = w > w.max() * 1e-12
        return Y @ (V[:, keep] / np.sqrt(w[keep]))

    Q = orth(Xc @ rng.standard_normal((Xc.shape[1], min(k + 10, min(Xc.shape)))))
    for _ in range(iters):
        Q = orth(Xc @ (Xc.T @ Q))
    B = Q.T @ Xc
    w, U = np.linalg.eigh(B @ B.T)
    order = np.argsort(w)[::-1][:k]
    S = np.sqrt(np.clip(w[order], 1e-300, None))
    Vt = (U[:, order].T @ B) / S[:, None]
    return S, Vt


def _fit_scale(ref: Reference, f: np.ndarray, e: np.ndarray, cov: np.ndarray):
    """Fit f ~ s * (mu + V^T c) over the covered pixels, for many spectra at once.

    Each spectrum is first divided by its median (s0), then fitted by weighted least squares with the
    training error at this level as weights and a Gaussian prior on c (the training score variances,
    which keeps the components from absorbing the level): one (K+1)-square system for all spectra.
    Returns the level s, the coefficients c (in units of s0) and the reduced chi^2 of the
    reconstruction, in units of the spectrum's own error added in quadrature to the training error
    (so a very high S/N upload is not held to a precision the training spectra never had)."""
    A = np.vstack([ref.mu[cov], ref.comps[:, cov]]).T            # (Pc, K+1)
    wr = 1.0 / ref.err_median[cov] ** 2
    kk = A.shape[1]
    G = A.T @ (A * wr[:, None])
    G[1:, 1:] += np.diag(1.0 / ref.score_var)
    fc = f[:, cov]
    s0 = np.mean(fc, axis=1)
    fn = fc / s0[:, None]
    a = np.linalg.solve(G, (A * wr[:, None]).T @ fn.T).T           # (n, K+1)
    s = s0 * a[:, 0]
    resid = fn - a @ A.T
    den = e[:, cov] / s0[:, None]
    den *= den
    den += (a[:, :1] * ref.err_median[None, cov]) ** 2
    resid *= resid
    resid /= den
    chi2 = np.sum(resid, axis=1) / max(1, A.shape[0] - kk)
    return s, a[:, 1:] * s0[:, None], chi2


def _mahalanobis(ref: Reference, coef: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(coef ** 2 / ref.score_var[None, :], axis=1))


def _pct(sorted_ref: np.ndarray, x: float) -> float:
    if sorted_ref.size == 0 or not np.isfinite(x):
        return float("nan")
    return float(100.0 * np.searchsorted(sorted_ref, x, side="right") / sorted_ref.size)


# --------------------------------------------------------------------------- preparing an upload
@dataclass
class Prepared:
    """Spectra on the model grid, normalised as in training, with what it took to get there."""
    wave: np.ndarray          # (P,) the model grid
    flux: np.ndarray          # (n, P) normalised, masked pixels filled with the PCA reconstruction
    error: np.ndarray         # (n, P) normalised 1-sigma error (masked pixels: training median)
    covered: np.ndarray       # (n, P) bool: pixel fully covered by the upload
    snr: np.ndarray           # (n,) median S/N per model pixel
    snr_how: str
    scale: np.ndarray         # (n,) the upload's flux was divided by this
    scale_how: str
    noise_level: np.ndarray   # (n,) the noise level whose models are used
    noise_how: str
    dist: np.ndarray          # (n,) PCA distance
    chi2: np.ndarray          # (n,) reduced chi^2 of the PCA reconstruction
    coarse: float             # upload pixel width / model pixel width (median)
    fitted: np.ndarray        # (n,) bool: the continuum level was fitted (not used as uploaded)


def _noise_levels(ds: Dataset, entries: list[Entry]) -> list[float]:
    return sorted({e.noise_level for e in entries if e.usable})


def choose_noise(snr: np.ndarray, levels: list[float], ds: Dataset) -> np.ndarray:
    """The level whose training S/N (median over the training split) is nearest in log S/N."""
    med1 = reference_snr1(ds)
    meds = np.array([med1 / nl for nl in levels])
    d = np.abs(np.log(np.clip(snr, 1e-6, None))[:, None] - np.log(meds)[None, :])
    return np.array(levels)[np.argmin(d, axis=1)]


def reference_snr1(ds: Dataset) -> float:
    """Median S/N per pixel of the training split at noise level 1."""
    def make():
        rows = ds.split_rows("train")
        rows = rows if rows.size <= PCA_MAX_TRAIN else rows[np.linspace(0, rows.size - 1, PCA_MAX_TRAIN).astype(int)]
        fl, er = ds.read(rows)
        return float(np.median(np.median(fl / er, axis=1)))
    return _cached(("snr1", str(ds.path), ds.fingerprint), make)


NORMALISE = {
    "auto": "fit the continuum level; keep an upload already normalised like the training spectra as it is",
    "fit": "always divide by the fitted continuum level",
    "as-is": "use the flux as uploaded (it is already normalised like the training spectra)",
}


def prepare(ds: Dataset, wave: np.ndarray, flux: np.ndarray, error: np.ndarray | None, name: str,
            noise: str | float = "auto", levels: list[float] | None = None, normalise: str = "auto") -> Prepared:
    """Resample, mask, estimate S/N, pick the noise level, normalise, fill: for n spectra on one grid."""
    if normalise not in NORMALISE:
        raise PredictError(f"normalise must be one of {', '.join(NORMALISE)}, got {normalise!r}")
    grid = ds.wave.astype(np.float64)
    wave = np.asarray(wave, np.float64)
    check_units(wave, grid, name)
    flux = np.atleast_2d(np.asarray(flux, np.float64))
    n = flux.shape[0]
    rs = Resampler(wave, grid)
    covered = rs.covered
    frac = float(covered.mean())
    if frac < MIN_COVERAGE:
        raise PredictError(f"{name}: covers {100 * frac:.0f}% of the models' grid ({grid[0]:.0f}-{grid[-1]:.0f} Å; "
                           f"uploaded {wave[0]:.0f}-{wave[-1]:.0f} Å); at least {100 * MIN_COVERAGE:.0f}% is needed")
    snr_how = "median flux / error per model pixel, from the upload's error column"
    if error is None:
        snr_native = np.array([der_snr(fi) for fi in flux])
        if not np.all(np.isfinite(snr_native)) or np.any(snr_native <= 0):
            raise PredictError(f"{name}: no error column, and the noise cannot be estimated from the flux "
                               f"(DER_SNR is undefined: constant or non-positive flux?)")
        error = np.abs(np.median(flux, axis=1, keepdims=True)) / snr_native[:, None] * np.ones_like(flux)
        snr_how = "DER_SNR estimate from the flux (no error column), per model pixel"
    else:
        error = np.atleast_2d(np.asarray(error, np.float64))
    fg = rs.flux(flux)                                            # (n, P), NaN where not covered
    eg = rs.error(error)
    cv = slice(None) if covered.all() else covered                # (a slice avoids copies of big batches)
    mean = np.mean(fg[:, cv], axis=1)
    if np.any(mean <= 0):
        i = int(np.argmax(mean <= 0))
        raise PredictError(f"{name}: {'spectrum ' + str(i) + ' has ' if n > 1 else ''}a mean flux <= 0 over the "
                           f"models' grid; it cannot be normalised")
    snr = np.median(fg[:, cv] / eg[:, cv], axis=1)
    levels = levels or list(config.NOISE_LEVELS)
    if noise in (None, "auto"):
        nl = choose_noise(snr, levels, ds)
        noise_how = "auto: the trained noise level whose training S/N is nearest the spectrum's"
    else:
        nl = np.full(n, float(noise))
        noise_how = "chosen by the user"
    out_f = out_e = None
    if np.unique(nl).size > 1:
        out_f, out_e = np.empty((n, grid.size)), np.empty((n, grid.size))
    scale = np.empty(n)
    fitted = np.zeros(n, bool)
    dist = np.empty(n)
    chi2 = np.empty(n)
    imported = str(ds.attrs.get("source", "")).startswith("import")
    how = set()
    for level in np.unique(nl):
        sel = slice(None) if np.all(nl == level) else nl == level
        ref = reference(ds, float(level))
        s, coef, c2 = _fit_scale(ref, fg[sel], eg[sel], cv)
        if np.any(~np.isfinite(s)) or np.any(s <= 0):
            raise PredictError(f"{name}: the flux cannot be matched to the training spectra (fitted level <= 0)")
        if imported and covered.all():
            s = np.mean(fg[sel], axis=1)         # exactly the import's normalisation: mean flux = 1
            how.add("divided by its mean flux, as the import normalised the training spectra")
        tol = max(3.0 * ref.scale_rms, 1e-4)
        as_is = np.full(s.shape, normalise == "as-is")
        if normalise == "auto":
            as_is = np.abs(s - 1.0) <= tol
        use = np.where(as_is, 1.0, s)
        if as_is.any():
            how.add(f"already normalised like the training spectra (fitted level within {100 * tol:.2g}% of 1): "
                    f"used as uploaded" if normalise == "auto" else "used as uploaded (normalisation 'as-is')")
        if (~as_is).any() and not (imported and covered.all()):
            how.add("divided by its continuum level, fitted against the training spectra (their mean and "
                    f"{ref.comps.shape[0]} principal components, over the covered pixels; typical error "
                    f"{100 * ref.scale_rms:.2g}%)")
        f_norm = fg[sel] / use[:, None] if (use != 1.0).any() else fg[sel]
        e_norm = eg[sel] / use[:, None] if (use != 1.0).any() else eg[sel]
        if not covered.all():
            recon = (ref.mu[None, :] * s[:, None] + coef @ ref.comps) / use[:, None]
            f_norm[:, ~covered] = recon[:, ~covered]
            e_norm[:, ~covered] = ref.err_median[None, ~covered]
        if isinstance(sel, slice):
            out_f, out_e = f_norm, e_norm
        else:
            out_f[sel], out_e[sel] = f_norm, e_norm
        scale[sel], fitted[sel] = use, ~as_is
        dist[sel] = _mahalanobis(ref, coef / s[:, None])
        chi2[sel] = c2
    dw_up = np.median(np.diff(wave))
    dw_grid = np.median(np.diff(grid))
    return Prepared(grid, out_f, out_e, np.broadcast_to(covered, (n, grid.size)), snr, snr_how, scale,
                    "; ".join(sorted(how)), nl, noise_how, dist, chi2, float(dw_up / dw_grid), fitted)


def build_view(entry: Entry, flux: np.ndarray, error: np.ndarray, covered: np.ndarray, model=None) -> View:
    """The (n, C, P) input a run's model expects, formed from normalised flux and error."""
    inputs = entry.spec.get("inputs", "flux")
    if getattr(model, "family", "") == "cannon":
        error = np.where(covered, error, CANNON_MASK_ERROR)
    chans = {"flux": ["flux"], "error": ["error"], "error_pipeline": ["error"], "flux+error": ["flux", "error"],
             "snr": ["snr"]}[inputs]
    x = np.empty((flux.shape[0], len(chans), flux.shape[1]), np.float32)
    for i, c in enumerate(chans):
        x[:, i] = flux / error if c == "snr" else (flux if c == "flux" else error)
    return View(x, np.full((len(x), 3), np.nan, np.float32), np.arange(len(x)), [inputs], np.empty(0))


SINGLE_PASS = ("physics",)   # model families fitted per spectrum (the likelihood ceiling): no MC re-draws


def _saliency_of(entries: list[Entry], best: dict, f: np.ndarray, e: np.ndarray, covered: np.ndarray):
    """Per-pixel saliency of the recommended model for this spectrum, or None (never fails the answer)."""
    try:
        en = next(x for x in entries if x.run_id == best["run_id"])
        model = load(en)
        return saliency(en, model, build_view(en, f[:1], e[:1], covered, model)) | {"model": best["model"]}
    except Exception:  # noqa: BLE001 - a missing saliency only hides a chart
        return None


def saliency(entry: Entry, model, view: View) -> dict | None:
    """How much each pixel of this one spectrum moves the model's log g, summed over input channels.

    torch models: |gradient x input| (core.explain); Ridge: |coefficient x (input - training mean)|, its
    exact additive split of this prediction; LightGBM: |TreeSHAP contribution| (pred_contrib); the Cannon:
    log g information per pixel at the fitted labels, (d flux / d log g)^2 / (error^2 + scatter^2)."""
    x = view.x[:1]
    P_ = x.shape[-1]
    if getattr(model, "differentiable", False):
        import torch
        from core import explain
        g = explain.gradient_x_input(model.forward_tensor, torch.as_tensor(x)).detach().numpy()
        return {"values": np.abs(g[0]).sum(0), "kind": "|gradient × input|"}
    if hasattr(model, "coef_") and hasattr(model, "std_") and getattr(model, "family", "") == "linear":
        c = model.coef_ / model.std_ * (x.reshape(1, -1)[0] - model.mean_)
        return {"values": np.abs(c.reshape(-1, P_)).sum(0), "kind": "|coefficient × (flux − training mean)|"}
    if hasattr(model, "booster_"):
        c = model.booster_.predict(x.reshape(1, -1), pred_contrib=True,
                                   num_iteration=model.booster_.best_iteration or None)[0, :-1]
        return {"values": np.abs(c.reshape(-1, P_)).sum(0), "kind": "|TreeSHAP contribution|"}
    if _is_cannon(model):
        from models.cannon import design_jac
        lab, _ = model.infer_labels(View(x, view.y[:1], view.index[:1], view.channels, view.wave))
        ls = (lab - model.lmean_) / model.lstd_
        dg = design_jac(ls)[0][:, 1] @ model.theta_ / model.lstd_[1]
        w = 1.0 / (np.clip(x[0, 1].astype(np.float64), 1e-6, None) ** 2 + model.s2_)
        return {"values": dg ** 2 * w, "kind": "log g information per pixel, (d flux / d log g)² / σ²"}
    return None


def _is_cannon(model) -> bool:
    return getattr(model, "family", "") == "cannon" and hasattr(model, "infer_labels") and hasattr(model, "theta_")


def cannon_fit(model, view: View) -> tuple[np.ndarray, np.ndarray]:
    """A Cannon model's best-fit labels (n, 3) and their formal 1-sigma (n, 3): the square root of the
    diagonal of the inverse Fisher matrix J^T W J at the best fit, W = 1 / (error^2 + scatter^2)."""
    from models.cannon import design_jac
    labels, _ = model.infer_labels(view)
    e = view.x[:, 1].astype(np.float64)
    w = 1.0 / (np.clip(e, 1e-6, None) ** 2 + model.s2_)
    ls = (labels - model.lmean_) / model.lstd_
    J = np.einsum("nki,kp->npi", design_jac(ls), model.theta_, optimize=True)     # (n, P, 3)
    F = np.einsum("npi,np,npj->nij", J, w, J, optimize=True) + 1e-12 * np.eye(3)
    sig = np.sqrt(np.clip(np.diagonal(np.linalg.inv(F), axis1=1, axis2=2), 0, None)) * model.lstd_
    return labels, sig


def _run_model(entry: Entry, view: View):
    """Mean (n,) or (n, 3) for a Cannon asked for all labels, and the model's own std or None."""
    model = load(entry)
    out = model.predict(view)
    mean, std = out if isinstance(out, tuple) else (out, None)
    return np.asarray(mean, np.float64).reshape(-1), (None if std is None else np.asarray(std, np.float64).reshape(-1))


# --------------------------------------------------------------------------- one spectrum
def example(ds: Dataset, k: int = 0, noise_level: float = 0.1, seed: int = 0) -> Spectrum:
    """Test spectrum k of the data set exactly as the models were scored on it (same noise draw as
    Dataset.view('test', noise_level, 'flux+error', seed)), with its true labels."""
    test = ds.split_rows("test")
    if test.size == 0:
        raise PredictError(f"data set {ds.name!r} has an empty test split: no example")
    k = int(k) % test.size
    rows = test[k:k + 1]
    flux, err = ds.read(rows)
    noisy = flux[0] + noise_level * err[0] * ds.noise(rows, noise_level, seed)[0]
    t = ds.labels[rows[0]]
    return Spectrum(ds.wave.astype(np.float64), noisy.astype(np.float64), (noise_level * err[0]).astype(np.float64),
                    name=f"example: test star {k} of {ds.name} at noise level {nl_text(noise_level)}",
                    fmt="a test spectrum of the active data set, with the noise draw the models were scored on",
                    truth={"teff": float(t[0]), "logg": float(t[1]), "mh": float(t[2]), "row": int(rows[0]),
                           "noise_level": float(noise_level)})


def _one_blas_thread():
    """BLAS on one thread while predicting: the matrices here are small, and on a 2-core machine (or a
    busy one) OpenBLAS's thread start-up and contention cost more than they save (measured: 0.30 s ->
    0.04 s for one spectrum, 1,155 -> 2,834 spectra/s in a batch on a loaded 2-core machine)."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=1, user_api="blas")
    except Exception:  # noqa: BLE001 - threadpoolctl is optional (it comes with scikit-learn)
        import contextlib
        return contextlib.nullcontext()


def predict(item: Spectrum, ds: Dataset, noise: str | float = "auto", mc: int = MC_DRAWS, seed: int = 0,
            normalise: str = "auto") -> dict:
    """Everything the Predict page and the CLI show for one spectrum, as a JSON-able dict (plus the
    arrays for the plot under the key '_grid', which to_json drops)."""
    with _one_blas_thread():
        return _predict(item, ds, noise, mc, seed, normalise)


def _predict(item: Spectrum, ds: Dataset, noise, mc: int, seed: int, normalise: str) -> dict:
    t0 = time.perf_counter()
    entries = trained_models(ds)
    usable = [e for e in entries if e.usable]
    levels = _noise_levels(ds, entries)
    if not usable:
        raise PredictError(f"no trained models for data set {ds.name!r} yet: train some on the Training page or with "
                           f"`python -m core train --suite report --dataset {ds.name}`")
    if noise not in (None, "auto"):
        noise = float(noise)
        if noise not in levels:
            raise PredictError(f"no models trained at noise level {noise:g} for {ds.name!r}; trained levels: "
                               f"{', '.join(f'{x:g}' for x in levels)}")
    prep = prepare(ds, item.wave, item.flux, item.error, item.name, noise, levels, normalise)
    nl = float(prep.noise_level[0])
    ref = reference(ds, nl)
    covered = prep.covered[0]
    f, e = prep.flux, prep.error
    # re-draws of the input: noise on the covered pixels (filled ones stay as they are), and, where the
    # continuum level was fitted, the level too (its RMS error on validation spectra)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((mc, f.shape[1])) * covered[None, :] if mc else np.zeros((0, f.shape[1]))
    lvl = 1.0 + (ref.scale_rms * rng.standard_normal((len(z), 1)) if prep.fitted[0] else np.zeros((len(z), 1)))
    f_mc = np.vstack([f, (f + e * z) * lvl])
    e_mc = np.repeat(e, 1 + len(z), axis=0)
    cov_mc = np.repeat(prep.covered[:1], 1 + len(z), axis=0)
    rows, others, skipped = [], [], []
    for en in entries:
        if en.noise_level != nl:
            continue
        if not en.usable:
            skipped.append({"model": en.label, "why": en.why})
            continue
        try:
            model = load(en)
            if _is_cannon(model):   # a chi^2 fit: its formal 1-sigma, no re-draws (the fit is slow per spectrum)
                view = build_view(en, f, e, prep.covered[:1], model)
                lab, sig3 = cannon_fit(model, view)
                preds = {k: (lab[0, i], sig3[0, i], UNCERTAINTY_KINDS["fisher"]) for i, k in enumerate(LABELS)}
            elif getattr(model, "family", "") in SINGLE_PASS:   # slow per spectrum: one pass, no spread
                m, own = _run_model(en, build_view(en, f, e, prep.covered[:1], model))
                preds = {en.target: (m[0], np.nan if own is None else own[0],
                                     UNCERTAINTY_KINDS["own"] if own is not None else "none (a single fit)")}
            else:
                view = build_view(en, f_mc, e_mc, cov_mc, model)
                m, own = _run_model(en, view)
                if own is not None:
                    preds = {en.target: (m[0], own[0], UNCERTAINTY_KINDS["own"])}
                elif len(m) > 1:
                    kind = UNCERTAINTY_KINDS["mc_level" if prep.fitted[0] else "mc"]
                    preds = {en.target: (m[0], np.std(m[1:], ddof=1), f"{kind} ({len(m) - 1} draws)")}
                else:
                    preds = {en.target: (m[0], np.nan, "none")}
        except Exception as ex:  # noqa: BLE001 - one broken model must not hide the others
            skipped.append({"model": en.label, "why": f"failed: {type(ex).__name__}: {str(ex)[:120]}"})
            continue
        for target, (value, sig, kind) in preds.items():
            by_product = target != en.target
            value, sig = float(value), float(sig)
            row = {"model": en.label, "name": en.spec["model"], "inputs": en.spec.get("inputs"), "target": target,
                   "noise_level": nl, "value": value, "uncertainty": sig, "uncertainty_kind": kind,
                   "test_rmse": None if by_product else en.metrics.get("rmse"),
                   "test_r2": None if by_product else en.metrics.get("r2"), "run_id": en.run_id,
                   "note": "fitted jointly with log g; not scored on the test split" if by_product else ""}
            (rows if target == "logg" else others).append(row)
    if not rows:
        raise PredictError(f"no log g model at noise level {nl_text(nl)} could run on this spectrum"
                           + (f" ({skipped[0]['model']}: {skipped[0]['why']})" if skipped else ""))
    best = max(rows, key=lambda r: (r["test_r2"] if r["test_r2"] is not None else -9))
    floor = best["test_rmse"] or 0.0
    spread = best["uncertainty"] if np.isfinite(best["uncertainty"]) else 0.0
    rec = {"model": best["model"], "value": best["value"], "uncertainty": max(spread, floor),
           "why": f"best test R² at noise level {nl_text(nl)} ({best['test_r2']:.3f}); error bar = the larger of its "
                  f"{best['uncertainty_kind']} ({spread:.3f}) and its test RMSE ({floor:.3f})"}
    other_best = {}
    for k in ("teff", "mh"):
        cands = [r for r in others if r["target"] == k]
        scored = [r for r in cands if r["test_r2"] is not None]
        pick = max(scored, key=lambda r: r["test_r2"]) if scored else (cands[0] if cands else None)
        if pick:
            other_best[k] = {"model": pick["model"], "value": pick["value"], "uncertainty": pick["uncertainty"],
                             "scored": pick["test_r2"] is not None}
    ood = _ood_words(prep, 0, ref, rec["value"], ds)
    miss = _missing_ranges(prep.wave, covered)
    out = {
        "file": item.name, "format": item.fmt, "notes": list(item.notes), "dataset": ds.name,
        "dataset_fingerprint": ds.fingerprint,
        "coverage": {"fraction": float(covered.mean()), "missing_pixels": int((~covered).sum()),
                     "missing_ranges_A": miss, "grid": [float(prep.wave[0]), float(prep.wave[-1])],
                     "upload_range_A": [float(item.wave[0]), float(item.wave[-1])],
                     "statement": _coverage_words(covered, prep.wave, miss)},
        "snr": {"value": float(prep.snr[0]), "how": prep.snr_how},
        "noise_level": {"value": nl, "how": prep.noise_how, "levels": levels,
                        "training_snr_range": [float(np.percentile(ref.snr, SNR_PCT[0])),
                                               float(np.percentile(ref.snr, SNR_PCT[1]))]},
        "normalisation": {"scale": float(prep.scale[0]), "how": prep.scale_how, "mode": normalise,
                          "fitted": bool(prep.fitted[0]), "level_rms": ref.scale_rms},
        "logg": rows, "recommended": rec, "other_labels": others, "other_best": other_best,
        "skipped": skipped, "ood": ood, "truth": item.truth,
        "seconds": None,
        "_grid": {"wave": prep.wave, "flux": prep.flux[0], "error": prep.error[0], "covered": covered},
        "_saliency": _saliency_of(entries, best, f, e, prep.covered[:1]),
    }
    out["seconds"] = round(time.perf_counter() - t0, 4)
    return out


def _missing_ranges(wave, covered) -> list[list[float]]:
    m = np.concatenate([[False], ~covered, [False]]).astype(np.int8)
    d = np.diff(m)
    s, e = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0] - 1
    return [[round(float(wave[a]), 2), round(float(wave[b]), 2)] for a, b in zip(s, e)]


def _coverage_words(covered, wave, miss) -> str:
    if covered.all():
        return f"covers the whole model grid ({wave[0]:.0f}-{wave[-1]:.0f} Å)"
    parts = ", ".join(f"{a:.0f} Å" if round(a) == round(b) else f"{a:.0f}-{b:.0f} Å" for a, b in miss[:4]) \
        + (f" and {len(miss) - 4} more" if len(miss) > 4 else "")
    frac = 100 * (1 - covered.mean())
    s = (f"{frac:.2g}% of the model grid is missing ({int((~covered).sum()):,} of "
         f"{covered.size:,} pixels: {parts}); those pixels were filled with the training spectra's PCA "
         f"reconstruction of the rest")
    ca = (wave >= CA_TRIPLET[0]) & (wave <= CA_TRIPLET[1])
    if (~covered[ca]).any():
        s += f"; the Ca II triplet region ({CA_TRIPLET[0]:.0f}-{CA_TRIPLET[1]:.0f} Å), where most log g information is, is " \
             f"{100 * (~covered[ca]).mean():.0f}% missing"
    return s


def _ood_words(prep: Prepared, i: int, ref: Reference, logg: float, ds: Dataset) -> dict:
    flags = []
    dist_pct = _pct(ref.ref_dist, float(prep.dist[i]))
    chi_pct = _pct(ref.ref_chi2, float(prep.chi2[i]))
    if np.isfinite(dist_pct) and dist_pct > OOD_PCT:
        flags.append(f"its shape is unlike the training spectra: farther from them (PCA distance) than "
                     f"{min(dist_pct, 100):.1f}% of the validation spectra")
    if np.isfinite(chi_pct) and chi_pct > OOD_PCT:
        flags.append(f"it has features the training spectra do not have: its residual from the training-spectra "
                     f"reconstruction (χ²/pixel {prep.chi2[i]:.2g}) exceeds {min(chi_pct, 100):.1f}% of the validation spectra's")
    lo, hi = np.percentile(ref.snr, SNR_PCT[0]), np.percentile(ref.snr, SNR_PCT[1])
    s = float(prep.snr[i])
    if s < lo or s > hi:
        flags.append(f"its S/N ({s:.0f}) is outside the training range at noise level {nl_text(ref.noise_level)} "
                     f"({lo:.0f}-{hi:.0f}, 1st-99th percentile)")
    cov = float(prep.covered[i].mean())
    if 1.0 - cov > OOD_MISSING:
        flags.append(f"{100 * (1 - cov):.0f}% of the wavelength grid is not covered")
    if prep.coarse > COARSE_FACTOR:
        flags.append(f"its pixels are {prep.coarse:.1f}x wider than the model grid's: lines are smeared")
    lo_g, hi_g = ds.labels[:, 1].min(), ds.labels[:, 1].max()
    if not (lo_g - 0.1 <= logg <= hi_g + 0.1):
        flags.append(f"the recommended log g ({logg:.2f}) is outside the training range ({lo_g:.1f}-{hi_g:.1f})")
    if flags:
        verdict = "unusual: treat the prediction as an extrapolation"
    else:
        verdict = (f"typical of the training spectra (PCA distance at the {ordinal(dist_pct)} percentile of the validation "
                   f"spectra, S/N inside the training range)")
    return {"in_distribution": not flags, "verdict": verdict, "flags": flags, "pca_distance": float(prep.dist[i]),
            "pca_distance_percentile": dist_pct, "residual_chi2": float(prep.chi2[i]),
            "residual_percentile": chi_pct}


# --------------------------------------------------------------------------- many spectra
def predict_batch(batch: Batch, ds: Dataset, noise: str | float = "auto", chunk: int = 4096,
                  normalise: str = "auto", all_models: bool = False, progress=None):
    """One row per spectrum: S/N, noise level, every model's log g, the recommended value with its test RMSE
    as error bar, OOD flags, and the true labels when the file has them. No MC re-draws (the error bar is the
    recommended model's test RMSE). Returns (DataFrame, summary dict)."""
    with _one_blas_thread():
        return _predict_batch(batch, ds, noise, chunk, normalise, all_models, progress)


def _predict_batch(batch: Batch, ds: Dataset, noise, chunk: int, normalise: str, all_models: bool, progress):
    import pandas as pd
    t0 = time.perf_counter()
    entries = trained_models(ds)
    levels = _noise_levels(ds, entries)
    if not levels:
        raise PredictError(f"no trained models for data set {ds.name!r} yet: train some on the Training page or with "
                           f"`python -m core train --suite report --dataset {ds.name}`")
    if noise not in (None, "auto") and float(noise) not in levels:
        raise PredictError(f"no models trained at noise level {float(noise):g} for {ds.name!r}; trained levels: "
                           f"{', '.join(f'{x:g}' for x in levels)}")
    n_all = batch.flux.shape[0]
    skipped: dict[str, str] = {e.label: e.why for e in entries if not e.usable}
    frames = []
    for i0 in range(0, n_all, chunk):
        sl = slice(i0, i0 + chunk)
        prep = prepare(ds, batch.wave, batch.flux[sl], None if batch.error is None else batch.error[sl],
                       batch.name, noise, levels, normalise)
        n = prep.flux.shape[0]
        cols: dict[str, np.ndarray] = {
            "spectrum": np.arange(i0, i0 + n), "snr": prep.snr, "noise_level": prep.noise_level,
            "coverage": prep.covered.mean(axis=1), "scale": prep.scale,
            "logg": np.full(n, np.nan), "logg_err": np.full(n, np.nan), "recommended_model": np.full(n, "", object),
            "pca_distance_pct": np.full(n, np.nan), "ood": np.full(n, "", object)}
        for level in np.unique(prep.noise_level):
            sel = prep.noise_level == level
            ref = reference(ds, float(level))
            best_r2 = -np.inf
            for en in entries:
                if not en.usable or en.noise_level != level:
                    continue
                model = load(en)
                slow = _is_cannon(model) or getattr(model, "family", "") in SINGLE_PASS
                if slow and n_all > BATCH_SLOW_MAX and not all_models:
                    skipped[en.label] = (f"a per-spectrum fit (slow); skipped for batches over {BATCH_SLOW_MAX} "
                                         f"spectra (CLI: --all-models)")
                    continue
                view = build_view(en, prep.flux[sel], prep.error[sel], prep.covered[sel], model)
                try:
                    if _is_cannon(model):
                        lab = np.concatenate([model.infer_labels(View(view.x[j:j + 256], view.y[j:j + 256],
                                                                      view.index[j:j + 256], view.channels,
                                                                      view.wave))[0]
                                              for j in range(0, len(view.x), 256)])
                        preds = {"logg": lab[:, 1], "teff": lab[:, 0], "mh": lab[:, 2]}
                    else:
                        preds = {en.target: _run_model(en, view)[0]}
                except Exception as ex:  # noqa: BLE001 - one broken model must not stop the batch
                    skipped[en.label] = f"failed: {type(ex).__name__}: {str(ex)[:100]}"
                    continue
                for target, v in preds.items():
                    col = f"{target} [{en.label}]" + ("" if target == en.target else " (by-product)")
                    cols.setdefault(col, np.full(n, np.nan))[sel] = v
                r2 = en.metrics.get("r2")
                if en.target == "logg" and r2 is not None and r2 > best_r2:
                    best_r2 = r2
                    cols["logg"][sel] = preds["logg"]
                    cols["logg_err"][sel] = en.metrics.get("rmse", np.nan)
                    cols["recommended_model"][sel] = en.label
            lo, hi = np.percentile(ref.snr, SNR_PCT[0]), np.percentile(ref.snr, SNR_PCT[1])
            dpct = np.searchsorted(ref.ref_dist, prep.dist[sel], side="right") / max(1, ref.ref_dist.size) * 100
            cpct = np.searchsorted(ref.ref_chi2, prep.chi2[sel], side="right") / max(1, ref.ref_chi2.size) * 100
            words = []
            for d, c, snr_i in zip(dpct, cpct, prep.snr[sel]):
                w = (["shape unlike the training spectra (PCA distance)"] if d > OOD_PCT else []) \
                    + (["features the training spectra lack (PCA residual)"] if c > OOD_PCT else []) \
                    + (["S/N outside the training range"] if snr_i < lo or snr_i > hi else []) \
                    + (["partial wavelength coverage"] if 1 - prep.covered[0].mean() > OOD_MISSING else [])
                words.append("; ".join(w))
            cols["ood"][sel] = words
            cols["pca_distance_pct"][sel] = dpct
        if batch.labels is not None:
            for j, k in enumerate(LABELS):
                cols[f"true_{k}"] = batch.labels[sl, j]
        frames.append(pd.DataFrame(cols))
        if progress:
            progress(min(1.0, (i0 + n) / n_all), f"{i0 + n:,} of {n_all:,} spectra")
    df = pd.concat(frames, ignore_index=True)
    dt = time.perf_counter() - t0
    summary = {"file": batch.name, "format": batch.fmt, "notes": batch.notes, "dataset": ds.name,
               "spectra": int(len(df)), "seconds": round(dt, 3), "spectra_per_s": round(len(df) / max(dt, 1e-9), 1),
               "flagged": int((df["ood"] != "").sum()),
               "noise_levels": {nl_text(k): int(v) for k, v in df["noise_level"].value_counts().sort_index().items()},
               "skipped": [{"model": k, "why": v} for k, v in skipped.items()],
               "error_bar": "the recommended model's test RMSE at that noise level (no MC re-draws in batch mode)"}
    if batch.labels is not None and df["logg"].notna().any():
        r = df["logg"] - df["true_logg"]
        summary["rmse_vs_true_logg"] = float(np.sqrt(np.nanmean(r ** 2)))
    return df, summary


# --------------------------------------------------------------------------- output
def _clean(o):
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items() if not str(k).startswith("_")}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def to_json(result: dict) -> str:
    return json.dumps(_clean(result), indent=2)


def _pm(v, s, fmt=".2f"):
    return f"{v:{fmt}}" + (f" ± {s:{fmt.lstrip('+')}}" if s is not None and np.isfinite(s) else "")


def ordinal(p: float) -> str:
    n = int(round(p))
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def nl_text(x: float) -> str:
    """0.1 -> '0.1', 1 -> '1.0': noise levels as the rest of the app writes them."""
    return f"{x:.1f}" if float(x) == round(float(x), 1) else f"{x:g}"


def text_report(r: dict) -> str:
    """The answer in plain text (what the CLI prints, and what the page shows in tables)."""
    L = [f"{r['file']}: {r['format']}"]
    L += [f"  note: {n}" for n in r["notes"]]
    L.append(f"data set: {r['dataset']} (fingerprint {r['dataset_fingerprint']})")
    L.append(f"coverage: {r['coverage']['statement']}")
    L.append(f"S/N: {r['snr']['value']:.1f} ({r['snr']['how']})")
    nlv = r["noise_level"]
    L.append(f"noise level: {nl_text(nlv['value'])} ({nlv['how']}; training S/N there "
             f"{nlv['training_snr_range'][0]:.0f}-{nlv['training_snr_range'][1]:.0f})")
    L.append(f"normalisation: flux / {r['normalisation']['scale']:.4g} ({r['normalisation']['how']})")
    L.append("")
    L.append(f"log g by model (trained at noise level {nl_text(nlv['value'])}):")
    w = max(len(x["model"]) for x in r["logg"])
    L.append(f"  {'model':<{w}}  {'log g':>6}  {'±':>5}  {'test RMSE':>9}  {'test R²':>7}  uncertainty kind")
    for x in r["logg"]:
        L.append(f"  {x['model']:<{w}}  {x['value']:6.2f}  {x['uncertainty']:5.2f}  "
                 f"{(x['test_rmse'] or float('nan')):9.3f}  {(x['test_r2'] or float('nan')):7.3f}  {x['uncertainty_kind']}")
    for s in r["skipped"]:
        L.append(f"  skipped {s['model']}: {s['why']}")
    rec = r["recommended"]
    L.append("")
    L.append(f"recommended: log g = {rec['value']:.2f} ± {rec['uncertainty']:.2f} dex  [{rec['model']}: {rec['why']}]")
    for k, v in r["other_best"].items():
        name = {"teff": "Teff", "mh": "[M/H]"}[k]
        fmt = ".0f" if k == "teff" else "+.2f"
        L.append(f"{name} = {_pm(v['value'], v['uncertainty'], fmt)} {'K' if k == 'teff' else 'dex'}  "
                 f"[{v['model']}{'' if v['scored'] else ', fitted jointly with log g, not scored on the test split'}]")
    if r.get("truth"):
        t = r["truth"]
        L.append(f"true labels: Teff {t['teff']:.0f} K, log g {t['logg']:.2f}, [M/H] {t['mh']:+.2f} "
                 f"(recommended - true log g = {rec['value'] - t['logg']:+.2f})")
    L.append("")
    L.append(f"out-of-distribution check: {r['ood']['verdict']}")
    L += [f"  - {f}" for f in r["ood"]["flags"]]
    L.append(f"({r['seconds']:.3f} s)")
    return "\n".join(L)


# --------------------------------------------------------------------------- CLI
def _default_dataset() -> str:
    from core import data
    names = data.list_datasets()
    if not names:
        raise PredictError("no data set yet: build one with `python -m core data build --profile quick`")
    prof = config.profile("quick")["dataset"]
    return prof if prof in names else names[0]


def _noise_arg(s: str):
    if s == "auto":
        return "auto"
    try:
        return float(s)
    except ValueError:
        raise PredictError(f"--noise must be auto or a trained noise level such as 0.1 or 1.0, got {s!r}") from None


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="log g of a spectrum file (CSV/TSV/text, .npy/.npz, FITS, HDF5 batch)")
    p.add_argument("file", help="the spectrum: .csv/.tsv/.txt, .npy/.npz, .fits, or .h5 (many spectra -> CSV)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--dataset", help="the data set whose models to use (default: the quick profile's)")
    p.add_argument("--noise", default="auto", help="auto (from the spectrum's S/N) or a trained level, e.g. 0.1 or 1.0")
    p.add_argument("--normalise", default="auto", choices=list(NORMALISE),
                   help="auto: fit the continuum level unless the flux is already normalised like the training "
                        "spectra; fit: always fit it; as-is: use the flux as uploaded")
    p.add_argument("--all-models", action="store_true",
                   help=f"HDF5 batch: also run slow per-spectrum fitters (the Cannon) on more than {BATCH_SLOW_MAX} spectra")
    p.add_argument("--out", help="HDF5 batch: write the table here as CSV (default: print it)")
    p.add_argument("--max-mb", type=float, default=None,
                   help="size limit in MB (default: server.maxUploadSize of .streamlit/config.toml; 0 = none)")
    p.set_defaults(func=cmd_predict)


def _emit(text: str, stream=None) -> None:
    """Print, and stay quiet when the reader went away (`python -m core predict f.h5 | head`)."""
    import os
    stream = stream or sys.stdout
    try:
        stream.write(text if text.endswith("\n") else text + "\n")
        stream.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def cmd_predict(a) -> int:
    from core import data
    noise = _noise_arg(a.noise)
    item = read_file(a.file, limit_mb=a.max_mb)
    name = a.dataset or _default_dataset()
    if name not in data.list_datasets():
        raise PredictError(f"data set {name!r} not found; build or import it first")
    ds = Dataset(name)
    if isinstance(item, Batch):
        df, summary = predict_batch(item, ds, noise, normalise=a.normalise, all_models=a.all_models)
        if a.out:
            df.to_csv(a.out, index=False)
            summary["csv"] = str(a.out)
        if a.json:
            _emit(json.dumps(_clean({**summary, "rows": None if a.out else df.to_dict(orient="records")}), indent=2))
        else:
            if not a.out:
                _emit(df.to_csv(index=False))
            _emit(f"{summary['spectra']:,} spectra in {summary['seconds']:.2f} s ({summary['spectra_per_s']:,.0f}/s); "
                  f"{summary['flagged']} flagged out-of-distribution"
                  + (f"; RMSE vs the file's log g {summary['rmse_vs_true_logg']:.3f}" if "rmse_vs_true_logg" in summary else "")
                  + (f"; written to {a.out}" if a.out else ""), sys.stderr)
        return 0
    r = predict(item, ds, noise, normalise=a.normalise)
    _emit(to_json(r) if a.json else text_report(r))
    return 0
