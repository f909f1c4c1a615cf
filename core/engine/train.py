"""The engine: run(spec) fits (or loads from the cache) one model and records it in the registry.

A spec is a plain dict (core/engine/spec.py: how one is built, checked and hashed into its run
id). A spec whose run is 'done' with its artifact folder in place is loaded, not refitted.
Runs a spec depends on (an encoder before its probes: Model.requires) are fitted or loaded first,
here, and handed to the model's fit as ctx.deps; a model never calls run().

A run writes into artifacts/runs/<id>.tmp-<pid>/ and renames the folder to
artifacts/runs/<id>/ only when the model, predictions and metrics are all written; only
then is the registry row set to 'done'. A crash leaves a temporary folder (ignored and
cleaned) and a row that reads 'failed' or 'interrupted', never 'done'.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import config
from core.data import LABELS, Dataset
from core.engine import leases, registry
from core.engine.metrics import regression_metrics
from core.engine.spec import code_version, dependency_specs, normalise_spec, spec_hash, training_seed


def pick_device() -> str:
    try:
        from models.trainer import pick_device as _pd
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
    """The fitted model of a run folder, with the fitted models it reads when it predicts
    (Model.dependency_runs: a probe's encoder) loaded and attached."""
    from models import MODELS
    meta = json.loads((Path(folder) / "run.json").read_text())
    cls = MODELS[meta["spec"]["model"]]
    m = cls.load(Path(folder) / "model")
    m.inputs = meta["spec"]["inputs"]
    for name, rid in m.dependency_runs().items():
        dep = config.runs_dir() / rid
        if not registry.artifact_complete(dep):
            raise FileNotFoundError(f"run {meta['run_id']} needs run {rid} ({name}), which is not in {config.runs_dir()}")
        m.attach(name, _dependency_model(dep))
    return m


# fitted models other runs depend on (an encoder read by dozens of probes), loaded once per process
_DEP_MODELS: "collections.OrderedDict[tuple, object]" = collections.OrderedDict()


def _dependency_model(folder: Path):
    key = (str(folder), (Path(folder) / "run.json").stat().st_mtime_ns)
    if key not in _DEP_MODELS:
        _DEP_MODELS[key] = load_model(folder)
        while len(_DEP_MODELS) > 8:
            _DEP_MODELS.popitem(last=False)
    return _DEP_MODELS[key]


def _dependencies(spec: dict, log, con) -> dict:
    """Fit or load every run this spec needs (Model.requires), before its own claim: a dependency
    that another process is fitting raises RunBusy here, in a worker, with nothing to release."""
    from models.base import Dependency
    out = {}
    for name, dspec in dependency_specs(spec).items():
        r = run(dspec, log=log, con=con)
        out[name] = Dependency(r.run_id, r.metrics, _dependency_model(r.artifact))
    return out


# Views are deterministic in (data set, split, noise, inputs, seed, limit), and a suite asks for
# the same few again and again: keep the most recent in memory, read-only, up to a byte budget.
_VIEW_CACHE: "collections.OrderedDict[tuple, object]" = collections.OrderedDict()
VIEW_CACHE_BYTES = int(os.environ.get("LOGG_VIEW_CACHE_MB", "1024")) << 20


def _cached_view(ds: Dataset, split: str, nl: float, inputs: str, seed: int, limit=None):
    key = (str(ds.path), ds.fingerprint, split, float(nl), inputs, int(seed), limit)
    if key in _VIEW_CACHE:
        _VIEW_CACHE.move_to_end(key)
        return _VIEW_CACHE[key]
    scratch = os.environ.get("LOGG_VIEW_SCRATCH")
    if scratch:    # one copy per node, memory-mapped by every fit there (docs/cluster.md)
        from core.data.cache import shared_view
        v = shared_view(ds, split, nl, inputs, seed, limit, Path(scratch))
    else:
        v = ds.view(split, nl, inputs, seed=seed, limit=limit)
    for a in (v.x, v.y, v.index):
        if a.flags.writeable:
            a.flags.writeable = False      # a model that edits its input in place fails loudly
    _VIEW_CACHE[key] = v
    while _VIEW_CACHE and sum(x.x.nbytes for x in _VIEW_CACHE.values()) > VIEW_CACHE_BYTES:
        _VIEW_CACHE.popitem(last=False)
    return v


def _views(ds: Dataset, spec: dict, prof: dict):
    """The training view (its first n_train rows where the spec says, else the profile's max_train:
    rows keep the split's order, so a smaller n_train is a prefix of a larger), validation and test."""
    inputs, nl, seed = spec["inputs"], spec["noise_level"], spec["seed"]
    train = _cached_view(ds, "train", nl, inputs, seed, spec.get("n_train") or prof.get("max_train"))
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


def _result_from_folder(rid: str, spec: dict, folder: Path) -> Result:
    meta = json.loads((folder / "run.json").read_text())
    return Result(rid, spec, meta.get("metrics") or {}, meta.get("timings") or {}, folder, cached=True)


def _served(con, rid: str, spec: dict, final: Path) -> Result:
    """A finished run folder as a cached Result; indexed here if the registry does not list it yet (a
    run a worker on another node fitted, whose driver has not indexed it)."""
    if con is not None and registry.finished(con, rid) is None and not getattr(con, "readonly", False):
        try:
            registry.index_run(con, final)
        except registry.StorageError:
            pass
    return _result_from_folder(rid, spec, final)


def _prior_fits(con, rid: str, final: Path) -> list[dict]:
    """The fits before this one, carried into run.json: the folder's own history, or for a folder from
    before run.json kept one, the index's (what the pages showed)."""
    if (final / "run.json").is_file() and "history" in registry._meta(final):
        return registry.folder_history(final)
    if con is not None:
        return [{k: h.get(k) for k in ("finished", "metrics", "code_version", "dataset_fp")}
                for h in registry.history(con, rid)]
    return registry.folder_history(final)


# Whether run() writes the SQLite index. A Dask worker (core/engine/cluster.py), possibly on another
# node over a network file system, sets it off: it claims with a lease file, fits, writes run.json,
# and its driver indexes the run. Everything a worker needs is in the run folders.
USE_INDEX = os.environ.get("LOGG_NO_INDEX", "") != "1"


def run(spec: dict, force: bool = False, log=print, con=None, on_progress=None) -> Result:
    """Fit one spec, or load it from the cache. Returns a Result; raises on failure
    (after recording the failure in the registry). on_progress(**info) is called with every
    progress report (a job uses it to show progress and to stop a cancelled run).

    A run is finished when artifacts/runs/<id>/ holds its run.json and every file it lists (the record
    of truth); the registry is an index of those folders. It is claimed by a lease file
    (core/engine/leases.py), so two processes, on one node or two, never fit it at once."""
    from models import MODELS
    from models.base import FitContext

    spec = normalise_spec(spec)
    ds = Dataset(spec["dataset"])
    rid = spec_hash(spec, ds.fingerprint)
    if USE_INDEX:
        con = con or registry.connect()
    else:
        con = None
    final = config.runs_dir() / rid
    if not force and registry.artifact_complete(final):
        return _served(con, rid, spec, final)

    if con is not None:
        registry.require_writable(con)   # a read-only or full artifacts folder: one line, nothing changed
    else:
        registry.require_writable_folder()
    prof = config.profile(spec["profile"])
    deps = _dependencies(spec, log, con)
    device = pick_device()
    said = False
    while True:   # one process fits a spec at a time; the others wait for it (or step aside)
        lease = leases.acquire(rid)
        if lease is not None:
            if not force and registry.artifact_complete(final):   # finished by another process meanwhile
                lease.release()
                return _served(con, rid, spec, final)
            break
        if not WAIT_FOR_OTHERS:
            raise RunBusy(f"{spec['model']} (run {rid}) is being fitted by {leases.holder(rid)}")
        if not said:
            log(f"{spec['model']} (run {rid}) is being fitted by {leases.holder(rid)}: waiting for it")
            said = True
        time.sleep(BUSY_POLL_S)
        if not force and registry.artifact_complete(final):
            return _served(con, rid, spec, final)
    tmp = config.runs_dir() / f"{rid}.tmp-{lease.token}"
    started = registry.now()
    try:
        if con is not None:
            registry.start_run(con, rid, spec, ds.fingerprint, code_version(), device)
        t0 = time.perf_counter()
        train, val, test = _views(ds, spec, prof)
        t_data = time.perf_counter() - t0
        model = MODELS[spec["model"]](**spec["params"])
        model.inputs = spec["inputs"]
        target = LABELS.index(spec["target"])

        def progress(**kw):
            if con is not None:
                registry.progress(con, rid, **kw)
            lease.beat(progress=kw)
            if on_progress:
                on_progress(**kw)

        ctx = FitContext(profile=prof, seed=training_seed(spec), device=device, target=target, progress=progress,
                         log=log, dataset=ds, deps=deps)
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
        metrics["n_train"] = int(len(train.y))     # the spectra it trained on (spec n_train, else max_train)
        metrics["n_test"] = int(len(y))
        metrics.update({k: float(v) for k, v in model.run_metrics().items()})   # the model's own numbers
        timings = {"data_s": round(t_data, 3), "fit_s": round(t_fit, 3), "predict_s": round(t_pred, 3),
                   "device": device}
        tmp.mkdir(parents=True)
        model.save(tmp / "model")
        arrays = {"index": test.index, "y_true": y, "y_pred": mean, "labels": test.y}
        if std is not None:
            arrays["y_std"] = np.asarray(std, dtype=np.float64).reshape(-1)
        np.savez(tmp / "predictions.npz", **arrays)
        finished = registry.now()
        history = _prior_fits(con, rid, final) + [{"finished": finished, "metrics": metrics,
                                                     "code_version": code_version(), "dataset_fp": ds.fingerprint}]
        (tmp / "run.json").write_text(json.dumps({"run_id": rid, "spec": spec, "metrics": metrics,
                                                  "timings": timings, "dataset_fp": ds.fingerprint,
                                                  "code_version": code_version(), "device": device,
                                                  "created": started, "finished": finished, "history": history,
                                                  "files": registry.artifact_files(tmp)}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if con is not None:
            registry.index_run(con, final)
        return Result(rid, spec, metrics, timings, final, cached=False)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        if con is not None:
            try:
                registry.fail_run(con, rid, "".join(traceback.format_exception_only(type(e), e)).strip()
                                  + "\n" + traceback.format_exc()[-3000:], status)
            except registry.StorageError:
                pass   # the disk that failed the fit also refuses the record: the row reads 'interrupted'
        if registry.storage_problem(e) and not isinstance(e, registry.StorageError):
            raise registry.storage_error(e, config.runs_dir()) from None
        raise
    finally:
        lease.release()


# data set fingerprints by (path, modification time, size): a page asking for hundreds of specs' cached
# results opened the data set file (labels, splits) once per spec to read one attribute
_FINGERPRINTS: dict[tuple, str] = {}


def dataset_fingerprint(name: str) -> str:
    """The fingerprint of data set `name` (DataError when there is none), read once per file version."""
    from core.data.dataset import dataset_path
    p = dataset_path(name)
    try:
        st = p.stat()
    except OSError:
        Dataset(name)    # raises the data layer's one-line DataError for a missing file
        raise
    key = (str(p), st.st_mtime_ns, st.st_size)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = Dataset(name).fingerprint
    return _FINGERPRINTS[key]


def cached_result(spec: dict, con=None) -> Result | None:
    """The finished result of a spec, without fitting; None if it has not been run."""
    try:
        spec = normalise_spec(spec)
        fingerprint = dataset_fingerprint(spec["dataset"])
    except ValueError:  # unknown model or missing data set
        return None
    rid = spec_hash(spec, fingerprint)
    con = con or registry.connect()
    done = registry.finished(con, rid)
    if not done:
        return None
    return Result(rid, spec, done["metrics"], done["timings"] or {}, Path(done["artifact_path"]), cached=True)


def clean_temporaries() -> int:
    """Remove temporary run folders left by crashed processes: <id>.tmp-<token> whose lease is gone, stale
    or another holder's (the holder of a live lease writes only <id>.tmp-<its token>), and stale leases."""
    n = 0
    for p in config.runs_dir().glob("*.tmp-*"):
        rid, _, token = p.name.partition(".tmp-")
        d = leases.read(rid)
        if d is None or leases.stale(d) or d.get("token") != token:
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n + leases.clean_stale()
