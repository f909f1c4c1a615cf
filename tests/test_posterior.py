"""Posteriors, not only points (#17 part 4): the NPE family (models/posterior.py) fits, samples
repeatably and round-trips save/load; the SBC and coverage code (core/analysis/calibration.py) passes a
calibrated Gaussian posterior and fails over-confident and biased ones; the posterior suite's run ids
are fixed, its runs are cached, its row enters the report matrix and the Limit page shows it."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT, private_registry
from streamlit.testing.v1 import AppTest

from core.analysis import calibration as cal
from core.analysis import report
from core.data import Dataset
from core.engine import spec, suites, train
from models.base import FitContext
from models.posterior import NPEModel

FP = "snapshot-fingerprint"
# the posterior suite's run ids on the quick profile (the snapshot of tests/test_spec_hashes.py holds the
# older suites); a change of these refits every cached posterior run
QUICK_IDS = ["7920297b6d545077", "e0440da83b056d07"]
SMALL = {"hidden": 16, "context": 4, "flow_hidden": [16], "transforms": 2, "epochs": 3, "n_samples": 40}


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """A registry of this module's own, with a 200-spectrum 'sim-quick'."""
    yield from private_registry(tmp_path_factory, "posterior")


# --------------------------------------------------------------------------- SBC and coverage, known answers
def _gaussian_case(n=3000, L=199, sigma=0.5, scale=1.0, shift=0.0, seed=0):
    """theta ~ N(0, 1), x = theta + N(0, sigma^2): the exact posterior is N(x / (1 + s^2), s^2 / (1 + s^2));
    scale < 1 narrows it (over-confident), shift moves it by that many posterior sd (biased)."""
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(n)
    x = theta + sigma * rng.standard_normal(n)
    mean, sd = x / (1 + sigma ** 2), np.sqrt(sigma ** 2 / (1 + sigma ** 2)) * np.ones(n)
    samples = mean + shift * sd + scale * sd * rng.standard_normal((L, n))
    return samples, theta, L


def test_a_calibrated_posterior_gives_uniform_ranks_and_nominal_coverage():
    samples, theta, L = _gaussian_case()
    ranks = cal.sbc_ranks(samples, theta)
    assert ranks.min() >= 0 and ranks.max() <= L
    u = cal.uniformity(ranks, L)
    assert u["p"] > 0.01 and u["dof"] == cal.N_BINS - 1 and u["n"] == len(theta)
    counts, expected = cal.rank_histogram(ranks, L)
    assert counts.sum() == expected.sum() == len(theta)
    assert cal.inside_central(ranks, L, 0.6827).mean() == pytest.approx(0.6827, abs=0.03)
    assert cal.inside_central(ranks, L, 0.95).mean() == pytest.approx(0.95, abs=0.015)
    # the interval from the rank is the samples' own central interval
    lo, hi = np.quantile(samples, [0.025, 0.975], axis=0)
    assert np.mean(cal.inside_central(ranks, L, 0.95) == ((theta > lo) & (theta < hi))) > 0.98


