"""Neural posterior estimation (#17 part 4): a posterior for (Teff, log g, [M/H]), not only a point.

    npe   spectrum -> embedding network (the summary: `context` numbers) -> a neural spline flow over
          the three labels, standardised on the train split, conditioned on that summary:
          q(Teff, log g, [M/H] | spectrum)

    embed "mlp"  every flux pixel, per-pixel standardised -> Linear(P, hidden) -> GELU -> Linear(hidden,
                 hidden) -> GELU -> Linear(hidden, context) (models/mlp.MLPNet with a wider last layer)
    embed "cnn"  the dilated CNN of models/cnn.py (d = 2, the profile's channels) over the flux, its last
                 layer giving `context` numbers instead of one
    S/N          where the view has an error channel (the family's inputs: flux+error), one more number
                 beside the summary: log of the star's median flux / error, standardised on the train
                 split. How wide a posterior must be depends on each star's S/N, which the flux shows
                 only through its scatter. (The whole error spectrum as a second input channel gave a
                 sharp Teff and a log g posterior no better than the prior on the quick data: the
                 noise-free error spectrum carries Teff, and the joint fit settled there.)
    flow "nsf"   zuko.flows.NSF: `transforms` autoregressive rational-quadratic spline transforms of
                 `bins` bins, each a masked MLP of `flow_hidden` units that also reads the summary
                 ("maf": affine transforms instead; "maf_nsf": one affine transform before the splines;
                 make_flow)

Params (param_defaults): embed mlp, hidden 128, depth 2, dropout 0, context 16, flow nsf, transforms 3,
flow_hidden [64, 64], bins 8, epochs 60, patience 10, n_samples 500 (what predict draws), lr 5e-3,
weight_decay 1e-4, noise_mode fresh.

The embedding and the flow are trained together by maximum likelihood of the true labels (the NPE
loss: the mean of -log q(labels | spectrum) in standardised units) with the shared trainer
(models/trainer.fit_torch: AdamW, warm-up then cosine, gradient clipping, early stopping on the
validation split's loss), on a fresh noise draw of the training spectra every epoch (models/noise.py,
noise_mode "fresh" as every torch family). Its own epoch budget and patience (params `epochs`,
`patience`) replace the profile's: the flow needs more epochs than a point estimate.

    model.predict(view)                      -> (mean, std) of the target label (log g) over the posterior
    model.posterior_samples(view, n, seed)   -> (n, stars, 3) samples of Teff [K], log g, [M/H] [dex]

Both draw from a torch.Generator of their own (seeded), so they repeat exactly and leave torch's global
random state alone. Saved as every torch family (state_dict + torch.load(weights_only=True)).
"""
from __future__ import annotations

import dataclasses
from functools import partial

import numpy as np
import torch
import zuko
from torch import nn
from zuko.distributions import DiagNormal
from zuko.flows import Flow, UnconditionalDistribution
from zuko.flows.autoregressive import MaskedAutoregressiveTransform
from zuko.transforms import MonotonicRQSTransform

from models.cnn import HEAD_HIDDEN, DilatedCNN
from models.mlp import MLPNet
from models.noise import epoch_draws
from models.trainer import TorchModel, as_float_tensor, fit_torch, standardise_stats

N_LABELS = 3               # Teff, log g, [M/H] (core.data.LABELS)
EMBEDS = ("mlp", "cnn")
FLOWS = ("nsf", "maf", "maf_nsf")     # see make_flow


class NPENet(nn.Module):
    """forward(flux[, log S/N]) -> the summary c (the embedding, and the standardised log S/N where
    given); flow(c) -> a distribution over the standardised labels."""

    def __init__(self, embed: nn.Module, context: int, transforms: int, flow_hidden, bins: int, snr: bool,
                 flow: str = "nsf"):
        super().__init__()
        self.embed = embed
        self.flow = make_flow(flow, context + int(snr), transforms, tuple(int(h) for h in flow_hidden), bins)
        # the trainer's label standardisation, one per label (filled in by fit_torch, saved with the weights)
        self.register_buffer("y_mean", torch.zeros(N_LABELS))
        self.register_buffer("y_std", torch.ones(N_LABELS))
        self.register_buffer("snr_mean", torch.zeros(()))
        self.register_buffer("snr_std", torch.ones(()))

    def forward(self, x, log_snr=None):
        c = self.embed(x)
        if log_snr is None:
            return c
        return torch.cat([c, (log_snr.reshape(-1, 1) - self.snr_mean) / self.snr_std], dim=1)

    def nll(self, xs, y_std):
        """Mean of -log q(y | inputs xs) for standardised labels y_std (n, 3); the flow in float32."""
        c = self(*xs)
        with torch.autocast(device_type=c.device.type, enabled=False):
            return -self.flow(c.float()).log_prob(y_std.float()).mean()

    @torch.no_grad()
    def sample(self, xs, n: int, gen: torch.Generator) -> torch.Tensor:
        """(n, stars, 3) samples in the labels' own units, from base normals drawn with `gen` (CPU)."""
        dist = self.flow(self(*xs).float())
        z = torch.randn((n, len(xs[0]), N_LABELS), generator=gen).to(xs[0].device)
        s = dist.transform.inv(dist.base.mean + dist.base.stddev * z)
        return s * self.y_std + self.y_mean


