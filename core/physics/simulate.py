"""The built-in spectrum simulator: a parametric LTE-flavoured model of a PFS MR red-arm spectrum.

Everything is torch, batched over stars and differentiable in the labels, so that
d flux / d label comes from autograd (core/explain uses it for Fisher information).
Every formula and constant is explained, with its source, in docs/simulator.md; the short version:

    flux(lam)  = LSF * [ C(lam) * < 1 - D (1 - exp(-sum_l tau_l)) >_pixel ]
    C(lam)     = B_lam(Teff) / <B_lam(Teff)>_window * exp(-tau_TiO)
    tau_l(lam) = S_l * dlamD_sun_l / dlamD_l * H(a_l, (lam - lam_l) / dlamD_l)     (Voigt-Hjerting H)
    log S_l    = log_tau_sun_l + [log R_l(Teff, g, M) - log R_l(sun)]              (R: line/continuum opacity)
    log R_l    = log A + log f_stage(T, P_e) - chi_exc theta - log kappa_H-(T, P_e) [- x log g/g_sun, majority]
    kappa_H-   ~ P_e theta^2.5 10^(0.754 theta)                                    (Gray 2005, ch. 8)
    P_e        ~ g^(1/3) A^(1/3) 10^(-beta (theta - theta_sun));  P_g ~ g^(2/3) A^(-1/3)  (Gray 2005, ch. 9)
    gamma_l    = gamma_sun_l (P_g / P_g,sun) (T / T_sun)^-0.7    (van der Waals; Stark ~ N_e^(2/3) for H I)
    sigma^2    = [N* t f + sky(lam) + RN^2] / (N* t)^2                              (photon + sky with OH + read noise)

Optical depth is evaluated on 8 sub-samples per pixel around every line core (and at pixel centres
in the far wings) and the transmission is averaged over each pixel before the LSF, so a line's
equivalent width does not depend on where it falls within a pixel (intrinsic Doppler widths,
1.3-3.5 km/s for metals, are far below a 16 km/s pixel).

Labels are a (B, 3) tensor of (Teff [K], log g [dex], [M/H] [dex]); optional nuisances
([alpha/M], radial velocity km/s) default to zero.

Physics variants (`Simulator(physics={...})`, PHYSICS_DEFAULTS; a data set's physics recipe,
core.config.PHYSICS_RECIPES): the majority-species scaling x, the weak forest's seed, Fe II lines,
CN bands, Ca II triplet saturation, the CaT's decline in warm stars. Without one (or with the
defaults) the spectra are those of this version, bit for bit.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from core.physics.lines import ELEMENTS, sky_lines, stellar_lines  # noqa: F401  (ELEMENTS re-exported)

SIMULATOR_VERSION = "2.0.0"

# ---- instrument (PFS medium-resolution red arm) ----
WAVE_MIN, WAVE_MAX, N_PIX = 7100.0, 8850.0, 4096
RESOLUTION = 5000.0
C_KMS = 299792.458

# ---- physics constants ----
T_SUN, LOGG_SUN = 5772.0, 4.438
THETA_SUN = 5040.0 / T_SUN
XI_SUN = 1.04             # solar microturbulence (km/s) used for the reference Doppler width
LOG_PE_SUN = 1.2          # log10 electron pressure (dyn cm^-2) near tau_5000 ~ 0.5 in the solar photosphere
BETA_PE = 3.0             # d log P_e / d theta at fixed g: P_e falls steeply in cooler photospheres
H_MINUS_THETA = 0.754     # H- bound-free: kappa ~ P_e theta^2.5 10^(0.754 theta) (binding energy 0.754 eV)
MAJORITY_G_EXTRA = 0.4    # effective extra g^-0.4 on majority-species lines (extended low-g atmospheres), see docs
LINE_DEPTH_MAX = 0.9      # a saturated line core keeps 10% of the continuum (source-function floor)
VDW_T_EXP = -0.7          # van der Waals: gamma_6 ~ C_6^0.4 P_g T^-0.7 (Gray 2005, ch. 11)
K_B, AMU, H_PLANCK, C_MS = 1.380649e-23, 1.66053907e-27, 6.62607015e-34, 2.99792458e8
TIO_HEADS = (7054.0, 7589.0, 8206.0, 8432.0)   # TiO band heads, bands degraded to the red
TIO_DEPTHS = (1.0, 0.8, 0.5, 0.6)
TIO_DECAY_A = 150.0
TIO_T0, TIO_DT, TIO_SCALE = 3500.0, 250.0, 0.6  # TiO optical depth: 0.6 10^[M/H] exp(-(Teff - 3500)/250)

# ---- numerics (see docs/simulator.md, "Sampling") ----
OVERSAMPLE = 8            # sub-samples per pixel on which line optical depth is evaluated near line cores
U_ASYMPTOTIC = 6.0        # |u| beyond which the asymptotic series of w(z) is used (rel. error < 2e-6)
LABEL_LIMITS = {"teff_max": 7000.0, "logg_min": 1.0}   # the box the near-core zones are sized for

# ---- noise model ----
SKY_CONT_COUNTS = 40.0     # sky continuum, counts per pixel
SKY_OH_COUNTS = 800.0      # counts per pixel at the peak of an OH line of relative intensity 1
READ_NOISE = 10.0          # effective read noise per pixel (e-), several detector rows summed
STAR_COUNTS_RANGE = (50.0, 4000.0)  # per-star counts per pixel at mean flux (flux = 1), log-uniform
# 2 u_II / u_I partition-function ratios (Gray 2005, appendix D; rounded, held fixed in T)
LOG_2U_RATIO = {"H": 0.0, "O": -0.05, "Na": 0.0, "Mg": 0.60, "Si": 0.08, "K": 0.0,
                "Ca": 0.60, "Ti": 0.56, "Fe": 0.51}
# Saha: log(N_II P_e / N_I) = log(2u_II/u_I) + 2.5 log T - chi_ion theta - 0.1762   (P_e in dyn cm^-2)
SAHA_CONST = 0.1762

# ---- physics variants (docs/simulator.md, "Physics variants"); the defaults are this version's physics ----
PHYSICS_DEFAULTS = {"majority_g_extra": MAJORITY_G_EXTRA, "forest_seed": None, "fe_ii": False, "cn": False,
                    "cat_saturation": False, "cat_warm_decline": False}
# CN red system (A-X), bands degraded to the red from their heads (air, A): (4,1) 7088, (5,2) 7259, (2,0) 7875,
# (3,1) 8067, (4,2) 8270; relative depths effective. tau_CN = CN_SCALE 10^[M/H] (g/g_sun)^-CN_G_EXP
# exp(-(Teff - CN_T0)^2 / 2 CN_DT^2) x band shape: strongest in K giants, gone above ~6000 K.
CN_HEADS = (7088.0, 7259.0, 7875.0, 8067.0, 8270.0)
CN_DEPTHS = (0.5, 0.35, 1.0, 0.7, 0.45)
CN_DECAY_A = 120.0
CN_SCALE, CN_G_EXP, CN_T0, CN_DT = 0.02, 0.3, 4300.0, 700.0
# Ca II triplet saturation: the CaT lines see a [M/H] that saturates above CAT_SAT_MH (cat_saturated_mh)
CAT_SAT_MH, CAT_SAT_WIDTH, CAT_SAT_SLOPE = -0.5, 0.15, 1.25
# CaT weakening in warm stars (cat_warm_decline): the CaT lines' log S falls by CAT_WARM_SLOPE dex per 1000 K
# above the Sun, with a quadratic onset over CAT_WARM_W K (exactly 0 at and below T_SUN); effective, chosen
CAT_WARM_SLOPE, CAT_WARM_W = 0.4, 300.0


def cat_warm_dex(teff):
    """The change of the CaT lines' log10 S with the warm-star decline on (<= 0; 0 for Teff <= T_SUN)."""
    d = torch.clamp(teff - T_SUN, min=0.0)
    return -CAT_WARM_SLOPE / 1000.0 * torch.where(d < CAT_WARM_W, d * d / (2.0 * CAT_WARM_W), d - CAT_WARM_W / 2.0)


