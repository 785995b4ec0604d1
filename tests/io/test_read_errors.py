"""Every unusable input raises InputError with a message that names the problem and the fix."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from spotfill import InputError, SpotfillWarning
from spotfill.io import read


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.h5ad does not exist"):
        read(tmp_path / "nothere.h5ad")


def test_unknown_format(tmp_path):
    (tmp_path / "data.loom").write_text("x")
    with pytest.raises(InputError, match=r"cannot detect the format of .*data\.loom; supported: "):
        read(tmp_path / "data.loom")


def test_folder_that_is_not_spaceranger(tmp_path):
    with pytest.raises(InputError, match="cannot detect the format of"):
        read(tmp_path)


def test_corrupt_h5ad(tmp_path):
    (tmp_path / "bad.h5ad").write_text("not hdf5")
    with pytest.raises(InputError, match=r"cannot read .*bad\.h5ad as an \.h5ad file"):
        read(tmp_path / "bad.h5ad")


def test_h5ad_without_coordinates(tmp_path, write_h5ad):
    path = write_h5ad(tmp_path / "x.h5ad", [[1, 2]], spatial=False)
    with pytest.raises(
        InputError, match=r"has no spot coordinates \(adata.obsm\['spatial'\] is missing\): pass coords="
    ):
        read(path)
    assert read(path, validate=False).shape == (1, 2)


def test_h5ad_coordinates_elsewhere_are_hinted(tmp_path, write_h5ad):
    adata = ad.AnnData(sp.csr_matrix(np.ones((2, 2), dtype=np.float32)))
    adata.obsm["X_spatial"] = np.zeros((2, 2))
    adata.write_h5ad(tmp_path / "x.h5ad")
    with pytest.raises(InputError, match=r"adata.obsm has \['X_spatial'\]: copy the right one"):
        read(tmp_path / "x.h5ad")


def test_table_without_coordinates(tmp_path):
    (tmp_path / "c.csv").write_text(",G1\ns1,1\n")
    with pytest.raises(InputError, match="has no spot coordinates .*: pass coords= a CSV/TSV with columns spot, x, y"):
        read(tmp_path / "c.csv")


def test_nan_counts(tmp_path, write_h5ad):
    path = write_h5ad(tmp_path / "x.h5ad", [[1, np.nan], [0, 2]])
    with pytest.raises(InputError, match="contains 1 NaN or infinite values: replace them"):
        read(path)
    (tmp_path / "t.tsv").write_text("\tG1\tG2\n1x1\t1\tNA\n1x2\t0\t3\n")
    with pytest.raises(InputError, match="contains 1 NaN or infinite values"):
        read(tmp_path / "t.tsv")


def test_negative_counts(tmp_path, write_h5ad):
    path = write_h5ad(tmp_path / "x.h5ad", [[1, -2], [0, 2]])
    with pytest.raises(InputError, match=r"contains negative values \(min -2\): spotfill needs raw counts"):
        read(path)


def test_non_numeric_table(tmp_path):
    (tmp_path / "t.tsv").write_text("\tG1\tG2\n1x1\t1\tabc\n")
    with pytest.raises(InputError, match="holds non-numeric values"):
        read(tmp_path / "t.tsv")


def test_duplicate_spot_names(tmp_path, write_h5ad):
    path = write_h5ad(tmp_path / "x.h5ad", [[1, 2], [3, 4]], obs_names=["a", "a"])
    with pytest.raises(InputError, match=r"duplicate spot names \(e.g. \['a'\]\): make them unique"):
        read(path)
    # not renamed behind the user's back
    assert read(path, validate=False).obs_names.tolist() == ["a", "a"]
    (tmp_path / "t.tsv").write_text("\tG1\n1x1\t1\n1x1\t2\n")
    with pytest.raises(InputError, match=r"duplicate spot names \(e.g. \['1x1'\]\)"):
        read(tmp_path / "t.tsv")


def test_duplicate_gene_names(tmp_path, write_h5ad):
    path = write_h5ad(tmp_path / "x.h5ad", [[1, 2]], var_names=["G", "G"])
    with pytest.raises(InputError, match=r"duplicate gene names \(e.g. \['G'\]\): make them unique first"):
        read(path)
    (tmp_path / "t.tsv").write_text("\tG1\tG1\n1x1\t1\t2\n")  # pandas would rename the second to G1.1
    with pytest.raises(InputError, match=r"duplicate gene names \(e.g. \['G1'\]\)"):
        read(tmp_path / "t.tsv")


def test_empty_matrix(tmp_path, write_h5ad):
    path = write_h5ad(tmp_path / "x.h5ad", np.zeros((0, 3)))
    with pytest.raises(InputError, match=r"is empty \(shape \(0, 3\)\): load a matrix with at least one spot"):
        read(path)
    (tmp_path / "t.csv").write_text(",G1,G2\n")
    (tmp_path / "xy.csv").write_text("spot,x,y\ns1,0,0\n")
    for coords in (None, tmp_path / "xy.csv"):
        with pytest.raises(InputError, match=r"is empty \(shape \(0, 2\)\)"):
            read(tmp_path / "t.csv", coords=coords)
    (tmp_path / "blank.tsv").write_text("")
    with pytest.raises(InputError, match="is empty: a count table needs a header line"):
        read(tmp_path / "blank.tsv", format="table")


def test_non_integer_counts_are_read_and_warned_about_where_they_are_used(tmp_path, write_h5ad):
    import spotfill

    path = write_h5ad(tmp_path / "x.h5ad", [[1.5, 2], [0, 2]])
    adata = read(path)  # no warning yet: the counts a method uses may be a layer
    assert adata.X[0, 0] == pytest.approx(1.5)
    with pytest.warns(SpotfillWarning, match="adata.X holds 1 non-integer values"):
        spotfill.impute(adata, "mean")
