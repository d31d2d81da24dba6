"""One study's display arrays in the cache: written on a background thread, loaded as read-only memory maps.

An arrays entry is a folder ``arrays/study_0001-<key>/`` holding ``volume.npy`` (int16), ``lung.npy`` and, when
the study has one, ``mask.npy`` (uint8), a ``meta.json`` (cache version, key, shape, dtype and byte size of
every array) and a ``last_used`` stamp for eviction. It is built under a temporary name and renamed into
place; a reader accepts it only when the meta and every array agree.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mosmed.atomic import atomic_write_bytes, fsync_dir, publish_dir, remove_tree, tmp_name
from mosmed.cache.keys import CACHE_VERSION, entry_stem
from mosmed.jsonio import dumps

__all__ = ["ARRAY_NAMES", "ARRAY_DTYPES", "StudyArrays", "ArrayWriter", "load_arrays"]

ARRAY_NAMES = ("volume", "mask", "lung")
ARRAY_DTYPES = {"volume": "int16", "mask": "uint8", "lung": "uint8"}


@dataclass
class StudyArrays:
    """Display-orientation arrays of one study (memory-mapped read-only when they come from the cache)."""

    volume: np.ndarray
    mask: np.ndarray | None
    lung: np.ndarray
    key: str
    from_cache: bool = True

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in (self.volume, self.mask, self.lung) if a is not None))


class ArrayWriter:
    """Writes one study's arrays into a ``.tmp-*`` folder on a background thread, then renames it into place.

    Why a thread: the volume can go to disk while the lungs are being segmented (file writes and most numpy
    work release the GIL), so writing the cache costs little beyond reading the source.
    """

    def __init__(self, arrays_dir: Path, study_id: int, key: str) -> None:
        self.arrays_dir = arrays_dir
        self.final = arrays_dir / entry_stem(study_id, key)
        self.tmp = arrays_dir / tmp_name(self.final.name)
        self.tmp.mkdir()
        self.meta: dict = {"cache_version": CACHE_VERSION, "key": key, "study_id": study_id, "arrays": {}}
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mosmed-npy")
        self._futures: list[cf.Future] = []

    def submit(self, name: str, arr: np.ndarray | None) -> None:
        if arr is None:
            return
        arr = np.ascontiguousarray(arr, dtype=ARRAY_DTYPES[name])  # no copy when already right
        self._futures.append(self._pool.submit(self._write, name, arr))

    def _write(self, name: str, arr: np.ndarray) -> None:
        path = self.tmp / f"{name}.npy"
        with open(path, "wb") as f:
            np.save(f, arr, allow_pickle=False)  # header + one tofile: no extra copy
            # No fsync for the array files (it was ~0.2-0.3 s of a ~0.8 s build: 40 MB forced to the device).
            # Why it stays safe: the folder is only renamed into place after every write returned, so a killed
            # process leaves ``.tmp-*`` debris, never a valid-looking entry. For a power loss, readers
            # (load_arrays) check every array's byte size against meta.json, and meta.json is written and
            # fsynced LAST (then the folder): a lost or truncated array reads as missing and is rebuilt. On
            # filesystems that order data before metadata (ext4 data=ordered, the default; xfs, btrfs) a right
            # size implies the data reached the disk; elsewhere a power loss at the wrong moment could leave
            # zeroed pixels of the right size, which `make clean-cache` clears (all of this is derived data).
        self.meta["arrays"][name] = {
            "shape": list(arr.shape),
            "dtype": str(arr.dtype),
            "file_bytes": os.stat(path).st_size,
        }

    def finish(self) -> bool:
        """Complete the folder and rename it into place; False when another process's copy won."""
        try:
            for fut in self._futures:
                fut.result()
            self._pool.shutdown(wait=True)
            atomic_write_bytes(self.tmp / "meta.json", dumps(self.meta))
            (self.tmp / "last_used").touch()
            fsync_dir(self.tmp)
            if self.final.exists():
                if load_arrays(self.final, self.meta["key"]) is not None:
                    remove_tree(self.tmp)  # another process got there first
                    return False
                remove_tree(self.final)  # a damaged leftover under the final name
            return publish_dir(self.tmp, self.final)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        for fut in self._futures:
            fut.cancel()
        self._pool.shutdown(wait=True)
        remove_tree(self.tmp)


def load_arrays(d: Path, key: str) -> StudyArrays | None:
    """Open an arrays folder as read-only memory maps after checking its meta; None when anything is off."""
    try:
        meta = json.loads((d / "meta.json").read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("cache_version") != CACHE_VERSION or meta.get("key") != key:
        return None
    arrays_meta = meta.get("arrays")
    if not isinstance(arrays_meta, dict) or "volume" not in arrays_meta or "lung" not in arrays_meta:
        return None
    out: dict[str, np.ndarray | None] = {"mask": None}
    shape0 = None
    for name, info in arrays_meta.items():
        if name not in ARRAY_NAMES or not isinstance(info, dict):
            return None
        path = d / f"{name}.npy"
        try:
            if os.stat(path).st_size != info.get("file_bytes"):
                return None
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if (
            list(arr.shape) != info.get("shape")
            or str(arr.dtype) != info.get("dtype")
            or str(arr.dtype) != ARRAY_DTYPES[name]
            or arr.ndim != 3
            or not arr.flags.c_contiguous
        ):
            return None
        if shape0 is None:
            shape0 = arr.shape
        elif arr.shape != shape0:
            return None
        out[name] = arr
    return StudyArrays(volume=out["volume"], mask=out["mask"], lung=out["lung"], key=key, from_cache=True)
