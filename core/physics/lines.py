"""Line lists for the built-in simulator: stellar absorption lines and OH sky emission lines.

Wavelengths are in Angstrom (air). The strong lines are the real features of the
7100-8850 A window (Ca II triplet, Paschen series, Na I, K I, Mg I, O I, and a
handful of well-known Fe I / Ti I / Si I lines). The weak Fe I forest is a fixed,
seeded list (same every time): real line lists are not shipped with the project.
docs/simulator.md explains every column.

Columns of a stellar line:
  wave     centre wavelength (A)
  species  label used in plots ("Ca II", "H I", ...)
  kind     how the line-to-continuum opacity ratio depends on the labels:
           "minority" - neutral atom of an element mostly ionised in the photosphere
                        (Na I, K I, Fe I, ...): ratio ~ A * 10^((chi_ion - chi_exc - 0.754) theta)
           "majority" - dominant ion or neutral majority species (Ca II, O I):
                        ratio ~ A * 10^(-(chi_exc + 0.754) theta) / P_e, times the effective
                        g^-MAJORITY_G_EXTRA of core/physics/simulate.py
           "hydrogen" - H I Paschen lines: ratio ~ 10^(-(12.09 + 0.754) theta) / P_e (no metal
                        abundance, no extra gravity term), Stark damping
           "ion"      - weak lines of a dominant ion (Fe II, physics variant `fe_ii` only):
                        ratio ~ A f_II 10^(-chi_exc theta) / kappa ~ 1/P_e, as for a majority
                        species but without the extended-atmosphere g^-x term
  chi_exc  excitation potential of the lower level (eV)
  chi_ion  ionisation potential of the neutral atom (eV); used by "minority" lines
  log_tau  log10 of the line-centre optical depth in the Sun (Teff 5772 K, log g 4.44, [M/H] 0)
  gamma    Lorentzian half width (A) of the collisional damping in the Sun
  mass     atomic mass (amu), for the thermal Doppler width
  alpha    1 for alpha elements (O, Mg, Si, Ca, Ti): their abundance follows [alpha/M] too
  strong   how the simulator samples the line (core/physics/simulate.py, Simulator._build_plan):
           1 - strong line, wings evaluated out to +-256 px (CaT, Paschen, Na I, K I, Mg I, O I)
           2 - named metal line, wings out to +-48 px
           0 - weak forest line, wings out to +-12 px
           Every line's core is evaluated on 8 sub-samples per pixel.
"""
from __future__ import annotations

import numpy as np

# name -> (mass amu, chi_ion eV, alpha element?)
ELEMENTS = {
    "H": (1.008, 13.598, 0), "O": (15.999, 13.618, 1), "Na": (22.990, 5.139, 0),
    "Mg": (24.305, 7.646, 1), "Si": (28.085, 8.152, 1), "K": (39.098, 4.341, 0),
    "Ca": (40.078, 6.113, 1), "Ti": (47.867, 6.828, 1), "Fe": (55.845, 7.902, 0),
}

# wave, element, ion stage ("I"/"II"), kind, chi_exc, log_tau_sun, gamma_sun(A), strong
# log_tau and gamma of the strong lines are effective: chosen so that the simulated solar
# equivalent widths come out near the solar-atlas values (Ca II 8498/8542/8662 ~1.3/3.7/2.6 A;
# Na I 8183/8195 ~0.3/0.4 A; K I 7699 ~0.2 A; Mg I 8807 ~0.5 A; O I 7772-5 ~0.07/0.05/0.04 A),
# measured with simulator v2 (sub-pixel sampling); see docs/simulator.md.
STRONG_LINES = [
    (8498.02, "Ca", "II", "majority", 1.69, 1.98, 0.060, 1),
    (8542.09, "Ca", "II", "majority", 1.70, 2.90, 0.060, 1),
    (8662.14, "Ca", "II", "majority", 1.69, 2.58, 0.060, 1),
    (8183.26, "Na", "I", "minority", 2.10, 1.00, 0.020, 1),
    (8194.82, "Na", "I", "minority", 2.10, 1.30, 0.020, 1),
    (7664.90, "K", "I", "minority", 0.00, 1.10, 0.015, 1),
    (7698.96, "K", "I", "minority", 0.00, 0.80, 0.015, 1),
    (8806.76, "Mg", "I", "minority", 4.35, 1.30, 0.030, 1),
    (8736.02, "Mg", "I", "minority", 5.95, 0.60, 0.030, 1),
    (7771.94, "O", "I", "majority", 9.15, -0.10, 0.010, 1),
    (7774.17, "O", "I", "majority", 9.15, -0.25, 0.010, 1),
    (7775.39, "O", "I", "majority", 9.15, -0.45, 0.010, 1),
]

