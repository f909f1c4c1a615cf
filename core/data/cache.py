"""Small caches written beside runs and data sets (validation predictions, Fisher information):
written atomically, and skipped where the artifacts folder is read-only or full (the caller keeps
the arrays it computed, and nothing half-written stays)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def atomic_savez(path: Path, **arrays) -> bool:
    """Save arrays to path (.npz) via a temporary file and a rename. Returns whether it was written."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        return False


# ----------------------------------------------------------------------------- views shared on a node
VIEW_FORMAT = 1


def view_key(ds, split: str, noise_level: float, inputs: str, seed: int, limit) -> str:
    """The name of a view's folder: a hash of everything Dataset.view's arrays depend on."""
    import hashlib
    import json
    recipe = {"format": VIEW_FORMAT, "fingerprint": ds.fingerprint, "split": split, "noise_level": float(noise_level),
              "inputs": inputs, "seed": int(seed), "limit": limit}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:20]


def shared_view(ds, split: str, noise_level: float, inputs: str, seed: int, limit, folder: Path,
                budget_bytes: int | None = None):
    """Dataset.view's arrays, materialised once per node as .npy files under `folder` (a local scratch disk:
    LOGG_VIEW_SCRATCH) and memory-mapped read-only, so the fits of one node share one copy in the page cache
    instead of each building and holding its own. The first process to need a view writes it into a
    temporary folder and renames it into place; another that raced it keeps the winner's. Folders beyond
    budget_bytes (LOGG_VIEW_SCRATCH_GB, default 20) are removed oldest first. Where the folder cannot be
    written, the view is built in memory as before."""
    import json
    import secrets
    import shutil

    from core.data.dataset import View
    folder = Path(folder)
    final = folder / view_key(ds, split, noise_level, inputs, seed, limit)
    if not (final / "meta.json").is_file():
        v = ds.view(split, noise_level, inputs, seed=seed, limit=limit)
        tmp = folder / f"{final.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
        try:
            tmp.mkdir(parents=True)
            for k in ("x", "y", "index"):
                np.save(tmp / f"{k}.npy", getattr(v, k))
            (tmp / "meta.json").write_text(json.dumps({"channels": list(v.channels), "recipe": v.recipe}))
            _evict(folder, budget_bytes, keep=final.name)
            os.rename(tmp, final)
        except OSError:       # full or read-only scratch, or another process renamed its copy first
            shutil.rmtree(tmp, ignore_errors=True)
            if not (final / "meta.json").is_file():
                return v
    meta = json.loads((final / "meta.json").read_text())
    os.utime(final / "meta.json")     # the eviction's "last used"
    arrays = {k: np.load(final / f"{k}.npy", mmap_mode="r") for k in ("x", "y", "index")}
    return View(arrays["x"], arrays["y"], arrays["index"], meta["channels"], ds.wave, meta["recipe"])


def _evict(folder: Path, budget_bytes: int | None, keep: str) -> None:
    import shutil
    budget = budget_bytes if budget_bytes is not None else int(float(os.environ.get("LOGG_VIEW_SCRATCH_GB", "20")) * 2 ** 30)
    views = []
    for p in folder.iterdir():
        if p.is_dir() and ".tmp-" not in p.name and p.name != keep and (p / "meta.json").is_file():
            size = sum(f.stat().st_size for f in p.iterdir())
            views.append(((p / "meta.json").stat().st_mtime, size, p))
    total = sum(s for _, s, _ in views)
    for _, size, p in sorted(views):
        if total <= budget:
            break
        shutil.rmtree(p, ignore_errors=True)   # a process that maps it keeps its pages until it unmaps them
        total -= size
