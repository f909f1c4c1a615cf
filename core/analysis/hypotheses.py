"""The group's hypotheses and the rules that judge them from the registry's runs.

Each hypothesis carries its rule here, next to its text, with its threshold (a module constant); a
rule decides on one statistic of the runs (a gap, a fraction, a level), stated with its combined error
sqrt(SE_boot^2 + sd_seed^2) and judged by core/analysis/verdicts.py: inconclusive when the statistic
minus its threshold is inside 2 combined errors. A rule whose runs are missing says "not run", never
guesses. `evaluate(profile, dataset)` runs every rule; the digest (digest.py), the Summary and each
result page's conclusion (conclusions.py) read its answers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from core import config
from core.analysis import verdicts
from core.analysis.verdicts import Arm, as_arm, judge
from core.engine import registry, suites, train

VERDICT_WORDS = {"verified": {"en": "verified", "zh": "已验证"}, "refuted": {"en": "refuted", "zh": "被否定"},
                 "inconclusive": {"en": "inconclusive (within 2 combined errors)", "zh": "无定论（差异在 2 个合并误差内）"},
                 "not run": {"en": "not run", "zh": "未运行"}}

# thresholds of the rules (each rule's docstring names the one it uses)
META_R2 = 0.05          # metadata baselines "cannot predict" below this R^2
TRANSFORMER_GAP = 0.05  # "far better": the window CNN ahead of the transformer by more than this
GLOBAL_KEEP = 0.60      # "collapse": keeping less than this fraction of the noise-0.1 R^2 at noise 1.0
ERROR_R2 = 0.5          # the error vector alone "predicts log g" above this R^2
HALF_R2 = 0.5           # the R^2 the group wants at noise 1.0
LATENT_DELTA = 0.02     # R^2 differences up to this are ties (latent extraction), the margin of fine-tuning



@dataclass
class Evidence:
    """Our numbers behind one verdict: arms (labelled), the statistic the verdict rests on with its
    uncertainty, the threshold, and further notes with their own arms (controls, models left out)."""
    items: list
    stat: str = ""
    threshold: str = ""
    more: list = field(default_factory=list)   # (note, [Arm]) pairs

    @staticmethod
    def _arms(arms, refs) -> str:
        return "; ".join(f"{a.label} R² = {a.fmt()}" + (f" [{refs[a.run_id]}]" if refs and a.run_id in refs else "")
                         for a in arms)

    def text(self, refs: dict | None = None) -> str:
        out = self._arms(self.items, refs)
        for note, arms in self.more:
            out += (". " if out else "") + note + (": " + self._arms(arms, refs) if arms else "")
        return out

    def arms(self) -> list:
        return list(self.items) + [a for _, arms in self.more for a in arms]

    def runs(self) -> list:
        return [r for a in self.arms() for r in a.runs]


class Ctx:
    """Looks up finished results of specs for one profile and data set, each as an Arm: the spec's run and
    its training replicates."""

    def __init__(self, profile: str, dataset: str | None, con=None):
        self.profile, self.dataset = profile, dataset or config.profile(profile)["dataset"]
        self.con = con or registry.connect()
        self.used: dict[str, Arm] = {}
        self._memo: dict[str, Arm | None] = {}
        done = registry.runs(self.con, status="done", dataset=self.dataset)
        self.max_replicate = max([int(r["spec"].get("replicate", 0) or 0) for r in done] + [0])

    def get(self, model: str, noise: float, inputs: str | None = None, **params) -> Arm | None:
        s = {"model": model, "params": params, "noise_level": noise, "profile": self.profile,
             "dataset": self.dataset, "seed": 0}
        if inputs:
            s["inputs"] = inputs
        return self.get_spec(s)

    def get_spec(self, spec: dict) -> Arm | None:
        key = json.dumps(spec, sort_keys=True, default=str)
        if key not in self._memo:
            r = train.cached_result(spec, con=self.con)
            arm = None
            if r is not None:
                reps = [train.cached_result(dict(spec, replicate=k), con=self.con)
                        for k in range(1, self.max_replicate + 1)]
                from models import MODELS
                fixed = not getattr(MODELS.get(spec.get("model")), "seed_dependent", True)   # no seed in its fit
                arm = Arm("", [r] + [x for x in reps if x is not None], fixed=fixed)
            self._memo[key] = arm
        arm = self._memo[key]
        if arm is not None:
            self.used[arm.run_id] = arm
        return arm


def r2(r) -> float | None:
    return None if r is None else as_arm(r).r2


def r2_gap(a, b, n_boot: int = 300, seed: int = 0) -> tuple[float, float]:
    """R^2(a) - R^2(b) (means over replicates) and the paired bootstrap SE of that gap over the test
    stars (0 when the predictions are not stored)."""
    e = verdicts.gap(as_arm(a), as_arm(b), n_boot=n_boot, seed=seed)
    return e.value, e.se_boot or 0.0


def better(a, b) -> int:
    """+1 when a beats b by more than 2 combined errors in R^2, -1 when b beats a so, else 0."""
    return {"verified": 1, "refuted": -1, "inconclusive": 0}[judge(verdicts.gap(as_arm(a), as_arm(b)), 0.0)]


def _a(x, label: str = "") -> Arm | None:
    """x as an Arm labelled with its method's human name and noise level ("Ridge @1"), unless `label` says."""
    a = as_arm(x)
    if a is not None and not label:
        spec = a.runs[0].spec
        label = f"{suites.row_label(spec)} @{spec['noise_level']:g}"
    return as_arm(a, label) if a is not None else None


