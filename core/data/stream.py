"""A stream of new simulated stars: the honest "infinite data" limit of a learning curve (#17, part 3).

A training split is a finite sample of the simulator's prior; the learning curve asks how close a network
gets to the physics ceiling with more of it. Where the data set runs out, the simulator can draw more:
each epoch of a `noise_mode="stream"` fit (models/noise.py) trains on stars never seen before, drawn
from the data set's own recipe (its label prior, star counts, physics variant and nuisance priors,
through the simulator version that built it), with their own noise draw at the view's noise level.

    src = StarStream(ds, n=2100, noise_level=1.0, inputs="flux", training_seed=0)
    view = src.epoch(3)            # a View of 2,100 new stars: x as Dataset.view forms it, y their labels

Epoch e's stars are a pure function of (data set seed, training seed, e): a fit repeats, the methods of
one training seed see the same stars (paired comparisons), and replicates see different ones (their spread
includes the data's). Nothing is written to disk; the cost is the simulator's (about 500 spectra/s on 2
CPU cores, docs/benchmarks.md), once per epoch.

Only a data set simulated by this simulator version has a recipe to draw from (calibration.reason says
why another has none); matched data sets (core/data/matched.py) and imported grids have no stream. The
channels a stream can form are those of a real observation: flux, its clean version, the error, the
pipeline-like error and S/N; the ablation controls' donor channels (shuffled, swapped, constant error) have
no meaning for new stars and are refused.
"""
from __future__ import annotations

import numpy as np

from core.data.building import sample_labels
from core.data.dataset import INPUTS, DataError, Dataset, View

STREAM_TAG = 0x57E4      # tags the seed sequence of streamed stars (apart from data set builds and noise)
CHANNELS = ("flux", "flux_clean", "error", "error_pipeline", "snr")
BATCH = 256              # spectra simulated at a time


def reason(ds: Dataset) -> str | None:
    """Why this data set has no stream of new stars (None: it has one)."""
    from core.data import calibration
    if str(ds.attrs.get("source", "")) == "simulator:matched":
        return "a data set matched to an upload's grid: its recipe is not a simulator build"
    return calibration.reason(ds)


def check_inputs(inputs: str) -> None:
    bad = [c for c in INPUTS.get(inputs, [inputs]) if c not in CHANNELS]
    if bad:
        raise DataError(f"inputs {inputs!r}: channel(s) {', '.join(bad)} cannot be formed for new stars "
                        f"(a stream forms {', '.join(CHANNELS)})")


class StarStream:
    """New stars from `ds`'s recipe, `n` per epoch, as views of `inputs` at `noise_level`."""

    def __init__(self, ds: Dataset, n: int, noise_level: float, inputs: str = "flux", training_seed: int = 0,
                 device: str = "cpu"):
        why = reason(ds)
        if why is not None:
            raise DataError(f"data set {ds.name!r} has no stream of new stars: {why}")
        check_inputs(inputs)
        from core.physics import simulate
        self.ds, self.n, self.noise_level, self.inputs = ds, int(n), float(noise_level), inputs
        self.training_seed, self.device = int(training_seed), str(device)
        self.sim = simulate.variant_simulator(ds.physics_recipe, self.device)
        wave = self.sim.wave.detach().cpu().double().numpy()
        if wave.shape != ds.wave.shape or not np.allclose(wave, ds.wave, rtol=0, atol=1e-6):
            raise DataError(f"data set {ds.name!r}: its wavelength grid is not the simulator's; no stream")

    def epoch(self, e: int) -> View:
        """The view of epoch e's new stars (a pure function of the data set's seed, the training seed and e)."""
        import torch

        from core.physics import nuisance as nuis
        from core.physics import simulate
        ss = np.random.SeedSequence([int(self.ds.seed) & 0xFFFFFFFF, STREAM_TAG, self.training_seed & 0xFFFFFFFF,
                                     int(e) & 0xFFFFFFFF])
        stars, noise = (np.random.default_rng(s) for s in ss.spawn(2))
        n, P = self.n, self.ds.n_pix
        labels = sample_labels(n, stars)
        counts = simulate.sample_star_counts(n, stars)
        recipe = self.ds.nuisance_recipe
        nu = nuis.draw(recipe, n, stars) if recipe is not None else None
        flux, err = np.empty((n, P), np.float32), np.empty((n, P), np.float32)
        for i in range(0, n, BATCH):
            lab = torch.as_tensor(labels[i:i + BATCH], dtype=torch.float32, device=self.device)
            cnt = torch.as_tensor(counts[i:i + BATCH], dtype=torch.float32, device=self.device)
            with torch.no_grad():
                f = self.sim(lab) if nu is None else nuis.observe(self.sim, lab, {k: v[i:i + BATCH] for k, v in nu.items()})
                s = self.sim.sigma(f, cnt)
            flux[i:i + len(lab)], err[i:i + len(lab)] = f.cpu().numpy(), s.cpu().numpy()
        nl = self.noise_level
        noisy = flux + nl * err * noise.standard_normal((n, P), dtype=np.float32)
        out = []
        for c in INPUTS[self.inputs]:
            if c == "flux":
                out.append(noisy)
            elif c == "flux_clean":
                out.append(flux)
            elif c == "error":
                out.append(nl * err)
            elif c == "error_pipeline":
                nt = counts[:, None] * self.sim.throughput.cpu().double().numpy()[None, :]
                var = nt * np.clip(noisy, 0, None) + self.sim.sky_counts.cpu().double().numpy()[None, :] \
                    + simulate.READ_NOISE ** 2
                out.append(nl * (np.sqrt(var) / nt).astype(np.float32))
            elif c == "snr":
                out.append(noisy / (nl * err) if nl > 0 else noisy / err)
        x = np.stack(out, axis=1).astype(np.float32)
        return View(x, labels.astype(np.float32), np.full(n, -1, np.int64), list(INPUTS[self.inputs]), self.ds.wave)
