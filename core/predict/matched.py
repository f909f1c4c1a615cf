"""Models matched to an upload that the data set's models were not trained for.

An upload whose window, pixel size or resolution differs from the data set's (a Gaia-RVS-like 8460-8700 Å
window, which covers 14 % of the grid and is refused; an R~2000 survey spectrum, whose lines are broader than
any training spectrum's) gets a *plan*: the matched data set (core/data/matched.py: the same stars on the
upload's window, in whole bins of native pixels, at its resolution), the report suite's predictors on it, and
how many of them have finished. `request` saves the recipe and queues the predictors as one background job (an
ordinary job: its runs are cached by spec, its data set is built by the job); when they are done, Predict
answers with the matched data set (`python -m core predict FILE --matched`, the Predict page's button).

The upload is first put in the data set's frame (air, at rest: inference.rest_frame); its resolution is the
line width measured against the training spectra (frame.line_broadening) with their intrinsic width taken out:
sigma_LSF(upload)^2 = sigma_upload^2 - sigma_training^2 + sigma_LSF(5000)^2, R = c / (2.3548 sigma_LSF).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.data import Dataset, list_datasets
from core.data import matched as mdata
from core.predict import frame
from core.predict.inventory import _is_predictor
from core.predict.reference import reference
from core.predict.resample import Resampler
from core.predict.spectra import PredictError, Spectrum

C_KMS = frame.C_KMS
FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))
# measured resolving powers are put on this ladder (25 % steps, wider than the measurement's ~10 % scatter) so that
# uploads of one instrument share a matched data set; a declared R is used as given (to the nearest 100)
R_LADDER = (2000.0, 2500.0, 3200.0, 4000.0, 5000.0)
NEED_COVERAGE = 0.95      # below this fraction of the grid covered, a matched data set is offered
LOWER_R = 0.9             # an upload resolution below this fraction of the data set's is matched
COARSER = 1.5             # pixels this many times the models' (or more) are matched
SNR_MIN = 20.0            # the line width is measured at or above this S/N (inference.RV_SNR_MIN)
SHARPER = 0.97            # a line-width ratio below this: sharper than the models', by an amount widths cannot size


@dataclass
class Plan:
    """What it takes to answer an upload with matched models; `needed` False: the data set's models fit it."""
    needed: bool
    reasons: list[str]
    base: str
    name: str = ""
    recipe: dict = field(default_factory=dict)
    specs: list = field(default_factory=list)
    dropped: list = field(default_factory=list)        # (model, why) of report predictors that cannot run there
    n_done: int = 0
    built: bool = False
    resolution: float = float("nan")
    resolution_how: str = ""
    window: tuple = ()
    pixels: int = 0
    advice: str = ""                                    # what the user could tell us to do better

    def reasons_text(self) -> str:
        """'covers 13 % of ... and has a lower resolution ...': the reasons as one clause."""
        r = self.reasons
        return r[0] if len(r) < 2 else ", ".join(r[:-1]) + " and " + r[-1]

    def dropped_text(self) -> str:
        """'Global-feature MLP, Fusion: concat and Fusion: FiLM: they measure line windows ...' per reason."""
        by: dict[str, list[str]] = {}
        for label, why in self.dropped:
            by.setdefault(why, []).append(label)
        return "; ".join(", ".join(v) + f" ({k})" for k, v in by.items())

    @property
    def ready(self) -> bool:
        return self.built and self.n_done > 0

    def summary(self) -> str:
        """'8460-8700 Å, 520 pixels, R = 5000 (measured): 3 of 12 predictors trained'."""
        if not self.needed:
            return "not needed: " + "; ".join(self.reasons)
        return (f"{self.name}: {self.window[0]:.0f}-{self.window[1]:.0f} Å, {self.pixels:,} pixels, R = "
                f"{self.resolution:.0f} ({self.resolution_how}); {self.n_done} of {len(self.specs)} predictors trained")


def base_dataset(ds: Dataset) -> Dataset:
    """The simulator-built data set a matched one is made from: ds itself, or the one a matched ds was made of."""
    src = str(ds.attrs.get("source", ""))
    if src == "simulator:matched":
        return Dataset(str(ds.attrs["matched_to"]))
    if src != "simulator" or ds.nuisance is not None or ds.physics_recipe is not None:
        raise PredictError(f"matched models are simulated from the profile's own data set; {ds.name!r} is "
                           f"{'imported' if src.startswith('import') else 'a variant'}: choose the profile's data "
                           f"set (sim-quick, sim-default) with --dataset")
    return ds


def resolution_of(b: dict, native: float) -> tuple[float, str]:
    """The upload's resolving power from frame.line_broadening's widths, and how it was found."""
    s_up, s_t = b.get("sigma_upload_kms", np.nan), b.get("sigma_training_kms", np.nan)
    if not (np.isfinite(s_up) and np.isfinite(s_t)):
        return native, f"line width not measured: taken as the models' R = {native:.0f}"
    s_lsf = C_KMS / native / FWHM
    s2 = s_up ** 2 - s_t ** 2 + s_lsf ** 2
    if s2 <= (C_KMS / mdata.R_MAX / FWHM) ** 2:
        return native, f"lines as sharp as the models' or sharper (R >= {native:.0f}; degraded to it)"
    r = C_KMS / FWHM / float(np.sqrt(s2))
    return r, f"measured from the line width, R ≈ {r:.0f}"


def unfit_reason(spec: dict, wave: np.ndarray) -> str | None:
    """Why a report spec cannot be fitted on the matched grid `wave` (or None)."""
    from models import MODELS
    from models.features import LINES
    if getattr(MODELS.get(spec["model"]), "uses_line_windows", False):
        if not all(((wave >= lo) & (wave <= hi)).any() for win in LINES.values() for lo, hi in win):
            return "they measure line windows that lie outside this window"
    k = (spec.get("params") or {}).get("K")
    if k is not None and int(k) > wave.size // 2:
        return f"it keeps K = {k} of this window's {wave.size} pixels"
    return None


