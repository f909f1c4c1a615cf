"""The likelihood fit with the telescope's nuisances as free parameters (#18, part 1: "the ceiling
marginalises them").

On a data set built with a nuisance recipe (core/physics/nuisance.py) every spectrum carries its own
radial velocity, resolution, continuum tilt and telluric absorption. A fit of the three labels alone is
then a fit with the wrong model: on `sim-quick-survey` at noise 0.1 it gave log g R^2 0.04 (RMSE 1.12 dex,
120 test stars) against 0.99 on the same stars without nuisances, far below what the learned models
reach there (0.93), so it was no ceiling at all. Here the nuisances are fitted with the labels, each
under its recipe's prior, and the label posterior is the marginal over them:

    theta = (Teff, log g, [M/H], rv, resolution, tilt_c1, tilt_c2, ln pwv, airmass)   (the keys the recipe varies)
    -2 ln p(theta | f) = sum_p (f_p - observe(theta)_p)^2 / sigma_p^2 + sum_k ((theta_k - mu_k) / s_k)^2

- the forward model is the build's own, `nuisance.observe` (exact);
- its Jacobian is taken by forward differences of that model (FD_STEP per parameter), and the maximum by
  Levenberg-Marquardt from a start that estimates the multiplicative nuisances from the data
  (_multiplicative_start: ln(f / model) is linear in the band optical depths and the tilt);
- each prior is a Gaussian: a normal's own (mu, sigma), a uniform's mean and sd ((hi - lo) / sqrt 12),
  a lognormal's in ln pwv; every nuisance is kept inside its prior's support (the labels within 5 % of the
  label box outside it, as in fisher.gauss_newton);
- the labels' covariance is the labels block of the inverse of (J^T W J + prior precision): the Laplace
  approximation of the posterior marginalised over the nuisances.

`fit(flux, sigma, recipe, sim)` returns the labels, that covariance, the fitted nuisances and the fitted
multiplicative factor (tellurics x tilt), with which the caller (fisher.likelihood_fit) forms the grid
posterior of stars whose likelihood is too broad for a Laplace approximation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.physics import nuisance as nuis
from core.physics.labels import LABEL_BOX, LABELS

# forward-difference steps: labels (K, dex, dex), then the nuisances in their fitted units
FD_STEP = {"teff": 20.0, "logg": 0.02, "mh": 0.02, "rv": 0.3, "resolution": 25.0, "tilt_c1": 1e-3,
           "tilt_c2": 1e-3, "pwv": 0.05, "airmass": 0.02}
ITERATIONS = 12
ROWS = 256            # stars fitted at a time (the Jacobian is ROWS x P x 9 float64: ~75 MB)


@dataclass
class Prior:
    """A nuisance's Gaussian prior in its fitted units (pwv: ln pwv) and the support it is kept in."""
    mu: float
    sd: float
    lo: float
    hi: float


@dataclass
class NuisanceFit:
    labels: np.ndarray        # (n, 3) maximum a posteriori labels
    cov: np.ndarray           # (n, 3, 3) their covariance, marginalised over the nuisances (Laplace)
    nuisances: dict           # key -> (n,) fitted values (pwv in mm)
    factor: np.ndarray        # (n, P) the fitted multiplicative nuisances: telluric transmission x tilt
    free: tuple               # the nuisance keys that were fitted


def priors(recipe: dict) -> dict[str, Prior | float]:
    """Per nuisance key: its Gaussian Prior when the recipe varies it, else the fixed value (NEUTRAL where
    the recipe leaves it out)."""
    out: dict[str, Prior | float] = {}
    for k in nuis.NUISANCE_KEYS:
        p = recipe.get(k, nuis.NEUTRAL[k])
        if isinstance(p, (int, float)):
            out[k] = float(p)
            continue
        lo, hi = nuis.support(p)
        if p["dist"] == "uniform":
            mu, sd = (lo + hi) / 2, (hi - lo) / math.sqrt(12.0)
        elif p["dist"] == "normal":
            mu, sd = float(p["mu"]), float(p["sigma"])
        elif p["dist"] == "lognormal":        # fitted in ln(value)
            mu, sd = math.log(float(p["median"])), float(p["sigma_ln"])
            lo, hi = math.log(max(lo, 1e-6)), math.log(hi) if math.isfinite(hi) else math.inf
        else:
            raise ValueError(f"unknown prior {p['dist']!r} of nuisance {k}")
        out[k] = Prior(mu, max(sd, 1e-12), lo, hi)
    return out


def _log_keys(recipe: dict) -> set:
    return {k for k in nuis.NUISANCE_KEYS if isinstance(recipe.get(k), dict) and recipe[k]["dist"] == "lognormal"}


