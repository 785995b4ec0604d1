"""Synthetic spatial count data with a known rate: tissue domains, smooth spatial factors, NB noise.

The generator never holds a dense spots x genes matrix larger than one chunk of spots, so it scales
to Visium HD sizes (600,000 bins x 18,000 genes) in memory proportional to the number of non-zero
counts.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy.spatial import cKDTree

from .._errors import InputError
from .._logging import progress as _progress
from .._validation import check_seed, is_int, is_number

if TYPE_CHECKING:
    from numpy.random import Generator

__all__ = ["synthetic"]

logger = logging.getLogger(__name__)

Platform = Literal["visium", "st", "random"]

#: Spots per random-number block: every block of this many consecutive spots draws its noise from its
#: own generator (spawned from ``seed``), so results do not depend on ``chunk_size``.
RNG_BLOCK = 256
#: ``truth=None`` stores ``layers['truth']`` up to this many spots x genes entries (200 MB of float32).
TRUTH_MAX_ENTRIES = 50_000_000
# entries with a larger mean are drawn as gamma-Poisson; smaller ones by inversion of the NB CDF
_DIRECT_MEAN = 8.0
_N_FOURIER = 64
_VISIUM_PITCH = 100.0  # centre-to-centre distance of neighbouring Visium spots, in "pixels"
#: ``depth=None`` gives this many UMIs per gene per spot on average, as in Visium data (DLPFC: 0.27).
DEPTH_PER_GENE = 0.25


def synthetic(
    n_spots: int = 1000,
    n_genes: int = 500,
    *,
    platform: Platform = "visium",
    n_domains: int = 5,
    rank: int = 8,
    depth: float | None = None,
    dispersion: float = 0.2,
    library_sd: float = 0.6,
    gene_sd: float = 1.7,
    gene_shape: float = 0.4,
    domain_sd: float = 1.0,
    field_sd: float = 0.5,
    lengthscale: float = 0.2,
    seed: int = 0,
    truth: bool | None = None,
    chunk_size: int = 2048,
    progress: bool = False,
) -> AnnData:
    """Simulate spatial transcriptomics counts around a known, spatially smooth low-rank rate.

    The model, for spot ``i`` in domain ``d(i)`` at normalised position ``z_i`` and gene ``g``:

    - spot factors ``F_ik = exp(D[d(i), k] + field_sd * f_k(z_i))``, ``k < rank``, where ``D`` holds
      one random profile per domain (normal, sd ``domain_sd``) and ``f_k`` are smooth random fields
      of unit variance (random Fourier features of an RBF kernel of width ``lengthscale``, in units of
      the tissue's largest side);
    - gene loadings ``L_gk = s_g * G_gk`` with ``G_gk ~ Gamma(gene_shape, 1)`` (small shapes make
      domain-specific marker genes) and a log-normal gene scale ``s_g`` (sd ``gene_sd``: the spread of
      gene means over orders of magnitude, which sets the sparsity);
    - library sizes ``l_i = depth * LogNormal(-library_sd**2 / 2, library_sd)`` (mean ``depth``);
    - the rate ``mu_ig = l_i * sum_k F_ik L_gk / sum_h sum_k F_ik L_hk``, so a spot's expected
      total is its library size;
    - counts ``x_ig ~ NB(mean mu_ig, variance mu_ig + dispersion * mu_ig**2)`` (``dispersion=0``:
      Poisson).

    Domains are the Voronoi cells of ``n_domains`` well-separated spots, hence contiguous. The
    defaults give 85-90 % zeros, like a Visium sample (``gene_sd`` and ``library_sd`` are set to the
    values measured on the DLPFC Visium data); a lower ``depth`` per gene gives more zeros, a higher
    one fewer (``depth=2000`` with 500 genes: about 50 %; with 18,000 genes: about 93 %).

    Parameters
    ----------
    n_spots
        Number of spots (or bins).
    n_genes
        Number of genes.
    platform
        Spot layout. ``"visium"``: hexagonal grid with Visium's array convention (same-row
        neighbours differ by 2 in ``array_col``, ``array_row + array_col`` even) and
        ``obsm['spatial']`` in pixel-like units (neighbouring spots 100 apart). ``"st"``: square
        grid of spacing 1, ``obsm['spatial']`` = (``array_col``, ``array_row``) as for the original
        ST arrays. ``"random"``: uniform random positions (density 1 per unit area), no array
        columns. Grids are filled row by row in a near-square patch.
    n_domains
        Number of tissue domains.
    rank
        Number of latent factors of the rate.
    depth
        Mean library size (expected UMIs per spot). ``None``: ``0.25 * n_genes``, the density of a
        Visium sample (125 at 500 genes, 4,500 at 18,000 genes). Visium HD 8 um bins hold a few
        hundred UMIs.
    dispersion
        Negative binomial overdispersion ``phi`` (variance ``mu + phi * mu**2``); 0 for Poisson.
    library_sd
        Standard deviation of the log library size.
    gene_sd
        Standard deviation of the log gene scale.
    gene_shape
        Gamma shape of the gene loadings.
    domain_sd
        Standard deviation of the domain profiles (log scale): how distinct domains are.
    field_sd
        Weight of the smooth spatial fields (log scale): variation within domains.
    lengthscale
        Width of the smooth fields, as a fraction of the tissue's largest side.
    seed
        Random seed; the same seed gives the same data whatever ``chunk_size``.
    truth
        Store the dense rate in ``layers['truth']``. ``None`` stores it when
        ``n_spots * n_genes <= 5e7``.
    chunk_size
        Spots generated at a time (rounded up to a multiple of 256). Working memory is about
        ``(4 * chunk_size + 5000) * n_genes`` bytes on top of the output (8 bytes per non-zero).
    progress
        Show a progress bar.

    Returns
    -------
    An :class:`~anndata.AnnData` of ``n_spots x n_genes`` with

    ``X``
        Counts, CSR float32 (whole numbers).
    ``layers['truth']``
        The rate ``mu`` (expected counts), dense float32, when stored (see ``truth``).
    ``obsm['spatial']``
        Spot positions, float64.
    ``obs['array_row']``, ``obs['array_col']``
        Grid positions (not for ``platform="random"``).
    ``obs['domain']``, ``obs['label']``
        The domain of each spot (categorical ``domain_0``, ...; ``label`` is the same, for the
        benchmark's domain protocol).
    ``obs['library_size']``
        ``l_i`` (float32).
    ``obsm['truth_factors']``
        Normalised spot factors ``F_ik / sum_h sum_k F_ik L_hk`` (float32, ``n_spots x rank``).
    ``varm['truth_loadings']``
        Gene loadings ``L`` (float32, ``n_genes x rank``); the rate of any chunk of spots is
        ``library_size[:, None] * truth_factors @ truth_loadings.T``.
    ``uns['synthetic']``
        The parameters; ``uns['dataset']``: name and description.

    Examples
    --------
    >>> import spotfill
    >>> adata = spotfill.datasets.synthetic(500, 200, platform="st", seed=1)
    >>> adata.layers["truth"].shape
    (500, 200)
    """
    if depth is None:
        depth = DEPTH_PER_GENE * n_genes
    _check_options(n_spots, n_genes, platform, n_domains, rank, depth, dispersion, chunk_size, locals())
    t0 = time.perf_counter()
    param_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(param_seq)

    coords, grid = _layout(n_spots, platform, rng)
    z = _normalise(coords)
    domain, centres = _domains(z, n_domains, rng)
    profiles = rng.normal(0.0, domain_sd, size=(n_domains, rank))
    log_f = _smooth_field(z, rank, lengthscale, rng)
    log_f *= field_sd
    log_f += profiles[domain]
    factors = np.exp(log_f - log_f.max(axis=1, keepdims=True))  # row scale cancels below
    del log_f
    gene_scale = np.exp(rng.normal(0.0, gene_sd, size=n_genes))
    loadings = (gene_scale[:, None] * rng.gamma(gene_shape, 1.0, size=(n_genes, rank))).astype(np.float32)
    factors /= (factors @ loadings.sum(axis=0, dtype=np.float64))[:, None]
    factors = factors.astype(np.float32)
    library = (depth * np.exp(rng.normal(-(library_sd**2) / 2, library_sd, size=n_spots))).astype(np.float32)

    store_truth = n_spots * n_genes <= TRUTH_MAX_ENTRIES if truth is None else bool(truth)
    X, rate = _sample_counts(
        factors,
        loadings,
        library,
        dispersion=dispersion,
        noise_seq=noise_seq,
        chunk_size=chunk_size,
        store_truth=store_truth,
        show_progress=progress,
    )

    names = [f"domain_{k}" for k in range(n_domains)]
    labels = pd.Categorical.from_codes(domain, categories=names)
    obs = pd.DataFrame(index=pd.Index([f"spot_{i}" for i in range(n_spots)]))
    if grid is not None:
        obs["array_row"], obs["array_col"] = grid[:, 0], grid[:, 1]
    obs["domain"] = labels
    obs["label"] = labels.copy()
    obs["library_size"] = library
    var = pd.DataFrame(index=pd.Index([f"gene_{g}" for g in range(n_genes)]))
    adata = AnnData(X=X, obs=obs, var=var)
    if rate is not None:
        adata.layers["truth"] = rate
    adata.obsm["spatial"] = coords
    adata.obsm["truth_factors"] = factors
    adata.varm["truth_loadings"] = loadings
    adata.uns["synthetic"] = {
        "n_spots": n_spots,
        "n_genes": n_genes,
        "platform": platform,
        "n_domains": n_domains,
        "rank": rank,
        "depth": float(depth),
        "dispersion": float(dispersion),
        "library_sd": float(library_sd),
        "gene_sd": float(gene_sd),
        "gene_shape": float(gene_shape),
        "domain_sd": float(domain_sd),
        "field_sd": float(field_sd),
        "lengthscale": float(lengthscale),
        "seed": int(seed),
        "rng_block": RNG_BLOCK,
        "domain_centres": centres,
        "rate": "library_size[:, None] * truth_factors @ truth_loadings.T",
    }
    adata.uns["dataset"] = {
        "name": f"synthetic_{platform}_{n_spots}x{n_genes}_seed{seed}",
        "description": "spotfill.datasets.synthetic: negative binomial counts around a known spatial low-rank rate",
    }
    logger.info(
        "simulated %d x %d (%s): %.1f %% zeros in %.1f s",
        n_spots,
        n_genes,
        platform,
        100.0 * (1.0 - X.nnz / (n_spots * n_genes)),
        time.perf_counter() - t0,
    )
    return adata


def _check_options(
    n_spots: int,
    n_genes: int,
    platform: str,
    n_domains: int,
    rank: int,
    depth: float,
    dispersion: float,
    chunk_size: int,
    options: dict,
) -> None:
    for name, value in (("n_spots", n_spots), ("n_genes", n_genes), ("rank", rank), ("chunk_size", chunk_size)):
        if not is_int(value) or value < 1:
            msg = f"{name} must be a positive integer, got {value!r}."
            raise InputError(msg)
    check_seed(options["seed"])
    if platform not in get_args(Platform):
        msg = f"platform must be one of {get_args(Platform)}, got {platform!r}."
        raise InputError(msg)
    if not is_int(n_domains) or not 1 <= n_domains <= n_spots:
        msg = f"n_domains must be an integer between 1 and n_spots ({n_spots}), got {n_domains!r}."
        raise InputError(msg)
    if not (is_number(depth) and depth > 0):
        msg = f"depth (the mean library size) must be a positive finite number, got {depth!r}."
        raise InputError(msg)
    if not (is_number(dispersion) and dispersion >= 0):
        msg = f"dispersion must be a finite number >= 0 (0 gives Poisson counts), got {dispersion!r}."
        raise InputError(msg)
    for name in ("library_sd", "gene_sd", "domain_sd", "field_sd"):
        if not (is_number(options[name]) and options[name] >= 0):
            msg = f"{name} must be a finite number >= 0, got {options[name]!r}."
            raise InputError(msg)
    for name in ("gene_shape", "lengthscale"):
        if not (is_number(options[name]) and options[name] > 0):
            msg = f"{name} must be a positive finite number, got {options[name]!r}."
            raise InputError(msg)


def _layout(n: int, platform: Platform, rng: Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Spot positions ``(n, 2)`` and, for grids, integer ``(array_row, array_col)`` pairs."""
    i = np.arange(n, dtype=np.int64)
    if platform == "random":
        side = math.sqrt(n)
        return rng.uniform(0.0, side, size=(n, 2)), None
    if platform == "visium":
        # rows are sqrt(3)/2 pitches apart: this many spots per row makes a near-square patch
        per_row = max(1, math.ceil(math.sqrt(n * math.sqrt(3) / 2)))
        row = i // per_row
        col = 2 * (i % per_row) + row % 2
        half = _VISIUM_PITCH / 2
        coords = np.column_stack([col * half, row * half * math.sqrt(3)])
    else:
        per_row = max(1, math.ceil(math.sqrt(n)))
        row, col = i // per_row, i % per_row
        coords = np.column_stack([col, row]).astype(np.float64)
    return coords, np.column_stack([row, col])


def _normalise(coords: np.ndarray) -> np.ndarray:
    """Shift to the origin and scale so that the tissue's largest side is 1."""
    z = coords - coords.min(axis=0)
    side = float(z.max()) if z.size else 0.0
    return z / side if side > 0 else z


def _domains(z: np.ndarray, n_domains: int, rng: Generator, n_tries: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi cells of ``n_domains`` spots, the best separated of a few random draws."""
    best, best_gap = None, -1.0
    for _ in range(n_tries):
        centres = z[rng.choice(z.shape[0], size=n_domains, replace=False)]
        gap = cKDTree(centres).query(centres, k=2)[0][:, 1].min() if n_domains > 1 else 0.0
        if gap > best_gap:
            best, best_gap = centres, gap
    # the first draw always replaces None: n_tries >= 1 and its gap (a distance, or 0.0) is > -1
    assert best is not None
    domain = cKDTree(best).query(z)[1].astype(np.int64)
    return domain, best


def _smooth_field(z: np.ndarray, n_out: int, lengthscale: float, rng: Generator) -> np.ndarray:
    """``n_out`` smooth unit-variance random fields at positions ``z`` (random Fourier features)."""
    W = rng.normal(0.0, 1.0 / lengthscale, size=(z.shape[1], _N_FOURIER))
    b = rng.uniform(0.0, 2.0 * np.pi, size=_N_FOURIER)
    A = rng.normal(size=(_N_FOURIER, n_out)) * math.sqrt(2.0 / _N_FOURIER)
    out = np.empty((z.shape[0], n_out))
    step = 65_536
    for start in range(0, z.shape[0], step):
        out[start : start + step] = np.cos(z[start : start + step] @ W + b) @ A
    return out


def _sample_counts(
    factors: np.ndarray,
    loadings: np.ndarray,
    library: np.ndarray,
    *,
    dispersion: float,
    noise_seq: np.random.SeedSequence,
    chunk_size: int,
    store_truth: bool,
    show_progress: bool,
) -> tuple[sp.csr_matrix, np.ndarray | None]:
    """Draw the counts chunk by chunk into CSR; return them and the dense rate when asked."""
    n, n_genes = factors.shape[0], loadings.shape[0]
    n_blocks = math.ceil(n / RNG_BLOCK)
    block_seqs = noise_seq.spawn(n_blocks)
    chunk = RNG_BLOCK * max(1, math.ceil(chunk_size / RNG_BLOCK))
    rate = np.empty((n, n_genes), dtype=np.float32) if store_truth else None
    out = _GrowingCSR(n, n_genes)
    loadings_t = np.ascontiguousarray(loadings.T)
    starts = range(0, n, chunk)
    for start in _progress(starts, enabled=show_progress, desc="synthetic", unit="chunk"):
        stop = min(start + chunk, n)
        # the rates go straight into the stored truth when there is one (no chunk-sized copy)
        mu = rate[start:stop] if rate is not None else np.empty((stop - start, n_genes), dtype=np.float32)
        for b0 in range(start, stop, RNG_BLOCK):
            b1 = min(b0 + RNG_BLOCK, stop)
            # one product per block of RNG_BLOCK spots, whatever the chunk: BLAS may round a row differently
            # when it is part of a larger product, and the data must not depend on chunk_size
            block = mu[b0 - start : b1 - start]
            np.matmul(factors[b0:b1], loadings_t, out=block)
            block *= library[b0:b1, None]
            block_rng = np.random.default_rng(block_seqs[b0 // RNG_BLOCK])
            out.append(b0, b1 - b0, *_sample_nb(block, dispersion, block_rng))
        del mu
    return out.to_csr(), rate


class _GrowingCSR:
    """CSR arrays filled block by block into buffers that grow ahead of need.

    Buffers are sized from the running number of non-zeros per spot with 50 % headroom; pages never
    written are never resident, so memory is about 8 bytes per non-zero (no concatenation at the end).
    """

    def __init__(self, n_rows: int, n_cols: int) -> None:
        self.n_rows, self.n_cols = n_rows, n_cols
        self.row_nnz = np.zeros(n_rows, dtype=np.int64)
        self.nnz = 0
        self.data = np.empty(0, dtype=np.float32)
        self.indices = np.empty(0, dtype=np.int32)

    def append(self, first_row: int, n_block: int, data: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        """Add the non-zeros of rows ``first_row:first_row + n_block`` (``rows`` counted from 0)."""
        self.row_nnz[first_row : first_row + n_block] = np.bincount(rows, minlength=n_block)
        end = self.nnz + data.size
        if end > self.data.size:
            self._grow(max(end, math.ceil(1.5 * end * self.n_rows / (first_row + n_block))))
        self.data[self.nnz : end] = data
        self.indices[self.nnz : end] = cols
        self.nnz = end

    def _grow(self, capacity: int) -> None:
        for name in ("data", "indices"):
            old = getattr(self, name)
            new = np.empty(capacity, dtype=old.dtype)
            new[: self.nnz] = old[: self.nnz]
            setattr(self, name, new)

    def to_csr(self) -> sp.csr_matrix:
        nnz = self.nnz
        index_dtype = np.int32 if nnz < np.iinfo(np.int32).max else np.int64
        indptr = np.zeros(self.n_rows + 1, dtype=index_dtype)
        np.cumsum(self.row_nnz, out=indptr[1:])
        return sp.csr_matrix((self.data[:nnz], self.indices[:nnz], indptr), shape=(self.n_rows, self.n_cols))


def _sample_nb(mu: np.ndarray, dispersion: float, rng: Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Negative binomial (or Poisson) counts of mean ``mu`` (block x genes), as CSR-ordered triplets.

    One uniform per entry decides zero / non-zero against ``P(x = 0)``; the value of a non-zero is
    the inverse CDF at the same uniform, found by stepping through the probability mass function.
    Entries of large mean (few) are drawn as gamma-Poisson mixtures directly. Both are exact.
    """
    n_genes = mu.shape[1]
    u = rng.random(mu.shape, dtype=np.float32)
    if dispersion > 0:
        r = np.float32(1.0 / dispersion)
        p0 = np.log1p(mu / r)
        p0 *= -r
        np.exp(p0, out=p0)
    else:
        p0 = np.exp(-mu)
    direct = mu > _DIRECT_MEAN
    nonzero = u >= p0
    nonzero &= ~direct
    del p0
    counts = np.zeros(mu.shape, dtype=np.float32).ravel()
    flat_mu, flat_u = mu.ravel(), u.ravel()
    idx = np.flatnonzero(nonzero)
    counts[idx] = _invert_cdf(flat_u[idx], flat_mu[idx], dispersion)
    idx = np.flatnonzero(direct)
    if idx.size:
        lam = flat_mu[idx].astype(np.float64)
        if dispersion > 0:
            lam *= rng.gamma(1.0 / dispersion, dispersion, size=idx.size)
        counts[idx] = rng.poisson(lam)
    idx = np.flatnonzero(counts)
    rows = idx // n_genes
    cols = (idx - rows * n_genes).astype(np.int32)
    return counts[idx], rows, cols


def _invert_cdf(u: np.ndarray, mu: np.ndarray, dispersion: float) -> np.ndarray:
    """Smallest ``k >= 1`` with ``u < CDF(k)`` for NB(mu, dispersion) (Poisson when 0), vectorised."""
    u = u.astype(np.float64)
    mu = mu.astype(np.float64)
    out = np.empty(u.size, dtype=np.float32)
    if dispersion > 0:
        r = 1.0 / dispersion
        q = mu / (mu + r)  # P(k) = P(k-1) * (k - 1 + r) / k * q
        pk = np.exp(-r * np.log1p(mu / r))
    else:
        r = None
        q = mu  # Poisson: P(k) = P(k-1) * mu / k
        pk = np.exp(-mu)
    cdf = pk.copy()
    active = np.arange(u.size)
    k = 0
    while active.size:
        k += 1
        pk *= q * ((k - 1 + r) / k if r is not None else 1.0 / k)
        cdf += pk
        done = u < cdf
        out[active[done]] = k
        keep = ~done
        if not keep.any():
            break
        if keep.sum() < keep.size:
            active, u, q, pk, cdf = active[keep], u[keep], q[keep], pk[keep], cdf[keep]
        if k >= 100_000:  # unreachable in practice (the CDF reaches 1); never loop forever
            out[active] = k
            break
    return out
