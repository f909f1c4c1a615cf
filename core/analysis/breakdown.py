"""Where a model fails and whether its error bars hold (#16 parts 3 and 4), from the stored test
predictions of each run (predictions.npz: index, y_true, y_pred, labels, optional y_std); nothing
here fits a model or changes what a fit writes.

Bins of the test stars, the same for every method of a data set and noise level so rows compare:

* S/N quartiles: a star's S/N is the median over pixels of clean flux / (noise level x 1-sigma error),
  Dataset.split_snr, which the Predict page's bins use too (tests/test_breakdown.py checks they agree). The
  edges are the quartiles of every test star of the data set at that noise level (Q1 lowest S/N).
* log g bins 1-2, 2-3, 3-4, 4-5 dex (core.engine.metrics.LOGG_BINS, the same edges as
  core/analysis/saliency.LOGG_BIN_EDGES), by the star's true log g, the last bin closed.

In each bin (and over all test stars, bin "all"): RMSE, bias (mean predicted - true), R^2 and the
slope of predicted on true log g (least squares; 1 is unbiased, below 1 the predictions shrink to
the mean). R^2 in a bin is 1 - MSE(bin) / var(true log g of every test star): the R^2 the test set
would have with this bin's errors everywhere. (Against the spread inside a 1-dex log g bin it would
be negative for every model but the ceiling; "all" is the usual R^2, the registry's.) With training
replicates (spec key "replicate") every number is the mean over seeds with its sd (ddof 1) and N,
as report.matrix gives R^2. The learned / ceiling ratio is RMSE(model) / RMSE(likelihood ceiling)
in the same bin on the same test stars (per replicate, then averaged).

Coverage: the fraction of test stars with |y_pred - y_true| <= 1 sigma (nominal 68.27 %) and
<= 1.96 sigma (95 %), for every run whose predictions carry y_std, and for each torch family with
two or more replicates, the ensemble over its replicates: mean of the replicate predictions,
sigma^2 = their variance across replicates (ddof 1) + the mean of the replicates' own y_std^2 when
they have one. A coverage is "far from nominal" when it differs from nominal by more than
FAR_SE binomial standard errors of that bin.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd

from core.analysis import report
from core.engine import suites
from core.engine.metrics import LOGG_BINS, r2_score

N_QUARTILES = 4                              # S/N quartiles, as core/predict/skill.N_BINS
LOGG_EDGES = LOGG_BINS                       # 1-2, 2-3, 3-4, 4-5 dex
INTERVALS = {"68": (1.0, 0.6827), "95": (1.96, 0.95)}   # name: (half-width in sigma, nominal coverage)
FAR_SE = 3.0                                 # coverage further than this many binomial SE from nominal is "far"
METRICS = ("rmse", "bias", "r2", "slope")
BY = {"snr": "S/N quartile", "logg": "log g bin"}
LOGG_COL = 1                                 # column of log g in predictions.npz "labels" (core.data.LABELS)


# --------------------------------------------------------------------------- pure functions on arrays
def slope(y: np.ndarray, p: np.ndarray) -> float:
    """Least-squares slope of predicted on true (NaN with fewer than 2 stars or no spread in y)."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    if y.size < 2:
        return float("nan")
    vy = float(np.sum((y - y.mean()) ** 2))
    return float(np.sum((y - y.mean()) * (p - p.mean())) / vy) if vy > 0 else float("nan")


def cell(y: np.ndarray, p: np.ndarray, var_ref: float | None = None) -> dict:
    """n, RMSE, bias, R^2 and slope of predictions p of targets y (NaN where empty). R^2 is
    1 - MSE / var_ref with var_ref the variance of the true values of every test star (by_bin passes
    it); without var_ref, the usual R^2 of these stars."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    if y.size == 0:
        return {"n": 0, **{m: float("nan") for m in METRICS}}
    r = p - y
    mse = float(np.mean(r ** 2))
    if var_ref is None:
        r2 = r2_score(y, p) if y.size > 1 else float("nan")
    else:
        r2 = 1.0 - mse / var_ref if var_ref > 0 else float("nan")
    return {"n": int(y.size), "rmse": math.sqrt(mse), "bias": float(np.mean(r)), "r2": r2, "slope": slope(y, p)}


def snr_edges(snr: np.ndarray, n: int = N_QUARTILES) -> np.ndarray:
    """The n + 1 quantile edges of these S/N values (as core/predict/skill.skill takes them)."""
    return np.quantile(np.asarray(snr, np.float64), np.linspace(0, 1, n + 1))


def snr_bins(snr: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each S/N; below the first edge bin 0, above the last the last bin (skill.Skill.bin_of)."""
    s = np.nan_to_num(np.asarray(snr, np.float64), nan=0.0)
    return np.clip(np.searchsorted(edges[1:-1], s, side="right"), 0, len(edges) - 2)


