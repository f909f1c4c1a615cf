"""One place for paths and profiles: every size, epoch count and budget of the project lives here.

Profiles:
  quick    CI, tests and the first start of the app: minutes on a 2-core CPU.
  default  a full reproduction of the study on a laptop CPU.
  full     the group's scale, meant for a GPU.
The artifacts folder (data sets, fitted models, the run registry, job logs) is
`artifacts/` next to this repository unless LOGG_ARTIFACTS points elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _made(p: Path) -> Path:
    """p, created if it can be; on a read-only disk reading goes on and the first write says why."""
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return p


def artifacts_dir() -> Path:
    return _made(Path(os.environ.get("LOGG_ARTIFACTS", ROOT / "artifacts")))


def data_dir() -> Path:
    return _made(artifacts_dir() / "data")


def registry_path() -> Path:
    return artifacts_dir() / "registry.sqlite"


def runs_dir() -> Path:
    return _made(artifacts_dir() / "runs")


NOISE_LEVELS = (0.1, 1.0)

PROFILES: dict[str, dict] = {
    "quick": {
        "dataset": "sim-quick",
        "n_spectra": 3000,
        "seed": 42,
        "epochs": 12,
        "batch_size": 128,
        "patience": 4,
        "cnn_channels": 16,
        "max_train": 2100,
        "lgbm_rounds": 150,
    },
    # every suite of the study on a 2-core laptop CPU: the quick profile's models on twice the
    # data. Measured: 51 min with `train`'s two worker processes (72 min one spec at a time);
    # docs/benchmarks.md
    "default": {
        "dataset": "sim-default",
        "n_spectra": 6000,
        "seed": 42,
        "epochs": 12,
        "batch_size": 128,
        "patience": 4,
        "cnn_channels": 16,
        "max_train": 4200,
        "lgbm_rounds": 150,
    },
    "full": {
        "dataset": "sim-full",
        "n_spectra": 100000,
        "seed": 42,
        "epochs": 60,
        "batch_size": 256,
        "patience": 8,
        "cnn_channels": 32,
        "max_train": 70000,
        "lgbm_rounds": 1500,
    },
}

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)  # train, val, test

# training replicates `train` and `jobs submit` fit per spec unless --seeds says otherwise (#16): enough
# to see the training spread beside the bootstrap. Kept outside PROFILES, whose settings every run id
# hashes. Measured on 2 cores: the quick report suite with 2 seeds 245 s (docs/benchmarks.md).
PROFILE_SEEDS = {"quick": 2, "default": 3, "full": 5}

# Nuisance recipes: the priors of what the telescope adds, per star (core/physics/nuisance.py;
# sources in docs/simulator.md, "Nuisances"), chosen by `data build --nuisance NAME`; a profile may
# name one under "nuisance" (none does: their data sets are the native spectra). A prior is a number
# (fixed) or a dict: uniform lo..hi, normal mu/sigma or lognormal median/sigma_ln, truncated to lo..hi.
NUISANCE_RECIPES: dict[str, dict] = {
    # after the pipeline's RV correction: the residual RV error of a medium-resolution survey
    "survey": {
        "description": "survey conditions after RV correction: residual RV 3 km/s, R +-10 %, "
                       "continuum tilt +-2 %, Maunakea PWV, airmass 1.0-1.5",
        "rv": {"dist": "normal", "mu": 0.0, "sigma": 3.0, "lo": -12.0, "hi": 12.0},
        "resolution": {"dist": "uniform", "lo": 4500.0, "hi": 5500.0},
        "tilt_c1": {"dist": "uniform", "lo": -0.02, "hi": 0.02},
        "tilt_c2": {"dist": "uniform", "lo": -0.01, "hi": 0.01},
        "pwv": {"dist": "lognormal", "median": 2.0, "sigma_ln": 0.6, "lo": 0.3, "hi": 10.0},
        "airmass": {"dist": "uniform", "lo": 1.0, "hi": 1.5},
    },
}
# the same, before any RV correction: heliocentric RVs of disk and halo stars
NUISANCE_RECIPES["survey_uncorrected"] = {
    **NUISANCE_RECIPES["survey"],
    "description": "survey conditions without RV correction: RV 30 km/s rms, otherwise as survey",
    "rv": {"dist": "normal", "mu": 0.0, "sigma": 30.0, "lo": -150.0, "hi": 150.0},
}


# Physics variants: the simulator's own assumptions, as data-set recipes (core/physics/simulate.py
# PHYSICS_DEFAULTS; sources in docs/simulator.md, "Physics variants"), chosen by `data build --physics
# NAME[,NAME...]`. No recipe: this version's physics (x = 0.4, forest seed 20251201, no Fe II, no CN,
# no CaT saturation), byte for byte. A profile may name one under "physics" (none does).
PHYSICS_RECIPES: dict[str, dict] = {
    "maj0.3": {"description": "majority-species gravity scaling x = 0.3 instead of 0.4 (weaker giant CaT, O I)",
               "majority_g_extra": 0.3},
    "maj0.5": {"description": "majority-species gravity scaling x = 0.5 instead of 0.4 (stronger giant CaT, O I)",
               "majority_g_extra": 0.5},
    "forest1": {"description": "the weak Fe I forest drawn with seed 1 instead of 20251201", "forest_seed": 1},
    "forest2": {"description": "the weak Fe I forest drawn with seed 2 instead of 20251201", "forest_seed": 2},
    "fe2": {"description": "Fe II 7224, 7449, 7516, 7712 A on: stronger at low gravity (Fe I/Fe II balance)",
            "fe_ii": True},
    "cn": {"description": "CN red-system bands on: strongest in K giants, weak in dwarfs", "cn": True},
    "catsat": {"description": "Ca II triplet saturation on: CaT line strength flat in [M/H] above -0.5",
               "cat_saturation": True},
    "catwarm": {"description": "CaT lines weakening above the Sun's Teff: warm dwarfs' CaT weaker than K dwarfs'",
                "cat_warm_decline": True},
}


def physics_recipe(recipe: str | dict | None) -> dict | None:
    """A physics recipe by name, or several joined by ',' or '+' ("fe2,cn": their settings merged, named
    "fe2+cn"), a recipe dict as given, or None (this version's physics). Unknown names, or two that set
    the same thing, raise ValueError."""
    if recipe is None or isinstance(recipe, dict):
        return recipe
    names = [n.strip() for n in str(recipe).replace("+", ",").split(",") if n.strip()]
    if not names:
        raise ValueError("empty physics recipe; choose one or more of " + ", ".join(PHYSICS_RECIPES))
    out: dict = {}
    for n in names:
        if n not in PHYSICS_RECIPES:
            raise ValueError(f"unknown physics recipe {n!r}; choose one or more of {', '.join(PHYSICS_RECIPES)}")
        settings = {k: v for k, v in PHYSICS_RECIPES[n].items() if k != "description"}
        clash = sorted(set(settings) & set(out))
        if clash:
            raise ValueError(f"physics recipes {recipe!r} set {clash[0]} twice; combine recipes that change different things")
        out.update(settings)
    return dict(out, name="+".join(names), description="; ".join(PHYSICS_RECIPES[n]["description"] for n in names))


def nuisance_recipe(recipe: str | dict | None) -> dict | None:
    """A recipe by name (NUISANCE_RECIPES), a recipe dict as given, or None (no nuisances)."""
    if recipe is None or isinstance(recipe, dict):
        return recipe
    if recipe not in NUISANCE_RECIPES:
        raise ValueError(f"unknown nuisance recipe {recipe!r}; choose one of {', '.join(NUISANCE_RECIPES)}")
    return dict(NUISANCE_RECIPES[recipe], name=recipe)


def profile(name: str) -> dict:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return dict(PROFILES[name], name=name)
