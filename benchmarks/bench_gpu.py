"""The prepared GPU benchmark (issue #19): on a machine with a CUDA GPU, build the profile's data set and
run its suites (default: the full profile's `report` and `ceiling`), each on a fresh artifacts folder,
and write wall time per step, GPU utilisation (nvidia-smi, sampled every second: mean and the share of
samples above 50 %), peak GPU memory and peak host RSS into docs/benchmarks.md's GPU section.

    python benchmarks/bench_gpu.py                       # full profile, report + ceiling, 1 seed
    python benchmarks/bench_gpu.py --budget-s 540        # stop starting new steps after 9 minutes
    python benchmarks/bench_gpu.py --suites report --gpu-slots 1,4   # one fit per card, then four side by side
    python benchmarks/bench_gpu.py --allow-cpu --profile quick --only ridge,mlp   # a dry run on a CPU

On a lent device machine (`run` in this workplace), one call, with a timeout that leaves room for a rerun:
    pip install -q -r requirements.txt && python benchmarks/bench_gpu.py --budget-s 480
(requirements.txt pins the CPU build of torch for laptops and CI; where the machine has a CUDA torch
installed already, `pip install -q -r requirements.txt --no-deps` keeps it). Every step writes its row as soon as
it ends, so a run stopped by its time limit still leaves the steps it finished in the section
<!-- bench_gpu:PROFILE:start --> ... :end -->. Steps not reached are listed as "not reached". The
commands' log is copied to $OUT/bench_gpu.log where $OUT is set. A CPU dry run prints its table only.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import write_section  # noqa: E402


class GpuSampler(threading.Thread):
    """nvidia-smi once a second: utilisation (%) and memory used (MiB) of GPU 0."""

    def __init__(self):
        super().__init__(daemon=True)
        self.util: list[float] = []
        self.mem: list[float] = []
        self.stop = threading.Event()
        self.ok = shutil.which("nvidia-smi") is not None

    def run(self) -> None:
        while self.ok and not self.stop.wait(1.0):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits", "-i", "0"], capture_output=True, text=True,
                                     timeout=5).stdout.split(",")
                self.util.append(float(out[0]))
                self.mem.append(float(out[1]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass

    def summary(self) -> tuple[str, str, str]:
        if not self.util:
            return "-", "-", "-"
        busy = sum(u > 50 for u in self.util) / len(self.util)
        return f"{sum(self.util) / len(self.util):.0f} %", f"{busy:.0%}", f"{max(self.mem) / 1024:.1f} GiB"


def step(cmd: list[str], env: dict, log: Path) -> tuple[float, int, tuple, float]:
    """Run one command with the GPU sampled; (seconds, exit code, GPU summary, child peak RSS in GiB)."""
    s = GpuSampler()
    s.start()
    t = time.perf_counter()
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    s.stop.set()
    s.join(timeout=3)
    return dt, os.waitstatus_to_exitcode(status), s.summary(), ru.ru_maxrss / 2 ** 20


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="full")
    ap.add_argument("--suites", default="report,ceiling")
    ap.add_argument("--only", help="model names, as for `train --only`")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--n", type=int, help="spectra in the data set (default: the profile's)")
    ap.add_argument("--budget-s", type=float, default=float("inf"), help="start no new step after this many seconds")
    ap.add_argument("--allow-cpu", action="store_true", help="run without a GPU (a dry run of the script)")
    ap.add_argument("--gpu-slots", default="1", help="fits sharing the GPU, comma-separated to compare several "
                    "(e.g. 1,4: each train step once per value, after the first with --force so that every fit runs again)")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if gpu is None and not a.allow_cpu:
        print("no CUDA device here: this benchmark is for a GPU machine (--allow-cpu for a dry run)", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    env = {**os.environ, "LOGG_ARTIFACTS": str(folder)}
    log = folder / "bench_gpu.log"
    py, t0 = sys.executable, time.time()
    steps = [("data build", [py, "-m", "core", "data", "build", "--profile", a.profile]
              + (["--n", str(a.n)] if a.n else []))]
    slots = [int(v) for v in str(a.gpu_slots).split(",") if v.strip()]
    for k in slots:
        for suite in a.suites.split(","):
            # a second slot count fits again in the same folder with --force (else its runs would be cache hits)
            fresh = [] if k == slots[0] else ["--force"]
            steps.append((f"train --suite {suite}" + (f" --gpu-slots {k}" if len(slots) > 1 or k != 1 else ""),
                          [py, "-m", "core", "train", "--suite", suite, "--profile", a.profile, "--seeds", str(a.seeds),
                           "--gpu-slots", str(k)] + fresh + (["--only", a.only] if a.only else [])))
    head = (f"Profile `{a.profile}`, suites `{a.suites}`, {a.seeds} seed(s){f', only {a.only}' if a.only else ''}, "
            f"fresh artifacts folder; device: {gpu or 'CPU (dry run, --allow-cpu)'}, torch {torch.__version__}, "
            f"{os.cpu_count()} CPU cores; measured {_dt.datetime.now():%Y-%m-%d %H:%M} by "
            f"`python benchmarks/bench_gpu.py {' '.join(sys.argv[1:])}`.")
    rows = []

    def write() -> None:
        body = [head, "", "| step | wall time | exit | GPU util (mean) | samples > 50 % | peak GPU memory | "
                "peak host RSS |", "|---|---:|---:|---:|---:|---:|---:|"] + rows
        if gpu is not None:     # a CPU dry run prints only: docs/benchmarks.md's GPU section is for GPU numbers
            write_section(f"bench_gpu:{a.profile}", "\n".join(body))
        print("\n".join(body), flush=True)

    try:
        for i, (name, cmd) in enumerate(steps):
            if time.time() - t0 > a.budget_s:
                rows.extend(f"| {n} | not reached (budget {a.budget_s:.0f} s) | | | | | |" for n, _ in steps[i:])
                break
            dt, code, (util, busy, mem), rss = step(cmd, env, log)
            rows.append(f"| {name} | {dt / 60:.1f} min | {code} | {util} | {busy} | {mem} | {rss:.1f} GiB |")
            write()
            if code not in (0, 1):
                print(log.read_text()[-3000:], file=sys.stderr)
                break
        write()
    finally:
        if log.exists() and os.environ.get("OUT"):   # the device machine's folder that comes back
            shutil.copy(log, Path(os.environ["OUT"]) / "bench_gpu.log")
        shutil.rmtree(folder, ignore_errors=True)
    print(f"host peak RSS of this script: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
