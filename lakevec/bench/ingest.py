"""``lakevec bench ingest``: Parquet -> lake ingestion throughput per engine, beside its peers.

The data: the synthetic clustered set (``lakevec.bench.datasets``, default 1M x 128 float32, cached),
as uncompressed Parquet files (262,144 rows, 128 MB each at 128-d) uploaded once to an embedded S3
server (SeaweedFS on loopback; ``lakevec.store.seaweed``). Every contender reads those files from S3
and writes to S3; each repetition writes fresh outputs (deleted afterwards, outside the timing).

Contenders (rows/s and source MB/s; min/median/max over ``--repeat``):

* ``lakevec_local`` / ``lakevec_ray`` / ``lakevec_spark``: ``Table.add(<S3 folder>, engine=...)`` into a new
  table: read, validate every row, write Lance fragments, one commit. Ray and Spark run on this machine
  (``--num-cpus``) and are started before the timings, as a cluster that is already up; their start-up
  time is reported separately.
* ``lance_write_dataset``: a bare single-process ``lance.write_dataset`` of the same Parquet data (pyarrow
  dataset scanner from S3 -> Lance on S3), no validation: the baseline of the targets.
* ``ray_parquet``: Ray Data's own ``read_parquet(...).write_parquet(...)`` S3 -> S3.
* ``spark_parquet_local``: Spark's own ``read.parquet().write.parquet()``; on local disk, because Spark
  cannot read ``s3a://`` here (no hadoop-aws jars).

Targets: Spark and Ray ingestion >= 0.7x the rows/s of the bare ``lance.write_dataset``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from .engines import (ENGINES, aggregate, bench_main, log, mmm, parse_engines, ratio, report_tail, sessions,
                      table, target)

PEERS = ("lance_write_dataset", "ray_parquet", "spark_parquet_local")
TARGET_RATIO = 0.7


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lakevec bench ingest", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic set (default 1,000,000)")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--rows-per-file", type=int, default=262_144, help="rows per Parquet source file")
    p.add_argument("--engines", default=",".join(ENGINES), help="lakevec engines to run (default local,ray,spark)")
    p.add_argument("--peers", default=",".join(PEERS), help=f"peers to run (default {','.join(PEERS)}; '' for none)")
    p.add_argument("--repeat", type=int, default=1, help="repetitions (report min/median/max)")
    p.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1, help="cores of the local Ray/Spark")
    p.add_argument("--cache-dir", help="data set cache (default $LAKEVEC_BENCH_CACHE or ~/.cache/lakevec/bench)")
    p.add_argument("--work-dir", help="scratch folder (default: a temporary one, deleted)")
    p.add_argument("--out", help="write the report as JSON to this path")
    return p


def _s3fs(srv):
    import pyarrow.fs as pafs
    return pafs.S3FileSystem(access_key=srv.access_key, secret_key=srv.secret_key, region="us-east-1",
                             endpoint_override=srv.endpoint.split("://", 1)[1], scheme="http")


def _upload(srv, files: list[str], prefix: str) -> list[str]:
    import pyarrow.fs as pafs
    fs = _s3fs(srv)
    out = []
    for f in files:
        key = f"lakevec/{prefix}/{os.path.basename(f)}"
        pafs.copy_files(f, key, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        out.append(f"s3://{key}")
    return out


def _delete(srv, uri: str) -> None:
    try:
        _s3fs(srv).delete_dir(uri[len("s3://"):])
    except Exception:
        pass


def run_lakevec(engine: str, srv, src: str, dim: int, out: str) -> dict:
    import lakevec
    lake = lakevec.connect(out, storage_options=srv.storage_options)
    t = lake.create_table("bench", dim=dim)
    t0 = time.perf_counter()
    r = t.add(src, engine=engine)
    secs = time.perf_counter() - t0
    return {"label": f"lakevec_{engine}", "seconds": secs, "rows": r.rows_added, "rows_rejected": r.rows_rejected,
            "fragments": len(t.snapshot().fragments), "bytes_written": r.bytes_written}


def run_lance(srv, files: list[str], out: str) -> dict:
    import lance
    import pyarrow.dataset as pds
    fs = _s3fs(srv)
    t0 = time.perf_counter()
    dset = pds.dataset([f[len("s3://"):] for f in files], format="parquet", filesystem=fs)
    ds = lance.write_dataset(dset.scanner(batch_size=65536).to_reader(), f"{out}/bench.lance",
                             storage_options=srv.storage_options)
    secs = time.perf_counter() - t0
    return {"label": "lance_write_dataset", "seconds": secs, "rows": ds.count_rows()}


def run_ray_parquet(srv, files: list[str], out: str) -> dict:
    import ray.data
    fs = _s3fs(srv)
    t0 = time.perf_counter()
    ds = ray.data.read_parquet([f[len("s3://"):] for f in files], filesystem=fs)
    ds.write_parquet(out[len("s3://"):], filesystem=fs)
    secs = time.perf_counter() - t0
    return {"label": "ray_parquet", "seconds": secs}


def run_spark_parquet(local_files: list[str], out: str) -> dict:
    from pyspark.sql import SparkSession
    spark = SparkSession.getActiveSession()
    t0 = time.perf_counter()
    spark.read.parquet(*[f"file://{f}" for f in local_files]).write.mode("overwrite").parquet(f"file://{out}")
    secs = time.perf_counter() - t0
    return {"label": "spark_parquet_local", "seconds": secs}


def run(args) -> dict:
    from ..store.seaweed import EmbeddedS3
    from .datasets import clustered_dataset

    engines = parse_engines(args.engines)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    bad = [p for p in peers if p not in PEERS]
    if bad:
        raise SystemExit(f"--peers: unknown peer(s) {bad}; choose from {', '.join(PEERS)}")
    ds = clustered_dataset(args.rows, 10_000, dim=args.dim, rows_per_file=args.rows_per_file,
                           cache_dir=args.cache_dir, progress=lambda m: log("ingest", m))
    files = ds.parquet_files
    src_bytes = sum(os.path.getsize(f) for f in files)
    work = args.work_dir or tempfile.mkdtemp(prefix="lvbench-ingest-")
    os.makedirs(work, exist_ok=True)
    runs: list[list[dict]] = []
    with EmbeddedS3(workdir=os.path.join(work, "s3")) as srv:
        srcs = _upload(srv, files, "bench-src")
        src = "s3://lakevec/bench-src/"
        log("ingest", f"{len(files)} Parquet files, {src_bytes / 1e6:.0f} MB, {ds.n:,} rows uploaded to {srv.endpoint}")
        need = set(engines) | {"ray" for p in peers if p == "ray_parquet"} | {"spark" for p in peers
                                                                               if p == "spark_parquet_local"}
        with sessions(need, args.num_cpus, "ingest") as startup:
            for rep in range(args.repeat):
                run_ = []
                for label in [p for p in peers if p == "lance_write_dataset"] + engines + \
                        [p for p in peers if p != "lance_write_dataset"]:
                    out = f"s3://lakevec/bench-out/{rep}-{label}"
                    if label == "lance_write_dataset":
                        r = run_lance(srv, srcs, out)
                    elif label == "ray_parquet":
                        r = run_ray_parquet(srv, srcs, out)
                    elif label == "spark_parquet_local":
                        local_out = os.path.join(work, f"spark-out-{rep}")
                        r = run_spark_parquet(files, local_out)
                        shutil.rmtree(local_out, ignore_errors=True)
                    else:
                        r = run_lakevec(label, srv, src, ds.dim, out)
                    _delete(srv, out)
                    r["rows"] = ds.n
                    r["rows_per_s"] = ds.n / r["seconds"]
                    r["mb_per_s"] = src_bytes / 1e6 / r["seconds"]
                    run_.append(r)
                    log("ingest", f"rep {rep + 1}/{args.repeat} {r['label']}: {r['seconds']:.2f}s, "
                                  f"{r['rows_per_s']:,.0f} rows/s, {r['mb_per_s']:.0f} MB/s")
                runs.append(run_)
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    summary = aggregate(runs)
    ratios = {lab: ratio(runs, lab, "lance_write_dataset", "rows_per_s") for lab in summary
              if lab != "lance_write_dataset"}
    targets = []
    for e in ("ray", "spark"):
        if f"lakevec_{e}" in summary and "lance_write_dataset" in summary:
            targets.append(target(f"lakevec {e} ingestion rows/s >= {TARGET_RATIO}x bare lance.write_dataset",
                                  ratios[f"lakevec_{e}"]["median"], ">=", TARGET_RATIO))
    from .report import machine_info
    return {"bench": "ingest", "dataset": ds.info(), "source_bytes": src_bytes, "source_files": len(files),
            "config": {"repeat": args.repeat, "num_cpus": args.num_cpus, "engines": engines, "peers": peers},
            "engine_startup_seconds": startup, "summary": summary, "ratios_vs_lance": ratios, "targets": targets,
            "machine": machine_info(), "runs": runs}


def format_report(rep: dict) -> str:
    d = rep["dataset"]
    lines = [f"ingest: {d['n']:,} rows x {d['dim']} ({rep['source_bytes'] / 1e6:.0f} MB in {rep['source_files']} "
             f"Parquet files on S3), repeat {rep['config']['repeat']}, {rep['config']['num_cpus']} cores",
             "median (min..max)", ""]
    rows = [["contender", "seconds", "rows/s", "MB/s", "x lance rows/s"]]
    for lab, s in rep["summary"].items():
        rows.append([lab, mmm(s.get("seconds"), ".2f"), mmm(s.get("rows_per_s"), ",.0f"), mmm(s.get("mb_per_s"), ".0f"),
                     mmm(rep["ratios_vs_lance"].get(lab), ".2f") if lab != "lance_write_dataset" else "1.00"])
    lines.append(table(rows))
    lines += report_tail(rep, ".2f")
    return "\n".join(lines)


def main(argv=None) -> int:
    return bench_main("ingest", parser, run, format_report, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

