"""The best estimator the physics allows: the Bayesian likelihood fit of the simulator to
each spectrum (core/fisher.likelihood_fit), posterior mean of log g under the grid prior.

Not a learned model: fit() only checks that the data set was made by this simulator version and
keeps its physics recipe (a physics variant's data set is fitted with that variant's simulator;
predicting another variant's spectra is then a fit with the wrong physics), or, for an imported
data set, keeps the clean training spectra as templates. Its test R^2
is the ceiling every learned model is measured against.

Param `nuisances`: "ignore" (the default, how every ceiling run was fitted before nuisances existed: the
three labels alone) or "marginalise": on a data set built with a nuisance recipe, the recipe's RV,
resolution, continuum tilt and telluric parameters are fitted with the labels under their priors and
marginalised (core/physics/nuisance_fit.py). The ceiling suite asks for "marginalise" on such a data set;
ignoring them there is a fit with the wrong model (log g R^2 0.04 against 0.99 on sim-quick-survey at
noise 0.1), and the run says so (metric nuisances_ignored = 1 and a log line).
"""
from __future__ import annotations

import json

import numpy as np

from models.base import Model, load_arrays, save_arrays


class LikelihoodCeiling(Model):
    inputs = "flux+error"
    family = "physics"
    seed_dependent = False       # nothing is trained: replicates would repeat it
    per_spectrum_fit = True      # a likelihood fit per spectrum: slow, one pass in Predict

    param_defaults = {"nuisances": "ignore"}
    NUISANCE_MODES = ("ignore", "marginalise")

    @classmethod
    def check_params(cls, params: dict) -> None:
        super().check_params(params)
        if params.get("nuisances", "ignore") not in cls.NUISANCE_MODES:
            raise ValueError(f"nuisances must be one of {', '.join(cls.NUISANCE_MODES)}, got {params['nuisances']!r}")

    def __init__(self, max_templates: int = 20000, nuisances: str = "ignore"):
        if nuisances not in self.NUISANCE_MODES:
            raise ValueError(f"nuisances must be one of {', '.join(self.NUISANCE_MODES)}, got {nuisances!r}")
        super().__init__(max_templates=max_templates, nuisances=nuisances)
        self.max_templates = max_templates
        self.nuisances = nuisances

    def fit(self, train, val, ctx):
        from core.physics.simulate import SIMULATOR_VERSION
        ds = ctx.dataset
        self.target_ = ctx.target
        self.device_ = ctx.device       # where predict's grid chi^2 and Gauss-Newton Jacobians run (not saved)
        version = str(ds.attrs.get("simulator_version", "")) if ds is not None else ""
        self.physics_ = None
        recipe = getattr(ds, "nuisance_recipe", None) if ds is not None else None
        self.nuisance_ = recipe if self.nuisances == "marginalise" else None
        simulated = ds is not None and ds.has_meta and version == SIMULATOR_VERSION   # else template matching
        ignored = recipe is not None and (self.nuisance_ is None or not simulated)
        self.extra_metrics_ = {"nuisances_ignored": float(ignored)}
        if recipe is not None and self.nuisance_ is not None and not simulated:
            ctx.log(f"data set {ds.name}: its nuisances cannot be marginalised by template matching (no simulator of "
                    f"its version): they are ignored")
        elif ignored:
            ctx.log(f"data set {ds.name} has nuisances ({recipe.get('name', 'custom')}) and they are ignored "
                    f"(nuisances='ignore'): a fit with the wrong model, not a ceiling; use nuisances='marginalise'")
        if ds is not None and ds.has_meta and version == SIMULATOR_VERSION:
            self.mode_ = "simulator"
            self.templates_ = None
            self.physics_ = getattr(ds, "physics_recipe", None)
        else:
            if ds is not None and ds.has_meta:
                ctx.log(f"data set made by simulator v{version}, this is v{SIMULATOR_VERSION}: using templates")
            self.mode_ = "templates"
            rows = train.index[: self.max_templates]
            flux, _ = ds.read(rows)
            self.templates_ = (ds.labels[rows].astype(np.float64), flux.astype(np.float64))
        return self

    def predict(self, view):
        from core.physics import fisher
        flux = view.x[:, 0].astype(np.float64)
        sigma = view.x[:, 1].astype(np.float64)
        sim = None
        device = getattr(self, "device_", "cpu")
        if device.startswith("mps"):    # no float64 on Apple's GPU: the chi^2 stays on the CPU
            device = "cpu"
        if self.templates_ is None and (getattr(self, "physics_", None) or device != "cpu"):
            from core.physics.simulate import variant_simulator
            sim = variant_simulator(getattr(self, "physics_", None), device)
        if getattr(self, "nuisance_", None) and self.templates_ is None:
            from core.physics import nuisance_fit
            out = nuisance_fit.likelihood_fit(flux, sigma, self.nuisance_, sim=sim, device=device)
        else:
            out = fisher.likelihood_fit(flux, sigma, templates=self.templates_, sim=sim, device=device)
        return out["labels"][:, self.target_]

    @property
    def n_params(self):
        return 0

    def _save(self, folder):
        arrays = {"mode": np.array(self.mode_), "target": np.array(self.target_)}
        if getattr(self, "physics_", None):
            arrays["physics"] = np.array(json.dumps(self.physics_, sort_keys=True))
        if getattr(self, "nuisance_", None):
            arrays["nuisance"] = np.array(json.dumps(self.nuisance_, sort_keys=True))
        if self.templates_ is not None:
            arrays["tlabels"], arrays["tflux"] = self.templates_
        save_arrays(folder, **arrays)

    def _load(self, folder):
        a = load_arrays(folder)
        self.mode_, self.target_ = str(a["mode"]), int(a["target"])
        self.templates_ = (a["tlabels"], a["tflux"]) if "tlabels" in a else None
        self.physics_ = json.loads(str(a["physics"])) if "physics" in a else None
        self.nuisance_ = json.loads(str(a["nuisance"])) if "nuisance" in a else None


MODELS = {"likelihood_ceiling": LikelihoodCeiling}
