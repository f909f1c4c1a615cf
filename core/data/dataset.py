"""Data sets on disk: the HDF5 schema's constants, `Dataset` (open, read, fingerprint) and its
deterministic views (`Dataset.view`, `Dataset.iter_view`).

A view is the one path every model's data takes: for (split, noise level, inputs, seed) it
returns the same arrays every time. Building (core/data/building.py) and importing
(core/data/importing.py) write files this module reads; the schema is docs/data.md.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from core import config
from core.physics.labels import LABEL_BOX, LABEL_TITLES, LABELS  # noqa: F401 - part of core.data's API

SPLITS = ("train", "val", "test")
NOISE_BLOCK = 1024  # rows per block of the seeded noise stream
# an imported /wave must end inside this range (Angstrom): ground-based optical / near-IR spectra.
# A grid in nm (e.g. 710-885) or micron (0.71-0.885) ends below 3000 and is refused with a hint.
WAVE_ANGSTROM_MIN, WAVE_ANGSTROM_MAX = 3000.0, 60000.0
# inputs a view can serve; each is a list of channels
INPUTS = {
    "flux": ["flux"],
    "error": ["error"],
    "error_pipeline": ["error_pipeline"],
    "flux+error": ["flux", "error"],
    "snr": ["snr"],
    "flux_clean": ["flux_clean"],
    "flux+error_shuffled": ["flux", "error_shuffled"],
    "flux+error_constant": ["flux", "error_constant"],
    "flux+error_swapped": ["flux", "error_swapped"],
    "error_swapped": ["error_swapped"],
    "error_shuffled": ["error_shuffled"],
    "meta": ["teff", "mh"],
}
# channels that depend on the noise draw (the others are clean arrays scaled by the noise level)
NOISY_CHANNELS = ("flux", "error_pipeline", "snr")
FRESH_STREAM = 0xF7E5   # tags the noise streams of fresh training draws (NoiseSource.fresh)


class DataError(ValueError):
    """A data set or an import is not usable; the message names the problem in one line."""


def dataset_path(name: str) -> Path:
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise DataError(f"invalid data set name {name!r}")
    return config.data_dir() / f"{name}.h5"


def _fingerprint(f: h5py.File, chunk: int = 2048) -> str:
    """sha256 over wavelengths, labels, splits and every flux and error value (streamed)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(f["wave"][:]).tobytes())
    for k in LABELS:
        h.update(np.ascontiguousarray(f["labels"][k][:]).tobytes())
    for s in SPLITS:
        h.update(np.ascontiguousarray(f["split"][s][:]).tobytes())
    if "nuisance" in f:                            # nuisance labels (absent before nuisances: unchanged)
        for k in sorted(f["nuisance"]):
            h.update(k.encode())
            h.update(np.ascontiguousarray(f["nuisance"][k][:]).tobytes())
    n = f["flux"].shape[0]
    for i in range(0, n, chunk):
        h.update(np.ascontiguousarray(f["flux"][i:i + chunk]).tobytes())
        h.update(np.ascontiguousarray(f["error"][i:i + chunk]).tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- reading
@dataclass
class View:
    """Arrays of one view: x (n, C, P) float32 or (n, 2) for meta, y (n, 3) labels, global row index.
    `recipe` says how Dataset.view made it (data set fingerprint, split, noise level, inputs, seed), so
    that Dataset.noise_source can draw the same view with other noise; None for arrays made otherwise."""
    x: np.ndarray
    y: np.ndarray
    index: np.ndarray
    channels: list[str]
    wave: np.ndarray
    recipe: dict | None = field(default=None, compare=False)


def list_datasets() -> list[str]:
    return sorted(p.stem for p in config.data_dir().glob("*.h5"))


def noise_block(seed: int, noise_level: float, block: int, n_pix: int, rows: int = NOISE_BLOCK,
                stream: tuple = ()) -> np.ndarray:
    """Standard normals for rows [block*NOISE_BLOCK, (block+1)*NOISE_BLOCK): a pure function of
    (data set seed + view seed, noise level, block), so every run sees the same noise. A non-empty
    `stream` (integers) selects another, independent draw of the same rows (fresh training noise)."""
    key = int(round(noise_level * 1e6))
    extra = [int(v) & 0xFFFFFFFF for v in stream]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, key, int(block), *extra]))
    return rng.standard_normal((rows, n_pix), dtype=np.float32)


