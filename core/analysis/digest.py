"""The meeting digest: the group's report, written from live numbers in the registry, short enough to paste.

`build(profile, dataset, since, lang)` returns Markdown (English or Chinese) in the shape of the group's own
report, under 80 lines: what to read first (which data set, how many spectra and training seeds, how the
verdicts weigh errors), the headline (the best predictor at each noise level with its error and its share of
the physics ceiling, the largest differences from the team), the hypotheses with computed verdicts (the rules:
core/analysis/hypotheses.py), one performance matrix for both noise levels with the team's numbers beside
ours, open questions, and a footnote with the id of every run behind a number. A number of ours is the mean
over a spec's training replicates (`train --seeds N`), with its sd and N when there are several, and carries a
reference [rN] into that footnote. digest_html.py renders the same document as HTML with its key charts.
"""
from __future__ import annotations

import datetime as _dt
import json
import re

import pandas as pd

from core import config
from core.analysis import breakdown, conclusions
from core.analysis.hypotheses import OPEN_QUESTIONS, VERDICT_WORDS, Ctx, evaluate
from core.analysis.reference import REPORT_LABEL, team_r2
from core.engine import suites

H = {
    "title": {"en": "log g experiments: meeting digest", "zh": "log g 实验：会议摘要"},
    "generated": {"en": "Generated", "zh": "生成时间"},
    "data": {"en": "Data set", "zh": "数据集"},
    "caveats": {"en": "Read this first", "zh": "阅读须知"},
    "conclusions": {"en": "Core conclusions", "zh": "核心结论汇总"},
    "matrix": {"en": "Performance matrix", "zh": "性能矩阵"},
    "noise": {"en": "noise level", "zh": "噪声水平"},
    "hypotheses": {"en": "Hypotheses and verdicts", "zh": "假设验证"},
    "open": {"en": "Open questions", "zh": "待解决问题"},
    "index": {"en": "Runs behind each reference", "zh": "各编号对应的运行"},
    "index_note": {"en": "a reference with several ids is the mean over those training replicates",
                   "zh": "有多个编号的引用是这些训练副本的均值"},
    "headline": {"en": "The answer", "zh": "结论"},
    "beyond": {"en": "Beyond the team's questions", "zh": "团队报告之外的问题"},
    "team_diff": {"en": "Largest differences from the team's report", "zh": "与团队报告差异最大的结果"},
    "no_team": {"en": "no method with a team number has run yet", "zh": "尚无可与团队报告比较的结果"},
    "no_best": {"en": "no learned method of the report suite has run yet: `python -m core train --suite report`",
                "zh": "报告套件的模型尚未运行：`python -m core train --suite report`"},
    "method": {"en": "method", "zh": "方法"},
    "ours": {"en": "ours", "zh": "我们"},
    "team": {"en": REPORT_LABEL, "zh": "团队报告 2025-12-01"},
    "hyp": {"en": "hypothesis", "zh": "假设"},
    "verdict": {"en": "verdict", "zh": "结论"},
    "stat": {"en": "statistic ± combined error", "zh": "统计量 ± 合并误差"},
    "threshold": {"en": "threshold", "zh": "阈值"},
    "evidence": {"en": "evidence", "zh": "证据"},
    "rule": {"en": "rule", "zh": "规则"},
    "status": {"en": "status", "zh": "状态"},
    "since": {"en": "answered since", "zh": "新近回答（自）"},
    "by_snr": {"en": "RMSE @1 by S/N quartile, Q1 → Q4", "zh": "noise 1 下按信噪比四分位的 RMSE，Q1 → Q4"},
    "of_ceil": {"en": "÷ ceiling's @1, Q1 → Q4", "zh": "noise 1 下 ÷ 上限，Q1 → Q4"},
    "snr_note": {"en": "RMSE, bias, slope (of predicted on true log g): means over the seeds (± sd with several). "
                       "By S/N quartile: the test stars in four S/N bins, the same for every method (Q1 lowest S/N); "
                       "÷ ceiling's: that RMSE over the likelihood ceiling's RMSE on the same stars. RMSE in dex. "
                       "`python -m core report --by snr|logg` gives both noise levels, every cell ± its sd.",
                 "zh": "RMSE、偏差、斜率（预测对真实 log g 的斜率）：种子间的均值（多个种子时 ± 标准差）。按信噪比四分位："
                       "测试星按信噪比分为四组，所有方法相同（Q1 信噪比最低）；÷ 上限：该 RMSE 除以似然上限在同一批星上的 RMSE。"
                       "RMSE 单位为 dex。`python -m core report --by snr|logg` 给出两个噪声水平下每格的均值 ± 标准差。"},
    "bias": {"en": "bias @1", "zh": "noise 1 下偏差"},
    "slope": {"en": "slope @1", "zh": "noise 1 下斜率"},
}
RUN_ID = re.compile(r"\b[0-9a-f]{16}\b")


