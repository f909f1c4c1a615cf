"""Benchmark of the executors side by side: one suite fitted from a fresh artifacts folder by the
worker-process pool (core/engine/pool.py, `train --workers N`) and by a Dask LocalCluster of the
same size (core/engine/cluster.py, `train --cluster local --workers N`), on the same data set.

    python benchmarks/bench_cluster.py                                   # quick report suite, 1 seed, 2 workers
    python benchmarks/bench_cluster.py --profile default --suites report,ceiling --seeds 3

Both runs must give the same run ids (the executor is not part of a spec); the table says whether
they do and how far the metrics moved (torch fits on the CPU repeat to a few 1e-6). Numbers go into
<!-- bench_cluster:PROFILE:start --> ... :end --> of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import cpu_model  # noqa: E402
from bench_engine import run, write_section  # noqa: E402


def done_runs(folder: Path) -> dict:
    con = sqlite3.connect(folder / "registry.sqlite")
    rows = con.execute("SELECT run_id, metrics FROM runs WHERE status='done'").fetchall()
    return {r: json.loads(m)["r2"] for r, m in rows}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--suites", default="report")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n", type=int, help="spectra in the data set (default: the profile's)")
    a = ap.parse_args()
    py = sys.executable
    base = Path(tempfile.mkdtemp(prefix="bench_cluster_"))
    rows, runs = [], {}
    try:
        src = base / "data_only"
        src.mkdir()
        env = {**os.environ, "LOGG_ARTIFACTS": str(src)}
        build = [py, "-m", "core", "data", "build", "--profile", a.profile] + (["--n", str(a.n)] if a.n else [])
        t_build, _ = run(build, env)
        for name, extra in (("pool", ["--workers", str(a.workers)]),
                            ("dask LocalCluster", ["--cluster", "local", "--workers", str(a.workers)])):
            folder = base / name.split()[0]
            shutil.copytree(src / "data", folder / "data")   # bench_engine.run logs into the folder
            env = {**os.environ, "LOGG_ARTIFACTS": str(folder)}
            total = 0.0
            for suite in a.suites.split(","):
                dt, out = run([py, "-m", "core", "train", "--suite", suite, "--profile", a.profile,
                               "--seeds", str(a.seeds), *extra], env)
                total += dt
                print(f"{name} {suite}: {dt:.1f} s", flush=True)
            runs[name] = done_runs(folder)
            rows.append((name, total, len(runs[name])))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    ids_equal = set(runs["pool"]) == set(runs["dask LocalCluster"])
    common = set(runs["pool"]) & set(runs["dask LocalCluster"])
    drift = max((abs(runs["pool"][r] - runs["dask LocalCluster"][r]) for r in common), default=float("nan"))
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = [f"Suites `{a.suites}`, profile `{a.profile}`, {a.seeds} seed(s), {a.workers} workers, fresh artifacts "
            f"folder each, data set built once ({t_build:.0f} s, not counted). {cpu_model()}, {os.cpu_count()} "
            f"cores; measured {stamp} by `python benchmarks/bench_cluster.py"
            + (f" --profile {a.profile}" if a.profile != "quick" else "")
            + (f" --suites {a.suites}" if a.suites != "report" else "")
            + (f" --seeds {a.seeds}" if a.seeds != 1 else "") + "`.", "",
            "| executor | wall time | runs done |", "|---|---:|---:|"]
    body += [f"| {n} | {t / 60:.1f} min | {k} |" for n, t, k in rows]
    body += ["", f"Same run ids from both: {'yes' if ids_equal else 'NO'} ({len(common)} in common); largest R^2 "
             f"difference between the two fits of a run: {drift:.2g}."]
    write_section(f"bench_cluster:{a.profile}", "\n".join(body))
    print("\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
