"""The job queue (in the run registry's SQLite file) and the worker that drains it.

A job is a list of specs with a state: queued -> running -> done | failed | cancelled,
or 'interrupted' when its worker died. The worker (`python -m core worker`) takes jobs
one at a time, runs their specs through the same engine as the CLI (core.engine.executor.run_many on
job_workers() processes, or core.engine.train.run one spec at a time where that is 1), and writes
progress and a log as it goes. At most one worker runs per artifacts folder:
it holds an exclusive flock on artifacts/worker.lock, which the OS releases when the
process dies, so a crashed worker never holds the lock forever.

Enqueueing is idempotent: a job whose specs equal those of a queued or running job is
that job (one transaction decides), so two people pressing Launch at once get one job.
Re-queueing an interrupted job resumes it: finished runs are cached and skipped.
"""
from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from core import config
from core.engine import executor, leases, registry
from core.engine.pool import Stopped

JOB_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT NOT NULL,
    label      TEXT NOT NULL,
    specs      TEXT NOT NULL,
    state      TEXT NOT NULL,
    progress   TEXT,
    cancel     INTEGER NOT NULL DEFAULT 0,
    worker_pid INTEGER,
    error      TEXT,
    created    TEXT NOT NULL,
    started    TEXT,
    finished   TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""


class JobCancelled(Exception):
    pass


class NotAllowed(PermissionError):
    pass


def connect():
    con = registry.connect()
    if not con.readonly:
        con.executescript(JOB_SCHEMA)
    elif not con.execute("SELECT 1 FROM sqlite_master WHERE name='jobs'").fetchone():
        # a read-only registry from before the queue existed: an empty queue, in memory
        con.execute("ATTACH DATABASE ':memory:' AS mem")
        con.executescript(JOB_SCHEMA.split("CREATE INDEX")[0].replace("EXISTS jobs", "EXISTS mem.jobs"))
    return con


def admin_token() -> str | None:
    """The server's admin token: LOGG_ADMIN_TOKEN, or the first line of the file LOGG_ADMIN_TOKEN_FILE
    names (so that it is in no command line). None when neither is set: write actions are open."""
    if os.environ.get("LOGG_ADMIN_TOKEN"):
        return os.environ["LOGG_ADMIN_TOKEN"]
    path = os.environ.get("LOGG_ADMIN_TOKEN_FILE")
    if not path:
        return None
    try:
        with open(path) as f:
            tok = f.readline().strip()
    except OSError as e:
        raise NotAllowed(f"LOGG_ADMIN_TOKEN_FILE={path} cannot be read ({e.strerror}): write actions are "
                         f"refused until it can") from None
    if not tok:
        raise NotAllowed(f"LOGG_ADMIN_TOKEN_FILE={path} is empty: write actions are refused until it holds a token")
    return tok


def check_token(token: str | None) -> None:
    """Write actions need the admin token when the server has one; reading never does."""
    want = admin_token()
    if want and not hmac.compare_digest((token or "").encode(), want.encode()):
        raise NotAllowed("this action needs the admin token (set on the server by LOGG_ADMIN_TOKEN or "
                         "LOGG_ADMIN_TOKEN_FILE)")


def specs_key(specs: list[dict]) -> str:
    canon = sorted(json.dumps({k: v for k, v in s.items() if k != "suite"}, sort_keys=True) for s in specs)
    return hashlib.sha256("\n".join(canon).encode()).hexdigest()[:16]


