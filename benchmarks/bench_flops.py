"""Achieved GFLOP/s of the CNNs on this machine, beside the machine's own matrix-product rate.

    python benchmarks/bench_flops.py            # writes <!-- bench_flops:start --> in docs/benchmarks.md

For each network: FLOPs of one training step (forward + backward) on a batch of 128 spectra of
4096 pixels, counted by torch.utils.flop_counter.FlopCounterMode (convolutions and matrix
products; pooling, BatchNorm and activations are not counted), and the measured wall time of
that step with torch's default threads. The "peak" row is the rate of a large float32 matrix
product (2048 x 2048 x 2048) on the same threads: what this CPU actually delivers, not a
datasheet number. Networks:
  - the project's dilated CNN (models/cnn.py) at the quick (16) and default channel counts,
    and the multi-scale CNN;
  - the reference of issue #3: a plain 4-layer, 32-channel, kernel-7 CNN at full resolution
    (no pooling), the shape the report's numbers were produced with on a GPU.
"""
from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_data import cpu_model  # noqa: E402
from bench_engine import write_section  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from core import config  # noqa: E402

BATCH, PIX = 128, 4096


def full_res_reference(channels: int = 32, layers: int = 4, kernel: int = 7) -> nn.Module:
    mods, c = [], 1
    for _ in range(layers):
        mods += [nn.Conv1d(c, channels, kernel, padding=kernel // 2), nn.BatchNorm1d(channels), nn.ReLU()]
        c = channels
    return nn.Sequential(*mods, nn.AdaptiveAvgPool1d(8), nn.Flatten(), nn.Linear(8 * channels, 1))


def project_net(name: str, channels: int) -> nn.Module:
    import types

    import numpy as np

    from models import MODELS
    m = MODELS[name](channels=channels)
    fake = types.SimpleNamespace(x=np.random.default_rng(0).normal(size=(8, 1, PIX)).astype(np.float32),
                                 channels=["flux"])
    m._prepare(fake, fake, types.SimpleNamespace(profile={"cnn_channels": channels}))
    return m._build()


def step_cost(net: nn.Module, reps: int = 3) -> tuple[float, float]:
    """(GFLOP per training step, seconds per step)."""
    x, y = torch.randn(BATCH, 1, PIX), torch.randn(BATCH, 1)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)

    def step():
        opt.zero_grad()
        out = net(x).reshape(BATCH, -1)[:, :1]
        loss = ((out - y) ** 2).mean()
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops()
    step()  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        step()
    return flops / 1e9, (time.perf_counter() - t) / reps


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def main() -> None:
    peak = matmul_peak()
    rows = []
    for label, net in [
        *[(f"dilated CNN d=2, {c} channels ({', '.join(p for p in config.PROFILES if config.PROFILES[p]['cnn_channels'] == c)})",
           project_net("dilated_cnn", c)) for c in sorted({p["cnn_channels"] for p in config.PROFILES.values()})],
        ("multi-scale CNN, 16 channels (quick, default)", project_net("multiscale_cnn", 16)),
        ("reference: 4-layer 32-channel full-resolution CNN", full_res_reference()),
    ]:
        gf, s = step_cost(net, reps=2 if "reference" in label else 5)
        n_par = sum(p.numel() for p in net.parameters())
        epoch_20k = s * 20000 / BATCH
        rows.append(f"| {label} | {n_par:,} | {gf:.2f} | {s * 1000:.0f} | {gf / s:.1f} | {100 * gf / s / peak:.0f} % "
                    f"| {epoch_20k / 60:.1f} |")
    lines = [
        "## CNN arithmetic rate (CPU)", "",
        f"Measured {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu_model()}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, `python benchmarks/bench_flops.py`. "
        f"One training step = forward + backward + AdamW on {BATCH} spectra x {PIX} pixels; FLOPs counted by "
        f"FlopCounterMode (convolutions and matrix products only).", "",
        f"Machine rate: a 2048^3 float32 matrix product runs at **{peak:.1f} GFLOP/s** on these threads.", "",
        "| network | parameters | GFLOP / step | ms / step | achieved GFLOP/s | of matmul rate | min / epoch of 20k spectra |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    write_section("bench_flops", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
