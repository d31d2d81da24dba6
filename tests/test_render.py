"""Rendering: plane orientation, aspect from spacing, overlays, degenerate slices, encoding, stacks, thumbnails."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mosmed.render import (
    OverlayStyle,
    encode_image,
    n_slices,
    outline,
    parse_color,
    plane_aspect,
    plane_slice,
    render_image,
    render_png,
    render_slice,
    thumbnail,
)
from mosmed.windowing import PRESETS, Window

RED = (255, 0, 0)


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.fixture
def marked():
    """(Z=5, H=6, W=7) zeros with two markers: superior-anterior-right (100) and inferior-posterior-left (200)."""
    vol = np.zeros((5, 6, 7), dtype=np.int16)
    vol[4, 0, 0] = 100  # most superior slice, anterior row, patient's right column
    vol[0, 5, 6] = 200  # most inferior slice, posterior row, patient's left column
    return vol


def test_plane_slice_orientation(marked):
    ax = plane_slice(marked, "axial", 4)
    assert ax.shape == (6, 7) and ax[0, 0] == 100  # anterior up, right on the viewer's left
    cor = plane_slice(marked, "coronal", 0)
    assert cor.shape == (5, 7) and cor[0, 0] == 100  # head up: superior slice in row 0
    assert plane_slice(marked, "coronal", 5)[4, 6] == 200  # inferior at the bottom, patient left on the right
    sag = plane_slice(marked, "sagittal", 0)
    assert sag.shape == (5, 6) and sag[0, 0] == 100  # head up, anterior on the left
    assert plane_slice(marked, "sagittal", 6)[4, 5] == 200
    assert [n_slices(marked.shape, p) for p in ("axial", "coronal", "sagittal")] == [5, 6, 7]


@pytest.mark.parametrize(
    "plane, index, match",
    [
        ("axial", 5, "out of range 0..4"),
        ("coronal", -1, "out of range"),
        ("oblique", 0, "not one of"),
        ("axial", 1.5, "integer"),
    ],
)
def test_plane_slice_rejects(marked, plane, index, match):
    with pytest.raises(ValueError, match=match):
        plane_slice(marked, plane, index)


def test_plane_aspect():
    sp = (8.0, 0.5, 0.8)
    assert plane_aspect(sp, "axial") == pytest.approx(0.625)
    assert plane_aspect(sp, "coronal") == pytest.approx(10.0)
    assert plane_aspect(sp, "sagittal") == pytest.approx(16.0)
    with pytest.raises(ValueError, match="positive finite"):
        plane_aspect((8.0, 0.0, 1.0), "axial")


def test_render_shapes_follow_spacing(marked):
    sp = (8.0, 1.0, 1.0)
    assert render_slice(marked, sp, "axial", 0, PRESETS["lung"]).shape == (6, 7, 3)
    cor = render_slice(marked, sp, "coronal", 0, PRESETS["lung"])
    assert cor.shape == (40, 7, 3)  # 5 slices of 8 mm stretched to 40 rows of 1 mm: not squashed
    assert render_slice(marked, sp, "sagittal", 0, PRESETS["lung"]).shape == (40, 6, 3)
    assert render_slice(marked, sp, "coronal", 0, PRESETS["lung"], resample=False).shape == (5, 7, 3)
    # Wide pixels stretch columns instead of shrinking rows (no data dropped).
    assert render_slice(marked, (1.0, 1.0, 2.0), "axial", 0, PRESETS["lung"]).shape == (6, 14, 3)
    assert render_slice(marked, (1.0, 2.0, 1.0), "axial", 0, PRESETS["lung"]).shape == (12, 7, 3)


def test_render_grey_without_overlay(marked):
    rgb = render_slice(marked, (1, 1, 1), "axial", 4, Window(50, 100))
    assert rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    assert rgb[0, 0, 0] == 255 and rgb[1, 1, 0] == 0


def _ct_and_mask():
    vol = np.full((3, 20, 20), -800, dtype=np.int16)
    mask = np.zeros(vol.shape, dtype=np.uint8)
    mask[1, 5:15, 4:16] = 1
    return vol, mask


def test_fill_overlay_tints_only_mask_pixels():
    vol, mask = _ct_and_mask()
    base = render_slice(vol, (1, 1, 1), "axial", 1, PRESETS["lung"])
    rgb = render_slice(
        vol, (1, 1, 1), "axial", 1, PRESETS["lung"], mask, style=OverlayStyle(color="#ff0000", opacity=0.5)
    )
    inside, outside = rgb[10, 10], rgb[0, 0]
    assert tuple(outside) == tuple(base[0, 0])
    g = int(base[10, 10, 0])
    assert inside[0] == pytest.approx((g + 255) / 2, abs=2) and inside[1] == pytest.approx(g / 2, abs=2)
    assert np.array_equal(rgb[mask[1] == 0], base[mask[1] == 0])
    opaque = render_slice(
        vol, (1, 1, 1), "axial", 1, PRESETS["lung"], mask, style=OverlayStyle(color="#00ff00", opacity=1.0)
    )
    assert tuple(opaque[10, 10]) == (0, 255, 0)
    hidden = render_slice(vol, (1, 1, 1), "axial", 1, PRESETS["lung"], mask, style=OverlayStyle(show_mask=False))
    assert np.array_equal(hidden, base)
    assert np.array_equal(
        render_slice(vol, (1, 1, 1), "axial", 1, PRESETS["lung"], mask, style=OverlayStyle(opacity=0)), base
    )


def test_outline_overlay_and_lung_outline():
    vol, mask = _ct_and_mask()
    lung = np.zeros_like(mask)
    lung[:, 2:18, 2:18] = 1
    style = OverlayStyle(mode="outline", color="#ff0000", opacity=1.0, show_lung=True, lung_color="#0000ff")
    rgb = render_slice(vol, (1, 1, 1), "axial", 1, PRESETS["lung"], mask, lung, style)
    assert tuple(rgb[5, 10]) == RED and tuple(rgb[14, 4]) == RED  # lesion border
    assert rgb[10, 10, 0] == rgb[10, 10, 1]  # lesion interior untouched
    assert tuple(rgb[2, 10]) == (0, 0, 255) and tuple(rgb[17, 17]) == (0, 0, 255)  # lung border
    assert rgb[3, 3, 2] == rgb[3, 3, 0]  # inside the lung, not on its border


def test_outline_function():
    m = np.zeros((6, 6), bool)
    m[1:5, 1:5] = True
    o = outline(m)
    assert o.sum() == 12 and not o[2:4, 2:4].any()
    full = outline(np.ones((3, 3), bool))
    assert full.sum() == 8  # image edge is a border
    assert not outline(np.zeros((4, 4))).any()
    with pytest.raises(ValueError, match="2D"):
        outline(np.zeros((2, 2, 2)))


def test_mask_is_resampled_nearest_in_coronal():
    vol = np.full((4, 10, 10), -800, dtype=np.int16)
    mask = np.zeros(vol.shape, dtype=np.uint8)
    mask[1, 5, 2:6] = 1  # one inferior-ish slice
    rgb = render_slice(
        vol, (8.0, 1.0, 1.0), "coronal", 5, PRESETS["lung"], mask, style=OverlayStyle(color="#ff0000", opacity=1.0)
    )
    assert rgb.shape == (32, 10, 3)
    red_rows = np.flatnonzero((rgb[..., 0] == 255) & (rgb[..., 1] == 0)).reshape(-1) // 10
    # Slice 1 of 4, head up -> display rows 16..23: one 8-row block, hard edges (no blended mask values).
    assert sorted(set(red_rows.tolist())) == list(range(16, 24))
    tinted = rgb[..., 0] != rgb[..., 1]
    assert np.all(rgb[tinted] == np.array(RED, dtype=np.uint8))


def test_degenerate_inputs_render():
    const = np.full((1, 8, 9), 40, dtype=np.int16)  # one slice, constant
    empty = np.zeros(const.shape, dtype=np.uint8)
    for plane in ("axial", "coronal", "sagittal"):
        for w in (Window(40, 0), Window(40, -1), PRESETS["soft"]):
            rgb = render_slice(const, (8.0, 0.7, 0.7), plane, 0, w, empty, empty, OverlayStyle(show_lung=True))
            assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.size > 0
    assert set(np.unique(render_slice(const, (1, 1, 1), "axial", 0, Window(40, 0)))) == {255}
    assert set(np.unique(render_slice(const, (1, 1, 1), "axial", 0, Window(41, 0)))) == {0}
    cor = render_slice(const, (8.0, 0.7, 0.7), "coronal", 3, PRESETS["soft"])
    assert cor.shape[0] == round(8.0 / 0.7)  # one slice still gets its physical height


def test_render_rejects_mismatched_mask():
    vol, mask = _ct_and_mask()
    with pytest.raises(ValueError, match="mask shape"):
        render_slice(vol, (1, 1, 1), "axial", 0, PRESETS["lung"], mask[:, :10])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "dots"}, "mode"),
        ({"opacity": 1.5}, "opacity"),
        ({"opacity": float("nan")}, "opacity"),
        ({"color": "red"}, "colour"),
        ({"lung_color": "#12345"}, "colour"),
    ],
)
def test_overlay_style_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OverlayStyle(**kwargs)


def test_parse_color():
    assert parse_color("#ff3b30") == (255, 59, 48)
    assert parse_color("0f0") == (0, 255, 0)
    assert parse_color((1, 2, 3)) == (1, 2, 3)
    with pytest.raises(ValueError, match="0..255"):
        parse_color((1, 2, 300))


@pytest.mark.parametrize("fmt, pil", [("png", "PNG"), ("jpeg", "JPEG"), ("jpg", "JPEG"), ("webp", "WEBP")])
def test_encode_formats(fmt, pil):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, size=(30, 40), dtype=np.uint8)
    img = _decode(encode_image(gray, fmt))
    assert img.format == pil and img.size == (40, 30)
    rgb = np.stack([gray, gray // 2, gray // 3], axis=-1)
    assert _decode(encode_image(rgb, fmt, quality=50)).size == (40, 30)
    if fmt == "png":
        assert np.array_equal(np.asarray(_decode(encode_image(rgb, "png"))), rgb)  # lossless


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros((4, 4), np.uint8), "gif"), "format"),
        ((np.zeros((4, 4), np.int16), "png"), "uint8"),
        ((np.zeros((4, 4, 2), np.uint8), "png"), r"\(h, w\)"),
        ((np.zeros((0, 4), np.uint8), "png"), "empty"),
        ((np.zeros((4, 4), np.uint8), "jpeg", 0), "quality"),
    ],
)
def test_encode_rejects(args, match):
    with pytest.raises(ValueError, match=match):
        encode_image(*args)


def test_render_png_and_image_bytes():
    vol, mask = _ct_and_mask()
    png = render_png(vol, (8.0, 1.0, 1.0), "sagittal", 3, PRESETS["lung"], mask)
    img = _decode(png)
    assert img.format == "PNG" and img.size == (20, 24)
    jpg = _decode(render_image(vol, (1, 1, 1), "axial", 1, PRESETS["lung"], mask, fmt="jpeg"))
    assert jpg.format == "JPEG" and jpg.mode == "RGB"
    grey = _decode(render_image(vol, (1, 1, 1), "axial", 0, PRESETS["lung"], mask, fmt="jpeg"))
    assert grey.mode == "L"  # nothing to overlay on slice 0: one channel, cheaper to encode and send


def test_thumbnail_picks_lesion_slice_and_fits():
    vol = np.full((5, 40, 60), -800, dtype=np.int16)
    mask = np.zeros(vol.shape, dtype=np.uint8)
    mask[3, 10:30, 10:50] = 1
    mask[1, 20, 20] = 1
    img = _decode(thumbnail(vol, mask, (8.0, 1.0, 1.0), size=32))
    assert img.format == "PNG" and max(img.size) <= 32 and img.size[0] > img.size[1]
    arr = np.asarray(img.convert("RGB")).astype(int)
    assert (arr[..., 0] - arr[..., 1]).max() > 50  # the lesion slice, tinted
    plain = np.asarray(_decode(thumbnail(vol, None, (8.0, 1.0, 1.0))).convert("RGB"))
    assert np.ptp(plain) == 0  # no mask: middle slice, grey only
    with pytest.raises(ValueError, match="size"):
        thumbnail(vol, None, (8.0, 1.0, 1.0), size=2)
