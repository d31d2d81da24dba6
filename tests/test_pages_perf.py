"""AppTest of what the pages do to be fast (issue 11): thumbnails as media URLs, a paged big registry, the
distributions page's placeholders then charts, a class click that switches before drawing, and a registry of
2500 rows (the small version of the 100 000-row soak test below) on every page.

The big registries are made as the benchmark makes its 100 000-row one (``bench/prepare.py``,
``fabricate_registry``): hard links to a tiny built dataset and stats documents fabricated from its own.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
for _p in (str(REPO), str(REPO / "tests"), str(REPO / "bench")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from apptest_data import AppData, app_data, app_env, new_app, page_failures, texts  # noqa: E402,F401

READY_KEY = "dist.charts_ready"  # pages/distributions.py


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not page_failures(at), page_failures(at)


def _row_count(at) -> tuple[int, int]:
    for t in texts(at.markdown):
        m = re.match(r"\*\*(\d+)\*\* of (\d+) studies", t)
        if m:
            return int(m.group(1)), int(m.group(2))
    raise AssertionError(f"no row count on the page: {texts(at.markdown)}")


def _plotly(at) -> list:
    return list(at.get("plotly_chart"))


def _skeletons(at) -> list:
    return list(at.get("skeleton"))


# --------------------------------------------------------------------------------------------- big registries


@dataclass(frozen=True)
class Big:
    root: Path
    cache: Path
    db: Path
    n: int


def make_big(base: Path, n_rows: int) -> Big:
    """A fabricated ``n_rows``-row registry with its complete cache, from a tiny built dataset."""
    from cache_faults import write_small_dataset
    from prepare import fabricate_registry

    from mosmed.dataset import Dataset

    tpl = write_small_dataset(base / "template", n=6, shape=(32, 32, 5), seed=11)
    Dataset(tpl, base / "template-cache").build_cache(workers=1)
    root, cache = base / f"rows{n_rows}", base / "cache"
    fabricate_registry(tpl, base / "template-cache", root, cache, n_rows)
    return Big(root, cache, base / "reviews.db", n_rows)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Big:
    return make_big(tmp_path_factory.mktemp("big"), 2500)


def _big_app(monkeypatch, big: Big):
    monkeypatch.setenv("MOSMED_DATA", str(big.root))
    monkeypatch.setenv("MOSMED_CACHE", str(big.cache))
    monkeypatch.setenv("MOSMED_DB", f"sqlite:///{big.db}")
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(REPO / "app.py"), default_timeout=120)


# ------------------------------------------------------------------------------------------------ registry


def test_registry_thumbnails_are_media_urls_not_data_uris(app_data: AppData) -> None:
    with app_env(app_data, "demo"):
        at = new_app()
        at.switch_page("pages/registry.py")
        at.run()
        _ok(at)
        table = at.dataframe[0].value
        urls = [u for u in table["thumbnail"] if u is not None]
        assert len(urls) == len(table), "every built demo study has a thumbnail"
        assert all(re.fullmatch(r"(?:[\w-]+/)*media/[0-9a-f]+\.png", u) for u in urls), urls[:3]
        assert not any(str(u).startswith(("data:", "/")) for u in urls), "small relative URLs, never data URIs"
        # A filter change (the fragment) hands out the same URLs: the session's files are still registered.
        first = dict(zip(table["study_id"], table["thumbnail"]))
        cls = str(table["category"].iloc[0])
        at.multiselect(key="registry.w.class").set_value([cls]).run()
        _ok(at)
        again = at.dataframe[0].value
        assert all(first[s] == u for s, u in zip(again["study_id"], again["thumbnail"]))


def test_a_big_registry_is_shown_a_page_at_a_time(monkeypatch, big: Big) -> None:
    at = _big_app(monkeypatch, big)
    at.switch_page("pages/registry.py")
    at.run()
    _ok(at)
    assert _row_count(at) == (big.n, big.n)
    table = at.dataframe[0].value
    assert len(table) == 2000 and table["study_id"].tolist()[:3] == [1, 2, 3]
    assert table["thumbnail"].notna().all()
    at.session_state["registry.w.page"] = 2
    at.run()
    _ok(at)
    assert at.dataframe[0].value["study_id"].tolist() == list(range(2001, big.n + 1))
    at.session_state["registry.w.page"] = 1
    at.selectbox(key="registry.w.order").set_value("study_id").run()
    at.toggle(key="registry.w.desc").set_value(True).run()
    _ok(at)
    assert at.dataframe[0].value["study_id"].iloc[0] == big.n, "Order by orders every page, not the one shown"
    at.text_input(key="registry.w.ids").set_value("1-10").run()
    _ok(at)
    assert _row_count(at) == (10, big.n) and len(at.dataframe[0].value) == 10
    assert sorted(at.session_state["registry.filtered_ids"]) == list(range(1, 11))
    at.text_input(key="registry.w.ids").set_value("").run()
    assert at.session_state["registry.filtered_ids"] is None, "no restriction is stored as no filter"


# ------------------------------------------------------------------------------------------- distributions


def test_distributions_first_draws_the_class_chart_then_every_chart(app_data: AppData) -> None:
    with app_env(app_data, "demo"):
        at = new_app()
        at.switch_page("pages/distributions.py")
        at.run()
        _ok(at)
        assert len(_plotly(at)) == 1, "a first visit sends the class chart alone"
        assert len(_skeletons(at)) >= 4, "placeholders stand where the other charts go"
        assert any(d.value.columns[0] == "class" for d in at.dataframe), "the class table is there at once"
        at.session_state[READY_KEY] = True  # what the browser piece's answer sets
        at.run()
        _ok(at)
        assert len(_plotly(at)) >= 5 and not _skeletons(at)


def test_a_class_bar_click_opens_the_registry_filtered(app_data: AppData) -> None:
    with app_env(app_data, "demo"):
        at = new_app()
        at.switch_page("pages/distributions.py")
        at.run()
        counts = next(d.value for d in at.dataframe if d.value.columns[0] == "class")
        n = int(counts.loc[counts["class"] == "CT-2", "studies"].iloc[0])
        # The chart's selection as Streamlit keeps it (a click on the CT-2 bar: customdata [class]).
        at.session_state["dist.classes"] = {
            "selection": {"points": [{"customdata": ["CT-2"]}], "point_indices": [2], "box": [], "lasso": []}
        }
        at.run()
        _ok(at)
        assert [t.value for t in at.title] == ["Registry"]
        assert at.multiselect(key="registry.w.class").value == ["CT-2"]
        assert _row_count(at)[0] == n


def test_big_scatters_draw_a_stable_sample_and_say_so() -> None:
    import numpy as np
    import pandas as pd

    from components import charts

    n = 5000
    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {
            "study_id": np.arange(1, n + 1),
            "category": rng.choice(["CT-0", "CT-1", "CT-2"], n),
            "estimated_involvement_pct": rng.uniform(0, 60, n),
            "involvement_pct": np.nan,
            "lung_ml": rng.uniform(2000, 6000, n),
            "lesion_ml": np.nan,
        }
    )
    a = charts.sample_studies(df)
    b = charts.sample_studies(df.sample(frac=1.0, random_state=1))
    assert len(a) == charts.MAX_POINTS and set(a["study_id"]) == set(b["study_id"]), "the same studies, any order"
    assert a["study_id"].is_monotonic_increasing
    assert charts.sample_studies(df.head(100)).equals(df.head(100))
    fig = charts.involvement_figure(df, ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4"), (25.0, 50.0, 75.0))
    assert sum(len(t.x) for t in fig.data if t.x is not None and len(t.x) > 1) == charts.MAX_POINTS
    assert f"{charts.MAX_POINTS:,} of {n:,} studies drawn</sup>" in fig.layout.title.text
    small = charts.involvement_figure(df.head(50), ("CT-0", "CT-1", "CT-2"), (25.0,))
    assert "drawn" not in small.layout.title.text


def _outside_row_by_row(frame, tolerance):
    """The distributions page's former table, one row at a time (the reference for tables.outside_band)."""
    import math

    import pandas as pd

    from mosmed import severity

    rows = []
    for r in frame.itertuples(index=False):
        est = r.estimated_involvement_pct
        if est is None or (isinstance(est, float) and math.isnan(est)):
            continue
        try:
            inside = severity.in_band(str(r.category), float(est), tolerance)
            lo, hi = severity.band(str(r.category))
        except KeyError:
            continue
        if inside:
            continue
        rows.append(
            {
                "study_id": int(r.study_id),
                "category": str(r.category),
                "band": f"{lo:g}–{hi:g}%" if hi > 0 else "0%",
                "estimated": float(est),
                "estimate_suggests": severity.class_for_involvement(float(est)),
                "measured": (
                    None if r.involvement_pct is None or math.isnan(r.involvement_pct) else float(r.involvement_pct)
                ),
            }
        )
    return pd.DataFrame(rows, columns=["study_id", "category", "band", "estimated", "estimate_suggests", "measured"])


