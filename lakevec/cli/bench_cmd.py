"""``lakevec bench {search,ingest,index,cache,scale,join} [ARGS...]``: run a benchmark of ``lakevec.bench``.

Everything after the benchmark name is passed unchanged to ``lakevec.bench.<name>.main(argv)``, which
prints its own report; ``lakevec bench search --help`` shows the benchmark's options. The exit code is
the benchmark's (e.g. non-zero when a target fails).
"""
from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "search": "batch search vs Lance IVF_FLAT and faiss IVFFlat: recall, queries/s, memory",
    "ingest": "Parquet -> lake ingestion throughput per engine",
    "index": "IVF index build time per engine",
    "cache": "NVMe cache: cold vs warm reads, hit ratio, cost",
    "scale": "metadata cost as tables grow: appends into 1M-16M rows, cold open after 1,000 commits",
    "join": "similarity joins (10k x 1M, WordNet self-join) vs faiss, Lance, brute force, Spark",
    "optimize": "index maintenance under drift: optimize vs a fresh rebuild (imbalance, search time, bytes)",
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="run a benchmark (search, ingest, index, cache)",
        description=__doc__.split("\n", 2)[2].strip()
        + "\n\nbenchmarks:\n" + "\n".join(f"  {k:<8} {v}" for k, v in BENCHMARKS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lakevec bench search --help\n  lakevec bench search --dataset sift10k")
    p.add_argument("name", choices=list(BENCHMARKS), metavar="BENCHMARK", help=", ".join(BENCHMARKS))
    p.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments of the benchmark")
    p.set_defaults(func=run)


def load_benchmark(name: str):
    """Return the module ``lakevec.bench.<name>``, or raise LakevecError if it is not available."""
    from ..errors import LakevecError

    modname = f"lakevec.bench.{name}"
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name == modname:
            raise LakevecError(f"benchmark {name!r} is not available in this lakevec installation "
                               f"(module {modname} does not exist yet)") from None
        top = (e.name or "").split(".")[0]
        extra = {"pyspark": "spark", "ray": "ray", "pandas": "pandas", "matplotlib": "notebooks"}.get(top)
        hint = f"; install it with pip install 'lakevec[{extra}]'" if extra else ""
        raise LakevecError(f"benchmark {name!r} needs the module {e.name!r}, which is not installed{hint}") from e
    if not callable(getattr(mod, "main", None)):
        raise LakevecError(f"benchmark module {modname} has no main(argv) function")
    return mod


def run(args) -> dict:
    mod = load_benchmark(args.name)
    argv = list(args.bench_args or [])
    if argv[:1] == ["--"]:
        argv = argv[1:]
    try:
        rc = mod.main(argv)
    except SystemExit as e:  # a benchmark's argparse exits on --help and on bad arguments
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return {"bench": args.name, "argv": argv, "exit_code": int(rc or 0)}


def format_text(result: dict) -> str:
    return ""  # the benchmark printed its own report
