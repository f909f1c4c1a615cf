"""The run registry: artifacts/registry.sqlite, one row per run (SQLite from the standard library).

A run's id is the hash of its spec (core/train.spec_hash). Status moves
queued -> running -> done | failed | interrupted. A run is only 'done' once its
artifact folder has been renamed into place (core/train writes to a temporary
folder first), and a 'running' row whose process is gone is reported as
'interrupted', so a run killed half-way is never mistaken for a finished one.
Every write is one short transaction; WAL mode lets the app read while a worker writes.
On a read-only artifacts folder (a shared archive, a read-only mount) the registry opens
read-only: everything that reads works, and a write fails with StorageError, in one line.
"""
from __future__ import annotations

import collections
import datetime as _dt
import errno
import json
import os
import sqlite3
import time
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


class StorageError(OSError):
    """The artifacts folder cannot take a write (read-only, full disk, a file-size limit). Its
    message is one line that names the path; nothing half-written is left behind."""


# errno values that mean "this storage cannot take the write" rather than a bug
STORAGE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}
_SQLITE_STORAGE = ("readonly", "read-only", "disk is full", "disk i/o", "unable to open", "file too large")


def storage_problem(e: BaseException) -> bool:
    """Whether an exception says the storage cannot take a write (not a bug in our code)."""
    if isinstance(e, StorageError):
        return True
    if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
        return True
    if isinstance(e, sqlite3.OperationalError):
        return any(w in str(e).lower() for w in _SQLITE_STORAGE)
    return False


def storage_error(e: BaseException, path) -> StorageError:
    """One line for a storage failure at path: what happened and what to do."""
    if isinstance(e, StorageError):
        return e
    msg = str(e).lower()
    err = getattr(e, "errno", None)
    elsewhere = "point LOGG_ARTIFACTS at a writable folder"
    if err == errno.EFBIG or "too large" in msg:
        why, fix = "a file-size limit (ulimit -f) stops the write", f"raise the limit or {elsewhere}"
    elif err in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in msg:
        why, fix = "the disk is full", f"free space or {elsewhere}"
    elif err == errno.EROFS or "readonly" in msg or "read-only" in msg:
        why, fix = "it is read-only", elsewhere
    else:
        why, fix = " ".join(str(e).split())[:160], elsewhere
    return StorageError(f"cannot write {path}: {why}; nothing was changed ({fix})")


class Connection(sqlite3.Connection):
    """A registry connection that knows its file and whether it was opened read-only."""
    path: Path
    readonly: bool


def _writable(path: Path) -> bool:
    if path.exists():
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    return os.access(path.parent, os.W_OK)


def _wal(con, wait_s: float = 30.0) -> None:
    """Put the file in WAL mode (it stays so). Switching the mode takes the file's exclusive lock and
    SQLite answers "database is locked" at once, without its busy handler, while another connection
    creates or switches the same new file: the app, a job worker and its fits open a fresh registry
    at the same moment. So the mode is only set when it is not WAL yet, and retried for up to wait_s."""
    t_end = time.monotonic() + wait_s
    while True:
        try:
            if str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > t_end:
                raise
            time.sleep(0.05)


def connect(path: Path | None = None, readonly: bool | None = None) -> Connection:
    """The registry at path (default artifacts/registry.sqlite). readonly=None: read-only when the
    file or its folder cannot be written, else read-write (WAL, tables created)."""
    path = Path(path or config.registry_path())
    if readonly is None:
        readonly = path.parent.is_dir() and not _writable(path)
    if not readonly:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(path, timeout=30, isolation_level=None, factory=Connection)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA busy_timeout=30000")
            _wal(con)
            con.executescript(SCHEMA)
        except (sqlite3.OperationalError, OSError) as e:
            if not storage_problem(e):
                raise
            if not path.exists():
                raise storage_error(e, path) from None
            readonly = True   # a full disk or a read-only file: read what is there
        else:
            con.path, con.readonly = path, False
            return con
    if not path.exists():
        raise StorageError(f"no run registry at {path}, and its folder is read-only: nothing has been run here")
    con = None
    for query in ("mode=ro", "immutable=1"):   # immutable: WAL files cannot be created beside it
        con = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True, timeout=30, isolation_level=None,
                              factory=Connection)
        con.row_factory = sqlite3.Row
        try:
            con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            break
        except sqlite3.OperationalError:
            con.close()
            con = None
    if con is None:
        raise StorageError(f"cannot read the run registry {path} (read-only, and no -wal/-shm files can be made)")
    con.execute("PRAGMA busy_timeout=30000")
    con.path, con.readonly = path, True
    return con


