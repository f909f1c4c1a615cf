"""Widths of the simulator's absorption lines in pixels, for the receptive-field comparison.

For a sample of stars drawn from the label box, each line whose depth (in flux divided by
the line-free continuum) exceeds `min_depth` gets two widths, measured on the pixel grid
after the LSF: the FWHM (where the depth is above half its central value) and the full
width at 10 % of the central depth ('wings included'). Blends widen a measurement: the
region stops where the depth stops falling away from the centre.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def _width(depth: np.ndarray, c: int, frac: float) -> int:
    """Pixels around c where depth >= frac * depth[c], walking out while it keeps falling."""
    thr = frac * depth[c]
    lo = c
    while lo > 0 and depth[lo - 1] >= thr and depth[lo - 1] <= depth[lo] + 1e-6:
        lo -= 1
    hi = c
    while hi < depth.size - 1 and depth[hi + 1] >= thr and depth[hi + 1] <= depth[hi] + 1e-6:
        hi += 1
    return hi - lo + 1


def line_widths(n_stars: int = 24, seed: int = 0, min_depth: float = 0.05) -> pd.DataFrame:
    from core import data
    from core.physics import simulate
    sim = simulate.default_simulator("cpu")
    rng = np.random.default_rng(seed)
    labels = data.sample_labels(n_stars, rng, tries=1)
    with torch.no_grad():
        ratio = sim.line_ratio(torch.as_tensor(labels, dtype=torch.float32)).numpy()
    wave = sim.wave.numpy()
    lw = sim.line_wave.numpy()
    centres = np.searchsorted(wave, lw).clip(1, wave.size - 2)
    rows = []
    for s in range(n_stars):
        depth = 1.0 - ratio[s]
        for li, c in enumerate(centres):
            c = int(c - 1 + np.argmax(depth[c - 1:c + 2]))
            if depth[c] < min_depth:
                continue
            rows.append({"line": f"{sim.species[li]} {lw[li]:.1f}", "species": str(sim.species[li]).split()[0],
                         "teff": labels[s, 0], "logg": labels[s, 1], "mh": labels[s, 2], "depth": float(depth[c]),
                         "fwhm_px": _width(depth, c, 0.5), "fw10_px": _width(depth, c, 0.1)})
    return pd.DataFrame(rows)
