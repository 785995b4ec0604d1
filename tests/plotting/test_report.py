"""The HTML report and the benchmark/report command line, end to end on tiny data."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from spotfill._errors import InputError
from spotfill.cli import main
from spotfill.plotting import report, summarize


def _adata(n_side: int = 8, n_genes: int = 12, seed: int = 0) -> AnnData:
    """Square ST grid, two labelled halves with different expression, one unlabelled spot."""
    rng = np.random.default_rng(seed)
    n = n_side * n_side
    row, col = np.divmod(np.arange(n), n_side)
    left = col < n_side // 2
    rate = np.where(left[:, None], np.linspace(0.5, 6, n_genes), np.linspace(6, 0.5, n_genes))
    ad = AnnData(sp.csr_matrix(rng.poisson(rate).astype(np.float32)))
    ad.obs_names = [f"s{i}" for i in range(n)]
    ad.var_names = [f"gene{j}" for j in range(n_genes)]
    ad.obs["array_row"] = row
    ad.obs["array_col"] = col
    ad.obsm["spatial"] = np.c_[col, row].astype(float)
    label = np.where(left, "left", "right").astype(object)
    label[0] = np.nan
    ad.obs["label"] = pd.Categorical(label)
    return ad


def _hand_results() -> pd.DataFrame:
    rows = []
    for seed, (a_rmse, b_rmse, a_r, b_r) in enumerate([(1.0, 0.5, 0.9, 0.1), (3.0, 0.5, 0.7, 0.1)]):
        for method, rmse, r in (("a", a_rmse, a_r), ("b", b_rmse, b_r)):
            for metric, value in (("rmse", rmse), ("pearson", r), ("seconds", 1.0 + seed), ("peak_mb", 10.0)):
                rows.append(("d", 100, 5, "p1", method, seed, metric, value, "ok", ""))
        rows.append(("d", 100, 5, "p1", "c", seed, "seconds", 0.1, "failed", "ValueError: nope"))
    cols = ["dataset", "n_spots", "n_genes", "protocol", "method", "seed", "metric", "value", "status", "error"]
    return pd.DataFrame(rows, columns=cols)


def test_summarize_mean_sd():
    s = summarize(_hand_results()).set_index(["method", "metric"])
    assert s.loc[("a", "rmse"), "mean"] == pytest.approx(2.0)
    assert s.loc[("a", "rmse"), "sd"] == pytest.approx(np.sqrt(2.0))  # sample sd of (1, 3)
    assert s.loc[("b", "rmse"), "sd"] == 0.0
    assert s.loc[("a", "pearson"), "mean"] == pytest.approx(0.8)
    assert ("c", "seconds") not in s.index  # failed rows are not averaged


def test_report_table_best_and_failed(tmp_path):
    out = report(_hand_results(), out=tmp_path / "r.html")
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # lower rmse is better: b; higher pearson is better: a
    assert '<td class="best">0.5 &plusmn; 0</td>' in text
    assert '<td class="best">0.8 &plusmn; 0.14</td>' in text
    assert "failed: ValueError: nope" in text
    assert text.count("<table>") == 2  # scores + cost of the one dataset
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', text)) == 2  # P1 bars + cost
    assert not list(tmp_path.glob(".r.html.*"))  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600


def test_cli_benchmark_then_report(tmp_path):
    path = tmp_path / "toy.h5ad"
    _adata().write_h5ad(path)
    csv = tmp_path / "res.csv"
    code = main(
        [
            "benchmark",
            str(path),
            "--protocol",
            "p1,p2,p4",
            "--methods",
            "raw,libsize_mean",
            "--seeds",
            "0,1",
            "--out",
            str(csv),
            "--in-process",
            "--frac",
            "0.1",
            "--timeout",
            "600",
        ]
    )
    assert code == 0
    df = pd.read_csv(csv)
    assert set(df["dataset"]) == {"toy"}
    assert set(df["protocol"]) == {"p1", "p2", "p4"}
    assert set(df["seed"]) == {0, 1}
    assert (df["status"] == "ok").all()
    v = df[df.seed == 0].set_index(["protocol", "method", "metric"])["value"]
    assert v["p4", "raw", "ari_raw"] == pytest.approx(1.0)  # the two halves are well separated
    assert v["p1", "raw", "zero_log1p"] == 0.0

    html = tmp_path / "report.html"
    assert main(["report", str(csv), "--data", str(path), "--out", str(html)]) == 0
    text = html.read_text()
    assert "<table>" in text
    assert "toy" in text
    # 3 protocol bar charts + cost + (maps, density, error histogram, domains) of the one dataset
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', text)) == 3 + 1 + 4
    assert "gene" in text


def test_cli_benchmark_method_with_parameters(tmp_path):
    path = tmp_path / "toy.h5ad"
    _adata().write_h5ad(path)
    csv = tmp_path / "res.csv"
    spec = "spatial_knn[n_neighs=3,include_self=False]"
    args = ["benchmark", str(path), "--protocol", "p2", "--methods", f"raw,{spec}", "--out", str(csv), "--in-process"]
    assert main(args) == 0
    df = pd.read_csv(csv)
    assert set(df["method"]) == {"raw", spec}  # the comma inside the brackets did not split the list
    assert (df["status"] == "ok").all()


def test_report_rejects_foreign_table(tmp_path):
    with pytest.raises(InputError, match="lacks columns"):
        report(pd.DataFrame({"x": [1]}), out=tmp_path / "r.html")


def test_report_scale_series_with_failure(tmp_path):
    rows = []
    for n, secs, status, err in (
        (1000, 0.5, "ok", ""),
        (10000, 4.0, "ok", ""),
        (100000, 60.0, "failed", "over time (> 60 s)"),
    ):
        for metric, value in (("seconds", secs), ("peak_mb", 100.0 * n / 1000 if status == "ok" else np.nan)):
            rows.append((f"synthetic:{n}x200", n, 200, "p5", "m", 0, metric, value, status, err))
    cols = ["dataset", "n_spots", "n_genes", "protocol", "method", "seed", "metric", "value", "status", "error"]
    text = report(pd.DataFrame(rows, columns=cols), out=tmp_path / "scale.html").read_text()
    assert len(re.findall(r"<img ", text)) == 1  # the cost figure only: no score protocol
    assert "failed: over time (&gt; 60 s)" in text


def test_report_never_overwrites_its_inputs(tmp_path):
    results = tmp_path / "r.csv"
    _hand_results().to_csv(results, index=False)
    data = tmp_path / "d.h5ad"
    _adata().write_h5ad(data)
    before = results.read_bytes(), data.read_bytes()
    with pytest.raises(InputError, match=r"must end in \.html"):
        report(results, out=results)
    with pytest.raises(InputError, match=r"must end in \.html"):
        report(results, data=[data], out=data)
    renamed = tmp_path / "r.html"  # a results file named like a report
    results.rename(renamed)
    with pytest.raises(InputError, match="one of the input files"):
        report(renamed, out=renamed)
    renamed.rename(results)
    assert (results.read_bytes(), data.read_bytes()) == before


def test_cli_benchmark_bad_seeds_is_a_one_line_error(tmp_path, capsys):
    data = tmp_path / "d.h5ad"
    _adata().write_h5ad(data)
    assert main(["benchmark", str(data), "--methods", "raw", "--seeds", "a", "--out", str(tmp_path / "r.csv")]) == 2
    assert "--seeds takes comma-separated integers" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "x.csv"), "--out", str(data)]) == 2
    assert "must end in .html" in capsys.readouterr().err


def test_report_of_a_file_that_is_not_a_results_csv(tmp_path):
    from spotfill import InputError
    from spotfill.plotting import report

    binary = tmp_path / "data.h5ad"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(InputError, match=r"data\.h5ad is not a results CSV \(UnicodeDecodeError\)"):
        report(binary, out=tmp_path / "r.html")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="is not a results CSV"):
        report(empty, out=tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_morans_i_by_hand_picks_the_spatial_gene():
    from spotfill.plotting._figures import spatially_variable_genes

    rng = np.random.default_rng(0)
    n_side = 8
    row, col = np.divmod(np.arange(n_side * n_side), n_side)
    G = sp.csr_matrix((np.abs(row[:, None] - row[None, :]) + np.abs(col[:, None] - col[None, :]) == 1).astype(float))
    smooth = np.where(col < 4, 20, 2)  # left-right pattern: strongly autocorrelated
    X = np.c_[rng.poisson(smooth), rng.poisson(8, (n_side * n_side, 30))].astype(float)
    L = np.log1p(X / X.sum(axis=1, keepdims=True) * 1e4)
    z = L - L.mean(axis=0)
    by_hand = len(L) / G.sum() * np.einsum("ig,ij,jg->g", z, G.toarray(), z) / (z * z).sum(axis=0)
    order = spatially_variable_genes(sp.csr_matrix(X), G, 31)
    np.testing.assert_array_equal(order, np.argsort(-by_hand, kind="stable"))
    assert order[0] == 0


def test_report_marks_partial_failures_and_skips_and_never_calls_them_best(tmp_path):
    rows = []
    for seed in (0, 1, 2):
        rows.append(("d", 10, 5, "p2", "good", seed, "nll", 0.5, "ok", ""))
        if seed == 0:
            rows.append(("d", 10, 5, "p2", "flaky", seed, "nll", 0.1, "ok", ""))
        else:
            rows.append(("d", 10, 5, "p2", "flaky", seed, "seconds", np.nan, "failed", "out of memory"))
        rows.append(("d", 10, 5, "p4", "good", seed, "ari", np.nan, "skipped", "no obs['label']"))
    cols = ["dataset", "n_spots", "n_genes", "protocol", "method", "seed", "metric", "value", "status", "error"]
    text = report(pd.DataFrame(rows, columns=cols), out=tmp_path / "r.html").read_text()
    assert "0.1 <span" in text
    assert "(1 of 3 seeds; failed: out of memory)" in text
    assert '<td class="best">0.1' not in text  # the flaky method is not the best: two of its seeds failed
    assert "skipped: no obs[&#x27;label&#x27;]" in text


def test_report_with_a_single_label_category_skips_the_domain_panel(tmp_path):
    ad = _adata()
    ad.obs["label"] = pd.Categorical(["tissue"] * ad.n_obs)
    ad.write_h5ad(tmp_path / "one.h5ad")
    df = pd.DataFrame(
        [("one", ad.n_obs, ad.n_vars, "p2", "mean", 0, "nll", 1.0, "ok", "")],
        columns=["dataset", "n_spots", "n_genes", "protocol", "method", "seed", "metric", "value", "status", "error"],
    )
    text = report(df, data=[tmp_path / "one.h5ad"], out=tmp_path / "r.html").read_text()
    assert "no domain panel" in text
    assert "Spatial maps of the three most spatially autocorrelated genes" in text


def test_a_tie_with_a_partly_failed_method_is_not_its_best(tmp_path):
    cols = ["dataset", "n_spots", "n_genes", "protocol", "method", "seed", "metric", "value", "status", "error"]
    rows = [
        ("d", 10, 5, "p2", "A", 0, "nll", 0.5, "ok", ""),
        ("d", 10, 5, "p2", "A", 1, "nll", 0.5, "ok", ""),
        ("d", 10, 5, "p2", "B", 0, "nll", 0.5, "ok", ""),
        ("d", 10, 5, "p2", "B", 1, "seconds", np.nan, "failed", "boom"),
        ("d", 10, 5, "p2", "C", 0, "nll", 0.9, "ok", ""),
    ]
    text = report(pd.DataFrame(rows, columns=cols), out=tmp_path / "r.html").read_text()
    assert text.count('<td class="best">0.5') == 1  # A's; B ties but lost a seed
    assert '<td class="best">0.5 &plusmn; 0</td>' in text


def test_names_are_text_whatever_they_look_like(tmp_path):
    """Numeric dataset names, mathtext-like method names and blank cells."""
    df = _hand_results()
    df["dataset"] = "007"  # read as a number, it would be 7
    df.loc[df["method"] == "b", "method"] = "price_$1_$2"
    df.to_csv(tmp_path / "r.csv", index=False)
    page = report(tmp_path / "r.csv", out=tmp_path / "r.html").read_text()
    assert "<h2>007</h2>" in page
    assert "price_$1_$2" in page
    bad = df.copy()
    bad.loc[0, "method"] = " "
    with pytest.raises(InputError, match="1 row\\(s\\) without a method"):
        report(bad, out=tmp_path / "b.html")
    bad = df.copy().astype({"seed": object})
    bad.loc[0, "seed"] = "<b>0</b>"
    with pytest.raises(InputError, match="seed column must hold whole numbers"):
        report(bad, out=tmp_path / "b.html")
    for value, shown in [(np.inf, "'inf'"), (1e30, "'1e+30'"), (-1, "'-1'")]:  # inf passed a rounding test
        bad = df.copy().astype({"seed": object})
        bad.loc[0, "seed"] = value
        with pytest.raises(InputError, match=re.escape(f"from 0 to 2**32 - 1, found {shown}")):
            report(bad, out=tmp_path / "b.html")
    with pytest.raises(InputError, match="no rows"):
        report(df.iloc[:0], out=tmp_path / "b.html")


def test_one_data_file_need_not_be_a_list(tmp_path):
    _adata().write_h5ad(tmp_path / "d.h5ad")
    df = _hand_results()
    one = report(df, data=tmp_path / "d.h5ad", methods=["spatial_knn"], out=tmp_path / "one.html").read_text()
    data = one.split("<h2>Data: d (64 spots x 12 genes)</h2>")[1]  # the panels of the one file
    assert data.count("data:image/png") == 4  # maps, predicted vs true, errors, domains
    arr = report(df, data=np.array([str(tmp_path / "d.h5ad")]), methods=["spatial_knn"], out=tmp_path / "a.html")
    assert "<h2>Data: d (64 spots x 12 genes)</h2>" in arr.read_text()  # any sequence of paths


@pytest.mark.parametrize("n_side", [8, 60])
def test_map_discs_are_about_one_spot_spacing_wide(n_side):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from spotfill.plotting._figures import spatial_maps

    row, col = np.divmod(np.arange(n_side * n_side), n_side)
    xy = np.c_[col, row].astype(float) * 137.0  # any unit
    fig = spatial_maps(xy, ["g"], {"raw": np.ones((xy.shape[0], 1)), "m": np.ones((xy.shape[0], 1))})
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    points_per_unit = ax.get_window_extent().width * 72 / fig.dpi / np.ptp(ax.get_xlim())
    disc = np.sqrt(ax.collections[0].get_sizes()[0])  # diameter in points
    assert 0.6 < disc / (137.0 * points_per_unit) < 1.2


def test_report_takes_a_selection_file_for_one_dataset_only_and_protects_it(tmp_path):
    results = tmp_path / "r.csv"
    results.write_text("dataset,method,protocol,seed,metric,value\nd,mean,p2,0,nll,0.5\n")
    selection = tmp_path / "sel.csv"
    selection.write_text("x,y,new_x,new_y,pixel_x,pixel_y,selected\n")
    two = [tmp_path / "a.tsv", tmp_path / "b.tsv"]
    with pytest.raises(InputError, match=r"names the spot file of one ST section, but 2 --data were given"):
        report(results, data=two, out=tmp_path / "r.html", read_options={"selection": selection})
    with pytest.raises(InputError, match="sel.html: it is one of the input files"):  # the spot file is an input
        report(results, data=two[:1], out=tmp_path / "sel.html", read_options={"selection": tmp_path / "sel.html"})


COLS = ["dataset", "n_spots", "n_genes", "protocol", "method", "seed", "metric", "value", "status", "error"]


def test_a_partly_failed_method_does_not_take_the_best_from_the_others(tmp_path):
    """Flaky's mean (0.1) beats good's (0.5) but two of its seeds failed: good is the best of the column."""
    rows = []
    for seed in (0, 1, 2):
        rows.append(("d", 10, 5, "p2", "good", seed, "nll", 0.5, "ok", ""))
        rows.append(("d", 10, 5, "p2", "worse", seed, "nll", 0.9, "ok", ""))
        if seed == 0:
            rows.append(("d", 10, 5, "p2", "flaky", seed, "nll", 0.1, "ok", ""))
        else:
            rows.append(("d", 10, 5, "p2", "flaky", seed, "seconds", np.nan, "failed", "out of memory"))
    text = report(pd.DataFrame(rows, columns=COLS), out=tmp_path / "r.html").read_text()
    assert text.count('<td class="best">') == 1
    assert '<td class="best">0.5 &plusmn; 0</td>' in text


def test_a_single_method_is_never_highlighted_best(tmp_path):
    rows = [("d", 10, 5, "p2", "only", seed, "nll", 0.5 + seed, "ok", "") for seed in (0, 1)]
    text = report(pd.DataFrame(rows, columns=COLS), out=tmp_path / "r.html").read_text()
    assert "<td>1 &plusmn; 0.71</td>" in text  # mean 1, sample sd 0.71, not highlighted
    assert 'class="best"' not in text


def test_a_fractional_seed_is_refused(tmp_path):
    rows = [("d", 10, 5, "p2", "m", 0.5, "nll", 1.0, "ok", "")]
    with pytest.raises(InputError, match="whole numbers"):
        report(pd.DataFrame(rows, columns=COLS), out=tmp_path / "r.html")


def test_the_cost_table_shows_base_mb_when_measured(tmp_path):
    rows = [
        ("synthetic:10x5", 10, 5, "p5", "m", 0, metric, value, "ok", "")
        for metric, value in (("seconds", 1.0), ("peak_mb", 200.0), ("base_mb", 150.0))
    ]
    text = report(pd.DataFrame(rows, columns=COLS), out=tmp_path / "r.html").read_text()
    assert "<th>P5 base_mb</th>" in text
    assert "<td>150</td>" in text


def test_cost_figure_data_average_the_seeds_that_succeeded():
    from spotfill.plotting._report import _cost_frame

    rows = [
        ("d", 10, 5, "p5", "m", 0, "seconds", 2.0, "ok", ""),
        ("d", 10, 5, "p5", "m", 1, "seconds", 100.0, "failed", "over time (> 100 s)"),
        ("d", 10, 5, "p5", "m", 2, "seconds", 4.0, "ok", ""),
        ("d", 10, 5, "p5", "dead", 0, "seconds", 7.0, "failed", "boom"),
        ("d", 10, 5, "p1", "m", 0, "seconds", 50.0, "ok", ""),  # P5 is there: the other protocols' costs are not
    ]
    cost = _cost_frame(pd.DataFrame(rows, columns=COLS)).set_index("method")
    assert cost.loc["m", "mean"] == pytest.approx(3.0)  # the failed seed's 100 s is left out
    assert not cost.loc["m", "failed"]  # partly failed: drawn with the ok seeds' mean
    assert np.isnan(cost.loc["dead", "mean"])
    assert cost.loc["dead", "failed"]


def test_data_panels_hold_out_the_entries_of_the_seed_asked_for(tmp_path):
    def held_out_figure(seed: int) -> str:
        rows = [("synthetic:36x6", 36, 6, "p1", "libsize_mean", seed, "rmse", 1.0, "ok", "")]
        out = report(pd.DataFrame(rows, columns=COLS), data="synthetic:36x6", seed=seed, out=tmp_path / f"r{seed}.html")
        (img,) = re.findall(r'<img alt="predicted vs true" src="([^"]+)"', out.read_text())
        return img

    assert held_out_figure(0) != held_out_figure(1)  # libsize_mean ignores the seed: only the P1 mask differs


def test_a_protocol_whose_every_call_failed_still_gets_its_score_column(tmp_path):
    rows = [
        ("d", 10, 5, "p2", "m", 0, "seconds", np.nan, "failed", "ValueError: boom"),
        ("d", 10, 5, "p2", "m", 0, "peak_mb", np.nan, "failed", "ValueError: boom"),
    ]
    text = report(pd.DataFrame(rows, columns=COLS), out=tmp_path / "r.html").read_text()
    assert "<h3>Scores</h3><table><tr><th>method</th><th>P2 nll</th></tr>" in text
    assert text.count('<td class="failed">failed: ValueError: boom</td>') == 3  # nll, seconds, peak_mb


def test_panels_show_at_most_six_methods(tmp_path):
    methods = ["libsize_mean", "mean", "median", "mode", "knn", "spatial_knn", "interpolate"]  # seven
    rows = [("synthetic:36x6", 36, 6, "p1", m, 0, "rmse", 1.0, "ok", "") for m in methods]
    text = report(pd.DataFrame(rows, columns=COLS), data="synthetic:36x6", out=tmp_path / "r.html").read_text()
    assert "Panels show the first 6 methods." in text
