"""Suites: named lists of specs. Every experiment of docs/experiments.md is one suite.

    specs = suite("report", profile="quick")      # -> list of spec dicts for core.engine.train.run
The larger suites have a file of their own here: latent.py (the blind-spot encoder's probes),
ablation.py (error versus flux), noise.py (fixed versus fresh training noise).
The data set is the profile's unless `dataset` is given.
"""
from __future__ import annotations

from core import config
from core.engine.spec import make_spec

NOISE = config.NOISE_LEVELS

# the performance matrix: one row per method (label, model, params)
REPORT_ROWS = [
    ("Metadata (Ridge)", "metadata_ridge", {}),
    ("Metadata (LightGBM)", "metadata_lgbm", {}),
    ("Ridge", "ridge", {}),
    ("LightGBM", "lightgbm", {}),
    ("MLP", "mlp", {}),
    ("Residual MLP", "residual_mlp", {}),
    ("Global-feature MLP", "global_mlp", {}),
    ("Top-K window CNN (K=256)", "topk_cnn", {"K": 256}),
    ("Top-K window transformer (K=256)", "topk_transformer", {"K": 256}),
    ("Dilated CNN (d=2)", "dilated_cnn", {"dilation": 2}),
    ("Multi-scale CNN (d=1,2,4)", "multiscale_cnn", {}),
    ("Fusion: concat", "fusion_concat", {}),
    ("Fusion: FiLM", "fusion_film", {}),
    ("Cannon (quadratic)", "cannon", {}),
]
CEILING_LABEL = "Likelihood ceiling (physics)"

LGBM_SWEEP = [
    {"num_leaves": 15, "learning_rate": 0.05},
    {"num_leaves": 31, "learning_rate": 0.05},
    {"num_leaves": 63, "learning_rate": 0.05},
    {"num_leaves": 31, "learning_rate": 0.1, "feature_fraction": 0.5},
    {"num_leaves": 31, "learning_rate": 0.03, "min_data_in_leaf": 50},
]


def suite(name: str, profile: str = "quick", dataset: str | None = None) -> list[dict]:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}")
    return SUITES[name](profile, dataset)


# the window transformer at K=256 costs ~2 min of CPU per fit: the quick profile runs it at K=64
QUICK_OVERRIDES = {"topk_transformer": {"K": 64}}


def _report(profile, dataset):
    out = []
    for _, m, p in REPORT_ROWS:
        if profile == "quick" and m in QUICK_OVERRIDES:
            p = QUICK_OVERRIDES[m]
        out += [make_spec(m, p, n, profile, dataset, "report") for n in NOISE]
    return out


def _dilation(profile, dataset):
    specs = [make_spec("dilated_cnn", {"dilation": d}, n, profile, dataset, "dilation") for d in (1, 2, 4, 8) for n in NOISE]
    return specs + [make_spec("multiscale_cnn", {}, n, profile, dataset, "dilation") for n in NOISE]


def _topk(profile, dataset):
    return [make_spec("topk_cnn", {"K": k, "criterion": c}, n, profile, dataset, "topk")
            for c in ("ridge", "fstat", "fisher") for k in (64, 128, 256, 512, 1024) for n in NOISE]


def _lgbm(profile, dataset):
    return [make_spec("lightgbm", p, n, profile, dataset, "lightgbm_sweep") for p in LGBM_SWEEP for n in NOISE]


def _global_ablation(profile, dataset):
    groups = [[], ["F0"], ["F1"], ["F2"], ["F3"]]
    return [make_spec("global_mlp", {"drop_groups": g}, n, profile, dataset, "global_ablation") for g in groups for n in NOISE]


def _fusion(profile, dataset):
    # the two towers and the two fusions with the report's parameters: the same specs, so cached runs are shared
    params = {m: p for _, m, p in REPORT_ROWS}
    return [make_spec(m, params[m], n, profile, dataset, "fusion") for m in ("global_mlp", "topk_cnn", "fusion_concat", "fusion_film")
            for n in NOISE]


def _ceiling(profile, dataset):
    """The likelihood fit at each noise level; on a data set with nuisances, marginalising them."""
    return [make_spec("likelihood_ceiling", ceiling_params(profile, dataset), n, profile, dataset, "ceiling")
            for n in NOISE]


def ceiling_params(profile: str, dataset: str | None) -> dict:
    """The ceiling's params on this data set: nuisances marginalised where it has them, else none (the
    ceiling of before). What every reader of "the ceiling" (digest, hypotheses, pages) asks the registry for."""
    return {"nuisances": "marginalise"} if has_nuisances(profile, dataset) else {}


def has_nuisances(profile: str, dataset: str | None) -> bool:
    """Whether the suite's data set carries a nuisance recipe: the built file's, else what the profile or
    the name ("sim-quick-survey") asks for."""
    from core import data
    name = dataset or config.profile(profile)["dataset"]
    try:
        return data.Dataset(name).nuisance_recipe is not None
    except (data.DataError, OSError):
        return bool(config.profile(profile).get("nuisance")) or any(name.endswith("-" + r) for r in config.NUISANCE_RECIPES)


