"""Learning curves against the ceiling (#17, part 3): test R^2 of log g at noise 1.0 against the
number of training spectra, per method and training-noise mode, with the likelihood ceiling's R^2
on the same test stars (the learning_curve suite, core/engine/suites/learning.py).

Used by `python -m core report --suite learning_curve` and the Limit page; nothing here fits a model.
"""
from __future__ import annotations

import math

import pandas as pd

from core import config
from core.analysis import report
from core.engine import registry, suites
from core.engine.suites import learning

SUITE = "learning_curve"
COLUMNS = ["method", "model", "mode", "n_train", "r2", "r2_sd", "n_seeds", "of_ceiling", "run_id"]
# n_train of a "stream" row (new stars every epoch) is the mean number of distinct stars its fits saw


def _label(spec: dict) -> str:
    """The method's name without its noise mode (the mode is a column of its own)."""
    return suites.row_label(dict(spec, params={k: v for k, v in (spec.get("params") or {}).items()
                                               if k not in ("noise_mode", "training")}))


def ceiling_r2(profile: str = "quick", dataset: str | None = None, con=None) -> float | None:
    """R^2 of the likelihood ceiling at the suite's noise level on the same test stars, or None."""
    con = con or registry.connect()
    for s in suites.suite(SUITE, profile, dataset):
        if s["model"] == "likelihood_ceiling":
            m = report.replicate_metrics(s, con)
            return float(m[0]["r2"]) if m and m[0].get("r2") is not None else None
    return None


def table(profile: str = "quick", dataset: str | None = None, con=None, specs: list[dict] | None = None) -> pd.DataFrame:
    """One row per (method, mode, n_train) of the suite (or of `specs`), the ceiling left out: R^2 as
    the mean over the training replicates found, its sd (ddof 1) where there are two or more, how many,
    and the fraction of the ceiling's R^2. Not-yet-run rows have NaN R^2."""
    con = con or registry.connect()
    specs = suites.suite(SUITE, profile, dataset) if specs is None else specs
    top = learning.available(profile, dataset)
    ceil = ceiling_r2(profile, dataset, con)
    rows = []
    for s in specs:
        if s["model"] == "likelihood_ceiling":
            continue
        res = report.replicate_results(s, con)
        reps = [r.metrics["r2"] for r in res if r.metrics.get("r2") is not None]
        mean = float(sum(reps) / len(reps)) if reps else math.nan
        n = int(res[0].metrics.get("n_train") or 0) if res else 0
        # the distinct stars the kept (best-epoch) weights saw: n_train x best_epoch (also for runs whose stored
        # stars_seen, before 2026-12-03 08:10, counted every epoch run)
        seen = [r.metrics["n_train"] * r.metrics["best_epoch"] if r.metrics.get("n_train") and r.metrics.get("best_epoch")
                else r.metrics["stars_seen"] for r in res if r.metrics.get("stars_seen")]
        if learning.mode_of(s) == "stream" and seen:       # new stars every epoch: the distinct stars it saw
            n = int(round(sum(seen) / len(seen)))
        rows.append({"method": _label(s), "model": s["model"], "mode": learning.mode_of(s),
                     "n_train": n or int(s.get("n_train") or top), "r2": mean,
                     "r2_sd": float(pd.Series(reps).std(ddof=1)) if len(reps) > 1 else math.nan,
                     "n_seeds": len(reps), "of_ceiling": mean / ceil if ceil and reps else math.nan,
                     "run_id": res[0].run_id if res else None})
    return pd.DataFrame(rows, columns=COLUMNS)


def _reach(r) -> str:
    if pd.notna(r["of_ceiling"]):
        return f"{r['of_ceiling']:.0%} of the ceiling ({r['method']}, R² {r['r2']:.3f})"
    return f"R² {r['r2']:.3f} ({r['method']})"


def conclusion(df: pd.DataFrame, ceiling: float | None) -> str:
    """How close fresh and fixed training noise get to the ceiling, and with how much data; then, where a
    stream of new stars has run, how close the infinite-data limit gets."""
    done = df[df["r2"].notna()] if len(df) else df
    if done.empty:
        return "No learning-curve run has finished yet."
    streamed, done = done[done["mode"] == "stream"], done[done["mode"] != "stream"]
    tail = "" if ceiling is None else f"; the ceiling: R² {ceiling:.3f} on the same test stars"
    out = _data_conclusion(done, tail) if not done.empty else ""
    if not streamed.empty:
        s = streamed.sort_values("r2").iloc[-1]
        out += (" " if out else "") + (f"With new simulated stars every epoch (the infinite-data limit: "
                                       f"{int(s['n_train']):,} distinct stars seen) the best reaches {_reach(s)}"
                                       + _against_finite(s, done) + ("." if out else f"{tail}."))
    return out


