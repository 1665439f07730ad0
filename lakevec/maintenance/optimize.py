"""``optimize``: keep the IVF index of a growing table healthy, locally; ``retrain=True`` rebuilds it.

1. **Measure** (``health``): partition imbalance, the share of unassigned rows, and drift (recall@10 at the
   default nprobe of recent rows against exact search). All below their thresholds: nothing is done and
   nothing is committed (the result says why).
2. **Plan** (``rebalance``): split the oversized partitions, merge the tiny ones, assign the unassigned
   rows; only those partitions are re-clustered, every other centroid keeps its place and number.
3. **Move** (engine tasks): only rows whose partition changes are written (new fragments, one per
   partition); the fragments they leave get a deletion vector, or are rewritten when they lose most of
   their rows. Every fragment stays partition-pure, and the files of untouched partitions are kept as
   they are (the new index maps them under the same numbers).
4. **Re-calibrate** the default nprobe for the new partitioning: exact neighbours of the measured rows
   (200 sampled rows and 200 recent ones) are placed by the same rule as the moves, so recall@10 at every
   nprobe follows without another read; the default is the smallest nprobe reaching the build's target
   (0.98) on all of them and the drift threshold (``min_recall``) on the recent ones alone.
5. **Commit once** through ``lakevec.commit``: a Lance ``Update`` (removed, updated and new fragments) whose
   commit record puts the new index in force and maps every data file of the new version to its partition.

Bytes against search speed (``rewrite_over``, default 0.8): rows that leave a fragment are marked deleted
(a deletion vector) unless more than ``rewrite_over`` of it goes, so the bytes written stay close to the
rows that move (58% of the table in ``lakevec bench optimize``, against 100% for a rebuild). The search
reader reads such fragments from their cached data files and keeps the live rows, so batch search on the
optimized index takes 1.14x (1.09..1.33) the fresh index's time for 1.05x its distances (before the reader
did so, through Lance's scanner: 2.2-2.5x). ``compact`` rewrites them later. ``rewrite_over=0`` rewrites
every fragment that loses a row instead (95% of the bytes).

The commit is refused (``CommitConflictError``, nothing committed) if a fragment it keeps, moves rows out
of or removes was changed, or another index was put in force, since the version it read; rows appended
meanwhile stay readable as unassigned rows (scanned by every query) until the next optimize or compact.
A job that fails before its commit removes what it wrote; the table is unchanged.
"""
from __future__ import annotations

import logging
import math
import time

import lance
import numpy as np

from ..commit import Change, WriteJob, WrittenFiles, wait_while_running
from ..commit.protocol import not_committed
from ..config import CALIBRATION_TARGET_RECALL
from ..errors import CommitConflictError, IndexError_, InvalidArgumentError
from ..index.build import curve_points, smallest_nprobe
from ..index.ivf import IvfModel
from ..metadata import IndexMeta
from ..store.objects import new_id
from . import health, rebalance

log = logging.getLogger("lakevec.maintenance")

THRESHOLDS = {
    "max_imbalance": 3.5,  # largest partition / mean partition
    "max_top1pct_share": 0.05,  # rows in the 1% largest partitions (judged with >= TOP_SHARE_MIN_PARTITIONS)
    "min_recall": 0.95,  # recall@10 at the default nprobe (recent rows)
    "max_unassigned": 0.05,  # share of unassigned rows
}
TOP_SHARE_MIN_PARTITIONS = 200  # below this, the 1% largest is one partition: largest / mean says it all
SPLIT_OVER = 3.0  # split partitions larger than this x the target size
MERGE_UNDER = 0.25  # merge partitions smaller than this x the target size
REWRITE_OVER = 0.8  # a fragment losing more than this share of its rows is rewritten, else gets a deletion vector
# (so a kept fragment holds at least 20% live rows: reads of it cost at most 5x its live bytes until compaction)


def target_rows(index: IndexMeta, rows: int) -> float:
    """Rows per partition a fresh build would aim at now: the index's own granularity, grown like the
    default partition count (sqrt of the rows)."""
    st = index.stats or {}
    if st.get("target_rows") and st.get("rows"):
        t0, n0 = float(st["target_rows"]), int(st["rows"])
    else:
        n0 = int(sum(index.partition_sizes or [])) or rows
        t0 = n0 / max(1, index.num_partitions)
    return max(1.0, t0 * math.sqrt(max(rows, 1) / max(n0, 1)))


