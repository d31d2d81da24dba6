"""components.query: every URL parameter is untrusted; values are validated, notices never echo raw markup."""

from __future__ import annotations

import pytest

from components import query
from mosmed.windowing import PRESETS

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "![x](http://evil.example/x.png)",
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "/etc/passwd",
    "C:\\Windows\\win.ini",
    "\u202eevil\u200b",
    "\x00\x1b[31m",
    "`code`**bold**",
]


def _assert_safe(notice: str | None) -> None:
    assert notice is not None
    for bad in ("<", ">", "[", "]", "`", "*", "/", "\\", "\x00", "\x1b", "\u202e", "\u200b", "javascript:", "%2F"):
        assert bad not in notice, (bad, notice)


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_text_is_rejected_everywhere_without_echo(raw):
    for value, notice in (
        query.parse_study(raw, [1, 2, 3]),
        query.parse_slice(raw, 40),
        query.parse_window(raw),
        query.parse_plane(raw),
    ):
        assert value is None
        _assert_safe(notice)


def test_describe_keeps_only_harmless_characters_and_truncates():
    assert query.describe("<b>lung</b>") == '"blungb"'
    assert query.describe("<<>>") == "(unreadable value)"
    long = query.describe("9" * 500)
    assert long.endswith('..."') and len(long) < 40


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("255", 255), ("0255", 255), ("study_0255", 255), ("STUDY-255", 255), (" 255 ", 255), (["1", "255"], 255)],
)
def test_parse_study_accepts_id_forms(raw, expected):
    assert query.parse_study(raw, [255, 256]) == (expected, None)


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_absent_params_give_no_notice(raw):
    assert query.parse_study(raw, [1]) == (None, None)
    assert query.parse_slice(raw, 5) == (None, None)
    assert query.parse_window(raw) == (None, None)
    assert query.parse_plane(raw) == (None, None)


@pytest.mark.parametrize("raw", ["-1", "99999999999999999999", "1e3", "12.5", "٣", "二", "0x10"])
def test_parse_study_rejects_non_ids(raw):
    value, notice = query.parse_study(raw, [1, 3])
    assert value is None
    assert "ignored" in notice


def test_parse_study_rejects_id_outside_the_offered_ids():
    value, notice = query.parse_study("7", [1, 2, 3])
    assert value is None
    assert notice.startswith("Study 7 from the link is not available")


def test_parse_study_rejects_too_long_text_unread():
    value, notice = query.parse_study("1" * 1000, [1])
    assert value is None and "too long" in notice


@pytest.mark.parametrize(("raw", "index"), [("1", 0), ("40", 39), ("+7", 6), ("017", 16)])
def test_parse_slice_is_one_based(raw, index):
    assert query.parse_slice(raw, 40) == (index, None)


@pytest.mark.parametrize(
    ("raw", "index", "words"),
    [
        ("0", 0, "outside 1..40; showing slice 1"),
        ("-3", 0, "outside 1..40; showing slice 1"),
        ("41", 39, "outside 1..40; showing slice 40"),
        ("123456789", 39, "showing slice 40"),
        ("99999999999999999999999", 39, "showing slice 40"),
    ],
)
def test_parse_slice_clamps_out_of_range_with_notice(raw, index, words):
    value, notice = query.parse_slice(raw, 40)
    assert value == index
    assert words in notice


@pytest.mark.parametrize("raw", ["abc", "1.5", "nan", "inf", "１２", "٣", "1,2", "--1"])
def test_parse_slice_rejects_non_integers(raw):
    value, notice = query.parse_slice(raw, 40)
    assert value is None
    assert "not a whole number" in notice


def test_parse_slice_needs_a_volume():
    with pytest.raises(ValueError, match="n_slices must be at least 1"):
        query.parse_slice("1", 0)


def test_parse_window_presets_and_pairs():
    assert query.parse_window("lung") == (PRESETS["lung"], None)
    assert query.parse_window("Bone") == (PRESETS["bone"], None)
    window, notice = query.parse_window("-500,1200")
    assert notice is None and (window.level, window.width) == (-500.0, 1200.0)


@pytest.mark.parametrize("raw", ["lungs!", "nan,100", "0,0", "0,-5", "1e9,100", "inf,1", "x" * 65, "1,2,3"])
def test_parse_window_rejects_bad_values(raw):
    value, notice = query.parse_window(raw)
    assert value is None
    assert "default window" in notice


def test_parse_plane():
    assert query.parse_plane("Coronal") == ("coronal", None)
    value, notice = query.parse_plane("oblique")
    assert value is None and "axial is used" in notice


def test_unknown_keys_notice():
    assert query.unknown_keys_notice({"study": "1", "slice": "2"}) is None
    notice = query.unknown_keys_notice({"study": "1", "<script>": "x", "utm_source": "y"})
    assert notice.startswith("Ignored unknown link parameter(s):")
    assert "script" in notice and "<" not in notice and "utmsource" in notice
