"""The Summary page (the landing page) and the one-sentence conclusion every result page opens with
(issue #21 parts 1-2), in Streamlit's AppTest over a small registry: Ridge and LightGBM of the report
suite with two training replicates, and the likelihood ceiling, at both noise levels."""
from __future__ import annotations

import re

import pytest
from conftest import ROOT
from streamlit.testing.v1 import AppTest

from core.engine import executor, suites

PM = re.compile(r"-?\d+\.\d{3} ± \d+\.\d{3}")


def _page(name: str, dataset: str, timeout: float = 180) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=timeout)
    at.session_state["dataset"] = dataset
    at.session_state["profile"] = "quick"
    at.session_state["noise_level"] = 1.0
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture
def fresh(tmp_path, tiny_dataset, artifacts_dir, monkeypatch):
    """An artifacts folder with the tiny data set and no runs."""
    import shutil
    shutil.copytree(artifacts_dir / "data", tmp_path / "data")
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path))
    return tmp_path


def test_empty_registry_says_what_to_run(fresh, tiny_dataset):
    at = _page("summary", tiny_dataset)
    _ok(at)
    assert [t.value for t in at.title] == ["Summary"]
    msg = " ".join(i.value for i in at.info)
    assert "Nothing has finished" in msg and "--suite report" in msg and re.search(r"~\d+(\.\d)? min|cost unknown", msg)
    assert any(b.label.startswith("Queue the report suite") for b in at.button)


@pytest.fixture(scope="module")
def small(tiny_dataset):
    from core.engine.spec import replicates
    rep = [s for s in suites.suite("report", "quick", tiny_dataset) if s["model"] in ("ridge", "lightgbm")]
    specs = replicates(rep, 2) + suites.suite("ceiling", "quick", tiny_dataset)
    res = executor.run_many(specs, workers=1, log=lambda m: None)
    assert not any(isinstance(r, Exception) for r in res), res
    return tiny_dataset


def test_numbers_of_the_summary(small):
    from core.analysis import conclusions
    best = conclusions.best_per_noise("quick", small)
    assert [b["noise"] for b in best] == [0.1, 1.0]
    for b in best:
        assert b["method"] and b["n_seeds"] >= 1 and PM.search(b["r2_text"])     # other modules may add methods
        assert b["ceiling"] and "%" in b["ceiling"] and b["runner_up"]
    team = conclusions.team_differences("quick", small)
    assert 1 <= len(team) <= 3 and all(PM.search(v) for v in team["ours"])
    diffs = [abs(float(v.split(" ± ")[0])) for v in team["ours − team"]]
    assert diffs == sorted(diffs, reverse=True)
    todo = conclusions.suites_not_run("quick", small).set_index("suite")
    assert todo.loc["report", "not finished"] <= len(suites.suite("report", "quick", small)) - 4
    assert todo.loc["ceiling", "not finished"] == 0
    ch = conclusions.changes_since("2000-01-01", small)
    assert len(ch) >= 6 and ch["change"].isna().all()        # every run a first fit
    assert conclusions.changes_since("2999-01-01", small).empty


def test_estimate_is_the_training_pages(small):
    """One estimate for the Training page and the Summary: medians of earlier fits, per model."""
    from core.analysis import conclusions
    typ = conclusions.typical_fit_seconds("quick")
    assert {"ridge", "lightgbm"} <= set(typ)
    specs = suites.suite("report", "quick", small)
    e = conclusions.estimate(specs, "quick", typical=typ, n_workers=1)
    ridge = [s for s in e["todo"] if s["model"] == "ridge"]
    assert not ridge and e["n_done"] >= 4
    lg = [s for s in specs if s["model"] == "lightgbm"]
    assert conclusions.estimate(lg, "quick", typical=typ)["n_todo"] == 0
    assert conclusions.cost_phrase(conclusions.estimate(lg, "quick", typical=typ)).startswith("Nothing to fit")
    fake = dict(typ, **{"mlp@converge": 30.0})   # the MLP trains to convergence: its own timings
    unrun = [dict(s, seed=987) for s in specs if s["model"] == "mlp"]   # other modules may have fitted the mlp here
    e = conclusions.estimate(unrun, "quick", typical=fake, n_workers=1)
    assert e["seconds"] == pytest.approx(60.0) and "~1.0 min" in conclusions.cost_phrase(e)


