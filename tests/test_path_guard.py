"""No file outside the dataset root (and the cache root) is ever opened, whatever the registry or a link says.

The guard is checked at the lowest level Python offers: an audit hook (:pep:`578`) sees every ``open`` event,
whether it comes from ``builtins.open``, ``os.open``, ``gzip.open``, ``nibabel.load``, ``numpy.load`` or a
memory map, and every directory listing (``os.listdir`` / ``os.scandir``). :class:`OpenRecorder` records them
while a block runs; :func:`outside` says which recorded paths lie outside the allowed places (the dataset root,
the cache root, the repository, the interpreter and the venv, and a few named system files). Both the path as
given and its real path (symlinks followed) must be allowed, so opening a link that leads out is caught.

``tests/test_fuzz_urls.py`` and the soak runs reuse the recorder.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from badinputs import make_bad_dataset, write_good_mask, write_good_study  # noqa: E402

from mosmed.errors import MosmedError, UnsafePathError  # noqa: E402
from mosmed.paths import safe_join  # noqa: E402
from mosmed.registry import load_registry  # noqa: E402
from mosmed.registry_write import write_registry_csv  # noqa: E402

__all__ = ["OpenRecorder", "outside", "system_roots"]

_EVENTS = {"open": "open", "os.listdir": "list", "os.scandir": "list"}
# System files a Python process legitimately reads (time zone, MIME table, entropy, process info).
_SYSTEM_FILES = (
    "/etc/mime.types",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl/",
    "/usr/share/zoneinfo/",
    "/usr/lib/ssl/",
    "/dev/null",
    "/dev/urandom",
    "/dev/random",
    "/dev/shm/",
    "/proc/",
    "/sys/",
    "/usr/share/mime/",
    "/etc/mime.types",
)


class OpenRecorder:
    """Record every path opened or listed while the ``with`` block runs by the thread that entered it and by
    the threads it starts (and they start: a build's pool, an AppTest's script thread), not by other threads
    (e.g. a background writer another test's app left running, whose files are not this block's doing).

    One audit hook is installed per process (hooks cannot be removed); it forwards to the recorders that are
    active at the time, so recorders nest and cost nothing when none is active.
    """

    _lock = threading.Lock()
    _active: list[OpenRecorder] = []
    _installed = False

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []  # (kind, absolute path as given)
        # The threads whose opens count, as objects (an ident is reused once its thread has ended).
        self.tracked: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        self._start = None

    @classmethod
    def _hook(cls, event: str, args: tuple) -> None:
        kind = _EVENTS.get(event)
        if kind is None or not cls._active:
            return
        try:
            raw = args[0] if args else None
            if raw is None or isinstance(raw, int):  # an already open descriptor: its open was recorded
                return
            path = os.fsdecode(raw) if isinstance(raw, (bytes, str, os.PathLike)) else None
            if path is None:
                return
            path = os.path.abspath(path)
        except Exception:  # noqa: BLE001 - an audit hook must never raise into the audited code
            return
        me = threading.current_thread()
        for rec in list(cls._active):
            if me in rec.tracked:
                rec.events.append((kind, path))

    def __enter__(self) -> OpenRecorder:
        # Finalizers of earlier tests' objects (e.g. a cache's clean-up of an abandoned temporary entry) would
        # otherwise run in this thread at the next garbage collection, inside the block: run them now.
        gc.collect()
        with self._lock:
            if not OpenRecorder._installed:
                sys.addaudithook(OpenRecorder._hook)
                OpenRecorder._installed = True
            self.tracked = weakref.WeakSet([threading.current_thread()])
            self._start = start = threading.Thread.start
            rec = self

            def tracking_start(thread: threading.Thread) -> None:
                if threading.current_thread() in rec.tracked:  # started by a tracked thread: its opens count
                    rec.tracked.add(thread)
                start(thread)

            threading.Thread.start = tracking_start
            OpenRecorder._active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            OpenRecorder._active.remove(self)
            threading.Thread.start = self._start

    @property
    def paths(self) -> set[str]:
        return {p for _, p in self.events}

    def under(self, root: Path) -> set[str]:
        """Recorded paths inside ``root`` (as given or once resolved)."""
        r = os.path.realpath(root)
        a = os.path.abspath(root)
        return {p for p in self.paths if _within(p, a) or _within(p, r) or _within(os.path.realpath(p), r)}


def _within(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/")


def system_roots() -> list[str]:
    """The interpreter, the venv, the repository and the named system files: always allowed."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(REPO)}
    roots |= {os.path.realpath(r) for r in list(roots)}
    home_streamlit = os.path.expanduser("~/.streamlit")
    return sorted(roots | {home_streamlit})


