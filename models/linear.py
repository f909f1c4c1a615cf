"""Linear baselines: Ridge on all pixels (alpha chosen on the validation split) and the
metadata baseline (Teff + [M/H] -> log g) with Ridge.

Ridge is solved in closed form from the eigen-decomposition of the smaller Gram matrix,
so every alpha of the grid costs one matrix product: cheap enough to pick alpha on the
validation split for 4096 pixels and tens of thousands of spectra. With more spectra than
pixels the Gram matrix X^T X is accumulated over blocks of standardised rows (#19), so the fit
holds p x p float64 values, not a float64 copy of the training set (3.3 GB at 10^5 spectra), and
on a GPU it is formed and decomposed there (torch.linalg.eigh, float64).
"""
from __future__ import annotations

import numpy as np

from models.base import Model, flat, load_arrays, save_arrays

ALPHAS = tuple(10.0 ** np.arange(-3, 5.5, 0.5))


def ridge_path(X: np.ndarray, y: np.ndarray, alphas) -> list[np.ndarray]:
    """Ridge coefficients of standardised X (n, p), centred y, for each alpha."""
    n, p = X.shape
    X64 = X.astype(np.float64)
    if n <= p:  # dual: w = X^T (X X^T + a I)^-1 y
        evals, evecs = np.linalg.eigh(X64 @ X64.T)
        uy = evecs.T @ y
        return [X64.T @ (evecs @ (uy / (np.clip(evals, 0, None) + a))) for a in alphas]
    evals, evecs = np.linalg.eigh(X64.T @ X64)
    vy = evecs.T @ (X64.T @ y)
    return [evecs @ (vy / (np.clip(evals, 0, None) + a)) for a in alphas]


GRAM_ROWS = 4096   # standardised rows per block of the accumulated Gram matrix


def standardised_gram(X: np.ndarray, mean: np.ndarray, std: np.ndarray, y: np.ndarray, device: str = "cpu",
                      rows: int = GRAM_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """(Xs^T Xs, Xs^T y) in float64 for Xs = (X - mean) / std (standardised in X's dtype, as predict() does,
    then summed in float64), accumulated over blocks of rows; on CUDA when device says so (the result comes
    back to the host)."""
    n, p = X.shape
    if str(device).startswith("cuda"):
        import torch
        dev = torch.device(device)
        m, s = (torch.as_tensor(v, device=dev) for v in (mean, std))
        G = torch.zeros((p, p), dtype=torch.float64, device=dev)
        b = torch.zeros(p, dtype=torch.float64, device=dev)
        for i in range(0, n, rows):
            c = ((torch.as_tensor(X[i:i + rows], device=dev) - m) / s).double()
            G += c.T @ c
            b += c.T @ torch.as_tensor(y[i:i + rows], dtype=torch.float64, device=dev)
        return G.cpu().numpy(), b.cpu().numpy()
    G = np.zeros((p, p))
    b = np.zeros(p)
    for i in range(0, n, rows):
        c = ((X[i:i + rows] - mean) / std).astype(np.float64)
        G += c.T @ c
        b += c.T @ y[i:i + rows]
    return G, b


def ridge_path_gram(G: np.ndarray, b: np.ndarray, alphas, device: str = "cpu") -> list[np.ndarray]:
    """Ridge coefficients from the Gram matrix G = X^T X and b = X^T y, for each alpha (primal form); the
    eigen-decomposition on CUDA (torch.linalg.eigh, float64) when device says so."""
    if str(device).startswith("cuda"):
        import torch
        e, v = torch.linalg.eigh(torch.as_tensor(G, dtype=torch.float64, device=device))
        evals, evecs = e.cpu().numpy(), v.cpu().numpy()
    else:
        evals, evecs = np.linalg.eigh(G)
    vy = evecs.T @ b
    return [evecs @ (vy / (np.clip(evals, 0, None) + a)) for a in alphas]


class RidgeModel(Model):
    """Ridge regression on every input pixel (standardised with train statistics)."""
    seed_dependent = False   # no randomness in the fit: replicates would repeat it
    inputs = "flux"
    family = "linear"

    def __init__(self, alphas=ALPHAS):
        super().__init__(alphas=[float(a) for a in alphas])
        self.alphas = [float(a) for a in alphas]

    def _prep(self, view):
        return (flat(view) - self.mean_) / self.std_

    def fit(self, train, val, ctx):
        X = flat(train)
        self.n_channels_ = train.x.shape[1] if train.x.ndim == 3 else 1
        self.mean_ = X.mean(0)
        self.std_ = X.std(0) + 1e-8
        y = train.y[:, ctx.target].astype(np.float64)
        self.y0_ = y.mean()
        if X.shape[0] > X.shape[1]:    # primal: the p x p Gram matrix, accumulated block by block
            dev = getattr(ctx, "device", "cpu")
            path = ridge_path_gram(*standardised_gram(X, self.mean_, self.std_, y - self.y0_, dev), self.alphas, dev)
        else:                          # dual: the n x n Gram matrix of the (fewer) spectra
            path = ridge_path((X - self.mean_) / self.std_, y - self.y0_, self.alphas)
        Xv = self._prep(val)
        yv = val.y[:, ctx.target]
        best = None
        self.val_curve_ = []
        for a, w in zip(self.alphas, path):
            mse = float(np.mean((Xv @ w + self.y0_ - yv) ** 2))
            self.val_curve_.append((a, mse))
            if best is None or mse < best[0]:
                best = (mse, a, w)
        _, self.alpha_, self.coef_ = best
        ctx.log(f"ridge: alpha={self.alpha_:g} chosen on validation (val MSE {best[0]:.4f})")
        return self

    def predict(self, view):
        return self._prep(view) @ self.coef_ + self.y0_

    @property
    def n_params(self):
        return int(self.coef_.size + 1)

    def pixel_importance(self):
        """|coefficient| per input pixel in standardised units (summed over channels)."""
        return np.abs(self.coef_).reshape(self.n_channels_, -1).sum(0)

    def spectrum_saliency(self, view) -> dict:
        """|coefficient x (input - training mean)|: the exact additive split of this prediction."""
        x = view.x[:1]
        c = self.coef_ / self.std_ * (x.reshape(1, -1)[0] - self.mean_)
        return {"values": np.abs(c.reshape(-1, x.shape[-1])).sum(0), "kind": "|coefficient × (flux − training mean)|"}

    def _save(self, folder):
        save_arrays(folder, mean=self.mean_, std=self.std_, coef=self.coef_,
                    y0=np.array(self.y0_), alpha=np.array(self.alpha_), n_channels=np.array(self.n_channels_))

    def _load(self, folder):
        a = load_arrays(folder)
        self.mean_, self.std_, self.coef_ = a["mean"], a["std"], a["coef"]
        self.y0_, self.alpha_ = float(a["y0"]), float(a["alpha"])
        self.n_channels_ = int(a["n_channels"])


class MetadataRidge(RidgeModel):
    """Metadata baseline: Teff and [M/H] alone (no spectrum) -> log g, with Ridge."""
    inputs = "meta"



MODELS = {"ridge": RidgeModel, "metadata_ridge": MetadataRidge}
