"""The noise_ablation suite: the torch methods of the report trained on one fixed noise draw per
training spectrum (the team's way, noise_mode="fixed") and on a fresh draw every epoch (the default
since #17, models/noise.py), at the profile's noise levels. The validation and test splits keep their
fixed draws in both modes, so each pair differs only in how the network was trained.

The fresh specs are the report suite's own runs (same run ids), the fixed ones the runs the report
suite made before fresh noise was the default: a registry that holds both suites fits nothing twice.
"""
from __future__ import annotations

from core import config
from core.engine.spec import make_spec

MODES = ("fixed", "fresh")
# the report's torch methods but the two costliest on a CPU (the multi-scale CNN and the window
# transformer, each with a cheaper sibling here: the dilated CNN and the top-K window CNN)
MODELS = ("mlp", "residual_mlp", "global_mlp", "dilated_cnn", "topk_cnn", "fusion_concat", "fusion_film")


def suite_specs(profile: str, dataset: str | None, params: dict[str, dict]) -> list[dict]:
    """Each model of MODELS with its report parameters (`params`: model -> params) x noise x mode."""
    return [make_spec(m, {**params[m], "noise_mode": mode}, n, profile, dataset, "noise_ablation")
            for m in MODELS for n in config.NOISE_LEVELS for mode in MODES]
