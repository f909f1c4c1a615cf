"""A log g you can trust (#15): only the report suite's predictors answer for an upload, the
recommendation is chosen at the spectrum's S/N and says when it is outside the grid or when the
predictors disagree, vacuum wavelengths are converted and a radial velocity is measured and removed.

One data set ('trust-test', 600 spectra) with Ridge and the Cannon (report methods) and Ridge on the
clean error alone and on the pipeline-like error (error-vs-flux ablation runs, which score well on
the simulator and mean nothing on a real pipeline's errors) at noise 0.1.
"""
from __future__ import annotations

import numpy as np
import pytest
from test_predict import csv_bytes, fits_image_bytes

from core import config
from core import predict as P
from core.predict import frame
from core.predict.inference import recommend
from core.predict.reference import reference

DS = "trust-test"


@pytest.fixture(scope="module")
def trained(artifacts_dir):
    from core import data
    from core.engine import train
    if DS not in data.list_datasets():
        data.build(name=DS, n=600, seed=5)
    base = {"dataset": DS, "profile": "quick", "seed": 0, "noise_level": 0.1}
    runs = {}
    for model, inputs in (("ridge", "flux"), ("cannon", "flux+error"), ("ridge", "error"),
                          ("ridge", "error_pipeline")):
        runs[(model, inputs)] = train.run({**base, "model": model, "inputs": inputs, "params": {}}, log=lambda m: None)
    return data.Dataset(DS), runs


def _moved(sp: P.Spectrum, v_kms: float) -> P.Spectrum:
    return P.Spectrum(sp.wave * frame.doppler(v_kms), sp.flux, sp.error, name=f"moved {v_kms:+.0f}")


def test_error_only_and_research_runs_never_answer(trained):
    ds, runs = trained
    err_only = runs[("ridge", "error")]
    assert err_only.metrics["r2"] > runs[("ridge", "flux")].metrics["r2"] - 0.3   # it scores on the simulator...
    roles = {e.run_id: e.role for e in P.trained_models(ds)}
    assert roles[err_only.run_id] == "research" and roles[runs[("ridge", "error_pipeline")].run_id] == "research"
    assert roles[runs[("ridge", "flux")].run_id] == "predictor" and roles[runs[("cannon", "flux+error")].run_id] \
        == "predictor"
    for k in range(6):
        ex = P.example(ds, k, 0.1)
        r = P.predict(ex, ds, noise=0.1, mc=4)
        assert {x["name"] for x in r["logg"]} == {"ridge", "cannon"}                  # ...but never answers
        assert all(x["inputs"] in ("flux", "flux+error") for x in r["logg"]) and r["research_hidden"] == 2
        rr = P.predict(ex, ds, noise=0.1, mc=4, research=True)
        assert {x["inputs"] for x in rr["logg"]} >= {"error", "error_pipeline"}
        assert rr["recommended"]["members"] == r["recommended"]["members"]            # shown, not recommended
        roles_here = {x["run_id"]: x["role"] for x in rr["logg"]}
        assert {roles_here[m["run_id"]] for m in rr["recommended"]["members"]} == {"predictor"}


def test_the_recommendation_says_outside_the_grid_and_disagreement(trained):
    ds, _ = trained

    def row(model, value, rmse, unc=0.05):
        return {"model": model, "run_id": model, "role": "predictor", "value": value, "uncertainty": unc,
                "uncertainty_kind": "MC",
                "test_r2": 0.9, "test_rmse": rmse, "val_rmse_at_snr": rmse, "val_half68_at_snr": rmse,
                "val_stars_at_snr": 50, "test_rmse_at_snr": 9.0 - rmse, "test_stars_at_snr": 50,
                "snr_bin": [10.0, 40.0]}

    rec, best = recommend([row("A", 3.0, 0.2), row("B", 3.1, 0.25), row("C", 2.9, 0.3)], ds, 0.1)
    assert rec["model"] == "A" and rec["agree"] and not rec["outside_grid"] and rec["uncertainty"] == 0.2
    rec, _ = recommend([row("A", 7.5, 0.2), row("B", 7.4, 0.25)], ds, 0.1)
    assert rec["outside_grid"] and "outside the training grid" in rec["why"]
    rec, _ = recommend([row("A", 1.5, 0.2), row("B", 4.5, 0.25), row("C", 1.6, 0.3)], ds, 0.1)
    assert not rec["agree"] and {d["model"] for d in rec["disagreement"]} == {"A", "B", "C"}
    assert "disagree" in rec["verdict"] and "B 4.50" in rec["verdict"] and ("A 1.50" in rec["verdict"] or
                                                                            "C 1.60" in rec["verdict"])
    research = row("R", 3.0, 0.01)
    research["role"] = "research"
    rec, _ = recommend([research, row("A", 3.2, 0.3)], ds, 0.1)
    assert rec["model"] == "A"                                        # the better-scoring research run never wins
    with pytest.raises(P.PredictError, match="no predictor"):
        recommend([research], ds, 0.1)


