"""Posterior (NPE, #17 part 4) as markdown tables for docs/benchmarks.md.

    LOGG_ARTIFACTS=/tmp/posterior_art python benchmarks/posterior.py --profile quick

Needs the posterior suite trained in LOGG_ARTIFACTS (`python -m core data build --profile quick`, then
`python -m core train --suite posterior --profile quick`; with --seeds 2 or more also the seed
ensemble); this script fits nothing. It draws the
calibration samples once per run (cached in the run's folder, so a second call only reads) and prints:
  - R^2 / RMSE / bias of the posterior mean of log g per noise level, the posterior's median 1-sigma,
    the fit and epoch numbers, the pixel MLP of the report suite beside it where that run exists;
  - the coverage of the 68 % / 95 % intervals of log g per S/N quartile and the SBC chi^2 tests
    (core/analysis/calibration.markdown), with the issue's verdict;
  - with --heteroscedastic: fits (cached) the pixel MLP and the dilated CNN (d = 2) with a heteroscedastic
    head (param heteroscedastic=True, Gaussian NLL) at both noise levels and prints their R^2 and the
    coverage of mean +- 1 sigma and +- 1.96 sigma per S/N quartile (core/analysis/breakdown).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core import config  # noqa: E402
from core.analysis import calibration, report  # noqa: E402
from core.engine import registry, suites, train  # noqa: E402
from core.engine.metrics import r2_score  # noqa: E402
from core.engine.spec import make_spec  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    ap.add_argument("--dataset", help="data set (default: the profile's)")
    ap.add_argument("--heteroscedastic", action="store_true", help="also fit and measure the heteroscedastic heads")
    a = ap.parse_args()
    con = registry.connect()
    t0 = time.perf_counter()
    try:
        arms = calibration.load(a.profile, a.dataset, con)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not arms:
        print("error: no finished run of the posterior suite: train it first", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    reps = max(int(x.get("replicates", 1)) for x in arms)
    print(f"Profile `{a.profile}`, data set `{a.dataset or config.profile(a.profile)['dataset']}`; "
          f"{len({x['run_id'] for x in arms})} spec(s) of the posterior suite, up to {reps} training replicate(s) "
          f"each; calibration {wall:.0f} s "
          f"wall ({calibration.N_SAMPLES} samples per test star, and per calibration star for the recalibration, "
          f"{sum('recal_stars' in x for x in arms)} run(s); 0 when cached).")
    print()
    print("| method | noise | R² | of ceiling | RMSE [dex] | bias [dex] | median posterior sd [dex] | MLP (report) R² | "
          "params | best epoch / run | fit s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in suites.suite("posterior", a.profile, a.dataset):
        res = report.replicate_results(s, con)
        if not res:
            continue
        mlp = train.cached_result(make_spec("mlp", {}, s["noise_level"], a.profile, a.dataset, "report"), con=con)
        mlp_r2 = f"{mlp.metrics['r2']:.3f}" if mlp else "-"
        ceil = train.cached_result(make_spec("likelihood_ceiling", suites.ceiling_params(a.profile, a.dataset),
                                             s["noise_level"], a.profile, a.dataset, "ceiling"), con=con)
        for k, r in enumerate(res):
            m, p = r.metrics, r.predictions()
            frac = f"{m['r2'] / ceil.metrics['r2']:.1%}" if ceil else "-"
            print(f"| {suites.row_label(s)}{f', replicate {k}' if len(res) > 1 else ''} | {s['noise_level']:g} | "
                  f"{m['r2']:.3f} | {frac} | {m['rmse']:.3f} | {m['bias']:+.3f} | "
                  f"{float(np.median(p['y_std'])):.3f} | {mlp_r2} | {int(m['n_params']):,} | "
                  f"{int(m.get('best_epoch', 0))} / {int(m.get('epochs_run', 0))} | {r.timings.get('fit_s', float('nan')):.0f} |")
        if len(res) > 1:   # the seed ensemble: the mixture's mean is the mean of the means; its variance adds their spread
            ps = [r.predictions() for r in res]
            mean = np.mean([q["y_pred"] for q in ps], axis=0)
            sd = np.sqrt(np.mean([q["y_std"] ** 2 for q in ps], axis=0) + np.var([q["y_pred"] for q in ps], axis=0))
            y = ps[0]["y_true"]
            r2 = r2_score(y, mean)
            frac = f"{r2 / ceil.metrics['r2']:.1%}" if ceil else "-"
            print(f"| {suites.row_label(s)}, seed ensemble of {len(res)} | {s['noise_level']:g} | {r2:.3f} | {frac} | "
                  f"{float(np.sqrt(np.mean((mean - y) ** 2))):.3f} | {float(np.mean(mean - y)):+.3f} | "
                  f"{float(np.median(sd)):.3f} | {mlp_r2} | - | - | - |")
    print()
    print(calibration.markdown(a.profile, a.dataset, arms=arms))
    if a.heteroscedastic:
        print()
        heteroscedastic(a.profile, a.dataset, con)
    return 0


def heteroscedastic(profile: str, dataset: str | None, con) -> None:
    """Fit (or load) the heteroscedastic MLP and dilated CNN; print R^2 and coverage per S/N quartile."""
    from core.analysis import breakdown
    from core.data import Dataset
    print("Heteroscedastic heads (param `heteroscedastic=True`: mean and log sigma, Gaussian NLL), coverage "
          "of mean ± 1 sigma / ± 1.96 sigma of log g per S/N quartile on the test split (nominal 68.3 % / 95 %):")
    print()
    print("| method | noise | R² | R² without the head | Q1 | Q2 | Q3 | Q4 | all | median sigma [dex] | fit s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for model, params in (("mlp", {}), ("dilated_cnn", {"dilation": 2})):
        for nl in config.NOISE_LEVELS:
            r = train.run(make_spec(model, {**params, "heteroscedastic": True}, nl, profile, dataset), log=lambda *x: None,
                          con=con)
            plain = train.cached_result(make_spec(model, params, nl, profile, dataset, "report"), con=con)
            p = r.predictions()
            ds = Dataset(r.spec["dataset"])
            rows, snr = breakdown.test_snr(ds, nl)
            bins = breakdown.snr_bins(snr[np.searchsorted(rows, p["index"])], breakdown.snr_edges(snr))
            cells = breakdown.coverage_by_bin(p["y_true"], p["y_pred"], p["y_std"], bins, breakdown.N_QUARTILES)
            cov = " | ".join(f"{c['cov68']:.1%} / {c['cov95']:.1%}" for c in cells)
            plain_r2 = f"{plain.metrics['r2']:.3f}" if plain else "-"
            print(f"| {suites.row_label(r.spec)} | {nl:g} | {r.metrics['r2']:.3f} | {plain_r2} | {cov} | "
                  f"{float(np.median(p['y_std'])):.3f} | {r.timings['fit_s']:.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())