def _check(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lo <= value <= hi):
        raise InvalidArgumentError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def optimize(table, retrain: bool = False, dry_run: bool = False, engine="local", seed: int = 1234,
             progress=None, split_over: float = SPLIT_OVER, merge_under: float = MERGE_UNDER,
             rewrite_over: float = REWRITE_OVER, target_recall: float = CALIBRATION_TARGET_RECALL,
             rows_per_partition: float | None = None, **thresholds) -> dict:
    """Measure the index of ``table``; past a threshold, split/merge partitions locally and commit once
    (``retrain``: rebuild the whole index); ``dry_run``: measure and plan exactly, write nothing.
    Thresholds (keywords): ``max_imbalance``, ``max_top1pct_share``, ``min_recall``, ``max_unassigned``.
    Returns a report: what was measured before and after, the reasons, what moved, bytes written."""
    from ..progress import progress_for
    unknown = set(thresholds) - set(THRESHOLDS)
    if unknown:
        raise InvalidArgumentError(f"unknown optimize option(s) {sorted(unknown)}; thresholds: {sorted(THRESHOLDS)}")
    th = {**THRESHOLDS, **thresholds}
    th = {k: _check(k, v, 0.0, 1e9 if k == "max_imbalance" else 1.0) for k, v in th.items()}
    _check("split_over", split_over, 1.0, 1e9)
    _check("merge_under", merge_under, 0.0, 1.0)
    _check("rewrite_over", rewrite_over, 0.0, 1.0)
    _check("target_recall", target_recall, 0.0, 1.0)
    if rows_per_partition is not None:
        _check("rows_per_partition", rows_per_partition, 1.0, 1e12)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer, got {seed!r}")
    opts = dict(engine=engine, seed=int(seed), th=th, split_over=float(split_over), merge_under=float(merge_under),
                rewrite_over=float(rewrite_over), target_recall=float(target_recall), t0=time.time(),
                rows_per_partition=rows_per_partition)
    with progress_for(progress, "optimize") as p:
        if retrain or dry_run:
            return _run(table, None, p, retrain, dry_run, opts)
        with WriteJob(table, "optimize") as job:
            if wait_while_running(table.store, table.loc, ("compact",), job.txn):  # compaction yields to this job
                job.refresh()
            return _run(table, job, p, False, False, opts)


def _run(table, job, p, retrain: bool, dry_run: bool, o: dict) -> dict:
    ds = job.ds if job is not None else table._open_latest()
    snap = table._snapshot_of(ds)
    if snap.index is None and not retrain:
        raise IndexError_(f"table {table.name!r} has no index to optimize: build one with build_index() "
                          "(lakevec index), or use retrain=True (lakevec optimize --retrain)")
    rep = {"table": table.name, "version": ds.version, "dry_run": dry_run, "retrain": retrain, "committed": False,
           "thresholds": o["th"], "index_before": snap.index.index_id if snap.index else None}
    m = None
    if snap.index is not None and not retrain:
        quiet = _unchanged_since_index(table, snap, rep, o)
        if quiet is not None:
            return quiet
    if snap.index is not None:
        o["target_rows"] = float(o["rows_per_partition"] or target_rows(snap.index, snap.num_rows))
        m = health.measure(table, snap, o["target_rows"], o["engine"], o["seed"], p,
                           sample=not retrain, old_files=o.get("old_files", False))
        rep["before"] = _state_figures(m.sizes, m.unassigned_rows, m, snap.model, m.neighbours.parts,
                                       snap.index.default_nprobe)
        rep["measure"] = {"seconds": m.seconds, "recent_rows": m.recent_rows, "table_bytes": m.table_bytes}
        rep["reasons"] = _reasons(rep["before"], o["th"], snap.model.nlist)
    if retrain:
        return _retrain(table, snap, m, rep, p, dry_run, o)
    if not rep["reasons"]:
        rep.update(action="none", seconds=round(time.time() - o["t0"], 3),
                   message="healthy: every measurement is within its threshold; nothing to do")
        return rep
    return _rebalance(table, job, snap, m, rep, p, dry_run, o)


