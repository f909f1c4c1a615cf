"""Calibration sets: new stars drawn from a simulated data set's own recipe, for Predict's error bars.

Predict chooses its recommended predictors on the validation split, and the torch models stop early on
it, so errors measured there are optimistic: on the quick data the chosen ensemble's validation RMSE in
the faintest S/N quartile at noise 1.0 was 0.76 dex against 0.88 on new stars and 0.90 on the test stars,
and its 68 % interval held 50 % of the faint test stars. A calibration set is the honest remedy a
simulator allows: stars that no fit and no choice has seen, from the same prior, noise model, physics and
nuisance recipe, as many as the error bars need (split-conformal calibration on an independent set).

    cal = calibration.ensure(ds)      # built once (about 8 s for 3,000 spectra on 2 cores), then opened
    calibration.reason(ds)            # why a data set has none (an imported grid, another simulator)

It is the recipe's own build with another seed (the data set's seed + SEED_OFFSET), written under
artifacts/data/calibration/NAME-FINGERPRINT.h5: not a data set of the registry (list_datasets does not
see it), one per data set version. All its splits together are the calibration stars. Imported grids
and data sets of another simulator version have none; Predict then calibrates on the validation split
and says so.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from core import config
from core.data.dataset import DataError, Dataset

SEED_OFFSET = 1_000_003
N_MIN, N_MAX = 1000, 4000      # the data set's own size, within these: ~250-1,000 stars per S/N quartile
# one build at a time in a process: the app's sessions are threads, and two builds of one file would share
# its temporary name (it carries the process id); other processes race through the atomic rename
_BUILD_LOCK = threading.Lock()


def calibration_dir() -> Path:
    return config.data_dir() / "calibration"


def path_for(ds: Dataset) -> Path:
    return calibration_dir() / f"{ds.name}-{ds.fingerprint}.h5"


def size_for(ds: Dataset) -> int:
    return int(min(N_MAX, max(N_MIN, ds.n)))


def reason(ds: Dataset) -> str | None:
    """Why this data set cannot have a calibration set (None: it can)."""
    from core.physics.simulate import SIMULATOR_VERSION
    source = str(ds.attrs.get("source", ""))
    if source == "simulator":
        version = str(ds.attrs.get("simulator_version", ""))
    elif source == "simulator:matched":
        version = str(ds.attrs.get("matched_simulator_version", ""))
    else:
        return "an imported grid: no simulator recipe to draw new stars from"
    if version != SIMULATOR_VERSION:
        return f"simulated by simulator v{version or '?'}, this is v{SIMULATOR_VERSION}: new stars would differ"
    return None


def ensure(ds: Dataset, progress=None) -> Dataset | None:
    """The calibration set of `ds`, built when missing; None when it cannot have one (`reason`) or the
    artifacts folder is not writable."""
    path = path_for(ds)
    if path.exists():
        try:
            return Dataset(path)
        except (DataError, OSError):
            pass                               # unreadable (a damaged copy): built again below
    if reason(ds) is not None:
        return None
    with _BUILD_LOCK:
        try:
            try:
                return Dataset(path)           # another thread may have built it while this one waited
            except (DataError, OSError):
                path.unlink(missing_ok=True)
                path.with_suffix(".snr.npy").unlink(missing_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            _build(ds, path, progress)
            return Dataset(path)
        except (DataError, OSError):
            return None


def star_snr(cal: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(every row of a calibration set, each star's S/N at noise level 1), as Dataset.split_snr measures it
    (at noise level x it is this / x). Kept beside the set as NAME-FINGERPRINT.snr.npy: reading the flux
    for it was 0.4 s of a cold predict call."""
    from core.data.dataset import SPLITS
    side = cal.path.with_suffix(".snr.npy")
    rows = np.sort(np.concatenate([cal.split_rows(k) for k in SPLITS]))
    try:
        got = np.load(side, allow_pickle=False)
        if got.shape == rows.shape:
            return rows, got
    except (OSError, ValueError):
        pass
    parts = [cal.split_snr(k, 1.0) for k in SPLITS]
    r = np.concatenate([a for a, _ in parts])
    snr = np.concatenate([b for _, b in parts])[np.argsort(r)]
    tmp = side.with_name(f"{side.name}.tmp{os.getpid()}.npy")
    try:
        np.save(tmp, snr)
        os.replace(tmp, side)
    except OSError:
        tmp.unlink(missing_ok=True)
    return rows, snr


def _build(ds: Dataset, path: Path, progress=None) -> None:
    import json

    from core.data import matched
    from core.data.building import build
    n, seed = size_for(ds), ds.seed + SEED_OFFSET
    name = f"{ds.name}~calibration"
    if ds.attrs.get("source") == "simulator:matched":
        rec = json.loads(ds.attrs["matched_recipe"])
        matched.build_matched(name, device="cpu", progress=progress, recipe={**rec, "n": n, "seed": seed}, path=path)
    else:
        build(name=name, profile=str(ds.attrs.get("profile", "quick")), n=n, seed=seed, device="cpu",
              progress=progress, nuisance=ds.nuisance_recipe, physics=ds.physics_recipe, path=path)
