"""What the blind-spot encoder's latent knows: extraction (named layer x pooling), the probe grid
run through the engine, and the readers the Latent page draws.

Extractions. Every named layer of the encoder (models/blindspot.py LAYERS: enc1 (24 x 512),
enc2 (32 x 128), enc_pre_latent (48 x 32), enc_last (48 x 8) = the 384-number latent; channels x
positions for 4096 pixels) x every pooling:
    global_mean      mean over positions                      -> C numbers
    global_max       max over positions                       -> C
    seg_mean_K       positions cut into K equal segments, mean of each (K = 1, 2, 4, 8, 16) -> C*K
    flat             the whole map, flattened                 -> C*L, only where C*L <= FLAT_MAX
A pooling applies when K <= L (and C*L <= FLAT_MAX for flat). Two pairs are the same numbers and
are run once: seg_mean_K1 is global_mean, and seg_mean_K{L} is flat (enc_last: K8). The grid
shows both cells with the one result (`canonical_pooling`).

Probes (models/probes.py, family latent_probe): Ridge, LightGBM and a small MLP per extraction,
label and noise level; each is one engine spec whose params name the encoder variant ('flux' or
'flux+error'), the encoder's noise level, layer, pooling, probe and n_train (labelled spectra:
1000, 4000 or 'all'; sizes the data set does not have are left out). The probe gets its encoder
from `load_encoder`, i.e. core.train.run(encoder_spec(...)): trained once, cached in the registry.
Features are memoised in this process (`extractions`), so the probes of one layer share one pass
of the encoder.

What the suite runs per profile (PLAN below). quick, kept small because every spec costs the
engine's view building (several seconds a spec on 2 CPU cores) on top of its fit:
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
default and full: both encoder variants at both noise levels; the full grid (all four layers x
every pooling x 3 probes x 3 labels) for the 'flux' encoder at both noise levels and the same
cells with Ridge for 'flux+error'; the size sweep for every label at both noise levels; the heads
on both variants (688 specs: hours on a laptop CPU). The sweep and the heads use fixed
extractions (a suite is a fixed list of specs); the page marks which extraction came out best.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import pandas as pd

from core import config
from core.data import INPUTS, LABELS

LAYERS = ("enc1", "enc2", "enc_pre_latent", "enc_last")
SEG_K = (1, 2, 4, 8, 16)
POOLINGS = ("global_mean", "global_max") + tuple(f"seg_mean_K{k}" for k in SEG_K) + ("flat",)
FLAT_MAX = 4096                       # largest flattened map (numbers per spectrum) that is probed
PROBES = ("ridge", "lightgbm", "mlp")
PROBE_TITLES = {"ridge": "Ridge", "lightgbm": "LightGBM", "mlp": "MLP"}
VARIANTS = ("flux", "flux+error")     # encoder variants = their inputs
SIZES = (1000, 4000, "all")
BASELINE = ("enc_last", "global_mean")        # the team's baseline extraction
TEAM_BEST = ("enc_pre_latent", "seg_mean_K8")  # the team's best extraction
# the heads of the suite: the frozen head on the team's extraction, and frozen + fine-tuned heads
# on the whole enc_pre_latent map (the head's convolution and first layer then learn the pooling)
HEADS = (("blindspot_head", TEAM_BEST), ("blindspot_head", ("enc_pre_latent", "flat")),
         ("blindspot_finetune", ("enc_pre_latent", "flat")))
CACHE_BYTES = 1_500_000_000           # memoised features kept in this process

# What the latent suite runs, per profile. "grid" entries: (encoder variant, noise level, layers,
# probes, extractions); extractions None means every pooling of those layers, labels are all three.
PLAN = {
    "quick": {
        "encoders": (("flux", 0.1), ("flux", 1.0), ("flux+error", 1.0)),
        "encoder_params": {},
        "grid": (("flux", 1.0, ("enc_pre_latent", "enc_last"), PROBES, None),
                 ("flux", 0.1, ("enc_pre_latent", "enc_last"), ("ridge",), None),
                 ("flux+error", 1.0, (), ("ridge",), (TEAM_BEST, BASELINE))),
        "sweep": (("flux", 1.0),), "sweep_extractions": (TEAM_BEST, BASELINE), "sweep_labels": ("logg",),
        "heads": (("flux", 0.1), ("flux", 1.0)),
    },
    "full": {
        "encoders": tuple((v, n) for v in VARIANTS for n in config.NOISE_LEVELS),
        "encoder_params": {},
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


# --------------------------------------------------------------------------- poolings
def _seg_k(pooling: str) -> int | None:
    return int(pooling.rsplit("K", 1)[1]) if pooling.startswith("seg_mean_K") else None


def valid_pooling(shape, pooling: str) -> bool:
    c, length = int(shape[0]), int(shape[1])
    if pooling in ("global_mean", "global_max"):
        return True
    if pooling == "flat":
        return c * length <= FLAT_MAX
    k = _seg_k(pooling)
    if k is None:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    return k <= length


def canonical_pooling(shape, pooling: str) -> str:
    """The pooling actually run for a cell: K1 is global_mean; K = L is flat (when flat applies)."""
    k = _seg_k(pooling)
    if k == 1:
        return "global_mean"
    if k is not None and k == int(shape[1]) and valid_pooling(shape, "flat"):
        return "flat"
    return pooling


def pooled_dim(c: int, length: int, pooling: str) -> int:
    if pooling in ("global_mean", "global_max"):
        return c
    if pooling == "flat":
        return c * length
    return c * _seg_k(pooling)


def pool_torch(m, pooling: str):
    """(B, C, L) torch map -> (B, D) pooled features."""
    from torch.nn import functional as F
    if pooling == "global_mean":
        return m.mean(-1)
    if pooling == "global_max":
        return m.amax(-1)
    if pooling == "flat":
        return m.flatten(1)
    k = _seg_k(pooling)
    if k is None:
        raise ValueError(f"unknown pooling {pooling!r}")
    return F.adaptive_avg_pool1d(m, k).flatten(1) if m.shape[-1] % k else m.reshape(*m.shape[:2], k, -1).mean(-1).flatten(1)


def pool(maps: np.ndarray, pooling: str) -> np.ndarray:
    import torch
    with torch.no_grad():
        return pool_torch(torch.as_tensor(maps), pooling).numpy()


def layer_shape(enc_model, layer: str) -> tuple[int, int]:
    """(channels, positions) of a named layer of a fitted encoder model."""
    cache = enc_model.__dict__.setdefault("_shapes", {})
    if layer not in cache:
        x = np.zeros((1, enc_model.arch_["n_in"], enc_model.arch_["n_pix"]), np.float32)
        cache[layer] = tuple(int(v) for v in enc_model.layer_maps(x, layer).shape[1:])
    return cache[layer]


def extraction_cells(enc_model, layers=LAYERS) -> pd.DataFrame:
    """Every (layer, pooling) cell: its dimension, whether it applies and the pooling it runs."""
    rows = []
    for layer in layers:
        shape = layer_shape(enc_model, layer)
        for p in POOLINGS:
            ok = valid_pooling(shape, p)
            rows.append({"layer": layer, "pooling": p, "shape": f"{shape[0]} x {shape[1]}", "valid": ok,
                         "dims": pooled_dim(*shape, p) if ok else None,
                         "runs_as": canonical_pooling(shape, p) if ok else None})
    return pd.DataFrame(rows)


def nominal_shape(layer: str, n_pix: int = 4096) -> tuple[int, int]:
    """A layer's shape from the architecture alone (no fitted model needed; the suite uses it)."""
    from models.blindspot import DOWN, PAD_TO, UNSHUFFLE, WIDTHS
    p = -(-n_pix // PAD_TO) * PAD_TO
    i = LAYERS.index(layer)
    return WIDTHS[i], p // UNSHUFFLE // DOWN ** i


# --------------------------------------------------------------------------- encoders and features
def encoder_spec(variant: str, noise: float, profile: str, dataset: str | None, seed: int = 0) -> dict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown encoder variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    params = dict(PLAN.get(profile, PLAN["default"])["encoder_params"])
    return {"model": "blindspot", "params": params, "inputs": variant, "noise_level": float(noise),
            "dataset": dataset or config.profile(profile)["dataset"], "seed": int(seed), "profile": profile,
            "target": "logg", "suite": "latent"}


def _ctx_names(ctx) -> tuple[str, str]:
    from pathlib import Path
    return Path(ctx.dataset.path).stem, ctx.profile["name"]


_ENCODERS: dict[str, object] = {}


def encoder_by_run(run_id: str):
    """A fitted encoder by run id, loaded once per process."""
    if run_id not in _ENCODERS:
        from core import train
        folder = config.runs_dir() / run_id
        if not (folder / "run.json").exists():
            raise FileNotFoundError(f"encoder run {run_id} is not in {config.runs_dir()}; rerun its probe")
        _ENCODERS[run_id] = train.load_model(folder)
    return _ENCODERS[run_id]


def load_encoder(variant: str, noise: float, ctx):
    """(encoder model, run id) for a probe or head being fitted: the encoder of the same data set,
    profile and seed, trained (or loaded from the cache) through core.train.run."""
    from core import train
    ds, prof = _ctx_names(ctx)
    r = train.run(encoder_spec(variant, noise, prof, ds, ctx.seed), log=ctx.log)
    return encoder_by_run(r.run_id), r.run_id


def head_spec(params: dict, ctx, frozen: bool = True) -> dict:
    """The spec of a head (frozen or fine-tuned) with these params, on the context's data set; its
    noise level is the encoder's."""
    ds, prof = _ctx_names(ctx)
    keep = {k: v for k, v in params.items() if k != "lr"} if frozen else dict(params)  # lr differs by design
    return {"model": "blindspot_head" if frozen else "blindspot_finetune", "params": keep,
            "inputs": params.get("encoder", "flux"), "noise_level": float(params.get("encoder_noise", 1.0)), "dataset": ds,
            "seed": int(ctx.seed), "profile": prof, "target": LABELS[int(ctx.target)]}


def check_inputs(variant: str, view) -> None:
    if list(view.channels) != INPUTS[variant]:
        raise ValueError(f"the {variant!r} encoder needs inputs {variant!r}; this spec's view has channels "
                         f"{view.channels} (set the spec's inputs to {variant!r})")


class _LRU:
    def __init__(self, max_bytes: int):
        self.max_bytes, self.d = max_bytes, OrderedDict()

    def get(self, key):
        if key in self.d:
            self.d.move_to_end(key)
            return self.d[key]
        return None

    def put(self, key, value: dict):
        self.d[key] = value
        self.d.move_to_end(key)
        while len(self.d) > 1 and sum(sum(a.nbytes for a in v.values()) for v in self.d.values()) > self.max_bytes:
            self.d.popitem(last=False)


_FEATURES = _LRU(CACHE_BYTES)


def _digest(view) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(view.index).tobytes())
    h.update(np.ascontiguousarray(view.x).data)
    return h.hexdigest()


