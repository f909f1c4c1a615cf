"""The engine: spec-hash caching, repeatability, atomic runs, baselines that behave, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from core import config, data
from core.analysis import report
from core.engine import executor, leases, registry, train

N = 1000


@pytest.fixture(scope="module")
def engine_ds(artifacts_dir):
    if "engine-test" not in data.list_datasets():
        data.build(name="engine-test", n=N, seed=7)
    return "engine-test"


def spec(ds, **kw):
    s = {"model": "ridge", "params": {}, "noise_level": 0.1, "dataset": ds, "seed": 0, "profile": "quick"}
    s.update(kw)
    return s


def test_same_spec_is_loaded_not_refitted(engine_ds, monkeypatch):
    r1 = train.run(spec(engine_ds))
    from models.linear import RidgeModel

    def boom(*a, **k):
        raise AssertionError("refitted a cached spec")
    monkeypatch.setattr(RidgeModel, "fit", boom)
    r2 = train.run(spec(engine_ds))
    assert r2.cached and r2.run_id == r1.run_id
    assert r2.metrics["r2"] == r1.metrics["r2"]
    # the cached model predicts exactly what the stored predictions say
    m = r2.load_model()
    test = data.Dataset(engine_ds).view("test", 0.1, "flux")
    np.testing.assert_allclose(m.predict(test), r2.predictions()["y_pred"], rtol=1e-6)


def test_changed_spec_refits(engine_ds):
    base = train.run(spec(engine_ds))
    other_noise = train.run(spec(engine_ds, noise_level=1.0))
    other_params = train.run(spec(engine_ds, params={"alphas": [1.0, 10.0]}))
    other_seed = train.run(spec(engine_ds, seed=1))
    ids = {base.run_id, other_noise.run_id, other_params.run_id, other_seed.run_id}
    assert len(ids) == 4
    assert not other_params.cached and not other_noise.cached
    assert other_noise.metrics["r2"] < base.metrics["r2"]  # noisier data, worse fit


def test_changed_dataset_refits(engine_ds):
    data.build(name="engine-test-b", n=300, seed=8)
    fa = data.Dataset(engine_ds).fingerprint
    fb = data.Dataset("engine-test-b").fingerprint
    assert fa != fb
    s = spec(engine_ds)
    assert train.spec_hash(s, fa) != train.spec_hash(s, fb)


def test_repeatable_same_seed_same_metrics(engine_ds):
    s = spec(engine_ds, model="lightgbm", params={"rounds": 40})
    a = train.run(s, force=True).metrics
    b = train.run(s, force=True).metrics
    assert a["r2"] == b["r2"] and a["mae"] == b["mae"]


def test_metadata_near_zero_and_ridge_far_above(engine_ds):
    meta = train.run(spec(engine_ds, model="metadata_ridge")).metrics["r2"]
    meta_gb = train.run(spec(engine_ds, model="metadata_lgbm")).metrics["r2"]
    ridge = train.run(spec(engine_ds)).metrics["r2"]
    assert abs(meta) < 0.08 and abs(meta_gb) < 0.1, (meta, meta_gb)
    assert ridge > 0.6, ridge
    assert ridge - max(meta, meta_gb) > 0.55


def test_failed_run_is_never_done(engine_ds, monkeypatch):
    from models.linear import RidgeModel

    def crash(self, *a, **k):
        raise RuntimeError("simulated crash in fit")
    monkeypatch.setattr(RidgeModel, "fit", crash)
    s = spec(engine_ds, params={"alphas": [3.0]})
    with pytest.raises(RuntimeError):
        train.run(s)
    assert train.cached_result(s) is None
    con = registry.connect()
    rid = train.spec_hash(s, data.Dataset(engine_ds).fingerprint)
    row = registry.get(con, rid)
    assert row["status"] == "failed" and "simulated crash" in row["error"]
    assert not (config.runs_dir() / rid).exists()
    assert not list(config.runs_dir().glob(f"{rid}.tmp-*"))


def test_killed_run_reads_interrupted(engine_ds):
    con = registry.connect()
    s = train.normalise_spec(spec(engine_ds, params={"alphas": [5.0]}))
    rid = train.spec_hash(s, "fp")
    registry.start_run(con, rid, s, "fp", "v", "cpu")
    # pretend the owner was a process that no longer exists
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    con.execute("UPDATE runs SET pid=? WHERE run_id=?", (dead.pid, rid))
    assert registry.get(con, rid)["status"] == "interrupted"
    assert registry.finished(con, rid) is None
    assert registry.mark_interrupted(con) >= 1
    assert con.execute("SELECT status FROM runs WHERE run_id=?", (rid,)).fetchone()[0] == "interrupted"


def test_done_row_without_artifact_is_not_served(engine_ds):
    r = train.run(spec(engine_ds, params={"alphas": [7.0]}))
    import shutil
    shutil.rmtree(r.artifact)
    assert train.cached_result(spec(engine_ds, params={"alphas": [7.0]})) is None
    again = train.run(spec(engine_ds, params={"alphas": [7.0]}))
    assert not again.cached and again.artifact.is_dir()


def test_metrics_have_bins_and_timings(engine_ds):
    r = train.run(spec(engine_ds))
    m = r.metrics
    assert {"r2", "mae", "rmse", "bias", "n_params"} <= set(m)
    assert sum(b["n"] for b in m["bins"]) == m["n_test"]
    assert r.timings["fit_s"] >= 0 and r.timings["device"] in ("cpu", "cuda", "mps")
    p = r.predictions()
    assert p["y_pred"].shape == p["y_true"].shape == (m["n_test"],)


def test_cannon_recovers_labels_better_than_metadata(engine_ds):
    r = train.run(spec(engine_ds, model="cannon"))
    meta = train.run(spec(engine_ds, model="metadata_ridge")).metrics["r2"]
    assert r.metrics["r2"] > 0.2 and r.metrics["r2"] - meta > 0.2, r.metrics["r2"]


def test_cli_train_and_report(engine_ds):
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "core", "train", "--suite", "report", "--only", "ridge", "--noise", "0.1",
           "--dataset", engine_ds]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=config.ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "1 of 1 runs done" in out.stdout
    md = subprocess.run([sys.executable, "-m", "core", "report", "--dataset", engine_ds], capture_output=True,
                        text=True, env=env, cwd=config.ROOT, timeout=120)
    assert md.returncode == 0
    ridge_line = [ln for ln in md.stdout.splitlines() if ln.startswith("| Ridge |")][0]
    ours = float(ridge_line.split("|")[2])
    assert abs(ours - train.run(spec(engine_ds)).metrics["r2"]) < 1e-3
    assert "0.909" in ridge_line  # the team report's number, shown beside ours
    bad = subprocess.run([sys.executable, "-m", "core", "train", "--only", "nosuchmodel", "--dataset", engine_ds],
                         capture_output=True, text=True, env=env, cwd=config.ROOT, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:")
    assert "Traceback" not in bad.stderr


def test_report_matrix_flags_disagreement(engine_ds):
    m = report.matrix("report", "quick", engine_ds)
    row = m[m["method"] == "Ridge"].iloc[0]
    ours, team = row["R2 @0.1"], row["team R2 @0.1"]
    flagged = bool(row["disagrees with team"])
    assert flagged == (abs(ours - team) > report.DISAGREE_R2)


def test_history_shows_how_a_number_moved(engine_ds):
    s = {"model": "ridge", "params": {}, "noise_level": 0.1, "dataset": engine_ds, "seed": 0, "profile": "quick"}
    train.run(s)
    train.run(s, force=True)  # a second fit of the same spec (as after a code change)
    h = report.history("report", "quick", engine_ds)
    row = h[(h["method"] == "Ridge") & (h["noise"] == 0.1)].iloc[0]
    assert abs(row["R2 now"] - train.cached_result(s).metrics["r2"]) < 1e-12
    assert abs(row["change"] - (row["R2 now"] - row["R2 then"])) < 1e-12
    assert report.history("report", "quick", engine_ds, since="2000-01-01").empty  # nothing finished before 2000


def _owned_by_another_live_process(con, s: dict, ds: str):
    """Mark spec s 'running' in the registry, owned by a sleeping child process; returns (run id, child)."""
    ns = train.normalise_spec(s)
    rid = train.spec_hash(ns, data.Dataset(ds).fingerprint)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    registry.start_run(con, rid, ns, "fp", "v", "cpu")
    con.execute("UPDATE runs SET pid=? WHERE run_id=?", (other.pid, rid))
    # the claim itself: a lease file of that process (core/engine/leases.py)
    leases.lease_path(rid).write_text(json.dumps({"host": leases.host(), "pid": other.pid, "token": "other"}))
    return rid, other


def _end(proc):
    proc.kill()
    proc.wait()   # reaped: a zombie would still answer os.kill(pid, 0)


def test_a_spec_another_process_is_fitting_is_not_fitted_twice(engine_ds, monkeypatch):
    con = registry.connect()
    s = spec(engine_ds, params={"alphas": [3.0]})
    rid, other = _owned_by_another_live_process(con, s, engine_ds)
    try:
        # a worker of run_many steps aside and leaves the other process's row as it was
        monkeypatch.setattr(train, "WAIT_FOR_OTHERS", False)
        with pytest.raises(train.RunBusy):
            train.run(s)
        row = registry.get(con, rid)
        assert row["status"] == "running" and row["pid"] == other.pid
        # the CLI waits: here the other process ends (without finishing) after 1.5 s, then this one fits
        monkeypatch.setattr(train, "WAIT_FOR_OTHERS", True)
        monkeypatch.setattr(train, "BUSY_POLL_S", 0.2)
        import threading
        threading.Timer(1.5, _end, (other,)).start()
        said = []
        t0 = time.time()
        r = train.run(s, log=said.append)
        assert time.time() - t0 >= 1.4
        assert not r.cached and registry.finished(con, rid)["pid"] == os.getpid()
        assert any("waiting for it" in m for m in said)
    finally:
        _end(other)


def test_a_dependency_fitted_elsewhere_releases_the_dependent_run(engine_ds, monkeypatch):
    """A probe whose encoder another process is fitting: the probe's own row is released, not failed."""
    from core.engine.suites import latent as suite_latent
    con = registry.connect()
    enc = suite_latent.encoder_spec("flux", 1.0, "quick", engine_ds, 5)
    _, other = _owned_by_another_live_process(con, enc, engine_ds)
    probe = {"model": "latent_probe", "params": {"encoder": "flux", "encoder_noise": 1.0, "layer": "enc_last",
                                                 "pooling": "global_mean", "probe": "ridge", "n_train": "all"},
             "inputs": "flux", "noise_level": 1.0, "dataset": engine_ds, "seed": 5, "profile": "quick"}
    prid = train.spec_hash(train.normalise_spec(probe), data.Dataset(engine_ds).fingerprint)
    try:
        monkeypatch.setattr(train, "WAIT_FOR_OTHERS", False)
        with pytest.raises(train.RunBusy):
            train.run(probe)
        assert registry.get(con, prid) is None                      # as if never started
        assert not list(config.runs_dir().glob(f"{prid}.tmp-*"))
    finally:
        _end(other)


