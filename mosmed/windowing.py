"""CT windows: presets, parsing of user text, and Hounsfield units to 8-bit grey.

A window maps the HU interval ``[level - width/2, level + width/2]`` linearly onto 0..255 and clips outside it.
For ``int16`` volumes (every display volume, see ``docs/ARCHITECTURE.md``) the mapping is a 65536-entry ``uint8``
lookup table indexed by the raw 16-bit pattern of each voxel: one gather per voxel, no float temporaries.
Measured here (numpy 2.4, 2-core VM): a 512x512 slice takes 0.11 ms by table and 0.13 ms by float32 math (numpy's
SIMD float path is good, so the table is not the tenfold win older numpy gave), a 45x512x512 volume 11.5 ms by
table against 22 ms by float math and no 47 MB float32 temporary. Building a table costs 0.04 ms and the last 32
are memoised (read-only arrays, safe to share between threads).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

import numpy as np

__all__ = [
    "Window",
    "PRESETS",
    "PRESET_LABELS",
    "LEVEL_RANGE",
    "WIDTH_RANGE",
    "parse_window",
    "window_to_text",
    "window_lut",
    "apply_window",
]

# Anything outside these is a typo or an attack, not a CT window: HU live in about -1024..3071 (4095 for
# metal), so a width of 10000 already shows everything and a level beyond -2000..5000 shows a blank image.
LEVEL_RANGE: tuple[float, float] = (-2000.0, 5000.0)
WIDTH_RANGE: tuple[float, float] = (1.0, 10000.0)


@dataclass(frozen=True)
class Window:
    """A CT display window.

    Parameters
    ----------
    level : float
        Centre of the window in HU.
    width : float
        Width of the window in HU. ``width <= 0`` is allowed and means a hard threshold at ``level``.
    name : str, optional
        Preset key (``"lung"``...) when the window is a preset, else ``None``.
    """

    level: float
    width: float
    name: str | None = None

    def __post_init__(self) -> None:
        # A NaN level would silently render an all-black image; refuse it where it is made.
        if not (math.isfinite(self.level) and math.isfinite(self.width)):
            raise ValueError(
                f"window level and width must be finite numbers, got level={self.level}, width={self.width}"
            )

    @property
    def lower(self) -> float:
        """Lowest HU shown above black."""
        return self.level - self.width / 2.0

    @property
    def upper(self) -> float:
        """Highest HU shown below white."""
        return self.level + self.width / 2.0


PRESETS: Mapping[str, Window] = MappingProxyType(
    {
        "lung": Window(-600.0, 1500.0, "lung"),
        "mediastinum": Window(50.0, 350.0, "mediastinum"),
        "soft": Window(40.0, 400.0, "soft"),
        "bone": Window(480.0, 2500.0, "bone"),
    }
)
PRESET_LABELS: Mapping[str, str] = MappingProxyType(
    {"lung": "Lung", "mediastinum": "Mediastinum", "soft": "Soft tissue", "bone": "Bone"}
)

# Spellings people type for the presets, beyond the keys themselves.
_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "lungs": "lung",
        "pulmonary": "lung",
        "mediastinal": "mediastinum",
        "mediastinum": "mediastinum",
        "soft tissue": "soft",
        "soft-tissue": "soft",
        "soft_tissue": "soft",
        "softtissue": "soft",
        "tissue": "soft",
        "abdomen": "soft",
        "bones": "bone",
    }
)
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_LEVEL_WIDTH = re.compile(rf"^\s*({_NUMBER})\s*[,;/ ]\s*({_NUMBER})\s*$")
_MAX_TEXT = 64


def parse_window(text: str) -> Window:
    """Parse a preset name or ``"LEVEL,WIDTH"`` into a :class:`Window`.

    Parameters
    ----------
    text : str
        ``"lung"``, ``"mediastinum"``, ``"soft"`` (or ``"soft tissue"``), ``"bone"``, case-insensitive; or two
        numbers ``"LEVEL,WIDTH"`` in HU such as ``"-600,1500"`` (a semicolon, slash or space also separates).

    Returns
    -------
    Window
        The preset (with its ``name``) or a custom window (``name=None``).

    Raises
    ------
    ValueError
        With the reason: not text, empty, unknown preset, not two numbers, not finite, or out of range
        (level -2000..5000 HU, width 1..10000 HU).
    """
    if not isinstance(text, str):
        raise ValueError(f"window must be text such as 'lung' or '-600,1500', got {type(text).__name__}")
    raw = text.strip()
    if not raw:
        raise ValueError("window is empty: use a preset (lung, mediastinum, soft, bone) or LEVEL,WIDTH")
    if len(raw) > _MAX_TEXT:
        raise ValueError(f"window text is too long ({len(raw)} characters)")
    key = raw.lower()
    key = _ALIASES.get(key, key)
    if key in PRESETS:
        return PRESETS[key]
    if "nan" in key or "inf" in key:
        raise ValueError(f"window {raw!r}: level and width must be finite numbers (NaN and infinity are not)")
    match = _LEVEL_WIDTH.match(raw)
    if match is None:
        raise ValueError(
            f"window {raw!r} is neither a preset (lung, mediastinum, soft, bone) nor LEVEL,WIDTH such as -600,1500"
        )
    level, width = float(match.group(1)), float(match.group(2))
    if not (math.isfinite(level) and math.isfinite(width)):
        raise ValueError(f"window {raw!r}: level and width must be finite numbers")
    lo, hi = LEVEL_RANGE
    if not lo <= level <= hi:
        raise ValueError(f"window {raw!r}: level {level:g} HU is outside {lo:g}..{hi:g} HU")
    lo, hi = WIDTH_RANGE
    if not lo <= width <= hi:
        raise ValueError(f"window {raw!r}: width {width:g} HU is outside {lo:g}..{hi:g} HU")
    for preset in PRESETS.values():
        if preset.level == level and preset.width == width:
            return preset
    return Window(level, width)


def window_to_text(w: Window) -> str:
    """Text that :func:`parse_window` turns back into ``w``: the preset key, else ``"LEVEL,WIDTH"``."""
    for name, preset in PRESETS.items():
        if preset.level == w.level and preset.width == w.width:
            return name
    return f"{w.level:g},{w.width:g}"


def _window_float(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Reference float mapping; also the path for float and wide integer inputs."""
    x = np.asarray(hu, dtype=np.float32)
    nan = np.isnan(x) if np.issubdtype(np.asarray(hu).dtype, np.floating) else None
    if width <= 0:
        out = (x >= level).astype(np.uint8)
        out *= 255
    else:
        lo = level - width / 2.0
        y = (x - np.float32(lo)) * np.float32(255.0 / width)
        np.clip(y, 0.0, 255.0, out=y)
        if nan is not None and nan.any():
            y[nan] = 0.0  # NaN would cast to an arbitrary byte; show it as black
        out = np.rint(y).astype(np.uint8)
    return out


