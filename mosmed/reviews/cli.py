"""``python -m mosmed review add | export | agreement | datasets``: reviews from scripts and tests.

Hooked into :mod:`mosmed.cli` by :func:`add_parser`. Exit codes as the rest of the CLI: 0 ok; 1 a data
problem (database unreachable or newer than this app, registry unreadable); 2 a usage mistake (bad grade,
unknown flag, note too long, study not in the registry). Messages are one line on stderr, no traceback.
The database is the app's: ``MOSMED_DB``, else the default SQLite file (see :mod:`mosmed.reviews.db`).
The CLI reviews under a typed name (``--reader``), an unverified reader exactly like a name typed in the app.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from mosmed.cliargs import EXIT_DATA, EXIT_OK, EXIT_USAGE, cache_root, data_root, err
from mosmed.errors import MosmedError
from mosmed.reviews.errors import ReviewError, ReviewInputError
from mosmed.reviews.model import CLASS_GRADES, FLAGS, MAX_NOTE_CHARS, parse_flags, parse_grade

__all__ = ["add_parser", "cmd_add", "cmd_export", "cmd_agreement", "cmd_datasets", "parse_ids"]

_err = err


def _grade_arg(text: str) -> str:
    try:
        g = parse_grade(text)
    except ReviewInputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if g is None:
        raise argparse.ArgumentTypeError("an empty grade; leave --grade out for none")
    return g


def _flag_arg(text: str) -> str:
    try:
        return parse_flags([text])[0]
    except (ReviewInputError, IndexError) as e:
        raise argparse.ArgumentTypeError(str(e) if isinstance(e, ReviewInputError) else "an empty flag") from None


def parse_ids(text: str) -> set[int]:
    """``"255, 260-262"`` -> {255, 260, 261, 262}; ValueError naming the part not understood."""
    ids: set[int] = set()
    for token in re.split(r"[,\s]+", text.strip()):
        if not token:
            continue
        m = re.fullmatch(r"(\d{1,9})(?:-(\d{1,9}))?", token)
        if not m:
            raise ValueError(f"{token[:20]!r} is not a study id or range (e.g. 255 or 255-260)")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        if b < a or b - a > 100_000:
            raise ValueError(f"{token!r} is not a usable range")
        ids.update(range(a, b + 1))
    return ids


def _ids_arg(text: str) -> set[int]:
    try:
        return parse_ids(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# ------------------------------------------------------------------------------------------------- helpers


def _data_root(args) -> Path:
    root = data_root(args)
    if not root.is_dir():
        raise MosmedError(f"dataset folder {root} does not exist")
    return root.resolve()


def _open(args):
    """(registry, identity, store) of the dataset named by the arguments."""
    from mosmed.registry import load_registry
    from mosmed.reviews.db import open_database
    from mosmed.reviews.identity import dataset_identity
    from mosmed.reviews.store import ReviewStore

    root = _data_root(args)
    registry = load_registry(root)
    identity = dataset_identity(registry)
    db = open_database(cache_root=cache_root(args), dataset_root=root)
    return registry, identity, ReviewStore(db)


def _categories(registry):
    return registry.df.set_index("study_id")["category"].astype(str)


def _write_out(path: Path, data: bytes) -> None:
    """Atomically (a failed export leaves nothing half-written)."""
    from mosmed.atomic import atomic_write_bytes

    if not path.parent.is_dir():
        raise ReviewInputError(f"folder {path.parent} does not exist")
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise MosmedError(f"cannot write {path}: {e.strerror or e}") from None


def _guard(fn):
    """Review errors -> one line and exit 2 (the user's input) or 1 (the database); the rest to mosmed.cli."""

    def run(args) -> int:
        try:
            return fn(args)
        except ReviewInputError as e:
            _err(f"error: {e}")
            return EXIT_USAGE
        except ReviewError as e:
            _err(f"error: {e}")
            return EXIT_DATA

    run.__name__ = fn.__name__
    return run


# ------------------------------------------------------------------------------------------------ commands


@_guard
def cmd_add(args) -> int:
    from mosmed.reviews.model import Reader, Review

    reader = Reader.named(args.reader)
    review = Review(grade=args.grade, flags=tuple(args.flag or ()), note=args.note or "")
    registry, identity, store = _open(args)
    saved = store.save(identity, args.study, reader, review, valid_ids=set(registry.ids), source="cli")
    what = (
        "cleared"
        if saved.action == "clear"
        else ", ".join(
            [saved.review.grade or "no grade"]
            + ([f"flags {';'.join(saved.review.flags)}"] if saved.review.flags else [])
            + (["a note"] if saved.review.note else [])
        )
    )
    print(
        f"saved review of study {saved.study_id} by {reader.label}: {what} (event {saved.event_id}, "
        f"dataset {identity.label} {identity.short}, database {store.where})"
    )
    return EXIT_OK


@_guard
def cmd_export(args) -> int:
    from mosmed.reviews import export

    registry, identity, store = _open(args)
    cats = _categories(registry)
    frame = store.history(identity) if args.history else store.latest(identity)
    if args.study:
        frame = frame[frame["study_id"].isin(sorted(args.study))]
    if args.cls:
        frame = frame[frame["study_id"].map(lambda s: cats.get(int(s), "")).isin(args.cls)]
    rows = export.export_frame(frame, cats)
    fmt = args.format or (Path(args.out).suffix.lstrip(".").lower() if args.out else "csv")
    if fmt not in ("csv", "json", "xlsx"):
        raise ReviewInputError(f"--format {fmt!r}: expected csv, json or xlsx")
    if fmt == "xlsx" and not args.out:
        raise ReviewInputError("--format xlsx needs --out FILE.xlsx (a workbook is not written to a terminal)")
    data = (
        export.to_csv_bytes(rows)
        if fmt == "csv"
        else export.to_json_text(rows).encode("utf-8")
        if fmt == "json"
        else export.to_xlsx_bytes(rows, "reviews")
    )
    if args.out:
        _write_out(Path(args.out).expanduser(), data)
        _err(f"{len(rows)} review rows of dataset {identity.label} {identity.short} written to {args.out}")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        _err(f"{len(rows)} review rows of dataset {identity.label} {identity.short} from {store.where}")
    return EXIT_OK


def _fmt_k(k) -> str:
    if k.kappa is None:
        return f"undefined ({k.reason})"
    return f"{k.kappa:.3f} [{k.ci_low:.3f}, {k.ci_high:.3f}]"


@_guard
def cmd_agreement(args) -> int:
    import json

    from mosmed.reviews.agreement import comparisons

    registry, identity, store = _open(args)
    comps = comparisons(store.latest(identity), _categories(registry))
    if args.format == "json":
        print(
            json.dumps(
                {"dataset": identity.label, "identity": identity.digest, "comparisons": [c.as_dict() for c in comps]},
                ensure_ascii=False,
            )
        )
        return EXIT_OK
    if not comps:
        print(f"no reader has graded a study of dataset {identity.label} yet")
        return EXIT_OK
    print(f"dataset {identity.label} ({identity.short}); kappa [95 % interval], studies graded CT-0..CT-4 by both")
    for c in comps:
        print(f"{c.label_a} vs {c.label_b}: n={c.n}, kappa {_fmt_k(c.unweighted)}, linear-weighted {_fmt_k(c.linear)}")
        head = " " * 10 + "".join(f"{g:>6s}" for g in c.categories)
        print(f"  rows: {c.label_a}; columns: {c.label_b}")
        print(head)
        for g, row in zip(c.categories, c.matrix):
            print(f"  {g:>8s}" + "".join(f"{int(v):6d}" for v in row))
    return EXIT_OK


@_guard
def cmd_datasets(args) -> int:
    from mosmed.reviews.db import open_database
    from mosmed.reviews.store import ReviewStore

    store = ReviewStore(open_database(cache_root=cache_root(args)))
    df = store.datasets()
    print(f"review database {store.where}: {len(df)} dataset(s)")
    for r in df.itertuples(index=False):
        print(
            f"  {r.identity[:12]}  {r.label}  {r.n_studies} studies, {r.n_saves} saves, first seen "
            f"{r.first_seen:%Y-%m-%d}"
        )
    return EXIT_OK


# -------------------------------------------------------------------------------------------------- parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``review`` and its subcommands to the main CLI's subparsers; returns the ``review`` parser."""
    rp = subparsers.add_parser(
        "review",
        help="case reviews: add one, export them, reader agreement",
        description="Reviews live in the database named by MOSMED_DB (default: the SQLite file "
        "~/.local/share/mosmed-explorer/reviews.db), keyed by the dataset's identity.",
    )
    sub = rp.add_subparsers(dest="review_command", metavar="SUBCOMMAND", required=True)

    def data_arg(sp):
        sp.add_argument("--data", metavar="DIR", help="dataset root (default: $MOSMED_DATA, else the demo)")

    sp = sub.add_parser("add", help="save a review of one study (history keeps every save)")
    data_arg(sp)
    sp.add_argument("--study", required=True, type=int, metavar="ID")
    sp.add_argument("--reader", required=True, metavar="NAME", help="display name (an unverified reader)")
    sp.add_argument("--grade", type=_grade_arg, metavar="GRADE", help=f"{', '.join(CLASS_GRADES)} or ungradable")
    sp.add_argument(
        "--flag", type=_flag_arg, action="extend", nargs="+", metavar="NAME", help=f"one or more of: {', '.join(FLAGS)}"
    )
    sp.add_argument("--note", metavar="TEXT", help=f"free text, at most {MAX_NOTE_CHARS} characters")
    sp.set_defaults(func=cmd_add)

    sp = sub.add_parser("export", help="the current review of every study and reader (or the whole history)")
    data_arg(sp)
    sp.add_argument("--format", choices=("csv", "json", "xlsx"), help="default csv (or from --out's suffix)")
    sp.add_argument("--out", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    sp.add_argument("--history", action="store_true", help="every save, oldest first, with its action")
    sp.add_argument("--study", type=_ids_arg, metavar="IDS", help="only these studies, e.g. 255,260-270")
    sp.add_argument("--class", dest="cls", nargs="+", metavar="CLASS", help="only studies of these registry classes")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("agreement", help="Cohen's kappa (unweighted, linear) per reader and pair, with 95 %% CI")
    data_arg(sp)
    sp.add_argument("--format", choices=("text", "json"), default="text")
    sp.set_defaults(func=cmd_agreement)

    sp = sub.add_parser("datasets", help="the dataset identities the database holds reviews for")
    sp.set_defaults(func=cmd_datasets)
    return rp
