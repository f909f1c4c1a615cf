"""Robustness to the sky's nuisances (#18, part 3): the robustness suite's predictors, trained without
and with nuisance augmentation (core/engine/suites/robustness.py), tested on perturbed copies of the
clean data set's test split.

A perturbed test set: the clean test stars with one nuisance applied by core/physics/nuisance.py
(RV error, a resolution change, a continuum tilt, tellurics), then the test noise as the data set
defines it (Dataset.noisy: flux + noise level x error x the view's own N(0, 1) draw). The effect of a
nuisance is taken from the simulator and added to the stored spectrum,

    flux' = flux + observe(star, nuisance) - observe(star, none)      (error' likewise, from sigma())

so that "no nuisance" is the stored test set exactly; the noise draw is the clean view's, so every
perturbed set is paired with the clean one star by star. The nuisance values are drawn per star from
a generator seeded by (ROBUST_SEED, the perturbation's key): the same sets every time.

For each finished run (every replicate) the predictions on each set are cached beside the registry,
artifacts/robustness/<run id>.npz (core/data/cache.atomic_savez), tagged with the perturbation list,
the seed and the clean data set's fingerprint. The number reported is the loss

    dR2 = R^2 (unperturbed test set) - R^2 (perturbed),  positive = worse,

averaged over replicates, with a paired bootstrap error over the test stars
(core/analysis/verdicts.estimate) and, with two or more replicates, the sd of the replicates' losses / sqrt(N).
"""
from __future__ import annotations

import hashlib
import json
import math
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import config
from core.analysis import verdicts
from core.data import LABELS, DataError, Dataset
from core.data.cache import atomic_savez
from core.data.dataset import NoiseSource
from core.engine import suites
from core.engine.spec import normalise_spec, replicates
from core.engine.suites import robustness as rsuite

ROBUST_SEED = 18            # the number: seeds every perturbation's nuisance draws
TARGET_NOISE = 0.1          # the done-when of #18: quick profile, noise 0.1 ...
TARGET_DROP = 0.02          # ... the best augmented predictor loses at most this R^2 ...
TARGET_KEYS = ("rv_2", "rv_5", "res_-10", "res_+10", "tilt_1", "tilt_2")   # ... on RV <= 5, R +-10 %, tilt <= 2 %
MAX_REPLICATES = 10
CACHE_VERSION = 1           # what a cached evaluation holds; a new one recomputes every cache
TRAINING_LABEL = {"none": "without augmentation", rsuite.RECIPE: f"with {rsuite.RECIPE} augmentation"}
FAMILIES = ("RV error", "resolution", "continuum tilt", "tellurics", "over typical tellurics")
# the augmented predictors trained on a sky that always has tellurics (airmass >= 1): a telluric-free test set
# is outside their training (the pixel MLP's R^2 fell to -2.3 there), so their target is measured on the
# target's perturbations over typical tellurics, against the typical tellurics alone
TELL_BASE = {"airmass": 1.2, "pwv": 2.0}
TELL_SUFFIX = "+tell"
BASE_KEY = "rv_0"


@dataclass(frozen=True)
class Perturbation:
    """One perturbed test set: `values` are the nuisances it sets (the rest stay core.physics.nuisance.NEUTRAL);
    rv_rms draws each star's RV from N(0, rv_rms), tilt gives each star a P1 tilt of +-tilt (random sign)."""
    key: str
    family: str
    level: str                  # the column heading: "5 km/s", "-10 %", "wet"
    label: str                  # in sentences: "an RV error of 5 km/s rms"
    rv_rms: float = 0.0
    resolution: float | None = None
    tilt: float = 0.0
    airmass: float = 0.0
    pwv: float = 0.0

    @property
    def neutral(self) -> bool:
        return not (self.rv_rms or self.resolution is not None or self.tilt or self.airmass or self.pwv)

    def nuisances(self, n: int) -> dict[str, np.ndarray]:
        """Per-star nuisance values (core.physics.nuisance.NUISANCE_KEYS) for n test stars, seeded by the key."""
        from core.physics import nuisance
        rng = np.random.default_rng(np.random.SeedSequence([ROBUST_SEED, zlib.crc32(self.key.encode())]))
        nu = {k: np.full(n, float(v)) for k, v in nuisance.NEUTRAL.items()}
        nu["rv"] = rng.normal(0.0, self.rv_rms, n) if self.rv_rms else nu["rv"]
        if self.resolution is not None:
            nu["resolution"] = np.full(n, float(self.resolution))
        if self.tilt:
            nu["tilt_c1"] = self.tilt * rng.choice([-1.0, 1.0], n)
        nu["airmass"], nu["pwv"] = np.full(n, float(self.airmass)), np.full(n, float(self.pwv))
        return nu