@lru_cache(maxsize=32)
def _lut(level: float, width: float) -> np.ndarray:
    # Entry i is the grey of the int16 whose bit pattern is the uint16 i, so an int16 array viewed as uint16 indexes
    # it directly (no +32768 pass over the image). The table is read-only, so the memo is safe to share.
    values = np.arange(65536, dtype=np.uint16).view(np.int16)
    table = _window_float(values, level, width)
    table.setflags(write=False)
    return table


def window_lut(window: Window) -> np.ndarray:
    """The read-only 65536-entry ``uint8`` table for ``window``, indexed by ``int16`` HU viewed as ``uint16``."""
    return _lut(float(window.level), float(window.width))


def apply_window(hu: np.ndarray, window: Window) -> np.ndarray:
    """Map Hounsfield units to 8-bit grey through a window.

    Parameters
    ----------
    hu : numpy.ndarray
        Any shape. ``int16`` (the fast path, memmaps included), other integer types or floats (NaN -> 0).
    window : Window
        Level and width in HU. ``width <= 0`` is a hard threshold: ``hu >= level`` is white, the rest black.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of the same shape, 0 at or below ``window.lower``, 255 at or above ``window.upper``.
    """
    arr = np.asarray(hu)
    if arr.dtype == np.int16:
        # Same-size dtype views work for any strides, so memmaps and coronal/sagittal views need no copy.
        # np.take with mode="wrap" skips the bounds check (a uint16 index is always < 65536).
        return np.take(window_lut(window), arr.view(np.uint16), mode="wrap")
    if arr.dtype in (np.uint8, np.int8):
        return np.take(window_lut(window), arr.astype(np.int16).view(np.uint16), mode="wrap")
    if arr.dtype == np.bool_:
        return _window_float(arr.astype(np.float32), float(window.level), float(window.width))
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"cannot window an array of dtype {arr.dtype}: expected integer or float HU")
    return _window_float(arr, float(window.level), float(window.width))
