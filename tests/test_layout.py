"""The layout holds (docs/architecture.md): one direction of dependency between the layers, no
import cycle among the project's modules, no streamlit below the pages, no source file over 600
lines, ruff clean, and a code version that covers every source file."""
from __future__ import annotations

import shutil
import subprocess
import sys

import grimp
import pytest

from core import config
from core.engine import spec

ROOT = config.ROOT
# top to bottom: a module may import from its own layer and the layers below it, never above
LAYERS = ["core.cli", "core.predict", "core.analysis", "core.engine", "models", "core.data", "core.physics",
          "core.config"]
SIDE_BY_SIDE = {("core.predict", "core.analysis")}   # neither imports the other


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("core", "models", include_external_packages=True)


def _layer(module: str) -> int | None:
    for i, name in enumerate(LAYERS):
        if module == name or module.startswith(name + "."):
            return i
    return None


def test_no_import_goes_up_a_layer(graph):
    bad = []
    for m in graph.modules:
        lm = _layer(m)
        if lm is None:
            continue
        for d in graph.find_modules_directly_imported_by(m):
            ld = _layer(d)
            if ld is None or ld == lm:
                continue
            if ld < lm or (LAYERS[lm], LAYERS[ld]) in SIDE_BY_SIDE or (LAYERS[ld], LAYERS[lm]) in SIDE_BY_SIDE:
                bad.append(f"{m} -> {d}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_no_import_cycle(graph):
    """Tarjan's strongly connected components over every import (function-level ones included)."""
    mods = sorted(m for m in graph.modules if m.split(".")[0] in ("core", "models"))
    edges = {m: sorted(d for d in graph.find_modules_directly_imported_by(m) if d in set(mods)) for m in mods}
    index, low, stack, on, cycles, n = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges[v]:
                cycles.append(sorted(comp))

    for m in mods:
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def test_no_streamlit_below_the_pages(graph):
    users = sorted(m for m in graph.modules if not m.startswith("streamlit") and m.split(".")[0] in ("core", "models")
                   and "streamlit" in {d.split(".")[0] for d in graph.find_modules_directly_imported_by(m)})
    assert not users, f"core/ and models/ import streamlit: {users}"


def test_no_source_file_over_600_lines():
    long = [f"{p.relative_to(ROOT)} ({n})" for d in ("core", "models", "pages") for p in (ROOT / d).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 600]
    long += [f"app.py ({n})"] if (n := len((ROOT / "app.py").read_text().splitlines())) > 600 else []
    assert not long, f"source files over 600 lines: {long}"


def test_ruff_is_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]


def test_code_version_covers_sub_folders(tmp_path, monkeypatch):
    for d in spec.CODE_DIRS:
        shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(config, "ROOT", tmp_path)
    before = spec.code_version()
    assert spec.code_version() == before                     # a pure function of the files
    f = tmp_path / "core" / "engine" / "registry.py"
    f.write_text(f.read_text() + "\n# one more line\n")
    assert spec.code_version() != before
    f2 = tmp_path / "core" / "predict" / "readers" / "text.py"   # two folders down
    v2 = spec.code_version()
    f2.write_text(f2.read_text().replace("CSV", "csv", 1))
    assert spec.code_version() != v2
