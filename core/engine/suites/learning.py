"""The learning_curve suite (#17, part 3): test R^2 against the number of training spectra, against
the likelihood ceiling on the same test stars.

Ridge, LightGBM, the pixel MLP, the top-K window CNN and the FiLM fusion, each with its report
parameters, x n_train in a geometric ladder (`ladder`: the profile's max_train halved while the half
stays at least twice LOWEST, then LOWEST; quick: 500, 1,050, 2,100) x noise_mode fixed / fresh for the
torch families (Ridge and LightGBM train on the fixed draw) x noise level 1.0 only, plus the ceiling
suite's spec at 1.0. The largest rung has no n_train key: it is the report suite's own spec (the
fresh torch runs, Ridge, LightGBM) or the noise_ablation suite's (the fixed torch runs), a cache hit
in a registry that holds those. Every torch run trains to convergence (the families' default `training`). Where the data set exists and holds fewer training spectra than the
profile's max_train, the ladder tops out at what it holds (rungs it cannot supply are left out).
"""
from __future__ import annotations

from core import config
from core.engine.spec import make_spec

METHODS = ("ridge", "lightgbm", "mlp", "topk_cnn", "fusion_film")
TORCH = ("mlp", "topk_cnn", "fusion_film")
MODES = ("fixed", "fresh")
NOISE_LEVEL = 1.0
LOWEST = 500      # the smallest rung where the profile allows it ...
FLOOR = 200       # ... else the smallest rung (half the largest, at least this)


def available(profile: str, dataset: str | None) -> int:
    """The training spectra a key-less spec trains on: the profile's max_train, or the data set's
    training split where that exists and is smaller."""
    from core import data
    prof = config.profile(profile)
    cap = int(prof.get("max_train") or round(config.SPLIT_FRACTIONS[0] * prof["n_spectra"]))
    try:
        return min(cap, int(data.Dataset(dataset or prof["dataset"]).splits["train"].size))
    except (data.DataError, OSError):
        return cap


def ladder(top: int) -> list[int]:
    """The n_train rungs up to `top`, smallest first: top, top/2, ... while the half is at least
    2 x LOWEST, then LOWEST (500, 1,050, 2,100 for 2,100); below 2 x LOWEST, top/2 where that is at
    least FLOOR; just top for less."""
    rungs = [top]
    while rungs[-1] // 2 >= 2 * LOWEST:
        rungs.append(rungs[-1] // 2)
    if top >= 2 * LOWEST:
        rungs.append(LOWEST)
    elif top // 2 >= FLOOR:
        rungs.append(top // 2)
    return sorted(rungs)


def suite_specs(profile: str, dataset: str | None, params: dict[str, dict], ceiling: list[dict]) -> list[dict]:
    """Each method of METHODS with its report parameters (`params`: model -> params) x mode x rung
    (the largest without n_train), then `ceiling` (the ceiling suite's specs) at NOISE_LEVEL."""
    top = available(profile, dataset)
    rungs = ladder(top)
    out = []
    for m in METHODS:
        for mode in (MODES if m in TORCH else (None,)):
            p = {**params[m], "noise_mode": mode} if mode else dict(params[m])
            out += [make_spec(m, p, NOISE_LEVEL, profile, dataset, "learning_curve",
                              n_train=None if n == top else n) for n in rungs]
    return out + [s for s in ceiling if s["noise_level"] == NOISE_LEVEL]


def mode_of(spec: dict) -> str:
    """How a spec's network saw the training noise: its noise_mode, 'fixed' for the families without
    one (one draw per training spectrum)."""
    return (spec.get("params") or {}).get("noise_mode") or "fixed"
