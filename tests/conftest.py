"""Shared fixtures: tests never touch the repository's artifacts/ folder.

LOGG_ARTIFACTS points at a temporary folder for the whole session (autouse), and
`tiny_dataset` builds a 200-spectrum 'sim-quick' there once (about 2 s) for the app tests.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TINY_N = 200


@pytest.fixture(scope="session", autouse=True)
def artifacts_dir(tmp_path_factory) -> Path:
    """A session-wide temporary artifacts folder (LOGG_ARTIFACTS); restored afterwards."""
    d = tmp_path_factory.mktemp("artifacts")
    old = os.environ.get("LOGG_ARTIFACTS")
    os.environ["LOGG_ARTIFACTS"] = str(d)
    os.environ["LOGG_FIRST_START"] = "0"  # no automatic first-start training while tests run (test_jobs tests it)
    yield d
    if old is None:
        os.environ.pop("LOGG_ARTIFACTS", None)
    else:
        os.environ["LOGG_ARTIFACTS"] = old


@pytest.fixture(scope="session")
def tiny_dataset(artifacts_dir) -> str:
    """A 200-spectrum built-in data set named 'sim-quick' in the session artifacts folder."""
    from core import data
    if "sim-quick" not in data.list_datasets():
        data.build(name="sim-quick", n=TINY_N)
    return "sim-quick"


def write_user_grid(path: Path, n: int = 60, n_pix: int = 300, seed: int = 1) -> Path:
    """A small HDF5 grid in the import schema of docs/data.md (no simulator metadata)."""
    import h5py
    rng = np.random.default_rng(seed)
    wave = np.linspace(8400.0, 8700.0, n_pix)
    flux = 1.0 - 0.5 * np.exp(-0.5 * ((wave[None, :] - 8542.0) / rng.uniform(1, 3, (n, 1))) ** 2)
    flux = flux * rng.uniform(50, 100, (n, 1))
    with h5py.File(path, "w") as f:
        f["wave"] = wave
        f["flux"] = flux
        f["error"] = np.sqrt(flux)
        g = f.create_group("labels")
        g["teff"] = rng.uniform(4000, 6500, n)
        g["logg"] = rng.uniform(1, 5, n)
        g["mh"] = rng.uniform(-2, 0.3, n)
    return path


def private_registry(tmp_path_factory, name: str):
    """A module's own artifacts folder with a TINY_N-spectrum 'sim-quick' (the runs made there stay there):
    `yield from private_registry(tmp_path_factory, "mine")` in a module-scoped fixture."""
    from core import data
    d = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOGG_ARTIFACTS", str(d))
        data.build(name="sim-quick", n=TINY_N)
        yield d


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run the CUDA path: skipped (with the reason) where torch sees no CUDA device."""
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device: the CPU tests pin the numerics this path uses")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
