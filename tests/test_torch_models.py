"""The shared torch trainer, the global features and every torch model family of the zoo.

Fast: a 300-spectrum data set built once in the session's temporary artifacts folder and a
profile of 2 epochs. The one test on the quick data set (a trained dilated CNN beats a
constant) is marked slow.
"""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from core import config, data
from models import trainer
from models.base import FitContext
from models.cnn import MODELS as CNN_MODELS
from models.cnn import DilatedCNN, receptive_field
from models.features import GROUPS, LINES, GlobalFeatures, column_names, flux_channel
from models.fusion import MODELS as FUSION_MODELS
from models.mlp import MODELS as MLP_MODELS
from models.windows import MODELS as WINDOW_MODELS
from models.windows import fit_ridge, min_separation, select_centers

ZOO = {**MLP_MODELS, **CNN_MODELS, **WINDOW_MODELS, **FUSION_MODELS}
PROFILE = {"epochs": 2, "batch_size": 64, "patience": 2, "cnn_channels": 8, "max_train": 1000}
SMALL = {"topk_cnn": {"K": 32}, "topk_transformer": {"K": 32}, "fusion_concat": {"K": 32},
         "fusion_film": {"K": 32}}


def ctx(seed=0, **kw):
    return FitContext(profile={**PROFILE, **kw}, seed=seed, device="cpu")


@pytest.fixture(scope="module")
def ds(artifacts_dir):
    if "t-torch" not in data.list_datasets():
        data.build(name="t-torch", n=300, seed=11)
    return data.Dataset("t-torch")


@pytest.fixture(scope="module")
def views(ds):
    return {s: ds.view(s, 0.1) for s in data.SPLITS}


@pytest.fixture(scope="module")
def fitted(views):
    """Every model fitted once (seed 0), shared by the tests below."""
    out = {}
    for name, cls in ZOO.items():
        out[name] = cls(**SMALL.get(name, {})).fit(views["train"], views["val"], ctx())
    return out


# --------------------------------------------------------------------------- trainer
def test_pick_device_prefers_cuda_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trainer.pick_device() == "cuda"
    assert trainer.resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert trainer.pick_device() == "cpu"
    assert trainer.amp_dtype("cpu") is None          # mixed precision only on CUDA


