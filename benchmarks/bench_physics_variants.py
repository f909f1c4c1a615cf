"""The trends the simulator's physics variants change (docs/simulator.md, "Physics variants"), measured
on noiseless spectra and printed as markdown tables for docs/benchmarks.md:

    python benchmarks/bench_physics_variants.py

Fe I / Fe II equivalent widths against log g, CN band depth in giants and dwarfs, the CaT index against
[M/H] with and without saturation, the CaT's gravity signal for x = 0.3 / 0.4 / 0.5, the CaT against Teff
with and without the warm-star decline, and what another seed of the weak forest changes. Everything in float64, about a minute on 2 CPU cores.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.physics import simulate  # noqa: E402
from core.physics.lines import FE_II_LINES  # noqa: E402

CAT_BANDS = ((8484.0, 8513.0), (8522.0, 8562.0), (8642.0, 8682.0))
SIMS: dict = {}


def sim(**physics) -> simulate.Simulator:
    key = tuple(sorted(physics.items()))
    if key not in SIMS:
        SIMS[key] = simulate.Simulator(torch.float64, physics=physics or None)
    return SIMS[key]


def run(s, rows, ratio=True, **kw) -> np.ndarray:
    with torch.no_grad():
        lab = torch.tensor(rows, dtype=torch.float64)
        return (s.line_ratio(lab, **kw) if ratio else s(lab, **kw)).numpy()


def ew(s, r, lo, hi):
    w = s.wave.numpy()
    m = (w >= lo) & (w <= hi)
    return np.trapezoid(1.0 - r[..., m], w[m], axis=-1)


def cat(s, r):
    return sum(ew(s, r, lo, hi) for lo, hi in CAT_BANDS)


def line_mask(s, picks):
    return torch.tensor([any(sp == p and abs(w - x) < 0.01 for p, x in picks) for sp, w in zip(s.species, s.line_wave.numpy())])


def fe_balance():
    s = sim(fe_ii=True)
    picks = [("Fe II", 7224.49), ("Fe II", 7711.72), ("Fe I", 7411.15), ("Fe I", 7748.27)]
    r = run(s, [[5772.0, 4.438, 0.0]], line_mask=line_mask(s, [("Fe II", w) for w, _, _ in FE_II_LINES]))
    print("Solar EWs of the Fe II lines (variant `fe2`): " +
          ", ".join(f"{w:.1f} A: {1000 * ew(s, r, w - 4, w + 4)[0]:.0f} mA" for w, _, _ in FE_II_LINES) + "\n")
    loggs = [1.0, 2.0, 3.0, 4.0, 5.0]
    print("| Teff [K] | line | " + " | ".join(f"EW log g {g:g} [mA]" for g in loggs) + " | log g 1 / log g 5 |")
    print("|---|---|" + "---|" * len(loggs) + "---|")
    for teff in (4500.0, 5000.0, 5772.0):
        rr = run(s, [[teff, g, 0.0] for g in loggs], line_mask=line_mask(s, picks))
        for sp, w in picks:
            e = 1000 * ew(s, rr, w - 4, w + 4)
            print(f"| {teff:.0f} | {sp} {w:.1f} | " + " | ".join(f"{v:.0f}" for v in e) + f" | {e[0] / e[-1]:.2f} |")
    print()


def cn_depth():
    on, off = sim(cn=True), sim()
    w = off.wave.numpy()
    m = (w > 7876.0) & (w < 7950.0)
    stars = [("K giant", [4500, 1.5, 0.0]), ("K dwarf", [4500, 4.7, 0.0]), ("cool K giant", [4000, 1.5, 0.0]),
             ("cool K dwarf", [4000, 4.7, 0.0]), ("M giant", [3600, 1.0, 0.0]), ("Sun", [5772, 4.438, 0.0]),
             ("K giant, [M/H] -1", [4500, 1.5, -1.0]), ("F giant", [6500, 2.0, 0.0])]
    a, b = run(on, [r for _, r in stars], ratio=False), run(off, [r for _, r in stars], ratio=False)
    print("| star | Teff, log g, [M/H] | CN depth over 7876-7950 A (variant `cn`) | deepest pixel |")
    print("|---|---|---|---|")
    for k, (name, r) in enumerate(stars):
        q = a[k] / b[k]
        print(f"| {name} | {r[0]:.0f}, {r[1]:g}, {r[2]:+g} | {1 - q[m].mean():.3f} | {1 - q.min():.3f} |")
    print()


def cat_saturation():
    mhs = [-2.5, -1.5, -0.5, 0.0, 0.5]
    print("| star | CaT of | saturation | " + " | ".join(f"[M/H] {m:+g}" for m in mhs)
          + " | slope below -0.5 [A/dex] | slope above |")
    print("|---|---|---|" + "---|" * len(mhs) + "---|---|")
    for teff, g in ((4500.0, 1.5), (5000.0, 4.5)):
        for what in ("Ca II lines", "whole index"):
            for name, s in (("off", sim()), ("on", sim(cat_saturation=True))):
                kw = {"line_mask": s.species_mask("Ca II")} if what == "Ca II lines" else {}
                c = cat(s, run(s, [[teff, g, m] for m in mhs], **kw))
                print(f"| {teff:.0f} K, log g {g:g} | {what} | {name} | " + " | ".join(f"{v:.2f}" for v in c)
                      + f" | {(c[2] - c[0]) / 2:.2f} | {c[4] - c[2]:.2f} |")
    print()


def majority_scaling():
    loggs = [1.0, 1.5, 3.0, 4.7, 5.0]
    print("| x | [M/H] | " + " | ".join(f"CaT log g {g:g} [A]" for g in loggs) + " | giant (1.5) / dwarf (4.7) |")
    print("|---|---|" + "---|" * len(loggs) + "---|")
    for x in (0.3, 0.4, 0.5):
        s = sim(majority_g_extra=x)
        for mh in (0.0, -1.0):
            c = cat(s, run(s, [[4500.0, g, mh] for g in loggs]))
            print(f"| {x:g} | {mh:+g} | " + " | ".join(f"{v:.2f}" for v in c) + f" | {c[1] / c[3]:.2f} |")
    print()


def cat_warm():
    teffs = [4000.0, 4500.0, 5000.0, 5772.0, 6000.0, 6500.0, 7000.0]
    print("| log g | CaT of | warm-star decline | " + " | ".join(f"{t:.0f} K" for t in teffs) + " |")
    print("|---|---|---|" + "---|" * len(teffs))
    for g in (4.5, 2.0):
        for what in ("Ca II lines", "whole index"):
            for name, s in (("off", sim()), ("on (`catwarm`)", sim(cat_warm_decline=True))):
                kw = {"line_mask": s.species_mask("Ca II")} if what == "Ca II lines" else {}
                c = cat(s, run(s, [[t, g, 0.0] for t in teffs], **kw))
                print(f"| {g:g} | {what} | {name} | " + " | ".join(f"{v:.2f}" for v in c) + " |")
    print()


def forest_seeds():
    rows = [[5772, 4.438, 0.0], [4500, 1.5, 0.0], [4500, 4.7, 0.0]]
    ref = run(sim(), rows[1:2], ratio=False)
    print("| forest | CaT Sun [A] | CaT K giant [A] | CaT K dwarf [A] | rms flux change vs as built (K giant) |")
    print("|---|---|---|---|---|")
    for seed in (None, 1, 2):
        s = sim() if seed is None else sim(forest_seed=seed)
        r = run(s, rows)
        fl = run(s, rows[1:2], ratio=False)
        rms = float(np.sqrt(np.mean((fl - ref) ** 2)))
        c = cat(s, r)
        print(f"| {'as built (seed 20251201)' if seed is None else f'seed {seed}'} | {c[0]:.2f} | {c[1]:.2f} | "
              f"{c[2]:.2f} | {rms:.4f} |")
    print()


if __name__ == "__main__":
    t0 = time.time()
    print(f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/bench_physics_variants.py` "
          f"(simulator v{simulate.SIMULATOR_VERSION}, float64, noiseless; EWs from line_ratio).\n")
    fe_balance()
    cn_depth()
    cat_saturation()
    majority_scaling()
    cat_warm()
    forest_seeds()
    print(f"({time.time() - t0:.0f} s)")
