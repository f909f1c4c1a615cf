"""Background jobs: a queued job runs to done in a worker subprocess; SIGKILL mid-job leaves the
registry consistent and the job resumable; identical enqueues give one job; cancel stops a
running job within seconds; the admin token guards the write actions."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from core import config, data
from core.engine import jobs, registry, train

DS = "jobs-test"


@pytest.fixture(scope="module")
def ds(artifacts_dir):
    if DS not in data.list_datasets():
        data.build(name=DS, n=300, seed=3)
    return DS


def spec(model="ridge", params=None, noise=0.1):
    return {"model": model, "params": params or {}, "noise_level": noise, "dataset": DS, "seed": 0, "profile": "quick"}


def start_worker(*args):
    return subprocess.Popen([sys.executable, "-m", "core", "worker", "--idle", "2", *args], cwd=config.ROOT,
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(cond, timeout=120.0, step=0.2, what="the condition"):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_job_runs_to_done_in_worker(ds):
    from pages._ui import job_panels  # the Training page's code path
    s = [spec(params={"alphas": [10.0, 100.0]}), spec(params={"alphas": [10.0, 100.0]}, noise=1.0)]
    jid = job_panels.launch(s, "test job", None)
    assert jid is not None
    j = wait_for(lambda: (jobs.get(jid)["state"] in ("done", "failed")) and jobs.get(jid), timeout=180)
    assert j["state"] == "done", jobs.tail(jid)
    for x in s:
        r = train.cached_result(x)
        assert r is not None and 0.3 < r.metrics["r2"] <= 1.0
    assert "R2=" in jobs.tail(jid)
    wait_for(lambda: not jobs.worker_alive(), timeout=30)


def test_identical_enqueues_give_one_job(ds):
    s = [spec(params={"alphas": [1.0, 2.0, 3.0]})]
    ids, errors = [], []

    def go():
        try:
            ids.append(jobs.submit(s, "dup")[0])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=go) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(set(ids)) == 1
    jobs.cancel(ids[0])
    assert jobs.get(ids[0])["state"] == "cancelled"
    # once it is no longer queued, the same specs can be queued again
    assert jobs.submit(s, "dup again")[0] != ids[0]
    jobs.cancel(jobs.list_jobs(1)[0]["job_id"])


def test_cancel_stops_running_job_within_seconds(ds):
    slow = [spec(model="lightgbm", params={"rounds": 20000, "learning_rate": 0.001, "feature_fraction": 0.05})]
    jid, _ = jobs.submit(slow, "slow")
    w = start_worker()
    try:
        wait_for(lambda: jobs.get(jid)["progress"].get("epoch") is not None, timeout=120)
        t0 = time.time()
        assert jobs.cancel(jid) == "cancelling"
        wait_for(lambda: jobs.get(jid)["state"] == "cancelled", timeout=15)
        assert time.time() - t0 < 10
        assert train.cached_result(slow[0]) is None
    finally:
        w.kill()
        w.wait()


def test_sigkill_mid_job_is_consistent_and_resumable(ds):
    fast = spec(params={"alphas": [4.0, 40.0]})
    slow = spec(model="lightgbm", params={"rounds": 20000, "learning_rate": 0.001, "feature_fraction": 0.05}, noise=1.0)
    jid, _ = jobs.submit([fast, slow], "kill me")
    w = start_worker()
    wait_for(lambda: jobs.get(jid)["progress"].get("spec") == 2 and "epoch" in jobs.get(jid)["progress"], timeout=180)
    p = jobs.get(jid)["progress"]
    assert p["of"] == 2 and p["epochs"] == 20000   # the job's spec count, and the run's own rounds beside it
    os.kill(w.pid, signal.SIGKILL)
    w.wait()
    j = jobs.get(jid)
    assert j["state"] == "interrupted"
    con = registry.connect()
    rid = train.spec_hash(slow, data.Dataset(DS).fingerprint)
    # the fit ran in a worker process of the job, which ends with it (a moment later)
    wait_for(lambda: registry.get(con, rid)["status"] == "interrupted", timeout=15)
    assert train.cached_result(fast) is not None          # the finished run survives
    assert train.cached_result(slow) is None              # the half-done one is never served
    assert registry.get(con, rid)["status"] == "interrupted"
    assert not (config.runs_dir() / rid).exists()
    # resume: the same specs again, with the slow one made quick to finish; the fast one is reused
    slow_quick = dict(slow, params={"rounds": 30})
    jid2, created = jobs.submit([fast, slow_quick], "resume")
    assert created
    w2 = start_worker("--once")
    w2.wait(timeout=180)
    assert jobs.get(jid2)["state"] == "done", jobs.tail(jid2)
    assert "cached" in jobs.tail(jid2)
    assert jobs.get(jid)["state"] == "interrupted"  # persisted by the new worker's recovery
    assert con.execute("SELECT state FROM jobs WHERE job_id=?", (jid,)).fetchone()[0] == "interrupted"


def test_token_required_when_set(ds, monkeypatch):
    monkeypatch.setenv("LOGG_ADMIN_TOKEN", "s3cret")
    with pytest.raises(jobs.NotAllowed):
        jobs.submit([spec(params={"alphas": [9.0]})], "no token")
    with pytest.raises(jobs.NotAllowed):
        jobs.submit([spec(params={"alphas": [9.0]})], "wrong", token="nope")
    jid, _ = jobs.submit([spec(params={"alphas": [9.0]})], "with token", token="s3cret")
    with pytest.raises(jobs.NotAllowed):
        jobs.cancel(jid)
    assert jobs.cancel(jid, token="s3cret") == "cancelled"
    # reading never needs it
    assert jobs.get(jid)["label"] == "with token" and jobs.list_jobs()
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "core", "jobs", "submit", "--only", "ridge", "--dataset", DS,
                          "--no-worker"], capture_output=True, text=True, env=env, cwd=config.ROOT, timeout=60)
    assert out.returncode == 2 and "admin token" in out.stderr


def test_first_start_queues_the_quick_report_once(tmp_path, monkeypatch):
    from core.engine import suites
    from pages._ui import job_panels
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path / "fresh"))
    monkeypatch.setenv("LOGG_FIRST_START", "1")
    started = []
    monkeypatch.setattr(jobs, "ensure_worker", lambda: started.append(1) or True)
    jid = job_panels.first_start_runs("sim-quick")
    assert jid is not None and started
    j = jobs.get(jid)
    assert j["state"] == "queued" and len(j["specs"]) == len(suites.suite("report", "quick", "sim-quick"))
    assert job_panels.first_start_runs("sim-quick") is None  # only on a registry that has never run anything
    monkeypatch.setenv("LOGG_FIRST_START", "0")
    jobs.cancel(jid)


def test_job_on_worker_processes_reports_progress_and_cancels(ds, monkeypatch):
    """A job of several specs fits them on two worker processes (core/engine/pool.py): its progress names
    both models and the epoch of one, cancel ends both fits within seconds, nothing half-done is served."""
    monkeypatch.setenv("LOGG_JOB_WORKERS", "2")
    slow = [spec(model="lightgbm", params={"rounds": 20000, "learning_rate": 0.001, "feature_fraction": 0.07}, noise=n)
            for n in (0.1, 1.0)]
    jid, _ = jobs.submit(slow, "two slow")
    w = start_worker()
    try:
        p = wait_for(lambda: (lambda q: q if " + " in q.get("model", "") and "epoch" in q else None)(
            jobs.get(jid)["progress"] or {}), timeout=120, what="both specs running")
        assert p["of"] == 2 and p["spec"] == 1 and p["epochs"] == 20000
        assert "2 worker processes" in jobs.tail(jid)
        t0 = time.time()
        assert jobs.cancel(jid) == "cancelling"
        wait_for(lambda: jobs.get(jid)["state"] == "cancelled", timeout=15)
        assert time.time() - t0 < 10
        con = registry.connect()
        for s in slow:
            assert train.cached_result(s) is None
            rid = train.spec_hash(s, data.Dataset(DS).fingerprint)
            wait_for(lambda: registry.get(con, rid)["status"] == "interrupted", timeout=15)
    finally:
        w.kill()
        w.wait()
