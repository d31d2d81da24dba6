"""The synthetic generator: the default demo (20 studies at 256 px, 2 workers) within its 30 s, and full-size
(512 px) studies at a few seconds each (CPU time of one study, so a busy machine inflates it less)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from common import OUT, Context

TARGETS: dict[str, tuple[str, float, str, str]] = {
    "demo_generate_s": ("<=", 30.0, "s", "default demo, 20 studies at 256 px, 2 workers"),
    "full_size_study_cpu_s": ("<=", 5.0, "s", "one 512 px study (median of CT-0, CT-2, CT-4), CPU"),
}


def run(res: dict, ctx: Context) -> None:
    from mosmed.synthetic import DEMO_SEED, generate_demo, study_phantom

    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-demo-", dir=OUT))
    try:
        t = time.perf_counter()
        generate_demo(tmp / "demo", workers=2)
        res["demo_generate_s"] = round(time.perf_counter() - t, 2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cpu = []
    for sid, cat in ((1, "CT-0"), (14, "CT-2"), (19, "CT-4"))[: 1 if ctx.quick else 3]:
        t = time.process_time()
        study_phantom(DEMO_SEED, sid, cat, full_size=True)
        cpu.append(time.process_time() - t)
    res["full_size_study_cpu_s"] = round(sorted(cpu)[len(cpu) // 2], 2)
