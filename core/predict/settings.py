"""Every threshold and name list of Predict in one place: limits, coverage and OOD thresholds, the
column names and units the readers recognise, the words for each kind of uncertainty."""
from __future__ import annotations

# --------------------------------------------------------------------------- settings
MIN_POINTS = 100            # fewer samples than this: refused
MIN_COVERAGE = 0.5          # fraction of the model grid an upload must cover
GAP_FACTOR = 3.0            # a step this many times the typical one is a gap (chip gap, masked run)
N_PCA = 16                  # principal components of the training flux (scale fit, gap fill, OOD)
PCA_MAX_TRAIN = 3000        # training spectra the PCA is fitted on
REF_MAX = 1000              # validation spectra that give the OOD reference distribution
BATCH_SLOW_MAX = 200       # a batch larger than this skips per-spectrum fitters (the Cannon) unless asked
MC_DRAWS = 32               # input-noise re-draws per spectrum for the MC spread
OOD_PCT = 99.0              # percentile of the validation spectra above which a spectrum is 'unusual'
SNR_PCT = (0.0, 100.0)      # the training spectra's S/N range (lowest to highest) outside which the S/N is flagged
                            # (1-99th percentile until 2026-12-02: it flagged 2 % of stars inside the range)
COARSE_FACTOR = 4.0         # upload pixels this many times wider than the model's: flagged
COVER_SLACK = 0.01          # a model pixel counts as covered when at most 1% of its width is outside the upload
OOD_MISSING = 0.05          # more than this fraction of the grid missing: flagged
CA_TRIPLET = (8480.0, 8680.0)

# --------------------------------------------------------------------------- limits on uploads
# An upload is at most server.maxUploadSize on disk (readers.upload_limit_mb(): 50 MB). These bound what it may
# unpack to and how many numbers a reader allocates; each is checked from the file's own metadata (gzip stream,
# .npy header, zip directory, FITS header, HDF5 shape and dtype) BEFORE anything is allocated, so that whatever
# they admit runs read + prepare + every model in under 1 GB peak RSS (measured: tests/test_hostile_uploads.py,
# docs/predict.md "Limits on uploads").
MAX_UNPACKED_MB = 64            # gzip (every layer), a .npz's members, one FITS HDU's data: at most this many MiB
MAX_GZIP_LAYERS = 2             # gzip inside gzip: at most this many layers are unpacked
MAX_POINTS = 1_000_000          # samples of one spectrum (text rows, an array's length, FITS pixels, /wave)
MAX_VALUES = 8_000_000          # numbers a reader of one spectrum holds at once (a table's rows x columns, a .npy)
MAX_TEXT_LINES = 2_000_000      # lines of a text file, comment and blank lines included
MAX_TEXT_COLUMNS = 1_000        # columns of a text file
MAX_ARCHIVE_MEMBERS = 64        # arrays in a .npz
MAX_FITS_HDUS = 1_000           # HDUs of a FITS file
MAX_FITS_CARDS = 50_000         # header cards of a FITS file, all HDUs together (astropy: ~1 KB of memory each)
MAX_BATCH_VALUES = 40_000_000   # values of /flux (spectra x pixels) in an HDF5 batch
BATCH_BLOCK_VALUES = 1_048_576  # a batch is read, checked and predicted in blocks of rows of about this many values
BATCH_EAGER_VALUES = 2_000_000  # a batch up to this size is read into memory whole, a larger one block by block
MAX_H5_CHUNK_MB = 16            # an HDF5 chunk is decompressed whole: a larger chunk is refused

WAVE_NAMES = ("wavelength", "wave", "lambda", "lam", "wl", "wavelen", "wavelengths", "loglam", "log_lambda",
              "log_wave", "lambda_air", "lambda_vac", "lambda_vacuum", "wave_air", "wave_vac", "wave_vacuum",
              "wavelength_air", "wavelength_vac", "wavelength_vacuum", "air_wavelength", "vacuum_wavelength", "awav",
              "vac_wave", "vacuum_wave", "vac_wavelength", "air_wave", "vacwave", "airwave")
FLUX_NAMES = ("flux", "f", "fl", "flux_density", "fluxes", "spec", "spectrum", "intensity", "norm_flux",
              "normalized_flux", "normalised_flux")
ERR_NAMES = ("error", "err", "sigma", "flux_err", "flux_error", "fluxerr", "e_flux", "eflux", "uncertainty",
             "unc", "noise", "std", "dflux", "flux_sigma", "errors")
IVAR_NAMES = ("ivar", "inverse_variance", "invvar", "flux_ivar", "inv_var")
VAR_NAMES = ("var", "variance", "flux_var")
UNIT_FACTORS = {"angstrom": 1.0, "angstroms": 1.0, "aa": 1.0, "a": 1.0, "å": 1.0, "ang": 1.0,
                "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "nanometre": 10.0, "nanometres": 10.0,
                "um": 1e4, "µm": 1e4, "μm": 1e4, "micron": 1e4, "microns": 1e4, "micrometer": 1e4,
                "micrometre": 1e4, "m": 1e10, "cm": 1e8}
UNCERTAINTY_KINDS = {
    "mc": "input-noise MC spread",
    "own": "the model's own 1σ",
    "mc_level": "MC spread over input noise and continuum level",
    "fisher": "formal χ² 1σ (inverse Fisher matrix)",
}
COMMENT_CHARS = ("#", "%", "!", ";", "//", "\\")


