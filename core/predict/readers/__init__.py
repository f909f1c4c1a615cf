"""Reading an upload: `read_bytes` / `read_file` sniff the format (magic bytes, then the name) and hand
the bytes to one reader per format: text.py (CSV/TSV/whitespace), arrays.py (.npy/.npz), fits.py,
hdf5.py (a batch in the project's schema). Every reader returns a checked Spectrum or Batch
(readers/columns.py: names, units, order, NaN, duplicates) or raises PredictError in one line."""
from __future__ import annotations

import tomllib
import warnings
import zlib
from pathlib import Path

import numpy as np

from core import config
from core.predict.readers.arrays import _read_npy
from core.predict.readers.fits import _read_fits
from core.predict.readers.hdf5 import _read_hdf5
from core.predict.readers.text import _read_text
from core.predict.settings import MAX_GZIP_LAYERS, MAX_UNPACKED_MB
from core.predict.spectra import Batch, PredictError, Spectrum


# --------------------------------------------------------------------------- upload limit
def upload_limit_mb() -> float:
    """server.maxUploadSize of .streamlit/config.toml (Streamlit's default, 200 MB, when unset)."""
    p = config.ROOT / ".streamlit" / "config.toml"
    try:
        with open(p, "rb") as f:
            return float(tomllib.load(f).get("server", {}).get("maxUploadSize", 200))
    except (OSError, tomllib.TOMLDecodeError, TypeError, ValueError):
        return 200.0


MAGIC = {b"SIMPLE  =": "fits", b"\x89HDF\r\n\x1a\n": "hdf5", b"\x93NUMPY": "npy", b"PK\x03\x04": "npz"}
EXT = {".csv": "text", ".tsv": "text", ".txt": "text", ".dat": "text", ".tab": "text", ".ascii": "text",
       ".npy": "npy", ".npz": "npz", ".fits": "fits", ".fit": "fits", ".fts": "fits", ".h5": "hdf5", ".hdf5": "hdf5",
       ".hdf": "hdf5"}
UPLOAD_TYPES = sorted({e.lstrip(".") for e in EXT} | {"gz"})
BLOCK = 1 << 20       # gzip is unpacked this many bytes at a time


def _mb(n: int) -> str:
    return f"{n / 2 ** 20:,.1f} MB"


def gunzip(data: bytes, name: str, limit: int | None = None) -> bytes:
    """Unpack gzip, layer by layer (gzip inside gzip: at most MAX_GZIP_LAYERS, never recursively), streaming
    through zlib with a bound on the output: never more than `limit` bytes (MAX_UNPACKED_MB) are produced,
    whatever the compressed data claims. Multi-member files (concatenated gzip streams) are read whole."""
    limit = MAX_UNPACKED_MB * 2 ** 20 if limit is None else limit
    layers, packed = 0, len(data)
    while data[:2] == b"\x1f\x8b":
        if layers == MAX_GZIP_LAYERS:
            raise PredictError(f"{name}: gzip inside gzip more than {MAX_GZIP_LAYERS} layers deep; unpack it "
                               f"(gunzip) and upload the file itself")
        layers += 1
        out, total, rest = [], 0, data
        while rest[:2] == b"\x1f\x8b":          # one gzip member after another
            d, buf = zlib.decompressobj(wbits=31), rest
            while not d.eof:
                piece = d.decompress(buf, min(BLOCK, limit - total + 1))
                buf = d.unconsumed_tail
                if not piece and not buf:
                    raise PredictError(f"{name}: a corrupt or truncated gzip file")
                total += len(piece)
                if total > limit:
                    raise PredictError(f"{name}: unpacks to more than {MAX_UNPACKED_MB:g} MB (gzip layer {layers}), "
                                       f"above the limit for an upload (from {_mb(packed)} packed)")
                out.append(piece)
            rest = d.unused_data
        data = b"".join(out)
        out.clear()
        if not data:
            raise PredictError(f"{name}: a gzip file of nothing (0 bytes unpacked)")
    return data


