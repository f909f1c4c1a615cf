"""The dashboard in Streamlit's AppTest (no browser): app.py, the Data page, the first start,
and the helpers the Data page draws from."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT, TINY_N, write_user_grid
from streamlit.testing.v1 import AppTest

APP = str(ROOT / "app.py")
# 3 histograms, 1 heat map, 2 x (flux + error) examples, 1 S/N, 1 tellurics (no nuisance draws here), 2 live simulator
N_DATA_CHARTS = 12


def run_app(timeout: float = 120, dataset: str | None = None, page: str | None = "pages/data.py") -> AppTest:
    """app.py in AppTest, on `page` (None: the default page, the Summary); `dataset` preselects the
    sidebar's data set (other test modules may have built theirs in the same session folder, and the
    sidebar defaults to the first by name)."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    if dataset:
        at.session_state["dataset"] = dataset
    if page:
        at.switch_page(page)
    return at.run()


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def axis_titles(spec: dict) -> dict[str, list[str]]:
    """Titles given to the quantitative x and y channels anywhere in a (layered) chart spec
    (a heat map's categorical axes name themselves)."""
    out: dict[str, list[str]] = {"x": [], "y": []}
    for part in [spec] + spec.get("layer", []):
        enc = part.get("encoding", {})
        for ch in ("x", "y"):
            if ch in enc and "field" in enc[ch] and enc[ch].get("type") == "quantitative":
                out[ch].append(enc[ch].get("title"))
    return out


def no_problems(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# --------------------------------------------------------------------------- the app
def test_app_runs_and_sidebar(tiny_dataset):
    from core import data
    at = run_app(page=None)
    no_problems(at)
    assert [t.value for t in at.title] == ["Summary"]  # the default page
    ds_box = at.sidebar.selectbox(key="dataset")
    assert ds_box.options == data.list_datasets() and tiny_dataset in ds_box.options
    assert ds_box.value == ds_box.options[0]  # nothing chosen yet: the first data set by name
    assert at.sidebar.selectbox(key="profile").value == "quick"
    assert at.sidebar.radio(key="noise_level").value == 1.0
    device = " ".join(c.value for c in at.sidebar.caption)
    assert any(f"Device: **{d}" in device for d in ("cpu", "cuda", "mps")), device


def test_data_page_shows_every_chart(tiny_dataset):
    at = run_app(dataset=tiny_dataset)
    no_problems(at)
    assert [s.value for s in at.subheader] == ["Labels", "Label independence", "Example spectra", "Signal-to-noise",
                                              "Nuisances: what the telescope and the sky add",
                                              "log g and the line wings (live simulator)", "Data set"]
    specs = charts(at)
    assert len(specs) == N_DATA_CHARTS
    for spec in specs:
        assert spec.get("title"), f"chart without a title: {json.dumps(spec)[:200]}"
        titles = axis_titles(spec)
        for ch in ("x", "y"):
            assert not titles[ch] or any(titles[ch]), f"{spec['title']}: {ch} axis has no title"
        assert titles["x"] or "correlation" in spec["title"]
    all_titles = [t for s in specs for ts in axis_titles(s).values() for t in ts if t]
    for unit in ("Teff [K]", "log g [dex]", "[M/H] [dex]", "wavelength [Å]"):
        assert unit in all_titles
    # one caption per chart group at least
    assert len(at.caption) >= 8
    # the independence check passes on the built-in grid, and says so
    assert any("all |r| < 0.05: labels independent" in s.value for s in at.success)
    # the sky lines are shaded on the built-in data: a rect layer in the example charts
    assert any(any(p.get("mark", {}).get("type") == "rect" for p in s.get("layer", [])) for s in specs
               if "Noise level" in str(s.get("title")))
    # S/N at both noise levels
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["median S/N, noise 0.1"]) == pytest.approx(10 * float(metrics["median S/N, noise 1.0"]), rel=0.01)
    # the data set table names the data set, its size and fingerprint
    table = at.table[0].value
    assert {"name", "spectra", "fingerprint", "source", "created (UTC)"} <= set(table.index)
    assert table.loc["spectra", "value"] == f"{TINY_N:,}"


