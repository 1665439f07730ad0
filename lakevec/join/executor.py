"""The join driver: validate, pin, plan, run the phases on an engine, collect, commit, report."""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
import uuid

import numpy as np
import pyarrow as pa

from ..config import (ID_COLUMN, PARTITION_COLUMN, SEARCH_IO_THREADS_REMOTE, SEARCH_PREFETCH, SEARCH_THREADS,
                      PriceTable)
from ..errors import IndexError_, InvalidArgumentError, SchemaError
from .merge import concat
from .output import FinalSpec, default_key, make_output
from .plan import PLANS, JoinParams, choose_plan, estimate, group_ranges, locality_order, task_counts
from .report import JoinReport, empty_result, io_dict, recall_estimate
from .result import JoinResult
from .scratch import ScratchSpec, forget_store, new_job_id, read_sections, scratch_store
from .sources import LeftInput, is_table, materialize, resolve_left
from .tasks import (AssignTask, DedupTask, MergeTask, RightSpec, ScoreTask, register_right, run_assign_task,
                    run_dedup_task, run_merge_task, run_score_task, save_arrays, unregister_right)

MEMORY_BUDGET = int(os.environ.get("LAKEVEC_JOIN_MEMORY_BYTES", 512 << 20))  # left vectors one task holds
# merge / dedup phases whose inputs are smaller than this run in the driver (a distributed stage costs more
# than the work); the task functions are the same
DRIVER_PHASE_BYTES = int(os.environ.get("LAKEVEC_JOIN_DRIVER_PHASE_BYTES", 64 << 20))
DEFAULT_CAP = 1000


def _check_int(v, name: str, minimum: int = 1, allow_none: bool = False):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _check_args(k, radius, nprobe, max_pairs_per_row, recall_sample, plan, dedup):
    k = _check_int(k, "k", 1, allow_none=True)
    if radius is not None:
        if isinstance(radius, bool) or not isinstance(radius, (int, float, np.floating, np.integer)) \
                or not math.isfinite(float(radius)) or radius < 0:
            raise InvalidArgumentError(f"radius must be a non-negative number, got {radius!r}")
        radius = float(radius)
    if k is None and radius is None:
        raise InvalidArgumentError("give k (nearest neighbours per row), radius (all pairs within a distance), "
                                   "or both")
    nprobe = _check_int(nprobe, "nprobe", 1, allow_none=True)
    cap = _check_int(max_pairs_per_row, "max_pairs_per_row", 1)
    sample = _check_int(recall_sample, "recall_sample", 0)
    if plan not in (None, "auto", *PLANS):
        raise InvalidArgumentError(f"plan must be 'auto', 'shuffle' or 'grouped', got {plan!r}")
    if not isinstance(dedup, bool):
        raise InvalidArgumentError(f"dedup must be True or False, got {dedup!r}")
    return k, radius, nprobe, cap, sample, (None if plan in (None, "auto") else plan)


def open_table_uri(right, storage_options=None):
    """A Table, or ``"<lake uri>/<table name>"``."""
    if is_table(right):
        return right
    if isinstance(right, str) and "/" in right.rstrip("/"):
        from ..lake import Lake
        lake_uri, name = right.rstrip("/").rsplit("/", 1)
        return Lake(lake_uri, storage_options, create=False).open_table(name)
    raise InvalidArgumentError(f"right must be an indexed lakevec Table (or '<lake uri>/<table name>'), "
                               f"got {type(right).__name__}")


