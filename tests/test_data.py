"""Data sets (core/data/): deterministic views, noise statistics, splits, the grid's label
independence, chunked reads, and the HDF5 import with its one-line error messages."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from core import data

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    art = tmp_path_factory.mktemp("art")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOGG_ARTIFACTS", str(art))
        path = data.build(name="t-data", n=300, seed=11, device="cpu")
        yield data.Dataset(path)


# --------------------------------------------------------------------------- views
def test_view_is_deterministic_and_depends_on_noise_level_and_seed(ds):
    a = ds.view("train", 1.0, "flux", seed=0)
    b = data.Dataset(ds.path).view("train", 1.0, "flux", seed=0)       # a fresh reader, same arrays
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and np.array_equal(a.index, b.index)
    c = ds.view("train", 0.1, "flux", seed=0)
    d = ds.view("train", 1.0, "flux", seed=1)
    assert not np.allclose(a.x, c.x) and not np.allclose(a.x, d.x)
    clean = ds.view("train", 1.0, "flux_clean").x
    assert np.array_equal(clean, ds.view("train", 0.1, "flux_clean", seed=5).x)
    assert a.x.shape == (ds.splits["train"].size, 1, ds.n_pix) and a.x.dtype == np.float32


@pytest.mark.parametrize("level", [0.1, 1.0])
def test_noise_is_gaussian_with_the_error_vector_as_sigma(ds, level):
    noisy = ds.view("test", level, "flux", seed=3).x[:, 0].astype(np.float64)
    clean = ds.view("test", level, "flux_clean").x[:, 0].astype(np.float64)
    err = ds.view("test", level, "error", seed=3).x[:, 0].astype(np.float64)   # = level * clean error
    z = (noisy - clean) / err
    assert z.size > 100_000
    assert abs(z.mean()) < 0.01
    assert z.std() == pytest.approx(1.0, abs=0.01)
    # pixels are independent and Gaussian: the 4-sigma tail holds about 6e-5 of them
    assert np.mean(np.abs(z) > 4) < 3e-4
    assert abs(np.corrcoef(z[:, :-1].ravel(), z[:, 1:].ravel())[0, 1]) < 0.01


def test_pipeline_error_is_estimated_from_the_noisy_flux(ds):
    v = ds.view("val", 1.0, "error_pipeline")
    pipe = v.x[:, -1]
    clean = ds.view("val", 1.0, "error").x[:, 0]
    assert not np.array_equal(pipe, clean)
    assert np.median(np.abs(pipe / clean - 1.0)) < 0.2


def test_splits_are_disjoint_and_cover_every_spectrum(ds):
    parts = [ds.splits[s] for s in data.SPLITS]
    allidx = np.concatenate(parts)
    assert np.array_equal(np.sort(allidx), np.arange(ds.n))
    for i, p in enumerate(parts):
        for q in parts[i + 1:]:
            assert np.intersect1d(p, q).size == 0
    assert parts[0].size == pytest.approx(0.7 * ds.n, abs=2)


def test_labels_are_independent_and_fill_the_box(ds):
    c = np.corrcoef(ds.labels.T)
    assert np.max(np.abs(c[np.triu_indices(3, 1)])) < 0.05
    for i, k in enumerate(data.LABELS):
        lo, hi = data.LABEL_BOX[k]
        assert ds.labels[:, i].min() >= lo and ds.labels[:, i].max() <= hi
        assert ds.labels[:, i].min() < lo + 0.02 * (hi - lo) and ds.labels[:, i].max() > hi - 0.02 * (hi - lo)


@pytest.mark.parametrize("inputs", ["flux", "flux+error", "error_pipeline", "snr", "flux+error_constant",
                                    "flux+error_shuffled", "flux+error_swapped", "error_shuffled"])
def test_iter_view_chunks_equal_the_view(ds, inputs):
    whole = ds.view("train", 1.0, inputs, seed=2)
    parts = list(ds.iter_view("train", 1.0, inputs, seed=2, chunk=37))
    assert len(parts) == -(-whole.x.shape[0] // 37)
    assert np.array_equal(np.concatenate([p.x for p in parts]), whole.x)
    assert np.array_equal(np.concatenate([p.y for p in parts]), whole.y)
    assert np.array_equal(np.concatenate([p.index for p in parts]), whole.index)


def test_foreign_error_channels_come_from_other_stars(ds):
    rows = ds.splits["train"]
    own = ds.view("train", 1.0, "error").x[:, 0]
    shuf = ds.view("train", 1.0, "flux+error_shuffled").x[:, 1]
    swap = ds.view("train", 1.0, "flux+error_swapped").x[:, 1]
    assert not np.any(np.all(shuf == own, axis=1))
    donors = ds._donors(0, True, 0)[rows]
    assert np.all(np.isin(donors, rows)) and np.all(donors != rows)
    assert np.mean(np.abs(ds.labels[donors, 1] - ds.labels[rows, 1]) >= 1.0) > 0.95
    assert swap.shape == own.shape


# --------------------------------------------------------------------------- imports
N_IMP, P_IMP = 30, 64


def _write(path: Path, *, wave=None, flux=None, error=None, labels=None, skip=(), ivar=False, split=None):
    rng = np.random.default_rng(0)
    wave = np.linspace(8000.0, 8100.0, P_IMP) if wave is None else wave
    flux = rng.uniform(0.5, 1.5, (N_IMP, P_IMP)) if flux is None else flux
    error = np.full(flux.shape, 0.02) if error is None else error
    labels = {"teff": rng.uniform(3500, 7000, N_IMP), "logg": rng.uniform(1, 5, N_IMP),
              "mh": rng.uniform(-2.5, 0.5, N_IMP)} if labels is None else labels
    with h5py.File(path, "w") as f:
        if "wave" not in skip:
            f["wave"] = wave
        if "flux" not in skip:
            f["flux"] = flux
        if "error" not in skip:
            f["ivar" if ivar else "error"] = 1.0 / error ** 2 if ivar else error
        g = f.create_group("labels")
        for k, v in labels.items():
            if f"labels/{k}" not in skip:
                g[k] = v
        if split is not None:
            s = f.create_group("split")
            for k, v in split.items():
                s[k] = v
        f.attrs["description"] = "a test grid"
    return path


@pytest.fixture()
def art(tmp_path, monkeypatch):
    a = tmp_path / "artifacts"
    monkeypatch.setenv("LOGG_ARTIFACTS", str(a))
    return a


def _written(art: Path) -> list[str]:
    d = art / "data"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_valid_import_round_trips(tmp_path, art):
    rng = np.random.default_rng(0)
    src = _write(tmp_path / "grid.h5")
    path = data.import_hdf5(src)
    assert path == art / "data" / "grid.h5" and _written(art) == ["grid.h5"]
    ds = data.Dataset("grid")
    with h5py.File(src, "r") as f:
        flux, err, wave = f["flux"][()], f["error"][()], f["wave"][()]
        labels = np.stack([f["labels"][k][()] for k in data.LABELS], axis=1)
    scale = flux.mean(axis=1, keepdims=True)
    assert np.array_equal(ds.wave, wave) and np.array_equal(ds.labels, labels)
    fl, er = ds.read(np.arange(N_IMP))
    assert np.allclose(fl, flux / scale, rtol=1e-6) and np.allclose(er, err / scale, rtol=1e-6)
    assert np.array_equal(np.sort(np.concatenate(list(ds.splits.values()))), np.arange(N_IMP))
    assert ds.attrs["source"] == "import:grid.h5" and len(ds.fingerprint) == 16
    v = ds.view("test", 1.0, "flux+error")
    assert v.x.shape == (ds.splits["test"].size, 2, P_IMP)
    # an inverse-variance file with its own splits imports too, and keeps them
    split = {"train": np.arange(0, 20), "val": np.arange(20, 25), "test": np.arange(25, 30)}
    err = rng.uniform(0.01, 0.05, (N_IMP, P_IMP))
    src2 = _write(tmp_path / "grid_ivar.h5", error=err, ivar=True, split=split)
    ds2 = data.Dataset(data.import_hdf5(src2, name="grid2"))
    assert all(np.array_equal(ds2.splits[k], v) for k, v in split.items())
    with h5py.File(src2, "r") as f:
        scale2 = f["flux"][()].mean(axis=1, keepdims=True)
    assert np.allclose(ds2.read(np.arange(N_IMP))[1], err / scale2, rtol=1e-5)
    # importing under a taken name is refused and leaves the existing file alone
    before = (art / "data" / "grid.h5").stat().st_mtime_ns
    with pytest.raises(data.DataError, match="already exists"):
        data.import_hdf5(src)
    assert (art / "data" / "grid.h5").stat().st_mtime_ns == before


def _bad_cases():
    rng = np.random.default_rng(1)
    w = np.linspace(8000.0, 8100.0, P_IMP)
    nan_lab = {"teff": rng.uniform(3500, 7000, N_IMP), "logg": rng.uniform(1, 5, N_IMP), "mh": np.zeros(N_IMP)}
    nan_lab["logg"][4] = np.nan
    short_lab = {"teff": np.full(N_IMP, 5000.0), "logg": np.full(N_IMP - 1, 4.0), "mh": np.zeros(N_IMP)}
    nan_flux = rng.uniform(0.5, 1.5, (N_IMP, P_IMP))
    nan_flux[7, 3] = np.nan
    dup = w.copy()
    dup[10] = dup[9]
    labs = lambda **kw: {**{"teff": rng.uniform(3500, 7000, N_IMP), "logg": rng.uniform(1, 5, N_IMP),  # noqa: E731
                            "mh": np.zeros(N_IMP)}, **kw}
    neg_teff, big_logg = labs(), labs()
    neg_teff["teff"][3] = -5.0
    big_logg["logg"][8] = 42.0
    repeats = rng.uniform(0.5, 1.5, (N_IMP, P_IMP))
    repeats[[5, 17, 22]] = repeats[2]
    no_test = {"train": np.arange(0, 25), "val": np.arange(25, 30), "test": np.arange(0, 0)}
    return {
        "negative teff": (dict(labels=neg_teff), "/labels/teff = -5 at row 3 is not a star's value"),
        "log g 42": (dict(labels=big_logg), "/labels/logg = 42 at row 8 is not a star's value"),
        "repeated spectra": (dict(flux=repeats), "3 spectra repeat another one exactly (first: rows 2 and 5)"),
        "empty test split": (dict(split=no_test), "/split/test holds 0 spectra"),
        "flux shape": (dict(flux=np.ones((N_IMP, P_IMP + 1))), "/flux has shape"),
        "error shape": (dict(error=np.full((N_IMP, P_IMP - 1), 0.02)), "/error has shape"),
        "label length": (dict(labels=short_lab), "/labels/logg has shape"),
        "nan labels": (dict(labels=nan_lab), "/labels/logg has 1 NaN"),
        "nan flux": (dict(flux=nan_flux), "/flux has NaN/inf values (first in spectrum 7)"),
        "decreasing wave": (dict(wave=w[::-1].copy()), "not strictly increasing"),
        "duplicated wave": (dict(wave=dup), "duplicated wavelength"),
        "missing flux": (dict(skip=("flux",)), "missing dataset /flux"),
        "missing logg": (dict(skip=("labels/logg",)), "/labels lacks logg"),
        "missing error": (dict(skip=("error",)), "missing dataset /error"),
        "zero errors": (dict(error=np.zeros((N_IMP, P_IMP))), "zero or negative"),
        "nm": (dict(wave=w / 10.0), "looks like nm"),
        "micron": (dict(wave=w / 1e4), "looks like micron"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_import_names_the_problem_and_writes_nothing(tmp_path, art, case):
    kwargs, needle = _bad_cases()[case]
    src = _write(tmp_path / "bad.h5", **kwargs)
    with pytest.raises(data.DataError) as e:
        data.import_hdf5(src)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg, msg
    assert msg.startswith("bad.h5: ")
    assert _written(art) == []


def test_non_hdf5_and_missing_files_are_refused(tmp_path, art):
    txt = tmp_path / "grid.h5"
    txt.write_text("teff,logg,mh\n5000,4.0,0.0\n")
    with pytest.raises(data.DataError, match="not an HDF5 file"):
        data.import_hdf5(txt)
    with pytest.raises(data.DataError, match="no such file"):
        data.import_hdf5(tmp_path / "nothing.h5")
    with pytest.raises(data.DataError, match="at least 20"):
        few = {k: np.full(5, v) for k, v in (("teff", 5000.0), ("logg", 4.0), ("mh", 0.0))}
        data.import_hdf5(_write(tmp_path / "few.h5", flux=np.ones((5, P_IMP)), labels=few))
    assert _written(art) == []


@pytest.mark.parametrize("content", ["not hdf5", "nan labels"])
def test_cli_import_of_a_bad_file_exits_2_with_one_line(tmp_path, content):
    art = tmp_path / "artifacts"
    if content == "not hdf5":
        bad = tmp_path / "bad.h5"
        bad.write_bytes(b"\x00\x01 this is not HDF5")
    else:
        bad = _write(tmp_path / "bad.h5", **_bad_cases()["nan labels"][0])
    env = dict(os.environ, LOGG_ARTIFACTS=str(art))
    p = subprocess.run([sys.executable, "-m", "core", "data", "import", str(bad)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bad.h5: "), p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    assert _written(art) == []


def test_data_build_streams_its_spectra():
    """#19: the build holds a batch of spectra, not the data set. With the simulator replaced by a 16-pixel
    stand-in (benchmarks/bench_stream.py), ten times the spectra add only the O(n) label arrays to the peak;
    holding the spectra would add 180 MB (100,000 x 256 pixels x float32 flux and error)."""
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_stream import measure
    small, big = measure(10_000, 256), measure(100_000, 256)
    assert big["file_mb"] > 8 * small["file_mb"]                      # the spectra were written
    assert big["rss_mb"] - small["rss_mb"] < 60 and big["rss_mb"] < 1024, (small, big)
