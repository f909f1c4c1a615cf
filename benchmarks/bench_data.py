"""Benchmark of the simulator and of `data build`: throughput, wall time, peak memory.

    python benchmarks/bench_data.py                         # quick and default builds (default: minutes)
    python benchmarks/bench_data.py --profiles quick        # quick build only
    python benchmarks/bench_data.py --no-write              # print, do not touch docs/benchmarks.md

Measures
  - simulator throughput (spectra per second, float32, no autograd) at batch 256 on the CPU with
    torch's default thread count, and on CUDA when there is a GPU; plus forward-mode Jacobian
    (d flux / d labels, what core/explain uses) throughput on the CPU;
  - wall time and peak resident memory (ru_maxrss from os.wait4, i.e. of that child process only)
    of `python -m core data build --profile P` in a child process, on the CPU
    (LOGG_ARTIFACTS=/tmp/bench_artifacts, so the real artifacts folder is not touched);
and writes them, with the machine (nproc, CPU model, load average) and the date, into the section
between <!-- bench_data:start --> and <!-- bench_data:end --> of docs/benchmarks.md (creating the
file with a '# Benchmarks' title if it is missing; other sections are left alone).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as `data build` does (core/data/), before torch loads
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ARTIFACTS = Path("/tmp/bench_artifacts")
START, END = "<!-- bench_data:start -->", "<!-- bench_data:end -->"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def throughput(device: str, batch: int = 256, repeats: int = 3) -> dict:
    """Spectra per second of the forward model (float32, no_grad) and of its forward-mode Jacobian."""
    import numpy as np
    import torch

    from core.physics import simulate
    sim = simulate.Simulator().to(device)
    rng = np.random.default_rng(0)
    lab = torch.tensor(np.c_[rng.uniform(3500, 7000, batch), rng.uniform(1, 5, batch),
                             rng.uniform(-2.5, 0.5, batch)], dtype=torch.float32, device=device)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.no_grad():
        sim(lab)                                        # warm-up (allocations, kernels)
        sync()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            sim(lab)
            sync()
            times.append(time.perf_counter() - t)
    out = {"forward": batch / min(times), "forward_median": batch / sorted(times)[len(times) // 2]}
    tan = torch.zeros_like(lab)
    tan[:, 1] = 1.0
    jb = lab[:64]
    t = time.perf_counter()
    torch.func.jvp(lambda x: sim(x), (jb,), (tan[:64],))
    sync()
    out["jvp_logg"] = jb.shape[0] / (time.perf_counter() - t)
    return out


def build(profile: str) -> dict:
    """Run `python -m core data build --profile P --device cpu` in a child; wall time, peak RSS."""
    env = dict(os.environ, LOGG_ARTIFACTS=str(ARTIFACTS), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "core", "data", "build", "--profile", profile, "--device", "cpu"]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    out = p.stdout.read()
    p.stdout.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {p.returncode}:\n{out[-2000:]}")
    from core import config
    n = config.profile(profile)["n_spectra"]
    f = ARTIFACTS / "data" / f"{config.profile(profile)['dataset']}.h5"
    return {"profile": profile, "n": n, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
            "peak_mb": ru.ru_maxrss / 1024.0, "file_mb": f.stat().st_size / 2 ** 20, "rate": n / wall,
            "line": out.strip().splitlines()[-1] if out.strip() else ""}


def section(machine: dict, tp: dict, builds: list[dict]) -> str:
    L = ["## Data build and simulator", "",
         f"Measured by `python benchmarks/bench_data.py` on {machine['date']}: {machine['nproc']} CPU cores "
         f"({machine['cpu']}), torch {machine['torch']} with {machine['threads']} threads, "
         f"load average before the run {machine['load']} (other jobs on the machine slow every number "
         f"here; on an idle machine they are faster). Simulator v{machine['sim_version']}.", ""]
    L += ["| simulator (float32, batch 256) | spectra / s |", "|---|---|"]
    for dev, d in tp.items():
        L.append(f"| forward, {dev} (best of 3 / median) | {d['forward']:.0f} / {d['forward_median']:.0f} |")
        L.append(f"| d flux / d log g by forward-mode autograd (`torch.func.jvp`), {dev}, batch 64 | {d['jvp_logg']:.0f} |")
    if "cuda" not in tp:
        L.append("| CUDA | no GPU on this machine |")
    L += ["", "| `python -m core data build` (CPU) | spectra | wall time | CPU time | peak memory (RSS) | file |",
          "|---|---|---|---|---|---|"]
    for b in builds:
        L.append(f"| `--profile {b['profile']}` | {b['n']:,} | {b['wall_s']:.1f} s ({b['rate']:.0f} / s) | "
                 f"{b['cpu_s']:.1f} s | {b['peak_mb']:.0f} MB | {b['file_mb']:.0f} MB |")
    L += ["", "Targets (issue 2): quick <= 60 s on 2 cores; default <= 10 min with peak memory <= 4 GB. "
          "Peak memory is `ru_maxrss` of the build process (os.wait4): the build streams batches of 256 "
          "spectra into the HDF5 file, so it does not grow with the number of spectra. Builds run with "
          "`OMP_WAIT_POLICY=PASSIVE` (set by `core/data.build` unless the environment says otherwise): "
          "OpenMP threads sleep instead of spinning while they wait, which matters on a shared CPU."]
    return "\n".join(L)


def write_section(body: str) -> Path:
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{START}\n{body.rstrip()}\n{END}"
    if START in text and END in text:
        a, b = text.index(START), text.index(END) + len(END)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", default="quick,default", help="comma-separated build profiles")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    a = ap.parse_args()
    import torch

    from core.physics import simulate
    machine = {"date": _dt.date.today().isoformat(), "nproc": os.cpu_count(), "cpu": cpu_model(),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
               "sim_version": simulate.SIMULATOR_VERSION}
    tp = {"cpu": throughput("cpu")}
    print(f"cpu: {tp['cpu']}", flush=True)
    if torch.cuda.is_available():
        tp["cuda"] = throughput("cuda")
        print(f"cuda: {tp['cuda']}", flush=True)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    builds = []
    for prof in [p for p in a.profiles.split(",") if p]:
        b = build(prof)
        print(f"build {prof}: {b}", flush=True)
        builds.append(b)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    body = section(machine, tp, builds)
    print(body)
    if not a.no_write:
        print(f"wrote {write_section(body).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
