"""Issue #19: the specs fitted on a Dask cluster, run state in the run folders (run.json, lease files),
and the SQLite index rebuilt from them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import private_registry
from test_jobs import wait_for

from core import config, data
from core.engine import leases, registry, train

pytest.importorskip("distributed")


def _dask(*args, log):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]], cwd=config.ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def test_a_worker_killed_mid_fit_loses_nothing_and_fits_nothing_twice(tmp_path, monkeypatch):
    """A scheduler and two `dask worker` processes on localhost, as a second node would run them; a quick
    suite through `train --scheduler`; one worker killed (SIGKILL, nanny and all) while it fits. Every spec
    ends done once (one fit in its history), no temporary folder or lease is left, and the index rebuilt
    from the run folders equals the live one."""
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path / "art"))
    data.build(name="sim-quick", n=400)
    port = 20000 + os.getpid() % 20000
    addr = f"tcp://127.0.0.1:{port}"
    logs = open(tmp_path / "dask.log", "w")
    sched = _dask("scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0", log=logs)
    workers = []
    try:
        for _ in range(2):
            workers.append(_dask("worker", addr, "--nthreads", "1", "--nworkers", "1", "--no-dashboard", log=logs))
        cmd = [sys.executable, "-m", "core", "train", "--suite", "report", "--only", "ridge,mlp,global_mlp",
               "--seeds", "1", "--scheduler", addr]
        out = open(tmp_path / "train.log", "w")
        drv = subprocess.Popen(cmd, cwd=config.ROOT, stdout=out, stderr=subprocess.STDOUT)
        runs = config.runs_dir()

        def fitting_worker():
            """(worker, run id) of a lease held by one of the two workers' process groups, once a torch fit runs."""
            for p in runs.glob("*.lease"):
                d = leases.read(p.name.removesuffix(".lease")) or {}
                try:
                    pg = os.getpgid(int(d.get("pid") or 0))
                except (ProcessLookupError, ValueError):
                    continue
                for w in workers:
                    if pg == w.pid and "epoch" in (d.get("progress") or {}):
                        return w, p.name.removesuffix(".lease")
            return None
        victim, victim_run = wait_for(fitting_worker, 240, what="a worker to be fitting a torch model (its lease beating)")
        assert not registry.artifact_complete(runs / victim_run)       # mid-fit: its folder is not there yet
        _kill(victim)
        assert drv.wait(timeout=420) == 0, (tmp_path / "train.log").read_text()[-3000:]
    finally:
        for w in workers:
            _kill(w)
        _kill(sched)
        logs.close()
    con = registry.connect()
    done = registry.runs(con, status="done")
    assert len(done) == 6 and {r["model"] for r in done} == {"ridge", "mlp", "global_mlp"}
    assert victim_run in {r["run_id"] for r in done}                    # the killed fit was run again, elsewhere
    for r in done:                                                      # ... and every run finished exactly once
        assert len(registry.history(con, r["run_id"])) == 1, r["run_id"]
        meta = json.loads((runs / r["run_id"] / "run.json").read_text())
        assert len(meta["history"]) == 1 and not os.path.isabs(con.execute(
            "SELECT artifact_path FROM runs WHERE run_id=?", (r["run_id"],)).fetchone()[0])
    assert not list(runs.glob("*.tmp-*")) and not list(runs.glob("*.lease*"))
    rebuilt = tmp_path / "rebuilt.sqlite"
    registry.rebuild(rebuilt)
    assert registry.differences(con, registry.connect(rebuilt, readonly=True)) == []
    assert f"on the Dask cluster at {addr}" in (tmp_path / "train.log").read_text()


@pytest.fixture
def own_registry(tmp_path_factory):
    yield from private_registry(tmp_path_factory, "rebuild")


