"""FITS uploads: a 1-D image with a linear or log wavelength solution, or a binary table."""
from __future__ import annotations

import io
import math
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
    check_points,
)
from core.predict.settings import (
    FLUX_NAMES,
    MAX_FITS_CARDS,
    MAX_FITS_HDUS,
    MAX_UNPACKED_MB,
    MAX_VALUES,
    WAVE_NAMES,
)
from core.predict.spectra import PredictError, Spectrum


def _read_fits(data: bytes, name: str) -> Spectrum:
    try:
        from astropy.io import fits
    except ImportError:  # pragma: no cover
        raise PredictError("reading FITS needs astropy (pip install astropy)") from None
    _walk(data, name)
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


def _card_int(card: bytes) -> int | None:
    try:
        return int(card[10:].split(b"/")[0].strip())
    except ValueError:
        return None


def _walk(data: bytes, name: str) -> None:
    """Count the header cards and HDUs on the bytes, before astropy parses them (a header card costs it about
    1 KB of memory: 60 MB of header cards would take 0.9 GB): at most MAX_FITS_CARDS and MAX_FITS_HDUS. Stops
    quietly where the structure is unclear (astropy then says what is wrong)."""
    pos, cards, hdus = 0, 0, 0
    while pos + 2880 <= len(data):
        keys: dict[bytes, int | None] = {}
        end = False
        while not end and pos + 2880 <= len(data):
            for k in range(pos, pos + 2880, 80):
                key = data[k:k + 8].rstrip()
                if key == b"END":
                    end = True
                    break
                cards += 1
                if key in (b"BITPIX", b"PCOUNT", b"GCOUNT", b"ZIMAGE") or key.startswith(b"NAXIS"):
                    keys[key] = _card_int(data[k:k + 80])
            pos += 2880
            if cards > MAX_FITS_CARDS:
                raise PredictError(f"{name}: more than {MAX_FITS_CARDS:,} FITS header cards, above the limit for an "
                                   f"upload")
        hdus += 1
        if hdus > MAX_FITS_HDUS:
            raise PredictError(f"{name}: more than {MAX_FITS_HDUS:,} HDUs, above the limit for a FITS upload")
        naxis, bitpix = keys.get(b"NAXIS"), keys.get(b"BITPIX")
        if not end or naxis is None or bitpix is None:
            return
        dims = [keys.get(b"NAXIS%d" % i) for i in range(1, naxis + 1)]
        if any(d is None for d in dims):
            return
        if hdus == 1 and naxis and dims[0] == 0:      # random groups
            dims = dims[1:]
        size = math.prod(dims) if dims else 0
        size = abs(bitpix) // 8 * (keys.get(b"GCOUNT") or 1) * (size + (keys.get(b"PCOUNT") or 0)) if dims else 0
        pos += -(-size // 2880) * 2880


def _fits_spectrum(hdul, name: str) -> Spectrum:
    """The first usable spectrum of any HDU, in this order of layouts: a table with wavelength and flux columns,
    FLUX + WAVELENGTH image extensions, a LAMOST row image, a 1-D image with a wavelength solution. A candidate
    that fails (no wavelength solution, too few points, above the size limit) does not stop the search; when
    none is usable, the most telling failure is the answer (a wavelength solution's absence last)."""
    errors: list[tuple[int, PredictError]] = []
    for attempt in _candidates(hdul, name):
        try:
            return attempt()
        except PredictError as e:
            errors.append((0 if isinstance(e, _NoSolution) else 1, e))
    if errors:
        raise min(errors, key=lambda x: -x[0])[1]
    raise PredictError(f"{name}: no spectrum in this FITS file: expected a 1-D image with CRVAL1/CDELT1 or a "
                       f"binary table with wavelength and flux columns")


class _NoSolution(PredictError):
    """A candidate HDU without a wavelength solution (the least telling failure: another HDU may have one)."""


def _where(i: int, h) -> str:
    return f"HDU {i}" + (f" '{h.name}'" if h.name and h.name != "PRIMARY" else "")


def _declared(h) -> tuple[int, int]:
    """(values, bytes) an HDU's data unpacks to, from its header alone (a tile-compressed image: its image
    header and ZNAXISn / ZBITPIX; a table: NAXIS1 x NAXIS2 + PCOUNT)."""
    from astropy.io import fits

    def dims(hd, prefix=""):
        n = max(0, int(hd.get(f"{prefix}NAXIS", 0) or 0))
        return [max(0, int(hd.get(f"{prefix}NAXIS{k}", 0) or 0)) for k in range(1, n + 1)]

    hd = h.header
    if isinstance(h, fits.CompImageHDU):
        shapes = [dims(hd)]
        bt = getattr(h, "_bintable", None)
        if bt is not None:
            shapes.append(dims(bt.header, "Z"))
        values = max(math.prod(d) if d else 0 for d in shapes)
        bitpix = max(abs(int(hd.get("BITPIX", 8) or 8)), abs(int(bt.header.get("ZBITPIX", 8) or 8)) if bt else 8)
        return values, values * bitpix // 8
    if isinstance(h, (fits.BinTableHDU, fits.TableHDU)):
        rows, width = int(hd.get("NAXIS2", 0) or 0), int(hd.get("NAXIS1", 0) or 0)
        return rows * max(1, int(hd.get("TFIELDS", 1) or 1)), rows * width + int(hd.get("PCOUNT", 0) or 0)
    d = dims(hd)
    if isinstance(h, fits.GroupsHDU):
        d = [x for x in d[1:]] + [int(hd.get("GCOUNT", 1) or 1)]
    values = math.prod(d) if d else 0
    return values, values * abs(int(hd.get("BITPIX", 8) or 8)) // 8


def _data(h, i: int, name: str):
    """h.data, after its declared size was checked against the limits (nothing is unpacked above them)."""
    values, nbytes = _declared(h)
    if values > MAX_VALUES or nbytes > MAX_UNPACKED_MB * 2 ** 20:
        raise PredictError(f"{name}: {_where(i, h)} declares {values:,} values ({nbytes / 2 ** 30:.2f} GB unpacked), "
                           f"above the limit for an upload ({MAX_VALUES:,} values, {MAX_UNPACKED_MB:g} MB)")
    return h.data


def _image_shape(h) -> tuple[int, ...]:
    """The image's shape (numpy order) from its header, or () for no data."""
    n = int(h.header.get("NAXIS", 0) or 0)
    return tuple(int(h.header.get(f"NAXIS{k}", 0) or 0) for k in range(n, 0, -1))


def _candidates(hdul, name: str):
    """Zero-argument callables, one per HDU and layout that might hold the spectrum, in the order tried."""
    from astropy.io import fits
    hdus = list(enumerate(hdul))
    images = [(i, h) for i, h in hdus if h.is_image and math.prod(_image_shape(h) or (0,)) > 0]
    # 1) a binary table with wavelength / flux columns (SDSS 'COADD': loglam, flux, ivar): names from the header
    for i, h in hdus:
        if isinstance(h, (fits.BinTableHDU, fits.TableHDU)) and not isinstance(h, fits.CompImageHDU) \
                and int(h.header.get("NAXIS2", 0) or 0) > 0 and len(h.columns):
            names = [c.name for c in h.columns]
            base = [_norm_name(n)[0] for n in names]
            if _pick(base, WAVE_NAMES) is not None and _pick(base, FLUX_NAMES) is not None:
                yield lambda i=i, h=h, names=names: _table(h, i, names, name)
    # 2) named image extensions FLUX + WAVELENGTH (PFS-style)
    by_name = {h.name.upper(): (i, h) for i, h in images}
    if "FLUX" in by_name and any(k in by_name for k in ("WAVELENGTH", "WAVE", "LAMBDA")):
        def pfs():
            iw, wh = next(by_name[k] for k in ("WAVELENGTH", "WAVE", "LAMBDA") if k in by_name)
            fi, fh = by_name["FLUX"]
            flux = _squeeze(_data(fh, fi, name), name)
            wave = _squeeze(_data(wh, iw, name), name)
            err, kind = _fits_error_hdu(by_name, flux.size, name)
            unit = wh.header.get("BUNIT") or wh.header.get("CUNIT1")
            return _finish(_Columns(wave, flux, err, kind, "linear", unit), name, "FITS image extensions FLUX, "
                           + wh.name + (f", {kind.upper()}" if kind else "") + f" (HDU {fi}, {iw})")
        yield pfs
    # 3) a LAMOST DR<=7 image: rows flux, ivar, wavelength, andmask, ormask
    for i, h in images:
        shape = _image_shape(h)
        if len(shape) == 2 and 3 <= shape[0] <= 5:
            def lamost(i=i, h=h):
                d = _data(h, i, name)
                if not _looks_like_wavelength(d[2]):
                    raise _NoSolution(f"{name}: {_where(i, h)}: a {d.shape[0]}-row image without a wavelength "
                                      f"solution (its row 3 is no wavelength); " + _wcs_hint())
                check_points(d.shape[1], name)
                d = np.asarray(d, np.float64)
                return _finish(_Columns(d[2], d[0], d[1], "ivar", "linear", None), name,
                               f"FITS image of {d.shape[0]} rows in the LAMOST DR<=7 layout (flux, ivar, wavelength"
                               + (", masks)" if d.shape[0] > 3 else ")") + f", {_where(i, h)}")
            yield lamost
    # 4) a 1-D image with a wavelength solution in its header (of a multi-row image such as APOGEE's
    #    apStar, the first row: the combined spectrum)
    for i, h in images:
        if math.prod(_image_shape(h)) > 1:
            yield lambda i=i, h=h: _image(hdul, by_name, h, i, name)


def _wcs_hint() -> str:
    return "expected a 1-D image with CRVAL1/CDELT1 or a binary table with wavelength and flux columns"


def _table(h, i: int, names: list[str], name: str) -> Spectrum:
    tab = _data(h, i, name)
    units = [c.unit for c in h.columns]

    def get(k):
        col = np.asarray(tab[names[k]])
        if len(tab) == 1 and col.ndim == 2:  # one row of array columns (ESO-style)
            col = col[0]
        return _num(col, name)

    cols = _columns_from_names(names, get, name, units=units)
    return _finish(cols, name, f"FITS binary table '{h.name}' ({len(cols.wave):,} rows, HDU {i})")


def _image(hdul, by_name: dict, h, i: int, name: str) -> Spectrum:
    sq = [x for x in _image_shape(h) if x != 1]
    if len(sq) > 2:
        raise PredictError(f"{name}: FITS image of shape {_image_shape(h)}; a 1-D spectrum is expected")
    check_points(sq[-1], name)
    _fits_wcs(h.header, sq[-1], name)       # the header alone says whether there is a wavelength solution
    data = _data(h, i, name)
    rows = ""
    if np.squeeze(data).ndim == 2:
        rows = f"; the first of {np.squeeze(data).shape[0]} rows (a combined spectrum)"
        flux = _num(np.squeeze(data)[0], name)
    else:
        flux = _squeeze(data, name)
    wave, unit, how = _fits_wcs(h.header, flux.size, name)
    err, kind = _fits_error_hdu(by_name, flux.size, name)
    if err is None and rows:
        err, kind = _first_row_error(hdul, flux.size, name)
    return _finish(_Columns(wave, flux, err, kind, "linear", unit), name,
                   f"FITS {'' if rows else '1-D '}image ({flux.size:,} pixels, {how}{rows}; {_where(i, h)})"
                   + (f" + {kind} extension" if kind else ""))


def _looks_like_wavelength(row) -> bool:
    r = np.asarray(row, np.float64)
    return bool(r.size > 10 and np.all(np.isfinite(r)) and np.all(np.diff(r) > 0) and 3000 <= r[0] and r[-1] <= 60000)


def _first_row_error(hdul, n: int, name: str):
    """APOGEE apStar: HDU 2 holds the errors, one row per spectrum of HDU 1."""
    for h in hdul[2:3]:
        shape = [x for x in _image_shape(h) if x != 1] if h.is_image else []
        if shape and len(shape) <= 2 and shape[-1] == n:
            e = np.squeeze(_data(h, 2, name))
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
                i, h = by_name[k]
                if math.prod(_image_shape(h)) == n:
                    return _squeeze(_data(h, i, name), name), kind
    return None, None


# FITS WCS paper III spectral axes that are not wavelengths (read as one, they would be silently wrong)
NOT_WAVELENGTH = ("FREQ", "ENER", "WAVN", "VRAD", "VOPT", "ZOPT", "VELO", "BETA")


def _fits_wcs(h, n: int, name: str):
    pix = np.arange(n, dtype=np.float64)
    if "COEFF0" in h and "COEFF1" in h and "CRVAL1" not in h:  # SDSS spSpec: log10(lambda) = COEFF0 + COEFF1 i
        return 10.0 ** (float(h["COEFF0"]) + float(h["COEFF1"]) * pix), None, "COEFF0/COEFF1 log-linear"
    if "CRVAL1" not in h:
        raise _NoSolution(f"{name}: FITS image without a wavelength solution (CRVAL1 and CDELT1 or CD1_1 missing)")
    step = h.get("CDELT1", h.get("CD1_1"))
    if step is None:
        raise _NoSolution(f"{name}: FITS header has CRVAL1 but neither CDELT1 nor CD1_1")
    ctype = str(h.get("CTYPE1", "")).strip().upper()
    base, algo = ctype[:4], (ctype[5:8].strip() if ctype[4:5] == "-" else "")
    if base in NOT_WAVELENGTH:
        raise PredictError(f"{name}: the spectral axis is CTYPE1 = {ctype!r}, not a wavelength; give wavelengths "
                           f"(CTYPE1 = 'WAVE' or 'AWAV', linear or '-LOG')")
    if base in ("WAVE", "AWAV") and algo not in ("", "LOG"):
        raise PredictError(f"{name}: CTYPE1 = {ctype!r}: the non-linear wavelength axis {algo!r} is not read; "
                           f"give a wavelength column or a linear or '-LOG' axis")
    crpix = float(h.get("CRPIX1", 1.0))
    crval = float(h["CRVAL1"])
    dcflag = int(h.get("DC-FLAG", 0) or 0)
    if algo == "LOG":   # FITS WCS paper III: lambda = CRVAL1 exp(CDELT1 (p - CRPIX1) / CRVAL1), any unit
        return (crval * np.exp(float(step) * (pix + 1.0 - crpix) / crval), h.get("CUNIT1"),
                f"logarithmic, CTYPE1 = {ctype}")
    x = crval + (pix + 1.0 - crpix) * float(step)
    if dcflag == 1:
        return 10.0 ** x, h.get("CUNIT1"), "log-linear, DC-FLAG = 1"
    if "LOG" in ctype and crval < 10:
        return 10.0 ** x, h.get("CUNIT1"), f"log-linear, CTYPE1 = {ctype}"
    return x, h.get("CUNIT1"), "linear, CRVAL1/CDELT1"
