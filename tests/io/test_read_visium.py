"""Space Ranger folders written by hand: matrix (mtx folder or v3 .h5) + both position-file variants."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

import spotfill
from spotfill import InputError, SpotfillWarning
from spotfill.io import read, write

BARCODES = ["AAAC-1", "AAAG-1", "AAAT-1", "AACC-1"]
GENE_IDS = ["ENSG01", "ENSG02", "ENSG03"]
SYMBOLS = ["Sox2", "Gad1", "Sox2"]  # a repeated symbol, made unique as scanpy does
# spots x genes counts of the 4 barcodes
COUNTS = np.array([[1, 0, 2], [0, 3, 0], [4, 0, 0], [0, 0, 5]], dtype=np.int64)
# barcode, in_tissue, array_row, array_col, pxl_row_in_fullres, pxl_col_in_fullres
POSITIONS = [
    ("AACC-1", 1, 1, 3, 210, 330),
    ("AAAC-1", 1, 0, 0, 100, 50),
    ("AAAG-1", 0, 0, 2, 100, 250),  # in the matrix but outside the tissue: dropped
    ("AAAT-1", 1, 1, 1, 200, 150),
    ("GGGG-1", 1, 2, 0, 300, 40),  # in tissue but not in the matrix: ignored
]
KEPT = ["AAAC-1", "AAAT-1", "AACC-1"]  # matrix order


def write_mtx(folder: Path) -> None:
    folder.mkdir(parents=True)
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(COUNTS.T))
    with open(folder / "matrix.mtx", "rb") as src, gzip.open(folder / "matrix.mtx.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (folder / "matrix.mtx").unlink()
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as fh:
        fh.write("".join(f"{b}\n" for b in BARCODES))
    with gzip.open(folder / "features.tsv.gz", "wt") as fh:
        fh.write("".join(f"{i}\t{s}\tGene Expression\n" for i, s in zip(GENE_IDS, SYMBOLS, strict=True)))


def write_h5(path: Path) -> None:
    """The Cell Ranger v3 layout: a CSC genes x barcodes matrix under /matrix."""
    csc = sp.csc_matrix(COUNTS.T.astype(np.int32))
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m.create_dataset("barcodes", data=np.array(BARCODES, dtype="S"))
        m.create_dataset("data", data=csc.data.astype(np.int32))
        m.create_dataset("indices", data=csc.indices.astype(np.int64))
        m.create_dataset("indptr", data=csc.indptr.astype(np.int64))
        m.create_dataset("shape", data=np.array(csc.shape, dtype=np.int32))
        feats = m.create_group("features")
        feats.create_dataset("_all_tag_keys", data=np.array(["genome"], dtype="S"))
        feats.create_dataset("feature_type", data=np.array(["Gene Expression"] * 3, dtype="S"))
        feats.create_dataset("genome", data=np.array(["GRCh38"] * 3, dtype="S"))
        feats.create_dataset("id", data=np.array(GENE_IDS, dtype="S"))
        feats.create_dataset("name", data=np.array(SYMBOLS, dtype="S"))


def write_positions(spatial: Path, *, header: bool) -> None:
    spatial.mkdir(parents=True)
    lines = [",".join(map(str, row)) for row in POSITIONS]
    if header:
        head = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres"
        (spatial / "tissue_positions.csv").write_text("\n".join([head, *lines]) + "\n")
    else:
        (spatial / "tissue_positions_list.csv").write_text("\n".join(lines) + "\n")


def make_outs(root: Path, *, matrix: str, header: bool) -> Path:
    if matrix == "mtx":
        write_mtx(root / "filtered_feature_bc_matrix")
    else:
        root.mkdir(parents=True, exist_ok=True)
        write_h5(root / "filtered_feature_bc_matrix.h5")
    write_positions(root / "spatial", header=header)
    return root


def check_visium(adata) -> None:
    assert adata.obs_names.tolist() == KEPT
    assert adata.var_names.tolist() == ["Sox2", "Gad1", "Sox2-1"]
    assert adata.var["gene_ids"].tolist() == GENE_IDS
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS[[0, 2, 3]])
    assert adata.X.format == "csr"  # also from the mtx reader, which returns CSC
    assert adata.X.dtype == np.float32
    # (x, y) = (pxl_col_in_fullres, pxl_row_in_fullres)
    np.testing.assert_array_equal(adata.obsm["spatial"], [[50, 100], [150, 200], [330, 210]])
    assert adata.obs["array_row"].tolist() == [0, 1, 1]
    assert adata.obs["array_col"].tolist() == [0, 1, 3]
    assert adata.obs["array_row"].dtype == np.int64
    assert adata.uns["spotfill_io"]["format"] == "visium"


@pytest.mark.parametrize("matrix", ["mtx", "h5"])
@pytest.mark.parametrize("header", [True, False], ids=["tissue_positions", "tissue_positions_list"])
def test_read_spaceranger_folder(tmp_path, matrix, header):
    outs = make_outs(tmp_path / "outs", matrix=matrix, header=header)
    adata = read(outs)
    check_visium(adata)
    assert adata.uns["spotfill_io"]["path"] == str(outs.resolve())


@pytest.mark.parametrize("matrix", ["mtx", "h5"])
def test_outs_parent_and_explicit_format(tmp_path, matrix):
    make_outs(tmp_path / "sample" / "outs", matrix=matrix, header=True)
    check_visium(read(tmp_path / "sample"))
    check_visium(read(str(tmp_path / "sample"), format="visium"))


def test_matrix_h5_file_itself(tmp_path):
    outs = make_outs(tmp_path / "outs", matrix="h5", header=True)
    check_visium(read(outs / "filtered_feature_bc_matrix.h5"))


def test_visium_hd_bin_folder_and_ambiguous_parent(tmp_path):
    binned = tmp_path / "outs" / "binned_outputs"
    for name in ("square_002um", "square_008um"):
        make_outs(binned / name, matrix="h5", header=True)
    check_visium(read(binned / "square_008um"))
    with pytest.raises(spotfill.InputError, match=r"Visium HD output with bins square_002um, square_008um"):
        read(tmp_path / "outs")


def test_matrix_without_positions(tmp_path):
    write_mtx(tmp_path / "outs" / "filtered_feature_bc_matrix")
    with pytest.raises(spotfill.InputError, match=r"no spatial/tissue_positions\.csv"):
        read(tmp_path / "outs")


def test_no_common_barcode(tmp_path):
    outs = make_outs(tmp_path / "outs", matrix="mtx", header=True)
    (outs / "spatial" / "tissue_positions.csv").write_text(
        "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres\nTTTT-1,1,0,0,1,1\n"
    )
    with pytest.raises(spotfill.InputError, match="no barcode of .* is an in-tissue spot"):
        read(outs)


def test_parquet_positions_need_an_engine(tmp_path):
    outs = tmp_path / "outs"
    outs.mkdir()
    write_h5(outs / "filtered_feature_bc_matrix.h5")
    (outs / "spatial").mkdir()
    columns = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
    frame = pd.DataFrame(POSITIONS, columns=columns)
    try:
        frame.to_parquet(outs / "spatial" / "tissue_positions.parquet")
    except ImportError:
        (outs / "spatial" / "tissue_positions.parquet").write_bytes(b"PAR1")
        with pytest.raises(spotfill.InputError, match="needs a parquet engine: pip install pyarrow"):
            read(outs)
    else:
        check_visium(read(outs))


def test_every_input_file_is_protected_from_overwriting(tmp_path):

    outs = make_outs(tmp_path / "outs", matrix="h5", header=True)
    positions = outs / "spatial" / "tissue_positions.csv"
    before = positions.read_bytes()
    for source in (outs, outs / "filtered_feature_bc_matrix.h5"):  # the folder, or its matrix file itself
        adata = read(source)
        assert adata.uns["spotfill_io"]["positions"] == str(positions.resolve())
        with pytest.raises(InputError, match="one of the files the data were read from"):
            write(adata, positions, overwrite=True)
        other = outs / "spatial" / "other.csv"  # not read: an ordinary existing file
        other.touch()
        write(adata, other, overwrite=True)
        assert positions.read_bytes() == before
    write(read(outs), outs / "new.h5ad")  # a new file next to the input is fine


def test_barcodes_missing_from_the_positions_are_reported(tmp_path):
    outs = make_outs(tmp_path / "outs", matrix="h5", header=True)
    positions = outs / "spatial" / "tissue_positions.csv"
    lines = positions.read_text().splitlines()
    positions.write_text("\n".join(x for x in lines if not x.startswith("AAAG-1")) + "\n")  # a matrix barcode lost
    with pytest.warns(SpotfillWarning, match="not in .* same Space Ranger run"):
        read(outs)


def test_positions_with_a_byte_order_mark_and_options_of_the_other_matrix_kind(tmp_path):
    outs = make_outs(tmp_path / "outs", matrix="h5", header=True)
    positions = outs / "spatial" / "tissue_positions.csv"
    positions.write_bytes(b"\xef\xbb\xbf" + positions.read_bytes())  # saved by a spreadsheet program
    check_visium(read(outs))
    with pytest.raises(InputError, match=r"10x \.h5 matrix, which takes the options genome, gex_only, not prefix"):
        read(outs, prefix="x_")


def test_results_may_be_rewritten_next_to_a_space_ranger_input_but_not_over_it(tmp_path):
    from spotfill.benchmark import run_benchmark

    outs = make_outs(tmp_path / "outs", matrix="mtx", header=True)
    adata = read(outs)
    write(adata, outs / "imputed.h5ad")
    write(adata, outs / "imputed.h5ad", overwrite=True)  # a re-run replaces its own result
    positions = outs / "spatial" / "tissue_positions.csv"
    for target in (positions, outs / "filtered_feature_bc_matrix" / "barcodes.tsv.gz"):
        assert target.is_file()
        with pytest.raises(InputError, match="one of the files the data were read from"):
            write(adata, target, overwrite=True)
    before = positions.read_bytes()
    with pytest.raises(InputError, match="one of the input files"):
        run_benchmark([outs], methods=["raw"], protocols=["p2"], out=positions, progress=False, isolate=False)
    assert positions.read_bytes() == before


def test_a_truncated_matrix_download_is_a_clear_error(tmp_path):
    outs = make_outs(tmp_path / "outs", matrix="mtx", header=True)
    mtx = outs / "filtered_feature_bc_matrix" / "matrix.mtx.gz"
    data = mtx.read_bytes()
    mtx.write_bytes(data[: len(data) - 12])  # the gzip trailer and some data missing
    with pytest.raises(spotfill.InputError, match="truncated or corrupt file"):
        read(outs)


def _write_legacy_mtx(folder: Path, counts: np.ndarray, barcodes: list[str]) -> None:
    folder.mkdir(parents=True)
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(counts.T))  # genes x barcodes
    (folder / "genes.tsv").write_text("ENSG01\tSox2\nENSG02\tGad1\n")
    (folder / "barcodes.tsv").write_text("".join(f"{b}\n" for b in barcodes))


def test_the_filtered_matrix_is_read_when_the_raw_one_is_there_too(tmp_path):
    outs = tmp_path / "outs"
    filtered = np.array([[1, 2], [3, 0]])
    _write_legacy_mtx(outs / "filtered_feature_bc_matrix", filtered, ["AAAC-1", "AAAG-1"])
    _write_legacy_mtx(outs / "raw_feature_bc_matrix", 10 * filtered, ["AAAC-1", "AAAG-1"])
    (outs / "spatial").mkdir()
    (outs / "spatial" / "tissue_positions_list.csv").write_text("AAAC-1,1,0,0,10,20\nAAAG-1,1,0,2,10,40\n")
    adata = read(tmp_path)
    assert Path(adata.uns["spotfill_io"]["matrix"]).name == "filtered_feature_bc_matrix"
    np.testing.assert_array_equal(adata.X.toarray(), filtered)
