"""Predict (core/predict/, pages/predict.py, `python -m core predict`): every upload format, every bad
input, flux-conserving resampling, normalisation, the example path, batch prediction, the CLI and the page.

One small data set ('pred-test', 400 spectra) with Ridge at both noise levels, LightGBM (30 rounds: not
the report's LightGBM, so a research run) and the Cannon at noise 0.1 is built and fitted once for the
module (about 30 s on 2 cores).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import ROOT
from scipy.interpolate import CubicSpline

from core import predict as P

DS = "pred-test"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def trained(artifacts_dir):
    from core import data
    from core.engine import train
    if DS not in data.list_datasets():
        data.build(name=DS, n=400)
    base = {"dataset": DS, "profile": "quick", "seed": 0}
    runs = {}
    for model, params, nl in (("ridge", {}, 0.1), ("ridge", {}, 1.0), ("lightgbm", {"rounds": 30}, 0.1),
                              ("cannon", {}, 0.1)):
        runs[(model, nl)] = train.run({**base, "model": model, "params": params, "noise_level": nl}, log=lambda m: None)
    ds = data.Dataset(DS)
    return ds, runs


@pytest.fixture(scope="module")
def star(trained):
    """Test star 3 at noise 0.1, as the models were scored on it (already normalised)."""
    ds, _ = trained
    return P.example(ds, 3, 0.1)


def ridge_value(r: dict, run_id: str) -> float:
    return next(x["value"] for x in r["logg"] if x["run_id"] == run_id)


def one_line(msg: str) -> bool:
    return "\n" not in msg and "Traceback" not in msg and len(msg) < 400


# --------------------------------------------------------------------------- file makers
def csv_bytes(w, f, e=None, sep=",", header=("wavelength", "flux", "error"), comments=("# made by a test",)) -> bytes:
    cols = [w, f] + ([e] if e is not None else [])
    lines = list(comments)
    if header:
        lines.append(sep.join(header[:len(cols)]))
    lines += [sep.join(f"{v:.9g}" for v in row) for row in zip(*cols)]
    return ("\n".join(lines) + "\n").encode()


def npy_bytes(arr, allow_pickle=False) -> bytes:
    b = io.BytesIO()
    np.save(b, arr, allow_pickle=allow_pickle)
    return b.getvalue()


def npz_bytes(**arrays) -> bytes:
    b = io.BytesIO()
    np.savez(b, **arrays)
    return b.getvalue()


def fits_image_bytes(flux, header: dict, err=None) -> bytes:
    from astropy.io import fits
    h = fits.PrimaryHDU(np.asarray(flux, np.float32))
    for k, v in header.items():
        h.header[k] = v
    hdus = [h] + ([fits.ImageHDU(np.asarray(err, np.float32), name="ERROR")] if err is not None else [])
    b = io.BytesIO()
    fits.HDUList(hdus).writeto(b)
    return b.getvalue()


def fits_table_bytes(columns: dict, units: dict | None = None) -> bytes:
    from astropy.io import fits
    cols = [fits.Column(name=k, format="D", array=np.asarray(v, np.float64), unit=(units or {}).get(k))
            for k, v in columns.items()]
    b = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="COADD")]).writeto(b)
    return b.getvalue()


def h5_bytes(**datasets) -> bytes:
    b = io.BytesIO()
    with h5py.File(b, "w") as f:
        for k, v in datasets.items():
            if isinstance(v, dict):
                g = f.create_group(k)
                for kk, vv in v.items():
                    g[kk] = vv
            else:
                f[k] = v
    return b.getvalue()


# --------------------------------------------------------------------------- formats
def test_every_format_reads_and_predicts_the_same(trained, star):
    """Each format of the same spectrum (already normalised, on the model grid) reads back to the same
    arrays and gives the example's log g."""
    ds, runs = trained
    rid = runs[("ridge", 0.1)].run_id
    ref = P.predict(star, ds, noise=0.1, normalise="as-is", mc=0)
    w, f, e = star.wave, star.flux, star.error
    ivar = 1.0 / e ** 2
    step = float(np.log10(w[-1] / w[0]) / (w.size - 1))
    files = {
        "s.csv": csv_bytes(w, f, e),
        "s.tsv": csv_bytes(w, f, ivar, sep="\t", header=("wave", "flux", "ivar")),
        "s.txt": csv_bytes(w, f, e, sep=" ", header=None, comments=("# lambda flux sigma", "% another comment")),
        "s.dat": csv_bytes(w, f, e, sep=" ", header=None, comments=()),
        "s.npy": npy_bytes(np.stack([w, f, e], 1)),
        "s.npz": npz_bytes(wavelength=w, flux=f, ivar=ivar),
        "s.fits": fits_image_bytes(f, {"CRVAL1": np.log10(w[0]), "CD1_1": step, "CRPIX1": 1, "DC-FLAG": 1}, err=e),
        "sdss.fits": fits_table_bytes({"loglam": np.log10(w), "flux": f, "ivar": ivar}),
        "s.csv.gz": gzip.compress(csv_bytes(w, f, e)),
    }
    for name, data in files.items():
        item = P.read_bytes(data, name)
        assert isinstance(item, P.Spectrum), name
        np.testing.assert_allclose(item.wave, w, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(item.flux, f, rtol=1e-5, atol=1e-6, err_msg=name)
        if name != "s.dat" or item.error is not None:
            np.testing.assert_allclose(item.error, e, rtol=1e-4, err_msg=name)
        r = P.predict(item, ds, noise=0.1, normalise="as-is", mc=0)
        # float32 FITS and 9-digit text round the flux: Ridge on 4096 pixels moves by less than 0.01 dex
        assert abs(ridge_value(r, rid) - ridge_value(ref, rid)) < 0.01, name
        assert r["coverage"]["fraction"] == 1.0, name


def test_fits_linear_header_and_declared_units(trained, star):
    ds, _ = trained
    # a 1-D image on a linear grid (CRVAL1/CDELT1, no DC-FLAG), resampled from the star
    lin = np.linspace(7090.0, 8860.0, 3000)
    f_lin, e_lin, _ = P.resample(star.wave, star.flux, lin, star.error)
    ok = np.isfinite(f_lin)
    f_lin, e_lin = np.where(ok, f_lin, 1.0), np.where(ok, e_lin, 0.01)
    item = P.read_bytes(fits_image_bytes(f_lin, {"CRVAL1": lin[0], "CDELT1": lin[1] - lin[0], "CRPIX1": 1},
                                         err=e_lin), "lin.fits")
    np.testing.assert_allclose(item.wave, lin, rtol=1e-9)
    assert "CRVAL1/CDELT1" in item.fmt
    # a table whose wavelength unit is declared as nm (TUNIT): converted, and said so
    item = P.read_bytes(fits_table_bytes({"WAVELENGTH": star.wave / 10, "FLUX": star.flux, "ERROR": star.error},
                                         units={"WAVELENGTH": "nm"}), "pfs.fits")
    np.testing.assert_allclose(item.wave, star.wave, rtol=1e-9)
    assert any("from nm" in n for n in item.notes)
    # and a text header that names the unit
    item = P.read_bytes(csv_bytes(star.wave / 1e4, star.flux, star.error, header=("wave [micron]", "flux", "err")),
                        "um.csv")
    np.testing.assert_allclose(item.wave, star.wave, rtol=1e-9)
    r = P.predict(item, ds)
    assert np.isfinite(r["recommended"]["value"])


def test_hdf5_batch_gives_a_csv_table(trained):
    ds, runs = trained
    v = ds.view("test", 0.1, "flux+error")
    data = h5_bytes(wave=ds.wave, flux=v.x[:, 0] * 7.0, error=v.x[:, 1] * 7.0,
                    labels={"teff": v.y[:, 0], "logg": v.y[:, 1], "mh": v.y[:, 2]})
    batch = P.read_bytes(data, "many.h5")
    assert isinstance(batch, P.Batch) and batch.flux.shape == (len(v.y), ds.n_pix)
    df, summary = P.predict_batch(batch, ds)
    assert len(df) == len(v.y) and summary["spectra"] == len(v.y)
    for col in ("spectrum", "snr", "noise_level", "logg", "logg_err", "recommended_model", "ood", "true_logg",
                "logg [Ridge]", "logg [Cannon (quadratic)]"):
        assert col in df.columns, col
    # LightGBM with 30 rounds is not the report's LightGBM: a research run, listed only when asked for
    assert "logg [lightgbm(rounds=30)]" not in df.columns and summary["research_hidden"] >= 1
    assert "logg [lightgbm(rounds=30)]" in P.predict_batch(batch, ds, research=True)[0].columns
    assert df["logg"].notna().all()
    assert all(set(m.replace("weighted mean of ", "").split(", ")) <= {"Ridge", "Cannon (quadratic)"}
               for m in df["recommended_model"])
    # the scaled flux is normalised back: the batch RMSE is near the runs' own test RMSE
    assert summary["rmse_vs_true_logg"] < 1.5 * max(r.metrics["rmse"] for r in runs.values()) + 0.1
    text = df.to_csv(index=False)
    assert text.splitlines()[0].startswith("spectrum,snr,noise_level")


def test_a_batch_runs_only_what_the_recommendation_uses(artifacts_dir, monkeypatch):
    """#15 item 6: by default a batch runs the predictors that enter some S/N bin's recommendation, each on the
    spectra of those bins only (the same recommended values, fewer model evaluations); all_models=True runs
    every predictor on every spectrum."""
    from core import data
    from core.engine import train
    from core.predict import skill
    if "pred-batch" not in data.list_datasets():
        data.build(name="pred-batch", n=300)
    for m in ("ridge", "cannon", "mlp"):                        # three predictors, TOP_K 1: some wins no S/N bin
        train.run({"dataset": "pred-batch", "profile": "quick", "model": m, "noise_level": 0.1}, log=lambda x: None)
    ds = data.Dataset("pred-batch")
    monkeypatch.setattr(skill, "TOP_K", 1)                     # one member per S/N bin
    v = ds.view("test", 0.1, "flux+error")
    batch = P.read_bytes(h5_bytes(wave=ds.wave, flux=v.x[:, 0], error=v.x[:, 1]), "many.h5")
    rec, s_rec = P.predict_batch(batch, ds, noise=0.1)
    every, s_all = P.predict_batch(batch, ds, noise=0.1, all_models=True)
    # a network member evaluated on a subset of the spectra rounds its float32 batches differently (1e-8 relative)
    np.testing.assert_allclose(rec["logg"], every["logg"], rtol=1e-6)
    np.testing.assert_allclose(rec["logg_err"], every["logg_err"], rtol=1e-6)
    entries = [e for e in P.trained_models(ds) if e.usable and e.role == "predictor" and e.noise_level == 0.1]
    members = skill.members_at_any_snr(entries, ds)
    cols = {c for c in rec.columns if c.startswith("logg [")}
    assert cols == {f"logg [{e.label}]" for e in entries if e.run_id in members}
    assert {c for c in every.columns if c.startswith("logg [")} == {f"logg [{e.label}]" for e in entries}
    assert s_rec["not_needed"] == len(entries) - len(members) >= 1 and s_all["not_needed"] == 0
    # each member runs only on the spectra of the S/N bins whose recommendation it enters, with the same values
    sk, by_bin = skill.members_by_bin(entries, ds)
    bins = sk.bin_of(rec["snr"].to_numpy())
    partial = 0
    for e in entries:
        if e.run_id in members:
            c = f"logg [{e.label}]"
            want = np.isin(bins, [b for b, ids in by_bin.items() if e.run_id in ids])
            assert np.array_equal(rec[c].notna().to_numpy(), want), e.label
            np.testing.assert_allclose(rec[c][want], every[c][want], rtol=1e-6)
            partial += int(not want.all())
    assert partial >= 1                                     # some member was not run on every spectrum


# --------------------------------------------------------------------------- bad input
def test_the_inventory_is_read_again_only_when_the_registry_changes(artifacts_dir, monkeypatch):
    """trained_models reads and checks every finished run (0.22 s of each predict call on a 558-run
    registry): kept per process, until a run of the data set finishes."""
    from core import data
    from core.engine import registry, train
    if "pred-inv" not in data.list_datasets():
        data.build(name="pred-inv", n=200)
    ds = data.Dataset("pred-inv")
    train.run({"dataset": "pred-inv", "profile": "quick", "model": "ridge", "noise_level": 0.1}, log=lambda x: None)
    reads = []
    real = registry.runs
    monkeypatch.setattr(registry, "runs", lambda *a, **k: reads.append(k) or real(*a, **k))
    first = P.trained_models(ds)
    assert [e.spec["model"] for e in first] == ["ridge"] and len(reads) == 1
    assert [e.run_id for e in P.trained_models(ds)] == [e.run_id for e in first] and len(reads) == 1
    train.run({"dataset": "pred-inv", "profile": "quick", "model": "lightgbm", "noise_level": 0.1}, log=lambda x: None)
    assert sorted(e.spec["model"] for e in P.trained_models(ds)) == ["lightgbm", "ridge"] and len(reads) == 2


def not_a_number(w, f, e) -> bytes:
    lines = csv_bytes(w, f, e).decode().splitlines()
    lines[11] = "7105.1,abc,0.01"                       # file line 12
    return ("\n".join(lines) + "\n").encode()


def _bad_inputs(star, tmp_path):
    w, f, e = star.wave, star.flux, star.error
    nan_f = f.copy()
    nan_f[17] = np.nan
    inf_w = w.copy()
    inf_w[5] = np.inf
    bad_e = e.copy()
    bad_e[9] = -1.0
    zero_e = e.copy()
    zero_e[9] = 0.0
    shuffled = w.copy()
    shuffled[100], shuffled[101] = shuffled[101], shuffled[100]
    dup = w.copy()
    dup[200] = dup[199]
    pickled = pickle.dumps({"wave": [1, 2, 3]})
    return {
        "empty": ("empty.csv", b"", "empty file"),
        "binary junk": ("junk.bin", bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), "binary"),
        "pickle disguised as .npy": ("evil.npy", pickled, "pickle"),
        "object array in .npy": ("obj.npy", npy_bytes(np.array([{"a": 1}, None], dtype=object), allow_pickle=True),
                                 "pickle"),
        "NaN flux": ("nan.csv", csv_bytes(w, nan_f, e), "NaN"),
        "inf wavelength": ("inf.npy", npy_bytes(np.stack([inf_w, f, e], 1)), "NaN/inf"),
        "negative error": ("neg.csv", csv_bytes(w, f, bad_e), "zero or negative"),
        "zero error": ("zero.csv", csv_bytes(w, f, zero_e), "zero or negative"),
        "non-monotonic": ("order.csv", csv_bytes(shuffled, f, e), "not monotonic"),
        "duplicated": ("dup.csv", csv_bytes(dup, f, e), "duplicated wavelength"),
        "nm": ("nm.csv", csv_bytes(w / 10, f, e), "nanometres"),
        "micron": ("um.csv", csv_bytes(w / 1e4, f, e), "micron"),
        "too few points": ("few.csv", csv_bytes(w[::60], f[::60], e[::60]), "at least 100"),
        "not a number": ("text.csv", not_a_number(w, f, e), "line 12: 'abc' is not a number"),
        "no overlap": ("blue.csv", csv_bytes(w - 4000, f, e), "do not overlap"),
        "too little overlap": ("short.csv", csv_bytes(w[:1200], f[:1200], e[:1200]), "at least 50%"),
        "no flux column": ("cols.csv", csv_bytes(w, f, e, header=("wavelength", "counts", "error")), "no flux column"),
        "fits without a wavelength solution": ("nowcs.fits", fits_image_bytes(f, {}), "wavelength solution"),
        "hdf5 without /flux": ("noflux.h5", h5_bytes(wave=w, spectra=np.ones((3, w.size))), "missing dataset /flux"),
        "hdf5 with mismatched shapes": ("shape.h5", h5_bytes(wave=w, flux=np.ones((3, 10))), "expected (n_spectra"),
        "hdf5 named .npy": ("wrong.npy", h5_bytes(wave=w), "missing dataset /flux"),
        "text named .fits": ("text.fits", csv_bytes(w, f, e), "content is text"),
    }