def outside(paths: Iterable[str], allowed: Iterable[Path | str]) -> list[str]:
    """Paths (as given or resolved) that are neither under an allowed root nor a named system file.

    Files directly in the system temporary folder (``tempfile.mkstemp``'s own, e.g. openpyxl writing an export)
    are allowed; anything in a sub-folder of it is not (test datasets and their ``-outside`` siblings live there).
    """
    roots = [os.path.abspath(a) for a in allowed] + [os.path.realpath(a) for a in allowed] + system_roots()
    tmp = {tempfile.gettempdir(), os.path.realpath(tempfile.gettempdir())}
    bad = []
    for p in sorted(set(paths)):
        forms = {p, os.path.realpath(p)}
        for f in forms:
            if f.startswith(_SYSTEM_FILES) or f in ("/", "/etc", "/proc") or f in tmp:
                continue
            if os.path.dirname(f) in tmp and not os.path.islink(f) and not os.path.isdir(f):
                continue
            if not any(_within(f, r) for r in roots):
                bad.append(p if f == p else f"{p} -> {f}")
                break
    return bad


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> tuple[Path, Path, Path, dict]:
    """The bad corpus (targets of its .., absolute and symlink rows live in ``<root>-outside``)."""
    base = tmp_path_factory.mktemp("guard")
    root = base / "bad"
    expect = make_bad_dataset(root)
    # A whole class folder that is a link out of the root, with a real study in it.
    elsewhere = base / "bad-outside" / "linked-class"
    write_good_study(elsewhere / "study_0900.nii.gz", seed=9)
    os.symlink(elsewhere, root / "studies" / "CT-4")
    reg = pd.read_excel(root / "dataset_registry.xlsx")
    reg.loc[len(reg)] = {
        "study_id": 900,
        "category": "CT-4",
        "study_file": "/studies/CT-4/study_0900.nii.gz",
        "mask_file": None,
    }
    from mosmed.registry_write import write_registry_xlsx

    write_registry_xlsx(reg, root / "dataset_registry.xlsx")
    outside_dir = base / "bad-outside"
    assert any(outside_dir.rglob("*.nii.gz"))
    return root, base / "cache", outside_dir, expect


# ----------------------------------------------------------------------------------------------- safe_join


@pytest.mark.parametrize(
    ("rel", "match"),
    [
        ("../../etc/passwd", r"contains '\.\.'"),
        ("/studies/../../etc/passwd", r"contains '\.\.'"),
        ("studies/CT-0/../../../x.nii.gz", r"contains '\.\.'"),
        ("..\\..\\windows\\win.ini", r"contains '\.\.'"),
        ("studies/CT-0/study\x00.nii.gz", "NUL byte"),
        ("C:\\Windows\\system32", "Windows absolute path"),
        ("\\\\server\\share\\x.nii.gz", "Windows absolute path"),
        ("", "empty path"),
        ("   ", "empty path"),
        ("/", "names no file"),
        (float("nan"), "empty path"),
    ],
)
def test_safe_join_refuses_traversal(tmp_path, rel, match):
    with pytest.raises(UnsafePathError, match=match):
        safe_join(tmp_path, rel)


