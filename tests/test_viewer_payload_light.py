"""components.viewer performance paths: header-only payloads for reruns, and the hand-written layer PNGs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from components import viewer
from mosmed.render import OverlayStyle
from mosmed.windowing import PRESETS

from test_viewer_component import fake_study  # tests/ is on sys.path (rootdir conftest)


def test_light_payload_has_no_images_but_same_stack_key_and_metadata():
    study = fake_study()
    kw = dict(window=PRESETS["lung"], style=OverlayStyle(), dataset_root="/x", nav_slice=2, nav_seq=3)
    full, full_blobs = viewer.decode_payload(viewer.viewer_payload(study, **kw))
    light_bytes = viewer.viewer_payload(study, light=True, reformat_held=full["reformat"]["key"], **kw)
    light, light_blobs = viewer.decode_payload(light_bytes)
    assert light["light"] is True and full["light"] is False
    assert light["stack_key"] == full["stack_key"] == viewer.stack_key(study, PRESETS["lung"])
    for name in ("grey", "lesion", "lesion_outline", "lung_outline", "coronal", "sagittal"):
        assert light[name] is None, name
    assert len(light_blobs) == 0 and len(full_blobs) > 1000
    assert light["nav"] == full["nav"] and light["z_mm"] == full["z_mm"] and light["n"] == full["n"]


def test_light_payload_still_carries_reformats_when_their_cut_changed():
    study = fake_study()
    kw = dict(window=PRESETS["lung"], style=OverlayStyle(), dataset_root="/x", nav_slice=0, nav_seq=1)
    light, blobs = viewer.decode_payload(viewer.viewer_payload(study, light=True, reformat_held="stale", **kw))
    assert light["grey"] is None
    assert light["coronal"] is not None and light["sagittal"] is not None
    off, n = light["coronal"]
    assert Image.open(io.BytesIO(blobs[off:off + n])).format == "JPEG"


@pytest.mark.parametrize("shape", [(1, 1), (5, 13), (7, 8), (33, 64)])
def test_layer_png_roundtrips_exactly(shape):
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) > 0.6
    img = Image.open(io.BytesIO(viewer._layer_png(mask)))
    assert img.format == "PNG" and img.size == (shape[1], shape[0])
    rgba = np.asarray(img.convert("RGBA"))
    assert np.array_equal(rgba[..., 3] > 0, mask)
    assert (rgba[mask][:, :3] == 255).all()  # opaque white where set, tinted in the browser


def test_layer_png_rejects_non_2d():
    with pytest.raises(ValueError, match="must be 2D"):
        viewer._layer_png(np.zeros((2, 3, 4), bool))