def make_flow(kind: str, context: int, transforms: int, hidden: tuple, bins: int) -> nn.Module:
    """The conditional flow over the three labels: "nsf" zuko's neural spline flow, "maf" its masked
    autoregressive flow (affine transforms), "maf_nsf" one affine autoregressive transform (a location and
    scale per label from the summary) before the spline transforms, as in zuko.flows.NSF otherwise."""
    if kind == "nsf":
        return zuko.flows.NSF(N_LABELS, context, bins=bins, transforms=transforms, hidden_features=hidden)
    if kind == "maf":
        return zuko.flows.MAF(N_LABELS, context, transforms=transforms, hidden_features=hidden)
    orders = [torch.arange(N_LABELS), torch.arange(N_LABELS).flip(0)]
    spline = partial(MonotonicRQSTransform, slope=1e-3)
    steps = [MaskedAutoregressiveTransform(N_LABELS, context, order=orders[0], hidden_features=hidden)]
    steps += [MaskedAutoregressiveTransform(N_LABELS, context, order=orders[(i + 1) % 2], univariate=spline,
                                            shapes=[(bins,), (bins,), (bins - 1,)], hidden_features=hidden)
              for i in range(transforms)]
    base = UnconditionalDistribution(DiagNormal, torch.zeros(N_LABELS), torch.ones(N_LABELS), buffer=True)
    return Flow(steps, base)


def npe_loss(module: NPENet, xs, y_batch):
    """fit_torch's loss for this family: the NPE loss of a batch."""
    return module.nll(xs, y_batch)


def log_snr(view) -> np.ndarray:
    """(n,) log of each spectrum's median flux / error (the view's flux and error channels)."""
    flux, err = view.x[:, view.channels.index("flux")], view.x[:, view.channels.index("error")]
    return np.log(np.maximum(np.median(flux / np.maximum(err, 1e-12), axis=1), 1e-3)).astype(np.float32)


