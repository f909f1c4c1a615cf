"""Where a model fails and whether its error bars hold (#16 parts 3 and 4, core/analysis/breakdown.py):
exact per-bin RMSE, bias, R^2 and slope on synthetic arrays; coverage of Gaussian errors at the nominal
68 / 95 % with the right sigma and far below it with sigma halved; the replicate ensemble; then a small
registry through the Overview page and `python -m core report --by`."""
from __future__ import annotations

import numpy as np
import pytest

from core import cli
from core.analysis import breakdown
from core.engine import executor, suites, train
from core.engine.metrics import r2_score, regression_metrics


# --------------------------------------------------------------------------- pure functions
def _synthetic(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.uniform(1, 5, n)
    snr = rng.permutation(np.arange(1.0, n + 1))          # distinct S/N: quartiles of exactly n/4 stars
    return y, snr


def test_bias_only_in_the_lowest_quartile_shows_only_there():
    y, snr = _synthetic()
    edges = breakdown.snr_edges(snr)
    b = breakdown.snr_bins(snr, edges)
    assert np.bincount(b).tolist() == [100, 100, 100, 100]
    p = y.copy()
    p[b == 0] += 0.5                                          # biased in Q1 only
    q4 = b == 3
    p[q4] = 3.0 + 0.5 * (y[q4] - 3.0)                         # shrunk toward 3 dex in Q4 only
    cells = breakdown.by_bin(y, p, b, 4)
    assert len(cells) == 5 and [c["n"] for c in cells] == [100, 100, 100, 100, 400]
    assert cells[0]["bias"] == pytest.approx(0.5) and cells[0]["rmse"] == pytest.approx(0.5)
    assert cells[0]["slope"] == pytest.approx(1.0)            # a shift keeps the slope
    for c in cells[1:3]:
        assert c["bias"] == 0 and c["rmse"] == 0 and c["r2"] == 1 and c["slope"] == pytest.approx(1.0)
    assert cells[3]["slope"] == pytest.approx(0.5)
    r4 = p[q4] - y[q4]
    assert cells[3]["rmse"] == pytest.approx(np.sqrt(np.mean(r4 ** 2)))
    assert cells[3]["bias"] == pytest.approx(r4.mean())
    # R^2 in a bin: 1 - its MSE / the variance of y over all stars; "all" is the usual R^2
    assert cells[0]["r2"] == pytest.approx(1 - 0.25 / np.var(y))
    assert cells[4]["r2"] == pytest.approx(r2_score(y, p))
    assert cells[4]["rmse"] == pytest.approx(regression_metrics(y, p)["rmse"])


def test_snr_bins_are_the_predict_pages():
    import dataclasses

    from core.predict.skill import N_BINS, Skill
    y, snr = _synthetic()
    edges = breakdown.snr_edges(snr)
    kw = {f.name: np.zeros(N_BINS) for f in dataclasses.fields(Skill) if f.default is dataclasses.MISSING}
    sk = Skill(**{**kw, "edges": edges})
    probe = np.concatenate([snr, edges, [-5.0, 1e9, np.nan]])
    assert np.array_equal(breakdown.snr_bins(probe, edges), sk.bin_of(probe))
    assert breakdown.N_QUARTILES == N_BINS


def test_logg_bins_are_the_fit_metrics():
    y = np.array([1.0, 1.5, 2.0, 2.99, 3.0, 4.2, 5.0, 0.9, 5.1])
    assert breakdown.value_bins(y).tolist() == [0, 0, 1, 1, 2, 3, 3, -1, -1]
    from core.analysis.saliency import LOGG_BIN_EDGES
    assert tuple(breakdown.LOGG_EDGES) == tuple(LOGG_BIN_EDGES)
    yy, _ = _synthetic()
    p = yy + np.random.default_rng(1).normal(0, 0.3, yy.size)
    ours = breakdown.by_bin(yy, p, breakdown.value_bins(yy), 4)[:4]
    fit = regression_metrics(yy, p)["bins"]
    assert [c["n"] for c in ours] == [b["n"] for b in fit]
    assert [c["rmse"] for c in ours] == pytest.approx([b["rmse"] for b in fit])
    assert [c["bias"] for c in ours] == pytest.approx([b["bias"] for b in fit])


def test_coverage_of_gaussian_errors_is_nominal_and_drops_with_sigma_halved():
    rng = np.random.default_rng(7)
    n = 20000
    y = rng.uniform(1, 5, n)
    sigma = rng.uniform(0.05, 0.8, n)                        # heteroscedastic, each star its own sigma
    p = y + sigma * rng.standard_normal(n)
    for name, (k, nominal) in breakdown.INTERVALS.items():
        cov = breakdown.coverage(y, p, sigma, k)
        assert abs(cov - nominal) < 3 * breakdown.binomial_se(nominal, n), (name, cov)
        assert not breakdown.far_from_nominal(cov, nominal, n)
        low = breakdown.coverage(y, p, sigma / 2, k)          # error bars half as wide as the errors
        assert low < nominal - 0.2 and breakdown.far_from_nominal(low, nominal, n), (name, low)
    # 1 sigma / 2 holds |z| < 0.5: 38.3 %; 1.96 sigma / 2: |z| < 0.98: 67.3 %
    assert breakdown.coverage(y, p, sigma / 2, 1.0) == pytest.approx(0.383, abs=0.015)
    assert breakdown.coverage(y, p, sigma / 2, 1.96) == pytest.approx(0.673, abs=0.015)
    bins = (y > 3).astype(int)
    rows = breakdown.coverage_by_bin(y, p, sigma, bins, 2)
    assert [r["n"] for r in rows] == [int((y <= 3).sum()), int((y > 3).sum()), n]
    for r in rows:
        assert abs(r["cov68"] - 0.6827) < 3 * breakdown.binomial_se(0.6827, r["n"])


def test_ensemble_of_replicates():
    rng = np.random.default_rng(3)
    P = rng.normal(3, 0.2, (4, 50))
    S = rng.uniform(0.1, 0.3, (4, 50))
    mu, sig = breakdown.ensemble(P)
    assert np.allclose(mu, P.mean(0)) and np.allclose(sig, P.std(0, ddof=1))
    mu2, sig2 = breakdown.ensemble(P, S)
    assert np.allclose(mu2, mu) and np.allclose(sig2 ** 2, P.var(0, ddof=1) + (S ** 2).mean(0))
    with pytest.raises(ValueError):
        breakdown.ensemble(P[:1])
    # replicates that agree with one another but share a large error: their spread is no error bar
    y = rng.uniform(1, 5, 2000)
    shared = rng.normal(0, 0.5, y.size)
    reps = np.stack([y + shared + rng.normal(0, 0.05, y.size) for _ in range(3)])
    m, s = breakdown.ensemble(reps)
    assert breakdown.coverage(y, m, s, 1.0) < 0.2
    mean, sd, k = breakdown.mean_sd([0.5, 0.7, None, float("nan")])
    assert (mean, k) == (pytest.approx(0.6), 2) and sd == pytest.approx(np.std([0.5, 0.7], ddof=1))


# --------------------------------------------------------------------------- a small registry
@pytest.fixture(scope="module")
def small(tiny_dataset):
    """The report suite's Ridge and MLP (2 training replicates) and the ceiling at noise 0.1."""
    from core.engine.spec import replicates
    rep = [s for s in suites.suite("report", "quick", tiny_dataset) if s["noise_level"] == 0.1
           and s["model"] in ("ridge", "mlp")]
    ceil = [s for s in suites.suite("ceiling", "quick", tiny_dataset) if s["noise_level"] == 0.1]
    specs = replicates(rep, 2) + ceil
    res = executor.run_many(specs, workers=1, log=lambda m: None)
    assert not any(isinstance(r, Exception) for r in res), res
    return tiny_dataset


def test_registry_table_matches_the_runs(small):
    t = breakdown.table("report", "quick", small, "snr")
    mlp = t[(t["method"] == "MLP") & (t["noise"] == 0.1)]
    assert list(mlp["bin"]) == ["Q1", "Q2", "Q3", "Q4", "all"] and (mlp["seeds"] == 2).all()
    base = next(s for s in suites.suite("report", "quick", small) if s["model"] == "mlp" and s["noise_level"] == 0.1)
    rs = [train.cached_result(base), train.cached_result(dict(base, replicate=1))]
    every = mlp[mlp["bin"] == "all"].iloc[0]
    assert every["rmse"] == pytest.approx(np.mean([r.metrics["rmse"] for r in rs]))
    assert every["rmse_sd"] == pytest.approx(np.std([r.metrics["rmse"] for r in rs], ddof=1))
    assert every["r2"] == pytest.approx(np.mean([r.metrics["r2"] for r in rs]))
    assert every["n"] == rs[0].metrics["n_test"] and mlp["n"].iloc[:4].sum() == every["n"]
    assert np.isfinite(mlp["ratio"]).all() and (mlp["ratio"] > 0).all()          # against the ceiling
    ceil = t[t["model"] == "likelihood_ceiling"]
    assert len(ceil) == 5 and ceil["ratio"].isna().all()
    # the same S/N edges for every method of a noise level
    edges = t[t["bin"] != "all"].groupby("method")[["lo", "hi"]].apply(lambda g: tuple(g.to_numpy().ravel()))
    assert edges.nunique() == 1
    lg = breakdown.table("report", "quick", small, "logg")
    assert set(lg["bin"]) == {"1-2", "2-3", "3-4", "4-5", "all"}


def test_test_snr_is_the_predict_pages(small):
    from core.data import Dataset
    from core.predict.skill import test_snr
    ds = Dataset(small)
    for noise in (0.1, 1.0):
        r1, s1 = breakdown.test_snr(ds, noise)
        r2, s2 = test_snr(ds, noise)
        assert np.array_equal(r1, r2) and np.allclose(s1, s2)


def test_coverage_table_has_the_torch_ensemble_only(small):
    cov = breakdown.coverage_table("report", "quick", small, "snr")
    assert set(cov["method"]) == {"MLP"}                       # Ridge: deterministic, no error bar; ceiling: none
    assert set(cov["source"]) == {"ensemble of 2 replicates"} and (cov["replicates"] == 2).all()
    assert cov[["cov68", "cov95"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (cov["cov95"] >= cov["cov68"]).all()
    text = breakdown.summary(cov)
    assert "nominal" in text


def test_overview_shows_the_breakdown_and_the_coverage(small):
    from conftest import ROOT
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "pages" / "overview.py"), default_timeout=180)
    at.session_state["dataset"] = small
    at.session_state["profile"] = "quick"
    at.session_state["noise_level"] = 0.1
    at.run()
    assert not at.exception and not at.error, ([e.value for e in at.exception], [e.value for e in at.error])
    heads = [s.value for s in at.subheader]
    assert heads.index("Where each method fails") < heads.index("Numbers") < heads.index("Are the error bars calibrated?")
    assert any("RMSE [dex] by S/N quartile, noise 0.1" in m.value for m in at.markdown)
    df = at.dataframe[0].value
    assert list(df.columns) == ["method", "Q1", "Q2", "Q3", "Q4", "all"]      # 2 seeds for every method: in the caption
    assert "Likelihood ceiling (physics)" in set(df["method"])
    mlp = df[df["method"] == "MLP"].iloc[0]
    assert "±" in mlp["Q1"] and "×)" in mlp["Q1"]
    assert any("mean ± sd over 2 training seeds" in c.value for c in at.caption)
    import json
    titles = [json.loads(c.proto.spec).get("title") for c in at.get("vega_lite_chart")]
    assert any(isinstance(t, str) and t.startswith("Coverage of the error bars") for t in titles), titles
    at.radio(key="bd_by").set_value("logg")
    at.radio(key="bd_metric").set_value("bias")
    at.run()
    assert not at.exception
    assert any("bias, predicted − true [dex] by log g bin" in m.value for m in at.markdown)
    assert list(at.dataframe[0].value.columns) == ["method", "1-2", "2-3", "3-4", "4-5", "all"]


def test_report_cli_prints_the_breakdown(small, capsys):
    assert cli.main(["report", "--dataset", small]) == 0           # the report suite: by S/N by default
    out = capsys.readouterr().out
    assert "| method | R2 @0.1" in out and "### RMSE [dex] by S/N quartile" in out
    assert "| Likelihood ceiling (physics) | 0.1 | 1 |" in out and "ensemble of 2 replicates" in out
    assert "### slope of predicted on true log g by S/N quartile" in out
    assert cli.main(["report", "--dataset", small, "--by", "logg"]) == 0
    out = capsys.readouterr().out
    assert "| method | noise | seeds | 1-2 | 2-3 | 3-4 | 4-5 | all |" in out
    assert cli.main(["report", "--dataset", small, "--by", "none"]) == 0
    assert "by S/N quartile" not in capsys.readouterr().out


def test_coverage_table_scores_a_runs_own_error_bar(tiny_dataset):
    """A run whose predictions carry y_std (none of today's families writes one) is scored on it."""
    rng = np.random.default_rng(11)
    n = 4000
    y = rng.uniform(1, 5, n)
    labels = np.stack([rng.uniform(4000, 6500, n), y, rng.uniform(-2, 0.3, n)], axis=1)
    sigma = rng.uniform(0.1, 0.5, n)

    def pred(scale):
        return {"index": np.arange(n), "y_true": y, "y_pred": y + sigma * rng.standard_normal(n),
                "labels": labels, "y_std": sigma * scale}
    arms = [{"method": "toy", "model": "ridge", "noise": 1.0, "dataset": tiny_dataset, "preds": [pred(1.0)]},
            {"method": "toy, σ halved", "model": "ridge", "noise": 1.0, "dataset": tiny_dataset, "preds": [pred(0.5)]}]
    cov = breakdown.coverage_table(by="logg", arms=arms)
    assert set(cov["source"]) == {"own error bar"}
    good, bad = cov[cov["method"] == "toy"], cov[cov["method"] == "toy, σ halved"]
    every = good[good["bin"] == "all"].iloc[0]
    assert abs(every["cov68"] - 0.6827) < 3 * breakdown.binomial_se(0.6827, n) and not every["far68"]
    assert abs(every["cov95"] - 0.95) < 3 * breakdown.binomial_se(0.95, n) and not every["far95"]
    assert bad["far68"].all() and bad["far95"].all()
    far = breakdown.far_cells(cov)
    assert len(far) == 1 and far[0].startswith("toy, σ halved @1 (own error bar)")
