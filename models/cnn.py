"""1-D CNNs on the whole spectrum: the dilated CNN of the dilation sweep, and the multi-scale variant.

    dilated_cnn      (the report's "CNN dilated kernel sweep")
      input (C channels x P pixels, each channel standardised by the train split's mean and std)
      block 1  Conv1d(C -> stem, kernel k, dilation d, stride 1) at FULL resolution
               -> MaxPool(pools[0]) -> BatchNorm -> ReLU
      block 2..n_layers  Conv1d(-> channels, k, dilation d) -> BatchNorm -> ReLU -> MaxPool(pools[i])
      head     AdaptiveAvgPool to 8 segments (the "seg_mean_K8" pooling) -> Linear(8*channels, 48)
               -> ReLU -> Linear(48, 1)

    multiscale_cnn   block 1 is three parallel full-resolution convolutions with dilation 1, 2
                     and 4 (the report's open question 5), concatenated; the rest as above.

Params: dilation (2; the sweep uses 1, 2, 4, 8), kernel (7), n_layers (4), channels
(ctx.profile["cnn_channels"] unless given), stem (filters of the full-resolution block;
default channels // 4, at least 4; per branch for multiscale: max(2, stem // 2)), pools
(default [8, 4, 2], then 1), pool ("max" or "avg"), dropout (0.1 before the head), lr,
weight_decay, heteroscedastic (False; True: the head gives mean and log sigma, trained on
the Gaussian NLL of models/trainer.py, and predict gives (mean, 1-sigma)). Inputs: any view;
the channel count comes from the view ("flux", "flux+error", ...).

Why this shape (cost): on the project's 2-core CPU one full-resolution convolution layer
of 16 filters on 4096 pixels costs ~45 ms of CPU per batch of 128 spectra forward and
backward, plus as much again for the pooling that follows; a 4-layer 16-channel CNN at
full resolution would take ~1 min a quick-profile fit, the 32-channel one of the report
~8 min an epoch on the default profile. So only the first layer runs at full resolution
(with few filters: it has one input channel, it is the layer that sees line profiles at
the given dilation), and max-pooling by 8, 4, 2 puts the later layers at 512, 128 and 64
positions, where their dilation spans ever longer stretches of the spectrum. Max-pooling
right after the first convolution (before BatchNorm and ReLU) equals pooling after the
activation for the ReLU, and saves a full-resolution pass.

Receptive field (recorded per run, exact): for conv layers and pools in order, with
jump j (input pixels per position, starts at 1) and r (starts at 1):
    conv:  r += (k - 1) * d * j        pool s:  r += (s - 1) * j ;  j *= s
`first_layer_rf_px` = d * (k - 1) + 1 is the report's formula (the first layer alone);
`receptive_field_px` is r at the output of the last convolution block (before the
head's segment pooling, which mixes 1/8 of the spectrum). tests/test_torch_models.py
checks both numerically.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.trainer import TorchModel, standardise_stats

HEAD_SEGMENTS = 8
HEAD_HIDDEN = 48


def receptive_field(layers: list[tuple]) -> int:
    """layers: ("conv", kernel, dilation) or ("pool", size) in order -> receptive field in input pixels."""
    r, j = 1, 1
    for layer in layers:
        if layer[0] == "conv":
            r += (layer[1] - 1) * layer[2] * j
        elif layer[1] > 1:
            r += (layer[1] - 1) * j
            j *= layer[1]
    return r


class FullResConv(nn.Conv1d):
    """nn.Conv1d (same parameters and state_dict) whose CPU forward is an unfold + matmul.

    On the project's CPU, oneDNN's kernels for a convolution with 1-2 input channels and a
    handful of filters are erratic: the weight gradient of some (filters, dilation) shapes
    takes 10-20x longer than the same work done as a matrix product. The first,
    full-resolution layer is the only one with that shape; on CUDA cuDNN is used."""

    def forward(self, x):
        if x.device.type != "cpu":
            return super().forward(x)
        out = self._cols(x) @ self.weight.reshape(self.out_channels, -1).t()      # n, p_out, filters
        if self.bias is not None:
            out = out + self.bias
        return out.transpose(1, 2)

    def _cols(self, x):
        n, c, _ = x.shape
        k, d, pad, s = self.kernel_size[0], self.dilation[0], self.padding[0], self.stride[0]
        cols = F.pad(x, (pad, pad)).unfold(2, d * (k - 1) + 1, s)[..., ::d]       # n, c, p_out, k
        return cols.permute(0, 2, 1, 3).reshape(n, cols.shape[2], c * k)


def _pool(kind: str, s: int) -> nn.Module:
    if s <= 1:
        return nn.Identity()
    return nn.MaxPool1d(s) if kind == "max" else nn.AvgPool1d(s)


class DilatedCNN(nn.Module):
    def __init__(self, in_ch: int, channels: int = 32, kernel: int = 7, dilation: int = 2, n_layers: int = 4,
                 stem: int = 8, pools=(8, 4, 2), pool: str = "max", dilations_first=None,
                 dropout: float = 0.1, segments: int = HEAD_SEGMENTS, n_pix: int = 1, n_out: int = 1):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError("kernel must be odd (same-length padding)")
        if n_layers < 1:
            raise ValueError("n_layers must be >= 1")
        pools = list(pools) + [1] * n_layers
        d_first = list(dilations_first) if dilations_first else [dilation]
        self.register_buffer("x_mean", torch.zeros(1, in_ch, n_pix))
        self.register_buffer("x_std", torch.ones(1, in_ch, 1))
        # block 1: full-resolution convolution(s), one branch per first-layer dilation
        self.first = nn.ModuleList([FullResConv(in_ch, stem, kernel, dilation=d, padding=d * (kernel - 1) // 2)
                                    for d in d_first])
        width = stem * len(d_first)
        self.first_pool = _pool(pool, pools[0])
        self.first_post = nn.Sequential(nn.BatchNorm1d(width), nn.ReLU())
        blocks, layers = [], [("conv", kernel, max(d_first)), ("pool", pools[0])]
        for i in range(1, n_layers):
            blocks.append(nn.Sequential(
                nn.Conv1d(width if i == 1 else channels, channels, kernel, dilation=dilation,
                          padding=dilation * (kernel - 1) // 2),
                nn.BatchNorm1d(channels), nn.ReLU(), _pool(pool, pools[i])))
            layers += [("conv", kernel, dilation), ("pool", pools[i])]
        self.blocks = nn.Sequential(*blocks)
        out_ch = channels if n_layers > 1 else width
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(segments), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(out_ch * segments, HEAD_HIDDEN), nn.ReLU(),
                                  nn.Linear(HEAD_HIDDEN, n_out))
        # the last pool of the last block is followed only by the head: it does not widen the
        # receptive field of the feature map the head reads
        if layers[-1][0] == "pool":
            layers = layers[:-1]
        self.layers = layers
        self.receptive_field_px = receptive_field(layers)
        self.first_layer_rf_px = max(d_first) * (kernel - 1) + 1

    def first_conv(self, x):
        """Block 1's convolution at full resolution, before pooling: (n, stem*branches, P)."""
        x = (x - self.x_mean) / self.x_std
        return torch.cat([conv(x) for conv in self.first], dim=1)

    def features(self, x):
        """The last block's feature map, (n, channels, P / prod(pools)). Each first-layer branch is
        pooled before the branches are concatenated (the same numbers as pooling
        first_conv(x), without a full-resolution copy)."""
        x = (x - self.x_mean) / self.x_std
        h = torch.cat([self.first_pool(conv(x)) for conv in self.first], dim=1)
        return self.blocks(self.first_post(h))

    def forward(self, x):
        return self.head(self.features(x))


