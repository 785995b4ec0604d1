"""spotfill's default method: a spatially smoothed Poisson factorisation of the counts.

Model
-----
For spot ``i`` and gene ``g`` with library size ``l_i`` (the spot's observed total count)::

    x_ig ~ Poisson(mu_ig),    mu_ig = l_i * sum_k (S U)_ik V_gk,    U, V >= 0,  sum_g V_gk = 1

``V`` holds ``n_latent`` gene programmes (each a distribution over genes) and ``U`` the spot
loadings. ``S = ((1 - a) I + a P)^q`` is a spatial smoothing operator built from the neighbour
graph (``P`` = row-normalised adjacency, ``a`` = ``smooth``, ``q`` = ``smooth_steps``, 2 by
default): every spot's effective loadings are a local average of free loadings, so the rates are
smooth over the tissue by construction, and ``smooth=0`` gives plain Poisson (KL) NMF with library
offsets. The factors are fitted by
multiplicative (majorise-minimise) updates of the Poisson likelihood, which need the rates only at
the observed non-zero counts: each iteration costs ``O(nnz * n_latent)`` plus
``O((n_spots + n_genes) * n_latent)``; no spots x genes array is formed during training.

Count-aware output
------------------
Genes are over-dispersed around the low-rank rate. With a gene-specific Gamma prior on each
entry's rate (mean ``mu_ig``, shape ``theta_g``, i.e. a negative-binomial model, ``theta_g`` fitted
by maximum likelihood), the posterior mean rate given the observed count ``x_ig`` is
``mu_ig (theta_g + x_ig) / (theta_g + mu_ig)``. ``shrink="nonzero"`` (default) applies this update
to the observed non-zero counts and returns ``mu_ig`` at zeros (a zero is treated as missing
evidence, which keeps imputation of dropped-out entries at the model rate); ``"all"`` applies it
everywhere (best held-out likelihood, but it shrinks every zero, imputed or not); ``"none"``
returns ``mu`` alone.

Automatic tuning
----------------
``n_latent="auto"`` and ``smooth="auto"`` are chosen on a binomial-thinning split of the observed
counts: ``X_a ~ Binomial(X, 1 - eps)``, ``X_b = X - X_a`` (independent Poisson halves), the model is
fitted to ``X_a`` and scored by the Poisson negative log-likelihood of ``X_b`` under the rescaled rates
``mu * eps / (1 - eps)``. The rank is chosen first (at ``smooth=0.5``), then the smoothness at that
rank; the table of scores is ``selection_``. On more than ``max_spots_tune`` spots (default 20,000)
the selection runs on that many spots taken as contiguous patches of the spatial graph, so tuning
costs the same on a Visium HD section as on a Visium slide. The final model is refitted to all observed counts
from the same seeded initialisation for the selected number of updates (or, with an integer ``refine_iter``,
starts from the selected candidate's factors and takes ``refine_iter`` more updates). After selection
on patches, the final fit starts from a fresh seeded initialisation of all spots and takes the number
of updates selected on the patches. Selection needs integer counts (binomial thinning); fixing
``n_latent``, ``smooth`` and ``smooth_steps`` skips it.

Compute and memory
------------------
On the CPU: parallel numba kernels for the rates at the non-zeros (threads over spots for the
loadings, over genes, on a CSC copy, for the programmes and the dispersions; every output is summed
in a fixed order, so results do not depend on the number of threads), a blocked numpy fallback when
numba is missing. On a CUDA GPU (``device="auto"`` when torch sees one): the same updates in torch,
gathering the factors at blocks of non-zeros and scattering with ``index_add_``. Each update is the
exact full-data majorise-minimise step, computed over blocks of non-zeros, so memory stays bounded
without the noise of stochastic minibatches. Training memory is ``O(nnz + (n_spots + n_genes) *
n_latent)``. The dispersion fit reads at most ``max_spots_dispersion`` spots in dense blocks of
bounded size. The full prediction is one dense ``float32`` spots x genes array (``4 * n_spots *
n_genes`` bytes: 73 MB for Visium 3,639 x 5,000, 43 GB for Visium HD 600k x 18k); ``transform(genes=)``
(``spotfill.impute(adata, genes=...)``) predicts a gene subset without forming the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy.sparse import csgraph
from scipy.special import gammaln

from .._errors import InputError
from .._logging import progress
from .._sparse import drop_diagonal
from .._validation import is_int, is_number, non_integer
from ._base import BaseImputer, gene_indices
from ._registry import register

__all__ = ["SpotfillModel"]

logger = logging.getLogger(__name__)

_RANKS = (5, 10, 20)
_SMOOTHS = (0.0, 0.5, 0.9)  # smoothing strengths tried when only ``smooth`` is "auto"
_STEPS = (2, 4, 8)  # operator powers tried when only ``smooth_steps`` is "auto"
# (smooth, steps) pairs tried when both are "auto", from narrow to wide
_SMOOTHINGS = ((0.0, 2), (0.5, 2), (0.7, 4), (0.7, 8))
_THETA_GRID = np.exp(np.linspace(np.log(0.05), np.log(1000.0), 25))
_PARALLEL_MIN_WORK = 1 << 21  # multiply-adds per kernel call below which numba runs on one thread
_MAX_STORED_POWER = 2  # wider smoothing operators are applied step by step (see _operator_pair)
_BLOCK = 1 << 22  # entries per dense block (32 MB in float64)
_TORCH_ON_CPU = False  # tests set it to run the torch backend (the CUDA code path) on the CPU

try:  # numba ships with scanpy; the scipy/numpy fallback below gives the same numbers, slower
    import math

    import numba

    # Every kernel loops in parallel over the rows of its output and sums each output in a fixed
    # order (the stored order of the sparse matrix), so the result does not depend on the number of
    # threads and equals the serial computation bit for bit. The length-k dot products may be
    # reassociated (SIMD partial sums; about 35 % faster): every input is validated finite, and no
    # approximate maths functions are allowed ("afn" is left out).
    _FAST = {"nnan", "ninf", "nsz", "arcp", "contract", "reassoc"}

    @numba.njit(parallel=True, cache=True, fastmath=_FAST)
    def _rowdot_nb(indptr, indices, U, V, out):  # pragma: no cover - compiled
        n, k = U.shape
        for i in numba.prange(n):
            for p in range(indptr[i], indptr[i + 1]):
                g = indices[p]
                s = 0.0
                for j in range(k):
                    s += U[i, j] * V[g, j]
                out[p] = s

    @numba.njit(parallel=True, cache=True, fastmath=_FAST)
    def _ratio_nb(indptr, indices, x, A, B, out):  # pragma: no cover - compiled
        # out[i] = sum_g x_ig / (A_i . B_g) * B_g over the stored entries of row i of a compressed
        # matrix (CSR with A = loadings, B = programmes gives the U-update numerator; CSC with the
        # roles swapped gives the V-update numerator). A_i . B_g is summed in the same order both ways.
        n, k = A.shape
        for i in numba.prange(n):
            for j in range(k):
                out[i, j] = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                g = indices[p]
                s = 0.0
                for j in range(k):
                    s += A[i, j] * B[g, j]
                r = x[p] / max(s, 1e-12)
                for j in range(k):
                    out[i, j] += r * B[g, j]

    @numba.njit(parallel=True, cache=True)
    def _nb_loglik_nb(indptr, indices, x, lib, L, V, grid, out):  # pragma: no cover - compiled
        # out[t, g] = NB log-likelihood (up to terms free of theta) of gene g's column (CSC) at
        # theta = grid[t], with rates lib_i * L_i . V_g over all rows i of the column block
        n, k = L.shape
        m = V.shape[0]
        T = grid.shape[0]
        for g in numba.prange(m):
            mu = np.empty(n)
            xs = np.zeros(n)
            for i in range(n):
                s = 0.0
                for j in range(k):
                    s += L[i, j] * V[g, j]
                mu[i] = max(lib[i] * s, 1e-10)
            for p in range(indptr[g], indptr[g + 1]):
                xs[indices[p]] = x[p]
            for t in range(T):
                th = grid[t]
                acc = n * th * np.log(th)
                for i in range(n):
                    acc -= (th + xs[i]) * np.log(th + mu[i])
                for p in range(indptr[g], indptr[g + 1]):
                    xv = x[p]
                    acc += math.lgamma(xv + th) - math.lgamma(th) + xv * np.log(mu[indices[p]])
                out[t, g] += acc

    @numba.njit(parallel=True, cache=True, fastmath=_FAST)
    def _xlogmu_nb(indptr, indices, x, lib, U, V, scale, out):  # pragma: no cover - compiled
        # out[i] = sum over the stored entries of row i of x_ig log(max(scale l_i U_i . V_g, 1e-6)):
        # the objective's data term without any nnz-sized temporary
        n, k = U.shape
        for i in numba.prange(n):
            acc = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                g = indices[p]
                s = 0.0
                for j in range(k):
                    s += U[i, j] * V[g, j]
                acc += x[p] * np.log(max(scale * lib[i] * s, 1e-6))
            out[i] = acc

    # single-threaded twins for small problems, where starting threads costs more than it saves (the same
    # code, but compiled outside a parallel loop LLVM may vectorise it differently: equal up to rounding; which
    # one runs depends only on the problem's size; with NUMBA_DISABLE_JIT=1 the kernels are plain functions:
    # no options, no py_func)
    _SERIAL: dict[str, Callable[..., None]] = {
        name: numba.njit(cache=False, fastmath=getattr(kernel, "targetoptions", {}).get("fastmath") or False)(
            getattr(kernel, "py_func", kernel)
        )
        for name, kernel in (
            ("rowdot", _rowdot_nb),
            ("ratio", _ratio_nb),
            ("nb_loglik", _nb_loglik_nb),
            ("xlogmu", _xlogmu_nb),
        )
    }
    _PARALLEL: dict[str, Callable[..., None]] = {
        "rowdot": _rowdot_nb,
        "ratio": _ratio_nb,
        "nb_loglik": _nb_loglik_nb,
        "xlogmu": _xlogmu_nb,
    }

except ImportError:  # pragma: no cover - numba is a scanpy dependency
    numba = None  # type: ignore[assignment]  # optional import: the module, or None without numba


def _kernel(name: str, work: int) -> Callable[..., None]:
    """Pick the parallel kernel ``name`` for ``work`` >= ``_PARALLEL_MIN_WORK`` operations, else its serial twin.

    Matrices reach the kernel C-contiguous (a copy only for another layout; the fit's arrays already
    are): each kernel is then compiled for one layout, and numba's on-disk cache of a parallel kernel
    compiled for several layouts was seen to return, from the second process on, code that rounds one
    of them differently from a fresh compilation (numba 0.6x).
    """
    fn = (_PARALLEL if work >= _PARALLEL_MIN_WORK else _SERIAL)[name]

    def call(*args: Any) -> None:
        fn(*(np.ascontiguousarray(a) if isinstance(a, np.ndarray) and a.ndim == 2 else a for a in args))

    return call


class _Counts:
    """A count matrix in CSR (for the loadings) and CSC (for the programmes) layout, indices sorted.

    ``float32`` or ``float64`` values are kept as given (the kernels compute in float64 either way, and
    float32 holds every integer count below 2^24 exactly), so the counts are never copied to float64.
    """

    def __init__(self, X: sp.csr_matrix) -> None:
        if sp.issparse(X) and X.format == "csr" and X.dtype in (np.float32, np.float64) and X.has_sorted_indices:
            self.csr = X  # read only here: no second copy of the counts
        else:
            self.csr = sp.csr_matrix(X, dtype=np.float64)
            self.csr.sort_indices()
        self.csc = self.csr.tocsc()
        self.csc.sort_indices()
        self.shape = self.csr.shape


def _rowdot(X: sp.csr_matrix, U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``(U @ V.T)`` at the stored entries of ``X``, in CSR order."""
    out = np.empty(X.nnz, dtype=np.float64)
    if numba is not None:
        _kernel("rowdot", X.nnz * U.shape[1])(X.indptr, X.indices, U, V, out)
        return out
    n, m = X.shape
    step = max(1, _BLOCK // max(m, 1))
    for s in range(0, n, step):
        e = min(n, s + step)
        a, b = X.indptr[s], X.indptr[e]
        rows = np.repeat(np.arange(e - s), np.diff(X.indptr[s : e + 1]))
        out[a:b] = (U[s:e] @ V.T)[rows, X.indices[a:b]]
    return out


def _ratio_products(X: _Counts, U: np.ndarray, V: np.ndarray, *, side: Literal["rows", "cols"]) -> np.ndarray:
    """``R @ V`` (``side="rows"``) or ``R.T @ U`` (``"cols"``) with ``R = X / (U V^T)`` at the non-zeros."""
    if numba is not None:
        if side == "rows":
            out = np.empty((X.shape[0], U.shape[1]))
            _kernel("ratio", X.csr.nnz * U.shape[1])(X.csr.indptr, X.csr.indices, X.csr.data, U, V, out)
        else:
            out = np.empty((X.shape[1], U.shape[1]))
            _kernel("ratio", X.csr.nnz * U.shape[1])(X.csc.indptr, X.csc.indices, X.csc.data, V, U, out)
        return out
    R = sp.csr_matrix(
        (X.csr.data / np.maximum(_rowdot(X.csr, U, V), 1e-12), X.csr.indices, X.csr.indptr), shape=X.shape
    )
    return R @ V if side == "rows" else R.T @ U


def _adjacency(graph: sp.csr_matrix) -> sp.csr_matrix:
    """Copy the graph's edge weights into a float64 CSR matrix without self loops (the caller's graph is untouched).

    Each row is divided by its largest weight, which every use of the matrix (row-normalised
    smoothing, neighbour means) is invariant to: tiny (subnormal) or huge weights can then neither
    overflow ``1 / row sum`` nor the row sum itself. Binary graphs and lattice rings (largest weight
    1) are unchanged.
    """
    A = drop_diagonal(sp.csr_matrix(graph, dtype=np.float64))
    A.eliminate_zeros()
    A.data = np.abs(A.data)
    if A.nnz:
        counts = np.diff(A.indptr)
        filled = counts > 0
        A.data /= np.repeat(np.maximum.reduceat(A.data, A.indptr[:-1][filled]), counts[filled])
    return A


def _smoothing_operator(graph: sp.csr_matrix, smooth: float, steps: int = 2) -> sp.csr_matrix:
    """``((1 - a) I + a P)^steps`` with ``P`` the row-normalised adjacency (no self loops), ``a = smooth``."""
    n = graph.shape[0]
    eye = sp.identity(n, format="csr")
    if smooth == 0:
        return eye
    A = _adjacency(graph)
    d = np.asarray(A.sum(axis=1)).ravel()
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
    P = sp.diags(inv) @ A
    # isolated spots keep their own loadings
    S1 = (sp.diags(1.0 - smooth * (d > 0)) + smooth * P).tocsr()
    S = S1
    for _ in range(steps - 1):
        S = (S @ S1).tocsr()
    return S


class _Power:
    """A sparse matrix ``B`` applied ``reps`` times: ``B^reps @ x`` without forming ``B^reps``.

    Works with scipy.sparse and torch sparse ``B`` alike (only ``B @ x`` is used).
    """

    def __init__(self, B, reps: int) -> None:
        self.B, self.reps = B, reps

    def __matmul__(self, x):
        for _ in range(self.reps):
            x = self.B @ x
        return x


def _operator_pair(graph: sp.csr_matrix, smooth: float, steps: int, to_backend: Callable) -> tuple[_Power, _Power]:
    """``(S, S^T)`` of ``_smoothing_operator(graph, smooth, steps)`` as backend operators.

    Up to ``_MAX_STORED_POWER`` steps the power is formed explicitly (one product per use). Wider
    operators apply the one-step operator ``steps`` times instead: the explicit power's non-zeros per
    row grow with ``steps^2`` (about 13, 130 and 1,400 at 2, 8 and 32 steps on a Visium graph), the
    repeated product's cost only with ``steps``.
    """
    stored = steps if steps <= _MAX_STORED_POWER or smooth == 0 else 1
    B = _smoothing_operator(graph, smooth, stored)
    reps = steps // stored
    return _Power(to_backend(B), reps), _Power(to_backend(B.T.tocsr()), reps)


def _fill_from_neighbours(
    graph: sp.csr_matrix, loadings: np.ndarray, lib: np.ndarray, empty: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Fill the loadings and library sizes of the ``empty`` spots with edge-weighted neighbour means.

    Spots are filled by their hop distance to the nearest measured spot: first those with a measured
    neighbour, then those next to a spot filled before (each from its already filled or measured
    neighbours), so a held-out patch is filled from its border inwards. Each spot is filled once:
    ``O(nnz(graph) * k)`` in all. The fill follows each spot's own edges (its row of the graph; on a
    directed graph, its out-edges): spots with no path along such edges to a measured spot keep zero
    loadings and library size. Returns the new loadings, the new library sizes and the number of
    spots left unfilled.
    """
    n = len(lib)
    A = _adjacency(graph)
    known = np.ones(n)
    known[empty] = 0.0
    L = loadings * known[:, None]  # zero rows until filled, so products only see known spots
    out_lib = lib.astype(np.float64) * known
    if not known.any():
        return L, out_lib, len(empty)
    # hops from each spot along its own edges (rows of A) to the nearest measured spot: a spot d hops
    # away has a neighbour d - 1 hops away, filled before it (multi-source search on A^T)
    hops = csgraph.dijkstra(A.T.tocsr(), directed=True, indices=np.flatnonzero(known), unweighted=True, min_only=True)
    hops_empty = hops[empty]
    reachable = np.isfinite(hops_empty)
    for d in np.unique(hops_empty[reachable]):
        rows = empty[hops_empty == d]
        W = A[rows]
        w = W @ known  # > 0: every spot at distance d has a neighbour at distance d - 1
        L[rows] = (W @ L) / w[:, None]
        out_lib[rows] = (W @ out_lib) / w
        known[rows] = 1.0
    return L, out_lib, int(np.count_nonzero(~reachable))


class _Fit:
    """State of one factorisation: free loadings ``U``, programmes ``V`` and the operator ``S``."""

    def __init__(self, U, V, S, ST) -> None:  # numpy + scipy.sparse, or torch tensors
        self.U, self.V, self.S, self.ST = U, V, S, ST
        self.best: tuple[np.ndarray, np.ndarray] | None = None  # (U, V) at the best held-out score

    def loadings(self) -> np.ndarray | torch.Tensor:  # the backend's kind, like U
        return self.S @ self.U


class _NumpyBackend:
    """The CPU backend: scipy.sparse + the numba kernels above (numpy arrays in and out)."""

    name = "cpu"

    def counts(self, X: sp.csr_matrix) -> _Counts:
        return _Counts(X)

    def array(self, a: np.ndarray) -> np.ndarray:
        return np.array(a, dtype=np.float64)

    def sparse(self, S: sp.csr_matrix) -> sp.csr_matrix:
        return S

    def numpy(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a)

    def ratio(self, X: _Counts, U: np.ndarray, V: np.ndarray, side: Literal["rows", "cols"]) -> np.ndarray:
        return _ratio_products(X, U, V, side=side)

    def nll(self, X: _Counts, lib: np.ndarray, Ue: np.ndarray, V: np.ndarray, scale: float) -> float:
        """Mean over all entries of ``mu - x log mu``, ``mu = scale * l_i Ue_i . V_g`` floored at 1e-6."""
        C = X.csr
        total = scale * float((lib @ Ue) @ V.sum(axis=0))
        if numba is not None:
            out = np.empty(C.shape[0])
            _kernel("xlogmu", C.nnz * Ue.shape[1])(C.indptr, C.indices, C.data, lib, Ue, V, float(scale), out)
            return (total - float(out.sum())) / (C.shape[0] * C.shape[1])
        rows = np.repeat(np.arange(C.shape[0]), np.diff(C.indptr))
        mu = np.maximum(scale * lib[rows] * _rowdot(C, Ue, V), 1e-6)
        return (total - float(C.data @ np.log(mu))) / (C.shape[0] * C.shape[1])


class _TorchCounts:
    """Non-zeros of a count matrix as torch tensors (row, column, value) on one device."""

    def __init__(self, X: sp.csr_matrix, device: torch.device) -> None:
        C = sp.csr_matrix(X, dtype=np.float64)
        C.sort_indices()
        self.shape = C.shape
        self.rows = torch.as_tensor(np.repeat(np.arange(C.shape[0]), np.diff(C.indptr)), device=device)
        self.cols = torch.as_tensor(C.indices.astype(np.int64), device=device)
        self.data = torch.as_tensor(C.data, device=device)

    def chunks(self, k: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(rows, cols, values)`` in blocks of ``4 * _BLOCK / k`` non-zeros.

        An update gathers a ``chunk x k`` float64 array of loadings and one of programmes, and forms
        two more of that size: 4 x 128 MB at the peak, whatever ``k`` (it was 4 x 2^22 x k x 8 bytes,
        2.7 GB at rank 20, with blocks of ``_BLOCK`` non-zeros).
        """
        step = max(1, 4 * _BLOCK // max(int(k), 1))
        for a in range(0, len(self.data), step):
            yield self.rows[a : a + step], self.cols[a : a + step], self.data[a : a + step]


class _TorchBackend:
    """The same updates in torch (float64), for CUDA: gathers and ``index_add_`` over the non-zeros.

    Summation order on a GPU follows its atomics, so results agree with the CPU backend up to
    rounding, not bit for bit (the test suite checks 1e-7 relative agreement, running this backend
    on the CPU).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.name = str(device)

    def counts(self, X: sp.csr_matrix) -> _TorchCounts:
        return _TorchCounts(X, self.device)

    def array(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64), device=self.device).clone()

    def sparse(self, S: sp.csr_matrix) -> torch.Tensor:
        C = sp.coo_matrix(S, dtype=np.float64)
        idx = torch.as_tensor(np.vstack([C.row, C.col]).astype(np.int64))
        S_t = torch.sparse_coo_tensor(idx, torch.as_tensor(C.data), size=C.shape, check_invariants=True)
        return S_t.coalesce().to(self.device)

    def numpy(self, a: torch.Tensor) -> np.ndarray:
        return a.detach().cpu().numpy()

    def ratio(self, X: _TorchCounts, U: torch.Tensor, V: torch.Tensor, side: Literal["rows", "cols"]) -> torch.Tensor:
        out = torch.zeros((X.shape[0] if side == "rows" else X.shape[1], U.shape[1]), dtype=U.dtype, device=U.device)
        for rows, cols, x in X.chunks(U.shape[1]):
            Ur, Vc = U[rows], V[cols]
            r = x / (Ur * Vc).sum(dim=1).clamp_min(1e-12)
            if side == "rows":
                out.index_add_(0, rows, r[:, None] * Vc)
            else:
                out.index_add_(0, cols, r[:, None] * Ur)
        return out

    def nll(self, X: _TorchCounts, lib: torch.Tensor, Ue: torch.Tensor, V: torch.Tensor, scale: float) -> float:
        total = scale * float((lib @ Ue) @ V.sum(dim=0))
        acc = 0.0
        for rows, cols, x in X.chunks(V.shape[1]):
            mu = (scale * lib[rows] * (Ue[rows] * V[cols]).sum(dim=1)).clamp_min(1e-6)
            acc += float(x @ torch.log(mu))
        return (total - acc) / (X.shape[0] * X.shape[1])


_C = TypeVar("_C")
_A = TypeVar("_A")


class _Backend(Protocol[_C, _A]):
    """What the fit needs of a backend: its counts (``_C``) and dense arrays (``_A``) go back to the same backend."""

    name: str

    def counts(self, X: sp.csr_matrix) -> _C: ...
    def array(self, a: np.ndarray) -> _A: ...
    def sparse(self, S: sp.csr_matrix) -> Any: ...
    def numpy(self, a: _A) -> np.ndarray: ...
    def ratio(self, X: _C, U: _A, V: _A, side: Literal["rows", "cols"]) -> _A: ...
    def nll(self, X: _C, lib: _A, Ue: _A, V: _A, scale: float) -> float: ...


def _backend(device: str) -> _NumpyBackend | _TorchBackend:
    """Pick the CPU (numba) backend, or the torch one when ``device`` resolves to CUDA (``"auto"`` with a GPU)."""
    from ..train import resolve_device

    dev = resolve_device(device)
    if dev.type == "cpu" and not _TORCH_ON_CPU:
        return _NumpyBackend()
    return _TorchBackend(dev)


def _tuning_tile(graph: sp.csr_matrix, size: int, rng: np.random.Generator, has_counts: np.ndarray) -> np.ndarray:
    """Sorted indices of ``size`` spots forming spatially contiguous patches of the graph.

    Breadth-first search from a seeded random spot, continued from new random spots of other
    connected components until ``size`` spots are collected: the induced subgraph keeps the
    neighbourhoods of every spot but those on the patch border, unlike a random subset of spots.
    """
    n = graph.shape[0]
    A = sp.csr_matrix(graph, dtype=np.float64)
    A = ((A + A.T) != 0).astype(np.int8).tocsr()
    _, labels = csgraph.connected_components(A, directed=False)
    by_label = np.argsort(labels, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(labels))]
    taken = np.zeros(labels.max() + 1, dtype=bool)  # components already collected
    order: list[np.ndarray] = []
    count = 0
    for start in rng.permutation(n):
        if count >= size:
            break
        c = labels[start]
        if taken[c] or not has_counts[start]:  # a patch grown from an empty region would tune on nothing
            continue
        taken[c] = True
        members = by_label[bounds[c] : bounds[c + 1]]
        if len(members) <= size - count:  # the whole component: no search needed (fragmented graphs stay O(n))
            reached = members
        else:  # the last, partly taken component: breadth-first from the start spot
            reached = csgraph.breadth_first_order(A, int(start), directed=True, return_predecessors=False)
            reached = reached[: size - count]
        order.append(reached)
        count += len(reached)
    if not order:  # no spot has counts: nothing to tune on either way
        return np.arange(min(size, n))
    return np.sort(np.concatenate(order))


def _init_factors(X: sp.csr_matrix, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n, m = X.shape
    gm = np.asarray(X.sum(axis=0, dtype=np.float64)).ravel() + 1e-3
    gm /= gm.sum()
    V = gm[:, None] * rng.uniform(0.5, 1.5, size=(m, k))
    V /= V.sum(axis=0, keepdims=True)
    U = rng.uniform(0.5, 1.5, size=(n, k)) / k
    return U, V


def _factorise(
    X: _Counts | _TorchCounts,
    lib: np.ndarray | torch.Tensor,
    fit: _Fit,
    *,
    max_iter: int,
    tol: float,
    show: bool,
    desc: str,
    heldout: tuple[_Counts | _TorchCounts, float] | None = None,
    backend: _Backend[Any, Any] | None = None,
    prior: tuple[float, np.ndarray | torch.Tensor] | None = None,
    saturated: float = 0.0,
) -> list[tuple[int, float, float]]:
    """Multiplicative Poisson-NMF updates of ``fit`` in place.

    Returns ``(iteration, objective, held-out NLL)`` every 10 updates (NaN without ``heldout``). With
    ``heldout = (X_b, scale)`` the run stops once the held-out NLL has risen twice in a row. With
    ``prior = (a, share)`` each programme's gene weights are updated to the posterior mean under
    ``V_gk = share_g r_gk``, ``r_gk ~ Gamma(a, a)`` (the posterior mode under ``Gamma(a + 1, a)``; it
    stays positive for ``a < 1``, where the mode would be 0): ``share_g (n_gk + a) / (share_g D_k + a)`` with
    ``n_gk`` the counts of gene ``g`` allocated to programme ``k`` and ``D_k`` its exposure.
    ``tol`` is relative to the mean deviance ``objective + saturated`` (``saturated`` = the mean of
    ``x log x - x``, see :func:`_saturated`), which scales with the data: the stopping point does not
    depend on the units of the values.
    """
    # X, lib, heldout, prior and fit hold the backend's kind of counts and arrays (numpy ones without a backend)
    be: _Backend[Any, Any] = backend or _NumpyBackend()
    S, ST = fit.S, fit.ST
    U, V = fit.U, fit.V
    ST_lib = (ST @ lib[:, None])[:, 0]
    history: list[tuple[int, float, float]] = []
    prev = np.inf
    worse = 0
    for it in progress(range(max_iter), enabled=show, desc=desc, leave=False):
        U *= (ST @ be.ratio(X, S @ U, V, "rows")) / (ST_lib[:, None] * V.sum(0)[None, :]).clip(min=1e-30)
        Ue = S @ U
        if prior is None:
            V *= be.ratio(X, Ue, V, "cols") / (lib @ Ue)[None, :].clip(min=1e-30)
        else:
            a, share = prior
            V = share * (V * be.ratio(X, Ue, V, "cols") + a) / (share * (lib @ Ue)[None, :] + a)
            fit.V = V
        c = V.sum(axis=0)
        c[c == 0] = 1.0
        V /= c
        U *= c
        if (it + 1) % 10 == 0 or it + 1 == max_iter:
            Ue = fit.loadings()
            obj = be.nll(X, lib, Ue, V, 1.0)
            if heldout is None:
                history.append((it + 1, obj, np.nan))
            else:
                score = be.nll(heldout[0], lib, Ue, V, heldout[1])
                worse = worse + 1 if history and score > history[-1][2] else 0
                if not history or score < min(h[2] for h in history):
                    fit.best = (be.numpy(U).copy(), be.numpy(V).copy())
                history.append((it + 1, obj, score))
                if worse >= 2:
                    break
            if abs(prev - obj) <= tol * abs(obj + saturated):
                break
            prev = obj
    return history


def _fit_dispersion(X: sp.csr_matrix, lib: np.ndarray, Ue: np.ndarray, V: np.ndarray, spots: np.ndarray) -> np.ndarray:
    """Per-gene negative-binomial shape ``theta`` (max likelihood on a log grid) given the rates."""
    m = X.shape[1]
    ll = np.zeros((len(_THETA_GRID), m))
    step = max(1, _BLOCK // max(m, 1))
    for s in range(0, len(spots), step):
        idx = spots[s : s + step]
        if numba is not None:
            Xc = sp.csc_matrix(X[idx], dtype=np.float64)
            Xc.sort_indices()
            kernel = _kernel("nb_loglik", Xc.shape[0] * Xc.shape[1] * len(_THETA_GRID))
            kernel(Xc.indptr, Xc.indices, Xc.data, lib[idx], Ue[idx], V, _THETA_GRID, ll)
            continue
        M = np.maximum(lib[idx, None] * (Ue[idx] @ V.T), 1e-10)
        Xd = X[idx].toarray().astype(np.float64)
        for t, th in enumerate(_THETA_GRID):
            log_th_mu = np.log(th + M)
            ll[t] += (
                gammaln(Xd + th) - gammaln(th) + th * (np.log(th) - log_th_mu) + Xd * (np.log(M) - log_th_mu)
            ).sum(axis=0)
    return _THETA_GRID[np.argmax(ll, axis=0)]


@register(
    "spotfill",
    family="spatial-count",
    description="Spatially smoothed Poisson factorisation with library offsets and NB shrinkage; auto-tuned",
    key_params=("n_latent", "smooth", "smooth_steps", "shrink", "gene_prior"),
)
class SpotfillModel(BaseImputer):
    """spotfill's default imputer: a spatially smoothed Poisson factorisation of the counts.

    See the module documentation for the model. Every setting has a data-driven default, so
    ``SpotfillModel().fit(X, graph=G).transform()`` needs no tuning.

    Parameters
    ----------
    n_latent
        Number of gene programmes, or ``"auto"`` (chosen among 5, 10, 20 on a thinning split; only
        those not above the number of genes or of spots tuned on, and 1 when that leaves none).
    smooth
        Spatial smoothing strength ``a`` in ``[0, 1)`` of the loadings operator
        ``((1 - a) I + a P)^q``, or ``"auto"`` (chosen among 0, 0.5, 0.9).
    smooth_steps
        The power ``q`` of the operator, i.e. how many graph hops one spot's loadings reach (2 by
        default). Wider operators give more uniform spatial domains at some cost in held-out
        likelihood (dlpfc_151673: ``smooth=0.7, smooth_steps=4`` raises the P4 ARI from 0.50 to 0.56
        while the P2 Poisson NLL rises from 0.07949 to 0.07954; see ``docs/default_model.md``).
        ``"auto"`` selects on the held-out split among ``(smooth, q)`` = (0, 2), (0.5, 2), (0.7, 4),
        (0.7, 8) when ``smooth="auto"``, else among ``q`` = 2, 4, 8.
    shrink
        Negative-binomial posterior update of the rates by the observed counts: at the non-zero
        counts (``"nonzero"``), everywhere (``"all"``) or nowhere (``"none"``).
    max_iter
        Maximum number of multiplicative updates of the final fit. After automatic selection the
        final fit takes the selected number of updates, capped at ``max_iter``. With ``n_latent``,
        ``smooth`` and ``smooth_steps`` all fixed there is no selection, and the fit runs up to
        ``max_iter`` updates (stopped by ``tol`` only): fewer updates regularise, so on shallow data
        also set ``max_iter`` (e.g. to the ``n_iter`` an automatic run without ``refine_iter``
        selected, ``adata.uns[key]["selected"]["n_iter"]``; with ``refine_iter`` that value counts
        the refining updates only).
    tune_iter
        Updates per candidate during automatic selection.
    refine_iter
        ``None`` (default): after automatic selection the final model is refitted to all observed
        counts from the initialisation for the selected number of updates. An integer instead starts
        from the selected candidate's factors at its best held-out iteration and takes ``refine_iter``
        more updates (at most ``max_iter``): faster (dlpfc: ~12 s less CPU), but a slightly worse held-out likelihood.
    tol
        Without automatic selection (and in the selection's candidate fits): stop when the objective
        ``mean(mu - x log mu)`` changes over 10 updates by less than ``tol`` times the mean Poisson
        deviance ``mean(mu - x - x log(mu / x))`` (half the usual deviance), which scales with the
        data, so the stopping point does not depend on the units of the values. ``tol=0`` always
        takes ``max_iter`` updates.
    eps
        Fraction of the counts held out by binomial thinning for automatic selection.
    max_spots_dispersion
        Number of spots (a seeded random subset) used to fit the gene dispersions.
    max_spots_tune
        Automatic selection on larger data runs on this many spots, taken as spatially contiguous
        patches of the graph (breadth-first from seeded random spots), so that tuning costs the same
        on a Visium HD section as on a Visium slide; ``None`` tunes on every spot. The final fit
        always uses every spot. ``refine_iter`` needs tuning on every spot and is ignored otherwise.
    gene_prior
        Strength ``a`` (in pseudo-counts) of an empirical-Bayes prior on the gene programmes:
        each gene's weight in a programme is shrunk towards its overall share of the counts,
        ``V_gk = share_g r_gk`` with ``r_gk ~ Gamma(a, a)``, which mostly affects genes with few
        counts per programme. ``0`` (default) fits without it. ``5`` lowered the P2 Poisson NLL on
        every dataset tried (dlpfc_151673, mob_st_rep11, her2st), but moved the automatic smoothing
        choice towards ``smooth=0`` and so lowered the dlpfc P4 ARI (0.50 to 0.33) and P1 Pearson
        (0.80 to 0.78); see ``docs/default_model.md`` (round 4).
    seed
        Seed of the initialisation, the thinning split and the dispersion subset.
    device
        ``"auto"`` (a CUDA GPU when torch sees one, else the CPU), ``"cpu"`` or ``"cuda"``. The CPU
        runs the numba kernels (bit-reproducible on one machine, independent of the number of threads;
        the dot products use the CPU's vector width, so another CPU may differ in the last bits); a GPU runs
        the same updates in torch (float64, equal to the CPU results up to rounding). GPU sums use
        atomic scatter-adds, so repeated GPU runs agree only up to rounding, and a near-tie in the
        automatic selection can then go either way.
    progress
        Show progress bars.

    Attributes
    ----------
    loadings_
        Smoothed spot loadings ``S U`` (``(n_spots, n_latent_)``), before the library size (at
        ``empty_spots_``: the mean of their neighbours').
    factors_
        Gene programmes ``V`` (``(n_genes, n_latent_)``, columns sum to 1).
    library_size_
        Library size of each spot: its observed total count, or for a spot without counts (see
        ``empty_spots_``) the edge-weighted mean of its neighbours'.
    empty_spots_
        Indices of the spots without any count. Their loadings and library sizes are filled from
        their graph neighbours after the fit (from the border inwards for a patch of such spots), so
        the model predicts held-out or unmeasured spots by spatial interpolation; a spot from which no
        path along the graph's edges (row to column) reaches a measured spot stays 0 (on an undirected
        graph: a component without a measured spot).
    theta_
        Negative-binomial shape of each gene, from a grid of 0.05 to 1,000 (``inf`` only with
        ``shrink="none"``, which needs none); larger means less over-dispersed.
    n_latent_, smooth_, smooth_steps_
        The settings used (chosen ones when ``"auto"``).
    selection_
        Table of the automatic selection: ``n_latent``, ``smooth``, ``smooth_steps``, the held-out Poisson
        negative log-likelihood (``heldout_nll``, mean per entry, up to a constant), the best number of
        updates (``n_iter``) and seconds; empty when nothing was tuned.
    n_spots_tuned_
        Number of spots the automatic selection ran on (0 when nothing was tuned).
    history_
        Objective (mean Poisson NLL per entry, up to a constant) every 10 updates of the final fit.
    """

    uses_graph = True
    has_latent = True

    def __init__(
        self,
        n_latent: int | Literal["auto"] = "auto",
        smooth: float | Literal["auto"] = "auto",
        smooth_steps: int | Literal["auto"] = 2,
        shrink: Literal["nonzero", "all", "none"] = "nonzero",
        max_iter: int = 150,
        tune_iter: int = 150,
        tol: float = 1e-5,
        eps: float = 0.1,
        max_spots_dispersion: int = 2000,
        max_spots_tune: int | None = 20_000,
        refine_iter: int | None = None,
        gene_prior: float = 0.0,
        seed: int = 0,
        device: str = "auto",
        progress: bool = True,
    ) -> None:
        self.n_latent = n_latent
        self.smooth = smooth
        self.smooth_steps = smooth_steps
        self.shrink = shrink
        self.max_iter = max_iter
        self.tune_iter = tune_iter
        self.tol = tol
        self.eps = eps
        self.max_spots_dispersion = max_spots_dispersion
        self.max_spots_tune = max_spots_tune
        self.refine_iter = refine_iter
        self.gene_prior = gene_prior
        self.seed = seed
        self.device = device
        self.progress = progress

    # --- validation ----------------------------------------------------------------------------
    def _check_thinnable(self, X: sp.csr_matrix) -> None:
        """Refuse counts that binomial thinning cannot split (non-integer, or beyond 2^53)."""
        n_frac, first = non_integer(X.data)
        if n_frac:
            msg = (
                f"SpotfillModel selects its settings on a binomial thinning of the counts, which needs integer "
                f"counts, but X has {n_frac} non-integer values (e.g. {first:g}). Pass raw counts (a "
                "counts layer: layer=..., --layer). Only for non-integer expected counts (e.g. ambient-"
                "corrected), never for normalised or log values, fix n_latent, smooth and smooth_steps to skip "
                f"the selection, and max_iter (without the selection the fit takes up to {self.max_iter} "
                "updates, which over-fits shallow data; the selection typically stops after 20-80)."
            )
            raise InputError(msg)
        if X.nnz and float(X.data.max()) > 2.0**53:
            msg = (
                f"X holds a value of {float(X.data.max()):.3g}, beyond what a count can be (2^53): pass raw "
                "counts, or fix n_latent, smooth and smooth_steps to skip the selection."
            )
            raise InputError(msg)

    def _check_values(self) -> None:
        super()._check_values()
        self._check_params(2**62, 2**62)  # every check but those against the data's shape

    def _check_params(self, n_obs: int, n_vars: int) -> None:
        if self.n_latent != "auto" and not (is_int(self.n_latent) and self.n_latent >= 1):
            msg = f"n_latent must be a positive integer or 'auto', got {self.n_latent!r}."
            raise InputError(msg)
        if self.n_latent != "auto" and self.n_latent > min(n_obs, n_vars):
            msg = f"n_latent={self.n_latent} exceeds min(n_spots, n_genes)={min(n_obs, n_vars)}: choose fewer."
            raise InputError(msg)
        if self.smooth != "auto" and not (is_number(self.smooth) and 0 <= self.smooth < 1):
            msg = f"smooth must be a number in [0, 1) or 'auto', got {self.smooth!r}."
            raise InputError(msg)
        if self.smooth_steps != "auto" and not (is_int(self.smooth_steps) and 1 <= self.smooth_steps <= 32):
            msg = f"smooth_steps must be an integer in [1, 32] or 'auto', got {self.smooth_steps!r}."
            raise InputError(msg)
        if self.shrink not in ("nonzero", "all", "none"):
            msg = f"shrink must be 'nonzero', 'all' or 'none', got {self.shrink!r}."
            raise InputError(msg)
        if not (is_number(self.eps) and 0 < self.eps < 1):
            msg = f"eps must be a number in (0, 1), got {self.eps!r}."
            raise InputError(msg)
        if not (is_number(self.gene_prior) and self.gene_prior >= 0):
            msg = f"gene_prior must be a number >= 0 (0 = no prior), got {self.gene_prior!r}."
            raise InputError(msg)
        if not (is_number(self.tol) and self.tol >= 0):
            msg = f"tol must be a number >= 0, got {self.tol!r}."
            raise InputError(msg)
        for name in ("max_iter", "tune_iter", "max_spots_dispersion"):
            value = getattr(self, name)
            if not (isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1):
                msg = f"{name} must be a positive integer, got {value!r}."
                raise InputError(msg)
        if self.max_spots_tune is not None and not (
            isinstance(self.max_spots_tune, int | np.integer) and self.max_spots_tune >= 10
        ):
            msg = f"max_spots_tune must be an integer >= 10 or None, got {self.max_spots_tune!r}."
            raise InputError(msg)
        if self.refine_iter is not None and not (is_int(self.refine_iter) and self.refine_iter >= 1):
            msg = f"refine_iter must be a positive integer or None, got {self.refine_iter!r}."
            raise InputError(msg)

    # --- fitting -------------------------------------------------------------------------------
    def _fit(self, X: sp.csr_matrix, *, graph: sp.csr_matrix | None, coords: np.ndarray | None) -> None:
        n, m = X.shape
        self._check_params(n, m)
        if graph is None:  # pragma: no cover - the base class builds a kNN graph from coords
            msg = "SpotfillModel needs a spatial graph (graph=) or coordinates (coords=)."
            raise InputError(msg)
        # the base class hands over float32 CSR; kept as is (no float64 copy: 12 -> 8 bytes per non-zero)
        X = sp.csr_matrix(X, dtype=np.float32)
        if not X.has_sorted_indices:
            X = X.copy()
            X.sort_indices()
        rng = np.random.default_rng(self.seed)
        lib = np.asarray(X.sum(axis=1, dtype=np.float64)).ravel()
        be: _Backend[Any, Any] = _backend(self.device)

        def operators(G: sp.csr_matrix) -> Callable[[tuple[float, int]], tuple]:
            """Memoised ``(S, S^T)`` of graph ``G`` per ``(smooth, steps)``, on the backend."""
            cache: dict[tuple[float, int], tuple] = {}

            def get(a: tuple[float, int]) -> tuple:
                if a not in cache:
                    cache[a] = _operator_pair(G, *a, be.sparse)
                return cache[a]

            return get

        def new_fit(U: np.ndarray, V: np.ndarray, ops: tuple) -> _Fit:
            return _Fit(be.array(U), be.array(V), *ops)

        n_tune = n if self.max_spots_tune is None else min(n, int(self.max_spots_tune))
        ranks = [r for r in _RANKS if r <= min(n_tune, m)] or [1]  # candidates fit the spots tuned on
        ranks = ranks if self.n_latent == "auto" else [int(self.n_latent)]
        smooths = _smoothing_candidates(self.smooth, self.smooth_steps)
        operator = operators(graph)

        def prior(C: sp.csr_matrix) -> tuple[float, np.ndarray | torch.Tensor] | None:
            if not self.gene_prior:
                return None
            share = np.asarray(C.sum(axis=0, dtype=np.float64)).ravel() + 1e-3
            return float(self.gene_prior), be.array((share / share.sum())[:, None])

        rows: list[dict] = []
        tile: np.ndarray | None = None
        if len(ranks) > 1 or len(smooths) > 1:
            # every stored value, not only the tile's: whether X is accepted must not depend on the seed
            self._check_thinnable(X)
            Xs, tune_operator = X, operator
            if self.max_spots_tune is not None and n > self.max_spots_tune:
                # tune on contiguous patches of the tissue: the selection costs O(max_spots_tune), not O(n)
                tile = _tuning_tile(graph, int(self.max_spots_tune), rng, lib > 0)
                Xs = X[tile]
                tune_operator = operators(sp.csr_matrix(graph)[tile][:, tile])

                logger.info("spotfill selection on %d of %d spots (contiguous patches)", len(tile), n)
            Xa = Xs.copy()
            Xa.data = rng.binomial(Xs.data.astype(np.int64), 1.0 - self.eps).astype(np.float64)
            Xb = (Xs - Xa).tocsr()
            Xa.eliminate_zeros()
            Xb.eliminate_zeros()
            lib_a = np.asarray(Xa.sum(axis=1)).ravel()
            scale = self.eps / (1.0 - self.eps)
            init = {k: _init_factors(Xa, k, np.random.default_rng(self.seed)) for k in ranks}
            snapshots: dict[tuple[int, tuple[float, int]], tuple[np.ndarray, np.ndarray] | None] = {}
            Xa_counts, Xb_counts, lib_a_be = be.counts(Xa), be.counts(Xb), be.array(lib_a)
            prior_a, saturated_a = prior(Xa), _saturated(Xa)

            def trial(k: int, a: tuple[float, int]) -> None:
                t0 = time.perf_counter()
                U0, V0 = init[k]
                fit = new_fit(U0, V0, tune_operator(a))
                hist = _factorise(
                    Xa_counts,
                    lib_a_be,
                    fit,
                    max_iter=self.tune_iter,
                    tol=self.tol,
                    show=False,
                    desc="",
                    heldout=(Xb_counts, scale),
                    backend=be,
                    prior=prior_a,
                    saturated=saturated_a,
                )
                it_best, _, score = min(hist, key=lambda h: h[2])
                if not np.isfinite(score):  # min() over NaN would pick a candidate silently
                    msg = (
                        f"the held-out score of n_latent={k}, smooth={a[0]}, smooth_steps={a[1]} is not finite: the "
                        "fit diverged. Check the counts and the graph's weights."
                    )
                    raise InputError(msg)
                snapshots[k, a] = fit.best
                rows.append(
                    {
                        "n_latent": k,
                        "smooth": a[0],
                        "smooth_steps": a[1],
                        "n_iter": it_best,
                        "heldout_nll": score,
                        "seconds": time.perf_counter() - t0,
                    }
                )
                logger.info(
                    "spotfill selection: n_latent=%d smooth=%.2f steps=%d iter %d held-out NLL %.6f",
                    k,
                    *a,
                    it_best,
                    score,
                )

            a0 = next((a for a in smooths if a[0] == 0.5), smooths[0])  # the rank is chosen at smooth 0.5
            for k in progress(ranks, enabled=self.progress and len(ranks) > 1, desc="spotfill: rank", leave=False):
                trial(k, a0)
            k_best = min(ranks, key=lambda k: _row(rows, k, a0)["heldout_nll"])
            for a in smooths:
                if a != a0:
                    trial(k_best, a)
            a_best = min(smooths, key=lambda a: _row(rows, k_best, a)["heldout_nll"])
            k, a = k_best, a_best
            n_iter = min(int(_row(rows, k, a)["n_iter"]), self.max_iter)
            use_tol = 0.0
            start = snapshots[k, a] if self.refine_iter is not None and tile is None else None
            if start is not None:
                assert self.refine_iter is not None  # start is only taken with an integer refine_iter
                n_iter = min(self.refine_iter, self.max_iter)
            # the tuning split, its device copies and snapshots are not needed by the final fit
            del trial, snapshots, init, Xs, Xa, Xb, Xa_counts, Xb_counts, lib_a_be, prior_a, tune_operator
        else:
            k, a = ranks[0], smooths[0]
            n_iter, use_tol = self.max_iter, self.tol
            start = None
            logger.info(
                "spotfill: settings fixed, no selection: up to max_iter=%d updates (stopped by tol only)", n_iter
            )
        U, V = _init_factors(X, k, np.random.default_rng(self.seed)) if start is None else start
        self.selection_ = pd.DataFrame(
            rows, columns=["n_latent", "smooth", "smooth_steps", "n_iter", "heldout_nll", "seconds"]
        )
        self.n_spots_tuned_ = 0 if not rows else (n if tile is None else len(tile))
        fit = new_fit(U, V, operator(a))
        hist = _factorise(
            be.counts(X),
            be.array(lib),
            fit,
            max_iter=n_iter,
            tol=use_tol,
            show=self.progress,
            desc=f"spotfill: fit ({be.name})",
            backend=be,
            prior=prior(X),
            saturated=_saturated(X),
        )
        self.history_ = pd.DataFrame([h[:2] for h in hist], columns=["iteration", "objective"])
        self.n_latent_, (self.smooth_, self.smooth_steps_) = k, a
        self.loadings_ = be.numpy(fit.loadings())
        self.factors_ = be.numpy(fit.V)
        if not (np.all(np.isfinite(self.loadings_)) and np.all(np.isfinite(self.factors_))):
            msg = "the fit diverged (non-finite factors): check the counts and the graph's weights."
            raise InputError(msg)
        self.library_size_ = lib
        pool = np.flatnonzero(lib > 0)  # spots without counts say nothing about the dispersion
        n_disp = min(len(pool), self.max_spots_dispersion)
        spots = np.sort(rng.choice(pool, size=n_disp, replace=False)) if n_disp < len(pool) else pool
        self.theta_ = (
            _fit_dispersion(X, lib, self.loadings_, self.factors_, spots)
            if self.shrink != "none"
            else np.full(m, np.inf)
        )
        # spots without counts (unmeasured, or held out) are predicted from their neighbours
        self.empty_spots_ = np.flatnonzero(lib == 0)
        if self.empty_spots_.size:
            self.loadings_, self.library_size_, n_left = _fill_from_neighbours(
                graph, self.loadings_, lib, self.empty_spots_
            )
            logger.info(
                "spotfill: %d spots without counts predicted from their neighbours%s",
                self.empty_spots_.size - n_left,
                f"; {n_left} have no path along their graph edges to a measured spot and stay 0" if n_left else "",
            )

    # --- prediction ----------------------------------------------------------------------------
    def rates(self, genes: np.ndarray | slice | None = None) -> np.ndarray:
        """Model rates ``mu`` (count scale, before the posterior update) for all spots and ``genes``.

        Parameters
        ----------
        genes
            Gene indices or a slice (default: all genes).

        Returns
        -------
        Dense ``float32`` array ``(n_spots, n_selected_genes)``.
        """
        self._check_fitted()
        if genes is not None and not isinstance(genes, slice):
            genes = gene_indices(genes, self.factors_.shape[0])
        V = self.factors_ if genes is None else self.factors_[genes]
        L = self.library_size_[:, None] * self.loadings_
        out = np.empty((L.shape[0], V.shape[0]), dtype=np.float32)
        step = max(1, _BLOCK // max(V.shape[0], 1))  # row blocks: no float64 spots x genes temporary
        for s in range(0, L.shape[0], step):
            out[s : s + step] = L[s : s + step] @ V.T
        return out

    def _latent(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the smoothed spot loadings ``S U`` and the gene programmes ``V`` (float32)."""
        self._check_fitted()
        return self.loadings_.astype(np.float32), self.factors_.astype(np.float32)

    def _selected_params(self) -> dict[str, Any]:
        return {
            "n_latent": int(self.n_latent_),
            "smooth": float(self.smooth_),
            "smooth_steps": int(self.smooth_steps_),
            "n_iter": int(self.history_["iteration"].iloc[-1]) if len(self.history_) else 0,
        }

    def _predict(self, X: sp.csr_matrix) -> np.ndarray:
        self._check_shrink()
        return self._posterior(self.rates(), sp.csr_matrix(X), self.theta_)

    def _check_shrink(self) -> None:
        if self.shrink != "none" and not np.all(np.isfinite(self.theta_)):
            msg = (
                f"shrink={self.shrink!r} needs the gene dispersions, which a fit with shrink='none' does not "
                "estimate: fit again with this shrink."
            )
            raise InputError(msg)

    def _predict_genes(self, X: sp.csr_matrix, genes: np.ndarray) -> np.ndarray:
        # O(n_spots * len(genes)) memory: the other genes' rates are never formed
        self._check_shrink()
        return self._posterior(self.rates(genes), sp.csr_matrix(X)[:, genes], self.theta_[genes])

    def _posterior(self, mu: np.ndarray, X: sp.csr_matrix, theta: np.ndarray) -> np.ndarray:
        """Apply the ``shrink`` update of rates ``mu`` by counts ``X`` (CSR, same columns), in place of ``mu``.

        ``X`` is only read (float32 counts are promoted to float64 in the arithmetic; no copy of it).
        """
        if self.shrink == "none":
            return mu
        if self.shrink == "nonzero":
            # row blocks of about _BLOCK non-zeros bound the index and value temporaries
            bounds = np.searchsorted(X.indptr, np.arange(0, X.nnz, _BLOCK), side="right") - 1
            starts = np.unique(np.r_[0, bounds, X.shape[0]])
            for s, e in zip(starts[:-1], starts[1:], strict=True):
                a, b = X.indptr[s], X.indptr[e]
                rows = np.repeat(np.arange(s, e), np.diff(X.indptr[s : e + 1]))
                cols = X.indices[a:b]
                m_nz = mu[rows, cols].astype(np.float64)
                th = theta[cols]
                mu[rows, cols] = (m_nz * (th + X.data[a:b]) / (th + m_nz)).astype(np.float32)
            return mu
        # "all": zeros are evidence too, but only at spots where something was observed (a spot without
        # counts has its neighbours' rates); process the measured rows in blocks to bound the temporaries
        measured = np.setdiff1d(np.arange(X.shape[0]), self.empty_spots_)
        step = max(1, _BLOCK // max(X.shape[1], 1))
        for s in range(0, len(measured), step):
            r = measured[s : s + step]
            blk = mu[r].astype(np.float64)
            mu[r] = (blk * (theta + X[r].toarray()) / (theta + blk)).astype(np.float32)
        return mu


def _saturated(X: sp.csr_matrix, block: int = 1 << 20) -> float:
    """Mean over all entries of ``x log x - x`` (0 at zeros): the objective of a fit with ``mu = x``.

    Summed over blocks of the stored values, so its temporaries are a few MB (a float64 copy of
    every stored value was 1.9 GB at Visium HD size, at the peak of the final fit).
    """
    xlogx = total = 0.0
    for start in range(0, X.data.size, block):
        d = X.data[start : start + block].astype(np.float64)
        d = d[d > 0]
        xlogx += float(d @ np.log(d))
        total += float(d.sum())
    return (xlogx - total) / (X.shape[0] * X.shape[1])


def _row(rows: list[dict], k: int, a: tuple[float, int]) -> dict:
    return next(r for r in rows if r["n_latent"] == k and (r["smooth"], r["smooth_steps"]) == a)


def _smoothing_candidates(smooth: float | Literal["auto"], steps: int | Literal["auto"]) -> list[tuple[float, int]]:
    """``(smooth, steps)`` pairs to select from, ordered from the narrowest operator to the widest."""
    if smooth == "auto" and steps == "auto":
        return list(_SMOOTHINGS)
    if smooth == "auto":
        return [(a, int(steps)) for a in _SMOOTHS]
    if steps == "auto":
        return [(float(smooth), q) for q in _STEPS] if smooth > 0 else [(0.0, 2)]
    return [(float(smooth), int(steps))]
