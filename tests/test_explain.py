"""Physics of the explanations: Fisher information sits in the wings of gravity-sensitive lines,
the Cramer-Rao bound scales with the noise, the likelihood fit recovers noiseless labels,
integrated gradients are complete, and no learned model beats the likelihood ceiling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import data
from core.analysis import saliency
from core.engine import train
from core.physics import fisher, simulate
from models import attribution

GRAVITY_LINES = [8498.02, 8542.09, 8662.14, 8183.26, 8194.82, 8806.76, 7664.90, 7698.96, 7771.94, 7774.17, 7775.39,
                 8750.47, 8665.02, 8598.39, 8545.38, 8502.48]  # Ca II, Na I, Mg I, K I, O I, Paschen


@pytest.fixture(scope="module")
def stars():
    rng = np.random.default_rng(11)
    lab = data.sample_labels(12, rng, tries=1)
    lab[:, 0] = np.clip(lab[:, 0], 3800, 6200)  # cool to solar-type: the CaT and Na I are the gravity lines
    flux, sig = simulate.simulate(lab, star_counts=np.full(len(lab), 800.0))
    return lab, flux, sig


def test_fisher_information_is_in_the_wings_of_gravity_lines(stars):
    """At R = 5000 the LSF (1.7 A FWHM) blends a strong line's core with its inner wings, so the
    gravity signal shows up within a few A of the line centre: per pixel, the +-5 A around the
    gravity-sensitive lines (Ca II triplet, Na I, K I, Mg I, O I, Paschen) carry far more log g information than
    the rest of the spectrum, the pixels off the line centre (0.5-5 A: the wings) carry a large share
    of it, and each star's most informative pixel lies there."""
    lab, flux, sig = stars
    _, jac = fisher.jacobian(lab)
    per_pixel, F = fisher.fisher(jac, sig)
    info = per_pixel.mean(0)
    wave = simulate.wavelength_grid().numpy()
    d = np.min(np.abs(wave[:, None] - np.array(GRAVITY_LINES)[None, :]), axis=1)
    near = d < 5.0
    wings = (d >= 0.5) & (d < 5.0)
    assert info[near].mean() > 50 * info[~near].mean()
    assert info[wings].mean() > 20 * info[~near].mean()
    assert info[wings].sum() > 0.3 * info[near].sum()
    best = np.argmax(per_pixel, axis=1)
    assert np.mean(d[best] < 5.0) >= 0.75


def test_autograd_jacobian_matches_finite_differences(stars):
    lab = stars[0][:3].astype(np.float64)
    _, jac = fisher.jacobian(lab)
    eps = np.array([5.0, 0.01, 0.01])
    for k in range(3):
        up, dn = lab.copy(), lab.copy()
        up[:, k] += eps[k]
        dn[:, k] -= eps[k]
        fd = (simulate.simulate(up)[0] - simulate.simulate(dn)[0]) / (2 * eps[k])
        big = np.abs(fd) > 0.05 * np.abs(fd).max()
        np.testing.assert_allclose(jac[..., k][big], fd[big], rtol=0.05, atol=1e-3 * np.abs(fd).max())


def test_cramer_rao_scales_with_noise(stars):
    lab, flux, sig = stars
    _, jac = fisher.jacobian(lab)
    s1 = fisher.cramer_rao(fisher.fisher(jac, 1.0 * sig)[1])["sigma_logg"]
    s01 = fisher.cramer_rao(fisher.fisher(jac, 0.1 * sig)[1])["sigma_logg"]
    np.testing.assert_allclose(s1 / s01, 10.0, rtol=1e-3)
    # marginalising Teff and [M/H] can only lose information
    alone = fisher.cramer_rao(fisher.fisher(jac, sig)[1])["sigma_logg_alone"]
    assert np.all(s1 >= alone * (1 - 1e-6))


def test_likelihood_fit_recovers_noiseless_labels():
    rng = np.random.default_rng(5)
    lab = data.sample_labels(4, rng, tries=1)
    flux, sig = simulate.simulate(lab, star_counts=np.full(4, 800.0))
    out = fisher.likelihood_fit(flux.astype(np.float64), 0.1 * sig, seed=0)
    assert np.all(np.abs(out["labels"][:, 1] - lab[:, 1]) < 0.01), out["labels"][:, 1] - lab[:, 1]
    assert np.all(np.abs(out["labels"][:, 2] - lab[:, 2]) < 0.01)