class DilatedCNNModel(TorchModel):
    """The dilated CNN of the dilation sweep (see the module docstring)."""
    hyper_params = ("channels", "stem", "kernel", "dilation", "n_layers", "pools", "pool", "dropout", "segments",
                    "center", "heteroscedastic")
    param_defaults = {"heteroscedastic": False}   # True: a (mean, log sigma) head on the Gaussian NLL
    family = "cnn"
    multiscale = False
    lr = 5e-3

    def _config(self, ctx_profile: dict | None) -> dict:
        p = self.params
        channels = int(p.get("channels") or (ctx_profile or {}).get("cnn_channels", 32))
        stem = int(p.get("stem") or max(4, channels // 4))
        cfg = {"channels": channels, "kernel": int(p.get("kernel", 7)), "dilation": int(p.get("dilation", 2)),
               "n_layers": int(p.get("n_layers", 4)), "pools": [int(s) for s in p.get("pools", (8, 4, 2))],
               "pool": str(p.get("pool", "max")), "dropout": float(p.get("dropout", 0.1)),
               "segments": int(p.get("segments", HEAD_SEGMENTS)), "center": str(p.get("center", "channel"))}
        if self.multiscale:
            cfg["dilations_first"] = [int(d) for d in p.get("branches", (1, 2, 4))]
            cfg["stem"] = int(p.get("stem") or max(2, stem // 2))
        else:
            cfg["stem"] = stem
        if cfg["pool"] not in ("max", "avg"):
            raise ValueError("pool must be 'max' or 'avg'")
        return cfg

    def _prepare(self, train, val, ctx):
        cfg = self._config(ctx.profile)
        if cfg["center"] not in ("channel", "pixel"):
            raise ValueError("center must be 'channel' or 'pixel'")
        mu, sd = standardise_stats(train.x, axis=(0, 2))
        if cfg["center"] == "pixel":   # subtract the train split's mean spectrum
            mu = train.x.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
        self.state_ = {"x_mean": mu, "x_std": sd}
        n_pix = train.x.shape[2]
        if int(np.prod(cfg["pools"][:cfg["n_layers"]])) > n_pix:
            raise ValueError(f"pools {cfg['pools']} shrink {n_pix} pixels to nothing")
        self.arch_ = {"in_ch": int(train.x.shape[1]), "n_pix": int(n_pix), "channels_in": list(train.channels), **cfg}

    differentiable = True

    def _inputs(self, view):
        return view.x

    def _build(self):
        a = self.arch_
        net = DilatedCNN(a["in_ch"], a["channels"], a["kernel"], a["dilation"], a["n_layers"], a["stem"],
                         a["pools"], a["pool"], a.get("dilations_first"), a["dropout"], a["segments"],
                         n_pix=self.state_["x_mean"].shape[-1], n_out=self._n_out())
        net.x_mean.copy_(torch.as_tensor(self.state_["x_mean"]))
        net.x_std.copy_(torch.as_tensor(self.state_["x_std"]).reshape(1, -1, 1))
        self.receptive_field_px = net.receptive_field_px
        self.first_layer_rf_px = net.first_layer_rf_px
        return net

class MultiScaleCNNModel(DilatedCNNModel):
    """Block 1 = parallel full-resolution branches at dilation 1, 2, 4 (param branches), concatenated."""
    hyper_params = ("branches",)
    multiscale = True


MODELS = {"dilated_cnn": DilatedCNNModel, "multiscale_cnn": MultiScaleCNNModel}
