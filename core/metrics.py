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
