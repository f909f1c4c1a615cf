"""Which trained runs can answer an upload: `trained_models(ds)` reads the registry (never writes),
`load(entry)` loads a run's model once per process."""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from core import config
from core.data import Dataset
from core.predict.channels import formable


# --------------------------------------------------------------------------- trained models
@dataclass
class Entry:
    """One finished run that Predict can use."""
    run_id: str
    spec: dict
    metrics: dict
    artifact: Path
    label: str
    usable: bool
    why: str = ""
    # 'predictor': a method of the report suite on inputs a real spectrum has; it may answer and be
    # recommended. 'research': formable, but an ablation control, a sweep variant, a latent probe or
    # the physics ceiling: shown only when asked for (research=True), never recommended.
    role: str = "research"

    @property
    def noise_level(self) -> float:
        return float(self.spec["noise_level"])

    @property
    def target(self) -> str:
        return self.spec.get("target", "logg")





def trained_models(ds: Dataset) -> list[Entry]:
    """Finished runs of this data set (same fingerprint, artifact in place), read from the registry
    without writing to it. Entries whose inputs cannot be formed from a spectrum are kept with usable=False.
    Kept per process until the registry's finished runs of the data set change (their count or latest
    update: one SQL aggregate): reading and checking 558 runs took 0.22 s of every predict call and batch."""
    from core.engine import registry
    path = config.registry_path()
    if not path.exists():
        return []
    con = registry.connect()
    try:
        state = tuple(con.execute("SELECT COUNT(*), MAX(updated) FROM runs WHERE status = 'done' AND dataset = ?",
                                  (ds.name,)).fetchone())
        key = ("inventory", str(path), str(ds.path), ds.fingerprint, state)
        entries = _cached(key, lambda: tuple(_entries(ds, registry.runs(con, status="done", dataset=ds.name))))
    finally:
        con.close()
    return list(entries)


def _entries(ds: Dataset, rows: list[dict]) -> list[Entry]:
    from core.engine import registry, suites
    out = []
    for r in rows:
        if r.get("dataset_fp") != ds.fingerprint or not r.get("artifact_path"):
            continue
        art = Path(r["artifact_path"])
        if not registry.artifact_complete(art):
            continue
        spec, inputs = r["spec"], r["spec"].get("inputs", "flux")
        label = suites.row_label(spec)
        if inputs == "meta":
            usable, why = False, "needs Teff and [M/H] as inputs, which a spectrum does not give"
        elif inputs == "flux_clean":
            usable, why = False, "was trained on noise-free flux, which an observed spectrum is not"
        elif formable(inputs):
            usable, why = True, ""
        else:
            usable, why = False, f"an ablation model (inputs '{inputs}') that only makes sense on the data set"
        role = "predictor" if usable and _is_predictor(spec, ds.name) else "research"
        out.append(Entry(r["run_id"], spec, r.get("metrics") or {}, art, label, usable, why, role))
    # tell apart runs with the same label (profiles, seeds)
    seen: dict[tuple, list[Entry]] = {}
    for e in out:
        seen.setdefault((e.label, e.noise_level, e.target), []).append(e)
    for group in seen.values():
        if len(group) > 1:
            for e in group:
                rep = e.spec.get("replicate", 0)
                e.label += f" ({e.spec.get('profile')}, seed {e.spec.get('seed')}" + (f", replicate {rep})" if rep else ")")
    out.sort(key=lambda e: (e.noise_level, e.target != "logg", -(e.metrics.get("r2") or -9)))
    return out


PREDICTOR_INPUTS = ("flux", "flux+error")   # what a real spectrum has: its flux, and its pipeline's error


def _spec_key(s: dict) -> tuple:
    """What makes a run the report's method: family, parameters, inputs, target, profile and the training
    spectra (a learning-curve rung on fewer spectra, spec key n_train, is a research result)."""
    return (s["model"], json.dumps(s.get("params") or {}, sort_keys=True), s.get("inputs"), s.get("target", "logg"),
            s.get("profile"), s.get("n_train"))


def _is_predictor(spec: dict, dataset: str) -> bool:
    """A method of the report suite (its profile's parameters) on flux or flux + error: the models that
    answer for an upload. Everything else a registry holds is a research result."""
    from core.engine import suites
    from core.engine.spec import normalise_spec
    if spec.get("inputs") not in PREDICTOR_INPUTS or spec.get("target", "logg") != "logg":
        return False
    prof = spec.get("profile", "quick")
    keys = _cached(("report-keys", prof, dataset),
                   lambda: {_spec_key(normalise_spec(s)) for s in suites.suite("report", prof, dataset)})
    from models import MODELS
    # a run stored before a parameter existed trained the old way (Model.legacy_params: noise_mode "fixed"),
    # not the way today's default says: it is no longer the report's method
    cls = MODELS.get(spec.get("model"))
    legacy = {k: v for k, v in getattr(cls, "legacy_params", {}).items() if k in getattr(cls, "implied_params", {})}
    stored = dict(spec, params={**legacy, **(spec.get("params") or {})})
    try:
        return _spec_key(normalise_spec(stored)) in keys
    except ValueError:   # a model family that no longer exists
        return False


_CACHE: OrderedDict = OrderedDict()
_LOCK = threading.Lock()


CACHE_ENTRIES = 512   # models, references, skills: a registry with every suite holds ~300 runs


def _cached(key, make):
    """A value made once per process and kept, least recently used first out."""
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    val = make()
    with _LOCK:
        _CACHE[key] = val
        while len(_CACHE) > CACHE_ENTRIES:
            _CACHE.popitem(last=False)
    return val


def load(entry: Entry):
    """The fitted model of a run, loaded once per process (keyed by its artifact's run.json mtime)."""
    from core.engine.train import load_model
    key = ("model", str(entry.artifact), (entry.artifact / "run.json").stat().st_mtime_ns)
    return _cached(key, lambda: load_model(entry.artifact))