# Paschen series, lower level n = 3 (chi = 12.09 eV). f-values: f(3->10) = 0.0063 scaled as
# n^-3 for higher members (the asymptotic Kramers law); Pa11 lies just beyond the red edge
# but its wing reaches into the window. Stark width grows ~ n^2 (Holtsmark theory).
PASCHEN = [(11, 8862.78), (12, 8750.47), (13, 8665.02), (14, 8598.39),
           (15, 8545.38), (16, 8502.48), (17, 8467.25), (18, 8437.95)]
PASCHEN_LOG_TAU_SUN_N12 = -1.2   # Pa12 line-centre optical depth in the Sun (weak there)
PASCHEN_GAMMA_SUN_N12 = 0.25     # Stark + resonance half width (A) of Pa12 in the Sun

# Moderately strong real metal lines of the window (Fe I, Ti I, Si I), from the solar atlas.
NAMED_METAL_LINES = [
    (7411.15, "Fe", 4.28, 0.6), (7445.75, "Fe", 4.26, 0.7), (7495.07, "Fe", 4.22, 0.8),
    (7511.02, "Fe", 4.18, 0.9), (7748.27, "Fe", 2.95, 0.6), (8327.06, "Fe", 2.20, 1.0),
    (8387.77, "Fe", 2.18, 1.1), (8468.41, "Fe", 2.22, 0.9), (8514.07, "Fe", 2.20, 0.9),
    (8621.60, "Fe", 2.95, 0.6), (8674.75, "Fe", 2.83, 0.5), (8688.62, "Fe", 2.18, 1.1),
    (8824.22, "Fe", 2.20, 1.0), (8426.50, "Ti", 0.83, 0.2), (8434.96, "Ti", 0.85, 0.1),
    (7405.77, "Si", 5.61, 0.5), (7415.95, "Si", 5.61, 0.5), (7932.35, "Si", 5.96, 0.4),
    (8728.01, "Si", 6.18, 0.2), (8742.45, "Si", 5.87, 0.4), (8752.01, "Si", 5.87, 0.5),
]

N_WEAK_FE = 320          # size of the seeded weak Fe I forest
WEAK_SEED = 20251201     # fixed: the forest is part of the simulator version (a physics variant may redraw it)

# Fe II lines of the window (physics variant `fe_ii`; off in the default simulator): wavelength (A, air),
# chi_exc (eV), log gf (Melendez & Barbuy 2009, A&A 497, 611, rounded). log tau_sun = log gf + FE_II_LOG_TAU_ZP:
# the zero point puts Fe II 7711.7 near its solar-atlas EW (~0.05 A; docs/simulator.md, "Physics variants").
FE_II_LINES = [(7224.49, 3.89, -3.20), (7449.33, 3.89, -3.27), (7515.83, 3.90, -3.39), (7711.72, 3.90, -2.50)]
FE_II_LOG_TAU_ZP = 2.45


