"""The engine: run(spec) fits (or loads from the cache) one model and records it in the registry.

A spec is a plain dict:
    {"model": "ridge", "params": {...}, "inputs": "flux", "noise_level": 0.1,
     "dataset": "sim-quick", "seed": 0, "profile": "quick", "target": "logg"}
Its hash (together with the data set's fingerprint and the profile's sizes) is the run id
and the cache key: a spec whose run is 'done' with its artifact folder in place is loaded,
not refitted; changing any part of it, or the data set, gives a new id and a new fit.

A run writes into artifacts/runs/<id>.tmp-<pid>/ and renames the folder to
artifacts/runs/<id>/ only when the model, predictions and metrics are all written; only
then is the registry row set to 'done'. A crash leaves a temporary folder (ignored and
cleaned) and a row that reads 'failed' or 'interrupted', never 'done'.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import config, registry
from core.data import LABELS, Dataset
from core.metrics import regression_metrics

SPEC_KEYS = ("model", "params", "inputs", "noise_level", "dataset", "seed", "profile", "target")
_CODE_DIRS = ("core", "models")


def code_version() -> str:
    """Short hash of the engine's and models' source: changes whenever the code does."""
    h = hashlib.sha256()
    for d in _CODE_DIRS:
        for p in sorted((config.ROOT / d).glob("*.py")):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:10]


_NO_DEFAULT = object()


def normalise_spec(spec: dict) -> dict:
    """The canonical form of a spec (what is hashed and stored): defaults filled in, parameters
    left at a model's declared default (Model.param_defaults) dropped."""
    from models import MODELS
    if spec.get("model") not in MODELS:
        raise ValueError(f"unknown model {spec.get('model')!r}; known: {', '.join(sorted(MODELS))}")
    prof = config.profile(spec.get("profile", "quick"))
    out = {
        "model": spec["model"],
        "params": {k: v for k, v in sorted((spec.get("params") or {}).items())
                   if v != MODELS[spec["model"]].param_defaults.get(k, _NO_DEFAULT)},
        "inputs": spec.get("inputs") or MODELS[spec["model"]].inputs,
        "noise_level": float(spec.get("noise_level", 1.0)),
        "dataset": spec.get("dataset") or prof["dataset"],
        "seed": int(spec.get("seed", 0)),
        "profile": prof["name"],
        "target": spec.get("target", "logg"),
    }
    if out["target"] not in LABELS:
        raise ValueError(f"unknown target {out['target']!r}; choose one of {', '.join(LABELS)}")
    if "suite" in spec:
        out["suite"] = spec["suite"]
    return out