def _learned(c, noise: float) -> list[tuple[str, str, Arm]]:
    """(label, model, arm) of the report suite's learned models that have run at this noise level."""
    out = [(lab, m, _a(c.get(m, noise, **p), f"{lab} @{noise:g}")) for lab, m, p in suites.REPORT_ROWS
           if not m.startswith("metadata")]
    return [(lab, m, a) for lab, m, a in out if a is not None]


def _best(arms: list) -> Arm:
    return max(arms, key=lambda a: a.r2)


def _short(a: Arm) -> str:
    return a.label.rsplit(" @", 1)[0]


# --------------------------------------------------------------------------- hypotheses and their rules
def h_metadata(c: Ctx):
    """Rule: each metadata baseline's R^2 < META_R2 (0.05) at every noise level: verified when every one is
    below by more than 2 combined errors, refuted when one is above so; inconclusive otherwise."""
    arms = [a for m in ("metadata_ridge", "metadata_lgbm") for n in config.NOISE_LEVELS
            for a in [_a(c.get(m, n))] if a]
    if len(arms) < 4:
        return "not run", Evidence(arms)
    ests = [verdicts.level(a) for a in arms]
    vs = [judge(e, META_R2, above=False) for e in ests]
    verdict = "refuted" if "refuted" in vs else "verified" if all(v == "verified" for v in vs) else "inconclusive"
    hi = max(range(len(arms)), key=lambda i: ests[i].value)
    return verdict, Evidence(arms, ests[hi].describe(f"highest R² ({arms[hi].label})"), f"R² < {META_R2} (each)")


def _best_of(target: Arm, others: list, name: str):
    other = _best(others)
    est = verdicts.gap(target, other)
    return judge(est, 0.0), est.describe(f"gap {name} − {_short(other)}"), other


def h_lgbm_best_high_noise(c: Ctx):
    """Rule: LightGBM minus the best other learned model of the report suite at noise 1.0 (threshold 0):
    verified when LightGBM leads by more than 2 combined errors, refuted when the other leads so."""
    rs = _learned(c, 1.0)
    lg = [a for lab, _, a in rs if lab == "LightGBM"]
    if not lg or len(rs) < 3:
        return "not run", Evidence([])
    verdict, stat, other = _best_of(lg[0], [a for lab, _, a in rs if lab != "LightGBM"], "LightGBM")
    return verdict, Evidence([lg[0], other], stat, "gap > 0")


def h_dilation2(c: Ctx):
    """Rule: the dilated CNN with d = 2 minus the best of d = 1, 4, 8 at noise 0.1 (threshold 0): verified
    when d = 2 leads by more than 2 combined errors, refuted when another dilation leads so."""
    rs = {d: _a(c.get("dilated_cnn", 0.1, dilation=d)) for d in (1, 2, 4, 8)}
    if any(v is None for v in rs.values()):
        return "not run", Evidence([v for v in rs.values() if v])
    verdict, stat, _ = _best_of(rs[2], [v for d, v in rs.items() if d != 2], "d=2")
    return verdict, Evidence(list(rs.values()), stat, "gap > 0")


def h_k256(c: Ctx):
    """Rule: the top-K window CNN (coefficient criterion) with K = 256 minus K = 512 at noise 0.1 (threshold
    0): verified when K = 256 leads by more than 2 combined errors, refuted when K = 512 leads so."""
    a = _a(c.get("topk_cnn", 0.1, K=256, criterion="ridge"), "K=256 (coefficient criterion) @0.1")
    b = _a(c.get("topk_cnn", 0.1, K=512, criterion="ridge"), "K=512 (coefficient criterion) @0.1")
    if a is None or b is None:
        return "not run", Evidence([x for x in (a, b) if x])
    est = verdicts.gap(a, b)
    return judge(est, 0.0), Evidence([a, b], est.describe("gap K=256 − K=512"), "gap > 0")


