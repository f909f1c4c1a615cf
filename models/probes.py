"""Probes of the blind-spot encoder's latent: one model family, latent_probe, run through the engine.

    latent_probe   params: encoder ('flux' | 'flux+error': the encoder variant, = the spec's inputs),
                   encoder_noise (the noise level that encoder was trained at), layer (enc1, enc2,
                   enc_pre_latent, enc_last), pooling (global_mean, global_max, seg_mean_K1..K16,
                   flat), probe ('ridge' | 'lightgbm' | 'mlp'), n_train (labelled training spectra:
                   an integer, or 'all')

fit: the encoder comes from core.latent.load_encoder (its own cached engine run), the extraction
from core.latent.features (memoised); the first n_train rows of the training view (rows are in
random label order) train the probe, the validation split picks Ridge's alpha and stops
LightGBM and the MLP early. The probe itself is one of the project's models on the extracted
features, so nothing is re-implemented:
    ridge      models.linear.RidgeModel (standardised features, alpha on validation)
    lightgbm   models.gbdt.LightGBMModel, 15 leaves, learning rate 0.1, feature fraction 0.5,
               rounds = half the profile's lgbm_rounds (75 quick, 300 default), early stopping
    mlp        models.mlp.MLPModel, hidden 128, depth 2, dropout 0.1 (core.trainer.fit_torch)
predict: the same extraction of the view, through the fitted probe. The encoder is found again by
its run id after a reload.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.data import View
from models.base import Model

LGBM_PROBE = {"num_leaves": 15, "learning_rate": 0.1, "feature_fraction": 0.5, "min_data_in_leaf": 20}
MLP_PROBE = {"hidden": 128, "depth": 2, "dropout": 0.1}


def make_probe(kind: str, profile: dict):
    if kind == "ridge":
        from models.linear import RidgeModel
        return RidgeModel()
    if kind == "lightgbm":
        from models.gbdt import LightGBMModel
        return LightGBMModel(**LGBM_PROBE, rounds=max(50, int(profile.get("lgbm_rounds", 150)) // 2))
    if kind == "mlp":
        from models.mlp import MLPModel
        return MLPModel(**MLP_PROBE)
    raise ValueError(f"unknown probe {kind!r}; choose ridge, lightgbm or mlp")


def _probe_class(kind: str):
    from models.gbdt import LightGBMModel
    from models.linear import RidgeModel
    from models.mlp import MLPModel
    return {"ridge": RidgeModel, "lightgbm": LightGBMModel, "mlp": MLPModel}[kind]


class LatentProbe(Model):
    inputs = "flux"
    family = "latent_probe"

    def __init__(self, encoder: str = "flux", encoder_noise: float = 1.0, layer: str = "enc_pre_latent",
                 pooling: str = "seg_mean_K8", probe: str = "ridge", n_train="all"):
        from core import latent
        if layer not in latent.LAYERS:
            raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(latent.LAYERS)}")
        if pooling not in latent.POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(latent.POOLINGS)}")
        if probe not in latent.PROBES:
            raise ValueError(f"unknown probe {probe!r}; choose one of {', '.join(latent.PROBES)}")
        if n_train != "all" and (not isinstance(n_train, int) or n_train < 10):
            raise ValueError(f"n_train must be 'all' or an integer >= 10, got {n_train!r}")
        super().__init__(encoder=encoder, encoder_noise=float(encoder_noise), layer=layer, pooling=pooling,
                         probe=probe, n_train=n_train)
        self.extra_metrics_: dict = {}

    def _fview(self, view, f: np.ndarray) -> View:
        return View(f.astype(np.float32)[:, None, :], view.y, view.index, ["latent"], np.arange(f.shape[1]))

    def fit(self, train, val, ctx):
        from core import latent
        p = self.params
        enc, self.encoder_run_id_ = latent.load_encoder(p["encoder"], p["encoder_noise"], ctx)
        latent.check_inputs(p["encoder"], train)
        ftr = latent.features(enc, self.encoder_run_id_, train, p["layer"], p["pooling"])
        fva = latent.features(enc, self.encoder_run_id_, val, p["layer"], p["pooling"])
        n = len(ftr) if p["n_train"] == "all" else min(int(p["n_train"]), len(ftr))
        tr = self._fview(train, ftr)
        tr = View(tr.x[:n], tr.y[:n], tr.index[:n], tr.channels, tr.wave)
        self.probe_ = make_probe(p["probe"], ctx.profile)
        self.probe_.fit(tr, self._fview(val, fva), ctx)
        self.n_features_ = int(ftr.shape[1])
        self.extra_metrics_ = {"n_features": float(self.n_features_), "n_labelled": float(n)}
        if hasattr(self.probe_, "alpha_"):
            self.alpha_ = float(self.probe_.alpha_)
        return self

    def _encoder(self):
        from core import latent
        return latent.encoder_by_run(self.encoder_run_id_)

    def features(self, view) -> np.ndarray:
        from core import latent
        return latent.features(self._encoder(), self.encoder_run_id_, view, self.params["layer"], self.params["pooling"])

    def predict(self, view):
        return self.probe_.predict(self._fview(view, self.features(view)))

    @property
    def n_params(self) -> int:
        return int(self.probe_.n_params)

    def _save(self, folder: Path) -> None:
        self.probe_.save(Path(folder) / "probe")
        (Path(folder) / "probe.json").write_text(json.dumps({"encoder_run_id": self.encoder_run_id_,
                                                             "n_features": self.n_features_}))

    def _load(self, folder: Path) -> None:
        meta = json.loads((Path(folder) / "probe.json").read_text())
        self.encoder_run_id_, self.n_features_ = meta["encoder_run_id"], int(meta["n_features"])
        self.probe_ = _probe_class(self.params["probe"]).load(Path(folder) / "probe")
        if hasattr(self.probe_, "alpha_"):
            self.alpha_ = float(self.probe_.alpha_)


MODELS = {"latent_probe": LatentProbe}
