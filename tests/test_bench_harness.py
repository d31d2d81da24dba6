"""The benchmark harness keeps up with the code it measures: every name it imports exists.

``make bench`` is not part of ``make test`` (it takes minutes), and its sections import lazily, inside the
functions that need a browser or a server; a renamed function then fails only in the next benchmark run, as a
section error. Here every ``from X import a, b`` in bench/ (at any depth of the code) is checked against the
module it names: the project's own modules (``mosmed``, ``components``, ``tests``) and the sections themselves.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
OURS = ("mosmed", "components", "tests", "sect_", "common", "prepare", "report")


def _imports() -> list[tuple[str, str, str, int]]:
    out = []
    for path in sorted(BENCH.rglob("*.py")):
        if "out" in path.relative_to(BENCH).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith(OURS):
                out += [(path.name, node.module, a.name, node.lineno) for a in node.names if a.name != "*"]
    return out


IMPORTS = _imports()


def test_the_harness_imports_something_of_ours() -> None:
    assert len(IMPORTS) > 20 and {m.split(".")[0] for _, m, _, _ in IMPORTS} >= {"mosmed", "tests", "common"}


@pytest.mark.parametrize(
    ("where", "module", "name", "line"), IMPORTS, ids=[f"{f}:{n}:{m}.{a}" for f, m, a, n in IMPORTS]
)
def test_every_name_the_bench_imports_exists(
    where: str, module: str, name: str, line: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.syspath_prepend(str(REPO))
    mod = importlib.import_module(module)
    assert hasattr(mod, name) or importlib.util.find_spec(f"{module}.{name}") is not None, (
        f"bench/{where}:{line} imports {name!r} from {module}, which has no such name"
    )
