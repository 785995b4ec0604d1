"""spotfill.spatial_neighbors on AnnData: squidpy keys, distances, sections, h5ad, real data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import spotfill
from spotfill import InputError
from spotfill.graph import get_graph, knn_graph, lattice_graph, neighbor_counts, spatial_neighbors

HEX_PITCH = 100.0  # centre-to-centre distance of adjacent Visium spots in the fake image


def make_hex_adata(n_rows: int = 6, n_cols: int = 12) -> ad.AnnData:
    """Visium-like grid: pixel x = col * pitch / 2, y = row * pitch * sqrt(3) / 2."""
    r, c = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    keep = (r + c).ravel() % 2 == 0
    r, c = r.ravel()[keep], c.ravel()[keep]
    xy = np.column_stack([c * HEX_PITCH / 2, r * HEX_PITCH * np.sqrt(3) / 2])
    adata = ad.AnnData(
        X=sp.csr_matrix(np.ones((r.size, 3), dtype=np.float32)),
        obs=pd.DataFrame({"array_row": r, "array_col": c}, index=[f"s{i}" for i in range(r.size)]),
    )
    adata.obsm["spatial"] = xy
    return adata


def make_square_adata(n: int = 4) -> ad.AnnData:
    r, c = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    r, c = r.ravel(), c.ravel()
    adata = ad.AnnData(
        X=np.ones((r.size, 2), dtype=np.float32),
        obs=pd.DataFrame({"array_row": r, "array_col": c}, index=[f"s{i}" for i in range(r.size)]),
    )
    adata.obsm["spatial"] = np.column_stack([c * 2.0, r * 2.0])  # spacing 2 units
    return adata


def test_grid_keys_and_values():
    adata = make_hex_adata()
    assert spatial_neighbors(adata) is None
    W = adata.obsp["spatial_connectivities"]
    D = adata.obsp["spatial_distances"]
    assert sp.issparse(W)
    assert W.format == "csr"
    assert D.format == "csr"
    r, c = adata.obs["array_row"].to_numpy(), adata.obs["array_col"].to_numpy()
    assert (W != lattice_graph(r, c, lattice="hex")).nnz == 0
    np.testing.assert_array_equal(D.indices, W.indices)
    np.testing.assert_allclose(D.data, HEX_PITCH, rtol=1e-12)  # every order-1 neighbour one pitch away
    info = adata.uns["spatial_neighbors"]
    assert info["connectivities_key"] == "spatial_connectivities"
    assert info["distances_key"] == "spatial_distances"
    params = info["params"]
    assert params["coord_type"] == "grid"
    assert params["lattice"] == "hex"
    assert params["n_neighbors"] == 6
    assert params["n_rings"] == 1
    np.testing.assert_array_equal(params["ring_weights"], [1.0])


def test_grid_order2_distances_and_weights():
    adata = make_square_adata()
    spatial_neighbors(adata, n_rings=2, ring_weights=[1.0, 0.5], key_added="ring2")
    W = adata.obsp["ring2_connectivities"].toarray()
    D = adata.obsp["ring2_distances"].toarray()
    # spot 5 = (1, 1): order 1 at distance 2, order 2 diagonals at 2 sqrt(2), straight at 4
    assert W[5, 1] == 1.0
    assert D[5, 1] == pytest.approx(2.0)
    assert W[5, 0] == 0.5
    assert D[5, 0] == pytest.approx(2 * np.sqrt(2))
    assert W[5, 13] == 0.5  # (3, 1)
    assert D[5, 13] == pytest.approx(4.0)
    assert adata.uns["ring2_neighbors"]["connectivities_key"] == "ring2_connectivities"
    assert adata.uns["ring2_neighbors"]["params"]["lattice"] == "square"
    assert adata.uns["ring2_neighbors"]["params"]["n_neighbors"] == 4


def test_coord_type_defaults():
    adata = make_hex_adata()
    del adata.obs["array_row"]
    spatial_neighbors(adata, n_neighs=3)
    assert adata.uns["spatial_neighbors"]["params"]["coord_type"] == "generic"
    W = adata.obsp["spatial_connectivities"]
    assert (W != knn_graph(adata.obsm["spatial"], n_neighs=3)).nnz == 0
    assert adata.uns["spatial_neighbors"]["params"]["n_neighbors"] == 3
    # radius given -> generic even with array positions
    adata = make_hex_adata()
    spatial_neighbors(adata, radius=HEX_PITCH * 1.01)
    assert adata.uns["spatial_neighbors"]["params"]["coord_type"] == "generic"
    np.testing.assert_array_equal(adata.uns["spatial_neighbors"]["params"]["radius"], [HEX_PITCH * 1.01])
    # on the full hex grid the radius graph of one pitch equals the order-1 lattice graph
    grid = spatial_neighbors(make_hex_adata(), copy=True).obsp["spatial_connectivities"]
    assert (adata.obsp["spatial_connectivities"] != grid).nnz == 0


def test_generic_radius_interval_distances():
    adata = make_square_adata()
    spatial_neighbors(adata, coord_type="generic", radius=(2.5, 3.0))
    D = adata.obsp["spatial_distances"]
    np.testing.assert_allclose(D.data, 2 * np.sqrt(2), rtol=1e-12)  # only the diagonals survive
    np.testing.assert_array_equal(neighbor_counts(adata.obsp["spatial_connectivities"])[[0, 5]], [1, 4])


def test_copy_returns_new_object_and_leaves_input():
    adata = make_hex_adata()
    out = spatial_neighbors(adata, copy=True)
    assert isinstance(out, ad.AnnData)
    assert out is not adata
    assert "spatial_connectivities" in out.obsp
    assert "spatial_connectivities" not in adata.obsp
    assert "spatial_neighbors" not in adata.uns


def test_top_level_export():
    assert spotfill.spatial_neighbors is spatial_neighbors


def test_h5ad_round_trip(tmp_path):
    adata = make_hex_adata()
    spatial_neighbors(adata, n_rings=2, ring_weights=[1.0, 0.5])
    spatial_neighbors(adata, coord_type="generic", radius=(1.0, 150.0), library_key=None, key_added="rad")
    path = tmp_path / "g.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    for key in ("spatial_connectivities", "spatial_distances", "rad_connectivities", "rad_distances"):
        assert (back.obsp[key] != adata.obsp[key]).nnz == 0
    assert back.uns["spatial_neighbors"]["connectivities_key"] == "spatial_connectivities"
    assert back.uns["rad_neighbors"]["params"]["coord_type"] == "generic"
    np.testing.assert_array_equal(back.uns["spatial_neighbors"]["params"]["ring_weights"], [1.0, 0.5])


@pytest.mark.parametrize("coord_type", ["grid", "generic"])
def test_library_key_block_diagonal(coord_type):
    one = make_hex_adata(4, 8)
    two = make_hex_adata(4, 8)
    two.obsm["spatial"] = two.obsm["spatial"] + 10.0  # overlapping positions across sections
    adata = ad.concat({"a": one, "b": two}, label="section", index_unique="-")
    n1 = one.n_obs
    if coord_type == "grid":
        with pytest.raises(InputError, match="library_key"):
            spatial_neighbors(adata)  # same array positions twice
    spatial_neighbors(adata, coord_type=coord_type, library_key="section")
    W = adata.obsp["spatial_connectivities"]
    assert W[:n1, n1:].nnz == 0
    assert W[n1:, :n1].nnz == 0
    ref = spatial_neighbors(one, coord_type=coord_type, copy=True).obsp["spatial_connectivities"]
    assert (W[:n1, :n1] != ref).nnz == 0
    assert (W[n1:, n1:] != ref).nnz == 0
    assert adata.uns["spatial_neighbors"]["params"]["library_key"] == "section"


def test_get_graph():
    adata = make_square_adata()
    with pytest.raises(InputError, match=r"spotfill\.spatial_neighbors"):
        get_graph(adata)
    spatial_neighbors(adata)
    G = get_graph(adata)
    assert isinstance(G, sp.csr_matrix)
    assert G.dtype == np.float64
    np.testing.assert_array_equal(neighbor_counts(G)[[0, 1, 5]], [2, 3, 4])


def test_get_graph_casts_a_float32_graph():
    adata = make_square_adata()
    W = sp.random(16, 16, density=0.2, format="csr", dtype=np.float32, random_state=0)
    adata.obsp["squidpy"] = W  # squidpy's graphs are float32
    G = get_graph(adata, connectivity_key="squidpy")
    assert G.dtype == np.float64
    np.testing.assert_array_equal(G.toarray(), W.toarray())


def test_no_spots_gives_empty_graphs():
    adata = make_square_adata()[:0].copy()
    spatial_neighbors(adata)
    assert adata.obsp["spatial_connectivities"].shape == (0, 0)
    assert adata.obsp["spatial_distances"].shape == (0, 0)
    params = adata.uns["spatial_neighbors"]["params"]
    assert (params["lattice"], params["n_neighbors"]) == ("square", 4)  # no positions to recognise


def test_input_errors():
    adata = make_hex_adata()
    with pytest.raises(InputError, match=r"obsm\['xy'\] is missing"):
        spatial_neighbors(adata, spatial_key="xy")
    with pytest.raises(InputError, match="radius= applies"):
        spatial_neighbors(adata, coord_type="grid", radius=1.0)
    with pytest.raises(InputError, match="library_key='batch'"):
        spatial_neighbors(adata, library_key="batch")
    with pytest.raises(InputError, match="coord_type must be"):
        spatial_neighbors(adata, coord_type="delaunay")
    adata.obs["section"] = pd.Categorical(["a"] * (adata.n_obs - 1) + [np.nan])
    with pytest.raises(InputError, match="missing values"):
        spatial_neighbors(adata, library_key="section")
    del adata.obs["array_col"]
    with pytest.raises(InputError, match="array_row"):
        spatial_neighbors(adata, coord_type="grid")
    adata = make_hex_adata()
    adata.obs["array_row"] = adata.obs["array_row"] + 0.5
    with pytest.raises(InputError, match="whole numbers"):
        spatial_neighbors(adata)
    adata = make_square_adata()
    adata.obs["array_row"] *= 2
    adata.obs["array_col"] *= 2
    with pytest.raises(InputError, match="lattice='square'"):
        spatial_neighbors(adata)
    spatial_neighbors(adata, lattice="square", n_rings=2)  # forcing the lattice works
    np.testing.assert_array_equal(neighbor_counts(adata.obsp["spatial_connectivities"])[[0, 5]], [2, 4])


# --- real data ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "lattice", "degree", "min_share"),
    [
        ("dlpfc_151673", "hex", 6, 0.90),  # 3639 spots, 91 % with 6 order-1 neighbours
        ("mob_st_rep11", "square", 4, 0.75),  # 262 spots on a small tissue: 75.6 % with 4
    ],
)
def test_real_data_order1_degree(shared_h5ad, name, lattice, degree, min_share):
    adata = ad.read_h5ad(shared_h5ad(name))
    spatial_neighbors(adata)
    assert adata.uns["spatial_neighbors"]["params"]["lattice"] == lattice
    counts = neighbor_counts(adata.obsp["spatial_connectivities"])
    assert counts.max() == degree
    assert np.bincount(counts).argmax() == degree
    assert np.mean(counts == degree) > min_share
    # order-1 neighbours are one spot pitch apart (Visium: ~6.2 image pixels; ST: ~1 array unit)
    D = adata.obsp["spatial_distances"].data
    if lattice == "hex":
        assert D.max() / D.min() < 1.02
    else:
        assert 0.95 < np.median(D) < 1.05


def test_swapped_hex_positions_are_refused():
    adata = make_hex_adata(8, 16)
    spatial_neighbors(adata)  # the right way round: (0, ±2) and (±1, ±1) both one pitch away
    assert set(np.round(adata.obsp["spatial_distances"].data, 6)) == {HEX_PITCH}
    swapped = adata.copy()
    swapped.obs["array_row"] = adata.obs["array_col"].to_numpy()
    swapped.obs["array_col"] = adata.obs["array_row"].to_numpy()
    with pytest.raises(InputError, match=r"look swapped.*1\.73 times"):
        spatial_neighbors(swapped)
    # coordinates in array units (x = array_col, y = array_row: BayesSpace, spatialLIBD) cannot show a swap
    units = adata.copy()
    units.obsm["spatial"] = units.obs[["array_col", "array_row"]].to_numpy(dtype=float)
    spatial_neighbors(units)
    assert neighbor_counts(units.obsp["spatial_connectivities"]).max() == 6
    # an explicit lattice is checked too; a generic graph does not use the array positions
    with pytest.raises(InputError, match="look swapped"):
        spatial_neighbors(swapped, lattice="hex")
    spatial_neighbors(swapped, coord_type="generic")


def test_sections_of_20_spots_vote_and_may_disagree():
    square = make_square_adata(6)
    hexagonal = make_hex_adata(4, 10)  # 20 spots: large enough to vote
    assert hexagonal.n_obs == 20
    adata = ad.concat({"sq": square, "hex": hexagonal}, label="section", index_unique="-")
    with pytest.raises(InputError, match=r"sections disagree on the grid type \(found \['hex', 'square'\]\)"):
        spatial_neighbors(adata, library_key="section")


def test_a_tiny_section_takes_the_grid_type_of_the_others():
    big = make_square_adata(6)
    tiny = make_square_adata(2)[[0, 3]].copy()  # two diagonal spots: alone they look like a hex grid
    adata = ad.concat({"big": big, "tiny": tiny}, label="section", index_unique="-")
    spatial_neighbors(adata, library_key="section")
    assert adata.uns["spatial_neighbors"]["params"]["lattice"] == "square"
    assert neighbor_counts(adata.obsp["spatial_connectivities"])[-2:].tolist() == [0, 0]
    spatial_neighbors(tiny)
    assert tiny.uns["spatial_neighbors"]["params"]["lattice"] == "hex"
    with pytest.raises(InputError, match="could not be recognised"):
        spatial_neighbors(tiny[:1].copy())  # one spot alone has no recognisable grid