def extractions(enc_model, run_id: str, view, layer: str, batch: int = 256) -> dict[str, np.ndarray]:
    """Every valid canonical pooling of one layer for a view, from one pass of the encoder
    (memoised per encoder run, layer and view content). Key '_map' holds the map itself when
    it is no larger than FLAT_MAX numbers per spectrum."""
    import torch

    from core.trainer import as_float_tensor
    key = (run_id, layer, _digest(view))
    hit = _FEATURES.get(key)
    if hit is not None:
        return hit
    shape = layer_shape(enc_model, layer)
    names = sorted({canonical_pooling(shape, p) for p in POOLINGS if valid_pooling(shape, p)})
    keep_map = shape[0] * shape[1] <= FLAT_MAX
    parts = {n: [] for n in names + (["_map"] if keep_map else [])}
    net = enc_model.module_.cpu().eval()
    with torch.no_grad():
        for i in range(0, len(view.x), batch):
            m = net.maps(as_float_tensor(view.x[i:i + batch]), upto=layer)[layer]
            for n in names:
                parts[n].append(pool_torch(m, n).numpy())
            if keep_map:
                parts["_map"].append(m.numpy())
    out = {n: (np.concatenate(v) if v else np.zeros((0, 0), np.float32)) for n, v in parts.items()}
    _FEATURES.put(key, out)
    return out


