"""Predict on a registry a user has (every suite): speed, honesty of the recommendation, and the frame.

    LOGG_ARTIFACTS=/path python benchmarks/bench_predict.py --profile quick [--stars 100]

Writes the section <!-- bench_predict --> of docs/benchmarks.md:
  - what the registry holds and which runs answer for an upload (predictors) and which do not;
  - time: one cold CLI call, warm single spectra (median over test stars), an HDF5 batch;
  - on test stars at both noise levels: the recommended value against the truth, the coverage of its
    68 % interval per S/N quartile, how often it is outside the grid, flagged, or the predictors disagree;
  - test stars moved to a radial velocity: the velocity recovered and how far log g moves;
  - vacuum wavelengths, declared and not: how far log g moves.
"""
from __future__ import annotations

import argparse
import collections
import datetime as _dt
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
from bench_data import cpu_model  # noqa: E402
from bench_engine import write_section  # noqa: E402

from core import config, data  # noqa: E402
from core import predict as P  # noqa: E402
from core.predict import frame  # noqa: E402


def _csv(sp) -> bytes:
    rows = "\n".join(f"{w:.6f},{f:.7g},{e:.7g}" for w, f, e in zip(sp.wave, sp.flux, sp.error))
    return ("wavelength,flux,error\n" + rows + "\n").encode()


def registry_table(ds) -> list[str]:
    entries = P.trained_models(ds)
    by = collections.Counter((e.role if e.usable else "unusable", e.noise_level) for e in entries)
    kinds = collections.Counter()
    for e in entries:
        if e.role == "research":
            s = e.spec
            kinds["latent probes and encoder heads" if s["model"].startswith(("latent", "blindspot")) else
                  "physics ceiling" if s["model"] == "likelihood_ceiling" else
                  "metadata baselines" if s.get("inputs") == "meta" else
                  "error-vs-flux ablation inputs" if s.get("inputs") not in ("flux", "flux+error") else
                  "sweep variants (dilation, top-K, LightGBM, global-feature groups)"] += 1
    lines = [f"The registry holds {len(entries)} finished runs of `{ds.name}`: "
             + ", ".join(f"{n} {role} at noise {nl:g}" for (role, nl), n in sorted(by.items())) + ".",
             "Research runs by kind (none answers for an upload): "
             + ", ".join(f"{k} {v}" for k, v in kinds.most_common()) + "."]
    return lines


def timing(ds, stars: list, tmp: Path) -> list[str]:
    f = tmp / "star.csv"
    f.write_bytes(_csv(stars[0]))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    colds = []
    for _ in range(3):   # the first call after a registry change also fills the disk caches (references, skill)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "core", "predict", str(f), "--dataset", ds.name], cwd=ROOT,
                           env=env, capture_output=True, text=True)
        colds.append(time.perf_counter() - t0)
        assert r.returncode == 0, r.stderr[-500:]
    for level in (0.1, 1.0):                             # warm the process (models, references) at both levels
        warm_star = P.example(ds, 0, level)
        warm_star.rv, warm_star.native = None, False
        P.predict(warm_star, ds, mc=32)
    warm = []
    for sp in stars[:20]:
        t0 = time.perf_counter()
        P.predict(sp, ds, mc=32)
        warm.append(time.perf_counter() - t0)
    v = ds.view("test", 0.1, "flux+error")
    reps = int(np.ceil(2000 / len(v.y)))
    b = io.BytesIO()
    with h5py.File(b, "w") as h:
        h["wave"], h["flux"], h["error"] = ds.wave, np.tile(v.x[:, 0], (reps, 1))[:2000], np.tile(v.x[:, 1], (reps, 1))[:2000]
    batch = P.read_bytes(b.getvalue(), "batch.h5", limit_mb=0)
    P.predict_batch(batch, ds)
    bts = []
    for _ in range(5):                 # the machine's load varies from run to run: median and best of 5
        t0 = time.perf_counter()
        P.predict_batch(batch, ds)
        bts.append(time.perf_counter() - t0)
    bt, best = float(np.median(bts)), min(bts)
    return ["| what | time |", "|---|---|",
            f"| one spectrum, cold CLI call (`python -m core predict star.csv`, Python start included): the first of "
            f"three (it fills the disk caches when the registry has changed) / the median of the other two | {colds[0]:.1f} / "
            f"{np.median(colds[1:]):.1f} s |",
            f"| one spectrum, warm process (warmed at both noise levels; median / max over 20 test stars, 32 noise "
            f"re-draws, RV, line width, saliency) | "
            f"{np.median(warm):.2f} / {np.max(warm):.2f} s |",
            f"| HDF5 batch of 2,000 spectra (predictors only, Cannon skipped over 200, no RV; median of 5 runs, "
            f"best in brackets) | {bt:.2f} s = {2000 / bt:,.0f} spectra/s ({2000 / best:,.0f}/s) |"]