def test_safe_join_refuses_absolute_and_links_out(tmp_path):
    root = tmp_path / "root"
    (root / "studies").mkdir(parents=True)
    secret = tmp_path / "secret.nii.gz"
    secret.write_bytes(b"x")
    with pytest.raises(UnsafePathError, match="lies outside the dataset root"):
        safe_join(root, str(secret))
    os.symlink(secret, root / "studies" / "link.nii.gz")
    with pytest.raises(UnsafePathError, match="link that leads outside"):
        safe_join(root, "/studies/link.nii.gz")
    os.symlink(tmp_path, root / "studies" / "up")
    with pytest.raises(UnsafePathError, match="link that leads outside"):
        safe_join(root, "/studies/up/secret.nii.gz")
    # URL-encoded dots are not decoded: a literal (missing) name inside the root, never a way out.
    p = safe_join(root, "/studies/%2e%2e/%2e%2e/secret.nii.gz")
    assert str(p).startswith(str(root.resolve())) and not p.exists()


# ------------------------------------------------------------------------------------ nothing opened outside


def test_registry_build_and_open_never_touch_files_outside(bad):
    root, cache, outside_dir, expect = bad
    from mosmed.dataset import Dataset

    with OpenRecorder() as rec:
        ds = Dataset(root, cache)
        rep = ds.build_cache(workers=1)
        summary = ds.summary()
        opened_ok = 0
        for sid in summary["study_id"].astype(int):
            try:
                ds.open_study(int(sid))
                opened_ok += 1
            except MosmedError:
                pass
            ds.thumbnail(int(sid))
    assert rep.n_total == len(summary) and opened_ok >= 4
    # The class folder that is a link out is refused by name.
    row = summary.set_index("study_id").loc[900]
    assert row["status"] == "error" and "outside" in row["error"], row["error"]
    assert rec.under(root), "the recorder saw nothing: the audit hook is not working"
    assert not rec.under(outside_dir), sorted(rec.under(outside_dir))
    assert outside(rec.paths, [root, cache, Path(cache).parent]) == []


def test_cli_validate_and_build_never_touch_files_outside(bad, capsys):
    root, cache, outside_dir, _ = bad
    from mosmed import cli

    with OpenRecorder() as rec:
        assert cli.main(["build-cache", "--data", str(root), "--cache", str(cache) + "-cli"]) == 0
        assert cli.main(["validate", "--data", str(root), "--cache", str(cache) + "-cli"]) == 1
        assert cli.main(["summary", "--data", str(root), "--cache", str(cache) + "-cli", "--format", "json"]) == 0
    capsys.readouterr()
    assert rec.under(root)
    assert not rec.under(outside_dir), sorted(rec.under(outside_dir))
    assert outside(rec.paths, [root, str(cache) + "-cli"]) == []