def features(enc_model, run_id: str, view, layer: str, pooling: str) -> np.ndarray:
    """(n, D) features of one extraction for a view."""
    shape = layer_shape(enc_model, layer)
    if not valid_pooling(shape, pooling):
        raise ValueError(f"pooling {pooling} does not apply to layer {layer} of shape {shape[0]} x {shape[1]}"
                         + (f" (flat is limited to {FLAT_MAX} numbers)" if pooling == "flat" else ""))
    return extractions(enc_model, run_id, view, layer)[canonical_pooling(shape, pooling)]


def layer_maps(enc_model, run_id: str, view, layer: str) -> np.ndarray:
    """(n, C, L) map of one layer for a view (memoised when small)."""
    ex = extractions(enc_model, run_id, view, layer)
    return ex["_map"] if "_map" in ex else enc_model.layer_maps(view.x, layer)


def clear_memo() -> None:
    _FEATURES.d.clear()
    _ENCODERS.clear()


# --------------------------------------------------------------------------- the suite
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
    from core import suites
    s = suites._spec("latent_probe", probe_params(variant, noise, layer, pooling, probe, n_train), noise, profile,
                     dataset, "latent", inputs=variant)
    s["target"] = label
    return s


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
    from core import suites
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
            s = suites._spec(model, params, n, profile, dataset, "latent", inputs=v)
            s["target"] = "logg"
            add(s)
    return out


