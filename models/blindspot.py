"""The blind-spot denoising encoder (self-supervised) and the heads trained on top of it.

    blindspot            the encoder: a 1-D convolutional U-Net trained as a blind-spot denoiser
                         (Noise2Self / masked-pixel training). Inputs 'flux' (noisy flux alone) or
                         'flux+error' (flux plus the error vector: the second variant).
    blindspot_head       frozen encoder + MLP head (only the head is trained)
    blindspot_finetune   the same network, initialised from the frozen head's run, then trained
                         end to end (the encoder's weights move too)

The encoder, top to bottom (P = 4096 input pixels, zero-padded to a multiple of 512):

    input (C + 1, P)    C data channels, each standardised by one train-split mean and std, and
                        a mask-indicator channel; folded 8 pixels into channels ("pixel
                        unshuffle"): ((C + 1) x 8, P/8). Full-resolution convolutions are slow
                        on a CPU; folding keeps every pixel and costs ~5x less.
    enc1                Conv(k5) -> 24, ReLU, Conv(k5), ReLU                 (24, P/8)   = (24, 512)
    enc2                Conv(k4, stride 4) -> 32, ReLU, Conv(k5), ReLU       (32, P/32)  = (32, 128)
    enc_pre_latent      Conv(k4, stride 4) -> 48, ReLU, Conv(k5), ReLU       (48, P/128) = (48, 32)
    enc_last            Conv(k4, stride 4) -> 48, ReLU, Conv(k3): the latent (48, P/512) = (48, 8): 384 numbers
    decoder             three x [ConvTranspose(k4, stride 4) + the encoder level of that size
                        (additive skip), Conv(k5), ReLU], Conv(k1) -> 8 values per position,
                        unfolded back to P pixels: a correction added to the input's flux
                        channel (at a masked pixel, the mean of its neighbours), so an untrained
                        network already predicts a masked pixel by linear interpolation.
    85,448 parameters with inputs 'flux', 86,408 with 'flux+error'.

Blind-spot training. Every step masks one pixel in `mask_stride` (8) of every spectrum, on a grid
with a random offset per spectrum: at a masked pixel every input channel is replaced by the mean of
its two neighbours (i-1, i+1; the one neighbour at an edge) and the mask channel is 1. The loss is
the mean squared difference between the prediction and the NOISY standardised flux, on masked
pixels only. Since the noise of pixel i is independent of everything the network sees when i is
masked, the minimiser is E[flux_i | neighbourhood]: the clean flux (Noise2Self). Labels never
touch this training; the validation loss (for early stopping) is the same masked loss with a fixed
mask. The shared trainer (models.trainer.fit_torch) runs it unchanged: the training module returns,
per spectrum, the root of its masked MSE and the target is 0, so fit_torch's mean squared error is
exactly the masked MSE.

Blind inference (`denoise`): `mask_stride` passes, pass j masking the pixels i = j (mod stride);
each pixel's output is taken from the pass that masked it. Output pixel i therefore never depends
on input pixel i (any channel) - the J-invariance of Noise2Self, tested numerically in
tests/test_latent.py. The latent (`maps`) is read with nothing masked (mask channel 0).

The encoder's metrics: its "R^2" is that of a Ridge read-out (alpha on the validation split) from
the 384-number latent (enc_last, flattened) to the spec's target, fitted after the encoder is
frozen; the denoising quality on the test split goes to `extra_metrics_`: MSE of the blind output
to the clean flux, of the noisy input to the clean flux, their ratio, and the same for the
non-blind output (nothing masked).
"""
from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models import latent_features as lf
from models.trainer import TorchModel, as_float_tensor, fit_torch, predict_torch

LAYERS = ("enc1", "enc2", "enc_pre_latent", "enc_last")   # the named layers the latent is read from
WIDTHS = (24, 32, 48, 48)                                   # enc1, enc2, enc_pre_latent, enc_last
UNSHUFFLE = 8                                               # pixels folded into channels at the input
DOWN = 4                                                    # stride of every down-sampling step
PAD_TO = UNSHUFFLE * DOWN ** 3                              # input length is padded to a multiple of this


