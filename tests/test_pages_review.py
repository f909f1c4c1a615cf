"""The review-meeting fixes of the Overview and Training pages and the one set of method labels
(issue #21 parts 3-5), in Streamlit's AppTest over a small registry: Ridge, LightGBM and the MLP of the
report suite at noise 0.1, and the likelihood ceiling."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from conftest import ROOT
from streamlit.testing.v1 import AppTest

from core.analysis import report
from core.engine import executor, jobs, suites


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


@pytest.fixture(scope="module")
def reg(tiny_dataset, artifacts_dir, tmp_path_factory):
    """Its own artifacts folder (the other modules count the runs of the session's registry)."""
    import os
    d = tmp_path_factory.mktemp("review")
    shutil.copytree(artifacts_dir / "data", d / "data")
    old = os.environ["LOGG_ARTIFACTS"]
    os.environ["LOGG_ARTIFACTS"] = str(d)
    rep = [s for s in suites.suite("report", "quick", tiny_dataset) if s["noise_level"] == 0.1
           and s["model"] in ("ridge", "lightgbm", "mlp")]
    ceil = [s for s in suites.suite("ceiling", "quick", tiny_dataset) if s["noise_level"] == 0.1]
    res = executor.run_many(rep + ceil, workers=1, log=lambda m: None)
    assert not any(isinstance(r, Exception) for r in res), res
    yield tiny_dataset
    os.environ["LOGG_ARTIFACTS"] = old
    import streamlit as st
    st.cache_data.clear()          # the pages' caches are keyed by data set, not by artifacts folder


@pytest.fixture
def private(tmp_path, tiny_dataset, artifacts_dir, monkeypatch):
    """An artifacts folder of its own (the tiny data set, no runs, no jobs) and no worker process."""
    shutil.copytree(artifacts_dir / "data", tmp_path / "data")
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr(jobs, "ensure_worker", lambda *a, **k: False)
    yield tmp_path
    import streamlit as st
    st.cache_data.clear()
    for j in jobs.list_jobs(50):                      # nothing queued is left for a later worker
        if j["state"] in ("queued", "running"):
            jobs.cancel(j["job_id"], token=jobs.admin_token())


def _overview(dataset: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "overview.py"), default_timeout=180)
    at.session_state["dataset"] = dataset
    at.session_state["profile"] = "quick"
    at.session_state["noise_level"] = 0.1
    return at.run()


# --------------------------------------------------------------------------- labels
def test_row_label_names_other_parameter_values_by_the_report_rule():
    assert suites.row_label({"model": "topk_transformer", "params": {"K": 64}}) == "Top-K window transformer (K=64)"
    assert suites.row_label({"model": "topk_cnn", "params": {"K": 128}}) == "Top-K window CNN (K=128)"
    assert suites.row_label({"model": "dilated_cnn", "params": {"dilation": 8}}) == "Dilated CNN (d=8)"
    assert suites.row_label({"model": "topk_transformer", "params": {"K": 256}}) == "Top-K window transformer (K=256)"
    quick = {suites.row_label(s) for s in suites.suite("report", "quick")}
    assert "Top-K window transformer (K=64)" in quick and not any("(K=" in x and "_" in x for x in quick)
    assert not any("topk_" in x or "(" in x.split(" ")[0] for x in quick)


