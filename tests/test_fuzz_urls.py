"""URL fuzzing of the viewer, and text from files or the registry never rendered as HTML.

``FUZZ_CASES`` seeded query strings (``study``, ``slice``, ``window``, ``plane`` and unknown keys; negative, huge,
non-numeric, unicode, HTML and ``<script>`` text, traversal strings, ``%2e%2e``, NUL bytes, very long values,
repeated keys) go through ``AppTest`` on the viewer page, one fresh app per case, on the bad-input corpus (whose
``..``/absolute/symlink rows point at real files in a sibling ``<root>-outside`` folder). For every case:

* no exception and no page failure; an ``st.error`` only for a study that is really broken, naming it;
* the view falls back to something valid (a study of the dataset, a slice in range, a window, a plane; the URL
  rewritten to its canonical form) and a hostile parameter gets a notice;
* no notice, error or caption holds raw markup (``<script``, ``<img``, markdown links, ``javascript:``);
* no file outside the dataset root, the cache root, the repository or the interpreter is opened (audit hook,
  see test_path_guard.py), and nothing under ``<root>-outside`` nor ``/etc/passwd`` ever is.

The long run (``make soak``: 2000 cases, another seed) is tests/soak/test_fuzz_long.py, reusing this module.
"""

from __future__ import annotations

import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from badinputs import make_bad_dataset, write_good_study  # noqa: E402
from test_path_guard import OpenRecorder, outside  # noqa: E402

from components.markup import md_escape  # noqa: E402

VIEWER = str(REPO / "pages" / "viewer.py")
APP = str(REPO / "app.py")
FUZZ_CASES = 200
FUZZ_SEED = 20200428
PLANES = ("axial", "coronal", "sagittal")

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_MD_LINK = "[click](javascript:alert(1))"
XSS_MD_IMG = "![t](http:127.0.0.1:9)"
HOSTILE_DIR_NAME = "ds_[x](javascript:alert(1))_<img src=x onerror=alert(1)>"
# Markers that must never reach a rendered element unescaped.
_RAW_MARKERS = (
    re.compile(r"(?<!\\)<(script|img|b>|iframe|svg)", re.I),
    re.compile(r"(?<!\\)\]\("),
    re.compile(r"javascript:", re.I),
    re.compile(r"/etc/passwd"),
    re.compile("\x00"),
)

# ------------------------------------------------------------------------------------------ value pools

HOSTILE = (
    "<script>alert(1)</script>",
    XSS_IMG,
    XSS_MD_LINK,
    XSS_MD_IMG,
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/etc/passwd",
    "file:///etc/passwd",
    "....//....//etc/passwd",
    "..\\..\\windows\\win.ini",
    "\x00",
    "1\x00",
    "\x00../../etc/passwd",
    "a" * 10000,
    "9" * 400,
    "😀",
    "ＳＴＵＤＹ",
    "１",
    "٣",
    "\u202e1",
    "\u200b",
    " ",
    "",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "' OR 1=1 --",
    "${7*7}",
    "{{7*7}}",
    "%s%s%s",
    "null",
    "undefined",
    "true",
    "[]",
    "{}",
    "\r\n",
    "\t",
    "**bold**",
    "`code`",
    "$x$",
    "<b>bold</b>",
    "&lt;script&gt;",
    "\\",
    "study_../../x",
    "-0",
    "+1",
    "0x10",
)
STUDY_SPECIAL = ("-1", "0", "99999999999999999999", "1e3", "1.5", "999", "2147483648", "study_", "study_-1")
#: Accepted spellings of an existing id (``?study=0002`` / ``study_0002``): valid, no notice needed.
STUDY_ALIASES = ("01", "study_0002", "STUDY-0003", "0000000004", " 2 ")
SLICE_SPECIAL = ("-1", "0", "1", "2", "3", "4", "5", "999999999999", "1e9", "1.5", "-999999999999")
WINDOW_GOOD = ("lung", "mediastinum", "soft", "bone", "-600,1500", "40,400", "50,350")
WINDOW_SPECIAL = (
    "LUNG",
    "0,0",
    "1e308,1e308",
    "nan,nan",
    "inf,1",
    "-600,-1",
    "a,b",
    ",",
    "1,2,3",
    "-600;1500",
    "-600, 1500",
    "99999,1",
    "-99999,1",
)
PLANE_SPECIAL = ("oblique", "AXIAL", "Coronal", " sagittal ", "3d", "axial\x00")
UNKNOWN_KEYS = (
    "evil",
    "<script>",
    "../../x",
    "study[]",
    "__proto__",
    "a" * 300,
    "ключ",
    "embed",
    "page",
    "embed_options",
    "x\x00",
    "%2e%2e",
)
#: Streamlit's own keys: st.query_params never shows them to the page and keeps them in the URL.
RESERVED_KEYS = ("embed", "embed_options")
#: Special values the page may rightly accept without a word (lenient spellings, or slice numbers that are
#: in range for most studies but not for the one-slice study): neither wanted nor hostile.
NEUTRAL = {
    "slice": {"1", "2", "3", "4", "5"},
    "window": {"LUNG", "-600;1500", "-600, 1500"},
    "plane": {"AXIAL", "Coronal", " sagittal "},
}


