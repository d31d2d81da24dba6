#!/usr/bin/env python
"""`make bench`: the performance benchmarks -> a table and bench/results.json.

What runs (see bench/PERFORMANCE.md for how to read the figures)
-------------------------------------------------------------------
1. Datasets (bench/prepare.py, reused when present): ``bench/out/full`` (1110-row registry, 25 full-size
   512x512 volumes) and ``bench/out/rows1110`` (1110 small volumes with a fully built cache, for the pages
   that list every study).
2. A fresh cache of ``bench/out/full`` in which the 20 "warm" studies are built (the 5 "cold" ones are not).
3. The sections, in order, each a module ``bench/sect_*.py`` with ``TARGETS`` and ``run(res, ctx)``:
   ``sect_build`` (cache build floors), ``sect_viewer`` (the viewer in Chromium), ``sect_pages`` (1110-row
   pages). Each adds its figures to one results dict; a failing section records its error and the run goes on.

Options: ``--quick`` (fewer repetitions, for trying the harness), ``--json PATH``, ``--only NAME[,NAME]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common import OUT, Context, prepare, say, sub_registry  # noqa: E402

RESULTS = BENCH / "results.json"
#: Section modules in the order they run.
SECTIONS = ("sect_build", "sect_viewer", "sect_pages", "sect_review", "sect_demo", "sect_classroom")


def _sections(only: set[str] | None):
    for name in SECTIONS:
        if only and name.removeprefix("sect_") not in only and name not in only:
            continue
        yield name, importlib.import_module(name)


def all_targets() -> dict[str, tuple[str, float, str, str]]:
    out: dict[str, tuple[str, float, str, str]] = {}
    for _, mod in _sections(None):
        out.update(getattr(mod, "TARGETS", {}))
    return out


def table(res: dict) -> str:
    lines = [f"{'key':40s} {'value':>10s}  {'target':>9s}  result"]
    for key, (op, target, unit, _) in all_targets().items():
        v = res.get(key)
        ok = None if v is None else (v <= target if op == "<=" else v >= target)
        vs = "missing" if v is None else f"{v:g}"
        lines.append(
            f"{key:40s} {vs:>10s}  {op}{target:g} {unit:3s} {'PASS' if ok else ('FAIL' if ok is False else '-')}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (trying the harness)")
    ap.add_argument("--json", type=Path, default=RESULTS)
    ap.add_argument("--skip-floors", action="store_true")
    ap.add_argument("--skip-browser", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated sections (build, viewer, pages, ...)")
    args = ap.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    t_all = time.perf_counter()
    res: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "quick": bool(args.quick),
    }
    res["load_avg_start"] = [round(x, 2) for x in os.getloadavg()]
    res["prepare"] = prepare.prepare()

    from mosmed.cache.build import build_all
    from mosmed.dataset import Dataset

    run_cache = OUT / "cache-run"
    shutil.rmtree(run_cache, ignore_errors=True)
    ds = Dataset(prepare.FULL, run_cache)
    t = time.perf_counter()
    rep = build_all(ds.cache, sub_registry(ds.registry, prepare.WARM_IDS), workers=2)
    res["warm_cache_build_s"] = round(time.perf_counter() - t, 1)
    res["warm_cache_built"] = rep.n_built
    ctx = Context(
        quick=bool(args.quick), run_cache=run_cache, skip_floors=args.skip_floors, skip_browser=args.skip_browser
    )
    runs = res.setdefault("section_runs", {})
    for name, mod in _sections(only):
        say(f"section {name} ...")
        t = time.perf_counter()
        runs[name] = {
            "at": time.strftime("%Y-%m-%d %H:%M"),
            "quick": bool(args.quick),
            "load_start": [round(x, 2) for x in os.getloadavg()],
        }
        try:
            mod.run(res, ctx)
        except Exception as e:  # noqa: BLE001 - keep the figures measured so far, say what failed
            res.setdefault("errors", []).append(f"{name}: {type(e).__name__}: {e}")
            say(f"section {name} failed: {type(e).__name__}: {e}")
        res.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t, 1)
        runs[name].update(seconds=round(time.perf_counter() - t, 1), load_end=[round(x, 2) for x in os.getloadavg()])
    res["bench_seconds"] = round(time.perf_counter() - t_all, 1)
    res["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    res["targets"] = {k: {"op": op, "target": tv, "unit": u, "what": w} for k, (op, tv, u, w) in all_targets().items()}
    if only and args.json.exists():
        # One section run: the other sections' figures of the last run stay (each section says when it ran).
        try:
            prev = json.loads(args.json.read_text())
        except ValueError:
            prev = {}
        mine = {k for _, mod in _sections(only) for k in getattr(mod, "TARGETS", {})}
        merged = {k: v for k, v in prev.items() if k not in mine}
        for k in ("section_runs", "section_seconds"):
            merged[k] = {**(prev.get(k) or {}), **res.get(k, {})}
        rerun = {n.removeprefix("sect_") for n in runs}  # an error of a section run again is its old run's
        merged["errors"] = [e for e in prev.get("errors", []) if e.split(":")[0] not in rerun] + res.get("errors", [])
        merged.update({k: v for k, v in res.items() if k not in ("section_runs", "section_seconds", "errors")})
        res = merged
    tmp = args.json.with_name(args.json.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=2, sort_keys=False) + "\n")
    tmp.replace(args.json)
    import report

    (BENCH / "results.md").write_text(report.markdown(res), encoding="utf-8")
    if args.json == RESULTS and not args.quick:
        report.write_readme(report.markdown(res))
    say("")
    say(table(res))
    say(
        f"\nwhole run {res['bench_seconds']:.0f} s; load average (1, 5, 15 min) at start {res['load_avg_start']}, "
        f"at end {res['load_avg_end']} on {os.cpu_count()} CPUs; details in {args.json}"
    )
    if max(res["load_avg_start"][0], res["load_avg_end"][0]) > 1.5 * (os.cpu_count() or 1):
        say("WARNING: the machine was busy with other work during this run: latencies are inflated.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
