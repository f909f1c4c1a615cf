"""Hostile uploads (issue #20): a file must never crash the process, read the server's files, or make Predict
allocate more than the limits of core/predict/settings.py admit. Every file is made here; each is read through
`read_bytes` / `read_file`, the worst also through `python -m core predict` in a subprocess (exit 2, one line
`error: ...`, no traceback, peak RSS measured), the virtual dataset also through the Predict page. The largest
files the limits admit run the whole pipeline under 1 GB peak RSS.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
import zlib

import h5py
import numpy as np
import pytest
from conftest import ROOT

from core import predict as P
from core.predict import readers
from core.predict import settings as S
from core.predict.readers import hdf5 as H

DS = "pred-test"          # the data set of tests/test_predict.py (same specs: cached when both run)
GB = 1024.0               # MB


@pytest.fixture(scope="module")
def trained(artifacts_dir):
    from core import data
    from core.engine import train
    if DS not in data.list_datasets():
        data.build(name=DS, n=400)
    for nl in (0.1, 1.0):
        train.run({"dataset": DS, "profile": "quick", "seed": 0, "model": "ridge", "params": {}, "noise_level": nl},
                  log=lambda m: None)
    return data.Dataset(DS)


# --------------------------------------------------------------------------- helpers
def cli(path, artifacts=None, *extra, timeout=600) -> tuple[int, str, str, float]:
    """`python -m core predict PATH` in a child of a fresh process: (exit code, stdout, stderr, its peak RSS
    in MB from ru_maxrss of RUSAGE_CHILDREN, which sees only that child)."""
    code = ("import json, resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "print(json.dumps([p.returncode, p.stdout[-3000:], p.stderr[-3000:], "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))")
    env = dict(os.environ)
    if artifacts is not None:
        env["LOGG_ARTIFACTS"] = str(artifacts)
    r = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "core", "predict", str(path), *extra],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    rc, out, err, mb = json.loads(r.stdout)
    return rc, out, err, mb


def refused_by_cli(path, tmp_path, *words) -> float:
    """Exit 2, one line `error: NAME: ...` naming the problem, no traceback, nothing on stdout; the peak RSS."""
    empty = tmp_path / "no_artifacts"
    empty.mkdir(exist_ok=True)
    rc, out, err, mb = cli(path, empty)
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path.name.removesuffix('.gz')}"), err
    assert "Traceback" not in err and "Warning" not in err and out == ""
    for w in words:
        assert w in lines[0], (w, lines[0])
    return mb


def refused(data: bytes, name: str, *words) -> str:
    with pytest.raises(P.PredictError) as e:
        readers.read_bytes(data, name)
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg and msg.startswith(name.removesuffix(".gz")), msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            if callable(v):
                v(f, k)
            else:
                f[k] = v
    return path


W = np.linspace(7100.0, 8850.0, 2000)
FLUX = 1.0 - 0.3 * np.exp(-0.5 * ((W - 8542.0) / 2.0) ** 2)


# --------------------------------------------------------------------------- HDF5: storage and links
def _virtual_file(tmp_path, where="flux"):
    src = h5(tmp_path / "src.h5", flux=np.ones((3, W.size)))
    layout = h5py.VirtualLayout(shape=(3, W.size), dtype="f8")
    layout[:] = h5py.VirtualSource(str(src), "flux", shape=(3, W.size))

    def vds(f, k):
        if where == "labels":
            f["flux"] = np.ones((3, W.size))
            g = f.create_group("labels")
            g["teff"], g["mh"] = np.ones(3), np.ones(3)
            lay = h5py.VirtualLayout(shape=(3,), dtype="f8")
            lay[:] = h5py.VirtualSource(str(src), "flux", shape=(3, W.size))[:, 0]
            g.create_virtual_dataset("logg", lay)
        else:
            f.create_virtual_dataset(where, layout, fillvalue=0)
            if where != "flux":
                f["flux"] = np.ones((3, W.size))
    return h5(tmp_path / "virtual.h5", wave=W, flux=vds)


@pytest.mark.parametrize("where", ["flux", "error", "labels"])
def test_a_virtual_dataset_is_refused_without_a_crash(tmp_path, where):
    """Reading a virtual dataset of an in-memory file crashed h5py (SIGSEGV): inspected, never read. The check
    runs in a subprocess, so that a crash would show as its exit code."""
    path = _virtual_file(tmp_path, where)
    code = ("import sys\nfrom core.predict.readers import read_bytes\nfrom core.predict.spectra import PredictError\n"
            "try:\n    read_bytes(open(sys.argv[1], 'rb').read(), 'virtual.h5')\n"
            "except PredictError as e:\n    print(e)\n    sys.exit(0)\nsys.exit(3)")
    r = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr[-500:])       # -11 was the segfault
    assert "virtual dataset" in r.stdout and ("/flux" if where == "flux" else f"/{where}") in r.stdout, r.stdout
    if where == "flux":
        refused_by_cli(path, tmp_path, "/flux is a virtual dataset", "src.h5")


def test_the_predict_page_survives_a_virtual_dataset(trained, tmp_path):
    """The page in AppTest, in a subprocess (a segfault would take the test runner with it): one error line."""
    path = _virtual_file(tmp_path)
    code = ("import json, sys\nfrom streamlit.testing.v1 import AppTest\n"
            "at = AppTest.from_file('pages/predict.py', default_timeout=120)\n"
            f"at.session_state['dataset'] = {DS!r}\nat.run()\n"
            "data = open(sys.argv[1], 'rb').read()\n"
            "at.file_uploader(key='predict_upload').set_value(('virtual.h5', data, 'application/x-hdf5')).run()\n"
            "print(json.dumps({'exception': [str(e.value) for e in at.exception], "
            "'error': [e.value for e in at.error]}))")
    r = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-800:])
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert not got["exception"], got
    assert len(got["error"]) == 1 and "virtual dataset" in got["error"][0] and "\n" not in got["error"][0], got


def test_external_storage_never_reads_the_servers_files(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET server file\n" * 200)
    path = h5(tmp_path / "external.h5", wave=np.linspace(7100, 8850, 512),
              flux=lambda f, k: f.create_dataset(k, shape=(1, 512), dtype="<f8", external=[(str(secret), 0, 4096)]))
    msg = refused(path.read_bytes(), "external.h5", "/flux has external storage", "secret.txt")
    assert "TOP-SECRET" not in msg
    refused_by_cli(path, tmp_path, "external storage")


def test_soft_and_external_links_are_not_followed(tmp_path):
    other = h5(tmp_path / "other.h5", flux=np.ones((2, W.size)))
    soft = h5(tmp_path / "soft.h5", wave=W, real=np.ones((2, W.size)),
              flux=lambda f, k: f.__setitem__(k, h5py.SoftLink("/real")))
    refused(soft.read_bytes(), "soft.h5", "/flux is a soft link", "/real")
    ext = h5(tmp_path / "ext.h5", wave=W, flux=lambda f, k: f.__setitem__(k, h5py.ExternalLink(str(other), "/flux")))
    refused(ext.read_bytes(), "ext.h5", "/flux is an external link", "other.h5")
    lab = h5(tmp_path / "lab.h5", wave=W, flux=np.ones((2, W.size)),
             labels=lambda f, k: f.__setitem__(k, h5py.ExternalLink(str(other), "/")))
    refused(lab.read_bytes(), "lab.h5", "/labels is an external link")


@pytest.mark.parametrize("kind", ["compound", "string", "reference", "complex", "array"])
def test_datasets_that_are_not_plain_numbers_are_refused(tmp_path, kind):
    def make(f, k):
        n = W.size
        if kind == "compound":
            f[k] = np.zeros((2, n), dtype=[("a", "f8"), ("b", "i4")])
        elif kind == "string":
            f[k] = np.array([["x"] * n] * 2, dtype="S3")
        elif kind == "reference":
            d = f.create_dataset(k, (2, n), dtype=h5py.ref_dtype)
            d[0, 0] = f.ref
        elif kind == "complex":
            f[k] = np.ones((2, n), np.complex128)
        else:
            f.create_dataset(k, (2, n), dtype=np.dtype(("f8", (2,))))
    path = h5(tmp_path / "dtype.h5", wave=W, flux=make)
    refused(path.read_bytes(), "dtype.h5", "/flux has", "dtype; expected plain numbers")


# --------------------------------------------------------------------------- HDF5: size from metadata
def test_a_fill_value_bomb_is_refused_before_allocating(tmp_path):
    """34 KB declaring 200,000 x 4,096 values (6.1 GB as float64): refused from the shape, in a small process."""
    path = h5(tmp_path / "x.h5", wave=np.linspace(7100, 8850, 4096),
              flux=lambda f, k: f.create_dataset(k, (200_000, 4096), "f8", fillvalue=1.0, chunks=(256, 4096),
                                                 compression="gzip"))
    assert path.stat().st_size < 100_000
    refused(path.read_bytes(), "x.h5", "/flux declares 200,000 x 4,096 values (6.1 GB as float64)",
            f"above the {S.MAX_BATCH_VALUES:,}-value limit", "split the file into batches of at most 9,765 spectra")
    mb = refused_by_cli(path, tmp_path, "200,000 x 4,096")
    assert mb < 300, mb
    # one row over the limit is refused too; the error dataset has the same limit
    n = S.MAX_BATCH_VALUES // 4096 + 1
    path = h5(tmp_path / "y.h5", wave=np.linspace(7100, 8850, 4096),
              flux=lambda f, k: f.create_dataset(k, (10, 4096), "f8", fillvalue=1.0),
              error=lambda f, k: f.create_dataset(k, (n, 4096), "f8", fillvalue=1.0))
    refused(path.read_bytes(), "y.h5", f"/error declares {n:,} x 4,096 values")


def test_chunks_larger_than_the_limit_are_refused(tmp_path):
    path = h5(tmp_path / "chunky.h5", wave=W,
              flux=lambda f, k: f.create_dataset(k, (1100, W.size), "f8", chunks=(1100, W.size), fillvalue=1.0))
    refused(path.read_bytes(), "chunky.h5", "chunks of 1,100 x 2,000 values", f"above {S.MAX_H5_CHUNK_MB} MB")


def test_a_large_batch_is_read_in_blocks_with_the_same_answer(trained, tmp_path, monkeypatch):
    """Above BATCH_EAGER_VALUES a batch stays on disk (readers/hdf5.Rows) and is checked and predicted block by
    block: the table is the one of the batch read whole, and a bad value in a late block is still found."""
    ds = trained
    v = ds.view("test", 0.1, "flux+error", limit=40)
    path = h5(tmp_path / "many.h5", wave=ds.wave, flux=v.x[:, 0], error=v.x[:, 1])
    whole = P.read_file(path)
    assert isinstance(whole.flux, np.ndarray)
    df_whole, _ = P.predict_batch(whole, ds, noise=0.1)
    n_pix = ds.wave.size
    monkeypatch.setattr(H, "BATCH_EAGER_VALUES", 0)
    monkeypatch.setattr(H, "BATCH_BLOCK_VALUES", 7 * n_pix)
    monkeypatch.setattr("core.predict.batch.BATCH_BLOCK_VALUES", 7 * n_pix)
    rows = P.read_file(path)
    assert isinstance(rows.flux, H.Rows) and rows.flux.shape == (40, n_pix) and rows.flux.block == 7
    assert any("blocks of 7" in note for note in rows.notes)
    np.testing.assert_array_equal(rows.flux[10:17], whole.flux[10:17])
    df_rows, _ = P.predict_batch(rows, ds, noise=0.1)
    cols = [c for c in df_whole.columns if c.startswith("logg")]
    np.testing.assert_allclose(df_rows[cols].to_numpy(float), df_whole[cols].to_numpy(float), rtol=1e-6)
    bad = v.x[:, 1].copy()
    bad[37, 5] = 0.0
    path = h5(tmp_path / "bad.h5", wave=ds.wave, flux=v.x[:, 0], error=bad)
    refused(path.read_bytes(), "bad.h5", "/error has zero or negative values (first in spectrum 37)")


# --------------------------------------------------------------------------- gzip
def _gzip_stream(n_bytes: int, line: bytes = b"7500.0,1.0,0.1\n", header: bytes = b"wavelength,flux,error\n") -> bytes:
    """gzip of `header` + `line` repeated to n_bytes, compressed piecewise (never held unpacked)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(header)]
    block = line * (2 ** 20 // len(line))
    for _ in range(n_bytes // len(block)):
        out.append(c.compress(block))
    out.append(c.flush())
    return b"".join(out)


def test_a_gzip_bomb_is_refused_while_unpacking(tmp_path):
    bomb = _gzip_stream(100 * 2 ** 20)
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(bomb)
    assert len(bomb) < 2 ** 20
    refused(bomb, "bomb.csv.gz", f"unpacks to more than {S.MAX_UNPACKED_MB} MB (gzip layer 1)")
    mb = refused_by_cli(path, tmp_path, "unpacks to more than")
    assert mb < 300, mb
    # gzip inside gzip: the inner layer is bounded as well
    double = tmp_path / "double.csv.gz"
    double.write_bytes(gzip.compress(bomb))
    refused(double.read_bytes(), "double.csv.gz", "(gzip layer 2)")
    refused_by_cli(double, tmp_path, "gzip layer 2")


def test_nested_gzip_is_unpacked_at_most_two_layers_deep_without_recursion():
    csv = b"wavelength,flux\n" + b"".join(f"{w:.3f},{f:.6f}\n".encode() for w, f in zip(W, FLUX))
    assert isinstance(readers.read_bytes(gzip.compress(gzip.compress(csv)), "s.csv.gz"), P.Spectrum)
    assert isinstance(readers.read_bytes(gzip.compress(csv[:900]) + gzip.compress(csv[900:]), "s.csv.gz"),
                      P.Spectrum)                                        # a multi-member gzip file
    refused(gzip.compress(gzip.compress(gzip.compress(csv))), "s.csv.gz", "more than 2 layers deep")
    deep = b"x"
    for _ in range(3000):                     # was a RecursionError
        deep = gzip.compress(deep, 1)
    refused(deep, "deep.gz", "more than 2 layers deep")
    refused(gzip.compress(csv)[:-40], "cut.csv.gz", "corrupt or truncated gzip")
    refused(b"not gzip at all", "s.csv.gz", "not a gzip file")


# --------------------------------------------------------------------------- NumPy
def _npy_header(shape, descr="<f8") -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": descr, "fortran_order": False, "shape": shape})
    return b.getvalue()


def test_npz_members_are_sized_from_the_zip_directory_and_npy_headers(tmp_path):
    """0.1 MB of .npz unpacking to 80 MB; a header declaring 10^9 values in a few bytes; a truncated array;
    too many members: all refused before an array is allocated."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("wavelength.npy", _npy_header((W.size,)) + W.tobytes())
        with z.open("flux.npy", "w", force_zip64=True) as fp:
            fp.write(_npy_header((10_000_000,)))
            for _ in range(80):
                fp.write(bytes(2 ** 20))
    assert path.stat().st_size < 2 ** 20
    refused(path.read_bytes(), "bomb.npz", "its arrays unpack to 80 MB", f"{S.MAX_UNPACKED_MB} MB limit")
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("wavelength.npy", _npy_header((W.size,)) + W.tobytes())
        z.writestr("flux.npy", _npy_header((1_000_000_000,)) + bytes(64))
    refused(b.getvalue(), "lie.npz", "array 'flux' declares 1,000,000,000 values (7.5 GB as float64)",
            f"{S.MAX_VALUES:,}-value limit")
    refused(_npy_header((1_000_000_000,)) + bytes(64), "lie.npy", "declares 1,000,000,000 values")
    refused(_npy_header((2_000_000, 3)) + bytes(800), "cut.npy", "truncated or corrupt")
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        for i in range(S.MAX_ARCHIVE_MEMBERS + 1):
            z.writestr(f"a{i}.npy", _npy_header((1,)) + bytes(8))
    refused(b.getvalue(), "many.npz", f"a .npz of {S.MAX_ARCHIVE_MEMBERS + 1} arrays")
    refused(_npy_header((10,), "|O") + bytes(80), "obj.npy", "pickled Python objects")


# --------------------------------------------------------------------------- FITS
def _fits(hdus) -> bytes:
    from astropy.io import fits
    b = io.BytesIO()
    fits.HDUList(hdus).writeto(b)
    return b.getvalue()


def test_a_tile_compressed_fits_bomb_is_sized_from_its_header():
    from astropy.io import fits
    img = fits.CompImageHDU(np.zeros((3000, 3000), np.float32))
    img.header.update({"CRVAL1": 7100.0, "CDELT1": 0.5, "CRPIX1": 1})
    data = _fits([fits.PrimaryHDU(), img])
    assert len(data) < 2 ** 20
    refused(data, "tile.fits", "HDU 1", "declares 9,000,000 values", f"{S.MAX_VALUES:,} values")
    hd = fits.Header([("SIMPLE", True), ("BITPIX", -64), ("NAXIS", 2), ("NAXIS1", 100_000), ("NAXIS2", 100_000),
                      ("CRVAL1", 7100.0), ("CDELT1", 0.1)])
    refused(hd.tostring().encode(), "hdr.fits", "HDU 0 declares 10,000,000,000 values")


def test_fits_headers_are_counted_before_astropy_parses_them():
    """60 MB of header cards (gzipped: 1 MB) took astropy 0.9 GB; counted on the bytes first."""
    cards = b"".join(f"C{i:07d} = {i:20d}".ljust(80).encode() for i in range(S.MAX_FITS_CARDS + 10))
    hdr = b"".join(c.ljust(80) for c in (b"SIMPLE  =                    T", b"BITPIX  =                    8",
                                         b"NAXIS   =                    0")) + cards + b"END".ljust(80)
    refused(gzip.compress(hdr + b" " * (-len(hdr) % 2880)), "cards.fits.gz", f"more than {S.MAX_FITS_CARDS:,} FITS "
            f"header cards")


def test_a_spectrum_in_a_later_extension_is_found_and_named():
    """Primary empty, HDU 1 an unrelated table, HDU 2 a small image without a wavelength solution, HDU 3 the
    spectrum (an image with WCS, or a table): found, and the format says which HDU."""
    from astropy.io import fits
    junk = fits.BinTableHDU.from_columns([fits.Column(name="MAG", format="D", array=np.arange(5.0))], name="PHOT")
    small = fits.ImageHDU(np.ones((20, 20), np.float32), name="THUMB")
    spec = fits.ImageHDU(FLUX.astype(np.float32), name="SCI")
    spec.header.update({"CRVAL1": float(W[0]), "CDELT1": float(W[1] - W[0]), "CRPIX1": 1, "CTYPE1": "AWAV"})
    sp = readers.read_bytes(_fits([fits.PrimaryHDU(), junk, small, spec]), "ext3.fits")
    assert "HDU 3 'SCI'" in sp.fmt and sp.medium == "air"
    np.testing.assert_allclose(sp.wave, W, rtol=1e-9)
    np.testing.assert_allclose(sp.flux, FLUX, rtol=1e-6)
    tab = fits.BinTableHDU.from_columns([fits.Column(name="WAVE", format="D", array=W),
                                         fits.Column(name="FLUX", format="D", array=FLUX)], name="SPEC")
    tiny = fits.BinTableHDU.from_columns([fits.Column(name="WAVE", format="D", array=W[:5]),
                                          fits.Column(name="FLUX", format="D", array=FLUX[:5])], name="FILTER")
    sp = readers.read_bytes(_fits([fits.PrimaryHDU(), tiny, small, tab]), "tab3.fits")
    assert "'SPEC'" in sp.fmt and "HDU 3" in sp.fmt and sp.wave.size == W.size
    refused(_fits([fits.PrimaryHDU(), junk, small]), "none.fits", "without a wavelength solution")


@pytest.mark.parametrize("unit,crval", [("Angstrom", 7100.0), ("nm", 710.0), ("m", 7.1e-7)])
def test_a_wave_log_axis_is_read_as_astropy_wcs_reads_it(unit, crval):
    from astropy.io import fits
    from astropy.wcs import WCS
    n = 3000
    h = fits.PrimaryHDU(np.ones(n, np.float32))
    step = np.log(8850.0 / 7100.0) / (n - 1)
    h.header.update({"CTYPE1": "WAVE-LOG", "CUNIT1": unit, "CRVAL1": crval, "CDELT1": crval * step, "CRPIX1": 1})
    sp = readers.read_bytes(_fits([h]), "log.fits")
    ref = WCS(h.header).all_pix2world(np.arange(n), 0)[0] * 1e10          # astropy.wcs: metres
    np.testing.assert_allclose(sp.wave, ref, rtol=1e-9)
    assert sp.wave[0] == pytest.approx(7100.0) and sp.wave[-1] == pytest.approx(8850.0)
    assert sp.medium == "vacuum" and "logarithmic" in sp.fmt


def test_spectral_axes_that_are_not_wavelengths_are_refused():
    from astropy.io import fits
    for ctype, words in (("FREQ", "not a wavelength"), ("WAVE-F2W", "non-linear wavelength axis")):
        h = fits.PrimaryHDU(np.ones(500, np.float32))
        h.header.update({"CTYPE1": ctype, "CRVAL1": 4e14, "CDELT1": 1e10, "CRPIX1": 1})
        refused(_fits([h]), "axis.fits", words)


@pytest.mark.parametrize("col", ["wave_vac", "WAVE_VAC", "vacuum_wavelength", "wavelength_vac", "lambda_vac",
                                 "vac_wave", "wave (vac)", "Wavelength [nm] (vacuum)", "lambda_vacuum"])
def test_vacuum_column_names_mean_vacuum(col):
    w = W / 10 if "nm" in col else W
    csv = f"{col},flux\n".encode() + b"".join(f"{a:.4f},{f:.6f}\n".encode() for a, f in zip(w, FLUX))
    sp = readers.read_bytes(csv, "vac.csv")
    assert sp.medium == "vacuum" and col in sp.medium_how
    assert sp.wave[0] == pytest.approx(7100.0)


# --------------------------------------------------------------------------- text, and any other failure
def test_text_is_sized_before_it_is_split():
    refused(b"wavelength,flux\n" + b"\n" * S.MAX_TEXT_LINES, "lines.csv", f"{S.MAX_TEXT_LINES:,}-line limit")
    refused(b"wavelength,flux\n" + b"1," * 60_000 + b"1\n", "long.csv", "characters long")
    header = ",".join(["wavelength", "flux"] + [f"c{i}" for i in range(S.MAX_TEXT_COLUMNS)])
    row = ",".join(["1"] * (S.MAX_TEXT_COLUMNS + 2))
    refused(f"{header}\n{row}\n".encode(), "wide.csv", f"{S.MAX_TEXT_COLUMNS:,} columns")


@pytest.mark.parametrize("exc", [MemoryError, RecursionError, KeyError])
def test_any_exception_in_a_reader_is_one_line(monkeypatch, exc):
    def boom(data, name):
        raise exc("deep inside\nsecond line")
    monkeypatch.setattr(readers, "_read_text", boom)
    msg = refused(b"wavelength,flux\n1,2\n", "s.csv")
    assert exc.__name__ in msg


def test_bad_files_print_one_line_and_no_warnings(trained, tmp_path):
    """Through the whole pipeline (the trained registry): no RuntimeWarning or traceback on stderr."""
    w = trained.wave
    (tmp_path / "huge.csv").write_text("wavelength,flux,error\n" + "".join(
        f"{a},{1e300 * (1 + 0.01 * np.sin(a))},1e298\n" for a in w))
    with h5py.File(tmp_path / "ivar0.h5", "w") as f:
        f["wave"], f["flux"] = w, np.ones((3, w.size))
        iv = np.ones((3, w.size))
        iv[1, 5] = 0.0
        f["ivar"] = iv
    for name in ("huge.csv", "ivar0.h5"):
        rc, out, err, _ = cli(tmp_path / name, None, "--dataset", DS)
        assert "Warning" not in err and "Traceback" not in err, err
        assert rc == 0 or (rc == 2 and len(err.strip().splitlines()) == 1), (name, rc, err)


# --------------------------------------------------------------------------- the largest files admitted
@pytest.mark.slow
def test_the_largest_admitted_files_predict_under_1_gb(trained, tmp_path):
    """An HDF5 batch at the value limit (MAX_BATCH_VALUES of flux + as many errors, 50 MB at most on disk) and a
    spectrum of MAX_POINTS samples run read + prepare + inference in `python -m core predict` under 1 GB."""
    ds = trained
    n_pix = ds.wave.size
    n = S.MAX_BATCH_VALUES // n_pix
    v = ds.view("test", 0.1, "flux+error", limit=20)
    path = tmp_path / "biggest.h5"
    with h5py.File(path, "w") as f:
        f["wave"] = ds.wave
        fl = f.create_dataset("flux", (n, n_pix), "f4", chunks=(64, n_pix), compression="gzip")
        er = f.create_dataset("error", (n, n_pix), "f4", chunks=(64, n_pix), compression="gzip")
        for i0 in range(0, n, 64):
            k = min(64, n - i0)
            fl[i0:i0 + k] = np.tile(v.x[i0 // 64 % 20, 0], (k, 1))
            er[i0:i0 + k] = np.tile(v.x[i0 // 64 % 20, 1], (k, 1))
    assert path.stat().st_size < P.upload_limit_mb() * 2 ** 20
    out = tmp_path / "biggest.csv"
    rc, _, err, mb = cli(path, None, "--dataset", DS, "--out", str(out))
    assert rc == 0, err
    assert len(out.read_text().splitlines()) == n + 1
    print(f"\nbatch {n:,} x {n_pix:,}: peak RSS {mb:.0f} MB; {err.strip()}")
    assert mb < GB, mb
    m = S.MAX_POINTS
    wave = np.linspace(ds.wave[0] - 1.0, ds.wave[-1] + 1.0, m)
    flux = np.interp(wave, ds.wave, v.x[0, 0])
    err_ = np.interp(wave, ds.wave, v.x[0, 1]) * np.sqrt(m / n_pix)
    path = tmp_path / "longest.npy"
    np.save(path, np.stack([wave, flux, err_], 1))
    rc, _, err, mb = cli(path, None, "--dataset", DS)
    assert rc == 0, err
    print(f"spectrum of {m:,} points: peak RSS {mb:.0f} MB")
    assert mb < GB, mb
    np.save(path, np.stack([np.linspace(7100, 8850, m + 1), np.ones(m + 1)], 1))
    refused(path.read_bytes(), "longest.npy", f"{m + 1:,} points", f"{m:,}-point limit")