def _catalogue() -> list[Perturbation]:
    from core.physics.simulate import RESOLUTION
    out = [Perturbation(f"rv_{v:g}", "RV error", f"{v:g} km/s", f"an RV error of {v:g} km/s rms", rv_rms=float(v))
           for v in (0, 2, 5, 10, 15, 30)]
    out += [Perturbation(f"res_{f:+d}", "resolution", f"{f:+d} %", f"a resolution {abs(f)} % {'lower' if f < 0 else 'higher'}"
                         f" (R = {RESOLUTION * (1 + f / 100):,.0f})", resolution=RESOLUTION * (1 + f / 100))
            for f in (-20, -10, 10, 20)]
    out += [Perturbation(f"tilt_{v:g}", "continuum tilt", f"±{v:g} %", f"a ±{v:g} % continuum tilt", tilt=v / 100)
            for v in (0, 1, 2, 3, 5)]
    # typical: the survey recipe's median PWV at a mid airmass; wet: a humid night low in the sky
    out += [Perturbation("tell_typical", "tellurics", "typical", "typical tellurics (PWV 2 mm, airmass 1.2)",
                         airmass=1.2, pwv=2.0),
            Perturbation("tell_wet", "tellurics", "wet", "wet tellurics (PWV 8 mm, airmass 1.5)", airmass=1.5, pwv=8.0)]
    return out


PERTURBATIONS = _catalogue()


def _over_tellurics(p: Perturbation) -> Perturbation:
    import dataclasses
    short = {"RV error": "RV", "resolution": "R", "continuum tilt": "tilt"}.get(p.family, "")
    return dataclasses.replace(p, key=p.key + TELL_SUFFIX, family="over typical tellurics",
                               level=f"{short} {p.level}".strip() if not p.neutral else "none",
                               label=f"{p.label} over typical tellurics", **TELL_BASE)


# the target's perturbations (and none) over typical tellurics: for the augmented training's verdict
OVER_TELLURICS = [_over_tellurics(p) for p in PERTURBATIONS if p.key in (BASE_KEY,) + TARGET_KEYS]
SETS = PERTURBATIONS + OVER_TELLURICS
BY_KEY = {p.key: p for p in SETS}


def sky_sets(training: str) -> list[Perturbation]:
    """The sets whose losses mean something for a training: the telluric-free ones without augmentation; with
    it, the sets over typical tellurics and the tellurics family (the step from a telluric-free sky, which it
    never saw, to tellurics). Each training's other sets measure from a baseline outside its training."""
    if training == rsuite.RECIPE:
        return [p for p in SETS if p.key.endswith(TELL_SUFFIX) or p.family == "tellurics"]
    return list(PERTURBATIONS)


def base_of(key: str) -> str:
    """The unperturbed set a perturbed set's loss is measured against: none, or typical tellurics alone."""
    return BASE_KEY + TELL_SUFFIX if key.endswith(TELL_SUFFIX) else BASE_KEY


def target_keys(training: str) -> tuple:
    """The sets of the #18 target for a training: the augmented one over typical tellurics, the plain one as trained."""
    return tuple(k + TELL_SUFFIX for k in TARGET_KEYS) if training == rsuite.RECIPE else TARGET_KEYS


# --------------------------------------------------------------------------- perturbed test sets
def clean_dataset(profile: str, dataset: str | None) -> Dataset:
    """The clean data set the perturbed test sets are made from; DataError (one line) when it cannot be."""
    ds = Dataset(rsuite.clean_name(profile, dataset))
    if not ds.has_meta or ds.attrs.get("source") != "simulator" or ds.nuisance is not None:
        raise DataError(f"data set {ds.name!r} is not a clean simulated one: the perturbed test sets need the "
                        f"simulator's spectra without nuisances")
    return ds


