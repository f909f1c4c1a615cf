"""The latent suite: what the blind-spot encoder's latent is probed with, per profile (PLAN), as engine
specs. The encoder each probe and head reads is its dependency (models/probes.py, models/blindspot.py:
`requires`), fitted by the engine first and shared by every probe of the same data set and seed.

quick and default (the default profile runs the quick plan on its larger data set), kept small
because every spec costs the engine's view building (several seconds a spec on 2 CPU cores) on top of its fit:
  - the encoder: 'flux' at both noise levels, 'flux+error' at noise 1.0;
  - the full grid at noise 1.0 for the 'flux' encoder: layers enc_pre_latent and enc_last x every
    pooling x 3 probes x 3 labels, n_train = all; at noise 0.1 the same cells with Ridge only;
  - flux + error: Ridge on the team's two extractions (enc_pre_latent + seg_mean_K8, its best;
    enc_last + global_mean, its baseline) x 3 labels at noise 1.0;
  - the size sweep (n_train 1000, 4000, all, where the data set has them) for log g, 3 probes,
    on the same two extractions, noise 1.0;
  - frozen encoder + MLP head for log g on enc_pre_latent + seg_mean_K8 (the team's) and on the
    whole enc_pre_latent map (flat), and the fine-tuned encoder + head on the whole map, both
    noise levels (HEADS).
full: both encoder variants at both noise levels; the full grid (all four layers x
every pooling x 3 probes x 3 labels) for the 'flux' encoder at both noise levels and the same
cells with Ridge for 'flux+error'; the size sweep for every label at both noise levels; the heads
on both variants (688 specs: hours on a laptop CPU). The sweep and the heads use fixed
extractions (a suite is a fixed list of specs); the page marks which extraction came out best.
"""
from __future__ import annotations

from core import config
from core.data import LABELS
from core.engine.spec import make_spec
from models.blindspot import LAYERS, encoder_dependency, nominal_shape
from models.latent_features import POOLINGS, canonical_pooling, valid_pooling
from models.probes import PROBES

PROBE_TITLES = {"ridge": "Ridge", "lightgbm": "LightGBM", "mlp": "MLP"}
VARIANTS = ("flux", "flux+error")     # encoder variants = their inputs
SIZES = (1000, 4000, "all")
BASELINE = ("enc_last", "global_mean")        # the team's baseline extraction
TEAM_BEST = ("enc_pre_latent", "seg_mean_K8")  # the team's best extraction
# the heads of the suite: the frozen head on the team's extraction, and frozen + fine-tuned heads
# on the whole enc_pre_latent map (the head's convolution and first layer then learn the pooling)
HEADS = (("blindspot_head", TEAM_BEST), ("blindspot_head", ("enc_pre_latent", "flat")),
         ("blindspot_finetune", ("enc_pre_latent", "flat")))

# What the latent suite runs, per profile. "grid" entries: (encoder variant, noise level, layers,
# probes, extractions); extractions None means every pooling of those layers, labels are all three.
PLAN = {
    "quick": {
        "encoders": (("flux", 0.1), ("flux", 1.0), ("flux+error", 1.0)),
        "grid": (("flux", 1.0, ("enc_pre_latent", "enc_last"), PROBES, None),
                 ("flux", 0.1, ("enc_pre_latent", "enc_last"), ("ridge",), None),
                 ("flux+error", 1.0, (), ("ridge",), (TEAM_BEST, BASELINE))),
        "sweep": (("flux", 1.0),), "sweep_extractions": (TEAM_BEST, BASELINE), "sweep_labels": ("logg",),
        "heads": (("flux", 0.1), ("flux", 1.0)),
    },
    "full": {
        "encoders": tuple((v, n) for v in VARIANTS for n in config.NOISE_LEVELS),
        "grid": tuple(("flux", n, LAYERS, PROBES, None) for n in config.NOISE_LEVELS)
        + tuple(("flux+error", n, LAYERS, ("ridge",), None) for n in config.NOISE_LEVELS),
        "sweep": tuple(("flux", n) for n in config.NOISE_LEVELS), "sweep_extractions": (TEAM_BEST, BASELINE),
        "sweep_labels": LABELS,
        "heads": tuple((v, n) for v in VARIANTS for n in config.NOISE_LEVELS),
    },
}
# the default profile runs the quick grid on its larger data set (the whole study within an hour
# on a laptop CPU); the full grid (all four layers at both noise levels, every label's size sweep,
# 688 runs) is for a GPU
PLAN["default"] = PLAN["quick"]
NOISE = config.NOISE_LEVELS


