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


def _ridge_data(n=3000, p=400, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, p)) * rng.uniform(0.5, 2, p) + 3).astype(np.float32)
    y = X[:, :10].sum(1).astype(np.float64) + rng.standard_normal(n)
    return X, X.mean(0), X.std(0) + 1e-8, y - y.mean()


def test_ridge_from_the_accumulated_gram_matrix_equals_the_closed_form():
    """#19: with more spectra than pixels Ridge accumulates X^T X over blocks (no float64 copy of the training
    set); its coefficients are those of the closed form on the whole standardised matrix."""
    import tracemalloc

    from models.linear import ALPHAS, ridge_path, ridge_path_gram, standardised_gram
    X, m, s, y = _ridge_data()
    old = ridge_path((X - m) / s, y, ALPHAS)
    for rows in (1, 777, 4096):
        new = ridge_path_gram(*standardised_gram(X, m, s, y, rows=rows), ALPHAS)
        assert max(np.max(np.abs(a - b)) / np.max(np.abs(a)) for a, b in zip(old, new)) < 1e-10
    X, m, s, y = _ridge_data(n=20_000, p=200)
    tracemalloc.start()
    standardised_gram(X, m, s, y, rows=256)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.1 * X.size * 8                   # a float64 copy of X would be X.size * 8 bytes (32 MB)


@pytest.mark.gpu
def test_the_gram_matrix_on_cuda_matches_the_cpu():
    from models.linear import standardised_gram
    X, m, s, y = _ridge_data()
    g_cpu, b_cpu = standardised_gram(X, m, s, y)
    g_gpu, b_gpu = standardised_gram(X, m, s, y, device="cuda")
    np.testing.assert_allclose(g_gpu, g_cpu, rtol=1e-6)
    np.testing.assert_allclose(b_gpu, b_cpu, rtol=1e-6, atol=1e-6)
    from models.linear import ALPHAS, ridge_path_gram
    for a, b in zip(ridge_path_gram(g_cpu, b_cpu, ALPHAS), ridge_path_gram(g_cpu, b_cpu, ALPHAS, device="cuda")):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9 * np.max(np.abs(a)))


def test_a_ridge_fit_on_more_spectra_than_pixels_holds_no_float64_copy():
    """RidgeModel.fit takes the accumulated path when n > p: the closed form's coefficients, and a peak far
    below the float64 copy of the training set the closed form made."""
    import tracemalloc

    from core.data import View
    from models.base import FitContext
    from models.linear import ALPHAS, RidgeModel, ridge_path
    X, m, s, _ = _ridge_data(n=20_000, p=200)
    rng = np.random.default_rng(1)
    y = np.column_stack([rng.uniform(4000, 6000, len(X)), X[:, :5].sum(1), rng.uniform(-1, 0, len(X))]).astype(np.float32)
    tr, va = View(X[:, None, :], y, np.arange(len(X)), ["flux"], np.arange(200.0)), \
        View(X[:2000, None, :], y[:2000], np.arange(2000), ["flux"], np.arange(200.0))
    tracemalloc.start()
    model = RidgeModel().fit(tr, va, FitContext(profile={}))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the closed form held a float32 standardised copy and its float64 copy (1.5 x X.size x 8 bytes); what is
    # left is np.std's float32 temporary (0.5 x) and blocks
    assert peak < 0.75 * X.size * 8
    yt = y[:, 1].astype(np.float64)
    ref = dict(zip(ALPHAS, ridge_path((X - model.mean_) / model.std_, yt - yt.mean(), ALPHAS)))[model.alpha_]
    np.testing.assert_allclose(model.coef_, ref, rtol=1e-8, atol=1e-10)


def test_the_cannon_fits_over_blocks_of_spectra():
    """#19: the Cannon's training sums run over blocks of spectra: the coefficients of one block of all rows,
    and a peak far below the float64 copies of the training set (flux, error, weights) the single pass made."""
    import tracemalloc

    from core.data import View
    from models import cannon
    from models.base import FitContext
    rng = np.random.default_rng(2)
    n, p = 12_000, 300
    y = np.column_stack([rng.uniform(4000, 6500, n), rng.uniform(1, 5, n), rng.uniform(-2, 0.5, n)]).astype(np.float32)
    u = (y - y.mean(0)) / y.std(0)
    flux = 1 - 0.1 * np.outer(u[:, 1], np.linspace(0, 1, p)) - 0.05 * np.outer(u[:, 0] ** 2, np.ones(p))
    err = np.full((n, p), 0.02)
    x = np.stack([flux + err * rng.standard_normal((n, p)), err], axis=1).astype(np.float32)
    tr = View(x, y, np.arange(n), ["flux", "error"], np.arange(float(p)))
    tracemalloc.start()
    blocked = cannon.CannonModel().fit(tr, tr, FitContext(profile={}))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.0 * n * p * 8                     # the single pass held ~6 float64 arrays of n x p
    one = cannon.CannonModel()
    monkey_rows, cannon.FIT_ROWS = cannon.FIT_ROWS, n
    try:
        one.fit(tr, tr, FitContext(profile={}))
    finally:
        cannon.FIT_ROWS = monkey_rows
    np.testing.assert_allclose(blocked.theta_, one.theta_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(blocked.s2_, one.s2_, rtol=1e-9, atol=1e-15)


def test_the_ceiling_runs_in_blocks(monkeypatch):
    """#19: the CPU chi^2 and the Gauss-Newton refinement run over blocks of spectra: the same answer as one
    block of every spectrum."""
    lab, noisy, sigma = _spectra(n=7, noise=0.02)
    grid, models = fisher.grid_spectra()
    monkeypatch.setattr(fisher, "CHI2_ROWS", 10 ** 6)
    whole = fisher.chi2_matrix(noisy, sigma, models)
    monkeypatch.setattr(fisher, "CHI2_ROWS", 3)
    np.testing.assert_allclose(fisher.chi2_matrix(noisy, sigma, models), whole, rtol=1e-9)   # BLAS blocking
    monkeypatch.setattr(fisher, "GN_ROWS", 10 ** 6)
    one = fisher.likelihood_fit(noisy, sigma)
    monkeypatch.setattr(fisher, "GN_ROWS", 2)
    blocks = fisher.likelihood_fit(noisy, sigma)
    assert (one["method"] == "gauss-newton + Laplace").sum() >= 3          # the refinement ran, in several blocks
    # the float32 simulator's batched Jacobian rounds differently for another batch size: ~1e-6 relative
    np.testing.assert_allclose(blocks["labels"], one["labels"], rtol=1e-5)
