"""The report attached to every join: sizes, the plan and its alternative, I/O, cost, time, recall.

Recall estimate: a uniform random sample of left rows (``recall_sample``, default 200; every left row gets a
hash priority, the lowest win, so the sample does not depend on sharding or engine) is searched *exactly*
against the same right version: phase-2 tasks score the sample on every right partition they own (each
partition is owned by exactly one task, even if no left row probes it) and on the unassigned fragments.
The estimate is the mean over sampled rows of |join's pairs ∩ exact pairs| / |exact pairs| (top-k, or all
pairs within the radius for a range join; a self-join excludes the row itself from both).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from ..store.accounting import IOSnapshot
from .merge import concat, finalize


@dataclass
class JoinReport:
    """What one join did; ``to_dict()`` for JSON, ``str()`` for a summary."""

    job_id: str
    engine: str
    plan: str
    plan_reason: str
    left: str
    right: str
    right_version: int
    metric: str
    k: int | None
    radius: float | None
    nprobe: int
    self_join: bool
    dedup: bool
    rows_left: int = 0
    pairs: int = 0
    rows_without_pairs: int = 0
    rows_fewer_than_k: int = 0
    max_pairs_per_row: int | None = None
    rows_capped: int = 0
    partitions: dict = field(default_factory=dict)
    right_bytes: dict = field(default_factory=dict)
    shuffle: dict = field(default_factory=dict)
    estimates: dict = field(default_factory=dict)
    io: dict = field(default_factory=dict)
    estimated_cost_usd: float = 0.0
    seconds: dict = field(default_factory=dict)
    recall: dict = field(default_factory=dict)
    tasks: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return format_report(self.to_dict())


def _b(n) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_report(r: dict) -> str:
    """A few readable lines (the CLI prints them)."""
    what = (f"kNN k={r['k']}" if r["k"] is not None else "range") + (
        f" within {r['radius']:g}" if r.get("radius") is not None else "")
    lines = [f"join {r['left']} x table {r['right']!r} (version {r['right_version']}): {what}, nprobe {r['nprobe']}, "
             f"{r['metric']}" + (", self-join" if r["self_join"] else "") + (", dedup" if r["dedup"] else "")
             + f" on {r['engine']}"]
    lines.append(f"  {r['rows_left']:,} left rows -> {r['pairs']:,} pairs"
                 + (f"; {r['rows_fewer_than_k']:,} rows with fewer than k" if r.get("rows_fewer_than_k") else "")
                 + (f"; {r['rows_capped']:,} rows hit the cap of {r['max_pairs_per_row']} pairs"
                    if r.get("rows_capped") else ""))
    rec = r.get("recall") or {}
    if rec.get("estimate") is not None:
        lines.append(f"  recall@{rec.get('k') or 'range'} estimate {rec['estimate']:.4f} "
                     f"({rec.get('sample_rows')} sampled rows searched exactly)")
    p, rb = r.get("partitions") or {}, r.get("right_bytes") or {}
    if p:
        lines.append(f"  plan {r['plan']}: {r['plan_reason']}")
        lines.append(f"  right: {p.get('read', 0):,} of {p.get('total', 0):,} partitions read "
                     f"({p.get('reads', 0):,} partition reads), {_b(rb.get('read'))} read for "
                     f"{_b(rb.get('distinct_read'))} distinct: each byte read {rb.get('reads_per_byte', 0):.2f}x")
    sh = r.get("shuffle") or {}
    if sh:
        lines.append(f"  shuffle: {_b(sh.get('bytes_written'))} written to scratch, {_b(sh.get('bytes_read'))} read")
    est = r.get("estimates") or {}
    if est:
        lines.append("  estimates: " + "; ".join(
            f"{k}: shuffle {_b(v['shuffle_bytes'])}, right reads {_b(v['right_read_bytes'])} "
            f"({v['read_amplification']:.2f}x), {v['tasks']} tasks" for k, v in est.items()))
    io = (r.get("io") or {}).get("total") or {}
    if io:
        lines.append(f"  I/O: {_b(io.get('bytes_read'))} from the store in {io.get('gets', 0):,} GETs, "
                     f"{_b(io.get('cache_bytes_read'))} from the NVMe cache ({io.get('cache_hits', 0):,} hits, "
                     f"{io.get('cache_misses', 0):,} misses), {io.get('puts', 0):,} PUTs; "
                     f"estimated cost ${r.get('estimated_cost_usd', 0):.6f}")
    s = r.get("seconds") or {}
    if s:
        lines.append("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()))
    out = r.get("output") or {}
    if out.get("uri"):
        state = "already committed by an earlier run: nothing written" if out.get("skipped") else \
            f"committed {out.get('parts', 0)} part(s)"
        lines.append(f"  output {out['uri']}: {state} (key {out.get('key')})")
    return "\n".join(lines)


def recall_estimate(sample_refs: np.ndarray, exact: list, found: list, k: int | None, radius: float | None,
                    cap: int, self_join: bool) -> dict:
    """Recall of the join on the sampled rows (see the module docstring)."""
    out = {"estimate": None, "k": k, "sample_rows": int(len(sample_refs)), "rows_compared": 0,
           "method": "exact search of a uniform sample of left rows against the same right version"}
    if not len(sample_refs):
        return out
    ex, _ = finalize(concat(exact), k, radius, cap, self_join)
    fd = concat(found)
    if ex is None:
        out["rows_compared"] = 0
        return out
    exact_sets: dict = {}
    for r, a in zip(ex.column("_ref").to_numpy(), ex.column("_raddr").to_numpy()):
        exact_sets.setdefault(int(r), set()).add(int(a))
    found_sets: dict = {}
    if fd is not None:
        for r, a in zip(fd.column("_ref").to_numpy(), fd.column("_raddr").to_numpy()):
            found_sets.setdefault(int(r), set()).add(int(a))
    vals = [len(found_sets.get(r, set()) & e) / len(e) for r, e in exact_sets.items() if e]
    out["rows_compared"] = len(vals)
    out["estimate"] = round(float(np.mean(vals)), 4) if vals else None
    return out


def io_dict(snaps: dict, prices, remote: dict) -> tuple[dict, float]:
    """Per-store I/O dicts plus the total; the cost counts object-store requests of remote stores only."""
    out = {}
    total = IOSnapshot()
    cost = 0.0
    for name, snap in snaps.items():
        out[name] = snap.to_dict(prices)
        total = total + snap
        if remote.get(name):
            cost += snap.cost(prices)
        else:
            out[name]["estimated_cost_usd"] = 0.0
    out["total"] = total.to_dict(prices)
    out["total"]["estimated_cost_usd"] = cost
    return out, cost


def empty_result(left_id_type: pa.DataType, right_id_type: pa.DataType, extra: list) -> pa.Table:
    cols = {"left_id": pa.array([], left_id_type), "right_id": pa.array([], right_id_type),
            "distance": pa.array([], pa.float32()), "rank": pa.array([], pa.int32())}
    for name, t in extra:
        cols[name] = pa.array([], t)
    return pa.table(cols)
