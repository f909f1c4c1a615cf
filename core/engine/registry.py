"""The run registry: artifacts/registry.sqlite, one row per run (SQLite from the standard library).

A run's id is the hash of its spec (core/train.spec_hash). Status moves
queued -> running -> done | failed | interrupted. A run is only 'done' once its
artifact folder has been renamed into place (core/train writes to a temporary
folder first), and a 'running' row whose process is gone is reported as
'interrupted', so a run killed half-way is never mistaken for a finished one.
Every write is one short transaction; WAL mode lets the app read while a worker writes.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from core import config

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,
    model         TEXT NOT NULL,
    suite         TEXT,
    dataset       TEXT NOT NULL,
    dataset_fp    TEXT NOT NULL,
    noise_level   REAL NOT NULL,
    seed          INTEGER NOT NULL,
    status        TEXT NOT NULL,
    metrics       TEXT,
    timings       TEXT,
    progress      TEXT,
    device        TEXT,
    code_version  TEXT,
    artifact_path TEXT,
    pid           INTEGER,
    error         TEXT,
    created       TEXT NOT NULL,
    updated       TEXT NOT NULL,
    finished      TEXT
);
CREATE INDEX IF NOT EXISTS runs_model ON runs(model, noise_level);
CREATE TABLE IF NOT EXISTS run_history (
    run_id   TEXT NOT NULL,
    finished TEXT NOT NULL,
    metrics  TEXT,
    code_version TEXT,
    dataset_fp TEXT
);
"""

STATUSES = ("queued", "running", "done", "failed", "interrupted")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def connect(path: Path | None = None) -> sqlite3.Connection:
    path = Path(path or config.registry_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA busy_timeout=30000")
    con.executescript(SCHEMA)
    return con


@contextmanager
def transaction(con: sqlite3.Connection):
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        # an interrupt (Ctrl-C, a worker's SIGTERM) can land after COMMIT took effect: roll back
        # only an open transaction, and never let the rollback's error replace the interrupt
        if con.in_transaction:
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise


def _pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid runs; a zombie (ended, not yet reaped by its parent, e.g.
    under a container's PID 1 that does not reap) counts as ended."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):   # no /proc (macOS): trust kill(0)
        return True


def _row(r: sqlite3.Row | None) -> dict | None:
    if r is None:
        return None
    d = dict(r)
    for k in ("spec", "metrics", "timings", "progress"):
        if d.get(k):
            d[k] = json.loads(d[k])
    if d["status"] == "running" and not _pid_alive(d.get("pid")):
        d["status"] = "interrupted"
    return d


def start_run(con, run_id: str, spec: dict, dataset_fp: str, code_version: str, device: str) -> None:
    """Insert or reset a run row as 'running' (owned by this process)."""
    with transaction(con):
        _upsert_running(con, run_id, spec, dataset_fp, code_version, device)


def _upsert_running(con, run_id: str, spec: dict, dataset_fp: str, code_version: str, device: str) -> None:
    t = now()
    con.execute(
        """INSERT INTO runs(run_id, spec, model, suite, dataset, dataset_fp, noise_level, seed, status,
               device, code_version, pid, created, updated)
           VALUES(?,?,?,?,?,?,?,?,'running',?,?,?,?,?)
           ON CONFLICT(run_id) DO UPDATE SET status='running', pid=excluded.pid, device=excluded.device,
               code_version=excluded.code_version, error=NULL, progress=NULL, updated=excluded.updated""",
        (run_id, json.dumps(spec, sort_keys=True), spec["model"], spec.get("suite"), spec["dataset"],
         dataset_fp, float(spec["noise_level"]), int(spec["seed"]), device, code_version, os.getpid(), t, t))


def claim_run(con, run_id: str, spec: dict, dataset_fp: str, code_version: str, device: str,
              force: bool = False):
    """Mark a run 'running' for this process unless another live process is fitting it, or
    (without force) another process finished it since the caller last looked.

    Returns (claimed, previous row or None). Not claimed when the row reads 'running' with the
    pid of another process that is still alive (two processes never fit the same spec at once),
    or reads 'done' and force is off (the caller serves the cached run)."""
    with transaction(con):
        prev = con.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        prev = dict(prev) if prev else None
        if prev and prev["status"] == "running" and prev.get("pid") not in (None, os.getpid()) \
                and _pid_alive(prev["pid"]):
            return False, prev
        if prev and prev["status"] == "done" and not force and prev.get("artifact_path") \
                and (Path(prev["artifact_path"]) / "run.json").exists():
            return False, prev
        _upsert_running(con, run_id, spec, dataset_fp, code_version, device)
    return True, prev


def progress(con, run_id: str, **info) -> None:
    with transaction(con):
        con.execute("UPDATE runs SET progress=?, updated=? WHERE run_id=?", (json.dumps(info), now(), run_id))


def finish_run(con, run_id: str, metrics: dict, timings: dict, artifact_path: str) -> None:
    t = now()
    with transaction(con):
        con.execute("UPDATE runs SET status='done', metrics=?, timings=?, artifact_path=?, error=NULL, "
                    "updated=?, finished=? WHERE run_id=?",
                    (json.dumps(metrics), json.dumps(timings), artifact_path, t, t, run_id))
        r = con.execute("SELECT code_version, dataset_fp FROM runs WHERE run_id=?", (run_id,)).fetchone()
        con.execute("INSERT INTO run_history(run_id, finished, metrics, code_version, dataset_fp) VALUES(?,?,?,?,?)",
                    (run_id, t, json.dumps(metrics), r["code_version"], r["dataset_fp"]))


def fail_run(con, run_id: str, error: str, status: str = "failed") -> None:
    with transaction(con):
        con.execute("UPDATE runs SET status=?, error=?, updated=? WHERE run_id=?", (status, error[-4000:], now(), run_id))


def get(con, run_id: str) -> dict | None:
    return _row(con.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone())


def finished(con, run_id: str) -> dict | None:
    """The run if it is done and its artifact folder exists; else None."""
    r = get(con, run_id)
    if r and r["status"] == "done" and r.get("artifact_path") and Path(r["artifact_path"]).is_dir():
        return r
    return None


def runs(con, status: str | None = None, dataset: str | None = None, model: str | None = None) -> list[dict]:
    q, args = "SELECT * FROM runs WHERE 1=1", []
    if dataset:
        q += " AND dataset=?"
        args.append(dataset)
    if model:
        q += " AND model=?"
        args.append(model)
    rows = [_row(r) for r in con.execute(q + " ORDER BY updated", args).fetchall()]
    return [r for r in rows if status is None or r["status"] == status]


def history(con, run_id: str) -> list[dict]:
    out = []
    for r in con.execute("SELECT * FROM run_history WHERE run_id=? ORDER BY finished", (run_id,)).fetchall():
        d = dict(r)
        d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else {}
        out.append(d)
    return out


def mark_interrupted(con) -> int:
    """Persist 'interrupted' for running rows whose process is gone. Returns how many."""
    n = 0
    for r in con.execute("SELECT run_id, pid FROM runs WHERE status='running'").fetchall():
        if not _pid_alive(r["pid"]):
            fail_run(con, r["run_id"], "the process running this spec ended before it finished", "interrupted")
            n += 1
    return n

