"""How well each predictor did on test stars of an upload's S/N: RMSE, bias and number of stars in
each S/N quartile of the data set's test split, from the run's stored test predictions
(predictions.npz). Predict picks the recommended model by its RMSE in the upload's S/N bin, and that
RMSE is the floor of the error bar it quotes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data import Dataset
from core.predict.inventory import Entry, _cached

N_BINS = 4   # S/N quartiles of the test split


@dataclass
class Skill:
    edges: np.ndarray     # (N_BINS + 1,) S/N bin edges (the outer ones open-ended in use)
    rmse: np.ndarray      # (N_BINS,) RMSE of log g in each bin
    bias: np.ndarray      # (N_BINS,) mean (predicted - true)
    n: np.ndarray         # (N_BINS,) test stars in each bin

    def bin_of(self, snr) -> np.ndarray:
        """The bin index of each S/N (below the first edge: bin 0; above the last: the last bin)."""
        return np.clip(np.searchsorted(self.edges[1:-1], np.asarray(snr, np.float64), side="right"), 0, N_BINS - 1)


def test_snr(ds: Dataset, noise_level: float) -> tuple[np.ndarray, np.ndarray]:
    """(test rows, their median S/N per pixel at this noise level): the same measure prepare() takes
    of an upload (median flux / error over the model pixels)."""
    def make():
        rows = ds.split_rows("test")
        fl, er = ds.read(rows)
        return rows, np.median(fl / (noise_level * er), axis=1).astype(np.float64)
    return _cached(("test-snr", str(ds.path), ds.fingerprint, float(noise_level)), make)


def skill(entry: Entry, ds: Dataset) -> Skill | None:
    """The entry's log g RMSE and bias per S/N quartile of the test split, or None without predictions."""
    def make():
        path = entry.artifact / "predictions.npz"
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as z:
            idx, y, p = z["index"], z["y_true"], z["y_pred"]
        rows, snr = test_snr(ds, entry.noise_level)
        pos = np.searchsorted(rows, idx)
        ok = (pos < rows.size) & (rows[np.minimum(pos, rows.size - 1)] == idx)
        if not ok.any():
            return None
        s, r = snr[pos[ok]], (p - y)[ok]
        edges = np.quantile(snr, np.linspace(0, 1, N_BINS + 1))
        b = np.clip(np.searchsorted(edges[1:-1], s, side="right"), 0, N_BINS - 1)
        n = np.bincount(b, minlength=N_BINS)
        rmse = np.sqrt(np.bincount(b, r ** 2, N_BINS) / np.maximum(n, 1))
        bias = np.bincount(b, r, N_BINS) / np.maximum(n, 1)
        rmse[n == 0], bias[n == 0] = np.nan, np.nan
        return Skill(edges, rmse, bias, n)
    key = ("skill", entry.run_id, str(entry.artifact), ds.fingerprint)
    return _cached(key, make)
