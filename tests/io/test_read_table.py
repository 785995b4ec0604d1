"""Generic CSV/TSV count tables with a coordinates table, and format auto-detection."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import spotfill
from spotfill import InputError, SpotfillWarning
from spotfill.io import detect_format, read, write

COUNTS = np.array([[1, 0, 2], [0, 3, 0], [4, 0, 1]])
SPOTS = ["s1", "s2", "s3"]
GENES = ["G1", "G2", "G3"]


def write_counts(path: Path, *, sep: str = ",", transpose: bool = False, corner: bool = True) -> Path:
    values, rows, cols = (COUNTS.T, GENES, SPOTS) if transpose else (COUNTS, SPOTS, GENES)
    head = ([""] if corner else []) + cols
    lines = [sep.join(head)] + [sep.join([r, *map(str, v)]) for r, v in zip(rows, values, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_coords(path: Path, rows: list[str] | None = None, *, grid: bool = False) -> Path:
    rows = SPOTS if rows is None else rows
    xy = {"s1": (0.5, 1.0), "s2": (1.5, 1.0), "s3": (0.5, 2.0)}
    head = "spot,x,y" + (",array_row,array_col" if grid else "")
    body = [f"{s},{xy[s][0]},{xy[s][1]}" + (f",{int(xy[s][1])},{int(xy[s][0] + 0.5)}" if grid else "") for s in rows]
    path.write_text("\n".join([head, *body]) + "\n")
    return path


@pytest.mark.parametrize(("name", "sep"), [("counts.csv", ","), ("counts.tsv", "\t"), ("counts.txt", "\t")])
@pytest.mark.parametrize("corner", [True, False], ids=["corner", "R-style-header"])
def test_generic_table_with_coords(tmp_path, name, sep, corner):
    path = write_counts(tmp_path / name, sep=sep, corner=corner)
    coords = write_coords(tmp_path / "coords.csv", grid=True)
    adata = read(path, coords=coords)
    assert adata.uns["spotfill_io"]["format"] == "table"
    assert adata.obs_names.tolist() == SPOTS
    assert adata.var_names.tolist() == GENES
    assert sp.issparse(adata.X)
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS)
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0.5, 1.0], [1.5, 1.0], [0.5, 2.0]])
    assert adata.obs["array_row"].tolist() == [1, 1, 2]
    assert adata.obs["array_col"].tolist() == [1, 2, 1]


def test_transposed_table(tmp_path):
    path = write_counts(tmp_path / "genes_by_spots.csv", transpose=True)
    adata = read(path, transpose=True, coords=write_coords(tmp_path / "c.csv"))
    assert adata.obs_names.tolist() == SPOTS
    assert adata.var_names.tolist() == GENES
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS)


def test_spots_without_coordinates_are_dropped(tmp_path):
    path = write_counts(tmp_path / "counts.csv")
    with pytest.warns(SpotfillWarning, match="1 of 3 spots have no coordinates"):
        adata = read(path, coords=write_coords(tmp_path / "c.csv", ["s3", "s1"]))
    assert adata.obs_names.tolist() == ["s1", "s3"]
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0.5, 1.0], [0.5, 2.0]])
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS[[0, 2]])


def test_coords_without_common_spots(tmp_path):
    path = write_counts(tmp_path / "counts.csv", transpose=True)  # forgot transpose=True
    with pytest.raises(spotfill.InputError, match="no spot of the count table is in .*use transpose=True"):
        read(path, coords=write_coords(tmp_path / "c.csv"))


def test_coords_missing_y_column(tmp_path):
    path = write_counts(tmp_path / "counts.csv")
    (tmp_path / "c.csv").write_text("spot,x,z\ns1,1,1\n")
    with pytest.raises(spotfill.InputError, match="has no column 'y'"):
        read(path, coords=tmp_path / "c.csv")


def test_h5ad_with_coords_table(tmp_path):
    adata = ad.AnnData(sp.csr_matrix(COUNTS.astype(np.float32)))
    adata.obs_names, adata.var_names = SPOTS, GENES
    adata.write_h5ad(tmp_path / "x.h5ad")
    out = read(tmp_path / "x.h5ad", coords=write_coords(tmp_path / "c.csv"))
    np.testing.assert_array_equal(out.obsm["spatial"][:, 1], [1.0, 1.0, 2.0])
    assert out.uns["spotfill_io"]["coords"] == str((tmp_path / "c.csv").resolve())


def test_h5ad_read_as_stored(tmp_path):
    adata = ad.AnnData(sp.csr_matrix(COUNTS.astype(np.float32)))
    adata.obs_names, adata.var_names = SPOTS, GENES
    adata.obsm["spatial"] = np.arange(6, dtype=float).reshape(3, 2)
    adata.obs["label"] = ["a", "b", "a"]
    adata.write_h5ad(tmp_path / "x.h5ad")
    out = read(tmp_path / "x.h5ad")
    assert out.uns["spotfill_io"] == {"format": "h5ad", "path": str((tmp_path / "x.h5ad").resolve())}
    np.testing.assert_array_equal(out.X.toarray(), COUNTS)
    np.testing.assert_array_equal(out.obsm["spatial"], adata.obsm["spatial"])
    assert out.obs["label"].tolist() == ["a", "b", "a"]


def test_detect_format(tmp_path):
    st = tmp_path / "A1.tsv"
    st.write_text("\tG\n1x2\t3\n")
    generic = write_counts(tmp_path / "counts.csv")
    (tmp_path / "x.h5ad").touch()
    assert detect_format(st) == "st"
    assert detect_format(st, coords="c.csv") == "table"  # coords= means a generic table
    assert detect_format(generic) == "table"
    assert detect_format(tmp_path / "x.h5ad") == "h5ad"
    with pytest.raises(spotfill.InputError, match="cannot detect the format of .*; supported: .h5ad files"):
        detect_format(tmp_path)


def test_option_misuse(tmp_path):
    st = tmp_path / "A1.tsv"
    st.write_text("\tG\n1x2\t3\n")
    h5ad = tmp_path / "x.h5ad"
    ad.AnnData(np.ones((2, 2), dtype=np.float32)).write_h5ad(h5ad)
    with pytest.raises(
        spotfill.InputError, match=r"transpose=True \(--transpose\) applies to count tables \(generic or ST\) only"
    ):
        read(h5ad, transpose=True)
    with pytest.raises(spotfill.InputError, match="has no spot coordinates"):  # header "G": a generic table
        read(st, transpose=True)
    with pytest.raises(spotfill.InputError, match=r"unknown option\(s\) \['genome'\] for format 'st'; accepted: none"):
        read(st, genome="x")
    with pytest.raises(spotfill.InputError, match="unknown format 'loom'"):
        read(st, format="loom")


def test_quoted_gene_names_with_the_delimiter_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "counts.csv"
    lines = ['"","G1","HLA-A, B","G3"', *[",".join([s, *map(str, v)]) for s, v in zip(SPOTS, COUNTS, strict=True)]]
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    coords = write_coords(tmp_path / "c.csv")
    coords.write_bytes(b"\xef\xbb\xbf" + coords.read_bytes())
    adata = read(path, coords=coords)
    assert adata.var_names.tolist() == ["G1", "HLA-A, B", "G3"]
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS)
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0.5, 1.0], [1.5, 1.0], [0.5, 2.0]])


def test_slide_seq_bead_locations(tmp_path):
    """Slide-seq: a genes x beads count table and BeadLocationsForR.csv (barcodes, xcoord, ycoord)."""
    path = write_counts(tmp_path / "MappedDGEForR.csv", transpose=True)
    beads = tmp_path / "BeadLocationsForR.csv"
    beads.write_text("barcodes,xcoord,ycoord\ns1,10.5,3.0\ns2,11.0,4.5\ns3,12.0,3.5\n")
    adata = read(path, transpose=True, coords=beads)
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS)
    np.testing.assert_array_equal(adata.obsm["spatial"], [[10.5, 3.0], [11.0, 4.5], [12.0, 3.5]])


def test_names_that_pandas_reads_as_missing_stay_names(tmp_path):
    """R and Excel write genes and spots such as NA or NULL as text: they are names, not missing values."""
    counts = tmp_path / "na.csv"
    counts.write_text(",G1,NA,None\nNA,1,0,2\nNULL,0,3,NA\ns3,4,0,1\n")
    coords = tmp_path / "xy.csv"
    coords.write_text("spot,x,y\nNA,0.5,1.0\nNULL,1.5,1.0\ns3,0.5,2.0\n")
    with pytest.raises(spotfill.InputError, match="NaN"):  # a value written NA is still missing
        read(counts, coords=coords)
    counts.write_text(",G1,NA,None\nNA,1,0,2\nNULL,0,3,0\ns3,4,0,1\n")
    a = read(counts, coords=coords)
    assert list(a.obs_names) == ["NA", "NULL", "s3"]
    assert list(a.var_names) == ["G1", "NA", "None"]
    np.testing.assert_array_equal(a.X.toarray(), [[1, 0, 2], [0, 3, 0], [4, 0, 1]])
    np.testing.assert_array_equal(a.obsm["spatial"], [[0.5, 1.0], [1.5, 1.0], [0.5, 2.0]])


def test_a_truncated_compressed_table_is_a_clear_error(tmp_path):
    import gzip

    rng = np.random.default_rng(0)
    lines = [",".join(["", *[f"G{j}" for j in range(200)]])]
    lines += [",".join([f"s{i}", *map(str, rng.poisson(1.0, 200))]) for i in range(400)]
    full = gzip.compress(("\n".join(lines) + "\n").encode())
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(full[: len(full) // 2])  # a partial download
    write_coords(tmp_path / "xy.csv")
    with pytest.raises(spotfill.InputError, match="truncated or corrupt file"):
        read(cut, coords=tmp_path / "xy.csv")


def test_a_table_that_is_not_utf8_says_so(tmp_path):
    counts = tmp_path / "latin1.csv"
    rows = [",G1,G2"] + [f"s{i},1,2" for i in range(3000)] + ["s\xe9,1,2"]  # a Latin-1 name after pandas' buffer
    counts.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    write_coords(tmp_path / "xy.csv")
    with pytest.raises(spotfill.InputError, match="is not UTF-8 text .*save it again as UTF-8"):
        read(counts, coords=tmp_path / "xy.csv")


def _h5ad(path, uns=None):
    adata = ad.AnnData(sp.csr_matrix(np.array([[1, 0], [2, 3]], dtype=np.float32)))
    adata.obs_names = ["s1", "s2"]
    adata.var_names = ["G1", "G2"]
    adata.obsm["spatial"] = np.array([[0.0, 0.0], [1.0, 0.0]])
    if uns is not None:
        adata.uns["spotfill_io"] = uns
    adata.write_h5ad(path)
    return path


def test_h5ad_read_records_itself_not_the_provenance_stored_in_it(tmp_path):
    # an .h5ad written after reading a table keeps that table's uns['spotfill_io']; reading the .h5ad
    # must describe the .h5ad, else write() protects the old table and not the file just read
    old = tmp_path / "old_counts.csv"
    old.write_text("x\n")
    path = _h5ad(tmp_path / "data.h5ad", uns={"format": "table", "path": str(old)})
    adata = read(path)
    assert adata.uns["spotfill_io"] == {"format": "h5ad", "path": str(path.resolve())}
    with pytest.raises(InputError, match="read from"):
        write(adata, path, overwrite=True)
    write(adata, old, overwrite=True)  # the old table is no input of this data


def test_selection_is_refused_for_formats_other_than_st(tmp_path):
    path = _h5ad(tmp_path / "data.h5ad")
    with pytest.raises(InputError, match="applies to ST count tables only"):
        read(path, selection=tmp_path / "x_selection.tsv")


def test_one_column_tsv_without_separator_in_its_header_is_tab_separated(tmp_path):
    # the header "G1" holds no delimiter: the .tsv suffix decides it (a comma would leave "s1\t4" one field)
    path = tmp_path / "one_gene.tsv"
    path.write_text("G1\ns1\t4\ns2\t0\n")
    coords = tmp_path / "coords.csv"
    coords.write_text("spot,x,y\ns1,0,0\ns2,1,0\n")
    adata = read(path, coords=coords)
    assert adata.var_names.tolist() == ["G1"]
    assert adata.obs_names.tolist() == ["s1", "s2"]
    np.testing.assert_array_equal(adata.X.toarray(), [[4], [0]])


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("spot,x,y\ns1,0,0\ns2,1,0\ns1,5,5\n", "twice"),  # a spot listed twice
        ("spot,x,y,array_row,array_col\ns1,0,0,0,0\ns2,1,0,0.5,1\n", "whole numbers"),  # a fractional grid position
    ],
)
def test_bad_coordinate_tables_are_refused(tmp_path, table, message):
    counts = tmp_path / "counts.csv"
    counts.write_text(",G1\ns1,1\ns2,2\n")
    coords = tmp_path / "coords.csv"
    coords.write_text(table)
    with pytest.raises(InputError, match=message):
        read(counts, coords=coords)
