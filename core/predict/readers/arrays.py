"""NumPy uploads: .npy (2 or 3 rows/columns) and .npz (named arrays); never unpickled."""
from __future__ import annotations

import io

import numpy as np

from core.predict.readers.columns import _Columns, _columns_from_names, _finish, _num
from core.predict.spectra import PredictError, Spectrum


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


