"""Running the trained models on a prepared upload: one spectrum (`predict`) with an uncertainty per
model, a recommended value and an out-of-distribution check, or a batch (`predict_batch`)."""
from __future__ import annotations

import time

import numpy as np

from core.data import LABELS, Dataset, View
from core.predict import frame, physics_check
from core.predict.inventory import Entry, load, trained_models
from core.predict.prepare import Prepared, _noise_levels, build_view, prepare
from core.predict.reference import Reference, _pct, reference
from core.predict.settings import (
    CA_TRIPLET,
    COARSE_FACTOR,
    MC_DRAWS,
    OOD_MISSING,
    OOD_PCT,
    SNR_PCT,
    UNCERTAINTY_KINDS,
)
from core.predict.skill import ensemble, skill
from core.predict.spectra import PredictError, Spectrum
from core.predict.words import nl_text, ordinal

C_KMS = frame.C_KMS
FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))     # a Gaussian's FWHM / sigma


def _saliency_of(entries: list[Entry], best: dict, f: np.ndarray, e: np.ndarray, covered: np.ndarray):
    """Per-pixel saliency of the recommended model for this spectrum (the model's own
    spectrum_saliency), or None: a missing saliency only hides a chart, it never fails the answer."""
    try:
        en = next(x for x in entries if x.run_id == best["run_id"])
        model = load(en)
        sal = model.spectrum_saliency(build_view(en, f[:1], e[:1], covered, model))
        return None if sal is None else sal | {"model": best["model"]}
    except Exception:  # noqa: BLE001 - a missing saliency only hides a chart
        return None


def _run_model(entry: Entry, view: View):
    """Mean (n,) or (n, 3) for a Cannon asked for all labels, and the model's own std or None."""
    model = load(entry)
    out = model.predict(view)
    mean, std = out if isinstance(out, tuple) else (out, None)
    return np.asarray(mean, np.float64).reshape(-1), (None if std is None else np.asarray(std, np.float64).reshape(-1))


# --------------------------------------------------------------------------- one spectrum
def example(ds: Dataset, k: int = 0, noise_level: float = 0.1, seed: int = 0) -> Spectrum:
    """Test spectrum k of the data set exactly as the models were scored on it (same noise draw as
    Dataset.view('test', noise_level, 'flux+error', seed)), with its true labels."""
    test = ds.split_rows("test")
    if test.size == 0:
        raise PredictError(f"data set {ds.name!r} has an empty test split: no example")
    k = int(k) % test.size
    rows = test[k:k + 1]
    noisy, flux, err = ds.noisy(rows, noise_level, seed)
    noisy = noisy[0]
    t = ds.labels[rows[0]]
    return Spectrum(ds.wave.astype(np.float64), noisy.astype(np.float64), (noise_level * err[0]).astype(np.float64),
                    name=f"example: test star {k} of {ds.name} at noise level {nl_text(noise_level)}",
                    fmt="a test spectrum of the active data set, with the noise draw the models were scored on",
                    truth={"teff": float(t[0]), "logg": float(t[1]), "mh": float(t[2]), "row": int(rows[0]),
                           "noise_level": float(noise_level)},
                    rv=0.0, rv_how="a test star of the data set: at rest, not measured", native=True)


