"""The meeting digest: the group's report, written from live numbers in the registry.

`build(profile, dataset, since, lang)` returns Markdown in the shape of the group's own report
(core conclusions per experiment, the matrix at each noise level with the team's numbers
beside ours, hypotheses with computed verdicts, open questions, an index of runs). Every
number of ours is printed with the id of the run it comes from. Each hypothesis carries its
rule here, next to its text; a rule whose runs are missing says "not run", never guesses.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from core import config
from core.analysis.reference import REPORT_LABEL, team_r2
from core.engine import registry, suites, train

H = {
    "title": {"en": "log g experiments: meeting digest", "zh": "log g 实验：会议摘要"},
    "generated": {"en": "Generated", "zh": "生成时间"},
    "data": {"en": "Data set", "zh": "数据集"},
    "conclusions": {"en": "Core conclusions", "zh": "核心结论汇总"},
    "matrix": {"en": "Performance matrix", "zh": "性能矩阵"},
    "noise": {"en": "noise level", "zh": "噪声水平"},
    "hypotheses": {"en": "Hypotheses and verdicts", "zh": "假设验证"},
    "open": {"en": "Open questions", "zh": "待解决问题"},
    "index": {"en": "Run index", "zh": "实验索引"},
    "method": {"en": "method", "zh": "方法"},
    "ours": {"en": "ours", "zh": "我们"},
    "team": {"en": REPORT_LABEL, "zh": "团队报告 2025-12-01"},
    "hyp": {"en": "hypothesis", "zh": "假设"},
    "verdict": {"en": "verdict", "zh": "结论"},
    "evidence": {"en": "evidence", "zh": "证据"},
    "rule": {"en": "rule", "zh": "规则"},
    "status": {"en": "status", "zh": "状态"},
    "since": {"en": "answered since", "zh": "新近回答（自）"},
}
VERDICT_WORDS = {"verified": {"en": "verified", "zh": "已验证"}, "refuted": {"en": "refuted", "zh": "被否定"},
                 "inconclusive": {"en": "inconclusive (within 2 bootstrap SE)", "zh": "无定论（差异在 2 个 bootstrap 标准误内）"},
                 "not run": {"en": "not run", "zh": "未运行"}}


@dataclass
class Evidence:
    """Our numbers behind one verdict: (label, value, run) triples."""
    items: list

    def text(self) -> str:
        return "; ".join(f"{lab} R² = {v:.3f} (run {r.run_id})" for lab, v, r in self.items)

    def runs(self) -> list:
        return [r for _, _, r in self.items]


class Ctx:
    """Looks up finished results of specs for one profile and data set."""

    def __init__(self, profile: str, dataset: str | None, con=None):
        self.profile, self.dataset = profile, dataset or config.profile(profile)["dataset"]
        self.con = con or registry.connect()
        self.used: dict[str, train.Result] = {}

    def get(self, model: str, noise: float, inputs: str | None = None, **params):
        s = {"model": model, "params": params, "noise_level": noise, "profile": self.profile,
             "dataset": self.dataset, "seed": 0}
        if inputs:
            s["inputs"] = inputs
        return self.get_spec(s)

    def get_spec(self, spec: dict):
        r = train.cached_result(spec, con=self.con)
        if r is not None:
            self.used[r.run_id] = r
        return r


def r2(r) -> float | None:
    return None if r is None else float(r.metrics["r2"])


def r2_gap(a, b, n_boot: int = 300, seed: int = 0) -> tuple[float, float]:
    """R^2(a) - R^2(b) and its bootstrap standard error over the test spectra both runs share
    (the spread a single pair of runs can show; SE 0 when the predictions are not stored)."""
    import numpy as np
    d = r2(a) - r2(b)
    try:
        pa, pb = a.predictions(), b.predictions()
    except (AttributeError, OSError, KeyError):
        return d, 0.0
    if not np.array_equal(pa["index"], pb["index"]):
        return d, 0.0
    from core.engine.metrics import bootstrap_se_r2_gap
    return d, bootstrap_se_r2_gap(pa["y_true"], pa["y_pred"], pb["y_pred"], n_boot=n_boot, seed=seed)


def better(a, b) -> int:
    """+1 when run a beats run b by more than 2 bootstrap SE in R^2, -1 when b beats a so, else 0."""
    d, se = r2_gap(a, b)
    return 0 if abs(d) <= 2 * se else (1 if d > 0 else -1)


# --------------------------------------------------------------------------- hypotheses and their rules
def h_metadata(c: Ctx):
    """Rule: verified when both metadata baselines stay below R^2 = 0.05 at every noise level."""
    items = [(f"{m} @{n:g}", r2(r), r) for m in ("metadata_ridge", "metadata_lgbm") for n in config.NOISE_LEVELS
             for r in [c.get(m, n)] if r]
    if len(items) < 4:
        return "not run", Evidence(items)
    return ("verified" if max(v for _, v, _ in items) < 0.05 else "refuted"), Evidence(items)


def h_lgbm_best_high_noise(c: Ctx):
    """Rule: verified when LightGBM has the highest R^2 at noise 1.0 among the learned models of the report
    suite; refuted when another model beats it by more than 2 bootstrap SE; inconclusive in between."""
    rs = {lab: c.get(m, 1.0, **p) for lab, m, p in suites.REPORT_ROWS if not m.startswith("metadata")}
    rs = {k: v for k, v in rs.items() if v is not None}
    if "LightGBM" not in rs or len(rs) < 3:
        return "not run", Evidence([])
    best = max(rs, key=lambda k: r2(rs[k]))
    items = [("LightGBM @1", r2(rs["LightGBM"]), rs["LightGBM"])]
    if best == "LightGBM":
        return "verified", Evidence(items)
    items.append((f"{best} @1", r2(rs[best]), rs[best]))
    return ("refuted" if better(rs[best], rs["LightGBM"]) > 0 else "inconclusive"), Evidence(items)


def h_dilation2(c: Ctx):
    """Rule: verified when dilation 2 gives the dilated CNN's highest R^2 at noise 0.1 among d = 1, 2, 4, 8;
    refuted when another dilation beats it by more than 2 bootstrap SE; inconclusive in between."""
    rs = {d: c.get("dilated_cnn", 0.1, dilation=d) for d in (1, 2, 4, 8)}
    if any(v is None for v in rs.values()):
        return "not run", Evidence([(f"d={d} @0.1", r2(v), v) for d, v in rs.items() if v])
    best = max(rs, key=lambda d: r2(rs[d]))
    ev = Evidence([(f"d={d} @0.1", r2(v), v) for d, v in rs.items()])
    if best == 2:
        return "verified", ev
    return ("refuted" if better(rs[best], rs[2]) > 0 else "inconclusive"), ev


def h_k256(c: Ctx):
    """Rule: verified when the top-K window CNN with K = 256 beats K = 512 at noise 0.1 (|coefficient|
    criterion) by more than 2 bootstrap SE; refuted when K = 512 wins so; inconclusive in between."""
    a, b = c.get("topk_cnn", 0.1, K=256, criterion="ridge"), c.get("topk_cnn", 0.1, K=512, criterion="ridge")
    if a is None or b is None:
        return "not run", Evidence([x for x in [("K=256 @0.1", r2(a), a) if a else None, ("K=512 @0.1", r2(b), b) if b else None] if x])
    verdict = {1: "verified", -1: "refuted", 0: "inconclusive"}[better(a, b)]
    return verdict, Evidence([("K=256 @0.1", r2(a), a), ("K=512 @0.1", r2(b), b)])


def h_cnn_over_transformer(c: Ctx):
    """Rule: verified when the window CNN beats the window transformer by more than 0.05 in R^2 at noise 0.1."""
    a, b = c.get("topk_cnn", 0.1, K=256), c.get("topk_transformer", 0.1, K=256)
    if a is None or b is None:
        return "not run", Evidence([])
    return ("verified" if r2(a) - r2(b) > 0.05 else "refuted"), Evidence([("window CNN @0.1", r2(a), a),
                                                                          ("window transformer @0.1", r2(b), b)])


def h_global_collapse(c: Ctx):
    """Rule: verified when the global-feature MLP keeps less than 60 % of its noise-0.1 R^2 at noise 1.0."""
    a, b = c.get("global_mlp", 0.1), c.get("global_mlp", 1.0)
    if a is None or b is None:
        return "not run", Evidence([])
    return ("verified" if r2(b) < 0.6 * r2(a) else "refuted"), Evidence([("global MLP @0.1", r2(a), a),
                                                                         ("global MLP @1", r2(b), b)])


def h_error_shortcut(c: Ctx):
    """Rule: verified when Ridge or LightGBM on the clean error vector alone reaches R^2 >= 0.5 at noise 1.0."""
    items = [(f"{m} on error only @1", r2(r), r) for m in ("ridge", "lightgbm") for r in [c.get(m, 1.0, inputs="error")] if r]
    if not items:
        return "not run", Evidence([])
    return ("verified" if max(v for _, v, _ in items) >= 0.5 else "refuted"), Evidence(items)


def h_half_at_high_noise(c: Ctx):
    """Rule: verified when any learned model of the report suite reaches R^2 >= 0.50 at noise 1.0."""
    rs = [(lab, c.get(m, 1.0, **p)) for lab, m, p in suites.REPORT_ROWS if not m.startswith("metadata")]
    rs = [(lab, r) for lab, r in rs if r is not None]
    if not rs:
        return "not run", Evidence([])
    lab, best = max(rs, key=lambda x: r2(x[1]))
    return ("verified" if r2(best) >= 0.5 else "refuted"), Evidence([(f"{lab} @1", r2(best), best)])


def h_fusion(c: Ctx):
    """Rule: verified when a two-tower fusion beats both single towers (global MLP, window CNN) at noise 1.0
    by more than 2 bootstrap SE; refuted when a tower beats the best fusion so; inconclusive in between."""
    g, t = c.get("global_mlp", 1.0), c.get("topk_cnn", 1.0, K=256)
    fs = [(m, c.get(m, 1.0)) for m in ("fusion_concat", "fusion_film")]
    fs = [(m, r) for m, r in fs if r]
    if g is None or t is None or not fs:
        return "not run", Evidence([])
    m, f = max(fs, key=lambda x: r2(x[1]))
    tower = g if r2(g) >= r2(t) else t
    verdict = {1: "verified", -1: "refuted", 0: "inconclusive"}[better(f, tower)]
    return verdict, Evidence([(f"{m} @1", r2(f), f), ("global MLP @1", r2(g), g), ("window CNN @1", r2(t), t)])


def h_ceiling(c: Ctx):
    """Rule: verified when no learned model of the report suite exceeds the likelihood ceiling at noise 1.0."""
    ceil = c.get("likelihood_ceiling", 1.0)
    rs = [(lab, c.get(m, 1.0, **p)) for lab, m, p in suites.REPORT_ROWS if not m.startswith("metadata")]
    rs = [(lab, r) for lab, r in rs if r is not None]
    if ceil is None or not rs:
        return "not run", Evidence([])
    lab, best = max(rs, key=lambda x: r2(x[1]))
    return ("verified" if r2(best) <= r2(ceil) else "refuted"), Evidence([("ceiling @1", r2(ceil), ceil), (f"{lab} @1", r2(best), best)])


LATENT_DELTA = 0.02   # R^2 differences up to this are ties (about the spread between seeds of a probe)


def h_latent_best(c: Ctx):
    """Rule: verified when the Ridge probe on the team's best extraction (enc_pre_latent, mean over 8
    segments; encoder on flux, noise 1.0) is within LATENT_DELTA of the best Ridge cell of the grid."""
    from core.analysis import latent
    from core.engine.suites import latent as suite_latent
    g = latent.grid(c.profile, c.dataset, c.con)
    d = g[(g["variant"] == "flux") & (g["noise"] == 1.0) & (g["label"] == "logg") & (g["probe"] == "ridge")
          & g["r2"].notna()]
    team = d[(d["layer"] == suite_latent.TEAM_BEST[0]) & (d["runs_as"] == suite_latent.TEAM_BEST[1])]
    if d.empty or team.empty:
        return "not run", Evidence([])
    best = d.loc[d["r2"].idxmax()]
    rt, rb = c.get_spec(team.iloc[0]["spec"]), c.get_spec(best["spec"])
    items = [("probe on enc_pre_latent + seg_mean_K8 @1", r2(rt), rt)]
    if rb.run_id != rt.run_id:
        items.append((f"best probe, {best['layer']} + {best['runs_as']} @1", r2(rb), rb))
    return ("verified" if r2(rb) - r2(rt) <= LATENT_DELTA else "refuted"), Evidence(items)


def h_finetune(c: Ctx):
    """Rule: verified when the fine-tuned encoder + head beats the frozen encoder + the same head
    (enc_pre_latent, whole map) by more than LATENT_DELTA at noise 1.0."""
    p = {"encoder": "flux", "encoder_noise": 1.0, "layer": "enc_pre_latent", "pooling": "flat"}
    fz, ft = c.get("blindspot_head", 1.0, inputs="flux", **p), c.get("blindspot_finetune", 1.0, inputs="flux", **p)
    if fz is None or ft is None:
        return "not run", Evidence([])
    return ("verified" if r2(ft) - r2(fz) > LATENT_DELTA else "refuted"), Evidence([("fine-tuned @1", r2(ft), ft),
                                                                                   ("frozen @1", r2(fz), fz)])


HYPOTHESES: list[tuple[str, dict, Callable]] = [
    ("metadata", {"en": "Metadata (Teff + [M/H]) cannot predict log g", "zh": "元数据（Teff + [M/H]）无法预测 log g"}, h_metadata),
    ("lightgbm", {"en": "LightGBM is the best method at noise 1.0", "zh": "LightGBM 在 noise=1.0 下最优"}, h_lgbm_best_high_noise),
    ("dilation", {"en": "Dilation 2 is the best dilation of the CNN", "zh": "dilation=2 是最佳膨胀率"}, h_dilation2),
    ("topk", {"en": "K = 256 windows beat K = 512", "zh": "K=256 优于 K=512"}, h_k256),
    ("transformer", {"en": "The window CNN is far better than the window transformer", "zh": "窗口 CNN 远优于 Transformer"},
     h_cnn_over_transformer),
    ("global", {"en": "Global features collapse at noise 1.0", "zh": "全局特征在 noise=1.0 下失效"}, h_global_collapse),
    ("error", {"en": "The error vector alone predicts log g", "zh": "误差向量本身即可预测 log g"}, h_error_shortcut),
    ("r2_half", {"en": "R² >= 0.50 is reachable at noise 1.0", "zh": "noise=1.0 下可达 R² >= 0.50"}, h_half_at_high_noise),
    ("fusion", {"en": "Two-tower fusion beats both towers", "zh": "双塔融合优于单塔"}, h_fusion),
    ("ceiling", {"en": "No learned model beats the physics ceiling", "zh": "没有模型超过物理上限"}, h_ceiling),
    ("latent", {"en": "enc_pre_latent with 8-segment means is the best latent extraction for log g",
                "zh": "enc_pre_latent + 8 段均值是 log g 的最佳潜在表示提取方式"}, h_latent_best),
    ("finetune", {"en": "Fine-tuning the encoder beats freezing it", "zh": "微调 encoder 优于冻结"}, h_finetune),
]

OPEN_QUESTIONS = [
    ({"en": "Two-tower fusion: concat or FiLM?", "zh": "双塔融合：concat 还是 FiLM？"}, "fusion"),
    ({"en": "Does log g information come from the flux or from the error vector?", "zh": "log g 信息来自 flux 还是误差向量？"}, "error"),
    ({"en": "How to reach R² >= 0.50 at noise 1.0?", "zh": "如何在 noise=1.0 下达到 R² >= 0.50？"}, "r2_half"),
    ({"en": "Why does K = 256 beat K = 512? Is there a principled K?", "zh": "为何 K=256 优于 K=512？是否存在原则性的 K？"}, "topk"),
    ({"en": "Why do global features collapse at noise 1.0?", "zh": "全局特征为何在 noise=1.0 下失效？"}, "global"),
    ({"en": "Why does dilation 2 match the line width?", "zh": "为何 dilation=2 与谱线宽度匹配？"}, "dilation"),
    ({"en": "Fine-tuning the encoder instead of freezing it", "zh": "微调 encoder 而非冻结"}, "finetune"),
]


def evaluate(profile: str = "quick", dataset: str | None = None, con=None) -> tuple[list[dict], Ctx]:
    c = Ctx(profile, dataset, con)
    out = []
    for key, text, rule in HYPOTHESES:
        verdict, ev = rule(c)
        finished = [registry.get(c.con, r.run_id)["finished"] for r in ev.runs()]
        out.append({"key": key, "text": text, "verdict": verdict, "evidence": ev, "rule": (rule.__doc__ or "").strip(),
                    "latest": max(finished) if finished else None})
    return out, c


def build(profile: str = "quick", dataset: str | None = None, since: str | None = None, lang: str = "en", con=None) -> str:
    if lang not in ("en", "zh"):
        raise ValueError("lang must be en or zh")
    hyps, c = evaluate(profile, dataset, con)
    L = []
    L.append(f"# {H['title'][lang]}")
    L.append("")
    L.append(f"> **{H['generated'][lang]}:** {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}  ")
    L.append(f"> **{H['data'][lang]}:** `{c.dataset}` (profile `{profile}`)" + (f"  \n> **{H['since'][lang]}:** {since}" if since else ""))
    L.append("")
    L.append(f"## {H['conclusions'][lang]}")
    L.append("")
    for h in hyps:
        v = VERDICT_WORDS[h["verdict"]][lang]
        ev = h["evidence"].text()
        L.append(f"- **{h['text'][lang]}**: {v}" + (f". {ev}" if ev else ""))
    L.append("")
    L.append(f"## {H['matrix'][lang]}")
    for n in config.NOISE_LEVELS:
        L.append("")
        L.append(f"### {H['noise'][lang]} = {n:g}")
        L.append("")
        L.append(f"| {H['method'][lang]} | {H['ours'][lang]} R² | MAE [dex] | run | {H['team'][lang]} R² |")
        L.append("|---|---|---|---|---|")
        for lab, m, p in suites.REPORT_ROWS + [(suites.CEILING_LABEL, "likelihood_ceiling", {})]:
            r = c.get(m, n, **p)
            t = team_r2(m, n, p)
            ours = f"{r.metrics['r2']:.3f}" if r else "-"
            mae = f"{r.metrics['mae']:.3f}" if r else "-"
            L.append(f"| {lab} | {ours} | {mae} | {r.run_id if r else '-'} | {f'{t:.3f}' if t is not None else '-'} |")
    L.append("")
    L.append(f"## {H['hypotheses'][lang]}")
    L.append("")
    L.append(f"| {H['hyp'][lang]} | {H['verdict'][lang]} | {H['evidence'][lang]} | {H['rule'][lang]} |")
    L.append("|---|---|---|---|")
    for h in hyps:
        L.append(f"| {h['text'][lang]} | {VERDICT_WORDS[h['verdict']][lang]} | {h['evidence'].text() or '-'} | {h['rule']} |")
    L.append("")
    L.append(f"## {H['open'][lang]}")
    L.append("")
    by_key = {h["key"]: h for h in hyps}
    for q, key in OPEN_QUESTIONS:
        h = by_key.get(key)
        if h is None or h["verdict"] in ("not run", "inconclusive"):
            status = "open" if lang == "en" else "待解决"
        else:
            status = ("answered" if lang == "en" else "已回答") + f" ({VERDICT_WORDS[h['verdict']][lang]})"
            if since and h["latest"] and h["latest"] >= since:
                status += " - " + ("new since " if lang == "en" else "新近回答，自 ") + since
        L.append(f"- {q[lang]}: **{status}**")
    L.append("")
    L.append(f"## {H['index'][lang]}")
    L.append("")
    L.append("| run | model | params | inputs | noise | R² | finished |")
    L.append("|---|---|---|---|---|---|---|")
    for rid, r in sorted(c.used.items(), key=lambda kv: (kv[1].spec["model"], kv[1].spec["noise_level"])):
        row = registry.get(c.con, rid)
        ps = ", ".join(f"{k}={v}" for k, v in r.spec["params"].items()) or "-"
        L.append(f"| {rid} | {r.spec['model']} | {ps} | {r.spec['inputs']} | {r.spec['noise_level']:g} | "
                 f"{r.metrics['r2']:.3f} | {row['finished']} |")
    return "\n".join(L) + "\n"


def numbers_with_runs(md: str) -> list[tuple[float, str]]:
    """(R^2, run id) pairs the digest states, for checking them against the registry."""
    import re
    out = [(float(v), rid) for v, rid in re.findall(r"R² = (-?\d+\.\d+) \(run ([0-9a-f]{16})\)", md)]
    for line in md.splitlines():
        m = re.match(r"\| [^|]+ \| (-?\d+\.\d+) \| -?\d+\.\d+ \| ([0-9a-f]{16}) \|", line)
        if m:
            out.append((float(m.group(1)), m.group(2)))
    return out


def frame(profile: str = "quick", dataset: str | None = None) -> pd.DataFrame:
    hyps, _ = evaluate(profile, dataset)
    return pd.DataFrame([{"hypothesis": h["text"]["en"], "verdict": h["verdict"], "evidence": h["evidence"].text()}
                         for h in hyps])
