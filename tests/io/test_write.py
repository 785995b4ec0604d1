"""Writers: atomic .h5ad and CSV/TSV export, and the overwrite rule."""

from __future__ import annotations

import errno
import gzip
import os
import shutil

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import spotfill
import spotfill.io._write as write_module
from spotfill import InputError
from spotfill.io import _write, read, write
from spotfill.io._write import check_target


@pytest.fixture
def adata() -> ad.AnnData:
    X = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]], dtype=np.float32))
    a = ad.AnnData(X)
    a.obs_names, a.var_names = ["s1", "s2"], ["G1", "G2", "G3"]
    a.obsm["spatial"] = np.array([[0.0, 1.0], [2.0, 3.0]])
    a.obs["array_row"] = np.array([0, 1])
    a.layers["imputed"] = np.array([[1.25, 0.5, 2.0], [0.1, 3.0, 1e-3]], dtype=np.float32)
    a.uns["imputed"] = {"method": "test", "params": {"k": 3}}
    return a


def test_h5ad_round_trip_and_no_temp_file(tmp_path, adata):
    out = write(adata, tmp_path / "out.h5ad")
    assert out == tmp_path / "out.h5ad"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]
    back = ad.read_h5ad(out)
    assert (back.X != adata.X).nnz == 0
    np.testing.assert_array_equal(back.layers["imputed"], adata.layers["imputed"])
    np.testing.assert_array_equal(back.obsm["spatial"], adata.obsm["spatial"])
    assert back.obs_names.tolist() == ["s1", "s2"]
    assert back.uns["imputed"]["params"]["k"] == 3


def test_refuses_existing_file_unless_overwrite(tmp_path, adata):
    target = tmp_path / "out.h5ad"
    target.write_text("keep me")
    with pytest.raises(InputError, match=r"out\.h5ad already exists: pass overwrite=True"):
        write(adata, target)
    assert target.read_text() == "keep me"
    write(adata, target, overwrite=True)
    assert ad.read_h5ad(target).shape == (2, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]


def test_input_file_is_protected(tmp_path, adata):
    src = tmp_path / "in.h5ad"
    adata.write_h5ad(src)
    data = read(src)
    data.layers["new"] = data.X.copy()
    with pytest.raises(InputError, match="refusing to overwrite .*the files the data were read from.*'input'"):
        write(data, src, overwrite=True)
    assert "new" not in ad.read_h5ad(src).layers
    write(data, src, overwrite="input")
    assert "new" in ad.read_h5ad(src).layers


def test_failed_write_leaves_target_and_no_temp(tmp_path, adata, monkeypatch):
    target = tmp_path / "out.h5ad"
    target.write_text("old")

    def boom(self, path, **kwargs):
        path.write_text("partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write(adata, target, overwrite=True)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]


def test_h5ad_size_counts_every_array_as_stored(tmp_path, adata):
    # X: 3 float32 values + 3 int32 indices + 3 int32 pointers; layer 6 float32; coordinates 4 float64
    arrays = 3 * 4 + 3 * 4 + 3 * 4 + 6 * 4 + 4 * 8
    tables = int(adata.obs.memory_usage(deep=True).sum() + adata.var.memory_usage(deep=True).sum())
    assert write_module.h5ad_size(adata) == arrays + tables
    adata.uns["img"] = {"hires": np.zeros((10, 10, 3), dtype=np.uint8)}  # images in uns count too
    assert write_module.h5ad_size(adata) == arrays + tables + 300
    big = spotfill.datasets.synthetic(400, 200, seed=0)
    size = os.path.getsize(write(big, tmp_path / "big.h5ad"))
    assert 0.9 * size <= write_module.h5ad_size(big) <= 1.1 * size
    assert size < write_module.h5ad_size(big) + 2**20  # the check's margin covers HDF5's own overhead


def test_h5ad_size_counts_strings_lists_and_backed_counts(tmp_path, adata):
    # lists and object arrays of strings in uns were counted as 0 bytes (a list of 50,000 names: 3.3 MiB)
    adata.uns["names"] = [f"item{i}" for i in range(50_000)]
    adata.uns["notes"] = np.array(["x" * 100] * 1_000, dtype=object)
    size = os.path.getsize(write(adata, tmp_path / "strings.h5ad"))
    assert size < write_module.h5ad_size(adata) + 2**20
    assert write_module.h5ad_size(adata) < 2 * size
    big = spotfill.datasets.synthetic(400, 200, seed=0)
    write(big, tmp_path / "big.h5ad")
    backed = ad.read_h5ad(tmp_path / "big.h5ad", backed="r")  # X stays in the file: its arrays count too
    in_memory = write_module.h5ad_size(big)
    assert abs(write_module.h5ad_size(backed) - in_memory) < 0.01 * in_memory  # obs' index may differ by a few bytes
    backed.file.close()


def test_a_write_that_cannot_fit_is_refused_before_it_starts(tmp_path, adata, monkeypatch):
    target = tmp_path / "out.h5ad"
    target.write_text("old")
    free = write_module.h5ad_size(adata) + 2**20
    monkeypatch.setattr(write_module.shutil, "disk_usage", lambda p: _usage(free - 1))
    with pytest.raises(OSError, match=r"not enough space \(the data need about 1 MiB and its folder has 1 MiB") as err:
        write(adata, target, overwrite=True)
    assert err.value.errno == errno.ENOSPC
    assert err.value.filename == str(target)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]
    monkeypatch.setattr(write_module.shutil, "disk_usage", lambda p: _usage(free))  # just enough
    write(adata, target, overwrite=True)
    assert ad.read_h5ad(target).shape == (2, 3)


