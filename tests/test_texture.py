"""Texture statistics (mosmed.texture) and the demo phantoms held against the real chest crop (issue 9).

The real-CT part reads ../shared/realct/ (skips with a reason where it is absent, fails under CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mosmed.synthetic import DEMO_SEED, plan_registry, study_phantom
from mosmed.texture import robust_sd, texture_stats, threshold_lung_mask

REPO = Path(__file__).resolve().parents[1]
REALCT = Path(os.environ.get("MOSMED_REALCT", REPO.parent / "shared" / "realct"))
CHEST = "chest_crop_lps_1p5mm.nii.gz"
ABDOMEN = "abdomen_int32_3mm.nii.gz"
# The real chest crop's figures as quoted in issue 9 (and reproduced below when the file is there).
REAL_NOISE, REAL_MEDIAN, REAL_WIDTH = 20.8, -804.0, 179.0
NOISE_TOL, LUNG_TOL = 0.30, 0.15


def _realct(name: str):
    path = REALCT / name
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real CT file {path}")
        pytest.skip(f"real CT {name} not found in {REALCT} (a fresh clone without ../shared)")
    from mosmed.volume import read_volume

    return read_volume(path)


@pytest.fixture(scope="module")
def chest_stats():
    vol = _realct(CHEST)
    return texture_stats(vol.data, vol.spacing)


@pytest.fixture(scope="module")
def demo_stats():
    """Three demo studies at the demo's size (256 px): a normal, a CT-2 and a CT-4 one, truth lung without
    lesions."""
    out = {}
    specs = plan_registry(20)
    for cat in ("CT-0", "CT-2", "CT-4"):
        spec = next(s for s in specs if s.category == cat)
        ph, _, sp = study_phantom(DEMO_SEED, spec.study_id, cat)
        out[cat] = texture_stats(ph.hu, sp, (ph.lung > 0) & (ph.lesion == 0))
    return out


# ------------------------------------------------------------------------------------------ the statistic


def test_noise_statistic_on_known_noise():
    rng = np.random.default_rng(0)
    flat = np.rint(50.0 + 20.0 * rng.standard_normal((6, 120, 120))).astype(np.int16)
    st = texture_stats(flat, (1.0, 1.0, 1.0))
    # White noise: the 3x3-median residual keeps about 0.89 of the standard deviation.
    assert 16.0 < st.noise_mad_hu < 19.5 and abs(st.noise_lag1_corr) < 0.1
    assert st.lung_source == "none" and np.isnan(st.lung_median_hu)
    # Smoothed (correlated) noise of the same spread measures lower, and correlated.
    from scipy import ndimage

    sm = ndimage.gaussian_filter(rng.standard_normal((6, 120, 120)), (0, 1.0, 1.0))
    sm = np.rint(50.0 + 20.0 * sm / sm.std()).astype(np.int16)
    st2 = texture_stats(sm, (1.0, 1.0, 1.0))
    assert st2.noise_mad_hu < 0.6 * st.noise_mad_hu and st2.noise_lag1_corr > 0.5
    assert robust_sd(np.array([])) != robust_sd(np.array([])) and robust_sd(np.array([1, 1, 1])) == 0.0


def test_soft_tissue_is_taken_away_from_edges():
    # Two flat halves (0 and 100 HU) and a step: noise-free, so the figure is 0 unless the edge leaks in.
    vol = np.zeros((2, 40, 40), np.int16)
    vol[:, :, 20:] = 100
    assert texture_stats(vol, (1.0, 1.0, 1.0)).noise_mad_hu == 0.0
    vol[:, :, 20:] = 300  # outside the band: only the 0-HU half counts
    st = texture_stats(vol, (1.0, 1.0, 1.0))
    assert st.noise_voxels < 2 * 40 * 20 and st.noise_mad_hu == 0.0


def test_threshold_lung_mask_keeps_border_lungs_and_drops_gas():
    vol = np.full((6, 60, 80), 40, np.int16)
    vol[:, 10:50, 0:30] = -820  # a "lung" touching the image border
    vol[:, 10:50, 45:70] = -800
    vol[:, 25:30, 35:40] = -1000  # trachea-like pure gas
    vol[:, 52:58, 50:60] = -1000  # bowel gas
    m = threshold_lung_mask(vol)
    assert m[:, 10:50, 0:30].all() and m[:, 10:50, 45:70].all()
    assert not m[:, 25:30, 35:40].any() and not m[:, 52:58, 50:60].any()
    assert not threshold_lung_mask(np.full((2, 8, 8), 30, np.int16)).any()


def test_bad_input():
    with pytest.raises(ValueError, match="3D display volume"):
        texture_stats(np.zeros((8, 8), np.int16), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        texture_stats(np.zeros((2, 8, 8), np.int16), (1, 0, 1))
    with pytest.raises(ValueError, match="lung mask shape"):
        texture_stats(np.zeros((2, 8, 8), np.int16), (1, 1, 1), lung=np.zeros((2, 8, 9), bool))


# ------------------------------------------------------------------------------------------ real CT


def test_real_chest_crop_figures(chest_stats):
    # The issue's figures, reproduced with this module's definitions (see its docstring).
    assert chest_stats.noise_mad_hu == pytest.approx(20.76, abs=0.01)
    assert chest_stats.lung_median_hu == pytest.approx(-805.0, abs=1.0)
    assert chest_stats.lung_p10_p90_hu == pytest.approx(179.0, abs=1.0)
    assert chest_stats.lung_ml > 1000.0 and chest_stats.lung_source == "threshold"
    assert 0.15 < chest_stats.noise_lag1_corr < 0.35


def test_real_abdomen_noise():
    vol = _realct(ABDOMEN)
    st = texture_stats(vol.data, vol.spacing)
    assert st.noise_mad_hu == pytest.approx(10.38, abs=0.01)  # 3 mm voxels: less noise


# ------------------------------------------------------------------------------------------ demo vs real


@pytest.mark.parametrize("cat", ["CT-0", "CT-2", "CT-4"])
def test_demo_matches_the_issue_figures(demo_stats, cat):
    st = demo_stats[cat]
    assert abs(st.noise_mad_hu - REAL_NOISE) <= NOISE_TOL * REAL_NOISE, st
    assert abs(st.lung_median_hu - REAL_MEDIAN) <= LUNG_TOL * abs(REAL_MEDIAN), st
    assert abs(st.lung_p10_p90_hu - REAL_WIDTH) <= LUNG_TOL * REAL_WIDTH, st
    # Correlated, not white: a reconstruction kernel's grain.
    assert st.noise_lag1_corr > 0.1, st


def test_demo_matches_the_real_crop(demo_stats, chest_stats):
    for cat, st in demo_stats.items():
        assert abs(st.noise_mad_hu - chest_stats.noise_mad_hu) <= NOISE_TOL * chest_stats.noise_mad_hu, (cat, st)
        assert abs(st.lung_median_hu - chest_stats.lung_median_hu) <= LUNG_TOL * abs(chest_stats.lung_median_hu)
        assert abs(st.lung_p10_p90_hu - chest_stats.lung_p10_p90_hu) <= LUNG_TOL * chest_stats.lung_p10_p90_hu
        assert abs(st.noise_lag1_corr - chest_stats.noise_lag1_corr) < 0.15, (cat, st)


def test_threshold_mask_on_a_phantom_agrees_with_its_truth():
    spec = plan_registry(20)[0]
    ph, _, sp = study_phantom(DEMO_SEED, spec.study_id, spec.category)
    by_truth = texture_stats(ph.hu, sp, ph.lung > 0)
    by_threshold = texture_stats(ph.hu, sp)
    assert by_threshold.lung_source == "threshold"
    assert abs(by_truth.lung_median_hu - by_threshold.lung_median_hu) < 10.0
    assert abs(by_truth.lung_ml - by_threshold.lung_ml) < 0.1 * by_truth.lung_ml