def test_logg_slider_redraws_spectrum(tiny_dataset):
    at = run_app(dataset=tiny_dataset)
    title = lambda: [s["title"] for s in charts(at) if str(s.get("title", "")).startswith("Simulated")][0]
    data = lambda: [[d.data.data for d in c.proto.datasets] for c in at.get("vega_lite_chart")
                    if json.loads(c.proto.spec).get("title", "").startswith("Simulated")]
    data_before = data()
    assert "log g 1.50" in title()
    at.slider(key="live_logg").set_value(4.0).run()
    no_problems(at)
    assert "log g 4.00" in title()
    assert data() != data_before  # the re-simulated flux went to the browser
    at.radio(key="live_zoom").set_value("Na I 8183/8195 Å").run()
    no_problems(at)


def test_example_star_and_zoom_controls(tiny_dataset):
    at = run_app(dataset=tiny_dataset)
    at.number_input(key="data_example_star").set_value(3).run()
    at.radio(key="data_example_zoom").set_value("Ca II triplet 8480-8680 Å").run()
    no_problems(at)
    assert len(charts(at)) == N_DATA_CHARTS


def test_first_start_builds_the_quick_data_set(tmp_path, monkeypatch):
    from core import data
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path / "fresh"))
    monkeypatch.setenv("LOGG_BOOTSTRAP_N", "40")
    assert data.list_datasets() == []
    at = run_app(timeout=180, page=None)
    no_problems(at)
    assert data.list_datasets() == ["sim-quick"]
    ds = data.Dataset("sim-quick")
    assert ds.n == 40 and ds.attrs["profile"] == "quick"
    assert [t.value for t in at.title] == ["Summary"]  # rerun after the build lands on the default page


def test_bad_bootstrap_size_is_one_line_error(tmp_path, monkeypatch):
    from core import data
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path / "fresh"))
    monkeypatch.setenv("LOGG_BOOTSTRAP_N", "lots")
    at = run_app()
    assert not at.exception
    msgs = [e.value for e in at.error]
    assert msgs and all("\n" not in m for m in msgs)
    assert "LOGG_BOOTSTRAP_N must be a whole number" in msgs[0]
    assert data.list_datasets() == []
    # the page stopped (no data set), and the sidebar still names the device
    assert any("Device: **" in c.value for c in at.sidebar.caption)


def test_imported_data_set_without_sky_metadata(tmp_path, monkeypatch):
    from core import data
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path / "imported"))
    data.import_hdf5(write_user_grid(tmp_path / "grid.h5"), name="user-grid")
    at = run_app()
    no_problems(at)
    assert at.sidebar.selectbox(key="dataset").value == "user-grid"
    assert any("No sky shading" in i.value for i in at.info)
    assert len(charts(at)) == N_DATA_CHARTS - 1           # no telluric chart: the simulator did not make this grid


def test_switching_data_set_after_interacting(tmp_path, monkeypatch):
    """The sidebar survives widget reruns, and a smaller imported data set replaces the built-in
    one cleanly: the star index and the zoom fall back to what the new data set has."""
    from core import data
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path / "two"))
    data.build(name="sim-quick", n=60)
    data.import_hdf5(write_user_grid(tmp_path / "grid.h5", n=40), name="user-grid")
    at = run_app(dataset="sim-quick")
    at.number_input(key="data_example_star").set_value(7).run()
    at.radio(key="data_example_zoom").set_value("Na I 8183/8195 Å").run()
    assert at.sidebar.selectbox(key="dataset").value == "sim-quick"  # still drawn after reruns
    at.sidebar.selectbox(key="dataset").set_value("user-grid").run()
    no_problems(at)
    assert at.number_input(key="data_example_star").value == 0
    assert at.radio(key="data_example_zoom").value.startswith("Whole range 8400-8700")
    assert any("No sky shading" in i.value for i in at.info)


def test_page_errors_become_one_line():
    def script():
        from pages._ui import appstate
        with appstate.friendly_errors("The test section"):
            raise RuntimeError("the disk is full\nsecond line that users should not see")

    at = AppTest.from_function(script).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The test section stopped: RuntimeError: the disk is full"]


