"""Original ST pipeline count tables, with and without the spot selection file."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import spotfill
from spotfill import InputError
from spotfill.io import read

# spots x genes; spot names are array positions "XxY"
TABLE = "\tGeneA\tGeneB\tGeneC\n10x13\t0\t6\t1\n11x13\t2\t0\t0\n10x14\t0\t0\t3\n12x15\t5\t1\t0\n"
SELECTION = (
    "x\ty\tnew_x\tnew_y\tpixel_x\tpixel_y\tselected\n"
    "10\t13\t9.85\t12.99\t1923.65\t2622.15\t1\n"
    "11\t13\t10.9\t13.01\t2140.5\t2625.0\t1\n"
    "12\t15\t12.02\t15.0\t2360.25\t3059.75\t1\n"
    "13\t13\t13.0\t13.0\t2580.0\t2630.0\t1\n"
)
COUNTS = np.array([[0, 6, 1], [2, 0, 0], [0, 0, 3], [5, 1, 0]])


def write_table(path: Path, text: str = TABLE) -> Path:
    """Write a count table; tests keep it one folder below tmp_path so that the selection search
    (table folder, parent, parent's *spot* sub-folders) never reaches other tests' folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_without_selection(tmp_path):
    path = write_table(tmp_path / "run" / "S1.tsv.gz")
    adata = read(path)
    assert adata.uns["spotfill_io"] == {"format": "st", "path": str(path.resolve()), "selection": "None"}
    assert adata.obs_names.tolist() == ["10x13", "11x13", "10x14", "12x15"]
    assert adata.var_names.tolist() == ["GeneA", "GeneB", "GeneC"]
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS)
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.obsm["spatial"], [[10, 13], [11, 13], [10, 14], [12, 15]])
    assert adata.obs["array_col"].tolist() == [10, 11, 10, 12]
    assert adata.obs["array_row"].tolist() == [13, 13, 14, 15]


@pytest.mark.parametrize("where", ["same", "sibling", "explicit"])
def test_with_selection(tmp_path, where):
    path = write_table(tmp_path / "ST-cnts" / "S1.tsv.gz")
    sel_dir = {"same": tmp_path / "ST-cnts", "sibling": tmp_path / "ST-spotfiles", "explicit": tmp_path / "x"}[where]
    sel_dir.mkdir(exist_ok=True)
    name = "S1_selection.tsv" if where != "explicit" else "spots.tsv"
    (sel_dir / name).write_text(SELECTION)
    adata = read(path, selection=sel_dir / name if where == "explicit" else None)
    # spot 10x14 is not in the selection file: dropped
    assert adata.obs_names.tolist() == ["10x13", "11x13", "12x15"]
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS[[0, 1, 3]])
    np.testing.assert_array_equal(adata.obsm["spatial"], [[1923.65, 2622.15], [2140.5, 2625.0], [2360.25, 3059.75]])
    assert adata.obs["array_col"].tolist() == [10, 11, 12]
    assert adata.obs["array_row"].tolist() == [13, 13, 15]
    assert adata.uns["spotfill_io"]["selection"] == str((sel_dir / name).resolve())


def test_unrelated_sibling_folders_are_not_searched(tmp_path):
    path = write_table(tmp_path / "counts" / "S1.tsv")
    (tmp_path / "other_run").mkdir()
    (tmp_path / "other_run" / "S1_selection.tsv").write_text(SELECTION)
    assert read(path).uns["spotfill_io"]["selection"] == "None"


def test_selection_false_ignores_the_file(tmp_path):
    path = write_table(tmp_path / "run" / "S1.tsv")
    (tmp_path / "run" / "S1_selection.tsv").write_text(SELECTION)
    adata = read(path, selection=False)
    assert adata.n_obs == 4
    np.testing.assert_array_equal(adata.obsm["spatial"][0], [10, 13])


def test_unselected_spots_are_dropped(tmp_path):
    path = write_table(tmp_path / "run" / "S1.tsv")
    (tmp_path / "run" / "S1_selection.tsv").write_text(SELECTION.replace("2140.5\t2625.0\t1", "2140.5\t2625.0\t0"))
    assert read(path).obs_names.tolist() == ["10x13", "12x15"]


def test_adjusted_decimal_spot_names(tmp_path):
    text = "\tGeneA\n9.85x12.99\t4\n12.02x15.0\t7\n"
    path = write_table(tmp_path / "run" / "S1.tsv", text)
    (tmp_path / "run" / "S1_selection.tsv").write_text(SELECTION)
    adata = read(path)
    np.testing.assert_array_equal(adata.obsm["spatial"], [[1923.65, 2622.15], [2360.25, 3059.75]])
    assert adata.obs["array_col"].tolist() == [10, 12]
    assert adata.obs["array_row"].tolist() == [13, 15]


