"""The command line: `python -m core data build|import|info`, and the engine's other verbs.

Every verb prints a one-line reason and exits with status 2 on bad input; it never
prints a traceback for a user's mistake.
"""
from __future__ import annotations

import argparse
import sys
import time

from core import config


def _bar(frac: float, msg: str) -> None:
    n = int(frac * 30)
    sys.stderr.write(f"\r[{'#' * n}{'.' * (30 - n)}] {msg}   ")
    if frac >= 1.0:
        sys.stderr.write("\n")
    sys.stderr.flush()


def cmd_data(a) -> int:
    from core import data
    if a.action == "build":
        t = time.time()
        path = data.build(name=a.name, profile=a.profile, n=a.n, seed=a.seed, device=a.device, progress=_bar)
        ds = data.Dataset(path)
        print(f"built {ds.name}: {ds.n} spectra in {time.time() - t:.1f} s -> {path} (fingerprint {ds.fingerprint})")
    elif a.action == "import":
        if not a.file:
            raise data.DataError("data import needs a file: python -m core data import FILE.h5 [--name NAME]")
        path = data.import_hdf5(a.file, name=a.name, progress=_bar)
        ds = data.Dataset(path)
        print(f"imported {ds.name}: {ds.n} spectra x {ds.n_pix} pixels -> {path} (fingerprint {ds.fingerprint})")
    elif a.action == "info":
        names = [a.name or a.file] if (a.name or a.file) else data.list_datasets()
        if not names:
            print("no data sets yet; build one with: python -m core data build --profile quick")
        for nm in names:
            for k, v in data.Dataset(nm).info().items():
                print(f"{k:>18}: {v}")
            print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="log g study engine")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="build, import or describe data sets")
    d.add_argument("action", choices=["build", "import", "info"])
    d.add_argument("file", nargs="?", help="HDF5 file to import (data import)")
    d.add_argument("--name", help="data set name (default: the profile's, or the file's stem)")
    d.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    d.add_argument("--n", type=int, help="number of spectra (default: the profile's)")
    d.add_argument("--seed", type=int)
    d.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    d.set_defaults(func=cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    from core.data import DataError
    a = build_parser().parse_args(argv)
    try:
        return a.func(a)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
