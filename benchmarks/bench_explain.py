"""The physics ceiling beside every model, and the cost of the explanation computations.

    LOGG_ARTIFACTS=/path python benchmarks/bench_explain.py --profile default

Needs the report and ceiling suites already run in LOGG_ARTIFACTS (bench_engine.py does that).
Writes <!-- bench_explain:PROFILE:start --> in docs/benchmarks.md:
  - the likelihood-ceiling R^2 at both noise levels (test split), with its fit time, and the
    Cramer-Rao R^2 bound (Fisher information of the test stars);
  - each report model's R^2 as a fraction of the ceiling, with the bootstrap error bar of the
    difference (as the Overview page shows it);
  - wall time of the Fisher computation (dataset_physics: Jacobian by forward-mode autodiff of
    the simulator for 200 test stars) and of the saliency of each torch model of the report
    (gradient x input, integrated gradients with 32 steps, occlusion), each on a cold cache.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from bench_data import cpu_model  # noqa: E402
from bench_engine import write_section  # noqa: E402

from core import config  # noqa: E402
from core.analysis import report, saliency  # noqa: E402
from core.data import Dataset  # noqa: E402
from core.engine import registry, suites, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="quick")
    a = ap.parse_args()
    prof = config.profile(a.profile)
    ds = Dataset(prof["dataset"])
    con = registry.connect()
    lines = [f"## Physics ceiling and explanation cost: profile `{a.profile}`", "",
             f"Measured {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu_model()}), "
             f"data set `{ds.name}` ({ds.n} spectra, test split {ds.splits['test'].size}), "
             f"`python benchmarks/bench_explain.py --profile {a.profile}`.", ""]

    # the matrix with the ceiling row and each model's fraction of it
    lines += ["### Each method against the likelihood ceiling", "",
              "R^2 on the test split; 'of ceiling' = R^2 / ceiling R^2 at the same noise level.", "",
              report.markdown("report", a.profile).strip(), ""]

    # ceiling runs: fit time; Cramer-Rao bound from the Fisher information
    lines += ["### Ceiling and Fisher information", "",
              "| noise | ceiling R^2 | ceiling fit [s] | Cramer-Rao R^2 (unbiased estimators, no prior; 200 test stars) | median sigma(log g) CR [dex] | Fisher time, cold [s] |",
              "|---|---|---|---|---|---|"]
    phys_dir = config.artifacts_dir() / "explain" / ds.fingerprint
    for nl in config.NOISE_LEVELS:
        spec = [s for s in suites.suite("ceiling", a.profile) if s["noise_level"] == nl][0]
        r = train.cached_result(spec, con=con)
        for p in phys_dir.glob(f"physics_noise{nl:g}_n200.npz"):
            p.unlink()                                   # a cold computation
        t = time.perf_counter()
        ph = saliency.dataset_physics(ds, nl, max_stars=200)
        t_fisher = time.perf_counter() - t
        c_r2 = f"{r.metrics['r2']:.3f}" if r else "not run"
        c_fit = f"{(r.timings or {}).get('fit_s', float('nan')) + (r.timings or {}).get('predict_s', 0):.1f}" if r else "-"
        lines.append(f"| {nl:g} | {c_r2} | {c_fit} | {float(ph['r2_cr']):.3f} | "
                     f"{float(np.median(ph['sigma_logg'])):.3f} | {t_fisher:.1f} |")
    lines += ["", "The Cramer-Rao R^2 holds for unbiased estimators that know nothing but the spectrum. The "
              "ceiling is a posterior mean under the label-box prior: it is biased towards the middle of the box and "
              "can, at noise 1.0 it does, score a higher R^2 than the Cramer-Rao figure. The ceiling, not the "
              "Cramer-Rao figure, is what the learned models (which also learn the prior) are measured against.", ""]

    # saliency cost of every torch model of the report, cold
    lines += [f"### Saliency cost (cold; {saliency.SALIENCY_STARS} test spectra)", "",
              "| model | noise | gradient x input + integrated gradients + occlusion [s] | IG completeness (median relative error) |",
              "|---|---|---|---|"]
    for spec in suites.suite("report", a.profile):
        r = train.cached_result(spec, con=con)
        if r is None:
            continue
        model = r.load_model()
        if not getattr(model, "differentiable", False):
            continue
        sal = r.artifact / "saliency.npz"
        if sal.exists():
            bak = sal.with_suffix(".bak")
            shutil.move(sal, bak)
        else:
            bak = None
        out = saliency.run_saliency(r, ds)
        if bak is not None:
            sal.unlink()
            shutil.move(bak, sal)
        comp = float(out["ig_completeness"]) if "ig_completeness" in out else float("nan")
        lines.append(f"| {suites.row_label(spec)} | {spec['noise_level']:g} | {float(out['seconds']):.1f} | {100 * comp:.2f} % |")
    write_section(f"bench_explain:{a.profile}", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
