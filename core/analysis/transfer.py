"""Transfer across simulator assumptions (#18, part 4): each model of the transfer suite
(core/engine/suites/transfer.py), trained on one physics variant, scored on every variant's test split.

    m = matrix("quick")          # R^2 [method][train variant, test variant], with what it rests on
    digest_section("quick")      # a short markdown table + which conclusions survive (for the digest)

A cell is the model of the training variant's run (replicate 0) predicting the test variant's test
split at the suite's noise level, with the same inputs and view seed as its own test split. The variant
data sets are built with the same seed, so they hold the same stars (labels, counts, splits): the only
difference between two cells of a row is the physics that made the spectra; `same_stars` says whether
that holds. The diagonal is the run's own test R^2. The ceiling (a likelihood fit with the training
variant's simulator) costs about half a second a star on a loaded 2-core CPU, so its row is scored on
the first CEILING_STARS test stars, its diagonal on the same stars. Cells are cached under artifacts/transfer/ (atomic_savez), one file per
(run, test data set fingerprint); nothing here fits a model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import config
from core.analysis import report, verdicts
from core.data import LABELS, DataError, Dataset
from core.data.cache import atomic_savez
from core.engine import registry, suites
from core.engine.metrics import regression_metrics
from core.engine.suites import transfer as tsuite

SUITE = tsuite.SUITE
CEILING = "likelihood_ceiling"
CEILING_STARS = 100      # test stars the ceiling's row is scored on (its likelihood fit is slow)
DROP = 0.05              # a transfer "keeps" a model when R^2 falls by less than this
K = verdicts.K_SIGMA


@dataclass
class Cell:
    """Predictions of one trained model on one variant's test stars; quacks like a run for verdicts."""
    run_id: str
    index: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    metrics: dict = field(default_factory=dict)

    def predictions(self) -> dict:
        return {"index": self.index, "y_true": self.y_true, "y_pred": self.y_pred}


@dataclass
class Matrix:
    variants: list            # recipe names, "" = the profile's own data set
    labels: list              # readable variant names
    datasets: list            # data set names
    methods: list             # model names (METHODS order)
    method_labels: list
    r2: dict                  # model -> (V, V) array, NaN where not computed
    cells: dict               # (model, i, j) -> Cell
    runs: dict                # (model, i) -> replicate results of the training variant's spec
    missing_runs: list        # specs not run yet
    missing_datasets: list
    missing_cells: int        # cells whose run exists but that were not computed (compute=False)
    same_stars: dict          # variant index -> bool (labels and test split equal to variant 0's)
    n_test: dict = field(default_factory=dict)   # model -> test stars its row is scored on


def _cell_path(run_id: str, fp: str, n: int | None) -> Path:
    """artifacts/transfer/<run id>_<test data set fingerprint>[_n<stars>].npz"""
    stars = "" if n is None else f"_n{n}"
    return config.artifacts_dir() / "transfer" / f"{run_id}_{fp}{stars}.npz"


def _load_cell(path, run_id: str) -> Cell | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            c = Cell(run_id, z["index"], z["y_true"], z["y_pred"])
    except (OSError, KeyError, ValueError):
        return None
    c.metrics = {"r2": regression_metrics(c.y_true, c.y_pred)["r2"]}
    return c


def _own_cell(result, n: int | None) -> Cell:
    """The run's own test predictions (the diagonal), on its first n test stars where n is given."""
    p = result.predictions()
    sl = slice(None) if n is None else slice(0, n)
    c = Cell(result.run_id, p["index"][sl], p["y_true"][sl], p["y_pred"][sl])
    c.metrics = {"r2": regression_metrics(c.y_true, c.y_pred)["r2"]} if n is not None else dict(result.metrics)
    return c


def _transfer_cell(result, model, test_ds: Dataset, n: int | None, compute: bool) -> Cell | None:
    """`model` (the fitted model of `result`) on test_ds's test split: cached, computed when `compute`."""
    path = _cell_path(result.run_id, test_ds.fingerprint, n)
    if path.exists():
        c = _load_cell(path, result.run_id)
        if c is not None:
            return c
    if not compute:
        return None
    spec = result.spec
    view = test_ds.view("test", spec["noise_level"], spec["inputs"], seed=spec["seed"], limit=n)
    out = model().predict(view)
    mean = np.asarray(out[0] if isinstance(out, tuple) else out, dtype=np.float64).reshape(-1)
    y = view.y[:, LABELS.index(spec["target"])].astype(np.float64)
    atomic_savez(path, index=view.index, y_true=y, y_pred=mean)
    c = Cell(result.run_id, view.index, y, mean)
    c.metrics = {"r2": regression_metrics(y, mean)["r2"]}
    return c