def test_run_many_fits_in_worker_processes(engine_ds):
    """Two worker processes: every spec done, none by this process; two specs held by another
    process are handed back (not waited on), so the free specs finish while they are held, and
    the held ones are fitted once the holder is gone; the same models as a fit in this process."""
    import threading
    con = registry.connect()
    specs = [spec(engine_ds, params={"alphas": [a]}, noise_level=n) for a in (11.0, 12.0) for n in (0.1, 1.0)]
    held = [spec(engine_ds, params={"alphas": [a]}) for a in (14.0, 15.0)]
    owners = [_owned_by_another_live_process(con, h, engine_ds) for h in held]
    released = []
    threading.Timer(8.0, lambda: ([_end(o) for _, o in owners], released.append(registry.now()))).start()
    try:
        lines = []
        res = executor.run_many(held + specs, workers=2, log=lines.append)
    finally:
        [_end(o) for _, o in owners]
    assert not [r for r in res if isinstance(r, Exception)], lines
    assert [r.run_id for r in res[:2]] == [rid for rid, _ in owners]
    rows = [registry.get(con, r.run_id) for r in res]
    assert all(row["status"] == "done" for row in rows)
    assert os.getpid() not in {row["pid"] for row in rows}           # fitted in the workers
    for rid, _ in owners:
        assert len(registry.history(con, rid)) == 1
    assert all(row["finished"] >= released[0] for row in rows[:2])   # only after the holder was gone
    assert all(row["finished"] < released[0] for row in rows[2:])    # the workers did not wait on them
    assert "2 worker processes" in lines[0]
    for s, r in zip(specs, res[2:]):                                  # the same model as a fit here
        again = train.run(s, force=True, log=lambda m: None)
        np.testing.assert_allclose(again.metrics["r2"], r.metrics["r2"], rtol=1e-6)


