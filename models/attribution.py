"""Attribution of a differentiable model's log g to its input pixels: gradient x input, integrated
gradients (Sundararajan et al. 2017) and occlusion. `f` maps a (n, C, P) tensor to (n,) log g; a
model offers one as `forward_tensor` when it is `differentiable` (models/base.py)."""
from __future__ import annotations

import numpy as np
import torch


def integrated_gradients(f, x: torch.Tensor, baseline: torch.Tensor | None = None, steps: int = 32) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017) of scalar-per-sample f at x (n, C, P),
    Riemann midpoint rule; attributions sum to f(x) - f(baseline) (completeness)."""
    baseline = torch.zeros_like(x) if baseline is None else baseline
    total = torch.zeros_like(x)
    for k in range(steps):
        a = (k + 0.5) / steps
        xi = (baseline + a * (x - baseline)).detach().requires_grad_(True)
        y = f(xi).sum()
        (g,) = torch.autograd.grad(y, xi)
        total += g
    return (x - baseline) * total / steps


def gradient_x_input(f, x: torch.Tensor) -> torch.Tensor:
    xi = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(xi).sum(), xi)
    return g * x


def occlusion(f, x: torch.Tensor, width: int = 16, stride: int = 8, fill: float | None = None) -> np.ndarray:
    """|change of the prediction| when a sliding window of `width` pixels is replaced by the
    mean flux (or `fill`), spread back over the window's pixels: (n, P)."""
    n, C, P = x.shape
    out = np.zeros((n, P))
    cnt = np.zeros(P)
    with torch.no_grad():
        base = f(x).numpy()
        for s in range(0, P - width + 1, stride):
            xo = x.clone()
            xo[:, :, s:s + width] = x.mean(dim=2, keepdim=True) if fill is None else fill
            d = np.abs(f(xo).numpy() - base)
            out[:, s:s + width] += d[:, None]
            cnt[s:s + width] += 1
    return out / np.clip(cnt, 1, None)


# --------------------------------------------------------------------------- cached per run / data set
