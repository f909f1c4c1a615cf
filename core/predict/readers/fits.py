"""FITS uploads: a 1-D image with a linear or log wavelength solution, or a binary table."""
from __future__ import annotations

import io
import warnings

import numpy as np

from core.predict.readers.columns import (
    _Columns,
    _columns_from_names,
    _finish,
    _norm_name,
    _num,
    _pick,
    _squeeze,
)
from core.predict.settings import FLUX_NAMES, WAVE_NAMES
from core.predict.spectra import PredictError, Spectrum


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
                sp = _fits_spectrum(hdul, name)
                if sp.medium is None:
                    sp.medium, sp.medium_how = fits_medium(hdul) or (None, "")
                return sp
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
    # 3) a LAMOST DR<=7 image: rows flux, ivar, wavelength, andmask, ormask
    for h in hdul:
        if h.is_image and h.data is not None and h.data.ndim == 2 and 3 <= h.data.shape[0] <= 5 \
                and _looks_like_wavelength(h.data[2]):
            d = np.asarray(h.data, np.float64)
            return _finish(_Columns(d[2], d[0], d[1], "ivar", "linear", None), name,
                           f"FITS image of {d.shape[0]} rows in the LAMOST DR<=7 layout (flux, ivar, wavelength"
                           + (", masks)" if d.shape[0] > 3 else ")"))
    # 4) a 1-D image with a wavelength solution in its header (of a multi-row image such as APOGEE's
    #    apStar, the first row: the combined spectrum)
    for h in hdul:
        if h.is_image and h.data is not None and h.data.size > 1:
            rows = ""
            if np.squeeze(h.data).ndim == 2:
                rows = f"; the first of {np.squeeze(h.data).shape[0]} rows (a combined spectrum)"
                flux = _num(np.squeeze(h.data)[0], name)
            else:
                flux = _squeeze(h.data, name)
            wave, unit, how = _fits_wcs(h.header, flux.size, name)
            err, kind = _fits_error_hdu(by_name, flux.size, name)
            if err is None and rows:
                err, kind = _first_row_error(hdul, flux.size, name)
            return _finish(_Columns(wave, flux, err, kind, "linear", unit), name,
                           f"FITS {'' if rows else '1-D '}image ({flux.size:,} pixels, {how}{rows})"
                           + (f" + {kind} extension" if kind else ""))
    raise PredictError(f"{name}: no spectrum in this FITS file: expected a 1-D image with CRVAL1/CDELT1 or a "
                       f"binary table with wavelength and flux columns")


def _looks_like_wavelength(row) -> bool:
    r = np.asarray(row, np.float64)
    return bool(r.size > 10 and np.all(np.isfinite(r)) and np.all(np.diff(r) > 0) and 3000 <= r[0] and r[-1] <= 60000)


def _first_row_error(hdul, n: int, name: str):
    """APOGEE apStar: HDU 2 holds the errors, one row per spectrum of HDU 1."""
    for h in hdul[2:3]:
        if h.is_image and h.data is not None and np.squeeze(h.data).shape[-1] == n:
            e = np.squeeze(h.data)
            return _num(e[0] if e.ndim == 2 else e, name), "error"
    return None, None


# surveys whose spectra are published with vacuum wavelengths (TELESCOP / ORIGIN / TELESCOPE header values)
VACUUM_SURVEYS = ("SDSS", "LAMOST", "BOSS", "EBOSS", "APOGEE", "DESI")


def fits_medium(hdul) -> tuple[str, str] | None:
    """('air' | 'vacuum', why) from the headers: VACUUM, AIRORVAC, CTYPE1 (FITS WCS paper III: 'WAVE'
    is vacuum, 'AWAV' air) or a survey that publishes vacuum wavelengths; None when nothing says."""
    for h in hdul:
        hd = h.header
        for key in ("VACUUM", "VAC"):
            if key in hd and isinstance(hd[key], (bool, int)):
                return ("vacuum" if hd[key] else "air"), f"header {key} = {hd[key]}"
        if "AIRORVAC" in hd:
            v = str(hd["AIRORVAC"]).strip().lower()
            if v.startswith("vac") or v.startswith("air"):
                return ("vacuum" if v.startswith("vac") else "air"), f"header AIRORVAC = {hd['AIRORVAC']!r}"
        ctype = str(hd.get("CTYPE1", "")).strip().upper()
        if ctype.startswith("AWAV"):
            return "air", f"header CTYPE1 = {ctype!r} (air wavelengths, FITS WCS)"
        if ctype == "WAVE" or ctype.startswith("WAVE-"):
            return "vacuum", f"header CTYPE1 = {ctype!r} (vacuum wavelengths, FITS WCS)"
    for h in hdul:
        for key in ("TELESCOP", "ORIGIN", "TELESCOPE", "SURVEY"):
            v = str(h.header.get(key, "")).upper()
            hit = next((s for s in VACUUM_SURVEYS if s in v), None)
            if hit:
                return "vacuum", f"{hit} publishes vacuum wavelengths (header {key} = {h.header[key]!r})"
    return None


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
    if ctype.endswith("-LOG"):   # FITS WCS paper III: lambda = CRVAL1 exp(CDELT1 (p - CRPIX1) / CRVAL1)
        c = float(h["CRVAL1"])
        return c * np.exp(float(step) * (pix + 1.0 - crpix) / c), h.get("CUNIT1"), f"logarithmic, CTYPE1 = {ctype}"
    return x, h.get("CUNIT1"), "linear, CRVAL1/CDELT1"


