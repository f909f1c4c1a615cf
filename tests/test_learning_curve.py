"""Learning curves against the ceiling (#17, part 3): the spec key n_train (absent: today's run ids;
present: a new id and the first n_train training rows; checked), the learning_curve suite, its table
(core/analysis/learning.py) and the Limit page."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, TINY_N, private_registry
from streamlit.testing.v1 import AppTest

from core import config
from core.analysis import learning as analysis
from core.engine import registry, spec, suites, train
from core.engine.suites import learning

FP = "snapshot-fingerprint"
SNAPSHOT = json.loads((Path(__file__).with_name("data") / "spec_hashes.json").read_text())


@pytest.fixture()
def no_data(tmp_path, monkeypatch):
    """An artifacts folder without data sets: suites use the profiles' nominal sizes."""
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """A registry of this module's own, with a 200-spectrum 'sim-quick'."""
    yield from private_registry(tmp_path_factory, "learning")


# --------------------------------------------------------------------------- n_train in the spec
def test_absent_n_train_keeps_todays_run_ids(no_data):
    report = suites.suite("report", "quick")
    assert [train.spec_hash(s, FP) for s in report] == SNAPSHOT["quick/report"]
    ridge = next(s for s in report if s["model"] == "ridge" and s["noise_level"] == 1.0)
    rid = SNAPSHOT["quick/report"][report.index(ridge)]
    assert "n_train" not in spec.normalise_spec(ridge)
    # n_train equal to the profile's max_train is what the absent key trains on: same id
    assert train.spec_hash(dict(ridge, n_train=config.profile("quick")["max_train"]), FP) == rid
    # n_train=None (make_spec's default) adds nothing
    assert spec.make_spec("ridge", {}, 1.0, "quick", suite="report") == ridge


def test_n_train_changes_the_id_and_limits_the_training_rows(private):
    s = spec.make_spec("ridge", {}, 1.0, "quick", "sim-quick", n_train=50)
    assert spec.normalise_spec(s)["n_train"] == 50
    assert train.spec_hash(s, FP) != train.spec_hash({k: v for k, v in s.items() if k != "n_train"}, FP)
    r = train.run(s, log=lambda *a: None)
    assert r.metrics["n_train"] == 50
    assert train.cached_result(s).run_id == r.run_id
    full = train.run({k: v for k, v in s.items() if k != "n_train"}, log=lambda *a: None)
    assert full.run_id != r.run_id and full.metrics["n_train"] > 50


def test_invalid_n_train_raises_a_clear_error(private):
    from core.data import Dataset
    have = int(Dataset("sim-quick").splits["train"].size)
    base = spec.make_spec("ridge", {}, 1.0, "quick", "sim-quick")
    for bad in (0, -5, 2.5, "100", True):
        with pytest.raises(ValueError, match="n_train must be a positive whole number"):
            spec.normalise_spec(dict(base, n_train=bad))
    with pytest.raises(ValueError, match=f"n_train={have + 1:,} is more than the {have:,} spectra") as e:
        spec.normalise_spec(dict(base, n_train=have + 1))
    assert "\n" not in str(e.value)          # the CLI prints it as one line
    assert spec.normalise_spec(dict(base, n_train=have))["n_train"] == have


