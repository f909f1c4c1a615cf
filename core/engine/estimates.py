"""The cost of what has not run: the median data + fit time of earlier runs of the same model and profile,
divided over the workers that fit side by side. The Training page, the Summary, every result page's
'not run' line and Predict's matched models quote it."""
from __future__ import annotations

import pandas as pd

from core.engine import jobs, registry, train
from core.engine.spec import normalise_spec


def cost_key(spec: dict) -> str:
    """What a fit's cost is looked up by: the model, "@converge" for a torch spec that trains to
    convergence (2-4x the epochs of the profile's budget), "@stream" for one that simulates new stars
    every epoch (the simulator is most of its time: 5-10x a fit on the data set), and "@n500" for a spec
    on fewer training spectra than the profile's (the learning curve's rungs): their timings are kept apart."""
    params = (spec.get("params") or {})
    if "training" not in params:
        try:
            params = normalise_spec(spec)["params"]
        except ValueError:
            pass
    return (spec["model"] + ("@converge" if params.get("training") == "converge" else "")
            + ("@stream" if params.get("noise_mode") == "stream" else "")
            + (f"@n{int(spec['n_train'])}" if spec.get("n_train") else ""))


def typical_fit_seconds(profile: str, con=None) -> dict:
    """Median data + fit time per cost_key (the model, "mlp@converge") from finished runs of this
    profile (the cost estimate)."""
    con = con or registry.connect()
    out: dict = {}
    for r in registry.runs(con, status="done"):
        if r["spec"].get("profile") == profile and r.get("timings"):
            t = r["timings"]
            out.setdefault(cost_key(r["spec"]), []).append(float(t.get("fit_s", 0) or 0) + float(t.get("data_s", 0) or 0))
    return {k: float(pd.Series(v).median()) for k, v in out.items()}


def estimate(specs: list[dict], profile: str, con=None, typical: dict | None = None,
             n_workers: int | None = None) -> dict:
    """How many of `specs` are finished, which are not, and the estimated wall time of fitting the rest
    (medians of earlier runs, n_workers fits side by side)."""
    con = con or registry.connect()
    typ = typical_fit_seconds(profile, con) if typical is None else typical
    todo = [s for s in specs if train.cached_result(s, con=con) is None]
    known = [typ.get(cost_key(s)) for s in todo]
    workers = max(1, min(n_workers or jobs.job_workers(), len(todo) or 1))
    est = sum(k for k in known if k is not None)
    return {"n_all": len(specs), "n_done": len(specs) - len(todo), "todo": todo, "n_todo": len(todo),
            "seconds": est / workers if len(known) > sum(k is None for k in known) else None,
            "unknown": sum(k is None for k in known), "workers": workers}


def minutes(seconds: float | None) -> str:
    return "cost unknown" if seconds is None else f"~{max(seconds, 60) / 60:.0f} min" if seconds >= 90 else \
        f"~{max(seconds, 6) / 60:.1f} min"


