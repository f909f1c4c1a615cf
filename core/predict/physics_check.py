"""The physics check of an upload (The Payne's way, Ting et al. 2019): the best-fitting spectrum of the
built-in simulator (grid chi^2, then Levenberg-Marquardt from the best grid point: core/physics/fisher.py)
and its reduced chi^2 over the covered pixels, compared with the same number for the data set's
validation spectra. A spectrum the simulator cannot fit (a white dwarf, an L dwarf, a galaxy, junk) sits
far above them. The fit's labels and their covariance place the star on the Kiel diagram.

Only for data sets the current simulator built; an imported grid keeps the PCA checks alone.
"""
from __future__ import annotations

import numpy as np

from core.data import Dataset

N_CALIBRATION = 120     # validation spectra whose fit chi^2 sets the reference distribution
FIT_PCT = 99.0          # above this percentile of theirs: flagged


def available(ds: Dataset) -> bool:
    from core.physics.simulate import SIMULATOR_VERSION
    return str(ds.attrs.get("simulator_version", "")) == SIMULATOR_VERSION


MODEL_FLOOR = 0.02      # fractional model error added to the upload's in quadrature: the simulator is not a real star
CHI2_FLAG = 2.0         # reduced chi^2 (with that floor) above which the simulator cannot fit the spectrum
GN_STEPS = 6


def fit(flux: np.ndarray, sigma: np.ndarray, covered: np.ndarray, start: np.ndarray | None = None,
        floor: float = MODEL_FLOOR) -> dict:
    """Best-fit labels, their covariance, the model spectrum and reduced chi^2 for spectra (n, P): from
    `start` (n, 3) when given (Levenberg-Marquardt only), else from the best point of the coarse label grid.
    The error used is the spectrum's with a fractional model error `floor` added in quadrature."""
    import torch

    from core.physics import fisher
    from core.physics.simulate import default_simulator
    flux, sigma = np.atleast_2d(flux).astype(np.float64), np.atleast_2d(sigma).astype(np.float64)
    cov_mask = np.atleast_2d(covered)
    s = np.where(cov_mask, np.sqrt(sigma ** 2 + (floor * flux) ** 2), 1e6)   # uncovered pixels carry no weight
    if start is None:
        grid, models = fisher.grid_spectra()
        start = grid[np.argmin(fisher.chi2_matrix(flux, s, models), axis=1)]
    lab, cov = fisher.gauss_newton(flux, s, np.atleast_2d(start), iterations=GN_STEPS)
    sim = default_simulator("cpu")
    with torch.no_grad():
        m = sim(torch.as_tensor(lab, dtype=sim.dtype)).numpy().astype(np.float64)
    npix = np.maximum(cov_mask.sum(axis=1) - 3, 1)
    chi2 = np.sum(np.where(cov_mask, ((flux - m) / s) ** 2, 0.0), axis=1) / npix
    return {"labels": lab, "cov": cov, "model": m, "chi2": chi2}
