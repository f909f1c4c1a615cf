"""Error versus flux: the error vector carries the flux shape (error-only beats zero), the shuffled
control falls to about zero, and the verdict text follows the numbers."""
from __future__ import annotations

import pandas as pd
import pytest

from core import data
from core.analysis import ablation
from core.engine import train

DS = "ablation-test"


@pytest.fixture(scope="module")
def ds(artifacts_dir):
    if DS not in data.list_datasets():
        data.build(name=DS, n=800, seed=13)
    return DS


def r2(ds, inputs, noise=0.1):
    return train.run({"model": "ridge", "params": {}, "inputs": inputs, "noise_level": noise, "dataset": ds,
                      "seed": 0, "profile": "quick"}).metrics["r2"]


def test_clean_error_predicts_and_shuffled_control_does_not(ds):
    err = r2(ds, "error")
    shuffled = r2(ds, "error_shuffled")
    assert err > 0.5, err
    assert abs(shuffled) < 0.15, shuffled
    assert r2(ds, "flux") > 0.6


def synthetic(f, fe, fs, err):
    rows = []
    for inp, v in (("flux", f), ("flux+error", fe), ("flux+error_shuffled", fs), ("error", err)):
        rows.append({"model": "dilated_cnn", "inputs": inp, "noise": 1.0, "r2": v})
    rows.append({"model": "ridge", "inputs": "error", "noise": 1.0, "r2": err - 0.1})
    return pd.DataFrame(rows)


def test_verdict_follows_the_numbers():
    dep = ablation.verdict(synthetic(0.60, 0.75, 0.58, 0.91), 1.0)
    indep = ablation.verdict(synthetic(0.60, 0.61, 0.60, 0.91), 1.0)
    weak = ablation.verdict(synthetic(0.60, 0.61, 0.60, 0.20), 1.0)
    assert "does depend on it" in dep and "0.750" in dep
    assert "does not depend on it" in indep
    assert "R² = 0.91" in dep and "predicts log g" in dep
    assert "does not predict log g well" in weak and "R² = 0.20" in weak
    missing = ablation.verdict(synthetic(0.60, None, 0.60, 0.9).dropna(), 1.0)
    assert "not run" in missing


def with_latent(df, flux, flux_error):
    extra = [{"model": ablation.LATENT_MODEL, "inputs": "flux", "noise": 1.0, "r2": flux},
             {"model": ablation.LATENT_MODEL, "inputs": "flux+error", "noise": 1.0, "r2": flux_error}]
    return pd.concat([df, pd.DataFrame(extra)], ignore_index=True)


def test_latent_clause_follows_the_encoders():
    base = synthetic(0.60, 0.61, 0.60, 0.91)
    assert "Latent" in ablation.verdict(base, 1.0) and "not run" in ablation.verdict(base, 1.0).split("Latent")[1]
    more = ablation.verdict(with_latent(base, 0.40, 0.55), 1.0)
    less = ablation.verdict(with_latent(base, 0.55, 0.40), 1.0)
    same = ablation.verdict(with_latent(base, 0.50, 0.51), 1.0)
    assert "puts more log g into the latent space" in more and "0.550" in more and "0.400" in more
    assert "takes log g out of the latent space" in less
    assert "does not change" in same


def test_suite_lists_each_encoder_before_its_probe():
    specs = ablation.suite_specs("quick", None)
    enc = [i for i, s in enumerate(specs) if s["model"] == "blindspot"]
    probes = [i for i, s in enumerate(specs) if s["model"] == "latent_probe"]
    assert len(enc) == len(probes) == 4
    for i, j in zip(enc, probes):
        assert j == i + 1 and specs[i]["inputs"] == specs[j]["inputs"]
        assert specs[i]["noise_level"] == specs[j]["noise_level"] == specs[j]["params"]["encoder_noise"]
    assert {s["inputs"] for s in specs if s["model"] == "blindspot"} == {"flux", "flux+error"}