def encoder_spec(variant: str, noise: float, profile: str, dataset: str | None, seed: int = 0) -> dict:
    """The encoder a probe or head of this variant and noise level depends on, as a suite spec."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown encoder variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    d = encoder_dependency(variant, noise)
    return make_spec(d["model"], d["params"], d["noise_level"], profile, dataset, "latent", inputs=d["inputs"],
                     seed=seed, target=d["target"])


def _n_train_available(profile: str, dataset: str | None) -> int:
    from core import data
    prof = config.profile(profile)
    name = dataset or prof["dataset"]
    try:
        n = int(data.Dataset(name).splits["train"].size)
    except (data.DataError, OSError):
        n = int(round(config.SPLIT_FRACTIONS[0] * prof["n_spectra"]))
    return min(n, int(prof.get("max_train") or n))


def sizes_for(profile: str, dataset: str | None) -> list:
    """The n_train values that exist for this data set: 1000 and 4000 where smaller than the
    training split (capped by the profile's max_train), and 'all'."""
    n = _n_train_available(profile, dataset)
    return [s for s in SIZES if s == "all" or s < n]


def probe_params(variant, noise, layer, pooling, probe, n_train="all") -> dict:
    return {"encoder": variant, "encoder_noise": float(noise), "layer": layer, "pooling": pooling,
            "probe": probe, "n_train": n_train}


def _probe_spec(variant, noise, layer, pooling, probe, label, profile, dataset, n_train="all"):
    return make_spec("latent_probe", probe_params(variant, noise, layer, pooling, probe, n_train), noise, profile,
                     dataset, "latent", inputs=variant, target=label)


def _n_pix(profile: str, dataset: str | None) -> int:
    from core import data
    try:
        return int(data.Dataset(dataset or config.profile(profile)["dataset"]).n_pix)
    except (data.DataError, OSError):
        return 4096


def grid_cells(profile: str, n_pix: int = 4096) -> list[dict]:
    """The grid of the plan: one dict per (variant, noise, layer, pooling, probe, label) display
    cell, with the canonical pooling its spec runs (aliases share a spec)."""
    cells = []
    for variant, noise, layers, probes, extr in PLAN[profile]["grid"]:
        pairs = list(extr) if extr else [(lay, p) for lay in layers for p in POOLINGS]
        for lay, p in pairs:
            shape = nominal_shape(lay, n_pix)
            if not valid_pooling(shape, p):
                continue
            for probe in probes:
                for label in LABELS:
                    cells.append({"variant": variant, "noise": float(noise), "layer": lay, "pooling": p,
                                  "runs_as": canonical_pooling(shape, p), "probe": probe, "label": label})
    return cells


def suite_specs(profile: str, dataset: str | None) -> list[dict]:
    """The latent suite, in an order that lets consecutive probes share the encoder's pass."""
    plan = PLAN[profile]
    out, seen = [], set()

    def add(s):
        key = (s["model"], tuple(sorted((k, str(v)) for k, v in s["params"].items())), s["noise_level"],
               s.get("inputs"), s.get("target"))
        if key not in seen:
            seen.add(key)
            out.append(s)

    for v, n in plan["encoders"]:
        add(encoder_spec(v, n, profile, dataset))
    for c in grid_cells(profile, _n_pix(profile, dataset)):
        add(_probe_spec(c["variant"], c["noise"], c["layer"], c["runs_as"], c["probe"], c["label"], profile, dataset))
    sizes = sizes_for(profile, dataset)
    for v, n in plan["sweep"]:
        for lay, p in plan["sweep_extractions"]:
            for label in plan["sweep_labels"]:
                for probe in PROBES:
                    for size in sizes:
                        add(_probe_spec(v, n, lay, p, probe, label, profile, dataset, n_train=size))
    for v, n in plan["heads"]:
        for model, (lay, pool) in HEADS:
            params = {"encoder": v, "encoder_noise": float(n), "layer": lay, "pooling": pool}
            add(make_spec(model, params, n, profile, dataset, "latent", inputs=v, target="logg"))
    return out