@pytest.mark.parametrize("tolerance", [0.0, 2.5, 20.0, -1.0])
def test_outside_band_equals_the_row_by_row_table(tolerance) -> None:
    import numpy as np
    import pandas as pd

    from components import tables

    rng = np.random.default_rng(7)
    n = 3000
    est = rng.choice([0.0, 25.0, 50.0, 75.0, 100.0, np.nan], n) + rng.choice([0.0, 0.0, 1e-9, -1e-9, 3.7], n)
    df = pd.DataFrame(
        {
            "study_id": np.arange(1, n + 1),
            "category": rng.choice(["CT-0", "CT-1", "CT-2", "CT-3", "CT-4", "CT-9", ""], n),
            "estimated_involvement_pct": np.clip(est, 0, 100),
            "involvement_pct": np.where(rng.random(n) < 0.3, rng.uniform(0, 100, n), np.nan),
        }
    )
    got, want = tables.outside_band(df, tolerance), _outside_row_by_row(df, tolerance)
    assert len(want) > 100
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)
    assert tables.outside_band(df.head(0), tolerance).columns.tolist() == want.columns.tolist()


# -------------------------------------------------------------------------------------------- every page, big


def _every_page(at, n: int) -> None:
    at.run()
    _ok(at)
    for page in (
        "pages/overview.py",
        "pages/registry.py",
        "pages/distributions.py",
        "pages/viewer.py",
        "pages/teaching.py",
    ):
        at.switch_page(page)
        at.run()
        _ok(at)
        assert not at.error, (page, texts(at.error))
    at.switch_page("pages/overview.py")
    at.run()
    assert any(m.label == "Studies" and str(m.value) == str(n) for m in at.metric)
    at.switch_page("pages/distributions.py")
    at.session_state[READY_KEY] = True
    at.run()
    _ok(at)
    assert len(_plotly(at)) >= 5


def test_every_page_loads_on_a_2500_row_registry(monkeypatch, big: Big) -> None:
    _every_page(_big_app(monkeypatch, big), big.n)


@pytest.mark.soak
def test_every_page_loads_on_a_100k_row_registry(monkeypatch, tmp_path) -> None:
    b = make_big(tmp_path, 100_000)
    _every_page(_big_app(monkeypatch, b), b.n)
