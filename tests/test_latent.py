"""The blind-spot encoder and its latent: the encoder is blind, it denoises held-out spectra, the
latent suite fills every (layer, pooling, probe, label) cell, and the frozen head leaves the
encoder's weights alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import config, data
from core.analysis import latent
from core.engine import executor, suites, train
from core.engine.suites import latent as suite_latent
from models import blindspot, latent_features, probes
from models.blindspot import BlindSpotNet

DS = "latent-test"
N = 400
TINY_PLAN = {
    "encoders": (("flux", 1.0),),
    "grid": (("flux", 1.0, ("enc_pre_latent", "enc_last"), probes.PROBES, None),),
    "sweep": (("flux", 1.0),), "sweep_extractions": (suite_latent.TEAM_BEST,), "sweep_labels": ("logg",),
    "heads": (("flux", 1.0),),
}


@pytest.fixture(scope="module")
def ds(artifacts_dir):
    """A 400-spectrum data set, the quick profile shrunk (fewer epochs and LightGBM rounds) and the
    latent plan of the quick profile cut to one encoder (every layer/pooling/probe/label kept)."""
    if DS not in data.list_datasets():
        data.build(name=DS, n=N, seed=21)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(config.PROFILES, "quick", {**config.PROFILES["quick"], "epochs": 3, "lgbm_rounds": 40, "patience": 2})
        mp.setitem(suite_latent.PLAN, "quick", TINY_PLAN)
        mp.setattr(blindspot, "ENCODER_PARAMS", {"epochs": 10})   # the encoder every probe reads
        latent.clear_memo()
        yield DS
    latent.clear_memo()


def encoder_result(ds):
    return train.run(suite_latent.encoder_spec("flux", 1.0, "quick", ds), log=lambda m: None)


@pytest.mark.parametrize("n_in", [1, 2])
def test_blind_spot_output_ignores_its_own_pixel(n_in):
    """Changing pixel i of any input channel leaves output pixel i unchanged (and moves its neighbours)."""
    torch.manual_seed(0)
    net = BlindSpotNet(n_in).eval()
    for p in net.parameters():          # a random but non-trivial network
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(1, n_in, 4096) * 0.1 + 1.0
    with torch.no_grad():
        base = net.denoise(x)
        for i in (0, 1, 8, 100, 2047, 4095):
            for c in range(n_in):
                x2 = x.clone()
                x2[:, c, i] += 5.0
                out = net.denoise(x2)
                assert torch.equal(out[:, i], base[:, i]), (i, c)
                nb = [j for j in (i - 1, i + 1) if 0 <= j < 4096]
                assert (out[:, nb] - base[:, nb]).abs().max() > 1e-6, (i, c)  # the test is not vacuous


def test_trained_encoder_is_blind_and_denoises_held_out_spectra(ds):
    r = encoder_result(ds)
    m = r.metrics
    # blind output against the clean flux, on the test split, against the noisy input
    assert m["denoise_mse"] < 0.7 * m["noisy_mse"], m
    assert np.isfinite(m["r2"])
    enc = r.load_model()
    x = data.Dataset(ds).view("test", 1.0, "flux").x[:3]
    base = enc.denoise(x)
    for i in (5, 500, 3000):
        x2 = x.copy()
        x2[:, 0, i] += 1.0
        np.testing.assert_array_equal(enc.denoise(x2)[:, i], base[:, i])
    shape = latent_features.layer_shape(enc, "enc_last")
    assert shape[0] * shape[1] == 384     # the latent


def test_latent_suite_fills_every_grid_cell(ds):
    specs = suites.suite("latent", "quick", ds)
    res = executor.run_many(specs, log=lambda m: None)
    failed = [(s["model"], s["params"], str(r)) for s, r in zip(specs, res) if isinstance(r, Exception)]
    assert not failed, failed[:3]
    g = latent.grid("quick", ds)
    want = {(lay, p, pr, lab) for lay in ("enc_pre_latent", "enc_last") for p in latent_features.POOLINGS
            for pr in probes.PROBES for lab in data.LABELS
            if latent_features.valid_pooling(blindspot.nominal_shape(lay), p)}
    have = {(r.layer, r.pooling, r.probe, r.label) for r in g.itertuples() if np.isfinite(r.r2)}
    assert want <= have, sorted(want - have)[:5]
    assert len(want) == (12 + 3) * 3 * 3   # 12 distinct extractions, plus 3 alias cells (K1 twice, K8 of enc_last)
    # aliases share their run: seg_mean_K1 is global_mean
    k1 = g[(g.pooling == "seg_mean_K1")].set_index(["layer", "probe", "label"])["r2"]
    gm = g[(g.pooling == "global_mean")].set_index(["layer", "probe", "label"])["r2"]
    assert np.allclose(k1.sort_index(), gm.sort_index())
    assert latent.best_extraction(g, "flux", 1.0, "teff")["r2"] > 0.5   # Teff is easy to read from the latent
    assert not latent.heads("quick", ds)["r2"].isna().any()
    # a reloaded probe predicts what the engine stored
    r = train.cached_result(specs[5])
    np.testing.assert_allclose(r.load_model().predict(data.Dataset(ds).view("test", 1.0, "flux")),
                               r.predictions()["y_pred"], rtol=1e-5, atol=1e-6)


def test_frozen_head_leaves_encoder_weights_unchanged(ds):
    enc = encoder_result(ds).load_model()
    before = {k: v.clone() for k, v in enc.module_.state_dict().items()}
    params = {"encoder": "flux", "encoder_noise": 1.0, "layer": "enc_pre_latent", "pooling": "flat"}  # as in the suite
    base = {"params": params, "inputs": "flux", "noise_level": 1.0, "dataset": ds, "seed": 0, "profile": "quick",
            "target": "logg"}
    frozen = train.run({"model": "blindspot_head", **base}, log=lambda m: None).load_model()
    after = frozen.module_.encoder.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    # the encoder's own run is untouched too, and the fine-tuned head does move the encoder
    again = encoder_result(ds).load_model().module_.state_dict()
    assert all(torch.equal(before[k], again[k]) for k in before)
    tuned = train.run({"model": "blindspot_finetune", **base}, log=lambda m: None).load_model()
    moved = [k for k in before if k.endswith("weight") and not torch.equal(before[k], tuned.module_.encoder.state_dict()[k])]
    assert moved
    assert frozen.n_params < tuned.n_params


def _page(ds_name: str, noise: float = 1.0):
    from conftest import ROOT
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "pages" / "latent.py"), default_timeout=120)
    at.session_state["dataset"] = ds_name
    at.session_state["profile"] = "quick"
    at.session_state["noise_level"] = noise
    return at.run()


def test_latent_page_draws_the_grid_and_says_how_to_fill_it(ds, tiny_dataset):
    import json
    executor.run_many(suites.suite("latent", "quick", ds), log=lambda m: None)   # cached after the grid test
    at = _page(ds)
    assert not at.exception and not at.error, ([e.value for e in at.exception], [e.value for e in at.error])
    titles = []
    for c in at.get("vega_lite_chart"):
        spec = json.loads(c.proto.spec)
        t = spec.get("title")
        titles.append(t if isinstance(t, str) else (t or {}).get("text"))
    assert all(titles), titles
    assert any("by layer and pooling" in t for t in titles)
    assert any("training-set size" in t for t in titles)
    assert any("heads" in t for t in titles)
    assert any(t.startswith("PCA of") for t in titles)
    empty = _page(tiny_dataset)          # nothing of the latent suite has run on it
    assert not empty.exception
    assert any("python -m core train --suite latent --profile quick" in i.value
               for i in list(empty.info) + list(empty.caption))