# --------------------------------------------------------------------------- Overview
def test_overview_defaults_to_the_best_method_and_sorts_numbers(reg):
    at = _overview(reg)
    _ok(at)
    res = report.suite_results("report", "quick", reg)
    d = res[(res["noise"] == 0.1) & res["r2"].notna()]
    score = d["r2_mean"].where(d["r2_mean"].notna(), d["r2"]).astype(float)
    best = d.loc[score.idxmax(), "method"]
    assert best != "Metadata (Ridge)"
    assert at.selectbox(key="pvt_method").value == best
    titles = [str(c.get("title")) for c in _charts(at)]
    assert any(t.startswith(f"{best} @ 0.1: R² ") and " ± " in t for t in titles), titles
    # the numbers: numeric columns (sortable in the browser), ± in a column of its own
    num = [df.value for df in at.dataframe if "R2 @0.1" in df.value.columns][0]
    assert "± @0.1" in num.columns and "of ceiling @0.1" in num.columns
    for c in num.columns.drop("method"):
        assert pd.api.types.is_numeric_dtype(num[c]), (c, num[c].dtype)
    assert num["R2 @0.1"].notna().sum() >= 3
    # the heat map's ours-cells carry ± where there are seeds, and every chart has a title
    assert all(titles)


def test_overview_draws_residuals_against_snr_and_a_kiel_diagram(reg):
    at = _overview(reg)
    _ok(at)
    specs = {str(c.get("title")): c for c in _charts(at)}
    snr = [c for t, c in specs.items() if t.startswith("Residuals against S/N")]
    kiel = [c for t, c in specs.items() if t.startswith("Kiel diagram")]
    assert snr and kiel, list(specs)
    enc = kiel[0]["encoding"]
    assert enc["x"]["field"] == "Teff" and enc["y"]["field"] == "true log g" and enc["color"]["field"] == "|error|"
    assert enc["x"]["scale"]["reverse"] and enc["y"]["scale"]["reverse"]
    assert snr[0]["layer"][0]["encoding"]["x"]["field"] == "S/N"
    # a picked method stays picked; another noise level would return to its best
    other = [m for m in at.selectbox(key="pvt_method").options if m != at.selectbox(key="pvt_method").value][0]
    at.selectbox(key="pvt_method").set_value(other).run()
    _ok(at)
    assert at.selectbox(key="pvt_method").value == other


# --------------------------------------------------------------------------- Training
def _training(dataset: str, via_app: bool = False) -> AppTest:
    """The Training page; via app.py where the page links need its navigation (a click there is lost to the
    rerun through app.py that AppTest makes, so buttons are clicked on the page itself)."""
    at = AppTest.from_file(str(ROOT / ("app.py" if via_app else "pages/training.py")), default_timeout=120)
    at.session_state["dataset"] = dataset
    at.session_state["profile"] = "quick"
    if via_app:
        at.switch_page("pages/training.py")
    return at.run()


def test_training_selects_the_launched_job_and_lists_the_specs(private, tiny_dataset):
    old, _ = jobs.submit(suites.suite("ceiling", "quick", tiny_dataset), label="an older job")
    at = _training(tiny_dataset)
    _ok(at)
    assert at.selectbox(key="job_pick").value == old
    # the spec list, before Launch
    exp = [e for e in at.expander if e.label.startswith("What will run")]
    assert exp, [e.label for e in at.expander]
    lst = exp[0].dataframe[0].value
    assert list(lst.columns) == ["method", "input", "noise", "replicate", "status"]
    assert "Top-K window transformer (K=64)" in set(lst["method"]) and "topk_transformer(K=64)" not in set(lst["method"])
    assert set(lst["input"]) >= {"flux", "metadata"} and set(lst["status"]) == {"to fit"}
    # the profile's training seeds (quick 2), as `train` fits them; Ridge (no seed in its fit) once
    assert sorted(set(lst[lst["method"] == "MLP"]["replicate"])) == [0, 1]
    assert sorted(set(lst[lst["method"] == "Ridge"]["replicate"])) == [0]
    at.multiselect[0].set_value(["ridge"]).run()
    at.button[[b.label for b in at.button].index("Launch")].click().run()
    _ok(at)
    new = at.session_state["last_job"]
    assert new != old and at.selectbox(key="job_pick").value == new
    assert any("Cancel job" == b.label for b in at.button)
    assert "ridge" in jobs.get(new)["label"]
    # Cancel: the job is cancelled at once (queued), the picker stays on it
    at.button(key="cancel_btn").click().run()
    _ok(at)
    assert jobs.get(new)["state"] == "cancelled" and at.selectbox(key="job_pick").value == new