@dataclass
class FuzzCase:
    params: dict[str, str | list[str]]
    hostile: bool  # at least one unknown key or value outside the valid pools
    wants: dict[str, str] = field(default_factory=dict)  # valid values requested (to check they were applied)


def generate_cases(n: int, seed: int, ok_ids: list[int], error_ids: list[int]) -> list[FuzzCase]:
    """``n`` seeded query strings mixing valid and hostile values (about a fifth entirely valid)."""
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        all_valid = rng.random() < 0.2
        params: dict[str, str | list[str]] = {}
        wants: dict[str, str] = {}
        hostile = False

        def pick(valid: list[str], special: tuple[str, ...], key: str) -> str | list[str]:
            nonlocal hostile
            if key == "study" and not all_valid and rng.random() < 0.1:
                return rng.choice(STUDY_ALIASES)  # valid spelling; nothing to say, nothing to check
            if all_valid or rng.random() < 0.35:
                v = rng.choice(valid)
                wants[key] = v
                return v
            v = rng.choice(special + HOSTILE) if rng.random() < 0.6 else rng.choice(HOSTILE)
            if not v.strip():  # an empty value means "not given": the default, without a notice
                return v
            if v in NEUTRAL.get(key, ()):  # may be accepted as it is: nothing to require either way
                return v
            if rng.random() < 0.15:  # repeated key: the page sees the last value
                if rng.random() < 0.5:
                    last = rng.choice(valid)
                    wants[key] = last
                    return [v, last]
                hostile = True
                return [rng.choice(valid), v]
            hostile = True
            return v

        if rng.random() < 0.9:
            params["study"] = pick([str(s) for s in ok_ids], STUDY_SPECIAL + tuple(str(s) for s in error_ids), "study")
        if rng.random() < 0.6:
            params["slice"] = pick(["1", "2"], SLICE_SPECIAL, "slice")
        if rng.random() < 0.6:
            params["window"] = pick(list(WINDOW_GOOD), WINDOW_SPECIAL, "window")
        if rng.random() < 0.5:
            params["plane"] = pick(list(PLANES), PLANE_SPECIAL, "plane")
        if not all_valid and rng.random() < 0.3:
            for _ in range(rng.randint(1, 3)):
                k = rng.choice(UNKNOWN_KEYS)
                params[k] = rng.choice(HOSTILE)
                hostile |= k not in RESERVED_KEYS
        cases.append(FuzzCase(params, hostile, wants))
    return cases


# ------------------------------------------------------------------------------------------ the dataset


@dataclass(frozen=True)
class FuzzData:
    root: Path
    cache: Path
    outside_dir: Path
    ok_ids: list[int]
    error_ids: list[int]
    n_slices: dict[int, int]