def test_a_worker_that_dies_fails_its_spec_and_the_rest_go_on(engine_ds):
    import signal
    import threading
    con = registry.connect()
    slow = spec(engine_ds, model="lightgbm", params={"rounds": 20000, "learning_rate": 0.001, "feature_fraction": 0.05})
    rest = [spec(engine_ds, params={"alphas": [a]}) for a in (21.0, 22.0, 23.0)]
    rid = train.spec_hash(train.normalise_spec(slow), data.Dataset(engine_ds).fingerprint)
    killed = []

    def kill_slow():
        con = registry.connect()   # a connection of this thread
        t0 = time.time()
        while time.time() - t0 < 120 and not killed:
            row = registry.get(con, rid)
            if row and row["status"] == "running" and row["pid"] != os.getpid():
                os.kill(row["pid"], signal.SIGKILL)
                killed.append(row["pid"])
            time.sleep(0.2)
    threading.Thread(target=kill_slow, daemon=True).start()
    lines = []
    res = executor.run_many([slow] + rest, workers=2, log=lines.append)
    assert killed
    assert isinstance(res[0], Exception) and "worker process ended" in str(res[0])
    assert all(not isinstance(r, Exception) for r in res[1:]), lines
    assert registry.get(con, rid)["status"] == "interrupted" and train.cached_result(slow) is None