def cat_saturated_mh(mh):
    """The [M/H] the Ca II triplet lines see with CaT saturation on: CAT_SAT_SLOPE x (a smooth min of
    [M/H] and CAT_SAT_MH, softness CAT_SAT_WIDTH), shifted to 0 at [M/H] = 0: ~0 above -0.5, and
    -2.49 at -2.5, so the solar and the metal-poor CaT keep their strengths."""
    def smin(m):
        return CAT_SAT_MH - CAT_SAT_WIDTH * torch.nn.functional.softplus(-(m - CAT_SAT_MH) / CAT_SAT_WIDTH)
    return CAT_SAT_SLOPE * (smin(mh) - smin(torch.zeros_like(mh)))


def check_physics(physics: dict | None) -> dict:
    """PHYSICS_DEFAULTS updated with `physics` (a recipe's keys; name, description ignored). Unknown
    keys or values of the wrong kind raise ValueError, in one line."""
    physics = {k: v for k, v in (physics or {}).items() if k not in ("name", "description")}
    unknown = sorted(set(physics) - set(PHYSICS_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown physics setting {unknown}; choose from {', '.join(PHYSICS_DEFAULTS)}")
    out = dict(PHYSICS_DEFAULTS, **physics)
    x = out["majority_g_extra"]
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= float(x) <= 1.0:
        raise ValueError(f"majority_g_extra must be a number from 0 to 1, got {x!r}")
    seed = out["forest_seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"forest_seed must be a whole number >= 0 or None, got {seed!r}")
    for k in ("fe_ii", "cn", "cat_saturation", "cat_warm_decline"):
        if not isinstance(out[k], bool):
            raise ValueError(f"{k} must be true or false, got {out[k]!r}")
    return out


def wavelength_grid(dtype=torch.float64) -> torch.Tensor:
    """4096 pixels uniformly spaced in log(lambda) from 7100 to 8850 A: the LSF is then a fixed
    number of pixels wide (FWHM = c/R / (c d ln lambda) = 3.72 px)."""
    return torch.exp(torch.linspace(math.log(WAVE_MIN), math.log(WAVE_MAX), N_PIX, dtype=torch.float64)).to(dtype)


def _weideman_coeffs(n: int = 16) -> tuple[np.ndarray, float]:
    """Coefficients of Weideman's (1994, SIAM J. Numer. Anal. 31, 1497) rational approximation
    of the Faddeeva function w(z), valid for Im z >= 0."""
    m = 2 * n
    m2 = 2 * m
    k = np.arange(-m + 1, m)
    L = math.sqrt(n / math.sqrt(2.0))
    t = L * np.tan(k * np.pi / m2)
    f = np.exp(-t ** 2) * (L ** 2 + t ** 2)
    f = np.concatenate([[0.0], f])
    a = np.real(np.fft.fft(np.fft.fftshift(f))) / m2
    a = a[1:n + 1][::-1].copy()
    return a, L


_W_COEF, _W_L = _weideman_coeffs()
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)


def voigt_hjerting(u: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Voigt-Hjerting function H(a, u) = Re w(u + i a) (Weideman 1994, N = 16); integral over u is
    sqrt(pi). Absolute error < 2e-7 for a >= 1e-4 (tests/test_simulator.py checks it against scipy).
    `a` broadcasts against `u`."""
    iz = torch.complex(-a, u)                      # i z for z = u + i a (a broadcast, negated while small)
    denom = _W_L - iz
    Z = (_W_L + iz) / denom
    if torch.is_grad_enabled() and (u.requires_grad or a.requires_grad):
        p = torch.full_like(Z, float(_W_COEF[0]))
        for c in _W_COEF[1:]:
            p = p * Z + float(c)
    else:                                          # in place: no autograd graph to keep
        p = Z * float(_W_COEF[0])
        for c in _W_COEF[1:-1]:
            p.add_(float(c)).mul_(Z)
        p.add_(float(_W_COEF[-1]))
    r = 1.0 / denom
    return (r * (2.0 * p * r + _INV_SQRT_PI)).real


def voigt_hjerting_asymptotic(u: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """H(a, u) from the asymptotic series w(z) = i/(sqrt(pi) z) sum_k (2k-1)!! / (2 z^2)^k, k = 0..5
    (Abramowitz & Stegun 7.1.23), relative error < 2e-6 for |u| >= 6; about 3x cheaper than Weideman."""
    r = torch.complex(u, a).reciprocal_()
    r2 = r * r
    if torch.is_grad_enabled() and (u.requires_grad or a.requires_grad):
        s = 1.0 + r2 * (0.5 + r2 * (0.75 + r2 * (1.875 + r2 * (6.5625 + r2 * 29.53125))))
        return -_INV_SQRT_PI * (r * s).imag
    s = r2 * 29.53125                              # in place: no autograd graph to keep
    for c in (6.5625, 1.875, 0.75, 0.5):
        s.add_(c).mul_(r2)
    return s.add_(1.0).mul_(r).imag.mul(-_INV_SQRT_PI)


def _is_dual(t: torch.Tensor) -> bool:
    """True for a forward-mode AD (torch.func.jvp / torch.autograd.forward_ad) tensor."""
    try:
        return torch._C._functorch.is_functorch_wrapped_tensor(t) or \
            torch.autograd.forward_ad.unpack_dual(t).tangent is not None
    except Exception:       # pragma: no cover - private API moved: take the safe path
        return True


class Simulator(torch.nn.Module):
    """Batched, differentiable spectrum simulator. `sim(labels)` -> normalised flux (B, 4096).

    Holds the line list, wavelength grid, sampling plan and LSF kernel as buffers; `.to(device)`
    moves them.
    """

    def __init__(self, dtype=torch.float32, physics: dict | None = None):
        super().__init__()
        self.dtype = dtype
        self.physics = check_physics(physics)
        self.majority_g_extra = float(self.physics["majority_g_extra"])
        wave = wavelength_grid(torch.float64)
        self.register_buffer("wave", wave.to(dtype))
        w_np = wave.numpy()
        loglam = np.log(w_np)
        self.dloglam = float(loglam[1] - loglam[0])
        self.pixel_kms = C_KMS * self.dloglam
        lines = stellar_lines(self.physics["forest_seed"], self.physics["fe_ii"])
        self.species = lines["species"]
        self.n_lines = len(lines["wave"])
        element = [s.split()[0] for s in lines["species"]]
        stage2 = np.array([s.split()[1] == "II" for s in lines["species"]])
        for k in ("wave", "chi_exc", "chi_ion", "log_tau", "gamma", "mass", "alpha"):
            name = {"wave": "line_wave", "log_tau": "log_tau", "gamma": "gamma_sun"}.get(k, k)
            self.register_buffer(name, torch.tensor(lines[k], dtype=dtype))
        self.register_buffer("log_2u", torch.tensor([LOG_2U_RATIO[e] for e in element], dtype=dtype))
        self.register_buffer("is_ion", torch.tensor(stage2, dtype=dtype))
        self.register_buffer("is_h", torch.tensor(lines["kind"] == "hydrogen", dtype=dtype))
        self.register_buffer("is_majority", torch.tensor(lines["kind"] == "majority", dtype=dtype))
        self.register_buffer("is_metal", torch.tensor([e != "H" for e in element], dtype=dtype))
        self.register_buffer("is_strong", torch.tensor(lines["strong"] >= 1))
        self.register_buffer("is_cat", torch.tensor(lines["species"] == "Ca II", dtype=dtype))
        self._build_plan(lines)
        # Gaussian LSF, FWHM = lambda / R, in pixels of d ln lambda
        fwhm_pix = 1.0 / RESOLUTION / self.dloglam
        self.lsf_fwhm_pix = fwhm_pix
        sig = fwhm_pix / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        self.lsf_sigma_pix = sig
        k = torch.arange(-12, 13, dtype=torch.float64)
        ker = torch.exp(-0.5 * (k / sig) ** 2)
        self.register_buffer("lsf", (ker / ker.sum()).to(dtype).view(1, 1, -1))
        # solar reference values of the per-line opacity terms
        with torch.no_grad():
            sun = torch.tensor([[T_SUN, LOGG_SUN, 0.0]], dtype=torch.float64)
            ref = self._log_line_ratio(sun.to(dtype), torch.zeros(1, dtype=dtype))
        self.register_buffer("sun_log_ratio", ref[0].detach())
        # reference (solar) Doppler width: S_l is the solar line-centre optical depth for a = 0
        self.register_buffer("dlam_d_sun", (self.line_wave / C_KMS * torch.sqrt(
            2.0 * K_B * T_SUN / (self.mass * AMU) / 1e6 + XI_SUN ** 2)).to(dtype))
        # sky: OH lines convolved with the LSF, plus continuum, in counts
        ohw, ohs = sky_lines()
        sig_a = w_np[:, None] / RESOLUTION / 2.3548
        oh = (ohs[None, :] * np.exp(-0.5 * ((w_np[:, None] - ohw[None, :]) / sig_a) ** 2)).sum(1)
        self.register_buffer("sky_counts", torch.tensor(SKY_CONT_COUNTS + SKY_OH_COUNTS * oh, dtype=dtype))
        self.register_buffer("oh_relative", torch.tensor(oh, dtype=dtype))
        # throughput: deep-depletion CCD response falling toward 9000 A (relative, 1 at 7600 A)
        self.register_buffer("throughput", torch.tensor(np.exp(-((w_np - 7600.0) / 1500.0) ** 2), dtype=dtype))
        self.to(dtype)

    # ----- sampling plan (pure numpy, built once) -----
    def _pix_of(self, lam):
        return (np.log(lam) - math.log(WAVE_MIN)) / self.dloglam

    def _build_plan(self, lines):
        """Where each line's optical depth is evaluated (docs/simulator.md, "Sampling").

        Optical depth lives on a fine grid of OVERSAMPLE sub-pixels per pixel. Each line is evaluated
        on the sub-pixels within +-fine_px pixels of its centre (its core and near wings) and at pixel
        centres from there out to +-half_px (its far wings, smooth on the pixel scale: the pixel-centre
        value is used for the whole pixel). Samples within U_ASYMPTOTIC Doppler widths of the centre
        (for any label in the box, with a 30% margin) use Weideman's w(z); the rest the asymptotic
        series. The far wing is tapered to zero over the outer quarter of +-half_px (no step).
        Lines are placed at rest; a radial velocity shifts the fine-grid transmission (forward).
        """
        K = OVERSAMPLE
        tmax = LABEL_LIMITS["teff_max"]
        ximax = 2.478 - 0.325 * LABEL_LIMITS["logg_min"]
        ll0 = math.log(WAVE_MIN)
        self._groups = []
        for gname, sel, fine_px, half_px in (
                ("hydrogen", lines["kind"] == "hydrogen", 8, 256),
                ("strong", (lines["strong"] == 1) & (lines["kind"] != "hydrogen"), 5, 256),
                ("named", lines["strong"] == 2, 4, 48),
                ("weak", lines["strong"] == 0, 2, 12)):
            idx = np.nonzero(sel)[0]
            c = self._pix_of(lines["wave"][idx])
            ic = np.round(c).astype(np.int64)
            vth = np.sqrt(2.0 * K_B * tmax / (lines["mass"][idx].min() * AMU)) / 1e3
            near_px = U_ASYMPTOTIC * 1.3 * math.sqrt(vth ** 2 + ximax ** 2) / self.pixel_kms
            fine_px = max(fine_px, int(math.ceil(near_px)))
            # fine samples: pixels ic-fine_px..ic+fine_px, K sub-samples each
            dp = np.repeat(np.arange(-fine_px, fine_px + 1), K)
            off = np.tile((np.arange(K) + 0.5) / K - 0.5, 2 * fine_px + 1)
            sub = np.tile(np.arange(K), 2 * fine_px + 1)
            pix_all = ic[:, None] + dp[None, :]
            dist = np.abs(pix_all + off[None, :] - c[:, None])
            parts = {}
            for part, sel_l in (("near", dist <= near_px), ("farfine", dist > near_px)):
                m = int(sel_l.sum(1).max())
                fidx = np.zeros((idx.size, m), np.int64)
                lam = np.full((idx.size, m), WAVE_MIN)
                valid = np.zeros((idx.size, m))
                for j in range(idx.size):
                    cols = np.nonzero(sel_l[j])[0]
                    pj = pix_all[j, cols]
                    ok = (pj >= 0) & (pj < N_PIX)
                    pjc = np.clip(pj, 0, N_PIX - 1)
                    fidx[j, :cols.size] = pjc * K + sub[cols]
                    lam[j, :cols.size] = np.exp(ll0 + (pjc + off[cols]) * self.dloglam)
                    valid[j, :cols.size] = ok
                parts[part] = (fidx, lam, valid)
            # coarse samples: pixel centres fine_px < |dp| <= half_px
            dpc = np.concatenate([np.arange(-half_px, -fine_px), np.arange(fine_px + 1, half_px + 1)])
            pix = ic[:, None] + dpc[None, :]
            valid = (pix >= 0) & (pix < N_PIX)
            x = np.clip((np.abs(pix - c[:, None]) - 0.75 * half_px) / (0.25 * half_px), 0.0, 1.0)
            w = valid * np.cos(0.5 * np.pi * x) ** 2
            pixc = np.clip(pix, 0, N_PIX - 1)
            parts["coarse"] = (pixc, np.exp(ll0 + pixc * self.dloglam), w)
            g = len(self._groups)
            self.register_buffer(f"g{g}_idx", torch.tensor(idx))
            for part, (tgt, lam, w) in parts.items():
                self.register_buffer(f"g{g}_{part}_tgt", torch.tensor(tgt.reshape(-1)))
                # offsets from the line centre, computed in float64 (in float32 lam - centre would
                # lose ~1e-3 A, a few % of a Doppler width)
                self.register_buffer(f"g{g}_{part}_dl", torch.tensor(lam - lines["wave"][idx][:, None]))
                self.register_buffer(f"g{g}_{part}_w", torch.tensor(w))
            self._groups.append((g, gname, fine_px, half_px))

    # ----- thermodynamics -----
    @staticmethod
    def log_pe(teff, logg, mh):
        """log10 P_e (dyn cm^-2) at the continuum-forming layer: P_e ~ g^(1/3) A^(1/3), falling with
        theta (Gray 2005, ch. 9: H- opacity, electrons from metals)."""
        theta = 5040.0 / teff
        return LOG_PE_SUN + (logg - LOGG_SUN) / 3.0 + mh / 3.0 - BETA_PE * (theta - THETA_SUN)

    @staticmethod
    def log_kappa(teff, logg, mh):
        """log10 of the H- continuum opacity per H atom (arbitrary zero point): P_e theta^2.5 10^(0.754 theta)."""
        theta = 5040.0 / teff
        return Simulator.log_pe(teff, logg, mh) + 2.5 * torch.log10(theta) + H_MINUS_THETA * theta

    @staticmethod
    def log_pg_rel(logg, mh):
        """log10 (P_g / P_g,sun) = 2/3 log(g/g_sun) - [M/H]/3: the H- photosphere scaling at fixed
        Teff (Gray 2005, ch. 9). Its temperature dependence is left out on purpose (docs/simulator.md)."""
        return 2.0 / 3.0 * (logg - LOGG_SUN) - mh / 3.0

    @staticmethod
    def microturbulence(logg):
        """km/s; APOGEE relation xi = 2.478 - 0.325 log g (Holtzman et al. 2015), floored at 0.5."""
        return torch.clamp(2.478 - 0.325 * logg, min=0.5)

    def _line_mh(self, mh):
        """[M/H] as the lines see it: `mh` (B, 1), or with CaT saturation on (B, L), the CaT lines'
        own saturating [M/H] (cat_saturated_mh) in every term (abundance, P_e, P_g)."""
        if not self.physics["cat_saturation"]:
            return mh
        return torch.where(self.is_cat > 0, cat_saturated_mh(mh), mh)

    def _log_line_ratio(self, labels, alpha_m):
        """log10 of line-to-continuum opacity ratio per line, without the solar log_tau: (B, L)."""
        teff, logg, mh = labels[:, 0:1], labels[:, 1:2], self._line_mh(labels[:, 2:3])
        theta = 5040.0 / teff
        lpe = self.log_pe(teff, logg, mh)
        # Saha: log(N_II/N_I) for each line's element
        log_ii_i = self.log_2u + 2.5 * torch.log10(teff) - self.chi_ion * theta - SAHA_CONST - lpe
        # fraction in the line's stage: neutral f_I = 1/(1+10^x), ion f_II = 1/(1+10^-x)
        x = torch.where(self.is_ion > 0, -log_ii_i, log_ii_i)
        log_frac = -torch.nn.functional.softplus(x * math.log(10.0)) / math.log(10.0)
        log_abund = self.is_metal * (mh + self.alpha * alpha_m[:, None])
        log_kappa = self.log_kappa(teff, logg, mh)
        boltz = -self.chi_exc * theta
        extra = -self.majority_g_extra * self.is_majority * (logg - LOGG_SUN)
        if self.physics["cat_warm_decline"]:
            extra = extra + self.is_cat * cat_warm_dex(teff)
        return log_abund + log_frac + boltz - log_kappa + extra

    def line_params(self, labels, alpha_m=None):
        """Per-line strength S (solar-normalised line-centre optical depth), Doppler width (A),
        Lorentz half width (A): each (B, L)."""
        labels = labels.to(self.dtype)
        B = labels.shape[0]
        if alpha_m is None:
            alpha_m = torch.zeros(B, dtype=self.dtype, device=labels.device)
        alpha_m = alpha_m.to(self.dtype)
        teff, logg, mh = labels[:, 0:1], labels[:, 1:2], labels[:, 2:3]
        log_s = self.log_tau + self._log_line_ratio(labels, alpha_m) - self.sun_log_ratio
        xi = self.microturbulence(logg)
        vth2 = 2.0 * K_B * teff / (self.mass * AMU) / 1e6  # (km/s)^2
        dlam_d = self.line_wave / C_KMS * torch.sqrt(vth2 + xi ** 2)
        lpg = self.log_pg_rel(logg, self._line_mh(mh))
        vdw = self.gamma_sun * 10.0 ** lpg * (teff / T_SUN) ** VDW_T_EXP
        # Stark (H I): width ~ N_e^(2/3) ~ (P_e / T)^(2/3)
        lpe_rel = self.log_pe(teff, logg, mh) - LOG_PE_SUN
        stark = self.gamma_sun * 10.0 ** (2.0 / 3.0 * lpe_rel) * (teff / T_SUN) ** (-2.0 / 3.0)
        gamma = torch.where(self.is_h > 0, stark, vdw)
        return 10.0 ** log_s, dlam_d, gamma

    def transmission(self, S, dlam_d, gamma, rv=None):
        """Pixel-averaged line transmission <1 - D (1 - exp(-tau))>, (B, 4096), before the LSF.
        A radial velocity (km/s, (B,)) shifts the fine-grid transmission by linear interpolation
        (which conserves every equivalent width) before the pixel average."""
        B = S.shape[0]
        K = OVERSAMPLE
        tau_f = torch.zeros(B, N_PIX * K, dtype=self.dtype, device=S.device)
        tau_c = torch.zeros(B, N_PIX, dtype=self.dtype, device=S.device)
        for g, _, _, _ in self._groups:
            li = getattr(self, f"g{g}_idx")
            dd = dlam_d[:, li][:, :, None]
            amp = S[:, li][:, :, None] * self.dlam_d_sun[li][None, :, None] / dd   # line-centre tau, a = 0
            a = gamma[:, li][:, :, None] / dd
            for part, fn in (("near", voigt_hjerting), ("farfine", voigt_hjerting_asymptotic),
                             ("coarse", voigt_hjerting_asymptotic)):
                dl = getattr(self, f"g{g}_{part}_dl")
                if dl.shape[-1] == 0:
                    continue
                u = dl[None] / dd
                t = fn(u, a) * (amp * getattr(self, f"g{g}_{part}_w")[None])
                tgt = getattr(self, f"g{g}_{part}_tgt")
                (tau_c if part == "coarse" else tau_f).index_add_(1, tgt.reshape(-1), t.reshape(B, -1))
        tau = tau_f.view(B, N_PIX, K) + tau_c[:, :, None]
        if tau.requires_grad or _is_dual(tau):
            trans = (1.0 - LINE_DEPTH_MAX) + LINE_DEPTH_MAX * torch.exp(-tau)
        else:                                       # same numbers, in place: no graph to keep
            trans = tau.neg_().exp_().mul_(LINE_DEPTH_MAX).add_(1.0 - LINE_DEPTH_MAX)
        if rv is not None:
            trans = self._shift(trans.reshape(B, N_PIX * K), rv).view(B, N_PIX, K)
        return trans.mean(dim=-1)

    def _shift(self, t, rv):
        """t(lambda / (1 + rv/c)) on the fine grid (B, M): linear interpolation, edges held."""
        B, M = t.shape
        rv = torch.as_tensor(rv, dtype=self.dtype, device=t.device).reshape(-1).expand(B)
        s = torch.log1p(rv / C_KMS) / (self.dloglam / OVERSAMPLE)        # shift in fine samples
        x = torch.arange(M, dtype=self.dtype, device=t.device)[None, :] - s[:, None]
        x = torch.clamp(x, 0.0, M - 1.0)
        i0 = torch.clamp(torch.floor(x).long(), max=M - 2)
        fr = x - i0.to(self.dtype)
        return torch.gather(t, 1, i0) * (1.0 - fr) + torch.gather(t, 1, i0 + 1) * fr

    def continuum(self, teff):
        """Planck B_lambda(Teff) divided by its mean over the window: smooth in Teff."""
        lam = self.wave * 1e-10
        x = (H_PLANCK * C_MS / K_B) / (lam[None, :] * teff[:, None])
        b = lam[None, :] ** -5 / torch.expm1(x)
        return b / b.mean(dim=1, keepdim=True)

    def tio_opacity(self, teff, mh):
        """TiO band depressions below ~4200 K, degraded to the red from each band head."""
        strength = TIO_SCALE * 10.0 ** mh[:, None] * torch.exp(-(teff[:, None] - TIO_T0) / TIO_DT)
        prof = torch.zeros_like(self.wave)
        for head, depth in zip(TIO_HEADS, TIO_DEPTHS):
            d = self.wave - head
            prof = prof + depth * torch.sigmoid(d / 2.0) * torch.exp(-torch.clamp(d, min=0.0) / TIO_DECAY_A)
        return strength * prof[None, :]

    def cn_opacity(self, teff, logg, mh):
        """CN red-system band optical depth (B, 4096) (physics variant `cn`): bands degraded to the red
        from CN_HEADS, strength CN_SCALE 10^[M/H] (g/g_sun)^-CN_G_EXP times a bump in Teff at CN_T0."""
        strength = CN_SCALE * 10.0 ** (mh[:, None] - CN_G_EXP * (logg[:, None] - LOGG_SUN)) * \
            torch.exp(-0.5 * ((teff[:, None] - CN_T0) / CN_DT) ** 2)
        prof = torch.zeros_like(self.wave)
        for head, depth in zip(CN_HEADS, CN_DEPTHS):
            d = self.wave - head
            prof = prof + depth * torch.sigmoid(d / 2.0) * torch.exp(-torch.clamp(d, min=0.0) / CN_DECAY_A)
        return strength * prof[None, :]

    def convolve_lsf(self, f, resolution=None):
        """The Gaussian LSF: the native R = 5000 kernel, or per star (B,) resolving powers R (FWHM = lambda / R)."""
        f = torch.nn.functional.pad(f[:, None, :], (12, 12), mode="replicate")
        if resolution is None:
            return torch.nn.functional.conv1d(f, self.lsf)[:, 0, :]
        return torch.nn.functional.conv1d(f.view(1, -1, f.shape[-1]), self.lsf_kernels(resolution), groups=f.shape[0])[0]

    def lsf_kernels(self, resolution):
        """(B, 1, 25) normalised Gaussian LSF kernels for per-star resolving powers R."""
        r = torch.as_tensor(resolution, dtype=self.dtype, device=self.lsf.device).reshape(-1, 1)
        sig = (1.0 / r / self.dloglam) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        k = torch.arange(-12, 13, dtype=self.dtype, device=self.lsf.device)[None, :]
        ker = torch.exp(-0.5 * (k / sig) ** 2)
        return (ker / ker.sum(dim=1, keepdim=True))[:, None, :]

    def forward(self, labels, alpha_m=None, rv=None, lines=True, line_mask=None, resolution=None, pre_lsf=None):
        """Normalised flux (B, 4096). `line_mask` (bool, one per line of core.lines.stellar_lines)
        keeps only the chosen lines (for equivalent widths of one species); `lines=False` gives the
        line-free continuum (Planck x TiO after the LSF). Nuisance hooks (core/physics/nuisance.py):
        `resolution` per-star R (B,) for the LSF, `pre_lsf` (B, 4096) a transmission at rest applied
        before the LSF (tellurics); both None: the native spectrum, unchanged."""
        labels = labels.to(self.dtype)
        teff, mh = labels[:, 0], labels[:, 2]
        f = self.continuum(teff) * torch.exp(-self.tio_opacity(teff, mh))
        if self.physics["cn"]:                     # molecular bands, like TiO part of the pseudo-continuum
            f = f * torch.exp(-self.cn_opacity(teff, labels[:, 1], mh))
        if lines:
            S, dlam_d, gamma = self.line_params(labels, alpha_m)
            if line_mask is not None:
                S = S * torch.as_tensor(line_mask, device=S.device).to(self.dtype)[None, :]
            f = f * self.transmission(S, dlam_d, gamma, rv)
        if pre_lsf is not None:
            f = f * pre_lsf
        return self.convolve_lsf(f, resolution)

    def line_ratio(self, labels, **kw):
        """Flux divided by the line-free pseudo-continuum (continuum x TiO): for equivalent widths."""
        kw_cont = {k: v for k, v in kw.items() if k in ("alpha_m", "rv", "resolution")}
        return self(labels, **kw) / self(labels, lines=False, **kw_cont)

    def species_mask(self, prefix: str) -> torch.Tensor:
        """Boolean line mask of the lines whose species starts with `prefix` ('Ca II', 'H I', 'Na I')."""
        return torch.tensor([str(s).startswith(prefix) for s in self.species])

    # ----- noise -----
    def sigma(self, flux, star_counts):
        """1-sigma error per pixel for normalised flux `flux` (B, N) and per-star counts (B,):
        photon noise of the star + sky (continuum + OH) + read noise, in flux units."""
        nt = star_counts[:, None] * self.throughput[None, :]
        var = nt * torch.clamp(flux, min=0.0) + self.sky_counts[None, :] + READ_NOISE ** 2
        return torch.sqrt(var) / nt


def sample_star_counts(n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-star counts per pixel at flux 1, log-uniform over STAR_COUNTS_RANGE (a flat magnitude
    distribution over 4.6 mag, as in a magnitude-limited sample of faint stars)."""
    lo, hi = np.log(STAR_COUNTS_RANGE[0]), np.log(STAR_COUNTS_RANGE[1])
    return np.exp(rng.uniform(lo, hi, n))


_DEFAULT = {}


def default_simulator(device="cpu", dtype=torch.float32) -> Simulator:
    """A cached simulator per (device, dtype)."""
    key = (str(device), dtype)
    if key not in _DEFAULT:
        _DEFAULT[key] = Simulator(dtype=dtype).to(device)
    return _DEFAULT[key]


def physics_key(physics: dict | None) -> str:
    """A short stable name of a physics recipe's settings ('' for this version's own physics)."""
    p = check_physics(physics)
    return ",".join(f"{k}={p[k]}" for k in PHYSICS_DEFAULTS if p[k] != PHYSICS_DEFAULTS[k])


_VARIANTS: dict = {}


def variant_simulator(physics: dict | None, device="cpu", dtype=torch.float32) -> Simulator:
    """The cached simulator of a physics recipe (default_simulator where it is this version's physics)."""
    key = physics_key(physics)
    if not key:
        return default_simulator(device, dtype)
    full = (key, str(device), dtype)
    if full not in _VARIANTS:
        _VARIANTS[full] = Simulator(dtype=dtype, physics=physics).to(device)
    return _VARIANTS[full]


def simulate(labels, star_counts=None, device="cpu", dtype=torch.float32):
    """Convenience: numpy labels (B, 3) -> (flux, sigma) numpy arrays (B, 4096)."""
    sim = default_simulator(device, dtype)
    lab = torch.as_tensor(np.asarray(labels), dtype=dtype, device=device)
    with torch.no_grad():
        flux = sim(lab)
        if star_counts is None:
            star_counts = np.full(len(lab), 500.0)
        sig = sim.sigma(flux, torch.as_tensor(np.asarray(star_counts), dtype=dtype, device=device))
    return flux.cpu().numpy(), sig.cpu().numpy()
