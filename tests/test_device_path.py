"""Issue #19 part 4: the ceiling's GPU path. On the CPU the torch float64 chi^2 (what a CUDA run uses) is pinned
to the numpy one, and the whole likelihood fit through it to the CPU fit; with a GPU the `gpu` tests run the same
comparisons on CUDA."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.physics import fisher
from core.physics.simulate import default_simulator


def _spectra(n: int = 6, noise: float = 0.5, seed: int = 3):
    rng = np.random.default_rng(seed)
    lab = np.column_stack([rng.uniform(4200, 6200, n), rng.uniform(1.5, 4.5, n), rng.uniform(-1.5, 0.2, n)])
    with torch.no_grad():
        clean = default_simulator("cpu")(torch.as_tensor(lab, dtype=torch.float32)).numpy().astype(np.float64)
    sigma = np.full_like(clean, noise)
    return lab, clean + sigma * rng.standard_normal(clean.shape), sigma


def test_the_torch_chi2_equals_the_numpy_chi2():
    rng = np.random.default_rng(0)
    f, s, m = rng.uniform(0.2, 1.2, (37, 300)), rng.uniform(0.01, 0.1, (37, 300)), rng.uniform(0.2, 1.2, (11, 300))
    ref = fisher.chi2_matrix(f, s, m)
    got = fisher.chi2_torch(f, s, m, "cpu", rows=8)          # several row blocks
    assert got.shape == (37, 11)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-9)
    assert not np.allclose(fisher.chi2_torch(f, s * 1.01, m, "cpu"), ref, rtol=1e-6)   # it does depend on sigma


def test_the_likelihood_fit_through_the_torch_path_equals_the_cpu_fit(monkeypatch):
    _, flux, sigma = _spectra()
    ref = fisher.likelihood_fit(flux, sigma)
    real = fisher.chi2_matrix
    used = []

    def via_torch(f, s, m, device="cpu"):
        used.append(device)
        return fisher.chi2_torch(f, s, m, "cpu")
    monkeypatch.setattr(fisher, "chi2_matrix", via_torch)
    got = fisher.likelihood_fit(flux, sigma)
    assert used and real is not via_torch
    np.testing.assert_allclose(got["labels"], ref["labels"], rtol=0, atol=1e-8)
    assert (got["method"] == ref["method"]).all()


@pytest.mark.gpu
def test_jacobian_and_ceiling_on_cuda_match_the_cpu():
    lab, flux, sigma = _spectra()
    f_cpu, j_cpu = fisher.jacobian(lab)
    f_gpu, j_gpu = fisher.jacobian(lab, default_simulator("cuda"))
    np.testing.assert_allclose(f_gpu, f_cpu, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(j_gpu, j_cpu, rtol=1e-3, atol=1e-4 * np.abs(j_cpu).max())
    cpu = fisher.likelihood_fit(flux, sigma)["labels"][:, 1]
    gpu = fisher.likelihood_fit(flux, sigma, sim=default_simulator("cuda"))["labels"][:, 1]
    assert np.max(np.abs(gpu - cpu)) < 0.01   # dex: float32 simulator on another device, float64 chi^2
