"""The 126 "global features" of the group's global tower, computed from the flux channel of a view.

Column layout (fixed order; `GlobalFeatures.names` lists every column by name):

  group  columns   n   what
  F0     0-31     32   PCA components: projections of the mean-subtracted flux on the first 32
                       principal axes. The PCA is fitted on the TRAIN split only (at most
                       `max_pca_rows` rows of it, a seeded subset) and saved with the model.
  F1     32-79    48   band statistics: the 4096 pixels cut into 24 equal bands (pixel counts
                       170 or 171, i.e. equal widths in log lambda, ~73 A each); columns 32-55
                       are the 24 band means, 56-79 the 24 band standard deviations.
  F2     80-102   23   colours: ratio of the mean flux of band i+1 to band i (i = 0..22), the
                       spectroscopic analogue of a photometric colour.
  F3     103-125  23   equivalent widths (A) of 23 key lines, EW = sum (1 - f/f_c) dlambda over
                       the line window, f_c a local pseudo-continuum: the straight line through
                       the mean flux of a blue and a red continuum window (at the windows'
                       mean wavelengths). The windows are in `LINES` (Angstrom, air):
                         Ca II 8498, 8542, 8662 (line and continuum bands of Cenarro et al. 2001,
                           MNRAS 326, 959)
                         Na I 8183, 8195; K I 7665, 7699; Mg I 8807; O I 7772-7775 (one window
                           over the blended triplet)
                         H I Paschen Pa12-Pa16 (8750, 8665, 8598, 8545, 8502); Pa13, Pa15 and
                           Pa16 lie 3-4.5 A from a Ca II line, so their EWs include the Ca II
                           wing (they are kept because the report lists them; read them as
                           "Ca II + Paschen" blends)
                         Fe I 7411, 7446, 7495, 7511, 7748, 8327, 8388, 8622, 8689 (line +-1.6 A,
                           continuum 3-6 A either side)
  total          126

Groups can be switched off (`GlobalFeatures(groups=("F0", "F1", "F2"))` drops F3): the
dropped group's columns are simply left out, the others keep their order. Everything is
computed on the flux as the view serves it (noisy at the view's noise level); the data
set's flux is already normalised (divided by a smooth mean continuum), and F3 normalises
again locally with its pseudo-continuum.

Saved to / loaded from an .npz (np.load(allow_pickle=False)); see `to_arrays`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

GROUPS = ("F0", "F1", "F2", "F3")
N_PCA, N_BANDS = 32, 24


def _fe(w: float) -> tuple:
    return (w - 1.6, w + 1.6), (w - 6.0, w - 3.0), (w + 3.0, w + 6.0)


# name -> (line window, blue continuum window, red continuum window), Angstrom
_CAT_CONT = {"b1": (8474.0, 8484.0), "r1": (8563.0, 8577.0), "b3": (8619.0, 8642.0), "r3": (8700.0, 8725.0)}
LINES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "CaII_8498": ((8484.0, 8513.0), _CAT_CONT["b1"], _CAT_CONT["r1"]),
    "CaII_8542": ((8522.0, 8562.0), _CAT_CONT["b1"], _CAT_CONT["r1"]),
    "CaII_8662": ((8642.0, 8682.0), _CAT_CONT["b3"], _CAT_CONT["r3"]),
    "NaI_8183": ((8179.5, 8187.0), (8164.0, 8174.0), (8199.0, 8205.0)),
    "NaI_8195": ((8191.0, 8198.5), (8164.0, 8174.0), (8199.0, 8205.0)),
    "KI_7665": ((7661.0, 7669.0), (7645.0, 7655.0), (7676.0, 7686.0)),
    "KI_7699": ((7695.0, 7703.0), (7676.0, 7686.0), (7710.0, 7720.0)),
    "MgI_8807": ((8802.0, 8811.5), (8786.0, 8796.0), (8813.0, 8820.0)),
    "OI_7774": ((7769.0, 7778.5), (7755.0, 7765.0), (7782.0, 7792.0)),
    "Pa12_8750": ((8745.5, 8755.5), _CAT_CONT["r3"], (8776.0, 8792.0)),
    "Pa13_8665": ((8663.5, 8669.5), _CAT_CONT["b3"], _CAT_CONT["r3"]),
    "Pa14_8598": ((8593.5, 8603.5), _CAT_CONT["r1"], _CAT_CONT["b3"]),
    "Pa15_8545": ((8544.0, 8550.0), _CAT_CONT["b1"], _CAT_CONT["r1"]),
    "Pa16_8502": ((8501.0, 8507.0), _CAT_CONT["b1"], _CAT_CONT["r1"]),
    "FeI_7411": _fe(7411.15),
    "FeI_7446": _fe(7445.75),
    "FeI_7495": _fe(7495.07),
    "FeI_7511": _fe(7511.02),
    "FeI_7748": _fe(7748.27),
    "FeI_8327": _fe(8327.06),
    "FeI_8388": _fe(8387.77),
    "FeI_8622": _fe(8621.60),
    "FeI_8689": _fe(8688.62),
}
assert len(LINES) == 23


def column_names(n_pca: int = N_PCA, n_bands: int = N_BANDS) -> tuple[list[str], list[str]]:
    """All column names and the group of each, in the fixed order."""
    names, groups = [], []
    for i in range(n_pca):
        names.append(f"pca_{i}"), groups.append("F0")
    for i in range(n_bands):
        names.append(f"band_mean_{i}"), groups.append("F1")
    for i in range(n_bands):
        names.append(f"band_std_{i}"), groups.append("F1")
    for i in range(n_bands - 1):
        names.append(f"colour_{i + 1}_{i}"), groups.append("F2")
    for k in LINES:
        names.append(f"ew_{k}"), groups.append("F3")
    return names, groups


class GlobalFeatures:
    """fit(train_flux, wave) -> self; transform(flux) -> (n, n_columns) float32.

    `groups` are the groups kept (default all four: 126 columns)."""

    def __init__(self, groups=GROUPS, n_pca: int = N_PCA, n_bands: int = N_BANDS,
                 max_pca_rows: int = 10000, seed: int = 0):
        bad = [g for g in groups if g not in GROUPS]
        if bad:
            raise ValueError(f"unknown feature group(s) {bad}; choose from {GROUPS}")
        self.groups = tuple(g for g in GROUPS if g in groups)
        if not self.groups:
            raise ValueError("at least one feature group must be kept")
        self.n_pca, self.n_bands, self.max_pca_rows, self.seed = int(n_pca), int(n_bands), int(max_pca_rows), int(seed)
        all_names, all_groups = column_names(self.n_pca, self.n_bands)
        keep = [g in self.groups for g in all_groups]
        self.names = [n for n, k in zip(all_names, keep) if k]
        self.group_of = np.array([g for g, k in zip(all_groups, keep) if k])
        self.keep_mask = np.array(keep)

    @property
    def n_features(self) -> int:
        return len(self.names)

    # ------------------------------------------------------------------ fitting
    def fit(self, train_flux: np.ndarray, wave: np.ndarray) -> "GlobalFeatures":
        """Fit the PCA on the training flux (n, P) and precompute the band and line windows."""
        flux = np.asarray(train_flux, dtype=np.float32)
        self.wave_ = np.asarray(wave, dtype=np.float64)
        if flux.ndim != 2 or flux.shape[1] != self.wave_.size:
            raise ValueError(f"flux must be (n, {self.wave_.size}), got {flux.shape}")
        if "F0" in self.groups:
            from sklearn.utils.extmath import randomized_svd
            rows = flux
            if len(rows) > self.max_pca_rows:
                pick = np.sort(np.random.default_rng(self.seed).choice(len(rows), self.max_pca_rows, replace=False))
                rows = rows[pick]
            self.pca_mean_ = rows.mean(axis=0, dtype=np.float64).astype(np.float32)
            k = min(self.n_pca, min(rows.shape) - 1)
            _, _, vt = randomized_svd((rows - self.pca_mean_).astype(np.float32), n_components=k,
                                      n_iter=2, n_oversamples=16, random_state=self.seed)
            comp = np.zeros((self.n_pca, self.wave_.size), np.float32)
            comp[:k] = vt
            # a sign convention, so that refits on the same data agree: largest |loading| positive
            sign = np.sign(comp[np.arange(self.n_pca), np.abs(comp).argmax(axis=1)])
            self.pca_components_ = comp * np.where(sign == 0, 1, sign)[:, None].astype(np.float32)
        else:
            self.pca_mean_ = np.zeros(0, np.float32)
            self.pca_components_ = np.zeros((0, self.wave_.size), np.float32)
        self._windows()
        return self

    def _windows(self) -> None:
        w = self.wave_
        self.band_edges_ = np.array([len(a) for a in np.array_split(np.arange(w.size), self.n_bands)]).cumsum()
        self.band_edges_ = np.concatenate([[0], self.band_edges_])
        dlam = np.gradient(w)
        lines = []
        for name, (lw, bw, rw) in LINES.items():
            masks = [(w >= lo) & (w <= hi) for lo, hi in (lw, bw, rw)]
            if not all(m.any() for m in masks):
                raise ValueError(f"line {name}: a window lies outside the wavelength range "
                                 f"{w[0]:.1f}-{w[-1]:.1f} A of this data set")
            li, bi, ri = (np.flatnonzero(m) for m in masks)
            lines.append((li, bi, ri, w[li], float(w[bi].mean()), float(w[ri].mean()), dlam[li]))
        self._lines = lines

    # ------------------------------------------------------------------ transforming
    def transform(self, flux: np.ndarray, chunk: int = 4096) -> np.ndarray:
        flux = np.asarray(flux, dtype=np.float32)
        if flux.ndim == 3:  # a view's x with one channel
            flux = flux[:, 0]
        return np.concatenate([self._transform(flux[i:i + chunk]) for i in range(0, max(len(flux), 1), chunk)]
                              ) if len(flux) else np.zeros((0, self.n_features), np.float32)

    def _transform(self, flux: np.ndarray) -> np.ndarray:
        parts = []
        if "F0" in self.groups:
            parts.append((flux - self.pca_mean_) @ self.pca_components_.T)
        if "F1" in self.groups or "F2" in self.groups:
            e = self.band_edges_
            means = np.stack([flux[:, e[i]:e[i + 1]].mean(axis=1) for i in range(self.n_bands)], axis=1)
            if "F1" in self.groups:
                stds = np.stack([flux[:, e[i]:e[i + 1]].std(axis=1) for i in range(self.n_bands)], axis=1)
                parts += [means, stds]
            if "F2" in self.groups:
                den = np.where(np.abs(means[:, :-1]) < 1e-6, 1e-6, means[:, :-1])
                parts.append(means[:, 1:] / den)
        if "F3" in self.groups:
            ews = []
            for li, bi, ri, wl, wb, wr, dl in self._lines:
                fb = flux[:, bi].mean(axis=1, keepdims=True)
                fr = flux[:, ri].mean(axis=1, keepdims=True)
                fc = fb + (fr - fb) * ((wl - wb) / (wr - wb))[None, :]
                fc = np.where(np.abs(fc) < 1e-3, 1e-3, fc)
                ews.append(((1.0 - flux[:, li] / fc) * dl[None, :]).sum(axis=1))
            parts.append(np.stack(ews, axis=1))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def to_arrays(self, prefix: str = "gf_") -> dict[str, np.ndarray]:
        return {f"{prefix}groups": np.array(self.groups, dtype="U2"),
                f"{prefix}config": np.array([self.n_pca, self.n_bands, self.max_pca_rows, self.seed], np.int64),
                f"{prefix}wave": self.wave_, f"{prefix}pca_mean": self.pca_mean_,
                f"{prefix}pca_components": self.pca_components_}

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str = "gf_") -> "GlobalFeatures":
        n_pca, n_bands, max_rows, seed = (int(v) for v in arrays[f"{prefix}config"])
        gf = cls(groups=tuple(str(g) for g in arrays[f"{prefix}groups"]), n_pca=n_pca, n_bands=n_bands,
                 max_pca_rows=max_rows, seed=seed)
        gf.wave_ = np.asarray(arrays[f"{prefix}wave"], np.float64)
        gf.pca_mean_ = np.asarray(arrays[f"{prefix}pca_mean"], np.float32)
        gf.pca_components_ = np.asarray(arrays[f"{prefix}pca_components"], np.float32)
        gf._windows()
        return gf

    def save(self, path) -> None:
        np.savez(Path(path), **self.to_arrays())

    @classmethod
    def load(cls, path) -> "GlobalFeatures":
        with np.load(Path(path), allow_pickle=False) as z:
            return cls.from_arrays({k: z[k] for k in z.files})


def flux_channel(view) -> np.ndarray:
    """The (n, P) flux channel of a view (channel 'flux' if present, else the first channel)."""
    ch = list(view.channels)
    i = ch.index("flux") if "flux" in ch else 0
    return view.x[:, i]
