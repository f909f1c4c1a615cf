"""What the runs conclude, in sentences: the Summary page's numbers and the one-sentence conclusion each
result page opens with (Dilation, Saliency, Latent, Error vs flux), and what has not run with its cost.

Nothing here draws (pages/summary.py and pages/_ui/conclusion.py do) and nothing fits a model. Numbers come
from report (the matrix, the team's column), verdicts (mean over training seeds ± sqrt(SE_boot² + sd²/N))
and hypotheses (the rules behind every verdict); the cost of what has not run is the median fit time of
earlier runs of the same model and profile (also the Training page's estimate).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from core.analysis import hypotheses, report, verdicts
from core.engine import registry, suites
from core.engine.estimates import estimate, minutes, typical_fit_seconds

# the hypothesis each result page opens with, and the suite that holds its runs
PAGE_HYPOTHESIS = {"dilation": ("dilation", "dilation"), "error_vs_flux": ("error", "error_ablation"),
                   "saliency": ("topk", "topk"), "latent": ("latent", "latent")}


@dataclass
class Conclusion:
    """One sentence (markdown) and, when runs are missing, the specs that would answer it."""
    text: str
    verdict: str                          # verified / refuted / inconclusive / number / not run
    todo: list = field(default_factory=list)
    label: str = ""                       # the job label for the queue button


# --------------------------------------------------------------------------- cost of what has not run
# typical_fit_seconds, estimate and minutes live in core/engine/estimates.py (Predict's matched models use them too)


def cost_phrase(est: dict) -> str:
    """The Training page's sentence on the estimate."""
    if est["n_todo"] == 0:
        return "Nothing to fit: every spec has finished"
    if est["seconds"] is None:
        return "No estimate yet: none of these models has run with this profile here"
    return (f"Estimated cost: {minutes(est['seconds'])} on this machine (medians of earlier runs of the same model "
            f"and profile" + (f", {est['workers']} at a time" if est["workers"] > 1 else "") + ")"
            + (f", plus {est['unknown']} spec(s) of models never run here before" if est["unknown"] else ""))


def not_run_text(est: dict, suite: str) -> str:
    """'not run: 6 of 10 specs of the dilation suite, ~4 min'."""
    extra = f" (+{est['unknown']} of models never timed here)" if est["unknown"] and est["seconds"] is not None else ""
    return (f"not run: {est['n_todo']} of {est['n_all']} specs of the `{suite}` suite unfinished, "
            f"{minutes(est['seconds'])}{extra}")