def test_the_recommendation_is_the_weighted_mean_of_the_best_at_this_snr(trained):
    """Members: the predictors with the lowest validation RMSE in the spectrum's S/N bin, weighted by
    1/RMSE^2; the error bar is at least the 68 % half-width of the weighted mean's validation errors in
    that bin (the test split plays no part in the choice)."""
    from core.predict.skill import ensemble
    ds, _ = trained
    ex = P.example(ds, 2, 0.1)
    r = P.predict(ex, ds, noise=0.1, mc=8)
    rec, rows = r["recommended"], {x["run_id"]: x for x in r["logg"]}
    assert len(rec["members"]) == 2                      # both predictors of this registry
    rm = [rows[m["run_id"]]["val_rmse_at_snr"] for m in rec["members"]]
    assert rm == sorted(rm)
    w = np.array([1 / x ** 2 for x in rm])
    assert [m["weight"] for m in rec["members"]] == pytest.approx(list(w / w.sum()))
    assert rec["value"] == pytest.approx(sum(m["weight"] * m["value"] for m in rec["members"]))
    ens = ensemble([e for e in P.trained_models(ds) if e.role == "predictor" and e.noise_level == 0.1], ds,
                   r["snr"]["value"])
    assert rec["uncertainty"] >= ens.half68 > 0 and ens.n > 10
    assert ens.n == rows[rec["members"][0]["run_id"]]["val_stars_at_snr"]       # validation stars of that bin
    assert "weighted mean" in rec["why"] and "68 % interval" in rec["why"]
    assert rec["uncertainty"] == pytest.approx(float(ens.half_width(r["snr"]["value"])))


@pytest.mark.parametrize("v", [-300.0, -120.0, 45.0, 300.0])
def test_a_radial_velocity_is_measured_and_removed(trained, v):
    """A test star moved to v: its RV is recovered within 2 km/s at S/N >= 30 and its log g moves <= 0.05 dex."""
    ds, _ = trained
    checked = 0
    for k in range(12):
        ex = P.example(ds, k, 0.1)
        if np.median(ex.flux / ex.error) < 30:
            continue
        at_rest = P.predict(ex, ds, noise=0.1, mc=0)
        moved = P.predict(_moved(ex, v), ds, noise=0.1, mc=0)
        rv = moved["frame"]["rv"]
        assert rv["applied"] and abs(rv["value"] - v) < 2.0, (k, rv)
        assert rv["sigma"] is not None and rv["sigma"] < 2.0
        assert abs(moved["recommended"]["value"] - at_rest["recommended"]["value"]) <= 0.05, k
        unshifted = P.predict(_moved(ex, v), ds, noise=0.1, mc=0, rv="none")     # what happened before
        assert not unshifted["frame"]["rv"]["applied"]
        checked += 1
        if checked == 3:
            break
    assert checked == 3


def test_vacuum_wavelengths_are_converted(trained):
    ds, _ = trained
    ex = next(e for e in (P.example(ds, k, 0.1) for k in range(20)) if np.median(e.flux / e.error) >= 30)
    at_rest = P.predict(ex, ds, noise=0.1, mc=0)["recommended"]["value"]
    vac = frame.air_to_vacuum(ex.wave)
    assert 2.0 < float(np.median(vac - ex.wave)) < 2.4                      # n - 1 = 2.76e-4 near 7900 A
    # declared by the column name: converted back to air; no velocity needed
    item = P.read_bytes(csv_bytes(vac, ex.flux, ex.error, header=("lambda_vac", "flux", "error")), "vac.csv")
    assert item.medium == "vacuum" and "lambda_vac" in item.medium_how
    r = P.predict(item, ds, noise=0.1, mc=0, rv="none")
    assert r["frame"]["medium"] == "vacuum" and "converted to air" in r["frame"]["medium_how"]
    assert abs(r["recommended"]["value"] - at_rest) <= 0.05
    # not declared: read as air, and the ~+82 km/s it then looks like is measured and removed
    plain = P.read_bytes(csv_bytes(vac, ex.flux, ex.error), "plain.csv")
    assert plain.medium is None
    r = P.predict(plain, ds, noise=0.1, mc=0)
    assert 75 < r["frame"]["rv"]["value"] < 90
    assert abs(r["recommended"]["value"] - at_rest) <= 0.05
    # the user's word beats the file's
    r = P.predict(plain, ds, noise=0.1, mc=0, medium="vacuum", rv="none")
    assert abs(r["recommended"]["value"] - at_rest) <= 0.05