def test_file_swapped_for_a_link_after_loading_is_not_followed(tmp_path):
    """A study file replaced by a link out *after* the registry was checked (time of check, time of use)."""
    from mosmed.dataset import Dataset

    root = tmp_path / "data"
    rows = []
    for sid in (1, 2):
        rel = f"/studies/CT-1/study_{sid:04d}.nii.gz"
        write_good_study(root / rel.lstrip("/"), seed=sid)
        rows.append({"study_id": sid, "category": "CT-1", "study_file": rel, "mask_file": None})
    mask_rel = "/masks/study_0002_mask.nii.gz"
    write_good_mask(root / mask_rel.lstrip("/"))
    rows[1]["mask_file"] = mask_rel
    write_registry_csv(pd.DataFrame(rows), root / "dataset_registry.csv")
    secret_dir = tmp_path / "secret"
    secret = write_good_study(secret_dir / "other_patient.nii.gz", seed=99)
    secret_mask = write_good_mask(secret_dir / "other_mask.nii.gz")

    ds = Dataset(root, tmp_path / "cache")
    assert ds.registry.df.loc[1, "status"] == "ok"
    target = root / "studies/CT-1/study_0001.nii.gz"
    target.unlink()
    os.symlink(secret, target)
    mask = root / mask_rel.lstrip("/")
    mask.unlink()
    os.symlink(secret_mask, mask)
    with OpenRecorder() as rec:
        with pytest.raises(
            UnsafePathError,
            match=r"^study 1: unsafe study path: /studies/CT-1/study_0001\.nii\.gz "
            r"now leads outside the dataset root",
        ):
            ds.open_study(1)
        with pytest.raises(
            UnsafePathError,
            match=r"^study 2: unsafe mask path: /masks/study_0002_mask\.nii\.gz "
            r"now leads outside the dataset root",
        ):
            ds.open_study(2)
        # A whole build (which also reads headers to plan the disk budget) reports both rows and goes on.
        report = ds.build_cache()
    assert not rec.under(secret_dir), sorted(rec.under(secret_dir))
    assert sorted(sid for sid, _ in report.errors) == [1, 2], report.errors
    assert all("now leads outside the dataset root" in why for _, why in report.errors), report.errors
    # Reloading the registry sees the links for what they are.
    df = load_registry(root).df
    assert (df["status"] == "error").all() and df["error"].str.contains("leads outside the dataset root").all()


def test_registry_with_hostile_paths_in_csv_is_rows_in_error(tmp_path):
    """URL-encoded dots, very long names, bidi and control characters are row errors, never a crash.

    (A NUL byte makes the whole CSV "binary": a RegistryError, tested with the registry cases; safe_join refuses
    a NUL in a path from any other source, see test_safe_join_refuses_traversal.)
    """
    root = tmp_path / "data"
    write_good_study(root / "studies/CT-0/study_0001.nii.gz", seed=1)
    hostile = {
        2: "/studies/CT-0/study_0002\u202e\u200bzg.iin.nii.gz",
        3: "/studies/%2e%2e/%2e%2e/etc/passwd",
        4: "/studies/CT-0/" + "a" * 200 + ".nii.gz",
        5: "/studies/CT-0/\x1b[31mred\x07.nii.gz",
        6: "file:///etc/passwd",
        7: "~/.ssh/id_rsa",
        8: "/proc/self/environ",
    }
    rows = [{"study_id": 1, "category": "CT-0", "study_file": "/studies/CT-0/study_0001.nii.gz", "mask_file": None}]
    rows += [{"study_id": k, "category": "CT-0", "study_file": v, "mask_file": None} for k, v in hostile.items()]
    pd.DataFrame(rows).to_csv(root / "dataset_registry.csv", index=False)
    with OpenRecorder() as rec:
        reg = load_registry(root)
    df = reg.df
    assert df.loc[1, "status"] == "ok"
    kept = [sid for sid in hostile if sid in df.index]
    assert all(df.loc[sid, "status"] == "error" and df.loc[sid, "error"] for sid in kept), df[["status", "error"]]
    dropped = {p.study_id for p in reg.problems}
    assert set(hostile) <= set(kept) | dropped
    assert outside(rec.paths, [root]) == []
    assert not any("passwd" in p or "environ" in p or ".ssh" in p for p in rec.paths)


def test_recorder_sees_every_way_of_opening(tmp_path):
    """The recorder itself: builtins.open, os.open, gzip, numpy and nibabel all show up (so the checks can fail)."""
    import gzip

    import nibabel as nib
    import numpy as np

    p = write_good_study(tmp_path / "s.nii.gz")
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "t.txt").write_text("x")
    with OpenRecorder() as rec:
        open(tmp_path / "t.txt").close()
        os.close(os.open(tmp_path / "t.txt", os.O_RDONLY))
        gzip.open(p).close()
        np.load(tmp_path / "a.npy", mmap_mode="r")
        nib.load(str(p)).get_fdata()
        os.listdir(tmp_path)
    assert {str(tmp_path / "t.txt"), str(p), str(tmp_path / "a.npy"), str(tmp_path)} <= rec.paths
    assert set(outside(rec.paths, [REPO])) >= {str(tmp_path / "t.txt"), str(p), str(tmp_path / "a.npy")}
    assert outside(rec.paths, [REPO, tmp_path]) == []


