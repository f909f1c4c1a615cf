"""Tables of results read from the registry: the performance matrix and any suite's results,
with the team report's numbers beside ours, and the report's conclusions checked on our data.

Used by `python -m core report` and by the Overview page; nothing here fits a model.
"""
from __future__ import annotations

import pandas as pd

from core import config
from core.analysis.reference import REPORT_LABEL, team_r2
from core.engine import registry, suites, train
from core.engine.suites.posterior import ROWS as POSTERIOR_ROWS

DISAGREE_R2 = 0.10  # |ours - team| above this is marked as a disagreement
MAX_REPLICATES = 10  # training replicates looked for per spec (train --seeds N)


def replicate_results(spec: dict, con) -> list:
    """Every finished training replicate of a spec (replicate 0 first), as train --seeds made them;
    replicates are looked for up to MAX_REPLICATES and need not be contiguous."""
    out = []
    for r in range(MAX_REPLICATES):
        res = train.cached_result(dict(spec, replicate=r) if r else spec, con=con)
        if res is not None:
            out.append(res)
    return out


def replicate_metrics(spec: dict, con) -> list[dict]:
    """The metrics of every finished training replicate of a spec (replicate 0 first)."""
    return [r.metrics for r in replicate_results(spec, con)]


def _default_inputs(spec: dict) -> bool:
    from models import MODELS
    inp = spec.get("inputs")
    return not inp or inp == getattr(MODELS.get(spec["model"]), "inputs", None)


def suite_results(suite: str = "report", profile: str = "quick", dataset: str | None = None, con=None) -> pd.DataFrame:
    """One row per spec of the suite: its label, noise level, metrics (NaN where not run)."""
    con = con or registry.connect()
    rows = []
    for s in suites.suite(suite, profile, dataset):
        r = train.cached_result(s, con=con)
        m = r.metrics if r else {}
        t = r.timings if r else {}
        reps = [x["r2"] for x in replicate_metrics(s, con) if x.get("r2") is not None]
        rows.append({
            "method": suites.row_label(s), "model": s["model"], "params": s["params"], "inputs": s.get("inputs", ""),
            "noise": s["noise_level"], "run_id": r.run_id if r else None, "r2": m.get("r2"), "mae": m.get("mae"),
            # over the training replicates found (train --seeds N): mean, sample sd, how many
            "r2_mean": float(sum(reps) / len(reps)) if reps else None,
            "r2_sd": float(pd.Series(reps).std(ddof=1)) if len(reps) > 1 else None, "n_seeds": len(reps),
            "rmse": m.get("rmse"), "bias": m.get("bias"), "n_params": m.get("n_params"),
            "receptive_field_px": m.get("receptive_field_px"), "fit_s": t.get("fit_s"), "device": t.get("device"),
            # the team's numbers are for each method on its usual input: no comparison for other inputs
            "team_r2": team_r2(s["model"], s["noise_level"], s["params"]) if _default_inputs(s) else None,
        })
    return pd.DataFrame(rows)


def posterior_results(profile: str = "quick", dataset: str | None = None, con=None) -> pd.DataFrame:
    """The posterior suite's finished specs (the NPE's posterior mean, #17 part 4) as suite_results rows:
    the report matrix shows them as a method where they exist, though they are not in the report suite."""
    post = suite_results("posterior", profile, dataset, con)
    return post[post["run_id"].notna()]


def matrix(suite: str = "report", profile: str = "quick", dataset: str | None = None, con=None) -> pd.DataFrame:
    """Methods x noise levels: our R^2 and MAE, the team's R^2, parameters, fit time, device, flags.
    The report matrix gains the posterior suite's row where its runs exist (posterior_results), the
    likelihood ceiling as its last row and each method's fraction of it."""
    df = suite_results(suite, profile, dataset, con)
    ceiling = {}
    if suite == "report":
        c = suite_results("ceiling", profile, dataset, con)
        post = posterior_results(profile, dataset, con)
        df = pd.concat([df, post, c] if len(post) else [df, c], ignore_index=True)
        ceiling = {r["noise"]: r["r2"] for _, r in c.iterrows() if r["r2"] is not None and pd.notna(r["r2"])}
    out = []
    for method, g in df.groupby("method", sort=False):
        row = {"method": method}
        for _, r in g.iterrows():
            n = f"{r['noise']:g}"
            row[f"R2 @{n}"] = r["r2_mean"] if r.get("r2_mean") is not None else r["r2"]
            row[f"R2 sd @{n}"] = r.get("r2_sd")
            row[f"seeds @{n}"] = r.get("n_seeds")
            row[f"team R2 @{n}"] = r["team_r2"]
            row[f"MAE @{n}"] = r["mae"]
            row[f"fit s @{n}"] = r["fit_s"]
            if ceiling.get(r["noise"]) and row[f"R2 @{n}"] is not None and pd.notna(row[f"R2 @{n}"]):
                row[f"of ceiling @{n}"] = row[f"R2 @{n}"] / ceiling[r["noise"]]
        row["params"] = g["n_params"].dropna().max() if g["n_params"].notna().any() else None
        row["device"] = ", ".join(sorted(set(g["device"].dropna())))
        flags = []
        for _, r in g.iterrows():
            if r["r2"] is not None and r["team_r2"] is not None and pd.notna(r["r2"]) and \
                    abs(r["r2"] - r["team_r2"]) > DISAGREE_R2:
                flags.append(f"@{r['noise']:g}: ours {r['r2']:.2f} vs team {r['team_r2']:.2f}")
        row["disagrees with team"] = "; ".join(flags)
        out.append(row)
    return pd.DataFrame(out)


