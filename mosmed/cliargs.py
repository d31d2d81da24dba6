"""What every ``python -m mosmed`` command shares: exit codes, one-line messages, the dataset and cache roots
from ``--data`` / ``--cache`` or the environment, and argparse types."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mosmed.config import default_cache_root, default_data_root, demo_root

__all__ = ["EXIT_OK", "EXIT_DATA", "EXIT_USAGE", "UsageError", "err", "data_root", "cache_root", "int_at_least"]

EXIT_OK, EXIT_DATA, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in the command line (exit 2)."""


def err(msg: str) -> None:
    """One line on stderr."""
    sys.stderr.write(msg.rstrip("\n") + "\n")
    sys.stderr.flush()


def cache_root(args) -> Path:
    """``--cache``, else MOSMED_CACHE, else ``<repo>/data_cache``."""
    given = getattr(args, "cache", None)
    return Path(given).expanduser() if given else default_cache_root()


def data_root(args) -> Path:
    """``--data``, else MOSMED_DATA, else the embedded demo when it has been generated."""
    if getattr(args, "data", None):
        return Path(args.data).expanduser()
    root, is_demo = default_data_root()
    if is_demo:
        root = demo_root(cache_root(args))
        if not root.exists():
            raise UsageError(
                "no dataset given: pass --data DIR or set MOSMED_DATA "
                "(or generate the demo first with 'python -m mosmed demo')"
            )
    return root


def int_at_least(minimum: int, rule: str):
    """An argparse type: a whole number >= ``minimum``; ``rule`` says the bound in the error."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} {rule}")
        return v

    return parse
