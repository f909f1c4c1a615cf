"""A quadratic data-driven model in the manner of The Cannon (Ness et al. 2015, ApJ 808, 16).

Training: every pixel's flux is a quadratic polynomial in the standardised labels
(Teff, log g, [M/H]) - 10 coefficients per pixel - plus an intrinsic scatter s^2,
fitted by weighted least squares on the training split.
Test: the labels of a spectrum are those that minimise
    chi^2 = sum_pixels (f - theta . l(labels))^2 / (sigma^2 + s^2)
found by batched Gauss-Newton, started from the linear solution (the 10-vector l fitted
without its quadratic constraint, whose components 1-3 are the labels) and from the
centre of the grid; the start with the lower final chi^2 wins. The model predicts all
three labels; the engine scores log g.
"""
from __future__ import annotations

import numpy as np

from models.base import Model, load_arrays, save_arrays

FIT_ROWS = 512    # spectra per block of the training sums (the peak is ~7 float64 arrays of FIT_ROWS x pixels)


def design(l: np.ndarray) -> np.ndarray:
    """Quadratic label vector (n, 10): 1, t, g, m, t^2, g^2, m^2, tg, tm, gm."""
    t, g, m = l[:, 0], l[:, 1], l[:, 2]
    return np.stack([np.ones_like(t), t, g, m, t * t, g * g, m * m, t * g, t * m, g * m], axis=1)


def design_jac(l: np.ndarray) -> np.ndarray:
    """d design / d labels: (n, 10, 3)."""
    t, g, m = l[:, 0], l[:, 1], l[:, 2]
    z, o = np.zeros_like(t), np.ones_like(t)
    rows = [(z, z, z), (o, z, z), (z, o, z), (z, z, o), (2 * t, z, z), (z, 2 * g, z), (z, z, 2 * m),
            (g, t, z), (m, z, t), (z, m, g)]
    return np.stack([np.stack(r, axis=1) for r in rows], axis=1)


