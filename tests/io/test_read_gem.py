"""Stereo-seq GEM files: DNBs binned into square spots, checked against a hand-binned matrix."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import spotfill
from spotfill import InputError
from spotfill.io import read

GEM = """#FileFormat=GEMv0.1
#SortedBy=None
#OffsetX=0
#OffsetY=0
geneID\tx\ty\tMIDCount
A\t0\t0\t1
A\t3\t1\t2
B\t5\t0\t1
B\t4\t7\t4
A\t9\t9\t1
"""
# bin_size 4: bin (0,0) A = 1 + 2; (1,0) B = 1; (1,1) B = 4; (2,2) A = 1
EXPECTED = np.array([[3, 0], [0, 1], [0, 4], [1, 0]], dtype=np.float32)


def test_gem_is_binned_by_hand(tmp_path):
    path = tmp_path / "sample.gem"
    path.write_text(GEM)
    adata = read(path, bin_size=4)
    assert adata.uns["spotfill_io"]["format"] == "gem"
    assert adata.obs_names.tolist() == ["0_0", "1_0", "1_1", "2_2"]
    assert adata.var_names.tolist() == ["A", "B"]
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED)
    np.testing.assert_array_equal(adata.obsm["spatial"], [[2, 2], [6, 2], [6, 6], [10, 10]])  # bin centres, DNBs
    assert adata.obs["array_col"].tolist() == [0, 1, 1, 2]
    assert adata.obs["array_row"].tolist() == [0, 0, 1, 2]
    one = read(path, bin_size=1)  # every DNB its own spot
    assert one.n_obs == 5
    assert one.X.sum() == 9


def test_gzipped_chunked_and_other_column_names_give_the_same(tmp_path, monkeypatch):
    import spotfill.io._gem as gem

    text = GEM.replace("MIDCount", "MIDCounts").replace("geneID\tx", "geneID\tgeneName\tx")
    text = "\n".join(
        line if line.startswith(("#", "geneID")) else line.replace("\t", f"\t{line.split()[0].lower()}_name\t", 1)
        for line in text.splitlines()
    )
    path = tmp_path / "sample.gem.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(text + "\n")
    monkeypatch.setattr(gem, "_CHUNK_ROWS", 2)  # the same (bin, gene) split over chunks is summed
    adata = read(path, bin_size=4)
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED)
    assert adata.var["gene_name"].tolist() == ["a_name", "b_name"]
    assert adata.uns["spotfill_io"]["count_column"] == "MIDCounts"


def test_gem_errors(tmp_path):
    path = tmp_path / "bad.gem"
    path.write_text("geneID\tx\ty\n" + "A\t0\t0\n")
    with pytest.raises(InputError, match="columns \\['MIDCount'\\] missing"):
        read(path)
    path.write_text(GEM)
    with pytest.raises(InputError, match="bin_size must be a positive integer"):
        read(path, bin_size=0)
    path.write_text(GEM.replace("A\t9\t9\t1", "A\t9.5\t9\t1"))
    with pytest.raises(InputError, match="x and y must be integers"):
        read(path)
    with pytest.raises(InputError, match="unknown option"):
        read(path, format="table", bin_size=4)  # bin_size is an option of GEM files only


def test_gem_through_impute_and_the_command_line(tmp_path, capsys):
    from spotfill.cli import main

    rng = np.random.default_rng(0)
    lines = ["geneID\tx\ty\tMIDCount"]
    for x in range(0, 40):
        for y in range(0, 40):
            for gene in ("A", "B", "C"):
                n = rng.poisson(0.3)
                if n:
                    lines.append(f"{gene}\t{x}\t{y}\t{n}")
    path = tmp_path / "chip.gem"
    path.write_text("\n".join(lines) + "\n")
    adata = read(path, bin_size=5)  # an 8 x 8 square grid of bins
    spotfill.impute(adata, "spatial_knn", use_graph=True)
    assert adata.uns["spatial_neighbors"]["params"]["lattice"] == "square"
    assert adata.layers["imputed_spatial_knn"].shape == (64, 3)
    assert main(["info", str(path), "--bin-size", "5"]) == 0
    assert "spots x genes: 64 x 3" in capsys.readouterr().out


def test_gem_edge_cases(tmp_path):
    path = tmp_path / "edge.gem"
    # a byte-order mark, a blank line after the header, gene ids pandas would read as missing
    path.write_text("\ufeff#FileFormat=GEMv0.1\n\ngeneID\tx\ty\tMIDCount\nNA\t0\t0\t1\nNone\t1\t1\t2\n")
    adata = read(path, bin_size=2)
    assert adata.var_names.tolist() == ["NA", "None"]  # gene ids, not missing values
    np.testing.assert_array_equal(adata.X.toarray(), [[1, 2]])
    path.write_text("geneID\tx\ty\tMIDCount\n")
    with pytest.raises(InputError, match="holds no counts"):
        read(path)
    path.write_text("geneID\tx\ty\tMIDCount\nA\t0\t0\t5\nA\t1\t1\t-1\n")  # would sum to 4 within the bin
    with pytest.raises(InputError, match="negative or non-finite"):
        read(path)
    gz = tmp_path / "cut.gem.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(GEM * 200)
    gz.write_bytes(gz.read_bytes()[:-20])  # an interrupted copy
    with pytest.raises(InputError, match="truncated or corrupt"):
        read(gz)


def test_gem_grid_positions_count_from_the_first_occupied_bin(tmp_path):
    path = tmp_path / "offset.gem"
    # bin_size 50: x 120 and 170 are bins 2 and 3, y 260 and 310 bins 5 and 6
    path.write_text("geneID\tx\ty\tMIDCount\nA\t120\t260\t1\nA\t170\t310\t2\n")
    adata = read(path, bin_size=50)
    assert adata.obs_names.tolist() == ["2_5", "3_6"]
    assert adata.obs["array_col"].tolist() == [0, 1]
    assert adata.obs["array_row"].tolist() == [0, 1]
    np.testing.assert_array_equal(adata.obsm["spatial"], [[125.0, 275.0], [175.0, 325.0]])