def plan(item: Spectrum, ds: Dataset, medium: str = "auto", rv: str | float = "auto", resolution="auto",
         con=None) -> Plan:
    """The matched data set and predictors an upload needs (or needed=False with the reasons it does not).
    resolution: 'auto' (measured from the line widths) or the upload's declared resolving power R."""
    from core.engine import suites, train
    from core.engine.spec import normalise_spec
    from core.physics.simulate import RESOLUTION
    from core.predict.inference import declared_resolution, rest_frame
    base = base_dataset(ds)
    wave, info = rest_frame(item, base, medium, rv)
    grid = base.wave.astype(np.float64)
    cov = Resampler(wave, grid).covered
    if not cov.any():
        raise PredictError(f"{item.name}: {wave[0]:.0f}-{wave[-1]:.0f} Å (in air, at rest) does not overlap the "
                           f"simulator's window {grid[0]:.0f}-{grid[-1]:.0f} Å; no model can be matched to it")
    lo, hi = float(grid[cov][0]), float(grid[cov][-1])
    inside = (wave >= lo) & (wave <= hi)
    step = float(np.median(np.diff(np.log(wave[inside])))) if inside.sum() > 2 else np.nan
    native_step = float(np.median(np.diff(np.log(grid))))
    snr = float(np.median(item.flux / item.error)) if item.error is not None else 0.0
    declared = declared_resolution(resolution)
    advice = ""
    r_seen = None                              # the measured R, when the ladder moved it
    if declared is not None:
        r, r_how = declared, f"declared R = {declared:.0f}"
    elif snr >= SNR_MIN:
        ref = reference(base, 1.0)
        try:
            b = frame.line_broadening(wave, item.flux, 0.0, base.wave, ref.mu, ref.comps)
        except Exception:  # noqa: BLE001 - a width that cannot be measured: the models' resolution
            b = {}
        r, r_how = resolution_of(b, RESOLUTION)
        step_r = min(R_LADDER, key=lambda x: abs(np.log(x / r)))
        if abs(np.log(step_r / r)) > 0.1:      # below the ladder (a galaxy's dispersion) or between its steps
            r_how += f"; simulated at R = {step_r:.0f}, " + ("the lowest a matched set takes" if r < R_LADDER[0]
                                                             else "the nearest step of the ladder")
            r_seen = r
        r = step_r
        if b.get("ratio", 1.0) < SHARPER:
            advice = (f"its lines look sharper than the models' (width ratio {b['ratio']:.2f}), which line widths "
                      f"cannot size: if its survey documents its resolving power, declare it (`--resolution R`, the "
                      f"page's Resolving power) and the matched models are simulated at that R, not at "
                      f"{RESOLUTION:.0f}")
    else:
        r, r_how = RESOLUTION, f"line width not measured (S/N {snr:.0f} < {SNR_MIN:.0f}): taken as R = {RESOLUTION:.0f}"
    reasons = []
    if cov.mean() < NEED_COVERAGE:
        reasons.append(f"covers {100 * cov.mean():.0f} % of the models' grid ({lo:.0f}-{hi:.0f} Å of "
                       f"{grid[0]:.0f}-{grid[-1]:.0f} Å)")
    if r < LOWER_R * RESOLUTION:
        reasons.append(f"has a lower resolution than the models' (R ≈ {r_seen or r:.0f} against {RESOLUTION:.0f})")
    elif r > RESOLUTION / LOWER_R:
        reasons.append(f"has a higher resolution than the models' (R = {r:.0f} against {RESOLUTION:.0f})")
    if np.isfinite(step) and step >= COARSER * native_step:
        reasons.append(f"has pixels {step / native_step:.1f}x the models'")
    if not reasons:
        return Plan(False, ["the upload covers the models' grid at their resolution and pixel size"], base.name,
                    resolution=r, resolution_how=r_how)
    rec = mdata.recipe_for(lo, hi, step if np.isfinite(step) else native_step, r, base)
    name = mdata.name_for(rec)
    mwave = mdata.grid_of(rec)
    specs, dropped = [], []
    for s in suites.suite("report", rec["profile"], name):
        if not _is_predictor(normalise_spec(s), name):
            continue
        why = unfit_reason(s, mwave)
        (dropped.append((suites.row_label(s), why)) if why else specs.append(s))
    built = name in list_datasets()
    n_done = sum(train.cached_result(s, con=con) is not None for s in specs) if built else 0
    return Plan(True, reasons, base.name, name, rec, specs, sorted(set(dropped)), n_done, built, float(rec["resolution"]),
                r_how + ("" if rec["resolution"] == round(r, -2) else f"; simulated at R = {rec['resolution']:.0f}"),
                (float(mwave[0]), float(mwave[-1])), int(mwave.size), advice)


def request(p: Plan, label: str, token: str | None = None) -> tuple[int, bool]:
    """Save the matched recipe and queue its predictors as one background job: (job id, newly queued)."""
    from core.engine import jobs
    if not p.needed or not p.specs:
        raise PredictError("nothing to queue: " + ("; ".join(p.reasons) if not p.needed else
                                                   "no report predictor can be fitted on this window"))
    mdata.save_recipe(p.recipe)
    return jobs.submit(p.specs, label=label, token=token)


def matched_dataset(p: Plan) -> Dataset:
    """The matched data set of a ready plan."""
    if not p.ready:
        raise PredictError(f"the matched models ({p.name}) are not trained yet: {p.n_done} of {len(p.specs)} done")
    return Dataset(p.name)