def _unchanged_since_index(table, snap, rep: dict, o: dict) -> dict | None:
    """The fast no-op: no row was added since the index was put in force (its calibration still holds), none
    is unassigned, the partitions are balanced and the calibrated recall meets ``min_recall``: say so without
    reading any data. Else None (measure)."""
    old = health.recent_files(table, snap.state)
    o["old_files"] = old
    if health.recent_rows(snap, old) != 0 or snap.unassigned:
        return None
    idx = snap.index
    calibrated = {int(n): float(r) for n, r in idx.recall_curve or []}.get(int(idx.default_nprobe))
    before = {**health.balance(snap.partition_rows()), "unassigned_rows": 0, "unassigned_share": 0.0,
              "default_nprobe": int(idx.default_nprobe),
              "recall_at_default_nprobe": {"calibrated": calibrated, "recent": None, "all": None, "recent_queries": 0,
                                           "all_queries": 0, "nprobe": int(idx.default_nprobe)}}
    if _reasons(before, o["th"], snap.model.nlist) or (calibrated is not None and calibrated < o["th"]["min_recall"]):
        return None
    rep.update(before=before, reasons=[], action="none", measure={"seconds": 0.0, "recent_rows": 0},
               seconds=round(time.time() - o["t0"], 3),
               message="healthy: no row was added since the index was put in force (version "
                       f"{snap.state.index_version}) and its partitions are balanced; nothing to do")
    return rep


def _state_figures(sizes: np.ndarray, unassigned: int, m, model: IvfModel, parts: np.ndarray, nprobe: int) -> dict:
    """The figures of one partitioning: balance, unassigned rows, recall@10 at ``nprobe`` of the measured rows
    whose exact neighbours live in ``parts``."""
    rows = int(sizes.sum()) + int(unassigned)
    return {**health.balance(sizes), "rows": rows, "unassigned_rows": int(unassigned),
            "unassigned_share": round(unassigned / rows, 4) if rows else 0.0, "default_nprobe": int(nprobe),
            "recall_at_default_nprobe": health.drift(m, model, parts, nprobe)}


def _reasons(b: dict, th: dict, nlist: int) -> list[str]:
    out = []
    if b["largest_over_mean"] > th["max_imbalance"]:
        out.append(f"largest partition {b['largest_over_mean']:.2f}x the mean (> {th['max_imbalance']:g})")
    if nlist >= TOP_SHARE_MIN_PARTITIONS and b["top1pct_share"] > th["max_top1pct_share"]:
        out.append(f"the 1% largest partitions hold {b['top1pct_share']:.1%} of the rows "
                   f"(> {th['max_top1pct_share']:.1%})")
    d = b["recall_at_default_nprobe"]
    use_recent = d["recent"] is not None and d["recent_queries"] >= health.MIN_RECENT_QUERIES
    r = d["recent"] if use_recent else d["all"]
    if r is not None and r < th["min_recall"]:
        out.append(f"recall@10 at the default nprobe {d['nprobe']} is {r:.3f} on "
                   f"{'recent' if use_recent else 'sampled'} rows (< {th['min_recall']:g})")
    if b["unassigned_share"] > th["max_unassigned"]:
        out.append(f"{b['unassigned_share']:.1%} of the rows are unassigned (> {th['max_unassigned']:.1%})")
    return out


def _retrain(table, snap, m, rep, p, dry_run: bool, o: dict) -> dict:
    from ..index.build import build_index
    rep["action"] = "retrain"
    if dry_run:
        rep.update(seconds=round(time.time() - o["t0"], 3), rewrite={
            "rows_written": snap.num_rows, "bytes_written_estimate": sum(f.file_size for f in snap.fragments),
            "table_bytes": sum(f.file_size for f in snap.fragments), "bytes_share": 1.0},
            message="would rebuild the whole index (every row rewritten)")
        return rep
    meta = build_index(table, engine=o["engine"], seed=o["seed"], progress=p)
    model = IvfModel(table.files.centroids(meta.index_id), meta.metric)
    after = {**health.balance(meta.partition_sizes), "default_nprobe": meta.default_nprobe}
    if m is not None:
        nb = m.neighbours
        parts = np.where(nb.parts == health.EMPTY, health.EMPTY,
                         model.assign(nb.vecs.reshape(-1, nb.vecs.shape[2])).reshape(nb.parts.shape))
        after["recall_at_default_nprobe"] = health.drift(m, model, parts, meta.default_nprobe)
    new_snap = table._snapshot_of(table._open_version(meta.data_version))
    written = sum(f.file_size for f in new_snap.fragments)
    rep.update(committed=True, new_version=meta.data_version, index_after=meta.index_id, after=after,
               rewrite={"rows_written": int(sum(meta.partition_sizes)), "bytes_written": written,
                        "table_bytes": sum(f.file_size for f in snap.fragments), "bytes_share": 1.0},
               seconds=round(time.time() - o["t0"], 3), message="rebuilt the whole index")
    return rep


