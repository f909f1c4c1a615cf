"""Worker processes for core.engine.executor.run_many: specs fitted side by side, one process each.

    results = pool.run_pool(specs, workers=2, ...)   # what run_many(..., workers=2) calls

Each worker is a plain `python -m core.engine.pool` subprocess with cpu_count // workers threads (BLAS,
OpenMP, torch), speaking one JSON line per spec over its stdin/stdout; its log goes to stderr.
(Not multiprocessing: its spawn start method re-runs the parent's __main__ in every child, and
in a Streamlit or pytest process that is not a script to run again.)

A worker runs core.engine.train.run with WAIT_FOR_OTHERS off: a spec that another process is fitting,
or that needs a run another process is fitting (a latent probe and its encoder), comes back
"busy" and is handed out again after other work, so no worker sits waiting and no spec is
fitted twice (core.engine.registry.claim_run).
"""
from __future__ import annotations

import collections
import json
import os
import selectors
import subprocess
import sys
import time

from core import config

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
RETRY_S = 2.0   # a busy spec is handed out again no sooner than this


def gpu_slots() -> int:
    """Fits that share one GPU side by side: LOGG_GPU_SLOTS (default 1, one process owns the card). The
    study's networks are small (55 k parameters at most, a few MB of activations a batch), so on a large
    card several fits can run at once; how many pays is not measured yet (no GPU has been lent to this
    project): benchmarks/bench_gpu.py --gpu-slots N measures it."""
    raw = os.environ.get("LOGG_GPU_SLOTS", "1")
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"LOGG_GPU_SLOTS must be a whole number of fits per GPU, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"LOGG_GPU_SLOTS must be at least 1, got {n}")
    return n


def gpu_count() -> int:
    """CUDA devices this process sees (0 without CUDA; 1 for Apple's GPU)."""
    from core.engine.train import pick_device
    dev = pick_device()
    if dev == "cpu":
        return 0
    if dev == "mps":
        return 1
    import torch
    return max(1, torch.cuda.device_count())


def gpu_of_worker(k: int, gpus: int) -> str | None:
    """The CUDA device worker k is given (CUDA_VISIBLE_DEVICES): round robin over `gpus` cards, or None
    (the worker sees what its parent sees) with fewer than two; a parent already limited by
    CUDA_VISIBLE_DEVICES hands out the cards it names."""
    if gpus < 2:
        return None
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    names = visible if len(visible) >= gpus else [str(i) for i in range(gpus)]
    return names[k % gpus]


class _Worker:
    def __init__(self, threads: int, gpu: str | None = None):
        self.gpu = gpu
        env = {**os.environ, **{k: str(threads) for k in THREAD_VARS}, "LOGG_POOL_PARENT": str(os.getpid())}
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        self.proc = subprocess.Popen([sys.executable, "-m", "core.engine.pool"], cwd=config.ROOT, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=1)
        self.task: int | None = None
        self.t0 = 0.0

    def send(self, i: int, spec: dict, force: bool) -> None:
        self.task, self.t0 = i, time.perf_counter()
        self.proc.stdin.write(json.dumps({"spec": spec, "force": force}) + "\n")
        self.proc.stdin.flush()

    def stop(self, kill: bool = False) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if kill and self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=None if not kill else 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


class Stopped(Exception):
    """should_stop() said so: the workers were ended, their runs read 'interrupted'."""