def _observe(ds: Dataset, rows: np.ndarray, nu: dict, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(flux, error at noise level 1) of these test stars through core.physics.nuisance.observe."""
    import torch

    from core.physics import nuisance, simulate
    sim = simulate.default_simulator("cpu")
    fl, er = [], []
    for i in range(0, rows.size, batch):
        sl = slice(i, i + batch)
        lab = torch.as_tensor(ds.labels[rows[sl]], dtype=torch.float32)
        cnt = torch.as_tensor(ds.star_counts[rows[sl]], dtype=torch.float32)
        with torch.no_grad():
            f = nuisance.observe(sim, lab, {k: v[sl] for k, v in nu.items()})
            fl.append(f.numpy())
            er.append(sim.sigma(f, cnt).numpy())
    return np.concatenate(fl), np.concatenate(er)


def perturbed_test(ds: Dataset, p: Perturbation, base: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, flux, error at noise level 1) of the test split with perturbation p; the stored arrays when p
    is neutral. `base`: observe() of the test stars without nuisances, when already computed."""
    rows = ds.split_rows("test")
    flux, err = ds.read(rows)
    if p.neutral:
        return rows, flux, err
    from core.physics import nuisance
    nu = p.nuisances(rows.size)
    f0, e0 = base if base is not None else _observe(ds, rows, {k: np.full(rows.size, v) for k, v in nuisance.NEUTRAL.items()})
    f1, e1 = _observe(ds, rows, nu)
    return rows, (flux + (f1 - f0)).astype(np.float32), np.maximum(err + (e1 - e0), 1e-6).astype(np.float32)


def perturbed_view(ds: Dataset, rows, flux, err, spec: dict):
    """The view a spec's model reads, made from these clean arrays with the test noise of the spec's view."""
    s = normalise_spec(spec)
    y = ds.labels[rows].astype(np.float32)
    src = NoiseSource(ds, np.asarray(rows, np.int64), float(s["noise_level"]), s["inputs"], int(s["seed"]),
                      flux, err, {}, y, None)
    v = src.draw()
    v.x.flags.writeable = False          # a model that edits its input in place fails loudly (as in train)
    return v


# --------------------------------------------------------------------------- runs and their cache
def finished_runs(profile: str, dataset: str | None, con=None) -> list[tuple[dict, list]]:
    """(spec, [finished results of its replicates, replicate 0 first]) for every spec of the suite (each data
    set opened once: its fingerprint makes the run ids)."""
    from pathlib import Path

    from core.engine import registry, train
    from core.engine.spec import spec_hash
    con = con or registry.connect()
    fps: dict = {}
    out = []
    for s in suites.suite(rsuite.SUITE, profile, dataset):
        if s["dataset"] not in fps:
            try:
                fps[s["dataset"]] = Dataset(s["dataset"]).fingerprint
            except DataError:
                fps[s["dataset"]] = None
        got = []
        for r in replicates([s], MAX_REPLICATES) if fps[s["dataset"]] else ():
            rid = spec_hash(r, fps[s["dataset"]])
            done = registry.finished(con, rid)
            if not done or not done.get("artifact_path") or not registry.artifact_complete(Path(done["artifact_path"])):
                break
            got.append(train.Result(rid, normalise_spec(r), done["metrics"], done["timings"] or {},
                                    Path(done["artifact_path"]), cached=True))
        out.append((s, got))
    return out


def _tag(ds: Dataset) -> str:
    text = json.dumps([CACHE_VERSION, ROBUST_SEED, ds.fingerprint, [vars(p) for p in PERTURBATIONS]], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(run_id: str):
    return config.artifacts_dir() / "robustness" / f"{run_id}.npz"


def _tell_tag() -> str:
    """What the over-tellurics sets are (their definitions): cached predictions on them are kept while it holds."""
    what = [{k: v for k, v in vars(p).items() if k not in ("family", "level", "label")} for p in OVER_TELLURICS]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_cache(run_id: str, tag: str) -> dict:
    path = cache_path(run_id)
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["tag"]) != tag:
                return {}
            got = {k: z[k] for k in z.files}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}
    if str(got.get("tag_tell", "")) != _tell_tag():            # other over-tellurics sets: those predictions go
        got = {k: v for k, v in got.items() if not k.endswith(TELL_SUFFIX)}
    return got