def h_cnn_over_transformer(c: Ctx):
    """Rule: the window CNN minus the window transformer (K = 256) at noise 0.1 against TRANSFORMER_GAP (0.05):
    verified when gap − 0.05 > 2 combined errors, refuted when gap − 0.05 < −2 combined errors."""
    a = _a(c.get("topk_cnn", 0.1, K=256))
    b = _a(c.get("topk_transformer", 0.1, K=256))
    if a is None or b is None:
        return "not run", Evidence([])
    est = verdicts.gap(a, b)
    return judge(est, TRANSFORMER_GAP), Evidence([a, b], est.describe("gap"), f"gap > {TRANSFORMER_GAP}")


def h_global_collapse(c: Ctx):
    """Rule: the global-feature MLP's R^2 at noise 1.0 as a fraction of its R^2 at noise 0.1, against
    GLOBAL_KEEP (60 %): verified when below it by more than 2 combined errors, refuted when above so."""
    a, b = _a(c.get("global_mlp", 0.1)), _a(c.get("global_mlp", 1.0))
    if a is None or b is None:
        return "not run", Evidence([])
    est = verdicts.fraction(a, b)
    return judge(est, GLOBAL_KEEP, above=False), Evidence([a, b], est.describe("kept", pct=True),
                                                          f"kept < {100 * GLOBAL_KEEP:.0f} %")


def h_error_shortcut(c: Ctx):
    """Rule: the best R^2 of Ridge or LightGBM on the clean error vector alone at noise 1.0 against ERROR_R2
    (0.5): verified when above it by more than 2 combined errors, refuted when below so. The control (the
    error shuffled across stars, suite error_ablation) must stay below 0.5, else the verdict is inconclusive."""
    arms = [a for m in ("ridge", "lightgbm") for a in [_a(c.get(m, 1.0, inputs="error"))] if a]
    if not arms:
        return "not run", Evidence([])
    best = _best(arms)
    est = verdicts.level(best)
    verdict = judge(est, ERROR_R2)
    shuffled = [a for m in ("ridge", "lightgbm")
                for a in [_a(c.get(m, 1.0, inputs="error_shuffled"))] if a]
    swapped = _a(c.get("ridge", 1.0, inputs="error_swapped"))
    more = []
    if shuffled:
        ctrl = verdicts.level(_best(shuffled))
        note = "control, the error shuffled across stars (" + ctrl.describe("best R²") + ")"
        if verdict == "verified" and judge(ctrl, ERROR_R2, above=False) != "verified":
            verdict, note = "inconclusive", note + ", is not clearly below the threshold either"
        more.append((note, shuffled + ([swapped] if swapped else [])))
    else:
        more.append(("control (error shuffled across stars, suite error_ablation): not run", [swapped] if swapped else []))
    f, fe, fs = (_a(c.get("dilated_cnn", 1.0, inputs=i, dilation=2))
                 for i in ("flux", "flux+error", "flux+error_shuffled"))
    if f and fe and fs:
        more.append(("does a flux model use the error? " + verdicts.gap(fe, f).describe("flux+error − flux") + "; "
                     + verdicts.gap(fe, fs).describe("flux+error − flux+shuffled error"), [f, fe, fs]))
    else:
        more.append(("does a flux model use the error (dilated CNN on flux, flux + error, flux + shuffled error)? "
                     "not run", []))
    return verdict, Evidence(arms, est.describe(f"R² ({_short(best)})"), f"R² > {ERROR_R2}", more)


def h_half_at_high_noise(c: Ctx):
    """Rule: the best learned model of the report suite at noise 1.0 against HALF_R2 (0.5): verified when
    above it by more than 2 combined errors, refuted when below so."""
    rs = _learned(c, 1.0)
    if not rs:
        return "not run", Evidence([])
    best = _best([a for _, _, a in rs])
    est = verdicts.level(best)
    return judge(est, HALF_R2), Evidence([best], est.describe(f"R² ({_short(best)})"), f"R² >= {HALF_R2}")


def h_fusion(c: Ctx):
    """Rule: the best two-tower fusion minus the better single tower (global MLP, window CNN) at noise 1.0
    (threshold 0): verified when the fusion leads by more than 2 combined errors, refuted when the tower
    leads so."""
    g, t = _a(c.get("global_mlp", 1.0)), _a(c.get("topk_cnn", 1.0, K=256))
    fs = [a for m in ("fusion_concat", "fusion_film") for a in [_a(c.get(m, 1.0))] if a]
    if g is None or t is None or not fs:
        return "not run", Evidence([])
    f = _best(fs)
    tower = g if g.r2 >= t.r2 else t
    est = verdicts.gap(f, tower)
    return judge(est, 0.0), Evidence([f, g, t], est.describe(f"gap {_short(f)} − {_short(tower)}"), "gap > 0")