def _split_columns(columns, left_columns, right_columns, right_names, left_names):
    def norm(c, what):
        if c is None:
            return []
        if isinstance(c, str):
            c = [c]
        c = list(c)
        for x in c:
            if not isinstance(x, str):
                raise InvalidArgumentError(f"{what} must be column names, got {x!r}")
            if x in (ID_COLUMN, PARTITION_COLUMN):
                raise InvalidArgumentError(f"{what}: {x!r} is not a column you can ask for (ids are always "
                                           "returned as left_id/right_id)")
        return c
    lc, rc = [], []
    for c in norm(columns, "columns"):
        found = False
        if c in right_names:
            rc.append(c)
            found = True
        if left_names is None or c in left_names:
            lc.append(c)
            found = True
        if not found:
            raise InvalidArgumentError(f"column {c!r} of columns= is in neither side (right columns: "
                                       f"{right_names}; left columns: {left_names})")
    lc += norm(left_columns, "left_columns")
    rc += norm(right_columns, "right_columns")
    for c in rc:
        if c not in right_names:
            raise InvalidArgumentError(f"right column {c!r} not found (right columns: {right_names})")
    return tuple(dict.fromkeys(lc)), tuple(dict.fromkeys(rc))


def _left_names(left, storage_options=None) -> list | None:
    """Column names of the left input when cheap to know (None: checked when it is read)."""
    from ..ingest.convert import is_path_input
    if is_path_input(left):
        from ..ingest.convert import open_parquet, resolve_files
        files = resolve_files(left, storage_options)
        return open_parquet(files[0], storage_options).schema_arrow.names if files else None
    if is_table(left):
        return [n for n in left.schema.names if n != PARTITION_COLUMN]
    if isinstance(left, (pa.Table, pa.RecordBatch)):
        return left.schema.names
    import pyarrow.dataset as pads
    if isinstance(left, (pa.RecordBatchReader, pads.Dataset)):
        return left.schema.names
    if isinstance(left, dict):
        return [str(k) for k in left]
    from .frames import _frame_schema, frame_kind
    fk = frame_kind(left)
    if fk is not None:
        return _frame_schema(left, fk).names
    try:
        import pandas as pd
        if isinstance(left, pd.DataFrame):
            return [str(c) for c in left.columns]
    except ImportError:  # pragma: no cover
        pass
    return None


