"""Why log g is where it is: Fisher information from the simulator's Jacobian, the Cramer-Rao
bound and the Bayesian likelihood ceiling (the physics limit every learned model is measured against).

Fisher information. With J_p = d flux_p / d (Teff, log g, [M/H]) from forward-mode autograd
(torch.func.jvp) and sigma_p the 1-sigma error at the noise level,
    I_p(log g) = J_p,g^2 / sigma_p^2                      (per pixel, log g alone)
    F = sum_p J_p J_p^T / sigma_p^2                        (3x3 per star)
    sigma_CR(log g) = sqrt((F^-1)_gg)                      (Teff and [M/H] marginalised)
The Cramer-Rao bound ignores the prior box of the grid, so at low S/N it can allow R^2 <= 0
while real estimators do better by shrinking towards the box. The ceiling is therefore
Bayesian: the posterior mean of log g under the uniform grid prior (likelihood_fit).

Likelihood fit (in the manner of The Payne, Ting et al. 2019): chi^2 of each test spectrum
against a coarse label grid of simulated spectra gives posterior weights; spectra whose
grid posterior is broad (effective sample size >= ESS_MIN grid points) take the grid's
posterior mean; narrow ones are refined by Gauss-Newton with the simulator's Jacobian, and
their posterior mean is the mean of the Laplace Gaussian truncated to the label box. On an
imported data set (no simulator) the training spectra are the templates.
"""
from __future__ import annotations

import numpy as np
import torch

from core.physics.labels import LABEL_BOX, LABELS

GRID_SHAPE = (15, 13, 9)  # Teff x log g x [M/H] points of the coarse grid
ESS_MIN = 8.0
GN_ITERATIONS = 10
LAPLACE_DRAWS = 400


def device_of(sim) -> str:
    """The device a simulator's buffers live on ('cpu', 'cuda:0'): where its Jacobians and fits run."""
    return str(sim.lsf.device)


