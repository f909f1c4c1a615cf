"""Run claims that work on a shared file system: one exclusive-create lease file per run being fitted.

    lease = leases.acquire(run_id)        # None: another live process holds it
    lease.beat(progress={...})            # the holder says it is alive (and how far it got)
    lease.release()

artifacts/runs/<run id>.lease is created with O_CREAT | O_EXCL (atomic on a local disk and on NFS v3+),
so of two processes on two nodes at most one fits a spec. It holds the holder's host, pid, a random
token and its last progress, and is rewritten (temporary file + rename) at least every HEARTBEAT_S
by a thread while the fit runs. A lease is stale, and the next process that wants the run takes it
over, when its holder is a process of this host that has ended, or when it has not been rewritten
for STALE_S (a holder on another node that died or lost the file system). No SQLite is opened here:
a Dask worker on another node claims, fits and releases through these files alone.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from core import config

HEARTBEAT_S = float(os.environ.get("LOGG_LEASE_HEARTBEAT_S", "15"))
STALE_S = float(os.environ.get("LOGG_LEASE_STALE_S", "120"))   # 8 missed heartbeats


def host() -> str:
    return socket.gethostname()


def lease_path(run_id: str) -> Path:
    return config.runs_dir() / f"{run_id}.lease"


def _pid_alive(pid: int) -> bool:
    from core.engine.registry import _pid_alive as alive
    return alive(pid)


def read(run_id: str) -> dict | None:
    """The lease's content (host, pid, token, started, progress) with 'age_s', or None when there is none."""
    p = lease_path(run_id)
    try:
        st = p.stat()
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict):
        return None
    d["age_s"] = max(0.0, time.time() - st.st_mtime)
    return d


def stale(d: dict | None) -> bool:
    """Whether a lease (read()) no longer stands for a live holder."""
    if d is None:
        return True
    if d.get("host") == host() and isinstance(d.get("pid"), int):
        return not _pid_alive(d["pid"])
    return d.get("age_s", 0.0) > STALE_S


class Lease:
    """A held claim on one run; rewritten by a daemon thread until release()."""

    def __init__(self, run_id: str, info: dict):
        self.run_id, self.token, self.path, self.info = run_id, info["token"], lease_path(run_id), info
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"lease-{run_id[:8]}", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{self.token}.tmp")
        with self._lock:
            try:
                tmp.write_text(json.dumps(self.info))
                os.replace(tmp, self.path)   # atomic: a reader sees the old or the new lease, never half
            except OSError:
                pass                          # a full disk: the lease ages; the fit fails on its own writes

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self._write()

    def beat(self, progress: dict | None = None) -> None:
        if progress is not None:
            self.info["progress"] = progress
        self._write()

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still ours."""
        self._stop.set()
        self._thread.join(timeout=5)
        d = read(self.run_id)
        if d is not None and d.get("token") == self.token:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def _create(run_id: str) -> Lease | None:
    token = secrets.token_hex(8)
    p = lease_path(run_id)
    info = {"host": host(), "pid": os.getpid(), "token": token, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "progress": None}
    try:
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    return Lease(run_id, info)


def acquire(run_id: str) -> Lease | None:
    """Claim a run: a Lease, or None when a live process (here or on another node) holds it. A stale
    lease is moved aside (under a name of our own, checked to be the one judged stale) and replaced."""
    for _ in range(5):
        lease = _create(run_id)
        if lease is not None:
            return lease
        d = read(run_id)
        if d is not None and not stale(d):
            return None
        if d is None:          # released between our create and our read: try again
            continue
        aside = lease_path(run_id).with_name(f"{run_id}.lease.stale-{secrets.token_hex(4)}")
        try:
            os.rename(lease_path(run_id), aside)
        except FileNotFoundError:
            continue           # another process broke it first
        try:
            moved = json.loads(aside.read_text())
        except (OSError, ValueError):
            moved = {}
        if moved.get("token") != d.get("token"):
            # we moved a fresh lease that someone took after our read: put it back unless a newer one exists
            try:
                os.link(aside, lease_path(run_id))
            except OSError:
                pass
            aside.unlink(missing_ok=True)
            return None
        aside.unlink(missing_ok=True)
    return None


def holder(run_id: str) -> str:
    """'process 123 on host' of a lease, for messages."""
    d = read(run_id) or {}
    return f"process {d.get('pid')} on {d.get('host')}"


def clean_stale() -> int:
    """Remove leases whose holder is gone and moved-aside leftovers. Returns how many."""
    n = 0
    for p in config.runs_dir().glob("*.lease*"):
        if p.name.endswith(".lease"):
            if stale(read(p.name.removesuffix(".lease"))):
                p.unlink(missing_ok=True)
                n += 1
        elif time.time() - p.stat().st_mtime > STALE_S:   # .stale-* and .tmp leftovers of a killed holder
            p.unlink(missing_ok=True)
            n += 1
    return n
