"""Running specs on a Dask cluster (dask.distributed): `train --cluster local`, `--scheduler tcp://host:port`
(a running scheduler, its workers on this node or others) or `--cluster slurm` (dask-jobqueue).

    with cluster.connect(scheduler="tcp://10.0.0.5:8786") as client:
        results = cluster.run_specs(specs, client)

Each spec is one task keyed `fit-<run id>`, so a spec submitted twice (two suites that share a run,
a replicate listed again) is one fit; a run's dependencies (an encoder before its probes:
Model.requires) are tasks it waits for. A torch family asks for a `GPU` resource when the
cluster's workers advertise one (`dask worker ... --resources GPU=2` for two fits per card).

Workers never open the SQLite index (train.USE_INDEX off): a task claims its run with a lease file
(core/engine/leases.py), fits, and leaves the finished folder with its run.json; this process, the
driver, indexes it. A worker that dies mid-fit has its task re-run elsewhere by the scheduler (its
lease is stale: its process is gone, or it stopped beating), and its temporary folder is removed
at the end; a run that finished before a scheduler restart is a complete folder, served from the cache.
Every node must see the artifacts folder at the same path (LOGG_ARTIFACTS, a shared file system).
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from core import config
from core.engine import leases, registry

SLURM_DEFAULTS = {"cores": 8, "memory": "32GB", "walltime": "02:00:00", "jobs": 1}


def _fit(spec: dict, force: bool, artifacts: str, *_deps) -> dict:
    """The task a worker runs: one spec through core.engine.train.run, without the index. _deps are
    the results of the runs it needs (waited for by the scheduler; run() loads them from their folders)."""
    os.environ["LOGG_ARTIFACTS"] = artifacts
    from core.engine import train
    train.USE_INDEX = False
    train.WAIT_FOR_OTHERS = True     # held by another driver's task: wait for it rather than fail

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    r = train.run(spec, force=force, log=log)
    return {"run_id": r.run_id, "cached": r.cached, "seconds": time.perf_counter() - t0}


def _gpu_slots(client) -> bool:
    try:
        workers = client.scheduler_info()["workers"].values()
    except Exception:   # an old scheduler without the field: no resources
        return False
    return any((w.get("resources") or {}).get("GPU") for w in workers)


def _is_torch(model: str) -> bool:
    from models import MODELS
    from models.trainer import TorchModelMixin
    return issubclass(MODELS[model], TorchModelMixin)


def run_specs(specs: list[dict], client, force: bool = False, log=print, keep_going: bool = True,
              should_stop=None, on_update=None) -> list:
    """Fit specs on the cluster behind `client`; results (train.Result or Exception) in spec order.
    Cached runs are read here; a failed spec is recorded in the index and, with keep_going, skipped.
    A watcher (a dashboard job) passes should_stop() and on_update(n_finished, [indices being fitted]),
    as for core.engine.pool.run_pool: called every half second; should_stop() True cancels the tasks
    not yet started (a fit under way on a worker finishes there and is kept) and raises pool.Stopped."""
    from distributed import wait

    from core.engine import train
    from core.engine.pool import Stopped
    from core.engine.spec import dependency_specs, normalise_spec, spec_hash
    con = registry.connect()
    artifacts = str(config.artifacts_dir().resolve())
    gpu = _gpu_slots(client)
    out: list = [None] * len(specs)
    futures: dict[str, object] = {}     # run id -> future: one task per run
    owner: dict[object, list[int]] = {}
    norm: dict[str, tuple[dict, str]] = {}

    def rid_of(s: dict) -> tuple[dict, str]:
        ns = normalise_spec(s)
        return ns, spec_hash(ns, train.dataset_fingerprint(ns["dataset"]))

    def submit(ns: dict, rid: str, top: bool):
        if rid in futures:
            return futures[rid]
        deps = []
        for d in dependency_specs(ns).values():
            dn, drid = rid_of(d)
            if not registry.artifact_complete(config.runs_dir() / drid):
                deps.append(submit(dn, drid, top=False))
        res = {"GPU": 1} if gpu and _is_torch(ns["model"]) else None
        futures[rid] = client.submit(_fit, ns, bool(force and top), artifacts, *deps, key=f"fit-{rid}",
                                     resources=res, pure=False)
        norm[rid] = (ns, rid)
        return futures[rid]

    todo = []
    for i, s in enumerate(specs):
        ns, rid = rid_of(s)
        folder = config.runs_dir() / rid
        if not force and registry.artifact_complete(folder):
            if registry.finished(con, rid) is None:
                registry.index_run(con, folder)
            out[i] = train.cached_result(ns, con=con)
            log(f"[{i + 1}/{len(specs)}] {ns['model']} @ {ns['noise_level']}: R2={out[i].metrics['r2']:.3f} (cached)")
        else:
            todo.append((i, ns, rid))
    if todo:
        registry.require_writable(con)
        blind = artifacts_shared(client)
        if blind:
            raise registry.StorageError(f"{len(blind)} Dask worker(s) ({', '.join(sorted(blind)[:3])}) do not see "
                                        f"{artifacts}: every node needs the artifacts folder at that path")
        log(f"{len(todo)} specs to fit on the Dask cluster at {client.scheduler.address}"
            + (f" (dashboard {client.dashboard_link})" if client.dashboard_link else ""))
    for i, ns, rid in todo:
        owner.setdefault(submit(ns, rid, top=True), []).append(i)

    def fitting() -> list[int]:
        """Spec indices whose run holds a lease now (being fitted on some worker)."""
        return sorted(i for f, idx in owner.items() if f.status == "pending"
                      and leases.lease_path(f.key.removeprefix("fit-")).exists() for i in idx)

    def finished_futures():
        pending = set(owner)
        while pending:
            if should_stop is not None and should_stop():
                client.cancel(list(pending))
                raise Stopped()
            if on_update is not None:
                on_update(sum(r is not None for r in out), fitting())
            try:
                done, pending = wait(list(pending), timeout=0.5 if (should_stop or on_update) else None,
                                     return_when="FIRST_COMPLETED")
            except TimeoutError:   # dask's TimeoutError is the builtin one: nothing finished this half second
                continue
            yield from done

    try:
        for fut in finished_futures():
            rid = fut.key.removeprefix("fit-")
            ns = norm[rid][0]
            for i in owner[fut]:
                label = f"[{i + 1}/{len(specs)}] {ns['model']} @ {ns['noise_level']}"
                if fut.status == "finished":
                    info = fut.result()
                    registry.index_run(con, config.runs_dir() / rid)
                    r = train.cached_result(ns, con=con)
                    r.cached = bool(info["cached"])
                    out[i] = r
                    took = "cached" if r.cached else f"{info['seconds']:.1f} s"
                    log(f"{label}: R2={r.metrics['r2']:.3f} ({took})")
                    continue
                err = fut.exception()
                msg = f"{type(err).__name__}: {err}"
                registry.record_failure(con, ns, rid, train.dataset_fingerprint(ns["dataset"]), msg)
                log(f"{label}: FAILED: {msg}")
                out[i] = err if isinstance(err, Exception) else RuntimeError(msg)
                if not keep_going:
                    raise out[i]
        for rid in futures:   # dependencies that were not asked for: indexed too
            f = config.runs_dir() / rid
            if registry.artifact_complete(f) and registry.finished(con, rid) is None:
                registry.index_run(con, f)
    finally:
        for f in futures.values():
            f.release()
        train.clean_temporaries()   # a killed worker's half-written folder (its lease is stale now)
    return out


@contextlib.contextmanager
def connect(scheduler: str | None = None, cluster: str = "local", workers: int | None = None,
            slurm: dict | None = None, log=print):
    """A Client: to the scheduler at `scheduler`, else on a new LocalCluster (`workers` processes with
    cpu_count // workers threads each; one process per GPU on a GPU node) or SLURMCluster (`slurm`:
    queue, walltime, cores, memory, gpus, jobs; dask-jobqueue's own config file fills the rest)."""
    from distributed import Client
    if scheduler:
        try:
            c = Client(scheduler, timeout="10s")
        except OSError as e:   # refused, unreachable, timed out: one line with what to do
            raise OSError(f"no Dask scheduler answers at {scheduler} ({' '.join(str(e).split())[:120]}); start one "
                          "with `dask scheduler` and its workers with `dask worker ADDRESS`, or drop --scheduler / "
                          "LOGG_SCHEDULER to fit on this machine") from None
        with c:
            yield c
        return
    if cluster == "slurm":
        from dask_jobqueue import SLURMCluster
        opts = {**SLURM_DEFAULTS, **{k: v for k, v in (slurm or {}).items() if v is not None}}
        jobs, gpus = int(opts.pop("jobs")), opts.pop("gpus", None)
        if gpus:
            opts.setdefault("job_extra_directives", []).append(f"--gres=gpu:{int(gpus)}")
            opts["worker_extra_args"] = ["--resources", f"GPU={int(gpus)}"]
        env = [f"export LOGG_ARTIFACTS={config.artifacts_dir().resolve()}"]
        with SLURMCluster(job_script_prologue=env, **opts) as cl:
            cl.scale(jobs=jobs)
            log(f"SLURM: {jobs} job(s) requested; the dashboard is at {cl.dashboard_link}")
            with Client(cl) as c:
                yield c
        return
    from distributed import LocalCluster

    from core.engine.train import pick_device
    n = workers or (1 if pick_device() != "cpu" else max(1, min(2, os.cpu_count() or 1)))
    # the scheduler in this process, its workers `dask worker` processes: a LocalCluster's own workers are
    # started by multiprocessing's spawn, which re-runs this process's __main__ in each of them, and in a
    # Streamlit or test process that is a page script, not a program (core/engine/pool.py has the same reason)
    with LocalCluster(n_workers=0, processes=True, dashboard_address=":0") as cl, Client(cl) as c:
        procs = _start_workers(cl.scheduler_address, n)
        try:
            c.wait_for_workers(n, timeout=180)
            yield c
        finally:
            _stop_workers(procs)


def _start_workers(address: str, n: int) -> list:
    import subprocess
    threads = max(1, (os.cpu_count() or 1) // n)
    env = {**os.environ, **{k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
           "LOGG_ARTIFACTS": str(config.artifacts_dir().resolve()),
           # the worker's statistical profiler samples every thread's stack every 10 ms under the GIL: with the
           # study's small networks that is time taken from the fit (measured: docs/benchmarks.md)
           "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
    return [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                              "--nworkers", "1", "--no-dashboard", "--death-timeout", "30", "--name", f"local-{i}"],
                             cwd=config.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True) for i in range(n)]


def _stop_workers(procs: list) -> None:
    """SIGTERM to each worker's process group (its nanny and worker), SIGKILL after 10 s."""
    import signal
    import subprocess
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def artifacts_shared(client) -> list[str]:
    """Workers that do not see this artifacts folder (a node without the shared file system)."""
    here = str(config.artifacts_dir().resolve())
    seen = client.run(lambda p=here: Path(p, "runs").is_dir())
    return [w for w, ok in seen.items() if not ok]


def dashboard_link(scheduler: str) -> str | None:
    """The Dask dashboard of a running scheduler (for the Training page), or None when it does not answer."""
    from distributed import Client
    try:
        with Client(scheduler, timeout="3s") as c:
            return c.dashboard_link
    except (OSError, ValueError):
        return None