def _cell(s) -> str:
    """Text that keeps a Markdown table row one row: no line breaks, '|' escaped."""
    return " ".join(str(s).split()).replace("|", "\\|") or "-"


def _row(cells) -> str:
    return "| " + " | ".join(_cell(x) for x in cells) + " |"


def _caveats(c: Ctx, profile: str, lang: str) -> list[str]:
    """What the numbers are and are not: the data set, its spectra, the training seeds, how errors count."""
    from core.data import DataError, Dataset
    try:
        ds = Dataset(c.dataset)
        info = ds.info()
        n_tr, n_va, n_te = (int(info.get(f"{k} split", 0)) for k in ("train", "val", "test"))
        cap = config.profile(profile).get("max_train")
        used = min(n_tr, cap) if cap else n_tr
        src = str(ds.attrs.get("source", ""))
        desc = str(ds.attrs.get("description", "")) or src
    except (DataError, OSError, ValueError):
        n_tr = n_va = n_te = used = 0
        src = desc = "not found"
    sim = src == "simulator"
    ns = [a.n for a in c.used.values()]
    multi, single = sum(n > 1 for n in ns), sum(n == 1 for n in ns)
    seeds = sorted({n for n in ns if n > 1})
    if lang == "zh":
        return [
            f"- **数据：** `{c.dataset}`（{desc}；来源 `{src}`）。训练 {used:,} 条光谱（共 {n_tr:,}）/ 验证 {n_va:,} / 测试 {n_te:,}。"
            + ("这是我们的模拟数据，不是团队的数据：团队一栏引自其报告（他们自己的数据），请比较趋势而非具体数字。" if sim else
               "这是导入的网格：与团队报告比较数字前，请确认它与报告所用的数据相同。"),
            f"- **训练种子：** 本摘要的 {len(ns)} 个数字中，{multi} 个是 {'/'.join(map(str, seeds)) or '-'} 个训练副本的均值"
            f"（副本共享数据与测试噪声），{single} 个只有一次运行（训练离散度未知）。`python -m core train --suite S --seeds N` 可增加副本。",
            f"- **误差：** 每个差异都给出合并误差 sqrt(SE_boot² + sd_seed²)：SE_boot 是在同一批 {n_te:,} 颗测试星上的配对 bootstrap，"
            "sd_seed 是训练种子间的离散（均值之差的 Welch 误差）。统计量减去阈值在 2 个合并误差以内即为无定论。",
            "- **规则与编号：** 每条假设的规则及阈值写在 core/analysis/hypotheses.py 中；[rN] 指向文末脚注，其中列出每个数字背后的全部运行。",
        ]
    return [
        f"- **Data:** `{c.dataset}` ({desc}; source `{src}`): {used:,} training spectra (of {n_tr:,}) / {n_va:,} "
        f"validation / {n_te:,} test. " + (
            "These are our simulated data, not the team's: the team column quotes their report on their own data, "
            "so compare directions, not digits." if sim else
            "An imported grid: check it is the data of the team's report before comparing digits."),
        f"- **Training seeds:** of the {len(ns)} numbers in this digest, {multi} are means over "
        f"{'/'.join(map(str, seeds)) or '-'} training replicates (replicates share the data and the test noise) and "
        f"{single} rest on a single run, their training spread unknown. "
        "`python -m core train --suite S --seeds N` adds replicates.",
        f"- **Errors:** every difference is stated ± its combined error sqrt(SE_boot² + sd_seed²): SE_boot is the "
        f"paired bootstrap over the same {n_te:,} test stars, sd_seed the spread over training seeds (the Welch error "
        "of a difference of replicate means). A verdict needs the statistic minus its threshold beyond 2 combined "
        "errors; inside them it reads inconclusive.",
        "- **Rules and run ids:** each hypothesis's rule and threshold are written next to it in "
        "core/analysis/hypotheses.py; [rN] points to the footnote, which lists every run behind a number.",
    ]


