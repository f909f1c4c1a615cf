"""Why a model answers as it does, per wavelength: saliency of finished runs (computed once, cached in
the run's folder), the data set's Fisher information (cached under artifacts/explain/), and the
fraction of the information held by the most informative pixels or bands."""
from __future__ import annotations

import numpy as np
import torch

from core.data.cache import atomic_savez
from core.physics.fisher import physics_info
from models.attribution import gradient_x_input, integrated_gradients, occlusion

SALIENCY_STARS = 48
IG_STEPS = 64   # Riemann steps of integrated gradients: completeness within 1 % for the max-pooling CNNs (32 gave 1.5 %)
LOGG_BIN_EDGES = (1.0, 2.0, 3.0, 4.0, 5.0)


def _load_npz(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def run_saliency(result, ds, n_stars: int = SALIENCY_STARS) -> dict:
    """Per-wavelength saliency of one finished run, computed once and cached in its run folder.

    Torch models whose inputs are a torch function of the spectrum (model.differentiable): |gradient x input|, |integrated gradients| (baseline:
    each spectrum flattened to its own mean level) and occlusion, averaged over the first n_stars
    test spectra, and |gradient x input| per log g bin. Ridge and the Cannon: their coefficients'
    own measure (pixel_importance); LightGBM: total gain per pixel."""
    path = result.artifact / "saliency.npz"
    if path.exists():
        return _load_npz(path)
    import time
    model = result.load_model()
    spec = result.spec
    out: dict = {}
    t0 = time.perf_counter()
    if model.differentiable:
        view = ds.view("test", spec["noise_level"], spec["inputs"], seed=spec["seed"], limit=n_stars)
        x = torch.as_tensor(view.x)
        f = model.forward_tensor
        gxi = gradient_x_input(f, x).detach().numpy()
        base = x.mean(dim=2, keepdim=True).expand_as(x).contiguous()
        ig = integrated_gradients(f, x, base, steps=IG_STEPS).detach().numpy()
        with torch.no_grad():
            delta = (f(x) - f(base)).numpy()
        out["ig_completeness"] = np.array(float(np.median(np.abs(ig.sum(axis=(1, 2)) - delta) / np.maximum(np.abs(delta), 1e-9))))
        occ = occlusion(f, x, width=16, stride=16)
        out["gxi"] = np.abs(gxi).sum(1).mean(0)
        out["ig"] = np.abs(ig).sum(1).mean(0)
        out["occlusion"] = occ.mean(0)
        y = view.y[:, 1]
        per_bin = []
        for lo, hi in zip(LOGG_BIN_EDGES[:-1], LOGG_BIN_EDGES[1:]):
            sel = (y >= lo) & (y <= hi)
            per_bin.append(np.abs(gxi[sel]).sum(1).mean(0) if sel.any() else np.zeros(x.shape[-1]))
        out["gxi_bins"] = np.stack(per_bin)
    elif (importance := model.pixel_importance()) is not None:
        out["importance"] = np.asarray(importance, dtype=np.float64)
    else:
        raise ValueError(f"no saliency for {spec['model']!r}: its inputs (global features) are computed outside "
                         "torch, so there is no gradient to follow")
    out["seconds"] = np.array(time.perf_counter() - t0)
    atomic_savez(path, **out)
    return out


def dataset_physics(ds, noise_level: float, max_stars: int = 200) -> dict:
    """physics_info on the test split, cached under artifacts/explain/<fingerprint>/."""
    import time

    from core import config
    from core.physics.simulate import SIMULATOR_VERSION
    if str(ds.attrs.get("simulator_version", "")) != SIMULATOR_VERSION:
        raise ValueError(f"{ds.name} was made by simulator v{ds.attrs.get('simulator_version') or '(none: imported)'}; "
                         f"Fisher information needs spectra of this simulator (v{SIMULATOR_VERSION})")
    folder = config.artifacts_dir() / "explain" / ds.fingerprint
    path = folder / f"physics_noise{noise_level:g}_n{max_stars}.npz"
    if path.exists():
        return _load_npz(path)
    t0 = time.perf_counter()
    info = physics_info(ds, "test", noise_level, max_stars)
    keep = {"rows": info["rows"], "labels": info["labels"], "sigma_logg": info["sigma_logg"],
            "sigma_logg_alone": info["sigma_logg_alone"], "r2_cr": np.array(info["r2_cr"]),
            "pixel_info": info["per_pixel"].mean(0), "pixel_info_marg": info["per_pixel_marg"].mean(0),
            "mean_flux": info["flux"].mean(0), "seconds": np.array(time.perf_counter() - t0)}
    atomic_savez(path, **keep)
    return keep


def topk_information(pixel_info: np.ndarray, ks=(16, 32, 64, 128, 256, 512, 1024, 2048, 4096)) -> list[tuple[int, float]]:
    """Fraction of the total log g information held by the K most informative pixels."""
    s = np.sort(np.asarray(pixel_info))[::-1]
    c = np.cumsum(s) / s.sum()
    return [(k, float(c[min(k, len(c)) - 1])) for k in ks]


def top_bands(values: np.ndarray, wave: np.ndarray, width: float = 25.0, n: int = 10) -> list[tuple[float, float]]:
    """The n wavelength bands of `width` A holding the largest summed |values|."""
    edges = np.arange(wave[0], wave[-1] + width, width)
    idx = np.digitize(wave, edges) - 1
    sums = np.bincount(idx, weights=np.abs(values), minlength=len(edges))
    top = np.argsort(sums)[::-1][:n]
    return [(float(edges[i]), float(edges[i] + width)) for i in top]
