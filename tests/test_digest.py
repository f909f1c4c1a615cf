"""The digest: verdicts flip with the numbers, missing runs read 'not run', and every number of
ours in it is the registry's number of the run it names."""
from __future__ import annotations

import json

import pytest

from core import data, digest, registry, train

DS = "digest-test"


@pytest.fixture(scope="module")
def ds(artifacts_dir):
    if DS not in data.list_datasets():
        data.build(name=DS, n=400, seed=17)
    for m in ("metadata_ridge", "metadata_lgbm", "ridge"):
        for n in (0.1, 1.0):
            train.run({"model": m, "params": {}, "noise_level": n, "dataset": DS, "seed": 0, "profile": "quick"})
    return DS


def set_r2(run_id, value):
    con = registry.connect()
    row = registry.get(con, run_id)
    m = row["metrics"]
    m["r2"] = value
    con.execute("UPDATE runs SET metrics=? WHERE run_id=?", (json.dumps(m), run_id))


def test_verdict_flips_with_numbers(ds):
    hyps, c = digest.evaluate("quick", DS)
    meta = [h for h in hyps if h["key"] == "metadata"][0]
    assert meta["verdict"] == "verified", meta["evidence"].text()
    target = meta["evidence"].runs()[0]
    old = target.metrics["r2"]
    try:
        set_r2(target.run_id, 0.4)
        hyps2, _ = digest.evaluate("quick", DS)
        assert [h for h in hyps2 if h["key"] == "metadata"][0]["verdict"] == "refuted"
    finally:
        set_r2(target.run_id, old)


def test_missing_runs_read_not_run(ds):
    hyps, _ = digest.evaluate("quick", DS)
    by = {h["key"]: h["verdict"] for h in hyps}
    assert by["dilation"] == "not run" and by["fusion"] == "not run" and by["ceiling"] == "not run"
    md = digest.build("quick", DS, lang="en")
    assert "not run" in md
    assert "未运行" in digest.build("quick", DS, lang="zh")


def test_every_number_is_the_registrys(ds):
    for lang in ("en", "zh"):
        md = digest.build("quick", DS, lang=lang)
        pairs = digest.numbers_with_runs(md)
        assert len(pairs) >= 6
        con = registry.connect()
        for v, rid in pairs:
            row = registry.get(con, rid)
            assert row is not None and row["status"] == "done"
            assert abs(row["metrics"]["r2"] - v) < 5e-4, (rid, v, row["metrics"]["r2"])
    en, zh = digest.build("quick", DS, lang="en"), digest.build("quick", DS, lang="zh")
    assert sorted(digest.numbers_with_runs(en)) == sorted(digest.numbers_with_runs(zh))
    assert "核心结论汇总" in zh and "Core conclusions" in en
