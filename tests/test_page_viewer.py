"""AppTest of pages/viewer.py on a tiny dataset written to tmp (the custom component is an UnknownElement here;
the browser side is covered by tests/e2e)."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mosmed.phantom import build_phantom  # noqa: E402
from mosmed.registry_write import write_registry_csv  # noqa: E402

PAGE = str(REPO / "pages" / "viewer.py")
SHAPE = (8, 96, 96)  # display (Z, H, W)
SPACING = (40.0, 3.5, 3.5)  # (dz, dy, dx) mm: thick slices so 8 of them span the phantom's chest


def _write_nifti(arr_zyx: np.ndarray, path: Path, dtype) -> None:
    # Display (Z, H, W) = axes toward (S, P, L) -> a file in LAS like MosMedData: file x = display column
    # (toward L), file y = display row reversed (toward A), file z = display slice (toward S).
    zyx = np.asarray(arr_zyx)
    xyz = np.transpose(zyx, (2, 1, 0))[:, ::-1, :]
    affine = np.diag([-SPACING[2], SPACING[1], SPACING[0], 1.0])  # negative x: voxel x runs toward patient L
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(xyz).astype(dtype), affine), str(path))


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("viewer_ds")
    rng = np.random.default_rng(7)
    rows = []
    for sid, cat in ((1, "CT-1"), (2, "CT-0"), (4, "CT-1")):
        ph = build_phantom(SHAPE, SPACING, cat, rng, target_involvement=10.0 if sid == 1 else 0.0)
        hu = ph.hu
        rel = f"/studies/{cat}/study_{sid:04d}.nii.gz"
        mask_rel = float("nan")
        if sid == 1:
            lesion = ph.lesion
            assert lesion.sum() > 0
            mask_rel = f"/masks/study_{sid:04d}_mask.nii.gz"
            _write_nifti(lesion, root / mask_rel.lstrip("/"), np.uint8)
        if sid == 4:  # mask on the wrong grid
            mask_rel = f"/masks/study_{sid:04d}_mask.nii.gz"
            _write_nifti(np.zeros((SHAPE[0] + 2, SHAPE[1], SHAPE[2]), np.uint8), root / mask_rel.lstrip("/"), np.uint8)
        _write_nifti(hu, root / rel.lstrip("/"), np.int16)
        rows.append((sid, cat, rel, mask_rel))
    corrupt = root / "studies" / "CT-2" / "study_0003.nii.gz"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(gzip.compress(b"not a nifti at all" * 10)[:40])  # truncated gzip
    rows.append((3, "CT-2", "/studies/CT-2/study_0003.nii.gz", float("nan")))
    df = pd.DataFrame(rows, columns=["study_id", "category", "study_file", "mask_file"])
    write_registry_csv(df, root / "dataset_registry.csv")
    return root


@pytest.fixture()
def app(tiny_dataset, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MOSMED_DATA", str(tiny_dataset))
    monkeypatch.setenv("MOSMED_CACHE", str(tmp_path_factory.getbasetemp() / "viewer_cache"))

    def make(**params) -> AppTest:
        at = AppTest.from_file(PAGE, default_timeout=60)
        for k, v in params.items():
            at.query_params[k] = v
        return at.run()

    return make


def _texts(at: AppTest) -> str:
    parts = [e.value for e in at.warning] + [e.value for e in at.error] + [e.value for e in at.caption]
    parts += [e.value for e in at.markdown] + [str(m.label) + " " + str(m.value) for m in at.metric]
    return "\n".join(str(p) for p in parts)


def test_default_load_opens_first_readable_study(app):
    at = app()
    assert not at.exception, at.exception
    assert at.selectbox(key="viewer.pick").value == 1
    # Studies not read yet are offered ("pending"); the broken ones only fail when opened.
    assert at.selectbox(key="viewer.pick").options[:2] == ["study 0001 · CT-1 · mask", "study 0002 · CT-0"]
    assert len(at.get("bidi_component")) == 1 or len(at.get("unknown")) >= 1
    text = _texts(at)
    assert "8 × 96 × 96" in text
    assert "CT-1 band:" in text and "0–25 %" in text
    assert at.query_params["study"] == ["1"] or at.query_params["study"] == "1"
    assert not at.error


def test_next_button_and_window_preset_update_url(app):
    at = app()
    at.button(key="viewer.next").click().run()
    assert at.selectbox(key="viewer.pick").value == 2
    at.segmented_control(key="viewer.preset").set_value("bone").run()
    assert at.number_input(key="viewer.level").value == 480.0
    assert at.number_input(key="viewer.width").value == 2500.0
    at.number_input(key="viewer.level").set_value(100.0).run()
    assert at.segmented_control(key="viewer.preset").value == "custom"
    qp = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert qp["study"] == "2" and qp["window"] == "100,2500"
    assert not at.exception


def test_valid_link_restores_view(app):
    at = app(study="0001", slice="3", window="mediastinum", plane="coronal")
    # No notice about the link (a study's quality flags are warnings of their own, icon "report").
    assert not at.exception and not [w for w in at.warning if w.icon != ":material/report:"]
    assert at.selectbox(key="viewer.pick").value == 1
    assert at.segmented_control(key="viewer.preset").value == "mediastinum"
    assert at.session_state["viewer.plane"] == "coronal"  # the large view (chosen in the viewer toolbar)
    assert at.session_state["viewer.slice"] == 2
    qp = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert qp == {"study": "1", "slice": "3", "window": "mediastinum", "plane": "coronal"}


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"study": "<script>alert(1)</script>"}, "is not a study id"),
        ({"study": "999"}, "Study 999 from the link is not available"),
        ({"study": "1", "slice": "9999"}, "outside 1..8; showing slice 8"),
        ({"study": "1", "slice": "abc"}, "not a whole number"),
        ({"study": "1", "window": "-600,0"}, "default window is used"),
        ({"study": "1", "plane": "../../etc/passwd"}, "axial is used"),
        ({"study": "1", "evil": "x"}, "Ignored unknown link parameter"),
    ],
)
def test_invalid_link_falls_back_with_notice(app, params, words):
    at = app(**params)
    assert not at.exception, at.exception
    warnings = "\n".join(w.value for w in at.warning)
    assert words in warnings
    assert "<script>" not in warnings and "/etc/passwd" not in warnings
    assert at.selectbox(key="viewer.pick").value == 1  # the viewer still opens a study
    assert not at.error


@pytest.mark.parametrize(("sid", "words"), [(3, "study 3"), (4, "study 4")])
def test_broken_study_shows_error_and_picker_keeps_working(app, sid, words):
    at = app(study=str(sid))
    assert not at.exception, at.exception
    assert at.error, "a broken study must show st.error"
    err = at.error[0].value
    assert words in err.replace("\\", "")
    if sid == 3:
        assert "study_0003" in err.replace("\\", "") and "NIfTI" in err
    if sid == 4:
        assert "grid" in err.replace("\\", "")
    # The picker offers the broken study (labelled) and the readable ones; moving on opens a good study.
    assert at.selectbox(key="viewer.pick").value == sid
    at.selectbox(key="viewer.pick").set_value(1).run()
    assert not at.error and not at.exception
    assert "8 × 96 × 96" in _texts(at)


def test_overlay_controls_by_key(app):
    at = app(study="1")
    at.toggle(key="viewer.show_lung").set_value(True).run()
    at.segmented_control(key="viewer.mode").set_value("outline").run()
    at.slider(key="viewer.opacity").set_value(0.8).run()
    assert not at.exception
    assert at.toggle(key="viewer.show_lung").value is True
    assert at.segmented_control(key="viewer.mode").value == "outline"
