"""Local split/merge of IVF partitions: the plan (driver) and the row moves (engine tasks).

**The new index.** Partitions larger than ``split_over`` x the target size are re-clustered (k-means on
their rows, about one child per target size); partitions smaller than ``merge_under`` x the target
lose their centroid. Every other centroid stays where it is *and keeps its number*, so its files keep
a truthful ``_partition`` column and need no rewrite. A split partition's number goes to one of its
children (the one that keeps most rows of the partition's largest file, so those rows can stay where
they are); the other children fill the numbers of merged partitions, then new numbers at the end. If
more partitions are merged than children created, the partitions with the highest numbers are moved
into the holes (their files are rewritten).

**Where each row goes** (``Rule``; SPFresh's split-then-reassign, exactly): a row of a split or
merged partition, or an unassigned row, goes to its nearest centroid of the new index. A row of a kept
partition q goes to the nearest of q's centroid and the *new* centroids: kept centroids did not move,
so no other centroid can have become nearer. A kept partition whose centroid is farther than twice its
radius from every new centroid cannot lose a row and is not even read.

**Moves** (``MoveTask``): each visited fragment is read once; its rows that leave are written, with
the rows of the other fragments of the task, as one new fragment per destination partition. A
fragment that keeps all its rows is untouched; one that loses up to ``rewrite_over`` of its rows gets
a Lance deletion vector for them (its data file stays); one that loses more is rewritten (removed, its
remaining rows written to a new fragment of the same partition). So the bytes written are about the
rows that move, and every fragment stays partition-pure.

The planner works on the measuring pass's uniform row sample (``health.measure``): it trains the
children, estimates the new sizes with the same ``Rule``, and splits again (up to ``MAX_ROUNDS``) any
child that would still be oversized, e.g. because it took rows from its neighbours.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..commit import FragmentSink, WrittenFiles, delete_written
from ..config import INDEX_DIR, PARTITION_COLUMN, UNASSIGNED, VECTOR_COLUMN
from ..errors import LakevecError
from ..index.ivf import IvfModel
from ..index.kmeans import train_kmeans
from ..search.reader import vectors_of
from ..store.lance_io import open_dataset
from ..store.location import parse_location
from ..store.objects import ObjectStore
from .health import _centroids, group_by_bytes

MAX_ROUNDS = 3  # split passes of the planner (a child still oversized is split again)
CHILD_OVER = 1.5  # a child estimated larger than this x the target (it took rows from its neighbours) is split again
MIN_SAMPLE_PER_CHILD = 4  # sample rows per child below which a partition is not split further
MOVE_TASK_BYTES = 256 << 20  # source bytes one move task reads
MOVE_FLUSH_BYTES = 512 << 20  # moved rows a task buffers before writing (one fragment per partition per flush)


# -- the rule -------------------------------------------------------------------------------------

def _own_scores(x: np.ndarray, c: np.ndarray, metric: str) -> np.ndarray:
    """Row-wise ``IvfModel.centroid_scores`` of ``x[i]`` against ``c[i]`` (the same per-row constant)."""
    if metric == "dot":
        return -np.einsum("ij,ij->i", x, c, dtype=np.float32)
    return np.einsum("ij,ij->i", c, c, dtype=np.float32) - 2.0 * np.einsum("ij,ij->i", x, c, dtype=np.float32)


def assign_rows(centroids: np.ndarray, metric: str, own: np.ndarray, new: np.ndarray, x: np.ndarray,
                old) -> np.ndarray:
    """Return the partition under the new index of rows ``x`` whose old partition is ``old`` (scalar or
    array; UNASSIGNED allowed). ``own[q]``: the new number of kept partition q, -1 for split or merged ones;
    ``new``: the numbers whose centroid is new (see the module docstring)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    old = np.broadcast_to(np.asarray(old, dtype=np.int64), (len(x),))
    mine = np.where(old >= 0, own[np.maximum(old, 0)], -1) if len(own) else np.full(len(x), -1)
    out = np.empty(len(x), dtype=np.int32)
    free = mine < 0
    if free.any():
        out[free] = IvfModel(centroids, metric).assign(x[free])
    kept = np.flatnonzero(~free)
    if len(kept):
        out[kept] = mine[kept]
        if len(new):
            xs = x[kept]
            sc = IvfModel(centroids[new], metric).centroid_scores(xs)
            best = np.argmin(sc, axis=1)
            better = sc[np.arange(len(kept)), best] < _own_scores(xs, centroids[mine[kept]], metric)
            out[kept[better]] = np.asarray(new)[best[better]]
    return out


