"""The one trainer every torch model shares, and the base class of the torch model families.

    device = pick_device()                         # cuda, then mps, then cpu
    history = fit_torch(module, X_train, y_train, X_val, y_val, ctx, lr=1e-3, weight_decay=1e-4)
    y_hat = predict_torch(module, X)               # de-standardised, numpy float64

What fit_torch does, top to bottom:
  - seeds torch (torch.manual_seed(ctx.seed)); the order of the mini-batches comes from a
    torch.Generator seeded with ctx.seed, so the same seed gives the same model bit for bit
    on the same machine;
  - standardises the target on the training split and keeps its mean and std as buffers of
    the module (`y_mean`, `y_std`): they travel in the state_dict, so a saved model
    predicts in dex without anything else;
  - moves the module and the data to the device (ctx.device, or pick_device() when that is
    None or "auto"); on CUDA it trains under torch.autocast (bf16 where the card supports
    it, else fp16 with a GradScaler); elsewhere plain float32;
  - AdamW, gradient-norm clipping at 1.0, mean-squared error in standardised units, and one of
    two schedules (ctx.profile["schedule"]):
      "cosine" (the default, the profile's budget): a one-epoch linear warm-up then cosine decay
        over ctx.profile["epochs"]; training stops when the validation loss has not improved for
        ctx.profile["patience"] epochs;
      "plateau" (training to convergence, TorchModel's training="converge"): the one-epoch warm-up,
        then a constant rate that is cut by PLATEAU_CUT each time the validation loss has not
        improved by PLATEAU_MIN_GAIN (relative) for ctx.profile["patience"] epochs; training stops
        at the next such plateau after PLATEAU_CUTS cuts, or at ctx.profile["epochs"];
    either way the best weights are restored; the history keeps best_epoch, best_val_loss,
    epochs_run, max_epochs, stopped_early and lr_cuts (Model.run_metrics puts them in the run's
    metrics);
  - train_draw (optional): a function epoch -> (X, y) called before each epoch (epoch from 0):
    that epoch trains on those inputs and targets instead of X_train / y_train (fresh noise,
    models/noise.py); the target standardisation stays that of y_train;
  - loss (optional): a function (module, inputs, y_batch) -> the mean loss of the batch, in place
    of the mean-squared error (gaussian_nll for a heteroscedastic head; the posterior family's
    negative log-likelihood, models/posterior.py);
    y may then have several columns (n, k), each standardised on its own (y_mean, y_std of shape (k,));
  - calls ctx.progress(epoch=i, of=n, train_loss=, val_loss=, best_val_loss=, seconds=), and
    until="flat" on the plateau schedule (n is then a ceiling, not the plan), after each epoch (i
    counts from 1) and returns the history as a dict.

X may be one array or a tuple of arrays (a model with several inputs: its forward takes
them in that order). Arrays are float32 numpy; the batch axis is the first.

TorchModel (TorchModelMixin + models.base.Model, below) is the base of every torch family in models/: it holds the plumbing of
fit / predict / save / load so that a model file only says how it prepares its inputs
(`_prepare`, `_inputs`) and which network it builds (`_build`). Saving writes the
state_dict to weights.pt (read back with torch.load(weights_only=True)), the network's
shape to arch.json and any numpy state to arrays.npz (np.load(allow_pickle=False)); nothing
is pickled.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

# OpenMP threads that spin-wait at every parallel region turn a busy 2-core machine (the app,
# a worker and tests side by side) into a 20-40x slowdown of small torch ops; sleeping threads
# cost nothing measurable when the machine is idle. Only effective if torch is not loaded yet:
# the engine's entry points should set it first (see docs/models.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from models.base import Model  # noqa: E402
from models.noise import NOISE_MODES, check_noise_mode, epoch_draws  # noqa: E402


# --------------------------------------------------------------------------- device
def pick_device() -> str:
    """'cuda' when a CUDA device is usable, else 'mps' (Apple silicon), else 'cpu'."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_device(device: str | None) -> str:
    return pick_device() if device in (None, "", "auto") else str(device)


