"""Is a difference between runs real? The statistics behind the digest's verdicts (core/analysis/digest.py).

A number of ours is an *arm*: the finished training replicates of one spec (`train --seeds N`; replicate 0
is the spec's own run). The replicates of a spec, and every spec of a noise level, are scored on the same
test stars (same rows, same noise draw), so arms can be compared star by star.

A rule decides on a *statistic* f of the arms' mean R^2 over their replicates: a gap m_a - m_b, a
fraction m_b / m_a, or one arm's mean against a fixed number. Its uncertainty has two parts:

* SE_boot, test-set sampling: a paired bootstrap over the test stars. Each resample draws the same stars
  for every run of every arm (paired on the test index stored in predictions.npz), recomputes each run's
  R^2 on them, averages the runs of each arm and applies f; SE_boot is the sd of f over the resamples.
* sd_seed, training spread: an arm with N >= 2 replicates whose R^2 (on the full test set) have sample
  sd s (ddof = 1) has a mean known to s^2 / N. f carries these to first order (delta method):
      sd_seed^2 = sum over arms of (df/dm_i)^2 s_i^2 / N_i,
  which for a gap m_a - m_b is s_a^2/N_a + s_b^2/N_b, the variance of the difference of two replicate
  means (Welch). An arm with one replicate has no estimate of s: its term is left out (the known part
  is a lower bound) and the text names the arm; when no arm has two replicates the text says
  "single run, training spread unknown" and the verdict rests on SE_boot alone. An arm marked `fixed`
  (a family whose fit uses no seed, Model.seed_dependent False: Ridge, the Cannon, the ceiling) has
  no training spread, s = 0.

combined = sqrt(SE_boot^2 + sd_seed^2). A rule states its hypothesis as a margin that is positive when
the hypothesis holds (statistic - threshold, or threshold - statistic); `decide` calls it verified when
margin > K_SIGMA combined errors, refuted when margin < -K_SIGMA combined errors, inconclusive in
between. With one run per arm and no stored predictions the combined error is 0 and the verdict is the
plain comparison with the threshold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

K_SIGMA = 2.0     # a margin inside this many combined errors is inconclusive
N_BOOT = 300      # bootstrap resamples of the test stars
SINGLE = "single run, training spread unknown"


@dataclass
class Arm:
    """The replicates of one spec: results with .run_id and .metrics (and .predictions() when stored)."""
    label: str
    runs: list
    fixed: bool = False          # no training spread by construction (its fit uses no seed)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def run_id(self) -> str:
        return self.runs[0].run_id

    def values(self, metric: str = "r2") -> np.ndarray:
        return np.array([float(r.metrics[metric]) for r in self.runs if r.metrics.get(metric) is not None])

    def mean(self, metric: str = "r2") -> float:
        v = self.values(metric)
        return float(v.mean()) if v.size else float("nan")

    @property
    def r2(self) -> float:
        return self.mean("r2")

    def sd(self, metric: str = "r2") -> float | None:
        """Sample sd over the replicates; None with one replicate (0 for a fixed arm)."""
        if self.fixed:
            return 0.0
        v = self.values(metric)
        return float(v.std(ddof=1)) if v.size > 1 else None

    def fmt(self, metric: str = "r2", seeds_word: str = " seeds") -> str:
        """'0.593' for one run, '0.593 ± 0.004 (2 seeds)' for the mean and sd over replicates."""
        if self.n < 2:
            return f"{self.mean(metric):.3f}"
        return f"{self.mean(metric):.3f} ± {self.sd(metric):.3f} ({self.n}{seeds_word})"


def as_arm(x, label: str = "", fixed: bool | None = None) -> Arm | None:
    """An Arm from an Arm, a list of replicate results or one result (None stays None)."""
    if x is None:
        return None
    if isinstance(x, Arm):
        a = x
    elif isinstance(x, (list, tuple)):
        a = Arm("", list(x))
    else:
        a = Arm("", [x])
    return replace(a, label=label or a.label, fixed=a.fixed if fixed is None else fixed)


@dataclass
class Estimate:
    """A statistic of some arms with its two errors (see the module docstring)."""
    value: float
    se_boot: float | None                      # None: predictions not stored or not on the same stars
    sd_seed: float                             # the known part of the training spread
    seeds: list = field(default_factory=list)  # replicates per distinct arm
    unknown: list = field(default_factory=list)  # labels of arms whose training spread is unknown

    @property
    def combined(self) -> float:
        return math.sqrt((self.se_boot or 0.0) ** 2 + self.sd_seed ** 2)

    @property
    def single(self) -> bool:
        return all(n < 2 for n in self.seeds)

    def describe(self, name: str = "gap", pct: bool = False) -> str:
        """'gap 0.044 ± 0.021 (2 seeds, bootstrap 0.006)'; pct writes the statistic as a percentage."""
        f = (lambda v: f"{100 * v:.0f} %") if pct else (lambda v: f"{v:.3f}")
        if self.single:
            seeds = SINGLE
        else:
            ns = sorted(set(self.seeds))
            seeds = f"{ns[0]} seeds" if len(ns) == 1 else "seeds " + "/".join(str(n) for n in self.seeds)
            if self.unknown:
                seeds += "; training spread unknown for " + ", ".join(self.unknown)
        boot = f"bootstrap {f(self.se_boot)}" if self.se_boot is not None else "no bootstrap (predictions not stored)"
        return f"{name} {f(self.value)} ± {f(self.combined)} ({seeds}, {boot})"


def decide(margin: float, err: float, k: float = K_SIGMA) -> str:
    """verified / refuted / inconclusive for a margin that is positive when the hypothesis holds."""
    if abs(margin) <= k * err:
        return "inconclusive"
    return "verified" if margin > 0 else "refuted"


def judge(est: Estimate, threshold: float, above: bool = True, k: float = K_SIGMA) -> str:
    """The verdict on 'statistic > threshold' (above) or 'statistic < threshold' (not above)."""
    return decide(est.value - threshold if above else threshold - est.value, est.combined, k)


# --------------------------------------------------------------------------- the estimate
_PRED_CACHE: dict = {}


def _predictions(run) -> dict | None:
    key = (getattr(run, "run_id", None), str(getattr(run, "artifact", "")))
    if key[1] and key in _PRED_CACHE:
        return _PRED_CACHE[key]
    try:
        p = run.predictions()
        p = {k: np.asarray(p[k]) for k in ("index", "y_true", "y_pred")}
    except (AttributeError, OSError, KeyError, TypeError):
        return None
    if key[1]:
        if len(_PRED_CACHE) > 512:
            _PRED_CACHE.clear()
        _PRED_CACHE[key] = p
    return p


def _paired(arms: Sequence[Arm]):
    """(y, [[y_pred of each run] per arm]) on the test stars every run shares, or None."""
    preds = [[_predictions(r) for r in a.runs] for a in arms]
    if any(p is None for ps in preds for p in ps):
        return None
    common = None
    for ps in preds:
        for p in ps:
            common = p["index"] if common is None else np.intersect1d(common, p["index"])
    if common is None or common.size < 2:
        return None
    y, out = None, []
    for ps in preds:
        row = []
        for p in ps:
            order = np.argsort(p["index"], kind="stable")
            pos = order[np.searchsorted(p["index"][order], common)]
            yt = p["y_true"][pos].astype(np.float64)
            if y is None:
                y = yt
            elif not np.allclose(y, yt):        # not the same stars' labels: nothing to pair
                return None
            row.append(p["y_pred"][pos].astype(np.float64).reshape(-1))
        out.append(row)
    return y, out


def _boot(arms: Sequence[Arm], f: Callable, n_boot: int, seed: int) -> float | None:
    pr = _paired(arms)
    if pr is None:
        return None
    y, preds = pr
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, y.size, (n_boot, y.size))
    yb = y[idx]
    ss_tot = ((yb - yb.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    means = [np.mean([1.0 - ((y - p) ** 2)[idx].sum(axis=1) / ss_tot for p in row], axis=0) for row in preds]
    return float(np.std(f(means)))


def estimate(arms: Sequence[Arm], f: Callable, n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    """f of the arms' mean R^2 (f takes a list of means, one per arm, and must work elementwise on numpy
    arrays: `lambda m: m[0] - m[1]`), with its paired bootstrap SE and its training spread."""
    arms = list(arms)
    m = [a.r2 for a in arms]
    value = float(f(m))
    se = _boot(arms, f, n_boot, seed)
    groups: dict = {}                        # the same arm twice is one arm (its terms are correlated)
    for i, a in enumerate(arms):
        groups.setdefault(tuple(r.run_id for r in a.runs), []).append(i)
    var, seeds, unknown = 0.0, [], []
    for pos in groups.values():
        a = arms[pos[0]]
        h = 1e-4
        up, dn = list(m), list(m)
        for i in pos:
            up[i] += h
            dn[i] -= h
        g = (float(f(up)) - float(f(dn))) / (2 * h)
        seeds.append(a.n)
        if abs(g) < 1e-9:
            continue
        s = a.sd()
        if s is None:
            unknown.append(a.label or a.run_id)
        else:
            var += g * g * s * s / a.n
    return Estimate(value, se, math.sqrt(var), seeds, unknown)


def gap(a: Arm, b: Arm, **kw) -> Estimate:
    """mean R^2 of a minus that of b."""
    return estimate([a, b], lambda m: m[0] - m[1], **kw)


def level(a: Arm, **kw) -> Estimate:
    """One arm's mean R^2 (against a fixed number)."""
    return estimate([a], lambda m: m[0], **kw)


def fraction(a: Arm, b: Arm, **kw) -> Estimate:
    """mean R^2 of b as a fraction of that of a."""
    return estimate([a, b], lambda m: m[1] / m[0], **kw)
