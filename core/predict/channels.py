"""How each model-input channel (core.data.INPUTS) is formed from an uploaded spectrum's flux and error:
the inputs whose channels are all here are the ones Predict can feed."""
from __future__ import annotations

from core.data import INPUTS

# how each model-input channel (core.data.INPUTS) is formed from an upload's flux and error
FROM_UPLOAD = {"flux": lambda f, e: f, "error": lambda f, e: e, "error_pipeline": lambda f, e: e,
               "snr": lambda f, e: f / e}


def formable(inputs: str) -> bool:
    """Whether every channel of these model inputs can be formed from an uploaded spectrum."""
    return inputs in INPUTS and all(c in FROM_UPLOAD for c in INPUTS[inputs])