def test_air_vacuum_formula_and_header_conventions(trained):
    # Ca II 8542.09 A in air is 8544.44 A in vacuum (NIST); the conversion round-trips
    assert frame.vacuum_to_air(np.array([8544.44]))[0] == pytest.approx(8542.09, abs=0.01)
    w = np.linspace(7000, 9000, 50)
    assert np.allclose(frame.vacuum_to_air(frame.air_to_vacuum(w)), w, atol=1e-9)
    ds, _ = trained
    ex = P.example(ds, 0, 0.1)
    step = float(np.log10(ex.wave[-1] / ex.wave[0]) / (ex.wave.size - 1))
    wcs = {"CRVAL1": np.log10(ex.wave[0]), "CDELT1": step, "DC-FLAG": 1}
    for extra, medium in (({"VACUUM": True}, "vacuum"), ({"AIRORVAC": "air"}, "air"),
                          ({"TELESCOP": "SDSS 2.5-M"}, "vacuum"), ({"TELESCOP": "LAMOST"}, "vacuum"), ({}, None)):
        sp = P.read_bytes(fits_image_bytes(ex.flux, {**wcs, **extra}, err=ex.error), "s.fits")
        assert sp.medium == medium, extra
    # a header with the unit after an underscore
    sp = P.read_bytes(csv_bytes(ex.wave / 10, ex.flux, ex.error, header=("wavelength_nm", "flux", "error")), "n.csv")
    assert sp.wave[0] == pytest.approx(ex.wave[0])
    sp = P.read_bytes(csv_bytes(ex.wave, ex.flux, ex.error, header=("wavelength_A", "flux", "error")), "a.csv")
    assert sp.wave[0] == pytest.approx(ex.wave[0])


def test_a_spectrum_without_matching_lines_is_not_shifted(trained):
    """Noise alone (no stellar lines) gives no trusted velocity: nothing is shifted, and the answer says so."""
    ds, _ = trained
    rng = np.random.default_rng(3)
    w = ds.wave.astype(np.float64)
    f = 1.0 + 0.02 * rng.standard_normal(w.size)
    ref = reference(ds, 1.0)
    r = frame.estimate_rv(w, f, np.full(w.size, 0.02), ds.wave, ref.mu, ref.comps)
    assert not r["ok"] and r["value"] == 0.0 and "not applied" in r["how"]


def test_survey_layouts_lamost_rows_apogee_rows_and_wave_log(trained, tmp_path):
    """Files written here in the layouts of LAMOST DR<=7 (a 5-row image: flux, ivar, wavelength, andmask,
    ormask), APOGEE apStar (one row per visit after the combined spectrum; H band, so refused for coverage
    with its range named) and a FITS WCS 'WAVE-LOG' axis with CRVAL1 in Angstrom."""
    from astropy.io import fits
    ds, _ = trained
    ex = P.example(ds, 1, 0.1)
    at_rest = P.predict(ex, ds, noise=0.1, mc=0)["recommended"]["value"]
    img = np.vstack([ex.flux * 300, 1 / (ex.error * 300) ** 2, frame.air_to_vacuum(ex.wave),
                     np.zeros_like(ex.wave), np.zeros_like(ex.wave)]).astype(np.float32)
    h = fits.PrimaryHDU(img)
    h.header["TELESCOP"] = "LAMOST"
    path = tmp_path / "spec-lamost.fits"
    h.writeto(path)
    sp = P.read_file(path)
    assert "LAMOST DR<=7 layout" in sp.fmt and sp.medium == "vacuum" and "LAMOST" in sp.medium_how
    assert abs(P.predict(sp, ds, noise=0.1, mc=0)["recommended"]["value"] - at_rest) <= 0.05
    # APOGEE apStar: 3 rows (combined + 2 visits), log10 wavelengths 15140-16960 A
    n = 8575
    ap = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((3, n), np.float32)),
                       fits.ImageHDU(np.full((3, n), 0.01, np.float32))])
    ap[1].header.update({"CRVAL1": 4.179, "CDELT1": 6e-6, "CRPIX1": 1, "CTYPE1": "LOG-LINEAR", "DC-FLAG": 1})
    path = tmp_path / "apStar.fits"
    ap.writeto(path)
    sp = P.read_file(path)
    assert "first of 3 rows" in sp.fmt and sp.error is not None and 15000 < sp.wave[0] < 15200
    with pytest.raises(P.PredictError, match=r"wavelengths 151\d\d\.\d-1\d{4}\.\d Å do not overlap the models' grid"):
        P.predict(sp, ds)
    # WAVE-LOG with CRVAL1 in Angstrom (read as linear before: log g off by over a dex)
    step = float(np.log(ex.wave[-1] / ex.wave[0]) / (ex.wave.size - 1))
    wl = fits.PrimaryHDU(ex.flux.astype(np.float32))
    wl.header.update({"CTYPE1": "AWAV-LOG", "CRVAL1": float(ex.wave[0]), "CDELT1": step * float(ex.wave[0]),
                      "CRPIX1": 1})
    path = tmp_path / "wavelog.fits"
    wl.writeto(path)
    sp = P.read_file(path)
    assert sp.wave == pytest.approx(ex.wave, rel=1e-6) and sp.medium == "air"