# --------------------------------------------------------------------------- helpers
def test_resimulated_spectrum_moves_with_logg():
    from core.analysis import data_summary
    window = data_summary.ZOOMS["Ca II triplet 8480-8680 Å"]
    low = data_summary.simulate_spectrum(4800, 1.5, 0.0)
    high = data_summary.simulate_spectrum(4800, 4.5, 0.0)
    assert low.shape == high.shape == (4096,)
    assert np.abs(low - high).max() > 0.02
    df = data_summary.logg_comparison(4800, 1.5, 0.0, 4.5, window)
    cur = df[~df.curve.str.startswith("reference")]
    assert cur.wave.between(*window).all()
    assert np.abs(cur["diff"]).max() > 0.02
    same = data_summary.logg_comparison(4800, 4.5, 0.0, 4.5, window)
    assert np.abs(same["diff"]).max() == 0.0


def test_example_spectrum_is_what_models_see(tiny_dataset):
    from core import data
    from core.analysis import data_summary
    ds = data.Dataset(tiny_dataset)
    for nl in (0.1, 1.0):
        v = ds.view("test", nl, inputs="flux+error", limit=3)
        df = data_summary.example_spectrum(ds, int(v.index[2]), nl)
        np.testing.assert_allclose(df.flux.to_numpy(), v.x[2, 0], rtol=1e-6)
        np.testing.assert_allclose(df.sigma.to_numpy(), v.x[2, 1], rtol=1e-6)


def test_sky_shading_marks_where_the_error_rises(tiny_dataset):
    from core import data
    from core.analysis import data_summary
    ds = data.Dataset(tiny_dataset)
    sky = data_summary.sky_intervals(ds)
    assert sky is not None and len(sky) > 10 and (sky.end > sky.start).all()
    in_sky = np.zeros(ds.n_pix, bool)
    for s, e in zip(sky.start, sky.end):
        in_sky |= (ds.wave >= s) & (ds.wave <= e)
    _, err = ds.read(ds.splits["test"][:20])
    assert np.median(err[:, in_sky]) > 1.2 * np.median(err[:, ~in_sky])


def test_stale_simulator_version_is_flagged(tiny_dataset, monkeypatch):
    from core import data
    from core.analysis import data_summary
    from core.physics import simulate
    ds = data.Dataset(tiny_dataset)
    assert data_summary.stale_simulator(ds) is None
    monkeypatch.setattr(simulate, "SIMULATOR_VERSION", "99.0.0")
    msg = data_summary.stale_simulator(ds)
    assert msg and "v99.0.0" in msg and "python -m core data build" in msg


def test_correlation_and_histograms():
    from core.analysis import data_summary
    rng = np.random.default_rng(0)
    lab = np.column_stack([rng.uniform(3500, 7000, 500), rng.uniform(1, 5, 500), rng.uniform(-2.5, 0.5, 500)])
    corr, worst, _ = data_summary.correlation_frame(lab)
    assert len(corr) == 9 and worst < 0.15
    lab[:, 1] = 5 - (lab[:, 0] - 3500) / 1000 + rng.normal(0, 0.2, 500)  # giants are cool
    _, worst, pair = data_summary.correlation_frame(lab)
    assert worst > 0.9 and pair == "Teff–log g"
    h = data_summary.histogram_frame(lab[:, 0], bins=30)
    assert len(h) == 30 and h["count"].sum() == 500
    hl = data_summary.histogram_frame(rng.uniform(3, 60, 100), bins=10, log=True)
    assert hl["count"].sum() == 100 and (hl.hi > hl.lo).all()


def test_snr_table(tiny_dataset):
    from core import data
    from core.analysis import data_summary
    ds = data.Dataset(tiny_dataset)
    t = data_summary.snr_table(ds)
    assert len(t) == ds.n and (t.snr > 0).all()
    assert set(t.split) == {"train", "val", "test"}
    sub = data_summary.snr_table(ds, max_rows=50)
    assert len(sub) == 50


def test_device_string():
    from pages._ui import appstate
    assert appstate.device() in ("cuda", "mps", "cpu")
