"""How well each predictor does on held-out stars of an upload's S/N: RMSE, bias, the half-width of
the central 68 % of residuals and the number of stars in each S/N quartile.

Predict chooses on the *validation* split: the predictors ranked and weighted by their validation
RMSE in the upload's S/N bin. The error bar is calibrated on stars the choice has not seen: the data
set's calibration set (core/data/calibration.py: new stars from the same recipe; split-conformal, the
68th percentile of the chosen combination's normalised errors in the upload's S/N bin), or, for a grid
the simulator did not make, the validation split (optimistic there: the choice and early stopping used
it). The test split stays untouched by the choice: its numbers are shown beside, and the coverage
benchmark checks the intervals on it (benchmarks/bench_predict.py). Validation and calibration
predictions are made once per run and kept in the run folder (val_predictions.npz,
cal_predictions.npz; on a read-only folder, in memory)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data import LABELS, SPLITS, Dataset, calibration
from core.data.cache import atomic_savez
from core.predict.inventory import Entry, _cached, load

N_BINS = 4   # S/N quartiles of the validation split
MIN_CAL = 200       # calibration stars below which the validation split calibrates instead
MIN_CAL_BIN = 50    # calibration stars in the S/N bin below which its scale comes from every bin


@dataclass
class Skill:
    edges: np.ndarray     # (N_BINS + 1,) S/N bin edges: quartiles of the validation stars (outer ones open-ended)
    rmse: np.ndarray      # (N_BINS,) RMSE of log g in each bin
    bias: np.ndarray      # (N_BINS,) mean (predicted - true)
    n: np.ndarray         # (N_BINS,) stars in each bin
    half68: np.ndarray    # (N_BINS,) 68th percentile of |predicted - true|: the half-width of a 68 % interval
    split: str = "val"

    def bin_of(self, snr) -> np.ndarray:
        """The bin index of each S/N (below the first edge: bin 0; above the last: the last bin)."""
        s = np.nan_to_num(np.asarray(snr, np.float64), nan=0.0)      # an unknown S/N: the lowest bin (cautious)
        return np.clip(np.searchsorted(self.edges[1:-1], s, side="right"), 0, N_BINS - 1)


def _mtime(entry: Entry) -> int:
    """A run refitted under the same id (train --force) has new predictions: the caches key on this."""
    p = entry.artifact / "predictions.npz"
    return p.stat().st_mtime_ns if p.exists() else 0


def calibration_set(ds: Dataset) -> Dataset | None:
    """The data set's calibration set (built on first use), or None (core/data/calibration.py)."""
    return _cached(("calibration-set", str(ds.path), ds.fingerprint), lambda: calibration.ensure(ds))


