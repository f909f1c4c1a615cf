"""The error_ablation suite: the same models on different inputs (flux only, clean error only,
pipeline-like error only, flux + error, flux / error, and three controls), and the blind-spot
encoder with and without the error channel, probed the same way. core/analysis/ablation.py reads
the runs and draws the verdict."""
from __future__ import annotations

from core import config
from core.engine.spec import make_spec
from core.engine.suites import latent

INPUT_LABELS = {
    "flux": "flux only",
    "error": "clean error only",
    "error_pipeline": "pipeline-like error only",
    "flux+error": "flux + error (2 channels)",
    "snr": "flux / error",
    "error_shuffled": "error shuffled across stars (control)",
    "flux+error_shuffled": "flux + shuffled error (control)",
    "flux+error_constant": "flux + constant error (control)",
    "error_swapped": "error of a star with another log g (control)",
}
ABLATION_MODELS = ("ridge", "lightgbm", "dilated_cnn")
ABLATION_MODELS = ("ridge", "lightgbm", "dilated_cnn")


# The latent question: the blind-spot encoder trained on the flux alone and on flux + error (two
# channels), each probed the same way (Ridge on the team's best extraction), at both noise levels.
# Encoders and probes are the latent suite's own specs, so a run of either suite serves both.
LATENT_MODEL = "latent probe"


def latent_specs(profile: str, dataset: str | None) -> list[tuple[dict, dict]]:
    """(encoder spec, probe spec) for each encoder variant and noise level."""
    layer, pooling = latent.TEAM_BEST
    return [(latent.encoder_spec(v, n, profile, dataset),
             latent._probe_spec(v, n, layer, pooling, "ridge", "logg", profile, dataset))
            for v in latent.VARIANTS for n in config.NOISE_LEVELS]


def suite_specs(profile: str, dataset: str | None) -> list[dict]:
    out = []
    for m in ABLATION_MODELS:
        params = {"dilation": 2} if m == "dilated_cnn" else {}
        for inp in INPUT_LABELS:
            for n in config.NOISE_LEVELS:
                out.append(make_spec(m, params, n, profile, dataset, "error_ablation", inputs=inp))
    for enc, probe in latent_specs(profile, dataset):   # each encoder before its probe
        out += [enc, probe]
    return out