def build_fuzz_data(base: Path) -> FuzzData:
    """The bad corpus plus rows whose class and paths carry HTML / markdown, in a folder with a hostile name."""
    from mosmed.dataset import Dataset
    from mosmed.registry_write import write_registry_xlsx

    root = base / "bad"
    make_bad_dataset(root)
    # The same dataset reached through a folder whose name is hostile (pages show the folder name).
    os.symlink(root, base / HOSTILE_DIR_NAME)
    reg = pd.read_excel(root / "dataset_registry.xlsx")
    write_good_study(root / "studies/CT-1/study_0800.nii.gz", seed=800)
    hostile_rows = [
        {"study_id": 800, "category": XSS_IMG, "study_file": "/studies/CT-1/study_0800.nii.gz", "mask_file": None},
        {
            "study_id": 801,
            "category": "CT-1",
            "study_file": f"/studies/CT-1/{XSS_MD_LINK}<script>x.nii.gz",
            "mask_file": None,
        },
        {
            "study_id": 802,
            "category": "CT-1",
            "study_file": "/studies/CT-1/study_0800.nii.gz",
            "mask_file": f"/masks/{XSS_MD_IMG} **b** {XSS_IMG}.nii.gz",
        },
    ]
    reg = pd.concat([reg, pd.DataFrame(hostile_rows)], ignore_index=True)
    write_registry_xlsx(reg, root / "dataset_registry.xlsx")
    cache = base / "cache"
    ds = Dataset(root, cache)
    ds.build_cache(workers=1)
    # One row per registry row: a repeated id's own row (in error) does not make its study broken.
    summary = ds.summary().drop_duplicates("study_id")
    ok_ids = sorted(int(s) for s in summary.loc[summary["status"] == "ok", "study_id"])
    error_ids = sorted(int(s) for s in summary.loc[summary["status"] != "ok", "study_id"])
    n_slices = {int(r.study_id): int(r.n_slices) for r in summary.itertuples() if r.status == "ok"}
    return FuzzData(root, cache, Path(f"{root}-outside"), ok_ids, error_ids, n_slices)


@pytest.fixture(scope="module")
def fuzz_data(tmp_path_factory) -> FuzzData:
    return build_fuzz_data(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture()
def fuzz_env(fuzz_data, monkeypatch) -> FuzzData:
    monkeypatch.setenv("MOSMED_DATA", str(fuzz_data.root))
    monkeypatch.setenv("MOSMED_CACHE", str(fuzz_data.cache))
    return fuzz_data


# ------------------------------------------------------------------------------------------ checking


def rendered_texts(at) -> list[tuple[str, str]]:
    """``(type, text)`` of every element whose text is rendered as markdown or shown as text."""
    out = []
    for node in at._tree:
        t = getattr(node, "type", "")
        if t in (
            "markdown",
            "caption",
            "warning",
            "error",
            "info",
            "success",
            "title",
            "header",
            "subheader",
            "exception",
            "toast",
            "text",
            "code",
            "latex",
            "metric",
            "alert",
        ):
            try:
                out.append((t, str(node.value)))
            except Exception:  # noqa: BLE001 - an element without a plain value
                continue
            if t == "metric":
                out.append((t, str(getattr(node, "label", ""))))
    return out


def markup_problems(at) -> list[str]:
    """Rendered elements holding raw markup, and markdown elements allowed to render HTML."""
    bad = []
    for node in at._tree:
        if getattr(node, "type", "") in ("markdown", "caption") and getattr(node.proto, "allow_html", False):
            bad.append(f"{node.type} with unsafe_allow_html: {node.value[:120]!r}")
    for t, text in rendered_texts(at):
        if t in ("code", "text"):  # shown verbatim, never interpreted
            continue
        for rx in _RAW_MARKERS:
            if rx.search(text):
                bad.append(f"{t}: {text[:160]!r} matches {rx.pattern!r}")
    return bad


def _qp(at) -> dict[str, str]:
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items() if k not in RESERVED_KEYS}