def _usage(free: int):
    return shutil._ntuple_diskusage(10 * free, 9 * free, free)


@pytest.mark.parametrize(("name", "sep"), [("x.csv", ","), ("x.tsv", "\t"), ("x.csv.gz", ",")])
def test_table_export_of_counts(tmp_path, adata, name, sep):
    out = write(adata, tmp_path / name)
    opener = gzip.open if name.endswith(".gz") else open
    with opener(out, "rt") as fh:
        text = fh.read()
    assert text.splitlines() == [
        sep.join(["spot", "G1", "G2", "G3"]),
        sep.join(["s1", "1", "0", "2"]),
        sep.join(["s2", "0", "3", "0"]),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("name", ["x.csv", "x.csv.gz"])
def test_table_export_in_chunks_equals_one_chunk(tmp_path, name, monkeypatch):
    """Written a few spots at a time: one header, every row once, integer formatting per chunk."""
    rng = np.random.default_rng(0)
    a = ad.AnnData(sp.csr_matrix(rng.poisson(1.0, size=(7, 3)).astype(np.float32)))
    a.obs_names = [f"s{i}" for i in range(7)]
    a.var_names = ["G1", "G2", "G3"]
    a.layers["imputed"] = rng.random((7, 3)).astype(np.float32)
    opener = gzip.open if name.endswith(".gz") else open
    texts = {}
    for chunk in (1_000_000, 3):  # one chunk; then 1 spot per chunk (3 cells / 3 genes)
        monkeypatch.setattr(write_module, "_CHUNK_CELLS", chunk)
        for layer in (None, "imputed"):
            out = write(a, tmp_path / f"{chunk}_{layer}_{name}", layer=layer)
            with opener(out, "rt") as fh:
                texts[chunk, layer] = fh.read()
    for layer in (None, "imputed"):
        assert texts[3, layer] == texts[1_000_000, layer]
        lines = texts[3, layer].splitlines()
        assert len(lines) == 8
        assert lines[0] == "spot,G1,G2,G3"
        assert [line.split(",")[0] for line in lines[1:]] == list(a.obs_names)
    counts = [line.split(",")[1:] for line in texts[3, None].splitlines()[1:]]
    assert counts == [[str(int(v)) for v in row] for row in a.X.toarray()]


def test_table_export_of_a_layer_reads_back(tmp_path, adata):
    out = write(adata, tmp_path / "imp.csv", layer="imputed")
    frame = pd.read_csv(out, index_col=0)
    assert frame.index.tolist() == ["s1", "s2"]
    np.testing.assert_allclose(frame.to_numpy(), adata.layers["imputed"], rtol=1e-6)
    with pytest.raises(InputError, match=r"layer 'nope' \(--export-layer\) not found; available layers: \['imputed'\]"):
        write(adata, tmp_path / "other.csv", layer="nope")


def test_table_export_refuses_large_data(tmp_path, adata, monkeypatch):
    monkeypatch.setattr(write_module, "MAX_TABLE_ENTRIES", 5)
    with pytest.raises(InputError, match="2 spots x 3 genes .* is too large for a text table .*write .h5ad instead"):
        write(adata, tmp_path / "x.csv")
    assert list(tmp_path.iterdir()) == []


def test_bad_targets(tmp_path, adata):
    with pytest.raises(InputError, match=r"cannot write .*x\.xlsx: unknown extension; use \.h5ad"):
        write(adata, tmp_path / "x.xlsx")
    with pytest.raises(InputError, match="the folder .*nope does not exist; create it first"):
        write(adata, tmp_path / "nope" / "x.h5ad")
    (tmp_path / "afile").write_text("")
    with pytest.raises(InputError, match=r"afile is a file, not a folder"):
        write(adata, tmp_path / "afile" / "sub" / "x.h5ad")
    with pytest.raises(InputError, match=r"layer= \(--export-layer\) selects the matrix of a .csv/.tsv export"):
        write(adata, tmp_path / "x.h5ad", layer="imputed")
    (tmp_path / "d.h5ad").mkdir()
    with pytest.raises(InputError, match="it is a folder"):
        write(adata, tmp_path / "d.h5ad", overwrite=True)


def test_written_file_has_normal_permissions(tmp_path, adata):
    umask = os.umask(0o022)
    try:
        out = write(adata, tmp_path / "x.h5ad")
    finally:
        os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o644


def test_the_coordinates_file_of_a_table_is_protected(tmp_path):
    counts = tmp_path / "counts.csv"
    counts.write_text(",G1\ns1,1\ns2,2\n")
    coords = tmp_path / "coords.csv"
    coords.write_text("spot,x,y\ns1,0,0\ns2,1,0\n")
    adata = read(counts, coords=coords)
    with pytest.raises(InputError, match="read from"):
        write(adata, coords, overwrite=True)
    assert coords.read_text() == "spot,x,y\ns1,0,0\ns2,1,0\n"


def test_table_size_precheck_counts_the_exported_columns(tmp_path, monkeypatch):
    # a table of a few imputed genes (--genes) is judged by its own width, not by every gene
    monkeypatch.setattr(_write, "MAX_TABLE_ENTRIES", 50)
    adata = ad.AnnData(sp.csr_matrix((10, 10), dtype=np.float32))
    with pytest.raises(InputError, match="too large for a text table"):
        check_target(adata, tmp_path / "all.csv")
    assert check_target(adata, tmp_path / "five.csv", n_columns=5) == tmp_path / "five.csv"
    with pytest.raises(InputError, match="too large for a text table"):
        check_target(adata, tmp_path / "six.csv", n_columns=6)
