"""The built-in spectrum simulator: a parametric LTE-flavoured model of a PFS MR red-arm spectrum.

Everything is torch, batched over stars and differentiable in the labels, so that
d flux / d label comes from autograd (core/explain uses it for Fisher information).
Every formula and constant is explained in docs/simulator.md; the short version:

    flux(lam) = LSF * [ B_lam(Teff) / <B_lam(Teff)> * exp(-tau_TiO) * (1 - D (1 - exp(-sum_l tau_l))) ]
    tau_l(lam) = S_l * sqrt(pi) * dlamD_sun_l * Voigt(lam - lam_l; dlamD_l, gamma_l)
    log S_l   = log_tau_sun_l + log A + log f_stage(T, Pe) - chi_exc (theta - theta_sun) - log kappa_H-(T, Pe) + (sun terms)
    gamma_l   = gamma_sun_l * (P_g / P_g,sun) * (T / T_sun)^-0.7          (van der Waals; Stark for H I)
    P_e ~ g^(1/3) A^(1/3) 10^(-beta (theta - theta_sun)),  P_g ~ g^(2/3) A^(-1/3)   (Gray 2005, ch. 9)
    sigma^2   = [N* t f + sky(lam) + RN^2] / (N* t)^2                       (photon + sky with OH + read noise)

Labels are a (B, 3) tensor of (Teff [K], log g [dex], [M/H] [dex]); optional nuisances
([alpha/M], radial velocity km/s) default to zero.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from core.lines import ELEMENTS, sky_lines, stellar_lines

SIMULATOR_VERSION = "1.0.0"

# ---- instrument (PFS medium-resolution red arm) ----
WAVE_MIN, WAVE_MAX, N_PIX = 7100.0, 8850.0, 4096
RESOLUTION = 5000.0
C_KMS = 299792.458

# ---- physics constants ----
T_SUN, LOGG_SUN = 5772.0, 4.438
THETA_SUN = 5040.0 / T_SUN
LOG_PE_SUN = 1.2          # log10 electron pressure (dyn cm^-2) near tau_5000 ~ 0.5 in the solar photosphere
BETA_PE = 3.0             # d log P_e / d theta at fixed g: P_e falls steeply in cooler photospheres
H_MINUS_THETA = 0.754     # H- bound-free: kappa ~ P_e theta^2.5 10^(0.754 theta) (binding energy 0.754 eV)
MAJORITY_G_EXTRA = 0.4    # effective extra g^-0.4 on majority-ion lines (extended low-g atmospheres), see docs
LINE_DEPTH_MAX = 0.9      # residual flux of a fully saturated line core (source function floor)
K_B, AMU, H_PLANCK, C_MS = 1.380649e-23, 1.66053907e-27, 6.62607015e-34, 2.99792458e8
TIO_HEADS = (7054.0, 7589.0, 8206.0, 8432.0)   # TiO gamma-system band heads, degraded to the red
TIO_DEPTHS = (1.0, 0.8, 0.5, 0.6)
TIO_DECAY_A = 150.0

# ---- noise model ----
SKY_CONT_COUNTS = 40.0     # sky continuum, counts per pixel
SKY_OH_COUNTS = 800.0      # counts per pixel at the peak of an OH line of relative intensity 1
READ_NOISE = 10.0          # effective read noise per pixel (e-), several detector rows summed
STAR_COUNTS_RANGE = (50.0, 4000.0)  # per-star continuum counts per pixel at 8000 A, log-uniform
# 2 u_II / u_I partition-function ratios (Gray 2005, appendix D; rounded, held fixed in T)
LOG_2U_RATIO = {"H": 0.0, "O": -0.05, "Na": 0.0, "Mg": 0.60, "Si": 0.08, "K": 0.0,
                "Ca": 0.60, "Ti": 0.56, "Fe": 0.51}
# Saha: log(N_II P_e / N_I) = log(2u_II/u_I) + 2.5 log T - chi_ion theta - 0.1762   (P_e in dyn cm^-2)


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


def voigt_hjerting(u: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Voigt-Hjerting function H(a, u) = Re w(u + i a); integral over u is sqrt(pi)."""
    z = torch.complex(u, a)
    iz = 1j * z
    denom = _W_L - iz
    Z = (_W_L + iz) / denom
    p = torch.zeros_like(Z)
    for c in _W_COEF:
        p = p * Z + float(c)
    w = 2.0 * p / denom ** 2 + (1.0 / math.sqrt(math.pi)) / denom
    return w.real