def run_case(case: FuzzCase, data: FuzzData, *, page: str = VIEWER, timeout: float = 30) -> list[str]:
    """Run one case; return the list of failures (empty when the case passes)."""
    from streamlit.testing.v1 import AppTest

    from mosmed.windowing import parse_window

    at = AppTest.from_file(page, default_timeout=timeout)
    for k, v in case.params.items():
        at.query_params[k] = v
    with OpenRecorder() as rec:
        at.run()
    fails: list[str] = []
    if at.exception:
        return [f"exception: {at.exception[0].value[:300]}"]
    errors = [e.value for e in at.error]
    if any(" page failed: " in e for e in errors):
        return [f"page failed: {errors}"]
    fails += markup_problems(at)
    bad_opens = outside(rec.paths, [data.root, data.cache])
    if bad_opens:
        fails.append(f"opened outside the roots: {bad_opens[:5]}")
    if rec.under(data.outside_dir) or any("passwd" in p for p in rec.paths):
        fails.append(f"opened a traversal target: {sorted(rec.under(data.outside_dir))}")
    if page != VIEWER:
        return fails

    sid = at.session_state["viewer.study"] if "viewer.study" in at.session_state else None
    all_ids = set(data.ok_ids) | set(data.error_ids)
    if sid not in all_ids:
        fails.append(f"viewer.study {sid!r} is not a study of the dataset")
        return fails
    qp = _qp(at)
    if sid in data.error_ids:
        if not any(str(sid) in e for e in errors):
            fails.append(f"broken study {sid} opened without an error naming it: {errors}")
        if qp != {"study": str(sid)}:
            fails.append(f"URL of a broken study not canonical: {qp}")
        return fails
    if errors:
        fails.append(f"st.error on a readable study {sid}: {errors}")
    n = data.n_slices[sid]
    k = at.session_state["viewer.slice"]
    if not (isinstance(k, int) and 0 <= k < n):
        fails.append(f"slice {k!r} outside 0..{n - 1}")
    if set(qp) != {"study", "slice", "window", "plane"}:
        fails.append(f"URL not rewritten to its canonical keys: {sorted(qp)}")
    else:
        if qp["study"] != str(sid) or qp["slice"] != str(k + 1) or qp["plane"] not in PLANES:
            fails.append(f"URL does not match the view: {qp} (study {sid}, slice {k})")
        try:
            parse_window(qp["window"])
        except ValueError as e:
            fails.append(f"URL window {qp['window']!r} unusable: {e}")
    notices = [w.value for w in at.warning]
    if case.hostile and not notices and not errors:
        fails.append(f"hostile link without a notice: {case.params!r:.300}")
    # Valid values that were asked for are applied (unless the study they belong to was refused).
    if case.wants.get("study") == str(sid):
        if "plane" in case.wants and at.session_state["viewer.plane"] != case.wants["plane"]:
            fails.append(f"plane {case.wants['plane']} not applied")
        if "window" in case.wants:
            want = parse_window(case.wants["window"])
            got = (at.session_state["viewer.level"], at.session_state["viewer.width"])
            if got != (float(want.level), float(want.width)):
                fails.append(f"window {case.wants['window']} not applied: {got}")
        if "slice" in case.wants and isinstance(case.params.get("slice"), str):
            want_k = min(int(case.wants["slice"]), n) - 1
            if k != want_k:
                fails.append(f"slice {case.wants['slice']} not applied: {k}")
    return fails


def run_cases(cases: list[FuzzCase], data: FuzzData, **kw) -> tuple[int, dict[int, list[str]], float]:
    """Run every case; ``(n run, {case index: failures}, seconds)``."""
    t0 = time.perf_counter()
    failures: dict[int, list[str]] = {}
    for i, case in enumerate(cases):
        f = run_case(case, data, **kw)
        if f:
            failures[i] = f
    return len(cases), failures, time.perf_counter() - t0


