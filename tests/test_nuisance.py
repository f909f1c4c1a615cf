"""Nuisance parameters (core/physics/nuisance.py, issue #18 part 1): per-star RV, resolution,
continuum polynomial and tellurics drawn from a recipe's priors, stored as labels; a data set
without a recipe is the one it was before they existed."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from core import config, data
from core.physics import nuisance as nuis
from core.physics.simulate import C_KMS, RESOLUTION, default_simulator, wavelength_grid

N = 50
# `python -m core data build --n 50` (profile quick, seed 42) with the code before nuisances
# existed (commit 35229c3, torch 2.13 CPU): a plain build must still give it
HEAD_FP_N50 = "d033b7244ee23e30"
PLAIN_DATASETS = {"error", "flux", "labels/logg", "labels/mh", "labels/teff", "meta/oh_relative", "meta/read_noise",
                  "meta/sky_counts", "meta/star_counts", "meta/throughput", "split/test", "split/train", "split/val",
                  "wave"}
PLAIN_ATTRS = {"created", "description", "fingerprint", "n_spectra", "name", "normalisation", "profile", "seed",
               "simulator_version", "source"}


def _tree(path) -> tuple[set, set]:
    names = set()
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, o: names.add(k) if isinstance(o, h5py.Dataset) else None)
        return names, set(f.attrs)


@pytest.fixture(scope="module")
def built():
    plain = data.Dataset(data.build(name="nu-plain", n=N, device="cpu"))
    survey = data.Dataset(data.build(name="nu-survey", n=N, device="cpu", nuisance="survey"))
    return plain, survey


def test_survey_recipe_round_trips_its_nuisance_labels(built):
    plain, survey = built
    rec = config.NUISANCE_RECIPES["survey"]
    assert survey.nuisance is not None and set(survey.nuisance) == set(nuis.NUISANCE_KEYS)
    for k, v in survey.nuisance.items():
        lo, hi = nuis.support(rec[k])
        assert v.shape == (N,) and np.all(np.isfinite(v)) and np.all((v >= lo) & (v <= hi)), k
        assert np.std(v) > 0, k                        # drawn per star, not one value
    assert survey.nuisance_recipe["name"] == "survey" and survey.nuisance_recipe["rv"] == rec["rv"]
    assert survey.info()["nuisances"] == "survey"
    # the same seed: the same stars, counts and splits; only the spectra (and their errors) change
    np.testing.assert_array_equal(survey.labels, plain.labels)
    np.testing.assert_array_equal(survey.star_counts, plain.star_counts)
    for s in data.SPLITS:
        np.testing.assert_array_equal(survey.splits[s], plain.splits[s])
    fs, es = survey.read(np.arange(N))
    fp, ep = plain.read(np.arange(N))
    assert np.all(np.isfinite(fs)) and np.all(es > 0) and np.abs(fs - fp).max() > 0.01
    assert survey.fingerprint != plain.fingerprint
    # the stored flux is the observed one: what observe() gives for the stored draws
    sim = default_simulator("cpu")
    with torch.no_grad():
        obs = nuis.observe(sim, torch.as_tensor(survey.labels[:4], dtype=torch.float32),
                           {k: v[:4] for k, v in survey.nuisance.items()}).numpy()
    np.testing.assert_allclose(fs[:4], obs, rtol=0, atol=1e-6)


def test_no_recipe_is_the_data_set_of_before(built):
    plain, _ = built
    assert plain.nuisance is None and plain.nuisance_recipe is None and "nuisances" not in plain.info()
    names, attrs = _tree(plain.path)
    assert names == PLAIN_DATASETS and attrs == PLAIN_ATTRS
    assert all(p.get("nuisance") is None for p in config.PROFILES.values())
    assert "nuisance" not in config.profile("quick")     # so that no run id hashes it (test_spec_hashes)
    if torch.__version__.startswith("2.13"):           # float32 sums may differ across torch builds
        assert plain.fingerprint == HEAD_FP_N50
    # the flux is the simulator's native spectrum
    with torch.no_grad():
        f0 = default_simulator("cpu")(torch.as_tensor(plain.labels[:4], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(plain.read(np.arange(4))[0], f0, rtol=0, atol=1e-6)   # batch of 50 vs 4 (float32)


def _observe(labels, **kw):
    """observe() with every nuisance neutral except those given (float64)."""
    sim = default_simulator("cpu", torch.float64)
    lab = torch.as_tensor(np.atleast_2d(labels), dtype=torch.float64)
    nu = {k: np.full(len(lab), kw.get(k, nuis.NEUTRAL[k]), dtype=np.float64) for k in nuis.NUISANCE_KEYS}
    with torch.no_grad():
        return nuis.observe(sim, lab, nu).numpy()


def test_neutral_nuisances_give_the_native_spectrum():
    lab = np.array([[4800.0, 2.5, -0.5]])
    sim = default_simulator("cpu", torch.float64)
    with torch.no_grad():
        f0 = sim(torch.as_tensor(lab)).numpy()
    np.testing.assert_allclose(_observe(lab), f0, rtol=0, atol=1e-12)


def _ccf_rv(wave, obs, rest, vmax=40.0):
    """RV (km/s) by cross-correlation: the rest spectrum Fourier-shifted in ln lambda over a grid of
    trial velocities, the chi^2 minimum refined by a parabola. Independent of the simulator's shift."""
    ll = np.log(wave)
    step = ll[1] - ll[0]
    sl = slice(300, wave.size - 300)                   # no edge effects of the periodic shift
    n = rest.size
    ramp = np.linspace(rest[0], rest[-1], n)           # remove the end-to-end step before the FFT
    spec = np.fft.rfft(rest - ramp)
    k = np.fft.rfftfreq(n)

    def shifted(v):
        s = np.log1p(v / C_KMS) / step
        out = np.fft.irfft(spec * np.exp(-2j * np.pi * k * s), n) + ramp
        return out

    vs = np.arange(-vmax, vmax + 0.01, 0.5)
    chi = np.array([np.sum((obs[sl] - shifted(v)[sl]) ** 2) for v in vs])
    i = int(np.clip(np.argmin(chi), 1, vs.size - 2))
    a, b, c = chi[i - 1], chi[i], chi[i + 1]
    return float(vs[i] + 0.5 * 0.5 * (a - c) / (a - 2 * b + c))