def _planck(w, t_k):
    return 1.0 / (w ** 5 * (np.exp(1.4388e8 / (w * t_k)) - 1.0))


def _lines(w, centers, depth, width):
    f = np.ones_like(w)
    for c in centers:
        f *= 1.0 - depth * np.exp(-0.5 * ((w - c) / width) ** 2)
    return f


PASCHEN = (8862.78, 8750.47, 8665.02, 8598.39, 8545.38, 8502.48, 8467.25, 8437.95, 8413.32, 8392.40)


@pytest.mark.parametrize("kind", ["white dwarf", "B star", "L dwarf", "featureless"])
@pytest.mark.parametrize("snr", [30, 100])
def test_objects_unlike_the_training_stars_are_flagged(trained, kind, snr):
    """A white dwarf (12,000 K blackbody, Paschen lines 40 A wide), a B star (20,000 K, narrow Paschen), an
    L dwarf (1,800 K, molecular bands, K I) and a featureless spectrum: each is flagged."""
    ds, _ = trained
    w = ds.wave.astype(np.float64)
    f = {"white dwarf": _planck(w, 12000) * _lines(w, PASCHEN, 0.5, 40.0),
         "B star": _planck(w, 20000) * _lines(w, PASCHEN, 0.35, 8.0),
         "L dwarf": _planck(w, 1800) * np.where((w > 7600) & (w < 7700), 0.3, 1.0) * np.where(w > 8400, 0.6, 1.0)
         * _lines(w, (7665.0, 7699.0), 0.4, 3.0),
         "featureless": np.ones_like(w)}[kind]
    f = f / f.mean()
    e = np.full_like(f, 1.0 / snr)
    r = P.predict(P.Spectrum(w, f + e * np.random.default_rng(1).standard_normal(w.size), e, name=kind), ds, mc=0)
    assert not r["ood"]["in_distribution"], (kind, snr, r["ood"])


def test_test_stars_are_rarely_flagged(trained):
    ds, _ = trained
    n = int(ds.splits["test"].size)
    flagged = 0
    for k in range(n):
        ex = P.example(ds, k, 0.1)
        ex.rv = None                                         # as an upload: the velocity is measured
        flagged += not P.predict(ex, ds, noise=0.1, mc=0)["ood"]["in_distribution"]
    assert flagged <= max(2, 0.08 * n), (flagged, n)


@pytest.fixture(scope="module")
def other_resolutions(trained):
    """Test stars of the data set simulated again at R = 10,000 and R = 2,000 (S/N 100)."""
    import torch

    from core.physics import simulate
    ds, _ = trained
    lab = ds.labels[ds.split_rows("test")[:10]]
    out = {}
    for r in (5000.0, 10000.0, 2000.0):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(simulate, "RESOLUTION", r)
            sim = simulate.Simulator()
            with torch.no_grad():
                flux = sim(torch.tensor(lab, dtype=sim.dtype)).numpy().astype(np.float64)
        rng = np.random.default_rng(4)
        out[r] = [P.Spectrum(ds.wave.astype(np.float64), f / f.mean() + 0.01 * rng.standard_normal(f.size),
                             np.full(f.size, 0.01), name=f"R={r:.0f}") for f in flux]
    return lab, out


