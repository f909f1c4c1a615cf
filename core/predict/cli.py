"""`python -m core predict FILE [--json]`: the same answer as the Predict page, on the command line."""
from __future__ import annotations

import json
import sys

from core import config
from core.data import Dataset
from core.predict.batch import predict_batch
from core.predict.inference import predict
from core.predict.prepare import NORMALISE
from core.predict.readers import read_file
from core.predict.settings import BATCH_SLOW_MAX
from core.predict.spectra import Batch, PredictError
from core.predict.words import _clean, text_report, to_json


# --------------------------------------------------------------------------- CLI
def _default_dataset() -> str:
    from core import data
    names = data.list_datasets()
    if not names:
        raise PredictError("no data set yet: build one with `python -m core data build --profile quick`")
    prof = config.profile("quick")["dataset"]
    return prof if prof in names else names[0]


def _noise_arg(s: str):
    if s == "auto":
        return "auto"
    try:
        return float(s)
    except ValueError:
        raise PredictError(f"--noise must be auto or a trained noise level such as 0.1 or 1.0, got {s!r}") from None


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="log g of a spectrum file (CSV/TSV/text, .npy/.npz, FITS, HDF5 batch)")
    p.add_argument("file", help="the spectrum: .csv/.tsv/.txt, .npy/.npz, .fits, or .h5 (many spectra -> CSV)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--dataset", help="the data set whose models to use (default: the quick profile's)")
    p.add_argument("--noise", default="auto", help="auto (from the spectrum's S/N) or a trained level, e.g. 0.1 or 1.0")
    p.add_argument("--normalise", default="auto", choices=list(NORMALISE),
                   help="auto: fit the continuum level unless the flux is already normalised like the training "
                        "spectra; fit: always fit it; as-is: use the flux as uploaded")
    p.add_argument("--all-models", action="store_true",
                   help="HDF5 batch: run every predictor (default: those the recommendation uses at some S/N), and "
                        f"the slow per-spectrum fitters (the Cannon) on more than {BATCH_SLOW_MAX} spectra too")
    p.add_argument("--research", action="store_true",
                   help="also list the research models (ablation controls, sweep variants, latent probes, the physics "
                        "ceiling); they are never recommended")
    p.add_argument("--medium", default="auto", choices=["auto", "air", "vacuum"],
                   help="the file's wavelengths: auto (from its header or column names; unknown = the models' own, air) "
                        "or say air / vacuum")
    p.add_argument("--rv", default="auto",
                   help="radial velocity: auto (measure by cross-correlation and shift to rest), none, or km/s")
    p.add_argument("--resolution", default="auto",
                   help="auto: measure the line width; a sharper spectrum is degraded to the training resolution, "
                        "a broader one flagged; as-is: leave it; or the upload's resolving power R (e.g. 11500 for "
                        "Gaia RVS), when its survey documents it: a sharper spectrum is degraded by the known amount, "
                        "and --matched simulates at that R")
    p.add_argument("--physics", action="store_true",
                   help="also fit the simulator to the spectrum: its labels with errors, the fit's reduced chi^2 and "
                        "a flag when the simulator cannot fit it (about 1 s more)")
    p.add_argument("--matched", action="store_true",
                   help="a spectrum whose window, pixels or resolution differ from the data set's: answer with models "
                        "trained on the same stars simulated like it; when they are not trained yet, queue them as a "
                        "background job (minutes at the quick profile) and say so")
    p.add_argument("--wait", action="store_true", help="with --matched: wait for that job and then answer")
    p.add_argument("--no-worker", action="store_true", help="with --matched: queue the job but start no worker")
    p.add_argument("--token-file", help="with --matched: the admin token, when the server asks for one (or LOGG_TOKEN)")
    p.add_argument("--out", help="HDF5 batch: write the table here as CSV (default: print it)")
    p.add_argument("--max-mb", type=float, default=None,
                   help="size limit in MB (default: server.maxUploadSize of .streamlit/config.toml; 0 = none)")
    p.set_defaults(func=cmd_predict)


def _emit(text: str, stream=None) -> None:
    """Print, and stay quiet when the reader went away (`python -m core predict f.h5 | head`)."""
    import os
    stream = stream or sys.stdout
    try:
        stream.write(text if text.endswith("\n") else text + "\n")
        stream.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def cmd_predict(a) -> int:
    try:
        return _cmd_predict(a)
    except (MemoryError, RecursionError) as e:   # one line, never a traceback (readers refuse these earlier)
        raise PredictError(f"{a.file}: too large or too deeply nested to predict ({type(e).__name__})") from None


