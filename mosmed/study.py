"""An opened study: display arrays, geometry, statistics and warnings, as the app and the CLI use it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mosmed.analysis import stats_from_doc
from mosmed.cache.store import StudyEntry
from mosmed.measurements import StudyStats

__all__ = ["Study"]


@dataclass(frozen=True, eq=False)
class Study:
    """One opened study, in display orientation (see docs/ARCHITECTURE.md).

    ``volume``/``mask``/``lung`` are read-only memory maps when ``from_cache`` is True: never write into them.
    A study read straight from its files before it is measured (``Dataset.read_study``) has ``lung`` and
    ``stats`` None: its volume and mask are shown while the cache entry is built.
    """

    study_id: int
    category: str
    volume: np.ndarray
    mask: np.ndarray | None
    lung: np.ndarray | None
    spacing: tuple[float, float, float]
    slice_z_mm: np.ndarray
    stats: StudyStats | None
    warnings: list[str]
    source_axcodes: tuple[str, ...]
    cache_key: str
    from_cache: bool
    summary: dict = field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: StudyEntry, category: str) -> Study:
        """The study of a cache entry that is ok (its stats document and arrays); ``category`` from the registry
        as it is now (the stats may predate a relabelled row)."""
        doc, arrays = entry.stats, entry.arrays
        if entry.status != "ok" or arrays is None:
            raise ValueError(f"study {entry.study_id}: entry is not usable ({entry.error or entry.status})")
        return cls(
            study_id=int(doc["study_id"]),
            category=category,
            volume=arrays.volume,
            mask=arrays.mask,
            lung=arrays.lung,
            spacing=tuple(float(s) for s in doc["spacing"]),  # type: ignore[arg-type]
            slice_z_mm=np.asarray(doc.get("slice_z_mm") or [], dtype=float),
            stats=stats_from_doc(doc),
            warnings=list(doc.get("warnings") or []),
            source_axcodes=tuple(doc.get("source_axcodes") or ()),
            cache_key=str(doc["key"]),
            from_cache=bool(arrays.from_cache),
            summary=dict(doc.get("summary") or {}),
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.volume.shape)  # type: ignore[return-value]

    @property
    def n_slices(self) -> int:
        return int(self.volume.shape[0])

    @property
    def has_mask(self) -> bool:
        return self.mask is not None

    @property
    def measured(self) -> bool:
        """Lungs segmented and statistics computed (False for a study read straight from its files)."""
        return self.stats is not None

    @property
    def lesion_area_mm2(self) -> np.ndarray | None:
        """Lesion area per axial slice (mm²): from the statistics, else counted from the mask, else None."""
        if self.stats is not None and self.stats.lesion_area_mm2 is not None:
            return np.asarray(self.stats.lesion_area_mm2, dtype=float)
        if self.mask is None:
            return None
        _, dy, dx = self.spacing
        counts = np.asarray(self.mask).reshape(self.mask.shape[0], -1).sum(axis=1, dtype=np.int64)
        return counts * float(dy) * float(dx)
