"""Error versus flux: the error vector carries the flux shape (error-only beats zero), the shuffled
control falls to about zero, and the verdict text follows the numbers."""
from __future__ import annotations

import pandas as pd
import pytest

from core import ablation, data, train

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
