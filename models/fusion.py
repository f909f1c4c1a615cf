"""Two-tower fusion of the global tower and the local tower (the report's open question 1).

    global tower  GlobalFeatures (models/features.py: 126 columns, PCA fitted on train), standardised
                  -> Linear(126, 128) -> GELU -> Dropout -> Linear(128, 32) -> GELU        = g (32)
    local tower   the top-K windows of models/windows.py (Ridge fitted on train, alpha on val,
                  K centres by `criterion` on train with the minimum separation) -> the shared
                  window CNN (WindowEncoder) -> flatten K x 4 -> Dropout -> Linear(4K, 32) -> ReLU = l (32)

    fusion_concat  head(concat(g, l)):  Linear(64, 32) -> ReLU -> Linear(32, 1)
    fusion_film    the global embedding conditions the local tower: Linear(32, 2*channels)(g)
                   gives a per-channel scale (1 + gamma) and shift beta applied to the window
                   CNN's feature maps (after BatchNorm, before ReLU; FiLM, Perez et al. 2018);
                   the head reads only the modulated local embedding: Linear(32, 32) -> ReLU ->
                   Linear(32, 1). The FiLM layer starts at zero (identity modulation).

Like the local tower alone, both learn the residual of the Ridge base (out-of-fold on train)
and predict ridge + network; param residual=False trains them on log g directly.
Params: K (256), window (8), criterion ("ridge"), drop_groups (global-feature groups to leave
out), channels (ctx.profile["cnn_channels"] unless given), oof_folds (5), lr, weight_decay.
~55 k network parameters at K=256 (each tower ~20-33 k).
"""
from __future__ import annotations

import torch
from torch import nn

from models.features import GROUPS, GlobalFeatures, flux_channel
from models.mlp import Standardise
from models.trainer import standardise_stats
from models.windows import RidgeWindowsModel, WindowCutter, WindowEncoder


class FusionNet(nn.Module):
    def __init__(self, mode: str, n_feat: int, in_ch: int, n_pix: int, centers, window: int, channels: int = 16,
                 emb: int = 4, g_hidden: int = 128, dim: int = 32, head_hidden: int = 32, dropout: float = 0.1):
        super().__init__()
        if mode not in ("concat", "film"):
            raise ValueError("mode must be 'concat' or 'film'")
        self.mode = mode
        K, L = len(centers), 2 * window + 1
        self.f_norm = Standardise((n_feat,))
        self.global_tower = nn.Sequential(nn.Linear(n_feat, g_hidden), nn.GELU(), nn.Dropout(dropout),
                                          nn.Linear(g_hidden, dim), nn.GELU())
        self.cut = WindowCutter(centers, window, n_pix)
        self.register_buffer("w_mean", torch.zeros(1, in_ch, K, L))
        self.register_buffer("w_std", torch.ones(1, in_ch, 1, 1))
        self.enc = WindowEncoder(in_ch, L, channels, emb)
        self.local_tower = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(K * emb, dim), nn.ReLU())
        if mode == "film":
            self.film = nn.Linear(dim, 2 * channels)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.head = nn.Sequential(nn.Linear(2 * dim if mode == "concat" else dim, head_hidden), nn.ReLU(),
                                  nn.Linear(head_hidden, 1))

    def forward(self, x, f):
        g = self.global_tower(self.f_norm(f))
        film = self.film(g) if self.mode == "film" else None
        loc = self.local_tower(self.enc.encode(x, self.cut, self.w_mean, self.w_std, film=film))
        return self.head(loc if self.mode == "film" else torch.cat([g, loc], dim=1))


class FusionModel(RidgeWindowsModel):
    hyper_params = ("drop_groups", "channels", "emb", "g_hidden", "dim", "head_hidden", "dropout")
    uses_line_windows = True
    family = "fusion"
    mode = "concat"
    lr = 2e-3

    def _prepare(self, train, val, ctx):
        self._ridge_and_centers(train, val, ctx)
        drop = self.params.get("drop_groups") or []
        drop = [drop] if isinstance(drop, str) else list(drop)
        gf = GlobalFeatures(groups=tuple(g for g in GROUPS if g not in drop), seed=int(ctx.seed))
        gf.fit(flux_channel(train), train.wave)
        self.features_ = gf
        f = gf.transform(flux_channel(train))
        mu, sd = standardise_stats(f, axis=0)
        self.state_.update(gf.to_arrays())
        self.state_.update(f_mean=mu, f_std=sd)
        self.arch_.update(mode=self.mode, n_feat=int(f.shape[1]), groups=list(gf.groups),
                          channels=int(self.params.get("channels") or ctx.profile.get("cnn_channels", 16)))

    def _restore(self):
        super()._restore()
        self.features_ = GlobalFeatures.from_arrays(self.state_)

    def _inputs(self, view):
        return view.x, self.features_.transform(flux_channel(view))

    def _build(self):
        a, p = self.arch_, self.params
        net = FusionNet(a["mode"], a["n_feat"], a["in_ch"], a["n_pix"], self.state_["centers"], a["window"],
                        a["channels"], int(p.get("emb", 4)), int(p.get("g_hidden", 128)), int(p.get("dim", 32)),
                        int(p.get("head_hidden", 32)), float(p.get("dropout", 0.1)))
        net.f_norm.set(self.state_["f_mean"], self.state_["f_std"])
        return self._set_window_stats(net)


class FusionConcatModel(FusionModel):
    """Two towers fused by concatenating their embeddings."""
    mode = "concat"


class FusionFiLMModel(FusionModel):
    """Two towers fused by FiLM: the global embedding scales and shifts the local tower's feature maps."""
    mode = "film"


MODELS = {"fusion_concat": FusionConcatModel, "fusion_film": FusionFiLMModel}