def h_ceiling(c: Ctx):
    """Rule: the likelihood ceiling minus the best learned flux-only model of the report suite at noise 1.0
    (threshold 0): verified when the ceiling leads by more than 2 combined errors, refuted when the model
    leads so. Models that read the error vector are not bounded by this flux-only ceiling (it fits the flux,
    the error only as its noise model) and are reported apart."""
    from models import MODELS
    ceil = _a(c.get("likelihood_ceiling", 1.0, **suites.ceiling_params(c.profile, c.dataset)))
    rs = _learned(c, 1.0)
    flux = [a for _, m, a in rs if MODELS[m].inputs == "flux"]
    if ceil is None or not flux:
        return "not run", Evidence([])
    best = _best(flux)
    est = verdicts.gap(ceil, best)
    apart = [a for _, m, a in rs if MODELS[m].inputs != "flux"] + \
        [a for m in ("ridge", "lightgbm") for a in [_a(c.get(m, 1.0, inputs="error"))] if a]
    more = [("models that read the error vector, not bounded by a flux-only ceiling and left out", apart)] if apart else []
    return judge(est, 0.0), Evidence([ceil, best], est.describe(f"gap ceiling − {_short(best)}"), "gap > 0", more)


def h_latent_best(c: Ctx):
    """Rule: the best Ridge probe cell of the latent grid minus the probe on the team's best extraction
    (enc_pre_latent, mean over 8 segments; encoder on flux, noise 1.0), against LATENT_DELTA (0.02):
    verified when the gap is below 0.02 by more than 2 combined errors, refuted when above it so."""
    from core.analysis import latent
    from core.engine.suites import latent as suite_latent
    g = latent.grid(c.profile, c.dataset, c.con)
    d = g[(g["variant"] == "flux") & (g["noise"] == 1.0) & (g["label"] == "logg") & (g["probe"] == "ridge")
          & g["r2"].notna()]
    team = d[(d["layer"] == suite_latent.TEAM_BEST[0]) & (d["runs_as"] == suite_latent.TEAM_BEST[1])]
    if d.empty or team.empty:
        return "not run", Evidence([])
    if d[["layer", "runs_as"]].drop_duplicates().shape[0] < 2:   # only the team's own cell (error_ablation's
        return "not run", Evidence([_a(c.get_spec(team.iloc[0]["spec"]),    # probe): nothing to compare it with
                                       "Ridge probe of the encoder's enc_pre_latent, 8-segment means @1")])
    best = d.loc[d["r2"].idxmax()]
    rt = _a(c.get_spec(team.iloc[0]["spec"]), "Ridge probe of the encoder's enc_pre_latent, 8-segment means @1")
    rb = _a(c.get_spec(best["spec"]), f"best Ridge probe, {best['layer']} + {best['runs_as']} @1")
    if rt is None or rb is None:
        return "not run", Evidence([])
    items = [rt] + ([rb] if rb.run_id != rt.run_id else [])
    est = verdicts.gap(rb, rt)
    return judge(est, LATENT_DELTA, above=False), Evidence(items, est.describe("gap best − team's"),
                                                           f"gap < {LATENT_DELTA}")


def h_finetune(c: Ctx):
    """Rule: the fine-tuned encoder + head minus the frozen encoder + the same head (enc_pre_latent, whole
    map) at noise 1.0, against LATENT_DELTA (0.02): verified when gap − 0.02 > 2 combined errors, refuted
    when gap − 0.02 < −2 combined errors."""
    p = {"encoder": "flux", "encoder_noise": 1.0, "layer": "enc_pre_latent", "pooling": "flat"}
    fz = _a(c.get("blindspot_head", 1.0, inputs="flux", **p), "frozen encoder + head @1")
    ft = _a(c.get("blindspot_finetune", 1.0, inputs="flux", **p), "fine-tuned encoder + head @1")
    if fz is None or ft is None:
        return "not run", Evidence([])
    est = verdicts.gap(ft, fz)
    return judge(est, LATENT_DELTA), Evidence([ft, fz], est.describe("gap"), f"gap > {LATENT_DELTA}")


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
        out.append({"key": key, "text": text, "verdict": verdict, "evidence": ev, "rule": " ".join((rule.__doc__ or "").split()),
                    "stat": ev.stat, "threshold": ev.threshold, "latest": max(finished) if finished else None})
    return out, c



def frame(profile: str = "quick", dataset: str | None = None) -> pd.DataFrame:
    hyps, _ = evaluate(profile, dataset)
    return pd.DataFrame([{"hypothesis": h["text"]["en"], "verdict": h["verdict"], "statistic": h["stat"],
                          "threshold": h["threshold"], "evidence": h["evidence"].text()} for h in hyps])
