"""components.viewer performance paths: header-only payloads for reruns, one encode per study."""

from __future__ import annotations

from test_viewer_component import fake_study  # tests/ is on sys.path (rootdir conftest)

from components import viewer
from mosmed import wire
from mosmed.render import OverlayStyle
from mosmed.windowing import PRESETS


def test_light_payload_has_no_data_but_same_token_and_metadata():
    study = fake_study()
    kw = dict(window=PRESETS["lung"], style=OverlayStyle(), dataset_root="/x", nav_slice=2, nav_seq=3)
    full, full_blob = wire.unpack(viewer.viewer_payload(study, **kw))
    light, light_blob = wire.unpack(viewer.viewer_payload(study, light=True, **kw))
    assert light["light"] is True and full["light"] is False
    assert light["token"] == full["token"] == viewer.study_token(study)
    for name in ("slices", "labels", "crop", "fill"):
        assert name not in light, name
    assert len(light_blob) == 0 and len(full_blob) > 1000
    assert light["nav"] == full["nav"] and light["z_mm"] == full["z_mm"] and light["n"] == full["n"]
    assert len(viewer.viewer_payload(study, light=True, **kw)) < 8000


def test_one_encode_per_study_shared_by_every_caller():
    study = fake_study(seed=3)
    calls = []
    store = viewer._EncodedStore()
    key = ("/x", 7, "k", (6, 40, 48), True, True)

    def make():
        calls.append(1)
        return wire.encode_study(study.volume, study.mask, study.lung)

    a = store.get(key, make)
    b = store.get(key, make)
    assert a is b and len(calls) == 1 and store.has(key)


def test_store_is_bounded_in_bytes():
    store = viewer._EncodedStore()
    store.MAX_BYTES = 1
    for i in range(3):
        store.get(("k", i), lambda: wire.encode_study(fake_study(seed=i).volume))
    assert not store.has(("k", 0)) and store.has(("k", 2))
