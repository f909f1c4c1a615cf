"""Training noise as a choice (#17, parts 1 and 2): noise_mode "fixed" (one draw per training spectrum,
the view's) or "fresh" (a new draw every epoch, the default of every torch family), the run ids that
keep today's runs for "fixed", the stopping epoch in the run's metrics, and the noise_ablation suite."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from core import cli, config
from core.data import INPUTS, Dataset
from core.engine import spec, suites, train
from models import MODELS, trainer
from models.base import FitContext
from models.mlp import MLPModel
from models.trainer import TorchModelMixin

PROFILE = {"epochs": 3, "batch_size": 64, "patience": 3}
TORCH = {m for m, c in MODELS.items() if issubclass(c, TorchModelMixin)}
FRESH_BY_DEFAULT = {m for m in TORCH if MODELS[m].implied_params.get("noise_mode") == "fresh"}
# run ids from tests/data/spec_hashes.json before noise_mode existed (quick/report: ridge and mlp at
# noise 0.1 and 1.0; quick/dilation: the dilated CNN d=1): a fixed-noise spec must keep them
OLD_IDS = {("ridge", 0.1): "6a8fd198c4fb31fd", ("ridge", 1.0): "1894b4f011c3e16b",
           ("mlp", 0.1): "8fae589a2b3c7f95", ("mlp", 1.0): "6b9409af1baf31f4"}
OLD_DILATED_D1 = "652b4e23df822eae"
FP = "snapshot-fingerprint"


@pytest.fixture(scope="module")
def ds(tiny_dataset):
    return Dataset(tiny_dataset)


def _ctx(ds, seed=0, **kw):
    return FitContext(profile={**PROFILE, **kw}, seed=seed, device="cpu", dataset=ds)


def _capture(monkeypatch):
    """The inputs of every training batch fit_torch computes a loss on, per epoch."""
    seen, real = [], trainer._forward_loss

    def spy(module, xs, yb, amp, device_type):
        if module.training:
            seen.append([x.detach().cpu().numpy().copy() for x in xs])
        return real(module, xs, yb, amp, device_type)
    monkeypatch.setattr(trainer, "_forward_loss", spy)
    return seen


def _epochs(batches, n_batches):
    return [np.concatenate([b[0] for b in batches[i:i + n_batches]]) for i in range(0, len(batches), n_batches)]


# --------------------------------------------------------------------------- the draws
def test_fresh_draws_differ_per_epoch_and_repeat_per_seed(ds):
    v = ds.view("train", 1.0, "flux+error_shuffled", seed=0)
    src = ds.noise_source(v)
    e0, e1, again, other = src.fresh(5, 0), src.fresh(5, 1), src.fresh(5, 0), src.fresh(6, 0)
    assert not np.array_equal(e0.x[:, 0], e1.x[:, 0]) and not np.array_equal(e0.x[:, 0], other.x[:, 0])
    assert np.array_equal(e0.x, again.x)                                # same (seed, epoch): same draw
    assert not np.array_equal(e0.x[:, 0], v.x[:, 0])                    # not the fixed draw either
    for d in (e0, e1):                                                  # only the noise changes
        assert np.array_equal(d.x[:, 1], v.x[:, 1]) and np.array_equal(d.index, v.index)
        assert np.array_equal(d.y, v.y) and d.channels == v.channels
    z = (e0.x[:, 0].astype(np.float64) - src.flux) / (1.0 * src.err)  # the noise model: flux + sigma * N(0, 1)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.corrcoef(z.ravel(), ((e1.x[:, 0] - src.flux) / src.err).ravel())[0, 1]) < 0.01


def test_fixed_draw_is_the_view_for_every_input(ds):
    for inputs in INPUTS:
        if inputs == "meta":
            continue
        for nl in config.NOISE_LEVELS:
            v = ds.view("train", nl, inputs, seed=3, limit=100)
            d = ds.noise_source(v).draw(chunk=33)                        # other chunking, same arrays
            assert d.x.dtype == v.x.dtype and np.array_equal(d.x, v.x), inputs


def test_trainer_sees_fresh_batches_per_epoch_that_repeat_per_seed(ds, monkeypatch):
    tr, va = ds.view("train", 1.0), ds.view("val", 1.0)
    n_batches = len(trainer._batches(len(tr.y), PROFILE["batch_size"], np.arange(len(tr.y))))
    seen = _capture(monkeypatch)
    runs = []
    for seed in (0, 0, 1):
        seen.clear()
        m = MLPModel(training="budget").fit(tr, va, _ctx(ds, seed))
        assert m.history_["noise_mode"] == "fresh" and m.run_metrics()["fresh_noise"] == 1.0
        runs.append(_epochs(seen, n_batches))
    (a, b, c) = runs
    assert len(a) == PROFILE["epochs"] and all(np.array_equal(x, y) for x, y in zip(a, b))   # repeats
    assert not np.array_equal(np.sort(a[0], axis=0), np.sort(a[1], axis=0))   # another draw each epoch
    assert not np.array_equal(np.sort(a[0], axis=0), np.sort(c[0], axis=0))   # another training seed
    fixed_rows = {r.tobytes() for r in tr.x.reshape(len(tr.x), -1)}
    assert not any(r.tobytes() in fixed_rows for r in a[0])


def test_fixed_trains_on_the_views_arrays(ds, monkeypatch):
    tr, va = ds.view("train", 1.0), ds.view("val", 1.0)
    seen = _capture(monkeypatch)
    m = MLPModel(noise_mode="fixed", training="budget").fit(tr, va, _ctx(ds))
    assert m.history_["noise_mode"] == "fixed" and m.run_metrics()["fresh_noise"] == 0.0
    rows = tr.x.reshape(len(tr.x), -1)
    n_batches = len(trainer._batches(len(rows), PROFILE["batch_size"], np.arange(len(rows))))
    for ep in _epochs(seen, n_batches):                                   # every epoch: the view's rows, each once
        assert np.array_equal(np.unique(ep, axis=0), np.unique(rows, axis=0)) and len(ep) == len(rows)
    # the same fit as the trainer's path before noise_mode existed: fit_torch on the view's arrays
    ref = MLPModel(noise_mode="fixed", training="budget")
    ref.fit(tr, va, FitContext(profile=PROFILE, seed=0, device="cpu"))   # no data set at hand: fixed
    assert np.array_equal(m.predict(va), ref.predict(va))


def test_fresh_residual_model_and_views_without_noise(ds):
    tr, va = ds.view("train", 1.0), ds.view("val", 1.0)
    m = MODELS["topk_cnn"](K=8).fit(tr, va, _ctx(ds, cnn_channels=4))   # Ridge base on every fresh draw
    assert m.history_["noise_mode"] == "fresh" and np.isfinite(m.predict(va)).all()
    clean = MLPModel(training="budget").fit(ds.view("train", 1.0, "flux_clean"), ds.view("val", 1.0, "flux_clean"), _ctx(ds))
    assert clean.history_["noise_mode"] == "fixed"                          # nothing to redraw


# --------------------------------------------------------------------------- run ids
def _legacy_hash(s: dict, fp: str) -> str:
    """spec_hash as it was before noise_mode and training existed (the params without either)."""
    n = spec.normalise_spec(s)
    n["params"] = {k: v for k, v in n["params"].items() if k not in ("noise_mode", "training")}
    payload = {k: n[k] for k in spec.SPEC_KEYS}
    if n.get("replicate"):
        payload["replicate"] = n["replicate"]
    if n.get("n_train"):                      # the learning curve's key (#17 part 3), hashed only when given
        payload["n_train"] = n["n_train"]
    prof = config.profile(n["profile"])
    payload["dataset_fp"] = fp
    payload["profile_settings"] = {k: v for k, v in prof.items() if k not in ("name", "dataset", "n_spectra")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _fixed(s):
    """The team's way: one fixed noise draw and the profile's epoch budget (where the family has `training`)."""
    from models import MODELS
    team = {"noise_mode": "fixed"} | ({"training": "budget"} if "training" in MODELS[s["model"]].implied_params else {})
    return dict(s, params={**s["params"], **team})


def test_fixed_keeps_todays_run_ids_and_only_torch_ids_change():
    for (m, nl), rid in OLD_IDS.items():
        s = next(x for x in suites.suite("report", "quick") if x["model"] == m and x["noise_level"] == nl)
        assert spec.spec_hash(_fixed(s) if m in TORCH else s, FP) == rid
        assert (spec.spec_hash(s, FP) != rid) == (m in FRESH_BY_DEFAULT)
    assert spec.spec_hash(_fixed(suites.suite("dilation", "quick")[0]), FP) == OLD_DILATED_D1
    n_changed = 0
    for prof in config.PROFILES:
        for name in suites.SUITES:
            for s in suites.suite(name, prof):
                rid, n = spec.spec_hash(s, FP), spec.normalise_spec(s)
                assert spec.normalise_spec(n) == n and spec.spec_hash(n, FP) == rid     # idempotent
                if s["model"] in TORCH:
                    assert spec.spec_hash(_fixed(s), FP) == _legacy_hash(_fixed(s), FP)
                mode, training = n["params"].get("noise_mode"), n["params"].get("training")
                changed = rid != _legacy_hash(s, FP)
                assert changed == (mode == "fresh" or training == "converge"), (prof, name, s)
                assert not changed or s["model"] in FRESH_BY_DEFAULT
                n_changed += changed
    assert n_changed > 100
    assert {"mlp", "global_mlp", "dilated_cnn", "topk_cnn", "fusion_film"} <= FRESH_BY_DEFAULT
    assert not FRESH_BY_DEFAULT & {"blindspot", "blindspot_head", "blindspot_finetune"}


def test_noise_mode_is_checked():
    s = spec.make_spec("mlp", {"noise_mode": "sometimes"}, 1.0, "quick", "d")
    with pytest.raises(ValueError, match="noise_mode"):
        spec.normalise_spec(s)
    with pytest.raises(ValueError, match="unknown parameter"):
        spec.normalise_spec(spec.make_spec("ridge", {"noise_mode": "fresh"}, 1.0, "quick", "d"))
    with pytest.raises(ValueError, match="noise_mode"):
        spec.normalise_spec(spec.make_spec("blindspot", {"noise_mode": "fresh"}, 1.0, "quick", "d"))
    enc = spec.make_spec("blindspot", {}, 1.0, "quick", "d")
    assert spec.spec_hash(enc, FP) == spec.spec_hash(_fixed(enc), FP) == _legacy_hash(enc, FP)


# --------------------------------------------------------------------------- a run end to end
def test_fresh_fit_runs_through_the_engine_and_records_where_it_stopped(tiny_dataset):
    base = spec.make_spec("mlp", {"training": "budget"}, 1.0, "quick", tiny_dataset, "test")
    fresh, fixed = train.run(base, log=lambda m: None), train.run(_fixed(base), log=lambda m: None)
    assert fresh.run_id != fixed.run_id
    assert fixed.run_id == _legacy_hash(base, Dataset(tiny_dataset).fingerprint)
    prof = config.profile("quick")
    for r, mode in ((fresh, 1.0), (fixed, 0.0)):
        m = r.metrics
        assert m["fresh_noise"] == mode and m["max_epochs"] == prof["epochs"]
        assert 1 <= m["best_epoch"] <= m["epochs_run"] <= m["max_epochs"] and np.isfinite(m["best_val_loss"])
        assert m["stopped_on_budget"] == float(not m["stopped_early"] and m["epochs_run"] == m["max_epochs"])
        assert m["stopped_early"] == float(m["epochs_run"] - m["best_epoch"] >= prof["patience"])
    assert not np.array_equal(fresh.predictions()["y_pred"], fixed.predictions()["y_pred"])
    again = train.run(base, force=True, log=lambda m: None)                  # fresh noise repeats exactly
    assert np.array_equal(again.predictions()["y_pred"], fresh.predictions()["y_pred"])


# --------------------------------------------------------------------------- the suite
def test_noise_ablation_arms_differ_only_in_noise_mode_and_training():
    """Four arms per method and noise level: fixed / fresh noise x epoch budget / to convergence. Fresh +
    converge are the report's runs, fixed + budget the runs from before #17 (legacy ids)."""
    arms = [("fixed", "budget"), ("fresh", "budget"), ("fixed", "converge"), ("fresh", "converge")]
    for prof in config.PROFILES:
        specs = suites.suite("noise_ablation", prof)
        assert len(specs) % 4 == 0 and {"mlp", "global_mlp", "dilated_cnn"} <= {s["model"] for s in specs}
        report = {(s["model"], s["noise_level"]): spec.spec_hash(s, FP) for s in suites.suite("report", prof)}
        for group in zip(*[specs[k::4] for k in range(4)]):
            got = [(g["params"].pop("noise_mode"), g["params"].pop("training")) for g in group]
            assert got == arms and all(g == group[0] for g in group)
        for s in specs:
            assert s["model"] in FRESH_BY_DEFAULT
        assert {n for s in specs for n in [s["noise_level"]]} == set(config.NOISE_LEVELS)
        specs = suites.suite("noise_ablation", prof)
        new = [s for s in specs if s["params"]["noise_mode"] == "fresh" and s["params"]["training"] == "converge"]
        assert all(spec.spec_hash(s, FP) == report[(s["model"], s["noise_level"])] for s in new)
        team = [s for s in specs if s["params"]["noise_mode"] == "fixed" and s["params"]["training"] == "budget"]
        assert all(spec.spec_hash(s, FP) == _legacy_hash(s, FP) for s in team)
        labels = [suites.row_label(s) for s in specs]
        assert len(set(labels)) == len(labels) // len(config.NOISE_LEVELS)
    assert suites.row_label(suites.suite("noise_ablation", "quick")[0]) == "MLP (fixed noise, epoch budget)"
    assert suites.row_label(spec.normalise_spec(suites.suite("report", "quick")[8])) == "MLP"
    assert suites.row_label(spec.normalise_spec(_fixed(suites.suite("report", "quick")[8]))) == \
        "MLP (fixed noise, epoch budget)"