def split_snr(ds: Dataset, noise_level: float, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(rows of a split, their median S/N per pixel at this noise level): the same measure prepare()
    takes of an upload (median flux / error over the model pixels). Split "cal": every star of the
    calibration set, by row (empty without one)."""
    def make():
        if split != "cal":
            return ds.split_snr(split, float(noise_level))
        cal = calibration_set(ds)
        if cal is None:
            return np.zeros(0, np.int64), np.zeros(0)
        rows, snr1 = calibration.star_snr(cal)
        return rows, snr1 / (float(noise_level) if noise_level > 0 else 1.0)
    return _cached((f"{split}-snr", str(ds.path), ds.fingerprint, float(noise_level)), make)


def test_snr(ds: Dataset, noise_level: float) -> tuple[np.ndarray, np.ndarray]:
    return split_snr(ds, noise_level, "test")


def predictions(entry: Entry, ds: Dataset, split: str = "val") -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(rows, true log g, predicted log g) of a run on a held-out split. Test: the fit's own
    predictions.npz. Validation: predicted once with the fitted model on the run's validation view
    (the inputs, noise level and seed it was fitted with) and kept beside them. "cal": the same on every
    star of the data set's calibration set (None without one)."""
    def make():
        if split == "cal":
            return _cal_predictions(entry, ds)
        if split == "test":
            path = entry.artifact / "predictions.npz"
            if not path.exists():
                return None
            with np.load(path, allow_pickle=False) as z:
                return z["index"], z["y_true"], z["y_pred"]
        path = entry.artifact / "val_predictions.npz"
        if path.exists() and path.stat().st_mtime_ns >= _mtime(entry):
            got = _read_npz(path)
            if got is not None:
                return got
        spec = entry.spec
        view = ds.view("val", float(spec["noise_level"]), spec["inputs"], seed=int(spec["seed"]))
        out = load(entry).predict(view)
        pred = np.asarray(out[0] if isinstance(out, tuple) else out, np.float64).reshape(-1)
        true = view.y[:, LABELS.index(entry.target)].astype(np.float64)
        got = (np.asarray(view.index), true, pred)
        atomic_savez(path, index=got[0], y_true=got[1], y_pred=got[2])
        return got
    return _cached((f"{split}-pred", entry.run_id, str(entry.artifact), _mtime(entry), ds.fingerprint), make)


def _read_npz(path, fingerprint: str | None = None):
    """(index, y_true, y_pred) kept beside a run, or None when the file is unreadable (a damaged disk, a copy
    cut short) or was made for another calibration set: then the caller predicts again and rewrites it."""
    import zipfile
    try:
        with np.load(path, allow_pickle=False) as z:
            if fingerprint is not None and str(z["fingerprint"]) != fingerprint:
                return None
            return z["index"], z["y_true"], z["y_pred"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _cal_predictions(entry: Entry, ds: Dataset):
    cal = calibration_set(ds)
    if cal is None:
        return None
    path = entry.artifact / "cal_predictions.npz"
    if path.exists() and path.stat().st_mtime_ns >= _mtime(entry):
        got = _read_npz(path, cal.fingerprint)
        if got is not None:
            return got
    spec, model = entry.spec, load(entry)
    idx, true, pred = [], [], []
    for k in SPLITS:
        view = cal.view(k, float(spec["noise_level"]), spec["inputs"], seed=int(spec["seed"]))
        out = model.predict(view)
        pred.append(np.asarray(out[0] if isinstance(out, tuple) else out, np.float64).reshape(-1))
        true.append(view.y[:, LABELS.index(entry.target)].astype(np.float64))
        idx.append(np.asarray(view.index))
    got = tuple(np.concatenate(a) for a in (idx, true, pred))
    atomic_savez(path, index=got[0], y_true=got[1], y_pred=got[2], fingerprint=np.array(cal.fingerprint))
    return got


def _binned(res: np.ndarray, b: np.ndarray):
    n = np.bincount(b, minlength=N_BINS)
    rmse = np.sqrt(np.bincount(b, res ** 2, N_BINS) / np.maximum(n, 1))
    bias = np.bincount(b, res, N_BINS) / np.maximum(n, 1)
    half = np.array([np.quantile(np.abs(res[b == i]), 0.6827) if n[i] else np.nan for i in range(N_BINS)])
    rmse[n == 0], bias[n == 0] = np.nan, np.nan
    return rmse, bias, n, half


def edges_of(ds: Dataset, noise_level: float) -> np.ndarray:
    """S/N quartile edges of the validation stars at this noise level (the bins every split is scored in)."""
    return np.quantile(split_snr(ds, noise_level, "val")[1], np.linspace(0, 1, N_BINS + 1))


def skill(entry: Entry, ds: Dataset, split: str = "val") -> Skill | None:
    """The entry's log g RMSE, bias and 68 % half-width per S/N quartile of a held-out split (validation:
    what Predict chooses on; test: shown beside), or None without predictions."""
    def make():
        got = predictions(entry, ds, split)
        if got is None:
            return None
        idx, y, p = got
        rows, snr = split_snr(ds, entry.noise_level, split)
        pos = np.searchsorted(rows, idx)
        ok = (pos < rows.size) & (rows[np.minimum(pos, rows.size - 1)] == idx)
        if not ok.any():
            return None
        s, r = snr[pos[ok]], (p - y)[ok]
        edges = edges_of(ds, entry.noise_level)
        b = np.clip(np.searchsorted(edges[1:-1], s, side="right"), 0, N_BINS - 1)
        return Skill(edges, *_binned(r, b), split=split)
    key = ("skill", split, entry.run_id, str(entry.artifact), _mtime(entry), ds.fingerprint)
    return _cached(key, make)


TOP_K = 3    # predictors averaged into the recommended value


@dataclass
class Ensemble:
    """The recommended combination for one S/N bin: the TOP_K predictors with the lowest validation RMSE
    in that bin, weighted by 1 / RMSE^2; the validation RMSE and bias of that weighted mean in the bin;
    and its 68 % interval as a function of S/N (`half_width`): the error model's shape fitted to the
    calibration stars' errors, its scale set on those of this S/N bin (`calibrated_on`: "calibration",
    new simulated stars; or "validation", every validation star, for a grid without a calibration set)."""
    members: list            # Entry
    weights: np.ndarray
    rmse: float
    bias: float
    n: int
    snr_range: tuple[float, float]
    scale: tuple[float, float] = (float("nan"), float("nan"))   # (a, b): typical error sqrt(a + b / snr^2)
    k68: float = float("nan")      # the 68th percentile of |error| / typical error over the validation stars
    at_snr: float = float("nan")   # the spectrum's S/N (set per call; the rest is cached per bin)
    test_rmse: float = float("nan")
    test_coverage: float = float("nan")   # fraction of the bin's test stars inside their 68 % interval
    calibrated_on: str = "validation"
    n_calibration: int = 0                # stars that set k68

    def half_width(self, snr) -> np.ndarray:
        """Half-width of the 68 % interval at this S/N: k68 * sqrt(a + b / snr^2) (a normalised split-conformal
        interval: the error model's shape fitted to the validation errors, its scale set so that 68 % of
        them fall inside)."""
        s = np.maximum(np.asarray(snr, np.float64), 1e-3)
        return self.k68 * np.sqrt(self.scale[0] + self.scale[1] / s ** 2)

    @property
    def half68(self) -> float:
        return float(self.half_width(self.at_snr))


def _aligned(index: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """values (given per row `index`) at the rows `wanted` (all of which are in index)."""
    order = np.argsort(index)
    return values[order][np.searchsorted(index[order], wanted)]


def _combined(top, w, ds: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(errors of the weighted mean of `top`, S/N) on every star of a split that all of them predicted."""
    preds = [predictions(e, ds, split) for e, _ in top]
    if any(p is None for p in preds):
        return np.zeros(0), np.zeros(0)
    common = preds[0][0]
    for idx, _, _ in preds[1:]:
        common = np.intersect1d(common, idx)
    p = sum(wi * _aligned(idx, yp, common) for wi, (idx, _, yp) in zip(w, preds))
    y = _aligned(preds[0][0], preds[0][1], common)
    rows, snr_all = split_snr(ds, top[0][0].noise_level, split)
    return p - y, snr_all[np.searchsorted(rows, common)]


def error_model(res: np.ndarray, snr: np.ndarray) -> tuple[tuple[float, float], float]:
    """((a, b), k68): the typical error sqrt(a + b / snr^2) (a systematic floor and a noise term, a, b >= 0,
    least squares on the squared errors) and the 68th percentile of |error| / typical error."""
    from scipy.optimize import nnls
    s = np.maximum(snr, 1e-3)
    coef, _ = nnls(np.c_[np.ones_like(s), 1.0 / s ** 2], res ** 2)
    a, b = (float(coef[0]), float(coef[1])) if coef.sum() > 0 else (float(np.mean(res ** 2)) or 1e-6, 0.0)
    typical = np.sqrt(a + b / s ** 2)
    return (a, b), float(np.quantile(np.abs(res) / np.maximum(typical, 1e-12), 0.6827))


def ensemble(entries: list[Entry], ds: Dataset, snr: float) -> Ensemble | None:
    """The ensemble for a spectrum of this S/N from these predictors (all at one noise level, log g)."""
    import dataclasses
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
        (rv, sv), (rt, st) = _combined(top, w, ds, "val"), _combined(top, w, ds, "test")
        bin_of = top[0][1].bin_of
        edges = top[0][1].edges
        nan = float("nan")
        rc, sc = _combined(top, w, ds, "cal")
        if rc.size >= MIN_CAL:
            scale, k = error_model(rc, sc)
            here = bin_of(sc) == b
            if here.sum() >= MIN_CAL_BIN:        # split-conformal in the bin (Mondrian): its own scale
                typical = np.sqrt(scale[0] + scale[1] / np.maximum(sc[here], 1e-3) ** 2)
                k = float(np.quantile(np.abs(rc[here]) / np.maximum(typical, 1e-12), 0.6827))
            on, n_on = "calibration", int(here.sum() if here.sum() >= MIN_CAL_BIN else rc.size)
        else:
            scale, k = error_model(rv, sv) if rv.size >= 10 else ((nan, nan), nan)
            on, n_on = "validation", int(rv.size)
        ens = Ensemble([e for e, _ in top], w, nan, nan, 0, (float(edges[b]), float(edges[b + 1])), scale, k,
                       calibrated_on=on, n_calibration=n_on)
        r, t, tsnr = rv[bin_of(sv) == b], rt[bin_of(st) == b], st[bin_of(st) == b]
        ens.rmse = float(np.sqrt(np.mean(r ** 2))) if r.size else nan
        ens.bias = float(np.mean(r)) if r.size else nan
        ens.n = int(r.size)
        ens.test_rmse = float(np.sqrt(np.mean(t ** 2))) if t.size else nan
        ens.test_coverage = float(np.mean(np.abs(t) <= ens.half_width(tsnr))) if t.size else nan
        return ens
    return dataclasses.replace(_cached(key, make), at_snr=float(snr))


def members_by_bin(entries: list[Entry], ds: Dataset) -> tuple[Skill, dict[int, set[str]]] | None:
    """(the S/N bins, {bin: run ids of that bin's ensemble}) for these predictors: what a spectrum of each S/N
    bin needs run for its recommended value. None when no predictor can be ranked (no validation
    predictions)."""
    sk = next((s for s in (skill(e, ds) for e in entries) if s is not None), None)
    if sk is None:
        return None
    inner = np.asarray(sk.edges[1:-1], np.float64)
    reps = [inner[0] / 2] + [float(np.sqrt(inner[i] * inner[i + 1])) for i in range(inner.size - 1)] + [inner[-1] * 2]
    out: dict[int, set[str]] = {}
    for snr in reps:
        ens = ensemble(entries, ds, float(snr))
        if ens is not None:
            out.setdefault(int(sk.bin_of(snr)), set()).update(e.run_id for e in ens.members)
    return sk, out


def members_at_any_snr(entries: list[Entry], ds: Dataset) -> set[str] | None:
    """Run ids of the predictors that enter the recommendation in some S/N bin (the union of every bin's
    ensemble): what a batch has to run for its recommended values. None when no predictor can be ranked
    (no validation predictions): then every one runs."""
    got = members_by_bin(entries, ds)
    return None if got is None else set().union(*got[1].values())