def test_integrated_gradients_are_complete():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 7, padding=3), torch.nn.Tanh(), torch.nn.Conv1d(4, 1, 5, padding=2),
                              torch.nn.Flatten(), torch.nn.Linear(256, 1))

    def f(x):
        return net(x)[:, 0]
    x = torch.randn(5, 1, 256)
    base = torch.zeros_like(x)
    ig = attribution.integrated_gradients(f, x, base, steps=64)
    with torch.no_grad():
        delta = f(x) - f(base)
    rel = (ig.sum(dim=(1, 2)) - delta).abs() / delta.abs().clamp_min(1e-6)
    assert rel.max() < 0.01, rel


def test_no_learned_model_beats_the_ceiling(artifacts_dir):
    if "ceiling-test" not in data.list_datasets():
        data.build(name="ceiling-test", n=320, seed=21)
    base = {"dataset": "ceiling-test", "noise_level": 1.0, "profile": "quick", "seed": 0, "params": {}}
    ceil = train.run({**base, "model": "likelihood_ceiling"})
    ridge = train.run({**base, "model": "ridge"})
    p = ceil.predictions()
    q = ridge.predictions()
    y = p["y_true"]
    assert np.array_equal(y, q["y_true"])
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(300):
        i = rng.integers(0, len(y), len(y))
        ss = np.sum((y[i] - y[i].mean()) ** 2)
        diffs.append((np.sum((y[i] - p["y_pred"][i]) ** 2) - np.sum((y[i] - q["y_pred"][i]) ** 2)) / ss)
    se = np.std(diffs)
    assert ridge.metrics["r2"] <= ceil.metrics["r2"] + 2 * se, (ridge.metrics["r2"], ceil.metrics["r2"], se)
    assert ceil.metrics["r2"] > 0.5


def test_fisher_topk_criterion_uses_train_only(artifacts_dir):
    """The physics-guided top-K criterion ranks pixels by Fisher information of TRAIN stars."""
    from models.base import FitContext
    from models.windows import score_fisher
    if "ceiling-test" not in data.list_datasets():
        data.build(name="ceiling-test", n=320, seed=21)
    ds = data.Dataset("ceiling-test")
    train_view = ds.view("train", 1.0, "flux", limit=40)
    s = score_fisher(None, None, None, view=train_view, ctx=FitContext(profile={}, dataset=ds))
    assert s.shape == (ds.n_pix,) and np.all(s >= 0)
    wave = ds.wave
    d = np.min(np.abs(wave[:, None] - np.array(GRAVITY_LINES)[None, :]), axis=1)
    top = np.argsort(s)[::-1][:64]
    assert np.mean(d[top] < 5.0) > 0.3  # gravity-line pixels are over-represented (they are ~4% of all)
    test_view = ds.view("test", 1.0, "flux", limit=40)
    assert not np.array_equal(s, score_fisher(None, None, None, view=test_view, ctx=FitContext(profile={}, dataset=ds)))


def test_saliency_of_trained_torch_models(tiny_dataset):
    """Every torch family whose inputs are a torch function of the spectrum gets gradient saliency:
    its differentiable forward equals its predictions, integrated gradients are complete, and the
    arrays are cached in the run folder; the global-feature MLP says why it has none."""
    from core.data import Dataset
    ds = Dataset(tiny_dataset)
    base = {"dataset": tiny_dataset, "noise_level": 1.0, "profile": "quick", "seed": 0}
    for model, params in (("dilated_cnn", {"dilation": 2}), ("topk_cnn", {"K": 64}), ("mlp", {})):
        r = train.run({**base, "model": model, "params": params})
        m = r.load_model()
        v = ds.view("test", 1.0, r.spec["inputs"], limit=16)
        a = m.forward_tensor(torch.as_tensor(v.x)).detach().numpy()
        assert np.allclose(a, m.predict(v), atol=1e-4), model
        sal = saliency.run_saliency(r, ds)
        assert (r.artifact / "saliency.npz").exists()
        assert sal["ig"].shape == (ds.n_pix,) and np.all(np.isfinite(sal["ig"])) and sal["ig"].max() > 0
        assert float(sal["ig_completeness"]) < 0.02, (model, float(sal["ig_completeness"]))
    g = train.run({**base, "model": "global_mlp", "params": {}})
    with pytest.raises(ValueError, match="outside torch"):
        saliency.run_saliency(g, ds)
