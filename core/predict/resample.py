"""Resampling onto the model grid: flux-conserving spline through the running integral of the flux
at the upload's bin edges (errors through the overlap weights); gaps are not bridged. DER_SNR."""
from __future__ import annotations

import math

import numpy as np

from core.predict.settings import COVER_SLACK, GAP_FACTOR


# --------------------------------------------------------------------------- resampling
def pixel_edges(wave: np.ndarray) -> np.ndarray:
    """N+1 edges of the pixels centred on wave: half-way between neighbours, mirrored at the ends."""
    w = np.asarray(wave, dtype=np.float64)
    mid = 0.5 * (w[1:] + w[:-1])
    return np.concatenate([[w[0] - (mid[0] - w[0])], mid, [w[-1] + (w[-1] - mid[-1])]])


def source_bins(wave: np.ndarray, gap_factor: float = GAP_FACTOR, min_gap: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Bins (lo, hi) of the upload's samples. A step more than gap_factor times the local typical step
    (and wider than min_gap) is a gap: the bins on either side stop half a typical step from their
    sample, leaving it uncovered."""
    w = np.asarray(wave, dtype=np.float64)
    d = np.diff(w)
    k = min(25, d.size)
    # typical step: running median over k steps (robust to a few gaps, follows log-linear sampling)
    pad = np.pad(d, (k // 2, k - 1 - k // 2), mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(pad, k)
    typ = np.median(win, axis=1)
    gap = (d > gap_factor * typ) & (d > min_gap)
    half_left = np.where(gap, 0.5 * typ, 0.5 * d)        # reach of sample i to the right
    lo = np.empty_like(w)
    hi = np.empty_like(w)
    hi[:-1] = w[:-1] + half_left
    lo[1:] = w[1:] - np.where(gap, 0.5 * typ, 0.5 * d)
    lo[0] = w[0] - 0.5 * d[0]
    hi[-1] = w[-1] + 0.5 * d[-1]
    return lo, hi


def rebin_matrix(src_wave: np.ndarray, dst_wave: np.ndarray, gap_factor: float = GAP_FACTOR):
    """Sparse (P, N) matrix R and coverage (P,): R[k, j] = overlap(source bin j, model pixel k) / width(k).
    R @ flux is the mean flux density over each model pixel of the upload taken as constant over each of
    its bins, which conserves the integral of the flux over any span of whole pixels; coverage[k] is the
    fraction of model pixel k that the upload covers."""
    from scipy import sparse
    e = pixel_edges(dst_wave)
    lo, hi = source_bins(src_wave, gap_factor, min_gap=2.0 * float(np.median(np.diff(e))))
    a, b = e[:-1], e[1:]
    j0 = np.searchsorted(hi, a, side="right")          # first bin ending after a
    j1 = np.searchsorted(lo, b, side="left")           # bins starting before b: [j0, j1)
    cnt = np.clip(j1 - j0, 0, None)
    rows = np.repeat(np.arange(a.size), cnt)
    offs = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    cols = j0[rows] + offs
    ov = np.clip(np.minimum(hi[cols], b[rows]) - np.maximum(lo[cols], a[rows]), 0.0, None)
    width = b - a
    R = sparse.csr_matrix((ov / width[rows], (rows, cols)), shape=(a.size, src_wave.size))
    coverage = np.asarray(R.sum(axis=1)).ravel()
    return R, coverage


class Resampler:
    """Resampling from an upload's wavelengths onto the model grid, built once per source grid.

    Flux: the flux-conserving spline. The upload's samples are pixel means over bins whose edges lie
    half-way between samples; their running integral C(lambda) is known exactly at every bin edge. A
    cubic spline through those values gives C anywhere, and each model pixel [a, b] gets
    (C(b) - C(a)) / (b - a): the integral of the flux over any span between model-pixel edges is the
    upload's, and an upload already on the model grid comes back unchanged. Contiguous runs of bins
    are splined separately, so nothing is interpolated across a gap.
    Error: propagated through the overlap weights R (R[k, j] = overlap of bin j with pixel k / width
    of k): sigma_k^2 = sum_j R_kj^2 sigma_j^2.
    covered: model pixels lying entirely inside one contiguous run of the upload's bins."""

    def __init__(self, src_wave: np.ndarray, dst_wave: np.ndarray, gap_factor: float = GAP_FACTOR):
        self.src = np.asarray(src_wave, np.float64)
        self.dst = np.asarray(dst_wave, np.float64)
        self.R, cov = rebin_matrix(self.src, self.dst, gap_factor)
        e = pixel_edges(self.dst)
        lo, hi = source_bins(self.src, gap_factor, min_gap=2.0 * float(np.median(np.diff(e))))
        self.lo, self.hi = lo, hi
        self.a, self.b = e[:-1], e[1:]
        slack = COVER_SLACK * (self.b - self.a)   # wavelengths rounded in a text file still cover the end pixels
        brk = np.nonzero(lo[1:] > hi[:-1] + 1e-9 * np.abs(hi[:-1]))[0] + 1
        self.segments = []               # (first bin, last bin + 1, model pixels inside)
        covered = np.zeros(self.dst.size, bool)
        for s0, s1 in zip(np.concatenate([[0], brk]), np.concatenate([brk, [self.src.size]])):
            inside = np.nonzero((self.a >= lo[s0] - slack) & (self.b <= hi[s1 - 1] + slack))[0]
            if inside.size:
                self.segments.append((int(s0), int(s1), inside))
                covered[inside] = True
        self.covered = covered & (cov > 1 - 2 * COVER_SLACK)
        # already on the model grid (to 1% of a pixel, e.g. wavelengths rounded in a text file): used as is
        self.identity = bool(self.src.size == self.dst.size
                             and np.all(np.abs(self.src - self.dst) <= COVER_SLACK * (self.b - self.a)))
        if self.identity:
            self.covered = np.ones(self.dst.size, bool)

    def flux(self, f: np.ndarray) -> np.ndarray:
        """(n, N) -> (n, P); uncovered pixels are NaN."""
        from scipy.interpolate import CubicSpline
        f = np.atleast_2d(np.asarray(f, np.float64))
        if self.identity:
            return f
        out = np.full((f.shape[0], self.dst.size), np.nan)
        for s0, s1, inside in self.segments:
            edges = np.concatenate([[self.lo[s0]], self.hi[s0:s1]])
            cum = np.zeros((edges.size, f.shape[0]))                 # running integral, pixels along axis 0
            np.cumsum(f[:, s0:s1].T * np.diff(edges)[:, None], axis=0, out=cum[1:])
            if edges.size >= 4:
                C = CubicSpline(edges, cum, axis=0)
                ca, cb = C(self.a[inside]), C(self.b[inside])
            else:  # two or three bins: the piecewise-constant integral
                ca = np.stack([np.interp(self.a[inside], edges, c) for c in cum.T], axis=1)
                cb = np.stack([np.interp(self.b[inside], edges, c) for c in cum.T], axis=1)
            out[:, inside] = ((cb - ca) / (self.b[inside] - self.a[inside])[:, None]).T
        # a model pixel overhanging the upload's first or last bin by up to COVER_SLACK: the spline's
        # end extrapolates the running integral linearly, which is the end bin's flux
        out[:, ~self.covered] = np.nan
        return out

    def error(self, e: np.ndarray) -> np.ndarray:
        if self.identity:
            return np.atleast_2d(np.asarray(e, np.float64))
        e2 = np.atleast_2d(np.asarray(e, np.float64)) ** 2
        out = np.sqrt(np.asarray(self.R.multiply(self.R) @ e2.T).T)
        out[:, ~self.covered] = np.nan
        return out


def resample(wave, flux, dst_wave, error=None):
    """Flux (and error, propagated) of one or many spectra on dst_wave; returns flux, error, covered.
    Pixels not fully covered are NaN (the caller masks them)."""
    rs = Resampler(wave, dst_wave)
    out = rs.flux(flux)
    err = None if error is None else rs.error(error)
    if np.ndim(flux) == 1:
        out = out[0]
        err = None if err is None else err[0]
    return out, err, rs.covered


def der_snr(flux: np.ndarray) -> float:
    """DER_SNR (Stoehr et al. 2008): median flux / (1.482602/sqrt(6) median|2f_i - f_i-2 - f_i+2|)."""
    f = np.asarray(flux, np.float64)
    f = f[np.isfinite(f)]
    if f.size < 5:
        return float("nan")
    noise = 1.482602 / math.sqrt(6.0) * np.median(np.abs(2.0 * f[2:-2] - f[:-4] - f[4:]))
    sig = np.median(f)
    return float(sig / noise) if noise > 0 else float("inf")