# --------------------------------------------------------------------------- readers (the page)
def _cached(spec, con):
    from core import train
    return train.cached_result(spec, con=con)


def grid(profile: str, dataset: str | None, con=None) -> pd.DataFrame:
    """Every display cell of the plan's grid with its R^2 (NaN where not run)."""
    from core import registry
    con = con or registry.connect()
    memo, rows = {}, []
    for c in grid_cells(profile, _n_pix(profile, dataset)):
        spec = _probe_spec(c["variant"], c["noise"], c["layer"], c["runs_as"], c["probe"], c["label"], profile, dataset)
        key = (c["variant"], c["noise"], c["layer"], c["runs_as"], c["probe"], c["label"])
        if key not in memo:
            memo[key] = _cached(spec, con)
        r = memo[key]
        m = r.metrics if r else {}
        rows.append({**c, "r2": m.get("r2", np.nan), "mae": m.get("mae", np.nan), "dims": m.get("n_features", np.nan),
                     "fit_s": (r.timings or {}).get("fit_s", np.nan) if r else np.nan,
                     "run_id": r.run_id if r else None, "spec": spec})
    return pd.DataFrame(rows)


def size_sweep(profile: str, dataset: str | None, con=None) -> pd.DataFrame:
    from core import registry
    con = con or registry.connect()
    rows = []
    for s in suite_specs(profile, dataset):
        if s["model"] != "latent_probe":
            continue
        p = s["params"]
        plan = PLAN[profile]
        if (p["layer"], p["pooling"]) not in plan["sweep_extractions"] or s["target"] not in plan["sweep_labels"]:
            continue
        if (p["encoder"], s["noise_level"]) not in {(v, float(n)) for v, n in plan["sweep"]}:
            continue
        r = _cached(s, con)
        rows.append({"variant": p["encoder"], "noise": s["noise_level"], "layer": p["layer"], "pooling": p["pooling"],
                     "extraction": f"{p['layer']} + {p['pooling']}", "probe": p["probe"], "label": s["target"],
                     "n_train_param": str(p["n_train"]), "n_train": r.metrics.get("n_labelled", np.nan) if r else np.nan,
                     "r2": r.metrics["r2"] if r else np.nan, "spec": s})
    return pd.DataFrame(rows)