def test_a_sharper_spectrum_is_degraded_and_a_broader_one_flagged(trained, other_resolutions):
    """Against what the same model says of the same star at the training resolution (R = 5,000): an R =
    10,000 spectrum degraded first is much closer than one taken as it is."""
    ds, runs = trained
    lab, spectra = other_resolutions
    ridge = runs[("ridge", "flux")].run_id

    def ridge_values(rr, mode):
        res = [P.predict(s, ds, noise=0.1, mc=0, rv="none", resolution=mode) for s in spectra[rr]]
        return res, np.array([next(x["value"] for x in r["logg"] if x["run_id"] == ridge) for r in res])

    _, at5000 = ridge_values(5000.0, "auto")
    res, auto = ridge_values(10000.0, "auto")
    _, as_is = ridge_values(10000.0, "as-is")
    assert sum("degraded" in x["frame"]["resolution"]["how"] for x in res) >= 6
    assert np.median(np.abs(auto - at5000)) < 0.5 * np.median(np.abs(as_is - at5000))   # measured 0.05 vs 0.39
    broad = [P.predict(s, ds, noise=0.1, mc=0, rv="none") for s in spectra[2000.0]]
    assert sum(not x["ood"]["in_distribution"] for x in broad) >= 8
    assert sum("broader" in " ".join(x["ood"]["flags"]) for x in broad) >= 7
    sharp_ok = [P.predict(s, ds, noise=0.1, mc=0, rv="none") for s in spectra[5000.0]]
    assert sum(not x["ood"]["in_distribution"] for x in sharp_ok) <= 1


def test_the_physics_fit_places_the_star_and_flags_what_it_cannot_fit(trained):
    """The simulator fitted to a test star: labels near the truth within their errors, reduced chi^2 near
    1 or below (a 2 % model error is included); a white dwarf-like spectrum gets the fit's own flag."""
    import json
    ds, _ = trained
    for k in (0, 3):
        ex = P.example(ds, k, 0.1)
        r = P.predict(ex, ds, noise=0.1, mc=0, physics=True)
        pf = r["physics_fit"]
        assert pf["chi2"] < 1.3 and r["_grid"]["fit"].shape == ex.flux.shape
        assert abs(pf["teff"] - ex.truth["teff"]) < 3 * pf["sigma"]["teff"] + 50
        assert abs(pf["logg"] - ex.truth["logg"]) < 3 * pf["sigma"]["logg"] + 0.1
        assert "physics_fit" in json.loads(P.to_json(r)) and "physics fit" in P.text_report(r)
    assert P.predict(P.example(ds, 0, 0.1), ds, noise=0.1, mc=0)["physics_fit"] is None      # opt-in
    w = ds.wave.astype(np.float64)
    f = _planck(w, 12000) * _lines(w, PASCHEN, 0.5, 40.0)
    f = f / f.mean()
    e = np.full_like(f, 0.01)
    r = P.predict(P.Spectrum(w, f + e * np.random.default_rng(2).standard_normal(w.size), e), ds, mc=0,
                  physics=True)
    assert r["physics_fit"]["chi2"] > 10 and any("simulator cannot fit" in x for x in r["ood"]["flags"])


def test_page_physics_fit_shows_the_fit_and_the_kiel_diagram(trained):
    import json

    from conftest import ROOT
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "pages" / "predict.py"), default_timeout=120)
    at.session_state["dataset"] = DS
    at.run()
    at.toggle(key="predict_physics").set_value(True).run()
    at.button(key="predict_example_btn").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    titles = json.dumps([json.loads(c.proto.spec).get("title") for c in at.get("vega_lite_chart")])
    assert "Kiel diagram" in titles
    assert any("simulator's best fit" in c.value for c in at.caption)


def test_degrading_keeps_gaps_and_error_levels():
    w = np.exp(np.linspace(np.log(7100), np.log(8850), 4096))
    keep = (w < 7800) | (w > 7900)                                   # a 100 A hole (a chip gap)
    w, f, e = w[keep], 1.0 - 0.5 * np.exp(-0.5 * ((w[keep] - 8542) / 1.0) ** 2), np.full(keep.sum(), 0.01)
    dw, df, de = frame.degrade(w, f, e, 20.0, grid=(7100.0, 8850.0))
    assert not np.any((dw > 7801) & (dw < 7899))                      # the gap stays a gap
    assert np.median(de) == pytest.approx(0.01, rel=0.05)            # the error level of one pixel is kept
    assert df.min() > f.min()                                         # the line is broader and shallower
    assert np.all(np.diff(dw) > 0)


