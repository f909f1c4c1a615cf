"""Issue #19 part 3: a view materialised once per node (LOGG_VIEW_SCRATCH) and memory-mapped by every fit
there gives the same arrays, and the same fit, as one built in memory."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from core import config
from core.data import Dataset
from core.data.cache import shared_view, view_key
from core.engine import train


def test_a_shared_view_is_written_once_and_equals_the_view(tiny_dataset, tmp_path):
    ds = Dataset(tiny_dataset)
    ref = ds.view("train", 1.0, "flux+error", seed=4)
    a = shared_view(ds, "train", 1.0, "flux+error", 4, None, tmp_path)
    folder = tmp_path / view_key(ds, "train", 1.0, "flux+error", 4, None)
    stamp = (folder / "x.npy").stat().st_mtime_ns
    # another process on the node maps the same copy: nothing is written again
    code = ("import sys, numpy as np; from pathlib import Path; from core.data import Dataset; "
            "from core.data.cache import shared_view; ds = Dataset(sys.argv[1]); "
            "v = shared_view(ds, 'train', 1.0, 'flux+error', 4, None, Path(sys.argv[2])); "
            "print(type(v.x).__name__, float(np.asarray(v.x, dtype=np.float64).sum()))")
    out = subprocess.run([sys.executable, "-c", code, tiny_dataset, str(tmp_path)], cwd=config.ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "memmap" and abs(float(out[1]) - float(ref.x.astype(np.float64).sum())) < 1e-6 * abs(float(out[1]))
    assert (folder / "x.npy").stat().st_mtime_ns == stamp
    assert isinstance(a.x, np.memmap) and not a.x.flags.writeable
    for k in ("x", "y", "index"):
        assert np.array_equal(np.asarray(getattr(a, k)), getattr(ref, k)), k
    assert a.channels == ref.channels and a.recipe == ref.recipe      # fresh noise can still be drawn from it
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]      # no temporary folder left
    # another view over a budget of ~one view: the least recently used goes
    shared_view(ds, "val", 1.0, "flux", 4, None, tmp_path, budget_bytes=1)
    assert not folder.exists() and len(list(tmp_path.iterdir())) == 1


def test_a_fit_on_a_shared_view_is_the_same_fit(tiny_dataset, tmp_path, monkeypatch):
    s = {"model": "ridge", "noise_level": 1.0, "dataset": tiny_dataset, "profile": "quick", "params": {"alphas": [4.0]}}
    mem = train.run(s, force=True)
    monkeypatch.setenv("LOGG_VIEW_SCRATCH", str(tmp_path / "scratch"))
    train._VIEW_CACHE.clear()
    mapped = train.run(s, force=True)
    assert mapped.run_id == mem.run_id and mapped.metrics["r2"] == mem.metrics["r2"]
    assert len(list((tmp_path / "scratch").iterdir())) == 3               # train, val and test views
    train._VIEW_CACHE.clear()
