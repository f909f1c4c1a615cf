"""The posterior suite (#17, part 4): neural posterior estimation (models/posterior.py, family `npe`)
at the profile's noise levels, with its default parameters (an MLP summary of every pixel, a neural
spline flow over Teff, log g and [M/H], fresh training noise).

Its posterior mean of log g enters the performance matrix as a row of its own (ROWS; the report suite
itself is unchanged), and core/analysis/calibration.py checks its intervals: simulation-based
calibration ranks and the coverage of the 68 % and 95 % intervals per S/N quartile.
"""
from __future__ import annotations

from core import config
from core.engine.spec import make_spec

# (label, model, params) as in REPORT_ROWS: the matrix shows this row where the suite's runs exist
ROWS = [("NPE posterior mean (flow)", "npe", {})]


def suite_specs(profile: str, dataset: str | None) -> list[dict]:
    """Each row of ROWS at each of the profile's noise levels."""
    return [make_spec(m, p, n, profile, dataset, "posterior") for _, m, p in ROWS for n in config.NOISE_LEVELS]