def test_a_finely_sampled_sharp_spectrum_is_measured_on_model_pixels(trained, other_resolutions):
    """S/N 15 per pixel on pixels 4x finer than the models' is S/N 30 per model pixel: the line width is
    measured and the spectrum degraded (before, the per-pixel S/N skipped the check)."""
    ds, _ = trained
    _, spectra = other_resolutions
    sp = spectra[10000.0][0]
    lw = np.log(sp.wave)
    fine = np.exp(np.linspace(lw[0], lw[-1], 4 * lw.size))
    f = np.interp(fine, sp.wave, sp.flux)
    e = np.full(fine.size, np.median(f) / 15.0)
    f = f + e * np.random.default_rng(5).standard_normal(fine.size)
    r = P.predict(P.Spectrum(fine, f, e, name="fine"), ds, noise="auto", mc=0, rv="none")
    assert "degraded" in r["frame"]["resolution"]["how"], r["frame"]["resolution"]


def test_impossible_velocities_and_ultraviolet_vacuum_are_handled(trained):
    ds, _ = trained
    ex = P.example(ds, 0, 0.1)
    for bad in ("299792.458", "nan", "-400000"):
        with pytest.raises(P.PredictError, match="under 0.1 c"):
            P.predict(ex, ds, noise=0.1, mc=0, rv=bad)
    w = np.linspace(1500.0, 9000.0, 5000)
    conv, _ = frame.to_medium(w, "vacuum", "air")
    assert np.all(np.diff(conv) > 0) and np.allclose(conv[w < 2000], w[w < 2000])


def test_validation_predictions_are_the_fitted_models_on_the_validation_view(trained):
    """skill's validation predictions: the run's model on its validation view (same inputs, noise and seed
    as its fit), kept beside the run; the 68 % half-width holds 68 % of those errors in each bin."""
    from core.predict import inventory
    from core.predict import skill as S
    ds, _ = trained
    e = next(x for x in P.trained_models(ds) if x.role == "predictor")
    idx, y, p = S.predictions(e, ds, "val")
    assert np.array_equal(np.sort(idx), ds.splits["val"]) and (e.artifact / "val_predictions.npz").exists()
    v = ds.view("val", e.noise_level, e.spec["inputs"], seed=e.spec["seed"])
    out = inventory.load(e).predict(v)
    assert np.allclose(np.asarray(out[0] if isinstance(out, tuple) else out).ravel(), p)
    sk = S.skill(e, ds)
    rows, snr = S.split_snr(ds, e.noise_level, "val")
    b = sk.bin_of(snr[np.searchsorted(rows, idx)])
    for i in range(S.N_BINS):
        if sk.n[i] >= 10:
            assert np.mean(np.abs(p - y)[b == i] <= sk.half68[i]) == pytest.approx(0.68, abs=0.1)
    assert sk.split == "val" and S.skill(e, ds, "test").split == "test"


def test_the_error_model_is_calibrated_where_it_is_fitted():
    """skill.error_model: errors drawn with sd sqrt(a + b/snr^2) give back a and b, and the interval
    k68 * sqrt(a + b/snr^2) holds 68 % of fresh draws at every S/N (not only on average); a bin RMSE
    over the whole S/N range would over-cover the bright stars and under-cover the faint ones."""
    from core.predict.skill import Ensemble, error_model
    rng = np.random.default_rng(3)
    snr = rng.uniform(20, 300, 4000)
    sd = np.sqrt(0.01 + 400.0 / snr ** 2)
    (a, b), k = error_model(rng.normal(0, sd), snr)
    assert a == pytest.approx(0.01, rel=0.3) and b == pytest.approx(400.0, rel=0.2) and k == pytest.approx(1.0, abs=0.1)
    ens = Ensemble([], np.ones(1), 0.0, 0.0, 0, (0.0, 1.0), (a, b), k)
    fresh = rng.normal(0, sd)
    inside = np.abs(fresh) <= ens.half_width(snr)
    for lo, hi in ((20, 40), (40, 100), (100, 300)):
        sel = (snr >= lo) & (snr < hi)
        assert np.mean(inside[sel]) == pytest.approx(0.68, abs=0.05), (lo, hi)
    flat = np.abs(fresh) <= np.sqrt(np.mean(sd ** 2))
    assert np.mean(flat[snr > 100]) > 0.85 and np.mean(flat[snr < 40]) < 0.6


