"""HDF5 uploads: a batch of spectra in the project's schema (docs/data.md).

Nothing of a hostile file is followed or read before it is inspected: every name is looked up as a link first
(soft and external links are refused), then every dataset's storage (virtual datasets, which h5py cannot read
from an in-memory file without crashing, and external storage, which would read the server's files, are
refused), dtype (plain numbers only) and declared size (shape x itemsize, chunk size) are checked. /flux and the
error are read and checked in blocks of rows; a batch larger than BATCH_EAGER_VALUES stays a `Rows` (read
block by block again when predicted), so memory does not grow with the number of spectra."""
from __future__ import annotations

import io
import math

import numpy as np

from core.data import LABELS
from core.predict.settings import (
    BATCH_BLOCK_VALUES,
    BATCH_EAGER_VALUES,
    MAX_BATCH_VALUES,
    MAX_H5_CHUNK_MB,
    MAX_POINTS,
    MIN_POINTS,
)
from core.predict.spectra import Batch, PredictError

SCHEMA = "the project's schema: /wave, /flux, optional /error or /ivar and /labels/{teff,logg,mh}"


def _open(data: bytes, name: str, cache: int = 1 << 20):
    import h5py
    try:
        return h5py.File(io.BytesIO(data), "r", rdcc_nbytes=cache)
    except Exception as e:  # noqa: BLE001
        raise PredictError(f"{name}: cannot be opened as HDF5 ({type(e).__name__})") from None


def _member(group, key: str, path: str, name: str):
    """The object a hard link `key` of `group` names, or None; links are looked at, never followed."""
    import h5py
    b = key.encode()
    if not group.id.links.exists(b):
        return None
    t = group.id.links.get_info(b).type
    if t == h5py.h5l.TYPE_SOFT:
        target = group.id.links.get_val(b).decode(errors="replace")
        raise PredictError(f"{name}: {path} is a soft link (to {target[:80]}); links are not followed in an upload: "
                           f"store the data itself")
    if t == h5py.h5l.TYPE_EXTERNAL:
        fname, obj = (x.decode(errors="replace") for x in group.id.links.get_val(b))
        raise PredictError(f"{name}: {path} is an external link (to {obj[:60]} in {fname[:80]}); links to other files "
                           f"are never followed in an upload: store the data itself")
    if t != h5py.h5l.TYPE_HARD:
        raise PredictError(f"{name}: {path} is a user-defined link, which is not followed in an upload")
    return group[key]


def _dataset(group, key: str, path: str, name: str, max_values: int, need: bool = False):
    """A checked dataset (storage, dtype, size), or None when absent and not needed."""
    import h5py
    d = _member(group, key, path, name)
    if d is None or not isinstance(d, h5py.Dataset):
        if need:
            raise PredictError(f"{name}: missing dataset {path} ({SCHEMA})")
        return None
    if d.is_virtual:
        srcs = sorted({s.file_name for s in d.virtual_sources()})
        raise PredictError(f"{name}: {path} is a virtual dataset (its data lives in {', '.join(srcs)[:80] or 'other files'}); "
                           f"an upload must hold its own data: write the values into the file (h5py: f[...][()])")
    if d.external:
        files = ", ".join(str(x[0]) for x in d.external)
        raise PredictError(f"{name}: {path} has external storage (raw data in {files[:80]}); an upload may only "
                           f"hold its own data: write the values into the file")
    try:
        dt = d.dtype
    except Exception:  # noqa: BLE001 - an HDF5 type h5py cannot map
        raise PredictError(f"{name}: {path} has an HDF5 datatype that is not a number") from None
    if dt.kind not in "fiu" or dt.shape or h5py.check_dtype(ref=dt) is not None or h5py.check_dtype(vlen=dt) is not None:
        what = "a compound" if dt.names else ("a reference" if h5py.check_dtype(ref=dt) else f"a {dt}")
        raise PredictError(f"{name}: {path} has {what} dtype; expected plain numbers (integer or float)")
    if d.shape is None:
        raise PredictError(f"{name}: {path} has no data (an empty dataspace)")
    count = math.prod(d.shape)
    if count > max_values:
        dims = " x ".join(f"{x:,}" for x in d.shape)
        raise PredictError(f"{name}: {path} declares {dims} values ({count * 8 / 2 ** 30:.1f} GB as float64), above "
                           f"the {max_values:,}-value limit for an upload" + _split_hint(d.shape, max_values))
    if d.chunks and math.prod(d.chunks) * dt.itemsize > MAX_H5_CHUNK_MB * 2 ** 20:
        raise PredictError(f"{name}: {path} is stored in chunks of {' x '.join(f'{x:,}' for x in d.chunks)} values, "
                           f"above {MAX_H5_CHUNK_MB} MB a chunk: rewrite it with smaller chunks (h5py chunks=True)")
    return d