class _DeviceProbe(nn.Module):
    """Records the device of every batch and checks it is the parameters' device."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 1)
        self.seen = set()

    def forward(self, x):
        assert x.device == self.lin.weight.device
        self.seen.add(x.device.type)
        return self.lin(x)


def _toy(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    y = 4.0 + X @ np.array([0.5, -0.2, 0.1]) + 0.05 * rng.standard_normal(n)
    return X, y


def test_trainer_moves_model_and_data_to_the_device_and_reports_progress():
    X, y = _toy()
    torch.manual_seed(0)   # the probe's initial weights: not whatever the tests before left in torch's RNG
    net, seen = _DeviceProbe(), []
    c = FitContext(profile=PROFILE | {"epochs": 10, "patience": 10}, seed=0, device=None,
                   progress=lambda **kw: seen.append(kw))
    hist = trainer.fit_torch(net, X[:150], y[:150], X[150:], y[150:], c, lr=0.05)
    assert hist["device"] == trainer.pick_device() == "cpu"
    assert net.seen == {"cpu"} and next(net.parameters()).device.type == "cpu"
    assert [s["epoch"] for s in seen] == list(range(1, 11)) and all(s["of"] == 10 for s in seen)
    assert all(np.isfinite(s["train_loss"]) and np.isfinite(s["val_loss"]) for s in seen)
    # the target is standardised inside and the statistics travel with the module
    assert float(net.y_mean) == pytest.approx(y[:150].mean(), rel=1e-6)
    assert "y_mean" in net.state_dict() and "y_std" in net.state_dict()
    pred = trainer.predict_torch(net, X[150:])
    assert np.corrcoef(pred, y[150:])[0, 1] > 0.8


def test_mixed_precision_path_runs(monkeypatch):
    """The autocast branch (used on CUDA) exercised on the CPU with bf16."""
    monkeypatch.setattr(trainer, "amp_dtype", lambda device: torch.bfloat16)
    X, y = _toy()
    net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))
    hist = trainer.fit_torch(net, X[:150], y[:150], X[150:], y[150:], ctx(epochs=2))
    assert hist["amp"] == "bfloat16"
    assert all(np.isfinite(e["val_loss"]) for e in hist["epochs"])
    assert net[0].weight.dtype == torch.float32        # master weights stay float32


def test_early_stopping_restores_the_best_weights():
    X, y = _toy(300)
    net = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 1))
    # a learning rate that is far too high makes the validation loss jump around
    hist = trainer.fit_torch(net, X[:200], y[:200], X[200:], y[200:], ctx(epochs=15, patience=2), lr=0.3)
    assert hist["epochs_run"] <= 15
    best = min(e["val_loss"] for e in hist["epochs"])
    assert hist["best_val_loss"] == pytest.approx(best)
    assert hist["epochs"][hist["best_epoch"] - 1]["val_loss"] == pytest.approx(best)
    # the module holds the best epoch's weights: its val loss is the best one
    pred = trainer.predict_torch(net, X[200:])
    mse = np.mean(((pred - y[200:]) / hist["y_std"]) ** 2)
    assert mse == pytest.approx(best, rel=1e-4)


# --------------------------------------------------------------------------- every model
@pytest.mark.parametrize("name", sorted(ZOO))
def test_model_fits_predicts_and_round_trips(name, fitted, views, tmp_path):
    m, test = fitted[name], views["test"]
    p = m.predict(test)
    assert p.shape == (len(test.y),) and np.all(np.isfinite(p))
    assert m.n_params > 0
    m.save(tmp_path / name)
    assert not any(f.suffix in (".pkl", ".pickle") for f in (tmp_path / name).iterdir())
    m2 = type(m).load(tmp_path / name)
    np.testing.assert_array_equal(m2.predict(test), p)
    assert m2.n_params == m.n_params


@pytest.mark.parametrize("name", sorted(ZOO))
def test_same_seed_same_predictions(name, fitted, views):
    again = ZOO[name](**SMALL.get(name, {})).fit(views["train"], views["val"], ctx())
    np.testing.assert_array_equal(again.predict(views["test"]), fitted[name].predict(views["test"]))


@pytest.mark.parametrize("name", ["dilated_cnn", "multiscale_cnn", "topk_cnn", "fusion_film", "mlp"])
def test_two_channel_inputs(name, ds):
    v = {s: ds.view(s, 1.0, "flux+error") for s in ("train", "val", "test")}
    m = ZOO[name](**SMALL.get(name, {})).fit(v["train"], v["val"], ctx(epochs=1))
    p = m.predict(v["test"])
    assert p.shape == (len(v["test"].y),) and np.all(np.isfinite(p))


def test_parameter_counts_near_the_report():
    """At the default profile's 32 channels the towers and CNNs are 28-50 k parameters (K=256)."""
    from models.cnn import DilatedCNN as D
    from models.mlp import GlobalMLPNet
    from models.windows import TopKCNNNet
    centers = np.arange(8, 4096, 16)[:256]
    n = {"dilated_cnn": D(1, 32, stem=8).parameters(),
         "multiscale_cnn": D(1, 32, stem=4, dilations_first=(1, 2, 4)).parameters(),
         "global_mlp": GlobalMLPNet(126).parameters(),
         "topk_cnn": TopKCNNNet(1, 4096, centers, 8, 32).parameters()}
    n = {k: sum(p.numel() for p in v) for k, v in n.items()}
    assert n["global_mlp"] == 49025
    for k, v in n.items():
        assert 25_000 <= v <= 50_000, (k, v)


# --------------------------------------------------------------------------- receptive field
def _linearised(net: DilatedCNN) -> DilatedCNN:
    for mod in list(net.modules()):
        for name, child in mod.named_children():
            if isinstance(child, nn.ReLU):
                setattr(mod, name, nn.Identity())
    return net.eval()


