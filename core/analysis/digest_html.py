"""The meeting digest as one self-contained HTML file for the meeting notes: the Markdown of digest.py
rendered (markdown-it-py, CommonMark with tables) and its key charts as inline PNG images (Vega-Lite
rendered by vl-convert-python, no browser needed).

    html = digest_html.build(profile, dataset, since=..., lang="en")   # str, one file, no external links

The charts: R² of every method of the report suite at each noise level (mean ± sd over training seeds,
the physics ceiling as a rule), and the RMSE per S/N quartile at the highest noise level for the best
learned methods and the ceiling. A chart that cannot be drawn (no runs, no renderer) is replaced by a
line saying why, never by a broken image.
"""
from __future__ import annotations

import base64
import html as _html

import altair as alt
import pandas as pd

from core import config
from core.analysis import breakdown, digest, report

CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;font-size:.85em;margin:.8em 0}th,td{border:1px solid #ccc;
padding:3px 6px;vertical-align:top}th{background:#f3f3f3}code{font-size:.85em;word-break:break-all}
img{max-width:100%;border:1px solid #eee}blockquote{color:#555;margin-left:0;padding-left:1em;border-left:3px solid #ddd}
.note{color:#777;font-style:italic}"""
CHART_WORDS = {"charts": {"en": "Key charts", "zh": "主要图表"},
               "r2": {"en": "R² of each method at each noise level (mean ± sd over training seeds; "
                            "dashed: the physics ceiling)",
                      "zh": "各方法在每个噪声水平下的 R²（训练种子间均值 ± 标准差；虚线：物理上限）"},
               "snr": {"en": "RMSE by S/N quartile at the highest noise level: the best learned methods and the ceiling",
                       "zh": "最高噪声水平下按信噪比四分位的 RMSE：最佳模型与物理上限"}}


def _markdown_to_html(md: str) -> str:
    from markdown_it import MarkdownIt
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(md)


def r2_chart(res: pd.DataFrame) -> alt.Chart | None:
    """R² per method (rows) at each noise level (colour), ± sd over seeds; the ceiling as a dashed rule."""
    res = res[res["r2"].notna()].copy()
    if res.empty:
        return None
    res["R²"] = res["r2_mean"].fillna(res["r2"])
    res["lo"] = res["R²"] - res["r2_sd"].fillna(0)
    res["hi"] = res["R²"] + res["r2_sd"].fillna(0)
    res["noise level"] = res["noise"].map(lambda n: f"{n:g}")
    res = res[["method", "model", "noise level", "R²", "lo", "hi"]].astype({"R²": float, "lo": float, "hi": float})
    learned = res[res["model"] != "likelihood_ceiling"]
    order = list(dict.fromkeys(learned.sort_values("R²", ascending=False)["method"]))
    y = alt.Y("method:N", sort=order, title=None)
    base = alt.Chart(learned)
    layers = [base.mark_rule().encode(y=y, x=alt.X("lo:Q", title="R² (test stars)", scale=alt.Scale(domain=[-0.1, 1.0])),
                                      x2="hi:Q", color="noise level:N"),
              base.mark_point(filled=True, size=50).encode(y=y, x="R²:Q", color="noise level:N",
                                                           tooltip=["method", "noise level", alt.Tooltip("R²:Q", format=".3f")])]
    ceil = res[res["model"] == "likelihood_ceiling"]
    if not ceil.empty:
        layers.append(alt.Chart(ceil).mark_rule(strokeDash=[5, 3]).encode(x="R²:Q", color="noise level:N"))
    return alt.layer(*layers).properties(width=700, height=22 * max(len(order), 4))


def snr_chart(t: pd.DataFrame, noise: float, n_best: int = 4) -> alt.Chart | None:
    """RMSE per S/N quartile at `noise` for the n_best learned methods (by RMSE over all stars) and the ceiling."""
    if t.empty or "bin" not in t:
        return None
    t = t[t["noise"] == noise]
    whole = t[(t["bin"] == "all") & (t["model"] != "likelihood_ceiling") & ~t["model"].str.startswith("metadata")]
    keep = list(whole.sort_values("rmse")["method"].head(n_best)) + \
        list(t.loc[t["model"] == "likelihood_ceiling", "method"].unique())
    d = t.loc[(t["bin"] != "all") & t["method"].isin(keep), ["method", "bin", "rmse"]].dropna()
    if d.empty:
        return None
    return alt.Chart(d).mark_line(point=True).encode(
        x=alt.X("bin:N", title="S/N quartile (Q1 lowest S/N)", axis=alt.Axis(labelAngle=0)), y=alt.Y("rmse:Q", title="RMSE [dex]"),
        color=alt.Color("method:N", sort=keep, legend=alt.Legend(orient="bottom", columns=2, labelLimit=320)),
        tooltip=["method", "bin", alt.Tooltip("rmse:Q", format=".3f")]).properties(width=700, height=300)


def png(chart: alt.Chart) -> bytes:
    import vl_convert as vlc
    return vlc.vegalite_to_png(chart.to_json(), scale=1.5)


def _figure(chart, caption: str) -> str:
    if chart is None:
        return f'<p class="note">{_html.escape(caption)}: no finished runs to draw yet.</p>'
    try:
        data = base64.b64encode(png(chart)).decode()
    except Exception as e:   # no renderer here (vl-convert missing or failing): say so, keep the text
        return f'<p class="note">{_html.escape(caption)}: not drawn ({_html.escape(type(e).__name__)}).</p>'
    return (f'<figure><img alt="{_html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_html.escape(caption)}</figcaption></figure>")


def build(profile: str = "quick", dataset: str | None = None, since: str | None = None, lang: str = "en",
          con=None) -> str:
    md = digest.build(profile, dataset, since=since, lang=lang, con=con)
    ds = dataset or config.profile(profile)["dataset"]
    res = report.suite_results("report", profile, ds, con)
    ceil = report.suite_results("ceiling", profile, ds, con)
    res = pd.concat([res, ceil[ceil["model"] == "likelihood_ceiling"]], ignore_index=True) if not ceil.empty else res
    t = breakdown.table("report", profile, ds, "snr", con)
    body, foot = digest.index_section(md)
    figs = (f"<h2>{CHART_WORDS['charts'][lang]}</h2>" + _figure(r2_chart(res), CHART_WORDS["r2"][lang])
            + _figure(snr_chart(t, max(config.NOISE_LEVELS)), CHART_WORDS["snr"][lang]))
    title = _html.escape(digest.H["title"][lang])
    return (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{CSS}</style></head><body>{_markdown_to_html(body)}{figs}{_markdown_to_html(foot)}</body></html>\n")
