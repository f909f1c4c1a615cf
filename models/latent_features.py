"""Reading a fitted blind-spot encoder's latent: poolings of a named layer's (C, L) map, and the
features of a view, memoised per encoder run, layer and view content (so the probes of one layer
share one pass of the encoder).

    global_mean      mean over positions                      -> C numbers
    global_max       max over positions                       -> C
    seg_mean_K       positions cut into K equal segments, mean of each (K = 1, 2, 4, 8, 16) -> C*K
    flat             the whole map, flattened                 -> C*L, only where C*L <= FLAT_MAX
A pooling applies when K <= L (and C*L <= FLAT_MAX for flat). Two pairs are the same numbers and
are run once: seg_mean_K1 is global_mean, and seg_mean_K{L} is flat (`canonical_pooling`).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from core.data import INPUTS
from models.trainer import as_float_tensor

SEG_K = (1, 2, 4, 8, 16)
POOLINGS = ("global_mean", "global_max") + tuple(f"seg_mean_K{k}" for k in SEG_K) + ("flat",)
FLAT_MAX = 4096                       # largest flattened map (numbers per spectrum) that is probed
CACHE_BYTES = 1_500_000_000           # memoised features kept in this process


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


def extractions(enc_model, run_id: str, view, layer: str, batch: int | None = None,
                device: str | None = None) -> dict[str, np.ndarray]:
    """Every valid canonical pooling of one layer for a view, from one pass of the encoder
    (memoised per encoder run, layer and view content). Key '_map' holds the map itself when
    it is no larger than FLAT_MAX numbers per spectrum. The pass runs on `device` (default: CUDA where
    there is one, else the CPU; not Apple's GPU), in batches of 256 on the CPU and 4096 on a GPU; the encoder
    goes back to the device it was on."""
    import torch

    from models.trainer import pick_device
    device = device or ("cuda" if pick_device() == "cuda" else "cpu")
    batch = batch or (256 if device == "cpu" else 4096)

    key = (run_id, layer, _digest(view))
    hit = _FEATURES.get(key)
    if hit is not None:
        return hit
    shape = layer_shape(enc_model, layer)
    names = sorted({canonical_pooling(shape, p) for p in POOLINGS if valid_pooling(shape, p)})
    keep_map = shape[0] * shape[1] <= FLAT_MAX
    parts = {n: [] for n in names + (["_map"] if keep_map else [])}
    p = next(enc_model.module_.parameters(), None)
    home = p.device if p is not None else torch.device("cpu")
    net = enc_model.module_.to(device).eval()
    try:
        with torch.no_grad():
            for i in range(0, len(view.x), batch):
                m = net.maps(as_float_tensor(view.x[i:i + batch]).to(device), upto=layer)[layer]
                for n in names:
                    parts[n].append(pool_torch(m, n).cpu().numpy())
                if keep_map:
                    parts["_map"].append(m.cpu().numpy())
    finally:
        enc_model.module_.to(home)
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