def _fmt(v, nd=3):
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}" if abs(v) < 1e4 else f"{v:.3g}"
    return str(v)


def markdown(suite: str = "report", profile: str = "quick", dataset: str | None = None) -> str:
    """The matrix (suite 'report') or a suite's results as a markdown table."""
    m = matrix(suite, profile, dataset)
    noises = [f"{n:g}" for n in config.NOISE_LEVELS]
    cols = ["method"]
    for n in noises:
        cols += [f"R2 @{n}", f"of ceiling @{n}", f"team R2 @{n}", f"MAE @{n}"]
    cols += ["params"] + [f"fit s @{n}" for n in noises] + ["device", "disagrees with team"]
    cols = [c for c in cols if c in m.columns]
    lines = [f"Suite `{suite}`, profile `{profile}`, data set `{dataset or config.profile(profile)['dataset']}`; "
             f"team numbers: {REPORT_LABEL} (their data, not ours). R² with several training seeds: mean ± sd "
             f"(N seeds).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in m.iterrows():
        vals = []
        for c in cols:
            v = r.get(c)
            if c == "params" and v is not None and pd.notna(v):
                vals.append(f"{int(v):,}")
            elif c.startswith("R2 @") and (r.get("seeds " + c[3:]) or 0) > 1:   # mean ± sd (N seeds)
                vals.append(f"{_fmt(v)} ± {_fmt(r.get('R2 sd ' + c[3:]))} ({int(r.get('seeds ' + c[3:]))})")
            elif c.startswith("fit s"):
                vals.append(_fmt(v, 1))
            else:
                vals.append(_fmt(v))
        lines.append("| " + " | ".join(vals) + " |")
    n_done = int(m[[c for c in m.columns if c.startswith("R2 @")]].notna().sum().sum())
    n_all = len(suites.suite(suite, profile, dataset)) + (len(suites.suite("ceiling", profile, dataset)) if suite == "report" else 0)
    if suite == "report" and m["method"].isin([label for label, _, _ in POSTERIOR_ROWS]).any():
        n_all += len(suites.suite("posterior", profile, dataset))   # its row is shown: its runs count
    lines += ["", f"{n_done} of {n_all} runs finished."]
    return "\n".join(lines)


def history(suite: str, profile: str, dataset: str | None, since: str | None = None, con=None) -> pd.DataFrame:
    """How each number of a suite moved: the current R^2 of each spec against its value at the
    last finish before `since` (ISO date) or, without `since`, its previous finish (an earlier fit of
    the same spec: a forced refit, a code change). Rows without an earlier value are left out."""
    con = con or registry.connect()
    rows = []
    for s in suites.suite(suite, profile, dataset):
        r = train.cached_result(s, con=con)
        if r is None:
            continue
        h = registry.history(con, r.run_id)
        if since:
            before = [x for x in h if x["finished"] < since]
            prev = before[-1] if before else None
        else:
            prev = h[-2] if len(h) >= 2 else None
        if prev is None or "r2" not in prev["metrics"]:
            continue
        rows.append({"method": suites.row_label(s), "noise": s["noise_level"], "R2 then": prev["metrics"]["r2"],
                     "R2 now": r.metrics["r2"], "change": r.metrics["r2"] - prev["metrics"]["r2"],
                     "then": prev["finished"], "code then": prev["code_version"], "run": r.run_id})
    return pd.DataFrame(rows)
