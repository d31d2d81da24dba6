"""The viewer's tools in real headless Chromium (issue 10): window/level drag, HU under the pointer, zoom and
pan, linked planes, slabs, measurements on a phantom with known geometry, the keyboard alone, the quiz.

Ground truth is independent of the app: the demo's volumes are read from their NIfTI files with the core's
reader; the measurement phantom is written here with known distances and a uniform block.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from components.viewer import BINDINGS
from mosmed.windowing import PRESETS

from . import ARTIFACTS, SCREENSHOTS, AppServer
from .conftest import StreamlitApp
from .helpers_interactions import (
    AXIAL,
    api,
    canvas_stats,
    dataset,
    expect_slice,
    pick_segment,
    poll,
    readout,
    snap,
    voxel_point,
    wait_viewer_ready,
    wheel_over,
    widget,
)

#: Each step waits at most conftest.STEP_TIMEOUT_MS: a broken feature fails in seconds, not minutes.
pytestmark = pytest.mark.usefixtures("step_timeout")


def _truth(app_server, registry, sid: int) -> np.ndarray:
    from mosmed.volume import read_volume

    rel = str(registry.set_index("study_id").loc[sid, "study_file"]).lstrip("/")
    return read_volume(Path(app_server.cache_dir) / "demo" / rel).data


def _open(app, **query):
    page = app.open("viewer", **query)
    root = page.locator(".msv").first
    wait_viewer_ready(root)
    root.locator(".msv-stage").scroll_into_view_if_needed()
    return page, root


def _done(app) -> None:
    app.assert_no_exception()
    app.assert_no_page_errors()


def _state(root):
    return api(root, "state")


# ------------------------------------------------------------------------------------------ window / level


def test_right_drag_changes_level_width_and_pixels(app, mask_study) -> None:
    page, root = _open(app, study=mask_study, window="lung")
    before = canvas_stats(root)
    x, y = voxel_point(root, "axial", 128, 128)
    page.mouse.move(x, y)
    page.mouse.down(button="right")
    for i in range(1, 31):  # right = wider, down = higher level
        page.mouse.move(x + 4 * i, y + 2 * i)
    page.mouse.up(button="right")
    d = poll(
        lambda: dataset(root),
        lambda d: float(d["width"]) > 1500 and float(d["level"]) > -600,
        what="level and width to grow with the drag",
    )
    after = poll(lambda: canvas_stats(root), lambda s: s["hash"] != before["hash"], what="repainted pixels")
    assert after["mean"] != before["mean"]
    assert "Lung" not in root.locator(".msv-info.tr").inner_text()  # no longer the preset
    # The drag's end is reported once: the URL carries the custom window (LEVEL,WIDTH), never one per move.
    page.wait_for_function(
        "(w) => new URLSearchParams(location.search).get('window') === w",
        arg=f"{round(float(d['level']))},{round(float(d['width']))}",
        timeout=15_000,
    )
    snap(root, SCREENSHOTS / "vt-wl-drag.png")
    _done(app)


# ------------------------------------------------------------------------------------------ HU readout


def test_hover_readout_equals_the_volume_at_random_voxels(app, app_server, registry, mask_study) -> None:
    page, root = _open(app, study=mask_study)
    vol = _truth(app_server, registry, mask_study)
    z = int(root.get_attribute("data-slice"))
    rng = np.random.default_rng(10)
    _, h, w = vol.shape
    for r, c in zip(rng.integers(0, h, 5), rng.integers(0, w, 5)):
        x, y = voxel_point(root, "axial", int(c), int(r))
        page.mouse.move(x, y)
        got = poll(
            lambda: readout(root),
            lambda d: d.get("row") == str(r) and d.get("col") == str(c),
            what=f"the readout at row {r}, col {c}",
        )
        assert int(got["hu"]) == int(vol[z, r, c]), (r, c, got)
        assert int(got["z"]) == z and f"row {r + 1}, col {c + 1}" in got["text"]
    _done(app)


# ------------------------------------------------------------------------------------------ zoom / pan


def test_zoom_and_pan_change_the_view_and_reset_restores_it(app, mask_study) -> None:
    page, root = _open(app, study=mask_study)
    axial = root.locator(AXIAL)
    start = canvas_stats(root)
    x, y = voxel_point(root, "axial", 60, 60)
    page.mouse.move(x, y)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)  # ctrl + wheel up: zoom in around the pointer
    page.keyboard.up("Control")
    zoomed = poll(lambda: _state(root), lambda s: s["zoom"] > 1.3, what="the zoom to grow")
    # Around the pointer: the voxel under it stays under it.
    x2, y2 = voxel_point(root, "axial", 60, 60)
    assert abs(x2 - x) < 2 and abs(y2 - y) < 2, ((x, y), (x2, y2))
    assert poll(lambda: canvas_stats(root)["hash"], lambda hsh: hsh != start["hash"], what="zoomed pixels")
    page.mouse.move(x, y)
    page.mouse.down(button="middle")  # middle drag: pan
    page.mouse.move(x + 40, y + 25, steps=5)
    page.mouse.up(button="middle")
    panned = poll(lambda: _state(root), lambda s: s["pan"] != zoomed["pan"], what="the pan to move")
    assert abs(panned["pan"][0] - zoomed["pan"][0] - 40) < 2
    root.locator("button", has_text=re.compile(r"^1:1$")).click()
    assert poll(lambda: _state(root), lambda s: abs(s["zoom"] - zoomed["zoom"]) > 0.01, what="1:1 pixels")
    root.locator("button", has_text=re.compile(r"^Reset$")).click()
    reset = poll(lambda: _state(root), lambda s: s["zoom"] == 1 and s["pan"] == [0, 0], what="the reset")
    assert reset["window"]["name"] == "lung"
    poll(lambda: canvas_stats(root)["hash"], lambda hsh: hsh == start["hash"], what="the original pixels")
    assert axial.count() == 1
    _done(app)


# ------------------------------------------------------------------------------------------ linked planes


def test_click_in_coronal_moves_the_axial_slice(app, mask_study) -> None:
    page, root = _open(app, study=mask_study)
    n = int(root.get_attribute("data-n"))
    k, col = 7, 90
    x, y = voxel_point(root, "coronal", col, n - 1 - k)  # coronal rows are Z reversed (head up)
    page.mouse.click(x, y)
    expect_slice(root, k)
    assert root.get_attribute("data-col") == str(col)
    st = _state(root)
    assert st["cursor"]["z"] == k and st["cursor"]["c"] == col
    # The sagittal view follows the column, the axial view shows slice k: both repainted with the crosshair.
    assert re.fullmatch(rf"Column {col + 1} / \d+", root.locator(".msv-view-sagittal .msv-vinfo.bl").inner_text())
    poll(
        lambda: root.locator(".msv-info.bl").inner_text(),
        lambda t: t.startswith(f"Slice {k + 1} / {n}"),
        what="the axial label",
    )
    snap(root, SCREENSHOTS / "vt-mpr-click.png")
    _done(app)


# ------------------------------------------------------------------------------------------ slabs


def test_minip_darkens_lung_against_the_single_slice(app, app_server, registry, mask_study) -> None:
    page, root = _open(app, study=mask_study, window="lung")
    vol = _truth(app_server, registry, mask_study)
    z = int(root.get_attribute("data-slice"))
    sl = vol[z]
    rows, cols = np.nonzero((sl > -950) & (sl < -700))  # lung parenchyma on this slice
    pick = np.random.default_rng(3).choice(rows.size, 12, replace=False)
    grey = lambda: [api(root, "pixel", "axial", int(cols[i]), int(rows[i]))[0] for i in pick]  # noqa: E731
    single = grey()
    root.locator("select.msv-slab").select_option("minip")
    root.locator("input.msv-slab-mm").fill("40")
    root.locator("input.msv-slab-mm").press("Enter")
    st = poll(
        lambda: _state(root), lambda s: s["slab"]["mode"] == "minip" and s["slabSlices"] == 5, what="a 5-slice MinIP"
    )
    minip = poll(grey, lambda g: g != single, what="the MinIP pixels")
    assert np.mean(minip) < np.mean(single) - 3, (single, minip)
    assert all(b <= a + 1 for a, b in zip(single, minip))
    # Exact: what the view shows at each voxel is the minimum over the slab's five slices (the painted grey
    # above is that through the lung window, blended with its neighbours by the display's scaling).
    lo, hi = max(0, z - 2), min(vol.shape[0] - 1, z + 2)
    for i in pick:
        assert api(root, "shown", "axial", int(cols[i]), int(rows[i])) == int(vol[lo : hi + 1, rows[i], cols[i]].min())
    assert "MinIP 5 slices" in root.locator(".msv-info.bl").inner_text()
    assert st["slabSlices"] == 5
    snap(root, SCREENSHOTS / "vt-minip.png")
    _done(app)


# ------------------------------------------------------------------------------------------ keyboard alone


def _focused(root) -> bool:
    return root.evaluate("e => e.getRootNode().activeElement === e")


def test_the_viewer_works_by_keyboard_alone(app, mask_study) -> None:
    page, root = _open(app, study=mask_study, slice=5)
    for _ in range(80):  # Tab through the page until the viewer has focus
        if _focused(root):
            break
        page.keyboard.press("Tab")
    assert _focused(root), "Tab never reaches the viewer"
    by_action = {b["action"]: b["keys"][0] for b in BINDINGS["keys"]}
    press = lambda action: page.keyboard.press(by_action[action])  # noqa: E731  (keys from the bindings data)
    n = int(root.get_attribute("data-n"))
    press("slice_next")
    expect_slice(root, 5)
    press("slice_last")
    expect_slice(root, n - 1)
    press("slice_first")
    expect_slice(root, 0)
    for action, name in (
        ("preset_bone", "bone"),
        ("preset_soft", "soft"),
        ("preset_mediastinum", "mediastinum"),
        ("preset_lung", "lung"),
    ):
        press(action)
        want = PRESETS[name]
        poll(
            lambda: dataset(root),
            lambda d: (float(d["level"]), float(d["width"])) == (want.level, want.width),
            what=f"the {name} window",
        )
    press("zoom_in")
    poll(lambda: _state(root), lambda s: s["zoom"] > 1.2, what="zoom in")
    press("reset")
    poll(lambda: _state(root), lambda s: s["zoom"] == 1, what="reset")
    press("layout")
    poll(lambda: _state(root), lambda s: s["layout"] == "1", what="one view")
    press("next_view")
    poll(lambda: _state(root), lambda s: s["main"] == "coronal", what="coronal large")
    row = int(root.get_attribute("data-row"))
    press("slice_next")  # the active (coronal) view scrolls: the row moves
    poll(lambda: int(root.get_attribute("data-row")), lambda r: r == row - 1, what="a coronal step")
    press("layout")
    press("slab_cycle")
    poll(lambda: _state(root), lambda s: s["slab"]["mode"] == "mip", what="MIP")
    press("slab_cycle")
    press("slab_cycle")
    press("cine")
    poll(lambda: root.get_attribute("data-cine"), lambda v: v == "1", what="cine on")
    press("cine")
    poll(lambda: root.get_attribute("data-cine"), lambda v: v == "0", what="cine off")
    press("help")
    help_rows = root.locator(".msv-help tr")
    assert help_rows.count() == len(BINDINGS["keys"]) + len(BINDINGS["mouse"])
    assert root.locator(".msv-help").is_visible()
    for tool in ("tool_line", "tool_ellipse", "tool_rect", "tool_pan", "tool_crosshair"):
        press(tool)
        poll(lambda: _state(root)["tool"], lambda t: t == tool.removeprefix("tool_"), what=tool)
    app.screenshot("vt-keyboard-help")
    # Keys reach the viewer only while it has focus: typing into a text field changes nothing in it.
    z = int(root.get_attribute("data-slice"))
    lvl = widget(page, "viewer.width").locator("input")
    lvl.focus()
    page.keyboard.press("4")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("c")
    assert int(root.get_attribute("data-slice")) == z and root.get_attribute("data-cine") == "0"
    assert float(root.get_attribute("data-level")) == PRESETS["lung"].level
    _done(app)


# ------------------------------------------------------------------------------------------ the quiz


def test_the_quiz_is_answered_in_the_viewer(app, registry) -> None:
    page = app.open("teaching")
    quiz = widget(page, "teaching.quiz.viewer.0").locator(".msv")
    wait_viewer_ready(quiz)
    quiz.locator(".msv-stage").scroll_into_view_if_needed()
    assert quiz.locator(".msv-info.tl").inner_text() == "Question 1"  # no id, no class
    k0 = int(quiz.get_attribute("data-slice"))
    wheel_over(page, quiz.locator(AXIAL), -100)  # a scrollable stack, not stills
    wheel_over(page, quiz.locator(AXIAL), -100)
    expect_slice(quiz, min(k0 + 2, int(quiz.get_attribute("data-n")) - 1))
    assert not re.search(r"CT-\d", quiz.inner_text())
    pick_segment(page, "teaching.w.answer.0", "CT-0")
    app.wait()
    page.locator(".st-key-teaching-w-check button").click()
    app.wait()
    verdict = page.locator('[data-testid="stAlert"]').filter(has_text=re.compile(r"(Correct|Not quite):")).first
    assert verdict.count() == 1
    after = widget(page, "teaching.quiz.viewer.0").locator(".msv")
    label = poll(
        lambda: after.locator(".msv-info.tl").inner_text(),
        lambda t: t.startswith("study "),
        what="the study named after the answer",
    )
    assert re.match(r"^study \d+ · CT-\d$", label)
    app.screenshot("vt-quiz-answered")
    _done(app)


# ------------------------------------------------------------------------------------------ measurements


SPACING = (8.0, 0.8, 0.8)  # (dz, dy, dx) mm
SHAPE = (9, 128, 128)  # display (Z, H, W)
BLOCK = (slice(40, 91), slice(30, 101), 60)  # rows, cols, HU: a uniform block
MARK_A, MARK_B = (20, 20), (20, 100)  # (row, col) of two 1000 HU markers on slice 4: 80 voxels apart


def _write(arr_zyx: np.ndarray, path: Path) -> None:
    xyz = np.transpose(arr_zyx, (2, 1, 0))[:, ::-1, :]  # display (S, P, L) -> file LAS
    affine = np.diag([-SPACING[2], SPACING[1], SPACING[0], 1.0])
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(xyz).astype(np.int16), affine), str(path))


@pytest.fixture(scope="module")
def phantom_app(tmp_path_factory, browser):
    root = tmp_path_factory.mktemp("phantom_ds")
    rows = []
    for sid in (1, 2):
        vol = np.full(SHAPE, -1000, np.int16)
        vol[:, BLOCK[0], BLOCK[1]] = BLOCK[2]
        vol[4, MARK_A[0], MARK_A[1]] = vol[4, MARK_B[0], MARK_B[1]] = 1000
        if sid == 2:
            vol[:, BLOCK[0], BLOCK[1]] = -100
        rel = f"/studies/CT-0/study_{sid:04d}.nii.gz"
        _write(vol, root / rel.lstrip("/"))
        rows.append((sid, "CT-0", rel, ""))
    pd.DataFrame(rows, columns=["study_id", "category", "study_file", "mask_file"]).to_csv(
        root / "dataset_registry.csv", index=False
    )
    server = AppServer(
        cache_dir=tmp_path_factory.mktemp("phantom_cache"), log_path=ARTIFACTS / "e2e-phantom.log", data_dir=root
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def papp(page, phantom_app) -> StreamlitApp:
    return StreamlitApp(page, phantom_app.url, phantom_app)


def _drag(page, a, b) -> None:
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(*b, steps=6)
    page.mouse.up()


def test_measurements_on_a_phantom_of_known_geometry(papp, tmp_path) -> None:
    page = papp.open("viewer", study=1, slice=5)
    root = page.locator(".msv").first
    wait_viewer_ready(root)
    root.locator(".msv-stage").scroll_into_view_if_needed()
    root.focus()
    page.keyboard.press("l")  # line tool
    _drag(page, voxel_point(root, "axial", MARK_A[1], MARK_A[0]), voxel_point(root, "axial", MARK_B[1], MARK_B[0]))
    line = root.locator('.msv-measures li[data-kind="line"]')
    poll(lambda: line.count(), lambda c: c == 1, what="a line in the list")
    length = float(line.first.get_attribute("data-length-mm"))
    truth = (MARK_B[1] - MARK_A[1]) * SPACING[2]  # 64 mm
    assert abs(length - truth) <= SPACING[2], (length, truth)  # within one voxel
    assert f"{length:.1f} mm" in line.first.inner_text()

    page.keyboard.press("b")  # rectangle on the uniform block
    r0, c0, r1, c1 = 50, 40, 80, 90  # voxel centres: 30 x 50 voxels
    _drag(page, voxel_point(root, "axial", c0 - 0.5, r0 - 0.5), voxel_point(root, "axial", c1 - 0.5, r1 - 0.5))
    rect = root.locator('.msv-measures li[data-kind="rect"]')
    poll(lambda: rect.count(), lambda c: c == 1, what="a rectangle in the list")
    d = rect.first.evaluate("e => ({...e.dataset})")
    assert float(d["mean"]) == BLOCK[2] and float(d["sd"]) == 0 and d["min"] == d["max"] == str(BLOCK[2])
    area = (r1 - r0) * SPACING[1] * (c1 - c0) * SPACING[2]  # 960 mm^2
    assert abs(float(d["areaMm2"]) - area) <= ((r1 - r0) + (c1 - c0)) * SPACING[1] * SPACING[2], (d, area)

    page.keyboard.press("e")  # ellipse inside the block
    _drag(page, voxel_point(root, "axial", 45, 55), voxel_point(root, "axial", 85, 75))
    ell = root.locator('.msv-measures li[data-kind="ellipse"]')
    poll(lambda: ell.count(), lambda c: c == 1, what="an ellipse in the list")
    e = ell.first.evaluate("e => ({...e.dataset})")
    assert float(e["mean"]) == BLOCK[2] and float(e["sd"]) == 0
    assert abs(float(e["areaMm2"]) - np.pi * 20 * 0.8 * 10 * 0.8) < 0.1 * np.pi * 20 * 0.8 * 10 * 0.8
    snap(root, SCREENSHOTS / "vt-measurements.png")

    # Included in the PNG export: the measurement colour is in the picture, and the list's text below it.
    with page.expect_download() as dl:
        root.locator("button", has_text=re.compile(r"^PNG$")).click()
    png = tmp_path / "export.png"
    dl.value.save_as(png)
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png.read_bytes())).convert("RGB")).astype(int)
    yellow = (img[..., 0] > 230) & (img[..., 1] > 200) & (img[..., 2] < 140) & (img[..., 2] > 40)
    assert yellow.sum() > 100, "the measurements are not in the exported PNG"
    assert img.shape[0] > root.locator(".msv-stage").bounding_box()["height"]  # plus the list of measurements

    # Deletable, and kept per study for the session: another study, then back.
    ell.first.locator("button.msv-mdel").click()
    poll(lambda: root.get_attribute("data-measures"), lambda v: v == "2", what="the ellipse deleted")
    page.wait_for_timeout(800)  # the list is reported (debounced)
    papp.wait()
    page.locator(".st-key-viewer-next button").first.click()
    papp.wait()
    wait_viewer_ready(root)
    assert root.get_attribute("data-measures") == "0"
    page.locator(".st-key-viewer-prev button").first.click()
    papp.wait()
    wait_viewer_ready(root)
    poll(lambda: root.get_attribute("data-measures"), lambda v: v == "2", what="the measurements back")
    papp.assert_no_exception()
    papp.assert_no_page_errors()
