"""Reviews without a database: grades, flags, notes and names; dataset identity; kappa by hand."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mosmed.reviews import agreement, model
from mosmed.reviews.errors import ReviewInputError
from mosmed.reviews.identity import dataset_identity
from mosmed.reviews.model import Reader, Review

# ------------------------------------------------------------------------------------------------- model


def test_grades_and_flags_parse_or_say_why() -> None:
    assert model.parse_grade("ct2") == "CT-2" and model.parse_grade(" CT-4 ") == "CT-4"
    assert model.parse_grade("Cannot grade") == "ungradable" and model.parse_grade("") is None
    with pytest.raises(ReviewInputError, match="'CT-5' is not one of CT-0"):
        model.parse_grade("CT-5")
    assert model.parse_flags(["Artefact", "mask-problem", "artefact"]) == ("mask_problem", "artefact")
    with pytest.raises(ReviewInputError, match="flag 'bogus' is unknown"):
        model.parse_flags(["bogus"])


def test_note_bound_and_control_characters() -> None:
    assert Review(note="x" * model.MAX_NOTE_CHARS).note == "x" * model.MAX_NOTE_CHARS
    with pytest.raises(ReviewInputError, match=f"at most {model.MAX_NOTE_CHARS}"):
        Review(note="x" * (model.MAX_NOTE_CHARS + 1))
    with pytest.raises(ReviewInputError, match="control characters"):
        Review(note="a\x00b")
    hostile = "<script>alert(1)</script> **bold** [x](javascript:1) 'quote\" ; DROP TABLE review_events;--"
    assert Review(note=hostile).note == hostile  # kept literally
    assert Review().is_empty and not Review(flags=("other",)).is_empty


def test_reader_names_and_keys() -> None:
    a = Reader.named("  Dr   Ana <b>Ivanova</b> ")
    assert a.display_name == "Dr Ana <b>Ivanova</b>" and a.kind == "name" and not a.verified
    assert a.key == Reader.named("dr ana <B>ivanova</B>").key  # the same typed name is the same reader
    assert a.label.endswith("(unverified)")
    o = Reader.oidc("https://id.example", "123", "Ana")
    assert o.verified and o.key == "oidc:https://id.example|123" and o.label == "Ana"
    assert o.key != Reader.named("Ana").key  # a typed name never becomes a login
    with pytest.raises(ReviewInputError, match="empty"):
        Reader.named("   ")
    with pytest.raises(ReviewInputError, match="at most"):
        Reader.named("x" * (model.MAX_NAME_CHARS + 1))


# ---------------------------------------------------------------------------------------------- identity


def _registry(root: Path):
    from mosmed.registry import load_registry

    return load_registry(root)


def test_identity_stable_when_moved_and_different_for_other_files(tmp_path: Path) -> None:
    from mosmed.synthetic import generate_demo

    a = generate_demo(tmp_path / "a", n_studies=3, size=24, workers=1)
    ida = dataset_identity(_registry(a))
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.copytree(a, moved)
    assert dataset_identity(_registry(moved)).digest == ida.digest  # the folder moved
    # Same registry rows, other study files (a synthetic replica of a registry): another identity.
    study = next((moved / "studies").rglob("*.nii.gz"))
    study.write_bytes(study.read_bytes() + b"\0")
    assert dataset_identity(_registry(moved)).digest != ida.digest
    assert len(ida.digest) == 64 and ida.n_studies == 3


def test_identity_of_the_real_registry_and_its_replica(real_mosmed: Path, tmp_path: Path) -> None:
    from mosmed.reviews.identity import identity_of_rows

    real = dataset_identity(_registry(real_mosmed))
    assert real.n_studies == 1110
    # The replica keeps the real registry rows, but its studies are generated: present, with their own sizes.
    reg = _registry(real_mosmed).df
    rows = [
        (int(s), c, sf, mf, 12345)
        for s, c, sf, mf in zip(reg["study_id"], reg["category"], reg["study_file"], reg["mask_file"])
    ]
    assert identity_of_rows(rows) != real.digest


# ------------------------------------------------------------------------------------------------- kappa


def test_kappa_against_a_hand_computed_2x2_example() -> None:
    # 50 studies: A says yes/no, B says yes/no: [[20, 5], [10, 15]].
    # p_o = 35/50 = 0.70; marginals A (0.5, 0.5), B (0.6, 0.4): p_e = 0.30 + 0.20 = 0.50; kappa = 0.2/0.5 = 0.40.
    # Fleiss-Cohen-Everitt: diagonal 0.4(1-1.1*0.6)^2 + 0.3(1-0.9*0.6)^2 = 0.04624 + 0.06348;
    # off-diagonal 0.36 (0.1*1.1^2 + 0.2*0.9^2) = 0.10188; minus (0.4 - 0.5*0.6)^2 = 0.01;
    # var = (0.2116 - 0.01) / (50 * 0.25) = 0.016128, SE = 0.126996; CI 0.4 -/+ 1.96*SE = [0.1511, 0.6489].
    k = agreement.cohen_kappa([[20, 5], [10, 15]])
    assert k.n == 50 and k.kappa == pytest.approx(0.40)
    assert k.se == pytest.approx(0.126996, abs=1e-6)
    assert (k.ci_low, k.ci_high) == (pytest.approx(0.15109, abs=1e-4), pytest.approx(0.64891, abs=1e-4))


def test_linear_weighted_kappa_against_a_hand_computed_3x3_example() -> None:
    # [[8, 2, 0], [1, 6, 1], [0, 1, 1]], n = 20; weights 1, 0.5, 0 for 0, 1, 2 classes apart.
    # p_o = 15/20 + 0.5 * 5/20 = 0.875; rows (0.5, 0.4, 0.1), columns (0.45, 0.45, 0.1):
    # p_e = 0.415 + 0.5 * 0.49 = 0.66; kappa_w = 0.215 / 0.34 = 0.632353.
    # Unweighted: p_o = 0.75, p_e = 0.415, kappa = 0.335 / 0.585 = 0.572650.
    # SE (weighted), worked cell by cell: A = 0.197018, B = 0.389706^2 = 0.151871,
    # var = 0.045147 / (20 * 0.34^2) = 0.019527, SE = 0.13974.
    t = [[8, 2, 0], [1, 6, 1], [0, 1, 1]]
    w = agreement.cohen_kappa(t, "linear")
    assert w.kappa == pytest.approx(0.632353, abs=1e-6) and w.p_expected == pytest.approx(0.66)
    assert w.se == pytest.approx(0.13974, abs=2e-5)
    assert agreement.cohen_kappa(t, "none").kappa == pytest.approx(0.572650, abs=1e-6)


def test_kappa_degenerate_cases_say_why() -> None:
    assert agreement.cohen_kappa([[1, 0], [0, 0]]).kappa is None
    k = agreement.cohen_kappa([[5, 0], [0, 0]])
    assert k.kappa is None and "same class" in k.reason
    perfect = agreement.cohen_kappa(np.diag([3, 4, 5, 0, 1]), "linear")
    assert perfect.kappa == pytest.approx(1.0) and perfect.ci_high == 1.0
    with pytest.raises(ValueError, match="square"):
        agreement.cohen_kappa([[1, 2, 3]])


def test_comparisons_readers_against_registry_and_pairs() -> None:
    latest = pd.DataFrame(
        {
            "study_id": [1, 2, 3, 1, 2, 3, 4],
            "reader_key": ["name:a"] * 3 + ["oidc:x|b"] * 4,
            "reader": ["A"] * 3 + ["B"] * 4,
            "verified": [False] * 3 + [True] * 4,
            "grade": ["CT-1", "CT-2", "ungradable", "CT-1", "CT-3", "CT-0", "CT-4"],
        }
    )
    cats = pd.Series({1: "CT-1", 2: "CT-2", 3: "CT-0", 4: "CT-4"})
    comps = agreement.comparisons(latest, cats)
    labels = [(c.label_a, c.label_b) for c in comps]
    assert labels == [("Registry class", "A (unverified)"), ("Registry class", "B"), ("A (unverified)", "B")]
    reg_a, reg_b, ab = comps
    assert reg_a.n == 2 and reg_a.unweighted.kappa == pytest.approx(1.0)  # ungradable left out
    assert reg_b.n == 4 and reg_b.cells[(2, 3)] == (2,)  # registry CT-2, B said CT-3
    assert ab.n == 2 and ab.cells == {(1, 1): (1,), (2, 3): (2,)}
    assert ab.as_dict()["cells"] == {"CT-1|CT-1": [1], "CT-2|CT-3": [2]}
