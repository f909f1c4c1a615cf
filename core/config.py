"""One place for paths and profiles: every size, epoch count and budget of the project lives here.

Profiles:
  quick    CI, tests and the first start of the app: minutes on a 2-core CPU.
  default  a full reproduction of the study on a laptop CPU.
  full     the group's scale, meant for a GPU.
The artifacts folder (data sets, fitted models, the run registry, job logs) is
`artifacts/` next to this repository unless LOGG_ARTIFACTS points elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _made(p: Path) -> Path:
    """p, created if it can be; on a read-only disk reading goes on and the first write says why."""
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return p


def artifacts_dir() -> Path:
    return _made(Path(os.environ.get("LOGG_ARTIFACTS", ROOT / "artifacts")))


def data_dir() -> Path:
    return _made(artifacts_dir() / "data")


def registry_path() -> Path:
    return artifacts_dir() / "registry.sqlite"


def runs_dir() -> Path:
    return _made(artifacts_dir() / "runs")


NOISE_LEVELS = (0.1, 1.0)

PROFILES: dict[str, dict] = {
    "quick": {
        "dataset": "sim-quick",
        "n_spectra": 3000,
        "seed": 42,
        "epochs": 12,
        "batch_size": 128,
        "patience": 4,
        "cnn_channels": 16,
        "max_train": 2100,
        "lgbm_rounds": 150,
    },
    # every suite of the study on a 2-core laptop CPU: the quick profile's models on twice the
    # data. Measured: 51 min with `train`'s two worker processes (72 min one spec at a time);
    # docs/benchmarks.md
    "default": {
        "dataset": "sim-default",
        "n_spectra": 6000,
        "seed": 42,
        "epochs": 12,
        "batch_size": 128,
        "patience": 4,
        "cnn_channels": 16,
        "max_train": 4200,
        "lgbm_rounds": 150,
    },
    "full": {
        "dataset": "sim-full",
        "n_spectra": 100000,
        "seed": 42,
        "epochs": 60,
        "batch_size": 256,
        "patience": 8,
        "cnn_channels": 32,
        "max_train": 70000,
        "lgbm_rounds": 1500,
    },
}

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)  # train, val, test


def profile(name: str) -> dict:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return dict(PROFILES[name], name=name)