@pytest.mark.parametrize("scale, shift", [(0.6, 0.0), (1.0, 0.8)])
def test_over_confident_or_biased_posteriors_fail_the_chi2_test(scale, shift):
    samples, theta, L = _gaussian_case(scale=scale, shift=shift)
    u = cal.uniformity(cal.sbc_ranks(samples, theta), L)
    assert u["p"] < 1e-6
    if shift == 0.0:     # too narrow: a U-shaped histogram, too few true values inside the intervals
        ranks = cal.sbc_ranks(samples, theta)
        counts, _ = cal.rank_histogram(ranks, L)
        assert counts[0] > 2 * counts[cal.N_BINS // 2] and counts[-1] > 2 * counts[cal.N_BINS // 2]
        assert cal.inside_central(ranks, L, 0.6827).mean() < 0.55


def test_rank_histogram_counts_uneven_bins_and_rejects_bad_ranks():
    counts, expected = cal.rank_histogram(np.arange(11), 10, n_bins=3)   # 11 rank values in 3 bins: 4, 4, 3
    assert counts.tolist() == [4, 4, 3] and expected.tolist() == [4, 4, 3]
    assert cal.uniformity(np.arange(11), 10, n_bins=3)["chi2"] == 0.0
    with pytest.raises(ValueError, match="0..10"):
        cal.rank_histogram(np.array([11]), 10)


def test_coverage_by_bin_over_draws_and_the_conclusion():
    flags = {"68": np.array([[1, 0, 1, 1], [1, 1, 1, 0]], bool)}      # 2 noise draws x 4 stars
    cells = cal.coverage_by_bin(flags, np.array([0, 0, 1, 1]), 2)
    assert [c["n"] for c in cells] == [2, 2, 4]
    assert [c["cov68"] for c in cells] == [0.5, 1.0, 0.75]             # the first draw
    assert [c["cov68_draws"] for c in cells] == [0.75, 0.75, 0.75]     # every draw
    assert cells[0]["se68_draws"] == pytest.approx(0.25)                # star means 1 and 0.5: sd 0.354 / sqrt 2
    import pandas as pd
    assert "No posterior run" in cal.conclusion(pd.DataFrame(), pd.DataFrame())


def test_recalibration_through_the_pit_fixes_a_posterior_whose_width_is_wrong_by_snr():
    """A posterior over-confident at low S/N and under-confident at high S/N (widths that follow S/N too
    weakly, as the NPE's): mapped through the PIT of an independent calibration sample, per S/N bin, its
    ranks become uniform and its 68 % / 95 % intervals nominal in every S/N range; a calibrated posterior
    comes back (nearly) unchanged."""
    def case(n, seed, calibrated=False):
        rng = np.random.default_rng(seed)
        snr = np.exp(rng.uniform(np.log(5), np.log(500), n))
        theta = rng.standard_normal(n)
        sd = 0.3 + 10.0 / snr                                  # the true posterior sd falls with S/N
        x = theta + sd * rng.standard_normal(n)
        width = sd if calibrated else np.sqrt(sd * 0.55)       # too narrow when faint, too wide when bright
        return snr, x + width * rng.standard_normal((199, n)), theta
    L = 199
    snr_c, smp_c, th_c = case(9000, 1)
    snr_t, smp_t, th_t = case(3000, 2)
    # the x's posterior is N(x, sd^2) only approximately (a flat prior): calibrate and test on the same recipe
    pit_c = ((cal.sbc_ranks(smp_c, th_c) + 0.5) / (L + 1))[:, None]
    raw = cal.sbc_ranks(smp_t, th_t)[:, None]
    new = cal.pit_map(raw, snr_t, pit_c, snr_c, L)
    assert cal.uniformity(new[:, 0], L)["p"] > 0.01    # (over all S/N the two errors partly cancel in the raw ranks)
    edges = np.quantile(snr_c, np.linspace(0, 1, cal.RECAL_BINS + 1))      # the S/N bins it recalibrates in
    for lo, hi in ((edges[0], edges[1]), (edges[-2], edges[-1])):
        sel = (snr_t >= lo) & (snr_t < hi)
        assert abs(cal.inside_central(raw[sel, 0], L, 0.6827).mean() - 0.6827) > 0.08          # wrong before
        assert cal.inside_central(new[sel, 0], L, 0.6827).mean() == pytest.approx(0.6827, abs=0.04)
        assert cal.inside_central(new[sel, 0], L, 0.95).mean() == pytest.approx(0.95, abs=0.025)
    snr_c, smp_c, th_c = case(9000, 3, calibrated=True)
    snr_t, smp_t, th_t = case(3000, 4, calibrated=True)
    raw = cal.sbc_ranks(smp_t, th_t)[:, None]
    same = cal.pit_map(raw, snr_t, ((cal.sbc_ranks(smp_c, th_c) + 0.5) / (L + 1))[:, None], snr_c, L)
    assert np.median(np.abs(same - raw)) <= 4 and cal.uniformity(same[:, 0], L)["p"] > 0.01


# --------------------------------------------------------------------------- the family
def test_the_npe_fits_samples_repeatably_and_round_trips(private, tmp_path):
    ds = Dataset("sim-quick")
    tr, va, te = (ds.view(s, 1.0, "flux+error") for s in ("train", "val", "test"))
    ctx = FitContext(profile={"epochs": 12, "batch_size": 64, "patience": 4, "cnn_channels": 8}, seed=3,
                     dataset=ds)
    m = NPEModel(**SMALL).fit(tr, va, ctx)
    assert m.history_["noise_mode"] == "fresh" and m.history_["max_epochs"] == 3   # its own budget
    assert np.isfinite(m.history_["best_val_loss"])
    mean, std = m.predict(te)
    assert mean.shape == std.shape == (len(te.y),) and np.all(np.isfinite(mean)) and np.all(std > 0)
    s = m.posterior_samples(te, 25, seed=7)
    assert s.shape == (25, len(te.y), 3)
    assert np.array_equal(s, m.posterior_samples(te, 25, seed=7))
    assert not np.array_equal(s, m.posterior_samples(te, 25, seed=8))
    assert np.all((s[..., 0] > 1000) & (s[..., 0] < 10000))          # Teff in K: the labels' own units
    m.save(tmp_path / "npe")
    back = NPEModel.load(tmp_path / "npe")
    assert np.array_equal(back.posterior_samples(te, 25, seed=7), s)
    assert np.array_equal(back.predict(te)[0], mean)
    assert back.n_params == m.n_params > 0


def test_a_cnn_summary_fits_and_bad_parameters_are_refused(private):
    ds = Dataset("sim-quick")
    tr, va = ds.view("train", 1.0, "flux+error", limit=64), ds.view("val", 1.0, "flux+error")
    ctx = FitContext(profile={"epochs": 1, "batch_size": 64, "patience": 1, "cnn_channels": 8}, dataset=ds)
    m = NPEModel(**dict(SMALL, embed="cnn", epochs=1)).fit(tr, va, ctx)
    assert np.all(np.isfinite(m.predict(va)[0]))
    with pytest.raises(ValueError, match="embed must be one of"):
        spec.normalise_spec(spec.make_spec("npe", {"embed": "rnn"}))
    with pytest.raises(ValueError, match="unknown parameter"):
        spec.normalise_spec(spec.make_spec("npe", {"epoch": 3}))


# --------------------------------------------------------------------------- the suite
def test_the_posterior_suite_has_fixed_run_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path))
    specs = suites.suite("posterior", "quick")
    assert [s["noise_level"] for s in specs] == [0.1, 1.0]
    assert [train.spec_hash(s, FP) for s in specs] == QUICK_IDS
    named = spec.make_spec("npe", dict(NPEModel.param_defaults), 0.1, "quick", suite="posterior")
    assert train.spec_hash(named, FP) == QUICK_IDS[0]           # defaults named = defaults left out
    assert train.spec_hash(spec.make_spec("npe", {"epochs": 61}, 0.1, "quick"), FP) != QUICK_IDS[0]
    assert {suites.row_label(s) for s in specs} == {"NPE posterior mean (flow)"}
    assert not any(m == "npe" for _, m, _ in suites.REPORT_ROWS)   # the report suite is unchanged


