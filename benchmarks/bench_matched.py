"""Benchmark of models matched to an upload (#15 item 3): spectra the data set's models were not trained for,
answered by the data set's models and by models trained on the matched data set.

Two kinds of upload, each made from N test stars of the profile's data set (true labels known; noise at the
given S/N per pixel):
  - a Gaia-RVS-like window, 8460-8700 Å at R = 11,500 on the native pixels (the data set's models refuse it:
    13 % coverage);
  - an R = 2,000 spectrum of the whole window on log-lambda pixels of 1e-4 (1.9x the models').

    LOGG_ARTIFACTS=/path/with/report/runs python benchmarks/bench_matched.py [--stars 40] [--snr 50]

The first star of each kind goes through `python -m core predict FILE --matched --wait` (timed: data set
build + the report predictors' job + the answer, or the answer alone when the matched runs are cached); the
others are predicted in this process. Numbers go into <!-- bench_matched:start --> of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import cpu_model  # noqa: E402
from bench_engine import write_section  # noqa: E402

KINDS = {"Gaia-RVS-like 8460-8700 Å, R = 11,500 declared": {"resolution": 11500.0, "window": (8460.0, 8700.0),
                                                            "step": None, "declared": 11500.0},
         "Gaia-RVS-like 8460-8700 Å, R = 11,500 not declared": {"resolution": 11500.0, "window": (8460.0, 8700.0),
                                                                "step": None, "declared": None},
         "whole window, R = 2,000 (measured), pixels 1.9x": {"resolution": 2000.0, "window": None, "step": 1e-4,
                                                             "declared": None}}


def star(sim, labels, kind: dict, snr: float, seed: int, name: str):
    from core.predict import Spectrum
    w = sim.wave.double().numpy()
    with torch.no_grad():
        f = sim(torch.as_tensor(labels[None, :], dtype=torch.float32),
                resolution=torch.tensor([kind["resolution"]]))[0].double().numpy()
    if kind["step"]:
        g = np.exp(np.arange(np.log(w[0]), np.log(w[-1]), kind["step"]))
        w, f = g, np.interp(g, w, f)
    if kind["window"]:
        m = (w >= kind["window"][0]) & (w <= kind["window"][1])
        w, f = w[m], f[m]
    e = np.full(w.size, float(np.median(f)) / snr)
    return Spectrum(w, f + e * np.random.default_rng(seed).standard_normal(w.size), e, name=name)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stars", type=int, default=40)
    ap.add_argument("--snr", type=float, default=50.0)
    ap.add_argument("--dataset", default="sim-quick")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    from core import data, predict
    from core.physics import simulate
    from core.predict import matched
    ds = data.Dataset(a.dataset)
    sim = simulate.default_simulator("cpu")
    rows = ds.splits["test"][: a.stars]
    table = []
    for kname, kind in KINDS.items():
        # each star's own plan may measure another R (another matched set): the first star's set answers all,
        # as a user with one instrument's spectra would use one
        items = [star(sim, ds.labels[r], kind, a.snr, int(r), f"star{r}.csv") for r in rows]
        tmp = Path(tempfile.mkdtemp(prefix="bench_matched_")) / "star.csv"
        it = items[0]
        np.savetxt(tmp, np.c_[it.wave, it.flux, it.error], delimiter=",", header="wavelength,flux,error", comments="")
        res_mode = kind["declared"] or "auto"
        p0 = matched.plan(it, ds, resolution=res_mode)
        cached = p0.ready and p0.n_done == len(p0.specs)
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "core", "predict", str(tmp), "--matched", "--wait",
                            "--resolution", str(res_mode)], cwd=ROOT,
                           env=dict(os.environ), capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode:
            raise SystemExit(r.stderr[-2000:])
        p = matched.plan(it, ds, resolution=res_mode)
        mds = matched.matched_dataset(p)
        res = {"base": [], "matched": []}
        for i, (row, item) in enumerate(zip(rows, items)):
            truth = float(ds.labels[row, 1])
            for which, d in (("base", ds), ("matched", mds)):
                try:
                    ans = predict.predict(item, d, resolution=res_mode)
                except predict.PredictError:
                    res[which].append(None)
                    continue
                rec = ans["recommended"]
                res[which].append((rec["value"] - truth, rec["uncertainty"], bool(ans["ood"].get("flags"))))
        for which in ("base", "matched"):
            ok = [x for x in res[which] if x is not None]
            d = np.array([x[0] for x in ok])
            s = np.array([x[1] for x in ok])
            table.append({
                "upload": kname, "models": f"{ds.name}'s" if which == "base" else f"matched ({p.pixels:,} px, R {p.resolution:.0f})",
                "answered": f"{len(ok)} of {len(rows)}",
                "rmse": f"{np.sqrt(np.mean(d ** 2)):.3f}" if ok else "-", "bias": f"{np.mean(d):+.3f}" if ok else "-",
                "in68": f"{100 * np.mean(np.abs(d) <= s):.0f} %" if ok else "-",
                "ood": f"{sum(x[2] for x in ok)}" if ok else "-",
                "wall": "" if which == "base" else f"{wall:.0f} s" + (" (runs cached)" if cached else
                                                                    f" (build + {len(p.specs)} fits + answer)")})
        print(table[-2:], flush=True)
    lines = [f"`python benchmarks/bench_matched.py --stars {a.stars} --snr {a.snr:g}` on {ds.name} ({ds.n:,} spectra), "
             f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, {os.cpu_count()} cores. "
             f"Uploads made from the first {len(rows)} test stars (simulated, S/N {a.snr:g} per pixel, true log g "
             f"known); the data set's models are the registry's report predictors, the matched ones one seed of "
             f"the report suite's predictors on the matched data set. RMSE and bias of the recommended log g [dex], "
             f"the share of stars its 68 % interval holds, the out-of-distribution flags, and the wall time of the "
             f"first `predict --matched --wait`.", "",
             "| upload | models | answered | RMSE | bias | in 68 % | flagged OOD | first `--matched --wait` |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['upload']} | {r['models']} | {r['answered']} | {r['rmse']} | {r['bias']} | {r['in68']} | "
              f"{r['ood']} | {r['wall']} |" for r in table]
    text = "\n".join(lines)
    print(text)
    if not a.no_write:
        write_section("bench_matched", "## Models matched to an upload (#15 item 3)\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
