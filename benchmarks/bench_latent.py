"""The latent-probe results of a finished latent suite, as tables for docs/benchmarks.md.

    LOGG_ARTIFACTS=/path python benchmarks/bench_latent.py --profile default

Needs the latent suite already run in LOGG_ARTIFACTS (bench_engine.py --suites ...,latent does
that; this script fits nothing). Writes <!-- bench_latent:PROFILE:start -->:
  - the encoders: denoising (MSE of the noisy input and of the blind-spot reconstruction against
    the clean flux), training time and epochs;
  - the log g grid: test R^2 per (layer, pooling) and probe, for each variant and noise level of
    the plan;
  - the best extraction per label and probe, and the heads (frozen and fine-tuned).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from bench_data import cpu_model  # noqa: E402
from bench_engine import write_section  # noqa: E402

from core import config, data  # noqa: E402
from core.analysis import latent  # noqa: E402
from core.engine import registry  # noqa: E402


def f3(v) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def num(v, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else fmt.format(v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="quick")
    a = ap.parse_args()
    con = registry.connect()
    ds_name = config.profile(a.profile)["dataset"]
    enc = latent.encoders(a.profile, None, con)
    g = latent.grid(a.profile, None, con)
    h = latent.heads(a.profile, None, con)
    n_done = int(g["run_id"].notna().sum())
    L = [f"## Latent probes: profile `{a.profile}`", "",
         f"Written {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC from the runs in the registry "
         f"(data set `{ds_name}`; {os.cpu_count()} cores, {cpu_model()}), "
         f"`python benchmarks/bench_latent.py --profile {a.profile}`. {n_done} of {len(g)} grid cells run. "
         "R^2 on the test split.", "",
         "### Encoders (blind-spot, trained to reconstruct the noisy flux)", "",
         "| inputs | noise | noisy-input MSE | blind-spot MSE | ratio | epochs | fit [s] | parameters |",
         "|---|---|---|---|---|---|---|---|"]
    for _, r in enc.iterrows():
        L.append(f"| {r['variant']} | {r['noise']:g} | {num(r['noisy_mse'], '{:.2e}')} | {num(r['denoise_mse'], '{:.2e}')} | "
                 f"{f3(r['denoise_ratio'])} | {num(r['epochs'], '{:.0f}')} | "
                 f"{num(r['fit_s'], '{:.0f}')} | {num(r['n_params'], '{:,.0f}')} |" if r["run_id"] else
                 f"| {r['variant']} | {r['noise']:g} | not run | | | | | |")
    L.append("")
    L.append("MSE against the clean flux on the test split; ratio = blind-spot MSE / noisy-input MSE (below 1: "
             "the encoder denoises).")
    lg = g[g["label"] == "logg"]
    for (variant, noise), d in lg.groupby(["variant", "noise"], sort=False):
        probes = list(dict.fromkeys(d["probe"]))
        L += ["", f"### log g grid: encoder on `{variant}`, noise {noise:g}", "",
              "| layer | pooling | " + " | ".join(probes) + " |", "|---|---|" + "---|" * len(probes)]
        for (lay, pool), dd in d.groupby(["layer", "pooling"], sort=False):
            vals = {r["probe"]: r["r2"] for _, r in dd.iterrows()}
            alias = dd["runs_as"].iloc[0]
            pool = pool if alias == pool else f"{pool} (= {alias})"
            L.append(f"| {lay} | {pool} | " + " | ".join(f3(vals.get(p)) for p in probes) + " |")
    L += ["", "### Best extraction per label (encoder on flux)", "",
          "| noise | label | probe | best layer + pooling | R^2 |", "|---|---|---|---|---|"]
    for noise in sorted(g["noise"].unique()):
        for label in data.LABELS:
            for probe in probes.PROBES:
                b = latent.best_extraction(g, "flux", noise, label, probe)
                if b:
                    L.append(f"| {noise:g} | {label} | {probe} | {b['layer']} + {b['pooling']} | {b['r2']:.3f} |")
    sw = latent.size_sweep(a.profile, None, con)
    if not sw.empty:
        sizes = sorted(set(sw["n_train_param"]), key=lambda z: float("inf") if z == "all" else int(z))
        L += ["", "### log g probe R^2 against the number of labelled training spectra", "",
              "| encoder | noise | extraction | probe | " + " | ".join(sizes) + " |",
              "|---|---|---|---|" + "---|" * len(sizes)]
        for (v, n, ext, probe), d in sw[sw["label"] == "logg"].groupby(["variant", "noise", "extraction", "probe"], sort=False):
            vals = dict(zip(d["n_train_param"], d["r2"]))
            L.append(f"| {v} | {n:g} | {ext} | {probe} | " + " | ".join(f3(vals.get(z)) for z in sizes) + " |")
    if not h.empty:
        L += ["", "### Heads", "", "| inputs | noise | method | extraction | R^2 | parameters | fit [s] |",
              "|---|---|---|---|---|---|---|"]
        for _, r in h.iterrows():
            L.append(f"| {r['variant']} | {r['noise']:g} | {r['method']} | {r['extraction']} | {f3(r['r2'])} | "
                     f"{num(r['n_params'], '{:,.0f}')} | {num(r['fit_s'], '{:.0f}')} |")
    write_section(f"bench_latent:{a.profile}", "\n".join(L))
    print("\n".join(L))


if __name__ == "__main__":
    main()
