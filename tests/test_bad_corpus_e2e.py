"""The bad-input corpus end to end: CLI processes, the cache, the registry and viewer pages, memory; app faults.

Every kind of ``tests/badinputs.py`` (file, mask and registry-row kinds in one dataset, plus the whole-registry
kinds each in its own root) goes through:

* ``python -m mosmed validate`` in a real process, address space limited to 1.5 GB: exit 1, one line naming the
  study and the reason per problem, no traceback, and a peak resident size that stays small (a header claiming
  30000^3 voxels or 1.6 GB in a tiny gzip must not be believed);
* ``python -m mosmed build-cache``: exit 0, every good study built, every bad one recorded (status error and its
  reason in the cached summary);
* the Registry page (AppTest): every broken study listed with its reason, dropped rows in "could not be kept";
  an unusable registry is an ``st.error`` naming the problem;
* the Viewer page opened on each study (``?study=ID``): the message instead of a traceback.

Faults seen by the app (quick versions; the long kill runs are in tests/soak): a cache root that cannot be
written (the app computes in memory and says so), a source file replaced while the app runs (stale entry
rebuilt), a disk budget smaller than the studies (eviction, not failure).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from badinputs import (  # noqa: E402
    ALL_KINDS,
    MASK_CASES,
    REGISTRY_CASES,
    ROW_CASES,
    VOLUME_CASES,
    make_bad_dataset,
    make_bad_registry,
)
from cache_faults import phantom_xyz, write_nifti, write_small_dataset  # noqa: E402

APP = str(REPO / "app.py")
VIEWER = str(REPO / "pages" / "viewer.py")
#: Address-space limit for CLI processes on the corpus: far below what believing a hostile header would need.
AS_LIMIT = 1536 * 2**20
#: Peak resident memory allowed for validate / build-cache on the tiny corpus (the interpreter with pandas,
#: scipy and nibabel is ~150 MB; the 1.6 GB header would blow far past this).
RSS_LIMIT_MB = 450


def _unescape(text: str) -> str:
    """Undo markdown escaping (the pages escape text from files) so reasons compare with the corpus."""
    return re.sub(r"\\(.)", r"\1", text)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    expect = make_bad_dataset(base / "bad")
    fatal = {kind: (base / kind, make_bad_registry(kind, base / kind)) for kind in REGISTRY_CASES}
    return base, base / "bad", expect, fatal


def run_limited(args: list[str], env: dict | None = None, timeout: float = 180) -> tuple[int, str, str, float]:
    """Run ``python -m mosmed ARGS`` with RLIMIT_AS; ``(exit code, stdout, stderr, the child's peak RSS in MB)``."""
    import tempfile

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    full_env = dict(os.environ, PYTHONPATH=str(REPO))
    full_env.pop("MOSMED_CACHE_BUDGET_GB", None)
    full_env.update(env or {})
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mosmed", *args], cwd=str(REPO), env=full_env, stdout=fo, stderr=fe, preexec_fn=limit
        )
        deadline = time.monotonic() + timeout
        while True:  # wait4 (not Popen.wait) so this child's own rusage is read, not a max over all children
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise TimeoutError(f"mosmed {args} did not finish in {timeout} s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode("utf-8", "replace"), fe.read().decode("utf-8", "replace")
    return proc.returncode, out, err, usage.ru_maxrss / 1024


# ------------------------------------------------------------------------------------------------- the CLI


def test_corpus_has_every_kind(corpus):
    _, _, expect, fatal = corpus
    assert set(ALL_KINDS) <= set(expect) | set(fatal)
    assert len(ALL_KINDS) >= 50 and len(VOLUME_CASES) + len(MASK_CASES) + len(ROW_CASES) + len(REGISTRY_CASES) == len(
        ALL_KINDS
    )


def test_validate_process_names_every_bad_study_within_memory(corpus):
    base, root, expect, _ = corpus
    code, out, err, peak_mb = run_limited(["validate", "--data", str(root), "--cache", str(base / "cache-v")])
    assert code == 1, (code, err[-2000:])
    assert "Traceback" not in out + err and "internal error" not in err and "MemoryError" not in out + err
    lines = out.splitlines()
    missing = []
    for kind, e in expect.items():
        if e.outcome == "ok":
            if any(ln.startswith(f"study {e.study_id}: ") for ln in lines):
                missing.append(f"{kind}: study {e.study_id} reported although it is fine")
            continue
        if e.outcome == "dropped":
            ok = any("row " in ln and e.expected.lower() in ln.lower() for ln in lines)
        elif e.outcome == "warning":
            ok = any(
                ln.startswith(f"study {e.study_id}: warning: ") and e.expected.lower() in ln.lower() for ln in lines
            )
        else:
            ok = any(ln.startswith(f"study {e.study_id}: ") and e.expected.lower() in ln.lower() for ln in lines)
        if not ok:
            missing.append(f"{kind}: no line for study {e.study_id} with {e.expected!r}")
    assert not missing, "\n".join(missing) + "\n" + out
    assert peak_mb < RSS_LIMIT_MB, f"validate peaked at {peak_mb:.0f} MB on a corpus of tiny files"


@pytest.mark.parametrize("kind", sorted(REGISTRY_CASES))
def test_unusable_registry_is_one_line_naming_it(corpus, capsys, kind):
    from mosmed import cli

    _, _, _, fatal = corpus
    root, e = fatal[kind]
    assert cli.main(["validate", "--data", str(root), "--cache", str(root) + "-cache"]) == 1
    assert cli.main(["build-cache", "--data", str(root), "--cache", str(root) + "-cache"]) == 1
    captured = capsys.readouterr()
    err_lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(err_lines) == 2 and all(e.expected in ln for ln in err_lines), captured.err
    assert "Traceback" not in captured.err + captured.out


def test_build_cache_process_builds_good_and_records_bad(corpus):
    base, root, expect, _ = corpus
    cache = base / "cache-b"
    code, out, err, peak_mb = run_limited(["build-cache", "--data", str(root), "--cache", str(cache)])
    assert code == 0 and "Traceback" not in err, err[-3000:]
    n_err = sum(1 for e in expect.values() if e.outcome == "error")
    m = re.search(r"(\d+) rows, (\d+) built, (\d+) already cached, (\d+) in error", err)
    assert m, err
    assert int(m.group(4)) == n_err, err
    # The cached summary (what the app and `summary` read) records each bad study with its reason.
    summaries = sorted(cache.rglob("summary-*.json"))
    assert len(summaries) == 1, summaries
    code, out, err, _ = run_limited(["summary", "--data", str(root), "--cache", str(cache), "--format", "json"])
    assert code == 0, err
    rows: dict = {}
    for r in json.loads(out):
        if r["study_id"] in rows:
            # One summary row per registry row: a repeated id keeps its row, in error, naming the first one.
            assert r["status"] == "error" and "duplicate study id" in r["error"], r
            continue
        rows[r["study_id"]] = r
    wrong = []
    for kind, e in expect.items():
        if e.outcome == "dropped":
            continue
        r = rows.get(e.study_id)
        if r is None:
            wrong.append(f"{kind}: study {e.study_id} missing from the summary")
        elif e.outcome == "error":
            if r["status"] != "error" or e.expected.lower() not in (r["error"] or "").lower():
                wrong.append(f"{kind}: {r['status']} {r['error']!r}, expected error with {e.expected!r}")
        elif r["status"] != "ok" or r["n_slices"] is None:
            wrong.append(f"{kind}: {r['status']} {r['error']!r}, expected a built study")
        elif e.outcome == "warning" and e.expected.lower() not in (r["warnings"] or "").lower():
            wrong.append(f"{kind}: warnings {r['warnings']!r} lack {e.expected!r}")
    assert not wrong, "\n".join(wrong)
    assert peak_mb < RSS_LIMIT_MB


def test_hostile_headers_are_refused_before_allocation(corpus, tmp_path):
    """read_volume on each header kind, in a process limited to 1.5 GB, stays near the interpreter's own size."""
    _, root, expect, _ = corpus
    kinds = ["enormous_dims", "header_claims_too_much", "truncated_gzip", "truncated_nii", "all_nan"]
    paths = {}
    for k in kinds:
        sid = expect[k].study_id
        hits = list((root / "studies" / "CT-1").glob(f"study_{sid:04d}.nii*"))
        assert hits, k
        paths[k] = str(hits[0])
    script = (
        "import json, resource, sys\n"
        "from pathlib import Path\n"
        "from mosmed.volume import read_volume\n"
        "from mosmed.errors import VolumeError\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = {}\n"
        "for k, p in json.loads(sys.argv[1]).items():\n"
        "    try:\n"
        "        read_volume(Path(p), study_id=1); out[k] = ['read', 0]\n"
        "    except VolumeError as e:\n"
        "        out[k] = [str(e), 0]\n"
        "    except MemoryError as e:\n"
        "        out[k] = ['MemoryError', 0]\n"
        "    out[k][1] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024\n"
        "print(json.dumps(out))\n"
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    res = subprocess.run(
        [sys.executable, "-c", script, json.dumps(paths)],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout)
    for k in kinds:
        text, grew_mb = got[k]
        assert expect[k].expected.lower() in text.lower(), (k, text)
        assert grew_mb < 64, f"{k}: reading grew the process by {grew_mb:.0f} MB"


# --------------------------------------------------------------------------------------------- the app


@pytest.fixture()
def bad_env(corpus, monkeypatch):
    base, root, expect, _ = corpus
    from mosmed.dataset import Dataset

    cache = base / "cache-app"
    if not cache.exists():
        Dataset(root, cache).build_cache(workers=1)
    monkeypatch.setenv("MOSMED_DATA", str(root))
    monkeypatch.setenv("MOSMED_CACHE", str(cache))
    monkeypatch.delenv("MOSMED_CACHE_BUDGET_GB", raising=False)
    return root, expect


def _exc(at) -> str:
    """The page's exception with the end of its stack (AppTest redacts the message itself)."""
    return "\n".join(f"{e.message}\n" + "\n".join(e.stack_trace[-12:]) for e in at.exception)


def _app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=60)


def test_registry_page_lists_every_bad_kind_with_its_reason(bad_env):
    root, expect = bad_env
    at = _app()
    at.run()
    at.switch_page("pages/registry.py")
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    listed: dict = {}
    for r in table.itertuples():
        if int(r.study_id) in listed:
            # A repeated id keeps its registry row, listed in error with the reason.
            assert r.status == "error" and "duplicate study id" in str(r.error), r
            continue
        listed[int(r.study_id)] = r
    wrong = []
    for kind, e in expect.items():
        if e.outcome == "dropped":
            continue
        r = listed.get(e.study_id)
        if r is None:
            wrong.append(f"{kind}: study {e.study_id} not listed")
        elif e.outcome == "error" and (r.status != "error" or e.expected.lower() not in str(r.error).lower()):
            wrong.append(f"{kind}: listed as {r.status} {r.error!r}")
        elif e.outcome in ("ok", "warning") and r.status == "error":
            wrong.append(f"{kind}: listed in error {r.error!r}")
        elif e.outcome == "warning" and e.expected.lower() not in str(r.warnings).lower():
            wrong.append(f"{kind}: warnings {r.warnings!r} lack {e.expected!r}")
    assert not wrong, "\n".join(wrong)
    problems = at.dataframe[1].value
    reasons = " | ".join(problems["reason"].astype(str)).lower()
    for kind, e in expect.items():
        if e.outcome == "dropped":
            assert e.expected.lower() in reasons, (kind, reasons)
    notes = " ".join(w.value for w in at.markdown)
    assert f"{sum(1 for e in expect.values() if e.outcome == 'error')} with errors" in notes, notes


@pytest.mark.parametrize("kind", sorted(REGISTRY_CASES))
def test_unusable_registry_is_a_message_on_every_page(corpus, monkeypatch, kind):
    base, _, _, fatal = corpus
    root, e = fatal[kind]
    monkeypatch.setenv("MOSMED_DATA", str(root))
    monkeypatch.setenv("MOSMED_CACHE", str(base / "cache-fatal"))
    at = _app()
    at.run()
    for page in ("pages/registry.py", "pages/viewer.py"):
        at.switch_page(page)
        at.run()
        assert not at.exception, (kind, page, at.exception)
        errors = [_unescape(x.value) for x in at.error]
        assert any(e.expected in x for x in errors), (kind, page, errors)
        assert not any(" page failed: " in x for x in errors), errors


def test_viewer_opened_on_every_study_shows_the_message(bad_env):
    from streamlit.testing.v1 import AppTest

    root, expect = bad_env
    wrong = []
    for kind, e in sorted(expect.items()):
        if e.study_id is None or e.outcome == "dropped":
            continue
        at = AppTest.from_file(VIEWER, default_timeout=60)
        at.query_params["study"] = str(e.study_id)
        at.run()
        if at.exception:
            wrong.append(f"{kind}: exception {at.exception[0].value[:200]}")
            continue
        errors = [_unescape(x.value) for x in at.error]
        if e.outcome == "error":
            if not any(f"study {e.study_id}" in x and e.expected.lower() in x.lower() for x in errors):
                wrong.append(f"{kind}: errors {errors} lack 'study {e.study_id}' + {e.expected!r}")
            continue
        if errors:
            wrong.append(f"{kind}: readable study shows errors {errors}")
        if at.session_state["viewer.study"] != e.study_id:
            wrong.append(f"{kind}: opened {at.session_state['viewer.study']} instead")
        if e.outcome == "warning":
            notes = " ".join(_unescape(c.value) for c in at.caption)
            if e.expected.lower() not in notes.lower():
                wrong.append(f"{kind}: warning {e.expected!r} not shown ({notes[:200]})")
    assert not wrong, "\n".join(wrong)


# ------------------------------------------------------------------------------------------ faults in the app


@pytest.fixture()
def small(tmp_path):
    return write_small_dataset(tmp_path / "data", n=4, shape=(48, 48, 6), seed=3)


def test_unwritable_cache_root_still_serves_and_says_so(small, tmp_path, monkeypatch):
    """Tests run as root, where chmod 0555 stops nothing: the cache root is put under a regular FILE instead,
    so every mkdir fails with ENOTDIR exactly as a read-only mount would."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MOSMED_DATA", str(small))
    monkeypatch.setenv("MOSMED_CACHE", str(blocker / "cache"))
    at = _app()
    at.run()
    assert not at.exception, at.exception
    side = " ".join(w.value for w in at.sidebar.warning)
    assert "read-only" in side and "computing in memory" in side, side
    at.switch_page("pages/viewer.py")
    at.query_params["study"] = "2"
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["viewer.study"] == 2
    assert any("6 × 48 × 48" in f"{m.value}" for m in at.metric), [m.value for m in at.metric]
    assert blocker.read_text() == "not a directory"


# prebuilt=False: a partly built cache, where the entry counts are the same before and after the file is
# replaced; the page caches must still see the change (they are keyed by source identity, not counts).
@pytest.mark.parametrize("prebuilt", [True, False])
def test_source_replaced_while_the_app_runs_is_rebuilt(small, tmp_path, monkeypatch, prebuilt):
    monkeypatch.setenv("MOSMED_DATA", str(small))
    monkeypatch.setenv("MOSMED_CACHE", str(tmp_path / "cache"))
    from streamlit.testing.v1 import AppTest

    if prebuilt:  # the usual case: the cache was built (sidebar button / build-cache) before
        from mosmed.dataset import Dataset

        Dataset(small, tmp_path / "cache").build_cache(workers=1)

    at = AppTest.from_file(VIEWER, default_timeout=60)
    at.query_params["study"] = "1"
    at.run()
    assert not at.exception, _exc(at)
    assert any("6 × 48 × 48" in m.value for m in at.metric)
    # Another export of study 1 lands on disk: more slices, other values.
    study = small / "studies" / "CT-0" / "study_0001.nii.gz"
    assert study.is_file()
    hu, _ = phantom_xyz((48, 48, 9), lesion_frac=0.0, seed=42)
    from cache_faults import las_affine

    write_nifti(study, hu, las_affine())
    later = time.time() + 5
    os.utime(study, (later, later))
    deadline = time.monotonic() + 15
    grid = ""
    while time.monotonic() < deadline:  # the page's cache-state token lives 2 s
        time.sleep(1.0)
        at.run()
        assert not at.exception, _exc(at)
        grid = " ".join(m.value for m in at.metric)
        if "9 × 48 × 48" in grid:
            break
    assert "9 × 48 × 48" in grid, f"stale study still shown: {grid}"
    from mosmed.dataset import Dataset

    ds = Dataset(small, tmp_path / "cache")
    s = ds.open_study(1)
    assert s.volume.shape[0] == 9 and s.from_cache
    arrays = list((ds.cache.arrays_dir).glob("study_0001-*"))
    assert len(arrays) == 1, f"the stale entry was not removed: {arrays}"


def test_page_cache_token_changes_when_a_source_changes_and_counts_do_not(small, tmp_path):
    """The pages' freshness token (cache status): a replaced study while another one gets built leaves every
    count as it was; the source digest must still change (else summaries and studies are served stale)."""
    from cache_faults import las_affine

    from mosmed.dataset import Dataset

    ds = Dataset(small, tmp_path / "cache")
    for sid in (1, 2):
        assert ds.cache.build_study(ds.registry.get(sid)).status == "ok"
    before = ds.status()
    hu, _ = phantom_xyz((48, 48, 9), lesion_frac=0.0, seed=42)
    study = small / "studies" / "CT-0" / "study_0001.nii.gz"
    write_nifti(study, hu, las_affine())
    later = time.time() + 5
    os.utime(study, (later, later))
    assert ds.cache.build_study(ds.registry.get(3)).status == "ok"  # +1 entry, study 1's entry now stale: -1
    after = ds.status()
    counts = lambda s: (s.n_rows, s.n_stats, s.n_arrays, s.n_errors)  # noqa: E731
    assert counts(after) == counts(before), (before, after)
    assert re.fullmatch(r"[0-9a-f]{12}", before.source_digest)
    assert after.source_digest != before.source_digest
    assert ds.status().source_digest == after.source_digest, "the digest is stable while nothing changes"


def test_disk_budget_reached_evicts_instead_of_failing(tmp_path, monkeypatch):
    data = write_small_dataset(tmp_path / "data", n=6, shape=(64, 64, 6), seed=4)
    from mosmed.dataset import Dataset

    per_study = 64 * 64 * 6 * (2 + 1 + 1)
    budget_gb = 2.5 * per_study / 1e9
    monkeypatch.setenv("MOSMED_CACHE_BUDGET_GB", f"{budget_gb:.9f}")
    code, _, err, _ = run_limited(
        ["build-cache", "--data", str(data), "--cache", str(tmp_path / "cache")],
        env={"MOSMED_CACHE_BUDGET_GB": f"{budget_gb:.9f}"},
    )
    assert code == 0, err
    ds = Dataset(data, tmp_path / "cache")
    assert ds.cache.budget == int(budget_gb * 1e9) or abs(ds.cache.budget - budget_gb * 1e9) < 2
    st0 = ds.status()
    assert st0.n_stats == 6 and st0.bytes_used <= ds.cache.budget, st0
    # Every study still opens (computed or memory-mapped), and the budget holds after each.
    for sid in range(1, 7):
        s = ds.open_study(sid)
        assert s.volume.shape == (6, 64, 64)
        assert ds.status().bytes_used <= ds.cache.budget
    assert 1 <= ds.status().n_arrays <= 2, ds.status()
    # The app on the same cache and budget: every study through the viewer, no error.
    monkeypatch.setenv("MOSMED_DATA", str(data))
    monkeypatch.setenv("MOSMED_CACHE", str(tmp_path / "cache"))
    from streamlit.testing.v1 import AppTest

    for sid in (6, 1, 3):
        at = AppTest.from_file(VIEWER, default_timeout=60)
        at.query_params["study"] = str(sid)
        at.run()
        assert not at.exception, (sid, _exc(at))
        assert not at.error, (sid, [e.value for e in at.error])
    assert Dataset(data, tmp_path / "cache").status().bytes_used <= ds.cache.budget
    assert np.isfinite(budget_gb)
