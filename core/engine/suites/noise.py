"""The noise_ablation suite: what each training trick of #17 buys, the torch methods of the report
trained four ways at the profile's noise levels:
  noise_mode "fixed" (one noise draw per training spectrum, the team's way) or "fresh" (a new draw every
  epoch, models/noise.py), crossed with
  training "budget" (the profile's epochs on a cosine schedule, the team's way) or "converge" (until the
  validation loss stops falling, models/trainer.py).
The validation and test splits keep their fixed draws in every arm, so the arms differ only in how the
network was trained.

Fresh + converge are the report suite's own runs (same run ids); fixed + budget the runs the report made
before either trick existed, fresh + budget those it made between #17's two parts: a registry that holds
them fits nothing twice.
"""
from __future__ import annotations

from core import config
from core.engine.spec import make_spec

MODES = ("fixed", "fresh")
TRAININGS = ("budget", "converge")
# the report's torch methods but the two costliest on a CPU (the multi-scale CNN and the window
# transformer, each with a cheaper sibling here: the dilated CNN and the top-K window CNN)
MODELS = ("mlp", "residual_mlp", "global_mlp", "dilated_cnn", "topk_cnn", "fusion_concat", "fusion_film")


def suite_specs(profile: str, dataset: str | None, params: dict[str, dict]) -> list[dict]:
    """Each model of MODELS with its report parameters (`params`: model -> params) x noise x training x mode."""
    return [make_spec(m, {**params[m], "noise_mode": mode, "training": tr}, n, profile, dataset, "noise_ablation")
            for m in MODELS for n in config.NOISE_LEVELS for tr in TRAININGS for mode in MODES]