def knn_join(left, right, k: int | None = 10, nprobe: int | None = None, radius: float | None = None,
             engine="local", output=None, *, left_filter: str | None = None, right_filter: str | None = None,
             columns=None, left_columns=None, right_columns=None, idempotency_key: str | None = None,
             dedup: bool = False, id_column: str = ID_COLUMN, vector_column: str = "vector",
             max_pairs_per_row: int = DEFAULT_CAP, recall_sample: int = 200, plan: str | None = None,
             memory_budget: int | None = None, scratch: str | None = None, storage_options: dict | None = None,
             seed: int = 0, progress=None, _internal: bool = False) -> JoinResult:
    """Run a join; see ``lakevec.join`` for the arguments and the result."""
    t_start = time.time()
    say = progress or (lambda msg: None)
    k, radius, nprobe, cap, sample_size, forced = _check_args(k, radius, nprobe, max_pairs_per_row, recall_sample,
                                                              plan, dedup)
    budget = _check_int(memory_budget, "memory_budget", 1 << 16, allow_none=True) or MEMORY_BUDGET
    right = open_table_uri(right, storage_options)
    rv = right.version
    rt = right.checkout(rv)
    snap = rt.snapshot()
    if snap.model is None or snap.index is None:
        raise IndexError_(f"right table {rt.name!r} (version {rv}) has no IVF index: build it first "
                          f"(Table.build_index() or `lakevec index {rt.name}`)")
    metric, dim, nlist = rt.meta.metric, rt.meta.dim, snap.model.nlist
    self_join = is_table(left) and left.data_uri == right.data_uri and (
        left is right or getattr(left, "_pinned", None) in (None, rv))
    if self_join:
        left = rt
    if dedup and not self_join:
        raise InvalidArgumentError("dedup=True needs a self-join: pass the same table (at the same version) as "
                                   "left and right")
    probe = min(nprobe or snap.index.default_nprobe or 1, nlist)
    right_names = [n for n in rt.schema.names if n != PARTITION_COLUMN]
    lcols, rcols = _split_columns(columns, left_columns, right_columns, right_names,
                                  right_names if self_join else _left_names(left, storage_options))
    from ..engines import engine_name, get_engine
    eng = get_engine(engine)
    ename = engine_name(eng)
    from .frames import frame_kind, resolve_frame
    fk = frame_kind(left)
    if fk is not None:
        if left_filter is not None:
            raise InvalidArgumentError("left_filter applies to a lakevec table on the left; filter the "
                                       f"{'DataFrame' if fk == 'spark' else 'Dataset'} before the join")
        left_in = resolve_frame(left, fk, dim, id_column, vector_column, lcols, seed)
    else:
        left_in = resolve_left(left, dim, metric, id_column, vector_column, left_filter, lcols, storage_options,
                               seed)
    allowed = None
    if right_filter is not None:
        allowed = _allowed_rows(rt, right_filter)
    key = None
    out = None
    run_id = new_job_id()
    if output is not None:
        key = idempotency_key or default_key(_key_parts(left_in, rt, rv, k, radius, probe, cap, dedup, left_filter,
                                                        right_filter, lcols, rcols, metric))
        out = make_output(output, storage_options if storage_options is not None else rt.lake.storage_options,
                          key, run_id)
        done = out.existing()
        if done is not None:
            say(f"output {out.uri} already holds this join (key {key}): nothing to do")
            rep = JoinReport(**{**done.get("report", {}), "output": {"uri": out.uri, "key": key, "skipped": True,
                                                                   "parts": len(done.get("parts", []))}})
            return JoinResult(None, rep, output=out.uri, storage_options=out.storage_options, skipped=True)
    # ---------------------------------------------------------------------------------- plan
    parallel = 1
    if ename != "local":
        try:
            parallel = max(1, int(eng.parallelism()))
        except Exception:
            parallel = 2
    n_left = left_in.rows if left_in.rows is not None else 0
    order = locality_order(snap.model.centroids, seed)
    pos_of = np.empty(nlist, dtype=np.int64)
    pos_of[order] = np.arange(nlist)
    part_rows = snap.partition_rows()
    part_bytes = np.array([snap.partition_bytes(p) for p in range(nlist)], dtype=np.int64)
    u_bytes = int(sum(f.file_size for f in snap.unassigned))
    sample_probes = None
    if left_in.sample_vectors is not None and len(left_in.sample_vectors):
        sv = left_in.sample_vectors
        if metric == "cosine":
            sv = sv / np.maximum(np.linalg.norm(sv, axis=1, keepdims=True), 1e-30)
        sample_probes = snap.model.probe(sv.astype(np.float32), probe)
    counts_t = task_counts(n_left, dim, probe, parallel, budget)
    ests = {pl: estimate(pl, n_left, dim, probe, part_bytes, u_bytes, sample_probes, pos_of, counts_t[pl])
            for pl in PLANS}
    chosen, reason = choose_plan(ests, forced)
    local_engine = ename == "local"
    threads = SEARCH_THREADS if local_engine else 1
    io_threads = (SEARCH_PREFETCH if rt.store.loc.is_local else SEARCH_IO_THREADS_REMOTE) if local_engine else \
        (2 if rt.store.loc.is_local else 8)
    kk = (k + 1 if self_join else k) if k is not None else 0
    per_row = kk if k is not None else min(cap, 64)
    out_groups = max(parallel, math.ceil(n_left * max(1, per_row) * 48 / budget)) if n_left else 1
    job_id = run_id
    params = JoinParams(job_id, metric, dim, k, kk, radius, cap, probe, self_join, dedup, chosen, threads,
                        io_threads, sample_size, seed, merge_groups=int(out_groups), dedup_buckets=int(out_groups))
    spec = _scratch_spec(scratch, local_engine and left_in.kind not in ("spark", "ray"), rt, job_id)
    rspec = RightSpec(rt.lake.uri, rt.name, rv, rt.lake.storage_options, rt.lake.cache_config.cache_dir,
                      rt.lake.cache_config.cache_bytes if rt.lake.cache_config.cache_dir else None)
    register_right(rspec, rt)
    sstore = scratch_store(spec)
    drv_before = {"right": rt.store.counters.snapshot(), "scratch": sstore.counters.snapshot()}
    report = JoinReport(job_id, ename, chosen, reason, left_in.source, rt.name, rv, metric, k, radius, probe,
                        self_join, dedup, max_pairs_per_row=cap if k is None else None,
                        estimates={n: e.to_dict() for n, e in ests.items()})
    seconds = {"plan": time.time() - t_start}
    task_io: list = []
    ok = False
    ctx = eng if hasattr(eng, "__enter__") else contextlib.nullcontext()
    try:
        with ctx:
            # ------------------------------------------------------------------ phase 1: assign
            t0 = time.time()
            plan_uri = save_arrays(spec, "plan.npz", order=order, pos_of=pos_of)
            filter_uri = save_arrays(spec, "filter.npz", allowed=allowed) if allowed is not None else None
            materialize(left_in, spec, dim)
            has_u = bool(snap.unassigned) and chosen == "shuffle"
            say(f"assigning {n_left:,} left rows to their {probe} nearest of {nlist} partitions "
                f"({len(left_in.shards) or 'frame'} shards, plan {chosen})")
            if left_in.kind in ("spark", "ray"):
                from .frames import run_frame_assign
                a_res = run_frame_assign(left_in, rspec, spec, params, plan_uri, has_u, dim, metric)
            else:
                a_tasks = [AssignTask(i, sh, rspec, spec, params, plan_uri, has_u)
                           for i, sh in enumerate(left_in.shards)]
                a_res = eng.map(run_assign_task, a_tasks, name="join: assign") if a_tasks else []
            task_io += [r.io for r in a_res]
            rows_left = int(sum(r.rows for r in a_res))
            types = {r.id_type for r in a_res if r.id_type}
            if len(types) > 1:
                raise SchemaError(f"{left_in.source}: the left ids mix types {sorted(types)} across shards")
            id_type = types.pop() if types else (left_in.id_type or "int64")
            counts = np.sum([r.counts for r in a_res], axis=0) if a_res else np.zeros(nlist, dtype=np.int64)
            seconds["assign"] = time.time() - t0
            # ------------------------------------------------------------------ recall sample
            sample_uri, sample_refs = _pick_sample(a_res, spec, sample_size)
            # ------------------------------------------------------------------ phase 2: score
            t0 = time.time()
            lcol_spec = _left_column_source(left_in, self_join, lcols, a_res, spec)
            final = FinalSpec(None if out is None else out.staging, run_id,
                              None if out is None else out.storage_options, keep_internal=out is None,
                              right_columns=rcols, left_columns=lcols, scratch_root=spec.root,
                              **lcol_spec)
            s_tasks = _score_tasks(chosen, a_res, counts, order, part_rows, part_bytes, rspec, spec, params,
                                   plan_uri, sample_uri, filter_uri, snap, budget, counts_t[chosen], final, dim)
            say(f"scoring: {len(s_tasks)} task(s) read the probed partitions once each")
            s_res = eng.map(run_score_task, s_tasks, name="join: score") if s_tasks else []
            task_io += [r.io for r in s_res]
            seconds["score"] = time.time() - t0
            final_res = s_res
            if chosen == "shuffle":
                t0 = time.time()
                m_tasks = [MergeTask(g, spec, params, g, _inputs_for(s_res, g), rspec, final, sample_uri)
                           for g in range(params.merge_groups)]
                m_tasks = [t for t in m_tasks if t.inputs]
                say(f"merging partial top-k: {len(m_tasks)} task(s)")
                final_res = _phase_engine(eng, s_res, output is not None).map(run_merge_task, m_tasks,
                                                                             name="join: merge") if m_tasks else []
                task_io += [r.io for r in final_res]
                seconds["merge"] = time.time() - t0
            finalizers = final_res
            if dedup:
                t0 = time.time()
                dfinal = FinalSpec(**{**final.__dict__, "pair_order": True})
                d_tasks = [DedupTask(b, spec, params, b, _inputs_for(final_res, b), rspec, dfinal)
                           for b in range(params.dedup_buckets)]
                d_tasks = [t for t in d_tasks if t.inputs]
                say(f"de-duplicating unordered pairs: {len(d_tasks)} task(s)")
                d_res = _phase_engine(eng, final_res, output is not None).map(
                    run_dedup_task, d_tasks, name="join: dedup") if d_tasks else []
                task_io += [r.io for r in d_res]
                final_res = d_res
                seconds["dedup"] = time.time() - t0
            # ------------------------------------------------------------------ collect
            t0 = time.time()
            parts = [r.part for r in final_res if r.part is not None and r.part.rows]
            pairs = int(sum(p.rows for p in parts))
            rec = recall_estimate(sample_refs, [r.sample_exact for r in s_res],
                                  [r.sample_found for r in finalizers], k, radius, cap, self_join)
            _fill_report(report, rows_left, pairs, finalizers, s_res, a_res, snap, part_bytes, k, rec)
            extra_types = _extra_types(rt, left_in, lcols, rcols)
            if out is None:
                table = _in_memory_result(parts, dedup, id_type, rt.meta.id_type, extra_types, _internal)
                seconds["collect"] = time.time() - t0
            else:
                report.output = {"uri": out.uri, "key": key, "parts": len(parts), "skipped": False}
                seconds["collect"] = time.time() - t0
                seconds["total"] = time.time() - t_start
                report.seconds = {n: round(v, 3) for n, v in seconds.items()}
                committed, manifest = out.commit(parts, pairs, report.to_dict())
                report.output["skipped"] = not committed
                report.output["committed"] = committed
                table = None
        ok = True
    except Exception:
        # a concurrent run with the same key committed (and removed this run's staged parts): not a failure
        other = out.committed_by_other() if out is not None else None
        if other is None:
            raise
        say(f"output {out.uri} was committed by a concurrent run with key {key}: nothing written")
        rep = JoinReport(**{**other.get("report", {}), "output": {"uri": out.uri, "key": key, "skipped": True,
                                                                "parts": len(other.get("parts", []))}})
        return JoinResult(None, rep, output=out.uri, storage_options=out.storage_options, skipped=True)
    finally:
        try:
            _cleanup(spec)
        finally:
            unregister_right(rspec)
            if not ok and out is not None:
                out.discard()
    seconds["total"] = time.time() - t_start
    report.seconds = {n: round(v, 3) for n, v in seconds.items()}
    drv = {"right": rt.store.counters.snapshot() - drv_before["right"],
           "scratch": sstore.counters.snapshot() - drv_before["scratch"]}
    _fill_io(report, task_io, drv, local_engine and left_in.kind not in ("spark", "ray"), rt, spec)
    return JoinResult(table, report, output=None if out is None else out.uri,
                      storage_options=None if out is None else out.storage_options,
                      skipped=bool(report.output.get("skipped", False)))