def test_every_bad_input_gets_one_line_and_artifacts_do_not_change(trained, star, tmp_path, artifacts_dir):
    ds, _ = trained
    before = snapshot(artifacts_dir)
    for label, (name, data, words) in _bad_inputs(star, tmp_path).items():
        with pytest.raises(P.PredictError) as ei:
            item = P.read_bytes(data, name)
            if isinstance(item, P.Batch):
                P.predict_batch(item, ds)
            else:
                P.predict(item, ds)
        msg = str(ei.value)
        assert one_line(msg), (label, msg)
        assert words.lower() in msg.lower(), (label, msg)
    # over the upload limit of .streamlit/config.toml (read, not assumed)
    assert P.upload_limit_mb() == 50
    with pytest.raises(P.PredictError, match="above the upload limit of 0.001 MB"):
        P.read_bytes(csv_bytes(star.wave, star.flux, star.error), "big.csv", limit_mb=0.001)
    big = tmp_path / "big.csv"
    big.write_bytes(b"0" * (51 * 2 ** 20))
    with pytest.raises(P.PredictError, match=r"above the upload limit of 50 MB \(server.maxUploadSize"):
        P.read_file(big)
    assert snapshot(artifacts_dir) == before


def snapshot(root: Path) -> dict:
    """Every file under the artifacts folder by content, and the registry's rows (SQLite's -wal/-shm side
    files and the database file's bytes are not compared: a reader may checkpoint them)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and not p.name.startswith("registry.sqlite"):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    con = sqlite3.connect(Path(root) / "registry.sqlite")
    out["registry"] = con.execute("SELECT run_id, status, metrics, artifact_path FROM runs ORDER BY run_id").fetchall()
    con.close()
    return out


def test_wrong_units_are_detected_and_named(trained, star):
    ds, _ = trained
    for factor, unit in ((10.0, "nanometres (nm): multiply by 10"), (1e4, "micron (µm): multiply by 10^4")):
        with pytest.raises(P.PredictError) as ei:
            P.predict(P.read_bytes(csv_bytes(star.wave / factor, star.flux, star.error), "u.csv"), ds)
        assert unit in str(ei.value) and "7100-8850 Å" in str(ei.value)


# --------------------------------------------------------------------------- resampling
def test_resampling_conserves_flux():
    rng = np.random.default_rng(1)
    dst = np.exp(np.linspace(np.log(7100), np.log(8850), 4096))
    # an irregular source grid (jittered), finer than the model grid, with a smooth spectrum and a line
    src = np.linspace(7080, 8870, 9000)
    src = src + rng.uniform(-0.3, 0.3, src.size) * (src[1] - src[0])
    f = 1.0 + 0.1 * np.sin(src / 50) - 0.6 * np.exp(-0.5 * ((src - 8542) / 1.5) ** 2)
    out, _, covered = P.resample(src, f, dst)
    assert covered.all()
    edges = P.pixel_edges(dst)
    lo, hi = P.source_bins(src, min_gap=2 * np.median(np.diff(edges)))
    for k0, k1 in ((100, 900), (2000, 3999), (3300, 3400)):
        a, b = edges[k0], edges[k1 + 1]
        before = np.sum(f * np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0, None))
        after = np.sum(out[k0:k1 + 1] * np.diff(edges)[k0:k1 + 1])
        assert after == pytest.approx(before, rel=2e-5)
    # sub-pixels that (to ~1e-6 of a pixel on this log grid) tile the model pixels: each pixel gets their sum
    sub = np.concatenate([edges[:-1, None] + np.diff(edges)[:, None] * np.array([1, 3, 5]) / 6]).ravel()
    fs = 1.0 + 0.3 * rng.standard_normal(sub.size)
    out, _, _ = P.resample(sub, fs, dst)
    widths = np.diff(P.pixel_edges(sub))
    np.testing.assert_allclose(out[500:1500] * np.diff(edges)[500:1500],
                               (fs * widths)[1500:4500].reshape(-1, 3).sum(1), rtol=2e-5)
    # an upload on the model grid comes back unchanged, and a constant stays constant
    same, _, _ = P.resample(dst, f[:4096], dst)
    np.testing.assert_array_equal(same, f[:4096])
    const, _, _ = P.resample(src, np.full(src.size, 2.5), dst)
    np.testing.assert_allclose(const, 2.5, rtol=1e-9)


def test_a_different_sampling_gives_the_same_log_g(trained):
    """The issue's check: test spectra at another sampling (a linear grid 1.3x finer, each pixel the mean of
    the star's spectrum over it) give the same log g within 0.02 dex with the noise-0.1 models."""
    ds, runs = trained
    rows = ds.split_rows("test")[:8]
    clean, err = ds.read(rows)
    edges = P.pixel_edges(ds.wave)
    new_edges = np.linspace(edges[0] + 0.3, edges[-1] - 0.3, int(ds.n_pix * 1.3) + 1)
    new_wave = 0.5 * (new_edges[1:] + new_edges[:-1])
    rid = runs[("ridge", 0.1)].run_id
    worst = 0.0
    for f, e in zip(clean.astype(np.float64), 0.1 * err.astype(np.float64)):
        cum = np.concatenate([[0.0], np.cumsum(f * np.diff(edges))])
        f_new = np.diff(CubicSpline(edges, cum)(new_edges)) / np.diff(new_edges)   # pixel means
        e_new = np.interp(new_wave, ds.wave, e) * np.sqrt(np.diff(edges).mean() / np.diff(new_edges))
        native = P.predict(P.Spectrum(ds.wave, f, e), ds, noise=0.1, normalise="as-is", mc=0)
        other = P.predict(P.Spectrum(new_wave, f_new, e_new), ds, noise=0.1, normalise="as-is", mc=0)
        assert other["coverage"]["fraction"] > 0.999
        worst = max(worst, abs(ridge_value(other, rid) - ridge_value(native, rid)))
    assert worst < 0.02


