"""The robustness suite (#18, part 3): the report's predictors trained without and with nuisance
augmentation, at the profile's noise levels (0.1 and 1.0).

- without: the report suite's own specs of its predictors (same run ids: a registry that holds the
  report suite fits nothing again);
- with: the same specs on the data set built with the `survey` nuisance recipe (RV, resolution,
  continuum tilt and tellurics drawn per star, core/physics/nuisance.py): `sim-quick-survey` for the
  quick profile, what `python -m core data build --profile quick --nuisance survey` writes. Its
  stars, counts and splits are those of the clean data set (the same seed).

A predictor is what Predict may answer with (core/predict/inventory.py): a report method on the flux
or flux + error, target log g; the metadata rows (Teff and [M/H] in) are not. How the trained models
fare on perturbed copies of the clean test split is core/analysis/robustness.py.
"""
from __future__ import annotations

from core import config
from core.data import DataError, list_datasets

SUITE = "robustness"
RECIPE = "survey"                            # the nuisance recipe of the augmented training set
PREDICTOR_INPUTS = ("flux", "flux+error")     # as core/predict/inventory.py: what a real spectrum has
TRAININGS = ("none", RECIPE)                 # how each predictor trained: no augmentation, survey nuisances


def clean_name(profile: str, dataset: str | None) -> str:
    """The clean data set: the one given, else the profile's."""
    return dataset or config.profile(profile)["dataset"]


def augmented_name(profile: str, dataset: str | None) -> str:
    """The augmented training set's name: the clean one's + '-survey' (data build's default name)."""
    return f"{clean_name(profile, dataset)}-{RECIPE}"


def is_predictor(spec: dict) -> bool:
    """A report spec Predict would answer with: inputs flux or flux + error, target log g."""
    from models import MODELS
    inputs = spec.get("inputs") or getattr(MODELS.get(spec["model"]), "inputs", "flux")
    return inputs in PREDICTOR_INPUTS and (spec.get("target") or "logg") == "logg"


def training_of(spec: dict) -> str:
    """'survey' for a spec trained on the augmented data set, else 'none'."""
    return RECIPE if str(spec.get("dataset", "")).endswith(f"-{RECIPE}") else "none"


def suite_specs(profile: str, dataset: str | None, report_specs: list[dict]) -> list[dict]:
    """The predictors of `report_specs` (the report suite's specs for this profile and data set) as they
    are, then each on the augmented data set; every spec tagged with this suite."""
    preds = [s for s in report_specs if is_predictor(s)]
    aug = augmented_name(profile, dataset)
    return [dict(s, suite=SUITE) for s in preds] + [dict(s, dataset=aug, suite=SUITE) for s in preds]


def missing_datasets(profile: str, dataset: str | None) -> list[str]:
    """The suite's data sets not on disk yet, clean first."""
    have = set(list_datasets())
    return [n for n in (clean_name(profile, dataset), augmented_name(profile, dataset)) if n not in have]


def build_command(profile: str, dataset: str | None) -> str:
    """The command that builds the augmented training set."""
    return f"python -m core data build --profile {profile} --nuisance {RECIPE}" + \
        (f" --name {augmented_name(profile, dataset)}" if dataset else "")


def ensure_datasets(profile: str, dataset: str | None, progress=None) -> list[str]:
    """Build the augmented data set of the profile's clean one when it is missing (the clean one too,
    for the profile's own); a missing data set of another name (an imported grid has no simulator
    twin) raises DataError in one line. Returns the names built."""
    from core import data
    built = []
    own = clean_name(profile, dataset) == config.profile(profile)["dataset"]
    for name in missing_datasets(profile, dataset):
        if not own:
            raise DataError(f"data set {name!r} not found: the robustness suite needs {clean_name(profile, dataset)!r} "
                            f"and its '{RECIPE}' twin ({build_command(profile, dataset)})")
        data.build(name=name, profile=profile, progress=progress,
                   nuisance=RECIPE if name == augmented_name(profile, dataset) else None)
        built.append(name)
    return built
