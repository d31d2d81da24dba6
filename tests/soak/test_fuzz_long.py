"""Long URL fuzz (``make soak``): 2000 seeded query strings through the viewer, same checks as test_fuzz_urls."""

from __future__ import annotations

import pytest
from test_fuzz_urls import _report, build_fuzz_data, generate_cases, run_cases

LONG_CASES = 2000
LONG_SEED = 1110


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build_fuzz_data(tmp_path_factory.mktemp("fuzz-long"))


def test_two_thousand_fuzzed_links(data, monkeypatch, figures):
    monkeypatch.setenv("MOSMED_DATA", str(data.root))
    monkeypatch.setenv("MOSMED_CACHE", str(data.cache))
    cases = generate_cases(LONG_CASES, LONG_SEED, data.ok_ids, data.error_ids)
    n, failures, seconds = run_cases(cases, data)
    figures.update(
        cases=n, hostile=sum(c.hostile for c in cases), failed=len(failures), seconds=round(seconds, 1), seed=LONG_SEED
    )
    assert not failures, _report(cases, failures)
