"""``python -m mosmed``: see :mod:`mosmed.cli`."""

from __future__ import annotations

import sys

from mosmed.cli import main

if __name__ == "__main__":
    sys.exit(main())
