"""Importing the group's own HDF5 grid: `validate_source` checks a file against docs/data.md and
`import_hdf5` copies it, normalised, into artifacts/data/NAME.h5 (nothing written unless valid)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from core.data.building import _create_arrays, _split_indices, check_room, estimated_bytes, written_atomically
from core.data.dataset import (
    LABELS,
    SPLITS,
    WAVE_ANGSTROM_MAX,
    WAVE_ANGSTROM_MIN,
    DataError,
    dataset_path,
)

# what a star can be (not our label box: an imported grid may cover more): Teff of the coolest
# brown dwarfs to the hottest O stars and white dwarfs, log g of supergiants to white dwarfs,
# [M/H] of the most metal-poor stars known to the most metal-rich
PHYSICAL_LABELS = {"teff": (500.0, 200000.0, " K"), "logg": (-1.5, 9.5, " dex"), "mh": (-7.0, 1.5, " dex")}
# the smallest splits a fit and its held-out numbers can rest on (a 20-spectrum grid split 70/15/15 has 14/3/3)
MIN_SPLIT = {"train": 10, "val": 1, "test": 3}


# --------------------------------------------------------------------------- validation / import
def _problem(msg: str):
    raise DataError(_one_line(msg))


def _one_line(x) -> str:
    return " ".join(str(x).split())


def validate_source(path: str | os.PathLike) -> dict:
    """Check a user HDF5 file against the schema of docs/data.md. Returns a summary dict,
    raises DataError with a one-line message naming the first problem found."""
    path = Path(path)
    if not path.exists():
        _problem(f"{path}: no such file")
    if not path.is_file():
        _problem(f"{path}: not a file")
    try:
        is_h5 = h5py.is_hdf5(path)
    except OSError as e:
        _problem(f"{path.name}: cannot be read ({_one_line(e)})")
    if not is_h5:
        _problem(f"{path.name}: not an HDF5 file (see docs/data.md for the schema)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        _problem(f"{path.name}: cannot be opened as HDF5 ({_one_line(e)})")
    with f:
        for k in ("wave", "flux"):
            if k not in f or not isinstance(f[k], h5py.Dataset):
                _problem(f"{path.name}: missing dataset /{k} (see docs/data.md)")
        if "error" not in f and "ivar" not in f:
            _problem(f"{path.name}: missing dataset /error (or /ivar) (see docs/data.md)")
        if "labels" not in f or not isinstance(f["labels"], h5py.Group):
            _problem(f"{path.name}: missing group /labels with datasets teff, logg, mh")
        missing = [k for k in LABELS if k not in f["labels"]]
        if missing:
            _problem(f"{path.name}: /labels lacks {', '.join(missing)} (expected teff, logg, mh)")
        for k in LABELS:
            if not isinstance(f["labels"][k], h5py.Dataset):
                _problem(f"{path.name}: /labels/{k} must be a dataset, not a group")
        for k in ("wave", "flux", "error", "ivar", "labels/teff", "labels/logg", "labels/mh"):
            if k in f and isinstance(f[k], h5py.Dataset) and not np.issubdtype(f[k].dtype, np.number):
                _problem(f"{path.name}: /{k} has dtype {f[k].dtype}; expected numbers")
        wave = np.asarray(f["wave"][()], dtype=np.float64)
        if wave.ndim != 1 or wave.size < 16:
            _problem(f"{path.name}: /wave must be 1-D with at least 16 pixels, got shape {wave.shape}")
        if not np.all(np.isfinite(wave)):
            _problem(f"{path.name}: /wave contains NaN or inf")
        dw = np.diff(wave)
        if np.any(dw == 0):
            bad = int(np.argmax(dw == 0))
            _problem(f"{path.name}: /wave has a duplicated wavelength {wave[bad]:.4f} at pixels {bad} and {bad + 1}; "
                     f"wavelengths must be strictly increasing")
        if np.any(dw < 0):
            bad = int(np.argmax(dw < 0))
            _problem(f"{path.name}: /wave is not strictly increasing (pixel {bad} -> {bad + 1}: "
                     f"{wave[bad]:.4f} -> {wave[bad + 1]:.4f}); sort the pixels by wavelength")
        if wave[0] <= 0:
            _problem(f"{path.name}: /wave starts at {wave[0]:.4g}; wavelengths must be positive Angstrom")
        if wave[-1] < WAVE_ANGSTROM_MIN or wave[-1] > WAVE_ANGSTROM_MAX:
            unit = "micron (multiply by 1e4)" if wave[-1] < 30 else (
                "nm (multiply by 10)" if wave[-1] < WAVE_ANGSTROM_MIN else "an unknown unit")
            _problem(f"{path.name}: /wave spans {wave[0]:.4g}-{wave[-1]:.4g}, which looks like {unit}; "
                     f"expected Angstrom ({WAVE_ANGSTROM_MIN:g}-{WAVE_ANGSTROM_MAX:g})")
        flux = f["flux"]
        ekey = "error" if "error" in f else "ivar"
        err = f[ekey]
        if not isinstance(err, h5py.Dataset):
            _problem(f"{path.name}: /{ekey} must be a dataset, not a group")
        if flux.ndim != 2 or flux.shape[1] != wave.size:
            _problem(f"{path.name}: /flux has shape {flux.shape}; expected (n_spectra, {wave.size}) to match /wave")
        if err.shape != flux.shape:
            _problem(f"{path.name}: /{ekey} has shape {err.shape}; expected {flux.shape} like /flux")
        n = flux.shape[0]
        if n < 20:
            _problem(f"{path.name}: only {n} spectra; at least 20 are needed to train and test")
        for k in LABELS:
            lab = np.asarray(f["labels"][k][()], dtype=np.float64)
            if lab.shape != (n,):
                _problem(f"{path.name}: /labels/{k} has shape {lab.shape}; expected ({n},)")
            nbad = int((~np.isfinite(lab)).sum())
            if nbad:
                _problem(f"{path.name}: /labels/{k} has {nbad} NaN/inf values (first at row {int(np.argmax(~np.isfinite(lab)))})")
            lo, hi, unit = PHYSICAL_LABELS[k]
            out = (lab < lo) | (lab > hi)
            if out.any():
                r = int(np.argmax(out))
                _problem(f"{path.name}: /labels/{k} = {lab[r]:g} at row {r} is not a star's value ({int(out.sum())} "
                         f"row(s) outside {lo:g}..{hi:g}{unit})")
        digests: dict[bytes, int] = {}
        dups: list[tuple[int, int]] = []
        for i in range(0, n, 2048):
            fl = flux[i:i + 2048]
            er = err[i:i + 2048]
            if not np.all(np.isfinite(fl)):
                r = i + int(np.argmax(~np.all(np.isfinite(fl), axis=1)))
                _problem(f"{path.name}: /flux has NaN/inf values (first in spectrum {r})")
            if not np.all(np.isfinite(er)):
                r = i + int(np.argmax(~np.all(np.isfinite(er), axis=1)))
                _problem(f"{path.name}: /{ekey} has NaN/inf values (first in spectrum {r})")
            if np.any(er <= 0):
                r = i + int(np.argmax(np.any(er <= 0, axis=1)))
                _problem(f"{path.name}: /{ekey} has zero or negative values (first in spectrum {r}); errors must be > 0")
            if np.any(np.mean(fl, axis=1) <= 0):
                r = i + int(np.argmax(np.mean(fl, axis=1) <= 0))
                _problem(f"{path.name}: spectrum {r} has a mean flux <= 0 and cannot be normalised")
            for j, row in enumerate(np.ascontiguousarray(fl, dtype=np.float64)):
                h = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
                if h in digests:
                    dups.append((digests[h], i + j))
                else:
                    digests[h] = i + j
        if dups:
            a, b = dups[0]
            _problem(f"{path.name}: {len(dups)} spectra repeat another one exactly (first: rows {a} and {b}); a "
                     f"repeated spectrum can land in both the training and the test split: remove the repeats")
        splits = None
        if "split" in f:
            splits = {}
            for s in SPLITS:
                if s not in f["split"]:
                    _problem(f"{path.name}: /split lacks {s} (expected train, val, test)")
                idx = np.asarray(f["split"][s][()])
                if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
                    _problem(f"{path.name}: /split/{s} must be a 1-D integer array")
                if idx.size and (idx.min() < 0 or idx.max() >= n):
                    _problem(f"{path.name}: /split/{s} has indices outside 0..{n - 1}")
                splits[s] = idx
            allidx = np.concatenate(list(splits.values()))
            if np.unique(allidx).size != allidx.size:
                _problem(f"{path.name}: /split/train, val and test overlap")
            for s, least in MIN_SPLIT.items():
                if splits[s].size < least:
                    _problem(f"{path.name}: /split/{s} holds {splits[s].size} spectra; at least {least} are needed "
                             f"(train {MIN_SPLIT['train']}, val {MIN_SPLIT['val']}, test {MIN_SPLIT['test']})")
        return {"n": n, "n_pix": int(wave.size), "wave_min": float(wave[0]), "wave_max": float(wave[-1]),
                "error_key": ekey, "has_split": splits is not None}


def import_hdf5(src: str | os.PathLike, name: str | None = None, seed: int = 0,
                progress: Callable[[float, str], None] | None = None) -> Path:
    """Validate a user HDF5 grid and copy it, normalised, into artifacts/data/NAME.h5.
    Nothing is written unless the whole file is valid."""
    src = Path(src)
    info = validate_source(src)
    name = name or src.stem
    path = dataset_path(name)
    if path.exists():
        raise DataError(f"a data set named {name!r} already exists; pass --name to choose another")
    n = info["n"]
    check_room(path.parent, estimated_bytes(n, info["n_pix"]), f"data set {name}")
    with written_atomically(path, f"data set {name}") as f, h5py.File(src, "r") as s:
        wave = np.asarray(s["wave"][()], dtype=np.float64)
        _create_arrays(f, n, wave)
        for k in LABELS:
            f["labels"][k][:] = np.asarray(s["labels"][k][()], dtype=np.float64)
        if info["has_split"]:
            splits = {k: np.sort(np.asarray(s["split"][k][()], dtype=np.int64)) for k in SPLITS}
        else:
            splits = _split_indices(n, np.random.default_rng(seed))
        sg = f.create_group("split")
        for k, v in splits.items():
            sg.create_dataset(k, data=v)
        for i in range(0, n, 1024):
            fl = np.asarray(s["flux"][i:i + 1024], dtype=np.float64)
            er = np.asarray(s[info["error_key"]][i:i + 1024], dtype=np.float64)
            if info["error_key"] == "ivar":
                er = 1.0 / np.sqrt(er)
            scale = fl.mean(axis=1, keepdims=True)
            f["flux"][i:i + len(fl)] = (fl / scale).astype(np.float32)
            f["error"][i:i + len(fl)] = (er / scale).astype(np.float32)
            if progress:
                progress(min(1.0, (i + len(fl)) / n), f"copied {i + len(fl)} / {n} spectra")
        f.attrs.update({
            "name": name, "source": f"import:{src.name}", "simulator_version": "",
            "seed": seed, "profile": "", "n_spectra": n,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "normalisation": "flux and error divided by each spectrum's mean flux",
            "description": str(s.attrs.get("description", f"imported from {src.name}")),
        })
    return path


