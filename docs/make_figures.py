"""Regenerate the figures of docs/simulator.md from the built-in simulator.

    python docs/make_figures.py          # writes docs/figures/*.png (about 30 s on a laptop CPU)
    python docs/make_figures.py variants # only the named figures

Needs matplotlib (requirements.txt, '# docs figures'). Every figure is drawn from
core/physics/simulate.py as it is now, so re-run this after changing the physics.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from core.physics import lines as line_lists  # noqa: E402
from core.physics import simulate  # noqa: E402

OUT = ROOT / "docs" / "figures"
DPI = 110
CAT_BANDS = ((8484.0, 8513.0), (8522.0, 8562.0), (8642.0, 8682.0))
NA_BAND = (8178.0, 8202.0)
PASCHEN_12_16 = [w for n, w in line_lists.PASCHEN if 12 <= n <= 16]

SIM = simulate.Simulator(dtype=torch.float64)
WAVE = SIM.wave.numpy()


def flux(rows, **kw):
    with torch.no_grad():
        return SIM(torch.tensor(rows, dtype=torch.float64), **kw).numpy()


def ratio(rows, **kw):
    with torch.no_grad():
        return SIM.line_ratio(torch.tensor(rows, dtype=torch.float64), **kw).numpy()


def ew(r, lo, hi):
    m = (WAVE >= lo) & (WAVE <= hi)
    return np.trapezoid(1.0 - r[..., m], WAVE[m], axis=-1)


def cat(r):
    return sum(ew(r, lo, hi) for lo, hi in CAT_BANDS)


def save(fig, name):
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KB")


def fig_spectra():
    pairs = [
        ("Dwarf vs giant at 4500 K, [M/H] = 0", [[4500, 4.7, 0.0], [4500, 1.5, 0.0]],
         ["dwarf, log g 4.7", "giant, log g 1.5"]),
        ("Hot vs cool dwarf, [M/H] = 0 (flux / mean Planck continuum)", [[6800, 4.2, 0.0], [3700, 4.8, 0.0]],
         ["6800 K", "3700 K (TiO bands)"]),
        ("Metal-poor vs metal-rich giant at 4800 K, log g 2", [[4800, 2.0, -2.0], [4800, 2.0, 0.3]],
         ["[M/H] = -2.0", "[M/H] = +0.3"]),
    ]
    fig, axes = plt.subplots(3, 1, figsize=(10, 8.2), sharex=True)
    for ax, (title, rows, names) in zip(axes, pairs):
        f = flux(rows)
        for y, nm in zip(f, names):
            ax.plot(WAVE, y, lw=0.6, label=nm)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("normalised flux")
        ax.legend(loc="lower left", fontsize=8, frameon=False)
    for ax in axes:
        for w, el, ion, *_ in line_lists.STRONG_LINES:
            if el == "Ca":
                ax.axvline(w, color="0.85", lw=0.6, zorder=0)
    axes[-1].set_xlabel("wavelength (A)")
    save(fig, "spectra_grid.png")


def fig_cat_zoom():
    loggs = [1.0, 2.0, 3.0, 4.0, 5.0]
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2), gridspec_kw={"width_ratios": [2.1, 1]})
    r = ratio([[4500, g, 0.0] for g in loggs])
    for i, (g, y) in enumerate(zip(loggs, r)):
        axes[0].plot(WAVE, y, lw=0.9, color=cmap(i / (len(loggs) - 1)), label=f"log g {g:.0f}")
        axes[1].plot(WAVE, y, lw=0.9, color=cmap(i / (len(loggs) - 1)))
    for lo, hi in CAT_BANDS:
        axes[0].axvspan(lo, hi, color="0.92", zorder=0)
    for n, w in line_lists.PASCHEN:
        if 8480 < w < 8690:
            axes[0].text(w, 1.02, f"Pa{n}", fontsize=6, ha="center", color="0.4")
    axes[0].set_xlim(8480, 8690)
    axes[0].set_ylim(0.0, 1.06)
    axes[0].set_title("Ca II triplet, 4500 K, [M/H] = 0 (Cenarro et al. 2001 bandpasses shaded)", fontsize=9)
    axes[0].set_xlabel("wavelength (A)")
    axes[0].set_ylabel("flux / line-free continuum")
    axes[0].legend(fontsize=7, frameon=False, loc="lower right")
    axes[1].set_xlim(8172, 8206)
    axes[1].set_ylim(0.3, 1.03)
    axes[1].axhline(0.9, color="0.6", lw=0.6, ls=":")
    axes[1].set_title("Na I 8183/8195: wings widen with log g", fontsize=8)
    axes[1].set_xlabel("wavelength (A)")
    save(fig, "cat_zoom.png")


def fig_error():
    rows = [[5000, 4.0, 0.0]]
    f = flux(rows)
    with torch.no_grad():
        sig_faint = SIM.sigma(torch.tensor(f), torch.tensor([150.0], dtype=torch.float64)).numpy()[0]
        sig_bright = SIM.sigma(torch.tensor(f), torch.tensor([3000.0], dtype=torch.float64)).numpy()[0]
    oh = SIM.oh_relative.numpy()
    fig, axes = plt.subplots(2, 1, figsize=(10, 5.6), sharex=True, gridspec_kw={"height_ratios": [1, 1.3]})
    axes[0].plot(WAVE, SIM.sky_counts.numpy(), lw=0.5, color="tab:purple")
    axes[0].set_ylabel("sky (counts / px)")
    axes[0].set_title("Sky: continuum + OH (Osterbrock et al. 1996) lines, convolved with the LSF", fontsize=9)
    axes[1].plot(WAVE, sig_faint, lw=0.5, label="faint star (150 counts / px)")
    axes[1].plot(WAVE, sig_bright, lw=0.5, label="bright star (3000 counts / px)")
    m = oh > 0.1 * oh.max()
    edges = np.flatnonzero(np.diff(np.r_[0, m.astype(int), 0]))
    for a, b in zip(edges[::2], edges[1::2]):
        axes[1].axvspan(WAVE[a], WAVE[min(b, len(WAVE) - 1)], color="tab:purple", alpha=0.12, lw=0)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("1-sigma error (flux units)")
    axes[1].set_xlabel("wavelength (A)")
    axes[1].set_title("Error vector of a 5000 K dwarf: photon noise + sky + read noise (OH lines shaded)",
                      fontsize=9)
    axes[1].legend(fontsize=8, frameon=False, loc="upper left")
    save(fig, "error_sky.png")


def fig_trends():
    loggs = np.linspace(1.0, 5.0, 9)
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.9))
    for mh, c in zip((-2.5, -1.5, -0.5, 0.0, 0.5), plt.get_cmap("plasma")(np.linspace(0, 0.85, 5))):
        axes[0].plot(loggs, cat(ratio([[4500, g, mh] for g in loggs])), "o-", ms=3, color=c, label=f"[M/H] {mh:+.1f}")
    axes[0].set_xlabel("log g")
    axes[0].set_ylabel("CaT (A), Cenarro bandpasses")
    axes[0].set_title("Ca II triplet at 4500 K", fontsize=9)
    axes[0].legend(fontsize=7, frameon=False)
    for t, c in zip((3600, 4000, 4400, 5000), plt.get_cmap("coolwarm_r")(np.linspace(0.05, 0.95, 4))):
        axes[1].plot(loggs, ew(ratio([[t, g, 0.0] for g in loggs]), *NA_BAND), "o-", ms=3, color=c,
                     label=f"{t} K")
    axes[1].axvspan(4.5, 5.0, color="0.92", zorder=0)
    axes[1].axvspan(1.0, 2.5, color="0.96", zorder=0)
    axes[1].set_xlabel("log g")
    axes[1].set_ylabel("Na I 8183+8195 EW (A)")
    axes[1].set_title("Na I doublet, [M/H] = 0", fontsize=9)
    axes[1].legend(fontsize=7, frameon=False)
    teffs = np.linspace(4000, 7000, 13)
    h = SIM.species_mask("H I")
    for g, ls in ((2.0, "--"), (4.0, "-")):
        r = ratio([[t, g, 0.0] for t in teffs], line_mask=h)
        axes[2].plot(teffs, sum(ew(r, c - 12, c + 12) for c in PASCHEN_12_16), ls, marker="o", ms=3,
                     label=f"log g {g:.0f}")
    axes[2].set_yscale("log")
    axes[2].set_ylim(1e-3, 30)
    axes[2].set_xlabel("Teff (K)")
    axes[2].set_ylabel("Pa12-Pa16 EW (A)")
    axes[2].set_title("Paschen lines, [M/H] = 0", fontsize=9)
    axes[2].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    save(fig, "trends.png")


def fig_snr():
    rng = np.random.default_rng(0)
    n = 3000
    lab = np.c_[rng.uniform(3500, 7000, n), rng.uniform(1, 5, n), rng.uniform(-2.5, 0.5, n)]
    counts = simulate.sample_star_counts(n, rng)
    f, s = simulate.simulate(lab, counts)
    snr = np.median(f / s, axis=1)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.hist(snr, bins=np.logspace(np.log10(2), np.log10(100), 40), color="tab:blue", alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("median S/N per pixel (noise level 1.0)")
    ax.set_ylabel("spectra")
    q = np.percentile(snr, [5, 50, 95])
    ax.set_title(f"Default S/N distribution: 5/50/95% = {q[0]:.0f} / {q[1]:.0f} / {q[2]:.0f}", fontsize=9)
    save(fig, "snr_distribution.png")


def fig_variants():
    """The physics variants (docs/simulator.md, "Physics variants"): Fe II and CN in a K giant and a K
    dwarf, the CaT index against [M/H] with and without saturation, against log g for x = 0.3/0.4/0.5, and
    against Teff with and without the warm-star decline."""
    def sim(**physics):
        return simulate.Simulator(dtype=torch.float64, physics=physics)

    def run(s, rows, how="flux", **kw):
        with torch.no_grad():
            lab = torch.tensor(rows, dtype=torch.float64)
            return (s(lab, **kw) if how == "flux" else s.line_ratio(lab, **kw)).numpy()

    both = sim(fe_ii=True, cn=True)
    stars = [([4500, 1.5, 0.0], "K giant, log g 1.5"), ([4500, 4.7, 0.0], "K dwarf, log g 4.7")]
    rows = [r for r, _ in stars]
    on, off = run(both, rows), flux(rows)
    fig, axes = plt.subplots(3, 2, figsize=(11, 10.6))
    for ax, (lo, hi, title) in zip(axes[0], ((7690, 7735, "Fe II 7711.7 (with Fe II: solid; without: dotted)"),
                                             (7780, 8150, "CN (2,0) and (3,1) bands, heads 7875 / 8067 A"))):
        m = (WAVE >= lo) & (WAVE <= hi)
        for k, ((_, name), c) in enumerate(zip(stars, ("tab:red", "tab:blue"))):
            ax.plot(WAVE[m], on[k, m], color=c, lw=0.9, label=name)
            ax.plot(WAVE[m], off[k, m], color=c, lw=0.8, ls=":")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("wavelength (A)")
        ax.set_ylabel("normalised flux")
        ax.legend(fontsize=7, frameon=False, loc="lower left")
    for head in simulate.CN_HEADS[2:4]:
        axes[0, 1].axvline(head, color="0.6", lw=0.6)
    ca = SIM.species_mask("Ca II")

    def cat_panel(ax, xs, variant, stars, words, at, xlabel, title):
        """The CaT (Ca II lines alone) against xs, plain (dotted) and with `variant` (solid), and the variant's
        whole index (dashed), for each (rows-of-x, colour, name) in stars."""
        for rows_of, c, name in stars:
            r = rows_of(xs)
            for s, ls, nm in ((SIM, ":", words[0]), (variant, "-", words[1])):
                ax.plot(xs, cat(run(s, r, "ratio", line_mask=ca)), ls, color=c, marker="o", ms=2.5,
                        label=f"{name}: {nm}")
            ax.plot(xs, cat(run(variant, r, "ratio")), "--", color=c, lw=0.8, label=f"{name}: {words[1]}, whole index")
        ax.axvline(at, color="0.6", lw=0.6)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("CaT (A), Ca II lines alone unless marked")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6.5, frameon=False)

    cat_panel(axes[1, 0], np.linspace(-2.5, 0.5, 13), sim(cat_saturation=True),
              [(lambda xs, t=t, g=g: [[t, g, m] for m in xs], c, f"{t} K, log g {g}")
               for (t, g), c in (((4500, 1.5), "tab:red"), ((5000, 4.5), "tab:blue"))],
              ("saturation off", "saturation on"), simulate.CAT_SAT_MH, "[M/H]", "CaT against [M/H] (Cenarro bandpasses)")
    loggs = np.linspace(1.0, 5.0, 9)
    for x, c in ((0.3, "tab:orange"), (0.4, "k"), (0.5, "tab:purple")):
        s = sim(majority_g_extra=x)
        for mh, ls in ((0.0, "-"), (-1.0, "--")):
            axes[1, 1].plot(loggs, cat(run(s, [[4500, g, mh] for g in loggs], "ratio")), ls, color=c, marker="o",
                            ms=2.5, label=f"x = {x:g}, [M/H] = {mh:+.0f}")
    axes[1, 1].set_xlabel("log g")
    axes[1, 1].set_ylabel("CaT (A)")
    axes[1, 1].set_title("CaT at 4500 K for the majority scaling x", fontsize=9)
    axes[1, 1].legend(fontsize=6.5, frameon=False, ncol=2)
    warm = sim(cat_warm_decline=True)
    cat_panel(axes[2, 0], np.linspace(3800, 7000, 17), warm,
              [(lambda xs, g=g: [[t, g, 0.0] for t in xs], c, f"log g {g}")
               for g, c in ((4.5, "tab:blue"), (2.0, "tab:red"))],
              ("plain", "catwarm"), simulate.T_SUN, "Teff (K)",
              "CaT against Teff at [M/H] = 0, plain and with the warm-star decline")
    m = (WAVE >= 8480) & (WAVE <= 8690)
    rows = [[6500, 4.5, 0.0], [4500, 4.5, 0.0]]
    plain_f, warm_f = flux(rows), run(warm, rows)
    for k, (name, c) in enumerate((("6500 K dwarf", "tab:orange"), ("4500 K dwarf", "tab:blue"))):
        axes[2, 1].plot(WAVE[m], warm_f[k, m] - 0.6 * k, color=c, lw=0.9, label=f"{name}: catwarm")
        axes[2, 1].plot(WAVE[m], plain_f[k, m] - 0.6 * k, color=c, lw=0.8, ls=":", label=f"{name}: plain")
    axes[2, 1].set_xlabel("wavelength (A)")
    axes[2, 1].set_ylabel("normalised flux (4500 K offset by -0.6)")
    axes[2, 1].set_title("The Ca II triplet, log g 4.5: changed above the Sun's Teff only", fontsize=9)
    axes[2, 1].legend(fontsize=6.5, frameon=False, loc="lower left")
    fig.tight_layout()
    save(fig, "variants.png")


FIGURES = {"spectra": fig_spectra, "cat_zoom": fig_cat_zoom, "error": fig_error, "trends": fig_trends,
           "snr": fig_snr, "variants": fig_variants}

if __name__ == "__main__":
    # every figure, or the ones named: python docs/make_figures.py variants
    for name in sys.argv[1:] or FIGURES:
        FIGURES[name]()
