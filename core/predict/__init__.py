"""Predict: log g (and Teff, [M/H] where models exist) for an uploaded spectrum, with every trained model.

The path an upload takes (docs/predict.md says why each step is the way it is), one module a step:

    bytes -> readers/            CSV/TSV/whitespace text, .npy/.npz, FITS image or table, HDF5 (batch);
                                 checks: NaN/inf, errors <= 0, order, duplicates, units, too few points, size
          -> resample.py         flux-conserving spline: a cubic spline through the running integral of
                                 the upload's flux at its bin edges, differenced at the model pixels' edges
                                 (errors through the overlap weights); gaps are not bridged
          -> prepare.py          coverage + masking, S/N (from the error, else DER_SNR), the noise level,
                                 the continuum level fitted against the training spectra (reference.py) or
                                 kept when the upload is already normalised, uncovered pixels filled with
                                 the PCA reconstruction
          -> inference.py        every trained model of the data set (inventory.py) at that noise level,
                                 side by side, an uncertainty per model, a recommended value, an
                                 out-of-distribution check
          -> batch.py            the same for an HDF5 file of many spectra
          -> matched.py          an upload the models were not trained for (another window, pixel size or
                                 resolution): the matched data set and predictors, queued as a job
          -> words.py, cli.py    the JSON and plain-text answers; `python -m core predict FILE [--json]`

Nothing here writes, except matched.py's `request` (a matched data set's recipe, and one queued job; the
models matched to an upload the data set's models were not trained for): the registry is only read, models and
training statistics are cached
in memory. Bad input raises PredictError (a core.data.DataError) with a one-line message.
"""
from core.predict.batch import predict_batch
from core.predict.inference import example, predict
from core.predict.inventory import Entry, trained_models
from core.predict.prepare import NORMALISE, prepare
from core.predict.readers import UPLOAD_TYPES, read_bytes, read_file, upload_limit_mb
from core.predict.resample import Resampler, pixel_edges, resample, source_bins
from core.predict.spectra import Batch, PredictError, Spectrum
from core.predict.words import nl_text, text_report, to_json

__all__ = ["NORMALISE", "UPLOAD_TYPES", "Batch", "Entry", "PredictError", "Resampler", "Spectrum", "example",
           "nl_text", "pixel_edges", "predict", "predict_batch", "prepare", "read_bytes", "read_file", "resample",
           "source_bins", "text_report", "to_json", "trained_models", "upload_limit_mb"]