def encoders(profile: str, dataset: str | None, con=None) -> pd.DataFrame:
    """The encoder runs: denoising quality, training time, read-out R^2."""
    from core import registry
    con = con or registry.connect()
    rows = []
    for s in suite_specs(profile, dataset):
        if s["model"] != "blindspot":
            continue
        r = _cached(s, con)
        m = r.metrics if r else {}
        rows.append({"variant": s["inputs"], "noise": s["noise_level"], "run_id": r.run_id if r else None,
                     "noisy_mse": m.get("noisy_mse"), "denoise_mse": m.get("denoise_mse"),
                     "denoise_ratio": m.get("denoise_ratio"), "denoise_mse_nonblind": m.get("denoise_mse_nonblind"),
                     "readout_r2": m.get("r2"), "epochs": m.get("train_epochs"),
                     "fit_s": (r.timings or {}).get("fit_s") if r else None, "n_params": m.get("n_params"), "spec": s})
    return pd.DataFrame(rows)


def heads(profile: str, dataset: str | None, con=None) -> pd.DataFrame:
    from core import registry
    con = con or registry.connect()
    rows = []
    for s in suite_specs(profile, dataset):
        if s["model"] not in ("blindspot_head", "blindspot_finetune"):
            continue
        r = _cached(s, con)
        rows.append({"variant": s["inputs"], "noise": s["noise_level"], "label": s["target"],
                     "method": "frozen encoder + MLP head" if s["model"] == "blindspot_head" else "fine-tuned encoder + head",
                     "extraction": f"{s['params']['layer']} + {s['params']['pooling']}",
                     "r2": r.metrics["r2"] if r else np.nan, "n_params": r.metrics.get("n_params") if r else np.nan,
                     "fit_s": (r.timings or {}).get("fit_s") if r else np.nan, "spec": s})
    return pd.DataFrame(rows)


def best_extraction(g: pd.DataFrame, variant: str = "flux", noise: float = 1.0, label: str = "logg",
                    probe: str | None = None) -> dict | None:
    """The (layer, pooling, probe) cell with the highest R^2 in a grid frame, or None."""
    d = g[(g["variant"] == variant) & (g["noise"] == noise) & (g["label"] == label) & g["r2"].notna()]
    if probe:
        d = d[d["probe"] == probe]
    if d.empty:
        return None
    r = d.loc[d["r2"].idxmax()]
    return {"layer": r["layer"], "pooling": r["runs_as"], "probe": r["probe"], "r2": float(r["r2"])}


def team_numbers() -> pd.DataFrame:
    """The team report's latent numbers (their data set, noise level unspecified)."""
    from core.reference import rows
    out = [r for r in rows() if r["group"] == "distill" and r["value"]]
    return pd.DataFrame([{"method": r["method"], "input": r["input"], "r2": float(r["value"]), "note": r["note"]}
                         for r in out])


def pca2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First two principal components of standardised features, and their explained-variance fractions."""
    x = np.asarray(x, dtype=np.float64)
    z = (x - x.mean(0)) / (x.std(0) + 1e-12)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    ev = s ** 2 / max(float((s ** 2).sum()), 1e-300)
    return z @ vt[:2].T, ev[:2]
