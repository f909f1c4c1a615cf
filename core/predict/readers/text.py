"""CSV, TSV and whitespace-separated text spectra, with or without a header."""
from __future__ import annotations

import numpy as np

from core.predict.readers.columns import (
    _Columns,
    _columns_from_names,
    _finish,
    _is_number,
)
from core.predict.settings import COMMENT_CHARS
from core.predict.spectra import PredictError, Spectrum


def _read_text(data: bytes, name: str) -> Spectrum:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    lines = text.splitlines()
    comments, body = [], []  # (line number, text)
    for i, ln in enumerate(lines, 1):
        s = ln.strip()
        if not s:
            continue
        if s.startswith(COMMENT_CHARS):
            comments.append((i, s.lstrip("#%!;/\\ ").strip()))
        else:
            body.append((i, s))
    if not body:
        raise PredictError(f"{name}: no data rows (only comments or blank lines)")
    first = body[0][1]
    sep = "," if "," in first else ("\t" if "\t" in first else None)

    def split(s):
        return [t.strip() for t in (s.split(sep) if sep else s.split())]

    header = None
    toks = split(first)
    if not all(_is_number(t) for t in toks if t):
        header = toks
        body = body[1:]
    if not body:
        raise PredictError(f"{name}: a header but no data rows")
    ncol = len(split(body[0][1]))
    if header is None:  # a commented header just above the data ('# wave flux error')
        for ln_no, c in reversed(comments):
            if ln_no < body[0][0]:
                t = split(c) if sep else c.split()
                if len(t) == ncol and not any(_is_number(x) for x in t):
                    header = t
                break
    vals = np.empty((len(body), ncol))
    for r, (ln_no, s) in enumerate(body):
        t = split(s)
        if len(t) != ncol:
            raise PredictError(f"{name}: line {ln_no} has {len(t)} columns, the first data row has {ncol}")
        try:
            vals[r] = [float(x) for x in t]
        except ValueError:
            bad = next(x for x in t if not _is_number(x))
            raise PredictError(f"{name}: line {ln_no}: {bad[:30]!r} is not a number") from None
    line_no = np.array([b[0] for b in body])
    kind = {",": "CSV", "\t": "TSV", None: "whitespace-separated text"}[sep]
    if header is not None:
        if len(header) != ncol:
            raise PredictError(f"{name}: the header names {len(header)} columns, the data rows have {ncol}")
        cols = _columns_from_names(header, lambda i: vals[:, i], name)
        used = "header"
    else:
        if ncol not in (2, 3):
            raise PredictError(f"{name}: no header and {ncol} columns: cannot tell which is which; add a header "
                               f"line naming wavelength, flux and error")
        cols = _Columns(vals[:, 0], vals[:, 1], vals[:, 2] if ncol == 3 else None, "error" if ncol == 3 else None,
                        "linear", None)
        used = "no header: columns taken as wavelength, flux" + (", error" if ncol == 3 else "")
    cols.rows = line_no
    return _finish(cols, name, f"{kind}, {len(body):,} rows ({used})")