def test_format_st_requires_spot_names(tmp_path):
    path = write_table(tmp_path / "run" / "S1.tsv", "\tGeneA\nspot1\t1\n")
    with pytest.raises(spotfill.InputError, match=r"spot names must look like 'XxY'.*\['spot1'\]"):
        read(path, format="st")


def test_selection_without_common_spots(tmp_path):
    path = write_table(tmp_path / "run" / "S1.tsv")
    (tmp_path / "other.tsv").write_text("x\ty\tnew_x\tnew_y\tpixel_x\tpixel_y\tselected\n1\t1\t1\t1\t5\t5\t1\n")
    with pytest.raises(spotfill.InputError, match="no spot of .* is in the selection file"):
        read(path, selection=tmp_path / "other.tsv")


def test_real_her2st_a1_matches_the_shared_h5ad(shared_data, shared_h5ad):
    import anndata as ad

    table = shared_data / "her2st" / "ST-cnts" / "A1.tsv.gz"
    if not table.exists():
        pytest.skip("her2st A1 count table not available")
    adata = read(table)  # finds ../ST-spotfiles/A1_selection.tsv
    ref = ad.read_h5ad(shared_h5ad("her2st_A1"))
    assert adata.uns["spotfill_io"]["selection"].endswith("ST-spotfiles/A1_selection.tsv")
    assert adata.shape == ref.shape == (346, 15045)
    assert adata.obs_names.equals(ref.obs_names)
    assert adata.var_names.equals(ref.var_names)
    assert (adata.X != ref.X).nnz == 0
    np.testing.assert_array_equal(adata.obsm["spatial"], ref.obsm["spatial"])
    np.testing.assert_array_equal(adata.obs["array_col"], ref.obs["array_col"])
    np.testing.assert_array_equal(adata.obs["array_row"], ref.obs["array_row"])


def test_genes_by_spots_table_with_transpose(tmp_path):
    spots = ["10x13", "11x13", "10x14", "12x15"]
    lines = ["\t" + "\t".join(spots)]
    lines += [f"{gene}\t" + "\t".join(map(str, COUNTS[:, j])) for j, gene in enumerate(["GeneA", "GeneB", "GeneC"])]
    path = write_table(tmp_path / "run" / "S1.tsv", "\n".join(lines) + "\n")
    for adata in (read(path, transpose=True), read(path, format="st", transpose=True)):
        assert adata.uns["spotfill_io"]["format"] == "st"
        assert adata.obs_names.tolist() == spots
        np.testing.assert_array_equal(adata.X.toarray(), COUNTS)
        np.testing.assert_array_equal(adata.obsm["spatial"], [[10, 13], [11, 13], [10, 14], [12, 15]])
    with pytest.raises(spotfill.InputError, match="read it with transpose=True"):  # spots not recognised without
        read(path)


def test_a_table_read_in_the_wrong_orientation_is_told_to_flip(tmp_path):
    spots = ["10x13", "11x13", "10x14", "12x15"]
    lines = ["\t" + "\t".join(spots)]
    lines += [f"{gene}\t" + "\t".join(map(str, COUNTS[:, j])) for j, gene in enumerate(["GeneA", "GeneB", "GeneC"])]
    genes_by_spots = write_table(tmp_path / "run" / "T.tsv", "\n".join(lines) + "\n")
    with pytest.raises(spotfill.InputError, match=r"columns are ST spot positions .*read it with transpose=True"):
        read(genes_by_spots)
    spots_by_genes = write_table(tmp_path / "run" / "S1.tsv")
    with pytest.raises(spotfill.InputError, match=r"rows are ST spot positions .*read it without transpose=True"):
        read(spots_by_genes, transpose=True)


TWO_SPOTS = "\tGeneA\tGeneB\n10x13\t0\t6\n11x13\t2\t0\n"


TWO_SPOTS_SELECTION = (
    "x\ty\tnew_x\tnew_y\tpixel_x\tpixel_y\tselected\n10\t13\t10\t13\t100.5\t200.0\t1\n11\t13\t11\t13\t150.0\t200.0\t1\n"
)


def test_selection_file_in_the_parent_folder_is_found(tmp_path):
    (tmp_path / "run" / "counts").mkdir(parents=True)
    path = tmp_path / "run" / "counts" / "S1.tsv"
    path.write_text(TWO_SPOTS)
    selection = tmp_path / "run" / "S1_selection.tsv"
    selection.write_text(TWO_SPOTS_SELECTION)
    adata = read(path)
    assert adata.uns["spotfill_io"]["selection"] == str(selection.resolve())
    np.testing.assert_array_equal(adata.obsm["spatial"], [[100.5, 200.0], [150.0, 200.0]])


def test_selection_listing_a_position_twice_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "S1.tsv"
    path.write_text(TWO_SPOTS)
    (tmp_path / "run" / "S1_selection.tsv").write_text(TWO_SPOTS_SELECTION + "10\t13\t10\t13\t900.0\t900.0\t1\n")
    with pytest.raises(InputError, match="twice"):
        read(path)