def value_bins(v: np.ndarray, edges=LOGG_EDGES) -> np.ndarray:
    """Bin index of each value for closed-open bins, the last one closed (core.engine.metrics); -1 outside."""
    v = np.asarray(v, np.float64)
    b = np.searchsorted(np.asarray(edges, np.float64), v, side="right") - 1
    b[v == edges[-1]] = len(edges) - 2
    b[(v < edges[0]) | (v > edges[-1]) | ~np.isfinite(v)] = -1
    return b


def by_bin(y: np.ndarray, p: np.ndarray, bins: np.ndarray, n_bins: int) -> list[dict]:
    """cell() in each of n_bins bins (bin index per star; -1: in no bin), then over all stars. R^2 in a
    bin is against the variance of y over all the stars given, so bins compare and "all" is the usual R^2."""
    y, p, bins = np.asarray(y, np.float64), np.asarray(p, np.float64), np.asarray(bins)
    v = float(np.var(y)) if y.size > 1 else 0.0
    return [cell(y[bins == b], p[bins == b], v) for b in range(n_bins)] + [cell(y, p, v)]


def coverage(y: np.ndarray, p: np.ndarray, sigma: np.ndarray, k: float) -> float:
    """Fraction of stars with |p - y| <= k sigma (NaN for none)."""
    y, p, s = (np.asarray(a, np.float64) for a in (y, p, sigma))
    return float(np.mean(np.abs(p - y) <= k * s)) if y.size else float("nan")


def binomial_se(nominal: float, n: int) -> float:
    return math.sqrt(nominal * (1 - nominal) / n) if n > 0 else float("nan")


def far_from_nominal(cov: float, nominal: float, n: int, k: float = FAR_SE) -> bool:
    return bool(n > 0 and np.isfinite(cov) and abs(cov - nominal) > k * binomial_se(nominal, n))


def coverage_by_bin(y, p, sigma, bins, n_bins: int) -> list[dict]:
    """Per bin and over all stars: n, the coverage of the 68 % and 95 % intervals, the median sigma."""
    y, p, sigma, bins = (np.asarray(a) for a in (y, p, sigma, bins))
    out = []
    for sel in [bins == b for b in range(n_bins)] + [np.ones(y.size, bool)]:
        row = {"n": int(sel.sum()), "sigma": float(np.median(sigma[sel])) if sel.any() else float("nan")}
        for name, (k, _) in INTERVALS.items():
            row[f"cov{name}"] = coverage(y[sel], p[sel], sigma[sel], k)
        out.append(row)
    return out


def ensemble(preds: np.ndarray, stds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sigma) of an ensemble of R >= 2 replicate predictions (R, n): sigma^2 is the variance
    across replicates (ddof 1) plus the mean of the replicates' own variances stds^2 when given."""
    preds = np.asarray(preds, np.float64)
    if preds.ndim != 2 or preds.shape[0] < 2:
        raise ValueError("an ensemble needs predictions of shape (R >= 2, n)")
    var = preds.var(axis=0, ddof=1)
    if stds is not None:
        var = var + np.mean(np.asarray(stds, np.float64) ** 2, axis=0)
    return preds.mean(axis=0), np.sqrt(var)


def mean_sd(values) -> tuple[float, float | None, int]:
    """Mean, sample sd (None with one value) and N of the finite values."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if not v.size:
        return float("nan"), None, 0
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None), int(v.size)


# --------------------------------------------------------------------------- the registry
def test_snr(ds, noise_level: float, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(test rows, their S/N at this noise level): Dataset.split_snr, as Predict measures it."""
    return _test_snr(str(ds.path), ds.fingerprint, float(noise_level), chunk)


