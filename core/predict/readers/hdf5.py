"""HDF5 uploads: a batch of spectra in the project's schema (docs/data.md)."""
from __future__ import annotations

import io

import numpy as np

from core.data import LABELS
from core.predict.settings import MIN_POINTS
from core.predict.spectra import Batch, PredictError


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