def require_writable(con) -> None:
    """Raise StorageError (one line) unless this registry and the runs folder can take a write:
    called before anything is fitted or queued, so a read-only or full disk changes nothing."""
    path = getattr(con, "path", config.registry_path())
    if getattr(con, "readonly", False):
        raise storage_error(OSError(errno.EROFS, "read-only"), path)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
    except sqlite3.OperationalError as e:
        raise storage_error(e, path) from None
    require_writable_folder()


def require_writable_folder() -> None:
    """The artifacts folder half of require_writable: what a Dask worker, which never opens the index,
    checks before it fits."""
    folder = config.artifacts_dir()
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"x" * 65536)
    except OSError as e:
        raise storage_error(e, folder) from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    from core.data.building import room_problem
    why = room_problem(folder, MIN_FREE_BYTES)
    if why:
        raise StorageError(f"cannot write {folder}: a fit may write up to {MIN_FREE_BYTES >> 20} MB and "
                           f"{why.removeprefix(f'it needs ~{MIN_FREE_BYTES >> 20} MB and ')}; nothing was changed")


# what one fit may write (a model, its test predictions, a view's cache): the quick and default
# profiles' largest run folders are ~2 MB; the full profile's networks tens of MB
MIN_FREE_BYTES = 64 << 20


@contextmanager
def transaction(con: sqlite3.Connection):
    try:
        con.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        if storage_problem(e):
            raise storage_error(e, getattr(con, "path", "the run registry")) from None
        raise
    try:
        yield con
        con.execute("COMMIT")
    except BaseException as e:
        # an interrupt (Ctrl-C, a worker's SIGTERM) can land after COMMIT took effect: roll back
        # only an open transaction, and never let the rollback's error replace the interrupt
        if con.in_transaction:
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        if storage_problem(e) and isinstance(e, sqlite3.Error):
            raise storage_error(e, getattr(con, "path", "the run registry")) from None
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
    if d.get("artifact_path"):
        d["artifact_path"] = str(resolve_artifact(d["artifact_path"]))
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


def progress(con, run_id: str, **info) -> None:
    with transaction(con):
        con.execute("UPDATE runs SET progress=?, updated=? WHERE run_id=?", (json.dumps(info), now(), run_id))


def resolve_artifact(path: str) -> Path:
    """A stored artifact path as a path on this machine: relative paths (`runs/<id>`, written since the
    run folders became the record of truth) are under this artifacts folder; older rows hold absolute ones."""
    p = Path(path)
    return p if p.is_absolute() else config.artifacts_dir() / p


def _relative(folder: Path) -> str:
    folder = Path(folder)
    try:
        return str(folder.resolve().relative_to(config.artifacts_dir().resolve()))
    except ValueError:
        return str(folder)


def folder_history(folder: Path) -> list[dict]:
    """The finished fits a run folder's run.json records (oldest first): a refit carries them forward."""
    try:
        meta = json.loads((Path(folder) / "run.json").read_text())
    except (OSError, ValueError):
        return []
    hist = meta.get("history") if isinstance(meta, dict) else None
    if isinstance(hist, list):
        return [h for h in hist if isinstance(h, dict) and h.get("finished")]
    if isinstance(meta, dict) and meta.get("metrics"):   # a folder from before run.json kept its history
        t = meta.get("finished") or _dt.datetime.fromtimestamp((Path(folder) / "run.json").stat().st_mtime,
                                                               _dt.timezone.utc).isoformat(timespec="seconds")
        return [{"finished": t, "metrics": meta["metrics"], "code_version": meta.get("code_version"),
                 "dataset_fp": meta.get("dataset_fp")}]
    return []


