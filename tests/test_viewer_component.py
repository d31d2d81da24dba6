"""components.viewer: the payload the browser gets, its anonymity in the quiz, and the validation of what
the browser reports (no browser here; the browser side is tests/e2e)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from components import viewer
from components.compare import linked_index
from mosmed import wire
from mosmed.render import OverlayStyle
from mosmed.study import Study
from mosmed.windowing import PRESETS, Window

REPO = Path(__file__).resolve().parents[1]


def fake_study(z=6, h=40, w=48, spacing=(8.0, 0.7, 0.7), with_mask=True, seed=0, study_id=7, lung=True):
    """A small seeded study in display orientation: air outside, a 'body', two lungs, a lesion on 2 slices."""
    rng = np.random.default_rng(seed)
    vol = np.full((z, h, w), -1000, np.int16)
    vol[:, 4:-4, 4:-4] = 40
    lungs = np.zeros((z, h, w), np.uint8)
    lungs[:, 10:30, 8:20] = 1
    lungs[:, 10:30, 28:40] = 1
    vol[lungs > 0] = -850
    vol += rng.integers(-20, 20, vol.shape).astype(np.int16)
    mask = None
    if with_mask:
        mask = np.zeros((z, h, w), np.uint8)
        mask[2:4, 14:20, 10:16] = 1
        vol[mask > 0] = -500
    return Study(
        study_id=study_id,
        category="CT-1",
        volume=vol,
        mask=mask,
        lung=lungs if lung else None,
        spacing=spacing,
        slice_z_mm=np.arange(z) * spacing[0] - 100.0,
        stats=None,
        summary={},
        source_axcodes=("L", "A", "S"),
        cache_key=f"k{seed}-{z}x{h}x{w}-{with_mask}-{spacing}",
        warnings=[],
        from_cache=False,
    )


def _payload(study, **kw):
    kw.setdefault("window", PRESETS["lung"])
    kw.setdefault("style", OverlayStyle())
    kw.setdefault("dataset_root", "/x")
    return wire.unpack(viewer.viewer_payload(study, **kw))


def test_full_payload_carries_the_exact_volume_and_labels():
    study = fake_study()
    header, blob = _payload(study, nav_slice=3, nav_seq=1)
    assert header["n"] == 6 and header["width"] == 48 and header["height"] == 40 and header["version"] == 2
    assert np.array_equal(wire.decode_volume(header, blob), study.volume)
    labels = wire.decode_labels(header, blob)
    assert np.array_equal(labels & 1, study.mask) and np.array_equal((labels & 2) > 0, study.lung > 0)
    assert header["nav"] == {"slice": 3, "seq": 1}
    assert header["z_mm"][0] == -100.0 and header["lesion_mm2"][2] == pytest.approx(36 * 0.49)
    assert header["window"]["name"] == "lung" and header["window"]["level"] == -600.0
    assert header["spacing"] == [8.0, 0.7, 0.7]
    assert header["study_id"] == 7 and header["study_label"] == "study 7 · CT-1"
    # Default crosshair through the lesion (rows 14-19, cols 10-15).
    assert 14 <= header["cursor"][0] <= 19 and 10 <= header["cursor"][1] <= 15
    assert header["bindings"]["keys"] and header["presets"]["bone"] == {"level": 480.0, "width": 2500.0}


def test_window_is_a_header_field_not_new_data():
    study = fake_study()
    a, blob_a = _payload(study)
    b, blob_b = _payload(study, window=Window(40.0, 400.0), window_seq=2)
    assert a["token"] == b["token"] and blob_a == blob_b  # a window change never re-sends the data
    assert b["window"] == {"level": 40.0, "width": 400.0, "name": None, "seq": 2}


def test_quiz_payload_holds_no_id_class_or_lesion():
    study = fake_study(study_id=301)
    header, blob = _payload(study, anonymous=True, label="Question 1")
    text = repr(header)
    assert header["study_id"] is None and header["lesion_mm2"] is None and not header["has_mask"]
    assert "301" not in text and "CT-1" not in text and header["study_label"] == "Question 1"
    assert not (wire.decode_labels(header, blob) & 1).any()  # no lesion bit reached the payload
    # The crosshair does not point at the lesion (rows 14-19, cols 10-15) either: it goes through the lung.
    full, _ = _payload(study)
    assert header["cursor"] != full["cursor"] and header["token"] != full["token"]
    assert header["export_name"] == "view.png"


def test_no_mask_no_lung_study_and_one_slice_volume_work():
    study = fake_study(z=1, with_mask=False, lung=False)
    header, blob = _payload(study, nav_slice=5)
    assert header["n"] == 1 and header["lesion_mm2"] is None and header["nav"]["slice"] == 0
    assert header["has_mask"] is False and header["has_lung"] is False
    assert header["labels"] == [None]


def test_payload_rejects_bad_layout_and_plane():
    with pytest.raises(ValueError, match="layout"):
        _payload(fake_study(), layout="2x2")
    with pytest.raises(ValueError, match="plane"):
        _payload(fake_study(), plane="oblique")


def test_reformat_index_without_mask_goes_through_right_lung():
    study = fake_study(with_mask=False)
    assert 8 <= viewer.reformat_index(study, "sagittal") < 20
    assert 10 <= viewer.reformat_index(study, "coronal") < 30


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"token": "t", "slice": 2, "level": -600, "width": 1500, "name": "lung", "plane": "coronal"},
            (2, PRESETS["lung"], "coronal"),
        ),
        (
            {"token": "t", "slice": 2, "level": -600.4, "width": 1400.6, "name": "lung"},
            (2, Window(-600.0, 1401.0), None),
        ),
        ({"token": "other", "slice": 2}, (None, None, None)),
        ({"token": "t", "slice": 6, "level": 1e9, "width": 0}, (None, None, None)),
        ({"token": "t", "slice": True, "level": "x", "width": None, "plane": "../x"}, (None, None, None)),
        ({"token": "t", "slice": -1, "level": float("nan"), "width": 10}, (None, None, None)),
        (None, (None, None, None)),
        ([1, 2], (None, None, None)),
    ],
)
def test_view_report_from_the_browser_is_validated(raw, expected):
    assert viewer._parse_view(raw, "t", 6) == expected


def test_measure_report_is_validated():
    good = {"kind": "line", "plane": "axial", "index": 2, "p0": [1.5, 2.0], "p1": [10, 12.25]}
    raw = {
        "token": "t",
        "items": [
            good,
            {"kind": "circle"},
            {**good, "plane": "x"},
            {**good, "index": 6},
            {**good, "p0": [float("inf"), 1]},
            {**good, "p1": [1e6, 1]},
            "junk",
            {**good, "kind": "rect", "plane": "sagittal", "index": 47, "p1": [40, 6]},
        ],
    }
    got = viewer._parse_measures(raw, "t", (6, 40, 48))
    assert got == [good, {**good, "kind": "rect", "plane": "sagittal", "index": 47, "p1": [40, 6]}]
    assert viewer._parse_measures({**raw, "token": "u"}, "t", (6, 40, 48)) is None
    many = {"token": "t", "items": [good] * 500}
    assert len(viewer._parse_measures(many, "t", (6, 40, 48))) == viewer.MAX_MEASURES


def test_bindings_are_one_table_every_action_implemented_in_the_js():
    js = (REPO / "components" / "viewer_assets" / "viewer.js").read_text()
    actions_block = js[js.index("const ACTIONS = {") : js.index("function keyMap")]
    implemented = set(re.findall(r"^  (\w+): ", actions_block, re.M))
    keys = viewer.BINDINGS["keys"]
    bound = {b["action"] for b in keys}
    assert bound <= implemented, bound - implemented
    seen: set[str] = set()
    for b in keys:  # one action per key: the table is a function from input to action
        assert not (set(b["keys"]) & seen), b
        seen |= set(b["keys"])
    assert {"1", "2", "3", "4", "c", "ArrowUp", "PageDown", "Home", "End", "+", "-"} <= seen
    mouse = {(m["input"], m.get("button"), tuple(m["mods"])): m["action"] for m in viewer.BINDINGS["mouse"]}
    assert mouse[("drag", 2, ())] == "window_level" and mouse[("drag", 1, ())] == "pan"
    assert mouse[("wheel", None, ("ctrl",))] == "zoom_pointer"
    for action in set(mouse.values()) - {"tool", "readout", "maximize", "scroll", "zoom_pointer", "zoom_drag"}:
        assert f'"{action}"' in js, action
    rows = viewer.binding_rows()
    assert len(rows) == len(keys) + len(viewer.BINDINGS["mouse"]) and ("1", keys[6]["label"]) in rows


@pytest.mark.parametrize("doc_path", ["docs/viewer.md", "README.md"])
def test_readme_binding_table_matches_the_data(doc_path):
    doc = (REPO / doc_path).read_text()
    for inp, what in viewer.binding_rows():
        assert f"| {inp} | {what} |" in doc, (doc_path, inp, what)


@pytest.mark.parametrize(
    ("k", "n_from", "n_to", "expected"),
    [(0, 40, 50, 0), (39, 40, 50, 49), (20, 41, 21, 10), (5, 1, 30, 0), (3, 10, 1, 0)],
)
def test_linked_index_relative(k, n_from, n_to, expected):
    assert linked_index(k, n_from, n_to) == expected


def test_linked_index_mm_picks_nearest_position_and_keeps_an_anchor_offset():
    z_a = np.arange(10) * 8.0  # 0..72 mm
    z_b = np.arange(20) * 5.0 - 10.0  # -10..85 mm
    assert linked_index(4, 10, 20, "mm", z_a, z_b) == 8  # 32 mm -> 30 mm
    assert linked_index(9, 10, 20, "mm", z_a, z_b) == 16  # 72 mm -> 70 mm
    z_c = z_a - 300.0  # another patient, 30 cm further along the table
    assert linked_index(5, 10, 10, "mm", z_a, z_c, anchor=(4, 4)) == 5  # +8 mm from the anchor, both sides


def test_linked_index_rejects_bad_mode_and_counts():
    with pytest.raises(ValueError, match="link mode 'x'"):
        linked_index(0, 5, 5, "x")
    with pytest.raises(ValueError, match="slice counts must be >= 1"):
        linked_index(0, 0, 5)