# --------------------------------------------------------------------------- normalisation, S/N, OOD
def test_flux_in_arbitrary_units_is_normalised(trained, star):
    ds, _ = trained
    r = P.predict(P.Spectrum(star.wave, star.flux * 3e-17, star.error * 3e-17, name="scaled"), ds, noise=0.1)
    rms = r["normalisation"]["level_rms"]
    assert r["normalisation"]["fitted"]
    assert r["normalisation"]["scale"] / 3e-17 == pytest.approx(1.0, abs=max(5 * rms, 1e-3))
    assert "continuum level" in r["logg"][0]["uncertainty_kind"] or "continuum level" in r["logg"][1]["uncertainty_kind"]
    # already normalised: kept as it is (auto)
    r = P.predict(star, ds, noise=0.1)
    assert r["normalisation"]["scale"] == 1.0 and not r["normalisation"]["fitted"]


def test_snr_without_an_error_column_and_noise_level_choice(trained):
    ds, _ = trained
    hi = P.example(ds, 5, 0.1)
    lo = P.example(ds, 5, 1.0)
    # no error column: DER_SNR (good where noise dominates the pixel-to-pixel scatter, as at noise 1.0)
    r = P.predict(P.Spectrum(lo.wave, lo.flux, None, name="no error"), ds)
    assert "DER_SNR" in r["snr"]["how"]
    assert r["snr"]["value"] == pytest.approx(float(np.median(lo.flux / lo.error)), rel=0.35)
    r_hi = P.predict(hi, ds)
    r_lo = P.predict(lo, ds)
    assert r_lo["snr"]["value"] < r_hi["snr"]["value"]
    # auto picks the level whose training S/N is nearest: a noise-1.0 spectrum at low S/N gets 1.0
    if r_lo["snr"]["value"] < 15:
        assert r_lo["noise_level"]["value"] == 1.0
    assert P.predict(lo, ds, noise=0.1)["noise_level"]["value"] == 0.1


