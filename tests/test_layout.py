"""The code's layout: the core never imports Streamlit, no import cycle inside mosmed/, one atomic write, the
study-id walk of an open, and the Streamlit attribute the frame guard relies on."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "mosmed"


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _core_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(CORE.rglob("*.py")) if "migrations" not in p.parts}


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Core modules a file imports (``from pkg import sub`` counts ``pkg.sub`` when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                base = ".".join(up[: len(up) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out.update(n for n in names if n in modules and n != me)
    return out


def test_core_never_imports_streamlit():
    for name, path in _core_modules().items():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import|from)\s+streamlit\b", text, re.M), f"{name} imports streamlit"


def test_no_import_cycle_inside_the_core():
    mods = _core_modules()
    graph = {name: _imports(path, set(mods)) for name, path in mods.items()}
    # A package's __init__ may re-export its submodules; a submodule importing its own package back is a cycle.
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
    assert "mosmed.dataset" not in set().union(*(graph[m] for m in graph if m.startswith("mosmed.cache")))


def test_one_atomic_write():
    """Only mosmed/atomic.py renames temporary files into place (os.replace / os.rename)."""
    offenders = []
    for path in [
        *CORE.rglob("*.py"),
        *(REPO / "components").rglob("*.py"),
        *(REPO / "pages").rglob("*.py"),
        REPO / "app.py",
        *(REPO / "bench").glob("*.py"),
    ]:
        if path.name == "atomic.py":
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"\bos\.(replace|rename)\(|\.replace\(\s*(?:out|path|dst|target|b)\s*\)", text):
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"atomic writes outside mosmed/atomic.py: {offenders}"


def test_dataset_uses_only_public_names_of_its_parts():
    text = (CORE / "dataset.py").read_text(encoding="utf-8")
    private = re.findall(r"from mosmed[\w.]* import ([^\n]+)", text)
    names = [n.strip() for line in private for n in line.strip("()").split(",")]
    assert not [n for n in names if n.startswith("_")], names
    assert not re.search(r"\.cache\._\w+|\.registry\._\w+", text)


def _walk(fn) -> tuple[list[str], list[str], int]:
    """The project functions entered while ``fn`` runs (comprehensions aside), the files in that order with
    consecutive repeats merged, and how many times that sequence comes back to a file it had left."""
    skip = {"<listcomp>", "<genexpr>", "<dictcomp>", "<setcomp>", "<lambda>"}
    root = str(REPO) + "/"
    stops: list[str] = []

    def prof(frame, event, arg):
        f = frame.f_code.co_filename
        if event == "call" and f.startswith(root) and "/.venv/" not in f and frame.f_code.co_name not in skip:
            stops.append(f"{f[len(root) :]}:{frame.f_code.co_name}")

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    files: list[str] = []
    for s in stops:
        f = s.split(":")[0]
        if not files or files[-1] != f:
            files.append(f)
    returns = sum(1 for i, f in enumerate(files) if f in files[:i])
    return stops, files, returns


def test_open_of_a_cached_study_walks_each_file_once(tmp_path):
    from cache_faults import write_small_dataset

    from mosmed.dataset import Dataset

    data = write_small_dataset(tmp_path / "data", n=2, shape=(32, 32, 4), seed=3)
    ds = Dataset(data, tmp_path / "cache")
    ds.build_cache()
    ds.open_study(2)
    stops, files, returns = _walk(lambda: ds.open_study(2))
    assert returns <= 1, " -> ".join(files)
    assert files[0] == "mosmed/dataset.py" and "mosmed/cache/arrays.py" in files
    assert sum(s.endswith(":source_key") for s in stops) == 1  # the key is made once per open
    assert sum(s.endswith(":opened") for s in stops) == 1  # the source's files examined once


def test_frame_guard_attribute_still_exists():
    """components.state.require_frame leaves Streamlit's legacy pages/ mode through this class attribute. If an
    upgrade drops it, the guard silently does nothing and deep links on a fresh server lose the frame: fail."""
    from streamlit.runtime.pages_manager import PagesManager

    assert hasattr(PagesManager, "uses_pages_directory"), (
        "Streamlit no longer has PagesManager.uses_pages_directory: re-check components.state.require_frame"
    )
    assert isinstance(PagesManager.uses_pages_directory, (bool, type(None)))


@pytest.mark.parametrize(
    "module",
    [
        "config",
        "atomic",
        "paths",
        "source",
        "registry",
        "cache.keys",
        "cache.store",
        "cache.build",
        "cache.summary",
        "analysis",
        "dataset",
    ],
)
def test_newcomer_finds_each_concern_by_file_name(module):
    assert (CORE / (module.replace(".", "/") + ".py")).is_file()
