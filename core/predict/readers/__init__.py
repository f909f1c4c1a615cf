"""Reading an upload: `read_bytes` / `read_file` sniff the format (magic bytes, then the name) and hand
the bytes to one reader per format: text.py (CSV/TSV/whitespace), arrays.py (.npy/.npz), fits.py,
hdf5.py (a batch in the project's schema). Every reader returns a checked Spectrum or Batch
(readers/columns.py: names, units, order, NaN, duplicates) or raises PredictError in one line."""
from __future__ import annotations

import tomllib
from pathlib import Path

from core import config
from core.predict.readers.arrays import _read_npy
from core.predict.readers.fits import _read_fits
from core.predict.readers.hdf5 import _read_hdf5
from core.predict.readers.text import _read_text
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


def read_bytes(data: bytes, name: str = "upload", limit_mb: float | None = None) -> Spectrum | Batch:
    """Read an upload. Raises PredictError with one line on anything unusable."""
    limit_mb = upload_limit_mb() if limit_mb is None else limit_mb
    size = len(data)
    if size == 0:
        raise PredictError(f"{name}: empty file (0 bytes)")
    if limit_mb and size > limit_mb * 2 ** 20:
        raise PredictError(f"{name}: {size / 2 ** 20:.1f} MB is above the upload limit of {limit_mb:g} MB "
                           f"(server.maxUploadSize in .streamlit/config.toml)")
    ext = Path(name).suffix.lower()
    if ext == ".gz" or data[:2] == b"\x1f\x8b":
        import gzip
        try:
            data = gzip.decompress(data)
        except Exception:  # noqa: BLE001
            raise PredictError(f"{name}: a corrupt gzip file") from None
        if limit_mb and len(data) > 4 * limit_mb * 2 ** 20:
            raise PredictError(f"{name}: unpacks to {len(data) / 2 ** 20:.0f} MB, above 4x the upload limit")
        return read_bytes(data, name[:-3] if name.lower().endswith(".gz") else name, limit_mb=0)
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
    reader = {"text": _read_text, "npy": _read_npy, "npz": _read_npy, "fits": _read_fits, "hdf5": _read_hdf5}[kind]
    try:
        return reader(data, name)
    except PredictError:
        raise
    except Exception as e:  # noqa: BLE001 - never a traceback for a user's file
        raise PredictError(f"{name}: unreadable {kind} file ({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''})") from None


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