def _report(cases: list[FuzzCase], failures: dict[int, list[str]]) -> str:
    lines = [f"{len(failures)} of {len(cases)} cases failed; first ones:"]
    for i, f in list(failures.items())[:8]:
        lines.append(f"  case {i} {cases[i].params!r:.200}: {f[:3]}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ tests


def test_generator_covers_the_hostile_shapes(fuzz_data):
    cases = generate_cases(FUZZ_CASES, FUZZ_SEED, fuzz_data.ok_ids, fuzz_data.error_ids)
    assert len(cases) >= 200
    flat = [v for c in cases for vals in c.params.values() for v in (vals if isinstance(vals, list) else [vals])]
    keys = {k for c in cases for k in c.params}
    assert {"study", "slice", "window", "plane"} <= keys and keys - {"study", "slice", "window", "plane"}
    for needle in ("<script>", "../../etc/passwd", "%2e%2e", "\x00", "😀", XSS_IMG):
        assert any(needle in v for v in flat), needle
    assert any(len(v) >= 10000 for v in flat)
    assert any(isinstance(v, list) for c in cases for v in c.params.values())  # repeated keys
    assert sum(c.hostile for c in cases) >= 120 and sum(not c.hostile for c in cases) >= 20
    assert generate_cases(5, FUZZ_SEED, [1], [2])[0].params == generate_cases(5, FUZZ_SEED, [1], [2])[0].params


def test_fuzzed_links_fall_back_safely(fuzz_env):
    cases = generate_cases(FUZZ_CASES, FUZZ_SEED, fuzz_env.ok_ids, fuzz_env.error_ids)
    n, failures, seconds = run_cases(cases, fuzz_env)
    print(f"\nURL fuzz: {n} cases through the viewer in {seconds:.1f} s, {len(failures)} failed")
    assert not failures, _report(cases, failures)


def test_the_checks_can_fail(fuzz_env, monkeypatch):
    """A viewer that echoed the link into a warning, or read a path from it, is caught."""
    case = FuzzCase({"study": "../../etc/passwd", "evil": XSS_IMG}, hostile=True)
    import streamlit as st

    real_warning = st.warning

    def echoing_warning(body, *a, **kw):
        return real_warning(f"{body} (you sent {XSS_IMG} {XSS_MD_LINK})", *a, **kw)

    monkeypatch.setattr(st, "warning", echoing_warning)
    fails = run_case(case, fuzz_env)
    assert any("matches" in f for f in fails), fails
    monkeypatch.setattr(st, "warning", real_warning)

    real_parse = __import__("components.query", fromlist=["parse_study"]).parse_study

    def leaky_parse(raw, ids):
        try:
            open(os.path.join(str(fuzz_env.root), "studies/CT-1", str(raw)), "rb").close()
        except OSError:
            pass
        return real_parse(raw, ids)

    monkeypatch.setattr("components.query.parse_study", leaky_parse)
    target = os.path.relpath(next(fuzz_env.outside_dir.rglob("*.nii.gz")), fuzz_env.root / "studies/CT-1")
    fails = run_case(FuzzCase({"study": target}, hostile=True), fuzz_env)
    assert any("outside the roots" in f or "traversal target" in f for f in fails), fails


def test_other_pages_ignore_hostile_links(fuzz_env):
    """The other pages read no query parameter: hostile ones change nothing and break nothing."""
    cases = generate_cases(25, FUZZ_SEED + 1, fuzz_env.ok_ids, fuzz_env.error_ids)
    pages = ["overview", "registry", "distributions", "teaching"]
    failures = {}
    for i, case in enumerate(cases):
        f = run_case(case, fuzz_env, page=str(REPO / "pages" / f"{pages[i % len(pages)]}.py"))
        if f:
            failures[i] = f
    assert not failures, _report(cases, failures)


def test_dataset_folder_name_is_never_rendered_as_markup(fuzz_env, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MOSMED_DATA", str(fuzz_env.root.parent / HOSTILE_DIR_NAME))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    for page in (
        "pages/overview.py",
        "pages/registry.py",
        "pages/distributions.py",
        "pages/teaching.py",
        "pages/viewer.py",
    ):
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, at.exception)
        assert not markup_problems(at), (page, markup_problems(at))
        if page == "pages/overview.py":  # the name did reach the caption, escaped (so the check above looked)
            caps = [c.value for c in at.caption]
            assert any(md_escape(HOSTILE_DIR_NAME) in c for c in caps), caps