def _complete(got: dict) -> bool:
    return all(f"p_{p.key}" in got for p in SETS)


def evaluate(profile: str = "quick", dataset: str | None = None, progress=None, compute: bool = True,
             finished: list | None = None) -> dict:
    """run id -> {"index", "y_true", "p_<key>": predictions on each perturbed set} for every finished run
    (`finished`: finished_runs' answer, when already asked). compute=False reads the cache only (runs without
    a complete one are left out); else the missing predictions are made (perturbation by perturbation, each
    set simulated once) and cached. progress(fraction, text) is called after each perturbation."""
    from core.engine import train
    ds = clean_dataset(profile, dataset)
    tag = _tag(ds)
    runs = [(s, r) for s, rs in (finished if finished is not None else finished_runs(profile, dataset)) for r in rs]
    store = {r.run_id: _read_cache(r.run_id, tag) for _, r in runs}
    todo = [(s, r) for s, r in runs if not _complete(store[r.run_id])]
    if not compute or not todo:
        return {k: v for k, v in store.items() if _complete(v)}
    from core.physics import nuisance
    rows = ds.split_rows("test")
    base = None
    models: dict = {}
    target = LABELS.index("logg")
    for i, p in enumerate(SETS):
        need = [(s, r) for s, r in todo if f"p_{p.key}" not in store[r.run_id]]
        if need:
            if base is None and not p.neutral:
                base = _observe(ds, rows, {k: np.full(rows.size, v) for k, v in nuisance.NEUTRAL.items()})
            rows_, flux, err = perturbed_test(ds, p, base)
            views: dict = {}
            for s, r in need:
                key = (r.spec["inputs"], float(r.spec["noise_level"]), int(r.spec["seed"]))
                if key not in views:
                    views[key] = perturbed_view(ds, rows_, flux, err, r.spec)
                if r.run_id not in models:
                    models[r.run_id] = train.load_model(r.artifact)
                out = models[r.run_id].predict(views[key])
                pred = np.asarray(out[0] if isinstance(out, tuple) else out, np.float64).reshape(-1)
                got = store[r.run_id]
                # the labels as a run's own test view holds them (float32), so that R^2 repeats the run's
                got.update({"index": rows_, "y_true": ds.labels[rows_, target].astype(np.float32).astype(np.float64),
                            f"p_{p.key}": pred})
        if progress:
            progress((i + 1) / len(SETS), f"{p.label}: {len(need)} runs predicted")
    for _, r in todo:
        got = {k: v for k, v in store[r.run_id].items() if k not in ("tag", "tag_tell")}
        atomic_savez(cache_path(r.run_id), tag=np.array(tag), tag_tell=np.array(_tell_tag()), **got)
    return {k: v for k, v in store.items() if _complete(v)}