def _same_stars(a: Dataset, b: Dataset) -> bool:
    return bool(np.array_equal(a.labels, b.labels) and np.array_equal(a.splits["test"], b.splits["test"]))


def matrix(profile: str = "quick", dataset: str | None = None, con=None, compute: bool = True,
           progress=None) -> Matrix:
    """The transfer matrix of every method of the suite (see the module docstring). compute=False only
    reads cached cells (a page's first paint); progress(done, total, what) is called per computed cell."""
    con = con or registry.connect()
    variants = list(tsuite.VARIANTS)
    names = [tsuite.variant_dataset(profile, dataset, v) for v in variants]
    dss, missing_ds = [], []
    for nm in names:
        try:
            dss.append(Dataset(nm))
        except (DataError, OSError):
            dss.append(None)
            missing_ds.append(nm)
    base = dss[0]
    same = {i: bool(base is not None and d is not None and _same_stars(base, d)) for i, d in enumerate(dss)}
    specs = {(s["model"], s["dataset"]): s for s in suites.suite(SUITE, profile, dataset)}
    V = len(variants)
    r2 = {m: np.full((V, V), math.nan) for m in tsuite.METHODS}
    cells, runs, missing, n_missing, n_test = {}, {}, [], 0, {}
    done, total = 0, len(tsuite.METHODS) * V * (V - 1)
    for m, i in [(m, i) for m in tsuite.METHODS for i in range(V)]:
        spec = specs[(m, names[i])]
        res = _replicates(spec, con) if dss[i] is not None else []
        if not res:
            missing.append(spec)
            continue
        runs[(m, i)] = res
        r0 = res[0]
        n = CEILING_STARS if m == CEILING else None
        n_test[m] = int(min(n or 10 ** 9, dss[i].splits["test"].size))
        holder: dict = {}

        def model(r0=r0, holder=holder):          # loaded once per row, only when a cell is computed
            if "m" not in holder:
                holder["m"] = r0.load_model()
            return holder["m"]

        for j, d in enumerate(dss):
            if d is None:
                continue
            if j == i:
                c = _own_cell(r0, n)
            else:
                c = _transfer_cell(r0, model, d, n, compute)
                if c is None:
                    n_missing += 1
                    continue
                done += 1
                if progress:
                    progress(done, total, f"{m}: {variants[i] or 'as built'} -> {variants[j] or 'as built'}")
            cells[(m, i, j)] = c
            r2[m][i, j] = float(c.metrics["r2"])
    return Matrix(variants, [tsuite.variant_label(v) for v in variants], names, list(tsuite.METHODS),
                  [suites.row_label(specs[(m, names[0])]) for m in tsuite.METHODS], r2, cells, runs, missing,
                  missing_ds, n_missing, same, n_test)


def _replicates(spec: dict, con) -> list:
    """The finished replicates of a spec, replicate 0 first; [] when replicate 0 is not done (a row
    rests on replicate 0's model)."""
    res = report.replicate_results(spec, con)
    return res if res and int(res[0].spec.get("replicate", 0) or 0) == 0 else []


# --------------------------------------------------------------------------- what survives
@dataclass
class Claim:
    text: str                 # the conclusion, as drawn on the data set as built
    verdicts: list            # per variant: (label, verdict, Estimate)
    status: str               # "survives" | "does not survive" | "inconclusive" | "not run"


def _arm(m: Matrix, model: str, i: int, label: str) -> verdicts.Arm | None:
    res = m.runs.get((model, i))
    if not res:
        return None
    from models import MODELS
    return verdicts.Arm(label, list(res), fixed=not getattr(MODELS[model], "seed_dependent", True))


def ranking_claims(m: Matrix) -> list[Claim]:
    """Each ordering of two learned methods verified on the data set as built (gap beyond K combined errors),
    judged again within every other variant (trained and tested on it): it survives when it is verified in
    every variant, does not where it is refuted in one."""
    learned = [x for x in m.methods if x != CEILING]
    label = dict(zip(m.methods, m.method_labels))
    out = []
    for a in learned:
        for b in learned:
            A, B = _arm(m, a, 0, label[a]), _arm(m, b, 0, label[b])
            if a == b or A is None or B is None:
                continue
            est = verdicts.gap(A, B)
            if verdicts.decide(est.value, est.combined, K) != "verified":
                continue
            per = []
            for i in range(1, len(m.variants)):
                Ai, Bi = _arm(m, a, i, label[a]), _arm(m, b, i, label[b])
                if Ai is None or Bi is None:
                    per.append((m.labels[i], "not run", None))
                    continue
                e = verdicts.gap(Ai, Bi)
                per.append((m.labels[i], verdicts.decide(e.value, e.combined, K), e))
            out.append(Claim(f"{label[a]} beats {label[b]} (R² {A.r2:.3f} vs {B.r2:.3f} as built)", per, _status(per)))
    return out


