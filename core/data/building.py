"""Building a simulated data set: labels over the label box, splits, and the simulator's spectra
written atomically to artifacts/data/NAME.h5 (`build`)."""
from __future__ import annotations

import datetime as _dt
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from core import config
from core.data.dataset import (
    LABEL_BOX,
    LABELS,
    DataError,
    _fingerprint,
    dataset_path,
)


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


def estimated_bytes(n: int, n_pix: int) -> int:
    """What a data set of n spectra x n_pix pixels takes on disk, with a 5 % margin: float32 flux
    and error, labels, splits, chunk indices (the quick data set: 100.9 MB, its arrays 100.9 MB)."""
    return int(1.05 * (2 * 4 * n * n_pix + 4 * 8 * n + 8 * n_pix) + (1 << 20))


def room_problem(folder: Path, nbytes: int) -> str | None:
    """Why `folder` cannot take a write of nbytes (read-only, the process's file-size limit, free
    space), or None. Checked before a byte is written: HDF5 that runs out of room half-way prints
    pages of errors and can crash the process as it closes the file."""
    import resource
    import shutil
    if not os.access(folder, os.W_OK):
        return f"{folder} is read-only; point LOGG_ARTIFACTS at a writable folder"
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if soft != resource.RLIM_INFINITY and soft < nbytes:
        return f"it needs ~{nbytes / 2 ** 20:.0f} MB and the file-size limit (ulimit -f) is {soft / 2 ** 20:.1f} MB"
    free = shutil.disk_usage(folder).free
    if free < nbytes:
        return f"it needs ~{nbytes / 2 ** 20:.0f} MB and {folder} has {free / 2 ** 20:.0f} MB free"
    return None


def check_room(folder: Path, nbytes: int, what: str) -> None:
    """Raise DataError, in one line, unless folder can take a write of nbytes (room_problem)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    why = room_problem(folder, nbytes)
    if why:
        raise DataError(f"cannot write {what}: {why}; nothing was written")


def write_failed(e: BaseException, what: str) -> DataError:
    """A write that failed half-way (disk full after the check, an I/O error) as one line."""
    first = " ".join(str(e).split())
    first = first.split("errno = ")[0].rstrip(" ,(") if "errno = " in first else first
    return DataError(f"cannot write {what}: {first[:200]}; nothing was written")


@contextmanager
def written_atomically(path: Path, what: str):
    """An HDF5 file open for writing at a temporary name next to `path`: renamed to `path` once the block
    ends (with its fingerprint attr set), removed on any failure; a write that fails half-way (a full disk,
    an I/O error) becomes one DataError line."""
    tmp = path.with_suffix(f".h5.tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            yield f
            f.attrs["fingerprint"] = _fingerprint(f)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        raise write_failed(e, what) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _create_arrays(f: h5py.File, n: int, wave: np.ndarray):
    f.create_dataset("wave", data=wave.astype(np.float64))
    rows = max(1, min(256, n))
    for k in ("flux", "error"):
        f.create_dataset(k, shape=(n, len(wave)), dtype=np.float32, chunks=(rows, len(wave)))
    g = f.create_group("labels")
    for k in LABELS:
        g.create_dataset(k, shape=(n,), dtype=np.float64)


def variant_name(base: str, physics: dict | None = None, nuisance: dict | None = None) -> str:
    """The name `build` gives a data set of these recipes: base, "+NAME" for a physics recipe
    ("sim-quick+maj0.3"), "-NAME" for a nuisance recipe ("sim-quick-survey", "sim-quick+cn-survey")."""
    out = base + (f"+{physics.get('name', 'custom')}" if physics is not None else "")
    return out + (f"-{nuisance.get('name', 'custom')}" if nuisance is not None else "")


def physics_of_name(name: str, profile: str) -> str | None:
    """The physics recipe a data set name asks for ("sim-quick+maj0.3" -> "maj0.3" for profile quick),
    '' for the profile's own plain data set, None for any other name (one `build` cannot make)."""
    base = config.profile(profile)["dataset"]
    if name == base:
        return ""
    if not name.startswith(base + "+"):
        return None
    phys = name[len(base) + 1:]
    try:
        config.physics_recipe(phys)
    except ValueError:
        return None
    return phys


