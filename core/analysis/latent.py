"""What the blind-spot encoder's latent knows, read from the registry for the Latent page and the
digest: the layer x pooling grid of probe R^2, the size sweep, the encoders, the heads, the team's
numbers. The suite itself (what runs) is core/engine/suites/latent.py; the extraction is
models/latent_features.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core import config
from core.engine.suites.latent import PLAN, _n_pix, _probe_spec, grid_cells, suite_specs
from models import latent_features as lf

_ENCODERS: dict[str, object] = {}


def encoder_by_run(run_id: str):
    """A fitted encoder by run id, loaded once per process."""
    if run_id not in _ENCODERS:
        from core.engine import train
        folder = config.runs_dir() / run_id
        if not (folder / "run.json").exists():
            raise FileNotFoundError(f"encoder run {run_id} is not in {config.runs_dir()}; rerun its probe")
        _ENCODERS[run_id] = train.load_model(folder)
    return _ENCODERS[run_id]


# --------------------------------------------------------------------------- readers (the page)
def _cached(spec, con):
    from core.engine import train
    return train.cached_result(spec, con=con)


def grid(profile: str, dataset: str | None, con=None) -> pd.DataFrame:
    """Every display cell of the plan's grid with its R^2 (NaN where not run)."""
    from core.engine import registry
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
    from core.engine import registry
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
    from core.engine import registry
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
    from core.engine import registry
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
    from core.analysis.reference import rows
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


def clear_memo() -> None:
    """Forget the features and encoders memoised in this process."""
    lf.clear_memo()
    _ENCODERS.clear()