# --------------------------------------------------------------------------------------------------
# helpers of the driver
# --------------------------------------------------------------------------------------------------

def _allowed_rows(rt, flt: str) -> np.ndarray:
    if not isinstance(flt, str) or not flt.strip():
        raise InvalidArgumentError(f"right_filter must be a non-empty SQL predicate, got {flt!r}")
    ds = rt.snapshot().ds
    try:
        hits = ds.scanner(filter=flt, columns=[ID_COLUMN], with_row_address=True).to_table()
    except Exception as e:
        raise InvalidArgumentError(f"invalid right_filter {flt!r} for table {rt.name!r}: "
                                   f"{str(e).splitlines()[0][:300]}") from e
    return np.sort(hits.column("_rowaddr").to_numpy().astype(np.uint64))


def _key_parts(left_in: LeftInput, rt, rv, k, radius, nprobe, cap, dedup, lf, rf, lcols, rcols, metric) -> dict:
    if left_in.kind == "table":
        left_id = {"table": left_in.table.data_uri, "version": left_in.table.version}
    elif left_in.kind == "parquet":
        left_id = {"files": [(s.uri, s.row_groups) for s in left_in.shards], "identity": left_in.identity}
    else:
        left_id = {"random": uuid.uuid4().hex}  # in-memory / frames: no stable identity without a key
    return {"left": left_id, "right": rt.data_uri, "version": rv, "k": k, "radius": radius, "nprobe": nprobe,
            "cap": cap, "dedup": dedup, "left_filter": lf, "right_filter": rf, "left_columns": lcols,
            "right_columns": rcols, "metric": metric}


