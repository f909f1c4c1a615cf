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
SNR_PCT = (1.0, 99.0)       # training S/N range (percentiles) outside which the S/N is flagged
COARSE_FACTOR = 4.0         # upload pixels this many times wider than the model's: flagged
COVER_SLACK = 0.01          # a model pixel counts as covered when at most 1% of its width is outside the upload
OOD_MISSING = 0.05          # more than this fraction of the grid missing: flagged
CA_TRIPLET = (8480.0, 8680.0)

WAVE_NAMES = ("wavelength", "wave", "lambda", "lam", "wl", "wavelen", "wavelengths", "loglam", "log_lambda",
              "log_wave", "lambda_air", "lambda_vac", "lambda_vacuum", "wave_air", "wave_vac", "wave_vacuum",
              "wavelength_air", "wavelength_vac", "wavelength_vacuum", "air_wavelength", "vacuum_wavelength", "awav")
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


