"""The digest: verdicts flip with the numbers, missing runs read 'not run', and every number of
ours in it is the registry's number (the mean over the runs its [rN] reference lists in the run index)."""
from __future__ import annotations

import json

import pytest

from core import data
from core.analysis import digest, hypotheses
from core.engine import registry, train

DS = "digest-test"


@pytest.fixture(scope="module")
def ds(artifacts_dir):
    if DS not in data.list_datasets():
        data.build(name=DS, n=1000, seed=17)   # 150 test stars: enough to show R² < 0.05 beyond 2 bootstrap SE
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
    hyps, c = hypotheses.evaluate("quick", DS)
    meta = [h for h in hyps if h["key"] == "metadata"][0]
    assert meta["verdict"] == "verified", meta["evidence"].text()
    target = meta["evidence"].runs()[0]
    old = target.metrics["r2"]
    try:
        set_r2(target.run_id, 0.4)
        hyps2, _ = hypotheses.evaluate("quick", DS)
        assert [h for h in hyps2 if h["key"] == "metadata"][0]["verdict"] == "refuted"
    finally:
        set_r2(target.run_id, old)


def test_missing_runs_read_not_run(ds):
    hyps, _ = hypotheses.evaluate("quick", DS)
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
        for v, rids in pairs:                  # a number is the mean R^2 of the runs its [rN] lists
            rows = [registry.get(con, rid) for rid in rids]
            assert rows and all(row is not None and row["status"] == "done" for row in rows)
            mean = sum(row["metrics"]["r2"] for row in rows) / len(rows)
            assert abs(mean - v) < 5e-4, (rids, v, mean)
    en, zh = digest.build("quick", DS, lang="en"), digest.build("quick", DS, lang="zh")
    assert sorted(digest.numbers_with_runs(en)) == sorted(digest.numbers_with_runs(zh))
    assert "## 结论" in zh and "## The answer" in en


class FakeCtx:
    """Stands in for hypotheses.Ctx: results by (model, noise) or by spec id, no registry."""

    def __init__(self, by_model=None, by_spec=None):
        import types
        self.profile, self.dataset, self.con = "quick", DS, None
        mk = lambda rid, v: types.SimpleNamespace(run_id=rid, metrics={"r2": v})  # noqa: E731
        self.by_model = {k: mk(f"{k[0][:6]}{k[1]}".ljust(16, "0"), v) for k, v in (by_model or {}).items()}
        self.by_spec = {k: mk(f"spec{k}".ljust(16, "0"), v) for k, v in (by_spec or {}).items()}

    def get(self, model, noise, inputs=None, **params):
        return self.by_model.get((model, noise))

    def get_spec(self, spec):
        return self.by_spec.get(spec["id"])


def test_finetune_verdict_flips():
    assert hypotheses.h_finetune(FakeCtx({("blindspot_head", 1.0): 0.40, ("blindspot_finetune", 1.0): 0.47}))[0] == "verified"
    assert hypotheses.h_finetune(FakeCtx({("blindspot_head", 1.0): 0.46, ("blindspot_finetune", 1.0): 0.47}))[0] == "refuted"
    assert hypotheses.h_finetune(FakeCtx({("blindspot_head", 1.0): 0.46}))[0] == "not run"


def test_latent_extraction_verdict_flips(monkeypatch):
    import numpy as np
    import pandas as pd

    from core.analysis import latent

    def grid_with(team_r2, other_r2):
        rows = [{"variant": "flux", "noise": 1.0, "label": "logg", "probe": "ridge", "layer": "enc_pre_latent",
                 "runs_as": "seg_mean_K8", "r2": team_r2, "spec": {"id": 1}},
                {"variant": "flux", "noise": 1.0, "label": "logg", "probe": "ridge", "layer": "enc_pre_latent",
                 "runs_as": "flat", "r2": other_r2, "spec": {"id": 2}}]
        return pd.DataFrame(rows)

    for team, other, want in ((0.33, 0.34, "verified"), (0.33, 0.38, "refuted")):
        monkeypatch.setattr(latent, "grid", lambda *a, **k: grid_with(team, other))
        verdict, ev = hypotheses.h_latent_best(FakeCtx(by_spec={1: team, 2: other}))
        assert verdict == want, (team, other, verdict)
        assert f"{team:.3f}" in ev.text()
    monkeypatch.setattr(latent, "grid", lambda *a, **k: grid_with(np.nan, 0.4))
    assert hypotheses.h_latent_best(FakeCtx(by_spec={2: 0.4}))[0] == "not run"
    # only the team's own cell has run (the error_ablation suite's probe): nothing to call it the best of
    monkeypatch.setattr(latent, "grid", lambda *a, **k: grid_with(0.33, np.nan))
    assert hypotheses.h_latent_best(FakeCtx(by_spec={1: 0.33}))[0] == "not run"


def test_close_runs_are_inconclusive_and_clear_wins_are_not():
    """The K rule compares two runs with the bootstrap spread of their R^2 difference: a gap inside
    2 SE reads 'inconclusive', a clear gap flips the verdict."""
    import types

    import numpy as np
    rng = np.random.default_rng(0)
    y = rng.normal(3.0, 1.0, 900)
    idx = np.arange(900)

    def run(rid, noise_sd):
        pred = y + rng.normal(0, noise_sd, y.size)
        r2v = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
        return types.SimpleNamespace(run_id=rid.ljust(16, "0"), metrics={"r2": float(r2v)},
                                     predictions=lambda p=pred: {"index": idx, "y_true": y, "y_pred": p})

    def ctx(a, b):
        c = FakeCtx()
        c.get = lambda model, noise, inputs=None, **p: {256: a, 512: b}[p["K"]]
        return c

    good, close, bad = run("a", 0.30), run("b", 0.305), run("c", 0.60)
    assert hypotheses.h_k256(ctx(good, bad))[0] == "verified"
    assert hypotheses.h_k256(ctx(bad, good))[0] == "refuted"
    assert hypotheses.h_k256(ctx(good, close))[0] == "inconclusive"
    d, se = hypotheses.r2_gap(good, close)
    assert abs(d) <= 2 * se and se > 0


def test_html_export_is_one_file_with_the_tables_and_a_chart(ds, tmp_path):
    from html.parser import HTMLParser

    from core import cli
    out = tmp_path / "digest.html"
    assert cli.main(["digest", "--dataset", DS, "--html", str(out), "--lang", "zh"]) == 0
    page = out.read_text(encoding="utf-8")

    class Count(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.srcs, self.rows = {}, [], []

        def handle_starttag(self, tag, attrs):
            self.tags[tag] = self.tags.get(tag, 0) + 1
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])
            if tag == "tr":
                self.rows.append(0)
            if tag in ("td", "th"):
                self.rows[-1] += 1
    p = Count()
    p.feed(page)
    assert p.tags.get("table") == 2 and "假设验证" in page                  # hypotheses and matrix, in Chinese
    assert len(set(p.rows[:1 + 12])) == 1                                   # the hypotheses table is rectangular
    assert p.srcs and all(s.startswith("data:image/png;base64,") for s in p.srcs)   # inline, nothing external
    assert "http://" not in page and "https://" not in page
    body, _ = digest.index_section(digest.build("quick", DS, lang="zh"))
    ids = {r["run_id"] for r in registry.runs(registry.connect(), status="done", dataset=DS)}
    assert all(rid in page for rid in ids)                                  # the footnote came along
    assert cli.main(["digest", "--dataset", DS, "--html", str(tmp_path / "no" / "such" / "x.html")]) == 2
