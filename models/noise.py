"""Training noise, a parameter of every torch family (`noise_mode`), handled here once for the shared trainer.

    fixed   the team's way: one noise draw per training spectrum, the view's own, for every epoch
    fresh   a new draw every epoch from the clean flux and error at the view's noise level, through
            the data set's own noise model and channel code (core.data.Dataset.noise_source), seeded
            by (data set, view seed, noise level, training seed, epoch): a run repeats exactly
    stream  new stars every epoch, as many as the training split holds, simulated from the data set's
            own recipe with their own noise (core/data/stream.py): the "infinite data" limit of the
            learning curve. Seeded by (data set, training seed, epoch); only for data sets this
            simulator version built, and inputs a real observation has

    draw = epoch_draws(model, train, ctx)     # None: train on the view as it is (fixed)
    X, y = draw(epoch)                        # epoch counts from 0: the network inputs and targets

Only the training split changes (a stream replaces it): the validation split (early stopping) and the
test split keep their fixed draws, and everything a model fits before the network (standardisation, PCA, the Ridge base,
window centres) is fitted on the fixed draw. A residual model's target on a fresh draw is the label
minus its base on that draw (not the out-of-fold base of the fixed draw).

A view that Dataset.view did not make (a probe's latent features) has no noise to redraw, and
inputs without noise (flux_clean, error alone) give the same arrays every draw: those train fixed,
whatever noise_mode says, and the history says "fixed".
"""
from __future__ import annotations

from typing import Callable

import numpy as np

NOISE_MODES = ("fixed", "fresh", "stream")


def mode_of(model) -> str:
    """The noise_mode a model trains with: its param, else its family's default."""
    return str(model.params.get("noise_mode", getattr(model, "noise_mode", "fixed")))


def check_noise_mode(cls, params: dict) -> None:
    modes = tuple(getattr(cls, "noise_modes", NOISE_MODES))
    if "noise_mode" in params and params["noise_mode"] not in modes:
        raise ValueError(f"noise_mode must be one of {', '.join(modes)} for {cls.__name__}, "
                         f"got {params['noise_mode']!r}")


def epoch_draws(model, train, ctx) -> Callable[[int], tuple] | None:
    """A function epoch -> (network inputs, targets) on a fresh noise draw of the training split, or
    None when the model trains on the view's fixed draw (see the module docstring)."""
    if mode_of(model) == "stream":
        return _stream_draws(model, train, ctx)
    if mode_of(model) != "fresh" or getattr(train, "recipe", None) is None:
        return None
    ds = getattr(ctx, "dataset", None)
    if ds is None or getattr(ds, "fingerprint", None) != train.recipe.get("fingerprint"):
        ctx.log("noise_mode fresh: the data set of the training view is not at hand; training on its fixed draw")
        return None
    src = ds.noise_source(train)
    if not src.noisy:
        return None
    target, seed = int(ctx.target), int(ctx.seed)

    def draw(epoch: int):
        v = src.fresh(seed, epoch)
        if hasattr(model, "_targets"):   # a family that learns several labels at once (models/posterior.py)
            return model._inputs(v), model._targets(v)
        return model._inputs(v), np.asarray(v.y[:, target], np.float64) - model._base(v)

    return draw


def _stream_draws(model, train, ctx) -> Callable[[int], tuple]:
    """epoch -> (network inputs, targets) on epoch's new stars (core/data/stream.py); a view without its
    data set at hand, or a data set without a recipe to draw from, is refused in one line: a stream fit
    that silently trained on the fixed split would be a mislabelled point of the learning curve."""
    from core.data import DataError
    from core.data.stream import StarStream
    r = getattr(train, "recipe", None) or {}
    ds = getattr(ctx, "dataset", None)
    if ds is None or not r or getattr(ds, "fingerprint", None) != r.get("fingerprint"):
        raise DataError("noise_mode stream: the training view's data set is not at hand; nothing to draw new stars from")
    src = StarStream(ds, len(train.y), float(r["noise_level"]), r["inputs"], int(ctx.seed), getattr(ctx, "device", "cpu"))
    target = int(ctx.target)

    def draw(epoch: int):
        v = src.epoch(epoch)
        if hasattr(model, "_targets"):
            return model._inputs(v), model._targets(v)
        return model._inputs(v), np.asarray(v.y[:, target], np.float64) - model._base(v)

    draw.mode = "stream"
    return draw