def test_noise_ablation_report_prints(tiny_dataset, capsys):
    assert cli.main(["report", "--suite", "noise_ablation", "--dataset", tiny_dataset]) == 0
    out = capsys.readouterr().out
    assert "MLP (fixed noise, epoch budget)" in out and "MLP (fresh noise, to convergence)" in out
    assert "Dilated CNN (d=2) (fixed noise, to convergence)" in out


# --------------------------------------------------------------------------- training to convergence (#17 item 2)
def test_plateau_schedule_cuts_the_rate_and_stops_when_the_loss_is_flat():
    """A linear problem a small network learns in a few epochs: the plateau schedule cuts the rate
    PLATEAU_CUTS times, each after `patience` epochs without a PLATEAU_MIN_GAIN gain, and stops at the
    next plateau, long before its budget; the cosine schedule on the same budget runs it out."""
    from torch import nn
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 8)).astype(np.float32)
    y = X @ rng.normal(size=8) + 0.3 * rng.normal(size=512)
    hists = {}
    for schedule in ("plateau", "cosine"):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
        ctx = FitContext(profile={"epochs": 200, "batch_size": 64, "patience": 3, "schedule": schedule},
                         seed=0, device="cpu")
        hists[schedule] = trainer.fit_torch(net, X[:400], y[:400], X[400:], y[400:], ctx, lr=1e-2)
    h = hists["plateau"]
    lrs = [e["lr"] for e in h["epochs"][1:]]          # after the warm-up epoch
    cuts = [i for i in range(1, len(lrs)) if lrs[i] < lrs[i - 1] * 0.99]
    assert h["lr_cuts"] == len(cuts) == trainer.PLATEAU_CUTS and h["stopped_early"]
    assert all(abs(lrs[i] / lrs[i - 1] - trainer.PLATEAU_CUT) < 1e-6 for i in cuts)
    assert h["epochs_run"] < 100 and h["best_epoch"] <= h["epochs_run"]
    vl = [e["val_loss"] for e in h["epochs"]]
    ref = min(vl[:-3])                                # the last `patience` epochs gained nothing worth a cut
    assert min(vl[-3:]) >= ref * (1 - trainer.PLATEAU_MIN_GAIN)
    assert hists["cosine"]["epochs_run"] == 200 or hists["cosine"]["stopped_early"]


