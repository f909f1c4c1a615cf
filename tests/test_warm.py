"""Warm start (pages/_ui/warm.py): the background warm-up runs each step without an error on a registry
with runs, once per process, and leaves the numbers the Summary opens with ready."""
from __future__ import annotations

import time

from core.engine import executor, suites


def test_warm_start_runs_every_step_once(tiny_dataset):
    from pages._ui import warm
    ridge = [s for s in suites.suite("report", "quick", tiny_dataset) if s["model"] == "ridge"]
    executor.run_many(ridge, workers=1, log=lambda m: None)
    warm._STATE.update(started=None, finished=None, error=None, steps={}, dataset=None)
    assert warm.start("quick") is True
    assert warm.start("quick") is False                    # once per process
    deadline = time.time() + 120
    while warm.state()["finished"] is None and time.time() < deadline:
        time.sleep(0.2)
    st = warm.state()
    assert st["finished"] is not None, st
    assert st["error"] is None, st["error"]
    assert {"Summary numbers", "Overview matrix", "Overview breakdown by S/N",
            "Limit page's posterior calibration"} <= set(st["steps"]), st["steps"]
    # the Saliency page's Fisher information of the data set the warm-up chose (the sidebar's first) is on disk
    # for both noise levels: its first visit reads a file
    from core import config, data
    from core.analysis import saliency
    from core.physics.simulate import SIMULATOR_VERSION
    ds = data.Dataset(st["dataset"])
    for noise in (0.1, 1.0):
        assert f"Fisher information at noise {noise:g}" in st["steps"]
        f = config.artifacts_dir() / "explain" / ds.fingerprint / f"physics_noise{noise:g}_n{saliency.SALIENCY_STARS}.npz"
        assert f.exists() == (str(ds.attrs.get("simulator_version")) == SIMULATOR_VERSION), (st["dataset"], f)


def test_warm_start_leaves_predicts_held_out_predictions_on_disk(tiny_dataset):
    """The warm-up's Predict step (a niced child) writes each predictor's validation and calibration
    predictions into its run folder and builds the data set's calibration set, so the Predict page's
    first answer reads files."""
    from core import data
    from core import predict as P
    from core.data import calibration
    from pages._ui import warm
    ridge = [s for s in suites.suite("report", "quick", tiny_dataset) if s["model"] == "ridge"]
    executor.run_many(ridge, workers=1, log=lambda m: None)
    ds = data.Dataset(tiny_dataset)
    preds = [e for e in P.trained_models(ds) if e.role == "predictor" and e.spec["model"] == "ridge"]
    assert {e.noise_level for e in preds} == {0.1, 1.0}
    for e in preds:
        for f in ("val_predictions.npz", "cal_predictions.npz"):
            (e.artifact / f).unlink(missing_ok=True)
    warm._niced(warm.PREDICT_CHILD, tiny_dataset)
    assert calibration.path_for(ds).exists()
    for e in preds:
        assert (e.artifact / "val_predictions.npz").exists() and (e.artifact / "cal_predictions.npz").exists()
