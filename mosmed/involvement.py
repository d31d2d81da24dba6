"""What the HU can tell about lung involvement: a density measure per study, its calibration per dataset.

Per study (:func:`density_features`, in the cache build) the **density measure** is the share of the lung
whose *smoothed* density lies in the lesion range, ignoring what is dense for other reasons:

* the lung's border (one coarse pixel, about 3 mm, in-plane): the partial volume of the chest wall, heart and
  diaphragm, which makes every lung base of an 8 mm slice look like ground glass;
* vessels and bronchial walls: lung at or above ``DENSE_HU`` that does not survive an opening with a 3x3
  square of ~3 mm pixels, i.e. anything thinner than about 9 mm (ground glass and consolidation are wider);
* noise and texture: the remaining lung is averaged over a 3x3 box (about 9 mm), ignoring the removed voxels.

The share at or above ``-700`` HU (the lower end of the lesion range of the masks, [P2]) is
``density_pct``, the figure reported as a density measure; the shares at ``-750`` and ``-600`` are kept too.

Per dataset (:func:`fit_calibration`, at summary time) the measure is mapped to involvement with the simplest
model the physics allows: ``density = baseline + slope * involvement``. The **baseline** is what normal lung
reads (dependent density, residual vessels, motion): the median over the dataset's CT-0 studies. The
**slope** (how much of a lesion reads dense) is fitted on the studies with masks, shrunk toward the
no-loss value ``1 - baseline`` so that a dataset whose masks are all mild (real MosMedData: 50 CT-1 studies,
mostly under 5 %) still extrapolates sanely to CT-2..CT-4. Its error is measured by leave-one-out over the
masked studies. Without CT-0 studies or masks the defaults are used and the estimate is labelled
*uncalibrated*: it is then a density measure with a generic baseline, not a measurement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from mosmed.segmentation import (
    N4,
    SQ3,
    bounding_box,
    check_volume,
    coarse_factor,
    dilate,
    erode,
    subsample,
    subsample_mean,
)
from mosmed.severity import class_for_involvement

__all__ = [
    "DEFAULT_BASELINE",
    "DENSE_HU",
    "DENSITY_COLUMNS",
    "ESTIMATE_COLUMNS",
    "FEATURES",
    "LESION_HU",
    "PRIMARY_FEATURE",
    "Calibration",
    "agreement",
    "calibrate_rows",
    "density_features",
    "fit_calibration",
    "uncalibrated_estimate",
]

LESION_HU: tuple[int, int] = (-700, -130)  # mean density of the marked regions in the masks [P2]
DENSE_HU = -700  # lung this dense that is thinner than ~9 mm is a vessel or a wall, not a lesion
SOLID_MAX_HU = 100  # smoothed density above this is bone or contrast, never lesion
#: Feature name -> smoothed-density threshold (HU). The primary one is reported as ``density_pct``.
FEATURES: Mapping[str, int] = {"density_pct_750": -750, "density_pct": -700, "density_pct_600": -600}
PRIMARY_FEATURE = "density_pct"
#: What normal lung reads on each feature, used when a dataset has too few CT-0 studies: between the real chest
#: crop of ../shared/realct (6.8 / 3.7 / 3.0 % at -750 / -700 / -600 HU: central lung, 1.5 mm voxels) and the
#: normal full-size phantoms with real texture (11-12 / 6-9.4 / 4.4-7.1 %: whole lungs, bases and apices).
DEFAULT_BASELINE: Mapping[str, float] = {"density_pct_750": 9.0, "density_pct": 5.0, "density_pct_600": 3.5}
MIN_BASELINE_STUDIES = 3  # CT-0 studies needed for a dataset baseline
MIN_MASKED_STUDIES = 3  # masked studies needed to fit the slope (and report a leave-one-out error)
MIN_SELECT_STUDIES = 8  # masked studies needed to choose the feature by leave-one-out error ...
SELECT_MIN_SPREAD = 25.0  # ... and the involvement range (points) they must span
PRIOR_WEIGHT = 0.04  # the slope's prior counts like one extra study at 20 % involvement (0.2 ** 2)
SLOPE_RANGE = (0.3, 1.5)  # a fitted slope outside this is not physical; clipped
#: Summary columns this module fills: the density measures (per study) ...
DENSITY_COLUMNS = tuple(FEATURES)
#: ... and the estimate's label (per dataset, at summary time).
ESTIMATE_COLUMNS = ("estimate_calibrated", "estimate_basis")


# ------------------------------------------------------------------------------------------ per study


def density_features(hu: np.ndarray, spacing: Sequence[float], lung: np.ndarray) -> dict:
    """The density measures of one study's segmented lung (see the module docstring).

    Parameters
    ----------
    hu : numpy.ndarray
        ``(Z, H, W)`` HU volume.
    spacing : sequence of float
        ``(dz, dy, dx)`` mm.
    lung : numpy.ndarray
        ``(Z, H, W)`` lung mask (the segmentation, never an expert mask: the measure must mean the same for
        every study).

    Returns
    -------
    dict
        ``density_pct``, ``density_pct_750``, ``density_pct_600`` (% of the evaluated lung), ``core_pct`` (% of
        the lung evaluated: without border and vessels) and ``median_hu`` (of the evaluated lung, smoothed);
        all 0 (``median_hu`` ``None``) without lungs.
    """
    dz, dy, dx = check_volume(hu, spacing)
    if tuple(lung.shape) != tuple(hu.shape):
        raise ValueError(
            f"density_features needs equal (Z, H, W) shapes, got {tuple(hu.shape)} and {tuple(lung.shape)}"
        )
    out = {name: 0.0 for name in FEATURES}
    out.update(core_pct=0.0, median_hu=None)
    f = coarse_factor((dz, dy, dx))
    lg = subsample(np.asarray(lung), f) > 0
    if not lg.any():
        return out
    bz, by, bx = bounding_box(lg, 3)
    lg = lg[bz, by, bx]
    h, w = hu.shape[1:]
    region = np.asarray(hu)[bz, by.start * f : min(h, by.stop * f), bx.start * f : min(w, bx.stop * f)]
    # Block means (f > 1), or the voxels themselves: the smoothing below averages lung core only, never across
    # the lung's edge (subsample_mean's 3x3 mean for f == 1 would).
    dm = subsample_mean(region, f).astype(np.float32) if f > 1 else region.astype(np.float32)
    inner = erode(lg, N4, border_value=True)
    dense = (dm >= DENSE_HU) & lg
    wide = dilate(erode(dense, SQ3), SQ3) & dense
    core = inner & ~(dense & ~wide)
    n = int(np.count_nonzero(core))
    out["core_pct"] = 100.0 * n / max(1, int(np.count_nonzero(lg)))
    if n == 0:
        return out
    valid = core.astype(np.float32)
    num = ndimage.uniform_filter(dm * valid, size=(1, 3, 3), mode="constant")
    den = ndimage.uniform_filter(valid, size=(1, 3, 3), mode="constant")
    smooth = num[core] / den[core]  # den >= 1/9 on every core voxel (the voxel itself)
    for name, thr in FEATURES.items():
        out[name] = 100.0 * float(np.count_nonzero((smooth >= thr) & (smooth < SOLID_MAX_HU))) / n
    out["median_hu"] = float(np.median(smooth))
    return out


def _estimate(d: float, baseline: float, slope: float) -> float:
    """Involvement (%) from a density measure (%): ``(d - baseline) / slope``, clipped to 0..100."""
    return float(min(100.0, max(0.0, (d - baseline) / slope)))


def uncalibrated_estimate(features: Mapping[str, float | None]) -> float:
    """The estimate with the default baseline and the no-loss slope: what a single study can say alone."""
    d = features.get(PRIMARY_FEATURE)
    if d is None or not math.isfinite(float(d)):
        return 0.0
    b = DEFAULT_BASELINE[PRIMARY_FEATURE]
    return _estimate(float(d), b, (100.0 - b) / 100.0)


# ------------------------------------------------------------------------------------------ per dataset


@dataclass(frozen=True)
class Calibration:
    """A density-to-involvement mapping for one dataset.

    Attributes
    ----------
    feature : str
        The density column used (one of ``FEATURES``).
    baseline : float
        Density (%) of normal lung; ``baseline_n`` CT-0 studies gave it (0: the default).
    slope : float
        Density points per involvement point; ``slope_n`` masked studies fitted it (0: the prior).
    calibrated : bool
        True when the dataset itself gave the baseline or the slope.
    loo_error : float or None
        Mean absolute leave-one-out error over the masked studies, in involvement points (``None`` with fewer
        than ``MIN_MASKED_STUDIES``); ``loo_max`` the largest.
    reason : str
        Why it is (un)calibrated, for the UI and the report.
    """

    feature: str = PRIMARY_FEATURE
    baseline: float = DEFAULT_BASELINE[PRIMARY_FEATURE]
    slope: float = (100.0 - DEFAULT_BASELINE[PRIMARY_FEATURE]) / 100.0
    baseline_n: int = 0
    slope_n: int = 0
    loo_error: float | None = None
    loo_max: float | None = None
    reason: str = "no dataset calibration: default baseline of normal lung, no-loss slope"
    by_feature: dict = field(default_factory=dict, compare=False)

    @property
    def calibrated(self) -> bool:
        return self.baseline_n > 0 or self.slope_n > 0

    @property
    def label(self) -> str:
        """``"calibrated"`` or ``"uncalibrated"``: shown with the estimate wherever it appears."""
        return "calibrated" if self.calibrated else "uncalibrated"

    def estimate(self, features: Mapping[str, float | None]) -> float | None:
        """Involvement estimate (%) of one study from its density columns; ``None`` when they are missing."""
        d = features.get(self.feature)
        if d is None:
            return None
        try:
            d = float(d)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(d):
            return None
        return _estimate(d, self.baseline, self.slope)

    def apply(self, frame):
        """The estimate for every row of a summary ``DataFrame`` (a float ``Series``, NaN where unknown)."""
        import pandas as pd

        if self.feature not in frame.columns:
            return pd.Series(np.nan, index=frame.index, dtype=float)
        d = pd.to_numeric(frame[self.feature], errors="coerce").astype(float)
        return ((d - self.baseline) / self.slope).clip(lower=0.0, upper=100.0)

    def describe(self) -> str:
        """One line for the UI: what the estimate is and how good it is."""
        base = (
            f"baseline {self.baseline:.1f} % from {self.baseline_n} CT-0 studies"
            if self.baseline_n
            else f"default baseline {self.baseline:.1f} %"
        )
        slope = (
            f"slope {self.slope:.2f} fitted on {self.slope_n} masked studies"
            if self.slope_n
            else f"no-loss slope {self.slope:.2f}"
        )
        err = (
            f"; leave-one-out error {self.loo_error:.1f} points (max {self.loo_max:.1f})"
            if self.loo_error is not None
            else ""
        )
        return (
            f"{self.label} HU estimate from {self.feature} ({FEATURES[self.feature]} HU): {base}, "
            f"{slope}{err}. {self.reason}"
        )

    @classmethod
    def from_dict(cls, d: Mapping | None) -> Calibration:
        """The calibration back from :meth:`as_dict` (e.g. the summary document's ``"calibration"``), so a
        viewer can label and compute one study's estimate from its ``StudyStats.density``; ``None`` or a
        malformed dict gives the uncalibrated default."""
        try:
            feature = str(d["feature"])
            if feature not in FEATURES:
                raise KeyError(feature)
            return cls(
                feature=feature,
                baseline=float(d["baseline"]),
                slope=float(d["slope"]),
                baseline_n=int(d["baseline_n"]),
                slope_n=int(d["slope_n"]),
                loo_error=None if d.get("loo_error") is None else float(d["loo_error"]),
                loo_max=None if d.get("loo_max") is None else float(d["loo_max"]),
                reason=str(d.get("reason", "")),
            )
        except (KeyError, TypeError, ValueError):
            return cls()

    def as_dict(self) -> dict:
        return {
            "feature": self.feature,
            "baseline": self.baseline,
            "slope": self.slope,
            "baseline_n": self.baseline_n,
            "slope_n": self.slope_n,
            "calibrated": self.calibrated,
            "label": self.label,
            "loo_error": self.loo_error,
            "loo_max": self.loo_max,
            "reason": self.reason,
            "description": self.describe(),
        }


def _fit_slope(v: np.ndarray, d: np.ndarray, baseline: float) -> float:
    """Ridge fit of ``d - baseline = slope * v`` (fractions), shrunk toward ``1 - baseline``."""
    prior = 1.0 - baseline
    k = (float(np.sum(v * (d - baseline))) + PRIOR_WEIGHT * prior) / (float(np.sum(v * v)) + PRIOR_WEIGHT)
    return float(np.clip(k, *SLOPE_RANGE))


def _fit_feature(name: str, normal: np.ndarray, masked_v: np.ndarray, masked_d: np.ndarray) -> dict:
    """Baseline, slope and leave-one-out errors of one feature (values in %)."""
    if normal.size >= MIN_BASELINE_STUDIES:
        b, bn = float(np.median(normal)), int(normal.size)
    else:
        b, bn = DEFAULT_BASELINE[name], 0
    bf = b / 100.0
    v, d = masked_v / 100.0, masked_d / 100.0
    if v.size >= MIN_MASKED_STUDIES:
        k, kn = _fit_slope(v, d, bf), int(v.size)
        errs = []
        for i in range(v.size):
            keep = np.arange(v.size) != i
            ki = _fit_slope(v[keep], d[keep], bf)
            errs.append(abs(_estimate(masked_d[i], b, ki) - masked_v[i]))
        loo, loo_max = float(np.mean(errs)), float(np.max(errs))
    else:
        k, kn, loo, loo_max = 1.0 - bf, 0, None, None
    return {
        "feature": name,
        "baseline": b,
        "baseline_n": bn,
        "slope": k,
        "slope_n": kn,
        "loo_error": loo,
        "loo_max": loo_max,
    }


def fit_calibration(summary) -> Calibration:
    """Fit the density-to-involvement mapping of one dataset from its summary table.

    Parameters
    ----------
    summary : pandas.DataFrame
        One row per study with ``status``, ``category``, ``involvement_pct`` (mask-based, NaN without a mask)
        and the ``DENSITY_COLUMNS``. Rows not ``ok`` are ignored.

    Returns
    -------
    Calibration
        The baseline from the CT-0 rows (at least ``MIN_BASELINE_STUDIES``), the slope from the masked rows
        (at least ``MIN_MASKED_STUDIES``), the feature with the least leave-one-out error when there are at
        least ``MIN_SELECT_STUDIES`` masked rows (else ``PRIMARY_FEATURE``); the defaults otherwise, with the
        reason.
    """
    import pandas as pd

    df = summary
    if df is None or len(df) == 0 or PRIMARY_FEATURE not in df.columns:
        return Calibration(reason="no dataset calibration: no study measured yet")
    ok = df["status"].astype(str).eq("ok") if "status" in df.columns else pd.Series(True, index=df.index)
    df = df[ok]
    cat = df["category"].astype(str) if "category" in df.columns else pd.Series("", index=df.index)
    inv = (
        pd.to_numeric(df["involvement_pct"], errors="coerce")
        if "involvement_pct" in df.columns
        else pd.Series(np.nan, index=df.index)
    )
    fits = {}
    for name in FEATURES:
        if name not in df.columns:
            continue
        d = pd.to_numeric(df[name], errors="coerce")
        normal = d[(cat == "CT-0") & d.notna()].to_numpy(float)
        sel = inv.notna() & d.notna()
        fits[name] = _fit_feature(name, normal, inv[sel].to_numpy(float), d[sel].to_numpy(float))
    if PRIMARY_FEATURE not in fits:
        return Calibration(reason="no dataset calibration: the summary has no density measure")
    best = fits[PRIMARY_FEATURE]
    chosen_by_loo = False
    masked = inv[inv.notna()]
    spread = float(masked.max() - masked.min()) if len(masked) else 0.0
    # Choose the threshold by leave-one-out error only when the masks span the classes: on mild masks alone
    # (real MosMedData) a threshold that fits 0-5 % best can be the least sensitive at 50 %.
    if best["slope_n"] >= MIN_SELECT_STUDIES and spread >= SELECT_MIN_SPREAD:
        cands = [f for f in fits.values() if f["loo_error"] is not None]
        best = min(cands, key=lambda f: f["loo_error"])
        chosen_by_loo = True
    reasons = []
    if best["baseline_n"] == 0:
        reasons.append(f"fewer than {MIN_BASELINE_STUDIES} CT-0 studies: default baseline of normal lung")
    if best["slope_n"] == 0:
        reasons.append(f"fewer than {MIN_MASKED_STUDIES} studies with masks: no-loss slope, no error estimate")
    if chosen_by_loo:
        reasons.append(f"{best['feature']} chosen by the least leave-one-out error of {len(fits)} thresholds")
    n_mask = best["slope_n"]
    if n_mask and inv.notna().any():
        top = float(inv.max())
        if top < 25.0:
            reasons.append(
                f"masked studies reach only {top:.0f} % involvement: above that the slope is "
                "mostly the prior (extrapolated)"
            )
    reason = "; ".join(reasons) if reasons else "dataset baseline and slope"
    if best["baseline_n"] == 0 and best["slope_n"] == 0:
        reason = "no dataset calibration: " + reason
    return Calibration(
        feature=best["feature"],
        baseline=best["baseline"],
        slope=best["slope"],
        baseline_n=best["baseline_n"],
        slope_n=best["slope_n"],
        loo_error=best["loo_error"],
        loo_max=best["loo_max"],
        reason=reason,
        by_feature=fits,
    )


def estimate_label(calibrated: bool | None) -> str:
    """How an HU estimate is labelled wherever it is shown: "calibrated estimate", "uncalibrated estimate"
    (no dataset calibration: CT-0 baseline and masked studies), or "HU estimate" when not known."""
    return {True: "calibrated", False: "uncalibrated"}.get(calibrated, "HU") + " estimate"


def calibrate_rows(rows: list[dict]) -> tuple[list[dict], dict]:
    """Fit the dataset's calibration on summary rows and write the estimate and its label into each row.

    The entry point of the cache summary: ``estimated_involvement_pct`` becomes the (calibrated or not)
    estimate, ``estimate_calibrated`` says which, ``estimate_basis`` is the calibration's one-line
    description, and ``estimate_in_band`` is recomputed. Returns ``(rows, calibration.as_dict())``.
    """
    import pandas as pd

    from mosmed import severity

    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    cal = fit_calibration(frame)
    # As a plain array: row-wise .iloc costs ~10 us a row, seconds on a 100 000-row registry.
    est = np.asarray(cal.apply(frame), dtype=float) if len(frame) else None
    text = cal.describe()
    out = []
    for i, r in enumerate(rows):
        r = dict(r)
        if str(r.get("status")) == "ok" and est is not None and math.isfinite(est[i]):
            e = float(est[i])
            r["estimated_involvement_pct"] = e
            try:
                r["estimate_in_band"] = bool(severity.in_band(str(r.get("category", "")), e))
            except (KeyError, ValueError):
                r["estimate_in_band"] = None
            r["estimate_calibrated"] = cal.calibrated
            r["estimate_basis"] = text
        out.append(r)
    return out, cal.as_dict()


# ------------------------------------------------------------------------------------------- agreement


def agreement(measured: Sequence[float | None], estimated: Sequence[float | None]) -> dict:
    """How well the HU estimate tracks mask-based involvement, over the pairs where both exist.

    Returns
    -------
    dict
        ``n`` (pairs used), ``mean_abs_diff`` (percentage points), ``pearson_r`` (``None`` with fewer than two
        pairs or no variance), ``class_agreement`` (fraction of pairs whose CT class band is the same, CT-0 for 0).
        ``mean_abs_diff`` and ``class_agreement`` are ``None`` when ``n`` is 0.
    """
    if len(measured) != len(estimated):
        raise ValueError(f"measured ({len(measured)}) and estimated ({len(estimated)}) differ in length")
    pairs = []
    for m, e in zip(measured, estimated):
        if m is None or e is None:
            continue
        m, e = float(m), float(e)
        if math.isfinite(m) and math.isfinite(e):
            pairs.append((m, e))
    n = len(pairs)
    if n == 0:
        return {"n": 0, "mean_abs_diff": None, "pearson_r": None, "class_agreement": None}
    a = np.array(pairs)
    mad = float(np.mean(np.abs(a[:, 0] - a[:, 1])))
    r = None
    if n >= 2 and np.std(a[:, 0]) > 0 and np.std(a[:, 1]) > 0:
        r = float(np.corrcoef(a[:, 0], a[:, 1])[0, 1])
    same = sum(class_for_involvement(m) == class_for_involvement(e) for m, e in pairs) / n
    return {"n": n, "mean_abs_diff": mad, "pearson_r": r, "class_agreement": float(same)}
