"""Benchmark of the engine: wall time of a suite on a fresh artifacts folder, the cached re-run,
and the resulting matrix, written into docs/benchmarks.md between markers.

    python benchmarks/bench_engine.py --profile quick                 # report suite, fresh folder
    python benchmarks/bench_engine.py --profile default --suites report,dilation,topk,...
    LOGG_ARTIFACTS=/path python benchmarks/bench_engine.py --reuse    # keep an existing folder
    python benchmarks/bench_engine.py --profile default --suites ... --artifacts /path/empty  # keep the runs

Numbers go into the section <!-- bench_engine:PROFILE:start --> ... :end --> of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import cpu_model  # noqa: E402  (one CPU description for every benchmark)


def run(cmd: list[str], env: dict) -> tuple[float, str]:
    """Run one command; its output is also appended to LOGG_ARTIFACTS/bench_engine.log as it
    comes (tail it to follow a long suite)."""
    log = Path(env.get("LOGG_ARTIFACTS") or ROOT / "artifacts") / "bench_engine.log"
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        start = fh.tell()
        t = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
        dt = time.perf_counter() - t
    with open(log) as fh:
        fh.seek(start)
        out = fh.read()
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-2000:]}")
    return dt, out


def write_section(name: str, body: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        a, b = text.index(start), text.index(end) + len(end)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def suite_tables(a, env) -> list[str]:
    py, lines = sys.executable, []
    for s in a.suites.split(","):
        if s == "latent":  # 171+ runs over three labels: benchmarks/bench_latent.py summarises them
            lines += ["", "### Suite `latent`", "", "The runs of the latent suite are summarised in the section "
                      f"\"Latent probes: profile `{a.profile}`\" (`benchmarks/bench_latent.py`)."]
            continue
        _, md = run([py, "-m", "core", "report", "--suite", s, "--profile", a.profile], env)
        lines += ["", f"### Suite `{s}`", "", md.strip()]
    return lines


def rerender_tables(a, env) -> None:
    name = f"bench_engine:{a.profile}"
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text:
        raise SystemExit(f"no section {name} in docs/benchmarks.md to re-render")
    body = text[text.index(start) + len(start):text.index(end)].strip("\n")
    head = body.split("\n### Suite ")[0].rstrip()
    write_section(name, "\n".join([head] + suite_tables(a, env)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--suites", default="report")
    ap.add_argument("--reuse", action="store_true", help="use LOGG_ARTIFACTS as it is (no fresh folder)")
    ap.add_argument("--artifacts", help="the fresh folder to use (kept afterwards, e.g. for the digest); "
                                        "default a new temporary folder")
    ap.add_argument("--workers", type=int, default=0,
                    help="passed to `python -m core train --workers` (default: the engine's choice)")
    ap.add_argument("--tables-only", action="store_true",
                    help="re-render the per-suite result tables of the existing section from LOGG_ARTIFACTS, "
                         "keeping its measured timings (after a fix to the report code; fits nothing)")
    a = ap.parse_args()
    env = dict(os.environ)
    if a.tables_only:
        return rerender_tables(a, env)
    if not a.reuse:
        if a.artifacts:
            if Path(a.artifacts).exists() and any(Path(a.artifacts).iterdir()):
                raise SystemExit(f"{a.artifacts} is not empty: a fresh run needs an empty folder")
            Path(a.artifacts).mkdir(parents=True, exist_ok=True)
        env["LOGG_ARTIFACTS"] = a.artifacts or tempfile.mkdtemp(prefix="bench_engine_")
    py = sys.executable
    lines = [f"## Engine: profile `{a.profile}`", "",
             f"Measured {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu_model()}), "
             f"`{' '.join(['python', 'benchmarks/bench_engine.py', '--profile', a.profile, '--suites', a.suites] + (['--workers', str(a.workers)] if a.workers else []))}`.",
             "WORKERS", ""]
    lines += ["| step | wall time [s] |", "|---|---|"]
    t_build, _ = run([py, "-m", "core", "data", "build", "--profile", a.profile], env) if not a.reuse else (0.0, "")
    if not a.reuse:
        lines.append(f"| data build ({a.profile}) | {t_build:.1f} |")
    total, pools = 0.0, set()
    wk = ["--workers", str(a.workers)] if a.workers else []
    for s in a.suites.split(","):
        t, out = run([py, "-m", "core", "train", "--suite", s, "--profile", a.profile] + wk, env)
        pools |= {ln.split(" on ", 1)[1] for ln in out.splitlines() if " specs to fit on " in ln}
        total += t
        lines.append(f"| train suite `{s}` | {t:.1f} |")
        t2, _ = run([py, "-m", "core", "train", "--suite", s, "--profile", a.profile] + wk, env)
        lines.append(f"| same suite again (all cached) | {t2:.1f} |")
        failed = [ln for ln in out.splitlines() if "FAILED" in ln]
        if failed:
            lines.append(f"| failures in `{s}` | {len(failed)}: {'; '.join(f[:80] for f in failed[:3])} |")
    lines.append(f"| all suites | {total:.1f} |")
    i = lines.index("WORKERS")
    lines[i] = ("Specs fitted " + (f"on {', '.join(sorted(pools))}" if pools else "one at a time in one process")
                + " (`python -m core train --workers`)."
                + (" Each fit ran beside another on the other core, so the per-fit times in the tables below"
                   " are longer than a fit alone would take; the suite wall times are what the targets count."
                   if pools else ""))
    lines += suite_tables(a, env)
    write_section(f"bench_engine:{a.profile}", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
