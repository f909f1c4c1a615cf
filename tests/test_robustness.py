"""The robustness suite and its analysis (#18 part 3, core/engine/suites/robustness.py and
core/analysis/robustness.py) on two tiny data sets: a clean one and its survey-nuisance twin (120
spectra each), Ridge trained on each at noise 0.1."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core import data
from core.analysis import robustness as rob
from core.engine import suites, train
from core.engine.suites import robustness as rsuite

CLEAN = "rb-tiny"
N = 120


@pytest.fixture(scope="module")
def fitted():
    """The two data sets and the Ridge runs of the suite at noise 0.1 (without and with augmentation)."""
    data.build(name=CLEAN, n=N, device="cpu")
    data.build(name=f"{CLEAN}-survey", n=N, device="cpu", nuisance="survey")
    specs = [s for s in suites.suite("robustness", "quick", CLEAN) if s["model"] == "ridge" and s["noise_level"] == 0.1]
    return {rsuite.training_of(s): train.run(s, log=lambda *a: None) for s in specs}


@pytest.fixture(scope="module")
def evaluated(fitted):
    return rob.table("quick", CLEAN, compute=True)


def test_the_suite_is_the_reports_predictors_twice_and_hashes_stably(tmp_path):
    specs = suites.suite("robustness", "quick")
    report = [s for s in suites.suite("report", "quick") if not s["model"].startswith("metadata")]
    plain = [s for s in specs if rsuite.training_of(s) == "none"]
    aug = [s for s in specs if rsuite.training_of(s) == "survey"]
    assert len(plain) == len(aug) == len(report) == 24
    assert {s["dataset"] for s in plain} == {"sim-quick"} and {s["dataset"] for s in aug} == {"sim-quick-survey"}
    fp = "snapshot-fingerprint"                 # tests/test_spec_hashes.py's
    ids = [train.spec_hash(s, fp) for s in plain]
    # the un-augmented specs are the report suite's own runs, as the run-id snapshot holds them: nothing refit
    snap = json.loads((Path(__file__).with_name("data") / "spec_hashes.json").read_text())["quick/report"]
    assert ids == [train.spec_hash(s, fp) for s in report] == snap[4:]    # its first 4: the metadata rows
    assert ids == [train.spec_hash(s, fp) for s in suites.suite("robustness", "quick")[:24]]   # stable
    assert ids[0] == "6a8fd198c4fb31fd" and plain[0]["model"] == "ridge"
    # the augmented ones are the same specs on the survey twin: new runs, one per predictor and noise level
    aug_ids = [train.spec_hash(s, fp) for s in aug]
    assert aug_ids == [train.spec_hash(dict(s, dataset="sim-quick-survey"), fp) for s in plain]
    assert len(set(aug_ids)) == 24 and not set(aug_ids) & set(ids)
    assert {s["model"] for s in specs} == {m for _, m, _ in suites.REPORT_ROWS if not m.startswith("metadata")}


def test_a_missing_twin_is_said_in_one_line(fitted):
    assert rsuite.missing_datasets("quick", CLEAN) == []
    assert rsuite.missing_datasets("quick", "no-such") == ["no-such", "no-such-survey"]
    with pytest.raises(data.DataError, match="--nuisance survey"):
        rsuite.ensure_datasets("quick", "no-such")
    txt = rob.not_run("quick", "no-such")["text"]
    assert "48 specs" in txt and "no-such-survey not built yet" in txt and "\n" not in txt


def test_zero_perturbation_gives_exactly_zero(evaluated):
    zero = evaluated[evaluated["key"].isin(["rv_0", "tilt_0"])]
    assert len(zero) == 4 and (zero["drop"] == 0.0).all() and (zero["err"] == 0.0).all()
    assert (zero["r2"] == zero["r2_clean"]).all()


def test_the_unperturbed_set_is_the_runs_own_test_set(fitted, evaluated):
    """Same stars, same noise draw: the un-augmented run predicts its stored test predictions again."""
    r = fitted["none"]
    got = rob.evaluate("quick", CLEAN, compute=False)[r.run_id]
    stored = r.predictions()
    np.testing.assert_array_equal(got["index"], stored["index"])
    np.testing.assert_allclose(got["p_rv_0"], stored["y_pred"], rtol=0, atol=1e-9)
    row = evaluated[(evaluated["training"] == "none") & (evaluated["key"] == "rv_0")].iloc[0]
    assert row["r2_clean"] == pytest.approx(r.metrics["r2"], abs=1e-9)


def test_a_large_rv_shift_degrades_a_pixel_model(fitted):
    ds = rob.clean_dataset("quick", CLEAN)
    r = fitted["none"]
    model = train.load_model(r.artifact)
    big = rob.Perturbation("rv_big", "RV error", "150 km/s", "an RV error of 150 km/s rms", rv_rms=150.0)
    r2 = {}
    for p in (rob.BY_KEY["rv_0"], big):
        rows, flux, err = rob.perturbed_test(ds, p)
        view = rob.perturbed_view(ds, rows, flux, err, r.spec)
        y = view.y[:, 1].astype(np.float64)
        r2[p.key] = rob._r2(y, np.asarray(model.predict(view), np.float64).reshape(-1))
    assert r2["rv_0"] > 0.3
    assert r2["rv_0"] - r2["rv_big"] > 0.2        # the lines moved out of the pixels Ridge weighs


def test_results_are_cached_and_repeat(fitted, evaluated, monkeypatch):
    paths = [rob.cache_path(r.run_id) for r in fitted.values()]
    assert all(p.exists() for p in paths)
    # from the cache: no model is loaded, the same numbers
    monkeypatch.setattr(train, "load_model", lambda *a: (_ for _ in ()).throw(AssertionError("refit or reload")))
    again = rob.table("quick", CLEAN, compute=True)
    assert again.equals(evaluated)
    monkeypatch.undo()
    # a cache of another perturbation list or data set is not read: recomputed
    assert rob._read_cache(fitted["none"].run_id, "another-tag") == {}
    # seeded: the same perturbed test set every time, another one for another perturbation
    ds = rob.clean_dataset("quick", CLEAN)
    a, b = rob.perturbed_test(ds, rob.BY_KEY["rv_5"]), rob.perturbed_test(ds, rob.BY_KEY["rv_5"])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert np.abs(a[1] - rob.perturbed_test(ds, rob.BY_KEY["tilt_2"])[1]).max() > 1e-3


def test_sentence_and_digest_lines(evaluated):
    text = rob.conclusion(evaluated)
    assert text.startswith("With survey augmentation the best predictor at noise 0.1, Ridge")
    words = [w for w in ("**met**", "**not met**", "**inconclusive**") if w in text]
    assert len(words) == 1 and "±" in text
    row = rob.verdict(evaluated)["best"]
    assert words[0] == f"**{rob.target_word(row)}**"
    lines = rob.digest_summary("quick", CLEAN).splitlines()
    assert 3 <= len(lines) <= 6 and lines[0].startswith("**Robustness to nuisances**")
    assert "not run: 46 of 48 specs" in lines[-1]
    md = rob.markdown(evaluated)
    assert md.count("| Ridge |") == 2 and "RV 30 km/s" in md and "±2 % +tell" in md


def test_the_target_word_needs_two_errors_either_side():
    assert rob.target_word({"drop": 0.011, "err": 0.003}) == "met"            # 0.017 <= 0.02
    assert rob.target_word({"drop": 0.018, "err": 0.004}) == "inconclusive"   # 0.026 > 0.02 >= 0.010
    assert rob.target_word({"drop": 0.077, "err": 0.011}) == "not met"        # 0.055 > 0.02
    assert rob.target_word({"drop": 0.018, "err": 0.0}) == "met"


def test_an_imported_or_nuisance_data_set_is_refused_in_one_line(fitted):
    with pytest.raises(data.DataError, match="not a clean simulated one"):
        rob.clean_dataset("quick", f"{CLEAN}-survey")


def test_the_marginalised_ceiling_loses_little_where_the_target_asks_and_is_cached(fitted, evaluated, monkeypatch):
    """The physics on the same perturbed sets (core/analysis/robustness_ceiling.py): a fit that marginalises the
    survey priors' nuisances, on the first test stars. Inside those priors (RV 2-5 km/s, R +-10 %, tilts <= 2 %)
    it loses little; the page and the benchmark read it from the cache afterwards."""
    from core.analysis import robustness_ceiling as rc
    assert rc.rows("quick", CLEAN).empty                              # nothing cached: the page shows nothing
    monkeypatch.setattr(rc, "N_STARS", 12)
    got = rc.evaluate("quick", CLEAN, compute=True, n_stars=12)
    assert set(got) == {"index", "y_true"} | {f"p_{k}" for k in rc.KEYS} and len(got["index"]) == 12
    rows = rc.rows("quick", CLEAN)
    assert rows.attrs["n_stars"] == 12 and list(rows["key"]) == list(rc.KEYS)
    clean = rows.set_index("key").loc["rv_0+tell"]                    # typical tellurics alone: the base
    assert clean["drop"] == 0.0 and clean["r2_clean"] > 0.9                # noise 0.1: the ceiling is near 1
    target = rows[rows["key"].isin(rob.target_keys("survey"))]
    assert target["drop"].max() < 0.1                                   # the spectrum keeps log g under them
    text = rc.sentence(rows, evaluated)
    assert "12 test stars" in text and "ΔR²" in text and "best augmented predictor" in text
    from core.physics import fisher
    monkeypatch.setattr(fisher, "likelihood_fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("refitted")))
    assert rc.rows("quick", CLEAN).equals(rows)                         # read back, never refitted
    assert "the physics itself" in rob.digest_summary("quick", CLEAN, rows).splitlines()[1]   # the digest's target line
    assert "the physics itself" not in rob.digest_summary("quick", CLEAN).splitlines()[1]


def test_the_augmented_target_is_judged_over_the_tellurics_it_trained_on(fitted, evaluated, monkeypatch):
    """The augmented training always saw tellurics: its target is the same perturbations over typical tellurics,
    each against typical tellurics alone; the plain training keeps the telluric-free sets. A change of the
    over-tellurics sets drops only their cached predictions."""
    df = evaluated
    tell = df[df["key"].str.endswith(rob.TELL_SUFFIX)]
    assert set(tell["key"]) == {p.key for p in rob.OVER_TELLURICS} and len(rob.OVER_TELLURICS) == 1 + len(rob.TARGET_KEYS)
    assert (tell[tell["key"] == "rv_0+tell"]["drop"] == 0).all()          # the base of its family
    aug, plain = rob.worst(df, "survey"), rob.worst(df, "none")
    assert aug["key"].str.endswith("+tell").all() and not plain["key"].str.endswith("+tell").any()
    # R^2 "clean" of an over-tellurics row is the R^2 with typical tellurics, not the telluric-free one
    row = tell[(tell["training"] == "survey") & (tell["key"] == "tilt_2+tell")].iloc[0]
    free = df[(df["training"] == "survey") & (df["key"] == "tilt_2") & (df["noise"] == row["noise"])].iloc[0]
    assert row["r2_clean"] == pytest.approx(df[(df["training"] == "survey") & (df["key"] == "tell_typical")
                                               & (df["noise"] == row["noise"])].iloc[0]["r2"], abs=1e-12)
    assert row["r2_clean"] != free["r2_clean"]
    rid = fitted["survey"].run_id
    tag = rob._tag(rob.clean_dataset("quick", CLEAN))
    kept = rob._read_cache(rid, tag)
    assert "p_tilt_2+tell" in kept and "p_tilt_2" in kept
    monkeypatch.setattr(rob, "OVER_TELLURICS", [rob._over_tellurics(rob.BY_KEY["rv_0"])])   # other sets
    again = rob._read_cache(rid, tag)
    assert "p_tilt_2" in again and not any(k.endswith("+tell") for k in again)


def test_the_page_draws_the_evaluated_runs_and_the_physics(fitted, evaluated):
    """The Robustness page on a registry with evaluated runs (both trainings) and the cached ceiling: no
    exception, the conclusion with its target word, each training's sky in the R² table, heatmaps drawn."""
    import streamlit as st
    from conftest import ROOT
    from streamlit.testing.v1 import AppTest
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["dataset"] = CLEAN
    at.switch_page("pages/robustness.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(i.value for i in at.info)
    assert "Conclusion." in text and any(w in text for w in ("**met**", "**not met**", "**inconclusive**"))
    assert len(at.get("vega_lite_chart")) + len(at.get("arrow_vega_lite_chart")) >= 2
    assert any("each training's own sky" in c.value for c in at.caption)
