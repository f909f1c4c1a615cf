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
