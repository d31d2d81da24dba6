"""AppTest of the viewer's Python side on the viewer and teaching pages (the component's JS cannot run here):
what the payload carries, that the quiz keeps the class out of it, and that browser reports are followed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from apptest_data import SERVED_MEDIA, served_media  # noqa: F401  (the media stand-in, autouse here)
from streamlit.testing.v1 import AppTest
from test_page_viewer import REPO, app, tiny_dataset  # noqa: F401  (fixtures: tests/ is on sys.path)

from mosmed import wire


def _served(url: str) -> bytes:
    return SERVED_MEDIA[url]


def _payloads(at) -> list[tuple[dict, bytes]]:
    """Every viewer payload of the run, unpacked (the component's data is one bytes field); when the study's
    data are served as a file (``data_url``), the blob is that file's content, as the browser fetches it."""
    out = []
    for el in at.get("bidi_component"):
        if not el.proto.component_name.endswith("mosmed_ct_viewer"):
            continue
        header, blob = wire.unpack(bytes(el.proto.bytes))
        if header.get("data_url"):
            assert not blob, "data both inline and as a file"
            blob = _served(header["data_url"])
        out.append((header, blob))
    return out


def test_viewer_page_sends_the_exact_volume_once(app, tiny_dataset):
    at = app(study="1", slice="3", window="bone")
    assert not at.exception
    [(header, blob)] = _payloads(at)
    from mosmed.volume import read_volume

    truth = read_volume(tiny_dataset / "studies" / "CT-1" / "study_0001.nii.gz").data
    # The message holds the header; the data are served as a file the browser fetches (the slice on screen
    # by a range request first), exact.
    assert header["light"] is False and header["data_url"].startswith("/media/") and len(_inline(at)) == 0
    assert header["data_bytes"] == len(blob) and np.array_equal(wire.decode_volume(header, blob), truth)
    assert header["nav"]["slice"] == 2 and header["window"]["name"] == "bone"
    assert header["url_params"] == {"study": "1", "plane": "axial"} and header["has_mask"]
    assert len(at.get("bidi_component")[0].proto.bytes) < 20_000
    # A browser that lost it asks again ("need"): served again, with a new sequence number.
    at.session_state["viewer.ct"] = {"need": {"key": header["token"], "part": "rest", "token": "n1"}}
    at.run()
    [(again, blob_again)] = _payloads(at)
    assert again["data_seq"] == header["data_seq"] + 1 and blob_again == blob
    at.run()  # a rerun: the browser holds the data already
    [(light, blob2)] = _payloads(at)
    assert light["light"] is True and len(blob2) == 0 and light["token"] == header["token"]
    assert light["data_url"] is None


def _inline(at) -> bytes:
    return wire.unpack(bytes(at.get("bidi_component")[0].proto.bytes))[1]


def test_browser_report_moves_the_url_and_window_widgets(app):
    at = app(study="1")
    [(header, _)] = _payloads(at)
    # What the JS sends with setStateValue("view", ...) after a right-drag and a few slices of scrolling.
    at.session_state["viewer.ct"] = {
        "view": {
            "token": header["token"],
            "study": 1,
            "slice": 5,
            "level": -500,
            "width": 1200,
            "name": None,
            "plane": "coronal",
        }
    }
    at.run()
    assert not at.exception
    qp = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert qp == {"study": "1", "slice": "6", "window": "-500,1200", "plane": "coronal"}
    assert at.number_input(key="viewer.level").value == -500.0 and at.number_input(key="viewer.width").value == 1200.0
    assert at.segmented_control(key="viewer.preset").value == "custom"
    [(header2, _)] = _payloads(at)
    # An echo of the browser's own state never counts as a jump asked by Python (no pull-back).
    assert header2["window"]["seq"] == header["window"]["seq"] and header2["nav"]["seq"] == header["nav"]["seq"]


def test_hostile_browser_report_is_ignored(app):
    at = app(study="1", slice="2")
    [(header, _)] = _payloads(at)
    at.session_state["viewer.ct"] = {
        "view": {"token": header["token"], "slice": 10**9, "level": "<script>", "width": -5, "plane": "../../etc"},
        "measures": {"token": header["token"], "items": [{"kind": "x"}] * 3},
    }
    at.run()
    assert not at.exception and not at.error
    qp = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert qp["slice"] == "2" and qp["plane"] == "axial" and qp["window"] == "lung"


def test_measurements_are_kept_per_study_for_the_session(app):
    at = app(study="1")
    [(header, _)] = _payloads(at)
    item = {"kind": "line", "plane": "axial", "index": 2, "p0": [10.0, 10.0], "p1": [30.0, 10.0]}
    at.session_state["viewer.ct"] = {"measures": {"token": header["token"], "items": [item]}}
    at.run()
    at.button(key="viewer.next").click().run()  # another study, then back
    assert _payloads(at)[0][0]["measures"] == []
    at.button(key="viewer.prev").click().run()
    [(back, _)] = _payloads(at)
    assert back["token"] == header["token"] and back["measures"] == [item]


def _teaching(env_root: Path, cache: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("MOSMED_DATA", str(env_root))
    monkeypatch.setenv("MOSMED_CACHE", str(cache))
    return AppTest.from_file(str(REPO / "pages" / "teaching.py"), default_timeout=60)


def test_quiz_shows_the_study_in_the_viewer_without_its_class(tiny_dataset, tmp_path_factory, monkeypatch):
    at = _teaching(tiny_dataset, tmp_path_factory.getbasetemp() / "viewer_cache", monkeypatch)
    at.session_state["teaching.quiz.study"] = 1  # the CT-1 study with an expert mask
    at.run()
    assert not at.exception, at.exception
    sid = at.session_state["teaching.quiz.study"]
    assert sid == 1
    truth = str(pd.read_csv(tiny_dataset / "dataset_registry.csv").set_index("study_id").loc[sid, "category"])
    payloads = _payloads(at)
    assert len(payloads) >= 1
    header, blob = payloads[0]  # the quiz viewer (compare views are in other tabs)
    text = repr(header)
    assert header["anonymous"] and header["study_id"] is None and header["lesion_mm2"] is None
    assert truth not in text, text
    assert f"study {sid}" not in text, text
    assert not header["has_mask"]
    assert header["url_params"] is None  # the quiz never writes the study into the URL
    assert not (wire.decode_labels(header, blob) & wire.LESION_BIT).any()
    at.segmented_control(key="teaching.w.answer.0").set_value(truth).run()
    at.button(key="teaching.w.check").click().run()
    assert not at.exception
    after, blob_after = _payloads(at)[0]
    assert not after["anonymous"] and after["study_id"] == sid and truth in after["study_label"]
    assert after["has_mask"] and (wire.decode_labels(after, blob_after) & wire.LESION_BIT).any()
