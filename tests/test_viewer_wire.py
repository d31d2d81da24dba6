"""mosmed.wire: the study's int16 HU and labels encoded for the browser, decoded back exactly."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from mosmed import wire


def _volume(z=5, h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    vol = np.full((z, h, w), -2048, np.int16)  # scanner padding
    vol[:, 8:32, 10:38] = rng.integers(-1000, 1500, (z, 24, 28)).astype(np.int16)  # the field of view
    return vol


def test_roundtrip_is_exact_and_cropped():
    vol = _volume()
    mask = np.zeros(vol.shape, np.uint8)
    mask[2, 12:16, 14:20] = 1
    lung = np.zeros(vol.shape, np.uint8)
    lung[:, 10:30, 12:24] = 1
    enc = wire.encode_study(vol, mask, lung)
    g = enc.geometry
    assert (g["n"], g["height"], g["width"]) == vol.shape
    r0, r1, c0, c1 = g["crop"]
    assert (r0, r1, c0, c1) == (8, 32, 10, 38) and g["fill"] == -2048
    assert enc.nbytes < enc.raw_bytes
    back = wire.decode_volume(g, enc.blob)
    assert back.dtype == np.int16 and np.array_equal(back, vol)
    labels = wire.decode_labels(g, enc.blob)
    assert np.array_equal(labels & wire.LESION_BIT, mask) and np.array_equal((labels & wire.LUNG_BIT) > 0, lung > 0)
    assert g["has_mask"] and g["has_lung"]


def test_slices_are_low_bytes_and_a_zlib_stream_of_high_bytes():
    """The browser inflates the high bytes with DecompressionStream('deflate') (RFC 1950) and joins them with
    the low bytes (raw for noise, zlib when a sample compresses)."""
    vol = _volume(z=2)
    enc = wire.encode_study(vol)
    r0, r1, c0, c1 = enc.geometry["crop"]
    off, n_lo, n_hi, lo_zlib = enc.geometry["slices"][1]
    assert lo_zlib == 0 and n_lo == (r1 - r0) * (c1 - c0)  # noise: the low bytes go as they are
    lo = np.frombuffer(enc.blob[off : off + n_lo], np.uint8)
    hi = np.frombuffer(zlib.decompress(enc.blob[off + n_lo : off + n_lo + n_hi]), np.uint8)
    vals = (lo.astype(np.int32) | (hi.astype(np.int32) << 8)).astype(np.uint16).view(np.int16)
    assert np.array_equal(vals.reshape(r1 - r0, c1 - c0), vol[1, r0:r1, c0:c1])
    assert enc.geometry["labels"] == [None, None] and not enc.geometry["has_mask"]
    smooth = np.tile((np.arange(48, dtype=np.int16) * 20 - 500)[None, None, :], (3, 40, 1))
    enc2 = wire.encode_study(smooth)  # smooth data: the low bytes compress
    assert all(ref[3] == 1 for ref in enc2.geometry["slices"])
    assert np.array_equal(wire.decode_volume(enc2.geometry, enc2.blob), smooth)


def test_labels_only_where_a_slice_has_any_and_withheld_mask_sends_nothing():
    vol = _volume(z=4)
    mask = np.zeros(vol.shape, np.uint8)
    mask[1, 12:14, 14:16] = 1
    enc = wire.encode_study(vol, mask)
    assert [ref is not None for ref in enc.geometry["labels"]] == [False, True, False, False]
    quiz = wire.encode_study(vol, None, None)  # the quiz before the answer: no label stream at all
    assert quiz.geometry["labels"] == [None] * 4 and not quiz.geometry["has_mask"]
    assert not wire.decode_labels(quiz.geometry, quiz.blob).any()


def test_all_air_keeps_the_full_frame_and_one_slice_works():
    vol = np.full((1, 7, 9), -1000, np.int16)
    enc = wire.encode_study(vol)
    assert enc.geometry["fill"] == -1000 and enc.nbytes < 40
    noisy = np.random.default_rng(1).integers(-1010, -990, (2, 7, 9)).astype(np.int16)
    assert wire.encode_study(noisy).geometry["crop"] == [0, 7, 0, 9]  # noise everywhere: the full frame
    assert np.array_equal(wire.decode_volume(enc.geometry, enc.blob), vol)


def test_pack_unpack_and_bad_input():
    payload = wire.pack({"a": 1}, b"xyz")
    assert wire.unpack(payload) == ({"a": 1}, b"xyz")
    assert wire.unpack(wire.pack({"a": 2})) == ({"a": 2}, b"")
    with pytest.raises(ValueError, match="bad magic"):
        wire.unpack(b"MSV1" + payload[4:])
    with pytest.raises(ValueError, match="truncated"):
        wire.unpack(payload[:10])
    with pytest.raises(ValueError, match="Out of range float"):
        wire.pack({"x": float("nan")})
    with pytest.raises(ValueError, match="int16"):
        wire.encode_study(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        wire.encode_study(np.zeros((0, 3, 3), np.int16))
    with pytest.raises(ValueError, match="mask shape"):
        wire.encode_study(np.zeros((2, 3, 3), np.int16), np.zeros((2, 3, 4), np.uint8))


def test_memmap_volume_is_read_slice_by_slice(tmp_path):
    vol = _volume(z=6)
    path = tmp_path / "v.npy"
    np.save(path, vol)
    mm = np.load(path, mmap_mode="r")
    enc = wire.encode_study(mm)
    assert np.array_equal(wire.decode_volume(enc.geometry, enc.blob), vol)


def test_subset_holds_only_the_slices_asked_for():
    vol = _volume(z=6)
    mask = np.zeros(vol.shape, np.uint8)
    mask[3, 12:14, 14:16] = 1
    enc = wire.encode_study(vol, mask, compact=True)
    slices, labels, blob = wire.subset(enc.geometry, enc.blob, 2, 4)
    assert [r is not None for r in slices] == [False, False, True, True, True, False]
    assert [r is not None for r in labels] == [False, False, False, True, False, False]
    part = {**enc.geometry, "slices": slices, "labels": labels}
    assert np.array_equal(wire.decode_volume(part, blob)[2:5], vol[2:5])
    assert np.array_equal(wire.decode_labels(part, blob)[3] & 1, mask[3])
    assert len(blob) < enc.nbytes