def spec_hash(spec: dict, dataset_fp: str) -> str:
    s = normalise_spec(spec)
    prof = config.profile(s["profile"])
    payload = {k: s[k] for k in SPEC_KEYS}
    payload["dataset_fp"] = dataset_fp
    payload["profile_settings"] = {k: v for k, v in prof.items() if k not in ("name", "dataset", "n_spectra")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pick_device() -> str:
    try:
        from core.trainer import pick_device as _pd
        return _pd()
    except ImportError:  # torch models not installed yet
        return "cpu"


@dataclass
class Result:
    run_id: str
    spec: dict
    metrics: dict
    timings: dict
    artifact: Path
    cached: bool

    def predictions(self) -> dict:
        with np.load(self.artifact / "predictions.npz", allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def load_model(self):
        return load_model(self.artifact)


def load_model(folder: Path):
    from models import MODELS
    meta = json.loads((Path(folder) / "run.json").read_text())
    cls = MODELS[meta["spec"]["model"]]
    m = cls.load(Path(folder) / "model")
    m.inputs = meta["spec"]["inputs"]
    return m


# Views are deterministic in (data set, split, noise, inputs, seed, limit), and a suite asks for
# the same few again and again: keep the most recent in memory, read-only, up to a byte budget.
_VIEW_CACHE: "collections.OrderedDict[tuple, object]" = collections.OrderedDict()
VIEW_CACHE_BYTES = int(os.environ.get("LOGG_VIEW_CACHE_MB", "1024")) << 20


def _cached_view(ds: Dataset, split: str, nl: float, inputs: str, seed: int, limit=None):
    key = (str(ds.path), ds.fingerprint, split, float(nl), inputs, int(seed), limit)
    if key in _VIEW_CACHE:
        _VIEW_CACHE.move_to_end(key)
        return _VIEW_CACHE[key]
    v = ds.view(split, nl, inputs, seed=seed, limit=limit)
    for a in (v.x, v.y, v.index):
        a.flags.writeable = False          # a model that edits its input in place fails loudly
    _VIEW_CACHE[key] = v
    while _VIEW_CACHE and sum(x.x.nbytes for x in _VIEW_CACHE.values()) > VIEW_CACHE_BYTES:
        _VIEW_CACHE.popitem(last=False)
    return v


def _views(ds: Dataset, spec: dict, prof: dict):
    inputs, nl, seed = spec["inputs"], spec["noise_level"], spec["seed"]
    train = _cached_view(ds, "train", nl, inputs, seed, prof.get("max_train"))
    val = _cached_view(ds, "val", nl, inputs, seed)
    test = _cached_view(ds, "test", nl, inputs, seed)
    return train, val, test


class RunBusy(RuntimeError):
    """The spec, or a run it depends on, is being fitted by another live process (raised only
    where WAIT_FOR_OTHERS is off, i.e. in the worker processes of run_many)."""


# run() waits for another process that is fitting the same spec; run_many's workers turn this
# off, hand the spec back and take another, so that no core sits idle
WAIT_FOR_OTHERS = True
BUSY_POLL_S = 2.0


def run(spec: dict, force: bool = False, log=print, con=None, on_progress=None) -> Result:
    """Fit one spec, or load it from the cache. Returns a Result; raises on failure
    (after recording the failure in the registry). on_progress(**info) is called with every
    progress report (a job uses it to show progress and to stop a cancelled run)."""
    from models import MODELS
    from models.base import FitContext

    spec = normalise_spec(spec)
    ds = Dataset(spec["dataset"])
    rid = spec_hash(spec, ds.fingerprint)
    con = con or registry.connect()
    final = config.runs_dir() / rid
    done = registry.finished(con, rid)
    if done and not force and (final / "run.json").exists():
        return Result(rid, spec, done["metrics"], done["timings"] or {}, final, cached=True)

    prof = config.profile(spec["profile"])
    device = pick_device()
    said = False
    while True:   # one process fits a spec at a time; the others wait for it (or step aside)
        claimed, prev = registry.claim_run(con, rid, spec, ds.fingerprint, code_version(), device, force=force)
        if claimed:
            break
        if prev["status"] == "done":   # finished by another process since the check above
            return Result(rid, spec, json.loads(prev["metrics"] or "{}"), json.loads(prev["timings"] or "{}"),
                          Path(prev["artifact_path"]), cached=True)
        if not WAIT_FOR_OTHERS:
            raise RunBusy(f"{spec['model']} (run {rid}) is being fitted by process {prev.get('pid')}")
        if not said:
            log(f"{spec['model']} (run {rid}) is being fitted by process {prev.get('pid')}: waiting for it")
            said = True
        time.sleep(BUSY_POLL_S)
        done = registry.finished(con, rid)
        if done and (final / "run.json").exists():
            return Result(rid, spec, done["metrics"], done["timings"] or {}, final, cached=True)
    tmp = config.runs_dir() / f"{rid}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        train, val, test = _views(ds, spec, prof)
        t_data = time.perf_counter() - t0
        model = MODELS[spec["model"]](**spec["params"])
        model.inputs = spec["inputs"]
        target = LABELS.index(spec["target"])

        def progress(**kw):
            registry.progress(con, rid, **kw)
            if on_progress:
                on_progress(**kw)

        ctx = FitContext(profile=prof, seed=spec["seed"], device=device, target=target, progress=progress, log=log,
                         dataset=ds)
        t0 = time.perf_counter()
        model.fit(train, val, ctx)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = model.predict(test)
        t_pred = time.perf_counter() - t0
        mean, std = (out if isinstance(out, tuple) else (out, None))
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        y = test.y[:, target].astype(np.float64)
        if not np.all(np.isfinite(mean)):
            raise RuntimeError(f"{spec['model']} produced {int((~np.isfinite(mean)).sum())} non-finite predictions")
        metrics = regression_metrics(y, mean)
        metrics["n_params"] = int(model.n_params)
        metrics["n_train"] = int(len(train.y))
        metrics["n_test"] = int(len(y))
        for attr in ("receptive_field_px", "first_layer_rf_px", "alpha_"):
            if hasattr(model, attr):
                metrics[attr.rstrip("_")] = float(getattr(model, attr))
        if isinstance(getattr(model, "extra_metrics_", None), dict):  # a model's own extra numbers
            metrics.update({k: float(v) for k, v in model.extra_metrics_.items()})
        timings = {"data_s": round(t_data, 3), "fit_s": round(t_fit, 3), "predict_s": round(t_pred, 3),
                   "device": device}
        tmp.mkdir(parents=True)
        model.save(tmp / "model")
        arrays = {"index": test.index, "y_true": y, "y_pred": mean, "labels": test.y}
        if std is not None:
            arrays["y_std"] = np.asarray(std, dtype=np.float64).reshape(-1)
        np.savez(tmp / "predictions.npz", **arrays)
        (tmp / "run.json").write_text(json.dumps({"run_id": rid, "spec": spec, "metrics": metrics,
                                                  "timings": timings, "dataset_fp": ds.fingerprint,
                                                  "code_version": code_version()}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        registry.finish_run(con, rid, metrics, timings, str(final))
        return Result(rid, spec, metrics, timings, final, cached=False)
    except RunBusy:   # a run this one depends on is being fitted elsewhere: as if never started
        shutil.rmtree(tmp, ignore_errors=True)
        registry.release_run(con, rid, prev)
        raise
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        registry.fail_run(con, rid, "".join(traceback.format_exception_only(type(e), e)).strip()
                          + "\n" + traceback.format_exc()[-3000:], status)
        raise


def _label(i: int, n: int, s: dict) -> str:
    return (f"[{i}/{n}] {s['model']} {json.dumps(s.get('params') or {})} inputs={s.get('inputs') or '-'} "
            f"noise={s.get('noise_level')}")


def default_workers() -> int:
    """Processes for run_many on this machine: 2 on a CPU with at least 2 cores, else 1.

    Measured on the project's 2-core CPU (docs/benchmarks.md): the study's networks are small, so
    one fit keeps two threads busy only ~60-75 % of the time; two one-thread fits side by side get
    ~25 % more steps per second than one two-thread fit. On a GPU one process owns the card."""
    if pick_device() != "cpu":
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def run_many(specs: list[dict], force: bool = False, log=print, keep_going: bool = True,
             workers: int = 1, should_stop=None, on_update=None) -> list[Result | Exception]:
    """Run specs; a failing spec is recorded and (with keep_going) skipped. Results in spec order.

    workers > 1: cached specs are read here, the others are fitted by that many worker
    processes side by side (core/pool.py); no spec is fitted twice (registry.claim_run).
    should_stop() / on_update(n_finished, [spec indices being fitted]): see pool.run_pool."""
    con = registry.connect()
    out: list = [None] * len(specs)
    todo = list(range(len(specs)))
    if workers > 1 and not force:   # cached runs are read here: no worker process for them
        todo = []
        for i, s in enumerate(specs):
            r = cached_result(s, con=con)
            if r is not None and (r.artifact / "run.json").exists():
                log(f"{_label(i + 1, len(specs), s)}: R2={r.metrics['r2']:.3f} MAE={r.metrics['mae']:.3f} (cached)")
                out[i] = r
            else:
                todo.append(i)
    watched = should_stop is not None or on_update is not None   # a job: fits stay stoppable in workers
    if workers > 1 and (len(todo) > 1 or (todo and watched)):
        from core import pool
        n_cached = len(specs) - len(todo)
        res = pool.run_pool([specs[i] for i in todo], force, log, keep_going, workers,
                            label=lambda j: _label(todo[j] + 1, len(specs), specs[todo[j]]),
                            should_stop=should_stop,
                            on_update=None if on_update is None else
                            lambda n, running: on_update(n + n_cached, [todo[j] for j in running]))
        for i, r in zip(todo, res):
            out[i] = r
        return out
    for i in todo:
        s = specs[i]
        label = _label(i + 1, len(specs), s)
        t0 = time.perf_counter()
        try:
            r = run(s, force=force, log=log, con=con)
            m = r.metrics
            log(f"{label}: R2={m['r2']:.3f} MAE={m['mae']:.3f} ({'cached' if r.cached else f'{time.perf_counter() - t0:.1f} s'})")
            out[i] = r
        except Exception as e:  # recorded in the registry by run()
            log(f"{label}: FAILED: {type(e).__name__}: {e}")
            if not keep_going:
                raise
            out[i] = e
    return out


def cached_result(spec: dict, con=None) -> Result | None:
    """The finished result of a spec, without fitting; None if it has not been run."""
    try:
        spec = normalise_spec(spec)
        ds = Dataset(spec["dataset"])
    except ValueError:  # unknown model or missing data set
        return None
    rid = spec_hash(spec, ds.fingerprint)
    con = con or registry.connect()
    done = registry.finished(con, rid)
    if not done:
        return None
    return Result(rid, spec, done["metrics"], done["timings"] or {}, Path(done["artifact_path"]), cached=True)


def clean_temporaries() -> int:
    """Remove temporary run folders left by crashed processes."""
    n = 0
    for p in config.runs_dir().glob("*.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not registry._pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n