def test_a_posterior_run_is_cached_enters_the_matrix_and_the_limit_page(private, monkeypatch):
    s = next(x for x in suites.suite("posterior", "quick") if x["noise_level"] == 1.0)
    s = dict(s, params=dict(SMALL, epochs=4))     # the suite's own spec takes longer: a small suite instead
    from core.engine.suites import posterior
    monkeypatch.setattr(posterior, "ROWS", [("NPE posterior mean (flow)", "npe", s["params"])])
    first = train.run(s, log=lambda *a: None)
    again = train.run(s, log=lambda *a: None)
    assert not first.cached and again.cached and again.run_id == first.run_id
    assert "y_std" in first.predictions()
    mat = report.matrix("report", "quick")
    row = mat[mat["method"] == "NPE posterior mean (flow)"]
    assert len(row) == 1 and row["R2 @1"].iloc[0] == pytest.approx(first.metrics["r2"])

    arms = cal.load("quick")
    assert [a["posterior"] for a in arms] == list(cal.KINDS[:2])   # as fitted, then recalibrated on new stars
    assert arms[0]["cal"]["ranks"].shape == (cal.DRAWS, len(first.predictions()["y_true"]), 3)
    assert arms[1]["cal"]["ranks"].shape == arms[0]["cal"]["ranks"].shape and arms[1]["recal_stars"] == 1000
    assert not np.array_equal(arms[0]["cal"]["ranks"], arms[1]["cal"]["ranks"])
    assert not np.array_equal(arms[0]["cal"]["ranks"][0], arms[0]["cal"]["ranks"][1])   # other noise draws
    cached = list(first.artifact.glob("calibration_*.npz"))
    assert len(cached) == 1 and len(list(first.artifact.glob("recalibration_*.npz"))) == 1
    monkeypatch.setattr(train.Result, "load_model", lambda self: pytest.fail("recomputed: not cached"))
    again_arms = cal.load("quick")
    assert all(np.array_equal(a["cal"]["ranks"], b["cal"]["ranks"]) for a, b in zip(again_arms, arms))
    cov = cal.coverage_table(arms)
    assert list(cov["quartile"]) == ["Q1", "Q2", "Q3", "Q4", "all"] * 2 and cov["n"].iloc[-1] == len(arms[0]["cal"]["y"])
    assert cal.conclusion(cal.sbc_table(arms), cov).startswith("Recalibrated on new simulated stars")
    assert "S/N quartile" in cal.markdown("quick", arms=arms)

    # a second training replicate: the seed ensemble (both flows as one mixture) joins, cached on its own
    monkeypatch.undo()
    monkeypatch.setattr(posterior, "ROWS", [("NPE posterior mean (flow)", "npe", s["params"])])
    second = train.run(dict(s, replicate=1), log=lambda *a: None)
    assert not second.cached and second.run_id != first.run_id
    arms2 = cal.load("quick")
    assert [a["posterior"] for a in arms2] == list(cal.KINDS)
    ens = arms2[2]["cal"]
    assert arms2[2]["replicates"] == 2 and ens["ranks"].shape == arms[0]["cal"]["ranks"].shape
    assert np.array_equal(ens["index"], arms[0]["cal"]["index"])          # the same test stars and noise draws
    assert not np.array_equal(ens["ranks"], arms2[0]["cal"]["ranks"])      # another posterior: the mixture's
    mix = cal.SeedEnsemble([first.load_model(), second.load_model()])
    test = Dataset("sim-quick").view("test", 1.0, first.spec["inputs"], seed=first.spec["seed"], limit=5)
    smp = mix.posterior_samples(test, 9, seed=4)
    own = [m.posterior_samples(test, k, seed=4 * 2 + r) for r, (m, k) in
           enumerate(zip(mix.models, (5, 4)))]
    assert smp.shape == (9, 5, 3) and np.array_equal(smp, np.concatenate(own))   # 5 + 4 samples of the two flows
    assert len(list(first.artifact.glob("calibration_*_ens2_*.npz"))) == 1
    assert len(list(first.artifact.glob("recalibration_*_ens2_*.npz"))) == 1
    cov2 = cal.coverage_table(arms2)
    assert set(cov2["posterior"]) == set(cal.KINDS)
    assert cal.conclusion(cal.sbc_table(arms2), cov2).startswith("The seed ensemble, recalibrated:")

    import streamlit as st
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["dataset"] = "sim-quick"
    at.switch_page("pages/limit.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(h.value.startswith("Posteriors") for h in at.subheader)
    assert any("S/N quartile" in i.value or "calibrated" in i.value for i in at.info)
    charts = [json.loads(x.proto.spec) for x in at.get("vega_lite_chart")]
    assert any("facet" in c for c in charts)                      # the rank histograms


# --------------------------------------------------------------------------- the heteroscedastic head (#17 part 4)
def test_gaussian_nll_is_the_gaussian_negative_log_likelihood():
    import torch

    from models.trainer import gaussian_nll
    out = torch.tensor([[0.0, 0.0], [1.0, np.log(2.0)]])
    y = torch.tensor([1.0, 3.0])
    want = np.mean([0.5 * 1.0 + 0.0, 0.5 * (2.0 / 2.0) ** 2 + np.log(2.0)])
    assert float(gaussian_nll(lambda x: x, (out,), y)) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("model, params", [("mlp", {"hidden": 16}), ("dilated_cnn", {"channels": 8})])
def test_a_heteroscedastic_head_gives_error_bars_and_keeps_run_ids(private, tmp_path, model, params):
    from models import MODELS
    base = spec.make_spec(model, {}, 1.0, "quick", suite="report")
    assert train.spec_hash(dict(base, params={"heteroscedastic": False}), FP) == train.spec_hash(base, FP)
    ds = Dataset("sim-quick")
    tr, va, te = (ds.view(s, 1.0, "flux") for s in ("train", "val", "test"))
    ctx = FitContext(profile={"epochs": 2, "batch_size": 64, "patience": 2, "cnn_channels": 8}, dataset=ds)
    m = MODELS[model](heteroscedastic=True, **params).fit(tr, va, ctx)
    mean, sigma = m.predict(te)
    assert mean.shape == sigma.shape == (len(te.y),) and np.all(sigma > 0) and np.all(np.isfinite(mean))
    assert "val_rmse" not in m.history_["epochs"][0]             # trained on the NLL, not the squared error
    m.save(tmp_path / model)
    back = MODELS[model].load(tmp_path / model)
    assert np.array_equal(back.predict(te)[1], sigma)
    import torch
    assert torch.allclose(m.forward_tensor(torch.as_tensor(te.x[:3])).float(),
                          torch.as_tensor(mean[:3], dtype=torch.float32), atol=1e-4)   # saliency reads the mean
