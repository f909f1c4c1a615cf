"""Multi-layer perceptrons: on all pixels (plain and with residual blocks), and on the 126 global features.

    mlp           every pixel of every channel (per-pixel standardised on the train split)
                  -> Linear(C*P, hidden) -> GELU -> Dropout -> Linear(hidden, hidden) -> GELU -> Linear(hidden, 1)
    residual_mlp  Linear(C*P, hidden) -> n_blocks x [x + Linear(GELU(Linear(LayerNorm(x))))] -> LayerNorm -> Linear(hidden, 1)
    global_mlp    the group's "global tower": GlobalFeatures (models/features.py, 126 columns in
                  groups F0-F3, PCA fitted on the train split) standardised on the train split
                  -> Linear(126, 256) -> GELU -> Dropout -> Linear(256, 64) -> GELU -> Linear(64, 1)
                  (49,025 parameters with all four groups: the report's 49 k). Param
                  drop_groups=["F3"] (any of F0-F3) leaves a group out, for the ablation suite.

All three train with models.trainer.fit_torch (AdamW, early stopping on val, seeded). The pixel MLPs
take heteroscedastic=True for a (mean, log sigma) head trained on the Gaussian NLL: predict then
gives (mean, 1-sigma).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.features import GROUPS, GlobalFeatures, flux_channel
from models.trainer import TorchModel, standardise_stats


class Standardise(nn.Module):
    """(x - mean) / std with the train split's statistics held as buffers (saved in the state_dict)."""

    def __init__(self, shape):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    def set(self, mean: np.ndarray, std: np.ndarray) -> "Standardise":
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).reshape(self.mean.shape))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).reshape(self.std.shape))
        return self

    def forward(self, x):
        return (x - self.mean) / self.std


class MLPNet(nn.Module):
    def __init__(self, n_in: int, hidden: int = 64, depth: int = 2, dropout: float = 0.1, n_out: int = 1):
        super().__init__()
        self.norm = Standardise((n_in,))
        layers, d = [], n_in
        for i in range(depth):
            layers += [nn.Linear(d, hidden), nn.GELU()]
            if i == 0 and dropout:
                layers.append(nn.Dropout(dropout))
            d = hidden
        layers.append(nn.Linear(d, n_out))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(self.norm(x.flatten(1)))


class ResBlock(nn.Module):
    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.f = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Dropout(dropout), nn.Linear(d, d))

    def forward(self, x):
        return x + self.f(x)


class ResidualMLPNet(nn.Module):
    def __init__(self, n_in: int, hidden: int = 64, n_blocks: int = 2, dropout: float = 0.1, n_out: int = 1):
        super().__init__()
        self.norm = Standardise((n_in,))
        self.inp = nn.Sequential(nn.Linear(n_in, hidden), nn.Dropout(dropout))
        self.blocks = nn.Sequential(*[ResBlock(hidden, dropout) for _ in range(n_blocks)])
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, n_out))

    def forward(self, x):
        return self.out(self.blocks(self.inp(self.norm(x.flatten(1)))))


class MLPModel(TorchModel):
    """MLP on every pixel. Params: hidden (64), depth (2), dropout (0.1), lr, weight_decay, heteroscedastic
    (False; True: the last layer gives mean and log sigma, trained on the Gaussian NLL, models/trainer.py)."""
    hyper_params = ("hidden", "depth", "dropout", "heteroscedastic")
    param_defaults = {"heteroscedastic": False}   # specs without it keep their run ids
    family = "mlp"
    weight_decay = 1e-2

    def _prepare(self, train, val, ctx):
        x = train.x.reshape(len(train.x), -1)
        self.state_ = dict(zip(("x_mean", "x_std"), standardise_stats(x, axis=0)))
        self.arch_ = {"n_in": int(x.shape[1]), "channels": list(train.channels)}

    differentiable = True

    def _inputs(self, view):
        return view.x.reshape(len(view.x), -1)

    def _inputs_torch(self, x):
        return (x.reshape(len(x), -1),)

    def _net(self, n_in):
        p = self.params
        return MLPNet(n_in, int(p.get("hidden", 64)), int(p.get("depth", 2)), float(p.get("dropout", 0.1)),
                      self._n_out())

    def _build(self):
        net = self._net(self.arch_["n_in"])
        net.norm.set(self.state_["x_mean"], self.state_["x_std"])
        return net


class ResidualMLPModel(MLPModel):
    """MLP with residual blocks on every pixel. Params: hidden (64), n_blocks (2), dropout (0.1)."""
    hyper_params = ("n_blocks",)
    family = "residual_mlp"

    def _net(self, n_in):
        p = self.params
        return ResidualMLPNet(n_in, int(p.get("hidden", 64)), int(p.get("n_blocks", 2)), float(p.get("dropout", 0.1)),
                              self._n_out())


class GlobalMLPNet(nn.Module):
    def __init__(self, n_in: int, hidden=(256, 64), dropout: float = 0.1):
        super().__init__()
        self.norm = Standardise((n_in,))
        layers, d = [], n_in
        for i, h in enumerate(hidden):
            layers += [nn.Linear(d, h), nn.GELU()]
            if i == 0 and dropout:
                layers.append(nn.Dropout(dropout))
            d = h
        self.embed = nn.Sequential(*layers)
        self.head = nn.Linear(d, 1)
        self.out_dim = d

    def forward(self, f):
        return self.head(self.embed(self.norm(f)))


class GlobalMLPModel(TorchModel):
    """The global tower alone: GlobalFeatures -> MLP. Params: drop_groups ([] or any of F0-F3),
    hidden ([256, 64]), dropout (0.1), lr, weight_decay."""
    hyper_params = ("drop_groups", "hidden", "dropout")
    uses_line_windows = True
    family = "global_mlp"
    weight_decay = 1e-3

    def _groups(self):
        drop = self.params.get("drop_groups") or []
        drop = [drop] if isinstance(drop, str) else list(drop)
        bad = [g for g in drop if g not in GROUPS]
        if bad:
            raise ValueError(f"drop_groups: unknown group(s) {bad}; choose from {list(GROUPS)}")
        return tuple(g for g in GROUPS if g not in drop)

    def _prepare(self, train, val, ctx):
        self.features_ = GlobalFeatures(groups=self._groups(), seed=int(ctx.seed)).fit(flux_channel(train), train.wave)
        f = self.features_.transform(flux_channel(train))
        mu, sd = standardise_stats(f, axis=0)
        self.state_ = {**self.features_.to_arrays(), "f_mean": mu, "f_std": sd}
        self.arch_ = {"n_in": int(f.shape[1]), "groups": list(self.features_.groups),
                      "columns": self.features_.names}
        self._cache = {id(train.x): f}

    def _restore(self):
        self.features_ = GlobalFeatures.from_arrays(self.state_)

    def _inputs(self, view):
        cached = getattr(self, "_cache", {}).get(id(view.x))
        return cached if cached is not None else self.features_.transform(flux_channel(view))

    def _build(self):
        p = self.params
        net = GlobalMLPNet(self.arch_["n_in"], tuple(int(h) for h in p.get("hidden", (256, 64))),
                           float(p.get("dropout", 0.1)))
        net.norm.set(self.state_["f_mean"], self.state_["f_std"])
        return net

    def fit(self, train, val, ctx):
        super().fit(train, val, ctx)
        self._cache = {}
        return self


MODELS = {"mlp": MLPModel, "residual_mlp": ResidualMLPModel, "global_mlp": GlobalMLPModel}