def _observe(sim, lab: np.ndarray, nu: dict[str, np.ndarray]) -> np.ndarray:
    dev = str(sim.lsf.device)
    with torch.no_grad():
        t = torch.as_tensor(lab, dtype=sim.dtype, device=dev)
        return nuis.observe(sim, t, nu).cpu().numpy().astype(np.float64)


def fit(flux: np.ndarray, sigma: np.ndarray, recipe: dict, sim=None, start: np.ndarray | None = None,
        iterations: int = ITERATIONS) -> NuisanceFit:
    """Labels and nuisances of spectra (n, P) with their errors, under `recipe`'s priors (see the module
    docstring); `start` (n, 3) the labels to start from (default: the grid's best after dividing out the
    multiplicative nuisances estimated from the data, _multiplicative_start, with the RV started by a scan
    over its prior, _rv_scan)."""
    from core.physics import fisher
    from core.physics.simulate import default_simulator
    sim = sim or default_simulator("cpu")
    flux, sigma = np.asarray(flux, np.float64), np.asarray(sigma, np.float64)
    n = len(flux)
    pri = priors(recipe)
    logs = _log_keys(recipe)
    free = tuple(k for k in nuis.NUISANCE_KEYS if isinstance(pri[k], Prior))
    wave = sim.wave.detach().cpu().double().numpy()

    def natural(k, v):            # fitted units -> the value observe() takes
        return np.exp(v) if k in logs else v

    # the start: nuisances at their prior centre; the multiplicative ones divided out before the grid
    theta_nu = {k: np.full(n, pri[k].mu if isinstance(pri[k], Prior) else pri[k]) for k in nuis.NUISANCE_KEYS}
    tell = nuis.telluric_transmission(wave, natural("airmass", theta_nu["airmass"]), natural("pwv", theta_nu["pwv"]))
    grid, models = fisher.grid_spectra(sim=sim)
    if start is None:
        best = grid[np.argmin(fisher.chi2_matrix(flux / tell, sigma / tell, models), axis=1)]
        # the multiplicative nuisances from the data: ln(f / model) of the best grid spectrum (without
        # tellurics or tilt) is linear in the band optical depths and the tilt (_multiplicative_start);
        # twice, the second time against the grid's best after dividing the first estimate out
        for _ in range(2):
            m = _observe(sim, best, {k: (natural(k, v) if k in ("rv", "resolution") else nuis.NEUTRAL[k])
                                     for k, v in theta_nu.items()})
            est = _multiplicative_start(flux, sigma, m, wave, pri, logs)
            for k, v in est.items():
                if isinstance(pri[k], Prior):
                    theta_nu[k] = v
            fac = nuis.telluric_transmission(wave, natural("airmass", theta_nu["airmass"]), natural("pwv", theta_nu["pwv"])) \
                * nuis.continuum_polynomial(wave, theta_nu["tilt_c1"], theta_nu["tilt_c2"])
            if isinstance(pri["rv"], Prior):
                theta_nu["rv"] = _rv_scan(flux, sigma, fac, m, theta_nu["rv"], pri["rv"], sim.dloglam)
            rest_f, rest_s = to_rest(flux / fac, sigma / fac, theta_nu["rv"], sim.dloglam)
            best = grid[np.argmin(fisher.chi2_matrix(rest_f, rest_s, models), axis=1)]
        start = best
    labels, cov, nu_fit = [], [], {k: [] for k in nuis.NUISANCE_KEYS}
    for i in range(0, n, ROWS):
        sl = slice(i, i + ROWS)
        lab, C, th = _levenberg_marquardt(sim, flux[sl], sigma[sl], np.asarray(start[sl], np.float64),
                                          {k: v[sl] for k, v in theta_nu.items()}, pri, free, logs, iterations)
        labels.append(lab)
        cov.append(C)
        for k in nuis.NUISANCE_KEYS:
            nu_fit[k].append(natural(k, th[k]))
    nu_fit = {k: np.concatenate(v) for k, v in nu_fit.items()}
    factor = nuis.telluric_transmission(wave, nu_fit["airmass"], nu_fit["pwv"]) * \
        nuis.continuum_polynomial(wave, nu_fit["tilt_c1"], nu_fit["tilt_c2"])
    return NuisanceFit(np.concatenate(labels), np.concatenate(cov), nu_fit, factor, free)


