#!/usr/bin/env bash
# Create the peers environment from scratch: MAGIC, scVI, STAGATE, Smoother and HALRA in ONE
# virtual environment (they co-install: same numpy 2.4 / torch 2.13 CPU / anndata 0.12), plus
# spotfill itself in editable mode without dependencies.
#
#   bash benchmarks/peers/setup_envs.sh [ENV_DIR]      (default /work/peer-envs/peers)
#
# Then either run the benchmark with that interpreter (the tools import in-process), or point the
# adapters of another interpreter at it:
#   export SPOTFILL_PEER_PYTHON=/work/peer-envs/peers/bin/python
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ENV_DIR="${1:-/work/peer-envs/peers}"
PYTHON="${PYTHON:-python3.11}"   # scvi-tools >= 1.4.3 needs Python >= 3.12; 1.4.2 is the last for 3.11

"$PYTHON" -m venv --clear "$ENV_DIR"
PIP=("$ENV_DIR/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip
# torch first, pinned to the CPU wheel (constraints also hold it there for every later step)
"${PIP[@]}" install -q -c "$HERE/constraints.txt" "torch==2.13.0"
"${PIP[@]}" install -q -c "$HERE/constraints.txt" -r "$HERE/requirements.txt"
"${PIP[@]}" install -q --no-deps -e "$ROOT"

"$ENV_DIR/bin/python" - <<'PY'
import importlib, importlib.metadata as md
import torch
assert not torch.version.cuda, f"CUDA torch installed ({torch.__version__}): fix constraints.txt"
for dist, mod in [("magic-impute", "magic"), ("scvi-tools", "scvi"), ("stagate-modern", "STAGATE_pyG"),
                  ("smoother-omics", "smoother"), ("halra", "halra"), ("torch-geometric", "torch_geometric"),
                  ("torch", "torch"), ("numpy", "numpy"), ("anndata", "anndata"), ("scanpy", "scanpy")]:
    importlib.import_module(mod)
    print(f"{dist:16s} {md.version(dist)}")
from spotfill.benchmark.peers import available_peers
print("available_peers():", available_peers())
PY
echo "peers environment ready: $ENV_DIR/bin/python"
