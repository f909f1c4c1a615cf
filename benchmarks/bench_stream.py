"""Does `data build` stream? Peak memory of the build pipeline at 10^5 and 10^6 spectra (#19).

    python benchmarks/bench_stream.py [--sizes 100000,1000000] [--pixels 16] [--no-write]

The real simulator costs about 1 ms a spectrum on this CPU whatever the pixel count (its lines, not its pixels:
at 64 pixels 200,000 spectra took 222 s), so 10^6 of them is a quarter of an hour. This benchmark measures what
`core.data.building.build` itself holds: it runs `build` in a child process with the simulator replaced by a
stand-in of `--pixels` pixels (a smooth continuum with one line, a few microseconds a batch) and reports the
child's peak resident memory (VmHWM of /proc/self/status at its end: ru_maxrss would also count the pages of
a large parent at fork time), its wall time and the file's size. Everything else is the
real code: the labels' Latin hypercube, star counts, splits, the batched HDF5 writes, the streamed fingerprint
and the atomic rename. A pipeline that streams has a peak that does not grow with n beyond its O(n) label
arrays (five float64 / int64 values a star: 40 MB at 10^6). Numbers go into <!-- bench_stream:start --> of
docs/benchmarks.md; the real simulator's peak at 10^5 (506 MB) is in the at-a-glance table.
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
from bench_data import cpu_model  # noqa: E402
from bench_engine import write_section  # noqa: E402

CHILD = r'''
import sys, torch
from core.physics import simulate
P = int(sys.argv[2])

class Standin(torch.nn.Module):
    """A spectrum of P pixels: a flat continuum with one Gaussian line whose depth follows log g."""
    def __init__(self):
        super().__init__()
        self.register_buffer("wave", torch.linspace(8480.0, 8560.0, P))
        self.register_buffer("sky_counts", torch.full((P,), 10.0))
        self.register_buffer("throughput", torch.ones(P))
        self.register_buffer("oh_relative", torch.zeros(P))
    def forward(self, labels):
        d = 0.1 * labels[:, 1:2] * torch.exp(-0.5 * ((self.wave[None, :] - 8520.0) / 2.0) ** 2)
        return 1.0 - d
    def sigma(self, flux, counts):
        nt = counts[:, None] * self.throughput[None, :]
        return torch.sqrt(nt * flux.clamp(min=0) + self.sky_counts[None, :]) / nt

simulate.variant_simulator = lambda physics, device="cpu", dtype=torch.float32: Standin()
from core import data
data.build(name="stream", n=int(sys.argv[1]), device="cpu")
# the peak of this process's own memory since exec (ru_maxrss would also count the parent's pages at fork time)
print("VmHWM_kB", next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")))
'''


def measure(n: int, pixels: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_stream_") as d:
        env = {**os.environ, "LOGG_ARTIFACTS": d}
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-c", CHILD, str(n), str(pixels)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        out = p.stdout.read().decode()
        if status:
            raise SystemExit(f"build of {n} failed:\n{out[-2000:]}")
        size = (Path(d) / "data" / "stream.h5").stat().st_size
    hwm = [int(line.split()[1]) for line in out.splitlines() if line.startswith("VmHWM_kB")]
    return {"n": n, "wall": wall, "rss_mb": (hwm[-1] if hwm else usage.ru_maxrss) / 1024, "file_mb": size / 2 ** 20}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--pixels", type=int, default=16)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    rows = [measure(int(n), a.pixels) for n in a.sizes.split(",")]
    lines = [f"`python benchmarks/bench_stream.py --sizes {a.sizes} --pixels {a.pixels}`, "
             f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, {os.cpu_count()} cores: "
             f"`data build` with the simulator replaced by a {a.pixels}-pixel stand-in (the build pipeline's own "
             f"memory; the real simulator's is measured at 10^5 in the at-a-glance table).", "",
             "| spectra | peak RSS of the build process | wall time | file |", "|---|---|---|---|"]
    lines += [f"| {r['n']:,} | {r['rss_mb']:.0f} MB | {r['wall']:.1f} s | {r['file_mb']:.0f} MB |" for r in rows]
    if len(rows) > 1:
        lines += ["", f"Peak growth from {rows[0]['n']:,} to {rows[-1]['n']:,} spectra: "
                      f"{rows[-1]['rss_mb'] - rows[0]['rss_mb']:+.0f} MB."]
    text = "\n".join(lines)
    print(text)
    if not a.no_write:
        write_section("bench_stream", "## Does `data build` stream? (#19)\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