def _split_hint(shape, max_values: int) -> str:
    if len(shape) != 2 or not shape[1]:
        return ""
    rows = max(1, max_values // shape[1])
    return f"; split the file into batches of at most {rows:,} spectra (rows of /flux)"


class Rows:
    """(n, N) float64 rows of /flux or /error (/ivar as a 1-sigma error) of an HDF5 upload, read on demand:
    `rows[i:j]` reads those rows from the upload's bytes, so a large batch never sits in memory whole."""
    ndim = 2
    dtype = np.dtype(np.float64)

    def __init__(self, data: bytes, path: str, shape: tuple[int, int], name: str, ivar: bool = False,
                 chunk_band: int = 1 << 20):
        self._data, self.path, self.shape, self.name, self.ivar = data, path, shape, name, ivar
        self._cache = min(max(chunk_band, 1 << 20), 2 * MAX_H5_CHUNK_MB * 2 ** 20)
        self._f = None
        self.block = max(1, BATCH_BLOCK_VALUES // max(1, shape[1]))

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, i0: int, i1: int, raw: bool = False) -> np.ndarray:
        if self._f is None:
            self._f = _open(self._data, self.name, self._cache)
        d = self._f[self.path]
        a = np.asarray(d[i0:i1] if d.ndim == 2 else d[()][None][i0:i1], dtype=np.float64)
        return self.convert(a) if not raw else a

    def convert(self, a: np.ndarray) -> np.ndarray:
        """Raw values -> a 1-sigma error (ivar: 1 / sqrt(ivar), checked > 0 when read)."""
        if self.ivar:
            with np.errstate(divide="ignore", invalid="ignore"):
                return 1.0 / np.sqrt(a)
        return a

    def __getitem__(self, key):
        if isinstance(key, slice):
            i0, i1, step = key.indices(self.shape[0])
            a = self._read(i0, max(i0, i1)) if step == 1 else self._read(0, self.shape[0])[key]
            return a
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self.shape[0] if key < 0 else 0)
            return self._read(i, i + 1)[0]
        return self._read(0, self.shape[0])[key]

    def __array__(self, dtype=None, copy=None):
        a = self._read(0, self.shape[0])
        return a if dtype is None else a.astype(dtype)

    def blocks(self, raw: bool = False):
        for i0 in range(0, self.shape[0], self.block):
            yield i0, self._read(i0, min(i0 + self.block, self.shape[0]), raw)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit h5py may be gone
            pass


