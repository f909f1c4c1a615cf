"""What Predict says: the JSON form of an answer and the plain-text report the CLI prints."""
from __future__ import annotations

import json

import numpy as np


# --------------------------------------------------------------------------- output
def _clean(o):
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items() if not str(k).startswith("_")}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def to_json(result: dict) -> str:
    return json.dumps(_clean(result), indent=2)


def _pm(v, s, fmt=".2f"):
    return f"{v:{fmt}}" + (f" ± {s:{fmt.lstrip('+')}}" if s is not None and np.isfinite(s) else "")


def ordinal(p: float) -> str:
    n = int(round(p))
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def nl_text(x: float) -> str:
    """0.1 -> '0.1', 1 -> '1.0': noise levels as the rest of the app writes them."""
    return f"{x:.1f}" if float(x) == round(float(x), 1) else f"{x:g}"


def text_report(r: dict) -> str:
    """The answer in plain text (what the CLI prints, and what the page shows in tables)."""
    L = [f"{r['file']}: {r['format']}"]
    L += [f"  note: {n}" for n in r["notes"]]
    L.append(f"data set: {r['dataset']} (fingerprint {r['dataset_fingerprint']})")
    L.append(f"coverage: {r['coverage']['statement']}")
    fr = r.get("frame")
    if fr:
        L.append(f"wavelengths: {fr['medium_how']}" + (f" ({fr['medium_source']})" if fr.get("medium_source") else ""))
        v = fr["rv"]
        if v["applied"]:
            L.append(f"radial velocity: {_pm(v['value'], v['sigma'], '+.1f')} km/s, shifted to rest ({v['how']})")
        else:
            L.append(f"radial velocity: {v['how']}")
        if fr.get("resolution"):
            L.append(f"resolution: {fr['resolution']['how']}")
    L.append(f"S/N: {r['snr']['value']:.1f} ({r['snr']['how']})")
    nlv = r["noise_level"]
    L.append(f"noise level: {nl_text(nlv['value'])} ({nlv['how']}; training S/N there "
             f"{nlv['training_snr_range'][0]:.0f}-{nlv['training_snr_range'][1]:.0f})")
    L.append(f"normalisation: flux / {r['normalisation']['scale']:.4g} ({r['normalisation']['how']})")
    L.append("")
    L.append(f"log g by model (trained at noise level {nl_text(nlv['value'])}):")
    w = max(len(x["model"]) for x in r["logg"])
    L.append(f"  {'model':<{w}}  {'log g':>6}  {'±':>5}  {'test RMSE':>9}  {'test R²':>7}  uncertainty kind")
    for x in r["logg"]:
        L.append(f"  {x['model']:<{w}}  {x['value']:6.2f}  {x['uncertainty']:5.2f}  "
                 f"{(x['test_rmse'] or float('nan')):9.3f}  {(x['test_r2'] or float('nan')):7.3f}  {x['uncertainty_kind']}")
    for s in r["skipped"]:
        L.append(f"  skipped {s['model']}: {s['why']}")
    if r.get("research_hidden"):
        L.append(f"  ({r['research_hidden']} research runs - ablation controls, sweep variants, latent probes, metadata "
                 f"baselines, the physics ceiling - do not answer for uploads; --research lists them)")
    rec = r["recommended"]
    L.append("")
    L.append(f"recommended: log g = {rec['value']:.2f} ± {rec['uncertainty']:.2f} dex  [{rec['model']}: {rec['why']}]")
    if not rec.get("agree", True):
        L.append(f"WARNING: {rec['verdict']}")
    if rec.get("outside_grid"):
        L.append("WARNING: the recommended value is outside the training grid: an extrapolation")
    for k, v in r["other_best"].items():
        name = {"teff": "Teff", "mh": "[M/H]"}[k]
        fmt = ".0f" if k == "teff" else "+.2f"
        L.append(f"{name} = {_pm(v['value'], v['uncertainty'], fmt)} {'K' if k == 'teff' else 'dex'}  "
                 f"[{v['model']}{'' if v['scored'] else ', fitted jointly with log g, not scored on the test split'}]")
    if r.get("truth"):
        t = r["truth"]
        L.append(f"true labels: Teff {t['teff']:.0f} K, log g {t['logg']:.2f}, [M/H] {t['mh']:+.2f} "
                 f"(recommended - true log g = {rec['value'] - t['logg']:+.2f})")
    pf = r.get("physics_fit")
    if pf:
        s = pf["sigma"]
        L.append(f"physics fit (the simulator, {100 * pf['model_floor']:.0f} % model error): Teff {pf['teff']:.0f} ± "
                 f"{s['teff']:.0f} K, log g {pf['logg']:.2f} ± {s['logg']:.2f}, [M/H] {pf['mh']:+.2f} ± {s['mh']:.2f}; "
                 f"reduced χ² {pf['chi2']:.2f}")
    L.append("")
    L.append(f"out-of-distribution check: {r['ood']['verdict']}")
    L += [f"  - {f}" for f in r["ood"]["flags"]]
    L.append(f"({r['seconds']:.3f} s)")
    return "\n".join(L)


