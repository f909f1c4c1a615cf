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
        s = np.nan_to_num(np.asarray(snr, np.float64), nan=0.0)      # an unknown S/N: the lowest bin (cautious)
        return np.clip(np.searchsorted(self.edges[1:-1], s, side="right"), 0, N_BINS - 1)


def _mtime(entry: Entry) -> int:
    """A run refitted under the same id (train --force) has new predictions: the caches key on this."""
    p = entry.artifact / "predictions.npz"
    return p.stat().st_mtime_ns if p.exists() else 0


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
    key = ("skill", entry.run_id, str(entry.artifact), _mtime(entry), ds.fingerprint)
    return _cached(key, make)


TOP_K = 3    # predictors averaged into the recommended value


@dataclass
class Ensemble:
    """The recommended combination for one S/N bin: the TOP_K predictors with the lowest test RMSE in
    that bin, weighted by 1 / RMSE^2, and the test RMSE and bias of that weighted mean in the bin."""
    members: list            # Entry
    weights: np.ndarray
    rmse: float
    bias: float
    n: int
    snr_range: tuple[float, float]


def _test_predictions(entry: Entry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def make():
        with np.load(entry.artifact / "predictions.npz", allow_pickle=False) as z:
            return z["index"], z["y_true"], z["y_pred"]
    return _cached(("test-pred", entry.run_id, str(entry.artifact), _mtime(entry)), make)


def _aligned(index: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """values (given per test row `index`) at the rows `wanted` (all of which are in index)."""
    order = np.argsort(index)
    return values[order][np.searchsorted(index[order], wanted)]


def ensemble(entries: list[Entry], ds: Dataset, snr: float) -> Ensemble | None:
    """The ensemble for a spectrum of this S/N from these predictors (all at one noise level, log g)."""
    scored = [(e, skill(e, ds)) for e in entries]
    scored = [(e, s) for e, s in scored if s is not None]
    if not scored:
        return None
    b = int(scored[0][1].bin_of(snr))
    scored = [(e, s) for e, s in scored if np.isfinite(s.rmse[b])]
    if not scored:
        return None
    scored.sort(key=lambda es: es[1].rmse[b])
    top = scored[:TOP_K]
    key = ("ensemble", tuple((e.run_id, _mtime(e)) for e, _ in top), b, ds.fingerprint)

    def make():
        w = np.array([1.0 / max(s.rmse[b], 1e-6) ** 2 for _, s in top])
        w /= w.sum()
        preds = [_test_predictions(e) for e, _ in top]
        common = preds[0][0]
        for idx, _, _ in preds[1:]:
            common = np.intersect1d(common, idx)
        p = sum(wi * _aligned(idx, yp, common) for wi, (idx, _, yp) in zip(w, preds))
        y = _aligned(preds[0][0], preds[0][1], common)
        rows, snr_all = test_snr(ds, top[0][0].noise_level)
        sel = top[0][1].bin_of(snr_all[np.searchsorted(rows, common)]) == b
        r = (p - y)[sel]
        edges = top[0][1].edges
        nan = float("nan")
        return Ensemble([e for e, _ in top], w, float(np.sqrt(np.mean(r ** 2))) if r.size else nan,
                        float(np.mean(r)) if r.size else nan, int(r.size), (float(edges[b]), float(edges[b + 1])))
    return _cached(key, make)