def _scratch_spec(scratch, local_tmp: bool, rt, job_id: str) -> ScratchSpec:
    if scratch is not None:
        root = os.fspath(scratch).rstrip("/") + f"/join-{job_id}"
        return ScratchSpec(root, rt.lake.storage_options if root.startswith("s3://") else None)
    if local_tmp:
        return ScratchSpec(tempfile.mkdtemp(prefix=f"lakevec-join-{job_id}-"))
    return ScratchSpec(rt.lake.loc.join("_scratch", f"join-{job_id}"), rt.lake.storage_options)


def _cleanup(spec: ScratchSpec) -> None:
    try:
        if spec.root.startswith("s3://"):
            scratch_store(spec).delete_tree(spec.root)
        else:
            shutil.rmtree(spec.root, ignore_errors=True)
    finally:
        forget_store(spec)


def _pick_sample(a_res, spec: ScratchSpec, size: int):
    if not size or not a_res:
        return None, np.zeros(0, dtype=np.int64)
    pri = np.concatenate([r.sample_pri for r in a_res]) if a_res else np.zeros(0)
    if not len(pri):
        return None, np.zeros(0, dtype=np.int64)
    refs = np.concatenate([r.sample_refs for r in a_res])
    owner = np.concatenate([np.full(len(r.sample_pri), i) for i, r in enumerate(a_res)])
    sel = np.argsort(pri, kind="stable")[:size]
    store = scratch_store(spec)
    vecs, srefs = [], []
    for i in np.unique(owner[sel]):
        r = a_res[int(i)]
        want = set(refs[sel][owner[sel] == i].tolist())
        t = read_sections(store, r.index, ["s"])["s"]
        tr = t.column("_ref").to_numpy()
        keep = np.isin(tr, list(want))
        from ..search.reader import vectors_of
        vecs.append(np.asarray(vectors_of(t.column("vector")))[keep])
        srefs.append(tr[keep])
    v = np.ascontiguousarray(np.concatenate(vecs), dtype=np.float32)
    r_ = np.concatenate(srefs).astype(np.int64)
    return save_arrays(spec, "sample.npz", refs=r_, vectors=v), r_