def stellar_lines(forest_seed: int | None = None, fe_ii: bool = False) -> dict[str, np.ndarray]:
    """All stellar lines as a dict of equal-length numpy arrays (see the module docstring).
    `forest_seed` redraws the weak Fe I forest (None: WEAK_SEED); `fe_ii` adds FE_II_LINES."""
    rows = []
    for w, el, ion, kind, chi, lt, gam, strong in STRONG_LINES:
        rows.append((w, f"{el} {ion}", kind, chi, ELEMENTS[el][1], lt, gam, ELEMENTS[el][0], ELEMENTS[el][2], strong))
    f10 = 0.0063
    for n, w in PASCHEN:
        f = f10 * (10.0 / n) ** 3
        f12 = f10 * (10.0 / 12) ** 3
        lt = PASCHEN_LOG_TAU_SUN_N12 + np.log10(f / f12)
        gam = PASCHEN_GAMMA_SUN_N12 * (n / 12.0) ** 2
        rows.append((w, f"H I Pa{n}", "hydrogen", 12.09, 13.598, lt, gam, 1.008, 0, 1))
    for w, el, chi, lt in NAMED_METAL_LINES:
        rows.append((w, f"{el} I", "minority", chi, ELEMENTS[el][1], lt, 0.004, ELEMENTS[el][0], ELEMENTS[el][2], 2))
    for w, chi, gf in FE_II_LINES if fe_ii else ():
        rows.append((w, "Fe II", "ion", chi, ELEMENTS["Fe"][1], gf + FE_II_LOG_TAU_ZP, 0.004, ELEMENTS["Fe"][0], 0, 2))
    rng = np.random.default_rng(WEAK_SEED if forest_seed is None else int(forest_seed))
    waves = rng.uniform(7100.0, 8850.0, N_WEAK_FE)
    chis = rng.uniform(1.5, 5.0, N_WEAK_FE)
    # log tau: most lines weak, a tail of saturated ones (a curve of growth needs both)
    lts = rng.normal(-0.6, 0.7, N_WEAK_FE)
    for w, chi, lt in zip(waves, chis, lts):
        rows.append((float(w), "Fe I", "minority", float(chi), ELEMENTS["Fe"][1], float(lt), 0.004,
                     ELEMENTS["Fe"][0], 0, 0))
    cols = list(zip(*rows))
    return {
        "wave": np.array(cols[0], dtype=np.float64),
        "species": np.array(cols[1]),
        "kind": np.array(cols[2]),
        "chi_exc": np.array(cols[3], dtype=np.float64),
        "chi_ion": np.array(cols[4], dtype=np.float64),
        "log_tau": np.array(cols[5], dtype=np.float64),
        "gamma": np.array(cols[6], dtype=np.float64),
        "mass": np.array(cols[7], dtype=np.float64),
        "alpha": np.array(cols[8], dtype=np.float64),
        "strong": np.array(cols[9], dtype=np.int64),
    }


# Bright OH (Meinel band) night-sky lines of 7100-8850 A (Osterbrock et al. 1996, PASP 108,
# 277), with relative intensities rounded; plus a seeded set of fainter lines inside the
# (8-3), (4-0), (9-4), (5-1), (6-2) and (7-3) band ranges so that the sky is as dense as
# the real one. O2 and the [O I] 6300 line lie outside the window.
OH_BRIGHT = [
    (7316.28, 1.0), (7340.89, 1.0), (7358.67, 0.8), (7369.25, 0.9), (7401.69, 0.6),
    (7524.12, 0.5), (7571.75, 0.9), (7750.64, 1.1), (7794.11, 1.2), (7821.50, 1.6),
    (7841.00, 0.9), (7913.71, 1.3), (7949.17, 1.0), (7964.65, 1.5), (7993.33, 1.5),
    (8344.60, 2.0), (8399.17, 2.0), (8430.17, 2.1), (8465.36, 1.7), (8504.63, 1.0),
    (8761.31, 1.6), (8767.91, 2.0), (8778.33, 1.8), (8791.19, 1.9), (8827.10, 2.5),
]
OH_BANDS = [(7150, 7450), (7700, 8050), (8280, 8560), (8740, 8850)]
OH_SEED = 1996


def sky_lines() -> tuple[np.ndarray, np.ndarray]:
    """OH line wavelengths (A) and relative peak intensities (unitless)."""
    rng = np.random.default_rng(OH_SEED)
    w = [x for x, _ in OH_BRIGHT]
    s = [y for _, y in OH_BRIGHT]
    for lo, hi in OH_BANDS:
        n = int((hi - lo) / 12)
        w.extend(rng.uniform(lo, hi, n))
        s.extend(rng.lognormal(np.log(0.25), 0.6, n))
    return np.asarray(w, dtype=np.float64), np.asarray(s, dtype=np.float64)