def test_converge_is_the_torch_default_and_budget_is_the_old_training(tiny_dataset):
    """Through the engine: an MLP spec without `training` trains to convergence (the plateau schedule,
    CONVERGE_EPOCHS at most), stops before its budget and says so in its metrics; training="budget" is
    the profile's epochs; an unknown value, and `training` for a family with its own budget, are refused."""
    base = spec.make_spec("mlp", {}, 1.0, "quick", tiny_dataset, "test")
    assert spec.normalise_spec(base)["params"]["training"] == "converge"
    m = train.run(base, log=lambda m: None).metrics
    assert m["max_epochs"] == trainer.CONVERGE_EPOCHS and m["stopped_on_budget"] == 0.0 and m["stopped_early"] == 1.0
    assert m["lr_cuts"] == trainer.PLATEAU_CUTS and m["epochs_run"] < trainer.CONVERGE_EPOCHS
    bare = MLPModel()._training_ctx(FitContext(profile=config.profile("quick"), seed=0))   # built outside the engine
    assert bare.profile["schedule"] == "plateau" and bare.profile["epochs"] == trainer.CONVERGE_EPOCHS
    b = train.run(dict(base, params={"training": "budget"}), log=lambda m: None).metrics
    assert b["max_epochs"] == config.profile("quick")["epochs"] and b["lr_cuts"] == 0.0
    with pytest.raises(ValueError, match="training must be one of"):
        spec.normalise_spec(spec.make_spec("mlp", {"training": "forever"}, 1.0, "quick", "d"))
    for family in ("npe", "blindspot"):
        with pytest.raises(ValueError, match="takes no training parameter"):
            spec.normalise_spec(spec.make_spec(family, {"training": "converge"}, 1.0, "quick", "d"))