class Simulator(torch.nn.Module):
    """Batched, differentiable spectrum simulator. `sim(labels)` -> normalised flux (B, 4096).

    Holds the line list, wavelength grid and LSF kernel as buffers; `.to(device)` moves them.
    """

    def __init__(self, dtype=torch.float32, strong_half_width: int = 256, weak_half_width: int = 24):
        super().__init__()
        self.dtype = dtype
        wave = wavelength_grid(torch.float64)
        self.register_buffer("wave", wave.to(dtype))
        loglam = torch.log(wave)
        self.dloglam = float(loglam[1] - loglam[0])
        lines = stellar_lines()
        self.species = lines["species"]
        element = [s.split()[0] for s in lines["species"]]
        stage2 = np.array([s.split()[1] == "II" for s in lines["species"]])
        self.register_buffer("line_wave", torch.tensor(lines["wave"], dtype=dtype))
        self.register_buffer("chi_exc", torch.tensor(lines["chi_exc"], dtype=dtype))
        self.register_buffer("chi_ion", torch.tensor(lines["chi_ion"], dtype=dtype))
        self.register_buffer("log_tau", torch.tensor(lines["log_tau"], dtype=dtype))
        self.register_buffer("gamma_sun", torch.tensor(lines["gamma"], dtype=dtype))
        self.register_buffer("mass", torch.tensor(lines["mass"], dtype=dtype))
        self.register_buffer("alpha", torch.tensor(lines["alpha"], dtype=dtype))
        self.register_buffer("log_2u", torch.tensor([LOG_2U_RATIO[e] for e in element], dtype=dtype))
        self.register_buffer("is_ion", torch.tensor(stage2, dtype=dtype))
        self.register_buffer("is_h", torch.tensor(lines["kind"] == "hydrogen", dtype=dtype))
        self.register_buffer("is_majority", torch.tensor(lines["kind"] != "minority", dtype=dtype))
        self.register_buffer("is_metal", torch.tensor([e != "H" for e in element], dtype=dtype))
        # pixel windows: strong lines get a wide window so their damping wings are not cut
        centre = np.round((np.log(lines["wave"]) - math.log(WAVE_MIN)) / self.dloglam).astype(np.int64)
        self._groups = []
        for gi, (sel, hw) in enumerate(((lines["strong"] == 1, strong_half_width), (lines["strong"] == 0, weak_half_width))):
            idx = np.nonzero(sel)[0]
            pix = centre[idx][:, None] + np.arange(-hw, hw + 1)[None, :]
            valid = (pix >= 0) & (pix < N_PIX)
            self.register_buffer(f"g{gi}_lines", torch.tensor(idx))
            self.register_buffer(f"g{gi}_pix", torch.tensor(np.clip(pix, 0, N_PIX - 1)))
            self.register_buffer(f"g{gi}_valid", torch.tensor(valid, dtype=dtype))
            self._groups.append(gi)
        # Gaussian LSF, FWHM = lambda / R, in pixels of d ln lambda
        fwhm_pix = 1.0 / RESOLUTION / self.dloglam
        self.lsf_fwhm_pix = fwhm_pix
        sig = fwhm_pix / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        k = torch.arange(-12, 13, dtype=torch.float64)
        ker = torch.exp(-0.5 * (k / sig) ** 2)
        self.register_buffer("lsf", (ker / ker.sum()).to(dtype).view(1, 1, -1))
        # solar reference values of the per-line opacity terms
        with torch.no_grad():
            sun = torch.tensor([[T_SUN, LOGG_SUN, 0.0]], dtype=torch.float64)
            ref = self._log_line_ratio(sun.to(dtype), torch.zeros(1, dtype=dtype))
        self.register_buffer("sun_log_ratio", ref[0].detach())
        # sky: OH lines convolved with the LSF, plus continuum, in counts
        ohw, ohs = sky_lines()
        w = wave.numpy()
        sig_a = w[:, None] / RESOLUTION / 2.3548
        oh = (ohs[None, :] * np.exp(-0.5 * ((w[:, None] - ohw[None, :]) / sig_a) ** 2)).sum(1)
        self.register_buffer("sky_counts", torch.tensor(SKY_CONT_COUNTS + SKY_OH_COUNTS * oh, dtype=dtype))
        self.register_buffer("oh_relative", torch.tensor(oh, dtype=dtype))
        # throughput: deep-depletion CCD response falling toward 9000 A (relative, 1 at 7600 A)
        self.register_buffer("throughput", torch.tensor(np.exp(-((w - 7600.0) / 1500.0) ** 2), dtype=dtype))
        self.to(dtype)

    # ----- thermodynamics -----
    @staticmethod
    def log_pe(teff, logg, mh):
        theta = 5040.0 / teff
        return LOG_PE_SUN + (logg - LOGG_SUN) / 3.0 + mh / 3.0 - BETA_PE * (theta - THETA_SUN)

    @staticmethod
    def log_pg_rel(logg, mh):
        return 2.0 / 3.0 * (logg - LOGG_SUN) - mh / 3.0

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
        log_ii_i = self.log_2u + 2.5 * torch.log10(teff) - self.chi_ion * theta - 0.1762 - lpe
        # fraction in the line's stage: neutral f_I = 1/(1+10^x), ion f_II = 1/(1+10^-x)
        x = torch.where(self.is_ion > 0, -log_ii_i, log_ii_i)
        log_frac = -torch.nn.functional.softplus(x * math.log(10.0)) / math.log(10.0)
        log_abund = self.is_metal * (mh + self.alpha * alpha_m[:, None])
        log_kappa = lpe + 2.5 * torch.log10(theta) + H_MINUS_THETA * theta
        boltz = -self.chi_exc * theta
        extra = -MAJORITY_G_EXTRA * self.is_majority * (logg - LOGG_SUN)
        return log_abund + log_frac + boltz - log_kappa + extra

    def line_params(self, labels, alpha_m=None):
        """Per-line strength S, Doppler width (A), Lorentz half width (A): each (B, L)."""
        labels = labels.to(self.dtype)
        B = labels.shape[0]
        if alpha_m is None:
            alpha_m = torch.zeros(B, dtype=self.dtype, device=labels.device)
        teff, logg, mh = labels[:, 0:1], labels[:, 1:2], labels[:, 2:3]
        log_s = self.log_tau + self._log_line_ratio(labels, alpha_m) - self.sun_log_ratio
        xi = self.microturbulence(logg)
        vth2 = 2.0 * K_B * teff / (self.mass * AMU) / 1e6  # (km/s)^2
        dlam_d = self.line_wave / C_KMS * torch.sqrt(vth2 + xi ** 2)
        lpg = self.log_pg_rel(logg, mh)
        vdw = self.gamma_sun * 10.0 ** lpg * (teff / T_SUN) ** -0.7
        # Stark (H I): width ~ N_e^(2/3) ~ (P_e / T)^(2/3)
        lpe_rel = self.log_pe(teff, logg, mh) - LOG_PE_SUN
        stark = self.gamma_sun * 10.0 ** (2.0 / 3.0 * lpe_rel) * (teff / T_SUN) ** (-2.0 / 3.0)
        gamma = torch.where(self.is_h > 0, stark, vdw)
        return 10.0 ** log_s, dlam_d, gamma

    def line_opacity(self, labels, alpha_m=None, rv=None):
        """Total line optical depth on the pixel grid (B, 4096), before the LSF."""
        S, dlam_d, gamma = self.line_params(labels, alpha_m)
        B = S.shape[0]
        shift = 1.0 if rv is None else (1.0 + rv.to(self.dtype)[:, None] / C_KMS)
        centre = self.line_wave * shift  # (B, L) or (L,)
        if not torch.is_tensor(centre) or centre.dim() == 1:
            centre = centre.expand(B, -1)
        dsun = self.line_wave / C_KMS * torch.sqrt(2.0 * K_B * T_SUN / (self.mass * AMU) / 1e6 + 1.04 ** 2)
        tau = torch.zeros(B, N_PIX, dtype=self.dtype, device=S.device)
        for gi in self._groups:
            li = getattr(self, f"g{gi}_lines")
            pix = getattr(self, f"g{gi}_pix")
            valid = getattr(self, f"g{gi}_valid")
            dl = self.wave[pix][None] - centre[:, li][:, :, None]          # (B, Lg, W)
            dd = dlam_d[:, li][:, :, None]
            u = dl / dd
            a = (gamma[:, li][:, :, None] / dd).expand_as(u)
            prof = voigt_hjerting(u, a) / dd                                  # integral 1 * sqrt(pi)
            t = S[:, li][:, :, None] * dsun[li][None, :, None] * prof * valid[None]
            tau = tau.index_add(1, pix.reshape(-1), t.reshape(B, -1))
        return tau

    def continuum(self, teff):
        """Planck B_lambda(Teff) divided by its mean over the window: smooth in Teff."""
        lam = self.wave * 1e-10
        x = (H_PLANCK * C_MS / K_B) / (lam[None, :] * teff[:, None])
        b = lam[None, :] ** -5 / torch.expm1(x)
        return b / b.mean(dim=1, keepdim=True)

    def tio_opacity(self, teff, mh):
        """TiO band depressions below ~4200 K, degraded to the red from each band head."""
        strength = 10.0 ** mh[:, None] * torch.exp(-(teff[:, None] - 3500.0) / 250.0) * 0.6
        prof = torch.zeros_like(self.wave)
        for head, depth in zip(TIO_HEADS, TIO_DEPTHS):
            d = self.wave - head
            prof = prof + depth * torch.sigmoid(d / 2.0) * torch.exp(-torch.clamp(d, min=0.0) / TIO_DECAY_A)
        return strength * prof[None, :]

    def convolve_lsf(self, f):
        f = torch.nn.functional.pad(f[:, None, :], (12, 12), mode="replicate")
        return torch.nn.functional.conv1d(f, self.lsf)[:, 0, :]

    def forward(self, labels, alpha_m=None, rv=None, lines=True):
        labels = labels.to(self.dtype)
        teff, mh = labels[:, 0], labels[:, 2]
        f = self.continuum(teff) * torch.exp(-self.tio_opacity(teff, mh))
        if lines:
            tau = self.line_opacity(labels, alpha_m, rv)
            f = f * (1.0 - LINE_DEPTH_MAX * (-torch.expm1(-tau)))
        return self.convolve_lsf(f)

    def line_ratio(self, labels, **kw):
        """Flux divided by the line-free pseudo-continuum (continuum x TiO): for equivalent widths."""
        return self(labels, **kw) / self(labels, lines=False)

    # ----- noise -----
    def sigma(self, flux, star_counts):
        """1-sigma error per pixel for normalised flux `flux` (B, N) and per-star counts (B,):
        photon noise of the star + sky (continuum + OH) + read noise, in flux units."""
        nt = star_counts[:, None] * self.throughput[None, :]
        var = nt * torch.clamp(flux, min=0.0) + self.sky_counts[None, :] + READ_NOISE ** 2
        return torch.sqrt(var) / nt


def sample_star_counts(n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-star continuum counts per pixel, log-uniform over STAR_COUNTS_RANGE (a flat
    magnitude distribution over 4.6 mag, as in a magnitude-limited sample of faint stars)."""
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
