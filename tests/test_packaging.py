"""The core as an installable package: `pip install` gives `import mosmed` without Streamlit and a `mosmed` command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _names(lines) -> set[str]:
    out = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.add(re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0].lower())
    return out


def test_pyproject_and_requirements_agree():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = _names(meta["dependencies"])
    app = _names(meta["optional-dependencies"]["app"]) | _names(meta["optional-dependencies"]["cluster"])
    reqs = _names((REPO / "requirements.txt").read_text(encoding="utf-8").splitlines())
    assert "streamlit" not in core and "plotly" not in core  # the core installs without the app
    assert core | app <= reqs, (core | app) - reqs  # `make run` installs everything the package names
    assert meta["scripts"]["mosmed"] == "mosmed.cli:main"


def test_wheel_installs_a_core_that_imports_without_streamlit(tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("mosmed_explorer-*.whl")
    inst = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert inst.returncode == 0, inst.stderr[-2000:]
    assert not (site / "components").exists() and not (site / "pages").exists()
    # A notebook's view: the installed package (not this checkout), Streamlit made unimportable.
    code = (
        "import sys; sys.modules['streamlit'] = None\n"
        "import mosmed, mosmed.dataset, mosmed.cli, mosmed.cache.build\n"
        "assert 'streamlit' not in {m for m in sys.modules if sys.modules[m] is not None}\n"
        "print(mosmed.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().startswith(str(site))
    script = subprocess.run(
        [str(site / "bin" / "mosmed"), "--help"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert script.returncode == 0 and "build-cache" in script.stdout, script.stderr[-2000:]