def honesty(ds, n: int) -> list[str]:
    lines = ["| noise | stars | median abs(rec - true) | 68 % interval covers truth, per S/N quartile (low to high) | "
             "outside grid | OOD flagged | predictors disagree | leading member of the recommendation |",
             "|---|---|---|---|---|---|---|---|"]
    for nl in (0.1, 1.0):
        rows = []
        for k in range(min(n, ds.splits["test"].size)):
            sp = P.example(ds, k, nl)
            r = P.predict(sp, ds, noise=nl, mc=16)
            rec = r["recommended"]
            rows.append((r["snr"]["value"], rec["value"], rec["uncertainty"], sp.truth["logg"], rec["outside_grid"],
                         not r["ood"]["in_distribution"], not rec["agree"], rec["members"][0]["model"]))
        a = np.array([x[:4] for x in rows], float)
        q = np.quantile(a[:, 0], [0.25, 0.5, 0.75])
        b = np.searchsorted(q, a[:, 0])
        cov = [float(np.mean(np.abs(a[b == i, 1] - a[b == i, 3]) <= a[b == i, 2])) for i in range(4)]
        se = [float(np.sqrt(c * (1 - c) / max(1, (b == i).sum()))) for i, c in enumerate(cov)]
        models = collections.Counter(x[7] for x in rows).most_common(3)
        lines.append(f"| {nl:g} | {len(rows)} | {np.median(np.abs(a[:, 1] - a[:, 3])):.2f} dex | "
                     + " / ".join(f"{100 * c:.0f} ± {100 * s:.0f} %" for c, s in zip(cov, se))
                     + f" | {sum(x[4] for x in rows)} | {sum(x[5] for x in rows)} | {sum(x[6] for x in rows)} | "
                     + ", ".join(f"{m} ({c})" for m, c in models) + " |")
    return lines


def rv_table(ds, stars) -> list[str]:
    out = collections.defaultdict(list)
    for sp in stars:
        snr = float(np.median(sp.flux / sp.error))
        band = "S/N >= 30" if snr >= 30 else ("S/N 10-30" if snr >= 10 else "S/N < 10")
        base = P.predict(sp, ds, mc=0, rv="none")["recommended"]["value"]     # the star at rest, as scored
        for v in (-300.0, -100.0, 50.0, 300.0):
            moved = P.Spectrum(sp.wave * frame.doppler(v), sp.flux, sp.error, name="moved")
            r = P.predict(moved, ds, mc=0)
            fr = r["frame"]["rv"]
            none = P.predict(moved, ds, mc=0, rv="none")["recommended"]["value"]
            out[band].append((fr["applied"], (fr.get("measured") if fr.get("measured") is not None else fr["value"]) - v,
                              r["recommended"]["value"] - base, none - base))
    lines = ["| stars | cases | RV applied | max abs(RV error) [km/s] | RMS RV error | max abs(log g change) | "
             "max abs(log g change) without the correction |", "|---|---|---|---|---|---|---|"]
    for band in ("S/N >= 30", "S/N 10-30", "S/N < 10"):
        if band not in out:
            continue
        a = np.array(out[band], float)
        lines.append(f"| {band} | {len(a)} | {100 * a[:, 0].mean():.0f} % | {np.max(np.abs(a[:, 1])):.2f} | "
                     f"{np.sqrt(np.mean(a[:, 1] ** 2)):.2f} | {np.max(np.abs(a[:, 2])):.3f} dex | "
                     f"{np.max(np.abs(a[:, 3])):.2f} dex |")
    return lines


def vacuum_table(ds, stars) -> list[str]:
    d_decl, d_undecl, d_none = [], [], []
    for sp in stars:
        base = P.predict(sp, ds, mc=0, rv="none")["recommended"]["value"]
        vac = P.Spectrum(frame.air_to_vacuum(sp.wave), sp.flux, sp.error, name="vac", medium="vacuum")
        d_decl.append(P.predict(vac, ds, mc=0, rv="none")["recommended"]["value"] - base)
        vac.medium = None
        d_undecl.append(P.predict(vac, ds, mc=0)["recommended"]["value"] - base)
        d_none.append(P.predict(vac, ds, mc=0, rv="none")["recommended"]["value"] - base)
    m = lambda x: f"{np.max(np.abs(x)):.3f} dex"
    return ["| vacuum wavelengths | max abs(log g change) |", "|---|---|",
            f"| declared (column name, header or --medium vacuum): converted to air | {m(d_decl)} |",
            f"| not declared: read as air, the ~+80 km/s shift removed by the RV correction | {m(d_undecl)} |",
            f"| not declared and no RV correction (what the app did before) | {m(d_none)} |"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    ap.add_argument("--stars", type=int, default=100, help="test stars per noise level for the honesty table")
    a = ap.parse_args()
    ds = data.Dataset(config.profile(a.profile)["dataset"])
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    bright = [sp for sp in (P.example(ds, k, 0.1) for k in range(60))]
    for sp in bright:
        sp.rv, sp.native = None, False      # as an upload: velocity and line width measured
    lines = ["## Predict (upload to prediction)", "",
             f"Measured by `LOGG_ARTIFACTS=... python benchmarks/bench_predict.py --profile {a.profile} --stars "
             f"{a.stars}` on {when}: {cpu_model()}, {os.cpu_count()} cores, load average "
             f"{os.getloadavg()[0]:.1f} at the start; data set `{ds.name}`.", ""]
    lines += registry_table(ds) + [""]
    with tempfile.TemporaryDirectory() as tmp:
        lines += timing(ds, bright, Path(tmp)) + [""]
    lines += ["Test stars as the models were scored on them (at rest); the recommended value with its error bar:", ""]
    lines += honesty(ds, a.stars) + [""]
    lines += ["Test stars at noise 0.1 moved to -300, -100, +50 and +300 km/s (radial velocity measured by "
              "cross-correlation and removed; log g change against the same star at rest):", ""]
    lines += rv_table(ds, bright[:24]) + [""]
    lines += vacuum_table(ds, bright[:12])
    body = "\n".join(lines)
    write_section("bench_predict", body)
    print(body)


if __name__ == "__main__":
    main()
