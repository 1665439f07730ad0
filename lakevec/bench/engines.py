"""What ``lakevec bench ingest`` and ``lakevec bench index`` share: the embedded S3 server, Ray and Spark
sessions started once (outside the timings, like a cluster that is already up), the data set, timing
summaries and the text table.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time

from .measure import summarize

ENGINES = ("local", "ray", "spark")


def log(bench: str, msg: str) -> None:
    print(f"[bench {bench} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_engines(text: str) -> list[str]:
    out = [e.strip() for e in text.split(",") if e.strip()]
    bad = [e for e in out if e not in ENGINES]
    if bad or not out:
        raise SystemExit(f"--engines: unknown engine(s) {bad}; choose from {', '.join(ENGINES)}")
    return out


@contextlib.contextmanager
def sessions(engines, num_cpus: int, bench: str):
    """Start Ray and/or Spark once (the engines attach to them); yield {name: startup seconds}; stop them."""
    started: dict = {}
    tmp = None
    spark = None
    try:
        if "ray" in engines:
            import ray
            tmp = tempfile.mkdtemp(prefix="lvbench-ray-", dir="/tmp")
            t0 = time.perf_counter()
            ray.init(num_cpus=num_cpus, _temp_dir=tmp, include_dashboard=False, logging_level=logging.ERROR,
                     log_to_driver=False)
            from ray.data import DataContext
            DataContext.get_current().enable_progress_bars = False
            started["ray"] = time.perf_counter() - t0
            log(bench, f"ray started with {num_cpus} CPUs in {started['ray']:.1f}s")
        if "spark" in engines:
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
            from pyspark.sql import SparkSession
            t0 = time.perf_counter()
            spark = (SparkSession.builder.master(f"local[{num_cpus}]").appName(f"lakevec-bench-{bench}")
                     .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                     .config("spark.driver.memory", "4g").config("spark.python.worker.reuse", "true")
                     .getOrCreate())
            spark.sparkContext.setLogLevel("ERROR")
            spark.range(num_cpus, numPartitions=num_cpus).rdd.map(lambda x: x).count()  # start Python workers
            started["spark"] = time.perf_counter() - t0
            log(bench, f"spark started (local[{num_cpus}]) in {started['spark']:.1f}s")
        yield started
    finally:
        if spark is not None:
            spark.stop()
        if "ray" in started:
            import ray
            ray.shutdown()
        if tmp:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


def aggregate(runs: list[list[dict]]) -> dict:
    """{label: {field: {min, median, max, n}}} over repetitions, for every numeric field."""
    out: dict = {}
    for run in runs:
        for r in run:
            s = out.setdefault(r["label"], {})
            for k, v in r.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    s.setdefault(k, []).append(float(v))
    return {lab: {k: summarize(v) for k, v in fields.items()} for lab, fields in out.items()}


def ratio(runs: list[list[dict]], label: str, vs: str, field: str) -> dict:
    """{min, median, max} of ``label.field / vs.field`` paired within each repetition."""
    vals = []
    for run in runs:
        by = {r["label"]: r for r in run}
        if label in by and vs in by and by[vs].get(field):
            vals.append(by[label][field] / by[vs][field])
    return summarize(vals)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, r in enumerate(rows):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def mmm(s: dict | None, spec: str) -> str:
    """``median (min..max)`` of a summary."""
    if not s or s.get("median") is None:
        return "-"
    if s.get("n", 1) > 1:
        return f"{format(s['median'], spec)} ({format(s['min'], spec)}..{format(s['max'], spec)})"
    return format(s["median"], spec)


def target(name: str, value, op: str, threshold: float) -> dict:
    if value is None:
        return {"name": name, "value": None, "op": op, "threshold": threshold, "status": "SKIP"}
    ok = value >= threshold if op == ">=" else value <= threshold
    return {"name": name, "value": value, "op": op, "threshold": threshold, "status": "PASS" if ok else "FAIL"}


def report_tail(rep: dict, value_format: str = ".2f") -> list[str]:
    """Return the closing lines shared by the engine benchmarks: engine start-up times and targets."""
    lines = []
    if rep.get("engine_startup_seconds"):
        lines.append("engine start-up (not in the timings): " + ", ".join(
            f"{k} {v:.1f}s" for k, v in rep["engine_startup_seconds"].items()))
    if rep["targets"]:
        lines += ["", "targets:"]
        for t in rep["targets"]:
            v = "-" if t["value"] is None else format(t["value"], value_format)
            lines.append(f"  {t['status']:4}  {t['name']}: {v} ({t['op']} {t['threshold']})")
    return lines


def bench_main(name: str, parser, run, format_report, argv=None) -> int:
    """Parse ``argv``, run the benchmark, print its report, write JSON (--out); exit 1 if a target fails."""
    args = parser().parse_args(argv)
    rep = run(args)
    print(format_report(rep))
    if args.out:
        from .report import write_json
        write_json(rep, args.out)
        log(name, f"wrote {args.out}")
    return 0 if all(t["status"] != "FAIL" for t in rep["targets"]) else 1
