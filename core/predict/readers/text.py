"""CSV, TSV and whitespace-separated text spectra, with or without a header."""
from __future__ import annotations

import codecs

import numpy as np

from core.predict.readers.columns import (
    _Columns,
    _columns_from_names,
    _finish,
    _is_number,
)
from core.predict.settings import (
    COMMENT_CHARS,
    MAX_POINTS,
    MAX_TEXT_COLUMNS,
    MAX_TEXT_LINES,
    MAX_UNPACKED_MB,
    MAX_VALUES,
)
from core.predict.spectra import PredictError, Spectrum

MAX_LINE_CHARS = 100_000   # a longer line is not a row of a spectrum (a header of 1,000 columns fits)


def _lines(data: bytes, name: str) -> tuple[list[str], list[int], str | None]:
    """The data lines (stripped), their line numbers, and the last comment above the first of them; the
    size is checked on the bytes first (MAX_UNPACKED_MB, MAX_TEXT_LINES) and each line is decoded on its own
    (one non-ASCII character does not widen the whole text in memory)."""
    if len(data) > MAX_UNPACKED_MB * 2 ** 20:
        raise PredictError(f"{name}: {len(data) / 2 ** 20:,.0f} MB of text, above the {MAX_UNPACKED_MB:g} MB limit "
                           f"for a text upload")
    n_lines = data.count(b"\n") + data.count(b"\r")
    if n_lines > MAX_TEXT_LINES:
        raise PredictError(f"{name}: {n_lines:,} lines, above the {MAX_TEXT_LINES:,}-line limit for a text upload "
                           f"(at most {MAX_POINTS:,} points a spectrum)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    codec = "utf-8"
    try:  # valid UTF-8? (checked in pieces: the decoded text is not kept)
        dec = codecs.getincrementaldecoder("utf-8")()
        for i in range(0, len(data), 1 << 20):
            dec.decode(data[i:i + (1 << 20)])
        dec.decode(b"", final=True)
    except UnicodeDecodeError:
        codec = "latin-1"
    body, line_no, above = [], [], None
    for i, raw in enumerate(data.splitlines(), 1):
        s = raw.decode(codec).strip()
        if not s:
            continue
        if s.startswith(COMMENT_CHARS):
            if not body:
                above = s.lstrip("#%!;/\\ ").strip()
            continue
        if len(s) > MAX_LINE_CHARS:
            raise PredictError(f"{name}: line {i} is {len(s):,} characters long (at most {MAX_LINE_CHARS:,}); "
                               f"one row per line: wavelength, flux[, error]")
        body.append(s)
        line_no.append(i)
        if len(body) > MAX_POINTS + 1:
            raise PredictError(f"{name}: more than {MAX_POINTS:,} data rows, above the limit for one spectrum")
    if not body:
        raise PredictError(f"{name}: no data rows (only comments or blank lines)")
    return body, line_no, above


def _read_text(data: bytes, name: str) -> Spectrum:
    texts, nos, above = _lines(data, name)
    body = list(zip(nos, texts))
    del texts, nos
    comments = [] if above is None else [(0, above)]
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
    if ncol > MAX_TEXT_COLUMNS or len(body) * ncol > MAX_VALUES:
        raise PredictError(f"{name}: {len(body):,} rows x {ncol:,} columns, above the limit for one spectrum "
                           f"({MAX_TEXT_COLUMNS:,} columns, {MAX_VALUES:,} values)")
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


