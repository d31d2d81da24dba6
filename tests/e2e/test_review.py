"""Case review in real Chromium: grade three studies with the keyboard (one with a note typed in the note box
and sent with the key), then find them in the registry ("Reviewed by me") and in both exports (the page's
CSV download and ``python -m mosmed review export``)."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys

from . import REPO, wait_for_app_run

READER = "E2E <b>reader</b> 'x'"
NOTE = "<script>alert(1)</script> **not bold** =1+1"
PANEL = ".st-key-review-panel"


def _panel_study(page) -> int:
    text = page.locator(PANEL).inner_text()
    m = re.search(r"study (\d{4})", text)
    assert m, text[:300]
    return int(m.group(1))


def _wait_for_study(page, not_this: int, timeout_ms: int = 60_000) -> int:
    page.wait_for_function(
        """([sel, old]) => { const el = document.querySelector(sel); if (!el) return false;
            const m = el.innerText.match(/study (\\d{4})/); return m && +m[1] !== old; }""",
        arg=[PANEL, not_this],
        timeout=timeout_ms,
    )
    wait_for_app_run(page)
    return _panel_study(page)


def test_grade_three_studies_by_keyboard_then_registry_and_export(app, tmp_path) -> None:
    page = app.open("viewer")
    name_box = page.locator(".st-key-app-w-reader-name input").first
    name_box.fill(READER)
    name_box.press("Enter")
    app.wait()
    page.locator(PANEL).get_by_text("Reviewing as", exact=False).wait_for()
    graded: dict[int, str] = {}
    for key, grade, note in (("Alt+1", "CT-1", None), ("Alt+3", "CT-3", NOTE), ("Alt+X", "ungradable", None)):
        sid = _panel_study(page)
        page.keyboard.press(key)
        app.wait()
        if note:
            box = page.locator(f"{PANEL} textarea").first
            box.click()
            box.type(note)
            # Alt+N straight from the note box: the note must go with the save.
        page.keyboard.press("Alt+N")
        graded[sid] = grade
        if len(graded) < 3:
            _wait_for_study(page, sid)
        else:
            app.wait()
            page.wait_for_timeout(500)
            app.wait()
    app.assert_no_exception()
    app.assert_no_page_errors()
    app.screenshot("review-viewer-after-three")
    assert len(graded) == 3

    # The registry in the same session (a reload would start a new one): "Reviewed by me" lists the three.
    page.locator('[data-testid="stSidebarNavLink"][href$="/registry"]').click()
    app.wait()
    page.locator(".st-key-registry-w-review").click()
    page.get_by_role("option", name="Reviewed by me", exact=True).click()
    app.wait()
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text(re.compile(r"^3 of \d+ studies$")).wait_for()
    app.screenshot("review-registry-mine")

    with page.expect_download() as dl:
        page.get_by_role("button", name=re.compile(r"Reviews CSV \(3\)")).click()
    rows = list(csv.DictReader(io.StringIO(open(dl.value.path(), encoding="utf-8").read())))
    got = {int(r["study_id"]): r for r in rows}
    assert {s: r["grade"] for s, r in got.items()} == graded
    assert all(r["reader"] == READER and r["verified"] == "False" for r in rows)
    noted = next(s for s, g in graded.items() if g == "CT-3")
    assert got[noted]["note"] == NOTE  # literal (CSV defuses only a leading formula character)

    # The command line reads the same database (MOSMED_DB, set for the whole test session).
    demo = app.server.cache_dir / "demo"
    p = subprocess.run(
        [sys.executable, "-m", "mosmed", "review", "export", "--data", str(demo), "--format", "json"],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    import json

    cli = {r["study_id"]: r for r in json.loads(p.stdout) if r["reader"] == READER}
    assert {s: r["grade"] for s, r in cli.items()} == graded and cli[noted]["note"] == NOTE
    app.assert_no_exception()


def test_a_confusion_matrix_cell_opens_its_studies(app) -> None:
    """Distributions -> Reader agreement: a click on a heat-map cell lists exactly that cell's studies."""
    demo = app.server.cache_dir / "demo"
    import pandas as pd

    from mosmed.registry import load_registry
    from mosmed.reviews.db import open_database
    from mosmed.reviews.identity import dataset_identity
    from mosmed.reviews.model import Reader, Review
    from mosmed.reviews.store import ReviewStore

    reg = pd.read_excel(demo / "dataset_registry.xlsx")
    reader = "E2E heat map"
    wrong = {}
    # Straight into the server's database (MOSMED_DB is the test session's), as another process would.
    store = ReviewStore(open_database())
    ident = dataset_identity(load_registry(demo))
    for i, (sid, cat) in enumerate(zip(reg["study_id"], reg["category"])):
        grade = cat if i % 3 else ("CT-4" if cat != "CT-4" else "CT-3")  # every third study graded CT-4 (or CT-3)
        if grade != cat:
            wrong[int(sid)] = (cat, grade)
        store.save(ident, int(sid), Reader.named(reader), Review(grade), source="cli")
    store.db.dispose()
    page = app.open("distributions")
    pick = page.locator(".st-key-dist-w-agreement_pick")
    pick.scroll_into_view_if_needed()
    pick.click()
    page.get_by_role("option", name=re.compile(rf"^Registry class × {reader} \(unverified\)")).click()
    app.wait()
    # The off-diagonal cell (registry class, CT-4) of the first wrongly graded study.
    sid, (cat, grade) = next(iter(wrong.items()))
    in_cell = sorted(s for s, cg in wrong.items() if cg == (cat, grade))
    classes = ["CT-0", "CT-1", "CT-2", "CT-3", "CT-4"]
    chart = page.locator(".stPlotlyChart").last
    chart.scroll_into_view_if_needed()
    cell = chart.locator("g.points path").nth(classes.index(cat) * 5 + classes.index(grade))
    box = cell.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(re.compile(r"/registry"), timeout=60_000)
    app.wait()
    n = len(in_cell)
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text(re.compile(rf"^{n} of \d+ studies$")).wait_for()
    assert main.get_by_text(f"Showing the {n} stud", exact=False).count() == 1
    app.screenshot("review-heatmap-cell-opened")
    app.assert_no_exception()
