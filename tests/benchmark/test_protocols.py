"""The benchmark protocols P1, P3 and P4 on fake methods: masks, clipping, totals over folds, seeds, caching."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spotfill.benchmark import _protocols
from spotfill.benchmark._protocols import CallResult, Dataset, run_p1, run_p2, run_p3, run_p4, run_p5


def _dataset(labels: bool = False) -> Dataset:
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.poisson(2.0, size=(20, 10)).astype(np.float32))
    lab = np.array(["a", "b"] * 10, dtype=object) if labels else None
    return Dataset("toy", X, np.c_[np.arange(20.0), np.zeros(20)], labels=lab)


def _rows(rows: list[dict]) -> dict[str, float]:
    return {r["metric"]: r["value"] for r in rows}


def test_p1_count_scale_scores_clip_negative_predictions_at_zero():
    ds = _dataset()

    def call(X):
        return CallResult(np.full(X.shape, -1.0), 0.5, 1.0)

    out = _rows(run_p1(ds, call, seed=0, frac=0.1))
    mask = ds.cache[("p1", 0, 0.1)]
    assert out["rmse_counts"] == pytest.approx(np.sqrt(np.mean(mask.values.astype(np.float64) ** 2)))
    assert out["zero_log1p"] == 0.0


def test_p1_masks_are_cached_per_fraction():
    ds = _dataset()
    seen = []

    def call(X):
        seen.append(X.nnz)
        return CallResult(X.toarray(), 0.0, 0.0)

    run_p1(ds, call, seed=0, frac=0.1)
    run_p1(ds, call, seed=0, frac=0.5)
    n = ds.X.nnz
    assert seen == [n - round(0.1 * n), n - round(0.5 * n)]


def test_p2_splits_are_cached_per_seed():
    ds = _dataset()
    seen = []

    def call(X):
        seen.append(X.toarray())
        return CallResult(X.toarray() + 0.5, 0.0, 0.0)

    run_p2(ds, call, seed=0)
    run_p2(ds, call, seed=1)
    assert not np.array_equal(seen[0], seen[1])


def test_p3_cost_is_the_total_time_and_the_largest_peak():
    ds = _dataset()
    peaks = iter([10.0, 50.0, 20.0, 30.0, 40.0])

    def call(X):
        return CallResult(X.toarray(), 1.5, next(peaks))

    out = _rows(run_p3(ds, call, seed=0))
    assert out["seconds"] == 7.5
    assert out["peak_mb"] == 50.0


def test_p3_failure_reports_the_time_of_every_call_so_far():
    ds = _dataset()
    calls = iter(range(5))

    def call(X):
        if next(calls) == 2:
            return CallResult(None, 1.0, 5.0, error="boom")
        return CallResult(X.toarray(), 1.0, 5.0)

    rows = run_p3(ds, call, seed=0)
    assert {r["status"] for r in rows} == {"failed"}
    assert _rows(rows)["seconds"] == 3.0


def test_p4_clusters_with_seed_zero_whatever_the_methods_seed(monkeypatch):
    seeds = []

    def fake_ari(X, labels, *, seed):  # noqa: ARG001
        seeds.append(seed)
        return 0.5

    monkeypatch.setattr(_protocols, "domain_ari", fake_ari)

    def call(X):
        return CallResult(X.toarray(), 0.0, 0.0)

    out = _rows(run_p4(_dataset(labels=True), call, seed=7))
    assert seeds == [0, 0]
    assert out["ari"] == 0.5


def test_p5_reports_the_base_memory_of_the_call():
    def call(X):
        return CallResult(X, 2.0, 300.0, base_mb=120.0)

    assert _rows(run_p5(_dataset(), call)) == {"seconds": 2.0, "peak_mb": 300.0, "base_mb": 120.0}