@pytest.mark.parametrize("v_true", [-23.7, 4.2, 11.0])
def test_injected_rv_is_recovered_by_cross_correlation(v_true):
    lab = np.array([4600.0, 2.0, -0.3])
    wave = wavelength_grid().numpy()
    rest, obs = _observe(lab)[0], _observe(lab, rv=v_true)[0]
    v = _ccf_rv(wave, obs, rest)
    assert abs(v - v_true) < 1.0, (v, v_true)


def _second_moment_px(depth):
    x = np.arange(depth.size, dtype=np.float64)
    w = np.clip(depth, 0, None)
    mu = (w * x).sum() / w.sum()
    return float((w * (x - mu) ** 2).sum() / w.sum())


@pytest.mark.parametrize("r_true", [4500.0, 5300.0, 5500.0])
def test_injected_resolution_is_recovered_from_a_line_width(r_true):
    """One weak, isolated Fe I line alone (line_mask): the LSF's variance adds to the line's, so
    sigma_LSF(R)^2 = m2(R) - m2(5000) + sigma_LSF(5000)^2 (second moments of the line depth, in px)."""
    sim = default_simulator("cpu", torch.float64)
    lab = torch.tensor([[5772.0, 4.44, 0.0]], dtype=torch.float64)
    lw = sim.line_wave.numpy()
    weak = [i for i, s in enumerate(sim.species) if s == "Fe I" and 7300 < lw[i] < 8700
            and np.min(np.abs(np.delete(lw, i) - lw[i])) > 4.0]
    assert weak
    i = weak[0]
    mask = np.zeros(sim.n_lines, bool)
    mask[i] = True
    wave = sim.wave.numpy()
    c = int(np.argmin(np.abs(wave - lw[i])))
    win = slice(c - 14, c + 15)
    m2 = {}
    for r in (RESOLUTION, r_true):
        with torch.no_grad():
            lr = sim.line_ratio(lab, line_mask=mask, resolution=torch.tensor([r], dtype=torch.float64))[0].numpy()
        m2[r] = _second_moment_px(1.0 - lr[win])
    sig_native = sim.lsf_sigma_pix
    sig = np.sqrt(m2[r_true] - m2[RESOLUTION] + sig_native ** 2)
    r_rec = 1.0 / (sig * 2.0 * np.sqrt(2.0 * np.log(2.0)) * sim.dloglam)
    assert abs(r_rec / r_true - 1.0) < 0.05, (r_rec, r_true)