def _one_blas_thread():
    """BLAS on one thread while predicting: the matrices here are small, and on a 2-core machine (or a
    busy one) OpenBLAS's thread start-up and contention cost more than they save (measured: 0.30 s ->
    0.04 s for one spectrum, 1,155 -> 2,834 spectra/s in a batch on a loaded 2-core machine)."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=1, user_api="blas")
    except Exception:  # noqa: BLE001 - threadpoolctl is optional (it comes with scikit-learn)
        import contextlib
        return contextlib.nullcontext()


def predict(item: Spectrum, ds: Dataset, noise: str | float = "auto", mc: int = MC_DRAWS, seed: int = 0,
            normalise: str = "auto", research: bool = False, medium: str = "auto", rv: str | float = "auto",
            resolution: str | float = "auto", physics: bool = False) -> dict:
    """Everything the Predict page and the CLI show for one spectrum, as a JSON-able dict (plus the
    arrays for the plot under the key '_grid', which to_json drops). Only the report suite's methods
    on flux or flux + error answer; research=True adds every other usable run (ablation controls,
    sweeps, latent probes, the physics ceiling) to the table, never to the recommendation.
    medium: 'auto' (what the file says; unknown is taken as the data set's) | 'air' | 'vacuum'.
    rv: 'auto' (measure the radial velocity and shift to rest) | 'none' | a known velocity in km/s.
    resolution: 'auto' (measure the line width; degrade a sharper spectrum to the training resolution,
    flag a broader one) | 'as-is' | the upload's resolving power R, when it is known (a number).
    physics: also fit the simulator to the spectrum (physics_check: its labels with their covariance, the
    model spectrum and its reduced chi^2, an out-of-distribution flag); about 1 s a spectrum on 2 cores."""
    with _one_blas_thread():
        return _predict(item, ds, noise, mc, seed, normalise, research, medium, rv, resolution, physics)


def declared_resolution(mode) -> float | None:
    """A resolving power the user declared (a number, or a string of one), None for 'auto' / 'as-is'."""
    if mode in ("auto", "as-is", None):
        return None
    try:
        r = float(mode)
    except (TypeError, ValueError):
        raise PredictError(f"resolution must be auto, as-is or a resolving power R such as 11500, got {mode!r}") from None
    if not 100.0 <= r <= 1e6:
        raise PredictError(f"resolution: a resolving power R = lambda / FWHM between 100 and 10^6, got {r:g}")
    return r


def _declared(item: Spectrum, wave: np.ndarray, ds: Dataset, info: dict, r_up: float):
    """The upload at the data set's resolution, its resolving power r_up declared by the user: convolved down
    when it is sharper, reported (and flagged out of distribution) when it is broader."""
    from core.data.matched import dataset_resolution
    r_ds = dataset_resolution(ds)
    if r_ds is None:
        info["resolution"] = {"ratio": float("nan"), "how": f"declared R = {r_up:.0f}; this data set's resolution is "
                              f"unknown (imported): kept as uploaded"}
        return wave, item.flux, item.error
    s_up, s_t = C_KMS / FWHM / r_up, C_KMS / FWHM / r_ds
    b = {"ratio": s_up / s_t, "sigma_upload_kms": s_up, "sigma_training_kms": s_t, "declared": r_up}
    info["resolution"] = b
    if r_up > 1.05 * r_ds:
        k = float(np.sqrt(s_t ** 2 - s_up ** 2))
        b.update(how=f"declared R = {r_up:.0f}, sharper than the models' R = {r_ds:.0f}: degraded to theirs with a "
                     f"Gaussian of σ {k:.0f} km/s", degraded_kms=k, ratio=1.0)
        return frame.degrade(wave, item.flux, item.error, k, grid=(float(ds.wave[0]), float(ds.wave[-1])))
    b["how"] = (f"declared R = {r_up:.0f}, lower than the models' R = {r_ds:.0f}" if r_up < r_ds / 1.05 else
                f"declared R = {r_up:.0f}, the models' resolution (R = {r_ds:.0f})")
    return wave, item.flux, item.error


def matched_resolution(item: Spectrum, wave: np.ndarray, ds: Dataset, info: dict, mode="auto"):
    """(wave, flux, error) at the training spectra's resolution: an upload whose lines are narrower than
    theirs (frame.line_broadening) is convolved down to it; broader lines are reported (and flagged out
    of distribution), they cannot be sharpened. mode: 'auto', 'as-is' or the upload's declared R."""
    r_up = declared_resolution(mode)
    if r_up is not None:
        return _declared(item, wave, ds, info, r_up)
    if mode not in ("auto", "as-is"):
        raise PredictError(f"resolution must be auto, as-is or a resolving power R, got {mode!r}")
    snr = _snr_per_model_pixel(item, wave, ds)
    if mode == "as-is":
        info["resolution"] = {"ratio": float("nan"), "how": "kept as uploaded (asked so)"}
        return wave, item.flux, item.error
    if item.native or snr < RV_SNR_MIN:
        info["resolution"] = {"ratio": float("nan"), "how": "a spectrum of the data set: at its resolution"
                              if item.native else f"line width not measured (S/N {snr:.0f} < {RV_SNR_MIN:.0f}, or no "
                              f"error column)"}
        return wave, item.flux, item.error
    ref = reference(ds, 1.0)
    try:
        b = frame.line_broadening(wave, item.flux, 0.0, ds.wave, ref.mu, ref.comps)
    except Exception:  # noqa: BLE001 - a width that cannot be measured leaves the spectrum as it is
        b = {"ratio": float("nan")}
    info["resolution"] = b
    r = b.get("ratio", float("nan"))
    if not np.isnan(r) and r < frame.NARROWER:
        k = float(np.sqrt(b["sigma_training_kms"] ** 2 - b["sigma_upload_kms"] ** 2))
        b["how"] = (f"lines narrower than the training spectra's (σ {b['sigma_upload_kms']:.0f} against "
                    f"{b['sigma_training_kms']:.0f} km/s: a higher resolution): degraded to theirs with a Gaussian "
                    f"of σ {k:.0f} km/s")
        b["degraded_kms"] = k
        return frame.degrade(wave, item.flux, item.error, k, grid=(float(ds.wave[0]), float(ds.wave[-1])))
    b["how"] = ("lines as broad as the training spectra's" if not np.isnan(r) and r <= frame.BROADER else
                f"lines broader than the training spectra's (σ {b.get('sigma_upload_kms', float('nan')):.0f} against "
                f"{b.get('sigma_training_kms', float('nan')):.0f} km/s): a lower resolution than theirs, fast "
                f"rotation or a galaxy's velocity dispersion" if not np.isnan(r) else "line width not measured")
    return wave, item.flux, item.error


def _snr_per_model_pixel(item: Spectrum, wave: np.ndarray, ds: Dataset) -> float:
    """The upload's median S/N scaled to the model grid's pixels (finer pixels carry less each): the same
    measure prepare() takes after resampling; 0 without an error column."""
    if item.error is None:
        return 0.0
    per_pixel = float(np.median(item.flux / item.error))
    up = float(np.median(np.diff(np.log(wave))))
    model = float(np.median(np.diff(np.log(ds.wave.astype(np.float64)))))
    return per_pixel * float(np.sqrt(max(model / up, 1.0))) if up > 0 else per_pixel


def rest_frame(item: Spectrum, ds: Dataset, medium: str = "auto", rv: str | float = "auto") -> tuple[np.ndarray, dict]:
    """The upload's wavelengths in the data set's medium and at rest, and what was done to them."""
    target = str(ds.attrs.get("wavelength_medium") or "air")
    if medium not in ("auto", *frame.MEDIA):
        raise PredictError(f"medium must be auto, air or vacuum, got {medium!r}")
    declared = item.medium if medium == "auto" else medium
    how_m = item.medium_how if medium == "auto" else "chosen by the user"
    try:
        wave, words = frame.to_medium(item.wave, declared, target)
    except ValueError as e:
        raise PredictError(str(e)) from None
    info = {"medium": declared, "medium_source": how_m, "medium_how": words, "grid_medium": target}
    if rv in (None, "none"):
        info["rv"] = {"value": 0.0, "sigma": None, "applied": False, "how": "not corrected (asked so)"}
        return wave, info
    if rv == "auto" and item.rv is not None:
        info["rv"] = {"value": float(item.rv), "sigma": None, "applied": bool(item.rv), "how": item.rv_how}
        return (wave / frame.doppler(item.rv) if item.rv else wave), info
    if rv != "auto":
        try:
            v = float(rv)
        except (TypeError, ValueError):
            raise PredictError(f"rv must be auto, none or a velocity in km/s, got {rv!r}") from None
        try:
            d = frame.doppler(v)
        except ValueError as e:
            raise PredictError(str(e)) from None
        info["rv"] = {"value": v, "sigma": None, "applied": v != 0.0, "how": "given by the user"}
        return wave / d, info
    ref = reference(ds, 1.0)   # the template: the mean training flux and its components (noise-free)
    r = frame.estimate_rv(wave, item.flux, item.error, ds.wave, ref.mu, ref.comps)
    # a velocity consistent with rest (within 2 sigma, or under 1 km/s) is not applied: resampling by a
    # shift of a few hundredths of a pixel changes log g by nothing, but adds residuals at high S/N
    at_rest = r["ok"] and abs(r["value"]) <= max(frame.REST_KMS, 2.0 * (r["sigma"] or 0.0))
    applied = r["ok"] and not at_rest
    how = (f"{r['value']:+.2f}" + (f" ± {r['sigma']:.2f}" if r["sigma"] is not None else "")
           + " km/s: consistent with rest, not applied; " + r["how"]) if at_rest else r["how"]
    info["rv"] = {"value": r["value"] if applied else 0.0, "measured": r.get("measured"), "sigma": r["sigma"],
                  "applied": applied, "peak": r["peak"], "how": how, "trusted": r["ok"]}
    return (wave / frame.doppler(r["value"]) if applied else wave), info


def _predict(item: Spectrum, ds: Dataset, noise, mc: int, seed: int, normalise: str, research: bool = False,
             medium: str = "auto", rv: str | float = "auto", resolution: str = "auto", physics: bool = False) -> dict:
    t0 = time.perf_counter()
    entries = trained_models(ds)
    usable = [e for e in entries if e.usable and (research or e.role == "predictor")]
    levels = _noise_levels(ds, entries)
    if not usable or not levels:
        raise PredictError(f"no predictors for data set {ds.name!r} yet (an upload is answered by the report suite's "
                           f"methods): train them on the Training page or with "
                           f"`python -m core train --suite report --dataset {ds.name}`")
    if noise not in (None, "auto"):
        noise = float(noise)
        if noise not in levels:
            raise PredictError(f"no models trained at noise level {noise:g} for {ds.name!r}; trained levels: "
                               f"{', '.join(f'{x:g}' for x in levels)}")
    wave, frame_info = rest_frame(item, ds, medium, rv)
    wave, flux, error = matched_resolution(item, wave, ds, frame_info, resolution)
    prep = prepare(ds, wave, flux, error, item.name, noise, levels, normalise)
    nl = float(prep.noise_level[0])
    ref = reference(ds, nl)
    covered = prep.covered[0]
    f, e = prep.flux, prep.error
    # re-draws of the input: noise on the covered pixels (filled ones stay as they are), and, where the
    # continuum level was fitted, the level too (its RMS error on validation spectra)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((mc, f.shape[1])) * covered[None, :] if mc else np.zeros((0, f.shape[1]))
    lvl = 1.0 + (ref.scale_rms * rng.standard_normal((len(z), 1)) if prep.fitted[0] else np.zeros((len(z), 1)))
    f_mc = np.vstack([f, (f + e * z) * lvl])
    e_mc = np.repeat(e, 1 + len(z), axis=0)
    cov_mc = np.repeat(prep.covered[:1], 1 + len(z), axis=0)
    rows, others, skipped, hidden = [], [], [], 0
    for en in entries:
        if en.noise_level != nl:
            continue
        if en.role != "predictor" and not research:   # unusable runs are research results too
            hidden += 1
            continue
        if not en.usable:
            skipped.append({"model": en.label, "why": en.why})
            continue
        try:
            model = load(en)
            if model.fits_all_labels:   # a chi^2 fit: its formal 1-sigma, no re-draws (slow per spectrum)
                view = build_view(en, f, e, prep.covered[:1], model)
                lab, sig3 = model.label_fit(view)
                preds = {k: (lab[0, i], sig3[0, i], UNCERTAINTY_KINDS["fisher"]) for i, k in enumerate(LABELS)}
            elif model.per_spectrum_fit:   # slow per spectrum: one pass, no spread
                m, own = _run_model(en, build_view(en, f, e, prep.covered[:1], model))
                preds = {en.target: (m[0], np.nan if own is None else own[0],
                                     UNCERTAINTY_KINDS["own"] if own is not None else "none (a single fit)")}
            else:
                view = build_view(en, f_mc, e_mc, cov_mc, model)
                m, own = _run_model(en, view)
                if own is not None:
                    preds = {en.target: (m[0], own[0], UNCERTAINTY_KINDS["own"])}
                elif len(m) > 1:
                    kind = UNCERTAINTY_KINDS["mc_level" if prep.fitted[0] else "mc"]
                    preds = {en.target: (m[0], np.std(m[1:], ddof=1), f"{kind} ({len(m) - 1} draws)")}
                else:
                    preds = {en.target: (m[0], np.nan, "none")}
        except Exception as ex:  # noqa: BLE001 - one broken model must not hide the others
            skipped.append({"model": en.label, "why": f"failed: {type(ex).__name__}: {str(ex)[:120]}"})
            continue
        bad = [k for k, (value, _, _) in preds.items() if not np.isfinite(value)]
        if bad:
            skipped.append({"model": en.label, "why": f"failed: a non-finite {', '.join(bad)} for this spectrum"})
            continue
        for target, (value, sig, kind) in preds.items():
            by_product = target != en.target
            value, sig = float(value), float(sig)
            sk = None if by_product else skill(en, ds)
            st = None if sk is None else skill(en, ds, "test")
            b = None if sk is None else int(sk.bin_of(prep.snr[0]))
            row = {"model": en.label, "name": en.spec["model"], "inputs": en.spec.get("inputs"), "target": target,
                   "role": en.role, "noise_level": nl, "value": value, "uncertainty": sig, "uncertainty_kind": kind,
                   "test_rmse": None if by_product else en.metrics.get("rmse"),
                   "test_r2": None if by_product else en.metrics.get("r2"),
                   "val_rmse_at_snr": None if b is None else float(sk.rmse[b]),
                   "val_half68_at_snr": None if b is None else float(sk.half68[b]),
                   "val_stars_at_snr": None if b is None else int(sk.n[b]),
                   "test_rmse_at_snr": None if st is None else float(st.rmse[b]),
                   "test_bias_at_snr": None if st is None else float(st.bias[b]),
                   "test_stars_at_snr": None if st is None else int(st.n[b]),
                   "snr_bin": None if b is None else [float(sk.edges[b]), float(sk.edges[b + 1])],
                   "run_id": en.run_id,
                   "note": "fitted jointly with log g; not scored on the test split" if by_product else ""}
            (rows if target == "logg" else others).append(row)
    if not rows:
        raise PredictError(f"no log g model at noise level {nl_text(nl)} could run on this spectrum"
                           + (f" ({skipped[0]['model']}: {skipped[0]['why']})" if skipped else ""))
    preds_here = [en for en in entries if en.role == "predictor" and en.noise_level == nl and en.target == "logg"
                  and any(r["run_id"] == en.run_id for r in rows)]
    rec, best = recommend(rows, ds, nl, ensemble(preds_here, ds, float(prep.snr[0])))
    other_best = {}
    for k in ("teff", "mh"):
        cands = [r for r in others if r["target"] == k and r["role"] == "predictor"]
        scored = [r for r in cands if r["test_r2"] is not None]
        pick = max(scored, key=lambda r: r["test_r2"]) if scored else (cands[0] if cands else None)
        if pick:
            other_best[k] = {"model": pick["model"], "value": pick["value"], "uncertainty": pick["uncertainty"],
                             "scored": pick["test_r2"] is not None}
    phys = _physics_fit(ds, f[0], e[0], covered, rec, other_best) if physics else None
    ood = _ood_words(prep, 0, ref, rec["value"], ds, {**frame_info.get("rv", {}),
                                                      "_resolution": frame_info.get("resolution"), "_physics": phys})
    miss = _missing_ranges(prep.wave, covered)
    out = {
        "file": item.name, "format": item.fmt, "notes": list(item.notes), "dataset": ds.name,
        "dataset_fingerprint": ds.fingerprint, "frame": frame_info,
        "coverage": {"fraction": float(covered.mean()), "missing_pixels": int((~covered).sum()),
                     "missing_ranges_A": miss, "grid": [float(prep.wave[0]), float(prep.wave[-1])],
                     "upload_range_A": [float(item.wave[0]), float(item.wave[-1])],
                     "statement": _coverage_words(covered, prep.wave, miss)},
        "snr": {"value": float(prep.snr[0]), "how": prep.snr_how},
        "noise_level": {"value": nl, "how": prep.noise_how, "levels": levels,
                        "training_snr_range": [float(np.percentile(ref.snr, SNR_PCT[0])),
                                               float(np.percentile(ref.snr, SNR_PCT[1]))]},
        "normalisation": {"scale": float(prep.scale[0]), "how": prep.scale_how, "mode": normalise,
                          "fitted": bool(prep.fitted[0]), "level_rms": ref.scale_rms},
        "logg": rows, "recommended": rec, "other_labels": others, "other_best": other_best,
        "skipped": skipped, "research_hidden": hidden, "research_shown": bool(research), "ood": ood,
        "truth": item.truth,
        "seconds": None,
        "physics_fit": None if phys is None else {k: v for k, v in phys.items() if k != "model"},
        "_grid": {"wave": prep.wave, "flux": prep.flux[0], "error": prep.error[0], "covered": covered,
                  "fit": None if phys is None else phys["model"]},
        "_saliency": _saliency_of(entries, best, f, e, prep.covered[:1]),
    }
    out["seconds"] = round(time.perf_counter() - t0, 4)
    return out


DISAGREE_Z = 2.0   # two predictors disagree when their values differ by more than this many combined errors


def calibrated_words(ens) -> str:
    """What set an ensemble's 68 % interval, in words."""
    if ens.calibrated_on == "calibration":
        return f"{ens.n_calibration:,} new simulated stars of this S/N bin (the data set's calibration set)"
    return (f"the {ens.n_calibration:,} validation stars (no calibration set for this grid; optimistic: the choice "
            f"of predictors used them)")


def recommend(rows: list[dict], ds: Dataset, nl: float, ens=None) -> tuple[dict, dict]:
    """The recommended log g and the row of its leading predictor. Only predictors (the report suite's
    methods) are candidates, chosen on the validation split (core/predict/skill.py). With `ens`
    (skill.ensemble for this spectrum's S/N) the value is the 1/RMSE^2-weighted mean of its members, the
    TOP_K predictors with the lowest validation RMSE on stars of this S/N, and its error bar the larger
    of their weighted spread and the 68 % half-width of the weighted mean's validation residuals in that
    bin; without, the single predictor with the lowest validation RMSE at this S/N. When any two of the
    four best predictors differ by more than DISAGREE_Z combined errors the answer says so; outside the
    training grid's log g range it says that too."""
    cands = [r for r in rows if r["role"] == "predictor" and r["test_r2"] is not None]
    if not cands:
        raise PredictError(f"no predictor at noise level {nl_text(nl)}: only the report suite's methods on flux or "
                           f"flux + error answer for an upload (train them with `python -m core train --suite report`)")

    def err(r):
        spread = r["uncertainty"] if np.isfinite(r["uncertainty"]) else 0.0
        floor = r["val_half68_at_snr"] if r.get("val_half68_at_snr") is not None else (r["test_rmse"] or 0.0)
        return max(spread, floor), spread, floor

    ranked = sorted(cands, key=lambda r: (r["val_rmse_at_snr"] if r.get("val_rmse_at_snr") is not None
                                          else (r["test_rmse"] or 9.0)))
    best = ranked[0]
    by_run = {r["run_id"]: r for r in cands}
    members = [(by_run[e.run_id], float(w)) for e, w in zip(ens.members, ens.weights)] if ens is not None and \
        all(e.run_id in by_run for e in ens.members) else []
    if len(members) > 1:
        value = float(sum(w * r["value"] for r, w in members))
        spread = float(sum(w * err(r)[1] for r, w in members))
        floor = ens.half68 if np.isfinite(ens.half68) else ens.rmse
        u = floor if np.isfinite(ens.half68) else max(spread, floor)
        names = ", ".join(f"{r['model']} ({w:.2f})" for r, w in members)
        rec = {"model": f"weighted mean of {len(members)} predictors", "members": [
            {"model": r["model"], "weight": w, "value": r["value"], "run_id": r["run_id"]} for r, w in members],
            "value": value, "uncertainty": u, "agree": True, "outside_grid": False,
            "val_rmse": ens.rmse, "test_rmse": ens.test_rmse, "test_coverage": ens.test_coverage,
            "calibrated_on": ens.calibrated_on, "calibration_stars": ens.n_calibration,
            "why": f"the 1/RMSE²-weighted mean of the {len(members)} predictors with the lowest validation RMSE on "
                   f"validation stars of S/N {ens.snr_range[0]:.0f}-{ens.snr_range[1]:.0f} at noise level "
                   f"{nl_text(nl)}: {names}; error bar = its 68 % interval at S/N {ens.at_snr:.0f}, calibrated on "
                   f"{calibrated_words(ens)} ({floor:.3f} dex; it held {100 * ens.test_coverage:.0f} % of this S/N "
                   f"bin's test stars; the members' own input-noise spread: {spread:.3f})"}
    else:
        u, spread, floor = err(best)
        lo_s, hi_s = best["snr_bin"] or (np.nan, np.nan)
        where = (f"validation stars of S/N {lo_s:.0f}-{hi_s:.0f} ({best.get('val_stars_at_snr')} stars)"
                 if best["snr_bin"] else "all test stars")
        rec = {"model": best["model"], "members": [{"model": best["model"], "weight": 1.0, "value": best["value"],
                                                    "run_id": best["run_id"]}],
               "value": best["value"], "uncertainty": u, "agree": True, "outside_grid": False,
               "why": f"lowest validation RMSE among the report's predictors on {where} at noise level "
                      f"{nl_text(nl)}; error bar = the larger of its {best['uncertainty_kind']} ({spread:.3f}) and "
                      f"the half-width holding 68 % of its errors there ({floor:.3f} dex)"}
    top = ranked[:4]
    worst = max(((abs(a["value"] - b["value"]) / max(np.hypot(err(a)[0], err(b)[0]), 1e-9), a, b)
                 for i, a in enumerate(top) for b in top[i + 1:]), default=None, key=lambda x: x[0])
    if worst is not None and worst[0] > DISAGREE_Z:
        rec["agree"] = False
        rec["disagreement"] = [{"model": r["model"], "value": r["value"], "uncertainty": err(r)[0]} for r in top]
        rec["verdict"] = (f"the predictors disagree beyond their errors ({worst[1]['model']} {worst[1]['value']:.2f} "
                          f"± {err(worst[1])[0]:.2f} against {worst[2]['model']} {worst[2]['value']:.2f} ± "
                          f"{err(worst[2])[0]:.2f}, {worst[0]:.1f} combined errors apart): no single value can be trusted")
    lo_g, hi_g = float(ds.labels[:, 1].min()), float(ds.labels[:, 1].max())
    if not (lo_g <= rec["value"] <= hi_g):
        rec["outside_grid"] = True
        rec["why"] += f"; {rec['value']:.2f} is outside the training grid (log g {lo_g:.1f}-{hi_g:.1f})"
    return rec, best


def _physics_fit(ds: Dataset, f: np.ndarray, e: np.ndarray, covered: np.ndarray, rec: dict, other_best: dict):
    """The simulator's best fit to the prepared spectrum (physics_check), started from the recommended log g
    and the predictors' Teff and [M/H] (the training medians where there are none); None for an imported data
    set or when the fit fails (the answer then goes without it)."""
    if not physics_check.available(ds):
        return None
    med = np.median(ds.labels, axis=0)
    lo, hi = ds.labels.min(axis=0), ds.labels.max(axis=0)
    start = np.clip([other_best.get("teff", {}).get("value", med[0]), rec["value"],
                     other_best.get("mh", {}).get("value", med[2])], lo, hi)
    try:
        r = physics_check.fit(f, e, covered, start=start[None, :])
    except Exception:  # noqa: BLE001 - the physics check is a second opinion, never a failure of the answer
        return None
    sig = np.sqrt(np.clip(np.diag(r["cov"][0]), 0, None))
    return {"teff": float(r["labels"][0, 0]), "logg": float(r["labels"][0, 1]), "mh": float(r["labels"][0, 2]),
            "sigma": {k: float(s) for k, s in zip(LABELS, sig)}, "cov": r["cov"][0].tolist(),
            "chi2": float(r["chi2"][0]), "model_floor": physics_check.MODEL_FLOOR,
            "chi2_flag": physics_check.CHI2_FLAG, "model": r["model"][0]}


def _missing_ranges(wave, covered) -> list[list[float]]:
    m = np.concatenate([[False], ~covered, [False]]).astype(np.int8)
    d = np.diff(m)
    s, e = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0] - 1
    return [[round(float(wave[a]), 2), round(float(wave[b]), 2)] for a, b in zip(s, e)]


