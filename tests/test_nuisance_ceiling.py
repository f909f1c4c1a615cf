"""The likelihood ceiling on data with nuisances (#18 part 1): RV, resolution, continuum tilt and tellurics
fitted with the labels under the recipe's priors and marginalised (core/physics/nuisance_fit.py); the
ceiling suite asks for it on a nuisance data set, and a ceiling that ignores them says so."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import config, data
from core.data.building import sample_labels
from core.engine import suites, train
from core.physics import fisher, nuisance_fit
from core.physics import nuisance as nuis
from core.physics.simulate import default_simulator

SURVEY = config.NUISANCE_RECIPES["survey"]


def test_the_fit_recovers_injected_nuisances_and_labels():
    """Stars observed with survey nuisances at S/N ~ 150: the fit finds each nuisance well inside its prior's
    spread and the labels within their marginal errors."""
    sim = default_simulator("cpu")
    rng = np.random.default_rng(3)
    n = 6
    lab = sample_labels(n, rng)
    nu = nuis.draw(SURVEY, n, rng)
    with torch.no_grad():
        clean = nuis.observe(sim, torch.as_tensor(lab, dtype=torch.float32), nu).numpy().astype(np.float64)
    sigma = np.abs(clean) / 150.0 + 1e-4
    flux = clean + sigma * rng.standard_normal(clean.shape)
    res = nuisance_fit.fit(flux, sigma, SURVEY, sim=sim)
    assert set(res.free) == set(nuis.NUISANCE_KEYS)                  # the survey recipe varies every one
    pri = nuisance_fit.priors(SURVEY)
    assert np.sqrt(np.mean((res.nuisances["rv"] - nu["rv"]) ** 2)) < 0.2 * pri["rv"].sd       # 3 km/s prior
    assert np.sqrt(np.mean((res.nuisances["tilt_c1"] - nu["tilt_c1"]) ** 2)) < 0.2 * pri["tilt_c1"].sd
    assert np.sqrt(np.mean((res.nuisances["airmass"] - nu["airmass"]) ** 2)) < 0.3 * pri["airmass"].sd
    sd = np.sqrt(np.einsum("nii->ni", res.cov))
    assert np.all(np.abs(res.labels - lab) < 5 * sd + np.array([30.0, 0.05, 0.05]))
    wave = sim.wave.double().numpy()                                 # tellurics x tilt as fitted, and as injected
    true = nuis.telluric_transmission(wave, nu["airmass"], nu["pwv"]) * nuis.continuum_polynomial(wave, nu["tilt_c1"], nu["tilt_c2"])
    assert res.factor.shape == flux.shape and np.abs(res.factor - true).max() < 0.02


def test_priors_are_the_recipes_gaussians():
    pri = nuisance_fit.priors(SURVEY)
    assert pri["rv"].mu == 0.0 and pri["rv"].sd == 3.0 and (pri["rv"].lo, pri["rv"].hi) == (-12.0, 12.0)
    assert pri["resolution"].mu == 5000.0 and pri["resolution"].sd == pytest.approx(1000.0 / np.sqrt(12.0))
    assert pri["pwv"].mu == pytest.approx(np.log(2.0)) and pri["pwv"].sd == 0.6       # fitted in ln pwv
    assert nuisance_fit.priors({"rv": 5.0})["rv"] == 5.0 and nuisance_fit.priors({})["airmass"] == 0.0


@pytest.fixture(scope="module")
def survey(artifacts_dir):
    name = "ceil-survey"
    if name not in data.list_datasets():
        data.build(name=name, n=70, device="cpu", nuisance="survey")
    if "ceil-plain" not in data.list_datasets():
        data.build(name="ceil-plain", n=70, device="cpu")
    return name


def test_the_ceiling_suite_marginalises_on_a_nuisance_data_set(survey):
    specs = suites.suite("ceiling", "quick", survey)
    assert {s["params"].get("nuisances") for s in specs} == {"marginalise"}
    plain = suites.suite("ceiling", "quick", "ceil-plain")
    assert all(s["params"] == {} for s in plain)                    # a plain data set: the ceiling of before
    assert suites.has_nuisances("quick", "sim-quick-survey") and not suites.has_nuisances("quick", "sim-quick+cn")
    spec = next(s for s in specs if s["noise_level"] == 0.1)
    ignored = dict(spec, params={})
    r_m, r_i = train.run(spec, log=lambda m: None), train.run(ignored, log=lambda m: None)
    assert r_m.run_id != r_i.run_id
    assert r_m.metrics["nuisances_ignored"] == 0.0 and r_i.metrics["nuisances_ignored"] == 1.0
    # ignoring the nuisances is a fit with the wrong model: far worse than marginalising them
    assert r_m.metrics["rmse"] < 0.5 * r_i.metrics["rmse"] and r_m.metrics["r2"] > 0.8
    again = train.cached_result(spec)
    assert again is not None and again.run_id == r_m.run_id


def test_a_bad_nuisance_mode_is_refused_in_one_line():
    from core.engine.spec import make_spec, normalise_spec
    with pytest.raises(ValueError, match="nuisances must be one of ignore, marginalise"):
        normalise_spec(make_spec("likelihood_ceiling", {"nuisances": "maybe"}, 0.1, "quick", "d"))


def test_the_marginalised_fit_of_a_spectrum_without_nuisances_agrees_with_the_plain_fit():
    """On stars observed without nuisances, marginalising a prior that allows none (airmass and tilts from 0)
    costs little: the labels agree with the plain fit's within their errors."""
    sim = default_simulator("cpu")
    rng = np.random.default_rng(5)
    lab = sample_labels(5, rng)
    with torch.no_grad():
        clean = sim(torch.as_tensor(lab, dtype=torch.float32)).numpy().astype(np.float64)
    sigma = np.full_like(clean, 0.01)
    flux = clean + sigma * rng.standard_normal(clean.shape)
    a = fisher.likelihood_fit(flux, sigma)
    loose = dict(SURVEY, airmass={"dist": "uniform", "lo": 0.0, "hi": 1.5})
    b = nuisance_fit.likelihood_fit(flux, sigma, loose)
    assert "nuisances" in b and "nuisances" not in a
    assert np.all(np.abs(a["labels"][:, 1] - b["labels"][:, 1]) < 0.25)          # log g: RMSE ~0.1 dex at S/N ~ 100
    assert np.all(b["nuisances"]["airmass"] < 0.2)                               # no tellurics found