def _left_column_source(left_in: LeftInput, self_join: bool, lcols: tuple, a_res, spec) -> dict:
    if not lcols:
        return {"left_source": "none"}
    if self_join:
        return {"left_source": "right"}
    if left_in.kind == "table":
        t = left_in.table
        return {"left_source": "table", "left_table": (t.data_uri, t.version),
                "left_storage_options": t.lake.lance_options}
    cols = []
    for r in a_res:
        if r.index is not None and "c" in r.index.sections:
            off, n, rows = r.index.sections["c"]
            cols.append((int(r.shard), r.index.uri, off, n, rows))
    return {"left_source": "shards", "shard_columns": tuple(cols)}


def _score_tasks(plan, a_res, counts, order, part_rows, part_bytes, rspec, spec, params, plan_uri, sample_uri,
                 filter_uri, snap, budget, n_tasks, final, dim) -> list:
    nlist = len(order)
    rowb = dim * 4 + 24
    prow = part_rows[order].astype(np.float64)
    pby = part_bytes[order].astype(np.float64)
    c = counts.astype(np.float64)
    read_w = 4.0  # one byte read ~ four multiply-adds
    if plan == "shuffle":
        cost = c * prow * dim + pby * read_w
        mem = counts * rowb
    else:
        mean_rows = float(prow.mean()) if nlist else 0.0
        cost = c * params.nprobe * mean_rows * dim + c * rowb
        mem = counts * rowb
    if sample_uri is not None:
        cost = cost + 200.0 * prow * dim * 0.05
    else:
        cost = np.where(c > 0, cost, 0.0)
    ranges = group_ranges(cost, mem, n_tasks, budget)
    tasks = []
    for lo, hi in ranges:
        if sample_uri is None and not counts[lo:hi].any():
            continue
        inputs = []
        for r in a_res:
            if r.index is None:
                continue
            secs = tuple((str(p), *r.index.sections[str(p)]) for p in range(lo, hi) if str(p) in r.index.sections)
            if secs:
                inputs.append((r.index.uri, secs))
        first = not tasks
        tasks.append(ScoreTask(len(tasks), rspec, spec, params, plan_uri, lo, hi, tuple(inputs), sample_uri,
                               sample_owner=sample_uri is not None,
                               sample_unassigned=bool(sample_uri and snap.unassigned and first and plan == "grouped"),
                               final=final if plan == "grouped" else None, filter_uri=filter_uri))
    if plan == "shuffle" and snap.unassigned:
        group, acc = [], 0
        groups = []
        for r in a_res:
            if r.index is None or "u" not in r.index.sections:
                continue
            off, n, rows = r.index.sections["u"]
            if group and acc + rows * rowb > budget:
                groups.append(group)
                group, acc = [], 0
            group.append((r.index.uri, (("u", off, n, rows),)))
            acc += rows * rowb
        if group:
            groups.append(group)
        for i, g in enumerate(groups):
            tasks.append(ScoreTask(len(tasks), rspec, spec, params, plan_uri, 0, 0, tuple(g), sample_uri,
                                   sample_owner=False, sample_unassigned=bool(sample_uri and i == 0),
                                   unassigned=True, final=None, filter_uri=filter_uri))
    return tasks