def build(name: str | None = None, profile: str = "quick", n: int | None = None, seed: int | None = None,
          device: str | None = None, progress: Callable[[float, str], None] | None = None,
          batch: int = 256, nuisance: str | dict | None = None, physics: str | dict | None = None,
          path: Path | None = None) -> Path:
    """Simulate a data set and write it atomically to artifacts/data/NAME.h5 (or to `path`: a calibration
    set, core/data/calibration.py). Returns the path.

    `nuisance`: a recipe of config.NUISANCE_RECIPES (a name or a dict; default: the profile's,
    None for every profile today). With one, each star's RV, resolution, continuum polynomial and
    telluric absorption are drawn from its priors (core/physics/nuisance.py), its spectrum is the
    observed one (what the telescope records; the noise model is unchanged, sigma from that flux)
    and the draws are stored under /nuisance with the recipe in the attrs. Without one the file is
    byte for byte what it was before nuisances existed (the same draws, arrays, attrs, fingerprint).

    `physics`: a recipe of config.PHYSICS_RECIPES (a name, names joined by ',' or a dict; default: the
    profile's, None for every profile today): the simulator's assumptions changed (simulate.PHYSICS_DEFAULTS).
    The same seed draws the same stars, counts and splits; the recipe is stored (JSON) in the attr
    `physics_recipe`. Without one the file is what it was before physics variants existed."""
    # OpenMP threads that sleep instead of spinning while they wait: on a shared or oversubscribed
    # CPU the default spin-wait made the build 2x slower (docs/benchmarks.md). Only takes effect
    # when torch is first imported here (the `python -m core data build` path); an explicit
    # OMP_WAIT_POLICY in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from core.physics import nuisance as nuis
    from core.physics import simulate

    prof = config.profile(profile)
    recipe = config.nuisance_recipe(nuisance if nuisance is not None else prof.get("nuisance"))
    phys = config.physics_recipe(physics if physics is not None else prof.get("physics"))
    simulate.check_physics(phys)                   # a bad custom recipe: one line, before anything is drawn
    # an explicit recipe never overwrites the profile's plain data set: sim-quick-survey, sim-quick+maj0.3
    name = name or variant_name(prof["dataset"], phys if physics is not None else None,
                                recipe if nuisance is not None else None)
    n = int(n or prof["n_spectra"])
    seed = int(prof["seed"] if seed is None else seed)
    if n < 20:
        raise DataError(f"a data set needs at least 20 spectra (asked for {n})")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    path = Path(path) if path is not None else dataset_path(name)
    rng = np.random.default_rng(seed)
    labels = sample_labels(n, rng)
    counts = simulate.sample_star_counts(n, rng)
    splits = _split_indices(n, rng)
    # nuisances from a generator of their own: labels, counts and splits stay those of the same seed without
    nu = nuis.draw(recipe, n, np.random.default_rng([seed, 0x4E55])) if recipe is not None else None
    sim = simulate.variant_simulator(phys, device)
    check_room(path.parent, estimated_bytes(n, int(sim.wave.numel())), f"data set {name}")
    with written_atomically(path, f"data set {name}") as f:
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
        if nu is not None:
            ng = f.create_group("nuisance")
            for k, v in nu.items():
                ng.create_dataset(k, data=v.astype(np.float64))
        for i in range(0, n, batch):
            lab = torch.as_tensor(labels[i:i + batch], dtype=torch.float32, device=device)
            cnt = torch.as_tensor(counts[i:i + batch], dtype=torch.float32, device=device)
            with torch.no_grad():
                if nu is None:
                    flux = sim(lab)
                else:
                    flux = nuis.observe(sim, lab, {k: v[i:i + batch] for k, v in nu.items()})
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
        if recipe is not None:
            f.attrs["nuisance_recipe"] = json.dumps(recipe, sort_keys=True)
            f.attrs["description"] += f", nuisances {recipe.get('name', 'custom')}"
        if phys is not None:
            f.attrs["physics_recipe"] = json.dumps(phys, sort_keys=True)
            f.attrs["description"] += f", physics {phys.get('name', 'custom')}"
    return path


