"""The one interface every model family implements, and the context the engine hands to fit().

    model = MODELS[name](**params)            # constructor holds hyper-parameters only
    model.fit(train, val, ctx)  -> self       # train/val are core.data.View; fitted attributes end in _
    model.predict(view)         -> np.ndarray  (n,) log g, or (mean, std) tuple when the model has a 1-sigma
    model.save(folder)  /  Model.load(folder) -> model   (no pickle of anything a user supplied;
                                                         torch via state_dict + weights_only=True)
    model.n_params               -> int       number of fitted parameters

A family's behaviour beyond that is a class attribute or method here, with a default that fits
most families, so that nothing outside models/ asks what kind of model it holds:
    inputs, param_defaults, hyper_params      what it reads and which parameters it takes
    requires(spec) / dependency_runs() / attach()   runs it needs (an encoder before its probes)
    differentiable, forward_tensor, pixel_importance(), spectrum_saliency(view)   why it answers
    run_metrics()                             numbers of its own for the run's metrics
    per_spectrum_fit, fits_all_labels, label_fit(view), input_error(error, covered)   how Predict runs it

`inputs` (a key of core.data.INPUTS) names what the view must contain; the engine builds
the views from the spec, so a model never reads files itself.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

TARGET = 1  # column of log g in View.y (teff, logg, mh)


@dataclass
class Dependency:
    """A finished run this one needs (Model.requires), handed over by the engine."""
    run_id: str
    metrics: dict
    model: "Model"


@dataclass
class FitContext:
    profile: dict                       # core.config.profile(...) values: epochs, batch_size, patience, ...
    seed: int = 0
    device: str = "cpu"                 # chosen by the engine: cuda, mps or cpu
    target: int = TARGET                # which label column to predict
    progress: Callable[..., None] = field(default=lambda **kw: None)  # progress(epoch=, of=, val_loss=, ...)
    log: Callable[[str], None] = field(default=lambda msg: None)
    dataset: object = None              # the core.data.Dataset the views come from (read-only use)
    deps: dict = field(default_factory=dict)   # name -> Dependency, for the names requires() gave


class Model:
    """Base class: subclasses set `inputs` and implement fit / predict / _save / _load."""
    inputs = "flux"
    family = "base"
    # parameters whose default the engine fills in: a spec that names one at this value is the
    # same spec (same hash, same cached run) as one that leaves it out
    param_defaults: dict = {}
    # the parameters a family reads from self.params when its constructor takes **params; with
    # explicit keyword arguments the constructor's signature says it (see accepted_params)
    hyper_params: tuple = ()
    # a torch family whose network input is a torch function of view.x sets this and forward_tensor
    differentiable = False
    # the fit reads FitContext.seed (initialisation, batches, bagging, noise draws); a family whose fit
    # is a deterministic function of its data (Ridge, the Cannon, the likelihood fit) sets False: its
    # training replicates would all be the same run, so none is made and its seed spread is zero
    seed_dependent = True
    # predict() fits each spectrum on its own (slow): Predict runs it once, without noise re-draws
    per_spectrum_fit = False
    # label_fit() gives all three labels at once (Teff, log g, [M/H]) with their 1-sigma
    fits_all_labels = False
    # the family measures the line windows of models/features.LINES: a grid must hold every one of them
    uses_line_windows = False

    def __init__(self, **params):
        self.check_params(params)
        self.params = params

    # -- parameters -------------------------------------------------------------------------
    @classmethod
    def accepted_params(cls) -> set[str]:
        """Names a spec may set for this family: every keyword of the constructors along the class
        hierarchy (down to the first that takes no **params) and every class's hyper_params. Worked out
        once per class (a page checks hundreds of specs)."""
        memo = vars(cls).get("_accepted_memo")
        if memo is None:
            memo = cls._accepted_params()
            cls._accepted_memo = memo
        return set(memo)

    @classmethod
    def _accepted_params(cls) -> frozenset[str]:
        names = set()
        for klass in cls.__mro__:
            names |= set(vars(klass).get("hyper_params", ()))
        for klass in cls.__mro__:
            init = vars(klass).get("__init__")
            if init is None or klass is Model:
                continue
            ps = inspect.signature(init).parameters.values()
            names |= {p.name for p in ps if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
            if not any(p.kind is p.VAR_KEYWORD for p in ps):
                break
        return frozenset(names)

    @classmethod
    def check_params(cls, params: dict) -> None:
        known = cls.accepted_params()
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for "
                             f"{cls.__name__}; it takes: {', '.join(sorted(known)) or 'none'}")

    # -- runs this one needs ----------------------------------------------------------------
    @classmethod
    def requires(cls, spec: dict) -> dict[str, dict]:
        """Runs to fit before this one, by name: {name: fields of this spec to replace}. The engine
        fits or loads each first and hands it to fit() as ctx.deps[name] (a Dependency)."""
        return {}

    def dependency_runs(self) -> dict[str, str]:
        """Run ids a fitted model still reads when it predicts (name -> run id); the engine loads
        them with the model and hands each over through attach()."""
        return {}

    def attach(self, name: str, model: "Model") -> None:  # pragma: no cover - only families with dependency_runs
        raise NotImplementedError

    # numbers a fitted model records beside its metrics when the attribute exists (the CNNs'
    # receptive fields, Ridge's chosen alpha); a family adds more in extra_metrics_ (a dict)
    RUN_ATTRIBUTES = ("receptive_field_px", "first_layer_rf_px", "alpha_")

    # what a trained network's history (models.trainer.fit_torch) says about its training, as metrics
    HISTORY_METRICS = ("best_epoch", "best_val_loss", "epochs_run", "max_epochs", "stopped_early", "lr_cuts", "draw_s",
                       "stars_seen")

    def run_metrics(self) -> dict:
        """The model's own numbers for its run's metrics (after predict on the test split). A model
        trained by the torch trainer adds where it stopped: best_epoch, best_val_loss, epochs_run,
        max_epochs, stopped_early (1: patience ran out), stopped_on_budget (1: it ran every epoch of
        max_epochs without early stopping), fresh_noise (1: a new noise draw every epoch; also for a stream of
        new stars) and, for a stream (noise_mode "stream"), stars_seen: the distinct training spectra the kept
        (best-epoch) weights saw."""
        out = {a.rstrip("_"): float(getattr(self, a)) for a in self.RUN_ATTRIBUTES if hasattr(self, a)}
        hist = getattr(self, "history_", None)
        if isinstance(hist, dict) and "best_epoch" in hist:
            out |= {k: float(hist[k]) for k in self.HISTORY_METRICS if k in hist}
            if "stopped_early" in hist and "max_epochs" in hist:
                out["stopped_on_budget"] = float(not hist["stopped_early"] and hist["epochs_run"] >= hist["max_epochs"])
            out["fresh_noise"] = float(hist.get("noise_mode") in ("fresh", "stream"))
        extra = getattr(self, "extra_metrics_", None)
        return out | ({k: float(v) for k, v in extra.items()} if isinstance(extra, dict) else {})

    # -- explanation and Predict ------------------------------------------------------------
    def pixel_importance(self) -> np.ndarray | None:
        """A per-pixel importance of the fitted model as a whole (coefficients, gain), or None."""
        return None

    def spectrum_saliency(self, view) -> dict | None:
        """How much each pixel of the first spectrum of `view` moves this model's answer, summed
        over input channels: {"values": (P,), "kind": words}. Default: |gradient x input| for a
        differentiable model, else None (no saliency)."""
        if not self.differentiable:
            return None
        import torch

        from models.attribution import gradient_x_input
        g = gradient_x_input(self.forward_tensor, torch.as_tensor(view.x[:1])).detach().numpy()
        return {"values": np.abs(g[0]).sum(0), "kind": "|gradient × input|"}

    def label_fit(self, view) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - fits_all_labels only
        """(n, 3) best-fit labels and their (n, 3) 1-sigma, for a family with fits_all_labels."""
        raise NotImplementedError

    def input_error(self, error: np.ndarray, covered: np.ndarray) -> np.ndarray:
        """The error channel Predict hands this model for pixels an upload covers (covered True)
        and gap-filled ones; a chi^2 fitter gives the filled ones an error that makes it ignore them."""
        return error

    # -- the rest of the interface ----------------------------------------------------------
    def fit(self, train, val, ctx: FitContext):  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, view):  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def n_params(self) -> int:
        return 0

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.json").write_text(json.dumps({"class": type(self).__name__, "params": self.params}))
        self._save(folder)

    @classmethod
    def load(cls, folder: Path):
        folder = Path(folder)
        meta = json.loads((folder / "model.json").read_text())
        m = cls(**meta["params"])
        m._load(folder)
        return m

    def _save(self, folder: Path) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _load(self, folder: Path) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def flat(view) -> np.ndarray:
    """(n, C, P) -> (n, C*P) float32 for tabular models."""
    x = view.x
    return x.reshape(len(x), -1) if x.ndim == 3 else x


def save_arrays(folder: Path, **arrays) -> None:
    np.savez(Path(folder) / "arrays.npz", **arrays)


def load_arrays(folder: Path) -> dict:
    with np.load(Path(folder) / "arrays.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
