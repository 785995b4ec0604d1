"""Reading a Stereo-seq GEM file: time and peak memory of ``spotfill.read(..., bin_size=...)``.

Writes a synthetic GEM file (``--lines`` random (gene, x, y, count) lines on a 20,000 x 20,000 DNB
chip, ``--genes`` genes) into a temporary folder, reads it with ``spotfill.read`` and prints one JSON
line: the binned shape, non-zeros, seconds of the read, and the process's peak resident memory
(``ru_maxrss``, the generation included).

    nice -n 5 python benchmarks/gem_read.py --lines 4000000 --bin-size 50
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=4_000_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--bin-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import spotfill

    rng = np.random.default_rng(args.seed)
    names = np.array([f"Gene{i}" for i in range(args.genes)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "chip.gem"
        with path.open("w") as fh:
            fh.write("#FileFormat=GEMv0.1\ngeneID\tx\ty\tMIDCount\n")
            step = 500_000
            for start in range(0, args.lines, step):
                n = min(step, args.lines - start)
                g = names[rng.integers(0, args.genes, n)]
                x, y, c = rng.integers(0, 20_000, n), rng.integers(0, 20_000, n), rng.integers(1, 4, n)
                fh.write("\n".join(f"{a}\t{b}\t{d}\t{e}" for a, b, d, e in zip(g, x, y, c, strict=True)) + "\n")
        t0 = time.perf_counter()
        adata = spotfill.read(path, bin_size=args.bin_size)
        seconds = time.perf_counter() - t0
    out = {
        "host": platform.node(),
        "lines": args.lines,
        "bin_size": args.bin_size,
        "shape": list(adata.shape),
        "nnz": int(adata.X.nnz),
        "read_s": round(seconds, 1),
        "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