def _coverage_words(covered, wave, miss) -> str:
    if covered.all():
        return f"covers the whole model grid ({wave[0]:.0f}-{wave[-1]:.0f} Å)"
    parts = ", ".join(f"{a:.0f} Å" if round(a) == round(b) else f"{a:.0f}-{b:.0f} Å" for a, b in miss[:4]) \
        + (f" and {len(miss) - 4} more" if len(miss) > 4 else "")
    frac = 100 * (1 - covered.mean())
    s = (f"{frac:.2g}% of the model grid is missing ({int((~covered).sum()):,} of "
         f"{covered.size:,} pixels: {parts}); those pixels were filled with the training spectra's PCA "
         f"reconstruction of the rest")
    ca = (wave >= CA_TRIPLET[0]) & (wave <= CA_TRIPLET[1])
    if (~covered[ca]).any():
        s += f"; the Ca II triplet region ({CA_TRIPLET[0]:.0f}-{CA_TRIPLET[1]:.0f} Å), where most log g information is, is " \
             f"{100 * (~covered[ca]).mean():.0f}% missing"
    return s


RV_SNR_MIN = 20.0   # at or above this S/N a star's radial velocity is always measurable (benchmarks: 100 %)


def _ood_words(prep: Prepared, i: int, ref: Reference, logg: float, ds: Dataset, rv: dict | None = None) -> dict:
    flags = []
    dist_pct = _pct(ref.ref_dist, float(prep.dist[i]))
    chi_pct = _pct(ref.ref_chi2, float(prep.chi2[i]))
    if np.isfinite(dist_pct) and dist_pct > OOD_PCT:
        flags.append(f"its shape is unlike the training spectra: farther from them (PCA distance) than "
                     f"{min(dist_pct, 100):.1f}% of the validation spectra")
    if np.isfinite(chi_pct) and chi_pct > OOD_PCT:
        flags.append(f"it has features the training spectra do not have: its residual from the training-spectra "
                     f"reconstruction (χ²/pixel {prep.chi2[i]:.2g}) exceeds {min(chi_pct, 100):.1f}% of the validation spectra's")
    lo, hi = np.percentile(ref.snr, SNR_PCT[0]), np.percentile(ref.snr, SNR_PCT[1])
    s = float(prep.snr[i])
    if s < lo or s > hi:
        flags.append(f"its S/N ({s:.0f}) is outside the training range at noise level {nl_text(ref.noise_level)} "
                     f"({lo:.0f}-{hi:.0f}, lowest to highest)")
    cov = float(prep.covered[i].mean())
    if 1.0 - cov > OOD_MISSING:
        flags.append(f"{100 * (1 - cov):.0f}% of the wavelength grid is not covered")
    if prep.coarse > COARSE_FACTOR:
        flags.append(f"its pixels are {prep.coarse:.1f}x wider than the model grid's: lines are smeared")
    if rv is not None and rv.get("measured") is not None and not rv.get("trusted", True) \
            and float(prep.snr[i]) >= RV_SNR_MIN:
        flags.append(f"its lines do not match the training spectra's: at S/N {float(prep.snr[i]):.0f} no radial "
                     f"velocity could be measured against them (correlation peak {rv.get('peak') or 0:.2f})")
    phys = (rv or {}).get("_physics")
    if phys is not None and phys["chi2"] > phys["chi2_flag"]:
        flags.append(f"the simulator cannot fit it: its best fit has a reduced χ² of {phys['chi2']:.1f} with a "
                     f"{100 * phys['model_floor']:.0f} % model error (test stars: under 1.1)")
    res = (rv or {}).get("_resolution") or {}
    if not np.isnan(res.get("ratio", np.nan)) and res["ratio"] > frame.BROADER and float(prep.snr[i]) >= RV_SNR_MIN:
        flags.append(f"its lines are broader than the training spectra's (σ {res['sigma_upload_kms']:.0f} against "
                     f"{res['sigma_training_kms']:.0f} km/s): a lower resolution than the models', fast rotation or a "
                     f"galaxy's velocity dispersion; log g from broadened lines is biased")
    lo_g, hi_g = ds.labels[:, 1].min(), ds.labels[:, 1].max()
    if not (lo_g - 0.1 <= logg <= hi_g + 0.1):
        flags.append(f"the recommended log g ({logg:.2f}) is outside the training range ({lo_g:.1f}-{hi_g:.1f})")
    if flags:
        verdict = "unusual: treat the prediction as an extrapolation"
    else:
        verdict = (f"typical of the training spectra (PCA distance at the {ordinal(dist_pct)} percentile of the validation "
                   f"spectra, S/N inside the training range)")
    return {"in_distribution": not flags, "verdict": verdict, "flags": flags, "pca_distance": float(prep.dist[i]),
            "pca_distance_percentile": dist_pct, "residual_chi2": float(prep.chi2[i]),
            "residual_percentile": chi_pct}