@pytest.mark.parametrize("d", [1, 2, 4, 8])
def test_receptive_field_matches_a_numeric_check(d):
    torch.manual_seed(0)
    net = _linearised(DilatedCNN(1, 4, kernel=7, dilation=d, n_layers=4, stem=4, pool="avg"))
    assert net.first_layer_rf_px == d * (7 - 1) + 1
    P = 16384
    # first block: perturb one pixel, the full-resolution outputs that change span the first-layer RF
    x = torch.randn(1, 1, P)
    x2 = x.clone()
    x2[0, 0, P // 2] += 1.0
    with torch.no_grad():
        changed = ((net.first_conv(x2) - net.first_conv(x)).abs().amax(dim=1)[0] > 1e-6).nonzero().ravel()
    assert len(changed) == 7
    assert int(changed.max() - changed.min()) + 1 == net.first_layer_rf_px
    # the whole stack: input pixels with a non-zero gradient for one position of the last block
    x = torch.randn(1, 1, P, requires_grad=True)
    feats = net.features(x)
    feats[0, :, feats.shape[-1] // 2].sum().backward()
    nz = (x.grad[0, 0].abs() > 0).nonzero().ravel()
    assert int(nz.max() - nz.min()) + 1 == net.receptive_field_px == len(nz)
    assert net.receptive_field_px == receptive_field(net.layers)


def test_cnn_model_records_receptive_field(fitted):
    m = fitted["dilated_cnn"]
    assert m.first_layer_rf_px == 2 * 6 + 1
    assert m.receptive_field_px > m.first_layer_rf_px
    assert fitted["multiscale_cnn"].first_layer_rf_px == 4 * 6 + 1


# --------------------------------------------------------------------------- top-K windows
def test_ridge_matches_sklearn_and_out_of_fold():
    from sklearn.linear_model import Ridge
    rng = np.random.default_rng(0)
    for n, p in [(80, 200), (300, 40)]:   # dual and primal
        X = rng.standard_normal((n, p)).astype(np.float32)
        y = X @ rng.standard_normal(p) * 0.1 + rng.standard_normal(n) + 3
        r = fit_ridge(X, y, X[:30], y[:30], oof_folds=4, seed=1)
        sk = Ridge(alpha=r["alpha"]).fit(X, y)
        np.testing.assert_allclose(r["coef"], sk.coef_, atol=1e-5)
        assert r["intercept"] == pytest.approx(sk.intercept_, abs=1e-4)
        folds = np.random.default_rng(1).permutation(n) % 4
        oof = np.zeros(n)
        for f in range(4):
            oof[folds == f] = Ridge(alpha=r["alpha"]).fit(X[folds != f], y[folds != f]).predict(X[folds == f])
        np.testing.assert_allclose(r["oof"], oof, atol=1e-4)


def test_select_centers_keeps_the_minimum_separation():
    rng = np.random.default_rng(0)
    score = np.exp(-0.5 * ((np.arange(4096) - 2000) / 30.0) ** 2) + 0.01 * rng.random(4096)
    for K in (64, 256, 1024):
        sep = min_separation(K, 8, 4096)
        c = select_centers(score, K, sep)
        assert len(c) == K == len(np.unique(c))
        if K <= 256:
            assert np.diff(c).min() >= sep
    assert min_separation(256, 8, 4096) == 8 and min_separation(1024, 8, 4096) == 2


def _with_changed_split(ds: data.Dataset, split: str, name: str) -> data.Dataset:
    """A copy of the data set whose `split` rows have different flux."""
    dst = ds.path.with_name(f"{name}.h5")
    shutil.copy(ds.path, dst)
    with h5py.File(dst, "r+") as f:
        rows = np.sort(f["split"][split][()])
        f["flux"][rows] = f["flux"][rows][:, ::-1] * 0.7
    return data.Dataset(dst)


def test_topk_selection_sees_no_test_data(ds, views):
    fit = lambda d: WINDOW_MODELS["topk_cnn"](K=32).fit(d.view("train", 0.1), d.view("val", 0.1), ctx(epochs=1))
    base = fit(ds).centers_
    changed_test = _with_changed_split(ds, "test", "t-torch-test-changed")
    np.testing.assert_array_equal(changed_test.view("test", 0.1).x, changed_test.view("test", 0.1).x)
    assert not np.array_equal(changed_test.view("test", 0.1).x, views["test"].x)
    np.testing.assert_array_equal(fit(changed_test).centers_, base)
    # ... while the training split does decide them (the check has teeth)
    changed_train = _with_changed_split(ds, "train", "t-torch-train-changed")
    assert not np.array_equal(fit(changed_train).centers_, base)


def test_topk_centers_are_saved(fitted, tmp_path):
    m = fitted["topk_cnn"]
    m.save(tmp_path / "m")
    with np.load(tmp_path / "m" / "arrays.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["centers"], m.centers_)
    assert len(m.centers_) == 32


# --------------------------------------------------------------------------- global features
def test_global_features_columns_and_groups(views):
    tr = flux_channel(views["train"])
    gf = GlobalFeatures().fit(tr, views["train"].wave)
    F = gf.transform(tr)
    assert F.shape == (len(tr), 126) and np.all(np.isfinite(F))
    names, groups = column_names()
    assert len(names) == 126 and len(LINES) == 23
    assert [groups.count(g) for g in GROUPS] == [32, 48, 23, 23]
    for g in GROUPS:
        part = GlobalFeatures(groups=[h for h in GROUPS if h != g]).fit(tr, views["train"].wave)
        keep = np.array(groups) != g
        np.testing.assert_allclose(part.transform(tr), F[:, keep], rtol=1e-5, atol=1e-5)
        assert part.names == [n for n, k in zip(names, keep) if k]


def test_global_features_pca_is_fitted_on_train_only(views, tmp_path):
    tr, te = flux_channel(views["train"]), flux_channel(views["test"])
    gf = GlobalFeatures().fit(tr, views["train"].wave)
    np.testing.assert_allclose(gf.pca_mean_, tr.mean(axis=0), atol=1e-5)
    before = gf.pca_components_.copy()
    gf.transform(te)
    np.testing.assert_array_equal(gf.pca_components_, before)
    m = MLP_MODELS["global_mlp"]().fit(views["train"], views["val"], ctx(epochs=1))
    np.testing.assert_allclose(m.features_.pca_mean_, tr.mean(axis=0), atol=1e-5)
    gf.save(tmp_path / "gf.npz")
    np.testing.assert_array_equal(GlobalFeatures.load(tmp_path / "gf.npz").transform(te), gf.transform(te))


def test_global_mlp_drop_groups(views):
    m = MLP_MODELS["global_mlp"](drop_groups=["F3"]).fit(views["train"], views["val"], ctx(epochs=1))
    assert m.arch_["n_in"] == 103 and "F3" not in m.arch_["groups"]
    with pytest.raises(ValueError):
        MLP_MODELS["global_mlp"](drop_groups=["F9"]).fit(views["train"], views["val"], ctx(epochs=1))


# --------------------------------------------------------------------------- on the quick data set
@pytest.mark.slow
def test_dilated_cnn_beats_a_constant_on_quick_data():
    path = config.ROOT / "artifacts" / "data" / "sim-quick.h5"
    if not path.exists():
        pytest.skip("artifacts/data/sim-quick.h5 missing: python -m core data build --profile quick")
    q = data.Dataset(path)
    prof = config.profile("quick")
    tr, va, te = (q.view(s, 0.1, limit=prof["max_train"] if s == "train" else None) for s in ("train", "val", "test"))
    m = CNN_MODELS["dilated_cnn"](dilation=2).fit(tr, va, FitContext(profile=prof, seed=0, device="cpu"))
    p = m.predict(te)
    y = te.y[:, 1]
    r2 = 1 - np.sum((p - y) ** 2) / np.sum((y - y.mean()) ** 2)
    assert r2 > 0.5


@pytest.mark.parametrize("kind", ["topk_cnn", "fusion_concat", "fusion_film"])
@pytest.mark.parametrize("channels_in", [1, 2])
def test_window_encoder_inference_path_equals_the_training_formula(kind, channels_in):
    """In eval mode without gradients the window CNN folds the window standardisation and the BatchNorm
    into its weights and gathers its columns straight from the spectrum (the fast batch path); it must
    give the numbers of the plain formula, (cut(x) - mean) / std -> conv -> BatchNorm -> FiLM -> ReLU ->
    mean/max -> projection, with non-trivial statistics and FiLM; with gradients on (saliency) it is the
    plain formula itself."""
    from models.fusion import FusionNet
    from models.windows import TopKCNNNet
    torch.manual_seed(3)
    P = 600
    centers = np.sort(np.random.default_rng(3).choice(np.arange(0, P), 40, replace=False))   # edges included
    net = TopKCNNNet(channels_in, P, centers, 8) if kind == "topk_cnn" else \
        FusionNet(kind.split("_")[1], 12, channels_in, P, centers, 8)
    with torch.no_grad():
        net.w_mean.normal_()
        net.w_std.uniform_(0.5, 2.0)
        bn = net.enc.bn
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.3, 3.0)
        bn.weight.normal_()
        bn.bias.normal_()
        if kind == "fusion_film":
            net.film.weight.normal_(0, 0.3)
            net.film.bias.normal_(0, 0.3)
    net.eval()
    x, f = torch.randn(50, channels_in, P), torch.randn(50, 12)

    def plain():
        w = (net.cut(x) - net.w_mean) / net.w_std
        if kind == "topk_cnn":
            return net.head(net.enc(w))
        g = net.global_tower(net.f_norm(f))
        if kind == "fusion_film":
            return net.head(net.local_tower(net.enc(w, film=net.film(g))))
        return net.head(torch.cat([g, net.local_tower(net.enc(w))], dim=1))

    args = (x,) if kind == "topk_cnn" else (x, f)
    with torch.no_grad():
        fast, ref = net(*args), plain()
    assert ref.abs().max() > 1e-3                      # not a trivially zero network
    assert torch.allclose(fast, ref, rtol=1e-5, atol=1e-6), (fast - ref).abs().max()
    xg = x.clone().requires_grad_(True)
    out = net(xg, f) if kind != "topk_cnn" else net(xg)
    assert out.requires_grad and torch.allclose(out.detach(), ref, rtol=1e-5, atol=1e-6)