# -- the plan -------------------------------------------------------------------------------------

@dataclass
class _Child:
    centroid: np.ndarray
    parent: int  # the old partition it was split from
    keeps: int | None = None  # the parent's number, if this child takes it over (its rows may stay in place)


@dataclass
class Plan:
    """The new index: centroids by number, the ``Rule`` (own, new), and what changed."""

    centroids: np.ndarray
    own: np.ndarray  # old partition -> new number (kept partitions), -1 (split / merged)
    new: np.ndarray  # numbers with a new centroid
    target_rows: float
    split: dict = field(default_factory=dict)  # old partition -> {"rows", "children": [numbers]}
    merged: list = field(default_factory=list)
    relocated: dict = field(default_factory=dict)  # kept partition -> its new number
    unsplittable: list = field(default_factory=list)
    estimated_sizes: np.ndarray | None = None
    trained_on: int = 0

    @property
    def nlist(self) -> int:
        return int(len(self.centroids))

    @property
    def changes_partitions(self) -> bool:
        return bool(self.split or self.merged or self.relocated)

    def assign(self, x: np.ndarray, old, metric: str) -> np.ndarray:
        return assign_rows(self.centroids, metric, self.own, self.new, x, old)


def _numbering(nlist: int, cents: np.ndarray, kept: list, children: list[_Child]):
    """Return (centroids, own, new, relocated, child numbers) for kept partitions and children (see the
    module docstring)."""
    taken = {c.keeps for c in children if c.keeps is not None}
    holes = sorted(set(range(nlist)) - set(kept) - taken)
    numbers: dict[int, tuple] = {q: ("kept", q) for q in kept}
    for i, c in enumerate(children):
        if c.keeps is not None:
            numbers[c.keeps] = ("child", i)
    nxt = nlist
    for i, c in enumerate(children):
        if c.keeps is None:
            if holes:
                numbers[holes.pop(0)] = ("child", i)
            else:
                numbers[nxt] = ("child", i)
                nxt += 1
    relocated: dict[int, int] = {}
    if holes:  # more merges than free children: move the highest numbers into the holes
        total = len(numbers)
        for num in sorted((n for n in numbers if n >= total), reverse=True):
            h = holes.pop(0)
            numbers[h] = numbers.pop(num)
            if numbers[h][0] == "kept":
                relocated[numbers[h][1]] = h
    k2 = len(numbers)
    if sorted(numbers) != list(range(k2)):  # pragma: no cover - a planner bug, never a user error
        raise LakevecError(f"optimize: inconsistent partition numbering ({sorted(numbers)[:10]}...)")
    out = np.empty((k2, cents.shape[1]), dtype=np.float32)
    own = np.full(nlist, -1, dtype=np.int64)
    nums = [0] * len(children)
    for num, (kind, i) in numbers.items():
        if kind == "kept":
            out[num] = cents[i]
            own[i] = num
        else:
            out[num] = children[i].centroid
            nums[i] = num
    return out, own, np.asarray(sorted(nums), dtype=np.int64), relocated, nums


