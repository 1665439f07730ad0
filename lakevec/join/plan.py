"""Planning a join: the bucket order, the cost model that picks the plan, and balanced task groups.

Buckets. Phase 1 writes every left row into *buckets* named after right partitions. Buckets are laid out in
a *locality order* of the partitions (recursive bisection of the centroids along their principal direction),
so a contiguous range of buckets holds partitions whose centroids are close together; a phase-2 task takes
one contiguous range, which every shard file serves with one ranged read.

Two plans (DESIGN §4, issue 8):

* ``shuffle`` -- move the left rows to the partitions they probe: phase 1 writes each row once per probed
  partition (``nprobe`` copies); each phase-2 task reads its range of partitions once, with every left row
  that probes them, and emits partial top-k; phase 3 merges per left row. Every probed right byte is read
  exactly once; the shuffle moves ``left bytes x nprobe``.
* ``grouped`` -- group the left rows by their nearest centroid: phase 1 writes each row once, into the bucket
  of its nearest partition, with its probe list; each phase-2 task reads a block of left rows (a range of
  buckets) and the union of the right partitions they probe, each once, and its results are final. The
  shuffle moves the left bytes once; a right partition probed by several blocks is read once per block.

The cost model estimates, from a sample of left rows probed against the centroids, the bytes each plan
moves: ``2 x shuffle bytes`` (written, then read) plus the right bytes read. It takes the cheaper plan and
reports both estimates (``shuffle_bytes``, ``right_read_bytes``, ``read_amplification``). With a single task
(a left side that fits in the task memory budget on the local engine) ``grouped`` reads every right byte
once and moves the left once: it is always chosen there. With many tasks the choice depends on nprobe and
on how much the blocks' probe sets overlap.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

PLANS = ("shuffle", "grouped")
LEAF = 8  # partitions per leaf of the locality order


@dataclass(frozen=True)
class JoinParams:
    """The parameters every task of one join shares (small, picklable)."""

    job_id: str
    metric: str
    dim: int
    k: int | None  # results per left row (None: range join without k)
    kk: int  # candidates kept per left row in tasks (k, +1 for a self-join)
    radius: float | None
    cap: int  # most pairs per left row of a range join (+1 for a self-join inside tasks)
    nprobe: int
    self_join: bool
    dedup: bool
    plan: str
    threads: int = 1  # scoring threads inside a task
    io_threads: int = 2
    sample_size: int = 200
    seed: int = 0
    merge_groups: int = 1  # phase-3 tasks (shuffle plan)
    dedup_buckets: int = 1  # phase-4 tasks (dedup)

    @property
    def range_only(self) -> bool:
        return self.k is None


def mix64(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fast 64-bit hash (splitmix64 finaliser) of int64/uint64 values; returns uint64."""
    z = np.asarray(x).astype(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (seed + 1)) & 0xFFFFFFFFFFFFFFFF)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def priorities(refs: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) priorities of left rows (the recall sample = the lowest ones, whatever the sharding)."""
    return (mix64(refs, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def locality_order(centroids: np.ndarray, seed: int = 0) -> np.ndarray:
    """Return the partitions in an order where neighbours in the order have close centroids."""
    c = np.asarray(centroids, dtype=np.float64)
    n = len(c)
    out: list[np.ndarray] = []
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(c.shape[1])

    def direction(x: np.ndarray) -> np.ndarray:
        v = v0.copy()
        for _ in range(12):  # power iteration on x^T x: the principal direction
            v = x.T @ (x @ v)
            nv = np.linalg.norm(v)
            if nv == 0:
                return v0
            v /= nv
        return v

    stack = [np.arange(n)]
    while stack:  # depth first, left half before right half
        idx = stack.pop()
        x = c[idx] - c[idx].mean(axis=0)
        p = x @ direction(x) if len(idx) > 1 else np.zeros(1)
        idx = idx[np.argsort(p, kind="stable")]
        if len(idx) <= LEAF:
            out.append(idx)
            continue
        half = len(idx) // 2
        stack.append(idx[half:])
        stack.append(idx[:half])
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


@dataclass
class PlanEstimate:
    """What one plan is expected to cost (bytes) for the cost model and the report."""

    plan: str
    tasks: int
    shuffle_bytes: int  # bytes written to scratch by phase 1 (and read back by phase 2)
    right_read_bytes: int  # right partition bytes read by phase 2
    right_distinct_bytes: int  # bytes of the distinct partitions probed
    read_amplification: float  # right_read_bytes / right_distinct_bytes
    moved_bytes: int  # 2 x shuffle + right reads: what the model minimises

    def to_dict(self) -> dict:
        return asdict(self)


def estimate(plan: str, n_left: int, dim: int, nprobe: int, part_bytes: np.ndarray, unassigned_bytes: int,
             sample_probes: np.ndarray | None, pos_of: np.ndarray, tasks: int, id_bytes: int = 8) -> PlanEstimate:
    """Estimate the bytes ``plan`` moves for ``n_left`` left rows probing ``nprobe`` partitions."""
    row = dim * 4 + 8 + id_bytes
    nlist = len(part_bytes)
    if sample_probes is None or not len(sample_probes) or n_left == 0:
        freq = np.full(nlist, min(1.0, nprobe / max(1, nlist)))
        sample_probes = None
    else:
        freq = np.bincount(sample_probes.ravel(), minlength=nlist) / len(sample_probes)
    distinct = int(np.sum(part_bytes * (1 - np.power(1 - np.minimum(freq, 1.0), max(n_left, 0)))))
    if plan == "shuffle":
        shuffle = n_left * nprobe * row + (n_left * row if unassigned_bytes else 0)
        right = distinct + unassigned_bytes
    else:
        shuffle = n_left * (row + nprobe * 4)
        right = 0.0
        if sample_probes is None or tasks <= 1:
            right = distinct * (1.0 if tasks <= 1 else min(tasks, 1 + (tasks - 1) * nprobe / max(1, nlist)))
        else:
            near = pos_of[sample_probes[:, 0]]
            order = np.argsort(near, kind="stable")
            for chunk in np.array_split(order, tasks):
                if not len(chunk):
                    continue
                f = np.bincount(sample_probes[chunk].ravel(), minlength=nlist) / len(chunk)
                rows_g = n_left * len(chunk) / len(sample_probes)
                right += float(np.sum(part_bytes * (1 - np.power(1 - np.minimum(f, 1.0), rows_g))))
        right = int(right) + unassigned_bytes * max(1, tasks)
    amp = right / max(1, distinct + unassigned_bytes)
    return PlanEstimate(plan, int(tasks), int(shuffle), int(right), int(distinct + unassigned_bytes),
                        round(float(amp), 3), int(2 * shuffle + right))


def task_counts(n_left: int, dim: int, nprobe: int, parallelism: int, budget: int) -> dict:
    """Phase-2 tasks per plan: enough to keep each task's left rows within ``budget`` bytes, and at least one
    per core on a distributed engine (one wave: task ranges are balanced by cost)."""
    vb = dim * 4 + 16
    g = max(1, math.ceil(n_left * vb / max(1, budget)))
    s = max(1, math.ceil(n_left * nprobe * vb / max(1, budget)))
    if parallelism > 1:
        g = max(g, parallelism)
        s = max(s, parallelism)
    return {"grouped": int(g), "shuffle": int(s)}


def choose_plan(estimates: dict, forced: str | None) -> tuple[str, str]:
    """Return (plan, reason)."""
    s, g = estimates["shuffle"], estimates["grouped"]
    if forced:
        return forced, f"plan={forced!r} was asked for"
    if g.moved_bytes <= s.moved_bytes:
        return "grouped", (f"grouped moves ~{_mb(g.moved_bytes)} (left once, right read {g.read_amplification:.2f}x) "
                           f"vs shuffle ~{_mb(s.moved_bytes)} (left x nprobe)")
    return "shuffle", (f"shuffle moves ~{_mb(s.moved_bytes)} (left x nprobe, right read once) vs grouped "
                       f"~{_mb(g.moved_bytes)} (right read {g.read_amplification:.2f}x)")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def group_ranges(cost: np.ndarray, mem: np.ndarray, tasks: int, budget: int) -> list[tuple[int, int]]:
    """Cut positions ``0..len(cost)`` into contiguous ranges of about equal cost (about ``tasks`` of them),
    none holding more than ``budget`` bytes of ``mem`` unless a single position does. Every position is in
    exactly one range."""
    n = len(cost)
    if n == 0:
        return []
    total = float(cost.sum())
    target = total / max(1, tasks) if total > 0 else 0.0
    ranges = []
    lo, acc, accm = 0, 0.0, 0
    for i in range(n):
        c, m = float(cost[i]), int(mem[i])
        if i > lo and ((target > 0 and acc + c > target * 1.05 and acc > 0) or (accm + m > budget and accm > 0)):
            ranges.append((lo, i))
            lo, acc, accm = i, 0.0, 0
        acc += c
        accm += m
    ranges.append((lo, n))
    return ranges
