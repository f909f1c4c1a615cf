"""Matched data sets: the built-in simulator's stars on an upload's window, sampling and resolution.

An upload whose wavelength window, pixel size or resolution differs from the data set's (a Gaia-RVS-like
8460-8700 Å window, an R~2000 survey spectrum) is answered best by models trained on spectra like it.
A matched recipe says how to make them from the profile's own data set:

    {"kind": "matched", "base": "sim-quick", "n": 3000, "seed": 42, "profile": "quick",
     "pix0": 2850, "pix1": 3370, "bin": 1, "resolution": 5000.0}

The same stars (labels, star counts and splits drawn from the same seed as the base data set), simulated
on the native grid with a Gaussian LSF of resolving power `resolution` (FWHM = λ / R), cut to native pixels
[pix0, pix1) and binned by `bin` native pixels (a whole number, so each matched pixel is exactly the mean of
`bin` native ones: flux-conserving, its error sqrt(sum σ²) / bin). Nothing is interpolated.

The file has no /meta (no per-pixel noise model on the new grid) and an empty `simulator_version`: the
code treats it as a grid of its own (templates instead of the live simulator for the ceiling, no Fisher
information), which it is. Its recipe is kept in the attr `matched_recipe` and, before it is built, in
artifacts/data/matched/NAME.json, so that a background job can build it by name.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from core import config
from core.data.dataset import LABELS, DataError, dataset_path

R_MIN, R_MAX = 2000.0, 20000.0  # the LSF kernel (25 native pixels) holds R >= 2000 to 2.9 sigma; 5000 is native
MAX_BIN = 16
MIN_PIXELS = 64                 # matched pixels: fewer carry too little to train on


def recipes_dir() -> Path:
    return config.data_dir() / "matched"


def check_recipe(rec: dict) -> dict:
    """The recipe with its types fixed, or DataError naming what is wrong."""
    from core.physics.simulate import N_PIX
    try:
        out = {"kind": "matched", "base": str(rec["base"]), "n": int(rec["n"]), "seed": int(rec["seed"]),
               "profile": str(rec["profile"]), "pix0": int(rec["pix0"]), "pix1": int(rec["pix1"]),
               "bin": int(rec["bin"]), "resolution": float(rec["resolution"])}
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"matched recipe: missing or malformed field ({e})") from None
    config.profile(out["profile"])
    if not 0 <= out["pix0"] < out["pix1"] <= N_PIX:
        raise DataError(f"matched recipe: pixels [{out['pix0']}, {out['pix1']}) are not inside 0..{N_PIX}")
    if not 1 <= out["bin"] <= MAX_BIN:
        raise DataError(f"matched recipe: bin must be 1..{MAX_BIN} native pixels, got {out['bin']}")
    if (out["pix1"] - out["pix0"]) % out["bin"]:
        raise DataError("matched recipe: the window must hold a whole number of bins")
    if (out["pix1"] - out["pix0"]) // out["bin"] < MIN_PIXELS:
        raise DataError(f"matched recipe: fewer than {MIN_PIXELS} pixels")
    if not R_MIN <= out["resolution"] <= R_MAX:
        raise DataError(f"matched recipe: resolution must be {R_MIN:.0f}..{R_MAX:.0f}, got {out['resolution']:g}")
    if out["n"] < 20:
        raise DataError("matched recipe: at least 20 spectra")
    return out


def native_wave() -> np.ndarray:
    from core.physics.simulate import wavelength_grid
    return wavelength_grid().numpy()


def grid_of(rec: dict) -> np.ndarray:
    """The matched grid: the geometric mean of each bin of native wavelengths."""
    w = native_wave()[rec["pix0"]:rec["pix1"]]
    return np.exp(np.log(w).reshape(-1, rec["bin"]).mean(axis=1))


def recipe_for(wave_lo: float, wave_hi: float, step_loglam: float, resolution: float, base) -> dict:
    """The recipe whose grid spans [wave_lo, wave_hi] (clipped to the simulator's window) in pixels of about
    `step_loglam` (d ln λ, never finer than native) at resolving power `resolution` (clipped to R_MIN..R_MAX,
    rounded to 100), for the stars of data set `base`."""
    w = native_wave()
    native = float(np.log(w[1] / w[0]))
    b = int(np.clip(round(step_loglam / native), 1, MAX_BIN)) if np.isfinite(step_loglam) and step_loglam > 0 else 1
    p0 = int(np.searchsorted(w, wave_lo, side="left"))
    p1 = int(np.searchsorted(w, wave_hi, side="right"))
    p1 = p0 + (p1 - p0) // b * b
    r = float(np.clip(round(float(resolution) / 100.0) * 100.0, R_MIN, R_MAX)) if np.isfinite(resolution) else R_MAX
    return check_recipe({"base": base.name, "n": base.n, "seed": base.seed,
                         "profile": str(base.attrs.get("profile") or "quick"),
                         "pix0": p0, "pix1": p1, "bin": b, "resolution": r})


def name_for(rec: dict) -> str:
    """'sim-quick~8459-8700A-R5000-3f2a1c': readable, and unique for the recipe."""
    rec = check_recipe(rec)
    w = native_wave()
    h = hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:6]
    return (f"{rec['base']}~{w[rec['pix0']]:.0f}-{w[rec['pix1'] - 1]:.0f}A-R{rec['resolution']:.0f}"
            + (f"-b{rec['bin']}" if rec["bin"] > 1 else "") + f"-{h}")


def save_recipe(rec: dict) -> str:
    """Write the recipe where a job finds it by name (atomically); returns the data set's name."""
    rec = check_recipe(rec)
    name = name_for(rec)
    d = recipes_dir()
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{name}.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(rec, sort_keys=True, indent=1))
    os.replace(tmp, d / f"{name}.json")
    return name


