"""Benchmark harness: the protocols P1-P5 of ``BENCHMARK.md``, their masks and metrics, and the runner.

- :func:`run_benchmark`: datasets x methods x seeds x protocols -> a tidy results table (and CSV).
- Splits: :func:`p1_mask`, :func:`p2_split`, :func:`p3_folds`.
- Scores: :func:`log_scores`, :func:`poisson_nll`, :func:`gene_pearson`, :func:`domain_ari`.
- Methods: :func:`resolve_method` (controls ``"raw"``/``"libsize_mean"``, registry names,
  ``spotfill.benchmark.peers.PEERS``, ``"package.module:function"``).
- :func:`scale_series`: P5 on synthetic data of growing size.
"""

from __future__ import annotations

from ._external import CONTROLS, resolve_method
from ._masks import P1Mask, p1_mask, p2_split, p3_folds, sample_zero_entries
from ._metrics import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    domain_ari,
    gene_pearson,
    libsize_mean_rates,
    log_scores,
    poisson_nll,
)
from ._protocols import PROTOCOLS, Dataset
from ._runner import COLUMNS, DEFAULT_SEEDS, load_dataset, run_benchmark, scale_series

__all__ = [
    "COLUMNS",
    "DEFAULT_SEEDS",
    "CONTROLS",
    "HIGHER_IS_BETTER",
    "LOWER_IS_BETTER",
    "PROTOCOLS",
    "Dataset",
    "P1Mask",
    "domain_ari",
    "gene_pearson",
    "libsize_mean_rates",
    "load_dataset",
    "log_scores",
    "p1_mask",
    "p2_split",
    "p3_folds",
    "poisson_nll",
    "resolve_method",
    "run_benchmark",
    "sample_zero_entries",
    "scale_series",
]
