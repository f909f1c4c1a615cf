"""Storage and the server's doors (#20): a read-only artifacts folder can be read and refuses
writes in one line; `ulimit -f` and a disk that fills mid-fit leave nothing half-written; a run
whose files are gone is refitted; the dashboard listens on 127.0.0.1; the admin token can come
from a file or the environment; one worker starts however many submits race for it."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from core import config, data
from core.engine import jobs, registry, train

ROOT = Path(__file__).resolve().parent.parent
DS = "store-test"


def cli(*args, art: Path, prefix=(), preexec=None, env=None, timeout=300):
    e = {**os.environ, "LOGG_ARTIFACTS": str(art), **(env or {})}
    return subprocess.run([*prefix, sys.executable, "-m", "core", *args], cwd=ROOT, env=e, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec)


def one_line_error(p) -> str:
    err = p.stderr.strip()
    assert p.returncode == 2, (p.returncode, p.stdout[-500:], err[-2000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Path:
    """An artifacts folder of its own with a small data set, two finished runs and a spectrum to predict."""
    art = tmp_path_factory.mktemp("store") / "artifacts"
    p = cli("data", "build", "--name", DS, "--n", "200", art=art)
    assert p.returncode == 0, p.stderr
    p = cli("train", "--suite", "report", "--only", "ridge", "--dataset", DS, "--workers", "1", art=art)
    assert p.returncode == 0, p.stderr
    with h5py.File(art / "data" / f"{DS}.h5", "r") as f:
        w, fl, er = f["wave"][()], f["flux"][3], f["error"][3]
    np.savetxt(art.parent / "star.csv", np.c_[w, fl, er * 0.3], delimiter=",", header="wavelength,flux,error",
               comments="")
    return art


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def readonly_prefix(folder: Path) -> list[str] | None:
    """A command prefix that runs the command with `folder` mounted read-only (a user and mount
    namespace: works for root, whom file modes do not stop), or None where this system has none."""
    if not shutil.which("unshare"):
        return None
    pre = ["unshare", "-rm", "sh", "-c", f'mount --bind -o ro "{folder}" "{folder}" && exec "$@"', "sh"]
    probe = subprocess.run([*pre, "sh", "-c", f'touch "{folder}/.probe"'], capture_output=True)
    if probe.returncode == 0:
        (folder / ".probe").unlink(missing_ok=True)
        return None
    ok = subprocess.run([*pre, "true"], capture_output=True).returncode == 0
    return pre if ok else None


def test_read_only_artifacts_read_and_refuse_writes(filled):
    pre = readonly_prefix(filled)
    if pre is None:
        pytest.skip("no user/mount namespaces here to mount a folder read-only")
    before = snapshot(filled)
    for args in (["runs"], ["report", "--dataset", DS], ["jobs", "list"], ["digest", "--dataset", DS],
                 ["predict", str(filled.parent / "star.csv"), "--dataset", DS, "--json"]):
        p = cli(*args, art=filled, prefix=pre)
        assert p.returncode == 0, (args, p.stderr[-1500:])
    runs = cli("runs", art=filled, prefix=pre).stdout
    assert runs.count(" done ") == 2, runs
    answer = json.loads(cli("predict", str(filled.parent / "star.csv"), "--dataset", DS, "--json", art=filled,
                            prefix=pre).stdout)
    assert answer["logg"] and all(np.isfinite(m["value"]) for m in answer["logg"]), answer["logg"]
    for args, needle in ((["train", "--suite", "report", "--only", "ridge", "--dataset", DS, "--force"], "read-only"),
                         (["jobs", "submit", "--suite", "report", "--only", "mlp", "--dataset", DS], "read-only"),
                         (["data", "build", "--name", "other", "--n", "50"], "read-only")):
        err = one_line_error(cli(*args, art=filled, prefix=pre))
        assert needle in err, err
    assert snapshot(filled) == before   # nothing written, not even a WAL file


def _fsize(limit: int):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return set_limit


def test_file_size_limit_refuses_imports_and_fits_before_writing(filled, tmp_path):
    src = tmp_path / "grid.h5"
    rng = np.random.default_rng(4)
    n, npix = 300, 2000
    with h5py.File(src, "w") as f:   # a valid grid whose copy needs ~5 MB
        f["wave"] = np.linspace(8000, 8800, npix)
        f["flux"] = rng.uniform(0.5, 1.5, (n, npix))
        f["error"] = np.full((n, npix), 0.01)
        g = f.create_group("labels")
        for k, lo, hi in (("teff", 4000, 6000), ("logg", 1, 5), ("mh", -1, 0)):
            g[k] = rng.uniform(lo, hi, n)
    before = snapshot(filled)
    # before the fix: pages of HDF5 errors, then SIGSEGV (139) as the half-written file closed
    err = one_line_error(cli("data", "import", str(src), "--name", "grid", art=filled, preexec=_fsize(1 << 20)))
    assert "ulimit -f" in err and "nothing was written" in err
    err = one_line_error(cli("train", "--suite", "report", "--only", "lightgbm", "--dataset", DS, "--workers", "1",
                             art=filled, preexec=_fsize(1 << 20)))
    assert "ulimit -f" in err
    assert snapshot(filled) == before
    p = cli("runs", art=filled, preexec=_fsize(1 << 20))   # reading still works
    assert p.returncode == 0 and p.stdout.count(" done ") == 2


@pytest.fixture()
def small_ds(artifacts_dir) -> str:
    if DS not in data.list_datasets():
        data.build(name=DS, n=200, seed=5)
    return DS


def _spec(model="ridge", noise=0.1):
    return {"model": model, "params": {}, "noise_level": noise, "dataset": DS, "seed": 0, "profile": "quick"}


def test_disk_full_mid_fit_leaves_nothing_half_written(small_ds, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(train.np, "savez", full)
    s = _spec(noise=1.0)
    rid = train.spec_hash(train.normalise_spec(s), data.Dataset(DS).fingerprint)
    with pytest.raises(registry.StorageError, match="the disk is full"):
        train.run(s, force=True, log=lambda m: None)
    assert not (config.runs_dir() / rid).exists()
    assert not list(config.runs_dir().glob(f"{rid}.tmp-*"))
    row = registry.get(registry.connect(), rid)
    assert row["status"] in ("failed", "interrupted") and registry.finished(registry.connect(), rid) is None


def test_run_whose_files_are_gone_is_refitted(small_ds):
    r = train.run(_spec(), log=lambda m: None)
    assert train.run(_spec(), log=lambda m: None).cached
    meta = json.loads((r.artifact / "run.json").read_text())
    assert "model/model.json" in meta["files"] and "predictions.npz" in meta["files"]
    (r.artifact / "model" / "arrays.npz").unlink()           # a model file deleted by hand
    r2 = train.run(_spec(), log=lambda m: None)
    assert not r2.cached and (r2.artifact / "model" / "arrays.npz").exists()
    # a folder from before run.json listed its files: the model and predictions must be there
    meta = json.loads((r2.artifact / "run.json").read_text())
    del meta["files"]
    (r2.artifact / "run.json").write_text(json.dumps(meta))
    assert train.run(_spec(), log=lambda m: None).cached
    (r2.artifact / "predictions.npz").unlink()
    assert not train.run(_spec(), log=lambda m: None).cached


def test_dashboard_listens_on_localhost_only():
    code = ("from streamlit import config as c; c.get_config_options(force_reparse=True); "
            "print(c.get_option('server.address'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "127.0.0.1", out.stdout + out.stderr


def test_admin_token_from_a_file_and_from_the_environment(small_ds, tmp_path, monkeypatch):
    tok = tmp_path / "token"
    tok.write_text("s3cret\n")
    monkeypatch.delenv("LOGG_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("LOGG_ADMIN_TOKEN_FILE", str(tok))
    with pytest.raises(jobs.NotAllowed):
        jobs.submit([_spec("lightgbm")], token="wrong")
    art = Path(os.environ["LOGG_ARTIFACTS"])
    env = {"LOGG_ADMIN_TOKEN_FILE": str(tok)}
    args = ("jobs", "submit", "--suite", "report", "--only", "mlp", "--dataset", DS, "--no-worker")
    err = one_line_error(cli(*args, art=art, env=env))
    assert "admin token" in err
    p = cli(*args, "--token-file", str(tok), art=art, env=env)
    assert p.returncode == 0 and p.stdout.strip().isdigit(), p.stderr
    jid = int(p.stdout.strip())
    p = cli("jobs", "cancel", str(jid), art=art, env={**env, "LOGG_TOKEN": "s3cret"})
    assert p.returncode == 0 and p.stdout.strip() == "cancelled", p.stderr
    tok.write_text("")   # an empty token file closes the door rather than opening it
    with pytest.raises(jobs.NotAllowed, match="empty"):
        jobs.submit([_spec("lightgbm")], token="")


def test_jobs_log_without_an_id_says_so(tmp_path):
    err = one_line_error(cli("jobs", "log", art=tmp_path / "a"))
    assert "needs a job id" in err
    assert "no job 7" in one_line_error(cli("jobs", "log", "7", art=tmp_path / "a"))


def test_simultaneous_submits_start_one_worker(tmp_path):
    art = tmp_path / "artifacts"
    art.mkdir()
    code = "from core.engine import jobs; print(jobs.ensure_worker())"
    env = {**os.environ, "LOGG_ARTIFACTS": str(art)}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(10)]
    said = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert said.count("True") == 1 and said.count("False") == 9, said
    lock = art / "worker.lock"
    t0 = time.time()
    while not lock.read_text().strip().isdigit() and time.time() - t0 < 30:
        time.sleep(0.2)
    pid = int(lock.read_text())
    try:
        assert registry._pid_alive(pid) and jobs_worker_alive(art)
    finally:
        os.kill(pid, 15)


def jobs_worker_alive(art: Path) -> bool:
    code = "from core.engine import jobs; print(jobs.worker_alive())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "LOGG_ARTIFACTS": str(art)},
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip() == "True"


def test_training_page_on_a_read_only_folder_browses_only(small_ds, monkeypatch):
    from streamlit.testing.v1 import AppTest

    def refuse(con):
        raise registry.StorageError("cannot write /x/registry.sqlite: it is read-only; nothing was changed (y)")
    monkeypatch.setattr(registry, "require_writable", refuse)
    at = AppTest.from_file(str(ROOT / "pages" / "training.py"), default_timeout=120)
    at.session_state["dataset"] = DS
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Browsing only" in w.value and "read-only" in w.value for w in at.warning)
    launch = next(b for b in at.button if b.label == "Launch")
    assert launch.disabled


def _open_fresh_registry(path, barrier, out):
    barrier.wait()
    try:
        con = registry.connect(Path(path))
        out.put(str(con.execute("PRAGMA journal_mode").fetchone()[0]))
    except Exception as e:   # noqa: BLE001 - the test reports what any process met
        out.put(f"{type(e).__name__}: {e}")


def test_processes_opening_a_new_registry_at_once_all_get_it(tmp_path):
    """The app, a job worker and its fits open a fresh registry.sqlite at the same moment. Switching
    it to WAL mode used to fail with "database is locked" (no busy wait for a journal-mode change):
    the Overview page of a browser test stopped on it. Six processes released together, five
    times over (the old code failed 2 of 6 such rounds here), must all get a WAL registry."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")   # no re-import per child (spawn took ~9 s a round); no connection is open here
    for i in range(5):
        path = tmp_path / f"r{i}" / "registry.sqlite"
        path.parent.mkdir()
        barrier, out = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_fresh_registry, args=(str(path), barrier, out)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        got = [out.get(timeout=10) for _ in procs]
        assert got == ["wal"] * 6, got