def load_recipe(name: str) -> dict | None:
    """The saved recipe of a matched data set's name, or None (not a matched name, or none saved)."""
    if "~" not in name:
        return None
    p = recipes_dir() / f"{name}.json"
    try:
        rec = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    rec = check_recipe(rec)
    return rec if name_for(rec) == name else None


def dataset_resolution(ds) -> float | None:
    """The resolving power of a data set's spectra: a matched data set's recipe, the simulator's native R for one
    it built, None for an imported grid (unknown)."""
    rec = ds.attrs.get("matched_recipe")
    if rec:
        return float(json.loads(rec)["resolution"])
    if str(ds.attrs.get("source", "")) == "simulator":
        from core.physics.simulate import RESOLUTION
        return float(RESOLUTION)
    return None


def build_matched(name: str, device: str | None = None, progress: Callable[[float, str], None] | None = None,
                  batch: int = 256, recipe: dict | None = None, path: Path | None = None) -> Path:
    """Simulate the matched data set `name` from its saved recipe (or from `recipe`, written to `path`: a
    calibration set of new stars, core/data/calibration.py) and write it atomically."""
    from core.data.building import _create_arrays, _split_indices, check_room, sample_labels, written_atomically
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from core.physics import simulate
    rec = check_recipe(recipe) if recipe is not None else load_recipe(name)
    if rec is None:
        raise DataError(f"data set {name!r}: no matched recipe saved under {recipes_dir()}")
    n, seed, b = rec["n"], rec["seed"], rec["bin"]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(seed)          # the base data set's draws, in the same order as build()
    labels = sample_labels(n, rng)
    counts = simulate.sample_star_counts(n, rng)
    splits = _split_indices(n, rng)
    sim = simulate.default_simulator(device)
    wave = grid_of(rec)
    path = Path(path) if path is not None else dataset_path(name)
    check_room(path.parent, int(1.05 * 8 * n * wave.size) + (1 << 20), f"data set {name}")
    sl = slice(rec["pix0"], rec["pix1"])
    native_r = rec["resolution"] == simulate.RESOLUTION
    with written_atomically(path, f"data set {name}") as f:
        _create_arrays(f, n, wave)
        for i, k in enumerate(LABELS):
            f["labels"][k][:] = labels[:, i]
        for k, v in splits.items():
            f.create_dataset(f"split/{k}", data=v)
        for i in range(0, n, batch):
            lab = torch.as_tensor(labels[i:i + batch], dtype=torch.float32, device=device)
            cnt = torch.as_tensor(counts[i:i + batch], dtype=torch.float32, device=device)
            with torch.no_grad():
                res = None if native_r else torch.full((len(lab),), rec["resolution"], device=device)
                flux = sim(lab, resolution=res)
                sig = sim.sigma(flux, cnt)
            fl = flux[:, sl].double().cpu().numpy().reshape(len(lab), -1, b)
            va = (sig[:, sl].double() ** 2).cpu().numpy().reshape(len(lab), -1, b)
            f["flux"][i:i + len(lab)] = fl.mean(axis=2)
            f["error"][i:i + len(lab)] = np.sqrt(va.sum(axis=2)) / b
            if progress:
                progress(min(1.0, (i + len(lab)) / n), f"simulated {i + len(lab)} / {n} spectra")
        f.attrs.update({
            "name": name, "source": "simulator:matched", "simulator_version": "",
            "matched_simulator_version": simulate.SIMULATOR_VERSION, "matched_to": rec["base"],
            "matched_recipe": json.dumps(rec, sort_keys=True), "seed": seed, "profile": rec["profile"],
            "n_spectra": n, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "normalisation": "flux / mean of the Planck continuum over the simulator's whole window",
            "description": (f"built-in simulator v{simulate.SIMULATOR_VERSION}, the stars of {rec['base']} on "
                            f"{wave[0]:.0f}-{wave[-1]:.0f} Å ({wave.size} pixels of {b} native), "
                            f"R = {rec['resolution']:.0f}"),
        })
    return path