# --------------------------------------------------------------------------- the suite
def test_the_suite_exists_for_every_profile(no_data):
    assert learning.ladder(2100) == [500, 1050, 2100]
    assert learning.ladder(4200) == [500, 1050, 2100, 4200]
    assert learning.ladder(700) == [350, 700] and learning.ladder(300) == [300]
    known = {i for k, v in SNAPSHOT.items() if k.split("/")[1] in ("report", "noise_ablation", "ceiling")
             and "@" not in k and not k.endswith("/deps") for i in v}
    for prof in config.PROFILES:
        specs = suites.suite("learning_curve", prof)
        learned = [s for s in specs if s["model"] != "likelihood_ceiling"]
        ceiling = [s for s in specs if s["model"] == "likelihood_ceiling"]
        assert len(ceiling) == 1 and ceiling[0]["noise_level"] == 1.0
        assert ceiling[0] in suites.suite("ceiling", prof)
        assert {s["model"] for s in learned} == set(learning.METHODS)
        assert {s["noise_level"] for s in specs} == {1.0}
        rungs = sorted({s.get("n_train", config.profile(prof)["max_train"]) for s in learned})
        assert rungs[0] == 500 and rungs[-1] == config.profile(prof)["max_train"]
        for m in learning.METHODS:
            modes = {learning.mode_of(s) for s in learned if s["model"] == m}
            assert modes == ({"fixed", "fresh"} if m in learning.TORCH else {"fixed"}) | (
                {"stream"} if m in learning.STREAM else set())
        # the largest rung has no n_train key: the report's / noise_ablation's own runs (cache hits); the
        # stream of new stars trains as many per epoch as that rung holds
        top = [s for s in learned if "n_train" not in s and learning.mode_of(s) != "stream"]
        assert len(top) == len(learning.METHODS) + len(learning.TORCH)
        streams = [s for s in learned if learning.mode_of(s) == "stream"]
        assert sorted(s["model"] for s in streams) == sorted(learning.STREAM) and not any("n_train" in s for s in streams)
        if prof == "quick":
            assert rungs == [500, 1050, 2100] and len(specs) == 25 + len(learning.STREAM)
        for s in top + ceiling:
            assert train.spec_hash(s, FP) in known
        for s in streams:                     # the report's spec but for the noise mode: a run of its own
            assert train.spec_hash(s, FP) not in known


def test_the_suite_tops_out_at_what_the_data_set_holds(private):
    specs = suites.suite("learning_curve", "quick")
    assert not any("n_train" in s for s in specs)     # 140 training spectra: only the key-less rung
    for s in specs:
        spec.normalise_spec(s)                       # every spec valid on this data set