@dataclass
class NoiseSource:
    """The clean arrays behind one view (Dataset.noise_source) and the noise draw that makes its x.

    draw() gives the view's own fixed draw (the same arrays as Dataset.view); draw(stream) or
    fresh(training_seed, epoch) another draw of the same rows, through the same noise model and the
    same channel code: only the standard normals change."""
    dataset: "Dataset"
    rows: np.ndarray
    noise_level: float
    inputs: str
    seed: int
    flux: np.ndarray                  # clean flux (n, P)
    err: np.ndarray                   # clean error at noise level 1 (n, P)
    foreign: dict = field(default_factory=dict)   # channel -> the donors' clean error (shuffled / swapped)
    y: np.ndarray | None = None
    recipe: dict | None = None

    @property
    def noisy(self) -> bool:
        """Whether any channel depends on the noise draw (flux_clean, error, ... do not)."""
        return any(c in NOISY_CHANNELS for c in INPUTS[self.inputs])

    def draw(self, stream: tuple = (), chunk: int = 4096) -> View:
        ds, parts = self.dataset, []
        for i in range(0, self.rows.size, chunk):
            sl = slice(i, i + chunk)
            clean = (self.flux[sl], self.err[sl], {k: v[sl] for k, v in self.foreign.items()})
            parts.append(ds._channels(self.rows[sl], self.noise_level, self.inputs, self.seed, stream, clean)[0])
        x = np.concatenate(parts) if parts else np.empty((0, len(INPUTS[self.inputs]), ds.n_pix), np.float32)
        return View(x, self.y, self.rows, INPUTS[self.inputs], ds.wave,
                    dict(self.recipe or {}, stream=list(stream)))

    def fresh(self, training_seed: int, epoch: int) -> View:
        """A fresh draw for one epoch of training: a pure function of (data set, view, training seed, epoch)."""
        return self.draw((FRESH_STREAM, int(training_seed), int(epoch)))


def open_readonly(path) -> h5py.File:
    """A data set file opened for reading without HDF5's file lock: locks do not work (or hang) on many
    network file systems, and nothing needs them here, because a data set is written to a temporary file
    and renamed into place (building.py, importing.py), so a reader never sees a file being written."""
    return h5py.File(path, "r", locking=False)


