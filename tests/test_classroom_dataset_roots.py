"""Which server folders a browser may open as a dataset (issue 13, point 5): decided by whoever runs the
server. Served beyond this machine (``MOSMED_DATA_ROOTS`` set, or ``server.address`` not loopback), only the
configured dataset, the demo and folders inside the allow-list open; a typed path outside is refused before
anything in it is read; on a workstation (the default) nothing changes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from apptest_data import AppData, app_data, app_env, new_app, page_failures, texts  # noqa: E402,F401

from mosmed import config  # noqa: E402


def test_root_allowed_resolves_before_it_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    allowed, other, data = tmp_path / "allowed", tmp_path / "other", tmp_path / "configured"
    for p in (allowed / "set1", other, data):
        p.mkdir(parents=True)
    (allowed / "escape").symlink_to(other, target_is_directory=True)
    monkeypatch.setenv("MOSMED_DATA_ROOTS", os.pathsep.join([str(allowed), "", str(tmp_path / "missing")]))
    monkeypatch.setenv("MOSMED_DATA", str(data))
    monkeypatch.setenv("MOSMED_CACHE", str(tmp_path / "cache"))
    assert config.data_roots_configured() and config.data_roots()[0] == allowed.resolve()
    assert config.root_allowed(allowed) and config.root_allowed(allowed / "set1")
    assert config.root_allowed(data) and config.root_allowed(config.demo_root())
    assert not config.root_allowed(data / "..")  # the configured dataset itself only
    assert not config.root_allowed(other) and not config.root_allowed(Path("/"))
    assert not config.root_allowed(allowed / ".." / "other")  # ".." cannot leave an allowed root
    assert not config.root_allowed(allowed / "escape")  # nor a symbolic link out of it
    assert not config.root_allowed(Path(str(allowed) + "-sibling"))  # a prefix is not a parent
    monkeypatch.setenv("MOSMED_DATA_ROOTS", "")
    assert config.data_roots_configured() and config.data_roots() == () and not config.root_allowed(allowed)
    monkeypatch.delenv("MOSMED_DATA_ROOTS")
    assert not config.data_roots_configured()


def _open(at, path: Path | str):
    at.sidebar.text_input(key="app.w.root_input").set_value(str(path))
    at.sidebar.button(key="app.w.open_root").click()
    at.run()
    assert not at.exception and not page_failures(at), [e.value for e in at.exception]
    return at


def test_a_typed_path_outside_the_allow_list_is_refused(
    app_data: AppData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "dataset_registry.csv").write_text("study_id,category,study_file,mask_file\n")
    monkeypatch.setenv("MOSMED_DATA_ROOTS", str(app_data.bad_root.parent))
    with app_env(app_data, "demo"):
        at = new_app()
        at.run()
        assert any(
            "MOSMED" in c and str(app_data.bad_root.parent) in c.replace("\\", "") for c in texts(at.sidebar.caption)
        ), texts(at.sidebar.caption)
        for typed in (outside, "/etc", f"{app_data.bad_root.parent}/../{outside.parent.name}"):
            _open(at, typed)
            assert "app.dataset_root" not in at.session_state
            assert any("not one this server lets browsers open" in e for e in texts(at.sidebar.error)), texts(
                at.sidebar.error
            )
        _open(at, app_data.bad_root)  # inside the allow-list: opens
        assert at.session_state["app.dataset_root"] == str(app_data.bad_root.resolve())
        # A root put into the session by other means is not used while the server is restricted.
        at.session_state["app.dataset_root"] = str(outside)
        at.run()
        assert not any(str(outside) in c for c in texts(at.sidebar.code))


def test_on_a_workstation_any_folder_opens_as_before(app_data: AppData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOSMED_DATA_ROOTS", raising=False)
    with app_env(app_data, "demo"):
        at = new_app()
        at.run()
        _open(at, app_data.bad_root)
        assert at.session_state["app.dataset_root"] == str(app_data.bad_root.resolve())


@pytest.mark.parametrize(
    ("address", "restricted"),
    [("localhost", False), ("127.0.0.1", False), ("::1", False), ("0.0.0.0", True), ("", True), ("10.1.2.3", True)],
)
def test_an_address_beyond_loopback_turns_the_allow_list_on(
    address: str, restricted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components import state

    monkeypatch.delenv("MOSMED_DATA_ROOTS", raising=False)
    monkeypatch.setattr(state.st, "get_option", lambda name: address if name == "server.address" else None)
    assert state.served_beyond_localhost() is restricted