def _phase_engine(eng, inputs_from: list, to_output: bool):
    """The engine of a merge/dedup phase: the driver's own (local) one when its inputs are small and its
    results come back to the driver anyway (no ``output=``)."""
    from ..engines import engine_name, get_engine
    if engine_name(eng) == "local" or to_output:
        return eng
    total = sum(r.index.bytes for r in inputs_from if r.index is not None)
    return get_engine("local") if total <= DRIVER_PHASE_BYTES else eng


def _inputs_for(results, key: int) -> tuple:
    out = []
    for r in results:
        if r.index is not None and str(key) in r.index.sections:
            out.append((r.index.uri, ((str(key), *r.index.sections[str(key)]),)))
    return tuple(out)


def _extra_types(rt, left_in: LeftInput, lcols, rcols) -> list:
    out = []
    rs = rt.schema
    for c in lcols:
        t = None
        if left_in.kind == "table" and c in left_in.table.schema.names:
            t = left_in.table.schema.field(c).type
        elif c in rs.names and left_in.table is rt:
            t = rs.field(c).type
        out.append((f"left_{c}", t or pa.null()))
    for c in rcols:
        out.append((f"right_{c}", rs.field(c).type))
    return out


def _in_memory_result(parts, dedup: bool, left_type: str, right_type: str, extra_types,
                      internal: bool = False) -> pa.Table:
    tables = [p.table for p in parts if p.table is not None and p.table.num_rows]
    lt = pa.int64() if left_type == "int64" else pa.string()
    rtp = pa.int64() if right_type == "int64" else pa.string()
    if not tables:
        t = empty_result(lt, rtp, extra_types)
        if internal:
            t = t.append_column("_ref", pa.array([], pa.int64())).append_column("_raddr", pa.array([], pa.uint64()))
        return t
    t = concat(tables)
    if dedup:
        t = t.sort_by([("left_id", "ascending"), ("right_id", "ascending")])
    else:
        t = t.sort_by([("_ref", "ascending"), ("rank", "ascending")])
    return t if internal else t.drop_columns(["_ref", "_raddr"])


