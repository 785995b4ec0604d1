"""`spotfill info` on unusable files: exit code 2, one line 'spotfill: error: ...', no traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spotfill.cli import main


def bad_file(tmp_path: Path, case: str, write_h5ad) -> Path:
    if case == "missing":
        return tmp_path / "nothere.h5ad"
    if case == "unknown format":
        (tmp_path / "x.loom").write_text("x")
        return tmp_path / "x.loom"
    if case == "no coordinates":
        return write_h5ad(tmp_path / "x.h5ad", [[1, 2]], spatial=False)
    if case == "nan":
        return write_h5ad(tmp_path / "x.h5ad", [[1, np.nan]])
    if case == "negative":
        return write_h5ad(tmp_path / "x.h5ad", [[1, -1]])
    if case == "duplicate spots":
        return write_h5ad(tmp_path / "x.h5ad", [[1], [2]], obs_names=["a", "a"])
    if case == "duplicate genes":
        return write_h5ad(tmp_path / "x.h5ad", [[1, 2]], var_names=["G", "G"])
    if case == "empty":
        return write_h5ad(tmp_path / "x.h5ad", np.zeros((0, 2)))
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "nothere.h5ad does not exist"),
        ("unknown format", "cannot detect the format of"),
        ("no coordinates", "has no spot coordinates"),
        ("nan", "contains 1 NaN or infinite values"),
        ("negative", "contains negative values"),
        ("duplicate spots", "duplicate spot names"),
        ("duplicate genes", "duplicate gene names"),
        ("empty", "is empty (shape (0, 2))"),
    ],
)
def test_info_on_bad_files(tmp_path, capsys, case, message, write_h5ad):
    code = main(["info", str(bad_file(tmp_path, case, write_h5ad))])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("spotfill: error: ")
    assert message in lines[0]
    assert "Traceback" not in captured.err


def test_info_on_a_good_table(tmp_path, capsys):
    table = tmp_path / "cli_sample.tsv"  # a stem no other test gives a selection file
    table.write_text("\tGeneA\tGeneB\n1x1\t0\t6\n2x1\t2\t0\n1x2\t0\t0\n2x2\t4\t1\n")
    assert main(["info", str(table)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:9] == [
        "format: st",
        f"path: {table}",
        "spots x genes: 4 x 2",
        "zeros: 50.0%",
        "counts: integers",
        "total counts per spot (median): 3.5",  # totals 6, 2, 0, 5
        "grid: square (ST-like)",
        "x range: 1 to 2",
        "y range: 1 to 2",
    ]
    # the graph module decides the neighbourhood (2 per spot here with the grid fallback)
    assert lines[9].startswith("neighbours per spot (order 1): min ")
    assert lines[10:] == ["labels: none", "layers: none"]


def test_benchmark_and_report_refuse_an_existing_out_without_overwrite(tmp_path, capsys):
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    from spotfill.cli import main

    rng = np.random.default_rng(0)
    a = ad.AnnData(sp.csr_matrix(rng.poisson(2.0, (30, 5)).astype(np.float32)))
    a.obsm["spatial"] = rng.random((30, 2))
    data = tmp_path / "d.h5ad"
    a.write_h5ad(data)
    out = tmp_path / "r.csv"
    out.write_text("earlier results\n")
    assert main(["benchmark", str(data), "--methods", "raw", "--in-process", "--out", str(out)]) == 2
    assert "already exists: pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert out.read_text() == "earlier results\n"
    assert main(["benchmark", str(data), "--methods", "raw", "--in-process", "--out", str(out), "--overwrite"]) == 0
    assert out.read_text().startswith("dataset,")
    html = tmp_path / "r.html"
    html.write_text("old")
    assert main(["report", str(out), "--out", str(html)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert html.read_text() == "old"
    assert main(["report", str(out), "--out", str(html), "--overwrite"]) == 0
    assert html.read_text().startswith("<!DOCTYPE html>")