def read_bytes(data: bytes, name: str = "upload", limit_mb: float | None = None) -> Spectrum | Batch:
    """Read an upload. Raises PredictError with one line on anything unusable; no reader allocates more than the
    limits of settings.py allow (checked from the file's metadata first), and nothing prints on stderr."""
    limit_mb = upload_limit_mb() if limit_mb is None else limit_mb
    size = len(data)
    if size == 0:
        raise PredictError(f"{name}: empty file (0 bytes)")
    if limit_mb and size > limit_mb * 2 ** 20:
        raise PredictError(f"{name}: {size / 2 ** 20:.1f} MB is above the upload limit of {limit_mb:g} MB "
                           f"(server.maxUploadSize in .streamlit/config.toml)")
    kind = "upload"
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ext = Path(name).suffix.lower()
            if ext == ".gz" or data[:2] == b"\x1f\x8b":
                if data[:2] != b"\x1f\x8b":
                    raise PredictError(f"{name}: named .gz but not a gzip file")
                kind = "gzip"
                data = gunzip(data, name)
                name = name[:-3] if name.lower().endswith(".gz") else name
                ext = Path(name).suffix.lower()
            kind, reader = _sniff(data, name, ext)
            return reader(data, name)
    except PredictError:
        raise
    except MemoryError:
        raise PredictError(f"{name}: too large to read in memory (MemoryError) as a {kind} file") from None
    except RecursionError:
        raise PredictError(f"{name}: nested too deeply to read (RecursionError) as a {kind} file") from None
    except Exception as e:  # noqa: BLE001 - never a traceback for a user's file
        raise PredictError(f"{name}: unreadable {kind} file ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:100] if str(e) else ''})") from None


def _sniff(data: bytes, name: str, ext: str):
    """(kind, reader) by magic bytes, then by name; refuses what no reader reads."""
    kind = next((k for m, k in MAGIC.items() if data.startswith(m)), None)
    if kind is None and data[:1] == b"\x80" and ext in (".npy", ".npz"):
        raise PredictError(f"{name}: a Python pickle, not a NumPy array; pickles are never loaded "
                           f"(allow_pickle=False): save with numpy.save")
    if kind is None:
        head = data[:4096]
        printable = sum(32 <= b < 127 or b in (9, 10, 13) or b >= 128 for b in head)
        if b"\x00" in head or printable < 0.95 * len(head):
            raise PredictError(f"{name}: binary data in no format read here (expected text CSV/TSV, .npy/.npz, "
                               f"FITS or HDF5)")
        kind = "text"
    if ext in EXT and EXT[ext] not in (kind, "npy" if kind == "npz" else kind) and not (ext == ".npy" and kind == "npz"):
        if kind == "text" and EXT[ext] in ("npy", "npz", "fits", "hdf5"):
            raise PredictError(f"{name}: the name says {EXT[ext].upper()} but the content is text "
                               f"(not a valid {ext} file)")
    return kind, {"text": _read_text, "npy": _read_npy, "npz": _read_npy, "fits": _read_fits, "hdf5": _read_hdf5}[kind]


def read_file(path: str | Path, limit_mb: float | None = None) -> Spectrum | Batch:
    p = Path(path)
    if not p.exists():
        raise PredictError(f"{path}: no such file")
    if p.is_dir():
        raise PredictError(f"{path}: a folder, not a file")
    limit_mb = upload_limit_mb() if limit_mb is None else limit_mb
    if limit_mb and p.stat().st_size > limit_mb * 2 ** 20:
        raise PredictError(f"{p.name}: {p.stat().st_size / 2 ** 20:.1f} MB is above the upload limit of "
                           f"{limit_mb:g} MB (server.maxUploadSize in .streamlit/config.toml)")
    return read_bytes(p.read_bytes(), p.name, limit_mb=limit_mb)


