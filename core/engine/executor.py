"""Running many specs: run_many fits a list of specs in this process, side by side in worker processes
(core/engine/pool.py), or on a Dask cluster when LOGG_SCHEDULER names one (core/engine/cluster.py); it
reads cached ones here and keeps going past a failing spec."""
from __future__ import annotations

import json
import os
import time

from core.engine import pool, registry
from core.engine.pool import gpu_count, gpu_slots  # noqa: F401 - part of the executor's API
from core.engine.train import Result, cached_result, run


def _label(i: int, n: int, s: dict) -> str:
    return (f"[{i}/{n}] {s['model']} {json.dumps(s.get('params') or {})} inputs={s.get('inputs') or '-'} "
            f"noise={s.get('noise_level')}")


def default_workers() -> int:
    """Processes for run_many on this machine: 2 on a CPU with at least 2 cores, else 1; with GPUs, the
    number of GPUs x gpu_slots() (each worker is given one card, core/engine/pool.py), at most the cores.

    Measured on the project's 2-core CPU (docs/benchmarks.md): the study's networks are small, so
    one fit keeps two threads busy only ~60-75 % of the time; two one-thread fits side by side get
    ~25 % more steps per second than one two-thread fit."""
    gpus = gpu_count()
    if gpus:
        return max(1, min(gpus * gpu_slots(), os.cpu_count() or 1))
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def scheduler_address() -> str | None:
    """LOGG_SCHEDULER (tcp://host:port): every run_many of this process, the dashboard's jobs included,
    fits on that Dask scheduler's workers instead of local worker processes."""
    return os.environ.get("LOGG_SCHEDULER") or None


def run_many(specs: list[dict], force: bool = False, log=print, keep_going: bool = True,
             workers: int = 1, should_stop=None, on_update=None) -> list[Result | Exception]:
    """Run specs; a failing spec is recorded and (with keep_going) skipped. Results in spec order.

    workers > 1: cached specs are read here, the others are fitted by that many worker
    processes side by side (core/engine/pool.py); no spec is fitted twice (registry.claim_run).
    should_stop() / on_update(n_finished, [spec indices being fitted]): see pool.run_pool."""
    if scheduler_address():   # the group's running Dask scheduler: its workers fit (core/engine/cluster.py)
        from core.engine import cluster
        with cluster.connect(scheduler=scheduler_address(), log=log) as client:
            return cluster.run_specs(specs, client, force=force, log=log, keep_going=keep_going,
                                     should_stop=should_stop, on_update=on_update)
    con = registry.connect()
    out: list = [None] * len(specs)
    todo = list(range(len(specs)))
    if workers > 1 and not force:   # cached runs are read here: no worker process for them
        todo = []
        for i, s in enumerate(specs):
            r = cached_result(s, con=con)
            if r is not None and registry.artifact_complete(r.artifact):
                log(f"{_label(i + 1, len(specs), s)}: R2={r.metrics['r2']:.3f} MAE={r.metrics['mae']:.3f} (cached)")
                out[i] = r
            else:
                todo.append(i)
    if todo:   # something will be fitted: a read-only or full artifacts folder fails here, in one line
        registry.require_writable(con)
    watched = should_stop is not None or on_update is not None   # a job: fits stay stoppable in workers
    if workers > 1 and (len(todo) > 1 or (todo and watched)):
        n_cached = len(specs) - len(todo)
        res = pool.run_pool([specs[i] for i in todo], force, log, keep_going, workers,
                            label=lambda j: _label(todo[j] + 1, len(specs), specs[todo[j]]),
                            should_stop=should_stop,
                            on_update=None if on_update is None else
                            lambda n, running: on_update(n + n_cached, [todo[j] for j in running]))
        for i, r in zip(todo, res):
            out[i] = r
        full = next((str(r) for r in res if isinstance(r, Exception) and str(r).startswith("StorageError: ")), None)
        if full:   # a worker's disk refused a write: say it once, as the single-process path does
            raise registry.StorageError(full.removeprefix("StorageError: "))
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
            if not keep_going or isinstance(e, registry.StorageError):   # the next fit would fail the same way
                raise
            out[i] = e
    return out


