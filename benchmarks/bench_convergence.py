"""Benchmark of training to convergence (#17 item 2): the report's torch methods trained for the profile's
epoch budget (training="budget", the noise_ablation suite's fresh + budget arm) and to convergence (the
default, the report's own runs), on the same test stars, with the likelihood ceiling beside them.

Reads a registry; fits nothing (run `python -m core train --suite report` and `--suite noise_ablation`
first, with the profile's seeds):

    LOGG_ARTIFACTS=/path/to/artifacts python benchmarks/bench_convergence.py [--profile quick]

Per method and noise level: R^2 mean ± sd over the training replicates (N), the gain of converging with
its combined error sqrt(SE_boot^2 + sd_seed^2) and verdict (core/analysis/verdicts.py), the epochs run and
the fit seconds (means over replicates), and the converged R^2 as a fraction of the ceiling's. The table
goes into <!-- bench_convergence:start --> of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import cpu_model  # noqa: E402
from bench_engine import write_section  # noqa: E402

from core import config  # noqa: E402
from core.analysis import report, verdicts  # noqa: E402
from core.engine import registry, suites  # noqa: E402
from core.engine.suites import noise as noise_suite  # noqa: E402


def _mean(runs, key: str) -> float:
    v = [float(r.metrics[key]) if key in r.metrics else float(r.timings.get(key, np.nan)) for r in runs]
    v = [x for x in v if np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def table(profile: str, con) -> tuple[list[str], dict]:
    ceiling = {s["noise_level"]: verdicts.Arm("ceiling", report.replicate_results(s, con), fixed=True)
               for s in suites.suite("ceiling", profile)}
    rows, best = [], {}
    head = ("| method | noise | R² budget | R² converge | gain (combined error, verdict) | epochs run budget -> "
            "converge | fit s budget -> converge | converge / ceiling |")
    lines = [head, "|" + "---|" * 8]
    torch_models = noise_suite.MODELS + ("multiscale_cnn", "topk_transformer")
    for model in dict.fromkeys(s["model"] for s in suites.suite("report", profile) if s["model"] in torch_models):
        for nl in config.NOISE_LEVELS:
            conv = next((s for s in suites.suite("report", profile) if s["model"] == model and s["noise_level"] == nl), None)
            if conv is None:
                continue
            label = suites.row_label(conv)
            bud = dict(conv, params={**conv["params"], "training": "budget"})
            a = verdicts.Arm("budget", report.replicate_results(bud, con))
            b = verdicts.Arm("converge", report.replicate_results(conv, con))
            if not a.n or not b.n:
                lines.append(f"| {label} | {nl:g} | {a.fmt(seeds_word='') if a.n else 'not run'} | "
                             f"{b.fmt(seeds_word='') if b.n else 'not run'} | - | - | - | - |")
                continue
            g = verdicts.gap(b, a)
            verdict = verdicts.decide(g.value, g.combined)
            c = ceiling.get(nl)
            frac = (verdicts.fraction(c, b) if c is not None and c.n else None)
            if frac is not None and (nl not in best or frac.value > best[nl][1].value):
                best[nl] = (label, frac, b)
            rows.append((label, nl, g))
            lines.append(
                f"| {label} | {nl:g} | {a.fmt(seeds_word='')} | {b.fmt(seeds_word='')} | {g.value:+.3f} ± "
                f"{g.combined:.3f}, {verdict} | {_mean(a.runs, 'epochs_run'):.0f} -> {_mean(b.runs, 'epochs_run'):.0f} | "
                f"{_mean(a.runs, 'fit_s'):.0f} -> {_mean(b.runs, 'fit_s'):.0f} | "
                + (f"{100 * frac.value:.1f} ± {100 * frac.combined:.1f} %" if frac is not None else "-") + " |")
    return lines, {"best": best, "ceiling": ceiling, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args()
    con = registry.connect()
    lines, info = table(a.profile, con)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ceil = "; ".join(f"noise {nl:g}: R² {c.r2:.3f}" for nl, c in sorted(info["ceiling"].items()) if c.n)
    best = "; ".join(f"noise {nl:g}: {lab}, R² {b.fmt(seeds_word=' seeds')}, {100 * f.value:.1f} ± {100 * f.combined:.1f} % "
                     "of the ceiling" for nl, (lab, f, b) in sorted(info["best"].items()))
    body = "\n".join([
        f"## Training to convergence: profile `{a.profile}`", "",
        f"Read {when} from the registry at `{config.artifacts_dir()}` by `python benchmarks/bench_convergence.py "
        f"--profile {a.profile}` ({cpu_model()}; the fits ran on 2 worker processes beside other work, so the fit "
        "seconds are longer than an idle machine's). Budget: `training=\"budget\"`, the profile's "
        f"{config.profile(a.profile)['epochs']} epochs on the cosine schedule (the noise_ablation suite's fresh + "
        "budget arm); converge: the default since #17 item 2 (the report's runs). R² mean ± sd over the training "
        "replicates (N); the gain is converge minus budget on the same test stars, its error "
        "sqrt(SE_boot² + sd_seed²), the verdict at 2 combined errors; the last column is the converged R² over "
        "the likelihood ceiling's on the same stars, with its error.", "",
        *lines, "",
        f"Ceiling: {ceil or 'not run'}. Best fraction of the ceiling: {best or '-'}."])
    print(body)
    if not a.no_write:
        write_section("bench_convergence", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
