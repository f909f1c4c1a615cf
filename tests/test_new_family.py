"""A newcomer's test: a model family is one class in models/ and one line in models.MODELS. Nothing
else in the project is touched, yet the engine fits and caches it, checks its parameters, runs what
it depends on first, the report names it, and Predict runs it (as a research run until it joins the
report suite)."""
from __future__ import annotations

import numpy as np
import pytest

import models
from core import data, predict
from core.engine import registry, spec, train
from models.base import Model, flat


class MeanFluxModel(Model):
    """Toy family: log g = a + b * (mean flux of the pixels in the window), fitted by least squares."""
    inputs = "flux"
    family = "toy"

    def __init__(self, lo: int = 0, hi: int = 50):
        super().__init__(lo=lo, hi=hi)

    def _feature(self, view):
        return flat(view)[:, self.params["lo"]:self.params["hi"]].mean(1)

    def fit(self, train, val, ctx):
        f = self._feature(train)
        self.coef_ = np.polyfit(f, train.y[:, ctx.target], 1)
        return self

    def predict(self, view):
        return np.polyval(self.coef_, self._feature(view))

    @property
    def n_params(self):
        return 2

    def _save(self, folder):
        np.save(folder / "coef.npy", self.coef_)

    def _load(self, folder):
        self.coef_ = np.load(folder / "coef.npy", allow_pickle=False)


class ToyStacked(MeanFluxModel):
    """Toy family with a dependency: the toy model on pixels 0-50, plus a correction fitted on top."""
    family = "toy_stacked"

    @classmethod
    def requires(cls, spec):
        return {"base": {"model": "toy_mean_flux", "params": {"lo": 0, "hi": 50}}}

    def fit(self, train, val, ctx):
        self.base_run_ = ctx.deps["base"].run_id
        base = ctx.deps["base"].model
        resid = train.y[:, ctx.target] - base.predict(train)
        self.coef_ = np.polyfit(self._feature(train), resid, 1)
        self.base_ = base
        return self

    def predict(self, view):
        return self.base_.predict(view) + np.polyval(self.coef_, self._feature(view))

    def dependency_runs(self):
        return {"base": self.base_run_}

    def attach(self, name, model):
        self.base_ = model

    def _save(self, folder):
        super()._save(folder)
        (folder / "base.txt").write_text(self.base_run_)

    def _load(self, folder):
        super()._load(folder)
        self.base_run_ = (folder / "base.txt").read_text()


@pytest.fixture
def registered(monkeypatch, tiny_dataset):
    # the one registration line a newcomer adds to models/__init__.py
    monkeypatch.setitem(models.MODELS, "toy_mean_flux", MeanFluxModel)
    monkeypatch.setitem(models.MODELS, "toy_stacked", ToyStacked)
    return tiny_dataset


def test_a_new_family_runs_through_the_engine(registered):
    s = spec.make_spec("toy_mean_flux", {"lo": 10, "hi": 200}, 0.1, "quick", registered, "toy")
    r = train.run(s, log=lambda m: None)
    assert not r.cached and np.isfinite(r.metrics["r2"]) and r.metrics["n_params"] == 2
    again = train.run(s, log=lambda m: None)
    assert again.cached and again.run_id == r.run_id
    m = r.load_model()
    assert np.allclose(m.coef_, train.load_model(r.artifact).coef_)


def test_a_misspelt_parameter_is_an_error_not_a_new_run(registered):
    with pytest.raises(ValueError, match="unknown parameter hii"):
        spec.normalise_spec(spec.make_spec("toy_mean_flux", {"hii": 20}, 0.1, "quick", registered))
    with pytest.raises(ValueError, match="unknown parameter"):   # a torch family with **params too
        spec.normalise_spec(spec.make_spec("mlp", {"hiden": 32}, 0.1, "quick", registered))


def test_the_engine_fits_a_dependency_first_and_attaches_it_on_reload(registered):
    s = spec.make_spec("toy_stacked", {"lo": 100, "hi": 400}, 0.1, "quick", registered, "toy")
    deps = spec.dependency_specs(s)
    assert list(deps) == ["base"] and deps["base"]["dataset"] == registered and deps["base"]["noise_level"] == 0.1
    r = train.run(s, log=lambda m: None)
    base_id = train.spec_hash(deps["base"], data.Dataset(registered).fingerprint)
    con = registry.connect()
    assert registry.finished(con, base_id) is not None          # the dependency is an ordinary cached run
    reloaded = train.load_model(r.artifact)
    assert reloaded.base_ is not None
    view = data.Dataset(registered).view("test", 0.1, "flux")
    assert np.allclose(reloaded.predict(view), r.predictions()["y_pred"])


def test_report_and_predict_see_the_new_family(registered):
    """The report names it; Predict runs it as a research run (it answers for uploads only once it is a
    method of the report suite: one more row in core/engine/suites REPORT_ROWS)."""
    from core.engine import suites
    s = spec.make_spec("toy_mean_flux", {"lo": 10, "hi": 200}, 0.1, "quick", registered)
    train.run(s, log=lambda m: None)
    train.run(spec.make_spec("ridge", {}, 0.1, "quick", registered), log=lambda m: None)   # a predictor
    assert suites.row_label(spec.normalise_spec(s)) == "toy_mean_flux(hi=200, lo=10)"
    ds = data.Dataset(registered)
    roles = {e.spec["model"]: e.role for e in predict.trained_models(ds) if e.usable and e.noise_level == 0.1}
    assert roles["toy_mean_flux"] == "research" and roles["ridge"] == "predictor"
    out = predict.predict(predict.example(ds, 0, 0.1), ds, noise=0.1, mc=4, research=True)
    toy = [row for row in out["logg"] if row["name"] == "toy_mean_flux"]
    assert toy and np.isfinite(toy[0]["value"]) and toy[0]["role"] == "research"
    assert toy[0]["run_id"] not in {m["run_id"] for m in out["recommended"]["members"]}
    assert "toy_mean_flux" not in {row["name"] for row in predict.predict(predict.example(ds, 0, 0.1), ds, noise=0.1,
                                                                             mc=4)["logg"]}