def transfer_claims(m: Matrix) -> list[Claim]:
    """Per method: "trained on the simulator as built, it keeps its R² (drop < DROP) on every variant",
    judged per variant on the drop (own R² minus transferred R², paired on the same stars)."""
    out = []
    for model, lab in zip(m.methods, m.method_labels):
        own = m.cells.get((model, 0, 0))
        if own is None:
            continue
        per = []
        for j in range(1, len(m.variants)):
            c = m.cells.get((model, 0, j))
            if c is None:
                per.append((m.labels[j], "not run", None))
                continue
            e = verdicts.gap(verdicts.Arm("as built", [own], fixed=True), verdicts.Arm(m.labels[j], [c], fixed=True))
            # the claim holds when the drop is below DROP: margin DROP - drop
            per.append((m.labels[j], verdicts.decide(DROP - e.value, e.combined, K), e))
        out.append(Claim(f"{lab} trained as built keeps its R² (drop < {DROP:g}) on every variant", per, _status(per)))
    return out


def _status(per: list) -> str:
    vs = [v for _, v, _ in per]
    if not vs or all(v == "not run" for v in vs):
        return "not run"
    if "refuted" in vs:
        return "does not survive"
    if all(v == "verified" for v in vs):
        return "survives"
    return "inconclusive"


# --------------------------------------------------------------------------- words
def _worst_transfer(m: Matrix, model: str) -> tuple[float, int] | None:
    row = m.r2[model][0, 1:]
    if np.all(np.isnan(row)):
        return None
    j = int(np.nanargmin(row)) + 1
    return float(m.r2[model][0, j]), j


def conclusion(m: Matrix) -> str:
    """One sentence: the largest fall from the simulator as built, and how many ranking claims survive."""
    if not m.cells:
        return ("Not run yet: train the transfer suite (`python -m core train --suite transfer`) to see whether "
                "the lab's conclusions hold when the simulator's assumptions change.")
    falls = []
    for model, lab in zip(m.methods, m.method_labels):
        w = _worst_transfer(m, model)
        if w is not None and not math.isnan(m.r2[model][0, 0]):
            falls.append((m.r2[model][0, 0] - w[0], lab, m.r2[model][0, 0], w[0], m.labels[w[1]]))
    if not falls:
        return ("Each variant has its own runs, but no model has been scored on another variant yet: "
                "compute the transfer cells below.")
    big = max(falls)
    small = min(falls)
    with np.errstate(divide="ignore", invalid="ignore"):
        ranking = ranking_claims(m)
    surv = sum(c.status == "survives" for c in ranking)
    text = (f"Trained on the simulator as built and tested on {big[4]}, {big[1]} falls from R² {big[2]:.2f} to "
            f"{big[3]:.2f}; {small[1]} transfers best (worst case {small[3]:.2f} from {small[2]:.2f}).")
    if ranking:
        text += f" {surv} of {len(ranking)} method orderings found as built hold within every variant."
    return text


def _fmt(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.2f}"


def markdown_table(m: Matrix) -> str:
    """Per method: R² as built, the range of within-variant R², the worst transfer from as built (and to what)."""
    rows = ["| method | R² as built | within each variant | worst transfer from as built | mean off-diagonal |",
            "|---|---|---|---|---|"]
    for model, lab in zip(m.methods, m.method_labels):
        r = m.r2[model]
        diag = np.diag(r)
        w = _worst_transfer(m, model)
        off = r[~np.eye(len(r), dtype=bool)]
        rng = "-" if np.all(np.isnan(diag)) else f"{np.nanmin(diag):.2f}-{np.nanmax(diag):.2f}"
        worst = "-" if w is None else f"{w[0]:.2f} ({m.labels[w[1]]})"
        note = f" (first {m.n_test[model]} test stars)" if model == CEILING and model in m.n_test else ""
        rows.append(f"| {lab}{note} | {_fmt(r[0, 0])} | {rng} | {worst} | "
                    f"{_fmt(float(np.nanmean(off)) if not np.all(np.isnan(off)) else math.nan)} |")
    return "\n".join(rows)


def full_markdown(m: Matrix) -> str:
    """Every matrix (rows: trained on, columns: tested on), for `report --suite transfer` and the benchmarks."""
    out = []
    for model, lab in zip(m.methods, m.method_labels):
        note = f", first {m.n_test[model]} test stars" if model == CEILING and model in m.n_test else ""
        out += [f"**{lab}** (R², rows: trained on, columns: tested on{note})", "",
                "| trained on \\ tested on | " + " | ".join(m.labels) + " |",
                "|---|" + "---|" * len(m.labels)]
        for i, lb in enumerate(m.labels):
            out.append(f"| {lb} | " + " | ".join(_fmt(v) for v in m.r2[model][i]) + " |")
        out.append("")
    return "\n".join(out)


