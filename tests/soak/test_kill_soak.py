"""Kill, race and read (``make soak``): SIGKILL the cache builder 20 times at random moments on the bad-input
corpus, race three builders, then check that nothing reads as valid that is not and that the app serves the result.

tests/test_cache.py already kills builds of a clean synthetic set (4 kills in ``make test``, 20 per worker count in
soak); this run does it on the corpus of broken files, whose error entries must survive kills as well.
"""

from __future__ import annotations

import shutil

from badinputs import make_bad_dataset
from cache_faults import (
    compare_with_clean,
    kill_and_check,
    leftover_tmp,
    race_builders,
    run_build,
    valid_entry_files,
    write_small_dataset,
)

N_KILLS = 20


def _merge(root, good):
    """The bad corpus with bigger good studies beside it, so a build lasts long enough to be interrupted."""
    import pandas as pd

    from mosmed.registry_write import write_registry_xlsx

    reg = pd.read_excel(root / "dataset_registry.xlsx")
    extra = pd.read_csv(good / "dataset_registry.csv")
    for r in extra.itertuples():
        sid = 1000 + int(r.study_id)
        for col in ("study_file", "mask_file"):
            rel = getattr(r, col)
            if isinstance(rel, str) and rel:
                src = good / rel.lstrip("/")
                dst_rel = rel.replace(f"study_{int(r.study_id):04d}", f"study_{sid:04d}")
                dst = root / dst_rel.lstrip("/")
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
        reg.loc[len(reg)] = {
            "study_id": sid,
            "category": r.category,
            "study_file": r.study_file.replace(f"study_{int(r.study_id):04d}", f"study_{sid:04d}"),
            "mask_file": (
                r.mask_file.replace(f"study_{int(r.study_id):04d}", f"study_{sid:04d}")
                if isinstance(r.mask_file, str) and r.mask_file
                else None
            ),
        }
    write_registry_xlsx(reg, root / "dataset_registry.xlsx")
    return root


def test_twenty_kills_on_the_bad_corpus(tmp_path, figures):
    root = tmp_path / "data"
    make_bad_dataset(root)
    _merge(root, write_small_dataset(tmp_path / "good", n=10, shape=(128, 128, 12), seed=9))
    rep = kill_and_check(root, tmp_path / "cache", tmp_path / "clean", n_kills=N_KILLS, seed=55)
    figures.update(rep.as_dict())
    figures["kills_survived"] = rep.n_kills if (not rep.mismatches and rep.rebuild_ok) else 0
    assert rep.n_kills == N_KILLS and rep.kills_mid_build >= N_KILLS // 2, rep
    assert rep.valid_files_after_kills > 0
    assert rep.mismatches == [] and rep.rebuild_ok and rep.leftover_tmp_after_rebuild == []
    assert valid_entry_files(root, tmp_path / "cache") == valid_entry_files(root, tmp_path / "clean")

    # The app side: the rebuilt cache serves the same summary as the clean one.
    from mosmed.dataset import Dataset

    a = Dataset(root, tmp_path / "cache").summary().set_index("study_id")
    b = Dataset(root, tmp_path / "clean").summary().set_index("study_id")
    assert list(a.index) == list(b.index)
    assert (a["status"] == b["status"]).all() and (a["error"].fillna("") == b["error"].fillna("")).all()


def test_three_builders_race_five_times(tmp_path, figures):
    data = write_small_dataset(tmp_path / "data", n=8, shape=(96, 96, 10), seed=12)
    clean = tmp_path / "clean"
    assert run_build(data, clean).returncode == 0
    rounds = []
    for i in range(5):
        cache = tmp_path / f"cache{i}"
        codes = race_builders(data, cache, n=3, workers=1 + i % 2)
        n, bad = compare_with_clean(data, cache, clean)
        rounds.append(
            {
                "codes": codes,
                "valid_files": n,
                "mismatches": bad,
                "tmp_left": [str(p) for p in leftover_tmp(data, cache)],
            }
        )
    figures.update(rounds=rounds)
    for r in rounds:
        assert r["codes"] == [0, 0, 0] and not r["mismatches"] and not r["tmp_left"], r
        assert r["valid_files"] == len(valid_entry_files(data, clean))
