"""The star's frame: wavelengths in the data set's medium (air or vacuum) and at rest.

Air and vacuum: the IAU standard conversion (Morton 2000, after Ciddor 1996), with s = 10^4 / lambda_vac
in inverse microns,
    n = 1 + 8.34254e-5 + 2.406147e-2 / (130 - s^2) + 1.5998e-4 / (38.9 - s^2),   lambda_air = lambda_vac / n
(the same formula VALD and the SDSS documentation use); the inverse is solved by fixed-point iteration.
A file says its medium by a column name (lambda_vac, wave_air), a header keyword (VACUUM, AIRORVAC,
CTYPE1 = 'WAVE' for vacuum or 'AWAV' for air, as FITS WCS paper III defines them), or a survey
convention (SDSS and LAMOST publish vacuum wavelengths); an explicit choice overrides all of them.

Radial velocity: cross-correlation of the upload's line-depth spectrum (1 - flux / continuum) with the
data set's mean training spectrum on a common log-lambda grid, over +-VMAX km/s: the integer-pixel peak,
then a finer search (quarter-pixel steps through the interpolated template) and a parabola through the
top of the correlation; then twice more against the star's own best match among the training spectra
(mean + principal components fitted at that velocity), which removes the few km/s a mismatched
template pulls. Its 1-sigma is the spread over NOISE_DRAWS re-draws of the upload's noise. A velocity
measured worse than MAX_SIGMA (or, without errors, a correlation peak under MIN_PEAK) is not applied,
and the answer says so.
"""
from __future__ import annotations

import numpy as np

C_KMS = 299792.458
VMAX = 1500.0         # km/s searched either side of zero (halo stars reach +-600, hypervelocity stars more)
MIN_PEAK = 0.3        # without an error column: the correlation peak below which the velocity is not trusted
MAX_SIGMA = 5.0       # km/s: a velocity measured worse than this is not applied
REST_KMS = 1.0        # km/s: a velocity this small (or within 2 sigma of zero) is taken as rest
NOISE_DRAWS = 8
MATCH_ITER = 2        # refinements of the template into the star's own best match
CONT_CHUNK_A = 60.0   # continuum: 90th percentile of the flux in chunks this wide, interpolated
MEDIA = ("air", "vacuum")


def _n_air(vac: np.ndarray) -> np.ndarray:
    s2 = (1e4 / np.asarray(vac, np.float64)) ** 2
    return 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)


def vacuum_to_air(wave_vac: np.ndarray) -> np.ndarray:
    """Vacuum wavelengths (Angstrom) to air, by the IAU standard formula."""
    w = np.asarray(wave_vac, np.float64)
    return w / _n_air(w)


def air_to_vacuum(wave_air: np.ndarray) -> np.ndarray:
    """Air wavelengths (Angstrom) to vacuum: the inverse of vacuum_to_air (fixed point, < 1e-9 A)."""
    a = np.asarray(wave_air, np.float64)
    v = a.copy()
    for _ in range(4):
        v = a * _n_air(v)
    return v


def to_medium(wave: np.ndarray, medium: str | None, target: str) -> tuple[np.ndarray, str]:
    """Wavelengths in the target medium, and what was done (medium None: unknown, taken as target)."""
    if medium is None:
        return wave, (f"not stated: taken as {target} like the models' grid (a vacuum spectrum taken as air "
                      f"shows as about +80 km/s of extra radial velocity, which the velocity correction removes)")
    if medium not in MEDIA:
        raise ValueError(f"wavelength medium must be air or vacuum, got {medium!r}")
    if medium == target:
        return wave, f"{medium}, as the models' grid"
    w = np.asarray(wave, np.float64)
    conv = w.copy()
    optical = w > 2000.0            # the IAU convention: no conversion below 2000 A (the formula's pole is at 1603 A)
    conv[optical] = vacuum_to_air(w[optical]) if medium == "vacuum" else air_to_vacuum(w[optical])
    return conv, f"{medium}, converted to {target} (IAU standard, Morton 2000)"


def doppler(v_kms: float) -> float:
    """lambda_observed / lambda_rest for a radial velocity (relativistic, v > 0 receding)."""
    b = float(v_kms) / C_KMS
    if not np.isfinite(b) or abs(b) >= 0.1:
        raise ValueError(f"a radial velocity must be finite and under 0.1 c (29,979 km/s), got {v_kms!r} km/s")
    return float(np.sqrt((1.0 + b) / (1.0 - b)))