class NPEModel(TorchModel):
    """Neural posterior estimation with a normalizing flow (see the module docstring)."""
    hyper_params = ("embed", "hidden", "depth", "dropout", "context", "flow", "transforms", "flow_hidden", "bins",
                    "epochs", "patience", "n_samples")
    # every parameter at its default hashes like a spec that leaves it out
    param_defaults = {"embed": "mlp", "hidden": 128, "depth": 2, "dropout": 0.0, "context": 16, "flow": "nsf",
                      "transforms": 3, "flow_hidden": [64, 64], "bins": 8, "epochs": 60, "patience": 10,
                      "n_samples": 500}
    family = "npe"
    # its own epoch budget and patience (params above), not the torch families' `training`
    implied_params = {"noise_mode": "fresh"}
    legacy_params = {"noise_mode": "fixed"}
    # the error spectrum too, for each star's S/N (see the module docstring)
    inputs = "flux+error"
    # measured on the quick data at noise 1.0, 60 epochs (docs/models.md): lr 1e-3 / weight decay 1e-2 (the
    # pixel MLP's) R^2 0.750, val NLL -2.30; 2e-3 / 1e-4: 0.773, -2.75; 5e-3 / 1e-4: 0.784, -2.77
    lr = 5e-3
    weight_decay = 1e-4

    def _p(self, name):
        return self.params.get(name, self.param_defaults[name])

    @classmethod
    def check_params(cls, params: dict) -> None:
        super().check_params(params)
        if params.get("embed", "mlp") not in EMBEDS:
            raise ValueError(f"embed must be one of {', '.join(EMBEDS)}, got {params['embed']!r}")
        if params.get("flow", "nsf") not in FLOWS:
            raise ValueError(f"flow must be one of {', '.join(FLOWS)}, got {params['flow']!r}")

    # -- preparing the inputs (train split only)
    def _prepare(self, train, val, ctx):
        embed = str(self._p("embed"))
        if "flux" not in train.channels:
            raise ValueError(f"npe reads the flux channel; inputs {train.channels} have none")
        self.arch_ = {"embed": embed, "n_pix": int(train.x.shape[2]), "channels_in": list(train.channels),
                      "snr": "error" in train.channels, "cnn_channels": int(ctx.profile.get("cnn_channels", 16))}
        flux = self._inputs(train)[0]
        mu, sd = standardise_stats(flux, axis=0 if embed == "mlp" else (0, 2))
        self.state_ = {"x_mean": mu, "x_std": sd}
        if self.arch_["snr"]:
            s = log_snr(train)
            self.state_ |= {"snr_mean": np.array(s.mean(), np.float32), "snr_std": np.array(s.std() or 1.0, np.float32)}

    def _inputs(self, view):
        """(flux,) or (flux, log S/N): flux (n, P) for the MLP, (n, 1, P) for the CNN."""
        flux = view.x[:, self.arch_["channels_in"].index("flux")]
        flux = flux if self.arch_["embed"] == "mlp" else flux[:, None, :]
        return (flux, log_snr(view)) if self.arch_["snr"] else (flux,)

    def _targets(self, view) -> np.ndarray:
        """What the flow learns: all three labels (models/noise.py asks for them on each fresh draw)."""
        return np.asarray(view.y, np.float64)

    def _build(self):
        a, context = self.arch_, int(self._p("context"))
        if a["embed"] == "mlp":
            embed = MLPNet(a["n_pix"], int(self._p("hidden")), int(self._p("depth")), float(self._p("dropout")))
            embed.body[-1] = nn.Linear(embed.body[-1].in_features, context)
            embed.norm.set(self.state_["x_mean"], self.state_["x_std"])
        else:
            ch = a["cnn_channels"]
            embed = DilatedCNN(1, ch, stem=max(4, ch // 4), dropout=float(self._p("dropout")), n_pix=a["n_pix"])
            embed.head[-1] = nn.Linear(HEAD_HIDDEN, context)
            embed.x_mean.copy_(torch.as_tensor(self.state_["x_mean"]))
            embed.x_std.copy_(torch.as_tensor(self.state_["x_std"]).reshape(1, -1, 1))
        net = NPENet(embed, context, int(self._p("transforms")), self._p("flow_hidden"), int(self._p("bins")),
                     a["snr"], str(self._p("flow")))
        if a["snr"]:
            net.snr_mean.copy_(torch.as_tensor(self.state_["snr_mean"]))
            net.snr_std.copy_(torch.as_tensor(self.state_["snr_std"]))
        return net

    # -- the interface
    def fit(self, train, val, ctx):
        seed = int(ctx.seed)
        torch.manual_seed(seed)
        np.random.seed(seed % (2 ** 32))
        self.target_ = int(ctx.target)
        self._prepare(train, val, ctx)
        torch.manual_seed(seed)
        self.module_ = self._build()
        budget = dataclasses.replace(ctx, profile=dict(ctx.profile, epochs=int(self._p("epochs")),
                                                       patience=int(self._p("patience"))))
        self.history_ = fit_torch(self.module_, self._inputs(train), self._targets(train), self._inputs(val),
                                  self._targets(val), budget, lr=float(self.params.get("lr", self.lr)),
                                  weight_decay=float(self.params.get("weight_decay", self.weight_decay)),
                                  train_draw=epoch_draws(self, train, ctx), loss=npe_loss)
        return self

    def posterior_samples(self, view, n_samples: int | None = None, seed: int = 0, batch: int = 256) -> np.ndarray:
        """(n_samples, stars, 3) posterior samples of Teff [K], log g and [M/H] [dex] for every star of
        the view; the same seed gives the same samples."""
        n = int(n_samples or self._p("n_samples"))
        m = self.module_
        m.eval()
        dev = next(m.parameters()).device
        X = [as_float_tensor(a) for a in self._inputs(view)]
        gen = torch.Generator().manual_seed(int(seed))
        out = [m.sample([x[i:i + batch].to(dev) for x in X], n, gen).cpu() for i in range(0, len(X[0]), batch)]
        return torch.cat(out, dim=1).double().numpy() if out else np.zeros((n, 0, N_LABELS))

    def predict(self, view):
        s = self.posterior_samples(view)[:, :, self.target_]
        return s.mean(axis=0), s.std(axis=0, ddof=1)


MODELS = {"npe": NPEModel}
