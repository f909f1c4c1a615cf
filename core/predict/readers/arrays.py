"""NumPy uploads: .npy (2 or 3 rows/columns) and .npz (named arrays); never unpickled. The .npy header (shape,
dtype) and each .npz member's declared size are checked against the limits before any array is allocated."""
from __future__ import annotations

import io
import math
import struct
import zipfile

import numpy as np

from core.predict.readers.columns import _Columns, _columns_from_names, _finish, _num, check_points
from core.predict.settings import MAX_ARCHIVE_MEMBERS, MAX_UNPACKED_MB, MAX_VALUES
from core.predict.spectra import PredictError, Spectrum

PICKLED = "holds pickled Python objects, which are never loaded (allow_pickle=False)"


def _read_npy(data: bytes, name: str) -> Spectrum:
    if data.startswith(b"PK\x03\x04"):
        return _npz(data, name)
    fp = io.BytesIO(data)
    shape, dtype = _header(fp, name)
    _check(shape, dtype, len(data) - fp.tell(), name)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise PredictError(f"{name}: {PICKLED}; save a plain numeric array") from None
        raise PredictError(f"{name}: not a readable .npy array ({str(e).splitlines()[0][:120]})") from None
    except Exception as e:  # noqa: BLE001 - any failure of a corrupt file is a bad upload
        raise PredictError(f"{name}: not a readable .npy array ({type(e).__name__})") from None
    if arr.dtype.names:
        return _finish(_columns_from_names(list(arr.dtype.names), lambda i: _num(arr[arr.dtype.names[i]], name),
                                           name), name, f"NumPy structured array, {arr.size:,} rows")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise PredictError(f"{name}: array of dtype {arr.dtype}; expected numbers")
    if arr.ndim != 2 or 2 not in arr.shape and 3 not in arr.shape:
        raise PredictError(f"{name}: array of shape {arr.shape}; expected (N, 2) or (N, 3) columns "
                           f"wavelength, flux[, error] (or their transpose)")
    a = np.asarray(arr, dtype=np.float64)
    if a.shape[0] in (2, 3) and a.shape[1] > 3:
        a = a.T
    cols = _Columns(a[:, 0], a[:, 1], a[:, 2] if a.shape[1] == 3 else None,
                    "error" if a.shape[1] == 3 else None, "linear", None)
    return _finish(cols, name, f"NumPy array {a.shape[0]:,} x {a.shape[1]} (wavelength, flux"
                   + (", error)" if a.shape[1] == 3 else ")"))


def _header(fp, name: str, what: str = "") -> tuple[tuple, np.dtype]:
    """(shape, dtype) from a .npy header; fp is left at the start of the data."""
    try:
        version = np.lib.format.read_magic(fp)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fp)
    except Exception as e:  # noqa: BLE001 - a corrupt header
        raise PredictError(f"{name}: {what}not a readable .npy array ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:100] if str(e) else ''})") from None
    return tuple(int(x) for x in shape), dtype


def _check(shape: tuple, dtype: np.dtype, available: int, name: str, what: str = "") -> None:
    """Refuse, from the header alone, what would be pickled, too large or larger than the file holds."""
    if dtype.hasobject:
        raise PredictError(f"{name}: {what}{PICKLED}; save a plain numeric array")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    values = count * max(1, len(dtype.names or ()))
    dims = " x ".join(f"{x:,}" for x in shape) or "1"
    if values > MAX_VALUES or nbytes > MAX_UNPACKED_MB * 2 ** 20:
        raise PredictError(f"{name}: {what}declares {dims} values ({nbytes / 2 ** 30:.1f} GB as {dtype}), above the "
                           f"{MAX_VALUES:,}-value limit for an upload")
    if dtype.names:
        check_points(count, name, f"{what}a table of")
    if nbytes > available:
        raise PredictError(f"{name}: {what}declares {dims} values ({nbytes:,} bytes) but holds only {max(available, 0):,} "
                           f"bytes: a truncated or corrupt .npy")


def _zip_entries(data: bytes) -> int | None:
    """The number of members a zip's end-of-central-directory record declares (None when there is none)."""
    i = data.rfind(b"PK\x05\x06", max(0, len(data) - 65557))
    if i < 0 or i + 22 > len(data):
        return None
    return struct.unpack("<H", data[i + 10:i + 12])[0]


def _npz(data: bytes, name: str) -> Spectrum:
    n = _zip_entries(data)
    if n is None:
        raise PredictError(f"{name}: not a readable .npz (no zip directory: truncated?)")
    if n > MAX_ARCHIVE_MEMBERS:
        raise PredictError(f"{name}: a .npz of {n:,} arrays; at most {MAX_ARCHIVE_MEMBERS} are read "
                           f"(wavelength, flux, error)")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001
        raise PredictError(f"{name}: not a readable .npz ({type(e).__name__})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ARCHIVE_MEMBERS:
            raise PredictError(f"{name}: a .npz of {len(infos):,} arrays; at most {MAX_ARCHIVE_MEMBERS} are read")
        total = sum(i.file_size for i in infos)
        if total > MAX_UNPACKED_MB * 2 ** 20:
            raise PredictError(f"{name}: its arrays unpack to {total / 2 ** 20:,.0f} MB, above the {MAX_UNPACKED_MB:g} MB "
                               f"limit for an upload")
        keys = [i.filename[:-4] if i.filename.endswith(".npy") else i.filename for i in infos]
        for key, info in zip(keys, infos):     # every header, before any array is read
            if info.filename.endswith(".npy"):
                with zf.open(info) as fp:
                    shape, dtype = _header(fp, name, f"array {key!r} ")
                    _check(shape, dtype, info.file_size - fp.tell(), name, f"array {key!r} ")

        def get(i):
            info = infos[i]
            if not info.filename.endswith(".npy"):
                raise PredictError(f"{name}: member {info.filename!r} is not a .npy array")
            with zf.open(info) as fp:
                try:
                    a = np.lib.format.read_array(fp, allow_pickle=False)
                except ValueError as e:
                    if "pickle" in str(e).lower() or "object" in str(e).lower():
                        raise PredictError(f"{name}: {PICKLED}; save plain numeric arrays") from None
                    raise
            return _num(a, name)

        cols = _columns_from_names(keys, get, name)
    return _finish(cols, name, f"NumPy .npz ({', '.join(keys)})")