class CannonModel(Model):
    inputs = "flux+error"
    family = "cannon"
    seed_dependent = False   # no randomness in the fit: replicates would repeat it

    def __init__(self, iterations: int = 8):
        super().__init__(iterations=iterations)
        self.iterations = iterations

    def fit(self, train, val, ctx):
        self.lmean_ = train.y.mean(0).astype(np.float64)
        self.lstd_ = train.y.std(0).astype(np.float64)
        A = design((train.y - self.lmean_) / self.lstd_)          # (n, 10)
        # the quadratic extrapolates badly: label inference stays inside the training label box
        self.lo_ = A[:, 1:4].min(0)
        self.hi_ = A[:, 1:4].max(0)
        x = train.x
        # per-pixel weighted least squares, one pass with weights, one with scatter added; every pass runs over
        # blocks of spectra (#19), so the fit holds a block in float64, never the training set
        self.theta_ = self._wls(A, x, lambda e: 1.0 / np.clip(e, 1e-6, None) ** 2)
        s2 = np.zeros(x.shape[2])
        for i in range(0, len(A), FIT_ROWS):
            f, e = x[i:i + FIT_ROWS, 0].astype(np.float64), x[i:i + FIT_ROWS, 1].astype(np.float64)
            s2 += np.sum((f - A[i:i + FIT_ROWS] @ self.theta_) ** 2 - e ** 2, axis=0)
        self.s2_ = np.clip(s2 / len(A), 0.0, None)
        self.theta_ = self._wls(A, x, lambda e: 1.0 / (e ** 2 + self.s2_))
        self.target_ = ctx.target
        return self

    @staticmethod
    def _wls(A, x, weight, rows: int = 0):
        """theta[:, p] = (A^T W_p A)^-1 A^T W_p f_p for every pixel p, the sums accumulated over blocks of
        rows of x (n, 2, P): flux and error, W = weight(error)."""
        rows = rows or FIT_ROWS
        k, P = A.shape[1], x.shape[2]
        AtWA, AtWf = np.zeros((P, k, k)), np.zeros((P, k))
        for i in range(0, len(A), rows):
            a = A[i:i + rows]
            f, e = x[i:i + rows, 0].astype(np.float64), x[i:i + rows, 1].astype(np.float64)
            w = weight(e)                                                       # (rows, P)
            outer = (a[:, :, None] * a[:, None, :]).reshape(len(a), k * k)      # (rows, k*k)
            AtWA += (outer.T @ w).T.reshape(-1, k, k)                           # (P, k, k)
            AtWf += (a.T @ (w * f)).T                                           # (P, k)
        AtWA += 1e-8 * np.eye(k)[None]
        return np.linalg.solve(AtWA, AtWf[..., None])[..., 0].T    # (10, P)

    def infer_labels(self, view) -> tuple[np.ndarray, np.ndarray]:
        """Best-fit labels (n, 3) in physical units and their chi^2 per pixel."""
        f, e = view.x[:, 0].astype(np.float64), view.x[:, 1].astype(np.float64)
        w = 1.0 / (np.clip(e, 1e-6, None) ** 2 + self.s2_)
        # linear start: weighted least squares for the unconstrained 10-vector per star
        T = self.theta_                                              # (10, P)
        TT = (T[:, None, :] * T[None, :, :]).reshape(-1, T.shape[1])  # (100, P)
        G = (w @ TT.T).reshape(-1, 10, 10) + 1e-6 * np.eye(10)
        b = (w * f) @ T.T
        lin = np.linalg.solve(G, b[..., None])[..., 0][:, 1:4]
        best_l, best_c = None, None
        lo, hi = self.lo_, self.hi_
        for start in (np.clip(lin, lo, hi), np.zeros_like(lin)):
            l = start.copy()
            for _ in range(self.iterations):
                model = design(l) @ self.theta_                     # (n, P)
                J = np.einsum("nki,kp->npi", design_jac(l), self.theta_)  # (n, P, 3)
                r = f - model
                JJ = (J[..., :, None] * J[..., None, :]).reshape(*J.shape[:2], 9)
                JtWJ = np.einsum("npk,np->nk", JJ, w).reshape(-1, 3, 3) + 1e-6 * np.eye(3)
                JtWr = np.einsum("npi,np->ni", J, w * r)
                step = np.linalg.solve(JtWJ, JtWr[..., None])[..., 0]
                l = np.clip(l + np.clip(step, -1.0, 1.0), lo, hi)
            chi = np.sum((f - design(l) @ self.theta_) ** 2 * w, axis=1)
            if best_l is None:
                best_l, best_c = l, chi
            else:
                better = chi < best_c
                best_l[better], best_c[better] = l[better], chi[better]
        return best_l * self.lstd_ + self.lmean_, best_c / f.shape[1]

    def predict(self, view):
        return self.infer_labels(view)[0][:, self.target_]

    @property
    def n_params(self):
        return int(self.theta_.size + self.s2_.size)

    def pixel_importance(self):
        """|d flux / d log g| at the mean star divided by the pixel's scatter: the Cannon's
        own measure of where log g information sits."""
        d = design_jac(np.zeros((1, 3)))[0]                         # (10, 3)
        grad = np.abs(d[:, 1] @ self.theta_) / self.lstd_[1]
        return grad / np.sqrt(self.s2_ + np.median(self.s2_) + 1e-12)

    per_spectrum_fit = True      # predict is a chi^2 fit per spectrum: slow, one pass in Predict
    fits_all_labels = True
    MASKED_ERROR = 1e3           # error given to gap-filled pixels: the chi^2 fit ignores them

    def input_error(self, error, covered):
        return np.where(covered, error, self.MASKED_ERROR)

    def label_fit(self, view) -> tuple[np.ndarray, np.ndarray]:
        """Best-fit labels (n, 3) and their formal 1-sigma (n, 3): the square root of the diagonal of
        the inverse Fisher matrix J^T W J at the best fit, W = 1 / (error^2 + scatter^2)."""
        labels, _ = self.infer_labels(view)
        e = view.x[:, 1].astype(np.float64)
        w = 1.0 / (np.clip(e, 1e-6, None) ** 2 + self.s2_)
        ls = (labels - self.lmean_) / self.lstd_
        J = np.einsum("nki,kp->npi", design_jac(ls), self.theta_, optimize=True)     # (n, P, 3)
        F = np.einsum("npi,np,npj->nij", J, w, J, optimize=True) + 1e-12 * np.eye(3)
        sig = np.sqrt(np.clip(np.diagonal(np.linalg.inv(F), axis1=1, axis2=2), 0, None)) * self.lstd_
        return labels, sig

    def spectrum_saliency(self, view) -> dict:
        """log g information per pixel at the fitted labels, (d flux / d log g)^2 / (error^2 + scatter^2)."""
        x = view.x[:1]
        lab, _ = self.infer_labels(type(view)(x, view.y[:1], view.index[:1], view.channels, view.wave))
        ls = (lab - self.lmean_) / self.lstd_
        dg = design_jac(ls)[0][:, 1] @ self.theta_ / self.lstd_[1]
        w = 1.0 / (np.clip(x[0, 1].astype(np.float64), 1e-6, None) ** 2 + self.s2_)
        return {"values": dg ** 2 * w, "kind": "log g information per pixel, (d flux / d log g)² / σ²"}

    def _save(self, folder):
        save_arrays(folder, theta=self.theta_, s2=self.s2_, lmean=self.lmean_, lstd=self.lstd_,
                    target=np.array(self.target_), lo=self.lo_, hi=self.hi_)

    def _load(self, folder):
        a = load_arrays(folder)
        self.theta_, self.s2_, self.lmean_, self.lstd_ = a["theta"], a["s2"], a["lmean"], a["lstd"]
        self.target_ = int(a["target"])
        self.lo_, self.hi_ = a["lo"], a["hi"]


MODELS = {"cannon": CannonModel}
