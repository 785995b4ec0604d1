"""Run one peer tool in this interpreter for an adapter of :mod:`spotfill.benchmark.peers`.

Usage (called by the adapters, not by hand)::

    python -m spotfill.benchmark._peer_worker NAME INPUT.npz OUTPUT.npz OPTIONS_JSON

``INPUT.npz`` holds the CSR counts (``data``, ``indices``, ``indptr``, ``shape``) and ``coords``;
the expected counts are written to ``OUTPUT.npz`` as ``Y``. Exit code 3 means the tool is not
installed in this interpreter.
"""

from __future__ import annotations

import sys

from spotfill.benchmark.peers import _main_worker

if __name__ == "__main__":
    sys.exit(_main_worker(sys.argv[1:]))
