"""The built-in spectrum simulator: a parametric LTE-flavoured model of a PFS MR red-arm spectrum.

Everything is torch, batched over stars and differentiable in the labels, so that
d flux / d label comes from autograd (core/explain uses it for Fisher information).
Every formula and constant is explained, with its source, in docs/simulator.md; the short version:

    flux(lam)  = [ LSF * ( C(lam) * <1 - D (1 - exp(-tau_strong))>_pixel ) ] * prod_weak (1 - A_l(lam))
    C(lam)     = B_lam(Teff) / <B_lam(Teff)>_window * exp(-tau_TiO)
    tau_l(lam) = S_l * dlamD_sun_l / dlamD_l * H(a_l, (lam - lam_l) / dlamD_l)     (Voigt-Hjerting H)
    log S_l    = log_tau_sun_l + [log R_l(Teff, g, M) - log R_l(sun)]              (R: line/continuum opacity)
    log R_l    = log A + log f_stage(T, P_e) - chi_exc theta - log kappa_H-(T, P_e) [- x log g/g_sun, majority]
    kappa_H-   ~ P_e theta^2.5 10^(0.754 theta)                                    (Gray 2005, ch. 8)
    P_e        ~ g^(1/3) A^(1/3) 10^(-beta (theta - theta_sun));  P_g = g / kappa   (Gray 2005, ch. 9)
    gamma_l    = gamma_sun_l (P_g / P_g,sun) (T / T_sun)^-0.7    (van der Waals; Stark ~ N_e^(2/3) for H I)
    A_l        = W_l * Gauss(lam - lam_l; sigma_LSF + sigma_pixel + sigma_line)    (weak lines, exact EW)
    sigma^2    = [N* t f + sky(lam) + RN^2] / (N* t)^2                              (photon + sky with OH + read noise)

Lines are sampled finely enough that the equivalent width does not depend on where a line falls
within a pixel: strong lines are evaluated on 8 sub-samples per pixel around their cores (and at
pixel centres in their wings), weak lines get their equivalent width from an exact curve-of-growth
quadrature. Labels are a (B, 3) tensor of (Teff [K], log g [dex], [M/H] [dex]); optional nuisances
([alpha/M], radial velocity km/s) default to zero.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from core.lines import ELEMENTS, sky_lines, stellar_lines  # noqa: F401  (ELEMENTS re-exported)

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
VDW_T_EXP = -0.7          # van der Waals: gamma_6 ~ P_g T^-0.7 (Gray 2005, eq. 11.35)
K_B, AMU, H_PLANCK, C_MS = 1.380649e-23, 1.66053907e-27, 6.62607015e-34, 2.99792458e8
TIO_HEADS = (7054.0, 7589.0, 8206.0, 8432.0)   # TiO band heads, bands degraded to the red
TIO_DEPTHS = (1.0, 0.8, 0.5, 0.6)
TIO_DECAY_A = 150.0
TIO_T0, TIO_DT, TIO_SCALE = 3500.0, 250.0, 0.6  # TiO optical depth: 0.6 10^[M/H] exp(-(Teff - 3500)/250)

# ---- numerics (see docs/simulator.md, "Sampling") ----
OVERSAMPLE = 8            # sub-samples per pixel inside the core zones of strong lines
ZONE_HALF_PX = 5          # core zone: +- this many pixels around each strong line (plus the RV margin)
RV_MAX_KMS = 30.0         # |radial velocity| the core zones are built for
U_ASYMPTOTIC = 6.0        # |u| beyond which the asymptotic series of w(z) is used (rel. error < 1e-5)
WEAK_QUAD_H, WEAK_QUAD_XMAX = 0.2, 5.0   # curve-of-growth quadrature: u = sinh(x), x = 0, 0.2, .., 5
WEAK_HALF_PX = 12         # a weak line's LSF-shaped absorption is placed over +- 12 pixels
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
LOG_KAPPA_SUN = LOG_PE_SUN + 2.5 * math.log10(THETA_SUN) + H_MINUS_THETA * THETA_SUN


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
    sqrt(pi). Absolute error < 2e-7 for a >= 1e-4 (tests/test_simulator.py checks it against scipy)."""
    z = torch.complex(u, a)
    iz = 1j * z
    denom = _W_L - iz
    Z = (_W_L + iz) / denom
    p = torch.zeros_like(Z)
    for c in _W_COEF:
        p = p * Z + float(c)
    w = 2.0 * p / denom ** 2 + _INV_SQRT_PI / denom
    return w.real