def test_rebuild_restores_a_lost_index_and_check_finds_what_differs(own_registry):
    """`registry rebuild` after the SQLite file is lost: every finished run and its history is back, served
    from the cache (no refit); a row the folders contradict is listed by `registry check` (exit 1)."""
    s = {"model": "ridge", "noise_level": 0.1, "dataset": "sim-quick", "profile": "quick", "params": {"alphas": [7.0]}}
    first = train.run(s)
    again = train.run(s, force=True)                 # a refit: run.json carries both fits
    con = registry.connect()
    assert len(registry.history(con, first.run_id)) == 2
    con.close()
    path = config.registry_path()
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)
    from core.cli import main
    assert main(["registry", "rebuild"]) == 0
    con = registry.connect()
    row = registry.finished(con, first.run_id)
    assert row and row["metrics"]["r2"] == again.metrics["r2"]
    assert [h["metrics"]["r2"] for h in registry.history(con, first.run_id)] == [first.metrics["r2"], again.metrics["r2"]]
    assert train.run(s).cached
    assert main(["registry", "check"]) == 0
    con.execute("UPDATE runs SET metrics=? WHERE run_id=?", (json.dumps({"r2": 0.99}), first.run_id))
    assert main(["registry", "check"]) == 1


def test_a_stale_lease_is_taken_over_and_a_live_one_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leases.lease_path("r1").write_text(json.dumps({"host": leases.host(), "pid": dead.pid, "token": "old"}))
    got = leases.acquire("r1")                       # its holder on this host has ended: taken over
    assert got is not None and leases.read("r1")["token"] == got.token != "old"
    assert leases.acquire("r1") is None              # held by this live process: not twice
    got.release()
    assert leases.read("r1") is None
    # a holder on another node: alive while it beats, stale after STALE_S without a heartbeat
    p = leases.lease_path("r2")
    p.write_text(json.dumps({"host": "node-elsewhere", "pid": 1, "token": "far"}))
    assert leases.acquire("r2") is None
    old = time.time() - leases.STALE_S - 5
    os.utime(p, (old, old))
    got = leases.acquire("r2")
    assert got is not None
    got.release()


@pytest.fixture
def dep_registry(tmp_path_factory):
    yield from private_registry(tmp_path_factory, "cluster_deps")


def test_a_local_cluster_fits_dependencies_first_and_a_spec_listed_twice_once(dep_registry):
    """A latent probe and its encoder on a one-worker LocalCluster: the encoder is a task the probe waits
    for, the probe listed twice is one task (keyed by its run id), each run is fitted once, the worker
    wrote no index row (the driver indexed both), and the cached re-run starts no task."""
    from core.engine import cluster
    from core.engine.suites import latent as suite_latent
    enc = suite_latent.encoder_spec("flux", 1.0, "quick", "sim-quick", 5)
    probe = {"model": "latent_probe", "params": {"encoder": "flux", "encoder_noise": 1.0, "layer": "enc_last",
                                                 "pooling": "global_mean", "probe": "ridge", "n_train": "all"},
             "inputs": "flux", "noise_level": 1.0, "dataset": "sim-quick", "seed": 5, "profile": "quick"}
    said = []
    with cluster.connect(cluster="local", workers=1) as client:
        res = cluster.run_specs([probe, dict(probe), enc], client, log=said.append)
        assert not any(isinstance(r, Exception) for r in res), res
        assert res[0].run_id == res[1].run_id and not res[0].cached
        con = registry.connect()
        for r in (res[0], res[2]):
            assert len(registry.history(con, r.run_id)) == 1
            assert registry.finished(con, r.run_id)["pid"] is None          # indexed by the driver, not claimed in SQLite
        assert any("2 specs to fit" in m or "3 specs to fit" in m for m in said)
        assert sum(": R2=" in m for m in said) == 3
        again = cluster.run_specs([probe, enc], client, log=said.append)
        assert all(r.cached for r in again) and "specs to fit" not in said[-1]
    assert train.cached_result(probe).metrics == res[0].metrics


def test_the_training_page_names_the_cluster_and_says_when_its_scheduler_is_down(tiny_dataset, monkeypatch):
    """LOGG_SCHEDULER set: the Training page says the fits go to that Dask cluster; when nothing answers
    there it says so instead of a dashboard link (and the page still draws)."""
    from test_app import no_problems, run_app
    monkeypatch.setenv("LOGG_SCHEDULER", "tcp://127.0.0.1:9")
    at = run_app(dataset=tiny_dataset, page="pages/training.py")
    no_problems(at)
    said = " ".join(i.value for i in at.info)
    assert "tcp://127.0.0.1:9" in said and "does not answer" in said
    monkeypatch.delenv("LOGG_SCHEDULER")
    at = run_app(dataset=tiny_dataset, page="pages/training.py")
    assert "Dask cluster" not in " ".join(i.value for i in at.info)