def test_out_of_distribution_partial_coverage_and_in_distribution(trained, star):
    ds, _ = trained
    ok = P.predict(star, ds)
    assert ok["ood"]["in_distribution"] and ok["ood"]["verdict"].startswith("typical")
    # a featureless ramp is unlike any training spectrum
    ramp = P.Spectrum(star.wave, np.linspace(0.5, 1.5, star.wave.size), star.error, name="ramp")
    r = P.predict(ramp, ds)
    assert not r["ood"]["in_distribution"]
    assert any("unlike the training spectra" in f or "features the training spectra do not have" in f
               for f in r["ood"]["flags"])
    # only the blue half: accepted, the missing part stated (with the Ca II triplet) and filled
    half = star.wave < 8000
    r = P.predict(P.Spectrum(star.wave[half], star.flux[half], star.error[half], name="blue half"), ds)
    cov = r["coverage"]
    assert 0.5 < cov["fraction"] < 0.6 and cov["missing_ranges_A"][0][0] > 7990
    assert "missing" in cov["statement"] and "Ca II triplet" in cov["statement"]
    assert any("not covered" in f for f in r["ood"]["flags"])
    assert np.isfinite(r["_grid"]["flux"]).all()


def test_models_side_by_side_with_uncertainty_kinds_and_other_labels(trained, star):
    ds, runs = trained
    r = P.predict(star, ds, noise=0.1, research=True)
    by = {x["name"]: x for x in r["logg"]}
    assert set(by) == {"ridge", "lightgbm", "cannon"}
    assert by["lightgbm"]["role"] == "research" and by["ridge"]["role"] == "predictor"
    assert by["ridge"]["uncertainty_kind"].startswith("input-noise MC spread")
    assert by["cannon"]["uncertainty_kind"].startswith("formal χ² 1σ")
    assert all(x["uncertainty"] > 0 and x["test_rmse"] > 0 for x in r["logg"])
    # the recommendation: the predictor with the lowest validation RMSE at this spectrum's S/N, never a research run
    preds = [x for x in r["logg"] if x["role"] == "predictor"]
    best = min(preds, key=lambda x: x["val_rmse_at_snr"])
    members = r["recommended"]["members"]
    assert members[0]["model"] == best["model"] and by["lightgbm"]["model"] not in {m["model"] for m in members}
    assert sum(m["weight"] for m in members) == pytest.approx(1.0)
    assert r["recommended"]["value"] == pytest.approx(sum(m["weight"] * m["value"] for m in members))
    assert r["recommended"]["uncertainty"] > 0
    lo, hi = best["snr_bin"]
    assert best["test_stars_at_snr"] > 0 and (lo <= r["snr"]["value"] <= hi or best["snr_bin"][0] == min(
        x["snr_bin"][0] for x in preds))
    assert {x["target"] for x in r["other_labels"]} == {"teff", "mh"}
    assert abs(r["other_best"]["teff"]["value"] - star.truth["teff"]) < 800
    json.loads(P.to_json(r))