class Dataset:
    """A data set file opened for reading. Labels and splits are small and held in memory;
    flux and error are read in chunks on demand."""

    def __init__(self, name_or_path: str | os.PathLike):
        p = Path(name_or_path)
        if p.suffix != ".h5":
            p = dataset_path(str(name_or_path))
        if not p.exists():
            raise DataError(f"data set {p.stem!r} not found in {p.parent}")
        self.path = p
        with open_readonly(p) as f:
            self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            self.wave = f["wave"][()]
            self.labels = np.stack([f["labels"][k][()] for k in LABELS], axis=1)
            self.splits = {k: f["split"][k][()] for k in SPLITS}
            self.has_meta = "meta" in f and "star_counts" in f["meta"]
            if self.has_meta:
                self.star_counts = f["meta"]["star_counts"][()]
                self.sky_counts = f["meta"]["sky_counts"][()]
                self.throughput = f["meta"]["throughput"][()]
                self.read_noise = float(f["meta"]["read_noise"][()])
                self.oh_relative = f["meta"]["oh_relative"][()] if "oh_relative" in f["meta"] else None
            # per-star nuisance labels (core/physics/nuisance.py) of a data set built with a recipe, else None
            self.nuisance = {k: f["nuisance"][k][()] for k in f["nuisance"]} if "nuisance" in f else None
        rec = self.attrs.get("nuisance_recipe")
        self.nuisance_recipe = json.loads(rec) if rec else None
        phys = self.attrs.get("physics_recipe")     # a physics variant's recipe (config.PHYSICS_RECIPES), else None
        self.physics_recipe = json.loads(phys) if phys else None
        self.name = str(self.attrs.get("name", p.stem))
        self.fingerprint = str(self.attrs.get("fingerprint", ""))
        self.seed = int(self.attrs.get("seed", 0))
        self.n, self.n_pix = self.labels.shape[0], self.wave.size

    def __repr__(self):
        return f"Dataset({self.name!r}, n={self.n}, fingerprint={self.fingerprint})"

    def info(self) -> dict:
        d = {"name": self.name, "path": str(self.path), "spectra": self.n, "pixels": self.n_pix,
             "wavelength": f"{self.wave[0]:.1f}-{self.wave[-1]:.1f} A",
             **{f"{k} split": int(v.size) for k, v in self.splits.items()}}
        for k in ("source", "simulator_version", "seed", "profile", "created", "fingerprint", "normalisation"):
            d[k] = self.attrs.get(k, "")
        for i, k in enumerate(LABELS):
            d[f"{k} range"] = f"{self.labels[:, i].min():.3g} .. {self.labels[:, i].max():.3g}"
        if self.nuisance_recipe is not None:
            d["nuisances"] = self.nuisance_recipe.get("name", "custom")
        if self.physics_recipe is not None:
            d["physics"] = self.physics_recipe.get("name", "custom")
        return d

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clean flux and clean error (noise level 1) for sorted global rows."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        with open_readonly(self.path) as f:
            fl, er = self._read_sorted(f["flux"], srt), self._read_sorted(f["error"], srt)
        out_f, out_e = np.empty_like(fl), np.empty_like(er)
        out_f[order], out_e[order] = fl, er
        return out_f, out_e

    @staticmethod
    def _read_sorted(d: "h5py.Dataset", srt: np.ndarray, span_bytes: int = 256 << 20) -> np.ndarray:
        """Rows `srt` (sorted, repeats allowed) of a 2-D data set. h5py's point selection is ~10x
        slower than a contiguous read, so rows are read as contiguous spans of at most `span_bytes`
        and picked out in numpy."""
        out = np.empty((srt.size, d.shape[1]), dtype=d.dtype)
        if not srt.size:
            return out
        per_row = d.shape[1] * d.dtype.itemsize
        span_rows = max(1, span_bytes // per_row)
        i = 0
        while i < srt.size:
            lo = int(srt[i])
            j = int(np.searchsorted(srt, lo + span_rows, side="left"))
            hi = int(srt[j - 1]) + 1
            out[i:j] = d[lo:hi][srt[i:j] - lo]
            i = j
        return out

    def noise(self, rows: np.ndarray, noise_level: float, seed: int = 0, stream: tuple = ()) -> np.ndarray:
        """The fixed standard-normal draws for these global rows at this noise level (another,
        independent draw for a non-empty `stream`: see noise_block)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.n_pix), dtype=np.float32)
        blocks = rows // NOISE_BLOCK
        for b in np.unique(blocks):
            sel = blocks == b
            z = noise_block(self.seed * 1000003 + seed, noise_level, int(b), self.n_pix, stream=stream)
            out[sel] = z[rows[sel] % NOISE_BLOCK]
        return out

    def noisy(self, rows: np.ndarray, noise_level: float, seed: int = 0, flux=None, err=None, stream: tuple = ()):
        """(noisy flux, clean flux, clean error) of these rows at this noise level: the one noise draw
        every view, example and chart uses, flux + noise_level * error * N(0, 1)."""
        if flux is None or err is None:
            flux, err = self.read(np.asarray(rows, dtype=np.int64))
        return flux + noise_level * err * self.noise(rows, noise_level, seed, stream), flux, err

    def _pipeline_sigma(self, noisy: np.ndarray, rows: np.ndarray, clean_sigma: np.ndarray) -> np.ndarray:
        if not self.has_meta:
            # imported data: no noise model known; the noisy-flux estimate scales the clean one
            return clean_sigma
        nt = self.star_counts[rows][:, None] * self.throughput[None, :]
        var = nt * np.clip(noisy, 0, None) + self.sky_counts[None, :] + self.read_noise ** 2
        return (np.sqrt(var) / nt).astype(np.float32)

    def _channels(self, rows: np.ndarray, noise_level: float, inputs: str, seed: int, stream: tuple = (),
                  clean: tuple | None = None) -> tuple[np.ndarray, list[str]]:
        """The channels of `inputs` for these rows; `clean` = (flux, error, {channel: donors' error})
        already read (NoiseSource), `stream` another noise draw (noise_block)."""
        chans = INPUTS[inputs]
        flux, err, foreign = clean if clean is not None else (None, None, {})
        noisy, flux, err = self.noisy(rows, noise_level, seed, flux, err, stream)
        out = []
        for c in chans:
            if c == "flux":
                out.append(noisy)
            elif c == "flux_clean":
                out.append(flux)
            elif c == "error":
                out.append(noise_level * err)
            elif c == "error_pipeline":
                out.append(noise_level * self._pipeline_sigma(noisy, rows, err))
            elif c == "snr":
                out.append(noisy / (noise_level * err) if noise_level > 0 else noisy / err)
            elif c == "error_constant":
                out.append(np.full_like(err, float(noise_level * self.error_scale())))
            elif c in ("error_shuffled", "error_swapped"):
                fe = foreign.get(c)
                out.append(noise_level * (fe if fe is not None else self._foreign_error(rows, c == "error_swapped", seed)))
            else:
                raise DataError(f"unknown channel {c!r}")
        return np.stack(out, axis=1).astype(np.float32), chans

    def _split_of(self) -> np.ndarray:
        """Which split (0 train, 1 val, 2 test, -1 none) each global row belongs to."""
        if getattr(self, "_split_index", None) is None:
            idx = np.full(self.n, -1, dtype=np.int64)
            for i, s in enumerate(SPLITS):
                idx[self.splits[s]] = i
            self._split_index = idx
        return self._split_index

    def _donors(self, split_id: int, same_teff_mh: bool, seed: int) -> np.ndarray:
        """Donor row for every row of one split (-1 elsewhere), a pure function of (split, kind,
        seed): the same whatever the chunking of the view. Shuffled: a seeded derangement of the
        split (never the star itself). Swapped: the star of the split with the nearest (Teff, [M/H])
        whose log g differs by at least 1 dex."""
        key = (split_id, same_teff_mh, seed)
        cache = self.__dict__.setdefault("_donor_cache", {})
        if key in cache:
            return cache[key]
        members = np.nonzero(self._split_of() == split_id)[0] if split_id >= 0 else np.arange(self.n)
        donor = np.full(self.n, -1, dtype=np.int64)
        if members.size >= 2 and not same_teff_mh:
            rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 7919, split_id + 1]))
            p = members[rng.permutation(members.size)]
            donor[p] = np.roll(p, -1)
        elif members.size >= 2:
            lab = self.labels[members]
            t = (lab[:, 0] - LABEL_BOX["teff"][0]) / (LABEL_BOX["teff"][1] - LABEL_BOX["teff"][0])
            m = (lab[:, 2] - LABEL_BOX["mh"][0]) / (LABEL_BOX["mh"][1] - LABEL_BOX["mh"][0])
            for i0 in range(0, members.size, 512):
                sl = slice(i0, i0 + 512)
                d = (t[sl, None] - t[None, :]) ** 2 + (m[sl, None] - m[None, :]) ** 2
                d = np.where(np.abs(lab[sl, 1][:, None] - lab[None, :, 1]) >= 1.0, d, np.inf)
                j = np.argmin(d, axis=1)
                ok = np.isfinite(d[np.arange(d.shape[0]), j])
                # no star 1 dex away in log g: fall back to the star farthest in log g
                far = np.argmax(np.abs(lab[sl, 1][:, None] - lab[None, :, 1]), axis=1)
                donor[members[sl]] = members[np.where(ok, j, far)]
        else:
            donor[members] = members
        cache[key] = donor
        return donor

    def _foreign_error(self, rows: np.ndarray, same_teff_mh: bool, seed: int) -> np.ndarray:
        """Error vectors of other stars of the same split: a random star (shuffled), or the star
        with the nearest (Teff, [M/H]) but a log g at least 1 dex away (swapped)."""
        sid = self._split_of()[rows]
        donors = np.empty_like(rows)
        for s in np.unique(sid):
            sel = sid == s
            donors[sel] = self._donors(int(s), same_teff_mh, seed)[rows[sel]]
        _, err = self.read(donors)
        return err

    def error_scale(self) -> float:
        """One number for the 'error_constant' channel: the median clean error of (up to) the first
        256 training spectra. A property of the data set, so every chunk of a view agrees."""
        if getattr(self, "_error_scale", None) is None:
            rows = self.splits["train"][:256] if self.splits["train"].size else np.arange(min(self.n, 256))
            _, err = self.read(rows)
            self._error_scale = float(np.median(err))
        return self._error_scale

    def split_rows(self, split: str, limit: int | None = None) -> np.ndarray:
        if split not in self.splits:
            raise DataError(f"unknown split {split!r}; choose train, val or test")
        rows = self.splits[split]
        return rows[:limit] if limit else rows

    def split_snr(self, split: str, noise_level: float, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """(rows of a split, each star's S/N at this noise level): the median over pixels of clean flux /
        (noise level x 1-sigma error), what Predict measures of an upload and the S/N bins of the Overview
        and the digest are made of. Read in chunks of rows."""
        rows = self.split_rows(split)
        out = np.empty(rows.size, np.float64)
        scale = noise_level if noise_level > 0 else 1.0
        for i in range(0, rows.size, chunk):
            fl, er = self.read(rows[i:i + chunk])
            out[i:i + chunk] = np.median(fl / (scale * er), axis=1)
        return rows, out

    def view(self, split: str, noise_level: float, inputs: str = "flux", seed: int = 0,
             limit: int | None = None) -> View:
        """The whole split (or its first `limit` rows) in memory. Deterministic in every argument."""
        if inputs not in INPUTS:
            raise DataError(f"unknown inputs {inputs!r}; choose one of {', '.join(INPUTS)}")
        rows = self.split_rows(split, limit)
        y = self.labels[rows].astype(np.float32)
        recipe = {"fingerprint": self.fingerprint, "split": split, "noise_level": float(noise_level),
                  "inputs": inputs, "seed": int(seed), "limit": limit}
        if inputs == "meta":
            return View(self.labels[rows][:, [0, 2]].astype(np.float32), y, rows, INPUTS["meta"], self.wave, recipe)
        # filled in place, chunk by chunk: the view's peak memory is its own size plus one chunk (it was
        # twice its size while a list of chunks was concatenated)
        x = np.empty((rows.size, len(INPUTS[inputs]), self.n_pix), np.float32)
        for i in range(0, rows.size, 4096):
            part, _ = self._channels(rows[i:i + 4096], noise_level, inputs, seed)
            x[i:i + len(part)] = part
        return View(x, y, rows, INPUTS[inputs], self.wave, recipe)

    def noise_source(self, view: View) -> NoiseSource:
        """The clean arrays of a view made by `view` (its recipe) and the noise draw that makes its x:
        what a model needs to train on a fresh noise draw every epoch (models/noise.py). The donors of
        the shuffled / swapped error channels are those of the view: only the noise draw can change."""
        r = view.recipe
        if not r or r.get("inputs") == "meta":
            raise DataError("this view was not made by Dataset.view from noisy spectra: no noise to redraw")
        if r.get("fingerprint") != self.fingerprint:
            raise DataError(f"the view comes from another data set (fingerprint {r.get('fingerprint')}, "
                            f"this one {self.fingerprint})")
        rows = np.asarray(view.index, dtype=np.int64)
        flux, err = self.read(rows)
        foreign = {c: self._foreign_error(rows, c == "error_swapped", int(r["seed"]))
                   for c in INPUTS[r["inputs"]] if c in ("error_shuffled", "error_swapped")}
        return NoiseSource(self, rows, float(r["noise_level"]), r["inputs"], int(r["seed"]), flux, err, foreign,
                           view.y, {k: v for k, v in r.items() if k != "stream"})

    def iter_view(self, split: str, noise_level: float, inputs: str = "flux", seed: int = 0,
                  chunk: int = 2048) -> Iterator[View]:
        """The same arrays as `view`, in chunks: a 200,000-spectrum file never sits in memory whole."""
        rows_all = self.split_rows(split)
        for i in range(0, rows_all.size, chunk):
            rows = rows_all[i:i + chunk]
            x, chans = self._channels(rows, noise_level, inputs, seed)
            yield View(x, self.labels[rows].astype(np.float32), rows, chans, self.wave)


def summary_json(ds: Dataset) -> str:
    return json.dumps(ds.info(), indent=2, default=str)
