"""The out-of-distribution reference of a data set: PCA of the training flux, the continuum-level fit
and the Mahalanobis distances of validation spectra that an upload is compared with."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data import Dataset
from core.predict.inventory import _cached
from core.predict.settings import N_PCA, PCA_MAX_TRAIN, REF_MAX


@dataclass
class Reference:
    """What a data set's training spectra look like at one noise level."""
    noise_level: float
    mu: np.ndarray          # (P,) mean training flux
    comps: np.ndarray       # (K, P) principal components
    score_var: np.ndarray   # (K,) variance of the training scores
    ref_dist: np.ndarray    # sorted PCA (Mahalanobis) distances of validation spectra
    ref_chi2: np.ndarray    # sorted reduced chi^2 of their PCA reconstruction
    err_median: np.ndarray  # (P,) median training 1-sigma error at this level
    snr: np.ndarray         # sorted per-spectrum median S/N of the training split at this level
    scale_rms: float = 0.0  # RMS error of the fitted continuum level on validation spectra (true level: 1)


# bump when _make_reference changes what it computes: the files kept under artifacts/explain/ are then remade
REFERENCE_VERSION = 1
FIELDS = ("mu", "comps", "score_var", "ref_dist", "ref_chi2", "err_median", "snr")


def reference(ds: Dataset, noise_level: float) -> Reference:
    """The reference at this noise level: made once per data set and kept on disk (3 s of a cold
    `predict` call on the quick data set), and once per process in memory."""
    key = ("ref", str(ds.path), ds.fingerprint, float(noise_level))
    return _cached(key, lambda: _stored_reference(ds, float(noise_level)))


def _stored_reference(ds: Dataset, nl: float) -> Reference:
    from core import config
    from core.data.cache import atomic_savez
    path = (config.artifacts_dir() / "explain" / ds.fingerprint /
            f"predict_reference_v{REFERENCE_VERSION}_nl{nl:g}_k{N_PCA}_t{PCA_MAX_TRAIN}_r{REF_MAX}.npz")
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return Reference(nl, *(z[k] for k in FIELDS), scale_rms=float(z["scale_rms"]))
        except (OSError, KeyError, ValueError):
            pass   # a damaged file is remade
    ref = _make_reference(ds, nl)
    atomic_savez(path, scale_rms=np.array(ref.scale_rms), **{k: getattr(ref, k) for k in FIELDS})
    return ref


def _make_reference(ds: Dataset, nl: float) -> Reference:
    rows = ds.split_rows("train")
    rows = rows if rows.size <= PCA_MAX_TRAIN else rows[np.linspace(0, rows.size - 1, PCA_MAX_TRAIN).astype(int)]
    fl, er = ds.read(rows)                                        # noise-free flux and its 1-sigma at level 1
    X = fl.astype(np.float64)
    mu = X.mean(0)
    k = int(min(N_PCA, max(1, X.shape[0] - 2)))
    S, Vt = _top_components(X - mu, k)
    score_var = (S ** 2) / max(1, X.shape[0] - 1)
    err_med = nl * np.median(er, axis=0).astype(np.float64)
    snr = np.sort(np.median(fl / (nl * er), axis=1))
    ref = Reference(nl, mu, Vt, score_var, np.array([]), np.array([]), err_med, snr)
    val = ds.view("val", nl, "flux+error", limit=REF_MAX)
    if len(val.y) == 0:
        val = ds.view("test", nl, "flux+error", limit=REF_MAX)
    if len(val.y):
        f, e = val.x[:, 0].astype(np.float64), val.x[:, 1].astype(np.float64)
        scale, coef, chi2 = _fit_scale(ref, f, e, np.ones(f.shape[1], bool))
        ref.ref_dist = np.sort(_mahalanobis(ref, coef / scale[:, None]))
        ref.ref_chi2 = np.sort(chi2)
        ref.scale_rms = float(np.sqrt(np.mean((scale - 1.0) ** 2)))
    return ref


def _top_components(Xc: np.ndarray, k: int, iters: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Top-k singular values and right singular vectors of Xc by randomised subspace iteration
    (Halko et al. 2011), seeded. Only small (m x m, m = k + 10) eigen-problems are solved: a few
    matrix products instead of a full SVD."""
    rng = np.random.default_rng(0)

    def orth(Y):
        w, V = np.linalg.eigh(Y.T @ Y)
        keep = w > w.max() * 1e-12
        return Y @ (V[:, keep] / np.sqrt(w[keep]))

    Q = orth(Xc @ rng.standard_normal((Xc.shape[1], min(k + 10, min(Xc.shape)))))
    for _ in range(iters):
        Q = orth(Xc @ (Xc.T @ Q))
    B = Q.T @ Xc
    w, U = np.linalg.eigh(B @ B.T)
    order = np.argsort(w)[::-1][:k]
    S = np.sqrt(np.clip(w[order], 1e-300, None))
    Vt = (U[:, order].T @ B) / S[:, None]
    return S, Vt


def _fit_scale(ref: Reference, f: np.ndarray, e: np.ndarray, cov: np.ndarray):
    """Fit f ~ s * (mu + V^T c) over the covered pixels, for many spectra at once.

    Each spectrum is first divided by its median (s0), then fitted by weighted least squares with the
    training error at this level as weights and a Gaussian prior on c (the training score variances,
    which keeps the components from absorbing the level): one (K+1)-square system for all spectra.
    Returns the level s, the coefficients c (in units of s0) and the reduced chi^2 of the
    reconstruction, in units of the spectrum's own error added in quadrature to the training error
    (so a very high S/N upload is not held to a precision the training spectra never had)."""
    A = np.vstack([ref.mu[cov], ref.comps[:, cov]]).T            # (Pc, K+1)
    wr = 1.0 / ref.err_median[cov] ** 2
    kk = A.shape[1]
    G = A.T @ (A * wr[:, None])
    G[1:, 1:] += np.diag(1.0 / ref.score_var)
    fc = f[:, cov]
    s0 = np.mean(fc, axis=1)
    fn = fc / s0[:, None]
    a = np.linalg.solve(G, (A * wr[:, None]).T @ fn.T).T           # (n, K+1)
    s = s0 * a[:, 0]
    resid = fn - a @ A.T
    den = e[:, cov] / s0[:, None]
    den *= den
    den += (a[:, :1] * ref.err_median[None, cov]) ** 2
    resid *= resid
    resid /= den
    chi2 = np.sum(resid, axis=1) / max(1, A.shape[0] - kk)
    return s, a[:, 1:] * s0[:, None], chi2


def _mahalanobis(ref: Reference, coef: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(coef ** 2 / ref.score_var[None, :], axis=1))


def _pct(sorted_ref: np.ndarray, x: float) -> float:
    if sorted_ref.size == 0 or not np.isfinite(x):
        return float("nan")
    return float(100.0 * np.searchsorted(sorted_ref, x, side="right") / sorted_ref.size)