def _cmd_predict(a) -> int:
    from core import data
    noise = _noise_arg(a.noise)
    item = read_file(a.file, limit_mb=a.max_mb)
    name = a.dataset or _default_dataset()
    if name not in data.list_datasets():
        raise PredictError(f"data set {name!r} not found; build or import it first")
    ds = Dataset(name)
    if isinstance(item, Batch):
        df, summary = predict_batch(item, ds, noise, normalise=a.normalise, all_models=a.all_models,
                                    research=a.research)
        if a.out:
            df.to_csv(a.out, index=False)
            summary["csv"] = str(a.out)
        if a.json:
            _emit(json.dumps(_clean({**summary, "rows": None if a.out else df.to_dict(orient="records")}), indent=2))
        else:
            if not a.out:
                _emit(df.to_csv(index=False))
            _emit(f"{summary['spectra']:,} spectra in {summary['seconds']:.2f} s ({summary['spectra_per_s']:,.0f}/s); "
                  f"{summary['flagged']} flagged out-of-distribution"
                  + (f"; RMSE vs the file's log g {summary['rmse_vs_true_logg']:.3f}" if "rmse_vs_true_logg" in summary else "")
                  + (f"; written to {a.out}" if a.out else ""), sys.stderr)
        return 0
    note = None
    if a.matched:
        ds, note = _matched(a, item, ds)
        if ds is None:
            return 0
    r = predict(item, ds, noise, normalise=a.normalise, research=a.research, medium=a.medium, rv=a.rv,
                resolution=a.resolution, physics=a.physics)
    if note:
        r["matched"] = note
    _emit(to_json(r) if a.json else (f"{note}\n" if note else "") + text_report(r))
    return 0


def _matched(a, item, ds: Dataset):
    """The data set to answer with under --matched and a line saying why; (None, _) after queueing a job."""
    import os
    import time

    from core.engine import estimates, jobs
    from core.predict import matched
    if isinstance(item, Batch):
        raise PredictError(f"{a.file}: --matched takes one spectrum, not an HDF5 file of many")
    if a.wait and a.no_worker:
        raise PredictError("--wait needs a worker: drop --no-worker (or start one with `python -m core worker`)")
    p = matched.plan(item, ds, a.medium, a.rv, a.resolution)
    if not p.needed:
        return ds, f"Matched models: not needed ({'; '.join(p.reasons)})."
    tip = f" Note: {p.advice}." if p.advice else ""
    if p.ready:
        return (matched.matched_dataset(p),
                f"Answered by the models matched to this spectrum ({'; '.join(p.reasons)}): {p.summary()}.{tip}")
    if not p.specs:
        raise PredictError(f"{a.file}: no report predictor can be fitted on {p.window[0]:.0f}-{p.window[1]:.0f} Å")
    token = None
    if a.token_file:
        try:
            token = open(a.token_file).read().strip() or None
        except OSError as e:
            raise PredictError(f"--token-file {a.token_file}: cannot be read ({e.strerror})") from None
    token = token or os.environ.get("LOGG_TOKEN")
    jid, created = matched.request(p, f"matched models for {item.name}: {p.name}", token)
    if not a.no_worker:
        jobs.ensure_worker()
    est = estimates.estimate(p.specs, p.recipe["profile"])
    _emit(f"{'queued' if created else 'already queued'}: job {jid}, {len(p.specs)} report predictors on {p.name} "
          f"({'; '.join(p.reasons)}; {estimates.minutes(est['seconds'])})" + (f"; note: {p.advice}" if p.advice else ""),
          sys.stderr)
    if not a.wait:
        _emit(f"the matched models are not trained yet: run this command again when job {jid} is done "
              f"(`python -m core jobs list`), or add --wait")
        return None, None
    last = ""
    while True:
        j = jobs.get(jid)
        if j["state"] in ("done", "failed", "cancelled", "interrupted"):
            break
        pr = j.get("progress") or {}
        line = f"job {jid} {j['state']}: " + (pr.get("building") or f"spec {pr.get('spec', 0)}/{pr.get('of', len(p.specs))}"
                                               f" {pr.get('model', '')}")
        if line != last:
            _emit(line, sys.stderr)
            last = line
        time.sleep(1.0)
    p = matched.plan(item, ds, a.medium, a.rv, a.resolution)
    if not p.ready:
        raise PredictError(f"job {jid} ended {j['state']} with no matched predictor trained "
                           f"(`python -m core jobs log {jid}`)")
    return (matched.matched_dataset(p),
            f"Answered by the models matched to this spectrum ({'; '.join(p.reasons)}): {p.summary()}.{tip}")
