"""Nuisance parameters of an observed spectrum, drawn per star from a recipe's priors.

What a telescope adds to the star's spectrum (docs/simulator.md, "Nuisances"):

    observed(lam) = P(lam) * LSF_R * [ star(lam / (1 + rv/c)) * T_tell(lam) ]
    P(lam)        = 1 + c1 P1(x) + c2 P2(x),   x = ln lambda mapped onto [-1, 1]   (Legendre)
    T_tell(lam)   = exp(-(airmass^0.55 tau_O2(lam) + (airmass pwv / 2 mm)^0.6 tau_H2O(lam)))

- rv (km/s): the star's lines shift by lambda (1 + v/c) (first order in v/c, the simulator's
  `_shift`); the tellurics stay at rest (they are made in the observatory's frame).
- resolution: the per-star R of the Gaussian LSF (FWHM = lambda / R) that replaces the native
  R = 5000 (a per-star kernel, so R above 5000 is possible too).
- tilt_c1, tilt_c2: a flux-calibration error, multiplicative, mean exactly ~1 over the window.
- pwv (mm), airmass: the telluric bands, a band-shape (optical-depth template) model, not a
  line-by-line one.

`draw(recipe, n, rng)` draws the labels, `observe(sim, labels, nu)` makes the spectra. Pure torch /
numpy; imports nothing above core/physics.
"""
from __future__ import annotations

import math

import numpy as np
import torch

NUISANCE_KEYS = ("rv", "resolution", "tilt_c1", "tilt_c2", "pwv", "airmass")
# what each key means when a recipe leaves it out: no nuisance (airmass 0: above the atmosphere)
NEUTRAL = {"rv": 0.0, "resolution": 5000.0, "tilt_c1": 0.0, "tilt_c2": 0.0, "pwv": 0.0, "airmass": 0.0}

# ---- telluric optical-depth templates (airmass 1, PWV 2 mm), as seen at R ~ 5000 ----
# (centre A, Gaussian sigma A, optical depth); blue edge of a band (A) where it starts sharply.
# O2 A band (b-X 0-0): R-branch head at 7594 A, band origin ~7620 A, P branch to ~7690 A: the
# deepest part is the head, the P branch runs over K I 7664.9 (K I 7699.0 lies just outside).
O2_A_HEAD = 7593.7
O2_A = ((7603.0, 6.0, 1.10), (7625.0, 10.0, 0.75), (7650.0, 13.0, 0.45), (7675.0, 10.0, 0.20))
# H2O: the 0.72 um band (7160-7340 A, at the blue edge of the window) and the 0.82 um band
# (8120-8350 A, over the Na I 8183/8195 doublet)
H2O_BANDS = ((7185.0, 25.0, 0.22), (7245.0, 30.0, 0.16), (7300.0, 20.0, 0.08),
             (8140.0, 15.0, 0.10), (8200.0, 30.0, 0.16), (8265.0, 25.0, 0.13), (8320.0, 20.0, 0.06))
H2O_EDGES = (7160.0, 8120.0)
PWV_REF = 2.0             # mm: the PWV of the H2O templates
O2_AIRMASS_EXP = 0.55     # band-averaged optical depth of saturated lines ~ airmass^0.55 (Wade & Horne 1988)
H2O_COLUMN_EXP = 0.6      # the same curve-of-growth softening for the H2O column (airmass x PWV)


def _band(wave: np.ndarray, comps, edge: float) -> np.ndarray:
    tau = np.zeros_like(wave)
    for c, s, t in comps:
        tau += t * np.exp(-0.5 * ((wave - c) / s) ** 2)
    return tau / (1.0 + np.exp(-(wave - edge) / 1.5))       # sharp blue edge (band head)