def test_registry_row_with_a_name_too_long_is_one_row_in_error(tmp_path):
    root = tmp_path / "data"
    write_good_study(root / "studies/CT-0/study_0001.nii.gz", seed=1)
    rows = [
        {"study_id": 1, "category": "CT-0", "study_file": "/studies/CT-0/study_0001.nii.gz", "mask_file": None},
        {"study_id": 2, "category": "CT-0", "study_file": "/studies/CT-0/" + "a" * 5000 + ".nii.gz", "mask_file": None},
        {
            "study_id": 3,
            "category": "CT-1",
            "study_file": "/studies/CT-1/study_0003.nii.gz",
            "mask_file": "/masks/" + "m" * 300 + "_mask.nii.gz",
        },
    ]
    write_good_study(root / "studies/CT-1/study_0003.nii.gz", seed=3)
    (root / "masks").mkdir()
    pd.DataFrame(rows).to_csv(root / "dataset_registry.csv", index=False)
    reg = load_registry(root)  # ENAMETOOLONG for row 2 must not make the whole registry unopenable
    assert reg.df.loc[1, "status"] == "ok"
    assert reg.df.loc[2, "status"] == "error"
    err = reg.df.loc[2, "error"]
    assert re.search(
        r"^study file cannot be examined \(File name too long\): /studies/CT-0/a+….*\(5021 characters\)$", err
    ), err
    assert len(err) < 250, "a hostile name is shortened in the message"
    assert reg.df.loc[2, "study_path"] is None and not reg.df.loc[2, "has_mask"]
    # A mask name over NAME_MAX (255) in an existing folder: the row is in error, its study path still found.
    assert reg.df.loc[3, "status"] == "error" and not reg.df.loc[3, "has_mask"]
    assert reg.df.loc[3, "error"].startswith("mask file cannot be examined (File name too long): /masks/mmm")
    assert reg.df.loc[3, "study_path"] == str((root / "studies/CT-1/study_0003.nii.gz").resolve())


def test_viewer_page_never_opens_a_study_swapped_for_a_link(tmp_path, monkeypatch):
    """The viewer page's own quick path (header check, direct read of big uncached studies) re-checks too."""
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "data"
    rows = []
    for sid in (1, 2):
        rel = f"/studies/CT-1/study_{sid:04d}.nii.gz"
        write_good_study(root / rel.lstrip("/"), seed=sid)
        rows.append({"study_id": sid, "category": "CT-1", "study_file": rel, "mask_file": None})
    write_registry_csv(pd.DataFrame(rows), root / "dataset_registry.csv")
    secret = write_good_study(tmp_path / "secret" / "other_patient.nii.gz", seed=99)
    monkeypatch.setenv("MOSMED_DATA", str(root))
    monkeypatch.setenv("MOSMED_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(str(REPO / "pages" / "viewer.py"), default_timeout=60)
    at.query_params["study"] = "2"
    at.run()  # the registry is loaded and checked here
    assert not at.exception and not at.error, [e.value for e in at.error]
    target = root / "studies/CT-1/study_0001.nii.gz"
    target.unlink()
    os.symlink(secret, target)
    at.query_params["study"] = "1"
    with OpenRecorder() as rec:
        at.run()
    assert not at.exception, at.exception
    assert not rec.under(tmp_path / "secret"), sorted(rec.under(tmp_path / "secret"))
    assert any("study 1" in e.value and "outside the dataset root" in e.value for e in at.error), [
        e.value for e in at.error
    ]