def test_example_recovers_the_true_log_g_with_ridge(trained):
    """The example path gives exactly the Ridge predictions the run stored for its test split, and those
    are near the truth (within three times the run's test RMSE)."""
    ds, runs = trained
    run = runs[("ridge", 0.1)]
    stored = run.predictions()["y_pred"]
    rmse = run.metrics["rmse"]
    for k in range(10):
        ex = P.example(ds, k, 0.1)
        r = P.predict(ex, ds, noise=0.1, mc=0)
        v = ridge_value(r, run.run_id)
        assert v == pytest.approx(stored[k], abs=1e-6)
        assert abs(v - ex.truth["logg"]) < 3 * rmse
        assert r["truth"]["logg"] == ex.truth["logg"]


# --------------------------------------------------------------------------- CLI
def test_cli_text_json_batch_and_exit_codes(trained, star, tmp_path, capsys):
    from core import cli
    csv = tmp_path / "star.csv"
    csv.write_bytes(csv_bytes(star.wave, star.flux, star.error))
    assert cli.main(["predict", str(csv), "--dataset", DS, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["recommended"]["value"] > 0 and out["dataset"] == DS and "_grid" not in out
    assert cli.main(["predict", str(csv), "--dataset", DS, "--noise", "0.1"]) == 0
    text = capsys.readouterr().out
    assert "recommended: log g =" in text and "out-of-distribution check:" in text
    assert cli.main(["predict", str(csv), "--dataset", DS, "--noise", "0.3"]) == 2
    assert "no models trained at noise level 0.3" in capsys.readouterr().err
    v = trained[0].view("test", 0.1, "flux+error", limit=12)
    h5 = tmp_path / "many.h5"
    h5.write_bytes(h5_bytes(wave=trained[0].wave, flux=v.x[:, 0], error=v.x[:, 1]))
    out_csv = tmp_path / "out.csv"
    assert cli.main(["predict", str(h5), "--dataset", DS, "--out", str(out_csv)]) == 0
    assert len(out_csv.read_text().splitlines()) == 13
    # a real process: exit status 2 and one line on junk
    junk = tmp_path / "junk.npy"
    junk.write_bytes(pickle.dumps([1, 2, 3]))
    p = subprocess.run([sys.executable, "-m", "core", "predict", str(junk), "--dataset", DS], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: junk.npy") and len(p.stderr.strip().splitlines()) == 1
    assert p.stdout == ""


# --------------------------------------------------------------------------- the page
def test_page_example_button_shows_predictions(trained):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "pages" / "predict.py"), default_timeout=120)
    at.session_state["dataset"] = DS
    at.run()
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["Predict"]
    assert any("Use an example" in i.value for i in at.info)
    at.button(key="predict_example_btn").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert {"Ridge", "Cannon (quadratic)"} <= set(table["model"])
    assert "lightgbm(rounds=30)" not in set(table["model"])          # a research run: hidden by default
    assert any(str(v).startswith("recommended") for v in table[""])
    metrics = {m.label: m.value for m in at.metric}
    assert "recommended log g [dex]" in metrics and "true log g [dex]" in metrics
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert specs and all(s.get("title") for s in specs)
    titles = json.dumps(specs)
    assert "wavelength [\\u00c5]" in titles and "normalised flux" in titles
    # another test star at the other noise level: the page follows
    at.selectbox(key="predict_example_level").set_value(1.0).run()
    at.button(key="predict_example_btn").click().run()
    assert not at.exception and not at.error
    assert "noise level 1.0" in at.subheader[0].value


def test_page_uploads_fits_junk_and_hdf5(trained, star):
    from streamlit.testing.v1 import AppTest
    ds, _ = trained
    at = AppTest.from_file(str(ROOT / "pages" / "predict.py"), default_timeout=120)
    at.session_state["dataset"] = DS
    at.run()
    w, f, e = star.wave, star.flux, star.error
    step = float(np.log10(w[-1] / w[0]) / (w.size - 1))
    fits = fits_image_bytes(f * 2e-17, {"CRVAL1": np.log10(w[0]), "CDELT1": step, "DC-FLAG": 1}, err=e * 2e-17)
    at.file_uploader(key="predict_upload").set_value(("star.fits", fits, "application/fits")).run()
    assert not at.exception and not at.error, [x.value for x in at.error]
    assert at.subheader[0].value == "star.fits"
    assert "FITS 1-D image" in at.caption[1].value
    assert len(at.dataframe[0].value) == 2                       # the two predictors; the research LightGBM hidden
    at.toggle(key="predict_research").set_value(True).run()
    assert len(at.dataframe[0].value) == 3 and not at.exception
    at.toggle(key="predict_research").set_value(False).run()
    at.file_uploader(key="predict_upload").set_value(("junk.fits", b"\x00\x01junk" * 300, "application/fits")).run()
    assert not at.exception
    assert len(at.error) == 1 and one_line(at.error[0].value) and "junk.fits" in at.error[0].value
    v = ds.view("test", 0.1, "flux+error", limit=20)
    h5 = h5_bytes(wave=ds.wave, flux=v.x[:, 0], error=v.x[:, 1],
                  labels={"teff": v.y[:, 0], "logg": v.y[:, 1], "mh": v.y[:, 2]})
    at.file_uploader(key="predict_upload").set_value(("many.h5", h5, "application/x-hdf5")).run()
    assert not at.exception and not at.error
    assert len(at.dataframe[0].value) == 20
    assert at.get("download_button")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["spectra"] == "20" and "RMSE vs the file's log g [dex]" in metrics


LGB_SCRIPT = """
import sys, numpy as np
if sys.argv[1] == "sklearn-first":
    import sklearn  # noqa: F401
from models import gbdt
import core.predict  # noqa: F401
lgb = gbdt.lightgbm()
print("sklearn-loaded", "sklearn" in sys.modules)
rng = np.random.default_rng(0)
x, y = rng.normal(size=(300, 8)), rng.normal(size=300)
b = lgb.train({"objective": "regression", "verbosity": -1, "seed": 0, "deterministic": True, "num_threads": 1},
              lgb.Dataset(x, y), num_boost_round=20)
print("pred", " ".join(f"{v:.12g}" for v in b.predict(x[:5])))
from sklearn.feature_selection import f_regression  # noqa: F401  (imports as usual afterwards)
print("sklearn-after", "sklearn" in sys.modules)
"""


def test_lightgbm_loads_without_scikit_learn_and_predicts_the_same():
    """models.gbdt.lightgbm: a cold predict process (models and core.predict imported) loads lightgbm without
    scikit-learn (1.2 s of a cold CLI call), trains and predicts exactly as with it, and scikit-learn still
    imports afterwards."""
    import subprocess
    import sys
    out = {}
    for mode in ("cold", "sklearn-first"):
        r = subprocess.run([sys.executable, "-c", LGB_SCRIPT, mode], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-800:]
        out[mode] = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert out["cold"]["sklearn-loaded"] == "False" and out["sklearn-first"]["sklearn-loaded"] == "True"
    assert out["cold"]["pred"] == out["sklearn-first"]["pred"]
    assert out["cold"]["sklearn-after"] == "True"


def test_a_batch_on_another_grid_gives_the_same_rows_in_any_block_size(trained):
    """A batch builds its resampler once and prepares every block with it: blocks of 7 spectra and one block
    of all of them give the same table for an upload on a finer grid than the models' (resampled)."""
    ds, _ = trained
    v = ds.view("test", 0.1, "flux+error")
    fine = np.linspace(ds.wave[0], ds.wave[-1], 2 * ds.n_pix - 1)
    flux = np.stack([np.interp(fine, ds.wave, f) for f in v.x[:40, 0]])
    err = np.stack([np.interp(fine, ds.wave, e) for e in v.x[:40, 1]]) * np.sqrt(2.0)
    batch = P.read_bytes(h5_bytes(wave=fine, flux=flux, error=err), "fine.h5")
    small, _ = P.predict_batch(batch, ds, noise=0.1, chunk=7)
    whole, _ = P.predict_batch(batch, ds, noise=0.1, chunk=1000)
    assert len(small) == 40 and small["logg"].notna().all()
    np.testing.assert_allclose(small["logg"], whole["logg"], rtol=1e-9)
    np.testing.assert_allclose(small["snr"], whole["snr"], rtol=1e-12)
    assert (small["ood"] == whole["ood"]).all()
