"""Verdicts with both errors (#16 parts 2 and 5): a gap is judged against sqrt(SE_boot^2 + sd_seed^2)
(core/analysis/verdicts.py), a rule with a threshold compares gap - threshold, a verdict on single runs
says so; the digest states its caveats, keeps run ids to its index and writes rectangular tables."""
from __future__ import annotations

import re
import types

import numpy as np
import pytest

from core import data
from core.analysis import digest, hypotheses, verdicts
from core.engine import registry, train

DS = "verdicts-test"


# --------------------------------------------------------------------------- synthetic arms, no registry
def _runs(y, r2_targets, rng, tag, perm=None):
    """Replicate runs whose test R^2 are near r2_targets (predictions y + noise), with stored predictions;
    perm stores the rows in another order (pairing must go by the test index)."""
    out = []
    idx = np.arange(y.size)
    for k, t in enumerate(r2_targets):
        z = rng.normal(0, 1, y.size)
        pred = y + np.sqrt((1 - t) * y.var()) * (z - z.mean()) / z.std()
        r2v = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
        o = np.arange(y.size) if perm is None else perm
        out.append(types.SimpleNamespace(
            run_id=f"{tag}{k}".ljust(16, "0"), metrics={"r2": float(r2v)},
            predictions=lambda o=o, p=pred: {"index": idx[o], "y_true": y[o], "y_pred": p[o]}))
    return out


def _flat(runs):
    """The same runs with every replicate's R^2 set to their mean: no training spread, same gap, same
    predictions (so the same bootstrap)."""
    m = float(np.mean([r.metrics["r2"] for r in runs]))
    return [types.SimpleNamespace(run_id=r.run_id, metrics={"r2": m}, predictions=r.predictions) for r in runs]


def test_a_gap_inside_two_combined_errors_is_inconclusive_and_without_seed_spread_is_not():
    rng = np.random.default_rng(3)
    y = rng.normal(3.0, 1.0, 4000)
    a_runs, b_runs = _runs(y, (0.87, 0.83), rng, "a"), _runs(y, (0.84, 0.82), rng, "b", perm=rng.permutation(4000))
    a, b = verdicts.as_arm(a_runs, "A"), verdicts.as_arm(b_runs, "B")
    est = verdicts.gap(a, b)
    assert abs(est.value - (a.r2 - b.r2)) < 1e-12 and 0.01 < est.value < 0.03
    # the training part is Welch's error of the difference of the two replicate means
    sa, sb = np.std(a.values(), ddof=1), np.std(b.values(), ddof=1)
    assert est.sd_seed == pytest.approx(np.sqrt(sa ** 2 / 2 + sb ** 2 / 2))
    assert est.combined == pytest.approx(np.hypot(est.se_boot, est.sd_seed))
    assert 0 < est.se_boot < est.value / 2 < est.sd_seed          # a small bootstrap SE, a large seed spread
    assert verdicts.judge(est, 0.0) == "inconclusive"
    assert "2 seeds" in est.describe() and "bootstrap" in est.describe()
    # the same gap with the seed spread set to zero: the old verdict (the bootstrap alone decides)
    flat = verdicts.gap(verdicts.as_arm(_flat(a_runs), "A"), verdicts.as_arm(_flat(b_runs), "B"))
    assert flat.value == pytest.approx(est.value) and flat.sd_seed == 0
    assert flat.se_boot == pytest.approx(est.se_boot)
    assert verdicts.judge(flat, 0.0) == "verified"
    assert verdicts.judge(verdicts.gap(verdicts.as_arm(_flat(b_runs), "B"), verdicts.as_arm(_flat(a_runs), "A")),
                          0.0) == "refuted"
    # the bootstrap is paired on the test index (B's rows are stored in another order): two close
    # predictors' gap is known far better than their own SEs combined would say
    p1 = a_runs[0].predictions()["y_pred"] + rng.normal(0, 0.05, y.size)
    perm = rng.permutation(y.size)
    near = types.SimpleNamespace(run_id="near".ljust(16, "0"),
                                 metrics={"r2": float(1 - np.sum((y - p1) ** 2) / np.sum((y - y.mean()) ** 2))},
                                 predictions=lambda: {"index": np.arange(y.size)[perm], "y_true": y[perm],
                                                      "y_pred": p1[perm]})
    a0, b0 = verdicts.as_arm(a_runs[:1], "A0"), verdicts.as_arm([near], "near")
    unpaired = np.hypot(verdicts.level(a0).se_boot, verdicts.level(b0).se_boot)
    assert verdicts.gap(a0, b0).se_boot < 0.2 * unpaired


def test_a_rule_with_a_threshold_judges_gap_minus_threshold():
    est = verdicts.Estimate(value=0.03, se_boot=0.006, sd_seed=0.0, seeds=[2, 2])
    assert verdicts.judge(est, 0.0) == "verified"           # 0.03 > 2 x 0.006
    assert verdicts.judge(est, 0.02) == "inconclusive"      # 0.03 - 0.02 = 0.01 < 2 x 0.006
    assert verdicts.judge(verdicts.Estimate(0.01, 0.002, 0.0, [2, 2]), 0.02) == "refuted"
    assert verdicts.decide(0.05, 0.02) == "verified" and verdicts.decide(-0.05, 0.02) == "refuted"

    def ctx(ft, fz):
        c = types.SimpleNamespace(profile="quick", dataset=DS, con=None)
        mk = lambda tag, vals: [types.SimpleNamespace(run_id=f"{tag}{i}".ljust(16, "0"), metrics={"r2": v})  # noqa: E731
                                for i, v in enumerate(vals)]
        c.get = lambda model, noise, inputs=None, **p: {"blindspot_finetune": mk("ft", ft), "blindspot_head": mk("fz", fz)}[model]
        return c

    # the case: fine-tuning ahead by 0.04 against a 0.02 threshold, with a seed spread of ~0.016
    verdict, ev = hypotheses.h_finetune(ctx([0.50, 0.53], [0.48, 0.47]))
    assert verdict == "inconclusive" and ev.threshold == "gap > 0.02"
    assert ev.stat.startswith("gap 0.040 ± 0.016 (2 seeds")
    assert hypotheses.h_finetune(ctx([0.515, 0.515], [0.475, 0.475]))[0] == "verified"   # no spread: 0.04 - 0.02 > 0
    assert hypotheses.h_finetune(ctx([0.49, 0.49], [0.475, 0.475]))[0] == "refuted"      # gap 0.015 < 0.02