def test_unopenable_hostile_folder_is_named_escaped_in_every_error(tmp_path, monkeypatch):
    """A MOSMED_DATA folder that cannot be opened: the page's and the sidebar's errors name it, escaped."""
    from streamlit.testing.v1 import AppTest

    bad = tmp_path / HOSTILE_DIR_NAME
    bad.mkdir()
    (bad / "dataset_registry.xlsx").write_bytes(b"not a spreadsheet")
    monkeypatch.setenv("MOSMED_DATA", str(bad))
    monkeypatch.setenv("MOSMED_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error] + [e.value for e in at.sidebar.error]
    assert any(md_escape(HOSTILE_DIR_NAME) in e for e in errors), errors
    assert not markup_problems(at), markup_problems(at)


def test_md_escape_neutralises_every_markdown_construct():
    """One shared helper (components.markup.md_escape, also the sidebar's): every character that starts a link,
    image, directive, emphasis, heading, table, math or autolink comes out backslash-escaped, and un-escaping
    gives the text back exactly (nothing lost, nothing added)."""
    from components import sidebar, state

    assert sidebar.md_escape is md_escape and state.md_escape is md_escape
    special = re.compile(r"[\[\]()!<>:`*_#|~$={}+\-.]")
    for text in (
        HOSTILE_DIR_NAME,
        XSS_MD_LINK,
        XSS_MD_IMG,
        "**b** _i_ `c` ~~s~~ # h",
        "<https://x.test/a>",
        ":red[big] :material/home: $x$",
        "a|b\n|-|",
        "1. x",
        "- y",
        "x\n===",
        "[r]: https://x.test",
        "back\\slash [",
        "😀 ＳＴＵＤＹ \u202e",
        "",
    ):
        out = md_escape(text)
        unescaped = [
            m.start()
            for m in special.finditer(out)
            if (len(out[: m.start()]) - len(out[: m.start()].rstrip("\\"))) % 2 == 0
        ]
        assert not unescaped, (text, out, unescaped)
        assert re.sub(r"\\(.)", r"\1", out, flags=re.S) == text
    assert md_escape(12) == "12"


def test_registry_text_is_never_rendered_as_html(fuzz_env):
    """Hostile class names, file names and the dataset folder's own name show escaped on every page."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    seen_xss_in_table = False
    for page in ("pages/overview.py", "pages/registry.py", "pages/distributions.py", "pages/teaching.py"):
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, at.exception)
        assert not markup_problems(at), (page, markup_problems(at))
        for df in at.dataframe:
            text = df.value.astype(str).to_string()
            seen_xss_in_table |= "<img" in text  # raw in a table cell: shown as text by the grid
    assert seen_xss_in_table, "the hostile registry text never reached the registry table"
    for sid in (800, 801, 802):
        at.switch_page("pages/viewer.py")
        at.query_params.clear()
        at.query_params["study"] = str(sid)
        at.run()
        assert not at.exception
        assert any(str(sid) in e.value for e in at.error), [e.value for e in at.error]
        assert not markup_problems(at), (sid, markup_problems(at))
    # The hostile text did reach the screen, escaped (so the check above really looked at it).
    assert any("\\<img" in e.value or "\\[click\\]" in e.value for e in at.error), [e.value for e in at.error]


_HTML_SINKS = re.compile(
    r"unsafe_allow_html\s*=\s*True|st\.html\(|components\.v1|\.innerHTML\s*=|insertAdjacentHTML|"
    r"outerHTML\s*=|document\.write\(|dangerouslySetInnerHTML"
)
#: (file, line text) of HTML sinks that were reviewed and only ever receive constant text. Empty today.
ALLOWED_HTML_SINKS: frozenset[tuple[str, str]] = frozenset()


def test_no_unreviewed_html_sink_in_the_app():
    """unsafe_allow_html / st.html / innerHTML in app code must be reviewed (listed above) before use."""
    files = [
        REPO / "app.py",
        *sorted((REPO / "pages").glob("*.py")),
        *sorted((REPO / "components").rglob("*.py")),
        *sorted((REPO / "components").rglob("*.js")),
        *sorted((REPO / "components").rglob("*.html")),
    ]
    assert len(files) > 8
    found = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if _HTML_SINKS.search(line) and (f.name, line.strip()) not in ALLOWED_HTML_SINKS:
                found.append(f"{f.relative_to(REPO)}: {line.strip()}")
    assert not found, "HTML sinks to review (untrusted text must never reach them):\n" + "\n".join(found)
