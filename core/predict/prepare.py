"""Preparing an upload for the models: coverage and masking, S/N, the noise level, the continuum level,
gap filling from the PCA reconstruction, and the (n, C, P) view each model expects."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core import config
from core.data import INPUTS, Dataset, View
from core.predict.channels import FROM_UPLOAD
from core.predict.inventory import Entry, _cached
from core.predict.readers.columns import check_units
from core.predict.reference import _fit_scale, _mahalanobis, reference
from core.predict.resample import Resampler, der_snr
from core.predict.settings import MIN_COVERAGE, PCA_MAX_TRAIN
from core.predict.spectra import PredictError


# --------------------------------------------------------------------------- preparing an upload
@dataclass
class Prepared:
    """Spectra on the model grid, normalised as in training, with what it took to get there."""
    wave: np.ndarray          # (P,) the model grid
    flux: np.ndarray          # (n, P) normalised, masked pixels filled with the PCA reconstruction
    error: np.ndarray         # (n, P) normalised 1-sigma error (masked pixels: training median)
    covered: np.ndarray       # (n, P) bool: pixel fully covered by the upload
    snr: np.ndarray           # (n,) median S/N per model pixel
    snr_how: str
    scale: np.ndarray         # (n,) the upload's flux was divided by this
    scale_how: str
    noise_level: np.ndarray   # (n,) the noise level whose models are used
    noise_how: str
    dist: np.ndarray          # (n,) PCA distance
    chi2: np.ndarray          # (n,) reduced chi^2 of the PCA reconstruction
    coarse: float             # upload pixel width / model pixel width (median)
    fitted: np.ndarray        # (n,) bool: the continuum level was fitted (not used as uploaded)


def _noise_levels(ds: Dataset, entries: list[Entry]) -> list[float]:
    """The noise levels an upload can be answered at: those with a predictor (Entry.role)."""
    return sorted({e.noise_level for e in entries if e.usable and e.role == "predictor"})


def choose_noise(snr: np.ndarray, levels: list[float], ds: Dataset) -> np.ndarray:
    """The level whose training S/N (median over the training split) is nearest in log S/N."""
    med1 = reference_snr1(ds)
    meds = np.array([med1 / nl for nl in levels])
    d = np.abs(np.log(np.clip(snr, 1e-6, None))[:, None] - np.log(meds)[None, :])
    return np.array(levels)[np.argmin(d, axis=1)]


def reference_snr1(ds: Dataset) -> float:
    """Median S/N per pixel of the training split at noise level 1."""
    def make():
        rows = ds.split_rows("train")
        rows = rows if rows.size <= PCA_MAX_TRAIN else rows[np.linspace(0, rows.size - 1, PCA_MAX_TRAIN).astype(int)]
        fl, er = ds.read(rows)
        return float(np.median(np.median(fl / er, axis=1)))
    return _cached(("snr1", str(ds.path), ds.fingerprint), make)


NORMALISE = {
    "auto": "fit the continuum level; keep an upload already normalised like the training spectra as it is",
    "fit": "always divide by the fitted continuum level",
    "as-is": "use the flux as uploaded (it is already normalised like the training spectra)",
}


def prepare(ds: Dataset, wave: np.ndarray, flux: np.ndarray, error: np.ndarray | None, name: str,
            noise: str | float = "auto", levels: list[float] | None = None, normalise: str = "auto",
            resampler: Resampler | None = None) -> Prepared:
    """Resample, mask, estimate S/N, pick the noise level, normalise, fill: for n spectra on one grid.
    `resampler`: one built for this `wave` before (a batch prepares its blocks with the same one)."""
    if normalise not in NORMALISE:
        raise PredictError(f"normalise must be one of {', '.join(NORMALISE)}, got {normalise!r}")
    grid = ds.wave.astype(np.float64)
    wave = np.asarray(wave, np.float64)
    check_units(wave, grid, name)
    flux = np.atleast_2d(np.asarray(flux, np.float64))
    n = flux.shape[0]
    rs = resampler if resampler is not None else Resampler(wave, grid)
    covered = rs.covered
    frac = float(covered.mean())
    if frac < MIN_COVERAGE:
        raise PredictError(f"{name}: covers {100 * frac:.0f}% of the models' grid ({grid[0]:.0f}-{grid[-1]:.0f} Å; "
                           f"uploaded {wave[0]:.0f}-{wave[-1]:.0f} Å); at least {100 * MIN_COVERAGE:.0f}% is needed, or models "
                           f"matched to this window (`--matched`; on the Predict page, the box 'Models matched to this spectrum')")
    snr_how = "median flux / error per model pixel, from the upload's error column"
    if error is None:
        snr_native = np.array([der_snr(fi) for fi in flux])
        if not np.all(np.isfinite(snr_native)) or np.any(snr_native <= 0):
            raise PredictError(f"{name}: no error column, and the noise cannot be estimated from the flux "
                               f"(DER_SNR is undefined: constant or non-positive flux?)")
        error = np.abs(np.median(flux, axis=1, keepdims=True)) / snr_native[:, None] * np.ones_like(flux)
        snr_how = "DER_SNR estimate from the flux (no error column), per model pixel"
    else:
        error = np.atleast_2d(np.asarray(error, np.float64))
    fg = rs.flux(flux)                                            # (n, P), NaN where not covered
    eg = rs.error(error)
    cv = slice(None) if covered.all() else covered                # (a slice avoids copies of big batches)
    mean = np.mean(fg[:, cv], axis=1)
    if np.any(mean <= 0):
        i = int(np.argmax(mean <= 0))
        raise PredictError(f"{name}: {'spectrum ' + str(i) + ' has ' if n > 1 else ''}a mean flux <= 0 over the "
                           f"models' grid; it cannot be normalised")
    snr = np.median(fg[:, cv] / eg[:, cv], axis=1)
    levels = levels or list(config.NOISE_LEVELS)
    if noise in (None, "auto"):
        nl = choose_noise(snr, levels, ds)
        noise_how = "auto: the trained noise level whose training S/N is nearest the spectrum's"
    else:
        nl = np.full(n, float(noise))
        noise_how = "chosen by the user"
    out_f = out_e = None
    if np.unique(nl).size > 1:
        out_f, out_e = np.empty((n, grid.size)), np.empty((n, grid.size))
    scale = np.empty(n)
    fitted = np.zeros(n, bool)
    dist = np.empty(n)
    chi2 = np.empty(n)
    imported = str(ds.attrs.get("source", "")).startswith("import")
    how = set()
    for level in np.unique(nl):
        sel = slice(None) if np.all(nl == level) else nl == level
        ref = reference(ds, float(level))
        s, coef, c2 = _fit_scale(ref, fg[sel], eg[sel], cv)
        if np.any(~np.isfinite(s)) or np.any(s <= 0):
            raise PredictError(f"{name}: the flux cannot be matched to the training spectra (fitted level <= 0)")
        if imported and covered.all():
            s = np.mean(fg[sel], axis=1)         # exactly the import's normalisation: mean flux = 1
            how.add("divided by its mean flux, as the import normalised the training spectra")
        tol = max(3.0 * ref.scale_rms, 1e-4)
        as_is = np.full(s.shape, normalise == "as-is")
        if normalise == "auto":
            as_is = np.abs(s - 1.0) <= tol
        use = np.where(as_is, 1.0, s)
        if as_is.any():
            how.add(f"already normalised like the training spectra (fitted level within {100 * tol:.2g}% of 1): "
                    f"used as uploaded" if normalise == "auto" else "used as uploaded (normalisation 'as-is')")
        if (~as_is).any() and not (imported and covered.all()):
            how.add("divided by its continuum level, fitted against the training spectra (their mean and "
                    f"{ref.comps.shape[0]} principal components, over the covered pixels; typical error "
                    f"{100 * ref.scale_rms:.2g}%)")
        f_norm = fg[sel] / use[:, None] if (use != 1.0).any() else fg[sel]
        e_norm = eg[sel] / use[:, None] if (use != 1.0).any() else eg[sel]
        if not covered.all():
            recon = (ref.mu[None, :] * s[:, None] + coef @ ref.comps) / use[:, None]
            f_norm[:, ~covered] = recon[:, ~covered]
            e_norm[:, ~covered] = ref.err_median[None, ~covered]
        if isinstance(sel, slice):
            out_f, out_e = f_norm, e_norm
        else:
            out_f[sel], out_e[sel] = f_norm, e_norm
        scale[sel], fitted[sel] = use, ~as_is
        dist[sel] = _mahalanobis(ref, coef / s[:, None])
        chi2[sel] = c2
    dw_up = np.median(np.diff(wave))
    dw_grid = np.median(np.diff(grid))
    return Prepared(grid, out_f, out_e, np.broadcast_to(covered, (n, grid.size)), snr, snr_how, scale,
                    "; ".join(sorted(how)), nl, noise_how, dist, chi2, float(dw_up / dw_grid), fitted)


def build_view(entry: Entry, flux: np.ndarray, error: np.ndarray, covered: np.ndarray, model=None) -> View:
    """The (n, C, P) input a run's model expects, formed from normalised flux and error (a model
    may ask for another error on gap-filled pixels: Model.input_error)."""
    inputs = entry.spec.get("inputs", "flux")
    if model is not None:
        error = model.input_error(error, covered)
    chans = INPUTS[inputs]
    x = np.empty((flux.shape[0], len(chans), flux.shape[1]), np.float32)
    for i, c in enumerate(chans):
        x[:, i] = FROM_UPLOAD[c](flux, error)
    return View(x, np.full((len(x), 3), np.nan, np.float32), np.arange(len(x)), [inputs], np.empty(0))