def test_a_single_replicate_verdict_says_its_training_spread_is_unknown():
    rng = np.random.default_rng(5)
    y = rng.normal(3.0, 1.0, 900)
    a, b = verdicts.as_arm(_runs(y, (0.9,), rng, "a"), "A"), verdicts.as_arm(_runs(y, (0.7,), rng, "b"), "B")
    est = verdicts.gap(a, b)
    assert est.sd_seed == 0 and est.combined == est.se_boot > 0
    assert "single run, training spread unknown" in est.describe()
    # one arm with replicates, one without: the known part is used and the other arm is named
    c = verdicts.gap(verdicts.as_arm(_runs(y, (0.9, 0.88), rng, "c"), "C"), b)
    assert c.sd_seed > 0 and "training spread unknown for B" in c.describe()
    single = [types.SimpleNamespace(run_id="ft".ljust(16, "0"), metrics={"r2": 0.5})]
    other = [types.SimpleNamespace(run_id="fz".ljust(16, "0"), metrics={"r2": 0.4})]
    cx = types.SimpleNamespace(get=lambda model, noise, inputs=None, **p: single if model == "blindspot_finetune" else other)
    verdict, ev = hypotheses.h_finetune(cx)
    assert verdict == "verified" and "single run, training spread unknown" in ev.stat


def test_cells_keep_a_row_one_row():
    row = digest._row(["a | b", "two\n    lines", "x"])
    assert "\n" not in row and len(_cells(row)) == 3


# --------------------------------------------------------------------------- the digest on a small registry
def _cells(line: str) -> list[str]:
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def _tables(md: str) -> list[list[str]]:
    out, cur = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            out.append(cur)
            cur = []
    return out


@pytest.fixture(scope="module")
def ds(artifacts_dir):
    if DS not in data.list_datasets():
        data.build(name=DS, n=1000, seed=23)
    base = {"params": {}, "dataset": DS, "seed": 0, "profile": "quick"}
    for m in ("metadata_ridge", "metadata_lgbm", "ridge"):
        for n in (0.1, 1.0):
            for rep in ((0, 1) if m != "metadata_lgbm" else (0,)):     # a second training replicate of two
                train.run(dict(base, model=m, noise_level=n, **({"replicate": rep} if rep else {})))
    for inp in ("error", "error_shuffled"):                              # the error shortcut and its control
        train.run(dict(base, model="ridge", noise_level=1.0, inputs=inp))
    return DS


def test_the_digest_is_valid_markdown_with_its_caveats_and_run_ids_in_the_index(ds):
    d = data.Dataset(DS)
    con = registry.connect()
    ids = {r["run_id"] for r in registry.runs(con, status="done", dataset=DS)}
    assert len(ids) == 12
    for lang in ("en", "zh"):
        md = digest.build("quick", DS, lang=lang)
        tables = _tables(md)
        assert len(tables) == 2                                          # hypotheses, the matrix
        assert len(md.splitlines()) <= 80                                # a document to paste (#21)
        for t in tables:                                                 # every row has the header's cells
            n = len(_cells(t[0]))
            assert all(len(_cells(row)) == n for row in t), t[0]
            assert re.fullmatch(r"\|(---\|)+", t[1]) and t[1].count("---") == n
        hyp = next(t for t in tables if len(_cells(t[0])) == 5)
        assert len(hyp) == 2 + len(hypotheses.HYPOTHESES)
        body, index = digest.index_section(md)
        assert index and not any(rid in body for rid in ids)            # run ids only in the footnote
        assert all(rid in index for rid in ids)
        # the caveats: which data set, how many spectra, how many seeds
        caveats = body.split("\n## ")[1]
        assert f"`{DS}`" in caveats and "simulator" in caveats
        assert all(f"{d.splits[k].size:,}" in caveats for k in ("train", "val", "test"))
        assert re.search(r"(\d+) (are means over|个是) 2 ", caveats)
        # how close to the limit, with how much data (#17): here only the report's own Ridge rung has run
        assert re.search(r"How close to the physical limit.*On \d[\d,]* training spectra the best learned model", body)
    en = digest.build("quick", DS, lang="en")
    assert "our simulated data, not the team's" in en
    hyps, _ = hypotheses.evaluate("quick", DS)
    by = {h["key"]: h for h in hyps}
    assert by["metadata"]["verdict"] == "verified" and "2 seeds" in by["metadata"]["stat"]
    err = by["error"]["evidence"].text()
    assert "control, the error shuffled across stars" in err and "Ridge on error shuffled across stars (control) @1" in err
    assert "single run, training spread unknown" in by["error"]["stat"]
    assert all(h["threshold"] for h in hyps if h["verdict"] != "not run")
