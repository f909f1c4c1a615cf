"""A data set a spec names, built when it is missing and its name says how (jobs and `train` call this):
the profile's own (building.build), a physics variant of it ("sim-quick+maj0.3") or a matched data set whose
recipe Predict saved (matched.build_matched)."""
from __future__ import annotations

from typing import Callable

from core.data import matched
from core.data.building import build, physics_of_name
from core.data.dataset import DataError, list_datasets


def ensure_built(name: str, profile: str, progress: Callable[[float, str], None] | None = None,
                 log: Callable[[str], None] | None = None) -> bool:
    """Build data set `name` if it is missing and its name says how: the profile's own, a physics variant
    of it ("sim-quick+maj0.3") or a matched data set whose recipe was saved (core/data/matched.py).
    True when it was built; DataError when it is missing and cannot be built."""
    if name in list_datasets():
        return False
    rec = matched.load_recipe(name)
    phys = physics_of_name(name, profile) if rec is None else None
    if rec is None and phys is None:
        raise DataError(f"data set {name!r} not found; build or import it first")
    if log:
        log(f"building data set {name} (profile {profile})")
    if rec is not None:
        matched.build_matched(name, progress=progress)
    else:
        build(name=name, profile=profile, physics=phys or None, progress=progress)
    return True
