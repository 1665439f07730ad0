"""Run a pipeline: its steps in order, each idempotent (see ``steps``), with a JSON run report.

``run(pipeline, dry_run=False, only=None)`` returns the report::

    {"pipeline", "lake", "run_id", "dry_run", "started_at", "seconds", "committed": <steps that committed>,
     "steps": [{"name", "kind", "table", "status": "committed" | "no-op" | "planned" | "failed", "seconds",
                "version", "rows", "io": {gets, puts, lists, bytes_read, bytes_written, cost...}, ...}],
     "estimated": {"gets", "puts", "lists", "bytes_read", "bytes_written", "cost_usd"}   # dry runs}

A step that fails stops the run (the report says which and why; the error is raised after the report is
built, so ``lakevec pipeline run`` prints both): the steps before it keep what they committed, the next
run redoes only what had not committed. Requests and bytes are this process's counters of the lake's store
(work done inside Spark/Ray tasks on other processes is not counted there).
"""
from __future__ import annotations

import time
import uuid

from ..config import PriceTable
from ..errors import LakevecError
from .spec import Pipeline
from .steps import STEPS


class _Ctx:
    def __init__(self, lake, pipeline: Pipeline, run_id: str):
        self.lake = lake
        self.pipeline = pipeline
        self.run_id = run_id


class _NoLake:
    """The lake of a dry run whose lake does not exist yet: every table is missing, nothing is read."""

    def __init__(self, pipeline):
        from ..store.accounting import IOCounters
        from ..store.location import parse_location
        self.uri = parse_location(pipeline.lake, pipeline.storage_options).uri
        self.storage_options = pipeline.storage_options
        self.store = type("S", (), {"counters": IOCounters()})()
        self.cache = None

    def open_table(self, name):
        from ..errors import TableNotFoundError
        raise TableNotFoundError(f"table {name!r} not found: lake {self.uri} does not exist yet")


def _prices(lake) -> PriceTable:
    """The lake's price table (zero for a lake on local disk: see lakevec.cache.open_cache)."""
    return getattr(lake.cache, "prices", None) or PriceTable()


def run(pipeline: Pipeline, dry_run: bool = False, only=None, lake=None, progress=None) -> dict:
    """Run (or, with ``dry_run``, plan) ``pipeline``; return the run report. ``progress(line)`` is called
    with one line per finished step."""
    import lakevec
    t0 = time.time()
    say = progress or (lambda line: None)
    if lake is None:
        if dry_run:  # a dry run creates nothing, not even the lake marker
            from ..errors import NotALakeError
            from ..lake import Lake
            try:
                lake = Lake(pipeline.lake, pipeline.storage_options, create=False)
            except NotALakeError:
                lake = _NoLake(pipeline)
        else:
            lake = lakevec.connect(pipeline.lake, storage_options=pipeline.storage_options)
    ctx = _Ctx(lake, pipeline, uuid.uuid4().hex[:12])
    prices = _prices(lake)
    report = {"pipeline": pipeline.name, "lake": lake.uri, "run_id": ctx.run_id, "dry_run": dry_run,
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "steps": [], "committed": 0}
    error = None
    for step in pipeline.select(only):
        plan_fn, run_fn = STEPS[step.kind]
        before = lake.store.counters.snapshot()
        s0 = time.time()
        entry = {"name": step.name, "kind": step.kind, "table": step.table}
        try:
            if dry_run:
                out = plan_fn(ctx, step)
                out["status"] = "planned"
                out["cost_usd"] = prices.cost(gets=out.get("gets", 0), puts=out.get("puts", 0),
                                              lists=out.get("lists", 0))
            else:
                out = run_fn(ctx, step)
        except LakevecError as e:
            out = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            error = e
        except Exception as e:  # a bug: still report which step broke
            out = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            error = e
        io = lake.store.counters.snapshot() - before
        entry.update(out)
        entry["seconds"] = round(time.time() - s0, 3)
        entry["io"] = io.to_dict(prices)
        report["steps"].append(entry)
        report["committed"] += entry.get("status") == "committed"
        say(_line(entry, dry_run))
        if error is not None:
            break
    if dry_run:
        est = {k: sum(int(s.get(k) or 0) for s in report["steps"]) for k in
               ("gets", "puts", "lists", "bytes_read", "bytes_written")}
        est["cost_usd"] = prices.cost(gets=est["gets"], puts=est["puts"], lists=est["lists"])
        report["estimated"] = est
    report["seconds"] = round(time.time() - t0, 3)
    report["io"] = {k: sum(s["io"].get(k, 0) for s in report["steps"]) for k in
                    ("gets", "puts", "lists", "bytes_read", "bytes_written")}
    report["io"]["estimated_cost_usd"] = sum(s["io"].get("estimated_cost_usd", 0.0) for s in report["steps"])
    if error is not None:
        report["failed_step"] = report["steps"][-1]["name"]
        error.run_report = report  # type: ignore[attr-defined]
        raise error
    return report


def _line(entry: dict, dry_run: bool) -> str:
    head = f"{entry['name']} ({entry['kind']} {entry['table']!r})"
    if dry_run:
        extra = f", ~{entry.get('bytes_read', 0) / 1e6:,.1f} MB read, {entry.get('gets', 0) + entry.get('puts', 0)} " \
                f"requests, ~${entry.get('cost_usd', 0):.5f}"
        return f"{head}: {entry.get('action', '')}{extra}"
    if entry["status"] == "failed":
        return f"{head}: failed after {entry['seconds']:.1f}s: {entry.get('error')}"
    bits = [entry["status"]]
    if entry.get("version") is not None:
        bits.append(f"version {entry['version']}")
    if entry.get("rows") is not None:
        bits.append(f"{entry['rows']:,} rows")
    if entry.get("recall") is not None:
        bits.append(f"recall@k ~{entry['recall']:.3f}")
    return f"{head}: {', '.join(bits)} in {entry['seconds']:.1f}s"
