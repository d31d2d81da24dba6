"""Strict, canonical JSON for files the cache writes: NaN/inf become null, keys sorted, fixed separators, so
equal inputs give byte-identical files (the kill tests compare files byte for byte)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["to_jsonable", "dumps", "roundtrip"]


def to_jsonable(value: Any) -> Any:
    """Plain JSON values (numpy scalars and arrays, paths, tuples); NaN/inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError, ImportError):
        pass
    return str(value)


def dumps(obj: Any) -> bytes:
    """Canonical UTF-8 JSON bytes of ``obj``."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def roundtrip(obj: Any) -> Any:
    """``obj`` as a later reader of its file gets it (tuples -> lists, numpy -> Python, NaN -> None)."""
    return json.loads(dumps(obj))
