"""Command line: ``python -m mosmed demo | replica | build-cache | summary | validate | render``.

Exit codes: 0 success; 1 a data problem (a study in error for ``validate``, an unreadable dataset, a study that
cannot be opened); 2 a usage mistake (bad option, study id not a number, slice out of range); 130 interrupted.
A user's mistake is reported as one line on stderr, never a traceback (``MOSMED_DEBUG=1`` shows it for bugs).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mosmed.cliargs import EXIT_DATA, EXIT_OK, EXIT_USAGE, UsageError, cache_root, data_root, err, int_at_least
from mosmed.errors import MosmedError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UsageError(f"{self.prog}: {message} (see --help)")


# ---------------------------------------------------------------------------------------------- helpers


class _Lines:
    """A stream for tqdm off a terminal: each refresh becomes a line of its own (CI logs, pipes), not a
    carriage-return redraw that only ends with the last one."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        for line in text.replace("\r", "\n").split("\n"):
            if line.strip():
                self.stream.write(line.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


class ProgressBar:
    """A progress callback ``(done, total, label)`` drawn by tqdm on stderr: redrawn in place on a terminal, a
    line per update (at most two a second) elsewhere. Nothing is drawn before the first call."""

    def __init__(self, title: str, stream=None) -> None:
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self._bar = None

    def __call__(self, done: int, total: int, label: str) -> None:
        if self._bar is None:
            from tqdm import tqdm

            # No monitor thread: a single-threaded command line forks its build workers (mosmed.cache.executors).
            tqdm.monitor_interval = 0
            tty = bool(getattr(self.stream, "isatty", lambda: False)())
            self._bar = tqdm(
                desc=self.title,
                total=max(0, int(total)),
                unit="study",
                leave=True,
                file=self.stream if tty else _Lines(self.stream),
                dynamic_ncols=tty,
                ncols=None if tty else 100,
                mininterval=0.5,
            )
        if self._bar.total != total:
            self._bar.reset(total=max(0, int(total)))
        self._bar.set_postfix_str(label[:60], refresh=False)
        # update() redraws at most every mininterval (a 1110-study build is not 1110 log lines); close() draws last.
        self._bar.update(max(0, int(done)) - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


_data_root = data_root
_cache_root = cache_root


def _open(args):
    from mosmed.dataset import Dataset

    return Dataset(_data_root(args), _cache_root(args))


_positive_int = int_at_least(1, "must be at least 1")
_nonneg_int = int_at_least(0, "must not be negative")


_err = err


def _ensure_built(ds, quiet: bool = False) -> None:
    """Build stats for rows not yet in the cache (arrays only within budget), with a bar when there is work."""
    st = ds.status()
    if st.complete:
        return
    bar = None if quiet else ProgressBar("reading studies")
    try:
        ds.build_cache(workers=1, progress=bar, arrays=False)
    finally:
        if bar is not None:
            bar.close()


def _agreement_line(frame) -> str:
    from mosmed.involvement import agreement

    both = frame[
        (frame["status"] == "ok") & frame["involvement_pct"].notna() & frame["estimated_involvement_pct"].notna()
    ]
    if both.empty:
        return "estimate vs mask: no study has both a mask and an estimate"
    a = agreement(both["involvement_pct"].tolist(), both["estimated_involvement_pct"].tolist())

    def fmt(key: str, spec: str) -> str:
        v = a.get(key)
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "n/a"
        return format(v, spec)

    return (
        f"estimate vs mask-based involvement over {a.get('n', len(both))} studies with masks: "
        f"mean |difference| {fmt('mean_abs_diff', '.1f')} points, Pearson r {fmt('pearson_r', '.2f')}, "
        f"same class band {fmt('class_agreement', '.0%')}"
    )


def _calibration_line(frame) -> str:
    """realct: how the HU estimate of this dataset is calibrated (mosmed.involvement.Calibration.describe)."""
    basis = frame["estimate_basis"] if "estimate_basis" in frame.columns else None
    text = next((b for b in (basis if basis is not None else []) if isinstance(b, str) and b), "")
    return f"estimate: {text}" if text else "estimate: no study measured yet"


# --------------------------------------------------------------------------------------------- commands


def cmd_demo(args) -> int:
    from mosmed import synthetic
    from mosmed.demo import ensure_demo

    if args.out is None:
        if args.full_size or args.seed is not None:
            raise UsageError("demo: --full-size and --seed need --out DIR (the embedded demo is fixed)")
        out = None
    else:
        out = Path(args.out).expanduser()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UsageError(f"demo: {out} already exists and is not empty; choose a new or empty folder")
    bar = ProgressBar("generating demo")
    t0 = time.perf_counter()
    try:
        if out is None:
            out = ensure_demo(progress=bar, n_studies=args.studies)
        else:
            kwargs = {"full_size": args.full_size, "progress": bar}
            if args.studies is not None:
                kwargs["n_studies"] = args.studies
            if args.seed is not None:
                kwargs["seed"] = args.seed
            out = synthetic.generate_demo(out, **kwargs)
    finally:
        bar.close()
    _err(f"demo dataset written to {out} in {time.perf_counter() - t0:.1f} s")
    print(out)
    return EXIT_OK


def cmd_replica(args) -> int:
    from mosmed import synthetic

    source = Path(args.source).expanduser()
    if not source.is_dir():
        raise MosmedError(f"source folder {source} does not exist")
    out = Path(args.out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"replica: {out} already exists and is not empty; choose a new or empty folder")
    bar = ProgressBar("building replica")
    t0 = time.perf_counter()
    try:
        out = synthetic.generate_replica(source, out, per_class=args.per_class, progress=bar)
    finally:
        bar.close()
    _err(f"replica dataset written to {out} in {time.perf_counter() - t0:.1f} s")
    print(out)
    return EXIT_OK


def cmd_build_cache(args) -> int:
    import contextlib

    from mosmed.cache.build import build_all
    from mosmed.cache.executors import dask_executor

    if args.scheduler and args.executor != "dask":
        raise UsageError("build-cache: --scheduler needs --executor dask")
    ds = _open(args)
    if not ds.cache.writable:
        _err(f"warning: {ds.cache.reason}")
    with contextlib.ExitStack() as stack:
        executor, workers = None, args.workers
        if args.executor == "dask":
            try:
                executor, where = stack.enter_context(dask_executor(args.scheduler, args.workers))
            except RuntimeError as e:
                raise MosmedError(str(e)) from None
            _err(f"building on {where}; every worker must see {ds.root} and {ds.cache.cache_root}")
        bar = ProgressBar("building cache")
        try:
            rep = build_all(
                ds.cache, ds.registry, workers=workers, progress=bar, arrays=not args.stats_only, executor=executor
            )
        finally:
            bar.close()
    st = ds.status()
    where = "Dask" if args.executor == "dask" else f"{rep.workers} worker(s)"
    _err(
        f"cache {st.cache_dir}: {rep.n_total} rows, {rep.n_built} built, {rep.n_cached} already cached, "
        f"{rep.n_errors} in error, {rep.n_arrays_written} arrays written, {rep.n_evicted} evicted; "
        f"arrays {st.bytes_used / 1e9:.2f} of {st.budget / 1e9:.2f} GB; {rep.seconds:.1f} s "
        f"with {where}" + (f"; {rep.retried} task(s) retried after a worker died" if rep.retried else "")
    )
    for sid, reason in rep.errors[:20]:
        _err(f"  study {sid}: {reason}")
    if len(rep.errors) > 20:
        _err(f"  ... and {len(rep.errors) - 20} more (run 'validate' for the full list)")
    return EXIT_OK


def cmd_summary(args) -> int:
    ds = _open(args)
    _ensure_built(ds)
    frame = ds.summary()
    cols = [c for c in frame.columns if c != "has_thumb"]
    frame = frame[cols]
    if args.format == "json":
        text = frame.to_json(orient="records", indent=None, force_ascii=False)
        # to_json writes NaN as null already; one JSON array on one line, newline-terminated.
        sys.stdout.write(text + "\n")
    else:
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        sys.stdout.write(buf.getvalue())
    sys.stdout.flush()
    _err(_agreement_line(frame))
    _err(_calibration_line(frame))  # realct
    return EXIT_OK


def cmd_validate(args) -> int:
    ds = _open(args)
    _ensure_built(ds)
    frame = ds.summary()
    # The summary has one row per registry row; a repeated id's row is reported once, as a dropped row.
    duplicate_rows = {s.row for s in ds.registry.duplicates}
    keep = [src.row not in duplicate_rows for src in ds.registry.rows()]
    frame = frame[keep] if len(keep) == len(frame) else frame
    lines: list[str] = [str(p) for p in ds.registry.problems]
    for r in frame.itertuples(index=False):
        if r.status != "ok":
            lines.append(f"study {r.study_id}: {r.error or r.status}")
    for r in frame.itertuples(index=False):
        if r.status == "ok" and r.warnings:
            lines.append(f"study {r.study_id}: warning: {r.warnings}")
    n_qc = 0
    for r in frame.itertuples(index=False):  # realct: quality flags are warnings (the study still opens)
        if r.status == "ok" and getattr(r, "qc", ""):
            n_qc += 1
            lines.append(f"study {r.study_id} quality: {r.qc}")  # no "study N: ": that form is a problem
    for line in lines:
        print(line)
    n_err = int((frame["status"] != "ok").sum()) + len(ds.registry.problems)
    n_ok = int((frame["status"] == "ok").sum())
    print(
        f"{len(frame)} registry rows: {n_ok} ok, {int((frame['status'] != 'ok').sum())} in error, "
        f"{len(ds.registry.problems)} registry rows dropped, {n_qc} with quality flags"
    )  # realct: flags
    print(_agreement_line(frame))
    print(_calibration_line(frame))  # realct
    return EXIT_DATA if n_err else EXIT_OK


def cmd_render(args) -> int:
    from mosmed import render
    from mosmed.windowing import parse_window

    try:
        window = parse_window(args.window)
    except ValueError as e:
        raise UsageError(f"render: --window {args.window!r}: {e}") from None
    try:
        study_id = int(args.study)
    except ValueError:
        raise UsageError(f"render: --study {args.study!r} is not a study number") from None
    out = Path(args.out).expanduser()
    if out.suffix.lower() != ".png":
        raise UsageError(f"render: --out {out} must end in .png")
    if not out.parent.is_dir():
        raise UsageError(f"render: folder {out.parent} does not exist")
    ds = _open(args)
    study = ds.open_study(study_id)
    n = render.n_slices(study.volume.shape, args.plane)
    index = n // 2 if args.slice is None else args.slice
    if not 0 <= index < n:
        raise UsageError(
            f"render: study {study_id}: --slice {index} is out of range 0..{n - 1} for the {args.plane} plane"
        )
    style = render.OverlayStyle(
        show_mask=bool(args.overlay and study.mask is not None), mode=args.overlay_mode, show_lung=args.lung
    )
    png = render.render_png(
        study.volume,
        study.spacing,
        args.plane,
        index,
        window,
        mask=study.mask if args.overlay else None,
        lung=study.lung if args.lung else None,
        style=style,
    )
    from mosmed.atomic import atomic_write_bytes

    try:
        atomic_write_bytes(out, png)
    except OSError as e:
        raise MosmedError(f"cannot write {out}: {e.strerror or e}") from None
    if args.overlay and study.mask is None:
        _err(f"note: study {study_id} has no lesion mask; rendered without overlay")
    _err(f"study {study_id} {args.plane} slice {index}/{n - 1} -> {out}")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m mosmed",
        description="MosMed Explorer: datasets, cache and rendering.",
        epilog="Environment: MOSMED_DATA (dataset root), MOSMED_CACHE (cache root, default data_cache/), "
        "MOSMED_CACHE_BUDGET_GB (disk budget for cached volumes, default 8). Exit codes: 0 ok, "
        "1 data problem, 2 usage mistake.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def data_args(sp):
        sp.add_argument("--data", metavar="DIR", help="dataset root (default: $MOSMED_DATA, else the demo)")
        sp.add_argument("--cache", metavar="DIR", help="cache root (default: $MOSMED_CACHE, else data_cache/)")

    sp = sub.add_parser("demo", help="generate the synthetic demo dataset")
    sp.add_argument("--out", metavar="DIR", help="target folder (default: the embedded demo in the cache root)")
    sp.add_argument("--studies", type=_positive_int, metavar="N", help="number of studies")
    sp.add_argument("--full-size", action="store_true", help="1110 studies at real sizes and class counts")
    sp.add_argument("--seed", type=int, metavar="S", help="random seed")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("replica", help="replica of the real dataset: real registry and masks, synthetic studies")
    sp.add_argument("--source", required=True, metavar="DIR", help="folder with the real registry and masks/")
    sp.add_argument("--out", required=True, metavar="DIR")
    sp.add_argument(
        "--per-class",
        type=_nonneg_int,
        default=2,
        metavar="N",
        help="extra studies per class besides the 50 masked ones (default 2)",
    )
    sp.set_defaults(func=cmd_replica)

    sp = sub.add_parser("build-cache", help="build the data cache (progress on stderr)")
    data_args(sp)
    sp.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="worker processes (local pool, or the workers of a LocalCluster started for --executor dask)",
    )
    sp.add_argument(
        "--executor",
        choices=("local", "dask"),
        default="local",
        help="where studies are built: this machine's process pool, or a Dask cluster",
    )
    sp.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --executor dask: a running scheduler (tcp://host:8786); without it a LocalCluster is started",
    )
    sp.add_argument("--stats-only", action="store_true", help="summaries and thumbnails, no volume arrays")
    sp.set_defaults(func=cmd_build_cache)

    sp = sub.add_parser("summary", help="one row per registry row, as CSV or JSON on stdout")
    data_args(sp)
    sp.add_argument("--format", choices=("csv", "json"), default="csv")
    sp.set_defaults(func=cmd_summary)

    sp = sub.add_parser("validate", help="list every problem as study id and reason (exit 1 if any)")
    data_args(sp)
    sp.set_defaults(func=cmd_validate)

    sp = sub.add_parser("render", help="render one slice to PNG with the app's renderer")
    data_args(sp)
    sp.add_argument("--study", required=True, metavar="ID")
    sp.add_argument("--plane", choices=("axial", "coronal", "sagittal"), default="axial")
    sp.add_argument("--slice", type=_nonneg_int, metavar="K", help="slice index (default: the middle)")
    sp.add_argument(
        "--window",
        default="lung",
        metavar="PRESET|LEVEL,WIDTH",
        help="lung, mediastinum, soft, bone, or LEVEL,WIDTH (default lung)",
    )
    sp.add_argument("--overlay", action="store_true", help="draw the lesion mask")
    sp.add_argument("--overlay-mode", choices=("fill", "outline"), default="fill")
    sp.add_argument("--lung", action="store_true", help="draw the lung outline")
    sp.add_argument("--out", required=True, metavar="FILE.png")
    sp.set_defaults(func=cmd_render)

    # --- issue 12: `review add | export | agreement | datasets`, all in mosmed/reviews/cli.py ---
    from mosmed.reviews import cli as review_cli

    review_cli.add_parser(sub)
    return p


def _join_negative_window(argv: list[str]) -> list[str]:
    """``--window -600,1500`` -> ``--window=-600,1500``: argparse would take the level for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--window" and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"--window={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (``python -m mosmed`` passes it to ``sys.exit``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(_join_negative_window(list(sys.argv[1:] if argv is None else argv)))
        if not getattr(args, "command", None):
            raise UsageError(
                "python -m mosmed: a command is needed: demo, replica, build-cache, summary, "
                "validate, render or review (see --help)"
            )
        return int(args.func(args))
    except UsageError as e:
        _err(f"error: {e}")
        return EXIT_USAGE
    except MosmedError as e:
        _err(f"error: {e}")
        return EXIT_DATA
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # `summary | head`: the reader went away; not an error of ours.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except OSError as e:
        _err(f"error: {e.strerror or e}" + (f": {e.filename}" if getattr(e, "filename", None) else ""))
        return EXIT_DATA
    except Exception as e:  # a bug: still one line, unless debugging
        if os.environ.get("MOSMED_DEBUG"):
            raise
        _err(f"internal error (please report; MOSMED_DEBUG=1 shows the traceback): {type(e).__name__}: {e}")
        return EXIT_DATA