def _continuum(wave: np.ndarray, flux: np.ndarray) -> np.ndarray:
    edges = np.arange(wave[0], wave[-1] + CONT_CHUNK_A, CONT_CHUNK_A)
    idx = np.clip(np.searchsorted(edges, wave, side="right") - 1, 0, len(edges) - 1)
    cx, cy = [], []
    for k in np.unique(idx):
        sel = idx == k
        if sel.sum() >= 5:
            cx.append(float(np.mean(wave[sel])))
            cy.append(float(np.percentile(flux[sel], 90)))
    if len(cx) < 2:
        return np.full_like(flux, np.percentile(flux, 90))
    return np.interp(wave, cx, cy)


def _depth(wave: np.ndarray, flux: np.ndarray) -> np.ndarray:
    c = _continuum(wave, flux)
    d = 1.0 - flux / np.where(c > 0, c, np.nan)
    d = np.nan_to_num(d, nan=0.0)
    return d - d.mean()


def _ccf(up: np.ndarray, tgrid_log: np.ndarray, tdepth: np.ndarray, glog: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Normalised correlation of the upload's depth (on log grid glog) with the template shifted by each v."""
    out = np.empty(v.size)
    a = up / max(np.linalg.norm(up), 1e-300)
    for i, vi in enumerate(v):
        t = np.interp(glog - np.log(doppler(vi)), tgrid_log, tdepth, left=0.0, right=0.0)
        t = t - t.mean()
        out[i] = a @ t / max(np.linalg.norm(t), 1e-300)
    return out


def _estimate(glog, up, tlog, tdepth, step, v0: float | None = None) -> tuple[float, float]:
    # integer steps of the log grid (skipped when a start v0 is given), then quarter steps around the
    # best, then a parabola through the top three
    dv = (np.exp(step) - 1.0) * C_KMS
    if v0 is None:
        coarse = np.arange(-VMAX, VMAX + dv, dv)
        cc = _ccf(up, tlog, tdepth, glog, coarse)
        v0 = coarse[int(np.argmax(cc))]
    fine = v0 + np.arange(-2.0, 2.01, 0.25) * dv
    cf = _ccf(up, tlog, tdepth, glog, fine)
    j = int(np.clip(np.argmax(cf), 1, fine.size - 2))
    y0, y1, y2 = cf[j - 1], cf[j], cf[j + 1]
    den = y0 - 2 * y1 + y2
    off = 0.5 * (y0 - y2) / den if den < 0 else 0.0
    return float(fine[j] + np.clip(off, -1, 1) * (fine[1] - fine[0])), float(cf.max())


def _matched_template(wave, flux, v, tw, mu, comps):
    """The training spectra's best match to this spectrum at rest: mean + principal components fitted by
    least squares to the spectrum shifted back by v (a template of the star's own type: the mean
    spectrum's blends differ from a given star's and pull the velocity by a few km/s)."""
    rest = np.interp(tw, wave / doppler(v), flux, left=np.nan, right=np.nan)
    ok = np.isfinite(rest)
    A = np.vstack([mu, comps]).T[ok]
    coef, *_ = np.linalg.lstsq(A, rest[ok], rcond=None)
    return np.vstack([mu, comps]).T @ coef


def estimate_rv(wave: np.ndarray, flux: np.ndarray, error: np.ndarray | None, template_wave: np.ndarray,
                template_flux: np.ndarray, components: np.ndarray | None = None, seed: int = 0) -> dict:
    """Radial velocity (km/s) of a spectrum against a rest-frame template, with its 1-sigma and the peak
    correlation; 'ok' False when the correlation is too weak to trust (nothing should be shifted then).
    With `components` (the training flux's principal components), the template is refined twice into the
    star's own best match (_matched_template) and the velocity measured again against it."""
    wave, flux = np.asarray(wave, np.float64), np.asarray(flux, np.float64)
    tw, tf = np.asarray(template_wave, np.float64), np.asarray(template_flux, np.float64)
    step = float(np.median(np.diff(np.log(tw))))
    margin = VMAX / C_KMS * 1.2
    lo, hi = max(wave[0], tw[0] * (1 - margin)), min(wave[-1], tw[-1] * (1 + margin))
    if hi <= lo * (1 + 50 * step):
        return {"ok": False, "value": 0.0, "sigma": None, "peak": None,
                "how": "not measured: the spectrum and the models' grid hardly overlap"}
    glog = np.arange(np.log(lo), np.log(hi), step)
    gw = np.exp(glog)
    f = np.interp(gw, wave, flux)
    tlog = np.log(tw)
    tdepth = _depth(tw, tf)
    up = _depth(gw, f)
    v, peak = _estimate(glog, up, tlog, tdepth, step)
    if components is not None and peak >= 0.1:
        for _ in range(MATCH_ITER):
            tdepth = _depth(tw, _matched_template(wave, flux, v, tw, tf, components))
            v, peak = _estimate(glog, up, tlog, tdepth, step, v)
    sigma = None
    if error is not None and np.all(np.isfinite(error)):
        rng = np.random.default_rng(seed)
        e = np.interp(gw, wave, np.asarray(error, np.float64))
        vs = [_estimate(glog, _depth(gw, f + e * rng.standard_normal(f.size)), tlog, tdepth, step, v)[0]
              for _ in range(NOISE_DRAWS)]
        sigma = float(np.std(vs, ddof=1))
    # trusted when measured well: a 1-sigma under MAX_SIGMA (with an error column), else a clear peak
    ok = bool(abs(v) < VMAX * 0.98 and (peak >= MIN_PEAK if sigma is None else (sigma < MAX_SIGMA and peak >= 0.1)))
    how = (f"cross-correlation with the data set's mean training spectrum (peak {peak:.2f}"
           + (f", 1σ from {NOISE_DRAWS} noise re-draws" if sigma is not None else ", no error column: no 1σ") + ")")
    if not ok:
        how = (f"not applied: measured {v:+.1f}" + (f" ± {sigma:.1f}" if sigma is not None else "")
               + f" km/s with a correlation peak of {peak:.2f}, too uncertain to shift the spectrum by (1σ over "
               f"{MAX_SIGMA:g} km/s, a weak peak, or at the edge of ±{VMAX:.0f} km/s)")
    return {"ok": ok, "value": v if ok else 0.0, "measured": v, "sigma": sigma, "peak": peak, "how": how}


def _hwhm(v: np.ndarray, c: np.ndarray) -> float:
    """Half width at half maximum of a correlation peak sampled at velocities v (peak in the middle)."""
    i0 = int(np.argmax(c))
    half = 0.5 * c[i0]
    left = next((i for i in range(i0, 0, -1) if c[i - 1] < half), None)
    right = next((i for i in range(i0, c.size - 1) if c[i + 1] < half), None)
    if left is None or right is None:
        return float("nan")
    vl = np.interp(half, [c[left - 1], c[left]], [v[left - 1], v[left]])
    vr = np.interp(half, [c[right + 1], c[right]], [v[right + 1], v[right]])
    return 0.5 * float(vr - vl)


def line_broadening(wave: np.ndarray, flux: np.ndarray, v_kms: float, template_wave: np.ndarray,
                    template_flux: np.ndarray, components: np.ndarray | None = None) -> dict:
    """The Gaussian width (km/s) of the upload's lines and of the training spectra's, from the width of
    the cross-correlation peak against the star's matched training template and of that template's own
    autocorrelation: sigma_ccf^2 = sigma_upload^2 + sigma_template^2, sigma_auto^2 = 2 sigma_template^2.
    A ratio well above 1: a lower resolution than the models' (or fast rotation, or a galaxy's velocity
    dispersion); well below 1: a higher resolution."""
    wave, flux = np.asarray(wave, np.float64), np.asarray(flux, np.float64)
    tw, tf = np.asarray(template_wave, np.float64), np.asarray(template_flux, np.float64)
    step = float(np.median(np.diff(np.log(tw))))
    lo, hi = max(wave[0], tw[0]), min(wave[-1], tw[-1])
    glog = np.arange(np.log(lo), np.log(hi), step)
    gw = np.exp(glog)
    tmpl = _matched_template(wave, flux, v_kms, tw, tf, components) if components is not None else tf
    tdepth = _depth(tw, tmpl)
    up = _depth(gw, np.interp(gw, wave, flux))
    dv = (np.exp(step) - 1.0) * C_KMS
    lags = np.arange(-16, 16.01, 0.5) * dv
    c_up = _ccf(up, np.log(tw), tdepth, glog, v_kms + lags)
    own = _depth(gw, np.interp(gw, tw, tmpl))
    c_t = _ccf(own, np.log(tw), tdepth, glog, lags)
    s_ccf, s_auto = _hwhm(lags, c_up) / 1.1774, _hwhm(lags, c_t) / 1.1774
    s_t = s_auto / np.sqrt(2.0)
    if not np.isfinite(s_t) or s_t <= 0:
        return {"sigma_upload_kms": float("nan"), "sigma_training_kms": float("nan"), "ratio": float("nan")}
    if not np.isfinite(s_ccf):   # no half maximum inside +-16 steps: broader than the window can show
        return {"sigma_upload_kms": float(16 * dv / 1.1774), "sigma_training_kms": float(s_t), "ratio": float("inf")}
    s_up = float(np.sqrt(max(s_ccf ** 2 - s_t ** 2, 0.0)))
    return {"sigma_upload_kms": s_up, "sigma_training_kms": float(s_t), "ratio": float(s_up / s_t)}


BROADER = 1.12    # upload / training line-width ratio above which the upload is flagged (R=5000 test stars: <= 1.08)
NARROWER = 0.93   # ... below which it is degraded to the training resolution (R=10,000 simulated: <= 0.92)


MAX_DEGRADE_POINTS = 200_000   # the degraded spectrum is cropped to the models' grid; this bounds what is left


def degrade(wave: np.ndarray, flux: np.ndarray, error: np.ndarray | None, sigma_kms: float,
            grid: tuple[float, float] | None = None):
    """The spectrum convolved with a Gaussian of sigma_kms, segment by segment (a gap, a step over 3x the
    median in log lambda, is never bridged), each segment on a log-lambda grid at its own median step; the
    error propagated as sqrt(conv(error^2, kernel)), which keeps each pixel's error at the level of the
    information it carries (the noise becomes correlated, and later steps treat pixels as independent).
    grid=(lo, hi) crops to that range first (with the kernel's margin). Returns (wave, flux, error)."""
    lw = np.log(np.asarray(wave, np.float64))
    flux = np.asarray(flux, np.float64)
    err = None if error is None else np.asarray(error, np.float64)
    if grid is not None:
        m = 10 * sigma_kms / C_KMS
        keep = (lw >= np.log(grid[0]) - m) & (lw <= np.log(grid[1]) + m)
        lw, flux, err = lw[keep], flux[keep], None if err is None else err[keep]
    d = np.diff(lw)
    step = float(np.median(d))
    if lw.size < 10 or not step > 0 or (lw[-1] - lw[0]) / step > MAX_DEGRADE_POINTS:
        return np.exp(lw), flux, err
    cuts = np.flatnonzero(d > 3 * step) + 1
    out_w, out_f, out_e = [], [], []
    for seg in np.split(np.arange(lw.size), cuts):
        if seg.size < 3:
            continue
        s_lw = lw[seg]
        s_step = float(np.median(np.diff(s_lw)))
        g = np.arange(s_lw[0], s_lw[-1] + 0.5 * s_step, s_step)
        sig = sigma_kms / C_KMS / s_step
        x = np.arange(-int(np.ceil(4 * sig)), int(np.ceil(4 * sig)) + 1)
        k = np.exp(-0.5 * (x / sig) ** 2)
        k /= k.sum()
        pad = x.size // 2
        out_w.append(np.exp(g))
        out_f.append(np.convolve(np.pad(np.interp(g, s_lw, flux[seg]), pad, mode="edge"), k, mode="valid"))
        if err is not None:
            e2 = np.interp(g, s_lw, err[seg] ** 2)
            out_e.append(np.sqrt(np.convolve(np.pad(e2, pad, mode="edge"), k, mode="valid")))
    if not out_w:
        return np.exp(lw), flux, err
    return np.concatenate(out_w), np.concatenate(out_f), (np.concatenate(out_e) if err is not None else None)