def test_tellurics_transmission_bands_and_scaling():
    wave = wavelength_grid(torch.float64).numpy()
    in_o2 = (wave > 7585) & (wave < 7710)
    in_h2o = ((wave > 8110) & (wave < 8420)) | ((wave > 7150) & (wave < 7380))
    t = nuis.telluric_transmission(wave, [1.0, 1.5, 2.0, 1.0, 1.0], [2.0, 2.0, 2.0, 1.0, 6.0])
    assert np.all(t <= 1.0) and np.all(t > 0.0)
    assert np.all(in_o2[np.argmin(t, axis=1)])                    # deepest in the O2 A band
    h2o_min = np.where(in_h2o, t, 1.0).argmin(axis=1)
    assert np.all(in_h2o[h2o_min])
    assert np.all(np.where(in_o2 | in_h2o, 1.0, t) > 0.99)        # clear outside the bands
    # over the lines they hide: K I 7665 in the O2 A band, the Na I doublet in the H2O band
    for lam, band in ((7664.9, "o2"), (8183.3, "h2o"), (8194.8, "h2o")):
        j = int(np.argmin(np.abs(wave - lam)))
        assert t[0, j] < 0.97, (lam, t[0, j])
    # more airmass: deeper everywhere in the bands; more water: deeper H2O, the same O2
    band = in_o2 | in_h2o
    assert np.all(np.diff(t[:3][:, band], axis=0) < 0)
    assert np.all(t[4, in_h2o] < t[3, in_h2o]) and np.allclose(t[4, in_o2 & ~in_h2o], t[3, in_o2 & ~in_h2o])
    # above the atmosphere: nothing
    np.testing.assert_array_equal(nuis.telluric_transmission(wave, 0.0, 0.0), np.ones((1, wave.size)))


def test_continuum_polynomial_has_mean_one():
    wave = wavelength_grid(torch.float64).numpy()
    rng = np.random.default_rng(3)
    c1, c2 = rng.uniform(-0.02, 0.02, 20), rng.uniform(-0.01, 0.01, 20)
    p = nuis.continuum_polynomial(wave, c1, c2)
    assert np.all(np.abs(p.mean(axis=1) - 1.0) < 1e-5)
    np.testing.assert_allclose(p[:, -1] - p[:, 0], 2 * c1, atol=1e-12)   # the tilt end to end is 2 c1


def test_priors_draw_inside_their_support_and_reject_unknown_keys():
    rng = np.random.default_rng(0)
    for name, rec in config.NUISANCE_RECIPES.items():
        nu = nuis.draw(rec, 2000, rng)
        for k, v in nu.items():
            lo, hi = nuis.support(rec[k])
            assert np.all((v >= lo) & (v <= hi)), (name, k)
    assert abs(np.std(nuis.draw(config.NUISANCE_RECIPES["survey"], 4000, rng)["rv"]) - 3.0) < 0.2
    with pytest.raises(ValueError, match="unknown nuisance"):
        nuis.draw({"vsini": 3.0}, 10, rng)
    with pytest.raises(ValueError, match="unknown nuisance recipe"):
        config.nuisance_recipe("nope")


def test_cli_builds_a_named_survey_data_set(capsys):
    from core.cli import main
    assert main(["data", "build", "--name", "nu-cli", "--n", "20", "--nuisance", "survey", "--device", "cpu"]) == 0
    assert data.Dataset("nu-cli").nuisance["rv"].shape == (20,)
    assert main(["data", "build", "--n", "20", "--nuisance", "survey", "--device", "cpu"]) == 0
    assert "sim-quick-survey" in data.list_datasets()       # never over the profile's plain data set


def test_data_page_shows_the_nuisances_and_the_tellurics(built):
    """#18 part 5: the survey data set's nuisance draws as histograms, and a star with and without tellurics."""
    import json

    from streamlit.testing.v1 import AppTest

    from core.analysis import data_summary
    plain, survey = built
    titles = [t for t, _, _ in data_summary.nuisance_frames(survey)]
    assert titles[:2] == ["radial velocity", "resolving power R"] and data_summary.nuisance_frames(plain) == []
    rv = data_summary.nuisance_frames(survey)[0][2]
    assert int(rv["count"].sum()) == N                                   # every star's draw is in the histogram
    o2 = data_summary.telluric_comparison(plain.labels[0], 2.0, 1.5, data_summary.TELLURIC_WINDOWS["O2 A band and K I"])
    clean, tell = (o2[o2.curve == c].flux.to_numpy() for c in o2.curve.unique())
    assert np.max(1 - tell / clean) > 0.3 and np.min(1 - tell / clean) > -1e-5    # the A band absorbs, nothing adds
    ca = data_summary.telluric_comparison(plain.labels[0], 2.0, 1.5, (8530.0, 8560.0))
    c2, t2 = (ca[ca.curve == c].flux.to_numpy() for c in ca.curve.unique())
    assert np.max(np.abs(t2 / c2 - 1)) < 1e-3                             # the Ca II triplet is free of them
    at = AppTest.from_file(str(config.ROOT / "pages" / "data.py"), default_timeout=120)
    at.session_state["dataset"] = "nu-survey"
    at.run()
    assert not at.exception and not at.error
    charts = [json.loads(c.proto.spec).get("title") for c in at.get("vega_lite_chart")]
    assert "radial velocity" in charts and any(str(t).startswith("The example test star with and without") for t in charts)
    at.radio(key="data_tell_band").set_value("O2 A band and K I").run()
    assert not at.exception