def build(profile: str = "quick", dataset: str | None = None, since: str | None = None, lang: str = "en", con=None) -> str:
    if lang not in ("en", "zh"):
        raise ValueError("lang must be en or zh")
    hyps, c = evaluate(profile, dataset, con)
    rows = suites.REPORT_ROWS + [(suites.CEILING_LABEL, "likelihood_ceiling", suites.ceiling_params(profile, c.dataset))]
    noises = config.NOISE_LEVELS
    cells = [(lab, m, p, [c.get(m, n, **p) for n in noises]) for lab, m, p in rows]
    order = sorted(c.used.values(), key=lambda a: (a.runs[0].spec["model"], a.runs[0].spec["noise_level"],
                                                  a.runs[0].spec["inputs"], json.dumps(a.runs[0].spec["params"], sort_keys=True)))
    refs = {a.run_id: f"r{i + 1}" for i, a in enumerate(order)}
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L = [f"# {H['title'][lang]}", "",
         f"> **{H['generated'][lang]}:** {when} · **{H['data'][lang]}:** `{c.dataset}` (profile `{profile}`)"
         + (f" · **{H['since'][lang]}:** {since}" if since else "")]
    L += ["", f"## {H['caveats'][lang]}", ""] + _caveats(c, profile, lang)
    L += ["", f"## {H['headline'][lang]}", ""] + _headline(profile, c, lang)
    L += ["", f"## {H['hypotheses'][lang]}", ""]
    L.append(_row([H[k][lang] for k in ("hyp", "verdict", "stat", "threshold", "evidence")]))
    L.append("|---|---|---|---|---|")
    for h in hyps:
        ev = h["evidence"]
        L.append(_row([h["text"][lang], VERDICT_WORDS[h["verdict"]][lang], ev.stat or "-", ev.threshold or "-",
                       ev.text(refs) or "-"]))
    L += ["", f"## {H['matrix'][lang]}", ""]
    by_snr = breakdown.table("report", profile, c.dataset, "snr", c.con)
    hi = max(noises)
    L.append(_row([H["method"][lang]] + [f"{H['ours'][lang]} R² @{n:g}" for n in noises]
                  + [f"RMSE @{n:g}" for n in noises]
                  + [H["by_snr"][lang], H["of_ceil"][lang], H["bias"][lang], H["slope"][lang],
                     f"{H['team'][lang]} R² " + " / ".join(f"@{n:g}" for n in noises)]))
    L.append("|" + "---|" * (1 + 2 * len(noises) + 5))
    for lab, m, p, arms in cells:
        top = arms[noises.index(hi)]
        team = [team_r2(m, n, p) for n in noises]
        L.append(_row([lab] + [f"{a.fmt(seeds_word='')} [{refs[a.run_id]}]" if a else "-" for a in arms]
                      + [_pm(a, "rmse") for a in arms]
                      + [*_quartiles(by_snr, top), _pm(top, "bias"), _slope(top),
                         " / ".join(f"{t:.3f}" if t is not None else "-" for t in team)]))
    if not by_snr.empty:
        L += ["", H["snr_note"][lang] + " " + breakdown.edges_text(by_snr[by_snr["noise"] == hi], "snr", all_col=False)]
    L += ["", f"## {H['beyond'][lang]}", ""] + _beyond(profile, c)
    L += ["", f"## {H['open'][lang]}", ""]
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
    foot = []
    for a in order:
        ids = ", ".join(f"`{r.run_id}`" for r in a.runs)
        spec = a.runs[0].spec
        foot.append(f"[{refs[a.run_id]}] {ids} ({suites.row_label(spec)} @{spec['noise_level']:g})")
    L += ["", "---", "", f"{H['index'][lang]} ({H['index_note'][lang]}): " + ("; ".join(foot) or "-") + "."]
    return "\n".join(L) + "\n"