def test_a_run_finished_elsewhere_meanwhile_is_served_not_refitted(engine_ds, monkeypatch):
    """Between run()'s cache check and its claim another process finishes the spec: run() serves it."""
    s = spec(engine_ds, params={"alphas": [31.0]})
    first = train.run(s)
    from models.linear import RidgeModel

    def boom(*a, **k):
        raise AssertionError("refitted a run another process had finished")
    monkeypatch.setattr(RidgeModel, "fit", boom)
    monkeypatch.setattr(registry, "finished", lambda con, rid: None)   # the check ran just before it finished
    again = train.run(s)
    assert again.cached and again.run_id == first.run_id and again.metrics["r2"] == first.metrics["r2"]


def test_a_parameter_at_its_default_is_the_same_spec():
    """The top-K sweep's (K=256, criterion=ridge) run is the report's K=256 run, not a second fit."""
    a = {"model": "topk_cnn", "params": {"K": 256}, "noise_level": 0.1, "dataset": "x", "profile": "quick"}
    b = {**a, "params": {"K": 256, "criterion": "ridge", "window": 8}}
    c = {**a, "params": {"K": 256, "criterion": "fstat"}}
    assert train.spec_hash(a, "fp") == train.spec_hash(b, "fp") != train.spec_hash(c, "fp")
    assert train.normalise_spec(b)["params"] == {"K": 256, "noise_mode": "fresh", "training": "converge"}   # a torch family's defaults written out


def test_a_stop_signal_dropped_in_a_weakref_callback_is_raised_again():
    """A pool worker's SIGTERM raises KeyboardInterrupt wherever the main thread is; inside a weakref callback
    Python prints and drops it, and the worker fitted on after its parent was killed (the flaky kill test
    below, caught with py-spy). The worker's unraisable hook delivers the signal again: the process stops."""
    code = textwrap.dedent("""
        import sys, time, weakref
        from core.engine import pool
        pool._install_stop_handlers()
        class Thing:
            pass
        def callback(_):
            raise KeyboardInterrupt("signal 15")      # what the handler raised while the callback ran
        t = Thing()
        r = weakref.ref(t, callback)
        try:
            del t                                     # runs the callback: its KeyboardInterrupt is dropped
            for _ in range(200):                      # ... and the hook's signal lands here
                time.sleep(0.01)
        except KeyboardInterrupt:
            sys.exit(130)
        print("fitted on")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=config.ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 130 and "fitted on" not in out.stdout, (out.returncode, out.stdout, out.stderr[-500:])


def test_killing_train_stops_its_worker_processes(engine_ds):
    """SIGKILL of `python -m core train --workers 2`: its workers end too (no orphan fitting on),
    their runs read 'interrupted' (or 'done' if one completed in that instant), no temp folders."""
    import signal
    con = registry.connect()
    before = {r["run_id"] for r in registry.runs(con)}
    p = subprocess.Popen([sys.executable, "-m", "core", "train", "--suite", "dilation", "--profile", "quick",
                          "--dataset", engine_ds, "--workers", "2"], cwd=config.ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while time.time() - t0 < 120:
            rows = [r for r in registry.runs(con, status="running") if r["run_id"] not in before]
            if rows and all(r["pid"] != p.pid for r in rows):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("no worker started fitting within 120 s")
        pids = {r["pid"] for r in rows}
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        t0 = time.time()
        while time.time() - t0 < 20 and any(registry._pid_alive(q) for q in pids):
            time.sleep(0.2)
        assert not any(registry._pid_alive(q) for q in pids), "a worker outlived its killed parent"
        for r in rows:   # never left 'running'; 'done' only when the fit completed just before the kill
            g = registry.get(con, r["run_id"])
            assert g["status"] == "interrupted" or (g["status"] == "done" and registry.finished(con, r["run_id"]))
        assert not list(config.runs_dir().glob("*.tmp-*"))   # the workers cleaned up as they ended
    finally:
        if p.poll() is None:
            p.kill()


def test_an_interrupt_after_commit_stays_an_interrupt():
    """A KeyboardInterrupt (SIGTERM in a pool worker) that lands once COMMIT has run must reach
    run(), which then marks the run 'interrupted'; it used to become 'cannot rollback' (failed)."""
    con = registry.connect()
    with pytest.raises(KeyboardInterrupt):
        with registry.transaction(con):
            con.execute("COMMIT")
            raise KeyboardInterrupt
    assert not con.in_transaction
