"""Data sets: one HDF5 file per data set under artifacts/data/, built by the simulator or imported.

The schema is documented in docs/data.md. This module builds (`build`), validates and
imports (`import_hdf5`), opens (`Dataset`) and serves deterministic views (`Dataset.view`,
`Dataset.iter_view`) of a data set. A view is the one path every model's data takes:
for (split, noise level, inputs, seed) it returns the same arrays every time.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import h5py
import numpy as np

from core import config

LABELS = ("teff", "logg", "mh")
LABEL_TITLES = {"teff": "Teff [K]", "logg": "log g [dex]", "mh": "[M/H] [dex]"}
SPLITS = ("train", "val", "test")
LABEL_BOX = {"teff": (3500.0, 7000.0), "logg": (1.0, 5.0), "mh": (-2.5, 0.5)}
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


class DataError(ValueError):
    """A data set or an import is not usable; the message names the problem in one line."""


# --------------------------------------------------------------------------- building
def latin_hypercube(n: int, rng: np.random.Generator) -> np.ndarray:
    """n points in [0,1)^3, one per stratum on each axis: independent labels with tiny sample correlation."""
    u = (rng.permuted(np.tile(np.arange(n), (3, 1)), axis=1).T + rng.uniform(size=(n, 3))) / n
    return u


def sample_labels(n: int, rng: np.random.Generator, tries: int = 32) -> np.ndarray:
    """Teff, log g, [M/H] sampled independently (Latin hypercube) over LABEL_BOX; of `tries`
    hypercubes the one with the smallest largest pairwise correlation is kept, so the grid's
    independence check holds for small data sets too."""
    best, best_c = None, np.inf
    for _ in range(tries):
        u = latin_hypercube(n, rng)
        c = np.abs(np.corrcoef(u.T)[np.triu_indices(3, 1)]).max()
        if c < best_c:
            best, best_c = u, c
    u = best
    lo = np.array([LABEL_BOX[k][0] for k in LABELS])
    hi = np.array([LABEL_BOX[k][1] for k in LABELS])
    return lo + u * (hi - lo)


def _split_indices(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    perm = rng.permutation(n)
    n_tr = int(round(config.SPLIT_FRACTIONS[0] * n))
    n_va = int(round(config.SPLIT_FRACTIONS[1] * n))
    parts = {"train": perm[:n_tr], "val": perm[n_tr:n_tr + n_va], "test": perm[n_tr + n_va:]}
    return {k: np.sort(v).astype(np.int64) for k, v in parts.items()}


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
    n = f["flux"].shape[0]
    for i in range(0, n, chunk):
        h.update(np.ascontiguousarray(f["flux"][i:i + chunk]).tobytes())
        h.update(np.ascontiguousarray(f["error"][i:i + chunk]).tobytes())
    return h.hexdigest()[:16]


def _create_arrays(f: h5py.File, n: int, wave: np.ndarray):
    f.create_dataset("wave", data=wave.astype(np.float64))
    rows = max(1, min(256, n))
    for k in ("flux", "error"):
        f.create_dataset(k, shape=(n, len(wave)), dtype=np.float32, chunks=(rows, len(wave)))
    g = f.create_group("labels")
    for k in LABELS:
        g.create_dataset(k, shape=(n,), dtype=np.float64)


def build(name: str | None = None, profile: str = "quick", n: int | None = None, seed: int | None = None,
          device: str | None = None, progress: Callable[[float, str], None] | None = None,
          batch: int = 256) -> Path:
    """Simulate a data set and write it atomically to artifacts/data/NAME.h5. Returns the path."""
    # OpenMP threads that sleep instead of spinning while they wait: on a shared or oversubscribed
    # CPU the default spin-wait made the build 2x slower (docs/benchmarks.md). Only takes effect
    # when torch is first imported here (the `python -m core data build` path); an explicit
    # OMP_WAIT_POLICY in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from core import simulate

    prof = config.profile(profile)
    name = name or prof["dataset"]
    n = int(n or prof["n_spectra"])
    seed = int(prof["seed"] if seed is None else seed)
    if n < 20:
        raise DataError(f"a data set needs at least 20 spectra (asked for {n})")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    path = dataset_path(name)
    tmp = path.with_suffix(f".h5.tmp{os.getpid()}")
    rng = np.random.default_rng(seed)
    labels = sample_labels(n, rng)
    counts = simulate.sample_star_counts(n, rng)
    splits = _split_indices(n, rng)
    sim = simulate.default_simulator(device)
    try:
        with h5py.File(tmp, "w") as f:
            wave = sim.wave.detach().cpu().double().numpy()
            _create_arrays(f, n, wave)
            for i, k in enumerate(LABELS):
                f["labels"][k][:] = labels[:, i]
            sg = f.create_group("split")
            for k, v in splits.items():
                sg.create_dataset(k, data=v)
            meta = f.create_group("meta")
            meta.create_dataset("star_counts", data=counts)
            meta.create_dataset("sky_counts", data=sim.sky_counts.cpu().double().numpy())
            meta.create_dataset("throughput", data=sim.throughput.cpu().double().numpy())
            meta.create_dataset("read_noise", data=simulate.READ_NOISE)
            meta.create_dataset("oh_relative", data=sim.oh_relative.cpu().double().numpy())
            for i in range(0, n, batch):
                lab = torch.as_tensor(labels[i:i + batch], dtype=torch.float32, device=device)
                cnt = torch.as_tensor(counts[i:i + batch], dtype=torch.float32, device=device)
                with torch.no_grad():
                    flux = sim(lab)
                    sig = sim.sigma(flux, cnt)
                f["flux"][i:i + len(lab)] = flux.cpu().numpy()
                f["error"][i:i + len(lab)] = sig.cpu().numpy()
                if progress:
                    progress(min(1.0, (i + len(lab)) / n), f"simulated {i + len(lab)} / {n} spectra")
            f.attrs.update({
                "name": name, "source": "simulator", "simulator_version": simulate.SIMULATOR_VERSION,
                "seed": seed, "profile": prof["name"], "n_spectra": n,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "normalisation": "flux / mean of the Planck continuum over the window (smooth in Teff)",
                "description": f"built-in simulator v{simulate.SIMULATOR_VERSION}, {n} spectra, seed {seed}",
            })
            f.attrs["fingerprint"] = _fingerprint(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --------------------------------------------------------------------------- validation / import
def _problem(msg: str):
    raise DataError(_one_line(msg))


def _one_line(x) -> str:
    return " ".join(str(x).split())


def validate_source(path: str | os.PathLike) -> dict:
    """Check a user HDF5 file against the schema of docs/data.md. Returns a summary dict,
    raises DataError with a one-line message naming the first problem found."""
    path = Path(path)
    if not path.exists():
        _problem(f"{path}: no such file")
    if not path.is_file():
        _problem(f"{path}: not a file")
    try:
        is_h5 = h5py.is_hdf5(path)
    except OSError as e:
        _problem(f"{path.name}: cannot be read ({_one_line(e)})")
    if not is_h5:
        _problem(f"{path.name}: not an HDF5 file (see docs/data.md for the schema)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        _problem(f"{path.name}: cannot be opened as HDF5 ({_one_line(e)})")
    with f:
        for k in ("wave", "flux"):
            if k not in f or not isinstance(f[k], h5py.Dataset):
                _problem(f"{path.name}: missing dataset /{k} (see docs/data.md)")
        if "error" not in f and "ivar" not in f:
            _problem(f"{path.name}: missing dataset /error (or /ivar) (see docs/data.md)")
        if "labels" not in f or not isinstance(f["labels"], h5py.Group):
            _problem(f"{path.name}: missing group /labels with datasets teff, logg, mh")
        missing = [k for k in LABELS if k not in f["labels"]]
        if missing:
            _problem(f"{path.name}: /labels lacks {', '.join(missing)} (expected teff, logg, mh)")
        for k in LABELS:
            if not isinstance(f["labels"][k], h5py.Dataset):
                _problem(f"{path.name}: /labels/{k} must be a dataset, not a group")
        for k in ("wave", "flux", "error", "ivar", "labels/teff", "labels/logg", "labels/mh"):
            if k in f and isinstance(f[k], h5py.Dataset) and not np.issubdtype(f[k].dtype, np.number):
                _problem(f"{path.name}: /{k} has dtype {f[k].dtype}; expected numbers")
        wave = np.asarray(f["wave"][()], dtype=np.float64)
        if wave.ndim != 1 or wave.size < 16:
            _problem(f"{path.name}: /wave must be 1-D with at least 16 pixels, got shape {wave.shape}")
        if not np.all(np.isfinite(wave)):
            _problem(f"{path.name}: /wave contains NaN or inf")
        dw = np.diff(wave)
        if np.any(dw == 0):
            bad = int(np.argmax(dw == 0))
            _problem(f"{path.name}: /wave has a duplicated wavelength {wave[bad]:.4f} at pixels {bad} and {bad + 1}; "
                     f"wavelengths must be strictly increasing")
        if np.any(dw < 0):
            bad = int(np.argmax(dw < 0))
            _problem(f"{path.name}: /wave is not strictly increasing (pixel {bad} -> {bad + 1}: "
                     f"{wave[bad]:.4f} -> {wave[bad + 1]:.4f}); sort the pixels by wavelength")
        if wave[0] <= 0:
            _problem(f"{path.name}: /wave starts at {wave[0]:.4g}; wavelengths must be positive Angstrom")
        if wave[-1] < WAVE_ANGSTROM_MIN or wave[-1] > WAVE_ANGSTROM_MAX:
            unit = "micron (multiply by 1e4)" if wave[-1] < 30 else (
                "nm (multiply by 10)" if wave[-1] < WAVE_ANGSTROM_MIN else "an unknown unit")
            _problem(f"{path.name}: /wave spans {wave[0]:.4g}-{wave[-1]:.4g}, which looks like {unit}; "
                     f"expected Angstrom ({WAVE_ANGSTROM_MIN:g}-{WAVE_ANGSTROM_MAX:g})")
        flux = f["flux"]
        ekey = "error" if "error" in f else "ivar"
        err = f[ekey]
        if not isinstance(err, h5py.Dataset):
            _problem(f"{path.name}: /{ekey} must be a dataset, not a group")
        if flux.ndim != 2 or flux.shape[1] != wave.size:
            _problem(f"{path.name}: /flux has shape {flux.shape}; expected (n_spectra, {wave.size}) to match /wave")
        if err.shape != flux.shape:
            _problem(f"{path.name}: /{ekey} has shape {err.shape}; expected {flux.shape} like /flux")
        n = flux.shape[0]
        if n < 20:
            _problem(f"{path.name}: only {n} spectra; at least 20 are needed to train and test")
        for k in LABELS:
            lab = np.asarray(f["labels"][k][()], dtype=np.float64)
            if lab.shape != (n,):
                _problem(f"{path.name}: /labels/{k} has shape {lab.shape}; expected ({n},)")
            nbad = int((~np.isfinite(lab)).sum())
            if nbad:
                _problem(f"{path.name}: /labels/{k} has {nbad} NaN/inf values (first at row {int(np.argmax(~np.isfinite(lab)))})")
        for i in range(0, n, 2048):
            fl = flux[i:i + 2048]
            er = err[i:i + 2048]
            if not np.all(np.isfinite(fl)):
                r = i + int(np.argmax(~np.all(np.isfinite(fl), axis=1)))
                _problem(f"{path.name}: /flux has NaN/inf values (first in spectrum {r})")
            if not np.all(np.isfinite(er)):
                r = i + int(np.argmax(~np.all(np.isfinite(er), axis=1)))
                _problem(f"{path.name}: /{ekey} has NaN/inf values (first in spectrum {r})")
            if np.any(er <= 0):
                r = i + int(np.argmax(np.any(er <= 0, axis=1)))
                _problem(f"{path.name}: /{ekey} has zero or negative values (first in spectrum {r}); errors must be > 0")
            if np.any(np.mean(fl, axis=1) <= 0):
                r = i + int(np.argmax(np.mean(fl, axis=1) <= 0))
                _problem(f"{path.name}: spectrum {r} has a mean flux <= 0 and cannot be normalised")
        splits = None
        if "split" in f:
            splits = {}
            for s in SPLITS:
                if s not in f["split"]:
                    _problem(f"{path.name}: /split lacks {s} (expected train, val, test)")
                idx = np.asarray(f["split"][s][()])
                if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
                    _problem(f"{path.name}: /split/{s} must be a 1-D integer array")
                if idx.size and (idx.min() < 0 or idx.max() >= n):
                    _problem(f"{path.name}: /split/{s} has indices outside 0..{n - 1}")
                splits[s] = idx
            allidx = np.concatenate(list(splits.values()))
            if np.unique(allidx).size != allidx.size:
                _problem(f"{path.name}: /split/train, val and test overlap")
        return {"n": n, "n_pix": int(wave.size), "wave_min": float(wave[0]), "wave_max": float(wave[-1]),
                "error_key": ekey, "has_split": splits is not None}


def import_hdf5(src: str | os.PathLike, name: str | None = None, seed: int = 0,
                progress: Callable[[float, str], None] | None = None) -> Path:
    """Validate a user HDF5 grid and copy it, normalised, into artifacts/data/NAME.h5.
    Nothing is written unless the whole file is valid."""
    src = Path(src)
    info = validate_source(src)
    name = name or src.stem
    path = dataset_path(name)
    if path.exists():
        raise DataError(f"a data set named {name!r} already exists; pass --name to choose another")
    tmp = path.with_suffix(f".h5.tmp{os.getpid()}")
    n = info["n"]
    try:
        with h5py.File(src, "r") as s, h5py.File(tmp, "w") as f:
            wave = np.asarray(s["wave"][()], dtype=np.float64)
            _create_arrays(f, n, wave)
            for k in LABELS:
                f["labels"][k][:] = np.asarray(s["labels"][k][()], dtype=np.float64)
            if info["has_split"]:
                splits = {k: np.sort(np.asarray(s["split"][k][()], dtype=np.int64)) for k in SPLITS}
            else:
                splits = _split_indices(n, np.random.default_rng(seed))
            sg = f.create_group("split")
            for k, v in splits.items():
                sg.create_dataset(k, data=v)
            for i in range(0, n, 1024):
                fl = np.asarray(s["flux"][i:i + 1024], dtype=np.float64)
                er = np.asarray(s[info["error_key"]][i:i + 1024], dtype=np.float64)
                if info["error_key"] == "ivar":
                    er = 1.0 / np.sqrt(er)
                scale = fl.mean(axis=1, keepdims=True)
                f["flux"][i:i + len(fl)] = (fl / scale).astype(np.float32)
                f["error"][i:i + len(fl)] = (er / scale).astype(np.float32)
                if progress:
                    progress(min(1.0, (i + len(fl)) / n), f"copied {i + len(fl)} / {n} spectra")
            f.attrs.update({
                "name": name, "source": f"import:{src.name}", "simulator_version": "",
                "seed": seed, "profile": "", "n_spectra": n,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "normalisation": "flux and error divided by each spectrum's mean flux",
                "description": str(s.attrs.get("description", f"imported from {src.name}")),
            })
            f.attrs["fingerprint"] = _fingerprint(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --------------------------------------------------------------------------- reading
@dataclass
class View:
    """Arrays of one view: x (n, C, P) float32 or (n, 2) for meta, y (n, 3) labels, global row index."""
    x: np.ndarray
    y: np.ndarray
    index: np.ndarray
    channels: list[str]
    wave: np.ndarray


def list_datasets() -> list[str]:
    return sorted(p.stem for p in config.data_dir().glob("*.h5"))


def noise_block(seed: int, noise_level: float, block: int, n_pix: int, rows: int = NOISE_BLOCK) -> np.ndarray:
    """Standard normals for rows [block*NOISE_BLOCK, (block+1)*NOISE_BLOCK): a pure function of
    (data set seed + view seed, noise level, block), so every run sees the same noise."""
    key = int(round(noise_level * 1e6))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, key, int(block)]))
    return rng.standard_normal((rows, n_pix), dtype=np.float32)


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
        with h5py.File(p, "r") as f:
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
        return d

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clean flux and clean error (noise level 1) for sorted global rows."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        with h5py.File(self.path, "r") as f:
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

    def noise(self, rows: np.ndarray, noise_level: float, seed: int = 0) -> np.ndarray:
        """The fixed standard-normal draws for these global rows at this noise level."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.n_pix), dtype=np.float32)
        blocks = rows // NOISE_BLOCK
        for b in np.unique(blocks):
            sel = blocks == b
            z = noise_block(self.seed * 1000003 + seed, noise_level, int(b), self.n_pix)
            out[sel] = z[rows[sel] % NOISE_BLOCK]
        return out

    def _pipeline_sigma(self, noisy: np.ndarray, rows: np.ndarray, clean_sigma: np.ndarray) -> np.ndarray:
        if not self.has_meta:
            # imported data: no noise model known; the noisy-flux estimate scales the clean one
            return clean_sigma
        nt = self.star_counts[rows][:, None] * self.throughput[None, :]
        var = nt * np.clip(noisy, 0, None) + self.sky_counts[None, :] + self.read_noise ** 2
        return (np.sqrt(var) / nt).astype(np.float32)

    def _channels(self, rows: np.ndarray, noise_level: float, inputs: str, seed: int) -> tuple[np.ndarray, list[str]]:
        chans = INPUTS[inputs]
        flux, err = self.read(rows)
        noisy = flux + noise_level * err * self.noise(rows, noise_level, seed)
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
                out.append(noise_level * self._foreign_error(rows, c == "error_swapped", seed))
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

    def view(self, split: str, noise_level: float, inputs: str = "flux", seed: int = 0,
             limit: int | None = None) -> View:
        """The whole split (or its first `limit` rows) in memory. Deterministic in every argument."""
        if inputs not in INPUTS:
            raise DataError(f"unknown inputs {inputs!r}; choose one of {', '.join(INPUTS)}")
        rows = self.split_rows(split, limit)
        y = self.labels[rows].astype(np.float32)
        if inputs == "meta":
            return View(self.labels[rows][:, [0, 2]].astype(np.float32), y, rows, INPUTS["meta"], self.wave)
        parts = []
        for i in range(0, rows.size, 4096):
            x, chans = self._channels(rows[i:i + 4096], noise_level, inputs, seed)
            parts.append(x)
        x = np.concatenate(parts) if parts else np.empty((0, len(INPUTS[inputs]), self.n_pix), np.float32)
        return View(x, y, rows, INPUTS[inputs], self.wave)

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
