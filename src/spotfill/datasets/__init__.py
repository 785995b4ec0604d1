"""Datasets: the bundled mouse olfactory bulb sample, a synthetic generator with known truth, and the demo.

- :func:`mouse_olfactory_bulb`: 262 spots x 16,218 genes of the original ST platform, shipped with
  the package (no download).
- :func:`synthetic`: counts of any size around a known spatial rate, for tests and benchmarks.
- :func:`run_demo`: what ``spotfill demo`` runs.
"""

from __future__ import annotations

from ._demo import run_demo
from ._mob import mouse_olfactory_bulb
from ._synthetic import synthetic

__all__ = ["mouse_olfactory_bulb", "synthetic", "run_demo"]