def test_progress_names_method_and_input(private, tiny_dataset):
    from pages._ui import job_panels
    specs = [s for s in suites.suite("report", "quick", tiny_dataset) if s["model"] in ("ridge", "mlp", "metadata_ridge")]
    p = {"spec": 2, "of": len(specs), "model": "mlp + ridge", "noise_level": 0.1, "params": {}}
    txt = job_panels.running_text(p, specs)
    assert txt == f"spec 2/{len(specs)}: MLP on flux + Ridge on flux @ noise 0.1"
    assert "Metadata (Ridge) on metadata" in job_panels.running_text(
        {"spec": 1, "of": 1, "model": "metadata_ridge", "noise_level": 1.0, "params": {}}, specs)
    jid, _ = jobs.submit(specs, label="progress test")
    jobs._set(jobs.connect(), jid, progress={**p, "epoch": 3, "epochs": 10})
    row = job_panels.queue_frame().set_index("job").loc[jid]
    assert "MLP on flux" in row["now"] and "epoch 3/10" in row["now"]
    # the queue fits 1280 px: short UTC times, and a failed job's error in 'now' (no column of its own)
    import re
    assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d", row["queued"]) and row["finished"] == ""
    jobs._set(jobs.connect(), jid, state="failed", error="ValueError: no such thing")
    frame = job_panels.queue_frame().set_index("job")
    assert frame.loc[jid, "now"] == "error: ValueError: no such thing" and "error" not in frame.columns


def test_eta_from_the_jobs_own_pace_and_cancelling_state():
    import datetime as dt

    from pages._ui import job_panels
    t0 = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=120)).isoformat(timespec="seconds")
    j = {"job_id": 1, "state": "running", "started": t0, "progress": {"spec": 3, "of": 6}, "cancel": 0}
    txt = job_panels.eta_text(j)          # 2 finished in ~120 s: ~60 s each, 4 left
    assert txt.startswith("elapsed ") and "ETA ~4.0 min" in txt and "× 4 left" in txt
    assert job_panels.eta_text({**j, "progress": {"spec": 1, "of": 6}}).startswith("elapsed")
    assert "ETA" not in job_panels.eta_text({**j, "progress": {"spec": 1, "of": 6}})
    assert job_panels.eta_text({**j, "state": "queued"}) is None
    assert job_panels.is_cancelling({**j, "cancel": 1}) and not job_panels.is_cancelling(j)
    assert not job_panels.is_cancelling({**j, "cancel": 1, "state": "cancelled"})


def test_finished_job_links_to_its_results_page(private, tiny_dataset):
    spec = suites.suite("dilation", "quick", tiny_dataset)[:1]
    jid, _ = jobs.submit(spec, label="dilation bit")
    jobs._set(jobs.connect(), jid, state="done")
    at = _training(tiny_dataset, via_app=True)
    _ok(at)
    assert at.selectbox(key="job_pick").value == jid
    links = [el.proto for el in at.get("page_link")]
    assert any(lk.page == "dilation" and "Dilation" in lk.label for lk in links), links


def test_progress_of_a_fit_to_convergence_names_its_ceiling_not_a_plan():
    """A network training to convergence reports until="flat": its epoch count is a ceiling (100), not
    the plan, so the text says so instead of "epoch 3/100"."""
    from pages._ui import job_panels
    p = {"spec": 1, "of": 1, "model": "mlp", "noise_level": 1.0, "params": {}, "epoch": 3, "epochs": 100}
    assert "epoch 3/100" in job_panels.running_text(p, [])
    txt = job_panels.running_text({**p, "until": "flat"}, [])
    assert "epoch 3 (until the validation loss is flat, at most 100)" in txt and "3/100" not in txt