def _beyond(profile: str, c: Ctx) -> list[str]:
    """Questions the team's report did not ask (English): how close a learned model gets to the physical limit
    and with how much data (learning.py, one line), how the predictors fare under the sky's nuisances
    (robustness.py, at most 4 lines) and which conclusions survive a change of simulator assumptions
    (transfer.py, at most 4). Cached evaluations only: the digest never fits or predicts."""
    from core.analysis import learning, robustness, robustness_ceiling, transfer
    lc = learning.conclusion(learning.table(profile, c.dataset, c.con), learning.ceiling_r2(profile, c.dataset, c.con))
    lead = ["- **How close to the physical limit, with how much data** (the `learning_curve` suite, noise 1.0): "
            + (lc if not lc.startswith("No learning-curve") else
               f"not run (`python -m core train --suite learning_curve --profile {profile}`).")]
    try:
        ceil = robustness_ceiling.rows(profile, c.dataset)          # the cache only
    except ValueError:                                              # no clean simulated data set
        ceil = None
    rob = robustness.digest_summary(profile, c.dataset, ceil).splitlines()
    out = lead + ([f"- {rob[0]}"] + [f"  {x}" for x in rob[1:3]] if rob else [])
    m = transfer.matrix(profile, c.dataset, c.con, compute=False)
    sentence = transfer.conclusion(m).replace("compute the transfer cells below", "the Transfer page computes them")
    out.append("- **Transfer across simulator assumptions** (core/analysis/transfer.py): " + sentence)
    if m.cells and transfer.claims(m) and "no model has been scored" not in sentence:
        out += [f"  {x}" for x in transfer.survival_lines(m)[:3]]
    return out


def _headline(profile: str, c: Ctx, lang: str) -> list[str]:
    """The best predictor at each noise level (± its errors, its share of the ceiling) and the largest
    differences from the team's report, as bullets (conclusions.py computes both; the sentences are English,
    the labels around them follow `lang`)."""
    best = conclusions.best_per_noise(profile, c.dataset, c.con)
    out = [f"- {conclusions.best_sentence(b)}" for b in best] or [f"- {H['no_best'][lang]}"]
    diffs = conclusions.team_differences(profile, c.dataset, n=3, con=c.con)
    items = [f"{r['method']} @{r['noise']:g}: {r['ours']} vs {r['team']} ({r['ours − team']})"
             for _, r in diffs.iterrows()]
    out.append(f"- {H['team_diff'][lang]}: " + ("; ".join(items) if items else H["no_team"][lang]) + ".")
    return out


def _pm(a, metric: str) -> str:
    """An arm's mean of a registry metric over its replicates, ± their sd with several."""
    if a is None:
        return "-"
    sd = a.sd(metric)
    return f"{a.mean(metric):.3f}" + (f" ± {sd:.3f}" if a.n > 1 and sd is not None else "")


def _quartiles(t: pd.DataFrame, a) -> tuple[str, str]:
    """('RMSE Q1 / Q2 / Q3 / Q4', 'the same over the ceiling's') of an arm, from breakdown.table (by S/N)."""
    if a is None or t.empty:
        return "-", "-"
    g = t[(t["run_id"] == a.run_id) & (t["bin"] != "all")]
    if g.empty:
        return "-", "-"
    ratio = " / ".join(f"{v:.2f}" for v in g["ratio"]) if "ratio" in g and g["ratio"].notna().all() else "-"
    return " / ".join(f"{v:.2f}" for v in g["rmse"]), ratio


def _slope(a) -> str:
    """The slope of predicted on true log g (breakdown.slope), mean ± sd over the arm's replicates."""
    if a is None:
        return "-"
    vals = []
    for r in a.runs:
        try:
            p = r.predictions()
        except (OSError, ValueError, KeyError, AttributeError):
            continue
        vals.append(breakdown.slope(p["y_true"], p["y_pred"]))
    m, sd, k = breakdown.mean_sd(vals)
    return "-" if not k else f"{m:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")


def index_section(md: str) -> tuple[str, str]:
    """(the digest before its footnote of run ids, the footnote)."""
    k = md.rfind("\n---\n")
    return (md[:k], md[k:]) if k >= 0 else (md, "")


def numbers_with_runs(md: str) -> list[tuple[float, tuple[str, ...]]]:
    """(R^2, run ids) for every R^2 of ours the digest states with a reference [rN]: the number is the mean
    R^2 of those runs (the ids the footnote lists for rN), for checking against the registry."""
    body, index = index_section(md)
    runs: dict[str, list[str]] = {}
    for m in re.finditer(r"\[(r\d+)\] ((?:`[0-9a-f]{16}`(?:, )?)+)", index):
        runs[m.group(1)] = re.findall(r"[0-9a-f]{16}", m.group(2))
    found = re.findall(r"(-?\d+\.\d+)(?: ± \d+\.\d+ \(\d+(?: seeds)?\))? \[(r\d+)\]", body)
    return [(float(v), tuple(runs.get(ref, ()))) for v, ref in found]
