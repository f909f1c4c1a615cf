"""LightGBM on all pixels (and on Teff + [M/H] for the metadata baseline).

Early stopping on the validation split; the number of rounds comes from the profile.
The booster is saved in LightGBM's own text format (no pickle).
"""
from __future__ import annotations

import sys
import warnings

import numpy as np

from models.base import Model, flat


def lightgbm():
    """The lightgbm module. lightgbm imports scikit-learn, and with it scipy.stats, for its scikit-learn API
    (LGBMRegressor and friends), which this family never uses: 1.2 s of the 1.4 s import, a fifth of a cold
    `python -m core predict` (measured with -X importtime). Where scikit-learn is not loaded yet, lightgbm
    is imported with it hidden, so its scikit-learn API is the placeholder it uses without scikit-learn;
    lgb.train, lgb.Dataset and lgb.Booster are unchanged, and scikit-learn imports as usual afterwards."""
    if "lightgbm" in sys.modules or "sklearn" in sys.modules:
        import lightgbm as lgb
        return lgb
    sys.modules["sklearn"] = None          # type: ignore[assignment]  # `import sklearn` raises ImportError
    try:
        import lightgbm as lgb
    finally:
        if sys.modules.get("sklearn", 0) is None:
            del sys.modules["sklearn"]
    return lgb


class LightGBMModel(Model):
    inputs = "flux"
    family = "gbdt"

    def __init__(self, num_leaves: int = 31, learning_rate: float = 0.05, feature_fraction: float = 0.2,
                 min_data_in_leaf: int = 20, lambda_l2: float = 1.0, max_bin: int = 63, rounds: int | None = None):
        super().__init__(num_leaves=num_leaves, learning_rate=learning_rate, feature_fraction=feature_fraction,
                         min_data_in_leaf=min_data_in_leaf, lambda_l2=lambda_l2, max_bin=max_bin, rounds=rounds)

    def fit(self, train, val, ctx):
        lgb = lightgbm()
        p = dict(self.params)
        rounds = int(p.pop("rounds") or ctx.profile.get("lgbm_rounds", 300))
        params = {"objective": "regression", "verbosity": -1, "seed": int(ctx.seed), "deterministic": True,
                  "num_threads": 0, "force_col_wise": True, **p}
        warnings.filterwarnings("ignore", message="Usage of np.ndarray subset")
        dtr = lgb.Dataset(flat(train), train.y[:, ctx.target], params={"max_bin": p["max_bin"]})
        dva = lgb.Dataset(flat(val), val.y[:, ctx.target], reference=dtr)
        state = {"i": 0}

        def report(env):
            state["i"] = env.iteration
            if env.iteration % 25 == 0 and env.evaluation_result_list:
                ctx.progress(epoch=env.iteration, of=rounds, val_loss=float(env.evaluation_result_list[0][2]))

        self.booster_ = lgb.train(params, dtr, num_boost_round=rounds, valid_sets=[dva],
                                  callbacks=[lgb.early_stopping(max(20, rounds // 10), verbose=False), report])
        ctx.log(f"lightgbm: best iteration {self.booster_.best_iteration} of {rounds}")
        return self

    def predict(self, view):
        return self.booster_.predict(flat(view), num_iteration=self.booster_.best_iteration or None)

    @property
    def n_params(self):
        d = self.booster_.dump_model()
        return int(sum(t["num_leaves"] * 2 - 1 for t in d["tree_info"]))

    def pixel_importance(self):
        """Total gain per input pixel (summed over channels)."""
        g = self.booster_.feature_importance(importance_type="gain")
        return g.reshape(-1, 4096).sum(0) if g.size % 4096 == 0 else g

    def spectrum_saliency(self, view) -> dict:
        """|TreeSHAP contribution| of each pixel to this prediction (LightGBM's pred_contrib)."""
        x = view.x[:1]
        c = self.booster_.predict(x.reshape(1, -1), pred_contrib=True,
                                  num_iteration=self.booster_.best_iteration or None)[0, :-1]
        return {"values": np.abs(c.reshape(-1, x.shape[-1])).sum(0), "kind": "|TreeSHAP contribution|"}

    def _save(self, folder):
        self.booster_.save_model(str(folder / "booster.txt"))

    def _load(self, folder):
        lgb = lightgbm()
        self.booster_ = lgb.Booster(model_file=str(folder / "booster.txt"))


class MetadataLightGBM(LightGBMModel):
    """Metadata baseline: Teff and [M/H] alone -> log g, with LightGBM."""
    inputs = "meta"

    def __init__(self, **params):
        params.setdefault("feature_fraction", 1.0)
        super().__init__(**params)


MODELS = {"lightgbm": LightGBMModel, "metadata_lgbm": MetadataLightGBM}
