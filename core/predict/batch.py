"""Many spectra at once (an HDF5 batch in the project's schema): every predictor on every spectrum, the
recommendation per spectrum as for one spectrum (the weighted mean of the best predictors at its S/N), and
the out-of-distribution flags in short words. No MC re-draws, and no medium, velocity or line width is
measured: a batch is taken in the project's schema (air, at rest, at the training resolution)."""
from __future__ import annotations

import time

import numpy as np

from core.data import LABELS, Dataset, View
from core.predict.inference import _one_blas_thread, _run_model
from core.predict.inventory import load, trained_models
from core.predict.prepare import _noise_levels, build_view, prepare
from core.predict.readers.columns import check_units
from core.predict.reference import reference
from core.predict.resample import Resampler
from core.predict.settings import BATCH_BLOCK_VALUES, BATCH_SLOW_MAX, OOD_MISSING, OOD_PCT, SNR_PCT
from core.predict.skill import ensemble, members_by_bin, skill
from core.predict.spectra import Batch, PredictError
from core.predict.words import nl_text


# --------------------------------------------------------------------------- many spectra
def _recommend_batch(cols: dict, sel: np.ndarray, snr: np.ndarray, ran: dict, ds: Dataset) -> None:
    """Per spectrum: the ensemble of its S/N bin (skill.ensemble, as for one spectrum), its value and the
    half-width of its 68 % interval at the spectrum's S/N (calibrated on the data set's calibration set, or
    on the validation split for a grid without one) as the error bar. Where no predictor has stored test
    predictions there is no ranking, and the row's recommendation stays empty (NaN)."""
    if not ran:
        return
    entries = [e for e, _ in ran.values()]
    sk = next((s for s in (skill(e, ds) for e in entries) if s is not None), None)
    bins = sk.bin_of(snr) if sk is not None else np.zeros(len(snr), int)
    logg, err, name = cols["logg"][sel], cols["logg_err"][sel], cols["recommended_model"][sel]
    for b in np.unique(bins):
        here = bins == b
        ens = ensemble(entries, ds, float(snr[here][0]))
        if ens is None:
            continue
        logg[here] = sum(w * ran[e.run_id][1][here] for e, w in zip(ens.members, ens.weights))
        err[here] = ens.half_width(snr[here]) if np.isfinite(ens.k68) else ens.rmse   # the 68 % interval, as for one
        name[here] = ens.members[0].label if len(ens.members) == 1 else \
            "weighted mean of " + ", ".join(e.label for e in ens.members)
    cols["logg"][sel], cols["logg_err"][sel], cols["recommended_model"][sel] = logg, err, name



