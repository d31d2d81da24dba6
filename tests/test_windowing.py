"""Windowing: presets, parsing of user text, HU -> uint8 through the lookup table and the float path."""

from __future__ import annotations

import numpy as np
import pytest

from mosmed.windowing import (
    PRESET_LABELS,
    PRESETS,
    Window,
    apply_window,
    parse_window,
    window_lut,
    window_to_text,
)


def test_presets_are_the_published_windows():
    assert {k: (w.level, w.width) for k, w in PRESETS.items()} == {
        "lung": (-600, 1500),
        "mediastinum": (50, 350),
        "soft": (40, 400),
        "bone": (480, 2500),
    }
    assert PRESET_LABELS["soft"] == "Soft tissue"
    assert set(PRESET_LABELS) == set(PRESETS)
    with pytest.raises(TypeError):
        PRESETS["lung"] = Window(0, 1)  # type: ignore[index]


@pytest.mark.parametrize(
    "text, key",
    [
        ("lung", "lung"),
        ("LUNG", "lung"),
        (" Soft tissue ", "soft"),
        ("mediastinum", "mediastinum"),
        ("bone", "bone"),
        ("-600,1500", "lung"),
        ("40, 400", "soft"),
    ],
)
def test_parse_presets(text, key):
    w = parse_window(text)
    assert w is PRESETS[key]
    assert w.name == key


@pytest.mark.parametrize(
    "text, level, width",
    [
        ("100,200", 100, 200),
        ("-50.5;80", -50.5, 80),
        ("0 1", 0, 1),
        ("+5000,10000", 5000, 10000),
        ("-2000,1", -2000, 1),
    ],
)
def test_parse_custom(text, level, width):
    w = parse_window(text)
    assert (w.level, w.width, w.name) == (level, width, None)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("nan,100", "finite"),
        ("-600,inf", "finite"),
        ("NaN", "finite"),
        ("1e9,100", "level 1e\\+09 HU is outside"),
        ("-2001,100", "level -2001 HU is outside"),
        ("0,0", "width 0 HU is outside"),
        ("0,-5", "width -5 HU is outside"),
        ("0,20000", "width 20000 HU is outside"),
        ("abc", "neither a preset"),
        ("1,2,3", "neither a preset"),
        ("1" * 100, "too long"),
    ],
)
def test_parse_rejects_with_reason(text, match):
    with pytest.raises(ValueError, match=match):
        parse_window(text)


def test_parse_rejects_non_text():
    with pytest.raises(ValueError, match="must be text"):
        parse_window(None)  # type: ignore[arg-type]


def test_window_to_text_round_trips():
    for key, w in PRESETS.items():
        assert window_to_text(w) == key
        assert parse_window(window_to_text(w)) is w
    w = Window(-123.5, 777)
    assert window_to_text(w) == "-123.5,777"
    assert parse_window(window_to_text(w)) == w


def test_window_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        Window(float("nan"), 100)
    with pytest.raises(ValueError, match="finite"):
        Window(0, float("inf"))


def test_apply_window_values_int16():
    w = Window(0, 100)
    hu = np.array([-1024, -51, -50, 0, 25, 50, 51, 3071, -32768, 32767], dtype=np.int16)
    out = apply_window(hu, w)
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 0, 128, 191, 255, 255, 255, 0, 255]


def test_apply_window_int16_matches_float_everywhere():
    # The table is indexed by the uint16 bit pattern; every int16 value must land on its own grey.
    hu = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    for w in (PRESETS["lung"], PRESETS["bone"], Window(7.3, 3.1)):
        a = apply_window(hu, w)
        b = apply_window(hu.astype(np.float64), w)
        assert np.array_equal(a, b)
    lung = apply_window(hu, PRESETS["lung"]).astype(int)
    assert np.all(np.diff(lung) >= 0)  # monotone over the whole int16 range, no wrap-around
    assert lung[0] == 0 and lung[-1] == 255


def test_apply_window_width_zero_is_threshold():
    hu = np.array([[-1000, -1], [0, 400]], dtype=np.int16)
    for width in (0, -10):
        out = apply_window(hu, Window(0, width))
        assert out.tolist() == [[0, 0], [255, 255]]
        assert apply_window(hu.astype(np.float32), Window(0, width)).tolist() == [[0, 0], [255, 255]]


def test_apply_window_float_nan_is_black_and_shape_kept():
    hu = np.array([[np.nan, -600.0], [1e6, -1e6]], dtype=np.float32)
    out = apply_window(hu, PRESETS["lung"])
    assert out.shape == (2, 2)
    assert out.tolist() == [[0, 128], [255, 0]]


def test_apply_window_views_memmaps_and_small_types(tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.integers(-1024, 2000, size=(4, 16, 20)).astype(np.int16)
    np.save(tmp_path / "v.npy", vol)
    mm = np.load(tmp_path / "v.npy", mmap_mode="r")
    w = PRESETS["soft"]
    ref = apply_window(vol.astype(np.float64), w)
    assert np.array_equal(apply_window(mm, w), ref)
    assert np.array_equal(apply_window(mm[::-1, 3, :], w), ref[::-1, 3, :])  # non-contiguous coronal view
    u8 = np.array([0, 40, 255], dtype=np.uint8)
    assert np.array_equal(apply_window(u8, w), apply_window(u8.astype(float), w))
    assert apply_window(np.array([True, False]), Window(0.5, 1)).tolist() == [255, 0]
    with pytest.raises(ValueError, match="dtype"):
        apply_window(np.array(["a"]), w)


def test_lut_is_read_only():
    lut = window_lut(PRESETS["lung"])
    assert lut.shape == (65536,) and lut.dtype == np.uint8
    with pytest.raises(ValueError):
        lut[0] = 1
