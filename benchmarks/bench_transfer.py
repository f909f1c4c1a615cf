"""The transfer matrix of the transfer suite (core/analysis/transfer.py) as markdown, for docs/benchmarks.md:

    LOGG_ARTIFACTS=/tmp/transfer_art python -m core train --suite transfer --profile quick
    LOGG_ARTIFACTS=/tmp/transfer_art python benchmarks/bench_transfer.py --profile quick

Prints the suite's wall times from the registry (fit + predict of each run), the time to score the
missing cells (the cells are cached: a second run prints ~0 s), then `report --suite transfer`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import config  # noqa: E402
from core.analysis import transfer  # noqa: E402
from core.engine import registry, suites  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    a = ap.parse_args()
    con = registry.connect()
    specs = suites.suite("transfer", a.profile)
    fit = {}
    for s in specs:
        for r in transfer.report.replicate_results(s, con):
            t = r.timings or {}
            fit.setdefault(s["model"], []).append(float(t.get("fit_s", 0)) + float(t.get("predict_s", 0)))
    t0 = time.time()
    done = [0]

    def progress(i, n, what):
        done[0] = i
    m = transfer.matrix(a.profile, con=con, compute=True, progress=progress)
    dt = time.time() - t0
    print(f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPU cores, "
          f"`python benchmarks/bench_transfer.py --profile {a.profile}` (LOGG_ARTIFACTS={config.artifacts_dir()}).\n")
    print("| method | runs (all replicates) | fit + test predict, sum [s] |")
    print("|---|---|---|")
    for model, lab in zip(m.methods, m.method_labels):
        v = fit.get(model, [])
        print(f"| {lab} | {len(v)} | {sum(v):.0f} |")
    print(f"\nScoring the off-diagonal cells: {dt:.0f} s (cached afterwards under artifacts/transfer/).\n")
    print(transfer.markdown(a.profile, con=con, compute=False))


if __name__ == "__main__":
    main()