def predict_batch(batch: Batch, ds: Dataset, noise: str | float = "auto", chunk: int | None = None,
                  normalise: str = "auto", all_models: bool = False, progress=None, research: bool = False):
    """One row per spectrum: S/N, noise level, the recommended value (the weighted mean of the best predictors
    at that spectrum's S/N, as for one spectrum) with its 68 % interval as error bar, the log g of each predictor
    that enters the recommendation at some S/N, on the spectra whose recommendation it enters (empty on the
    others: each predictor runs only there; all_models=True: every predictor on every spectrum, and the slow
    per-spectrum fitters on batches over BATCH_SLOW_MAX too), OOD flags, and the true labels when the file has them. No MC
    re-draws. research=True adds the research models' columns (never recommended). The spectra are prepared and predicted `chunk` at a time (default: blocks of
    about BATCH_BLOCK_VALUES values, so memory does not grow with the batch; a large HDF5 upload is read block
    by block, readers/hdf5.Rows). Returns (DataFrame, summary dict)."""
    if chunk is None:
        chunk = max(1, min(4096, BATCH_BLOCK_VALUES // max(batch.wave.size, ds.wave.size, 1)))
    with _one_blas_thread():
        return _predict_batch(batch, ds, noise, chunk, normalise, all_models, progress, research)


def _predict_batch(batch: Batch, ds: Dataset, noise, chunk: int, normalise: str, all_models: bool, progress,
                   research: bool = False):
    import pandas as pd
    t0 = time.perf_counter()
    entries = trained_models(ds)
    levels = _noise_levels(ds, entries)
    if not levels:
        raise PredictError(f"no trained models for data set {ds.name!r} yet: train some on the Training page or with "
                           f"`python -m core train --suite report --dataset {ds.name}`")
    if noise not in (None, "auto") and float(noise) not in levels:
        raise PredictError(f"no models trained at noise level {float(noise):g} for {ds.name!r}; trained levels: "
                           f"{', '.join(f'{x:g}' for x in levels)}")
    n_all = batch.flux.shape[0]
    from models import MODELS

    def slow(en) -> bool:
        return bool(getattr(MODELS.get(en.spec.get("model")), "per_spectrum_fit", False)) and n_all > BATCH_SLOW_MAX and not all_models

    skipped: dict[str, str] = {e.label: e.why for e in entries if not e.usable and research}
    not_needed: set[str] = set()
    hidden = sum(e.role != "predictor" for e in entries) if not research else 0
    frames = []
    rs = None                                   # the upload grid -> model grid resampler, built once
    plans: dict[float, tuple | None] = {}       # noise level -> members_by_bin, the same for every block
    for i0 in range(0, n_all, chunk):
        sl = slice(i0, i0 + chunk)
        if rs is None:
            check_units(np.asarray(batch.wave, np.float64), ds.wave.astype(np.float64), batch.name)
            rs = Resampler(np.asarray(batch.wave, np.float64), ds.wave.astype(np.float64))
        prep = prepare(ds, batch.wave, batch.flux[sl], None if batch.error is None else batch.error[sl],
                       batch.name, noise, levels, normalise, resampler=rs)
        n = prep.flux.shape[0]
        cols: dict[str, np.ndarray] = {
            "spectrum": np.arange(i0, i0 + n), "snr": prep.snr, "noise_level": prep.noise_level,
            "coverage": prep.covered.mean(axis=1), "scale": prep.scale,
            "logg": np.full(n, np.nan), "logg_err": np.full(n, np.nan), "recommended_model": np.full(n, "", object),
            "pca_distance_pct": np.full(n, np.nan), "ood": np.full(n, "", object)}
        for level in np.unique(prep.noise_level):
            sel = prep.noise_level == level
            ref = reference(ds, float(level))
            ran: dict[str, tuple] = {}          # run id -> (entry, its log g for these spectra)
            # only what the recommendation needs, unless every model is asked for: each S/N bin's ensemble
            # members, each run only on the spectra of its bins (the same columns for every block of the
            # batch; a predictor's column is empty where the recommendation did not use it)
            if float(level) not in plans:
                plans[float(level)] = None if all_models else members_by_bin(
                    [en for en in entries if en.usable and en.noise_level == level and en.role == "predictor"
                     and en.target == "logg" and not slow(en)], ds)
            by_bin = plans[float(level)]
            needed = None if by_bin is None else set().union(*by_bin[1].values())
            bin_here = None if by_bin is None else by_bin[0].bin_of(prep.snr[sel])
            flux_here, err_here, cov_here = prep.flux[sel], prep.error[sel], prep.covered[sel]
            for en in entries:
                if not en.usable or en.noise_level != level or (en.role != "predictor" and not research):
                    continue
                if needed is not None and en.role == "predictor" and en.run_id not in needed and not slow(en):
                    not_needed.add(en.run_id)
                    continue
                try:
                    model = load(en)
                except Exception as ex:  # noqa: BLE001 - one broken run must not stop the batch
                    skipped[en.label] = f"failed to load: {type(ex).__name__}: {str(ex)[:100]}"
                    continue
                if model.per_spectrum_fit and n_all > BATCH_SLOW_MAX and not all_models:
                    skipped[en.label] = (f"a per-spectrum fit (slow); skipped for batches over {BATCH_SLOW_MAX} "
                                         f"spectra (CLI: --all-models)")
                    continue
                rows = slice(None)              # every spectrum at this level, or only those of its bins
                if needed is not None and en.run_id in needed:
                    rows = np.isin(bin_here, [b for b, ids in by_bin[1].items() if en.run_id in ids])
                    if not rows.any():
                        continue
                view = build_view(en, flux_here[rows], err_here[rows], cov_here[rows], model)
                try:
                    if model.fits_all_labels:
                        lab = np.concatenate([model.label_fit(View(view.x[j:j + 256], view.y[j:j + 256],
                                                                   view.index[j:j + 256], view.channels,
                                                                   view.wave))[0]
                                              for j in range(0, len(view.x), 256)])
                        preds = {"logg": lab[:, 1], "teff": lab[:, 0], "mh": lab[:, 2]}
                    else:
                        preds = {en.target: _run_model(en, view)[0]}
                except Exception as ex:  # noqa: BLE001 - one broken model must not stop the batch
                    skipped[en.label] = f"failed: {type(ex).__name__}: {str(ex)[:100]}"
                    continue
                for target, v in preds.items():
                    full = np.full(len(flux_here), np.nan)
                    full[rows] = v
                    preds[target] = full
                    col = f"{target} [{en.label}]" + ("" if target == en.target else " (by-product)")
                    cols.setdefault(col, np.full(n, np.nan))[sel] = full
                if en.role == "predictor" and en.target == "logg":
                    ran[en.run_id] = (en, preds["logg"])
            _recommend_batch(cols, sel, prep.snr[sel], ran, ds)
            lo, hi = np.percentile(ref.snr, SNR_PCT[0]), np.percentile(ref.snr, SNR_PCT[1])
            dpct = np.searchsorted(ref.ref_dist, prep.dist[sel], side="right") / max(1, ref.ref_dist.size) * 100
            cpct = np.searchsorted(ref.ref_chi2, prep.chi2[sel], side="right") / max(1, ref.ref_chi2.size) * 100
            words = []
            for d, c, snr_i in zip(dpct, cpct, prep.snr[sel]):
                w = (["shape unlike the training spectra (PCA distance)"] if d > OOD_PCT else []) \
                    + (["features the training spectra lack (PCA residual)"] if c > OOD_PCT else []) \
                    + (["S/N outside the training range"] if snr_i < lo or snr_i > hi else []) \
                    + (["partial wavelength coverage"] if 1 - prep.covered[0].mean() > OOD_MISSING else [])
                words.append("; ".join(w))
            cols["ood"][sel] = words
            cols["pca_distance_pct"][sel] = dpct
        if batch.labels is not None:
            for j, k in enumerate(LABELS):
                cols[f"true_{k}"] = batch.labels[sl, j]
        frames.append(pd.DataFrame(cols))
        if progress:
            progress(min(1.0, (i0 + n) / n_all), f"{i0 + n:,} of {n_all:,} spectra")
    df = pd.concat(frames, ignore_index=True)
    dt = time.perf_counter() - t0
    summary = {"file": batch.name, "format": batch.fmt, "notes": batch.notes, "dataset": ds.name,
               "spectra": int(len(df)), "seconds": round(dt, 3), "spectra_per_s": round(len(df) / max(dt, 1e-9), 1),
               "flagged": int((df["ood"] != "").sum()),
               "noise_levels": {nl_text(k): int(v) for k, v in df["noise_level"].value_counts().sort_index().items()},
               "skipped": [{"model": k, "why": v} for k, v in skipped.items()], "research_hidden": int(hidden),
               "models": "every predictor" if all_models else ("the predictors the recommendation uses at some S/N, each "
                                                                "on the spectra whose recommendation it enters"),
               "not_needed": len(not_needed),
               "error_bar": "the half-width of the 68 % interval of the recommendation (the weighted mean of the "
                            "best predictors at that spectrum's S/N) at that S/N and noise level, calibrated on new "
                            "simulated stars (the data set's calibration set; the validation stars for a grid "
                            "without one; no MC re-draws in batch mode)"}
    if batch.labels is not None and df["logg"].notna().any():
        r = df["logg"] - df["true_logg"]
        summary["rmse_vs_true_logg"] = float(np.sqrt(np.nanmean(r ** 2)))
    return df, summary