def _rebalance(table, job, snap, m, rep, p, dry_run: bool, o: dict) -> dict:
    from ..engines import task_bytes_for
    metric = table.meta.metric
    p.phase("plan", detail="split oversized partitions, merge tiny ones")
    big: dict = {}
    for f in snap.fragments:
        if f.partition >= 0 and f.num_rows > big.get(f.partition, (None, -1))[1]:
            big[f.partition] = (f.fragment_id, f.num_rows)
    plan = rebalance.plan_rebalance(snap.model, m.sizes, m.sample_vec, m.sample_part, m.sample_frag, m.sample_rate,
                                    {q: v[0] for q, v in big.items()}, o["target_rows"],
                                    o["split_over"], o["merge_under"], o["seed"])
    index_id = f"ivf-{snap.version:06d}-{new_id()[:12]}"
    visit = rebalance.fragments_to_visit(snap, plan, m.radius, metric)
    p.phase("move", total=sum(f.num_rows for f in visit), unit="rows",
            detail=f"{len(plan.split)} split, {len(plan.merged)} merged, {len(visit)} fragment(s) to read")
    results, deletions = [], []
    committing = [False]
    try:
        if not dry_run:
            job.track_index(index_id)
            rebalance.write_centroids(table, index_id, plan.centroids)
        nbytes = task_bytes_for(o["engine"], sum(f.file_size for f in visit), rebalance.MOVE_TASK_BYTES)
        tasks = rebalance.plan_move_tasks(table, snap, visit, plan, index_id, o["rewrite_over"], dry_run, nbytes)
        def keep_track(r):  # as each task returns: its files are removed if the job ends without a commit
            deletions.extend(r.deletion_files)
            if not dry_run:
                job.track(r.written)

        results = health.run_tasks(o["engine"], rebalance.run_move_task, tasks, "optimize (move)", p,
                                   lambda r: sum(x.rows for x in r.outcomes), keep_track)
        part, curve, sizes = _outcome(table, snap, m, plan, results, o, dry_run, index_id)
        rep.update(part)
        if dry_run:
            return rep
        return _commit(table, job, snap, plan, results, rep, p, index_id, o, curve, sizes, committing)
    except BaseException as e:
        if job is not None and job.result is None and (not committing[0] or not_committed(e)):
            rebalance.remove_deletion_files(table.store, table.data_uri, deletions)
        raise


def _outcome(table, snap, m, plan, results, o, dry_run, index_id):
    """Return (report part, recall curve, sizes): the new sizes, the re-calibrated nprobe and recall, and what
    was (or would be) written."""
    outs = {x.fragment_id: x for r in results for x in r.outcomes}
    sizes = np.zeros(plan.nlist, dtype=np.int64)
    for f in snap.fragments:  # rows that stay keep their partition's number
        x = outs.get(f.fragment_id)
        if f.partition >= 0 and (x is None or x.action == "keep"):
            sizes[f.partition] += f.num_rows
        elif x is not None and x.action == "delete":
            sizes[f.partition] += x.rows - x.leaving
    for r in results:
        for q, n in r.moved_to.items():
            sizes[q] += n
    nb = m.neighbours
    flat = nb.parts.ravel()
    parts = np.full(flat.shape, health.EMPTY, dtype=np.int32)
    ok = flat != health.EMPTY
    parts[ok] = plan.assign(nb.vecs.reshape(-1, nb.vecs.shape[2])[ok], flat[ok], table.meta.metric)
    parts = parts.reshape(nb.parts.shape)
    model = IvfModel(plan.centroids, table.meta.metric)
    recent = m.recent
    # the build's target on every measured row (recent and sampled alike), and at least the drift threshold
    # on the recent rows alone, so that the next run does not find drift right away
    curve = health.recall_by_nprobe(model, m.queries, parts)
    nprobe = smallest_nprobe(curve, o["target_recall"])
    if recent.sum() >= health.MIN_RECENT_QUERIES:
        nprobe = max(nprobe, smallest_nprobe(health.recall_by_nprobe(model, m.queries[recent], parts[recent]),
                                             o["th"]["min_recall"]))
    if dry_run:
        written = int(sum(x.file_size * (x.rows if x.action == "rewrite" else x.leaving) / max(1, x.physical_rows)
                          for x in outs.values() if x.action != "keep"))
    else:
        written = int(sum(r.written.bytes for r in results))
    acts = [x.action for x in outs.values()]
    moved = int(sum(x.leaving for x in outs.values()))
    after = _state_figures(sizes, 0, m, model, parts, nprobe)
    part = {
        "action": "rebalance", "index_after": None if dry_run else index_id, "after": after,
        "plan": {"target_rows": round(plan.target_rows, 1), "partitions_before": snap.model.nlist,
                 "partitions_after": plan.nlist,
                 "split": [{"partition": q, **v} for q, v in plan.split.items()],
                 "merged": plan.merged, "relocated": plan.relocated, "unsplittable": plan.unsplittable},
        "rewrite": {"fragments_read": len(outs), "rows_moved": moved,
                    "rows_written": int(sum(sum(r.moved_to.values()) for r in results)),
                    "fragments_rewritten": acts.count("rewrite"), "fragments_with_deletions": acts.count("delete"),
                    ("bytes_written_estimate" if dry_run else "bytes_written"): written,
                    "table_bytes": int(m.table_bytes),
                    "bytes_share": round(written / m.table_bytes, 4) if m.table_bytes else 0.0},
        "message": ("would " if dry_run else "") + f"split {len(plan.split)} and merge {len(plan.merged)} "
                   f"partition(s), move {moved:,} rows, default nprobe {snap.index.default_nprobe} -> {nprobe}",
        "seconds": round(time.time() - o["t0"], 3),
    }
    return part, curve, sizes