# --------------------------------------------------------------------------- a stream of new stars
def test_stream_epochs_are_new_stars_of_the_data_sets_prior_that_repeat_per_seed(ds):
    """#17 part 3: noise_mode "stream" draws new stars every epoch from the data set's own recipe: not its
    stars, the same distribution (labels over the box, S/N, mean flux), a pure function of (seed, epoch)."""
    from core.data.stream import StarStream
    tr = ds.view("train", 1.0, "flux+error")
    src = StarStream(ds, 150, 1.0, "flux+error", training_seed=4)
    e0, e1, again, other = src.epoch(0), src.epoch(1), src.epoch(0), StarStream(ds, 150, 1.0, "flux+error", 5).epoch(0)
    assert e0.x.shape == (150, 2, ds.n_pix) and e0.channels == tr.channels and e0.x.dtype == np.float32
    assert np.array_equal(e0.x, again.x) and np.array_equal(e0.y, again.y)
    assert not np.array_equal(e0.y, e1.y) and not np.array_equal(e0.y, other.y)
    assert not ({tuple(r) for r in e0.y.round(3)} & {tuple(r) for r in ds.labels.astype(np.float32).round(3)})
    from core.data import LABEL_BOX, LABELS
    for j, k in enumerate(LABELS):
        lo, hi = LABEL_BOX[k]
        assert lo <= e0.y[:, j].min() and e0.y[:, j].max() <= hi
        assert abs(e0.y[:, j].mean() - (lo + hi) / 2) < 0.1 * (hi - lo)        # a Latin hypercube over the box
    # the same S/N distribution as the data set's stars (a two-sample KS test against all of them)
    from scipy.stats import ks_2samp
    snr = lambda v: np.median(v.x[:, 0] / v.x[:, 1], axis=1)                   # noqa: E731
    every = ds.view("train", 1.0, "flux+error"), ds.view("val", 1.0, "flux+error"), ds.view("test", 1.0, "flux+error")
    big = StarStream(ds, 600, 1.0, "flux+error", training_seed=4).epoch(7)
    assert ks_2samp(snr(big), np.concatenate([snr(v) for v in every])).pvalue > 0.01
    assert ks_2samp(snr(big), snr(big) * 1.5).pvalue < 1e-6                   # the test can tell a shifted S/N
    assert abs(big.x[:, 0].mean() - tr.x[:, 0].mean()) < 0.01
    # the error channel is the simulator's sigma of the star's own flux at this noise level
    z = (e0.x[:, 0] - StarStream(ds, 150, 0.0, "flux", 4).epoch(0).x[:, 0]) / e0.x[:, 1]
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02