def shift_pixels(a: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """a (n, P) sampled at pixel i + pixels[j] for row j (linear interpolation; the ends held): on a grid uniform
    in ln lambda a velocity v is a shift of ln(1 + v/c) / dloglam pixels."""
    P = a.shape[1]
    x = np.clip(np.arange(P)[None, :] + np.asarray(pixels, np.float64)[:, None], 0.0, P - 1.0)
    i0 = np.minimum(np.floor(x).astype(np.int64), P - 2)
    w = x - i0
    rows = np.arange(a.shape[0])[:, None]
    return a[rows, i0] * (1.0 - w) + a[rows, i0 + 1] * w


def to_rest(flux: np.ndarray, sigma: np.ndarray, rv: np.ndarray, dloglam: float) -> tuple[np.ndarray, np.ndarray]:
    """Flux and error moved to the star's rest frame by its RV (km/s): rest(lambda) = observed(lambda (1 + v/c))."""
    from core.physics.simulate import C_KMS
    px = np.log1p(np.asarray(rv, np.float64) / C_KMS) / dloglam
    return shift_pixels(flux, px), shift_pixels(sigma, px)


def _rv_scan(flux, sigma, factor, model, rv0, prior: Prior, dloglam: float, steps: int = 33) -> np.ndarray:
    """The RV start: the velocity, on a grid over the prior's +-4 sd (inside its support), whose shifted rest-frame
    model (times the multiplicative nuisances) fits the spectrum best; chi^2 per star, the model at rv0."""
    from core.physics.simulate import C_KMS
    lo, hi = max(prior.lo, prior.mu - 4 * prior.sd), min(prior.hi, prior.mu + 4 * prior.sd)
    grid_v = np.linspace(lo, hi, steps)
    w = 1.0 / np.clip(sigma, 1e-12, None) ** 2
    best, best_chi = np.asarray(rv0, np.float64).copy(), np.full(len(flux), np.inf)
    for v in grid_v:
        # the model was made at rv0: observed(lambda) = rest(lambda / (1 + v/c)) -> shift by the difference
        px = -(np.log1p(v / C_KMS) - np.log1p(np.asarray(rv0, np.float64) / C_KMS)) / dloglam
        chi = np.sum((flux - factor * shift_pixels(model, px)) ** 2 * w, axis=1)
        better = chi < best_chi
        best[better], best_chi[better] = v, chi[better]
    return best


def _multiplicative_start(flux, sigma, model, wave, pri, logs) -> dict[str, np.ndarray]:
    """Starting values of the tilt and the tellurics (fitted units) from ln(f / model) = -a tau_O2 - b tau_H2O
    + c1 P1 + c2 P2, by weighted least squares (weights (model / sigma)^2, a small ridge), then
    airmass = a^(1/0.55) and pwv = 2 mm b^(1/0.6) / airmass, each clipped into its prior's support."""
    o2, h2o = nuis.telluric_templates(wave)
    ll = np.log(wave)
    x = 2.0 * (ll - ll[0]) / (ll[-1] - ll[0]) - 1.0
    basis = np.stack([-o2, -h2o, x, 1.5 * x ** 2 - 0.5])                  # (4, P)
    r = np.log(np.clip(flux, 1e-3, None)) - np.log(np.clip(model, 1e-3, None))
    w = (np.clip(model, 1e-3, None) / np.clip(sigma, 1e-12, None)) ** 2
    G = np.einsum("kp,np,lp->nkl", basis, w, basis) + 1e-6 * np.eye(4)[None]
    b = np.einsum("kp,np->nk", basis, w * r)
    a, bh, c1, c2 = np.linalg.solve(G, b[..., None])[..., 0].T
    am = np.clip(a, 0.0, None) ** (1.0 / nuis.O2_AIRMASS_EXP)
    pa = pri["airmass"]                       # the airmass the pwv is read with: inside its support, or fixed
    am = np.clip(am, pa.lo, pa.hi) if isinstance(pa, Prior) else np.full_like(am, float(pa))
    pwv = nuis.PWV_REF * np.clip(bh, 0.0, None) ** (1.0 / nuis.H2O_COLUMN_EXP) / np.maximum(am, 1e-3)
    out = {"tilt_c1": c1, "tilt_c2": c2, "airmass": am, "pwv": pwv}
    for k in list(out):
        p = pri[k]
        if not isinstance(p, Prior):
            out.pop(k)
            continue
        v = np.log(np.clip(out[k], 1e-6, None)) if k in logs else out[k]
        out[k] = np.clip(v, p.lo, p.hi)
    return out


def _levenberg_marquardt(sim, flux, sigma, lab, theta_nu, pri, free, logs, iterations):
    """One block of stars: MAP labels, their marginal covariance and the fitted nuisances (fitted units)."""
    names = list(LABELS) + list(free)
    lo = np.array([LABEL_BOX[k][0] for k in LABELS] + [pri[k].lo for k in free])
    hi = np.array([LABEL_BOX[k][1] for k in LABELS] + [pri[k].hi for k in free])
    span = np.array([LABEL_BOX[k][1] - LABEL_BOX[k][0] for k in LABELS] + [6.0 * pri[k].sd for k in free])
    lo_box, hi_box = lo.copy(), hi.copy()
    lo_box[:3], hi_box[:3] = lo[:3] - 0.05 * span[:3], hi[:3] + 0.05 * span[:3]
    mu = np.array([pri[k].mu for k in free])
    prec = np.array([1.0 / pri[k].sd ** 2 for k in free])
    th = np.concatenate([lab, np.stack([theta_nu[k] for k in free], axis=1)], axis=1) if free else lab.copy()
    fixed = {k: theta_nu[k] for k in nuis.NUISANCE_KEYS if k not in free}
    w = 1.0 / np.clip(sigma, 1e-12, None) ** 2
    step_h = np.array([FD_STEP[k] for k in names])

    def model(t):
        nu = {k: (np.exp(t[:, 3 + j]) if k in logs else t[:, 3 + j]) for j, k in enumerate(free)}
        nu.update({k: (np.exp(v) if k in logs else v) for k, v in fixed.items()})
        return _observe(sim, t[:, :3], nu)

    def objective(t, m):
        pr = np.sum((t[:, 3:] - mu) ** 2 * prec, axis=1) if free else 0.0
        return np.sum((flux - m) ** 2 * w, axis=1) + pr

    def jac(t, m):
        J = np.empty((len(t), flux.shape[1], len(names)))
        for j in range(len(names)):
            tj = t.copy()
            h = np.where(tj[:, j] + step_h[j] > hi_box[j], -step_h[j], step_h[j])   # stay inside the support
            tj[:, j] += h
            J[:, :, j] = (model(tj) - m) / h[:, None]
        return J

    P_prior = np.zeros((len(names), len(names)))
    P_prior[3:, 3:] = np.diag(prec) if free else P_prior[3:, 3:]
    m = model(th)
    chi = objective(th, m)
    J = jac(th, m)
    lam = np.full(len(th), 1e-3)
    for _ in range(iterations):
        F = np.einsum("npi,np,npj->nij", J, w, J) + P_prior[None]
        g = np.einsum("npi,np->ni", J, w * (flux - m))
        if free:
            g[:, 3:] -= (th[:, 3:] - mu) * prec
        D = np.einsum("nii->ni", F)[:, :, None] * np.eye(len(names))[None]
        step = np.linalg.solve(F + lam[:, None, None] * D + 1e-12 * np.eye(len(names)), g[..., None])[..., 0]
        step = np.clip(step, -0.25 * span, 0.25 * span)
        trial = np.clip(th + step, lo_box, hi_box)
        mt = model(trial)
        chit = objective(trial, mt)
        ok = chit < chi
        lam = np.where(ok, lam / 3.0, lam * 4.0)
        if ok.any():
            th[ok], chi[ok], m[ok] = trial[ok], chit[ok], mt[ok]
            J[ok] = jac(th[ok], m[ok])
    F = np.einsum("npi,np,npj->nij", J, w, J) + P_prior[None]
    C = np.linalg.inv(F + 1e-9 * np.eye(len(names)))
    out = {k: th[:, 3 + j] for j, k in enumerate(free)}
    out.update(fixed)
    return th[:, :3], C[:, :3, :3], out


def likelihood_fit(flux, sigma, recipe: dict, seed: int = 0, sim=None, device: str | None = None) -> dict:
    """fisher.likelihood_fit with the recipe's nuisances fitted and marginalised (the ceiling on a data set with
    nuisances; models/ceiling.py): every star is fitted (labels and
    nuisances, nuisance_fit.fit); a star whose grid posterior, on its flux with the fitted multiplicative
    nuisances (tellurics x tilt) divided out and moved to rest by its fitted RV, is broad keeps that grid
    posterior mean (its resolution is then the grid's native one: a +-10 % LSF moves a broad posterior
    little), the others the truncated Laplace mean of the marginal covariance."""
    from core.physics import fisher
    device = device or (fisher.device_of(sim) if sim is not None else "cpu")
    from core.physics.simulate import default_simulator
    sim = sim or default_simulator("cpu")
    res = fit(flux, sigma, recipe, sim=sim)
    grid, models = fisher.grid_spectra(sim=sim)
    rest_f, rest_s = to_rest(np.asarray(flux, np.float64) / res.factor, np.asarray(sigma, np.float64) / res.factor,
                             res.nuisances["rv"], sim.dloglam)
    chi2 = fisher.chi2_matrix(rest_f, rest_s, models, device=device)
    gmean, ess, _ = fisher._posterior_from_chi2(chi2, grid)
    out = gmean.copy()
    method = np.array(["grid, nuisances fitted"] * len(flux), dtype=object)
    narrow = np.nonzero(ess < fisher.ESS_MIN)[0]
    if narrow.size:
        out[narrow] = fisher.truncated_laplace_mean(res.labels[narrow], res.cov[narrow], seed)
        method[narrow] = "nuisances marginalised (Levenberg-Marquardt + Laplace)"
    return {"labels": out, "method": method.astype(str), "ess": ess, "nuisances": res.nuisances,
            "free_nuisances": list(res.free)}
