"""Probes of the blind-spot encoder's latent: one model family, latent_probe, run through the engine.

    latent_probe   params: encoder ('flux' | 'flux+error': the encoder variant, = the spec's inputs),
                   encoder_noise (the noise level that encoder was trained at), layer (enc1, enc2,
                   enc_pre_latent, enc_last), pooling (global_mean, global_max, seg_mean_K1..K16,
                   flat), probe ('ridge' | 'lightgbm' | 'mlp'), n_train (labelled training spectra:
                   an integer, or 'all')

fit: the encoder is this run's dependency (`requires`: the engine fits or loads it first and hands
it over as ctx.deps['encoder']), the extraction comes from models/latent_features.py (memoised); the first n_train rows of the training view (rows are in
random label order) train the probe, the validation split picks Ridge's alpha and stops
LightGBM and the MLP early. Features are standardised with those rows' mean and standard
deviation and clipped to +-5, and features whose clipped values hardly vary on them (standard
deviation < 0.5) are dropped: a ReLU channel can be silent in one segment for every training
star, or fire for only a handful, and a test star that fires it otherwise sends the prediction
off by orders of magnitude (seen before this rule: R^2 = -6 for the MLP on enc_pre_latent +
seg_mean_K16, and -0.41 for Ridge on 1000 labelled spectra with one test star 34 dex off).
Predictions are clipped to the range of the training labels (metric n_clipped counts them):
a near-unregularised Ridge (alpha 1e-3 chosen on validation) on enc_last at noise 0.1 put the
three coolest metal-rich test stars (Teff ~3500 K) 8-22 dex off, R^2 -0.29 instead of 0.72. The probe itself is one of the project's models on the extracted
features, so nothing is re-implemented:
    ridge      models.linear.RidgeModel (standardised features, alpha on validation)
    lightgbm   models.gbdt.LightGBMModel, 15 leaves, learning rate 0.1, feature fraction 0.5,
               rounds = half the profile's lgbm_rounds (75 quick and default, 750 full), early stopping
    mlp        models.mlp.MLPModel, hidden 128, depth 2, dropout 0.1 (models.trainer.fit_torch)
Below SMALL_FIT_ROWS labelled spectra a probe is fitted on one thread (BLAS, OpenMP, torch): these
are small fits, and with two threads they spend more time synchronising than computing - on a
shared 2-core CPU a 2100 x 1536 Ridge took 24 s on two BLAS threads and 2.2 s on one. Results do
not depend on it beyond floating-point order.
predict: the same extraction of the view, through the fitted probe. After a reload the engine hands
the encoder over again (`dependency_runs` names its run, `attach` takes it).
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.data import View
from models import latent_features as lf
from models.base import Model
from models.blindspot import LAYERS, encoder_dependency
from models.gbdt import LightGBMModel

PROBES = ("ridge", "lightgbm", "mlp")

LGBM_PROBE = {"num_leaves": 15, "learning_rate": 0.1, "feature_fraction": 0.5, "min_data_in_leaf": 20}
MLP_PROBE = {"hidden": 128, "depth": 2, "dropout": 0.1}


CLIP = 5.0               # standardised features are clipped to +-CLIP
MIN_Z_STD = 0.5          # features whose clipped standardised values vary less than this are dropped
SMALL_FIT_ROWS = 20000   # below this many labelled spectra a probe is fitted on one thread


class ProbeLightGBM(LightGBMModel):
    """models.gbdt.LightGBMModel with a thread count: a probe is a small fit (hundreds to a few
    thousand rows), where LightGBM's own advice is to use few threads - with two, threads wait
    on each other at every split, badly so on a shared CPU."""

    def __init__(self, num_threads: int = 0, **params):
        super().__init__(**params)
        self.params["num_threads"] = int(num_threads)


@contextmanager
def one_thread(on: bool = True):
    """Run a block single-threaded (BLAS, OpenMP and torch intra-op threads), restored afterwards."""
    if not on:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(old)


def make_probe(kind: str, profile: dict, n_rows: int):
    small = n_rows < SMALL_FIT_ROWS
    if kind == "ridge":
        from models.linear import RidgeModel
        return RidgeModel()
    if kind == "lightgbm":
        return ProbeLightGBM(**LGBM_PROBE, rounds=max(50, int(profile.get("lgbm_rounds", 150)) // 2),
                             num_threads=1 if small else 0)
    if kind == "mlp":
        from models.mlp import MLPModel
        return MLPModel(**MLP_PROBE)
    raise ValueError(f"unknown probe {kind!r}; choose ridge, lightgbm or mlp")


def _probe_class(kind: str):
    from models.linear import RidgeModel
    from models.mlp import MLPModel
    return {"ridge": RidgeModel, "lightgbm": ProbeLightGBM, "mlp": MLPModel}[kind]


class LatentProbe(Model):
    inputs = "flux"
    family = "latent_probe"

    def __init__(self, encoder: str = "flux", encoder_noise: float = 1.0, layer: str = "enc_pre_latent",
                 pooling: str = "seg_mean_K8", probe: str = "ridge", n_train="all"):
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
        if pooling not in lf.POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(lf.POOLINGS)}")
        if probe not in PROBES:
            raise ValueError(f"unknown probe {probe!r}; choose one of {', '.join(PROBES)}")
        if n_train != "all" and (not isinstance(n_train, int) or n_train < 10):
            raise ValueError(f"n_train must be 'all' or an integer >= 10, got {n_train!r}")
        super().__init__(encoder=encoder, encoder_noise=float(encoder_noise), layer=layer, pooling=pooling,
                         probe=probe, n_train=n_train)
        self.extra_metrics_: dict = {}
        self.encoder_ = None

    @classmethod
    def requires(cls, spec: dict) -> dict[str, dict]:
        p = spec["params"]
        return {"encoder": encoder_dependency(p.get("encoder", "flux"), p.get("encoder_noise", 1.0))}

    def dependency_runs(self) -> dict[str, str]:
        return {"encoder": self.encoder_run_id_}

    def attach(self, name: str, model) -> None:
        self.encoder_ = model

    def _fview(self, view, f: np.ndarray) -> View:
        """Features standardised with the train split's statistics (constant features dropped,
        values clipped to +-CLIP), as a one-channel view."""
        z = np.clip((f[:, self.keep_] - self.f_mean_) / self.f_std_, -CLIP, CLIP).astype(np.float32)
        return View(z[:, None, :], view.y, view.index, ["latent"], np.arange(z.shape[1]))

    def _fit_scaler(self, f: np.ndarray) -> None:
        """Standardise on the train rows, clip to +-CLIP, and keep the features whose clipped values
        still vary (std >= MIN_Z_STD): silent or nearly silent ReLU units are dropped."""
        mu, sd = f.mean(0, dtype=np.float64), f.std(0, dtype=np.float64)
        ok = sd > 1e-6 * max(float(sd.max()), 1e-30)
        z = np.clip((f[:, ok] - mu[ok]) / sd[ok], -CLIP, CLIP)
        idx = np.flatnonzero(ok)[z.std(0) >= MIN_Z_STD]
        self.keep_ = np.zeros(f.shape[1], dtype=bool)
        self.keep_[idx] = True
        self.f_mean_, self.f_std_ = mu[self.keep_], sd[self.keep_]

    def fit(self, train, val, ctx):
        p = self.params
        dep = ctx.deps["encoder"]
        self.encoder_, self.encoder_run_id_ = dep.model, dep.run_id
        lf.check_inputs(p["encoder"], train)
        ftr = lf.features(self.encoder_, self.encoder_run_id_, train, p["layer"], p["pooling"])
        fva = lf.features(self.encoder_, self.encoder_run_id_, val, p["layer"], p["pooling"])
        n = len(ftr) if p["n_train"] == "all" else min(int(p["n_train"]), len(ftr))
        self._fit_scaler(ftr[:n])
        tr = self._fview(train, ftr)
        tr = View(tr.x[:n], tr.y[:n], tr.index[:n], tr.channels, tr.wave)
        y = train.y[:n, ctx.target]
        self.y_range_ = (float(y.min()), float(y.max()))
        self.probe_ = make_probe(p["probe"], ctx.profile, n)
        with one_thread(n < SMALL_FIT_ROWS):
            self.probe_.fit(tr, self._fview(val, fva), ctx)
        self.n_features_ = int(ftr.shape[1])
        self.extra_metrics_ = {"n_features": float(self.n_features_), "n_features_used": float(self.keep_.sum()),
                               "n_labelled": float(n)}
        if hasattr(self.probe_, "alpha_"):
            self.alpha_ = float(self.probe_.alpha_)
        return self

    def features(self, view) -> np.ndarray:
        return lf.features(self.encoder_, self.encoder_run_id_, view, self.params["layer"], self.params["pooling"])

    def predict(self, view):
        """The probe's prediction, clipped to the range of its training labels; how many were
        clipped goes to extra_metrics_ (on the engine's test split: n_clipped)."""
        raw = np.asarray(self.probe_.predict(self._fview(view, self.features(view))), dtype=np.float64)
        out = np.clip(raw, *self.y_range_)
        self.extra_metrics_ = {**self.extra_metrics_, "n_clipped": float(np.sum(out != raw))}
        return out

    @property
    def n_params(self) -> int:
        return int(self.probe_.n_params)

    def _save(self, folder: Path) -> None:
        self.probe_.save(Path(folder) / "probe")
        np.savez(Path(folder) / "scaler.npz", keep=self.keep_, mean=self.f_mean_, std=self.f_std_)
        (Path(folder) / "probe.json").write_text(json.dumps({"encoder_run_id": self.encoder_run_id_,
                                                             "n_features": self.n_features_,
                                                             "y_range": list(self.y_range_)}))

    def _load(self, folder: Path) -> None:
        meta = json.loads((Path(folder) / "probe.json").read_text())
        self.encoder_run_id_, self.n_features_ = meta["encoder_run_id"], int(meta["n_features"])
        self.y_range_ = tuple(meta["y_range"])
        self.probe_ = _probe_class(self.params["probe"]).load(Path(folder) / "probe")
        with np.load(Path(folder) / "scaler.npz", allow_pickle=False) as z:
            self.keep_, self.f_mean_, self.f_std_ = z["keep"], z["mean"], z["std"]
        if hasattr(self.probe_, "alpha_"):
            self.alpha_ = float(self.probe_.alpha_)


MODELS = {"latent_probe": LatentProbe}
