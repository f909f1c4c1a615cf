"""Robustness to nuisances (#18 part 3) as markdown tables for docs/benchmarks.md.

    LOGG_ARTIFACTS=/tmp/robust_art python benchmarks/robustness.py --profile quick

Needs the robustness suite already trained in LOGG_ARTIFACTS (`python -m core data build --profile quick
--nuisance survey`, then `python -m core train --suite robustness --profile quick --seeds 1`); this script
fits nothing. It simulates the perturbed test sets and predicts them with every finished run (cached in
artifacts/robustness/, so a second call only reads), then prints:
  - the done-when of #18 (core/analysis/robustness.verdict) and the page's sentence;
  - per training and noise level: each predictor's largest loss over the target perturbations;
  - per training at noise 0.1 (--noise): dR2 +- error for every perturbation.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import config  # noqa: E402
from core.analysis import robustness, robustness_ceiling  # noqa: E402
from core.data import Dataset  # noqa: E402
from core.engine.suites import robustness as rsuite  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    ap.add_argument("--dataset", help="the clean data set (default: the profile's)")
    ap.add_argument("--noise", type=float, default=robustness.TARGET_NOISE, help="noise level of the full table")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the marginalised ceiling on the target's sets "
                    "(core/analysis/robustness_ceiling.py: a few minutes the first time)")
    a = ap.parse_args()
    try:
        robustness.clean_dataset(a.profile, a.dataset)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0, c0 = time.perf_counter(), time.process_time()
    df = robustness.table(a.profile, a.dataset, compute=True,
                          progress=lambda f, t: print(f"[{f:4.0%}] {t}", file=sys.stderr))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if df.empty:
        print("error: no finished run of the robustness suite: train it first", file=sys.stderr)
        return 2
    names = [rsuite.clean_name(a.profile, a.dataset), rsuite.augmented_name(a.profile, a.dataset)]
    fps = ", ".join(f"`{n}` {Dataset(n).fingerprint}" for n in names if Path(config.data_dir() / f"{n}.h5").exists())
    todo = robustness.not_run(a.profile, a.dataset)
    print(f"Profile `{a.profile}`, data sets {fps}; {df.groupby(['training', 'noise', 'method']).ngroups} runs evaluated "
          f"on {len(robustness.SETS)} test sets ({robustness.PERTURBATIONS[0].label} is the unperturbed one; {len(robustness.OVER_TELLURICS)} of them over typical tellurics, the augmented target's), "
          f"{int(df['seeds'].max())} seed(s); evaluation {wall:.0f} s wall, {cpu:.0f} s CPU of this process "
          f"(this call; cached evaluations are only read)." + (f" {todo['text']}." if todo["n_todo"] else ""))
    print()
    print(f"**Conclusion.** {robustness.conclusion(df)}")
    print()
    print(f"Largest ΔR² over the target perturbations ({', '.join(robustness.BY_KEY[k].level for k in robustness.TARGET_KEYS)}"
          f"; target ≤ {robustness.TARGET_DROP} for the best augmented predictor at noise {robustness.TARGET_NOISE:g}, "
          "by 2 errors). Without augmentation: on telluric-free spectra, the sky it trained on; with: the same "
          "perturbations over typical tellurics, its R² with the tellurics alone:")
    print()
    print("| method | noise | R² without aug. | worst ΔR² without | at | R² with aug. | worst ΔR² with | at |")
    print("|---|---:|---:|---:|---|---:|---:|---|")
    for noise in sorted(df["noise"].unique()):
        w0 = robustness.worst(df, "none", noise).set_index("method")
        w1 = robustness.worst(df, rsuite.RECIPE, noise).set_index("method")
        for m in (w1 if len(w1) else w0).index.union(w0.index, sort=False):
            cells = []
            for w in (w0, w1):
                if m in w.index:
                    r = w.loc[m]
                    base = robustness.BY_KEY[r["key"].removesuffix(robustness.TELL_SUFFIX)]
                    cells += [f"{r['r2_clean']:.3f}", f"{r['drop']:.3f} ± {r['err']:.3f}",
                              f"{base.level} {base.family.split()[0]}" + (" +tell" if r["key"] != base.key else "")]
                else:
                    cells += ["-", "-", "-"]
            print(f"| {m} | {noise:g} | " + " | ".join(cells) + " |")
    print()
    print(robustness.markdown(df, a.noise))
    if not a.no_ceiling:
        t1 = time.perf_counter()
        ceil = robustness_ceiling.rows(a.profile, a.dataset, compute=True)
        print(f"**The physics on the same sets** ({robustness_ceiling.LABEL}, the first {ceil.attrs['n_stars']} test stars, "
              f"noise {robustness.TARGET_NOISE:g}; {time.perf_counter() - t1:.0f} s this call, cached): "
              + robustness_ceiling.sentence(ceil, df))
        print()
        print("| perturbation | R² ceiling | ΔR² |")
        print("|---|---:|---:|")
        for _, r in ceil.iterrows():
            print(f"| {r['perturbation']} | {r['r2']:.3f} | {r['drop']:.3f} ± {r['err']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
