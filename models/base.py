"""The one interface every model family implements, and the context the engine hands to fit().

    model = MODELS[name](**params)            # constructor holds hyper-parameters only
    model.fit(train, val, ctx)  -> self       # train/val are core.data.View; fitted attributes end in _
    model.predict(view)         -> np.ndarray  (n,) log g, or (mean, std) tuple when the model has a 1-sigma
    model.save(folder)  /  Model.load(folder) -> model   (no pickle of anything a user supplied;
                                                         torch via state_dict + weights_only=True)
    model.n_params               -> int       number of fitted parameters

`inputs` (a key of core.data.INPUTS) names what the view must contain; the engine builds
the views from the spec, so a model never reads files itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

TARGET = 1  # column of log g in View.y (teff, logg, mh)


@dataclass
class FitContext:
    profile: dict                       # core.config.profile(...) values: epochs, batch_size, patience, ...
    seed: int = 0
    device: str = "cpu"                 # chosen by the engine: cuda, mps or cpu
    target: int = TARGET                # which label column to predict
    progress: Callable[..., None] = field(default=lambda **kw: None)  # progress(epoch=, of=, val_loss=, ...)
    log: Callable[[str], None] = field(default=lambda msg: None)
    dataset: object = None              # the core.data.Dataset the views come from (read-only use)


class Model:
    """Base class: subclasses set `inputs` and implement fit / predict / _save / _load."""
    inputs = "flux"
    family = "base"
    # parameters whose default the engine fills in: a spec that names one at this value is the
    # same spec (same hash, same cached run) as one that leaves it out
    param_defaults: dict = {}

    def __init__(self, **params):
        self.params = params

    def fit(self, train, val, ctx: FitContext):  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, view):  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def n_params(self) -> int:
        return 0

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.json").write_text(json.dumps({"class": type(self).__name__, "params": self.params}))
        self._save(folder)

    @classmethod
    def load(cls, folder: Path):
        folder = Path(folder)
        meta = json.loads((folder / "model.json").read_text())
        m = cls(**meta["params"])
        m._load(folder)
        return m

    def _save(self, folder: Path) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _load(self, folder: Path) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def flat(view) -> np.ndarray:
    """(n, C, P) -> (n, C*P) float32 for tabular models."""
    x = view.x
    return x.reshape(len(x), -1) if x.ndim == 3 else x


def save_arrays(folder: Path, **arrays) -> None:
    np.savez(Path(folder) / "arrays.npz", **arrays)


def load_arrays(folder: Path) -> dict:
    with np.load(Path(folder) / "arrays.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