def test_summary_page(small):
    at = _page("summary", small)
    _ok(at)
    assert [t.value for t in at.title] == ["Summary"]
    heads = [s.value for s in at.subheader]
    assert heads == ["Best predictor", "Biggest differences from the team's report", "Verdicts", "What changed",
                     "What has not run"]
    metrics = [m.value for m in at.metric]
    assert len(metrics) == 2 and all(PM.search(v) for v in metrics), metrics
    md = " ".join(m.value for m in at.markdown)
    assert re.search(r"best predictor is \*\*[^*]+\*\*, R² = \*\*" + PM.pattern, md), md
    assert "of the physics ceiling's R²" in md
    verdicts = [d.value for d in at.table if "verdict" in d.value.columns]
    assert verdicts and list(verdicts[0].columns[:3]) == ["hypothesis", "verdict", "gap ± error"]
    assert len(verdicts[0]) == 12 and "not run" in set(verdicts[0]["verdict"])
    # a suite that has not run: its line with a cost, and a queue button
    assert re.search(r"`dilation`: \*\*\d+ of 10\*\* specs not finished, (~\d+(\.\d)? min|cost unknown)", md), md
    assert re.search(r"`report`: \*\*\d+ of 28\*\* specs not finished, (~\d+(\.\d)? min|cost unknown)", md), md
    assert any(b.label.startswith("Queue the") for b in at.button)
    assert "runs** finished since" in md
    import datetime as dt
    later = dt.date.today() + dt.timedelta(days=2)
    at.date_input(key="summary_since").set_value(later).run()
    _ok(at)
    assert any(f"No run of this data set finished since {later.isoformat()}" in c.value for c in at.caption)


def test_queue_button_queues_the_missing_runs(small, monkeypatch):
    from pages._ui import job_panels
    got = []
    monkeypatch.setattr(job_panels, "launch", lambda specs, label, tok: got.append((len(specs), label)))
    at = _page("summary", small)
    at.selectbox(key="summary_suite").set_value("dilation").run()
    at.button(key="queue_summary_missing").click().run()
    _ok(at)
    # AppTest runs the script in this process: the monkeypatched launch saw the click
    assert len(got) == 1 and got[0][1] == "dilation, quick" and 0 < got[0][0] <= 10


@pytest.mark.parametrize("page", ["dilation", "saliency", "latent", "error_vs_flux"])
def test_result_page_opens_with_its_conclusion(small, page):
    at = _page(page, small)
    _ok(at)
    first = at.main.info[0].value
    assert first.startswith("**Conclusion.**"), first
    assert PM.search(first) or re.search(r"not run: \d+ of \d+ specs .*(~\d+(\.\d)? min|cost unknown)", first), first
    if "not run" in first:
        assert at.button(key=f"queue_conclusion_{page}").label.startswith("Queue the")


def test_conclusion_sentences(small):
    from core.analysis import conclusions
    d = conclusions.page("dilation", "quick", small)
    assert d.verdict == "not run" and d.text.startswith("Dilation 2 is the best dilation")
    assert re.search(r"not run: \d+ of 10 specs of the `dilation` suite", d.text) and d.todo
    e = conclusions.page("error_vs_flux", "quick", small)
    assert e.text.startswith("The error vector alone predicts log g") and e.verdict == "not run"


def test_app_opens_on_the_summary(small):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["dataset"] = small
    at.run()
    _ok(at)
    assert [t.value for t in at.title] == ["Summary"]
    assert any(PM.search(m.value) for m in at.metric)


def test_cost_keys_keep_converged_and_smaller_fits_apart():
    """A fit to convergence costs 2-4x a budget fit and a learning-curve rung less than a full fit: the
    estimate looks each up under its own key, never the median of a mixture."""
    from core.engine import estimates
    from core.engine.spec import make_spec
    assert estimates.cost_key(make_spec("mlp", {}, 1.0, "quick", "d")) == "mlp@converge"
    assert estimates.cost_key(make_spec("mlp", {"training": "budget"}, 1.0, "quick", "d")) == "mlp"
    assert estimates.cost_key(make_spec("mlp", {}, 1.0, "quick", "d", n_train=500)) == "mlp@converge@n500"
    assert estimates.cost_key(make_spec("ridge", {}, 1.0, "quick", "d")) == "ridge"
    assert estimates.cost_key(make_spec("mlp", {"noise_mode": "stream"}, 1.0, "quick", "d")) == "mlp@converge@stream"
    specs = [make_spec("mlp", {}, 1.0, "quick", "d", seed=s) for s in (991, 992)]
    e = estimates.estimate(specs, "quick", typical={"mlp": 5.0, "mlp@converge@n500": 1.0, "mlp@converge": 20.0},
                           n_workers=1)
    assert e["seconds"] == 40.0
