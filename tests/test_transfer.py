"""The transfer suite and matrix (issue #18, part 4): specs of every variant, models trained on one
physics variant scored on another's test split (cached cells), and which conclusions survive."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core import data
from core.analysis import transfer
from core.data.building import physics_of_name, variant_name
from core.engine import suites, train
from core.engine.suites import transfer as tsuite

BASE = "tt"       # a tiny base data set of our own (the session's sim-quick belongs to other tests)


def test_suite_specs_cover_every_variant_and_share_the_report_runs():
    specs = suites.suite("transfer", "quick")
    assert len(specs) == len(tsuite.VARIANTS) * len(tsuite.METHODS)
    assert {s["noise_level"] for s in specs} == {0.1}
    assert {s["dataset"] for s in specs} == {"sim-quick", "sim-quick+maj0.3", "sim-quick+maj0.5",
                                            "sim-quick+forest1", "sim-quick+forest2"}
    # the variants of the data set as built are the report's and the ceiling suite's own runs
    own = {train.spec_hash(s, "fp") for s in specs if s["dataset"] == "sim-quick"}
    others = {train.spec_hash(s, "fp") for s in suites.suite("report", "quick") + suites.suite("ceiling", "quick")}
    assert len(own) == len(tsuite.METHODS) and own <= others
    # each variant's name is the one `data build --physics` gives, and `train` can build it from its name
    for v in tsuite.VARIANTS[1:]:
        name = tsuite.variant_dataset("quick", None, v)
        assert physics_of_name(name, "quick") == v
        assert variant_name("sim-quick", {"name": v}) == name
    assert physics_of_name("sim-quick", "quick") == "" and physics_of_name("sim-quick+nosuch", "quick") is None
    assert physics_of_name("other", "quick") is None


SIMS_SEEN = []      # the simulator each (faked) likelihood fit of the ceiling was handed


def _fake_likelihood_fit(flux, sigma, templates=None, seed=0, sim=None, device=None):
    """The ceiling's fit costs ~0.4 s a star: here a cheap stand-in that records the simulator it gets."""
    SIMS_SEEN.append(getattr(sim, "physics", None))
    lab = np.column_stack([np.full(len(flux), 5000.0), 3.0 + 10.0 * (flux.mean(axis=1) - 1.0), np.zeros(len(flux))])
    return {"labels": lab, "method": np.array(["fake"] * len(flux)), "ess": np.ones(len(flux))}


@pytest.fixture(scope="module")
def tiny(monkeypatch_module):
    """Three tiny variant data sets (same seed), Ridge and the ceiling (its fit faked) fitted on each."""
    from core.physics import fisher
    monkeypatch_module.setattr(tsuite, "VARIANTS", ("", "maj0.3", "forest1"))
    monkeypatch_module.setattr(tsuite, "METHODS", ("ridge", "likelihood_ceiling"))
    monkeypatch_module.setattr(transfer, "CEILING_STARS", 4)
    monkeypatch_module.setattr(fisher, "likelihood_fit", _fake_likelihood_fit)
    for v in tsuite.VARIANTS:
        data.build(name=tsuite.variant_dataset("quick", BASE, v), n=60, device="cpu", physics=v or None)
    for s in suites.suite("transfer", "quick", BASE):
        train.run(s, log=lambda *a: None)
    return transfer.matrix("quick", BASE)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_matrix_scores_each_model_on_each_variant(tiny):
    m = tiny
    assert m.variants == ["", "maj0.3", "forest1"] and all(m.same_stars.values())
    assert not m.missing_runs and not m.missing_datasets and m.missing_cells == 0
    r = m.r2["ridge"]
    assert r.shape == (3, 3) and np.all(np.isfinite(r))
    assert np.all(np.isfinite(m.r2["likelihood_ceiling"]))
    assert m.n_test == {"ridge": 9, "likelihood_ceiling": 4}
    # the diagonal is the run's own test R^2; an off-diagonal cell is the model on the other test split
    own = train.cached_result(suites.suite("transfer", "quick", BASE)[0])
    assert r[0, 0] == pytest.approx(own.metrics["r2"])
    ds = data.Dataset(m.datasets[1])
    view = ds.view("test", 0.1, own.spec["inputs"], seed=own.spec["seed"])
    pred = own.load_model().predict(view)
    y = view.y[:, 1]
    assert r[0, 1] == pytest.approx(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2), abs=1e-6)
    assert r[0, 1] != pytest.approx(r[0, 0], abs=1e-6)      # another physics, another answer
    # the ceiling fitted on a variant keeps that variant's physics (saved and loaded) and fits with its
    # simulator, on its own test split and on the others' (a fit with the wrong physics)
    ceil = train.cached_result([s for s in suites.suite("transfer", "quick", BASE)
                                if s["model"] == "likelihood_ceiling" and s["dataset"].endswith("maj0.3")][0])
    assert ceil.load_model().physics_["majority_g_extra"] == 0.3
    seen = [p.get("majority_g_extra") if p else None for p in SIMS_SEEN]
    # 3 fits per row (own test split + 2 others): as built with the default simulator (None), the others their own
    assert len(seen) == 9 and seen.count(None) == 3 and seen.count(0.3) == 3
    assert sum(1 for p in SIMS_SEEN if p and p.get("forest_seed") == 1 and p.get("majority_g_extra") == 0.4) == 3