def suites_not_run(profile: str, dataset: str | None, con=None) -> pd.DataFrame:
    """One row per suite: specs, finished, unfinished, estimated minutes (NaN: unknown)."""
    con = con or registry.connect()
    typ = typical_fit_seconds(profile, con)
    rows = []
    for name in suites.SUITES:
        e = estimate(suites.suite(name, profile, dataset), profile, con, typ)
        rows.append({"suite": name, "specs": e["n_all"], "finished": e["n_done"], "not finished": e["n_todo"],
                     "est. min": (e["seconds"] / 60 if e["seconds"] is not None else float("nan")) if e["n_todo"] else 0.0,
                     "cost": minutes(e["seconds"]) if e["n_todo"] else "-", "never timed": e["unknown"]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the summary's numbers
def pm(est: verdicts.Estimate, pct: bool = False) -> str:
    f = (lambda v: f"{100 * v:.1f} %") if pct else (lambda v: f"{v:.3f}")
    return f"{f(est.value)} ± {f(est.combined)}"


def _errors(arm: verdicts.Arm, est: verdicts.Estimate) -> str:
    sd = arm.sd()
    seeds = f"sd over {arm.n} seeds {sd:.3f}" if arm.n > 1 and sd is not None else "1 seed, training spread unknown"
    boot = f"bootstrap SE {est.se_boot:.3f}" if est.se_boot is not None else "no bootstrap"
    return f"{seeds}, {boot}"


def _learned_arms(c: hypotheses.Ctx, profile: str, dataset: str | None, noise: float) -> list:
    out = []
    for s in suites.suite("report", profile, dataset):
        if s["noise_level"] != noise or s["model"].startswith("metadata"):
            continue
        a = verdicts.as_arm(c.get_spec(s), suites.row_label(s))
        if a is not None and a.values().size:
            out.append(a)
    return out


def best_per_noise(profile: str, dataset: str | None, con=None) -> list[dict]:
    """Per noise level: the learned method with the highest mean R² (± its combined error), its lead over
    the runner-up, and its fraction of the likelihood ceiling's R² on the same test stars."""
    from core import config
    c = hypotheses.Ctx(profile, dataset, con)
    out = []
    for noise in config.NOISE_LEVELS:
        arms = sorted(_learned_arms(c, profile, dataset, noise), key=lambda a: -a.r2)
        if not arms:
            continue
        best = arms[0]
        lv = verdicts.level(best)
        row = {"noise": noise, "method": best.label, "r2": lv.value, "err": lv.combined, "n_seeds": best.n,
               "r2_text": pm(lv), "errors": _errors(best, lv), "runner_up": None, "lead": None, "ceiling": None}
        if len(arms) > 1:
            g = verdicts.gap(best, arms[1])
            row.update(runner_up=arms[1].label, lead=pm(g), lead_verdict=verdicts.judge(g, 0.0))
        ceil_specs = [s for s in suites.suite("ceiling", profile, dataset) if s["noise_level"] == noise]
        ceil = verdicts.as_arm(c.get_spec(ceil_specs[0]), "ceiling") if ceil_specs else None
        if ceil is not None:
            fr = verdicts.fraction(ceil, best)
            row.update(ceiling=pm(fr, pct=True), ceiling_r2=ceil.r2, frac=fr.value)
        out.append(row)
    return out


def best_sentence(b: dict) -> str:
    s = f"At noise {b['noise']:g} the best predictor is **{b['method']}**, R² = **{b['r2_text']}** ({b['errors']})"
    if b.get("ceiling"):
        s += f", {b['ceiling']} of the physics ceiling's R² ({b['ceiling_r2']:.3f}) on the same test stars"
    if b.get("runner_up"):
        s += (f"; ahead of {b['runner_up']} by {b['lead']}"
              + (" (within 2 errors: a tie)" if b.get("lead_verdict") == "inconclusive" else ""))
    return s + "."


def team_differences(profile: str, dataset: str | None, n: int = 3, con=None) -> pd.DataFrame:
    """The n largest |ours − team| in R² of the report suite, with our combined error."""
    con = con or registry.connect()
    res = report.suite_results("report", profile, dataset, con)
    res = res[res["r2"].notna() & res["team_r2"].notna()].copy()
    if res.empty:
        return pd.DataFrame(columns=["method", "noise", "ours", "team", "ours − team"])
    res["ours_r2"] = res["r2_mean"].fillna(res["r2"])
    res["diff"] = res["ours_r2"] - res["team_r2"].astype(float)
    res = res.reindex(res["diff"].abs().sort_values(ascending=False).index).head(n)
    c = hypotheses.Ctx(profile, dataset, con)
    specs = {(suites.row_label(s), s["noise_level"]): s for s in suites.suite("report", profile, dataset)}
    rows = []
    for _, r in res.iterrows():
        arm = verdicts.as_arm(c.get_spec(specs[(r["method"], r["noise"])]))
        lv = verdicts.level(arm)
        rows.append({"method": r["method"], "noise": r["noise"], "ours": pm(lv), "team": f"{float(r['team_r2']):.3f}",
                     "ours − team": f"{r['diff']:+.3f} ± {lv.combined:.3f}", "errors": _errors(arm, lv)})
    return pd.DataFrame(rows)


def verdict_table(profile: str, dataset: str | None, con=None) -> pd.DataFrame:
    """Every hypothesis of the digest: its verdict and the statistic ± combined error it rests on."""
    hyps, _ = hypotheses.evaluate(profile, dataset, con)
    return pd.DataFrame([{"hypothesis": h["text"]["en"], "verdict": h["verdict"], "gap ± error": h["stat"] or "—",
                          "threshold": h["threshold"] or "—"} for h in hyps])


def changes_since(since: str, dataset: str | None, con=None) -> pd.DataFrame:
    """Runs of this data set finished on or after `since` (ISO date): their R² now and before `since`
    (the last finish of the same run id before it; blank for a first fit)."""
    con = con or registry.connect()
    hist = con.execute("SELECT h.run_id, h.finished, h.metrics FROM run_history h JOIN runs r ON r.run_id = h.run_id "
                       "WHERE r.dataset = ? ORDER BY h.finished", (dataset,)).fetchall()
    by: dict = {}
    for run_id, finished, metrics in hist:
        by.setdefault(run_id, []).append((finished, json.loads(metrics) if metrics else {}))
    rows = []
    for run_id, h in by.items():
        after = [x for x in h if x[0] >= since]
        if not after:
            continue
        before = [x for x in h if x[0] < since]
        spec = (registry.get(con, run_id) or {}).get("spec") or {}
        now, then = after[-1][1].get("r2"), before[-1][1].get("r2") if before else None
        rows.append({"suite": spec.get("suite", ""), "method": suites.row_label(spec) if spec else run_id,
                     "noise": spec.get("noise_level"), "replicate": int(spec.get("replicate", 0) or 0),
                     "finished": after[-1][0], "R2 before": then, "R2 now": now,
                     "change": (now - then) if now is not None and then is not None else None, "run": run_id})
    return pd.DataFrame(rows).sort_values("finished", ascending=False) if rows else pd.DataFrame(rows)


# --------------------------------------------------------------------------- one sentence per result page
def page(name: str, profile: str, dataset: str | None, con=None) -> Conclusion:
    """The conclusion a result page opens with: its hypothesis's verdict with the statistic ± combined
    error, or 'not run: N of M specs, ~X min' with the specs to queue."""
    key, suite = PAGE_HYPOTHESIS[name]
    con = con or registry.connect()
    text, rule = next((t, r) for k, t, r in hypotheses.HYPOTHESES if k == key)
    verdict, ev = rule(hypotheses.Ctx(profile, dataset, con))
    hyp = text["en"]
    est = estimate(suites.suite(suite, profile, dataset), profile, con)
    if verdict == "not run":
        return Conclusion(f"{hyp}: {not_run_text(est, suite)}.", "not run", est["todo"], f"{suite}, {profile}")
    words = {"verified": "verified", "refuted": "refuted", "inconclusive": "inconclusive (within 2 combined errors)"}
    s = f"{hyp}: **{words.get(verdict, verdict)}**, {ev.stat}"
    if key == "error":
        ctrl = [note for note, _ in ev.more if note.startswith("control")]
        if ctrl:
            s += "; " + ctrl[0]
    return Conclusion(s + ".", verdict, est["todo"], f"{suite}, {profile}")