def amp_dtype(device: str):
    """The autocast dtype on CUDA (bf16 where supported, else fp16); None elsewhere."""
    if not str(device).startswith("cuda"):
        return None
    try:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    except Exception:  # pragma: no cover - very old drivers
        return torch.float16


# --------------------------------------------------------------------------- helpers
def _as_tuple(X) -> tuple:
    return tuple(X) if isinstance(X, (tuple, list)) else (X,)


def as_float_tensor(a) -> torch.Tensor:
    """A float32 CPU tensor of a numpy array; a read-only array (the engine's cached views) is
    copied, so no tensor ever shares memory with a view that later runs reuse."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def _to_tensors(X, device: str) -> tuple[torch.Tensor, ...]:
    return tuple(as_float_tensor(a).to(device) for a in _as_tuple(X))


def _set_target_stats(module: nn.Module, mean, std) -> None:
    for name, val in (("y_mean", mean), ("y_std", std)):
        t = torch.tensor(val if np.ndim(val) else float(val), dtype=torch.float32)
        if name in dict(module.named_buffers(recurse=False)):
            getattr(module, name).copy_(t)
        else:
            module.register_buffer(name, t)


def _batches(n: int, batch_size: int, perm: torch.Tensor | None = None) -> list[torch.Tensor]:
    idx = perm if perm is not None else torch.arange(n)
    out = [idx[i:i + batch_size] for i in range(0, n, batch_size)]
    if perm is not None and len(out) > 1 and len(out[-1]) < 2:   # a batch of one breaks BatchNorm
        out[-2] = torch.cat([out[-2], out.pop()])
    return out


def _forward_loss(module, xs, yb, amp, device_type):
    with torch.autocast(device_type=device_type, dtype=amp, enabled=amp is not None):
        out = module(*xs).reshape(-1)
    return torch.mean((out.float() - yb) ** 2)


def _own_loss(module, xs, yb, amp, device_type, loss):
    """A family's own loss (fit_torch's `loss`) under the same autocast as the squared error."""
    with torch.autocast(device_type=device_type, dtype=amp, enabled=amp is not None):
        return loss(module, xs, yb).float()


def _batch_loss(module, xs, yb, amp, device_type, loss=None):
    if loss is None:
        return _forward_loss(module, xs, yb, amp, device_type)
    return _own_loss(module, xs, yb, amp, device_type, loss)


@torch.no_grad()
def _eval_loss(module, X, y, batch_size, amp, device_type, loss=None) -> float:
    module.eval()
    total, n = 0.0, len(y)
    for b in _batches(n, batch_size):
        total += float(_batch_loss(module, [x[b] for x in X], y[b], amp, device_type, loss)) * len(b)
    return total / max(n, 1)


# --------------------------------------------------------------------------- training
# the plateau schedule (training to convergence): the learning rate is cut to PLATEAU_CUT of itself
# when the validation loss has not fallen by PLATEAU_MIN_GAIN of itself for `patience` epochs; the
# plateau after PLATEAU_CUTS cuts ends the training
PLATEAU_CUT = 0.3
PLATEAU_MIN_GAIN = 1e-3
PLATEAU_CUTS = 2


def fit_torch(module: nn.Module, X_train, y_train, X_val, y_val, ctx, lr: float = 1e-3,
              weight_decay: float = 1e-4, grad_clip: float = 1.0, train_draw=None, loss=None) -> dict:
    """Train `module` in place (see the module docstring); returns the history dict."""
    prof = ctx.profile
    epochs = int(prof.get("epochs", 10))
    batch_size = int(prof.get("batch_size", 128))
    patience = int(prof.get("patience", 5))
    schedule = str(prof.get("schedule", "cosine"))
    if schedule not in ("cosine", "plateau"):
        raise ValueError(f"schedule must be cosine or plateau, got {schedule!r}")
    device = resolve_device(getattr(ctx, "device", None))
    device_type = torch.device(device).type
    amp = amp_dtype(device)
    torch.manual_seed(int(ctx.seed))
    gen = torch.Generator().manual_seed(int(ctx.seed))

    y_train, y_val = np.asarray(y_train, dtype=np.float64), np.asarray(y_val, dtype=np.float64)
    if loss is not None and y_train.ndim == 2 and y_train.shape[1] > 1:   # several targets, one scale each
        mu, sd = y_train.mean(axis=0), y_train.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
    else:
        y_train, y_val = y_train.reshape(-1), y_val.reshape(-1)
        mu = float(y_train.mean())
        sd = float(y_train.std()) or 1.0
    _set_target_stats(module, mu, sd)
    module.to(device)
    Xtr, Xva = _to_tensors(X_train, device), _to_tensors(X_val, device)
    ytr = torch.as_tensor((y_train - mu) / sd, dtype=torch.float32, device=device)
    yva = torch.as_tensor((y_val - mu) / sd, dtype=torch.float32, device=device)
    n = len(ytr)

    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = len(_batches(n, batch_size, torch.arange(n)))
    total, warm = epochs * steps_per_epoch, steps_per_epoch

    cut = [1.0]   # the plateau schedule's factor, multiplied by PLATEAU_CUT at each plateau

    def lr_at(step):   # linear warm-up over the first epoch, then cosine down to 5 % (or the plateau's factor)
        if step < warm:
            return (step + 1) / warm
        if schedule == "plateau":
            return cut[0]
        p = (step - warm) / max(1, total - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)

    hist = {"epochs": [], "device": device, "amp": str(amp).replace("torch.", "") if amp else "none",
            "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size, "patience": patience,
            "max_epochs": epochs, "schedule": schedule, "n_train": n, "n_val": len(yva), "y_mean": np.asarray(mu).tolist(),
            "y_std": np.asarray(sd).tolist(),
            "noise_mode": "fixed" if train_draw is None else getattr(train_draw, "mode", "fresh"), "draw_s": 0.0}
    best, best_state, best_epoch, bad = math.inf, None, 0, 0
    plateau_ref, flat, cuts, converged = math.inf, 0, 0, False   # the plateau schedule's bookkeeping
    t0 = time.time()
    for ep in range(1, epochs + 1):
        if train_draw is not None:   # this epoch's inputs (a fresh noise draw)
            td = time.time()
            X_ep, y_ep = train_draw(ep - 1)
            Xtr = _to_tensors(X_ep, device)
            if len(Xtr[0]) != n:
                raise ValueError(f"train_draw gave {len(Xtr[0])} rows for epoch {ep - 1}, expected {n}")
            if y_ep is not None:
                ytr = torch.as_tensor((np.asarray(y_ep, np.float64).reshape(y_train.shape) - mu) / sd,
                                      dtype=torch.float32, device=device)
            hist["draw_s"] += time.time() - td
        module.train()
        perm = torch.randperm(n, generator=gen)
        tl, seen = 0.0, 0
        for b in _batches(n, batch_size, perm):
            bd = b.to(device)
            batch_loss = _batch_loss(module, [x[bd] for x in Xtr], ytr[bd], amp, device_type, loss)
            opt.zero_grad(set_to_none=True)
            scaler.scale(batch_loss).backward()
            if grad_clip:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            tl += float(batch_loss.detach()) * len(b)
            seen += len(b)
        tl /= max(seen, 1)
        vl = _eval_loss(module, Xva, yva, max(batch_size, 512), amp, device_type, loss)
        improved = vl < best - 1e-6
        if improved:
            best, best_epoch, bad = vl, ep, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            bad += 1
        rec = {"epoch": ep, "train_loss": tl, "val_loss": vl, "lr": float(opt.param_groups[0]["lr"])}
        if loss is None:   # an RMSE in the target's units only means something for the squared error
            rec["val_rmse"] = math.sqrt(vl) * sd
        rec["seconds"] = time.time() - t0
        hist["epochs"].append(rec)
        ctx.progress(epoch=ep, of=epochs, train_loss=tl, val_loss=vl, best_val_loss=best,
                     seconds=rec["seconds"], **({"until": "flat"} if schedule == "plateau" else {}))
        if schedule == "plateau":
            if vl < plateau_ref * (1 - PLATEAU_MIN_GAIN):
                plateau_ref, flat = min(vl, best), 0
            else:
                flat += 1
            if flat >= patience:
                if cuts >= PLATEAU_CUTS:
                    converged = True
                    ctx.log(f"converged after epoch {ep}: val loss flat for {patience} epochs after "
                            f"{cuts} learning-rate cuts (best {best:.4f} at epoch {best_epoch})")
                    break
                cuts, flat, cut[0] = cuts + 1, 0, cut[0] * PLATEAU_CUT
        elif bad >= patience:
            ctx.log(f"early stop after epoch {ep}: val loss has not improved for {patience} epochs "
                    f"(best {best:.4f} at epoch {best_epoch})")
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    hist.update(best_epoch=best_epoch, best_val_loss=best, epochs_run=len(hist["epochs"]),
                stopped_early=converged if schedule == "plateau" else bad >= patience, lr_cuts=cuts,
                seconds=time.time() - t0)
    if hist["noise_mode"] == "stream":   # new stars every epoch: the distinct spectra the kept weights saw
        hist["stars_seen"] = int(n * (best_epoch or len(hist["epochs"])))
    module.eval()
    return hist


@torch.no_grad()
def predict_torch(module: nn.Module, X, batch_size: int = 512, device: str | None = None) -> np.ndarray:
    """Predictions in the target's units (float64 numpy), in float32 on the module's device."""
    if device is None:
        p = next(module.parameters(), None)
        device = p.device if p is not None else "cpu"
    module.eval()
    Xs = _to_tensors(X, "cpu")
    n = len(Xs[0])
    out = []
    for b in _batches(n, batch_size):
        out.append(module(*[x[b].to(device) for x in Xs]).reshape(-1).float().cpu())
    y = torch.cat(out).double().numpy() if out else np.zeros(0)
    mu = float(getattr(module, "y_mean", torch.tensor(0.0)))
    sd = float(getattr(module, "y_std", torch.tensor(1.0)))
    return y * sd + mu


def gaussian_nll(module: nn.Module, xs, y_batch) -> torch.Tensor:
    """fit_torch's loss for a heteroscedastic head (param `heteroscedastic` of the MLP and the CNNs): the
    network gives (mean, log sigma) per spectrum in standardised units; the mean over the batch of
    0.5 ((y - mean) / sigma)^2 + log sigma (the Gaussian negative log-likelihood, up to a constant),
    log sigma clamped to +-7."""
    out = module(*xs).float()
    mean, log_sigma = out[:, 0], out[:, 1].clamp(-7.0, 7.0)
    return torch.mean(0.5 * ((y_batch - mean) * torch.exp(-log_sigma)) ** 2 + log_sigma)


@torch.no_grad()
def predict_torch_gaussian(module: nn.Module, X, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(mean, 1-sigma) in the target's units of a heteroscedastic head (two outputs per spectrum)."""
    p = next(module.parameters(), None)
    device = p.device if p is not None else "cpu"
    module.eval()
    Xs = _to_tensors(X, "cpu")
    out = [module(*[x[b].to(device) for x in Xs]).float().cpu() for b in _batches(len(Xs[0]), batch_size)]
    y = torch.cat(out).double().numpy() if out else np.zeros((0, 2))
    mu = float(getattr(module, "y_mean", torch.tensor(0.0)))
    sd = float(getattr(module, "y_std", torch.tensor(1.0)))
    return y[:, 0] * sd + mu, np.exp(np.clip(y[:, 1], -7.0, 7.0)) * sd


