"""The figures' gene choice and chart kind."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def test_rare_genes_compete_when_fewer_than_n_genes_are_widely_detected():
    from spotfill.plotting._figures import spatially_variable_genes

    n_side = 8
    row, col = np.divmod(np.arange(n_side * n_side), n_side)
    G = sp.csr_matrix((np.abs(row[:, None] - row[None, :]) + np.abs(col[:, None] - col[None, :]) == 1).astype(float))
    X = np.zeros((n_side * n_side, 3))
    X[:, 0] = np.random.default_rng(0).poisson(8, n_side * n_side) + 1  # everywhere, no pattern
    X[[0, 18, 36, 54, 63], 1] = 5  # 5 of 64 spots (< 10 %), scattered: no two are neighbours
    X[[0, 1, 8, 9, 2], 2] = 5  # 5 of 64 spots, one patch in a corner: the spatial gene
    # only gene 0 passes min_frac=0.1, fewer than n=2: every gene is ranked by its Moran's I
    assert spatially_variable_genes(sp.csr_matrix(X), G, 2)[0] == 2


def test_a_gene_detected_in_exactly_min_frac_of_the_spots_is_considered():
    from spotfill.plotting._figures import spatially_variable_genes

    row, col = np.divmod(np.arange(20), 5)
    G = sp.csr_matrix((np.abs(row[:, None] - row[None, :]) + np.abs(col[:, None] - col[None, :]) == 1).astype(float))
    X = np.zeros((20, 2))
    X[:, 0] = np.random.default_rng(0).poisson(8, 20) + 1  # everywhere, no pattern
    X[[0, 1], 1] = 5  # 2 of 20 spots (exactly 10 %), neighbours
    assert spatially_variable_genes(sp.csr_matrix(X), G, 1, min_frac=0.1).tolist() == [1]


def test_cost_of_one_data_size_is_drawn_as_bars_not_a_scale_series():
    import pandas as pd

    from spotfill.plotting._figures import cost_figure

    cost = pd.DataFrame(
        {
            "dataset": ["synthetic:100x10"] * 2,
            "n_spots": [100, 100],
            "method": ["m", "m"],
            "metric": ["seconds", "peak_mb"],
            "mean": [1.0, 50.0],
            "failed": [False, False],
        }
    )
    fig = cost_figure(cost)
    assert [ax.get_xscale() for ax in fig.axes[:2]] == ["linear", "linear"]
    cost2 = pd.concat([cost, cost.assign(dataset="synthetic:1000x10", n_spots=1000)])
    assert [ax.get_xscale() for ax in cost_figure(cost2).axes[:2]] == ["log", "log"]