def test_cells_are_cached_and_read_back_without_computing(tiny, artifacts_dir):
    files = sorted((artifacts_dir / "transfer").glob("*.npz"))
    assert len(files) == 2 * 3 * 2          # 2 methods x 3 rows x 2 off-diagonal cells
    again = transfer.matrix("quick", BASE, compute=False)
    for k in tiny.r2:
        np.testing.assert_array_equal(again.r2[k], tiny.r2[k])
    files[0].unlink()
    gap = transfer.matrix("quick", BASE, compute=False)
    assert gap.missing_cells == 1 and np.isnan(np.concatenate([v.ravel() for v in gap.r2.values()])).sum() == 1
    transfer.matrix("quick", BASE)           # computes it again
    assert files[0].exists()


def test_words_and_the_digest_section(tiny):
    text = transfer.conclusion(tiny)
    assert "falls from R²" in text and "transfers best" in text
    md = transfer.digest_section("quick", BASE)
    assert md.startswith("### Transfer across simulator assumptions") and "| Ridge |" in md
    assert "first 4 test stars" in md and "- Survive every variant: " in md and "- Do not survive: " in md
    assert len(md.splitlines()) <= 20      # the digest's budget is 80 lines in all
    full = transfer.markdown("quick", BASE)
    assert "trained on \\ tested on" in full and "the same stars in every variant" in full


def test_nothing_run_says_so():
    m = transfer.matrix("quick", "never-built", compute=False)
    assert not m.cells and len(m.missing_runs) == len(suites.suite("transfer", "quick", "never-built"))
    assert transfer.conclusion(m).startswith("Not run yet")
    assert transfer.digest_section("quick", "never-built") == ""


def _cell(rid, y, pred):
    c = transfer.Cell(rid, np.arange(y.size), y, pred)
    c.metrics = {"r2": float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))}
    return c


def test_a_ranking_that_flips_in_one_variant_does_not_survive():
    rng = np.random.default_rng(0)
    y = rng.uniform(1, 5, 300)
    good, bad = (lambda s: y + rng.normal(0, 0.1, y.size)), (lambda s: y + rng.normal(0, 0.6, y.size))
    # as built and in variant 1 LightGBM is better; in variant 2 Ridge is
    preds = {("lightgbm", 0): good, ("ridge", 0): bad, ("lightgbm", 1): good, ("ridge", 1): bad,
             ("lightgbm", 2): bad, ("ridge", 2): good}
    runs = {k: [_cell(f"{k[0]}{k[1]}", y, f(0))] for k, f in preds.items()}
    cells = {(k[0], k[1], k[1]): v[0] for k, v in runs.items()}
    cells[("lightgbm", 0, 1)] = _cell("x", y, y + rng.normal(0, 0.1, y.size))    # keeps its R^2
    cells[("lightgbm", 0, 2)] = _cell("x", y, y + 0.8)                           # biased: loses it
    r2 = {k: np.full((3, 3), math.nan) for k in ("lightgbm", "ridge")}
    m = transfer.Matrix(["", "a", "b"], ["as built", "a", "b"], ["d0", "d1", "d2"], ["lightgbm", "ridge"],
                        ["LightGBM", "Ridge"], r2, cells, runs, [], [], 0, {0: True, 1: True, 2: True})
    claims = transfer.ranking_claims(m)
    assert [c.text.split(" (")[0] for c in claims] == ["LightGBM beats Ridge"]
    assert [v for _, v, _ in claims[0].verdicts] == ["verified", "refuted"] and claims[0].status == "does not survive"
    keep = {c.text.split(" trained")[0]: c for c in transfer.transfer_claims(m)}
    assert [v for _, v, _ in keep["LightGBM"].verdicts] == ["verified", "refuted"]
    assert keep["LightGBM"].status == "does not survive"
