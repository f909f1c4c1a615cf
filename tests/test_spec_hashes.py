"""Every run id of every suite and profile is fixed: a refactor that changes one refits cached runs.

tests/data/spec_hashes.json holds, for each profile and suite, the run ids (spec hashes with a
fixed data-set fingerprint) of the suite's specs, and of the runs they depend on (an encoder
before its probes, the frozen head before the fine-tuned one). Regenerate it only on purpose,
when a change is meant to give new run ids: `python tests/test_spec_hashes.py --write`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("data") / "spec_hashes.json"
FP = "snapshot-fingerprint"


def _dependencies(spec: dict) -> list[dict]:
    """The runs the engine fits before this spec (Model.requires), and theirs."""
    from core.engine.spec import dependency_specs
    out = []
    for d in dependency_specs(spec).values():
        out += [d] + _dependencies(d)
    return out


def snapshot() -> dict:
    from core import config
    from core.engine import suites, train
    out = {}
    for prof in config.PROFILES:
        for name in suites.SUITES:
            for ds in (None, "their-grid"):
                specs = suites.suite(name, prof, ds)
                key = f"{prof}/{name}" + (f"@{ds}" if ds else "")
                out[key] = [train.spec_hash(s, FP) for s in specs]
                deps = {train.spec_hash(d, FP) for s in specs for d in _dependencies(s)}
                out[key + "/deps"] = sorted(deps)
    return out


def test_every_run_id_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("LOGG_ARTIFACTS", str(tmp_path))   # no data set: the suites use their nominal sizes
    want = json.loads(SNAPSHOT.read_text())
    got = snapshot()
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], f"run ids of {key} changed: cached runs would be refitted"
    assert sum(len(v) for v in want.values()) > 1500


if __name__ == "__main__" and "--write" in sys.argv:
    import os
    import tempfile
    os.environ["LOGG_ARTIFACTS"] = tempfile.mkdtemp()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    SNAPSHOT.write_text(json.dumps(snapshot(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
