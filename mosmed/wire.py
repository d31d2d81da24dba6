"""The study on the wire: int16 HU and label volumes packed once for the browser viewer (no Streamlit here).

The viewer (components/viewer.py and its JavaScript) gets a study's data exactly once and computes everything
from it in the browser: windowing, overlays, reformats, slabs, readouts. This module is the encoding, beside
the renderer (:mod:`mosmed.render`) whose display orientation it shares.

Format
------
One ``bytes`` payload::

    b"MSV2" | uint32 little-endian header length N | N bytes of UTF-8 JSON header | blob area

The JSON header describes the geometry and lists ``[offset, length]`` references into the blob area:

- ``crop``: ``[r0, r1, c0, c1]``, the in-plane box sent; outside it every voxel of every slice equals ``fill``
  (a scanner's padding outside its field of view), which the browser writes there: lossless. The box is the
  same on every slice, so voxel indices in the browser are those of the full ``(Z, H, W)`` display volume.
- ``slices``: per axial slice ``[offset, low length, high length, low is zlib]``: the cropped int16 HU split
  into its low bytes and its high bytes (little-endian). The high bytes (the HU's coarse part: body, lung,
  air) always go as a zlib stream (RFC 1950, what the browser's ``DecompressionStream("deflate")`` reads):
  they shrink twentyfold for a tenth of the time. CT noise makes the low bytes nearly incompressible:
  measured on a 43 x 512 x 512 study, zlib level 1 takes 440 ms to shrink them by a quarter (10.8 -> 8.0 MB)
  where the high bytes take 52 ms (10.8 -> 0.5 MB); so the low bytes go as they are unless a sample of the
  slice shows they compress well (padding, smooth phantoms), which halves the encode of a study. Per-slice
  streams let the browser decode the slice on screen first and the others outward from it.
- ``labels``: one reference per axial slice (or ``null`` when the slice has no label) to a zlib stream of the
  cropped uint8 label slice: bit 0 the lesion mask, bit 1 the lung mask.

Lossless: the browser reconstructs the int16 values exactly (tests/test_viewer_wire.py decodes them back).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MAGIC",
    "LESION_BIT",
    "LUNG_BIT",
    "EncodedStudy",
    "body_box",
    "decode_labels",
    "decode_volume",
    "encode_study",
    "subset",
    "pack",
    "unpack",
]

MAGIC = b"MSV2"
LESION_BIT = 1
LUNG_BIT = 2
ZLIB_LEVEL = 1
_THREADS = 2  # zlib releases the GIL: two threads halve the encode on the 2-core machines this runs on


@dataclass(frozen=True)
class EncodedStudy:
    """A study's volume and labels, compressed for the browser.

    Attributes
    ----------
    geometry : dict
        The header part that describes the data (``n``, ``height``, ``width``, ``crop``, ``fill``, ``slices``,
        ``labels``, ``has_mask``, ``has_lung``); references point into ``blob``.
    blob : bytes
        The compressed slices and label slices, concatenated.
    raw_bytes : int
        Size of the uncompressed int16 volume (for figures).
    """

    geometry: dict
    blob: bytes
    raw_bytes: int

    @property
    def nbytes(self) -> int:
        return len(self.blob)


def body_box(volume: np.ndarray, fill: int, labels: Sequence[np.ndarray | None] = ()) -> tuple[int, int, int, int]:
    """In-plane box ``(r0, r1, c0, c1)`` (end exclusive) outside which every voxel equals ``fill`` and no label
    is set, on every slice: cropping to it is lossless.

    Scanners pad the corners outside their field of view with one value (-2048 or -1024), so real studies crop
    by a third or more; a volume whose air is noise everywhere keeps its full frame. Read slice by slice (a
    memory map is never loaded whole).
    """
    if volume.ndim != 3 or 0 in volume.shape:
        raise ValueError(f"volume must be a non-empty (Z, H, W) array, got shape {tuple(volume.shape)}")
    z, h, w = (int(s) for s in volume.shape)
    rows = np.zeros(h, bool)
    cols = np.zeros(w, bool)
    for k in range(z):
        sl = np.asarray(volume[k]) != fill
        rows |= sl.any(axis=1)
        cols |= sl.any(axis=0)
        for lab in labels:
            if lab is not None:
                m = np.asarray(lab[k]) > 0
                rows |= m.any(axis=1)
                cols |= m.any(axis=0)
    if not rows.any():
        return 0, min(h, 1), 0, min(w, 1)
    r = np.flatnonzero(rows)
    c = np.flatnonzero(cols)
    return int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1


#: Low bytes are compressed only when a sample shrinks below this fraction (noise does not).
LOW_ZLIB_BELOW = 0.8


def _split(a: np.ndarray) -> tuple[bytes, bytes]:
    b = np.ascontiguousarray(a, dtype="<i2").view(np.uint8).reshape(-1, 2)
    return b[:, 0].tobytes(), b[:, 1].tobytes()


def _low_stream(lo: bytes, level: int, compact: bool) -> tuple[bytes, bool]:
    n = len(lo)
    sample = lo[n // 2 - min(n // 2, 8192) : n // 2 + min(n // 2, 8192)]
    if compact or (sample and len(zlib.compress(sample, level)) < LOW_ZLIB_BELOW * len(sample)):
        packed = zlib.compress(lo, level)
        if len(packed) < len(lo):
            return packed, True
    return lo, False


def _join(lo: bytes, hi: bytes, shape: tuple[int, int]) -> np.ndarray:
    n = shape[0] * shape[1]
    if len(lo) != n or len(hi) != n:
        raise ValueError(f"slice holds {len(lo)} + {len(hi)} bytes, expected {n} + {n}")
    out = np.empty((n, 2), np.uint8)
    out[:, 0] = np.frombuffer(lo, np.uint8)
    out[:, 1] = np.frombuffer(hi, np.uint8)
    return out.view("<i2").reshape(shape).astype(np.int16)


def encode_study(
    volume: np.ndarray,
    mask: np.ndarray | None = None,
    lung: np.ndarray | None = None,
    *,
    level: int = ZLIB_LEVEL,
    threads: int = _THREADS,
    compact: bool = False,
) -> EncodedStudy:
    """Compress a display volume (``(Z, H, W)`` int16 HU) and its labels for the browser.

    Parameters
    ----------
    volume : numpy.ndarray
        Display-orientation HU volume (memory maps are read slice by slice).
    mask, lung : numpy.ndarray, optional
        Lesion and lung masks on the same grid (non-zero = set). ``None`` leaves that label out; a quiz passes
        no mask before the answer, so nothing about the lesions reaches the browser.
    level : int
        zlib level (1 is the measured best trade: level 6 saves 3 % more at three times the time).
    threads : int
        Worker threads for the per-slice streams.
    compact : bool
        Compress the low bytes too, wherever that saves anything: about a quarter fewer bytes for about eight
        times the encoding time (for a background encode, where nobody waits for it).

    Returns
    -------
    EncodedStudy
    """
    if volume.ndim != 3 or 0 in volume.shape:
        raise ValueError(f"volume must be a non-empty (Z, H, W) array, got shape {tuple(volume.shape)}")
    shape = tuple(int(s) for s in volume.shape)
    for name, arr in (("mask", mask), ("lung mask", lung)):
        if arr is not None and tuple(arr.shape) != shape:
            raise ValueError(f"{name} shape {tuple(arr.shape)} differs from volume shape {shape}")
    if volume.dtype != np.int16:
        raise ValueError(f"volume must be int16 HU (display form), got {volume.dtype}")
    z, h, w = shape
    # The padding value: the corner voxel's value when it is the volume's minimum (a scanner's padding reads
    # as the lowest value), else the minimum of a few slices. Whatever it is, the crop below stays lossless.
    fill = int(min(int(np.asarray(volume[k]).min()) for k in (0, z // 2, z - 1)))
    r0, r1, c0, c1 = body_box(volume, fill, (mask, lung))

    def one(k: int) -> tuple[tuple[bytes, bytes, bool], bytes | None]:
        lo, hi = _split(np.asarray(volume[k, r0:r1, c0:c1]))
        lo, lo_zlib = _low_stream(lo, level, compact)
        hu = (lo, zlib.compress(hi, level), lo_zlib)
        lab = None
        if mask is not None or lung is not None:
            packed = np.zeros((r1 - r0, c1 - c0), np.uint8)
            if mask is not None:
                packed |= (np.asarray(mask[k, r0:r1, c0:c1]) > 0).astype(np.uint8) * LESION_BIT
            if lung is not None:
                packed |= (np.asarray(lung[k, r0:r1, c0:c1]) > 0).astype(np.uint8) * LUNG_BIT
            if packed.any():
                lab = zlib.compress(packed.tobytes(), 6)  # labels are tiny at any level; 6 costs nothing here
        return hu, lab

    if z < 4 or threads <= 1:
        parts = [one(k) for k in range(z)]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(pool.map(one, range(z)))
    chunks: list[bytes] = []
    offset = 0
    slices: list[list[int]] = []
    labels: list[list[int] | None] = []
    for (lo, hi, lo_zlib), lab in parts:
        slices.append([offset, len(lo), len(hi), int(lo_zlib)])
        chunks += [lo, hi]
        offset += len(lo) + len(hi)
        if lab is None:
            labels.append(None)
        else:
            labels.append([offset, len(lab)])
            chunks.append(lab)
            offset += len(lab)
    geometry = {
        "n": z,
        "height": h,
        "width": w,
        "crop": [r0, r1, c0, c1],
        "fill": fill,
        "slices": slices,
        "labels": labels,
        "has_mask": mask is not None,
        "has_lung": lung is not None,
        "encoding": "int16-le-split-bytes",
    }
    return EncodedStudy(geometry=geometry, blob=b"".join(chunks), raw_bytes=z * h * w * 2)


def subset(geometry: dict[str, Any], blob: bytes, lo: int, hi: int) -> tuple[list, list, bytes]:
    """``(slices, labels, blob)`` holding only slices ``lo..hi`` (the others ``None``): a first, small payload."""
    n = int(geometry["n"])
    slices: list = [None] * n
    labels: list = [None] * n
    parts, off = [], 0
    for k in range(max(0, lo), min(n - 1, hi) + 1):
        o, n_lo, n_hi, lz = geometry["slices"][k]
        parts.append(blob[o : o + n_lo + n_hi])
        slices[k] = [off, n_lo, n_hi, lz]
        off += n_lo + n_hi
        ref = geometry["labels"][k]
        if ref is not None:
            parts.append(blob[ref[0] : ref[0] + ref[1]])
            labels[k] = [off, ref[1]]
            off += ref[1]
    return slices, labels, b"".join(parts)


def pack(header: dict[str, Any], blob: bytes | None = None) -> bytes:
    """``MAGIC | u32 header length | JSON header | blob`` (the blob may be absent: a header-only payload)."""
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return b"".join((MAGIC, struct.pack("<I", len(head)), head, blob or b""))


def unpack(payload: bytes) -> tuple[dict[str, Any], bytes]:
    """Inverse of :func:`pack`: ``(header, blob area)``."""
    if len(payload) < 8 or payload[:4] != MAGIC:
        raise ValueError("not a viewer payload (bad magic)")
    (n,) = struct.unpack("<I", payload[4:8])
    if 8 + n > len(payload):
        raise ValueError("viewer payload is truncated (header longer than the payload)")
    return json.loads(payload[8 : 8 + n].decode("utf-8")), payload[8 + n :]


def _chunk(blob: bytes, ref: Sequence[int]) -> bytes:
    off, n = int(ref[0]), int(ref[1])
    return zlib.decompress(blob[off : off + n])


def decode_volume(geometry: dict[str, Any], blob: bytes) -> np.ndarray:
    """Rebuild the full ``(Z, H, W)`` int16 volume from an encoding (what the browser does; for tests and tools)."""
    z, h, w = int(geometry["n"]), int(geometry["height"]), int(geometry["width"])
    r0, r1, c0, c1 = (int(v) for v in geometry["crop"])
    out = np.full((z, h, w), int(geometry["fill"]), np.int16)
    for k, ref in enumerate(geometry["slices"]):
        if ref is None:  # a partial payload (see subset): that slice is not in it
            continue
        off, n_lo, n_hi, lo_zlib = ref
        lo = blob[off : off + n_lo]
        lo = zlib.decompress(lo) if lo_zlib else lo
        hi = zlib.decompress(blob[off + n_lo : off + n_lo + n_hi])
        out[k, r0:r1, c0:c1] = _join(lo, hi, (r1 - r0, c1 - c0))
    return out


def decode_labels(geometry: dict[str, Any], blob: bytes) -> np.ndarray:
    """Rebuild the ``(Z, H, W)`` uint8 label volume (bit 0 lesion, bit 1 lung)."""
    z, h, w = int(geometry["n"]), int(geometry["height"]), int(geometry["width"])
    r0, r1, c0, c1 = (int(v) for v in geometry["crop"])
    out = np.zeros((z, h, w), np.uint8)
    for k, ref in enumerate(geometry["labels"]):
        if ref is not None:
            out[k, r0:r1, c0:c1] = np.frombuffer(_chunk(blob, ref), np.uint8).reshape(r1 - r0, c1 - c0)
    return out