def count_params(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


# --------------------------------------------------------------------------- the base class
# param `training` of the torch families: "budget" trains for the profile's epochs (cosine schedule,
# the team's way and every run before #17 item 2), "converge" until the validation loss stops falling
# (the plateau schedule of fit_torch), at most CONVERGE_EPOCHS epochs
TRAINING_MODES = ("budget", "converge")
CONVERGE_EPOCHS = 100
CONVERGE_PATIENCE = 3

class TorchModelMixin:
    """fit / predict / save / load for a torch family; `TorchModel` = this + models.base.Model.
    A subclass of TorchModel implements:

        _prepare(train, val, ctx)   fit the input pre-processing on the TRAIN split (and val where a
                                    documented choice needs it); set self.arch_ (a JSON-able dict
                                    that _build needs) and self.state_ (dict of numpy arrays)
        _inputs(view)  -> array or tuple of arrays fed to the network
        _build()       -> nn.Module from self.arch_
        _base(view)    -> what the network's output is added to (0, or a Ridge prediction)

    Hyper-parameters `lr`, `weight_decay`, `noise_mode` ("fixed" | "fresh" | "stream", models/noise.py) and
    `training` ("converge" | "budget", TRAINING_MODES above) may be passed as params. A family whose training does not go through TorchModel.fit sets noise_mode,
    noise_modes and implied_params to say what it supports.
    """
    hyper_params = ("lr", "weight_decay", "noise_mode", "training")
    family = "torch"
    lr = 1e-3
    weight_decay = 1e-4
    noise_mode = "fresh"               # the family's default: a new noise draw every epoch
    training = "converge"              # ... and training until the validation loss is flat
    noise_modes = NOISE_MODES
    # for core.engine.spec: a spec without noise_mode gets the default written out (so the change of
    # default since #17 gives new run ids), and noise_mode="fixed" hashes like a spec without the key
    # (the run ids from before noise_mode existed)
    # and the same for training (#17 item 2): a spec without it trains to convergence; training="budget"
    # (the profile's epochs, how every run trained before) hashes like a spec without the key
    implied_params = {"noise_mode": "fresh", "training": "converge"}
    legacy_params = {"noise_mode": "fixed", "training": "budget"}

    @classmethod
    def check_params(cls, params: dict) -> None:
        super().check_params(params)
        check_noise_mode(cls, params)
        if "training" in params and "training" not in cls.implied_params:   # the NPE, the blind-spot family
            raise ValueError(f"{cls.__name__} trains on its own epoch budget: it takes no training parameter")
        if params.get("training", "budget") not in TRAINING_MODES:
            raise ValueError(f"training must be one of {', '.join(TRAINING_MODES)}, got {params['training']!r}")

    def _training_ctx(self, ctx):
        """ctx for fit_torch: as given (training="budget": the profile's epochs, cosine, its patience), or
        with the convergence budget (training="converge": up to CONVERGE_EPOCHS epochs on the plateau
        schedule, CONVERGE_PATIENCE flat epochs before each cut). Without the param, the family's default."""
        if self.params.get("training", self.training) != "converge":
            return ctx
        return dataclasses.replace(ctx, profile=dict(ctx.profile, epochs=CONVERGE_EPOCHS, patience=CONVERGE_PATIENCE,
                                                     schedule="plateau"))

    def __init__(self, **params):
        super().__init__(**params)   # models.base.Model: self.params
        self.arch_: dict = {}
        self.state_: dict[str, np.ndarray] = {}
        self.module_: nn.Module | None = None
        self.history_: dict = {}

    # -- hooks
    def _prepare(self, train, val, ctx) -> None:
        pass

    def _inputs(self, view):  # pragma: no cover - interface
        raise NotImplementedError

    def _build(self) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError

    def _base(self, view) -> np.ndarray | float:
        return 0.0

    # -- differentiable forward (saliency: core/explain.run_saliency)
    # A family whose network inputs are a torch function of the view's x sets differentiable = True
    # and, where its inputs are not x itself, overrides _inputs_torch / _base_torch. Families whose
    # inputs are computed in numpy (the global features) stay False: no gradient saliency for them.
    differentiable = False

    def _inputs_torch(self, x: torch.Tensor) -> tuple:
        return (x,)

    def _base_torch(self, x: torch.Tensor):
        return 0.0

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions in dex (n,) for x (n, C, P) as laid out in a view, differentiable in x."""
        if not self.differentiable:
            raise ValueError(f"{type(self).__name__} computes its inputs outside torch: no gradients")
        m = self.module_
        m.eval()
        dev = next(m.parameters()).device
        out = m(*[t.to(dev) for t in self._inputs_torch(x)])
        out = (out[:, 0] if self._heteroscedastic() else out).reshape(-1).float().cpu()   # the mean, not log sigma
        mu = getattr(m, "y_mean", torch.tensor(0.0)).float().cpu()
        sd = getattr(m, "y_std", torch.tensor(1.0)).float().cpu()
        return out * sd + mu + self._base_torch(x)

    # -- interface
    def fit(self, train, val, ctx):
        torch.manual_seed(int(ctx.seed))
        np.random.seed(int(ctx.seed) % (2 ** 32))
        self.target_ = int(ctx.target)
        self._prepare(train, val, ctx)
        torch.manual_seed(int(ctx.seed))
        self.module_ = self._build()
        ytr = train.y[:, self.target_] - self._base_train(train)
        yva = val.y[:, self.target_] - self._base(val)
        self.history_ = fit_torch(self.module_, self._inputs(train), ytr, self._inputs(val), yva,
                                  self._training_ctx(ctx),
                                  lr=float(self.params.get("lr", self.lr)),
                                  weight_decay=float(self.params.get("weight_decay", self.weight_decay)),
                                  train_draw=epoch_draws(self, train, ctx),
                                  loss=gaussian_nll if self._heteroscedastic() else None)
        return self

    def _heteroscedastic(self) -> bool:
        """Whether the network gives (mean, log sigma) and trains on the Gaussian NLL (param
        `heteroscedastic`, False by default, of the families that offer it: the MLPs and the CNNs)."""
        return bool(self.params.get("heteroscedastic", False))

    def _n_out(self) -> int:
        """Outputs of the network per spectrum: 2 (mean, log sigma) for a heteroscedastic head, else 1."""
        return 2 if self._heteroscedastic() else 1

    def _base_train(self, train) -> np.ndarray | float:
        """The base on the training split (a residual model may use out-of-fold values)."""
        return self._base(train)

    def predict(self, view):
        if self._heteroscedastic():   # (mean, 1-sigma): models.base's contract for a model with error bars
            mean, sigma = predict_torch_gaussian(self.module_, self._inputs(view))
            return mean + self._base(view), sigma
        return predict_torch(self.module_, self._inputs(view)) + self._base(view)

    @property
    def n_params(self) -> int:
        return count_params(self.module_) if self.module_ is not None else 0

    @property
    def device_(self) -> str:
        p = next(self.module_.parameters()) if self.module_ is not None else None
        return str(p.device) if p is not None else "cpu"

    def _save(self, folder: Path) -> None:
        folder = Path(folder)
        sd = {k: v.detach().cpu() for k, v in self.module_.state_dict().items()}
        torch.save(sd, folder / "weights.pt")
        hist = {k: v for k, v in self.history_.items()}
        (folder / "arch.json").write_text(json.dumps({"arch": self.arch_, "target": self.target_,
                                                       "history": hist}, default=float))
        if self.state_:
            from models.base import save_arrays
            save_arrays(folder, **self.state_)

    def _load(self, folder: Path) -> None:
        folder = Path(folder)
        meta = json.loads((folder / "arch.json").read_text())
        self.arch_, self.target_, self.history_ = meta["arch"], meta["target"], meta.get("history", {})
        from models.base import load_arrays
        self.state_ = load_arrays(folder) if (folder / "arrays.npz").exists() else {}
        self._restore()
        module = self._build()
        sd = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
        for name in ("y_mean", "y_std"):
            if name in sd and name not in dict(module.named_buffers(recurse=False)):
                module.register_buffer(name, torch.zeros((), dtype=torch.float32))
        module.load_state_dict(sd)
        module.eval()
        self.module_ = module

    def _restore(self) -> None:
        """Rebuild fitted helpers (a feature extractor, ...) from self.state_ after loading."""


class TorchModel(TorchModelMixin, Model):
    __doc__ = TorchModelMixin.__doc__


def standardise_stats(x: np.ndarray, axis) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (std floored at 1e-6 of its median) of the training inputs along `axis`."""
    mu = x.mean(axis=axis, keepdims=True, dtype=np.float64)
    sd = x.std(axis=axis, keepdims=True, dtype=np.float64)
    floor = max(float(np.median(sd)) * 1e-6, 1e-12)
    return mu.astype(np.float32), np.maximum(sd, floor).astype(np.float32)


__all__ = ["pick_device", "resolve_device", "amp_dtype", "fit_torch", "predict_torch", "predict_torch_gaussian",
           "gaussian_nll", "count_params",
           "TorchModel", "TorchModelMixin", "standardise_stats"]