def _split(x: np.ndarray, k: int, metric: str, seed: int):
    """k-means ``x`` into at most ``k`` children; return (centroids, labels) of the non-empty ones, or None."""
    k = min(k, len(x) // MIN_SAMPLE_PER_CHILD)
    if k < 2:
        return None
    cents = train_kmeans(x, k, metric, seed=seed)
    lab = IvfModel(cents, metric).assign(x)
    used = np.flatnonzero(np.bincount(lab, minlength=len(cents)))
    if len(used) < 2:
        return None  # near-identical rows: k-means cannot split them
    remap = np.full(len(cents), -1)
    remap[used] = np.arange(len(used))
    return cents[used], remap[lab]


def plan_rebalance(model: IvfModel, sizes: np.ndarray, sample_vec: np.ndarray, sample_part: np.ndarray,
                   sample_frag: np.ndarray, sample_rate: float, largest_file: dict, target_rows: float,
                   split_over: float, merge_under: float, seed: int = 1234) -> Plan:
    """Plan splits and merges from the partition sizes and the row sample (see the module docstring).

    ``largest_file``: partition -> fragment id of its largest fragment (the rows a child may keep in place).
    """
    metric = model.metric
    nlist = model.nlist
    cents = model.centroids
    t = float(target_rows)
    to_split = [int(p) for p in np.argsort(-sizes, kind="stable") if sizes[p] > split_over * t]
    children: list[_Child] = []
    split_info: dict = {}
    unsplittable = []
    rate = max(sample_rate, 1e-12)
    for p in to_split:
        sel = np.flatnonzero(sample_part == p)
        got = _split(sample_vec[sel], max(2, int(round(sizes[p] / t))), metric, seed + p)
        if got is None:
            unsplittable.append(p)
            continue
        ch, lab = got
        keep = _keeper(lab, sample_frag[sel] == largest_file.get(p, -1), len(ch))
        children += [_Child(c, p, p if j == keep else None) for j, c in enumerate(ch)]
        split_info[p] = {"rows": int(sizes[p])}
    kept = [q for q in range(nlist) if q not in split_info]
    for rnd in range(1, MAX_ROUNDS):  # split again the children the sample says are still oversized
        c2, own, new, _, nums = _numbering(nlist, cents, kept, children)
        lab = assign_rows(c2, metric, own, new, sample_vec, sample_part)
        est = np.bincount(lab, minlength=len(c2)) / rate
        grown = {i for i, n in enumerate(nums) if est[n] > min(split_over, CHILD_OVER) * t}
        if not grown:
            break
        nxt: list[_Child] = []
        for i, c in enumerate(children):
            sel = np.flatnonzero(lab == nums[i]) if i in grown else None
            got = None if sel is None else _split(sample_vec[sel], max(2, int(round(est[nums[i]] / t))), metric,
                                                   seed + 7919 * rnd + nums[i])
            if got is None:
                nxt.append(c)
                continue
            ch, sub = got
            keep = _keeper(sub, sample_part[sel] == c.parent, len(ch)) if c.keeps is not None else -1
            nxt += [_Child(x, c.parent, c.keeps if j == keep else None) for j, x in enumerate(ch)]
        children = nxt
    merged = _merges(nlist, cents, kept, children, sizes, sample_vec, sample_part, rate, merge_under * t, metric)
    kept = [q for q in kept if q not in merged]
    c2, own, new, relocated, nums = _numbering(nlist, cents, kept, children)
    lab = assign_rows(c2, metric, own, new, sample_vec, sample_part)
    for p, info in split_info.items():
        info["children"] = sorted(int(n) for c, n in zip(children, nums) if c.parent == p)
    return Plan(c2, own, new, t, split_info, merged, relocated, unsplittable,
                np.round(np.bincount(lab, minlength=len(c2)) / rate).astype(np.int64),
                int(sum(int((sample_part == p).sum()) for p in split_info)))


def _merges(nlist, cents, kept, children, sizes, sample_vec, sample_part, rate, under: float, metric) -> list:
    """Greedily remove the smallest kept partition while one is smaller than ``under`` rows: its rows go to
    their nearest remaining centroid (so its neighbours grow before the next pick). Return the removed."""
    if under <= 0:
        return []
    c2, own, new, _, _ = _numbering(nlist, cents, kept, children)  # no merge yet: kept q has number q
    lab = assign_rows(c2, metric, own, new, sample_vec, sample_part)
    est = np.bincount(lab, minlength=len(c2)) / rate
    # kept partitions: their true size, plus the sampled rows they receive, less the sampled rows they lose
    moved = lab != sample_part
    gain = np.bincount(lab[moved], minlength=len(c2)) / rate
    loss = np.bincount(sample_part[moved & (sample_part >= 0)], minlength=nlist) / rate
    est[kept] = np.maximum(sizes[kept] + gain[kept] - loss[kept], 0.0)
    alive = np.ones(len(c2), dtype=bool)
    merged: list[int] = []
    while alive.sum() > 1:
        small = [q for q in kept if alive[q] and est[q] < under]
        if not small:
            break
        q = min(small, key=lambda x: (est[x], x))
        alive[q] = False
        merged.append(int(q))
        rows = np.flatnonzero(lab == q)
        if len(rows):
            live = np.flatnonzero(alive)
            lab[rows] = live[IvfModel(c2[live], metric).assign(sample_vec[rows])]
            np.add.at(est, lab[rows], 1.0 / rate)
        est[q] = 0.0
    return merged


def _keeper(labels: np.ndarray, prefer: np.ndarray, k: int) -> int:
    """The child that takes over the parent's number: the one with most of the ``prefer`` rows (those of the
    parent's largest file), else with most rows."""
    votes = np.bincount(labels[prefer] if prefer.any() else labels, minlength=k)
    return int(np.argmax(votes))


def fragments_to_visit(snap, plan: Plan, radius: dict, metric: str) -> list:
    """Return the fragments whose rows may move (see the module docstring), as FragmentInfo."""
    old = snap.model.centroids
    visit_parts = set()
    for q in range(len(plan.own)):
        num = plan.own[q]
        if num < 0 or num != q:  # split, merged or relocated: every row is re-assigned
            visit_parts.add(q)
            continue
        if not len(plan.new):
            continue
        r = radius.get(q)
        if metric == "dot" or r is None:
            visit_parts.add(q)
            continue
        gap = np.sqrt(np.maximum(((plan.centroids[plan.new] - old[q]) ** 2).sum(1), 0.0)).min()
        if gap < 2.0 * r * (1 + 1e-4) + 1e-6:
            visit_parts.add(q)
    return [f for f in snap.fragments if f.partition == UNASSIGNED or f.partition in visit_parts]


# -- the moves ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MoveTask:
    """Re-assign the rows of some fragments of one version under the new index (see the module doc)."""

    task_id: int
    table_uri: str
    data_uri: str
    storage_options: dict | None
    version: int
    fragments: tuple  # ((fragment id, old partition), ...)
    index_id: str  # the new index (its centroids are written before the tasks run)
    metric: str
    schema: pa.Schema
    own: tuple
    new: tuple
    rewrite_over: float
    dry_run: bool = False
    flush_bytes: int = MOVE_FLUSH_BYTES
    centroids: np.ndarray | None = None  # dry runs: the new index is not written, its centroids travel here


@dataclass
class FragmentOutcome:
    fragment_id: int
    file: str
    old_partition: int
    rows: int  # live rows before
    leaving: int  # rows that change partition
    action: str  # "keep" | "delete" (deletion vector) | "rewrite"
    file_size: int = 0
    physical_rows: int = 0


@dataclass
class MoveResult:
    task_id: int
    written: WrittenFiles
    outcomes: list
    updated: list  # FragmentMetadata with a new deletion vector
    deletion_files: list  # their paths relative to the dataset (removed again if nothing is committed)
    moved_to: dict  # new partition -> rows written to it


def run_move_task(task: MoveTask) -> MoveResult:
    """Engine task: read each fragment, re-assign its rows, write the leaving rows, mark them deleted."""
    store = ObjectStore(parse_location(task.table_uri, task.storage_options))
    cents = task.centroids if task.centroids is not None else _centroids(store, task.table_uri, task.index_id)
    own, new = np.asarray(task.own, dtype=np.int64), np.asarray(task.new, dtype=np.int64)
    ds = open_dataset(task.data_uri, task.storage_options, task.version)
    cols = [f.name for f in task.schema if f.name != PARTITION_COLUMN]
    sink = None if task.dry_run else FragmentSink(task.data_uri, task.schema, task.storage_options,
                                                  IvfModel(cents, task.metric), flush_bytes=task.flush_bytes,
                                                  max_rows_per_file=1 << 30)
    out = MoveResult(task.task_id, WrittenFiles(), [], [], [], {})
    try:
        for fid, old in task.fragments:
            fr = ds.get_fragment(fid)
            md = fr.metadata
            tbl = ds.scanner(fragments=[fr], columns=cols, with_row_address=True).to_table()
            vec = vectors_of(tbl.column(VECTOR_COLUMN))
            dest = assign_rows(cents, task.metric, own, new, vec, old) if tbl.num_rows else np.zeros(0, np.int32)
            leave = dest != old  # rows that stay keep their partition's number (and its fragment)
            nl = int(leave.sum())
            oc = FragmentOutcome(fid, md.files[0].path, int(old), tbl.num_rows, nl, "keep",
                                 int(md.files[0].file_size_bytes or 0), int(md.physical_rows))
            if nl and (old < 0 or nl == tbl.num_rows or nl > task.rewrite_over * tbl.num_rows):
                oc.action, rows, parts = "rewrite", tbl, dest
            elif nl:
                oc.action = "delete"
                rows, parts = tbl.filter(pa.array(leave)), dest[leave]
            else:
                out.outcomes.append(oc)
                continue
            out.outcomes.append(oc)
            for p, c in zip(*np.unique(parts, return_counts=True)):
                out.moved_to[int(p)] = out.moved_to.get(int(p), 0) + int(c)
            if task.dry_run:
                continue
            if oc.action == "delete":
                addr = tbl.column("_rowaddr").to_numpy()[leave]
                newmd = fr.delete(f"_rowaddr IN ({', '.join(str(int(a)) for a in addr)})")
                if newmd is None or newmd.deletion_file is None:
                    raise LakevecError(f"optimize: marking {nl} row(s) of fragment {fid} ({oc.file}) of "
                                       f"{task.data_uri} as moved failed")
                out.updated.append(newmd)
                out.deletion_files.append(newmd.deletion_file.path(fid))
            data = rows.drop_columns(["_rowaddr"])
            batch = pa.RecordBatch.from_arrays([c.combine_chunks() for c in data.columns], schema=data.schema)
            sink.add(batch, None, partitions=np.asarray(parts, dtype=np.int32))
        if sink is not None:
            out.written = sink.finish()
    except BaseException:
        if sink is not None:
            delete_written(store, task.data_uri, sink.out)
        remove_deletion_files(store, task.data_uri, out.deletion_files)
        raise
    return out


def remove_deletion_files(store: ObjectStore, data_uri: str, paths: list) -> None:
    """Best-effort removal of deletion vectors that no commit references (vacuum removes leftovers)."""
    for rel in paths:
        try:
            store.delete(f"{data_uri.rstrip('/')}/{rel}")
        except LakevecError:
            pass


def write_centroids(table, index_id: str, centroids: np.ndarray) -> None:
    """Write the new index's centroids (the tasks read them; its metadata follows at the commit)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(centroids, dtype=np.float32))
    table.store.write_bytes(table.loc.join(INDEX_DIR, f"{index_id}.centroids.npy"), buf.getvalue())


def plan_move_tasks(table, snap, frags: list, plan: Plan, index_id: str, rewrite_over: float, dry_run: bool,
                    task_bytes: int = MOVE_TASK_BYTES) -> list[MoveTask]:
    """Group the fragments to visit into tasks of about ``task_bytes`` each."""
    own = tuple(int(x) for x in plan.own)
    new = tuple(int(x) for x in plan.new)
    return [MoveTask(i, table.loc.uri, table.data_uri, table.lake.lance_options, snap.version,
                     tuple((f.fragment_id, f.partition) for f in g), index_id, table.meta.metric, snap.ds.schema, own,
                     new, float(rewrite_over), dry_run, centroids=plan.centroids if dry_run else None)
            for i, g in enumerate(group_by_bytes(frags, task_bytes))]


__all__ = ["Plan", "plan_rebalance", "assign_rows", "fragments_to_visit", "MoveTask", "MoveResult", "run_move_task",
           "plan_move_tasks", "remove_deletion_files", "FragmentOutcome"]