def _latent(profile, dataset):
    from core.engine.suites import latent
    return latent.suite_specs(profile, dataset)


def _error_ablation(profile, dataset):
    from core.engine.suites import ablation
    return ablation.suite_specs(profile, dataset)


def _noise_ablation(profile, dataset):
    from core.engine.suites import noise
    return noise.suite_specs(profile, dataset, {m: p for _, m, p in REPORT_ROWS})


def _learning_curve(profile, dataset):
    from core.engine.suites import learning
    return learning.suite_specs(profile, dataset, {m: p for _, m, p in REPORT_ROWS}, _ceiling(profile, dataset))


def _robustness(profile, dataset):
    from core.engine.suites import robustness
    return robustness.suite_specs(profile, dataset, _report(profile, dataset))


def _transfer(profile, dataset):
    from core.engine.suites import transfer
    return transfer.suite_specs(profile, dataset, {m: p for _, m, p in REPORT_ROWS})


def _posterior(profile, dataset):
    from core.engine.suites import posterior
    return posterior.suite_specs(profile, dataset)


SUITES = {
    "report": _report,
    "ceiling": _ceiling,
    "error_ablation": _error_ablation,
    "dilation": _dilation,
    "topk": _topk,
    "lightgbm_sweep": _lgbm,
    "global_ablation": _global_ablation,
    "fusion": _fusion,
    "latent": _latent,
    "noise_ablation": _noise_ablation,
    "learning_curve": _learning_curve,
    "robustness": _robustness,
    "transfer": _transfer,
    "posterior": _posterior,
}


def row_label(spec: dict) -> str:
    """A readable name for a spec's method (used by tables and pages). noise_mode and training are
    named, as "(fixed noise)" and "(epoch budget)", where they are not the family's default, and always
    in the noise_ablation suite: "MLP (fresh noise, to convergence)"."""
    params = dict(spec.get("params") or {})
    mode, training = params.pop("noise_mode", None), params.pop("training", None)
    label = _method_label(dict(spec, params=params))
    from models import MODELS
    cls, always = MODELS.get(spec["model"]), spec.get("suite") == "noise_ablation"
    said = []
    if mode is not None and (always or mode != getattr(cls, "noise_mode", None)):
        said.append(NOISE_WORDS.get(mode, f"{mode} noise"))
    if training is not None and (always or training != getattr(cls, "implied_params", {}).get("training")):
        said.append(TRAINING_WORDS.get(training, training))
    return label + (f" ({', '.join(said)})" if said else "")


# how a label names the torch families' `training` (models/trainer.py TRAINING_MODES) and `noise_mode`
TRAINING_WORDS = {"budget": "epoch budget", "converge": "to convergence"}
NOISE_WORDS = {"fixed": "fixed noise", "fresh": "fresh noise", "stream": "new stars every epoch"}


def _method_label(spec: dict) -> str:
    if spec["model"] == "likelihood_ceiling":
        marg = (spec.get("params") or {}).get("nuisances") == "marginalise"
        return CEILING_LABEL + (" with nuisances marginalised" if marg else "")
    from models import MODELS
    inp = spec.get("inputs")
    target = spec.get("target") or "logg"
    usual = not inp or inp == getattr(MODELS.get(spec["model"]), "inputs", None)
    from core.engine.suites.posterior import ROWS as POSTERIOR_ROWS  # matrix rows outside the report suite
    for label, m, p in REPORT_ROWS + POSTERIOR_ROWS if usual and target == "logg" else ():   # on its usual input
        if spec["model"] == m and all(spec.get("params", {}).get(k) == v for k, v in p.items()) and \
                len(spec.get("params", {})) == len(p):
            return label
    general = _family_label(spec) if usual and target == "logg" else None
    if general:
        return general
    if not usual and target == "logg":    # a report method on another input: "Ridge on clean error only"
        from core.engine.suites.ablation import INPUT_LABELS
        base = _method_label({k: v for k, v in spec.items() if k != "inputs"})
        if not base.startswith(f"{spec['model']}("):
            return f"{base} on {INPUT_LABELS.get(inp, inp)}"
    ps = ", ".join(f"{k}={v}" for k, v in sorted((spec.get("params") or {}).items()))
    return f"{spec['model']}({ps})" + (f" [{inp}]" if inp and not usual else "") + \
        (f" -> {target}" if target != "logg" else "")


def _family_label(spec: dict) -> str | None:
    """A report family at other values of the report row's own parameters, named by that row's rule:
    "Top-K window transformer (K=256)" gives "Top-K window transformer (K=64)" for params {"K": 64},
    "Dilated CNN (d=2)" gives "Dilated CNN (d=4)" for {"dilation": 4}. None when the parameters are not
    exactly the row's keys (the raw model(params) name then)."""
    params = spec.get("params") or {}
    for label, m, p in REPORT_ROWS:
        if spec["model"] != m or not p or set(params) != set(p):
            continue
        out = label
        for k, v in p.items():
            if f"={v}" not in out:
                return None
            out = out.replace(f"={v}", f"={params[k]}", 1)
        return out
    return None
