"""Soak runs (``make soak``): everything in tests/soak is marked ``soak`` and so excluded from ``make test``.

Each run prints its figures (``make soak`` passes ``-s``) and writes them to ``test-artifacts/soak-<name>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
for p in (str(REPO), str(TESTS)):
    if p not in sys.path:
        sys.path.insert(0, p)
ARTIFACTS = REPO / "test-artifacts"
SOAK_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SOAK_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.soak)


def report_figures(name: str, figures: dict) -> Path:
    """Print the figures of a soak run and write them to test-artifacts/soak-<name>.json."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"soak-{name}.json"
    path.write_text(json.dumps(figures, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"\n[soak {name}] " + json.dumps(figures, default=str))
    return path


@pytest.fixture
def figures(request):
    """A dict the test fills; printed and saved when the test ends (pass or fail)."""
    data: dict = {}
    yield data
    report_figures(request.node.name.replace("[", "-").replace("]", ""), data)