def _against_finite(s, done: pd.DataFrame) -> str:
    """', against R^2 x on the data set's N spectra with fresh noise: g +- e (verdict)' for the stream row s: the gap
    judged against the errors of the two means over training seeds (sd / sqrt N each, combined; inconclusive
    inside 2); 'single runs' where either side has one seed."""
    same = done[(done["model"] == s["model"]) & (done["mode"] == "fresh")]
    if same.empty:
        return ""
    f = same.sort_values("n_train").iloc[-1]
    gap = float(s["r2"] - f["r2"])
    if pd.isna(s["r2_sd"]) or pd.isna(f["r2_sd"]):
        return f", against R² {f['r2']:.3f} on the data set's {int(f['n_train']):,} spectra with fresh noise (single runs)"
    # the error of each mean over seeds (sd / sqrt N), both sides; the test stars' bootstrap is not in it
    err = math.hypot(float(s["r2_sd"]) / math.sqrt(int(s["n_seeds"])), float(f["r2_sd"]) / math.sqrt(int(f["n_seeds"])))
    verdict = "inconclusive: within 2 seed errors" if abs(gap) < 2 * err else ("a gain" if gap > 0 else "a loss")
    return (f", against R² {f['r2']:.3f} on the data set's {int(f['n_train']):,} spectra with fresh noise: "
            f"{gap:+.3f} ± {err:.3f} ({verdict})")


def _data_conclusion(done: pd.DataFrame, tail: str) -> str:
    """The sentence about the data set's own training spectra (fixed and fresh noise)."""
    top = int(done["n_train"].max())
    fixed, fresh = done[done["mode"] == "fixed"], done[done["mode"] == "fresh"]
    if fresh.empty or fixed[fixed["n_train"] == top].empty:
        best = done[done["n_train"] == top].sort_values("r2").iloc[-1]
        return f"On {top:,} training spectra the best learned model reaches {_reach(best)}{tail}."
    bf = fixed[fixed["n_train"] == top].sort_values("r2").iloc[-1]
    best_fresh = {int(n): g.sort_values("r2").iloc[-1] for n, g in fresh.groupby("n_train")}
    enough = [n for n, b in sorted(best_fresh.items()) if b["r2"] >= bf["r2"] and n < top]
    if enough:
        b = best_fresh[enough[0]]
        return (f"Fresh noise on {enough[0]:,} spectra reaches {_reach(b)}, as much as fixed noise on {top:,} "
                f"({_reach(bf)}){tail}.")
    b = best_fresh.get(top, best_fresh[max(best_fresh)])
    return (f"Fresh noise on {int(b['n_train']):,} spectra reaches {_reach(b)}; fixed noise on {top:,} "
            f"{_reach(bf)}{tail}.")


def _cell(r) -> str:
    if pd.isna(r["r2"]):
        return "-"
    return f"{r['r2']:.3f} ± {r['r2_sd']:.3f} ({int(r['n_seeds'])})" if r["n_seeds"] > 1 else f"{r['r2']:.3f}"


def markdown(profile: str = "quick", dataset: str | None = None) -> str:
    """R^2 against n_train per method and mode as a markdown table, the ceiling beneath."""
    con = registry.connect()
    df = table(profile, dataset, con)
    ceil = ceiling_r2(profile, dataset, con)
    data_rows = df[df["mode"] != "stream"] if len(df) else df
    sizes = sorted(data_rows["n_train"].unique()) if len(data_rows) else []
    cols = ["method", "training noise"] + [f"n={int(n):,}" for n in sizes] + ["new stars every epoch",
                                                                           "of ceiling @ largest"]
    lines = [f"Suite `{SUITE}`, profile `{profile}`, data set `{dataset or config.profile(profile)['dataset']}`, "
             f"noise level {learning.NOISE_LEVEL:.1f}: test R² of log g against the number of training spectra; "
             "with several training seeds mean ± sd (N seeds).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for (method, mode), g in df.groupby(["method", "mode"], sort=False):
        by = {int(r["n_train"]): r for _, r in g.iterrows()}
        big = by.get(int(max(by)))
        frac = f"{big['of_ceiling']:.1%}" if big is not None and pd.notna(big["of_ceiling"]) else "-"
        if mode == "stream":       # one cell: R^2 and the distinct stars seen
            cells = ["-"] * len(sizes) + [_cell(big) + (f", {int(big['n_train']):,} seen" if pd.notna(big["r2"]) else "")]
        else:
            cells = [_cell(by[int(n)]) if int(n) in by else "-" for n in sizes] + ["-"]
        lines.append("| " + " | ".join([method, mode] + cells + [frac]) + " |")
    lines += ["", f"{CEILING_LINE}: " + (f"R² {ceil:.3f}" if ceil is not None else "not run yet") + ".",
              conclusion(df, ceil), f"{int(df['r2'].notna().sum())} of {len(df)} learned cells finished."]
    return "\n".join(lines)


CEILING_LINE = suites.CEILING_LABEL + " on the same test stars"