def registry_is_empty(con=None) -> bool:
    """No run has been recorded and no job queued here yet (the dashboard's first start)."""
    con = con or connect()
    return not (con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
                or con.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


def log_path(job_id: int) -> Path:
    p = config.artifacts_dir() / "jobs"
    p.mkdir(parents=True, exist_ok=True)
    return p / f"job-{job_id}.log"


def _job(r) -> dict | None:
    if r is None:
        return None
    d = dict(r)
    d["specs"] = json.loads(d["specs"])
    d["progress"] = json.loads(d["progress"]) if d["progress"] else {}
    if d["state"] == "running" and not registry._pid_alive(d["worker_pid"]):
        d["state"] = "interrupted"
    return d


def submit(specs: list[dict], label: str = "", token: str | None = None, con=None) -> tuple[int, bool]:
    """Queue specs as one job. Returns (job_id, created): created is False when an identical
    job was already queued or running."""
    check_token(token)
    if not specs:
        raise ValueError("a job needs at least one spec")
    from core.engine.train import normalise_spec
    specs = [normalise_spec(s) for s in specs]
    con = con or connect()
    registry.require_writable(con)   # a read-only or full artifacts folder: one line, nothing queued
    key = specs_key(specs)
    with registry.transaction(con):
        for r in con.execute("SELECT job_id, worker_pid, state FROM jobs WHERE key=? AND state IN ('queued','running')",
                             (key,)).fetchall():
            if r["state"] == "queued" or registry._pid_alive(r["worker_pid"]):
                return int(r["job_id"]), False
        cur = con.execute("INSERT INTO jobs(key, label, specs, state, created) VALUES(?,?,?,?,?)",
                          (key, label or f"{len(specs)} specs", json.dumps(specs), "queued", registry.now()))
        return int(cur.lastrowid), True


def cancel(job_id: int, token: str | None = None, con=None) -> str:
    """Cancel a queued job at once, or ask a running one to stop (it stops at its next progress
    report: within seconds). Returns the job's state afterwards."""
    check_token(token)
    con = con or connect()
    with registry.transaction(con):
        r = con.execute("SELECT state FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        if r is None:
            raise ValueError(f"no job {job_id}")
        if r["state"] == "queued":
            con.execute("UPDATE jobs SET state='cancelled', finished=? WHERE job_id=?", (registry.now(), job_id))
            return "cancelled"
        if r["state"] == "running":
            con.execute("UPDATE jobs SET cancel=1 WHERE job_id=?", (job_id,))
            return "cancelling"
        return r["state"]


def get(job_id: int, con=None) -> dict | None:
    con = con or connect()
    return _job(con.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone())


def list_jobs(limit: int = 50, con=None) -> list[dict]:
    con = con or connect()
    return [_job(r) for r in con.execute("SELECT * FROM jobs ORDER BY job_id DESC LIMIT ?", (limit,)).fetchall()]


def tail(job_id: int, lines: int = 40) -> str:
    p = log_path(job_id)
    if not p.exists():
        return ""
    return "\n".join(p.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- the worker
def _lock_file() -> Path:
    return config.artifacts_dir() / "worker.lock"


def worker_alive() -> bool:
    """True when some process holds the worker lock of this artifacts folder."""
    with open(_lock_file(), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def ensure_worker() -> bool:
    """Start a worker process in the background if none is alive. Returns True if one was started.

    The lock is taken here, before the worker starts, and handed to it as an inherited file
    descriptor (flock belongs to the open file, which both then share): ten submits at once see
    the lock taken by the first and start one worker, not ten."""
    lockf = open(_lock_file(), "a+")
    try:
        try:
            fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        with open(config.artifacts_dir() / "worker.out", "a") as out:
            subprocess.Popen([sys.executable, "-m", "core", "worker", "--lock-fd", str(lockf.fileno())],
                             cwd=config.ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=dict(os.environ), pass_fds=(lockf.fileno(),))
        return True
    finally:
        lockf.close()   # the worker's copy keeps the lock; ours goes


def recover(con) -> int:
    """On worker start: jobs left 'running' by a dead worker become 'interrupted', and so do their runs."""
    n = 0
    for r in con.execute("SELECT job_id, worker_pid FROM jobs WHERE state='running'").fetchall():
        if not registry._pid_alive(r["worker_pid"]) or r["worker_pid"] == os.getpid():
            con.execute("UPDATE jobs SET state='interrupted', finished=?, error=? WHERE job_id=?",
                        (registry.now(), "the worker running this job died; queue it again to resume", r["job_id"]))
            n += 1
    registry.mark_interrupted(con)
    from core.engine.train import clean_temporaries
    clean_temporaries()
    return n


def _set(con, job_id: int, **cols) -> None:
    keys = ", ".join(f"{k}=?" for k in cols)
    vals = [json.dumps(v) if k == "progress" else v for k, v in cols.items()]
    with registry.transaction(con):
        con.execute(f"UPDATE jobs SET {keys} WHERE job_id=?", (*vals, job_id))


def job_workers() -> int:
    """Worker processes a job fits its specs on: LOGG_JOB_WORKERS, else the engine's default
    (2 on a CPU with 2 or more cores, 1 on a GPU; core.engine.executor.default_workers)."""
    if os.environ.get("LOGG_JOB_WORKERS"):
        return max(1, int(os.environ["LOGG_JOB_WORKERS"]))
    return executor.default_workers()


def _build_missing(con, jid: int, specs: list[dict], log) -> None:
    from core.data.ensure import ensure_built
    for name, prof in sorted({(s["dataset"], s["profile"]) for s in specs}):
        # the profile's data set, a physics variant of it or a matched data set (its recipe saved by predict)
        ensure_built(name, prof, log=log,
                     progress=lambda f, m: _set(con, jid, progress={"spec": 1, "of": len(specs), "building": m}))


def _run_on_workers(con, jid: int, specs: list[dict], log, cancelled, workers: int) -> int:
    """The job's specs on `workers` processes (core/engine/pool.py); returns the number that failed.
    Progress: 'spec' counts finished specs + 1; the model(s) being fitted, and the epoch of the
    first of them from its registry row."""
    from core import data
    from core.engine import train
    _build_missing(con, jid, specs, log)
    rids = {}
    for i, s in enumerate(specs):
        try:
            n = train.normalise_spec(s)
            rids[i] = train.spec_hash(n, data.Dataset(n["dataset"]).fingerprint)
        except (ValueError, OSError, data.DataError):
            pass   # run() reports it
    last = [None]

    def update(n_done: int, running: list[int]) -> None:
        p = {"spec": min(len(specs), n_done + 1), "of": len(specs)}
        if running:
            first = specs[running[0]]
            p.update(model=" + ".join(specs[i]["model"] for i in running), noise_level=first["noise_level"],
                     params=first.get("params", {}))
            row = registry.get(con, rids[running[0]]) if running[0] in rids else None
            prog = (row or {}).get("progress") if (row or {}).get("status") == "running" else None
            if not prog and running[0] in rids:   # a Dask worker reports in its lease, not in the index
                prog = (leases.read(rids[running[0]]) or {}).get("progress")
            p.update({("epochs" if k == "of" else k): v for k, v in (prog or {}).items()})
        if p != last[0]:
            _set(con, jid, progress=p)
            last[0] = p

    res = executor.run_many(specs, log=log, workers=workers, should_stop=cancelled, on_update=update)
    return sum(isinstance(r, Exception) for r in res)


def run_job(con, job: dict) -> str:
    """Run one job's specs in this process. Returns its final state."""
    from core.engine import train
    jid = job["job_id"]
    logf = open(log_path(jid), "a", buffering=1)

    def log(msg: str) -> None:
        logf.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    _set(con, jid, state="running", started=registry.now(), worker_pid=os.getpid(), error=None)
    specs = job["specs"]
    log(f"job {jid} started: {job['label']} ({len(specs)} specs), worker pid {os.getpid()}")
    state, error, last_check = "done", None, [0.0]

    def cancelled() -> bool:
        if time.time() - last_check[0] < 0.5:
            return False
        last_check[0] = time.time()
        return bool(con.execute("SELECT cancel FROM jobs WHERE job_id=?", (jid,)).fetchone()[0])

    failures = 0
    try:
        workers = job_workers()
        if workers > 1 and len(specs) > 1:
            failures = _run_on_workers(con, jid, specs, log, cancelled, workers)
        for i, s in enumerate(specs if workers <= 1 or len(specs) <= 1 else []):
            if cancelled():
                raise JobCancelled()
            base = {"spec": i + 1, "of": len(specs), "model": s["model"], "noise_level": s["noise_level"],
                    "params": s.get("params", {})}
            _set(con, jid, progress=base)
            from core.data.ensure import ensure_built
            ensure_built(s["dataset"], s["profile"], log=log,
                         progress=lambda f, m: _set(con, jid, progress={**base, "building": m}))

            def progress(**kw):
                # a run's own "of" (epochs, boosting rounds) must not overwrite the job's spec count
                _set(con, jid, progress={**base, **{("epochs" if k == "of" else k): v for k, v in kw.items()}})
                if cancelled():
                    raise JobCancelled()

            t0 = time.time()
            try:
                r = train.run(s, log=log, on_progress=progress)
                log(f"[{i + 1}/{len(specs)}] {s['model']} noise={s['noise_level']:g} {s.get('params') or ''}: "
                    f"R2={r.metrics['r2']:.3f} ({'cached' if r.cached else f'{time.time() - t0:.1f} s'}) run {r.run_id}")
            except JobCancelled:
                raise
            except Exception as e:  # the run is recorded as failed; the job goes on
                failures += 1
                log(f"[{i + 1}/{len(specs)}] {s['model']} FAILED: {type(e).__name__}: {e}")
        if failures:
            state, error = "failed", f"{failures} of {len(specs)} specs failed (see the log)"
    except (JobCancelled, Stopped):
        state = "cancelled"
        log("cancelled")
    except Exception as e:  # noqa: BLE001
        state, error = "failed", f"{type(e).__name__}: {e}"
        log(traceback.format_exc())
    _set(con, jid, state=state, finished=registry.now(), error=error)
    log(f"job {jid} {state}")
    logf.close()
    return state


def worker(idle_exit_s: float = 20.0, once: bool = False, lock_fd: int | None = None) -> int:
    """Take jobs one at a time until the queue has been empty for idle_exit_s seconds. lock_fd: the
    worker lock, already taken by the process that started this one (ensure_worker)."""
    lockf = os.fdopen(lock_fd, "a+") if lock_fd is not None else open(_lock_file(), "a+")
    try:
        fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("another worker is running for this artifacts folder", file=sys.stderr)
        return 0
    lockf.seek(0)
    lockf.truncate()
    lockf.write(str(os.getpid()))
    lockf.flush()
    con = connect()
    n = recover(con)
    if n:
        print(f"marked {n} job(s) interrupted", file=sys.stderr)
    idle_since = time.time()
    done = 0
    while True:
        r = con.execute("SELECT * FROM jobs WHERE state='queued' ORDER BY job_id LIMIT 1").fetchone()
        if r is None:
            if once or time.time() - idle_since > idle_exit_s:
                return done
            time.sleep(0.5)
            continue
        run_job(con, _job(r))
        done += 1
        idle_since = time.time()