def test_the_reference_is_kept_on_disk_and_read_back_the_same(trained):
    """The OOD reference (3 s of a cold predict call on the quick data) is made once per data set and noise
    level and read back from artifacts/explain/ by the next process: the same arrays."""
    from core.predict import reference as R
    ds, _ = trained
    made = R._stored_reference(ds, 1.0)
    files = list((config.artifacts_dir() / "explain" / ds.fingerprint).glob("predict_reference_v*_nl1_*.npz"))
    assert len(files) == 1
    again = R._stored_reference(ds, 1.0)
    for k in R.FIELDS:
        assert np.array_equal(getattr(made, k), getattr(again, k)), k
    assert again.scale_rms == made.scale_rms
    files[0].write_bytes(b"not an npz")                       # a damaged file is remade, not an error
    assert np.array_equal(R._stored_reference(ds, 1.0).mu, made.mu)


def test_the_interval_is_calibrated_on_new_simulated_stars(trained):
    """The recommendation's 68 % interval is set on the data set's calibration set: new stars of the same
    recipe (another seed, not a registry data set), built once and kept; in every S/N bin 68 % of those
    stars fall inside (split-conformal per bin), where one scale over every bin would miss some bins."""
    from core import data
    from core.data import calibration
    from core.predict import skill as S
    ds, _ = trained
    cal = S.calibration_set(ds)
    assert cal is not None and cal.path == calibration.path_for(ds) and cal.n == calibration.size_for(ds) == 1000
    assert cal.seed == ds.seed + calibration.SEED_OFFSET and cal.wave.shape == ds.wave.shape
    assert not np.isin(cal.labels[:, 1], ds.labels[:, 1]).any()                # other stars
    assert cal.path.stem not in data.list_datasets() and cal.name not in data.list_datasets()
    built = cal.path.stat().st_mtime_ns
    assert calibration.ensure(ds).fingerprint == cal.fingerprint and cal.path.stat().st_mtime_ns == built
    preds = [e for e in P.trained_models(ds) if e.role == "predictor" and e.noise_level == 0.1]
    sk = S.skill(preds[0], ds)
    rows, snr = S.split_snr(ds, 0.1, "cal")
    assert rows.size == cal.n
    for b in range(S.N_BINS):
        mid = float(np.sqrt(sk.edges[b] * sk.edges[b + 1])) if 0 < b < S.N_BINS - 1 else \
            float(sk.edges[1] / 2 if b == 0 else sk.edges[-2] * 2)
        ens = S.ensemble(preds, ds, mid)
        assert ens.calibrated_on == "calibration" and ens.n_calibration >= S.MIN_CAL_BIN
        res, s = S._combined([(m, None) for m in ens.members], ens.weights, ds, "cal")
        here = sk.bin_of(s) == b
        assert here.sum() == ens.n_calibration
        assert np.mean(np.abs(res[here]) <= ens.half_width(s[here])) == pytest.approx(0.6827, abs=0.01)
    for m in ens.members:                                    # kept beside the run, the model's own outputs
        with np.load(m.artifact / "cal_predictions.npz") as z:
            assert str(z["fingerprint"]) == cal.fingerprint and z["index"].size == cal.n
    r = P.predict(P.example(ds, 1, 0.1), ds, noise=0.1, mc=0)
    assert r["recommended"]["calibrated_on"] == "calibration"
    assert "new simulated stars" in r["recommended"]["why"]


def test_a_grid_the_simulator_did_not_make_has_no_calibration_set(trained, tmp_path):
    """An imported grid, or one of another simulator version, gets no calibration set (new stars would
    not be its stars): Predict calibrates on the validation split and says it is optimistic."""
    from types import SimpleNamespace

    from core.data import calibration
    from core.predict.inference import calibrated_words
    from core.predict.skill import Ensemble
    imported = SimpleNamespace(attrs={"source": "imported", "simulator_version": "2.0.0"})
    old = SimpleNamespace(attrs={"source": "simulator", "simulator_version": "1.0.0"})
    assert "imported" in calibration.reason(imported) and "v1.0.0" in calibration.reason(old)
    ds, _ = trained
    assert calibration.reason(ds) is None
    ens = Ensemble([], np.ones(1), 0.1, 0.0, 90, (1.0, 2.0), calibrated_on="validation", n_calibration=90)
    assert "90 validation stars" in calibrated_words(ens) and "optimistic" in calibrated_words(ens)