def _commit(table, job, snap, plan, results, rep, p, index_id, o, curve, sizes, committing) -> dict:
    after = rep["after"]
    outs = {x.fragment_id: x for r in results for x in r.outcomes}
    files = {f.file: int(f.partition) for f in snap.fragments if f.partition >= 0
             and (f.fragment_id not in outs or outs[f.fragment_id].action != "rewrite")}
    written = WrittenFiles()
    for r in results:
        written.extend(r.written)
    files.update({k: int(v) for k, v in written.partitions.items()})
    removed = [x for x in outs.values() if x.action == "rewrite"]
    updated = [md for r in results for md in r.updated]
    meta = IndexMeta(index_id, table.meta.metric, table.meta.dim, plan.nlist, snap.version, None,
                     [int(s) for s in sizes], after["default_nprobe"], curve_points(curve, after["default_nprobe"]),
                     plan.trained_on, round(time.time() - o["t0"], 3), time.time())
    meta.stats = {"optimized_from": snap.index.index_id, "target_rows": round(plan.target_rows, 3),
                  "rows": int(sizes.sum()), "seed": o["seed"], "split": sorted(plan.split), "merged": plan.merged}
    table.files.write_index(meta, None, known=plan.centroids)
    p.phase("commit", detail=f"{written.rows:,} rows written, {len(updated)} deletion vector(s)")
    _check_unchanged(table, snap)
    if written.fragments or removed or updated:
        op = lance.LanceOperation.Update(removed_fragment_ids=[x.fragment_id for x in removed],
                                         updated_fragments=updated, new_fragments=list(written.fragments))
    else:
        op = lance.LanceOperation.Append([])
    change = Change(op="optimize", operation=op, files=files, index_id=index_id, index=meta,
                    removed=[x.file for x in removed],
                    info={"rows_moved": rep["rewrite"]["rows_moved"], "bytes": int(written.bytes),
                          "split": len(plan.split), "merged": len(plan.merged)})
    committing[0] = True
    res = job.commit(change, job.state, f"committing the optimized index of table {table.name!r}")
    meta.data_version = res.version
    rep.update(committed=True, new_version=res.version, seconds=round(time.time() - o["t0"], 3))
    log.info("optimize of table %r: %s", table.name, rep["message"])
    return rep


def _check_unchanged(table, snap) -> None:
    """Refuse the commit if what it relies on changed since the version read (see the module docstring)."""
    ds = table._open_latest()
    if ds.version == snap.version:
        return
    st = table.state_of(ds)
    if st.index_id != snap.index.index_id:
        raise CommitConflictError(f"optimize of table {table.name!r}: another index was put in force (version "
                                  f"{st.index_version}) since version {snap.version} was read; nothing was "
                                  "committed, run optimize again")
    now = {fr.fragment_id: fr.metadata for fr in ds.get_fragments()}
    was = {fr.fragment_id: fr.metadata for fr in snap.ds.get_fragments()}
    for f in snap.fragments:
        md, old = now.get(f.fragment_id), was[f.fragment_id]
        if md is None or md.files[0].path != f.file or _deletions(md) != _deletions(old):
            raise CommitConflictError(f"optimize of table {table.name!r}: fragment {f.fragment_id} ({f.file}) was "
                                      f"changed by a concurrent commit since version {snap.version}; nothing was "
                                      "committed, run optimize again")


def _deletions(md):
    d = md.deletion_file
    return None if d is None else (d.id, d.read_version, d.num_deleted_rows)


__all__ = ["optimize", "THRESHOLDS", "target_rows"]
