"""The transfer suite (#18, part 4): the key methods trained on each physics variant of the simulator,
to be tested on every other variant (core/analysis/transfer.py makes the matrix).

Variants (config.PHYSICS_RECIPES): the majority-species gravity scaling x = 0.3 / 0.4 (this version's) /
0.5 and the weak Fe I forest drawn with two other seeds. "" is the profile's own data set (x = 0.4, the
version's forest): its specs are the report suite's own runs (same run ids). Every variant data set is
built with the profile's seed, so it holds the same stars, counts and splits; only the spectra differ.

Methods: Ridge, LightGBM, the global-feature MLP and the FiLM fusion with their report parameters, and
the likelihood ceiling (fitted with the variant's simulator), at noise 0.1 only.
"""
from __future__ import annotations

from core import config
from core.engine.spec import make_spec

SUITE = "transfer"
# "" = the profile's own data set; the others are physics recipes (config.PHYSICS_RECIPES)
VARIANTS = ("", "maj0.3", "maj0.5", "forest1", "forest2")
METHODS = ("ridge", "lightgbm", "global_mlp", "fusion_film", "likelihood_ceiling")
NOISE_LEVEL = 0.1


def variant_dataset(profile: str, dataset: str | None, variant: str) -> str:
    """The data set of a variant: the base (the profile's unless given) + "+recipe" ("sim-quick+maj0.3"),
    the name `data build --physics recipe` gives it (and `train` builds when it is missing)."""
    base = dataset or config.profile(profile)["dataset"]
    return f"{base}+{variant}" if variant else base


def variant_label(variant: str) -> str:
    """A short readable name of a variant for tables and heatmaps."""
    if not variant:
        return "as built"          # x = 0.4, the version's forest
    rec = config.PHYSICS_RECIPES[variant]
    if "majority_g_extra" in rec:
        return f"x={rec['majority_g_extra']:g}"
    if "forest_seed" in rec:
        return f"forest {rec['forest_seed']}"
    return variant


def suite_specs(profile: str, dataset: str | None, params: dict[str, dict]) -> list[dict]:
    """Each method of METHODS (`params`: model -> its report parameters) on each variant's data set."""
    return [make_spec(m, params.get(m, {}), NOISE_LEVEL, profile, variant_dataset(profile, dataset, v), SUITE)
            for v in VARIANTS for m in METHODS]