def test_an_imported_grid_is_calibrated_on_its_validation_stars(tmp_path, monkeypatch):
    """End to end on a grid the simulator did not make: no calibration set is built, the answer's
    interval comes from the validation stars and its words say so."""
    from conftest import write_user_grid

    from core import data
    from core.data import calibration
    from core.engine import train
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path / "imported"))
    data.import_hdf5(write_user_grid(tmp_path / "grid.h5", n=300), name="user-grid")
    ds = data.Dataset("user-grid")
    base = {"dataset": "user-grid", "profile": "quick", "seed": 0, "noise_level": 0.1, "params": {}}
    for model, inputs in (("ridge", "flux"), ("cannon", "flux+error")):
        train.run({**base, "model": model, "inputs": inputs}, log=lambda m: None)
    r = P.predict(P.example(ds, 0, 0.1), ds, noise=0.1, mc=0)
    rec = r["recommended"]
    assert len(rec["members"]) == 2 and rec["calibrated_on"] == "validation"
    assert "validation stars (no calibration set" in rec["why"]
    assert not calibration.calibration_dir().exists() or not any(calibration.calibration_dir().iterdir())


def test_the_snr_flag_is_the_training_range_itself(trained):
    """An S/N below the lowest training spectrum's is flagged in words; one inside the range, even in its
    lowest percent (which the old 1st-99th percentile rule flagged), is not flagged for its S/N."""
    from core.predict.reference import reference
    ds, _ = trained
    ref = reference(ds, 0.1)
    sp = P.example(ds, 3, 0.1)
    snr = float(np.median(sp.flux / sp.error))
    for target, flagged in ((0.5 * ref.snr[0], True), (0.5 * (ref.snr[0] + np.percentile(ref.snr, 1.0)), False)):
        r = P.predict(P.Spectrum(sp.wave, sp.flux, sp.error * snr / target, name="s"), ds, noise=0.1, mc=0)
        assert r["snr"]["value"] == pytest.approx(target, rel=0.02)
        words = [f for f in r["ood"]["flags"] if "S/N" in f and "outside the training range" in f]
        assert bool(words) == flagged, (target, ref.snr[0], r["ood"]["flags"])


def test_threads_asking_for_one_calibration_set_build_it_once(trained, monkeypatch):
    """The app's sessions are threads of one process: several asking at once get the same calibration set,
    built once (two builds would share one temporary file name)."""
    import threading

    from core.data import calibration
    ds, _ = trained
    path = calibration.path_for(ds)
    path.unlink(missing_ok=True)
    calls, real = [], calibration._build
    monkeypatch.setattr(calibration, "_build", lambda *a: (calls.append(1), real(*a)))
    got = []
    threads = [threading.Thread(target=lambda: got.append(calibration.ensure(ds))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 3 and all(g is not None for g in got)
    assert len({g.fingerprint for g in got}) == 1


def test_damaged_calibration_files_are_made_again(trained):
    """A calibration set or a run's cal_predictions.npz cut short on disk is rebuilt or re-predicted, not
    a crash and not a silent fall-back to the validation stars."""
    from core.data import calibration
    from core.predict import inventory
    from core.predict import skill as S
    ds, _ = trained
    preds = [e for e in P.trained_models(ds) if e.role == "predictor" and e.noise_level == 0.1]
    good = S.predictions(preds[0], ds, "cal")
    path = calibration.path_for(ds)
    path.write_bytes(path.read_bytes()[:5000])                     # the set, cut short
    f = preds[0].artifact / "cal_predictions.npz"
    f.write_bytes(f.read_bytes()[:100])                            # a run's predictions, cut short
    inventory._CACHE.clear()
    cal = calibration.ensure(ds)
    assert cal is not None and cal.n == calibration.size_for(ds)
    again = S.predictions(preds[0], ds, "cal")
    assert np.array_equal(good[0], again[0]) and np.array_equal(good[1], again[1])
    np.testing.assert_allclose(again[2], good[2], rtol=1e-12)      # BLAS threads may round the last digit apart
    r = P.predict(P.example(ds, 1, 0.1), ds, noise=0.1, mc=0)
    assert r["recommended"]["calibrated_on"] == "calibration"


def test_a_learning_curve_rung_is_research_not_a_predictor(tiny_dataset):
    """A report method trained on fewer spectra (the learning curve's n_train) is a research result: only
    the report's own spec answers for an upload."""
    from core import data
    from core.engine import train
    from core.engine.spec import make_spec
    full = train.run(make_spec("ridge", {}, 1.0, "quick", tiny_dataset, "report"), log=lambda m: None)
    rung = train.run(make_spec("ridge", {}, 1.0, "quick", tiny_dataset, "learning_curve", n_train=60),
                     log=lambda m: None)
    roles = {e.run_id: e.role for e in P.trained_models(data.Dataset(tiny_dataset))}
    assert roles[full.run_id] == "predictor" and roles[rung.run_id] == "research"
