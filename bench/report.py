#!/usr/bin/env python
"""The benchmark figures as a Markdown table: from ``bench/results.json`` into ``bench/results.md`` and the README.

``python bench/report.py`` prints the table; ``--readme`` also rewrites the block between the
``PERFORMANCE:BEGIN`` / ``PERFORMANCE:END`` markers of README.md (``make bench`` does both after a run). Every
figure comes from the results file: a key no run has measured yet reads "not measured", never a number.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results.json"
README = BENCH.parent / "README.md"
BEGIN, END = "<!-- PERFORMANCE:BEGIN", "<!-- PERFORMANCE:END -->"


def _fmt(v) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}".rstrip("0").rstrip(".")
    return str(v)


def verdict(v, op: str, target: float) -> str:
    if v is None or isinstance(v, (str, dict, list)):
        return "not measured"
    ok = v <= target if op == "<=" else v >= target
    return "met" if ok else "**not met**"


def markdown(res: dict) -> str:
    """One row per target key: key, what, measured, target, verdict; then when and under what load."""
    targets = res.get("targets") or {}
    lines = ["| key | what | measured | target | |", "|---|---|---|---|---|"]
    for key, t in targets.items():
        v = res.get(key)
        shown = "—" if v is None else _fmt(v)
        lines.append(
            f"| `{key}` | {t['what']} | {shown} | {t['op'].replace('<=', '≤').replace('>=', '≥')} "
            f"{_fmt(t['target'])} {t['unit']} | {verdict(v, t['op'], t['target'])} |"
        )
    runs = res.get("section_runs") or {}
    if runs:
        lines += ["", "Section runs (start time, seconds, load average 1/5/15 min at start and end, quick mode):", ""]
        for name, r in runs.items():
            lines.append(
                f"- `{name}`: {r.get('at', '?')}, {r.get('seconds', '?')} s, load "
                f"{r.get('load_start', '?')} → {r.get('load_end', '?')}" + (", quick" if r.get("quick") else "")
            )
    errs = res.get("errors") or []
    if errs:
        lines += ["", "Sections that failed in their last run: " + "; ".join(f"`{e}`" for e in errs)]
    return "\n".join(lines) + "\n"


def write_readme(text: str, readme: Path = README) -> bool:
    """Replace the README's performance block (markers kept); False when the markers are missing."""
    src = readme.read_text(encoding="utf-8")
    pat = re.compile(re.escape(BEGIN) + r".*?-->\n(.*?)" + re.escape(END), re.S)
    m = pat.search(src)
    if not m:
        return False
    head = src[m.start() : src.index("-->", m.start()) + 4]
    new = src[: m.start()] + head + text + END + src[m.end() :]
    if new != src:
        tmp = readme.with_name(readme.name + ".tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(readme)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=RESULTS)
    ap.add_argument("--readme", action="store_true", help="also rewrite README.md's performance block")
    args = ap.parse_args(argv)
    res = json.loads(args.json.read_text())
    text = markdown(res)
    (BENCH / "results.md").write_text(text, encoding="utf-8")
    print(text)
    if args.readme and not write_readme(text):
        print("README.md has no PERFORMANCE:BEGIN / PERFORMANCE:END markers", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
