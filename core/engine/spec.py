"""What a run is: its spec, the spec's canonical form, its run id, the runs it depends on, and the
version of the code that fits it.

A spec is a plain dict (it travels as JSON to worker processes, jobs and the registry):
    {"model": "ridge", "params": {...}, "inputs": "flux", "noise_level": 0.1,
     "dataset": "sim-quick", "seed": 0, "profile": "quick", "target": "logg"}
`make_spec` is the one place one is built; `normalise_spec` checks it (the model exists, every
parameter is one its family accepts, the target is a label) and gives its canonical form, which is
what is hashed and stored. Its hash, with the data set's fingerprint and the profile's sizes, is
the run id and the cache key: changing any part of it, or the data set, gives a new id and a new fit.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from core import config
from core.data import LABELS

SPEC_KEYS = ("model", "params", "inputs", "noise_level", "dataset", "seed", "profile", "target")
CODE_DIRS = ("core", "models")
_NO_DEFAULT = object()


REPLICATE_SEED_STEP = 1000   # replicate r trains with seed + r * this (its views keep the spec's seed)


def make_spec(model: str, params: dict | None = None, noise_level: float = 1.0, profile: str = "quick",
              dataset: str | None = None, suite: str | None = None, inputs: str | None = None, seed: int = 0,
              target: str | None = None, replicate: int = 0, n_train: int | None = None) -> dict:
    """A spec for `model` with these parameters; the data set is the profile's unless given, the
    inputs the family's own unless given; n_train: train on the first n_train spectra of the training
    split (None: the profile's max_train)."""
    s = {"model": model, "params": dict(params or {}), "noise_level": noise_level, "profile": profile,
         "dataset": dataset or config.profile(profile)["dataset"], "seed": seed}
    if suite:
        s["suite"] = suite
    if inputs:
        s["inputs"] = inputs
    if target:
        s["target"] = target
    if replicate:
        s["replicate"] = int(replicate)
    if n_train is not None:
        s["n_train"] = n_train
    return s


def replicates(specs: list[dict], n: int) -> list[dict]:
    """Each spec as n training replicates (replicate 0 is the spec itself, same run id as always): the same
    data, the same noise draws of every split (so the same test set), another training seed. A family
    whose fit uses no seed (Model.seed_dependent False: Ridge, the Cannon, the ceiling) gets one."""
    if n < 1:
        raise ValueError(f"--seeds must be at least 1, got {n}")
    from models import MODELS
    return [dict(s, replicate=r) if r else dict(s) for s in specs
            for r in range(n if getattr(MODELS.get(s.get("model")), "seed_dependent", True) else 1)]


def training_seed(spec: dict) -> int:
    """The seed a run's fit uses: the spec's, moved by its replicate."""
    return int(spec.get("seed", 0)) + REPLICATE_SEED_STEP * int(spec.get("replicate", 0))


def code_version() -> str:
    """Short hash of every source file of the engine and the models (sub-folders included): it
    changes whenever the code does."""
    h = hashlib.sha256()
    for d in CODE_DIRS:
        root = config.ROOT / d
        for p in sorted(root.rglob("*.py")):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:10]