def index_run(con, folder: Path) -> str:
    """Write a finished run folder's run.json into the index: its row reads 'done' with the folder's
    metrics, timings and relative path, and every fit of its history is in run_history once. Only a
    driver calls this (the CLI, a job, `registry rebuild`); workers write folders only. Returns the run id."""
    folder = Path(folder)
    meta = json.loads((folder / "run.json").read_text())
    rid, spec = meta["run_id"], meta["spec"]
    hist = folder_history(folder)
    t = hist[-1]["finished"] if hist else now()
    with transaction(con):
        con.execute(
            """INSERT INTO runs(run_id, spec, model, suite, dataset, dataset_fp, noise_level, seed, status, metrics,
                   timings, device, code_version, artifact_path, created, updated, finished)
               VALUES(?,?,?,?,?,?,?,?,'done',?,?,?,?,?,?,?,?)
               ON CONFLICT(run_id) DO UPDATE SET status='done', metrics=excluded.metrics, timings=excluded.timings,
                   device=excluded.device, code_version=excluded.code_version, dataset_fp=excluded.dataset_fp,
                   artifact_path=excluded.artifact_path, error=NULL, updated=excluded.updated,
                   finished=excluded.finished""",
            (rid, json.dumps(spec, sort_keys=True), spec["model"], spec.get("suite"), spec["dataset"],
             meta.get("dataset_fp", ""), float(spec["noise_level"]), int(spec["seed"]), json.dumps(meta.get("metrics")),
             json.dumps(meta.get("timings") or {}), meta.get("device") or (meta.get("timings") or {}).get("device"),
             meta.get("code_version"), _relative(folder), meta.get("created") or t, t, t))
        # a fit is (finish time, metrics): two fits within one second differ in their numbers
        have = collections.Counter(tuple(r) for r in con.execute(
            "SELECT finished, metrics FROM run_history WHERE run_id=?", (rid,)))
        for h in hist:
            k = (h["finished"], json.dumps(h.get("metrics")))
            if have[k] > 0:
                have[k] -= 1
            else:
                con.execute("INSERT INTO run_history(run_id, finished, metrics, code_version, dataset_fp) "
                            "VALUES(?,?,?,?,?)", (rid, h["finished"], json.dumps(h.get("metrics")),
                                                  h.get("code_version"), h.get("dataset_fp")))
    return rid


def record_failure(con, spec: dict, run_id: str, dataset_fp: str, error: str, status: str = "failed") -> None:
    """A driver's record of a fit that failed on a worker (which never opens the index)."""
    t = now()
    with transaction(con):
        con.execute(
            """INSERT INTO runs(run_id, spec, model, suite, dataset, dataset_fp, noise_level, seed, status, error,
                   created, updated) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(run_id) DO UPDATE SET status=excluded.status, error=excluded.error, updated=excluded.updated""",
            (run_id, json.dumps(spec, sort_keys=True), spec["model"], spec.get("suite"), spec["dataset"], dataset_fp,
             float(spec["noise_level"]), int(spec["seed"]), status, error[-4000:], t, t))


def fail_run(con, run_id: str, error: str, status: str = "failed") -> None:
    with transaction(con):
        con.execute("UPDATE runs SET status=?, error=?, updated=? WHERE run_id=?", (status, error[-4000:], now(), run_id))


def get(con, run_id: str) -> dict | None:
    return _row(con.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone())