def jacobian(labels: np.ndarray, sim=None, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flux (n, P) and d flux / d labels (n, P, 3) at `labels` (n, 3), by forward-mode autograd on the
    simulator's device (batches of 256 on the CPU, 4096 on a GPU), returned on the host."""
    from core.physics.simulate import default_simulator
    sim = sim or default_simulator("cpu")
    dev = device_of(sim)
    batch = batch or (256 if dev == "cpu" else 4096)
    flux, jac = [], []
    for i in range(0, len(labels), batch):
        lab = torch.as_tensor(labels[i:i + batch], dtype=sim.dtype, device=dev)
        cols = []
        f = None
        for k in range(3):
            t = torch.zeros_like(lab)
            t[:, k] = 1.0
            f, jv = torch.func.jvp(lambda l: sim(l), (lab,), (t,))
            cols.append(jv.detach())
        flux.append(f.detach().cpu().numpy())
        jac.append(torch.stack(cols, dim=-1).cpu().numpy())
    return np.concatenate(flux), np.concatenate(jac)


def fisher(jac: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel log g information (n, P) and the 3x3 Fisher matrices (n, 3, 3)."""
    w = 1.0 / np.clip(sigma.astype(np.float64), 1e-12, None) ** 2
    J = jac.astype(np.float64)
    per_pixel = J[..., 1] ** 2 * w
    F = np.einsum("npi,np,npj->nij", J, w, J)
    return per_pixel, F


def cramer_rao(F: np.ndarray) -> dict:
    """sigma_CR of log g: alone (Teff, [M/H] known) and marginalised over Teff and [M/H]."""
    alone = 1.0 / np.sqrt(np.clip(F[:, 1, 1], 1e-30, None))
    inv = np.linalg.inv(F + 1e-12 * np.eye(3))
    marg = np.sqrt(np.clip(inv[:, 1, 1], 0, None))
    return {"sigma_logg_alone": alone, "sigma_logg": marg}


def r2_allowed(sigma: np.ndarray, y: np.ndarray) -> float:
    """The R^2 an unbiased estimator at the Cramer-Rao bound would reach on labels y."""
    return float(1.0 - np.mean(sigma ** 2) / np.var(y))


def physics_info(ds, split: str, noise_level: float, max_stars: int = 300) -> dict:
    """Fisher information and Cramer-Rao bounds for the first max_stars of a split, at the
    stars' true labels and their error vectors, with the simulator of the data set's physics
    recipe (a physics variant's). Needs a simulator-built data set."""
    if not ds.has_meta:
        raise ValueError(f"{ds.name} was not made by the simulator: Fisher information needs it")
    from core.physics.simulate import variant_simulator
    rows = ds.split_rows(split, max_stars)
    lab = ds.labels[rows]
    _, err = ds.read(rows)
    flux, jac = jacobian(lab, variant_simulator(getattr(ds, "physics_recipe", None)))   # the data set's physics
    per_pixel, F = fisher(jac, noise_level * err)
    cr = cramer_rao(F)
    per_pixel_marg = marginal_pixel_info(jac, noise_level * err, F)
    return {"rows": rows, "labels": lab, "flux": flux, "per_pixel": per_pixel, "per_pixel_marg": per_pixel_marg,
            "F": F, **cr, "r2_cr": r2_allowed(cr["sigma_logg"], lab[:, 1])}


def marginal_pixel_info(jac: np.ndarray, sigma: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Per-pixel log g information left after marginalising Teff and [M/H]: the pixel's
    derivative projected off the Teff/[M/H] directions that the whole spectrum constrains,
    J_g - J_{t,m} F_{tm,tm}^-1 F_{tm,g}, squared over sigma^2. Sums (approximately) to 1/sigma_CR^2."""
    tm = [0, 2]
    Ftm = F[:, tm][:, :, tm]
    Fg = F[:, tm, 1]
    coef = np.linalg.solve(Ftm + 1e-12 * np.eye(2), Fg[..., None])[..., 0]      # (n, 2)
    resid = jac[..., 1] - np.einsum("npk,nk->np", jac[..., tm], coef)
    return resid ** 2 / np.clip(sigma, 1e-12, None) ** 2


# --------------------------------------------------------------------------- the ceiling
def label_grid(shape=GRID_SHAPE) -> np.ndarray:
    axes = [np.linspace(*LABEL_BOX[k], n) for k, n in zip(LABELS, shape)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


_GRID_CACHE: dict = {}


def grid_spectra(shape=GRID_SHAPE, sim=None) -> tuple[np.ndarray, np.ndarray]:
    """The coarse label grid and its spectra, of `sim` (a physics variant's simulator) or the default one."""
    from core.physics.simulate import SIMULATOR_VERSION, default_simulator, physics_key
    sim = sim or default_simulator("cpu")
    key = (shape, SIMULATOR_VERSION, physics_key(getattr(sim, "physics", None)), device_of(sim))
    if key not in _GRID_CACHE:
        while len(_GRID_CACHE) >= 4:                # ~60 MB a grid: keep the few physics variants last used
            _GRID_CACHE.pop(next(iter(_GRID_CACHE)))
        g = label_grid(shape)
        with torch.no_grad():
            m = np.concatenate([sim(torch.as_tensor(g[i:i + 512], dtype=sim.dtype, device=device_of(sim))).cpu().numpy()
                                for i in range(0, len(g), 512)])
        _GRID_CACHE[key] = (g, m.astype(np.float64))
    return _GRID_CACHE[key]


CHI2_ROWS = 2048   # spectra per block of the CPU chi^2 (its float64 temporaries are ~4 x CHI2_ROWS x P)
GN_ROWS = 1024     # spectra per block of the Gauss-Newton refinement (its Jacobian is GN_ROWS x P x 3 float64)


def chi2_matrix(f: np.ndarray, sigma: np.ndarray, models: np.ndarray, device: str = "cpu") -> np.ndarray:
    """chi^2 of every spectrum (n, P) against every model (G, P): (n, G), by two matrix products in float64,
    with numpy on the CPU (CHI2_ROWS spectra at a time) and with torch on another device (chi2_torch, the
    same formula)."""
    if device != "cpu":
        return chi2_torch(f, sigma, models, device)
    mm = (models * models).T
    out = np.empty((len(f), len(models)))
    for i in range(0, len(f), CHI2_ROWS):
        w = 1.0 / np.clip(np.asarray(sigma[i:i + CHI2_ROWS], dtype=np.float64), 1e-12, None) ** 2
        fi = np.asarray(f[i:i + CHI2_ROWS], dtype=np.float64)
        out[i:i + CHI2_ROWS] = np.sum(fi * fi * w, axis=1)[:, None] - 2.0 * (fi * w) @ models.T + w @ mm
    return out


def chi2_torch(f: np.ndarray, sigma: np.ndarray, models: np.ndarray, device: str, rows: int = 8192) -> np.ndarray:
    """chi2_matrix on a torch device, float64, `rows` spectra at a time (bounded device memory); tests pin it
    to the numpy path on the CPU."""
    m = torch.as_tensor(np.asarray(models, dtype=np.float64), device=device)
    mm = (m * m).T
    out = []
    for i in range(0, len(f), rows):
        fi = torch.as_tensor(np.asarray(f[i:i + rows], dtype=np.float64), device=device)
        si = torch.as_tensor(np.asarray(sigma[i:i + rows], dtype=np.float64), device=device)
        w = 1.0 / torch.clamp(si, min=1e-12) ** 2
        out.append((torch.sum(fi * fi * w, dim=1)[:, None] - 2.0 * (fi * w) @ m.T + w @ mm).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(models)))


def _posterior_from_chi2(chi2: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = chi2 - chi2.min(axis=1, keepdims=True)
    w = np.exp(-0.5 * c)
    w /= w.sum(axis=1, keepdims=True)
    mean = w @ grid
    ess = 1.0 / np.sum(w ** 2, axis=1)
    best = grid[np.argmin(chi2, axis=1)]
    return mean, ess, best


def likelihood_fit(flux: np.ndarray, sigma: np.ndarray, templates: tuple[np.ndarray, np.ndarray] | None = None,
                   seed: int = 0, sim=None, device: str | None = None) -> dict:
    """Posterior-mean labels (n, 3) of noisy spectra under the uniform label-box prior.
    templates=(labels, spectra) switches to template matching (imported data sets); `sim` is the
    simulator whose likelihood it is (a physics variant's; default: this version's). The chi^2 runs on
    `device` (default: the simulator's; the CPU for templates). With a data set's nuisances fitted and
    marginalised: core/physics/nuisance_fit.likelihood_fit."""
    device = device or (device_of(sim) if sim is not None else "cpu")
    if templates is not None:
        grid, models = templates
        chi2 = chi2_matrix(flux, sigma, models.astype(np.float64), device=device)
        mean, ess, best = _posterior_from_chi2(chi2, grid)
        return {"labels": mean, "method": np.array(["templates"] * len(flux)), "ess": ess}
    grid, models = grid_spectra(sim=sim)
    chi2 = chi2_matrix(flux, sigma, models, device=device)
    gmean, ess, best = _posterior_from_chi2(chi2, grid)
    out = gmean.copy()
    method = np.array(["grid"] * len(flux), dtype=object)
    narrow = np.nonzero(ess < ESS_MIN)[0]
    if narrow.size:      # stars are independent: refined in blocks, so the Jacobian's memory stays bounded
        parts = [gauss_newton(flux[b], sigma[b], best[b], sim=sim)
                 for b in np.array_split(narrow, -(-narrow.size // GN_ROWS))]
        lab, cov = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        out[narrow] = truncated_laplace_mean(lab, cov, seed)
        method[narrow] = "gauss-newton + Laplace"
    return {"labels": out, "method": method.astype(str), "ess": ess}


def gauss_newton(flux: np.ndarray, sigma: np.ndarray, start: np.ndarray, iterations: int = GN_ITERATIONS, sim=None):
    """Maximum-likelihood labels and their Laplace covariance (F^-1), from `start`, by
    Levenberg-Marquardt: Gauss-Newton steps with a per-star damping that grows when a step
    does not lower chi^2 (the step is then rejected) and shrinks when it does."""
    from core.physics.simulate import default_simulator
    sim = sim or default_simulator("cpu")
    lo = np.array([LABEL_BOX[k][0] for k in LABELS])
    hi = np.array([LABEL_BOX[k][1] for k in LABELS])
    span = hi - lo
    lab = start.astype(np.float64).copy()
    w = 1.0 / np.clip(sigma.astype(np.float64), 1e-12, None) ** 2
    lam = np.full(len(lab), 1e-3)
    m, J = jacobian(lab, sim)
    chi = np.sum((flux - m) ** 2 * w, axis=1)
    for _ in range(iterations):
        F = np.einsum("npi,np,npj->nij", J, w, J)
        g = np.einsum("npi,np->ni", J, w * (flux - m))
        D = np.einsum("nii->ni", F)[:, :, None] * np.eye(3)[None]
        step = np.linalg.solve(F + lam[:, None, None] * D + 1e-12 * np.eye(3), g[..., None])[..., 0]
        step = np.clip(step, -0.25 * span, 0.25 * span)
        trial = np.clip(lab + step, lo - 0.05 * span, hi + 0.05 * span)
        with torch.no_grad():
            mt = sim(torch.as_tensor(trial, dtype=sim.dtype, device=device_of(sim))).cpu().numpy().astype(np.float64)
        chit = np.sum((flux - mt) ** 2 * w, axis=1)
        ok = chit < chi
        lam = np.where(ok, lam / 3.0, lam * 4.0)
        if ok.any():
            lab[ok] = trial[ok]
            chi[ok] = chit[ok]
            m2, J2 = jacobian(lab[ok], sim)
            m[ok], J[ok] = m2, J2
    F = np.einsum("npi,np,npj->nij", J, w, J)
    cov = np.linalg.inv(F + 1e-9 * np.eye(3))
    return lab, cov


def truncated_laplace_mean(lab: np.ndarray, cov: np.ndarray, seed: int = 0) -> np.ndarray:
    """Mean of N(lab, cov) restricted to the label box, by Monte Carlo."""
    lo = np.array([LABEL_BOX[k][0] for k in LABELS])
    hi = np.array([LABEL_BOX[k][1] for k in LABELS])
    rng = np.random.default_rng(seed)
    out = np.clip(lab, lo, hi)
    for i in range(len(lab)):
        try:
            L = np.linalg.cholesky(cov[i] + 1e-12 * np.eye(3))
        except np.linalg.LinAlgError:
            continue
        z = lab[i] + rng.standard_normal((LAPLACE_DRAWS, 3)) @ L.T
        ok = np.all((z >= lo) & (z <= hi), axis=1)
        if ok.sum() >= 10:
            out[i] = z[ok].mean(axis=0)
    return out


# --------------------------------------------------------------------------- saliency
