"""components.viewer: the encoded stack and its wire format (no browser; the browser side is tests/e2e)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from components import viewer
from components.compare import linked_index
from mosmed.render import OverlayStyle
from mosmed.study import Study
from mosmed.windowing import PRESETS, Window


def fake_study(z=6, h=40, w=48, spacing=(8.0, 0.7, 0.7), with_mask=True, seed=0, study_id=7):
    """A small seeded study in display orientation: air outside, a 'body', two lungs, a lesion on 2 slices."""
    rng = np.random.default_rng(seed)
    vol = np.full((z, h, w), -1000, np.int16)
    vol[:, 4:-4, 4:-4] = 40
    lung = np.zeros((z, h, w), np.uint8)
    lung[:, 10:30, 8:20] = 1
    lung[:, 10:30, 28:40] = 1
    vol[lung > 0] = -850
    vol += rng.integers(-20, 20, vol.shape).astype(np.int16)
    mask = None
    if with_mask:
        mask = np.zeros((z, h, w), np.uint8)
        mask[2:4, 14:20, 10:16] = 1
        vol[mask > 0] = -500
    area = (mask.reshape(z, -1).sum(1) * spacing[1] * spacing[2]) if with_mask else None
    study = Study(
        study_id=study_id, category="CT-1", volume=vol, mask=mask, lung=lung, spacing=spacing,
        slice_z_mm=np.arange(z) * spacing[0] - 100.0, stats=None, warnings=[], source_axcodes=("L", "A", "S"),
        cache_key=f"k{seed}-{z}x{h}x{w}-{with_mask}-{spacing}", from_cache=False,
    )
    assert (area is None) == (study.lesion_area_mm2 is None)
    return study


def _slice_blob(header, blobs, ref):
    off, n = ref
    return blobs[off : off + n]


def test_payload_roundtrip_decodes_to_right_count_and_size():
    study = fake_study()
    payload = viewer.viewer_payload(study, window=PRESETS["lung"], style=OverlayStyle(), dataset_root="/x",
                                    nav_slice=3, nav_seq=1)
    header, blobs = viewer.decode_payload(payload)
    assert header["n"] == 6 and header["width"] == 48 and header["height"] == 40
    assert len(header["grey"]) == 6
    for ref in header["grey"]:
        img = Image.open(io.BytesIO(_slice_blob(header, blobs, ref)))
        assert img.format == "JPEG" and img.size == (48, 40) and img.mode == "L"
    # Layers only for slices that have any label.
    assert sorted(header["lesion"]) == ["2", "3"]
    assert sorted(header["lesion_outline"]) == ["2", "3"]
    assert len(header["lung_outline"]) == 6
    layer = Image.open(io.BytesIO(_slice_blob(header, blobs, header["lesion"]["2"]))).convert("RGBA")
    alpha = np.asarray(layer)[..., 3]
    assert alpha.shape == (40, 48) and (alpha > 0).sum() == 36  # the 6x6 lesion, opaque white
    assert header["nav"] == {"slice": 3, "seq": 1}
    assert header["z_mm"][0] == -100.0 and header["lesion_mm2"][2] == pytest.approx(36 * 0.49)
    assert header["stack_key"].endswith(":lung")


def test_window_changes_pixels_and_key():
    study = fake_study()
    a, _ = viewer.decode_payload(viewer.viewer_payload(study, window=PRESETS["lung"], style=OverlayStyle(),
                                                       dataset_root="/x", nav_slice=0, nav_seq=1))
    payload_b = viewer.viewer_payload(study, window=Window(40.0, 400.0), style=OverlayStyle(), dataset_root="/x",
                                      nav_slice=0, nav_seq=1)
    b, blobs_b = viewer.decode_payload(payload_b)
    assert a["stack_key"] != b["stack_key"]
    grey = np.asarray(Image.open(io.BytesIO(_slice_blob(b, blobs_b, b["grey"][0]))))
    # Soft-tissue window: lung (-850 HU) is black, body (40 HU) mid-grey.
    assert grey[20, 12] < 10 and 100 < grey[6, 24] < 160


def test_no_mask_study_has_no_lesion_layers_and_one_slice_volume_works():
    study = fake_study(z=1, with_mask=False)
    header, _ = viewer.decode_payload(viewer.viewer_payload(study, window=PRESETS["lung"], style=OverlayStyle(),
                                                            dataset_root="/x", nav_slice=5, nav_seq=1))
    assert header["n"] == 1 and header["lesion"] == {} and header["lesion_mm2"] is None
    assert header["has_mask"] is False and header["nav"]["slice"] == 0


def test_reformats_are_aspect_corrected():
    study = fake_study(z=6, h=40, w=48, spacing=(8.0, 0.7, 0.7))
    header, blobs = viewer.decode_payload(viewer.viewer_payload(study, window=PRESETS["lung"],
                                                                style=OverlayStyle(), dataset_root="/x",
                                                                nav_slice=0, nav_seq=1))
    w, h = header["reformat"]["coronal_size"]
    assert w == 48 and h == pytest.approx(6 * 8.0 / 0.7, abs=2)
    img = Image.open(io.BytesIO(_slice_blob(header, blobs, header["coronal"])))
    assert img.size == (w, h)
    # Default cuts go through the lesion (rows 14-19, cols 10-15).
    assert 14 <= header["reformat"]["row"] <= 19 and 10 <= header["reformat"]["col"] <= 15


def test_reformat_index_without_mask_goes_through_right_lung():
    study = fake_study(with_mask=False)
    assert 8 <= viewer.reformat_index(study, "sagittal") < 20
    assert 10 <= viewer.reformat_index(study, "coronal") < 30


def test_build_payload_rejects_nan_and_decode_rejects_garbage():
    with pytest.raises(ValueError, match="Out of range float values"):
        viewer.build_payload({"x": float("nan")}, {})
    with pytest.raises(ValueError, match="bad magic"):
        viewer.decode_payload(b"XXXX" + struct.pack("<I", 2) + b"{}")


def test_encode_stack_rejects_degenerate_volume():
    with pytest.raises(ValueError, match="Z >= 1"):
        viewer.encode_stack(np.zeros((0, 4, 4), np.int16), PRESETS["lung"])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [({"z": 1, "row": 2, "col": 3}, (1, 2, 3)), ({"z": 6, "row": 0, "col": 0}, None), ({"z": "x"}, None),
     (None, None), ([1, 2, 3], None), ({"z": -1, "row": 0, "col": 0}, None)],
)
def test_probe_from_browser_is_validated(raw, expected):
    assert viewer._parse_probe(raw, (6, 40, 48)) == expected


@pytest.mark.parametrize(
    ("k", "n_from", "n_to", "expected"), [(0, 40, 50, 0), (39, 40, 50, 49), (20, 41, 21, 10), (5, 1, 30, 0), (3, 10, 1, 0)]
)
def test_linked_index_relative(k, n_from, n_to, expected):
    assert linked_index(k, n_from, n_to) == expected


def test_linked_index_mm_picks_nearest_position():
    z_a = np.arange(10) * 8.0          # 0..72 mm
    z_b = np.arange(20) * 5.0 - 10.0   # -10..85 mm
    assert linked_index(4, 10, 20, "mm", z_a, z_b) == 8   # 32 mm -> 30 mm
    assert linked_index(9, 10, 20, "mm", z_a, z_b) == 16  # 72 mm -> 70 mm


def test_linked_index_rejects_bad_mode_and_counts():
    with pytest.raises(ValueError, match="link mode 'x'"):
        linked_index(0, 5, 5, "x")
    with pytest.raises(ValueError, match="slice counts must be >= 1"):
        linked_index(0, 0, 5)