def artifact_files(folder: Path) -> dict:
    """{relative path: size in bytes} of every file of a run folder but run.json (which lists them)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "run.json"}


def artifact_complete(folder) -> bool:
    """Whether a run folder holds everything its fit wrote: run.json and every file it lists (with
    its size). Folders from before run.json listed its files need model/model.json and
    predictions.npz. A run whose files were deleted is then refitted, not served from the cache."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return False
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict):
        return (folder / "model" / "model.json").is_file() and (folder / "predictions.npz").is_file()
    for rel, size in files.items():
        try:
            if (folder / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def finished(con, run_id: str) -> dict | None:
    """The run if it is done and its artifact folder holds all its files; else None."""
    r = get(con, run_id)
    if r and r["status"] == "done" and r.get("artifact_path") and artifact_complete(r["artifact_path"]):
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



def rebuild(out: Path | None = None) -> dict:
    """Recreate the index from the run folders (their run.json is the record of truth): every complete
    runs/<id>/ becomes a 'done' row with its history; the jobs queue and the rows of runs that never
    finished (failed, interrupted: they have no folder) are carried over from the old index where it
    can be read. Written to a temporary file and renamed onto `out` (default: the registry itself,
    the old file kept as registry.sqlite.bak). Returns counts. Run it while nothing is training."""
    target = Path(out or config.registry_path())
    tmp = target.with_name(f"{target.name}.rebuild-{os.getpid()}")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    con = sqlite3.connect(tmp, isolation_level=None, factory=Connection)
    con.row_factory = sqlite3.Row
    con.path, con.readonly = tmp, False
    con.executescript(SCHEMA)
    n_done = n_bad = n_kept = 0
    try:
        for folder in sorted(p for p in config.runs_dir().iterdir() if p.is_dir() and ".tmp-" not in p.name):
            if artifact_complete(folder):
                index_run(con, folder)
                n_done += 1
            else:
                n_bad += 1
        old = config.registry_path()
        if old.exists():
            try:
                con.execute("ATTACH DATABASE ? AS old", (f"{old.resolve().as_uri()}?mode=ro",))
            except sqlite3.Error:
                old = None
            if old is not None:
                try:
                    n_kept = con.execute("INSERT INTO runs SELECT * FROM old.runs WHERE status != 'done' "
                                         "AND run_id NOT IN (SELECT run_id FROM runs)").rowcount
                    if con.execute("SELECT 1 FROM old.sqlite_master WHERE name='jobs'").fetchone():
                        sql = con.execute("SELECT sql FROM old.sqlite_master WHERE name='jobs'").fetchone()[0]
                        con.execute(sql)
                        con.execute("INSERT INTO jobs SELECT * FROM old.jobs")
                except sqlite3.Error:
                    pass   # an unreadable old index: the folders alone
                con.execute("DETACH DATABASE old")
    finally:
        con.close()
    if out is None and target.exists():
        bak = target.with_name(f"{target.name}.bak")
        src = sqlite3.connect(target)
        try:
            dst = sqlite3.connect(bak)
            src.backup(dst)   # a consistent copy, WAL included
            dst.close()
        finally:
            src.close()
        for p in (Path(f"{target}-wal"), Path(f"{target}-shm")):
            p.unlink(missing_ok=True)
    os.replace(tmp, target)
    return {"done": n_done, "incomplete_folders": n_bad, "kept_unfinished": n_kept, "path": str(target)}


COMPARED = ("status", "spec", "metrics", "dataset_fp", "code_version", "artifact_path", "finished")


def differences(live, rebuilt) -> list[str]:
    """What a rebuilt index says differently from the live one about finished runs (one line each)."""
    a = {r["run_id"]: r for r in runs(live, status="done")}
    b = {r["run_id"]: r for r in runs(rebuilt, status="done")}
    out = [f"{rid}: in the live index only" for rid in sorted(a.keys() - b.keys())]
    out += [f"{rid}: in the run folders only" for rid in sorted(b.keys() - a.keys())]
    for rid in sorted(a.keys() & b.keys()):
        # a folder written before run.json kept its history carries neither its finish time nor its refits
        legacy = not any(isinstance(h, dict) for h in _meta(b[rid]["artifact_path"]).get("history") or [])
        for k in COMPARED:
            if legacy and k == "finished":
                continue
            if a[rid].get(k) != b[rid].get(k):
                out.append(f"{rid}: {k} differs")
        if legacy:
            continue
        ha = [(h["finished"], h["metrics"]) for h in history(live, rid)]
        hb = [(h["finished"], h["metrics"]) for h in history(rebuilt, rid)]
        if ha != hb:
            out.append(f"{rid}: history differs ({len(ha)} fits indexed, {len(hb)} in run.json)")
    return out


def _meta(folder) -> dict:
    try:
        d = json.loads((Path(folder) / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}