@lru_cache(maxsize=16)
def _test_snr(path: str, fingerprint: str, noise_level: float, chunk: int):
    from core.data import Dataset
    return Dataset(path).split_snr("test", noise_level, chunk)


def _is_torch(model: str) -> bool:
    from models import MODELS
    from models.trainer import TorchModel
    cls = MODELS.get(model)
    return bool(cls is not None and issubclass(cls, TorchModel))


def load(suite: str = "report", profile: str = "quick", dataset: str | None = None, con=None) -> list[dict]:
    """Every spec of the suite that has finished (the report suite: and the ceiling), with the test
    predictions of each of its replicates: dicts method, model, noise, dataset, preds (predictions.npz each).
    table() and coverage_table() take this list (arms=) so one load serves both."""
    from core.engine import registry
    con = con or registry.connect()
    specs = suites.suite(suite, profile, dataset)
    if suite == "report":
        specs = specs + suites.suite("ceiling", profile, dataset)
    out = []
    for s in specs:
        preds, ids = [], []
        for r in report.replicate_results(s, con):
            try:
                preds.append(r.predictions())
                ids.append(r.run_id)
            except (OSError, ValueError, KeyError):
                continue
        if preds:
            out.append({"method": suites.row_label(s), "model": s["model"], "noise": float(s["noise_level"]),
                        "dataset": s["dataset"], "preds": preds, "run_id": ids[0]})
    return out


