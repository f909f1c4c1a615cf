"""What the readers return: `Spectrum` (one spectrum), `Batch` (many on one grid), and
`PredictError`, the one-line refusal of anything unusable."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.data import DataError


class PredictError(DataError):
    """An upload (or a request) that cannot be predicted; the message names the problem in one line."""


# --------------------------------------------------------------------------- containers
@dataclass
class Spectrum:
    """One spectrum as read: wavelength in Angstrom (increasing), flux, 1-sigma error or None."""
    wave: np.ndarray
    flux: np.ndarray
    error: np.ndarray | None
    name: str = "spectrum"
    fmt: str = ""
    notes: list[str] = field(default_factory=list)
    truth: dict | None = None          # true labels (the example path)
    medium: str | None = None          # 'air' | 'vacuum' as the file states it, None when it does not
    medium_how: str = ""               # what said so (a column name, a header keyword, a survey convention)
    rv: float | None = None            # km/s, when known (a test star of the data set is at rest: 0)
    rv_how: str = ""
    native: bool = False               # a spectrum of the data set itself (at its resolution and in its frame)


@dataclass
class Batch:
    """Many spectra on one wavelength grid (HDF5 in the project's schema)."""
    wave: np.ndarray
    flux: np.ndarray                    # (n, N)
    error: np.ndarray | None           # (n, N) or None
    labels: np.ndarray | None          # (n, 3) teff, logg, mh, when the file has them
    name: str = "batch"
    fmt: str = "HDF5"
    notes: list[str] = field(default_factory=list)