# --------------------------------------------------------------------------- the table
@dataclass
class _Pred:
    """One run's predictions on one test set, shaped as verdicts.estimate reads a run (no artifact: never cached there)."""
    run_id: str
    metrics: dict
    index: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray

    def predictions(self) -> dict:
        return {"index": self.index, "y_true": self.y_true, "y_pred": self.y_pred}


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    return float(1.0 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def loss(preds: list[dict], key: str) -> tuple[float, float, float, float | None, float]:
    """(R^2 clean, R^2 perturbed, dR2, its combined error, its bootstrap SE) of one spec's replicates
    (their cached predictions) on perturbation `key`, against its unperturbed set (base_of: none, or
    typical tellurics alone)."""
    runs_c, runs_p, drops = [], [], []
    ref = f"p_{base_of(key)}"
    for j, g in enumerate(preds):
        y = g["y_true"]
        c, q = _r2(y, g[ref]), _r2(y, g[f"p_{key}"])
        runs_c.append(_Pred(f"{j}/clean", {"r2": c}, g["index"], y, g[ref]))
        runs_p.append(_Pred(f"{j}/{key}", {"r2": q}, g["index"], y, g[f"p_{key}"]))
        drops.append(c - q)
    est = verdicts.estimate([verdicts.Arm("clean", runs_c, fixed=True), verdicts.Arm(key, runs_p, fixed=True)],
                            lambda m: m[0] - m[1])
    sd = float(np.std(drops, ddof=1)) / math.sqrt(len(drops)) if len(drops) > 1 else 0.0
    r2c, r2p = float(np.mean([r.metrics["r2"] for r in runs_c])), float(np.mean([r.metrics["r2"] for r in runs_p]))
    return r2c, r2p, float(np.mean(drops)), math.sqrt((est.se_boot or 0.0) ** 2 + sd ** 2), est.se_boot


COLUMNS = ["method", "model", "training", "noise", "family", "level", "key", "perturbation", "r2_clean", "r2", "drop",
           "err", "se_boot", "seeds"]


def table(profile: str = "quick", dataset: str | None = None, compute: bool = False, progress=None) -> pd.DataFrame:
    """One row per (predictor, training, noise level, perturbation) whose runs are evaluated: COLUMNS
    (drop = dR2 = R^2 clean - R^2 perturbed, err its combined error, seeds the replicates averaged)."""
    return results(profile, dataset, compute, progress)[0]


SIMULATE_S_PER_STAR = 5e-3    # observe() of one test star on a 2-core CPU (measured: 450 stars in 2.1 s)


def results(profile: str = "quick", dataset: str | None = None, compute: bool = False,
            progress=None) -> tuple[pd.DataFrame, dict]:
    """(table's rows, {"runs": finished runs without a complete cached evaluation (0 after compute=True),
    "seconds": the estimated cost of evaluating them: each run's own test-split predict time x the
    perturbations, plus simulating the perturbed sets})."""
    finished = finished_runs(profile, dataset)
    got = evaluate(profile, dataset, progress, compute, finished)
    todo = [r for _, rs in finished for r in rs if r.run_id not in got]
    n_test = int(next((r.metrics.get("n_test", 0) for r in todo), 0))
    sims = sum(not p.neutral for p in SETS) + 1
    pending = {"runs": len(todo), "seconds": sum(float((r.timings or {}).get("predict_s", 0) or 0) for r in todo)
               * len(SETS) + (sims * n_test * SIMULATE_S_PER_STAR if todo else 0.0)}
    rows = []
    for s, rs in finished:
        preds = [got[r.run_id] for r in rs if r.run_id in got]
        if not preds:
            continue
        for p in SETS:
            r2c, r2p, d, e, se = loss(preds, p.key)
            rows.append({"method": suites.row_label(s), "model": s["model"], "training": rsuite.training_of(s),
                         "noise": float(s["noise_level"]), "family": p.family, "level": p.level, "key": p.key,
                         "perturbation": p.label, "r2_clean": r2c, "r2": r2p, "drop": d, "err": e, "se_boot": se,
                         "seeds": len(preds)})
    return pd.DataFrame(rows, columns=COLUMNS), pending


def not_run(profile: str = "quick", dataset: str | None = None, con=None) -> dict:
    """How much of the suite is unfinished (core.analysis.conclusions.estimate: n_todo, n_all, seconds, todo)
    and the text 'not run: N of M specs of the `robustness` suite unfinished, ~X min'."""
    from core.analysis import conclusions
    est = conclusions.estimate(suites.suite(rsuite.SUITE, profile, dataset), profile, con)
    est["text"] = conclusions.not_run_text(est, rsuite.SUITE) if est["n_todo"] else ""
    missing = rsuite.missing_datasets(profile, dataset)
    if missing:
        est["text"] += (f"; data set {', '.join(missing)} not built yet ({rsuite.build_command(profile, dataset)}, "
                        f"or `python -m core train --suite robustness` builds what the profile needs)"
                        if rsuite.augmented_name(profile, dataset) in missing else f"; data set {missing[0]} not built yet")
    return est


def state(profile: str = "quick", dataset: str | None = None) -> tuple:
    """A cache key for pages that moves when a run of either data set finishes or an evaluation is cached."""
    from core.analysis.breakdown import registry_state
    folder = config.artifacts_dir() / "robustness"
    stamps = [p.stat().st_mtime_ns for p in folder.glob("*.npz")] if folder.is_dir() else []
    return (registry_state(rsuite.clean_name(profile, dataset)), registry_state(rsuite.augmented_name(profile, dataset)),
            len(stamps), max(stamps, default=0))


# --------------------------------------------------------------------------- what it means
def worst(df: pd.DataFrame, training: str, noise: float = TARGET_NOISE, keys=None) -> pd.DataFrame:
    """Per method of one training: its largest loss over `keys` (default: the target's sets for that training,
    target_keys), the row of that perturbation, best R^2 first."""
    keys = target_keys(training) if keys is None else keys
    d = df[(df["training"] == training) & (df["noise"] == noise) & df["key"].isin(keys)]
    if d.empty:
        return d
    idx = d.groupby("method")["drop"].idxmax()
    return d.loc[idx].sort_values("r2_clean", ascending=False)


def _pm(row) -> str:
    return f"{row['drop']:.3f} ± {row['err']:.3f}"


def verdict(df: pd.DataFrame) -> dict | None:
    """The done-when of #18 on these results: the best augmented predictor at TARGET_NOISE (highest R^2 on its
    unperturbed set: typical tellurics alone) and its largest loss over the target's perturbations over typical
    tellurics (target_keys), the same method without augmentation (on the telluric-free sets, the sky it trained
    on), and the most robust augmented predictor (smallest largest loss). None until augmented runs are evaluated."""
    aug = worst(df, rsuite.RECIPE)
    if aug.empty:
        return None
    best = aug.iloc[0]
    plain = worst(df, "none")
    plain = plain[plain["method"] == best["method"]]
    most = aug.sort_values("drop").iloc[0]
    meets = aug[[target_word(r) == "met" for _, r in aug.iterrows()]]
    return {"best": best, "plain": plain.iloc[0] if len(plain) else None, "most": most,
            "met": target_word(best) == "met", "word": target_word(best), "n_methods": len(aug),
            "best_meeting": meets.iloc[0] if len(meets) else None}


def target_word(row) -> str:
    """'met' when the loss is below TARGET_DROP by more than 2 of its errors, 'not met' when above it by more,
    else 'inconclusive' (the project's rule for any verdict: a difference is a finding only outside 2 errors)."""
    d, e = float(row["drop"]), float(row["err"] or 0.0)
    return "met" if d + 2 * e <= TARGET_DROP else "not met" if d - 2 * e > TARGET_DROP else "inconclusive"


def conclusion(df: pd.DataFrame, todo: str = "") -> str:
    """The page's one computed sentence."""
    v = verdict(df)
    if v is None:
        return ("Robustness to nuisances: " + (todo or "not evaluated yet") + ".") if todo or df.empty else \
            "Robustness to nuisances: the predictors trained with augmentation have not run yet."
    b, p, m = v["best"], v["plain"], v["most"]
    s = (f"With {rsuite.RECIPE} augmentation the best predictor at noise {TARGET_NOISE:g}, {b['method']} "
         f"(R² {b['r2_clean']:.3f} with typical tellurics, the sky it trained on), loses at most ΔR² {_pm(b)} when RV "
         f"errors ≤ 5 km/s, R ± 10 % or tilts ≤ ±2 % come on top (worst: {b['perturbation']}), so the target of "
         f"≤ {TARGET_DROP} is **{v['word']}**" + (" (within 2 errors of it)" if v["word"] == "inconclusive" else ""))
    if p is not None:
        s += f"; without augmentation, on telluric-free spectra, it loses {_pm(p)} (worst: {p['perturbation']})"
    bm = v["best_meeting"]
    if not v["met"] and bm is not None:
        s += (f". The best augmented predictor that meets it by more than 2 errors is {bm['method']} "
              f"(R² {bm['r2_clean']:.3f}, at most {_pm(bm)})")
    if m["method"] != b["method"] and (bm is None or m["method"] != bm["method"]):
        s += f"; the most robust of the {v['n_methods']} is {m['method']}, at most {_pm(m)} (R² {m['r2_clean']:.3f})"
    return s + "."


def digest_summary(profile: str = "quick", dataset: str | None = None, ceiling: pd.DataFrame | None = None) -> str:
    """3-6 lines of markdown for the digest, from cached evaluations only (never fits or predicts); `ceiling`:
    the marginalised ceiling's rows on the same sets (robustness_ceiling.rows), named on the target's line."""
    try:
        df = table(profile, dataset, compute=False)
        todo = not_run(profile, dataset)
    except DataError as e:
        return f"**Robustness to nuisances**: {e}."
    lines = ["**Robustness to nuisances** (ΔR² = R² unperturbed - R² perturbed; core/analysis/robustness.py)"]
    v = verdict(df)
    if v is None:
        lines.append(f"- {todo['text'] or 'not evaluated yet: open the Robustness page or run benchmarks/robustness.py'}")
        return "\n".join(lines)
    b, m = v["best"], v["most"]
    ceil = ceiling[ceiling["key"].isin(target_keys(rsuite.RECIPE))] if ceiling is not None and len(ceiling) \
        else pd.DataFrame()
    lines.append(f"- target (#18): best augmented predictor at noise {TARGET_NOISE:g}, {b['method']}, loses ≤ {_pm(b)} on "
                 f"RV ≤ 5 km/s, R ± 10 %, tilt ≤ ±2 % over typical tellurics: **{v['word']}** (≤ {TARGET_DROP}, 2 errors); "
                 + (f"without augmentation ≤ {_pm(v['plain'])}" if v["plain"] is not None else "not run without augmentation")
                 + (f"; the physics itself (the likelihood fit marginalising the priors) ≤ {_pm(ceil.loc[ceil['drop'].idxmax()])}"
                    if len(ceil) else ""))
    bm = v["best_meeting"]
    if not v["met"] and bm is not None:
        lines.append(f"- best augmented predictor meeting it by 2 errors: {bm['method']}, ≤ {_pm(bm)} (R² {bm['r2_clean']:.3f}); "
                     f"most robust: {m['method']}, ≤ {_pm(m)} (R² {m['r2_clean']:.3f})")
    elif m["method"] != b["method"]:
        lines.append(f"- most robust with augmentation: {m['method']}, ≤ {_pm(m)} (R² {m['r2_clean']:.3f} unperturbed)")
    hard = df[df["noise"] == TARGET_NOISE].groupby(["training", "perturbation"])["drop"].median()
    parts = [f"{TRAINING_LABEL[tr]} {hard[tr].idxmax()} (ΔR² {hard[tr].max():.3f})" for tr in ("none", rsuite.RECIPE)
             if tr in hard.index.get_level_values(0)]
    lines.append("- hardest for the median predictor: " + "; ".join(parts))
    if todo["n_todo"]:
        lines.append(f"- {todo['text']}")
    return "\n".join(lines[:6])


def markdown(df: pd.DataFrame, noise: float = TARGET_NOISE) -> str:
    """dR2 ± error per method (rows) and perturbation (columns), the two trainings one after the other."""
    out = []
    for tr in ("none", rsuite.RECIPE):
        d = df[(df["training"] == tr) & (df["noise"] == noise)]
        if d.empty:
            continue
        keys = [p.key for p in sky_sets(tr) if p.key not in (BASE_KEY, BASE_KEY + TELL_SUFFIX)]
        heads = [f"{BY_KEY[k].level} +tell" if k.endswith(TELL_SUFFIX) else f"{BY_KEY[k].family.split()[0]} {BY_KEY[k].level}"
                 for k in keys]
        out += [f"**{TRAINING_LABEL[tr]}**, noise {noise:g}: ΔR² (± combined error)", "",
                "| method | R² | " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * len(keys)]
        for meth, g in sorted(d.groupby("method"), key=lambda t: -t[1]["r2_clean"].iloc[0]):
            by = g.set_index("key")
            cells = [f"{by.loc[k, 'drop']:.3f} ± {by.loc[k, 'err']:.3f}" for k in keys]
            out.append(f"| {meth} | {g['r2_clean'].iloc[0]:.3f} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