def _read_hdf5(data: bytes, name: str) -> Batch:
    import h5py
    f = _open(data, name)
    with f:
        wave_d = _dataset(f, "wave", "/wave", name, MAX_POINTS, need=True)
        flux_d = _dataset(f, "flux", "/flux", name, MAX_BATCH_VALUES, need=True)
        err_d, kind = None, None
        for k in ("error", "ivar"):
            err_d = _dataset(f, k, f"/{k}", name, MAX_BATCH_VALUES)
            if err_d is not None:
                kind = k
                break
        lab_g = _member(f, "labels", "/labels", name)
        if wave_d.ndim != 1:
            raise PredictError(f"{name}: /wave has shape {wave_d.shape}; expected 1-D")
        n_pix = wave_d.shape[0]
        fshape = (1, *flux_d.shape) if flux_d.ndim == 1 else flux_d.shape
        if len(fshape) != 2 or fshape[1] != n_pix:
            raise PredictError(f"{name}: /flux has shape {flux_d.shape}; expected (n_spectra, {n_pix}) to match /wave")
        if err_d is not None:
            eshape = (1, *err_d.shape) if err_d.ndim == 1 else err_d.shape
            if eshape != fshape:
                raise PredictError(f"{name}: /{kind} has shape {err_d.shape}; expected {fshape} like /flux")
        wave = np.asarray(wave_d[()], dtype=np.float64)
        labels = None
        if isinstance(lab_g, h5py.Group):
            cols = [_dataset(lab_g, k, f"/labels/{k}", name, MAX_BATCH_VALUES) for k in LABELS]
            if all(c is not None for c in cols):
                for c in cols:          # the sizes first: nothing larger than /flux's rows is read
                    if math.prod(c.shape) != fshape[0]:
                        raise PredictError(f"{name}: /labels have {math.prod(c.shape)} rows, /flux has {fshape[0]}")
                labels = np.stack([np.asarray(c[()], dtype=np.float64).reshape(-1) for c in cols], 1)
        band = (lambda d: math.prod(d.chunks) * d.dtype.itemsize * math.ceil(n_pix / d.chunks[-1])
                if d.chunks else 1 << 20)
        bands = [band(flux_d)] + ([band(err_d)] if err_d is not None else [])
    notes = []
    bad = ~np.isfinite(wave)
    if bad.any():
        raise PredictError(f"{name}: /wave has {int(bad.sum())} NaN/inf value(s) (first in pixel {int(np.argmax(bad))})")
    if wave.size < MIN_POINTS:
        raise PredictError(f"{name}: /wave has only {wave.size} points; at least {MIN_POINTS} are needed")
    d = np.diff(wave)
    if (d == 0).any():
        raise PredictError(f"{name}: /wave has a duplicated wavelength {wave[int(np.argmax(d == 0))]:.6g}")
    if not (d > 0).all():
        i = int(np.argmax(d <= 0))
        raise PredictError(f"{name}: /wave is not increasing ({wave[i]:.6g} -> {wave[i + 1]:.6g} at pixel {i + 1})")
    if fshape[0] == 0:
        raise PredictError(f"{name}: /flux holds no spectra")
    flux = Rows(data, "flux", fshape, name, chunk_band=bands[0])
    err = None if err_d is None else Rows(data, kind, fshape, name, ivar=kind == "ivar", chunk_band=bands[-1])
    flux, err = _check_rows(flux, err, kind, name)
    if kind == "ivar":
        notes.append("ivar converted to a 1σ error")
    big = fshape[0] * fshape[1] > BATCH_EAGER_VALUES
    if big:
        notes.append(f"{fshape[0]:,} spectra read in blocks of {flux.block:,}")
    return Batch(wave, flux, err, labels, name=name, fmt=f"HDF5, {fshape[0]:,} spectra x {wave.size:,} pixels",
                 notes=notes)


def _check_rows(flux: Rows, err: Rows | None, kind: str | None, name: str):
    """NaN/inf and error <= 0, block by block; a small batch is returned as arrays (read once), a large one as
    the Rows themselves (read again block by block when predicted)."""
    eager = flux.shape[0] * flux.shape[1] <= BATCH_EAGER_VALUES
    keep: dict[str, list] = {"/flux": [], f"/{kind}": []}
    for what, rows in (("/flux", flux), (f"/{kind}", err)):
        if rows is None:
            continue
        for i0, a in rows.blocks(raw=True):
            bad = ~np.isfinite(a)
            if bad.any():
                j = i0 + int(np.argmax(bad.any(axis=1)))
                raise PredictError(f"{name}: {what} has NaN/inf value(s) (first in spectrum {j})")
            if what != "/flux" and (a <= 0).any():
                j = i0 + int(np.argmax((a <= 0).any(axis=1)))
                raise PredictError(f"{name}: {what} has zero or negative values (first in spectrum {j}); "
                                   + ("ivar must be > 0" if kind == "ivar" else "errors must be > 0"))
            if eager:
                keep[what].append(rows.convert(a))
    if not eager:
        return flux, err
    flux.close()
    if err is not None:
        err.close()
    return np.concatenate(keep["/flux"]), (np.concatenate(keep[f"/{kind}"]) if err is not None else None)
