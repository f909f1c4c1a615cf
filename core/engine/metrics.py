"""Regression metrics on the test split: R^2 (headline), MAE, RMSE, bias, residuals per log g bin."""
from __future__ import annotations

import numpy as np

LOGG_BINS = (1.0, 2.0, 3.0, 4.0, 5.0)


def r2_score(y: np.ndarray, p: np.ndarray) -> float:
    ss_res = float(np.sum((y - p) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def regression_metrics(y: np.ndarray, p: np.ndarray, bins=LOGG_BINS) -> dict:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    r = p - y
    out = {
        "r2": r2_score(y, p),
        "mae": float(np.mean(np.abs(r))),
        "rmse": float(np.sqrt(np.mean(r ** 2))),
        "bias": float(np.mean(r)),
        "bins": [],
    }
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (y >= lo) & ((y < hi) if hi < bins[-1] else (y <= hi))
        if sel.any():
            out["bins"].append({"lo": lo, "hi": hi, "n": int(sel.sum()), "bias": float(r[sel].mean()),
                                "rmse": float(np.sqrt(np.mean(r[sel] ** 2)))})
    return out


def bootstrap_se_r2_gap(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, n_boot: int = 200, seed: int = 0) -> float:
    """Bootstrap standard error of R^2(a) - R^2(b) for two sets of predictions of the same targets
    (resampling the spectra, so the pairing of the two predictions is kept)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        ss = np.sum((y[i] - y[i].mean()) ** 2)
        out.append((np.sum((y[i] - p_b[i]) ** 2) - np.sum((y[i] - p_a[i]) ** 2)) / ss)
    return float(np.std(out))
