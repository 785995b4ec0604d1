"""Spatial neighbour graphs of spots: lattice rings, k nearest neighbours, radius; Laplacians.

:func:`spatial_neighbors` writes squidpy's keys (``obsp['spatial_connectivities']``,
``obsp['spatial_distances']``, ``uns['spatial_neighbors']``); the array-level builders
(:func:`lattice_graph`, :func:`knn_graph`, :func:`radius_graph`) and graph operators
(:func:`graph_laplacian`, :func:`row_normalize`, :func:`neighbor_counts`) work on plain arrays.

Grid rings: on the square ST grid the order-1 neighbours are ``(±1, 0), (0, ±1)`` and ring 2 is
``(±2, 0), (0, ±2), (±1, ±1)`` (8 spots); on the Visium hexagonal grid, in ``(array_row,
array_col)``, ring 1 is ``(0, ±2), (±1, ±1)`` (6) and ring 2 is ``(0, ±4), (±1, ±3), (±2, ±2),
(±2, 0)`` (12). Ring ``k`` = hop distance exactly ``k`` on the full lattice.
"""

from __future__ import annotations

from ._api import get_graph, spatial_neighbors
from ._builders import edge_lengths, knn_graph, radius_graph
from ._laplacian import graph_laplacian, neighbor_counts, row_normalize
from ._lattice import detect_lattice, lattice_graph, ring_offsets

__all__ = [
    "detect_lattice",
    "edge_lengths",
    "get_graph",
    "graph_laplacian",
    "knn_graph",
    "lattice_graph",
    "neighbor_counts",
    "radius_graph",
    "ring_offsets",
    "row_normalize",
    "spatial_neighbors",
]