def _fill_report(report: JoinReport, rows_left, pairs, finalizers, s_res, a_res, snap, part_bytes, k, rec) -> None:
    report.rows_left = rows_left
    report.pairs = pairs
    refs_out = sum(r.stats.get("refs_out", 0) for r in finalizers)
    report.rows_without_pairs = max(0, rows_left - refs_out)
    if k is not None:
        report.rows_fewer_than_k = int(sum(r.stats.get("refs_short", 0) for r in finalizers)
                                       + report.rows_without_pairs)
    report.rows_capped = int(sum(r.capped for r in finalizers))
    nlist = len(part_bytes)
    reads = np.zeros(nlist, dtype=np.int64)
    for r in s_res:
        if len(r.partitions):
            np.add.at(reads, r.partitions, 1)
    u_bytes = int(sum(f.file_size for f in snap.unassigned))
    u_reads = int(sum(r.stats.get("unassigned_reads", 0) for r in s_res))
    read_bytes = int((reads * part_bytes).sum()) + u_bytes * u_reads
    distinct = int(part_bytes[reads > 0].sum()) + (u_bytes if u_reads else 0)
    by_reads = {}
    for n in np.unique(reads[reads > 0]):
        by_reads[str(int(n))] = int(part_bytes[reads == n].sum())
    report.partitions = {"total": int(nlist), "read": int((reads > 0).sum()), "reads": int(reads.sum()),
                         "max_reads_per_partition": int(reads.max()) if nlist else 0,
                         "unassigned_fragments": len(snap.unassigned)}
    report.right_bytes = {"table": int(part_bytes.sum()) + u_bytes, "distinct_read": distinct, "read": read_bytes,
                          "reads_per_byte": round(read_bytes / distinct, 4) if distinct else 0.0,
                          "bytes_by_times_read": by_reads}
    report.shuffle = {"bytes_written": int(sum(r.index.bytes for r in a_res if r.index is not None)
                                           + sum(r.index.bytes for r in s_res if r.index is not None)),
                      "left_rows_written": int(sum(int(r.counts.sum()) for r in a_res))}
    report.tasks = {"assign": len(a_res), "score": len(s_res),
                    "merge": len(finalizers) if report.plan == "shuffle" else 0}
    report.recall = rec


def _fill_io(report: JoinReport, task_io: list, drv: dict, same_process: bool, rt, spec: ScratchSpec) -> None:
    from ..store.accounting import IOSnapshot
    tot = {"right": IOSnapshot(), "scratch": IOSnapshot()}
    for io in task_io:
        for name in tot:
            tot[name] = tot[name] + io.get(name, IOSnapshot())
    if not same_process:  # tasks ran elsewhere: the driver's own reads come on top
        for name in tot:
            tot[name] = tot[name] + drv[name]
    else:  # tasks ran here, on the same counters: the driver's delta already holds them
        tot = dict(drv)
    prices = getattr(getattr(rt.lake, "_cache", None), "prices", None) or PriceTable()
    remote = {"right": not rt.store.loc.is_local, "scratch": spec.root.startswith("s3://")}
    report.io, report.estimated_cost_usd = io_dict(tot, prices, remote)
    report.shuffle["bytes_read"] = int(tot["scratch"].bytes_read)
