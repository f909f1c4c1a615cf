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

Beyond the data set: the methods of STREAM also train with noise_mode "stream", new simulated stars every
epoch from the data set's recipe (core/data/stream.py), as many per epoch as the largest rung: the honest
"infinite data" end of the curve, placed at the number of distinct stars the fit saw (run metric
stars_seen). Only where the data set has a recipe to draw from (a simulator build of this version).
"""
from __future__ import annotations

from core import config
from core.engine.spec import make_spec

METHODS = ("ridge", "lightgbm", "mlp", "topk_cnn", "fusion_film")
TORCH = ("mlp", "topk_cnn", "fusion_film")
MODES = ("fixed", "fresh")
STREAM = ("mlp", "fusion_film")   # also trained on a stream of new stars (the simulator is ~4 s per epoch of
                                  # 2,100 stars on 2 cores: each such fit costs minutes, not seconds)
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
    if streamable(profile, dataset):
        out += [make_spec(m, {**params[m], "noise_mode": "stream"}, NOISE_LEVEL, profile, dataset, "learning_curve")
                for m in STREAM]
    return out + [s for s in ceiling if s["noise_level"] == NOISE_LEVEL]


def streamable(profile: str, dataset: str | None) -> bool:
    """Whether the suite's data set can stream new stars: it is built by this simulator version, or not
    built yet (the profile's build will be)."""
    from core import data
    from core.data import stream
    try:
        ds = data.Dataset(dataset or config.profile(profile)["dataset"])
    except (data.DataError, OSError):
        return True
    return stream.reason(ds) is None


def mode_of(spec: dict) -> str:
    """How a spec's network saw the training noise: its noise_mode, 'fixed' for the families without
    one (one draw per training spectrum)."""
    return (spec.get("params") or {}).get("noise_mode") or "fixed"
