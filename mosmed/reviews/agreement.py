"""Inter-reader agreement: Cohen's kappa (unweighted and linear-weighted) with a 95 % interval, and the
confusion matrices behind it. Pure numpy / pandas.

Kappa compares two raters on the studies both graded CT-0..CT-4 ("cannot grade" and ungraded studies are
left out, and ``n`` says how many were used). The categories are always the five classes in order, so the
linear weights ``w_ij = 1 - |i - j| / 4`` mean the same in every comparison.

The interval is kappa ± 1.96 · SE with the large-sample standard error of Fleiss, Cohen & Everitt (1969),
"Large sample standard errors of kappa and weighted kappa", Psychological Bulletin 72(5):323-327::

    var = [ Σ_ij p_ij (w_ij - (w̄_i. + w̄_.j)(1 - κ))² - (κ - p_e (1 - κ))² ] / (n (1 - p_e)²)

with ``w̄_i. = Σ_j p_.j w_ij`` and ``w̄_.j = Σ_i p_i. w_ij`` (the identity matrix as ``w`` for unweighted kappa),
clipped to [-1, 1].
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mosmed.reviews.model import CLASS_GRADES

__all__ = [
    "Z95",
    "REGISTRY",
    "Kappa",
    "Comparison",
    "weight_matrix",
    "cohen_kappa",
    "confusion",
    "compare",
    "comparisons",
]

Z95 = 1.959963984540054
#: The rater key of the registry's class column in :func:`comparisons`.
REGISTRY = "registry"


@dataclass(frozen=True)
class Kappa:
    """A kappa value with its standard error, 95 % interval and the figures it came from.

    ``kappa`` (and the interval) are ``None`` when undefined: fewer than two studies, or both raters put
    every study in one class (expected agreement 1), which ``reason`` says.
    """

    kappa: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    p_observed: float | None
    p_expected: float | None
    reason: str = ""

    def as_dict(self) -> dict:
        return {
            "kappa": self.kappa,
            "se": self.se,
            "ci95": [self.ci_low, self.ci_high],
            "n": self.n,
            "p_observed": self.p_observed,
            "p_expected": self.p_expected,
            "reason": self.reason,
        }


def weight_matrix(k: int, weights: str = "none") -> np.ndarray:
    """Agreement weights: identity (``"none"``) or ``1 - |i - j| / (k - 1)`` (``"linear"``)."""
    if weights == "none":
        return np.eye(k)
    if weights == "linear":
        if k < 2:
            return np.ones((k, k))
        i, j = np.indices((k, k))
        return 1.0 - np.abs(i - j) / (k - 1)
    raise ValueError(f"unknown kappa weights {weights!r} (expected 'none' or 'linear')")


def cohen_kappa(table: np.ndarray | Sequence[Sequence[float]], weights: str = "none") -> Kappa:
    """Cohen's kappa of a k×k table of counts (rows: rater A, columns: rater B).

    Parameters
    ----------
    table : array_like
        Counts; ``table[i, j]`` = studies A put in class i and B in class j.
    weights : {"none", "linear"}
        Unweighted or linear-weighted kappa.
    """
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"a kappa table must be square, got shape {t.shape}")
    n = int(round(t.sum()))
    if n < 2:
        return Kappa(None, None, None, None, n, None, None, "fewer than two studies graded by both")
    w = weight_matrix(t.shape[0], weights)
    p = t / t.sum()
    row, col = p.sum(axis=1), p.sum(axis=0)
    po = float((w * p).sum())
    pe = float((w * np.outer(row, col)).sum())
    if 1.0 - pe <= 1e-12:
        return Kappa(None, None, None, None, n, po, pe, "both raters put every study in the same class")
    kappa = (po - pe) / (1.0 - pe)
    wi = w @ col  # w̄_i. = Σ_j p_.j w_ij
    wj = row @ w  # w̄_.j = Σ_i p_i. w_ij
    a = float((p * (w - (wi[:, None] + wj[None, :]) * (1.0 - kappa)) ** 2).sum())
    b = (kappa - pe * (1.0 - kappa)) ** 2
    var = max(0.0, (a - b) / (n * (1.0 - pe) ** 2))
    se = math.sqrt(var)
    lo, hi = max(-1.0, kappa - Z95 * se), min(1.0, kappa + Z95 * se)
    return Kappa(float(kappa), se, lo, hi, n, po, pe)


def confusion(a: Sequence[str], b: Sequence[str], categories: Sequence[str] = CLASS_GRADES) -> np.ndarray:
    """k×k counts of pairs ``(a[i], b[i])`` over ``categories`` (pairs with another label are left out)."""
    pos = {c: i for i, c in enumerate(categories)}
    m = np.zeros((len(categories), len(categories)), dtype=np.int64)
    for x, y in zip(a, b):
        if x in pos and y in pos:
            m[pos[x], pos[y]] += 1
    return m


@dataclass(frozen=True)
class Comparison:
    """Two raters on the studies both graded: kappas, the matrix and the study ids of each cell."""

    rater_a: str
    rater_b: str
    label_a: str
    label_b: str
    unweighted: Kappa
    linear: Kappa
    matrix: np.ndarray
    cells: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict)
    categories: tuple[str, ...] = CLASS_GRADES

    @property
    def n(self) -> int:
        return int(self.matrix.sum())

    def as_dict(self) -> dict:
        return {
            "rater_a": self.rater_a,
            "rater_b": self.rater_b,
            "label_a": self.label_a,
            "label_b": self.label_b,
            "n": self.n,
            "kappa": self.unweighted.as_dict(),
            "kappa_linear": self.linear.as_dict(),
            "categories": list(self.categories),
            "matrix": self.matrix.astype(int).tolist(),
            "cells": {
                f"{self.categories[i]}|{self.categories[j]}": list(ids) for (i, j), ids in sorted(self.cells.items())
            },
        }


def compare(
    a: pd.Series,
    b: pd.Series,
    *,
    rater_a: str,
    rater_b: str,
    label_a: str,
    label_b: str,
    categories: Sequence[str] = CLASS_GRADES,
) -> Comparison:
    """Compare two raters given as Series of grades indexed by study id (other labels are left out)."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
    both = both[both["a"].isin(categories) & both["b"].isin(categories)].sort_index()
    pos = {c: i for i, c in enumerate(categories)}
    cells: dict[tuple[int, int], list[int]] = {}
    for sid, x, y in zip(both.index, both["a"], both["b"]):
        cells.setdefault((pos[x], pos[y]), []).append(int(sid))
    m = confusion(both["a"].tolist(), both["b"].tolist(), categories)
    return Comparison(
        rater_a,
        rater_b,
        label_a,
        label_b,
        cohen_kappa(m, "none"),
        cohen_kappa(m, "linear"),
        m,
        {k: tuple(v) for k, v in cells.items()},
        tuple(categories),
    )