def normalise_spec(spec: dict) -> dict:
    """The canonical form of a spec (what is hashed and stored): defaults filled in, parameters
    left at a model's declared default (Model.param_defaults) dropped, parameters whose default
    changed (Model.implied_params) written out. Unknown models, parameters and targets raise
    ValueError. normalise_spec(normalise_spec(s)) == normalise_spec(s)."""
    from models import MODELS
    if spec.get("model") not in MODELS:
        raise ValueError(f"unknown model {spec.get('model')!r}; known: {', '.join(sorted(MODELS))}")
    cls = MODELS[spec["model"]]
    params = spec.get("params") or {}
    cls.check_params(params)
    # a parameter whose default changed is written out (Model.implied_params: the torch families'
    # noise_mode, "fresh" since #17), so that the canonical form says how the run trains
    params = {**getattr(cls, "implied_params", {}), **params}
    prof = config.profile(spec.get("profile", "quick"))
    out = {
        "model": spec["model"],
        "params": {k: v for k, v in sorted(params.items()) if v != cls.param_defaults.get(k, _NO_DEFAULT)},
        "inputs": spec.get("inputs") or cls.inputs,
        "noise_level": float(spec.get("noise_level", 1.0)),
        "dataset": spec.get("dataset") or prof["dataset"],
        "seed": int(spec.get("seed", 0)),
        "profile": prof["name"],
        "target": spec.get("target", "logg"),
    }
    if out["target"] not in LABELS:
        raise ValueError(f"unknown target {out['target']!r}; choose one of {', '.join(LABELS)}")
    if int(spec.get("replicate", 0) or 0) < 0:
        raise ValueError(f"replicate must be >= 0, got {spec['replicate']!r}")
    if int(spec.get("replicate", 0) or 0):
        out["replicate"] = int(spec["replicate"])
    n_train = _check_n_train(spec, out, prof)
    if n_train is not None:
        out["n_train"] = n_train
    if "suite" in spec:
        out["suite"] = spec["suite"]
    return out


# training-split sizes of the data sets n_train was checked against, by (path, mtime): a suite
# normalises its specs many times
_SPLIT_SIZES: dict[tuple, int] = {}


def _train_split_size(name: str) -> int | None:
    """How many spectra the training split of data set `name` holds; None where it does not exist
    (no data set yet: n_train is checked against it when it does)."""
    from core import data
    try:
        path = data.dataset_path(name)
        key = (str(path), path.stat().st_mtime_ns)
    except (data.DataError, OSError, ValueError):
        return None
    if key not in _SPLIT_SIZES:
        try:
            _SPLIT_SIZES[key] = int(data.Dataset(path).splits["train"].size)
        except (data.DataError, OSError):
            return None
    return _SPLIT_SIZES[key]


def _check_n_train(spec: dict, out: dict, prof: dict) -> int | None:
    """The spec's n_train, checked (a positive integer no larger than the data set's training split),
    or None: absent, or equal to the profile's max_train (what an absent key trains on), so that such
    a spec keeps the run id it has without the key."""
    n = spec.get("n_train")
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < 1:
        raise ValueError(f"n_train must be a positive whole number of training spectra, got {n!r}")
    n = int(n)
    have = _train_split_size(out["dataset"])
    if have is not None and n > have:
        raise ValueError(f"n_train={n:,} is more than the {have:,} spectra of the training split of data set "
                         f"{out['dataset']!r}; choose at most {have:,}")
    return None if n == prof.get("max_train") else n


def spec_hash(spec: dict, dataset_fp: str) -> str:
    from models import MODELS
    s = normalise_spec(spec)
    prof = config.profile(s["profile"])
    payload = {k: s[k] for k in SPEC_KEYS}
    # values that hash like an absent key (Model.legacy_params: noise_mode="fixed", how every run trained
    # before the parameter existed, keeps those runs' ids)
    legacy = getattr(MODELS[s["model"]], "legacy_params", {})
    payload["params"] = {k: v for k, v in s["params"].items() if legacy.get(k, _NO_DEFAULT) != v}
    if s.get("replicate"):            # only when > 0: replicate 0 keeps every run id it always had
        payload["replicate"] = s["replicate"]
    if s.get("n_train"):              # only when given: without it every run id is the one it always had
        payload["n_train"] = s["n_train"]
    payload["dataset_fp"] = dataset_fp
    payload["profile_settings"] = {k: v for k, v in prof.items() if k not in ("name", "dataset", "n_spectra")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dependency_specs(spec: dict) -> dict[str, dict]:
    """The specs of the runs this one needs fitted first, by name (Model.requires): each is this
    spec (data set, profile, seed, target) with the fields its family names replaced."""
    from models import MODELS
    s = normalise_spec(spec)
    out = {}
    for name, change in MODELS[s["model"]].requires(s).items():
        d = {k: s[k] for k in SPEC_KEYS}
        if s.get("replicate"):        # a replicate reads the same replicate of what it needs (its own encoder)
            d["replicate"] = s["replicate"]
        d.update(change)
        out[name] = normalise_spec(d)
    return out
