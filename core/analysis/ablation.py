"""Error versus flux: does log g come from the spectrum or from its error vector?

The error_ablation suite trains the same models on different inputs (flux only, clean error
only, pipeline-like error only, flux + error, flux / error, and three controls: the error
shuffled across stars, a constant error, and the error of a star with the same Teff and [M/H]
but a log g at least 1 dex away), and the blind-spot encoder with and without the error
channel, probed the same way (the latent question). core/engine/suites/ablation.py says what runs; this module reads those runs and turns them into
 - the ablation matrix (input x model x noise),
 - the residual analysis (does the error-only prediction explain the flux model's residuals?),
 - a plain-language verdict computed from the numbers by the rules written next to it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.engine import train
from core.engine.metrics import bootstrap_se_r2_gap
from core.engine.suites.ablation import ABLATION_MODELS, INPUT_LABELS, LATENT_MODEL, latent_specs, suite_specs  # noqa: F401

# verdict thresholds# verdict thresholds
ERROR_INFORMATIVE_R2 = 0.5   # the error vector alone "predicts log g" above this R^2
DEPENDS_DELTA = 0.02         # an R^2 change larger than this (and than 2 bootstrap SE) counts as real


def results(profile: str, dataset: str | None, con=None) -> pd.DataFrame:
    """One row per (model, inputs, noise) cell of the matrix; the latent rows are the probes (the
    encoders they stand on are listed by suite_specs, not here)."""
    rows = []
    for s in suite_specs(profile, dataset):
        if s["model"] == "blindspot":
            continue
        r = train.cached_result(s, con=con)
        model = LATENT_MODEL if s["model"] == "latent_probe" else s["model"]
        rows.append({"model": model, "inputs": s["inputs"], "input": INPUT_LABELS[s["inputs"]],
                     "noise": s["noise_level"], "r2": r.metrics["r2"] if r else np.nan,
                     "run_id": r.run_id if r else None, "result": r})
    return pd.DataFrame(rows)


def residual_analysis(df: pd.DataFrame, model: str, noise: float) -> dict | None:
    """Correlation of the flux model's residuals with the error-only model's prediction, and the
    R^2 gained by giving the flux model the error as a second channel."""
    get = {r["inputs"]: r["result"] for _, r in df[(df["model"] == model) & (df["noise"] == noise)].iterrows()}
    if not (get.get("flux") and get.get("error")):
        return None
    pf, pe = get["flux"].predictions(), get["error"].predictions()
    y = pf["y_true"]
    resid = y - pf["y_pred"]
    out = {"model": model, "noise": noise,
           "corr(residual, error-only prediction)": float(np.corrcoef(resid, pe["y_pred"])[0, 1]),
           "corr(residual, error-only minus flux prediction)": float(np.corrcoef(resid, pe["y_pred"] - pf["y_pred"])[0, 1])}
    if get.get("flux+error"):
        pfe = get["flux+error"].predictions()
        out["R2 gain from adding the error"] = get["flux+error"].metrics["r2"] - get["flux"].metrics["r2"]
        out["bootstrap SE of the gain"] = bootstrap_se_r2_gap(y, pfe["y_pred"], pf["y_pred"])
    return out


def verdict(table: pd.DataFrame, noise: float, model: str = "dilated_cnn") -> str:
    """A plain-language verdict from the ablation numbers at one noise level.

    Rules (each number quoted in the sentence it decides):
      1. the error vector alone 'predicts log g' when its best R^2 over the models >= ERROR_INFORMATIVE_R2;
      2. `model` 'depends on the error vector' when flux + error beats flux only by more than DEPENDS_DELTA
         AND flux + shuffled error falls back by more than DEPENDS_DELTA (the gain needs the star's own error);
         otherwise it does not;
      3. the latent clause: the probe of the flux + error encoder against the flux-only encoder's, a
         difference beyond DEPENDS_DELTA counts either way;
      4. a number that is missing makes its clause say 'not run', never a guess.
    `table` needs columns model, inputs, noise, r2."""
    t = table[table["noise"] == noise]

    def r2(m, inp):
        v = t[(t["model"] == m) & (t["inputs"] == inp)]["r2"]
        return float(v.iloc[0]) if len(v) and pd.notna(v.iloc[0]) else None

    err = [(r2(m, "error"), m) for m in t["model"].unique()]
    err = [(v, m) for v, m in err if v is not None]
    parts = [f"At noise {noise:g}:"]
    if err:
        best, bm = max(err)
        if best >= ERROR_INFORMATIVE_R2:
            parts.append(f"on this data set the clean error vector alone predicts log g, R² = {best:.2f} ({bm}),"
                         " because photon noise follows the flux, so the error carries the spectrum's shape.")
        else:
            parts.append(f"the clean error vector alone reaches only R² = {best:.2f} ({bm}): it does not predict log g well.")
    else:
        parts.append("the error-only runs: not run.")
    f, fe, fs = r2(model, "flux"), r2(model, "flux+error"), r2(model, "flux+error_shuffled")
    if None in (f, fe, fs):
        parts.append(f"Whether the {model}'s log g depends on the error vector: not run.")
    else:
        gain, loss = fe - f, fe - fs
        if gain > DEPENDS_DELTA and loss > DEPENDS_DELTA:
            parts.append(f"The {model}'s log g does depend on it: adding the error raises R² from {f:.3f} to {fe:.3f}, "
                         f"and shuffling the error across stars takes it back to {fs:.3f}.")
        else:
            why = (f"adding the error changes R² by only {gain:+.3f} ({f:.3f} -> {fe:.3f})" if gain <= DEPENDS_DELTA else
                   f"although adding it changes R² by {gain:+.3f}, a shuffled error does as well ({fs:.3f})")
            parts.append(f"The {model}'s log g does not depend on it: {why}; the flux carries the information.")
    lf, lfe = r2(LATENT_MODEL, "flux"), r2(LATENT_MODEL, "flux+error")
    if None in (lf, lfe):
        parts.append("Latent: the encoders with and without the error channel: not run.")
    else:
        d = lfe - lf
        parts.append(f"Latent: a Ridge probe of the encoder trained on flux + error reaches R² = {lfe:.3f}, against "
                     f"{lf:.3f} for the flux-only encoder ({d:+.3f}): "
                     + ("the error channel puts more log g into the latent space."
                        if d > DEPENDS_DELTA else "the error channel takes log g out of the latent space."
                        if d < -DEPENDS_DELTA else "the error channel does not change what the latent space holds about log g."))
    sw = r2("ridge", "error_swapped")
    if sw is not None:
        parts.append(f"Control: Ridge on the error of a star with the same Teff and [M/H] but another log g reaches "
                     f"R² = {sw:.2f}.")
    return " ".join(parts)