def run_pool(specs: list[dict], force: bool, log, keep_going: bool, workers: int, label,
             should_stop=None, on_update=None) -> list:
    """Fit specs on `workers` processes; results (core.engine.train.Result or Exception) in spec order.
    label(i) is the log prefix of spec i. A caller that watches (a dashboard job) passes
    should_stop() -> bool and on_update(n_finished, [indices being fitted]); both are called at
    least every half second. should_stop() True ends the workers and raises Stopped."""
    from core.engine import registry, train
    workers = max(1, min(workers, len(specs)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    gpus = gpu_count()
    log(f"{len(specs)} specs to fit on {workers} worker processes x {threads} thread(s)"
        + (f", {gpus} GPU(s) shared round robin" if gpus > 1 else ", sharing the GPU" if gpus and workers > 1 else ""))
    started = [0]                        # workers started so far: the next one's card
    con = registry.connect()
    out: list = [None] * len(specs)
    queue = collections.deque((i, 0.0) for i in range(len(specs)))   # (spec, not before this time)
    tries = collections.Counter()                                      # busy answers per spec
    sel = selectors.DefaultSelector()
    pool: list[_Worker] = []
    ok = False

    def start(gpu: str | None = None, first: bool = True) -> _Worker:
        """A worker: a new one on the next card, or (first=False) a replacement on the card `gpu` it had."""
        if first:
            gpu = gpu_of_worker(started[0], gpus)
            started[0] += 1
        w = _Worker(threads, gpu)
        pool.append(w)
        sel.register(w.proc.stdout, selectors.EVENT_READ, w)
        return w

    def replace(w: _Worker) -> int:
        """A worker that ended: reap it, start another; returns its exit code."""
        sel.unregister(w.proc.stdout)
        pool.remove(w)
        w.stop(kill=True)
        start(w.gpu, first=False)                 # the same card: the split over the cards stays even
        return w.proc.returncode

    try:
        for _ in range(workers):
            start()
        while queue or any(w.task is not None for w in pool):
            now = time.monotonic()
            for w in list(pool):
                if w.task is None and queue:
                    ready = next((q for q in queue if q[1] <= now), None)
                    if ready is None:
                        break
                    queue.remove(ready)
                    try:
                        w.send(ready[0], specs[ready[0]], force)
                    except OSError:          # it ended while idle: the spec goes back, a new worker
                        w.task = None
                        queue.appendleft(ready)
                        replace(w)
            busy = [w for w in pool if w.task is not None]
            if should_stop is not None and should_stop():
                raise Stopped()
            if on_update is not None:
                on_update(sum(r is not None for r in out), sorted(w.task for w in busy))
            # wake for the next retry only when a worker is free to take it; a watcher every 0.5 s
            idle = len(busy) < len(pool)
            timeout = max(0.05, min(q[1] for q in queue) - now) if queue and idle else None
            if should_stop is not None or on_update is not None:
                timeout = 0.5 if timeout is None else min(timeout, 0.5)
            for key, _ in sel.select(timeout):
                w = key.data
                # one request -> exactly one answer line, so a readline after select does not block
                line = w.proc.stdout.readline()
                i, secs = w.task, time.perf_counter() - w.t0
                w.task = None
                if not line:   # the worker ended (killed, out of memory): its spec failed, a new worker
                    code = replace(w)
                    if i is None:
                        continue
                    msg = {"status": "failed", "error": f"worker process ended (exit code {code})"}
                else:
                    msg = json.loads(line)
                if msg["status"] == "busy":   # retried later, backing off: 2, 4, 8, then every 10 s
                    tries[i] += 1
                    queue.append((i, time.monotonic() + min(10.0, RETRY_S * 2 ** (tries[i] - 1))))
                    continue
                if msg["status"] == "done":
                    r = train.cached_result(specs[i], con=con)
                    if r is not None:
                        r.cached = bool(msg["cached"])
                        m = r.metrics
                        log(f"{label(i)}: R2={m['r2']:.3f} MAE={m['mae']:.3f} "
                            f"({'cached' if r.cached else f'{secs:.1f} s'})")
                        out[i] = r
                        continue
                    msg = {"status": "failed", "error": f"run {msg['run_id']} reported done but is not in the registry"}
                log(f"{label(i)}: FAILED: {msg['error']}")
                out[i] = RuntimeError(msg["error"])
                if not keep_going:
                    raise out[i]
        ok = True
    finally:
        for w in pool:
            w.stop(kill=not ok)
        sel.close()
    return out


def _die_with_parent(parent: int) -> None:
    """Linux: ask the kernel for SIGTERM when the parent process ends (killed or not), so that a
    killed `train` leaves no worker fitting on; its run then reads 'interrupted'."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):   # not Linux: the worker still stops when its stdin closes
        return
    if os.getppid() != parent:          # the parent ended before the request took effect
        sys.exit(1)


def _install_stop_handlers() -> None:
    """SIGTERM (a cancel, or the parent gone) raises KeyboardInterrupt in the main thread: run() cleans up
    and its row reads 'interrupted'. Where the signal lands inside a weakref callback or a __del__, Python
    prints that exception and drops it ("Exception ignored in ..."), and the worker fitted on after its
    parent was killed (seen: a dilated CNN training on for minutes). The unraisable hook has the signal
    sent again 50 ms later, so it is raised outside the callback (and again, should it land in another)."""
    import signal
    import threading

    def _interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    default_hook = sys.unraisablehook

    def _unraisable(u):
        if isinstance(u.exc_value, KeyboardInterrupt):   # again from a thread, once the main thread has left the
            # hook (a signal sent from here would be raised, and dropped, inside it)
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
            return
        default_hook(u)

    signal.signal(signal.SIGTERM, _interrupt)
    sys.unraisablehook = _unraisable


def main() -> int:
    """The worker side: one JSON request per line on stdin, one JSON answer per line on stdout."""
    _install_stop_handlers()
    _die_with_parent(int(os.environ.get("LOGG_POOL_PARENT", os.getppid())))
    answer = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                  # whatever a model prints goes to stderr, not into the answers
    sys.stdout = sys.stderr
    from core.engine import train
    train.WAIT_FOR_OTHERS = False
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    import torch
    torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=threads)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        _serve(answer, log)
    except KeyboardInterrupt:   # cancelled or the parent ended: the run is already marked interrupted
        return 130
    return 0


def _serve(answer, log) -> None:
    from core.engine import train
    for line in sys.stdin:
        req = json.loads(line)
        try:
            r = train.run(req["spec"], force=bool(req.get("force")), log=log)
            msg = {"status": "done", "run_id": r.run_id, "cached": r.cached}
        except train.RunBusy:
            msg = {"status": "busy"}
        except Exception as e:   # recorded in the registry by run()
            msg = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        answer.write(json.dumps(msg) + "\n")


if __name__ == "__main__":
    sys.exit(main())