def nominal_shape(layer: str, n_pix: int = 4096) -> tuple[int, int]:
    """A layer's (channels, positions) from the architecture alone (no fitted model needed)."""
    p = -(-n_pix // PAD_TO) * PAD_TO
    i = LAYERS.index(layer)
    return WIDTHS[i], p // UNSHUFFLE // DOWN ** i


ENCODER_PARAMS: dict = {}   # the parameters of the encoder every probe and head reads (its defaults)


def encoder_dependency(variant: str, noise: float) -> dict:
    """What a probe or head needs of its encoder's spec (Model.requires): the encoder of that
    variant (= its inputs) trained at that noise level, on the same data set, profile and seed."""
    return {"model": "blindspot", "params": dict(ENCODER_PARAMS), "inputs": variant, "noise_level": float(noise),
            "target": "logg"}


def _block(c_in, c_out, k):
    return nn.Sequential(nn.Conv1d(c_in, c_out, k, padding=k // 2), nn.ReLU())


class BlindSpotNet(nn.Module):
    """The U-Net. forward(x) is the training objective (see the module docstring); `maps`,
    `denoise` and `predict_flux` are the uses."""

    def __init__(self, n_in: int, widths=WIDTHS, mask_stride: int = 8):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.n_in, self.mask_stride = int(n_in), int(mask_stride)
        self.register_buffer("x_mean", torch.zeros(n_in))
        self.register_buffer("x_std", torch.ones(n_in))
        self.register_buffer("y_mean", torch.zeros(()))   # set by fit_torch (unused: the target is 0)
        self.register_buffer("y_std", torch.ones(()))

        def down(a, b, k=5):
            return nn.Sequential(nn.Conv1d(a, b, DOWN, stride=DOWN), nn.ReLU(), _block(b, b, k))

        self.enc1 = nn.Sequential(_block((n_in + 1) * UNSHUFFLE, w1, 5), _block(w1, w1, 5))
        self.enc2, self.enc_pre_latent = down(w1, w2), down(w2, w3)
        self.enc_last = nn.Sequential(nn.Conv1d(w3, w4, DOWN, stride=DOWN), nn.ReLU(), nn.Conv1d(w4, w4, 3, padding=1))
        self.up = nn.ModuleList([nn.ConvTranspose1d(a, b, DOWN, stride=DOWN) for a, b in ((w4, w3), (w3, w2), (w2, w1))])
        self.dec = nn.ModuleList([_block(b, b, 5) for b in (w3, w2, w1)])
        self.out = nn.Conv1d(w1, UNSHUFFLE, 1)

    # -- pieces
    def standardise(self, x):
        return (x - self.x_mean[None, :, None]) / self.x_std[None, :, None]

    def _pad(self, z):
        p = z.shape[-1]
        extra = (-p) % PAD_TO
        return F.pad(z, (0, extra)) if extra else z

    def mask_input(self, z, offset):
        """Masked network input: z (B, C, P) standardised, offset (B,) long. Pixels i = offset (mod
        stride) get the mean of their neighbours in every channel; a mask channel marks them."""
        b, c, p = z.shape
        pos = torch.arange(p, device=z.device)
        mask = ((pos[None, :] - offset[:, None]) % self.mask_stride == 0)            # (B, P)
        left = torch.cat([z[..., 1:2], z[..., :-1]], dim=-1)                      # left neighbour (edge: right one)
        right = torch.cat([z[..., 1:], z[..., -2:-1]], dim=-1)                    # right neighbour (edge: left one)
        zi = torch.where(mask[:, None, :], 0.5 * (left + right), z)
        return torch.cat([zi, mask[:, None, :].to(z.dtype)], dim=1), mask

    def encode(self, inp, upto: str | None = None) -> dict:
        """Named feature maps of a network input (B, C+1, P_padded), up to layer `upto`."""
        b, c, p = inp.shape
        prev = inp.reshape(b, c, p // UNSHUFFLE, UNSHUFFLE).transpose(2, 3).reshape(b, c * UNSHUFFLE, p // UNSHUFFLE)
        out = {}
        for name in LAYERS:
            prev = out[name] = getattr(self, name)(prev)
            if name == upto:
                break
        return out

    def decode(self, f):
        h = f["enc_last"]
        for up, dec, skip in zip(self.up, self.dec, ("enc_pre_latent", "enc2", "enc1")):
            h = dec(up(h) + f[skip])
        o = self.out(h)                                   # (B, UNSHUFFLE, P / UNSHUFFLE)
        return o.transpose(1, 2).reshape(o.shape[0], -1)  # pixel shuffle back to (B, P)

    def _run(self, z, offset):
        """Prediction of every pixel's standardised flux with the pixels i = offset (mod stride)
        masked: the masked input's flux channel (there, the neighbours' mean) + the network's
        correction."""
        inp, mask = self.mask_input(z, offset)
        p = z.shape[-1]
        return self.decode(self.encode(self._pad(inp)))[:, :p] + inp[:, 0], mask

    # -- training objective (used by models.trainer.fit_torch)
    def forward(self, x):
        """Per spectrum: sqrt of the masked MSE between prediction and noisy standardised flux.
        Training: a random grid offset per spectrum; evaluation: offset = row % stride (fixed)."""
        z = self.standardise(x)
        b = z.shape[0]
        if self.training:
            offset = torch.randint(0, self.mask_stride, (b,), device=z.device)
        else:
            offset = torch.arange(b, device=z.device) % self.mask_stride
        pred, mask = self._run(z, offset)
        m = mask.to(pred.dtype)
        mse = (((pred.float() - z[:, 0].float()) ** 2) * m).sum(1) / m.sum(1).clamp_min(1)
        return torch.sqrt(mse + 1e-12)

    # -- uses
    def maps(self, x, upto: str | None = None) -> dict:
        """Named feature maps of raw inputs x (B, C, P), nothing masked."""
        z = self._pad(self.standardise(x))
        inp = torch.cat([z, torch.zeros_like(z[:, :1])], dim=1)
        return self.encode(inp, upto)

    def denoise(self, x):
        """Blind (J-invariant) denoised flux of raw inputs x (B, C, P), in flux units: the
        `mask_stride` masked copies of the batch run as one batch."""
        z = self.standardise(x)
        b, s = z.shape[0], self.mask_stride
        offsets = torch.arange(s, device=z.device).repeat_interleave(b)          # pass j for copy j
        pred, mask = self._run(z.repeat(s, 1, 1), offsets)
        out = (pred * mask).reshape(s, b, -1).sum(0)                              # each pixel from its pass
        return out * self.x_std[0] + self.x_mean[0]

    def predict_flux(self, x):
        """Non-blind output (nothing masked): the network sees every pixel, its own included."""
        z = self.standardise(x)
        inp = self._pad(torch.cat([z, torch.zeros_like(z[:, :1])], dim=1))
        return (self.decode(self.encode(inp))[:, :z.shape[-1]] + z[:, 0]) * self.x_std[0] + self.x_mean[0]


@torch.no_grad()
def batched(fn, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Apply a torch function to a numpy array in batches (CPU float32 in, numpy out)."""
    out = []
    for i in range(0, len(x), batch):
        out.append(fn(as_float_tensor(x[i:i + batch])).float().numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def _ridge_readout(Xtr, ytr, Xva, yva):
    """Ridge (alpha on val) on standardised features: (mean, std, coef, y0, alpha)."""
    from models.linear import ALPHAS, ridge_path
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-8
    y0 = float(ytr.mean())
    Xs, Xv = (Xtr - mu) / sd, (Xva - mu) / sd
    best = None
    for a, w in zip(ALPHAS, ridge_path(Xs, ytr - y0, ALPHAS)):
        mse = float(np.mean((Xv @ w + y0 - yva) ** 2))
        if best is None or mse < best[0]:
            best = (mse, a, w)
    return mu, sd, best[2], y0, best[1]


class BlindSpotEncoder(TorchModel):
    """The self-supervised encoder. Params: mask_stride (8), epochs (None: the profile's), lr (2e-3),
    weight_decay (1e-4). Labels are used only by the Ridge read-out fitted after training."""
    hyper_params = ("lr", "weight_decay")
    inputs = "flux"
    family = "blindspot"
    lr = 2e-3
    # trained on the view's fixed noise draw only (it does not go through TorchModel.fit); its probes'
    # run ids do not include its own, so changing how it trains would mix two encoders in one cache
    noise_mode, noise_modes, implied_params = "fixed", ("fixed",), {}

    def __init__(self, mask_stride: int = 8, epochs: int | None = None, **params):
        super().__init__(mask_stride=int(mask_stride), epochs=epochs, **params)
        self.dataset_ = None
        self.extra_metrics_: dict = {}

    def _build(self):
        net = BlindSpotNet(self.arch_["n_in"], tuple(self.arch_["widths"]), self.arch_["mask_stride"])
        if self.state_:
            net.x_mean.copy_(torch.as_tensor(self.state_["x_mean"]))
            net.x_std.copy_(torch.as_tensor(self.state_["x_std"]))
        return net

    def _inputs(self, view):
        return view.x

    def fit(self, train, val, ctx):
        torch.manual_seed(int(ctx.seed))
        self.target_ = int(ctx.target)
        x = train.x.astype(np.float64)
        self.state_ = {"x_mean": x.mean(axis=(0, 2)).astype(np.float32),
                       "x_std": (x.std(axis=(0, 2)) + 1e-8).astype(np.float32)}
        del x
        self.arch_ = {"n_in": int(train.x.shape[1]), "n_pix": int(train.x.shape[2]), "widths": list(WIDTHS),
                      "mask_stride": int(self.params["mask_stride"]), "channels": list(train.channels)}
        self.module_ = self._build()
        if self.params.get("epochs"):
            ctx = dataclasses.replace(ctx, profile={**ctx.profile, "epochs": int(self.params["epochs"])})
        # self-supervised: the targets handed to the trainer are zeros (see the module docstring)
        self.history_ = fit_torch(self.module_, train.x, np.zeros(len(train.x)), val.x, np.zeros(len(val.x)), ctx,
                                  lr=float(self.params.get("lr", self.lr)),
                                  weight_decay=float(self.params.get("weight_decay", self.weight_decay)))
        self.module_.cpu().eval()
        # the read-out that defines this run's R^2 (labels touch only this, after the encoder is fixed)
        ytr, yva = train.y[:, self.target_].astype(np.float64), val.y[:, self.target_].astype(np.float64)
        mu, sd, coef, y0, alpha = _ridge_readout(self.latent(train.x), ytr, self.latent(val.x), yva)
        self.state_.update(ro_mean=mu, ro_std=sd, ro_coef=coef, ro_y0=np.array(y0), ro_alpha=np.array(alpha))
        self.readout_alpha_ = float(alpha)
        self.dataset_ = getattr(ctx, "dataset", None)
        ctx.log(f"blindspot: best masked val MSE {self.history_['best_val_loss']:.4f} (standardised) at epoch "
                f"{self.history_['best_epoch']}; read-out alpha {alpha:g}")
        return self

    # -- the latent and the denoiser
    def layer_maps(self, x: np.ndarray, layer: str, batch: int = 256) -> np.ndarray:
        """(n, C, L) feature map of one named layer, nothing masked."""
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
        net = self.module_.cpu().eval()
        return batched(lambda t: net.maps(t, upto=layer)[layer], x, batch)

    def latent(self, x: np.ndarray) -> np.ndarray:
        """The 384-number latent: enc_last flattened."""
        m = self.layer_maps(x, "enc_last")
        return m.reshape(len(m), -1).astype(np.float64)

    def denoise(self, x: np.ndarray, blind: bool = True) -> np.ndarray:
        net = self.module_.cpu().eval()
        return batched(net.denoise if blind else net.predict_flux, x, 32 if blind else 128)

    def denoise_report(self, view, dataset) -> dict:
        """Denoising quality on a view, against the data set's clean flux of the same rows."""
        clean, _ = dataset.read(view.index)
        noisy = view.x[:, 0]
        blind = self.denoise(view.x, blind=True)
        full = self.denoise(view.x, blind=False)
        mse_noisy = float(np.mean((noisy.astype(np.float64) - clean) ** 2))
        mse_blind = float(np.mean((blind.astype(np.float64) - clean) ** 2))
        mse_full = float(np.mean((full.astype(np.float64) - clean) ** 2))
        return {"denoise_mse": mse_blind, "noisy_mse": mse_noisy, "denoise_ratio": mse_blind / mse_noisy,
                "denoise_mse_nonblind": mse_full, "denoise_ratio_nonblind": mse_full / mse_noisy,
                "train_epochs": float(self.history_.get("epochs_run", 0)),
                "train_s": float(self.history_.get("seconds", 0.0))}

    def predict(self, view):
        """The Ridge read-out of the latent. During the engine's run (right after fit) this also
        measures the denoising quality on the view (the test split) into extra_metrics_."""
        s = self.state_
        y = ((self.latent(view.x) - s["ro_mean"]) / s["ro_std"]) @ s["ro_coef"] + float(s["ro_y0"])
        if self.dataset_ is not None and view.channels and view.channels[0] == "flux":
            self.extra_metrics_ = self.denoise_report(view, self.dataset_)
        return y

    def _restore(self):
        self.readout_alpha_ = float(self.state_.get("ro_alpha", np.nan))


# --------------------------------------------------------------------------- heads
class MapStandardise(nn.Module):
    """Per-channel (x - mean) / std of a feature map, with the train split's statistics as buffers."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels, 1))
        self.register_buffer("std", torch.ones(channels, 1))

    def set(self, maps: np.ndarray) -> None:
        m = maps.mean(axis=(0, 2), dtype=np.float64)
        sd = maps.std(axis=(0, 2), dtype=np.float64)
        sd = sd + 1e-3 * max(float(sd.max()), 1e-12)        # silent channels stay silent
        self.mean.copy_(torch.as_tensor(m, dtype=torch.float32)[:, None])
        self.std.copy_(torch.as_tensor(sd, dtype=torch.float32)[:, None])

    def forward(self, x):
        return (x - self.mean) / self.std


class HeadNet(nn.Module):
    """encoder (a BlindSpotNet) -> one named layer's map -> per-channel standardisation ->
    Conv(k3) + GELU -> pooling -> LayerNorm -> MLP (hidden, 64) -> 1."""

    def __init__(self, encoder: BlindSpotNet, layer: str, pooling: str, channels: int, length: int,
                 hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.encoder, self.layer, self.pooling = encoder, layer, pooling
        d = lf.pooled_dim(channels, length, pooling)
        self.head = nn.Sequential(
            MapStandardise(channels), nn.Conv1d(channels, channels, 3, padding=1), nn.GELU(), Pool(pooling),
            nn.LayerNorm(d), nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, 64), nn.GELU(), nn.Linear(64, 1))
        for m in (self, self.head):
            m.register_buffer("y_mean", torch.zeros(()))
            m.register_buffer("y_std", torch.ones(()))

    def forward(self, x):
        return self.head(self.encoder.maps(x, upto=self.layer)[self.layer])


class Pool(nn.Module):
    """A pooling of core.analysis.latent as a torch module (global_mean, global_max, seg_mean_K, flat)."""

    def __init__(self, pooling: str):
        super().__init__()
        self.pooling = pooling

    def forward(self, m):
        return lf.pool_torch(m, self.pooling)


class BlindSpotHead(TorchModel):
    """Frozen encoder + MLP head. Params: encoder ('flux' | 'flux+error': which encoder variant),
    encoder_noise (the noise level the encoder was trained at), layer ('enc_pre_latent'), pooling
    ('seg_mean_K8'), hidden (128), lr, weight_decay. The encoder comes from its own cached run
    (its dependency: `requires`), so it is trained once and shared."""
    inputs = "flux"
    family = "blindspot_head"
    weight_decay = 1e-3
    finetune = False
    # the frozen head trains on encoder maps computed once: the view's fixed noise draw only
    noise_mode, noise_modes, implied_params = "fixed", ("fixed",), {}

    defaults = {"encoder": "flux", "encoder_noise": 1.0, "layer": "enc_pre_latent", "pooling": "seg_mean_K8",
                "hidden": 128}

    hyper_params = ("encoder", "encoder_noise", "layer", "pooling", "hidden")

    @classmethod
    def requires(cls, spec: dict) -> dict[str, dict]:
        p = {**cls.defaults, **spec["params"]}
        return {"encoder": encoder_dependency(p["encoder"], p["encoder_noise"])}

    @property
    def p(self) -> dict:
        return {**self.defaults, **self.params}

    def _build(self):
        a = self.arch_
        enc = BlindSpotNet(a["n_in"], tuple(a["widths"]), a["mask_stride"])
        return HeadNet(enc, a["layer"], a["pooling"], a["channels"], a["length"], a["hidden"])

    def _inputs(self, view):
        return view.x

    def fit(self, train, val, ctx):
        p = self.p
        self.target_ = int(ctx.target)
        enc_model, self.encoder_run_id_ = ctx.deps["encoder"].model, ctx.deps["encoder"].run_id
        lf.check_inputs(p["encoder"], train)
        ea = enc_model.arch_
        shape = lf.layer_shape(enc_model, p["layer"])
        self.arch_ = {"n_in": ea["n_in"], "widths": ea["widths"], "mask_stride": ea["mask_stride"],
                      "layer": p["layer"], "pooling": p["pooling"], "channels": shape[0], "length": shape[1],
                      "hidden": int(p["hidden"]), "encoder_run_id": self.encoder_run_id_, "finetune": self.finetune}
        if not lf.valid_pooling(shape, p["pooling"]):
            raise ValueError(f"pooling {p['pooling']} does not apply to {p['layer']} of shape {shape}")
        torch.manual_seed(int(ctx.seed))
        net = self._build()
        net.encoder.load_state_dict(copy.deepcopy(enc_model.module_.state_dict()))
        ytr, yva = train.y[:, self.target_], val.y[:, self.target_]
        lr = float(p.get("lr", self.lr))
        wd = float(p.get("weight_decay", self.weight_decay))
        self.extra_metrics_ = {}
        if not self.finetune:
            for q in net.encoder.parameters():
                q.requires_grad_(False)
            # the encoder is frozen, so its maps are computed once and the head trains on them
            mtr = lf.layer_maps(enc_model, self.encoder_run_id_, train, p["layer"])
            mva = lf.layer_maps(enc_model, self.encoder_run_id_, val, p["layer"])
            net.head[0].set(mtr)
            self.history_ = fit_torch(net.head, mtr, ytr, mva, yva, ctx, lr=lr, weight_decay=wd)
            net.y_mean.copy_(net.head.y_mean)
            net.y_std.copy_(net.head.y_std)
        else:
            init = self._init_from_frozen(ctx)
            net.load_state_dict(init.module_.state_dict())
            self.extra_metrics_ = {"frozen_head_r2": self.frozen_r2}
            self.history_ = fit_torch(net, train.x, ytr, val.x, yva, ctx, lr=lr, weight_decay=wd)
            net.head.y_mean.copy_(net.y_mean)
            net.head.y_std.copy_(net.y_std)
        self.module_ = net.cpu().eval()
        return self

    def _init_from_frozen(self, ctx):  # pragma: no cover - only the fine-tuned head has one
        raise NotImplementedError

    def predict(self, view):
        return predict_torch(self.module_, view.x, batch_size=256)

    @property
    def n_params(self) -> int:
        """Trained parameters: the head's (frozen), the whole network's (fine-tuned)."""
        if self.module_ is None:
            return 0
        n = sum(q.numel() for q in self.module_.head.parameters())
        if self.finetune:   # the encoder's blocks up to the layer read (the decoder is unused)
            used = LAYERS[:LAYERS.index(self.module_.layer) + 1]
            n += sum(q.numel() for name in used for q in getattr(self.module_.encoder, name).parameters())
        return int(n)

    def _restore(self):
        self.encoder_run_id_ = self.arch_.get("encoder_run_id")


class BlindSpotFinetune(BlindSpotHead):
    """The frozen head's network, initialised from the blindspot_head run with the same params
    (linear-probe-then-fine-tune), then trained end to end at a lower learning rate (lr 3e-4)."""
    family = "blindspot_finetune"
    finetune = True
    lr = 3e-4

    @classmethod
    def requires(cls, spec: dict) -> dict[str, dict]:
        """The encoder, and the frozen head with the same params (its learning rate differs by
        design) whose network this one starts from: linear probe, then fine-tune."""
        p = spec["params"]
        frozen = {"model": "blindspot_head", "params": {k: v for k, v in p.items() if k != "lr"},
                  "inputs": p.get("encoder", "flux"), "noise_level": float(p.get("encoder_noise", 1.0))}
        return {**super().requires(spec), "frozen": frozen}

    def _init_from_frozen(self, ctx):
        dep = ctx.deps["frozen"]
        self.frozen_run_id_ = dep.run_id
        self.frozen_r2 = float(dep.metrics["r2"])
        return dep.model

    def _save(self, folder):
        super()._save(folder)
        (folder / "finetune.json").write_text(json.dumps({"frozen_run_id": getattr(self, "frozen_run_id_", None),
                                                          "frozen_r2": getattr(self, "frozen_r2", None)}))


MODELS = {"blindspot": BlindSpotEncoder, "blindspot_head": BlindSpotHead, "blindspot_finetune": BlindSpotFinetune}