def comparisons(latest: pd.DataFrame, registry_classes: pd.Series | None = None) -> list[Comparison]:
    """Every reader against the registry class, then every pair of readers.

    Parameters
    ----------
    latest : DataFrame
        :meth:`mosmed.reviews.store.ReviewStore.latest` (columns ``study_id``, ``reader_key``, ``reader``,
        ``verified``, ``grade``).
    registry_classes : Series, optional
        Class per study id (index = study id).
    """
    graded = latest[latest["grade"].isin(CLASS_GRADES)] if len(latest) else latest
    readers: list[tuple[str, str, pd.Series]] = []
    for key, group in graded.groupby("reader_key", sort=False):
        first = group.iloc[0]
        label = str(first["reader"]) + ("" if bool(first["verified"]) else " (unverified)")
        readers.append((str(key), label, group.set_index("study_id")["grade"]))
    readers.sort(key=lambda r: r[1].casefold())
    out: list[Comparison] = []
    if registry_classes is not None:
        reg = registry_classes.astype(str)
        for key, label, grades in readers:
            out.append(compare(reg, grades, rater_a=REGISTRY, rater_b=key, label_a="Registry class", label_b=label))
    for (ka, la, ga), (kb, lb, gb) in itertools.combinations(readers, 2):
        out.append(compare(ga, gb, rater_a=ka, rater_b=kb, label_a=la, label_b=lb))
    return out
