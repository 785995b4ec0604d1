"""The ``spotfill`` command line: parse, call the public API, write. No logic of its own."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._errors import SpotfillError, Stopped
from ._params import parse_params, split_top_level
from ._version import __version__

__all__ = ["main"]


def _parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    return parse_params(list(items or ()), usage="--param expects KEY=VALUE")


def _read_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if getattr(args, "transpose", False):
        opts["transpose"] = True
    if getattr(args, "coords", None):
        opts["coords"] = args.coords
    if getattr(args, "bin_size", None) is not None:
        opts["bin_size"] = args.bin_size
    if getattr(args, "format", "auto") != "auto":
        opts["format"] = args.format
    selection = getattr(args, "selection", None)
    if selection is not None:
        opts["selection"] = False if selection.strip().lower() == "none" else selection
    return opts


def _cmd_info(args: argparse.Namespace) -> int:
    from .io import read, summarize

    adata = read(args.path, **_read_options(args))
    for key, value in summarize(adata, path=args.path, layer=args.layer).items():
        print(f"{key}: {value}")
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:  # noqa: ARG001
    from .methods import list_methods

    table = list_methods()
    width = max(len(n) for n in table["name"]) + 2
    for row in table.itertuples():
        print(f"{row.name:<{width}}{row.family:<14}{row.description}")
        if row.key_params:
            print(f"{'':<{width}}{'':<14}params: {row.key_params}")
    return 0


def _cmd_impute(args: argparse.Namespace) -> int:
    from .io import read, write
    from .io._write import check_free_space, check_target
    from .methods import impute
    from .methods._impute import _resolve_default

    params = _parse_params(args.param)
    clash = sorted(set(params) & {"method", "layer", "key_added", "genes", "copy", "mask"})
    if clash:
        msg = (
            f"--param {clash[0]}=... is an option of the command, not a method parameter"
            + ("" if clash[0] in ("copy", "mask") else f": use --{clash[0].replace('_', '-')}")
            + " (see spotfill impute --help)."
        )
        raise SpotfillError(msg)
    # --param seed=/device= are the same options as --seed/--device (impute takes them by name)
    seed, device = params.pop("seed", args.seed), params.pop("device", args.device)
    # impute's own default key, resolved here so that a .csv/.tsv output can export the result layer
    key = args.key_added or f"imputed_{args.method or _resolve_default()}"
    adata = read(args.input, **_read_options(args))
    table = not args.output.lower().endswith(".h5ad")
    genes = [g.strip() for g in args.genes.split(",") if g.strip()] if args.genes is not None else None
    if genes is not None and args.export_layer is not None:
        msg = "--export-layer and --genes exclude each other: --genes exports the imputed genes themselves."
        raise SpotfillError(msg)
    layer = (args.export_layer or key) if table and genes is None else args.export_layer
    n_columns = None if genes is None else len(genes)
    check_target(adata, args.output, overwrite=args.overwrite, layer=layer, n_columns=n_columns)  # before imputing
    if not table:  # the result's float32 layer (or genes table) must fit on the disk too: refused before the fit
        n_result = adata.n_obs * (adata.n_vars if genes is None else len(genes))
        check_free_space(adata, Path(args.output).expanduser(), extra=4 * n_result)
    if layer is not None and layer != key and layer not in adata.layers:
        msg = (
            f"--export-layer {layer!r} is neither a layer of {args.input} ({sorted(adata.layers) or 'none'}) nor the "
            f"result's key ({key!r})."
        )
        raise SpotfillError(msg)
    if args.coord_type is not None:  # the graph is rebuilt as asked (a stored one is replaced), per section as before
        from .graph import spatial_neighbors
        from .methods._impute import stored_library_key

        library_key = args.library_key if args.library_key is not None else stored_library_key(adata)
        spatial_neighbors(adata, coord_type=args.coord_type, library_key=library_key)
    impute(
        adata,
        args.method,
        layer=args.layer,
        key_added=key,
        genes=genes,
        seed=seed,
        device=device,
        library_key=args.library_key,  # else impute takes the one recorded with the graph, for spatial methods
        **params,
    )
    if genes is not None and table:  # the spots x genes table of the imputed genes
        import anndata as ad

        adata = ad.AnnData(adata.obsm[key])
    write(adata, args.output, overwrite=args.overwrite, layer=layer)
    print(f"wrote {args.output}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .datasets import run_demo

    for line in run_demo(out=Path(args.out), method=args.method, seed=args.seed):
        print(line)
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from .benchmark import run_benchmark

    try:
        seeds = None if args.seeds is None else [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        msg = f"--seeds takes comma-separated integers, e.g. --seeds 0,1,2; got {args.seeds!r}."
        raise SpotfillError(msg) from None
    run_benchmark(
        args.data,
        protocols=[p.strip() for p in args.protocol.split(",") if p.strip()],
        methods=split_top_level(args.methods),
        seeds=seeds,
        out=args.out,
        isolate=not args.in_process,
        frac=args.frac,
        timeout=args.timeout,
        overwrite=args.overwrite,
        read_options=_read_options(args),
        layer=args.layer,
        library_key=args.library_key,
    )
    print(f"wrote {args.out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .plotting import report

    report(
        args.results,
        data=args.data,
        out=args.out,
        overwrite=args.overwrite,
        read_options=_read_options(args),
        layer=args.layer,
        library_key=args.library_key,
    )
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``spotfill`` command."""
    parser = argparse.ArgumentParser(
        prog="spotfill", description="Spatially aware imputation and denoising of spatial transcriptomics counts."
    )
    parser.add_argument("--version", action="version", version=f"spotfill {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    # -v is also taken after the subcommand (spotfill impute ... -v); SUPPRESS keeps the top-level value
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress messages"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add_read_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--transpose", action="store_true", help="count tables (generic or ST): rows are genes, columns spots"
        )
        p.add_argument("--coords", help="generic tables: a CSV/TSV of spot coordinates (spot, x, y)")
        p.add_argument(
            "--bin-size", type=int, default=None, help="Stereo-seq GEM files: DNBs per side of a spot (default 50)"
        )
        p.add_argument(
            "--format",
            default="auto",
            choices=["auto", "h5ad", "visium", "st", "table", "gem"],
            help="the input's format (default: auto, detected from the name and, for tables, the spot names)",
        )
        p.add_argument(
            "--selection",
            default=None,
            metavar="FILE|none",
            help="ST count tables: the spot selection file (*_selection.tsv; default: found beside the table; "
            "one dataset only), or none to use the array positions in the spot names (a file named none: ./none)",
        )

    p = sub.add_parser(
        "info", parents=[verbose], help="describe a dataset: format, size, sparsity, grid, neighbours, labels"
    )
    p.add_argument("path", help="a dataset: .h5ad, Space Ranger folder, ST or count table, GEM file (see --format)")
    p.add_argument("--layer", default=None, help="describe this layer (e.g. raw counts) instead of X")
    add_read_options(p)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("methods", parents=[verbose], help="list the available imputation methods")
    p.set_defaults(func=_cmd_methods)

    p = sub.add_parser(
        "impute", parents=[verbose], help="impute a dataset and write an .h5ad (or a CSV of the result layer)"
    )
    p.add_argument("input", help="a dataset: .h5ad, Space Ranger folder, ST or count table, GEM file (see --format)")
    p.add_argument(
        "output",
        help=".h5ad (the data with the result in layers[KEY_ADDED]) or .csv/.tsv (the result as a spots x genes table)",
    )
    p.add_argument("--method", default=None, help="method name (default: the recommended method)")
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="method parameter (repeatable); values are numbers, strings, true/false or none",
    )
    p.add_argument("--key-added", default=None, help="output layer name (default imputed_<method>)")
    p.add_argument("--layer", default=None, help="input layer with raw counts (default X)")
    p.add_argument(
        "--library-key",
        default=None,
        help="obs column naming each spot's section, for several sections in one file (default: the one "
        "spotfill.spatial_neighbors recorded for the stored graph, if any; squidpy records none)",
    )
    p.add_argument(
        "--coord-type",
        default=None,
        choices=["grid", "generic"],
        help="build the spatial graph from the array grid (array_row/array_col) or as 6 nearest neighbours of "
        "obsm['spatial'], replacing a stored one (default: use the stored graph, else build one as "
        "spotfill.spatial_neighbors does)",
    )
    p.add_argument(
        "--genes",
        default=None,
        help="comma-separated gene names: predict only these, into obsm[key] (.h5ad) or the table; for large data",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the method's random steps (default 0)")
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="for methods that run on torch (default: auto, CUDA when present); CPU-only methods ignore it",
    )
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing output file")
    p.add_argument(
        "--export-layer", default=None, help="for a .csv/.tsv output: the layer to export (default: the result)"
    )
    add_read_options(p)
    p.set_defaults(func=_cmd_impute)

    p = sub.add_parser(
        "demo",
        parents=[verbose],
        help="run the default method on the bundled mouse olfactory bulb data",
        description="Impute the bundled mouse olfactory bulb data; write OUT/mob_imputed.h5ad (the data with the "
        "imputed layer) and OUT/mob_markers.png (four layer markers, raw and imputed), replacing earlier ones.",
    )
    p.add_argument("--out", default="spotfill_demo", help="output folder")
    p.add_argument("--method", default=None, help="method name (default: the recommended method)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("benchmark", parents=[verbose], help="score methods with the BENCHMARK.md protocols")
    p.add_argument(
        "data",
        nargs="+",
        help=".h5ad files, other formats spotfill.read takes (a count table with --coords: one file), "
        "or 'synthetic:N_SPOTSxN_GENES'",
    )
    p.add_argument("--protocol", default="p1", help="comma-separated, of p1,p2,p3,p4,p5 (default: p1)")
    p.add_argument(
        "--methods",
        required=True,
        help="comma-separated names, name[key=value,...] for a registered method with parameters "
        "(e.g. 'spotfill[gene_prior=5]'), or module:function callables",
    )
    p.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds for every protocol (default: each protocol's own, P1 0,1,2 and the others 0)",
    )
    p.add_argument("--out", default="results.csv", help="results CSV (default: results.csv)")
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing --out file")
    p.add_argument("--in-process", action="store_true", help="run methods in this process (no memory isolation)")
    p.add_argument("--frac", type=float, default=0.1, help="P1: fraction of non-zero entries held out (default 0.1)")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per method call, beyond which it is recorded as failed (default: none)",
    )
    p.add_argument("--layer", default=None, help="the layer holding the raw counts (default X)")
    p.add_argument(
        "--library-key",
        default=None,
        help="obs column naming each spot's section, for files holding several sections: each section is "
        "scored as a dataset of its own, named DATASET:SECTION",
    )
    add_read_options(p)
    p.set_defaults(func=_cmd_benchmark)

    p = sub.add_parser("report", parents=[verbose], help="turn a benchmark CSV into a self-contained HTML report")
    p.add_argument("results")
    p.add_argument(
        "--data",
        nargs="*",
        default=None,
        help="datasets (any format spotfill reads; the read options below apply) for spatial maps, P1 and P4 panels",
    )
    p.add_argument("--out", default="report.html", help="HTML file (default: report.html)")
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing --out file")
    p.add_argument("--layer", default=None, help="--data: the layer holding the raw counts (default X)")
    p.add_argument(
        "--library-key",
        default=None,
        help="--data: obs column naming each spot's section; panels per section, named DATASET:SECTION as "
        "spotfill benchmark --library-key names them",
    )
    add_read_options(p)
    p.set_defaults(func=_cmd_report)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    print(f"spotfill: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (2 for a user error, with a one-line message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    # SIGTERM and SIGHUP end the run as an exception, so that the atomic writes' clean-up runs and no
    # temporary file is left behind; Python's default would exit on the spot
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in _STOP_SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup ignores SIGHUP: keep it ignored
                previous[sig] = signal.signal(sig, _terminate)
    try:
        with warnings.catch_warnings():  # one line per warning, as the errors
            warnings.showwarning = _show_warning
            code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except KeyboardInterrupt:
        print("spotfill: interrupted", file=sys.stderr)
        return 130
    except (_Terminated, Stopped) as err:  # Stopped: the benchmark's own handler, while a worker runs
        print("spotfill: terminated", file=sys.stderr)
        return int(err.code) if isinstance(err, Stopped) else 128 + err.signum
    except BrokenPipeError:  # the reader went away (spotfill methods | head -1): nothing left to say
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        except (OSError, ValueError):  # stdout without a file descriptor
            pass
        return 0
    except (SpotfillError, OSError) as err:  # OSError: missing files, permissions, a full disk
        msg = str(err) if not isinstance(err, OSError) or not err.filename else f"{err.strerror}: {err.filename}"
        print(f"spotfill: error: {msg}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# a scheduler's time limit or kill (SIGTERM), a closed terminal (SIGHUP)
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class _Terminated(BaseException):  # noqa: N818 - named for what happened, as KeyboardInterrupt
    """SIGTERM or SIGHUP arrived while a command ran (a BaseException: no ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)


def _terminate(signum: int, frame: object) -> None:  # noqa: ARG001 - a signal handler's signature
    raise _Terminated(signum)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