def claims(m: Matrix) -> list[Claim]:
    """Every claim the matrix judges: the method orderings, then each method's transfer from as built.
    (A bootstrap resample of a handful of test stars can have no spread: numpy's warnings are silenced.)"""
    with np.errstate(divide="ignore", invalid="ignore"):
        return ranking_claims(m) + transfer_claims(m)


def claims_markdown(m: Matrix) -> list[str]:
    out = []
    for c in claims(m):
        bad = [lb for lb, v, _ in c.verdicts if v == "refuted"]
        out.append(f"- {c.text}: **{c.status}**" + (f" (not on {', '.join(bad)})" if bad else ""))
    return out


def markdown(profile: str = "quick", dataset: str | None = None, con=None, compute: bool = True) -> str:
    """`python -m core report --suite transfer`: the sentence, the summary table, every matrix, the claims."""
    m = matrix(profile, dataset, con, compute=compute)
    same = "the same stars in every variant" if all(m.same_stars.values()) else \
        "NOT the same stars in every variant (built with other seeds or sizes)"
    parts = [conclusion(m), "", f"Noise {tsuite.NOISE_LEVEL:g}; data sets {', '.join(m.datasets)} ({same}).", "",
             markdown_table(m), "", full_markdown(m)]
    claims = claims_markdown(m)
    if claims:
        parts += ["Which conclusions survive a change of simulator assumptions:", ""] + claims
    if m.missing_runs:
        parts += ["", f"{len(m.missing_runs)} spec(s) not run yet: `python -m core train --suite transfer "
                      f"--profile {profile}`."]
    return "\n".join(parts)


def survival_lines(m: Matrix) -> list[str]:
    """Two lines: the conclusions that survive every variant, and those that do not (with where)."""
    cs = claims(m)
    keep = [c.text.split(" (")[0] for c in cs if c.status == "survives"]
    lost = [c.text.split(" (")[0] + " (not on " + ", ".join(lb for lb, v, _ in c.verdicts if v == "refuted") + ")"
            for c in cs if c.status == "does not survive"]
    open_ = sum(c.status == "inconclusive" for c in cs)
    out = ["- Survive every variant: " + ("; ".join(keep) if keep else "none") + ".",
           "- Do not survive: " + ("; ".join(lost) if lost else "none") + "."]
    if open_:
        out.append(f"- Inconclusive (within {K:g} combined errors somewhere): {open_}.")
    return out


def digest_section(profile: str = "quick", dataset: str | None = None, con=None, compute: bool = False) -> str:
    """For the digest (~12 lines): a heading, the sentence, the summary table and which conclusions survive
    a change of simulator assumptions. Reads cached cells only unless compute; '' when the suite has not run."""
    m = matrix(profile, dataset, con, compute=compute)
    if not m.cells:
        return ""
    lines = ["### Transfer across simulator assumptions", "", conclusion(m), "", markdown_table(m), ""]
    return "\n".join(lines + survival_lines(m))


def page_data(profile: str = "quick", dataset: str | None = None, con=None, compute: bool = False) -> dict:
    """What pages/transfer.py draws, as plain tables: the sentence, the cells (long form), the summary
    and claim tables, and what is missing."""
    import pandas as pd
    m = matrix(profile, dataset, con, compute=compute)
    rows = [{"method": lab, "trained on": m.labels[i], "tested on": m.labels[j], "r2": float(m.r2[model][i, j]),
             "n_test": m.n_test.get(model), "own": i == j}
            for model, lab in zip(m.methods, m.method_labels)
            for i in range(len(m.variants)) for j in range(len(m.variants)) if not math.isnan(m.r2[model][i, j])]
    claim_rows = [{"conclusion": c.text, "status": c.status,
                   **{lb: v for lb, v, _ in c.verdicts}} for c in claims(m)] if m.cells else []
    return {"sentence": conclusion(m), "cells": pd.DataFrame(rows, columns=["method", "trained on", "tested on", "r2",
                                                                               "n_test", "own"]),
            "summary": markdown_table(m), "claims": pd.DataFrame(claim_rows), "labels": m.labels,
            "methods": m.method_labels, "datasets": m.datasets, "same_stars": all(m.same_stars.values()),
            "missing_runs": m.missing_runs, "missing_datasets": m.missing_datasets, "missing_cells": m.missing_cells,
            "noise": tsuite.NOISE_LEVEL, "ceiling_stars": CEILING_STARS}
