"""What the physics itself loses on the robustness suite's perturbed test sets (#18, parts 1 and 3): the
likelihood ceiling with the augmentation recipe's nuisances marginalised (core/physics/nuisance_fit.py; its
airmass prior widened down to 0, since most perturbed sets have no tellurics: `recipe`), run on the same
perturbed copies of the test split as the predictors (core/analysis/robustness.py).

The target of #18 asks the best augmented predictor to lose at most dR2 0.02 on RV errors <= 5 km/s,
R +-10 % and tilts <= +-2 %. Whether that is a fair demand is a question for the physics: a fit of the
simulator that knows only the augmentation recipe's priors (the same knowledge the augmented predictors
were trained with) loses what the information in the spectrum forces anyone to lose; what a predictor
loses beyond it is the predictor's. So for each perturbation of KEYS the first N_STARS test stars are
fitted at TARGET_NOISE, and dR2 = R^2 (unperturbed) - R^2 (perturbed) with its paired bootstrap SE
(robustness.loss). About 0.15 s a star and set on 2 CPU cores (a few minutes in all), cached as
artifacts/robustness/ceiling-<tag>.npz; pages read the cache only.
"""
from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pandas as pd

from core import config
from core.analysis import robustness as rb
from core.data import LABELS
from core.data.cache import atomic_savez
from core.engine.spec import make_spec
from core.engine.suites import robustness as rsuite

KEYS = (rb.BASE_KEY + rb.TELL_SUFFIX,) + rb.target_keys(rsuite.RECIPE)   # the augmented target's sets
N_STARS = 150
CACHE_VERSION = 4           # bumped when the fit or the sets change (4: over typical tellurics, 2026-12-03)
LABEL = f"Likelihood ceiling ({rsuite.RECIPE} nuisances marginalised)"


def recipe() -> dict:
    """The augmentation recipe's priors, with the airmass allowed down to 0 (no tellurics): every perturbed set
    but the telluric ones has none, which the recipe's airmass 1.0-1.5 excludes (a fit under it forces absent
    bands onto the spectrum: log g R^2 -0.44 on 40 unperturbed test stars, 0.98 with airmass from 0)."""
    r = dict(config.NUISANCE_RECIPES[rsuite.RECIPE])
    r["airmass"] = dict(r["airmass"], lo=0.0)
    r["name"] = f"{rsuite.RECIPE}, tellurics optional"
    return r


def _tag(ds, n: int) -> str:
    text = json.dumps([CACHE_VERSION, rb._tag(ds), list(KEYS), n, recipe()],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(ds, n: int):
    return config.artifacts_dir() / "robustness" / f"ceiling-{_tag(ds, n)}.npz"


def evaluate(profile: str = "quick", dataset: str | None = None, compute: bool = True, n_stars: int | None = None,
             progress=None) -> dict | None:
    """{"index", "y_true", "p_<key>"} of the marginalised ceiling on each perturbed set (the first n_stars test
    stars), from the cache, or computed and cached when compute; None when neither."""
    from core.physics import nuisance, nuisance_fit
    ds = rb.clean_dataset(profile, dataset)
    n_stars = N_STARS if n_stars is None else int(n_stars)
    path = cache_path(ds, n_stars)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):     # missing, or a damaged copy: made again
        if not compute:
            return None
    spec = make_spec("likelihood_ceiling", {}, rb.TARGET_NOISE, profile, ds.name)
    prior = recipe()
    from core.physics.simulate import variant_simulator
    sim = variant_simulator(ds.physics_recipe, "cpu")          # the data set's own physics
    rows = ds.split_rows("test")
    base = rb._observe(ds, rows, {k: np.full(rows.size, v) for k, v in nuisance.NEUTRAL.items()})
    out: dict = {}
    for i, key in enumerate(KEYS):
        rows_, flux, err = rb.perturbed_test(ds, rb.BY_KEY[key], base)
        v = rb.perturbed_view(ds, rows_, flux, err, spec)
        n = min(n_stars, len(v.y))
        fit = nuisance_fit.likelihood_fit(v.x[:n, 0].astype(np.float64), v.x[:n, 1].astype(np.float64), prior,
                                          sim=sim)
        out[f"p_{key}"] = fit["labels"][:, LABELS.index("logg")]
        out["index"], out["y_true"] = rows_[:n], v.y[:n, LABELS.index("logg")].astype(np.float64)
        if progress:
            progress((i + 1) / len(KEYS), f"ceiling on {rb.BY_KEY[key].label}: {n} stars")
    atomic_savez(path, **out)
    return out


def rows(profile: str = "quick", dataset: str | None = None, compute: bool = False) -> pd.DataFrame:
    """The ceiling's rows in robustness.COLUMNS (training 'marginalised'), from the cache unless compute."""
    got = evaluate(profile, dataset, compute=compute)
    if got is None:
        return pd.DataFrame(columns=rb.COLUMNS)
    out = []
    for key in KEYS:
        p = rb.BY_KEY[key]
        r2c, r2p, d, e, se = rb.loss([got], key)
        out.append({"method": LABEL, "model": "likelihood_ceiling", "training": "marginalised", "noise": rb.TARGET_NOISE,
                    "family": p.family, "level": p.level, "key": key, "perturbation": p.label, "r2_clean": r2c,
                    "r2": r2p, "drop": d, "err": e, "se_boot": se, "seeds": 1})
    df = pd.DataFrame(out, columns=rb.COLUMNS)
    df.attrs["n_stars"] = int(len(got["index"]))
    return df


def sentence(ceiling: pd.DataFrame, df: pd.DataFrame) -> str:
    """The ceiling's largest loss over the target's perturbations, and how it compares with the best augmented
    predictor's: '' when the ceiling has not been evaluated."""
    c = ceiling[ceiling["key"].isin(rb.target_keys(rsuite.RECIPE))]
    if c.empty:
        return ""
    w = c.loc[c["drop"].idxmax()]
    s = (f"The physics itself, a likelihood fit that knows only the {rsuite.RECIPE} priors (tellurics allowed to "
         f"vanish) and marginalises them, loses at most ΔR² {w['drop']:.3f} ± {w['err']:.3f} over the same "
         f"perturbations on the first {ceiling.attrs.get('n_stars', N_STARS)} test stars (worst: {w['perturbation']})")
    v = rb.verdict(df)
    if v is not None:
        b = v["best"]       # its worst over the whole test split; the errors taken as independent (conservative)
        gap, err = float(b["drop"] - w["drop"]), float(np.hypot(b["err"], w["err"]))
        words = ("more than the spectrum forces" if gap > 2 * err else
                 "less than the physics' own worst (the predictor's worst is on other stars or another perturbation)"
                 if gap < -2 * err else "within 2 errors of what the spectrum forces")
        s += f"; the best augmented predictor's worst, {b['drop']:.3f} ± {b['err']:.3f}, is {words}"
    return s + "."
