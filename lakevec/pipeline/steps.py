"""The steps of a pipeline: what each one plans (``--dry-run``) and does, every one idempotent.

A step never depends on a record of earlier runs to be safe: ingestion skips the source files the table's
state already has; compact and optimize do nothing when there is nothing to do; dedup, join and export
write one output per table version, committed once with an idempotency key made of the pipeline, the step
and that version, so a re-run finds its output and commits nothing. A re-run after a crash therefore redoes
exactly the steps that had not committed, and a run with nothing new commits nothing.
"""
from __future__ import annotations

import time

from ..config import MAX_ROWS_PER_FILE
from ..errors import LakevecError, StorageError, TableNotFoundError
from .spec import Step, output_uri

MB8 = 8 << 20


def _table(ctx, step: Step, create: bool = False):
    try:
        return ctx.lake.open_table(step.table)
    except TableNotFoundError:
        spec = step.get("create")
        if not create or not spec:
            raise
        return None


def _est(gets: int = 0, puts: int = 0, lists: int = 0, bytes_read: int = 0, bytes_written: int = 0, **extra) -> dict:
    return {"gets": int(gets), "puts": int(puts), "lists": int(lists), "bytes_read": int(bytes_read),
            "bytes_written": int(bytes_written), **extra}


def _reads(nbytes: int, objects: int) -> int:
    return int(objects + nbytes // MB8)


def _key(ctx, step: Step, version: int) -> str:
    return f"{ctx.pipeline.name}.{step.name}.v{version}"


# -- ingest ------------------------------------------------------------------------------------------

def plan_ingest(ctx, step: Step) -> dict:
    from ..ingest.common import new_sources
    from ..ingest.convert import open_parquet, resolve_files
    try:
        files = resolve_files(step.get("sources"), ctx.lake.storage_options)
    except StorageError as e:
        if "no Parquet files found" in str(e):
            return {"action": "nothing to ingest (no Parquet files)", **_est(lists=1)}
        raise
    t = _table(ctx, step, create=True)
    if t is not None:
        new, old = new_sources(t.state_of(t._open_latest()), files)
    else:
        new, old = files, []
    rows = sum(open_parquet(f, ctx.lake.storage_options).metadata.num_rows for f in new)
    nbytes = sum(f.size for f in new)
    if not new:
        return {"action": f"nothing new ({len(old)} file(s) already ingested)", "files_new": 0,
                "files_done": len(old), **_est(lists=1)}
    frags = max(1, -(-rows // MAX_ROWS_PER_FILE))
    if t is not None and t.snapshot().index is not None:
        frags = max(frags, t.snapshot().index.num_partitions)
    return {"action": f"ingest {len(new)} new file(s)" + (" (creates the table)" if t is None else ""),
            "files_new": len(new), "files_done": len(old), "rows": rows,
            **_est(gets=_reads(nbytes, len(new)) + 4, puts=frags + 4, lists=2, bytes_read=nbytes,
                   bytes_written=nbytes)}


def run_ingest(ctx, step: Step) -> dict:
    from ..ingest.convert import resolve_files
    try:
        resolve_files(step.get("sources"), ctx.lake.storage_options)
    except StorageError as e:
        if "no Parquet files found" in str(e):
            return {"status": "no-op", "detail": "no Parquet files in the sources"}
        raise
    t = _table(ctx, step, create=True)
    if t is None:
        c = step.get("create")
        t = ctx.lake.create_table(step.table, dim=int(c["dim"]), metric=c.get("metric", "l2"),
                                  id_type=c.get("id_type", "int64"), exist_ok=True)
    r = t.add(step.get("sources"), id_column=step.get("id_column", "id"),
              vector_column=step.get("vector_column", "vector"), on_bad_rows=step.get("on_bad_rows", "raise"),
              idempotency_key=step.get("idempotency_key"), engine=step.get("engine", "local"))
    return {"status": "no-op" if r.skipped else "committed", "version": r.version, "rows": r.rows_added,
            "rows_rejected": r.rows_rejected, "files_skipped": r.files_skipped, "bytes_written": r.bytes_written}


# -- compact -----------------------------------------------------------------------------------------

def plan_compact(ctx, step: Step) -> dict:
    from ..maintenance import plan_compaction
    t = ctx.lake.open_table(step.table)
    snap = t.snapshot()
    groups = plan_compaction(snap, int(step.get("target_rows", MAX_ROWS_PER_FILE)))
    size = {f.fragment_id: f.file_size for f in snap.fragments}
    nbytes = sum(size[f] for _, fids in groups for f in fids)
    nfr = sum(len(fids) for _, fids in groups)
    if not groups:
        return {"action": "nothing to compact", **_est()}
    return {"action": f"merge {nfr} fragment(s) into {len(groups)}", **_est(
        gets=_reads(nbytes, nfr), puts=len(groups) + 4, bytes_read=nbytes, bytes_written=nbytes)}


def run_compact(ctx, step: Step) -> dict:
    t = ctx.lake.open_table(step.table)
    r = t.compact(target_rows=step.get("target_rows"), engine=step.get("engine", "local"))
    return {"status": "committed" if r.get("committed") else "no-op", "version": r.get("version"),
            "rows": r.get("rows_rewritten", 0), "detail": f"{r.get('fragments_before')} -> "
            f"{r.get('fragments_after')} fragments"}


# -- optimize ----------------------------------------------------------------------------------------

def _optimize(ctx, step: Step, dry_run: bool) -> dict:
    t = ctx.lake.open_table(step.table)
    if not hasattr(t, "optimize"):  # pragma: no cover - an installation without index maintenance
        raise LakevecError("this lakevec has no Table.optimize")
    return t.optimize(retrain=bool(step.get("retrain", False)), dry_run=dry_run, engine=step.get("engine", "local"))


def plan_optimize(ctx, step: Step) -> dict:
    t = ctx.lake.open_table(step.table)
    snap = t.snapshot()
    if snap.index is None:  # the first night: the index is built
        nbytes = sum(f.file_size for f in snap.fragments)
        return {"action": f"build the index ({snap.num_rows:,} rows: the table has none)",
                **_est(gets=_reads(2 * nbytes, 2 * len(snap.fragments)), puts=len(snap.fragments) + 8,
                       bytes_read=2 * nbytes, bytes_written=nbytes)}
    r = _optimize(ctx, step, dry_run=True)
    nbytes = int(r.get("bytes_rewritten") or r.get("bytes_to_rewrite") or 0)
    return {"action": r.get("action") or r.get("decision") or ("rebalance" if nbytes else "nothing to do"),
            "report": r, **_est(gets=_reads(nbytes, 1), puts=4 if nbytes else 0, bytes_read=nbytes,
                                bytes_written=nbytes)}


def run_optimize(ctx, step: Step) -> dict:
    t = ctx.lake.open_table(step.table)
    if t.snapshot().index is None:  # the first night: build the index
        m = t.build_index(engine=step.get("engine", "local"))
        return {"status": "committed", "version": m.data_version, "rows": sum(m.partition_sizes),
                "detail": f"index {m.index_id}: {m.num_partitions} partitions, default nprobe {m.default_nprobe}"}
    r = _optimize(ctx, step, dry_run=False)
    return {"status": "committed" if r.get("committed") else "no-op", "version": r.get("version"),
            "detail": r.get("action") or r.get("decision"), "report": r}


# -- dedup and join ----------------------------------------------------------------------------------

def _right_estimate(t) -> dict:
    snap = t.snapshot()
    nbytes = sum(f.file_size for f in snap.fragments)
    return {"right_rows": snap.num_rows, "right_bytes": nbytes, "right_fragments": len(snap.fragments)}


def plan_dedup(ctx, step: Step) -> dict:
    t = ctx.lake.open_table(step.table)
    v = t.version
    out = output_uri(step.get("output"), t.name, v, ctx.pipeline.name)
    if _output_done(ctx, out, _key(ctx, step, v)):
        return {"action": f"nothing new: {out} holds the groups of version {v}", "output": out, **_est(gets=1)}
    e = _right_estimate(t)
    return {"action": f"self-join of version {v} ({e['right_rows']:,} rows) -> groups at {out}", "output": out,
            "rows": e["right_rows"], **_est(gets=_reads(e["right_bytes"], e["right_fragments"]) + 2, puts=4,
                                            bytes_read=e["right_bytes"])}


def run_dedup(ctx, step: Step) -> dict:
    import lakevec
    t = ctx.lake.open_table(step.table)
    v = t.version
    out = output_uri(step.get("output"), t.name, v, ctx.pipeline.name)
    r = lakevec.dedup(t.checkout(v), float(step.get("threshold")), k=int(step.get("k", 10)), output=out,
                      columns=step.get("columns"), engine=step.get("engine", "local"), nprobe=step.get("nprobe"),
                      idempotency_key=_key(ctx, step, v))
    rep = r.report.to_dict() if hasattr(r.report, "to_dict") else dict(r.report or {})
    return {"status": "no-op" if r.skipped else "committed", "version": v, "output": out,
            "rows": (r.summary or {}).get("rows_in_groups"), "groups": (r.summary or {}).get("groups"),
            "recall": rep.get("recall_estimate"), "detail": r.summary}


def _left(ctx, step: Step):
    if step.get("left_table"):
        return ctx.lake.open_table(step.get("left_table"))
    return step.get("left")


def plan_join(ctx, step: Step) -> dict:
    t = ctx.lake.open_table(step.table)
    v = t.version
    out = output_uri(step.get("output"), t.name, v, ctx.pipeline.name)
    key = _key(ctx, step, v)
    if step.get("left_table"):
        key += f".{step.get('left_table')}.v{ctx.lake.open_table(step.get('left_table')).version}"
    if _output_done(ctx, out, key):
        return {"action": f"nothing new: {out} holds this join", "output": out, **_est(gets=1)}
    e = _right_estimate(t)
    return {"action": f"join into version {v} of {t.name!r} -> {out}", "output": out,
            **_est(gets=_reads(e["right_bytes"], e["right_fragments"]) + 2, puts=4, bytes_read=e["right_bytes"])}


def run_join(ctx, step: Step) -> dict:
    import lakevec
    t = ctx.lake.open_table(step.table)
    v = t.version
    out = output_uri(step.get("output"), t.name, v, ctx.pipeline.name)
    left = _left(ctx, step)
    key = _key(ctx, step, v)
    if step.get("left_table"):
        key += f".{left.name}.v{left.version}"
    kw = {k: step.get(k) for k in ("radius", "nprobe", "columns", "right_filter", "left_filter") if step.get(k) is not None}
    r = lakevec.knn_join(left, t.checkout(v), k=int(step.get("k", 10)), engine=step.get("engine", "local"),
                         output=out, idempotency_key=key, **kw)
    rep = r.report.to_dict() if hasattr(r.report, "to_dict") else {}
    return {"status": "no-op" if r.skipped else "committed", "version": v, "output": out,
            "rows": rep.get("pairs"), "recall": rep.get("recall_estimate")}


# -- export ------------------------------------------------------------------------------------------

def _output_done(ctx, uri: str, key: str) -> bool:
    """True if the output folder ``uri`` holds a committed result with idempotency ``key``."""
    from ..join.output import MANIFEST
    from ..store.location import parse_location
    from ..store.objects import ObjectStore
    loc = parse_location(uri, ctx.lake.storage_options)
    store = ObjectStore(loc)
    m_uri = loc.join(MANIFEST)
    return store.head(m_uri) and store.read_json(m_uri).get("key") == key


def plan_export(ctx, step: Step) -> dict:
    t = ctx.lake.open_table(step.table)
    v = t.version
    out = output_uri(step.get("output"), t.name, v, ctx.pipeline.name)
    if _output_done(ctx, out, _key(ctx, step, v)):
        return {"action": f"nothing new: {out} holds version {v}", "output": out, **_est(gets=1)}
    e = _right_estimate(t)
    return {"action": f"export version {v} ({e['right_rows']:,} rows) -> {out}", "output": out,
            "rows": e["right_rows"], **_est(gets=_reads(e["right_bytes"], e["right_fragments"]) + 1,
                                            puts=-(-e["right_rows"] // 1_000_000) + 3,
                                            bytes_read=e["right_bytes"], bytes_written=e["right_bytes"])}


def run_export(ctx, step: Step) -> dict:
    """Write the table's version (its ``columns``, rows matching ``filter``) as Parquet, exactly once."""
    import pyarrow.parquet as pq

    from ..join.output import PartInfo, make_output
    t = ctx.lake.open_table(step.table)
    v = t.version
    out_uri = output_uri(step.get("output"), t.name, v, ctx.pipeline.name)
    out = make_output(out_uri, ctx.lake.storage_options, _key(ctx, step, v), f"{ctx.run_id}-{step.name}")
    if out.existing() is not None:
        return {"status": "no-op", "version": v, "output": out.uri}
    pinned = t.checkout(v)
    cols = step.get("columns") or [n for n in pinned.schema.names if n != "vector"] + ["vector"]
    flt = step.get("filter")
    ds = pinned._dataset()
    if flt is not None:
        from ..search.filters import check_filter
        flt = check_filter(flt, ds.schema)
    parts, rows, i = [], 0, 0
    writer, sink, cur, cur_rows = None, None, None, 0

    def close() -> None:
        writer.close()
        if sink is not None:
            sink.close()  # completes the upload of the part

    try:
        for batch in ds.to_batches(columns=list(cols), filter=flt, batch_size=65536):
            if writer is None:
                cur = out.loc.join("_staging", out.run_id, f"part-{out.run_id}-{i:05d}.parquet")
                path = out.loc.fs_path(cur)
                if out.loc.is_local:
                    import os
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    sink = None
                else:
                    sink = out.store.fs.open_output_stream(path)
                writer = pq.ParquetWriter(sink or path, batch.schema, write_page_checksum=True)
            writer.write_batch(batch)
            cur_rows += batch.num_rows
            if cur_rows >= 1_000_000:
                close()
                parts.append(PartInfo(cur, cur_rows))
                rows, cur_rows, writer, sink, i = rows + cur_rows, 0, None, None, i + 1
        if writer is not None:
            close()
            parts.append(PartInfo(cur, cur_rows))
            rows += cur_rows
    except Exception as e:
        out.discard()
        from ..store.objects import wrap_io_error
        raise wrap_io_error(e, f"exporting table {t.name!r} version {v} to {out.uri}") from e
    committed, manifest = out.commit(parts, rows, {"table": t.name, "version": v, "columns": list(cols),
                                                   "filter": step.get("filter"), "written_at": time.time()})
    return {"status": "committed" if committed else "no-op", "version": v, "output": out.uri, "rows": rows}


def _planned(fn):
    """A dry run plans a step on a table an earlier step creates: it has nothing to read yet."""
    def plan(ctx, step):
        try:
            return fn(ctx, step)
        except TableNotFoundError:
            return {"action": f"table {step.table!r} does not exist yet (an earlier step creates it): planned "
                              "on the next run", **_est()}
    return plan


STEPS = {
    "ingest": (plan_ingest, run_ingest),
    "compact": (_planned(plan_compact), run_compact),
    "optimize": (_planned(plan_optimize), run_optimize),
    "dedup": (_planned(plan_dedup), run_dedup),
    "join": (_planned(plan_join), run_join),
    "export": (_planned(plan_export), run_export),
}
