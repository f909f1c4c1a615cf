"""The likelihood ceiling on a data set with nuisances, ignoring them and marginalising them (#18 part 1):

    LOGG_ARTIFACTS=/path python benchmarks/bench_nuisance_ceiling.py [--stars 150]

On the test stars of the survey twin of the quick data set (`sim-quick-survey`, built when missing) and of
the plain one at both noise levels: log g R^2 and RMSE (with the bootstrap SE over the stars) of the fit of
the three labels alone and of the fit with the recipe's nuisances marginalised (core/physics/nuisance_fit.py),
how well the nuisances themselves are recovered, and the seconds per star. Writes the section
<!-- bench_nuisance_ceiling --> of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
from bench_data import cpu_model  # noqa: E402
from bench_engine import write_section  # noqa: E402

from core import data  # noqa: E402
from core.physics import fisher, nuisance_fit  # noqa: E402


def scores(p: np.ndarray, y: np.ndarray, boot: int = 500) -> tuple[float, float, float]:
    """(R^2, its bootstrap SE over stars, RMSE)."""
    rng = np.random.default_rng(0)

    def r2(i):
        return 1 - np.sum((p[i] - y[i]) ** 2) / np.sum((y[i] - y[i].mean()) ** 2)
    idx = np.arange(len(y))
    bs = [r2(rng.choice(idx, idx.size)) for _ in range(boot)]
    return float(r2(idx)), float(np.std(bs)), float(np.sqrt(np.mean((p - y) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stars", type=int, default=150)
    a = ap.parse_args()
    if "sim-quick-survey" not in data.list_datasets():
        data.build(profile="quick", nuisance="survey")
    rows, nu_rows = [], []
    for name in ("sim-quick", "sim-quick-survey"):
        ds = data.Dataset(name)
        for nl in (0.1, 1.0):
            v = ds.view("test", nl, "flux+error")
            f, s, y = v.x[:a.stars, 0].astype(np.float64), v.x[:a.stars, 1].astype(np.float64), v.y[:a.stars, 1]
            modes = [("labels only", None)] + ([("nuisances marginalised", ds.nuisance_recipe)] if ds.nuisance_recipe else [])
            for what, recipe in modes:
                t0 = time.perf_counter()
                out = nuisance_fit.likelihood_fit(f, s, recipe) if recipe else fisher.likelihood_fit(f, s)
                dt = (time.perf_counter() - t0) / len(y)
                r2, se, rmse = scores(out["labels"][:, 1], y)
                rows.append(f"| `{name}` | {nl:g} | {what} | {r2:.3f} ± {se:.3f} | {rmse:.3f} | {dt:.2f} |")
                if recipe:
                    with h5py.File(ds.path, "r") as h:
                        true = {k: h["nuisance"][k][()][v.index[:a.stars]] for k in out["free_nuisances"]}
                    nu_rows.append(f"| {nl:g} | " + " | ".join(
                        f"{np.std(true[k]):.3g} / {np.sqrt(np.mean((out['nuisances'][k] - true[k]) ** 2)):.3g}"
                        for k in out["free_nuisances"]) + " |")
                    keys = out["free_nuisances"]
                print(rows[-1], flush=True)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    body = ["## Likelihood ceiling with nuisances", "",
            f"Measured by `python benchmarks/bench_nuisance_ceiling.py --stars {a.stars}` on {when} UTC: {cpu_model()}, "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end. The first {a.stars} test stars of "
            "each data set; `sim-quick-survey` is the quick recipe with the `survey` nuisances (residual RV 3 km/s, "
            "R 4500-5500, tilts ±2 % / ±1 %, PWV lognormal around 2 mm, airmass 1.0-1.5). R² ± its bootstrap SE over the stars.", "",
            "| data set | noise | fit | log g R² | RMSE [dex] | s per star |", "|---|---|---|---|---|---|", *rows, "",
            "How well the marginalised fit recovers each nuisance: the spread of the injected values / the RMS error of "
            "the fitted ones (RV km/s, resolution R, tilts, PWV mm, airmass):", "",
            "| noise | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys), *nu_rows]
    write_section("bench_nuisance_ceiling", "\n".join(body))


if __name__ == "__main__":
    main()