def telluric_templates(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tau_O2, tau_H2O) on `wave` (A) at airmass 1 and PWV_REF: smooth band shapes."""
    wave = np.asarray(wave, dtype=np.float64)
    o2 = _band(wave, O2_A, O2_A_HEAD)
    h2o = _band(wave, H2O_BANDS[:3], H2O_EDGES[0]) + _band(wave, H2O_BANDS[3:], H2O_EDGES[1])
    return o2, h2o


def telluric_transmission(wave: np.ndarray, airmass, pwv) -> np.ndarray:
    """Transmission (n, P) in (0, 1] for per-star airmass and PWV (mm), each (n,) or a scalar."""
    o2, h2o = telluric_templates(wave)
    am = np.atleast_1d(np.asarray(airmass, dtype=np.float64))[:, None]
    w = np.atleast_1d(np.asarray(pwv, dtype=np.float64))[:, None]
    tau = am ** O2_AIRMASS_EXP * o2[None, :] + np.clip(am * w / PWV_REF, 0.0, None) ** H2O_COLUMN_EXP * h2o[None, :]
    return np.exp(-tau)


def continuum_polynomial(wave: np.ndarray, c1, c2) -> np.ndarray:
    """1 + c1 P1(x) + c2 P2(x), x = ln lambda mapped linearly onto [-1, 1]: (n, P). On the simulator's
    grid (uniform in ln lambda) P1 averages to 0 exactly and P2 to 1/(3 (P - 1)) ~ 1e-4."""
    ll = np.log(np.asarray(wave, dtype=np.float64))
    x = 2.0 * (ll - ll[0]) / (ll[-1] - ll[0]) - 1.0
    c1 = np.atleast_1d(np.asarray(c1, dtype=np.float64))[:, None]
    c2 = np.atleast_1d(np.asarray(c2, dtype=np.float64))[:, None]
    return 1.0 + c1 * x[None, :] + c2 * (1.5 * x[None, :] ** 2 - 0.5)


# --------------------------------------------------------------------------- priors
def support(prior) -> tuple[float, float]:
    """The interval a prior's draws lie in."""
    if isinstance(prior, (int, float)):
        return float(prior), float(prior)
    if prior["dist"] == "uniform":
        return float(prior["lo"]), float(prior["hi"])
    return float(prior.get("lo", -math.inf)), float(prior.get("hi", math.inf))


def _draw_one(prior, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(prior, (int, float)):
        return np.full(n, float(prior))
    kind = prior["dist"]
    if kind == "uniform":
        return rng.uniform(prior["lo"], prior["hi"], n)
    lo, hi = support(prior)
    out = np.empty(n)
    todo = np.arange(n)
    for _ in range(1000):                          # truncation by rejection
        if kind == "normal":
            v = rng.normal(prior["mu"], prior["sigma"], todo.size)
        elif kind == "lognormal":
            v = float(prior["median"]) * np.exp(rng.normal(0.0, prior["sigma_ln"], todo.size))
        else:
            raise ValueError(f"unknown prior {kind!r}; choose uniform, normal or lognormal")
        ok = (v >= lo) & (v <= hi)
        out[todo[ok]] = v[ok]
        todo = todo[~ok]
        if not todo.size:
            return out
    raise ValueError(f"prior {prior} rejects almost every draw: widen its lo/hi")


def draw(recipe: dict, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-star nuisance values, one array of n per key of NUISANCE_KEYS (absent keys: NEUTRAL),
    drawn in the fixed order of NUISANCE_KEYS."""
    unknown = set(recipe) - set(NUISANCE_KEYS) - {"name", "description", "sources"}
    if unknown:
        raise ValueError(f"unknown nuisance {sorted(unknown)}; choose from {', '.join(NUISANCE_KEYS)}")
    return {k: _draw_one(recipe.get(k, NEUTRAL[k]), n, rng) for k in NUISANCE_KEYS}


# --------------------------------------------------------------------------- spectra
def observe(sim, labels: torch.Tensor, nu: dict[str, np.ndarray], alpha_m=None) -> torch.Tensor:
    """The spectrum a telescope records (B, P): the simulator with the star's RV, the per-star LSF,
    the telluric transmission (at rest, before the LSF) and the continuum polynomial (after it)."""
    dev, dt = labels.device, sim.dtype
    wave = sim.wave.detach().cpu().double().numpy()

    def t(v):
        return torch.as_tensor(np.asarray(v), dtype=dt, device=dev)
    tell = t(telluric_transmission(wave, nu["airmass"], nu["pwv"]))
    poly = t(continuum_polynomial(wave, nu["tilt_c1"], nu["tilt_c2"]))
    flux = sim(labels, alpha_m=alpha_m, rv=t(nu["rv"]), resolution=t(nu["resolution"]), pre_lsf=tell)
    return flux * poly