# --------------------------------------------------------------------------- the table and the page
@pytest.fixture(scope="module")
def small_registry(private):
    """Ridge at every rung of a ladder lowered to fit the 140 training spectra (40, 140)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(learning, "LOWEST", 40)
        mp.setattr(learning, "FLOOR", 20)
        specs = suites.suite("learning_curve", "quick")
        for s in specs:
            if s["model"] == "ridge":
                train.run(s, log=lambda *a: None)
        yield specs


def test_the_table_has_one_row_per_method_mode_and_size(small_registry):
    specs = small_registry
    df = analysis.table("quick", specs=specs)
    keys = list(zip(df["method"], df["mode"], df["n_train"]))
    assert len(keys) == len(set(keys)) == len(specs) - 1          # the ceiling is not a row
    assert set(df["n_train"]) == {40, TINY_N * 7 // 10}
    ridge = df[df["model"] == "ridge"]
    assert len(ridge) == 2 and ridge["r2"].notna().all() and (ridge["mode"] == "fixed").all()
    assert df[df["model"] != "ridge"]["r2"].isna().all()
    assert set(df[df["model"] == "mlp"]["mode"]) == {"fixed", "fresh", "stream"}
    text = analysis.conclusion(df, None)
    assert "Ridge" in text and "R²" in text
    assert math.isnan(df["of_ceiling"].iloc[0])                    # no ceiling run: no fraction
    md = analysis.markdown("quick")
    assert "| Ridge | fixed |" in md and "not run yet" in md


def test_a_stream_run_enters_the_curve_at_the_stars_it_saw(small_registry, monkeypatch):
    """The infinite-data end: the MLP trained on new stars every epoch is a row of mode "stream" placed at the
    distinct stars it saw (epochs x the training split), in its own column of the markdown table, and the
    conclusion names it."""
    from models import trainer
    monkeypatch.setattr(trainer, "CONVERGE_EPOCHS", 6)                  # a few epochs of 140 new stars each
    s = next(x for x in small_registry if x["model"] == "mlp" and learning.mode_of(x) == "stream")
    r = train.run(s, log=lambda *a: None)
    assert r.metrics["stars_seen"] == r.metrics["best_epoch"] * (TINY_N * 7 // 10)
    df = analysis.table("quick", specs=small_registry)
    row = df[(df["model"] == "mlp") & (df["mode"] == "stream")].iloc[0]
    assert row["n_train"] == r.metrics["stars_seen"] and row["r2"] == pytest.approx(r.metrics["r2"])
    text = analysis.conclusion(df, None)
    assert "Ridge" in text and f"{int(r.metrics['stars_seen']):,} distinct stars seen" in text
    md = analysis.markdown("quick")
    line = next(x for x in md.splitlines() if x.startswith("| MLP") and "| stream |" in x)
    assert f"{int(r.metrics['stars_seen']):,} seen" in line
    header = next(x for x in md.splitlines() if x.startswith("| method"))
    assert "new stars every epoch" in header and header.count("|") == line.count("|")


def _page() -> AppTest:
    import streamlit as st
    st.cache_data.clear()      # the page caches its table for 10 s per data set fingerprint: the same in both tests
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["dataset"] = "sim-quick"
    at.switch_page("pages/limit.py")
    return at.run()


def test_the_limit_page_renders_on_an_empty_registry(private, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()                 # the same data set, an empty registry beside it
    shutil.copy(private / "data" / "sim-quick.h5", tmp_path / "data" / "sim-quick.h5")
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path))
    assert not registry.runs(registry.connect())
    at = _page()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value.startswith("Limit")
    assert any("No learning-curve run" in i.value for i in at.info)


def test_the_limit_page_renders_on_a_small_registry(private):
    s = spec.make_spec("ridge", {}, 1.0, "quick", "sim-quick", suite="learning_curve")
    train.run(s, log=lambda *a: None)
    ceiling = next(c for c in suites.suite("learning_curve", "quick") if c["model"] == "likelihood_ceiling")
    c = train.run(ceiling, log=lambda *a: None)          # ~30 test spectra: a few seconds
    assert analysis.ceiling_r2("quick") == pytest.approx(c.metrics["r2"])
    at = _page()
    assert not at.exception, [e.value for e in at.exception]
    charts = [json.loads(x.proto.spec) for x in at.get("vega_lite_chart")]
    assert charts and len(charts[0]["layer"]) == 4        # ceiling band, lines, sd bars, ceiling rule
    assert any("Ridge" in i.value and "of the ceiling" in i.value for i in at.info)


def test_the_stream_is_judged_against_fresh_noise_on_the_data_set_with_both_seed_errors():
    import pandas as pd
    rows = [{"method": "MLP", "model": "mlp", "mode": "fresh", "n_train": 2100, "r2": 0.759, "r2_sd": 0.004,
             "n_seeds": 2, "of_ceiling": 0.905, "run_id": "a"},
            {"method": "MLP", "model": "mlp", "mode": "stream", "n_train": 100800, "r2": 0.743, "r2_sd": 0.020,
             "n_seeds": 2, "of_ceiling": 0.886, "run_id": "b"}]
    text = analysis.conclusion(pd.DataFrame(rows, columns=analysis.COLUMNS), 0.838)
    assert "100,800 distinct stars seen" in text and "-0.016 ± 0.014 (inconclusive" in text   # hypot(.020, .004) / sqrt 2
    rows[1].update(r2=0.80, r2_sd=0.005)                    # outside 2 combined errors: a gain
    assert "+0.041 ± 0.005 (a gain)" in analysis.conclusion(pd.DataFrame(rows, columns=analysis.COLUMNS), 0.838)
    rows[0]["r2_sd"] = rows[1]["r2_sd"] = float("nan")      # one seed each: no verdict
    assert "(single runs)" in analysis.conclusion(pd.DataFrame(rows, columns=analysis.COLUMNS), 0.838)