def voigt_hjerting_asymptotic(u: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """H(a, u) from the asymptotic series w(z) = i/(sqrt(pi) z) (1 + 1/(2z^2) + 3/(4z^4) + 15/(8z^6)),
    accurate to < 1e-5 (relative) for |u| >= 6 (Abramowitz & Stegun 7.1.23); 4x cheaper."""
    r = 1.0 / torch.complex(u, a)
    r2 = r * r
    s = 1.0 + r2 * (0.5 + r2 * (0.75 + r2 * 1.875))
    return -_INV_SQRT_PI * (r * s).imag


class Simulator(torch.nn.Module):
    """Batched, differentiable spectrum simulator. `sim(labels)` -> normalised flux (B, 4096).

    Holds the line list, wavelength grid, sampling plan and LSF kernel as buffers; `.to(device)`
    moves them.
    """

    def __init__(self, dtype=torch.float32, strong_half_width: int = 256, weak_half_width: int = WEAK_HALF_PX):
        super().__init__()
        self.dtype = dtype
        wave = wavelength_grid(torch.float64)
        self.register_buffer("wave", wave.to(dtype))
        w_np = wave.numpy()
        loglam = np.log(w_np)
        self.dloglam = float(loglam[1] - loglam[0])
        self.pixel_kms = C_KMS * self.dloglam
        lines = stellar_lines()
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
        self.register_buffer("is_majority", torch.tensor(lines["kind"] != "minority", dtype=dtype))
        self.register_buffer("is_metal", torch.tensor([e != "H" for e in element], dtype=dtype))
        self.register_buffer("is_strong", torch.tensor(lines["strong"] == 1))
        self.strong_idx_np = np.nonzero(lines["strong"] == 1)[0]
        self.weak_idx_np = np.nonzero(lines["strong"] == 0)[0]
        self.register_buffer("strong_idx", torch.tensor(self.strong_idx_np))
        self.register_buffer("weak_idx", torch.tensor(self.weak_idx_np))
        self._build_strong_plan(lines, w_np, strong_half_width)
        self._build_weak_plan(lines, weak_half_width)
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

    # ----- sampling plans (pure numpy, built once) -----
    def _pix_of(self, lam):
        return (np.log(lam) - math.log(WAVE_MIN)) / self.dloglam

    def _build_strong_plan(self, lines, w_np, half_width):
        """Where each strong line's optical depth is evaluated.

        Pixels within ZONE_HALF_PX (+ the RV margin) of a strong line's centre form 'core zones'
        sampled at OVERSAMPLE sub-pixel points; everywhere else one sample sits at the pixel centre.
        A line is evaluated on the sub-samples of the (merged) zone that holds its own centre and on
        the pixel centres of the rest of its +-half_width window; other lines' zones get the pixel-centre
        value of its (smooth, far) wing. Each sample is 'near' (exact Weideman w(z)) when it lies within
        U_ASYMPTOTIC Doppler widths of the centre for any label in the box, else 'far' (asymptotic series).
        """
        sidx = self.strong_idx_np
        lw = lines["wave"][sidx]
        centre = self._pix_of(lw)
        margin = int(math.ceil(RV_MAX_KMS / self.pixel_kms))
        zhw = ZONE_HALF_PX + margin
        zone = np.zeros(N_PIX, bool)
        for c in centre:
            lo, hi = int(math.floor(c)) - zhw, int(math.ceil(c)) + zhw
            zone[max(lo, 0):min(hi, N_PIX - 1) + 1] = True
        # merged zones: label runs of True
        zid = np.full(N_PIX, -1)
        run = np.cumsum(np.diff(np.concatenate([[0], zone.astype(np.int8)])) == 1)
        zid[zone] = run[zone] - 1
        zpix = np.nonzero(zone)[0]
        K = OVERSAMPLE
        sub_pix = np.repeat(zpix, K)
        sub_off = np.tile((np.arange(K) + 0.5) / K - 0.5, zpix.size)
        sub_loglam = math.log(WAVE_MIN) + (sub_pix + sub_off) * self.dloglam
        pix_loglam = math.log(WAVE_MIN) + np.arange(N_PIX) * self.dloglam
        n_sub = sub_pix.size
        # per line: target slots (0..N_PIX-1 pixel centres, N_PIX.. sub-samples), wavelengths
        tmax, ximax = LABEL_LIMITS["teff_max"], 2.478 - 0.325 * LABEL_LIMITS["logg_min"]
        near_t, near_l, far_t, far_l, far_taper = [], [], [], [], []
        for j, li in enumerate(sidx):
            c = centre[j]
            ic = int(round(c))
            own = zid[min(max(ic, 0), N_PIX - 1)] if 0 <= ic < N_PIX else -1
            lo, hi = max(0, ic - half_width), min(N_PIX - 1, ic + half_width)
            pix = np.arange(lo, hi + 1)
            if own >= 0:
                pix = pix[zid[pix] != own]
                sub = np.nonzero(zid[sub_pix] == own)[0]
            else:
                sub = np.zeros(0, np.int64)
            tgt = np.concatenate([pix, N_PIX + sub])
            lam = np.exp(np.concatenate([pix_loglam[pix], sub_loglam[sub]]))
            dpx = np.abs(np.concatenate([pix, sub_pix[sub] + sub_off[sub]]) - c)
            vth = math.sqrt(2.0 * K_B * tmax / (lines["mass"][li] * AMU)) / 1e3
            dd_max_kms = 1.3 * math.sqrt(vth ** 2 + ximax ** 2)
            near_px = (U_ASYMPTOTIC * dd_max_kms + RV_MAX_KMS) / self.pixel_kms
            near = dpx <= near_px
            # smooth taper of the far wing over the outer quarter of the window: no step at its edge
            x = np.clip((dpx - 0.75 * half_width) / (0.25 * half_width + 1.0), 0.0, 1.0)
            taper = np.cos(0.5 * np.pi * x) ** 2
            near_t.append(tgt[near]), near_l.append(lam[near])
            far_t.append(tgt[~near]), far_l.append(lam[~near]), far_taper.append(taper[~near])

        def pad(lists, fill):
            m = max(1, max(len(x) for x in lists))
            out = np.full((len(lists), m), fill, dtype=np.float64 if isinstance(fill, float) else np.int64)
            valid = np.zeros((len(lists), m))
            for i, x in enumerate(lists):
                out[i, :len(x)] = x
                valid[i, :len(x)] = 1.0
            return out, valid

        nt, nvalid = pad(near_t, 0)
        nl, _ = pad(near_l, float(WAVE_MIN))
        ft, fvalid = pad(far_t, 0)
        fl, _ = pad(far_l, float(WAVE_MIN))
        ftap, _ = pad(far_taper, 0.0)
        self.register_buffer("near_tgt", torch.tensor(nt))
        self.register_buffer("near_lam", torch.tensor(nl))
        self.register_buffer("near_w", torch.tensor(nvalid))
        self.register_buffer("far_tgt", torch.tensor(ft))
        self.register_buffer("far_lam", torch.tensor(fl))
        self.register_buffer("far_w", torch.tensor(fvalid * ftap))
        self.register_buffer("sub_pix", torch.tensor(sub_pix))
        self.register_buffer("zone_mask", torch.tensor(zone))
        self.n_sub = n_sub
        self.n_zone_pix = int(zone.sum())

    def _build_weak_plan(self, lines, half_width):
        widx = self.weak_idx_np
        c = self._pix_of(lines["wave"][widx])
        ic = np.round(c).astype(np.int64)
        pix = ic[:, None] + np.arange(-half_width, half_width + 1)[None, :]
        valid = (pix >= 0) & (pix < N_PIX)
        self.register_buffer("weak_pix", torch.tensor(np.clip(pix, 0, N_PIX - 1)))
        self.register_buffer("weak_valid", torch.tensor(valid.astype(np.float64)))
        wave = wavelength_grid(torch.float64).numpy()
        self.register_buffer("weak_lam", torch.tensor(wave[np.clip(pix, 0, N_PIX - 1)]))
        x = np.arange(0.0, WEAK_QUAD_XMAX + 1e-9, WEAK_QUAD_H)
        wq = np.full(x.size, WEAK_QUAD_H)
        wq[0] = wq[-1] = WEAK_QUAD_H / 2
        self.register_buffer("quad_u", torch.tensor(np.sinh(x)))
        self.register_buffer("quad_w", torch.tensor(2.0 * wq * np.cosh(x)))   # both halves of the line
        self.register_buffer("quad_near", torch.tensor(np.sinh(x) < U_ASYMPTOTIC))

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
    def log_pg_rel(logg, mh, teff=None):
        """log10 (P_g / P_g,sun): hydrostatic equilibrium at tau ~ 1 gives P_g ~ g / kappa, so
        P_g ~ g^(2/3) A^(-1/3) at fixed Teff, and higher in cooler (less opaque) photospheres."""
        if teff is None:
            teff = torch.full_like(logg, T_SUN)
        return (logg - LOGG_SUN) - (Simulator.log_kappa(teff, logg, mh) - LOG_KAPPA_SUN)

    @staticmethod
    def microturbulence(logg):
        """km/s; APOGEE relation xi = 2.478 - 0.325 log g (Holtzman et al. 2015), floored at 0.5."""
        return torch.clamp(2.478 - 0.325 * logg, min=0.5)

    def _log_line_ratio(self, labels, alpha_m):
        """log10 of line-to-continuum opacity ratio per line, without the solar log_tau: (B, L)."""
        teff, logg, mh = labels[:, 0:1], labels[:, 1:2], labels[:, 2:3]
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
        extra = -MAJORITY_G_EXTRA * self.is_majority * (logg - LOGG_SUN)
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
        lpg = self.log_pg_rel(logg, mh, teff)
        vdw = self.gamma_sun * 10.0 ** lpg * (teff / T_SUN) ** VDW_T_EXP
        # Stark (H I): width ~ N_e^(2/3) ~ (P_e / T)^(2/3)
        lpe_rel = self.log_pe(teff, logg, mh) - LOG_PE_SUN
        stark = self.gamma_sun * 10.0 ** (2.0 / 3.0 * lpe_rel) * (teff / T_SUN) ** (-2.0 / 3.0)
        gamma = torch.where(self.is_h > 0, stark, vdw)
        return 10.0 ** log_s, dlam_d, gamma

    def _centres(self, B, rv, idx):
        c = self.line_wave[idx]
        if rv is None:
            return c.expand(B, -1)
        rv = torch.as_tensor(rv, dtype=self.dtype, device=c.device).reshape(-1)
        if rv.numel() == 1:
            rv = rv.expand(B)
        if float(rv.detach().abs().max()) > RV_MAX_KMS + 1e-6:
            raise ValueError(f"|radial velocity| must be <= {RV_MAX_KMS:g} km/s (the core zones are built for it)")
        return c[None, :] * (1.0 + rv[:, None] / C_KMS)

    def strong_transmission(self, S, dlam_d, gamma, rv=None):
        """Pixel-averaged transmission <1 - D (1 - exp(-tau))> of the strong lines, (B, 4096)."""
        B = S.shape[0]
        si = self.strong_idx
        Ss, dd, gam = S[:, si], dlam_d[:, si], gamma[:, si]
        centre = self._centres(B, rv, si)
        amp = (Ss * self.dlam_d_sun[si] / dd)[:, :, None]           # line-centre tau for a = 0
        a = (gam / dd)[:, :, None]
        tau_all = torch.zeros(B, N_PIX + self.n_sub, dtype=self.dtype, device=S.device)
        for tgt, lam, w, fn in ((self.near_tgt, self.near_lam, self.near_w, voigt_hjerting),
                                (self.far_tgt, self.far_lam, self.far_w, voigt_hjerting_asymptotic)):
            u = (lam[None] - centre[:, :, None]) / dd[:, :, None]
            t = amp * fn(u, a.expand_as(u)) * w[None]
            tau_all = tau_all.index_add(1, tgt.reshape(-1), t.reshape(B, -1))
        tau_pix = tau_all[:, :N_PIX]
        tau_sub = tau_all[:, N_PIX:] + tau_pix[:, self.sub_pix]
        trans_pix = 1.0 + LINE_DEPTH_MAX * torch.expm1(-tau_pix)
        trans_sub = (1.0 + LINE_DEPTH_MAX * torch.expm1(-tau_sub)) / OVERSAMPLE
        zone_avg = torch.zeros_like(trans_pix).index_add(1, self.sub_pix, trans_sub)
        return torch.where(self.zone_mask[None, :], zone_avg, trans_pix)

    def weak_equivalent_width(self, S, dlam_d, gamma):
        """Exact curve of growth of the weak lines: W = dlamD int D (1 - exp(-tau0 H(a, u))) du (A),
        and the central depth D_c; each (B, Lw)."""
        wi = self.weak_idx
        dd, gam = dlam_d[:, wi], gamma[:, wi]
        tau0 = (S[:, wi] * self.dlam_d_sun[wi] / dd)[:, :, None]
        a = (gam / dd)[:, :, None]
        u = self.quad_u.expand(dd.shape[0], dd.shape[1], -1)
        aa = a.expand_as(u)
        near = self.quad_near
        H = torch.cat([voigt_hjerting(u[..., near], aa[..., near]),
                       voigt_hjerting_asymptotic(u[..., ~near], aa[..., ~near])], dim=-1)
        depth = -LINE_DEPTH_MAX * torch.expm1(-tau0 * H)
        core = (depth * self.quad_w).sum(-1)
        # damping tail beyond u_max: tau = c / u^2, int_U^inf (1 - exp(-c/u^2)) du in closed form
        U = float(self.quad_u[-1])
        c = torch.clamp(tau0[..., 0] * a[..., 0] * _INV_SQRT_PI, min=1e-30)
        tail = torch.sqrt(math.pi * c) * torch.erf(torch.sqrt(c) / U) + U * torch.expm1(-c / U ** 2)
        W = dd * (core + 2.0 * LINE_DEPTH_MAX * tail)
        return W, depth[..., 0]

    def weak_absorption(self, S, dlam_d, gamma, rv=None):
        """log transmission of the weak lines after the LSF, (B, 4096): each line removes its exact
        equivalent width W with a Gaussian shape of variance sigma_LSF^2 + pixel^2/12 + sigma_line^2,
        sigma_line = W / (sqrt(2 pi) D_c) (the Gaussian with the line's EW and central depth)."""
        B = S.shape[0]
        wi = self.weak_idx
        W, dc = self.weak_equivalent_width(S, dlam_d, gamma)
        centre = self._centres(B, rv, wi)
        pix_a = centre * self.dloglam                                         # one pixel in A
        sig_line = W / (math.sqrt(2.0 * math.pi) * torch.clamp(dc, min=1e-30))
        var = (self.lsf_sigma_pix ** 2 + 1.0 / 12.0) * pix_a ** 2 + sig_line ** 2
        d = self.weak_lam[None] - centre[:, :, None]
        g = torch.exp(-0.5 * d ** 2 / var[:, :, None]) / torch.sqrt(2.0 * math.pi * var)[:, :, None]
        A = W[:, :, None] * g * self.weak_valid[None]
        logt = torch.log1p(-torch.clamp(A, max=0.95))
        out = torch.zeros(B, N_PIX, dtype=self.dtype, device=S.device)
        return out.index_add(1, self.weak_pix.reshape(-1), logt.reshape(B, -1))

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

    def convolve_lsf(self, f):
        f = torch.nn.functional.pad(f[:, None, :], (12, 12), mode="replicate")
        return torch.nn.functional.conv1d(f, self.lsf)[:, 0, :]

    def forward(self, labels, alpha_m=None, rv=None, lines=True, line_mask=None):
        """Normalised flux (B, 4096). `line_mask` (bool, one per line of core.lines.stellar_lines)
        keeps only the chosen lines (for equivalent widths of one species); `lines=False` gives the
        line-free continuum (Planck x TiO after the LSF)."""
        labels = labels.to(self.dtype)
        teff, mh = labels[:, 0], labels[:, 2]
        f = self.continuum(teff) * torch.exp(-self.tio_opacity(teff, mh))
        if not lines:
            return self.convolve_lsf(f)
        S, dlam_d, gamma = self.line_params(labels, alpha_m)
        if line_mask is not None:
            S = S * torch.as_tensor(line_mask, device=S.device).to(self.dtype)[None, :]
        f = self.convolve_lsf(f * self.strong_transmission(S, dlam_d, gamma, rv))
        return f * torch.exp(self.weak_absorption(S, dlam_d, gamma, rv))

    def line_ratio(self, labels, **kw):
        """Flux divided by the line-free pseudo-continuum (continuum x TiO): for equivalent widths."""
        kw_cont = {k: v for k, v in kw.items() if k in ("alpha_m", "rv")}
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
