"""Shared pieces of the benchmark sections: paths, statistics, the app-finished check, resident memory.

Each section module (``bench/build.py``, ``bench/viewer.py``, ``bench/pages.py`` ...) exposes ``TARGETS``
(key -> (comparison, target, unit, what)) and ``run(res, ctx)``, which adds its figures to ``res``;
``bench/run.py`` runs them in order, prints one table and writes ``bench/results.json``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("STREAMLIT_LOGGER_LEVEL", "error")  # components import st.cache_data outside a server
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for _p in (str(REPO), str(BENCH)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import prepare  # noqa: E402  (bench/prepare.py)

OUT = prepare.OUT


@dataclasses.dataclass
class Context:
    """What every section gets: the options and the warm cache of ``prepare.FULL`` built by run.py."""

    quick: bool
    run_cache: Path
    skip_floors: bool = False
    skip_browser: bool = False


def say(msg: str) -> None:
    print(msg, flush=True)


def p95(values) -> float | None:
    v = [float(x) for x in values if x is not None]
    return float(np.percentile(v, 95)) if v else None


def median(values) -> float | None:
    v = [float(x) for x in values if x is not None]
    return float(np.median(v)) if v else None


def summary(values) -> dict:
    v = [float(x) for x in values if x is not None]
    if not v:
        return {"n": 0}
    return {
        "n": len(v),
        "median": round(float(np.median(v)), 2),
        "p95": round(float(np.percentile(v, 95)), 2),
        "min": round(min(v), 2),
        "max": round(max(v), 2),
    }


def sub_registry(reg, ids):
    return reg.subset(ids)


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def rss_mb(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            name, _, val = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[name] = round(int(val.split()[0]) / 1024, 1)
    return out


APP_DONE_JS = """(sel) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.dataset.testConnectionState !== 'CONNECTED' || app.dataset.testScriptState !== 'notRunning')
    return false;
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  const [css, n] = sel;
  if (document.querySelectorAll(css).length < n) return false;
  return performance.now();
}"""


async def wait_app(page, timeout_s: float = 60.0) -> None:
    await page.wait_for_timeout(250)  # a rerun just asked for has time to start
    await page.wait_for_function(APP_DONE_JS, arg=["body", 1], timeout=timeout_s * 1000)