def _bins_of(by: str, ds, noise: float, idx: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
    """Bin index of each test star (by its row idx) and the (label, lo, hi) of each bin."""
    if by == "snr":
        rows, snr = test_snr(ds, noise)
        edges = snr_edges(snr)
        pos = np.clip(np.searchsorted(rows, idx), 0, rows.size - 1)
        s = np.where(rows[pos] == idx, snr[pos], np.nan)
        b = snr_bins(s, edges)
        b[~np.isfinite(s)] = -1
        return b, [(f"Q{i + 1}", float(edges[i]), float(edges[i + 1])) for i in range(N_QUARTILES)]
    if by == "logg":
        e = LOGG_EDGES
        return value_bins(labels[:, LOGG_COL]), [(f"{e[i]:g}-{e[i + 1]:g}", float(e[i]), float(e[i + 1]))
                                                 for i in range(len(e) - 1)]
    raise ValueError(f"by must be one of {', '.join(BY)}")


def _common(preds: list[dict], other: dict | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Test rows every prediction set (and other) has, and each set's positions of them."""
    sets = preds + ([other] if other is not None else [])
    common = sets[0]["index"]
    for p in sets[1:]:
        common = np.intersect1d(common, p["index"])
    pos = []
    for p in sets:
        order = np.argsort(p["index"])
        pos.append(order[np.searchsorted(p["index"][order], common)])
    return common, pos


def table(suite: str = "report", profile: str = "quick", dataset: str | None = None, by: str = "snr",
          con=None, arms: list | None = None) -> pd.DataFrame:
    """One row per (method, noise level, bin) and one per (method, noise, "all"): n stars, seeds, and for
    each metric its mean over seeds (`rmse`, ...) and sd (`rmse_sd`, ...); `ratio` (and `ratio_sd`):
    RMSE / the ceiling's RMSE in that bin on the same stars (report suite only), `lo`/`hi` the bin's edges,
    `run_id` the spec's own run (replicate 0)."""
    from core.data import Dataset
    arms = load(suite, profile, dataset, con) if arms is None else arms
    if not arms:
        return pd.DataFrame()
    ds = Dataset(arms[0]["dataset"])
    ceil = {a["noise"]: a["preds"][0] for a in arms if a["model"] == "likelihood_ceiling"}
    rows = []
    for a in arms:
        per_rep, ratios, info = [], [], None
        for p in a["preds"]:
            bins, info = _bins_of(by, ds, a["noise"], p["index"], p["labels"])
            per_rep.append(by_bin(p["y_true"], p["y_pred"], bins, len(info)))
            c = ceil.get(a["noise"])
            if c is not None and a["model"] != "likelihood_ceiling":
                common, (i, j) = _common([p], c)
                b = _bins_of(by, ds, a["noise"], common, p["labels"][i])[0]
                mine = by_bin(p["y_true"][i], p["y_pred"][i], b, len(info))
                theirs = by_bin(c["y_true"][j], c["y_pred"][j], b, len(info))
                ratios.append([m["rmse"] / t["rmse"] if t["rmse"] > 0 else float("nan")
                               for m, t in zip(mine, theirs)])
        for k, (label, lo, hi) in enumerate(info + [("all", float("nan"), float("nan"))]):
            row = {"method": a["method"], "model": a["model"], "noise": a["noise"], "bin": label, "lo": lo, "hi": hi,
                   "n": per_rep[0][k]["n"], "seeds": len(per_rep), "run_id": a.get("run_id")}
            for m in METRICS:
                row[m], row[f"{m}_sd"], _ = mean_sd([r[k][m] for r in per_rep])
            if ratios:
                row["ratio"], row["ratio_sd"], _ = mean_sd([r[k] for r in ratios])
            rows.append(row)
    return pd.DataFrame(rows)


def coverage_table(suite: str = "report", profile: str = "quick", dataset: str | None = None, by: str = "snr",
                   con=None, arms: list | None = None) -> pd.DataFrame:
    """Coverage of every error bar there is: one row per (method, source, noise, bin) with n, the
    replicates behind it, cov68 / cov95 (means over replicates for a run's own y_std), the median sigma,
    the ensemble's RMSE, and far68 / far95 (further than FAR_SE binomial SE from nominal)."""
    from core.data import Dataset
    arms = load(suite, profile, dataset, con) if arms is None else arms
    if not arms:
        return pd.DataFrame()
    ds = Dataset(arms[0]["dataset"])
    rows = []

    def add(a, source, n_rep, per_rep, info):
        for k, (label, lo, hi) in enumerate(info + [("all", float("nan"), float("nan"))]):
            row = {"method": a["method"], "model": a["model"], "noise": a["noise"], "source": source, "bin": label,
                   "lo": lo, "hi": hi, "n": per_rep[0][k]["n"], "replicates": n_rep,
                   "sigma": float(np.mean([r[k]["sigma"] for r in per_rep])),
                   "rmse": float(np.mean([r[k].get("rmse", np.nan) for r in per_rep]))}
            for name, (_, nominal) in INTERVALS.items():
                row[f"cov{name}"] = float(np.mean([r[k][f"cov{name}"] for r in per_rep]))
                row[f"far{name}"] = far_from_nominal(row[f"cov{name}"], nominal, row["n"] * len(per_rep))
            rows.append(row)

    for a in arms:
        own = [p for p in a["preds"] if "y_std" in p]
        if own:
            per_rep, info = [], None
            for p in own:
                bins, info = _bins_of(by, ds, a["noise"], p["index"], p["labels"])
                cov = coverage_by_bin(p["y_true"], p["y_pred"], p["y_std"], bins, len(info))
                for c, m in zip(cov, by_bin(p["y_true"], p["y_pred"], bins, len(info))):
                    c["rmse"] = m["rmse"]
                per_rep.append(cov)
            add(a, "own error bar", len(own), per_rep, info)
        if len(a["preds"]) >= 2 and _is_torch(a["model"]):
            common, pos = _common(a["preds"])
            P = np.stack([p["y_pred"][i] for p, i in zip(a["preds"], pos)])
            S = np.stack([p["y_std"][i] for p, i in zip(a["preds"], pos)]) if len(own) == len(a["preds"]) else None
            mu, sigma = ensemble(P, S)
            p0, i0 = a["preds"][0], pos[0]
            y, labels = p0["y_true"][i0], p0["labels"][i0]
            bins, info = _bins_of(by, ds, a["noise"], common, labels)
            cov = coverage_by_bin(y, mu, sigma, bins, len(info))
            for c, m in zip(cov, by_bin(y, mu, bins, len(info))):
                c["rmse"] = m["rmse"]
            add(a, f"ensemble of {len(a['preds'])} replicates", len(a["preds"]), [cov], info)
    return pd.DataFrame(rows)


def far_cells(cov: pd.DataFrame) -> list[str]:
    """One plain sentence per (method, source, noise) whose coverage is far from nominal somewhere."""
    out = []
    if cov is None or cov.empty:
        return out
    for (method, source, noise), g in cov.groupby(["method", "source", "noise"], sort=False):
        parts = []
        for name, (_, nominal) in INTERVALS.items():
            bad = g[g[f"far{name}"]]
            if len(bad):
                worst = bad.loc[(bad[f"cov{name}"] - nominal).abs().idxmax()]
                parts.append(f"the {name} % interval covers {100 * worst[f'cov{name}']:.0f} % in {worst['bin']} "
                             f"(nominal {100 * nominal:.0f} %)")
        if parts:
            out.append(f"{method} @{noise:g} ({source}): " + "; ".join(parts))
    return out


def summary(cov: pd.DataFrame) -> str:
    """Where coverage is far from nominal, in one or two plain sentences ('' when nowhere)."""
    if cov is None or cov.empty:
        return ""
    cells = [(r, name, nominal) for _, r in cov.iterrows() for name, (_, nominal) in INTERVALS.items()]
    far = [(r, name, nominal) for r, name, nominal in cells if r[f"far{name}"]]
    if not far:
        return (f"Every coverage is within {FAR_SE:g} binomial standard errors of nominal "
                f"({len(cells)} cells).")
    under = [x for x in far if x[0][f"cov{x[1]}"] < x[2]]
    out = [f"{len(far)} of {len(cells)} coverages are further than {FAR_SE:g} binomial standard errors from "
           f"nominal: {len(under)} too low (intervals too narrow), {len(far) - len(under)} too high."]
    rows = cov[cov["bin"] == "all"]
    for source, g in rows.groupby(rows["source"].str.startswith("ensemble"), sort=False):
        what = "replicate ensembles" if source else "own error bars"
        out.append(f"Over all test stars the {what} cover {100 * g['cov68'].min():.0f}–{100 * g['cov68'].max():.0f} % "
                   f"(68 % nominal) and {100 * g['cov95'].min():.0f}–{100 * g['cov95'].max():.0f} % (95 % nominal), "
                   f"with a median σ of {g['sigma'].min():.2f}–{g['sigma'].max():.2f} dex against an RMSE of "
                   f"{g['rmse'].min():.2f}–{g['rmse'].max():.2f} dex"
                   + (": the spread of the training seeds is far smaller than the error, not an error bar."
                      if source and (g["sigma"] < 0.5 * g["rmse"]).all() else "."))
    return " ".join(out)


def registry_state(dataset: str, con=None) -> tuple:
    """(finished runs of the data set, the latest update): a cache key that moves when a run finishes."""
    from core.engine import registry
    done = registry.runs(con or registry.connect(), status="done", dataset=dataset)
    return len(done), max((r.get("updated") or "" for r in done), default="")


def _pm(v, sd, nd=3) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:.{nd}f}" + (f" ± {sd:.{nd}f}" if sd is not None and np.isfinite(sd) else "")


def wide(t: pd.DataFrame, metric: str = "rmse", ratio: bool = True, nd: int = 3) -> pd.DataFrame:
    """table() as text: one row per (method, noise), one column per bin, cells 'mean ± sd' (with several
    seeds) and, for RMSE with a ceiling, '(1.23× ceiling)'."""
    if t is None or t.empty:
        return pd.DataFrame()
    bins = list(dict.fromkeys(t["bin"]))
    out = []
    for (method, noise), g in t.groupby(["method", "noise"], sort=False):
        row = {"method": method, "noise": f"{noise:g}", "seeds": int(g["seeds"].iloc[0])}
        for _, r in g.iterrows():
            txt = _pm(r[metric], r[f"{metric}_sd"], nd)
            if ratio and metric == "rmse" and "ratio" in r and pd.notna(r.get("ratio")):
                txt += f" ({r['ratio']:.2f}×)"
            row[r["bin"]] = txt
        out.append(row)
    df = pd.DataFrame(out)
    return df[["method", "noise", "seeds"] + [b for b in bins if b in df.columns]]


def grid(t: pd.DataFrame, key: str) -> pd.DataFrame:
    """table() column `key` as numbers in wide()'s layout: one row per (method, noise), one column per bin."""
    if t is None or t.empty or key not in t.columns:
        return pd.DataFrame()
    bins = list(dict.fromkeys(t["bin"]))
    rows = [{"method": m, "noise": f"{n:g}", **dict(zip(g["bin"], g[key]))}
            for (m, n), g in t.groupby(["method", "noise"], sort=False)]
    return pd.DataFrame(rows)[["method", "noise"] + bins]


def edges_text(t: pd.DataFrame, by: str, all_col: bool = True) -> str:
    """What the bins are, in words (S/N ranges per noise level); all_col: and the 'all' column."""
    tail = "; 'all': every test star." if all_col else "."
    if by == "logg":
        return "log g bins by true log g [dex]" + tail
    parts = []
    for noise, g in t[t["bin"] != "all"].groupby("noise"):
        g = g.drop_duplicates("bin")
        parts.append(f"noise {noise:g}: " + ", ".join(f"{r['bin']} {r['lo']:.1f}–{r['hi']:.1f}" for _, r in g.iterrows()))
    return "S/N quartiles of the test stars (median S/N per pixel; Q1 lowest): " + "; ".join(parts) + tail


def _md(df: pd.DataFrame) -> list[str]:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |")
    return lines


def coverage_wide(cov: pd.DataFrame) -> pd.DataFrame:
    """coverage_table() as text: one row per (method, source, noise), cells '68 % / 95 %' coverage per bin."""
    if cov is None or cov.empty:
        return pd.DataFrame()
    out = []
    for (method, source, noise), g in cov.groupby(["method", "source", "noise"], sort=False):
        row = {"method": method, "error bar": source, "noise": f"{noise:g}"}
        for _, r in g.iterrows():
            row[r["bin"]] = f"{100 * r['cov68']:.0f} / {100 * r['cov95']:.0f}" + (" !" if r["far68"] or r["far95"] else "")
        every = g[g["bin"] == "all"]["sigma"]
        row["median σ [dex]"] = f"{every.iloc[0]:.3f}" if len(every) else "-"
        out.append(row)
    return pd.DataFrame(out)


def markdown(suite: str = "report", profile: str = "quick", dataset: str | None = None, by: str = "snr",
             con=None) -> str:
    """The breakdown for the report CLI: RMSE (with the ceiling ratio), bias, R^2 and slope per bin, and
    the coverage of every error bar."""
    arms = load(suite, profile, dataset, con)
    t = table(by=by, arms=arms)
    if t.empty:
        return f"No finished runs with stored predictions in suite `{suite}`."
    L = [f"## Where each method fails: by {BY[by]}", "", edges_text(t, by), "With several seeds: mean ± sd over "
         "seeds (seeds column). RMSE cells carry RMSE / the likelihood ceiling's RMSE on the same stars."
         if "ratio" in t.columns else "With several seeds: mean ± sd over seeds (seeds column)."]
    for metric, title in (("rmse", "RMSE [dex]"), ("bias", "bias, predicted − true [dex]"), ("r2", "R²"),
                          ("slope", "slope of predicted on true log g")):
        L += ["", f"### {title} by {BY[by]}", ""] + _md(wide(t, metric))
    cov = coverage_table(by=by, arms=arms)
    L += ["", f"### Coverage of the error bars by {BY[by]}", ""]
    if cov.empty:
        L.append("No predictor here reports an error bar (no y_std in predictions.npz) and no torch family has "
                 "two replicates: `python -m core train --suite report --seeds 2` makes replicate ensembles.")
    else:
        L += ["Cells: % of test stars inside the 68 % / 95 % interval (nominal 68 / 95); '!': further than "
              f"{FAR_SE:g} binomial SE from nominal.", ""] + _md(coverage_wide(cov))
        far = far_cells(cov)
        if far:
            L += ["", summary(cov), "", "Far from nominal (the worst bin of each):"] + [f"- {x}" for x in far]
    return "\n".join(L)
