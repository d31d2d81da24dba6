"""Dataset identity: which dataset a review belongs to, so two datasets never mix.

The identity is a SHA-256 digest of the registry rows ``(study_id, category, study_file, mask_file)``, in study
id order, plus the byte size of each study file that is present. So it

- stays the same when the dataset folder is moved or copied (only registry text and sizes count, no paths),
  and when the demo is regenerated (it is seeded);
- differs for a synthetic replica of the real registry (same rows, other study files, other sizes), and for
  a registry whose rows or classes were edited;
- changes when a study file is added, removed or replaced by one of another size (reviews made before stay
  in the database under the old identity: ``python -m mosmed review export`` lists them per identity).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IDENTITY_VERSION", "DatasetIdentity", "dataset_identity", "identity_of_rows"]

#: Part of the digest: a change of the recipe gives every dataset a new identity (never reuse old ones).
IDENTITY_VERSION = "mosmed-review-identity-v1"


@dataclass(frozen=True)
class DatasetIdentity:
    """``digest`` keys the reviews; ``label`` (the folder name) and ``n_studies`` are only shown."""

    digest: str
    label: str
    n_studies: int

    @property
    def short(self) -> str:
        return self.digest[:12]


def _text(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def identity_of_rows(rows) -> str:
    """Digest of ``(study_id, category, study_file, mask_file, study_size)`` tuples (size ``None`` = absent)."""
    h = hashlib.sha256(IDENTITY_VERSION.encode() + b"\n")
    for sid, cat, sfile, mfile, size in sorted(rows, key=lambda r: int(r[0])):
        line = "\t".join(
            (str(int(sid)), _text(cat), _text(sfile), _text(mfile), "-" if size is None else str(int(size)))
        )
        h.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def _size(path: object) -> int | None:
    if not isinstance(path, (str, Path)) or not str(path):
        return None
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def dataset_identity(registry) -> DatasetIdentity:
    """The identity of an open registry (``mosmed.registry.Registry``: its ``df`` and ``root``).

    Uses the columns ``study_id``, ``category``, ``study_file``, ``mask_file`` and the checked ``study_path``
    (sizes are read with one ``stat`` per study: ~1110 stats for MosMedData, a few milliseconds).
    """
    df = registry.df
    paths = df["study_path"] if "study_path" in df.columns else [None] * len(df)
    rows = [
        (int(sid), cat, sf, mf, _size(p))
        for sid, cat, sf, mf, p in zip(df["study_id"], df["category"], df["study_file"], df["mask_file"], paths)
    ]
    root = Path(registry.root)
    return DatasetIdentity(digest=identity_of_rows(rows), label=(root.name or str(root))[:200], n_studies=len(rows))