def test_stream_refuses_what_it_cannot_draw(ds, tmp_path):
    from core.data import DataError
    from core.data.stream import StarStream
    with pytest.raises(DataError, match="cannot be formed for new stars"):
        StarStream(ds, 10, 1.0, "flux+error_shuffled")
    tr, va = ds.view("train", 1.0), ds.view("val", 1.0)
    with pytest.raises(DataError, match="not at hand"):                 # never a silent fit on the fixed split
        MLPModel(noise_mode="stream").fit(tr, va, FitContext(profile=PROFILE, seed=0, device="cpu"))


def test_a_stream_fit_trains_on_new_stars_each_epoch_and_says_how_many(ds, monkeypatch):
    from core.data import stream
    tr, va = ds.view("train", 1.0), ds.view("val", 1.0)
    drawn, real_epoch = [], stream.StarStream.epoch
    monkeypatch.setattr(stream.StarStream, "epoch", lambda self, e: drawn.append(real_epoch(self, e)) or drawn[-1])
    targets, real_loss = [], trainer._forward_loss

    def spy(module, xs, yb, amp, device_type):
        if module.training:
            targets.append((yb.detach().double() * module.y_std.double() + module.y_mean.double()).numpy())
        return real_loss(module, xs, yb, amp, device_type)
    monkeypatch.setattr(trainer, "_forward_loss", spy)
    m = MLPModel(noise_mode="stream", training="budget").fit(tr, va, _ctx(ds))
    assert m.history_["noise_mode"] == "stream" and len(drawn) == PROFILE["epochs"]
    met = m.run_metrics()
    assert met["epochs_run"] == PROFILE["epochs"]                # the kept weights saw best_epoch epochs of new stars
    assert met["stars_seen"] == len(tr.y) * met["best_epoch"] and 1 <= met["best_epoch"] <= met["epochs_run"]
    assert met["fresh_noise"] == 1.0
    # every epoch trains on exactly that epoch's new stars (their log g as targets), none of the split's
    n_batches = len(trainer._batches(len(tr.y), PROFILE["batch_size"], np.arange(len(tr.y))))
    for e, v in enumerate(drawn):
        got = np.sort(np.concatenate(targets[e * n_batches:(e + 1) * n_batches]))
        np.testing.assert_allclose(got, np.sort(v.y[:, 1].astype(np.float64)), atol=1e-4)
        assert not np.isin(v.y[:, 1].round(5), tr.y[:, 1].round(5)).any()
    assert np.isfinite(m.predict(va)).all()
