"""What every reader shares: column names and units recognised (settings.py), the checks of a
spectrum once its columns are known (`_finish`: NaN/inf, errors <= 0, order, duplicates, size) and
the wavelength-unit check against the model grid."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from core.predict.settings import (
    ERR_NAMES,
    FLUX_NAMES,
    IVAR_NAMES,
    MAX_POINTS,
    MIN_POINTS,
    UNIT_FACTORS,
    VAR_NAMES,
    WAVE_NAMES,
)
from core.predict.spectra import PredictError, Spectrum

MEDIUM_TAGS = ("vac", "vacuum", "air")


# --------------------------------------------------------------------------- reading
def _norm_name(name: str) -> tuple[str, str | None]:
    """Column name -> (base name, declared wavelength unit or None): 'Wavelength [nm]' -> ('wavelength', 'nm')."""
    s = str(name).strip().lower()
    unit = None
    tags, m = [], None
    while True:   # trailing brackets: a unit ('[nm]') and/or a medium ('(vac)', '[air]'), in either order
        b = re.search(r"[\[\(\{]\s*([^\]\)\}]*)\s*[\]\)\}]\s*$", s)
        if b is None:
            break
        if b.group(1).strip() in MEDIUM_TAGS:
            tags.insert(0, b.group(1).strip())
        elif m is None:
            m = b
            unit = b.group(1).strip() or None
        else:
            break
        s = s[:b.start()].strip()
    s = "_".join([s, *tags])
    if m is None:
        m = re.match(r"^(.*?)[_\-\s]+(angstroms?|aa|ang|a|å|nm|um|µm|μm|microns?)$", s)
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
    medium: tuple[str, str] | None = None   # ('air' | 'vacuum', why) when the file says


def medium_of_name(name: str) -> tuple[str, str] | None:
    """'lambda_vac', 'wave_vacuum' -> vacuum; 'lambda_air', 'AWAV' -> air; else None."""
    s = str(name).lower()
    if "vac" in s:
        return "vacuum", f"the wavelength column is named {name!r}"
    if "air" in s or s.startswith("awav"):
        return "air", f"the wavelength column is named {name!r}"
    return None


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
    return _Columns(get(iw), get(iflux), err, kind, wave_kind, declared[iw], medium=medium_of_name(names[iw]))


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _num(a, name) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise PredictError(f"{name}: a column of dtype {a.dtype}; expected numbers")
    check_points(a.size, name)
    return np.asarray(a, dtype=np.float64).reshape(-1)


def check_points(n: int, name: str, what: str = "a spectrum of") -> None:
    """Refuse more samples than one spectrum may have (MAX_POINTS), before they are converted or copied."""
    if n > MAX_POINTS:
        raise PredictError(f"{name}: {what} {n:,} points, above the {MAX_POINTS:,}-point limit for one spectrum "
                           f"in an upload")


def _squeeze(a, name) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim > 1:
        sq = np.squeeze(a)
        if sq.ndim != 1:
            raise PredictError(f"{name}: FITS image of shape {a.shape}; a 1-D spectrum is expected")
        a = sq
    return _num(a, name)


def _finish(c: _Columns, name: str, fmt: str) -> Spectrum:
    """Checks common to every format; returns the spectrum in Angstrom, increasing."""
    notes = []
    wave, flux, err = c.wave, c.flux, c.err
    n = wave.size
    check_points(n, name)
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
    medium, how = c.medium or (None, "")
    return Spectrum(wave, flux, err, name=name, fmt=fmt, notes=notes, medium=medium, medium_how=how)


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


