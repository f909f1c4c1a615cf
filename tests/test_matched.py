"""Models matched to an upload the data set's models were not trained for (#15 item 3): the matched data set
(core/data/matched.py), the plan and its job (core/predict/matched.py), `predict --matched` and the Predict
page's button, on a Gaia-RVS-like 8460-8700 Å window (refused by the data set's models) and an R = 2000 survey
spectrum on 2x coarser pixels."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, private_registry

RVS = (8460.0, 8700.0)
FAST = ("ridge", "cannon")      # the predictors the end-to-end tests train (the others take longer)


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """A private registry whose sim-quick has Ridge (the page and the CLI need predictors of their own)."""
    from core.engine import train
    for d in private_registry(tmp_path_factory, "matched"):
        for nl in (0.1, 1.0):
            train.run({"model": "ridge", "dataset": "sim-quick", "noise_level": nl, "profile": "quick"},
                      log=lambda s: None)
        yield d


def _star(labels, resolution=None, window=None, step=None, snr=100.0, seed=0):
    """A simulated star at resolving power `resolution`, cut to `window`, optionally resampled to a log step."""
    from core.physics import simulate
    from core.predict import Spectrum
    sim = simulate.default_simulator()
    w = sim.wave.double().numpy()
    with torch.no_grad():
        f = sim(torch.tensor([labels], dtype=torch.float32),
                resolution=None if resolution is None else torch.tensor([float(resolution)]))[0].double().numpy()
    if step is not None:
        g = np.exp(np.arange(np.log(w[0]), np.log(w[-1]), step))
        w, f = g, np.interp(g, w, f)
    if window is not None:
        m = (w >= window[0]) & (w <= window[1])
        w, f = w[m], f[m]
    e = np.full(w.size, 1.0 / snr)
    return Spectrum(w, f + e * np.random.default_rng(seed).standard_normal(w.size), e, name="star.csv")


def _csv(path, item):
    np.savetxt(path, np.c_[item.wave, item.flux, item.error], delimiter=",", header="wavelength,flux,error",
               comments="")
    return path


def test_matched_data_set_holds_the_base_stars_binned(reg):
    from core import data
    from core.data import matched
    from core.physics import simulate
    base = data.Dataset("sim-quick")
    rec = matched.recipe_for(*RVS, 5.4e-5, 5000.0, base)
    assert rec["resolution"] == 5000.0 and rec["bin"] == 1
    name = matched.save_recipe(rec)
    assert matched.load_recipe(name) == rec and name.startswith("sim-quick~8")
    matched.build_matched(name)
    ds = data.Dataset(name)
    assert np.array_equal(ds.labels, base.labels) and all(np.array_equal(ds.splits[k], base.splits[k]) for k in ds.splits)
    assert ds.wave[0] >= RVS[0] - 0.5 and ds.wave[-1] <= RVS[1] + 0.5 and not ds.has_meta
    f, e = ds.read(np.arange(4))
    fb, eb = base.read(np.arange(4))
    np.testing.assert_array_equal(f, fb[:, rec["pix0"]:rec["pix1"]])  # the same stars, the same pixels
    np.testing.assert_array_equal(e, eb[:, rec["pix0"]:rec["pix1"]])

    low = matched.recipe_for(7000.0, 9000.0, 1.1e-4, 2000.0, base)
    assert low["bin"] == 2 and low["resolution"] == 2000.0
    n2 = matched.save_recipe(low)
    assert n2 != name
    matched.build_matched(n2)
    d2 = data.Dataset(n2)
    f2, e2 = d2.read(np.arange(3))
    sim = simulate.default_simulator()
    with torch.no_grad():
        lab = torch.as_tensor(base.labels[:3], dtype=torch.float32)
        flux = sim(lab, resolution=torch.full((3,), 2000.0))
    sl = slice(low["pix0"], low["pix1"])
    np.testing.assert_allclose(f2, flux[:, sl].double().numpy().reshape(3, -1, 2).mean(-1), atol=2e-6)
    assert d2.wave.size == (low["pix1"] - low["pix0"]) // 2
    # a broader LSF: shallower lines than the base set's R = 5000 spectra of the same stars
    assert np.all(f2.min(axis=1) > fb[:3, sl].min(axis=1) + 0.05)
    # the error of a bin is sqrt(sum sigma^2) / 2: below the native pixels' by about sqrt(2)
    assert 1.3 < float(np.median(eb[:3, sl][:, ::2] / e2)) < 1.5


@pytest.mark.parametrize("bad, words", [({"bin": 0}, "bin must be"), ({"pix0": 10, "pix1": 40}, "fewer than"),
                                        ({"resolution": 900.0}, "resolution must be"), ({"pix1": 99999}, "not inside")])
def test_bad_recipes_are_one_line(reg, bad, words):
    from core import data
    from core.data import DataError, matched
    rec = matched.recipe_for(*RVS, 5.4e-5, 5000.0, data.Dataset("sim-quick"))
    with pytest.raises(DataError, match=words):
        matched.check_recipe({**rec, **bad})


def test_plan_names_what_differs(reg):
    from core import data
    from core.predict import matched
    ds = data.Dataset("sim-quick")
    rvs = matched.plan(_star([5200.0, 3.0, -0.3], window=RVS), ds)
    assert rvs.needed and "covers 13 %" in rvs.reasons[0] and not rvs.ready
    models = {s["model"] for s in rvs.specs}
    assert "ridge" in models and "cannon" in models and not models & {"metadata_ridge", "metadata_lgbm"}
    assert {m for m, _ in rvs.dropped} == {"Global-feature MLP", "Fusion: concat", "Fusion: FiLM"}   # lines outside
    assert rvs.dropped_text().endswith("(they measure line windows that lie outside this window)")
    assert all(s["dataset"] == rvs.name for s in rvs.specs)
    low = matched.plan(_star([4800.0, 2.2, -0.5], resolution=2000, step=1e-4, snr=50), ds)
    assert low.needed and any("lower resolution" in r for r in low.reasons) and low.recipe["bin"] == 2
    assert 1700 < float(low.resolution_how.split("R ≈ ")[1].split(";")[0].split(")")[0]) < 2300
    same = matched.plan(_star([5200.0, 3.0, -0.3]), ds)
    assert not same.needed and same.specs == []


def test_a_window_the_models_refuse_is_answered_after_the_matched_job(reg, tmp_path, monkeypatch):
    from core import data, predict
    from core.engine import jobs
    from core.predict import matched
    monkeypatch.setenv("LOGG_JOB_WORKERS", "1")
    ds = data.Dataset("sim-quick")
    star = _star([5200.0, 3.0, -0.3], window=RVS, seed=3)
    path = _csv(tmp_path / "rvs.csv", star)
    env = dict(os.environ)
    cli = [sys.executable, "-m", "core", "predict", str(path)]
    r = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 2 and "--matched" in r.stderr and r.stderr.count("\n") == 1
    # queued, not answered: one line on stdout says so, the job holds the report predictors on the matched set
    r = subprocess.run(cli + ["--matched", "--no-worker"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0 and "not trained yet" in r.stdout, r.stderr
    p = matched.plan(star, ds)
    job = [j for j in jobs.list_jobs() if p.name in j["label"]][0]
    assert job["state"] == "queued" and {s["dataset"] for s in job["specs"]} == {p.name}
    assert len(job["specs"]) == len(p.specs)
    jobs.cancel(job["job_id"])
    # the same plan on fewer models, run here
    jid, created = matched.request(dataclasses.replace(p, specs=[s for s in p.specs if s["model"] in FAST]),
                                   "matched (test)")
    assert created
    assert jobs.run_job(jobs.connect(), jobs.get(jid)) == "done"
    p = matched.plan(star, ds)
    assert p.built and p.ready and p.n_done == 2 * len(FAST)
    p_seed = ds.seed
    ans = predict.predict(star, matched.matched_dataset(p))
    assert ans["dataset"] == p.name and ans["coverage"]["fraction"] == 1.0
    assert 1.0 <= ans["recommended"]["value"] <= 5.0
    from core.data import calibration  # its interval: set on new stars of the matched recipe
    cal = calibration.ensure(matched.matched_dataset(p))
    assert len(ans["recommended"]["members"]) == 2 and ans["recommended"]["calibrated_on"] == "calibration"
    assert cal.attrs["source"] == "simulator:matched" and cal.wave.shape == matched.matched_dataset(p).wave.shape
    assert cal.seed == p_seed + calibration.SEED_OFFSET
    r = subprocess.run(cli + ["--matched", "--json"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dataset"] == p.name and out["matched"].startswith("Answered by the models matched")
    assert abs(out["recommended"]["value"] - ans["recommended"]["value"]) < 1e-9


def test_predict_page_offers_and_then_uses_matched_models(reg, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from core import data
    from core.engine import jobs
    from core.predict import matched
    monkeypatch.setenv("LOGG_JOB_WORKERS", "1")
    monkeypatch.setattr(jobs, "ensure_worker", lambda: False)     # the job is run here, below
    star = _star([4800.0, 2.2, -0.5], resolution=2000, step=1e-4, snr=50, seed=5)
    body = "wavelength,flux,error\n" + "\n".join(f"{w},{f},{e}" for w, f, e in zip(star.wave, star.flux, star.error))
    at = AppTest.from_file(str(ROOT / "pages" / "predict.py"), default_timeout=120)
    at.session_state["dataset"] = "sim-quick"
    at.run()
    at.file_uploader(key="predict_upload").set_value(("r2000.csv", body.encode(), "text/csv")).run()
    assert not at.exception
    btn = at.button(key="matched_queue")
    assert btn.label.startswith("Train matched models")
    assert any("lower resolution" in m.value for m in at.markdown)
    btn.click().run()
    assert not at.exception and any("Queued job" in s.value for s in at.success)
    p = matched.plan(star, data.Dataset("sim-quick"))
    job = [j for j in jobs.list_jobs() if p.name in j["label"]][0]
    # fewer models than the page queued, to keep the test short: the page answers once any has finished
    jobs.cancel(job["job_id"])
    jid, _ = matched.request(dataclasses.replace(p, specs=[s for s in p.specs if s["model"] in FAST]), "page (test)")
    assert jobs.run_job(jobs.connect(), jobs.get(jid)) == "done"
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    toggle = [t for t in at.toggle if t.label.startswith("Answer with the models matched")]
    assert toggle and toggle[0].value is True
    assert any(p.name in c.value for c in at.caption)
    rec = {m.label: m.value for m in at.metric}["recommended log g [dex]"]
    assert 1.0 <= float(rec.split(" ")[0]) <= 5.0


def test_a_declared_resolution_degrades_or_matches(reg, tmp_path):
    """Gaia RVS documents R = 11,500: declared, a sharper spectrum is degraded by the known amount, and the
    matched data set is simulated at that R (in the Ca II window the line widths alone barely show it)."""
    from core import data, predict
    from core.data import matched as mdata
    from core.predict import PredictError, matched
    ds = data.Dataset("sim-quick")
    sharp = _star([5200.0, 3.0, -0.3], resolution=11500, snr=200)
    ans = predict.predict(sharp, ds, resolution=11500)
    res = ans["frame"]["resolution"]
    assert res["declared"] == 11500 and "degraded" in res["how"]
    # the known kernel: sqrt(sigma_5000^2 - sigma_11500^2) in km/s
    want = 299792.458 / 2.3548 * np.sqrt(1 / 5000 ** 2 - 1 / 11500 ** 2)
    assert abs(res["degraded_kms"] - want) < 0.5
    broad = predict.predict(_star([5200.0, 3.0, -0.3], resolution=2000, snr=200), ds, resolution=2000)
    assert "lower than the models'" in broad["frame"]["resolution"]["how"]
    assert any("broader" in f for f in broad["ood"]["flags"])
    for bad in ("abc", "-5", "0"):
        with pytest.raises(PredictError, match="resolution"):
            predict.predict(sharp, ds, resolution=bad)
    p = matched.plan(_star([5200.0, 3.0, -0.3], resolution=11500, window=RVS), ds, resolution=11500)
    assert p.recipe["resolution"] == 11500.0 and "R11500" in p.name
    mdata.save_recipe(p.recipe)
    mdata.build_matched(p.name)
    hi, lo = data.Dataset(p.name).read(np.arange(3))[0], data.Dataset("sim-quick").read(np.arange(3))[0]
    sl = slice(p.recipe["pix0"], p.recipe["pix1"])
    assert np.all(hi.min(axis=1) < lo[:, sl].min(axis=1) - 0.02)     # sharper, deeper lines than at R = 5000
    r = subprocess.run([sys.executable, "-m", "core", "predict", str(_csv(tmp_path / "s.csv", sharp)), "--resolution",
                        "fast"], capture_output=True, text=True, cwd=ROOT, env=dict(os.environ))
    assert r.returncode == 2 and r.stderr.startswith("error: resolution must be") and r.stderr.count("\n") == 1
