"""Warm start: the work a first visitor would otherwise wait for, done once per server process in a
background thread as soon as app.py first runs (#21 part 7).

It imports the heavy libraries (torch, LightGBM, scikit-learn), reads the registry's numbers the Summary
and the Overview open with (so the data set fingerprints, the test stars' S/N and the prediction files are
in memory and in the operating system's file cache), and draws nothing: it calls core/ only, never
Streamlit, so it needs no browser session. Errors are logged and dropped: a failed warm-up leaves the
pages to compute as they always could.
"""
from __future__ import annotations

import logging
import threading
import time

from core import config, data

_LOG = logging.getLogger("logg.warm")
_LOCK = threading.Lock()
_STATE: dict = {"started": None, "finished": None, "error": None, "steps": {}, "dataset": None}


def start(profile: str = "quick") -> bool:
    """Start the warm-up thread unless this process has started it already; True when this call did."""
    with _LOCK:
        if _STATE["started"] is not None:
            return False
        _STATE["started"] = time.time()
    threading.Thread(target=_warm, args=(profile,), name="logg-warm-start", daemon=True).start()
    return True


def state() -> dict:
    """When the warm-up started and finished, and how long each step took (seconds)."""
    return {**_STATE, "steps": dict(_STATE["steps"])}


def _step(name: str, fn) -> None:
    t = time.perf_counter()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - a warm-up never breaks the app
        _LOG.info("warm start: %s failed: %s", name, e)
        _STATE["error"] = f"{name}: {e}"
    _STATE["steps"][name] = round(time.perf_counter() - t, 2)


# the child lowers its own priority first (preexec_fn is not safe in a process with threads, as the server is)
FISHER_CHILD = ("import os, sys; os.nice(19); from core import data; from core.analysis import saliency; "
                "saliency.dataset_physics(data.Dataset(sys.argv[1]), float(sys.argv[2]), saliency.SALIENCY_STARS)")


PREDICT_CHILD = ("import os, sys; os.nice(19); from core import config, data, predict; from core.predict import skill; "
                 "ds = data.Dataset(sys.argv[1]); entries = predict.trained_models(ds); "
                 "[skill.members_at_any_snr([e for e in entries if e.role == 'predictor' and e.usable and "
                 "e.target == 'logg' and e.noise_level == nl], ds) for nl in config.NOISE_LEVELS]")


POSTERIOR_CHILD = ("import os, sys; os.nice(19); from core.analysis import calibration; "
                   "calibration.load(sys.argv[1], sys.argv[2])")


def _niced(code: str, *args: str) -> None:
    """`code` in a child Python process that lowers its own priority first; its last error line raised."""
    import os
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=config.ROOT, env=dict(os.environ),
                       capture_output=True, text=True, timeout=1800)
    if r.returncode:
        raise RuntimeError((r.stderr.strip().splitlines() or ["exit status " + str(r.returncode)])[-1])


def _fisher_niced(dataset: str, noise: float) -> None:
    """saliency.dataset_physics in a child process under nice 19 (a no-op when its file exists)."""
    from core.analysis import saliency
    from core.physics.simulate import SIMULATOR_VERSION
    ds = data.Dataset(dataset)
    if str(ds.attrs.get("simulator_version", "")) != SIMULATOR_VERSION:
        return                          # an imported or matched grid: the Saliency page has no Fisher information
    path = config.artifacts_dir() / "explain" / ds.fingerprint / f"physics_noise{noise:g}_n{saliency.SALIENCY_STARS}.npz"
    if path.exists():
        return
    _niced(FISHER_CHILD, dataset, str(noise))


def _warm(profile: str) -> None:
    names = data.list_datasets()
    dataset = names[0] if names else None      # the sidebar's first choice (appstate.sidebar)
    _STATE["dataset"] = dataset
    # altair and the Data page's helpers: 0.8 s the first page that draws a chart would otherwise wait for
    _step("import altair and the chart helpers", lambda: (__import__("altair"), __import__("core.analysis.data_summary")))
    _step("import torch and the model families", lambda: __import__("models"))
    if dataset is not None:
        from core.analysis import breakdown, conclusions, report
        _step("Summary numbers", lambda: (conclusions.best_per_noise(profile, dataset),
                                         conclusions.team_differences(profile, dataset),
                                         conclusions.verdict_table(profile, dataset),
                                         conclusions.suites_not_run(profile, dataset)))
        _step("Overview matrix", lambda: report.suite_results("report", profile, dataset))
        for noise in config.NOISE_LEVELS:
            _step(f"test S/N at noise {noise:g}", lambda n=noise: breakdown.test_snr(data.Dataset(dataset), n))
        _step("Overview breakdown by S/N", lambda: breakdown.table("report", profile, dataset, "snr"))
        # the Saliency page's Fisher information: ~19 s per noise level on 2 cores the first time, then a file
        # under artifacts/explain/. Computed in a child process at the lowest CPU priority, so that the first
        # visitors' pages are not slowed by it (in this process its torch threads competed with theirs)
        for noise in config.NOISE_LEVELS:
            _step(f"Fisher information at noise {noise:g}", lambda n=noise: _fisher_niced(dataset, n))
        # the Predict page's first answer: its predictors' validation and calibration predictions and the
        # calibration set (~40 s the first time on the quick registry, then files in the run folders)
        _step("Predict's held-out predictions", lambda: _niced(PREDICT_CHILD, dataset))
        # the Limit page's posterior calibration (SBC ranks, recalibration, the seed ensemble): its first visit
        # after the posterior suite was trained took 106 s on 2 cores (bench_pages, 2026-12-06), then files in
        # the run folders; a no-op without posterior runs or once the files exist
        _step("Limit page's posterior calibration", lambda: _niced(POSTERIOR_CHILD, profile, dataset))
    _STATE["finished"] = time.time()
    _LOG.info("warm start done in %.1f s: %s", _STATE["finished"] - _STATE["started"], _STATE["steps"])
