"""Are the posteriors honest? Simulation-based calibration and interval coverage (#17 part 4) of the
posterior suite's runs (the NPE family, models/posterior.py) on their test stars. Nothing here fits.

* SBC ranks (Talts et al. 2018, arXiv:1804.06788): for each test star, L posterior samples of each
  label and the rank of the true label among them (how many samples lie below it, 0..L). The test
  stars' labels are draws from the same prior the training set was drawn from and their spectra
  simulations, so for a calibrated posterior the rank is uniform on 0..L. The ranks are counted in
  N_BINS bins of equal width and tested with chi^2 = sum (observed - expected)^2 / expected, N_BINS - 1
  degrees of freedom (p = chi^2 survival function). A U-shaped histogram means over-confident
  posteriors, a hump under-confident, a slope biased.
* Coverage: the fraction of test stars whose true label lies inside the central 68.27 % and 95 %
  interval of its L samples (from the rank: (rank + 0.5) / (L + 1) within level / 2 of one half, so a
  calibrated posterior covers the nominal fraction up to 0.3 point of rounding), per S/N quartile
  (Dataset.split_snr; the edges are the quartiles of every test star at that noise level:
  core/analysis/breakdown) and over all stars. On the test split's own noise draw, with the binomial
  standard error at nominal; and over DRAWS noise draws of the same test stars (the first the split's
  own, the others fresh, tagged CAL_STREAM), with a standard error over stars (each star's mean over
  its draws). Why both: with 113 stars a quartile the binomial SE of a 68 % coverage is 4.4 points, and
  a perfectly calibrated posterior lands within the issue's +-3 points (#17, done when) in all four
  quartiles only 2-4 % of the time; the draws shrink the noise part of that spread. The SBC test uses
  the split's own draw only (its chi^2 needs independent stars).

Recalibrated posteriors. The flow's widths follow S/N too weakly (at noise 0.1 over-confident for the
faintest stars, under-confident for the brightest), so each run is also shown recalibrated on the data
set's calibration set (core/data/calibration.py: new stars of the same recipe, which no fit has seen):
the probability integral transform (PIT, (rank + 0.5) / (L + 1)) of each label's truth on RECAL_DRAWS
noise draws of every calibration star, in RECAL_BINS quantile bins of their S/N; a test star's PIT is
mapped through its S/N bin's empirical CDF of those (Kuleshov et al. 2018, arXiv:1807.00263; per bin, so
that each S/N range is calibrated on its own). Where a posterior is calibrated the map is the identity.
The map changes the intervals and ranks, not the posterior mean.

Per run the ranks, the interval flags and each star's S/N are computed once and cached in the run's
folder (calibration_L<L>_d<draws>_s<seed>.npz, and recalibration_L<L>_d<draws>.npz for the calibration
stars; core/data/cache.atomic_savez; skipped on a read-only disk).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
from scipy import stats

from core import config
from core.analysis import breakdown, report
from core.data import LABELS
from core.data.cache import atomic_savez
from core.engine import registry, suites

SUITE = "posterior"
N_SAMPLES = 199            # L: ranks 0..199, 200 values, N_BINS bins of 20 each
N_BINS = 10
DRAWS = 8                  # noise draws of the test stars for the coverage (the first: the split's own)
CAL_STREAM = 0xCA1B        # tags the extra draws (independent of the fixed draw and of training's fresh ones)
LEVELS = {"68": 0.6827, "95": 0.95}
TOLERANCE = 0.03           # the issue's "within +-3 points" of nominal coverage
P_MIN = 0.01               # the issue's SBC bar: uniform by chi^2 at p > 0.01
CHUNK = 256                # test stars sampled at a time (L x CHUNK x 3 samples in memory)
RECAL_BINS = 5             # S/N quantile bins of the calibration stars, each recalibrated on its own
RECAL_DRAWS = 3            # noise draws of every calibration star (3 x 3,000 PIT values on the quick data)
KINDS = ("as fitted", "recalibrated", "seed ensemble", "seed ensemble, recalibrated")
KIND_NAMES = {KINDS[0]: "As fitted", KINDS[1]: "Recalibrated on new simulated stars (core/data/calibration.py)",
              KINDS[2]: "The seed ensemble as fitted (the replicates' flows as one equal-weight mixture)",
              KINDS[3]: "The seed ensemble, recalibrated"}


class SeedEnsemble:
    """The equal-weight mixture of a spec's training replicates' posteriors (the NPE seed ensemble, #17 part
    4): its n samples for a star are split among the replicates' flows (the first n mod R take one more), so
    the spread between the flows enters the intervals beside each flow's own width."""

    def __init__(self, models: list):
        self.models = list(models)

    def posterior_samples(self, view, n_samples: int, seed: int = 0) -> np.ndarray:
        R = len(self.models)
        return np.concatenate([m.posterior_samples(view, n_samples // R + (r < n_samples % R), seed=seed * R + r)
                               for r, m in enumerate(self.models)], axis=0)


def _ensemble_tag(results: list) -> str:
    """The cache tag of a seed ensemble: its replicate count and a digest of their run ids (a new replicate,
    or a refitted one, is another ensemble)."""
    import hashlib
    return f"_ens{len(results)}_" + hashlib.sha1(",".join(r.run_id for r in results).encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- pure functions on arrays
def sbc_ranks(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rank of each true value among its L samples: samples (L, n, ...) and truth (n, ...) -> int (n, ...)
    in 0..L (the number of samples below the truth)."""
    samples, truth = np.asarray(samples), np.asarray(truth)
    return np.sum(samples < truth[None], axis=0).astype(np.int64)


def rank_histogram(ranks: np.ndarray, L: int, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(counts, expected) of ranks 0..L in n_bins bins of equal width; expected is what uniform ranks give
    (n x the share of the L + 1 rank values each bin holds)."""
    ranks = np.asarray(ranks, np.int64).reshape(-1)
    if ranks.size and (ranks.min() < 0 or ranks.max() > L):
        raise ValueError(f"ranks must lie in 0..{L}")
    which = (np.arange(L + 1) * n_bins) // (L + 1)          # bin of each possible rank value
    counts = np.bincount(which[ranks], minlength=n_bins).astype(np.float64)
    expected = ranks.size * np.bincount(which, minlength=n_bins) / (L + 1)
    return counts, expected


def uniformity(ranks: np.ndarray, L: int, n_bins: int = N_BINS) -> dict:
    """chi^2 test of uniform ranks: {"chi2", "dof", "p", "n"} (p NaN without ranks)."""
    counts, expected = rank_histogram(ranks, L, n_bins)
    n = int(counts.sum())
    if n == 0:
        return {"chi2": math.nan, "dof": n_bins - 1, "p": math.nan, "n": 0}
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    return {"chi2": chi2, "dof": n_bins - 1, "p": float(stats.chi2.sf(chi2, n_bins - 1)), "n": n}


def inside_central(ranks: np.ndarray, L: int, level: float) -> np.ndarray:
    """Whether each true value lies inside the central `level` interval of its L samples, from its rank:
    |(rank + 0.5) / (L + 1) - 0.5| < level / 2."""
    return np.abs((np.asarray(ranks, np.float64) + 0.5) / (L + 1) - 0.5) < level / 2


def star_se(flags: np.ndarray) -> float:
    """Standard error of a coverage measured over several noise draws of the same stars, flags (draws, n):
    the sd over stars of each star's mean over its draws, / sqrt(n) (NaN under two stars)."""
    f = np.asarray(flags, np.float64).reshape(len(flags), -1).mean(axis=0)
    return float(f.std(ddof=1) / math.sqrt(f.size)) if f.size > 1 else math.nan


def coverage_by_bin(inside: dict[str, np.ndarray], bins: np.ndarray, n_bins: int) -> list[dict]:
    """Per bin (bin index per star) and over all stars: n, and for each level in `inside` (name -> bool
    flags (draws, n), or (n,) for one draw) the coverage on the first draw (cov<name>) and over every
    draw (cov<name>_draws, with its standard error over stars se<name>_draws)."""
    bins = np.asarray(bins)
    out = []
    for sel in [bins == b for b in range(n_bins)] + [np.ones(bins.size, bool)]:
        row = {"n": int(sel.sum())}
        for name, flags in inside.items():
            f = np.asarray(flags).reshape(-1, bins.size)[:, sel]
            row[f"cov{name}"] = float(f[0].mean()) if sel.any() else math.nan
            row[f"cov{name}_draws"] = float(f.mean()) if sel.any() else math.nan
            row[f"se{name}_draws"] = star_se(f) if sel.any() else math.nan
        out.append(row)
    return out


def pit_map(ranks: np.ndarray, snr: np.ndarray, cal_pit: np.ndarray, cal_snr: np.ndarray, L: int,
            n_bins: int = RECAL_BINS) -> np.ndarray:
    """Recalibrated ranks: each rank (..., n, 3) of a star of S/N snr (n,) placed among the calibration PITs
    cal_pit (m, 3) of its S/N bin (quantile bins of cal_snr (m,)), back on 0..L. A rank tied with calibration
    PITs (an over-confident posterior puts many truths beyond every sample: rank 0 or L) lands uniformly
    inside the tie (the randomised PIT; a fixed seed, so the answer repeats); the mid-rank would put them all
    in the tie's middle, inside the intervals. With calibrated cal_pit (uniform) the ranks come back
    unchanged up to the calibration set's sampling noise."""
    ranks = np.asarray(ranks)
    edges = np.quantile(cal_snr, np.linspace(0, 1, n_bins + 1))
    cb = np.clip(np.searchsorted(edges[1:-1], cal_snr, side="right"), 0, n_bins - 1)
    tb = np.clip(np.searchsorted(edges[1:-1], np.nan_to_num(snr, nan=0.0), side="right"), 0, n_bins - 1)
    p = (ranks.astype(np.float64) + 0.5) / (L + 1)
    out = np.empty_like(p)
    rng = np.random.default_rng(0x517)
    for b in range(n_bins):
        sel = tb == b
        for j in range(p.shape[-1]):
            ref = np.sort(cal_pit[cb == b, j])
            q = p[..., sel, j]
            lo, hi = np.searchsorted(ref, q, side="left"), np.searchsorted(ref, q, side="right")
            out[..., sel, j] = (lo + rng.uniform(size=q.shape) * (hi - lo)) / max(ref.size, 1)
    return np.clip(np.floor(out * (L + 1)), 0, L).astype(np.int64)


# --------------------------------------------------------------------------- one run
def _chunk(view, i: int, j: int):
    return dataclasses.replace(view, x=view.x[i:j], y=view.y[i:j], index=view.index[i:j])


def run_calibration(result, ds, n_samples: int = N_SAMPLES, seed: int = 0, draws: int = DRAWS,
                    ensemble: list | None = None) -> dict:
    """Ranks (draws, n, 3) of the true labels among n_samples posterior samples, on the test split's own
    noise draw (first) and draws - 1 others; labels y (n, 3), test rows `index`, each star's S/N `snr` and
    L, of one finished posterior run; computed once, cached in its folder. ensemble: every replicate of the
    run's spec (result first): the ranks under their SeedEnsemble, cached in the first one's folder."""
    tag = _ensemble_tag(ensemble) if ensemble else ""
    path = result.artifact / f"calibration_L{int(n_samples)}_d{int(draws)}_s{int(seed)}{tag}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    model = SeedEnsemble([r.load_model() for r in ensemble]) if ensemble else result.load_model()
    spec = result.spec
    view = ds.view("test", spec["noise_level"], spec["inputs"], seed=spec["seed"])
    src = ds.noise_source(view) if draws > 1 else None
    ranks = []
    for d in range(int(draws)):
        v = view if d == 0 else src.draw((CAL_STREAM, d))
        parts = []
        for k, i in enumerate(range(0, len(v.y), CHUNK)):
            part = _chunk(v, i, i + CHUNK)
            s = model.posterior_samples(part, n_samples, seed=(seed * 1_000 + d) * 100_003 + k)
            parts.append(sbc_ranks(s, part.y.astype(np.float64)))
        ranks.append(np.concatenate(parts))
    rows, snr = breakdown.test_snr(ds, spec["noise_level"])
    pos = np.clip(np.searchsorted(rows, view.index), 0, max(rows.size - 1, 0))
    out = {"index": np.asarray(view.index), "y": view.y.astype(np.float64), "ranks": np.stack(ranks),
           "snr": np.where(rows[pos] == view.index, snr[pos], np.nan), "L": np.array(int(n_samples))}
    atomic_savez(path, **out)
    return out


def recalibration(result, ds, n_samples: int = N_SAMPLES, draws: int = RECAL_DRAWS,
                  ensemble: list | None = None) -> dict | None:
    """The PIT (m, 3) of the true labels and the S/N (m,) of every star of the data set's calibration set
    over `draws` noise draws, under one finished posterior run (or the SeedEnsemble of `ensemble`, its
    spec's replicates); None where the data set has no calibration set. Cached in the run's folder, tagged
    with the calibration set's fingerprint."""
    from core.data import SPLITS
    from core.data import calibration as calsets
    cal_ds = calsets.ensure(ds)
    if cal_ds is None:
        return None
    tag = _ensemble_tag(ensemble) if ensemble else ""
    path = result.artifact / f"recalibration_L{int(n_samples)}_d{int(draws)}{tag}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) == cal_ds.fingerprint:
                return {k: z[k] for k in ("pit", "snr")} | {"n": int(z["pit"].shape[0] // max(int(draws), 1))}
    model = SeedEnsemble([r.load_model() for r in ensemble]) if ensemble else result.load_model()
    spec = result.spec
    rows, snr1 = calsets.star_snr(cal_ds)
    nl = float(spec["noise_level"])
    pit, snr = [], []
    for d in range(int(draws)):
        for split in SPLITS:
            v = cal_ds.view(split, nl, spec["inputs"], seed=int(spec["seed"]) + d)
            for k, i in enumerate(range(0, len(v.y), CHUNK)):
                part = _chunk(v, i, i + CHUNK)
                smp = model.posterior_samples(part, n_samples, seed=(d * 7 + SPLITS.index(split)) * 100_003 + k)
                pit.append((sbc_ranks(smp, part.y.astype(np.float64)) + 0.5) / (n_samples + 1))
            snr.append(snr1[np.searchsorted(rows, v.index)] / (nl if nl > 0 else 1.0))
    out = {"pit": np.concatenate(pit), "snr": np.concatenate(snr)}
    atomic_savez(path, fingerprint=np.array(cal_ds.fingerprint), **out)
    return out | {"n": cal_ds.n}


# --------------------------------------------------------------------------- the registry
def load(profile: str = "quick", dataset: str | None = None, con=None) -> list[dict]:
    """Every finished spec of the posterior suite: replicate 0 as fitted and recalibrated, and with two or
    more replicates their seed ensemble, as fitted and recalibrated; per arm method, noise, run_id, replicates
    and its calibration arrays (run_calibration) with the S/N quartile edges of every test star at its
    noise level."""
    from core.data import Dataset
    con = con or registry.connect()
    out = []
    for s in suites.suite(SUITE, profile, dataset):
        res = report.replicate_results(s, con)
        if not res:
            continue
        ds = Dataset(s["dataset"])
        cal = run_calibration(res[0], ds)
        edges = breakdown.snr_edges(breakdown.test_snr(ds, s["noise_level"])[1])
        arm = {"method": suites.row_label(s), "noise": float(s["noise_level"]), "run_id": res[0].run_id,
               "cal": cal, "edges": edges, "posterior": KINDS[0], "replicates": 1}
        out.append(arm)
        rec = recalibration(res[0], ds)
        if rec is not None:
            ranks = pit_map(cal["ranks"], cal["snr"], rec["pit"], rec["snr"], int(cal["L"]))
            out.append(arm | {"posterior": KINDS[1], "cal": cal | {"ranks": ranks}, "recal_stars": rec["n"]})
        if len(res) < 2:
            continue
        ens = run_calibration(res[0], ds, ensemble=res)
        arm = arm | {"posterior": KINDS[2], "cal": ens, "replicates": len(res)}
        out.append(arm)
        rec = recalibration(res[0], ds, ensemble=res)
        if rec is not None:
            ranks = pit_map(ens["ranks"], ens["snr"], rec["pit"], rec["snr"], int(ens["L"]))
            out.append(arm | {"posterior": KINDS[3], "cal": ens | {"ranks": ranks}, "recal_stars": rec["n"]})
    return out


def sbc_table(arms: list[dict]) -> pd.DataFrame:
    """One row per (noise level, label): chi^2, dof, p, n and whether p > P_MIN."""
    rows = []
    for a in arms:
        L = int(a["cal"]["L"])
        for j, label in enumerate(LABELS):
            u = uniformity(a["cal"]["ranks"][0, :, j], L)
            rows.append({"method": a["method"], "posterior": a.get("posterior", KINDS[0]), "noise": a["noise"],
                         "label": label, **u, "uniform": u["p"] > P_MIN})
    return pd.DataFrame(rows, columns=["method", "posterior", "noise", "label", "chi2", "dof", "p", "n", "uniform"])


def rank_counts(arms: list[dict], n_bins: int = N_BINS) -> pd.DataFrame:
    """The rank histograms: one row per (noise level, label, bin) with count and the uniform expectation."""
    rows = []
    for a in arms:
        L = int(a["cal"]["L"])
        for j, label in enumerate(LABELS):
            counts, expected = rank_histogram(a["cal"]["ranks"][0, :, j], L, n_bins)
            for b in range(n_bins):
                rows.append({"noise": a["noise"], "posterior": a.get("posterior", KINDS[0]), "label": label,
                             "bin": b, "rank_lo": b / n_bins,
                             "count": counts[b], "expected": expected[b]})
    return pd.DataFrame(rows)


def coverage_table(arms: list[dict], label: str = "logg") -> pd.DataFrame:
    """One row per (noise level, S/N quartile Q1..Q4 and "all"): S/N range, n, draws, the coverage of the
    68 % and 95 % intervals of `label` on the test split's own draw (cov68, cov95, binomial SE at nominal
    se68, se95) and over every draw (cov68_draws, ..., SE over stars), and whether the coverage over every
    draw is within TOLERANCE of nominal at both levels ("within") and on the own draw alone ("within_own")."""
    j = LABELS.index(label)
    rows = []
    for a in arms:
        cal, edges = a["cal"], a["edges"]
        ranks, L = cal["ranks"][:, :, j], int(cal["L"])
        bins = breakdown.snr_bins(cal["snr"], edges)
        nb = len(edges) - 1
        cells = coverage_by_bin({name: inside_central(ranks, L, lv) for name, lv in LEVELS.items()}, bins, nb)
        for b, c in enumerate(cells):
            q = f"Q{b + 1}" if b < nb else "all"
            lo, hi = (edges[b], edges[b + 1]) if b < nb else (edges[0], edges[-1])
            row = {"method": a["method"], "posterior": a.get("posterior", KINDS[0]), "noise": a["noise"],
                   "label": label, "quartile": q,
                   "snr_lo": float(lo), "snr_hi": float(hi), "draws": int(ranks.shape[0]), **c}
            for name, nominal in LEVELS.items():
                row[f"se{name}"] = breakdown.binomial_se(nominal, c["n"])
            row["within"] = all(abs(c[f"cov{n}_draws"] - v) <= TOLERANCE for n, v in LEVELS.items())
            row["within_own"] = all(abs(c[f"cov{n}"] - v) <= TOLERANCE for n, v in LEVELS.items())
            rows.append(row)
    return pd.DataFrame(rows)


def kinds_present(cov: pd.DataFrame) -> list[str]:
    """The posterior kinds of a coverage table, the headline first: the seed ensemble recalibrated, one
    run recalibrated, the seed ensemble as fitted, one run as fitted."""
    return [k for k in (KINDS[3], KINDS[1], KINDS[2], KINDS[0]) if (cov["posterior"] == k).any()]


def conclusion(sbc: pd.DataFrame, cov: pd.DataFrame) -> str:
    """Whether the log g posteriors pass the issue's bar (coverage over every noise draw within TOLERANCE in
    every S/N quartile, SBC p > P_MIN), and by how much they miss it where they do: the recalibrated ones
    first where there are any, then as fitted."""
    if sbc.empty or cov.empty:
        return "No posterior run has finished yet: no calibration to check."
    if "posterior" not in cov:
        return _verdict(sbc, cov)
    order = kinds_present(cov)
    if order == [KINDS[0]]:
        return _verdict(sbc, cov)
    pick = {k: (sbc[sbc["posterior"] == k], cov[cov["posterior"] == k]) for k in order}
    v = _verdict(*pick[order[0]])
    rest = "; ".join(f"{KIND_NAMES[k].split(' (')[0].lower()}: {_brief(*pick[k])}" for k in order[1:])
    return f"{KIND_NAMES[order[0]]}: {v[0].lower() + v[1:]} Beside it, {rest}."


def _brief(sbc: pd.DataFrame, cov: pd.DataFrame) -> str:
    """'n of m quartiles outside ±3 points, SBC uniform' for a kind that is not the headline."""
    q = cov[cov["quartile"] != "all"]
    return (f"{int((~q['within']).sum())} of {len(q)} quartiles outside ±{TOLERANCE * 100:.0f} points, SBC "
            + ("uniform" if sbc["uniform"].all() else "not uniform"))


def _verdict(sbc: pd.DataFrame, cov: pd.DataFrame) -> str:
    q = cov[cov["quartile"] != "all"]
    draws = int(q["draws"].max())
    span = " / ".join(f"{q[f'cov{name}_draws'].min():.1%}-{q[f'cov{name}_draws'].max():.1%}" for name in LEVELS)
    p_min = sbc.loc[sbc["p"].idxmin()]
    sbc_text = (f"SBC ranks are uniform for every label (smallest chi² p {p_min['p']:.2g}, {p_min['label']})"
                if sbc["uniform"].all() else
                f"SBC ranks are not uniform for {', '.join(sorted(set(sbc.loc[~sbc['uniform'], 'label'])))} "
                f"(smallest chi² p {p_min['p']:.2g}, {p_min['label']} at noise {p_min['noise']:g})")
    head = (f"Over {draws} noise draw{'s' if draws > 1 else ''} of the test stars, log g's 68 % / 95 % intervals "
            f"cover {span} in the S/N quartiles")
    if q["within"].all():
        return f"{head}, within ±{TOLERANCE * 100:.0f} points of nominal everywhere; {sbc_text}."
    miss = {name: (q[f"cov{name}_draws"] - v).abs() for name, v in LEVELS.items()}
    name = max(miss, key=lambda k: miss[k].max())
    w = q.loc[miss[name].idxmax()]
    return (f"{head}: {int((~q['within']).sum())} of {len(q)} quartiles miss ±{TOLERANCE * 100:.0f} points, at worst "
            f"the {name} % interval by {miss[name].max() * 100:.1f} points ({w['quartile']}, noise {w['noise']:g}); "
            f"{sbc_text}.")


def markdown(profile: str = "quick", dataset: str | None = None, arms: list[dict] | None = None) -> str:
    """The coverage per S/N quartile and the SBC tests as markdown tables, the conclusion beneath."""
    arms = load(profile, dataset) if arms is None else arms
    cov, sbc = coverage_table(arms), sbc_table(arms)
    draws = int(cov["draws"].max()) if len(cov) else DRAWS
    lines = [f"Suite `{SUITE}`, profile `{profile}`, data set `{dataset or config.profile(profile)['dataset']}`: "
             f"coverage of the central 68 % / 95 % intervals of log g ({N_SAMPLES} posterior samples per star) "
             f"per S/N quartile, on the test split's own noise draw (± the binomial SE at nominal) and over "
             f"{draws} noise draws of the same stars (± SE over stars); the verdict is on the latter. "
             f"Posterior 'recalibrated': mapped through the PIT of {RECAL_DRAWS} noise draws of every star of the "
             f"data set's calibration set, in {RECAL_BINS} S/N bins.", "",
             "| noise | posterior | S/N quartile | S/N range | stars | 68 % (own draw) | 95 % (own draw) | "
             f"68 % ({draws} draws) | 95 % ({draws} draws) | within ±3 points |", "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in cov.iterrows():
        lines.append(f"| {r['noise']:g} | {r['posterior']} | {r['quartile']} | {r['snr_lo']:.1f}-{r['snr_hi']:.1f} | {r['n']} | "
                     f"{r['cov68']:.1%} ± {r['se68']:.1%} | {r['cov95']:.1%} ± {r['se95']:.1%} | "
                     f"{r['cov68_draws']:.1%} ± {r['se68_draws']:.1%} | {r['cov95_draws']:.1%} ± {r['se95_draws']:.1%} | "
                     f"{'yes' if r['within'] else 'no'} |")
    lines += ["", f"SBC on the test split's own draw: ranks of the true label among {N_SAMPLES} samples in {N_BINS} "
              "bins, chi² test of uniformity.", "",
              "| noise | posterior | label | chi² | dof | p | uniform (p > 0.01) |", "|---|---|---|---|---|---|---|"]
    for _, r in sbc.iterrows():
        lines.append(f"| {r['noise']:g} | {r['posterior']} | {r['label']} | {r['chi2']:.1f} | {r['dof']} | {r['p']:.3g} | "
                     f"{'yes' if r['uniform'] else 'no'} |")
    lines += ["", conclusion(sbc, cov)]
    return "\n".join(lines)
