"""Distributed ingestion (Table.add(paths, engine="ray"|"spark")): same rows and errors as the local engine,
idempotent re-runs, no duplicates under task retries, nothing committed by a job killed before its commit."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest
from core_helpers import TableState, data_files, source_root, table_vectors, write_parquet

import lakevec
from lakevec.engines.faults import FailOnce
from lakevec.index.ivf import IvfModel

DIM = 16
TASK_BYTES = 100_000  # ~1 small file per task, the big file cut into row-group slices: ~7 tasks


def _rows(start: int, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n, dtype=np.int64)
    return {"id": ids, "vector": rng.standard_normal((n, DIM)).astype(np.float32), "tag": ids % 7}


def _arrow(d: dict) -> pa.Table:
    return pa.table({"id": pa.array(d["id"]),
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(d["vector"].ravel()), DIM),
                     "tag": pa.array(d["tag"])})


def make_sources(storage, tmp_path, edit=None) -> tuple[str, dict]:
    """Three files of 1200 rows and one of 3600 (row groups of 400 rows); ``edit(name, dict)`` may spoil rows.

    Returns (source folder, all rows as one dict)."""
    root = source_root(storage, tmp_path)
    parts = [("a.parquet", 0, 1200), ("b.parquet", 1200, 1200), ("c.parquet", 2400, 1200), ("d.parquet", 3600, 3600)]
    allrows = []
    for i, (name, start, n) in enumerate(parts):
        d = _rows(start, n, seed=i)
        if edit is not None:
            d = edit(name, d) or d
        write_parquet(storage, root, name, _arrow(d), row_group_size=400)
        allrows.append(d)
    merged = {k: np.concatenate([d[k] for d in allrows]) for k in allrows[0]}
    return root, merged


def _same_rows(a, b):
    ia, va, ta = table_vectors(a)
    ib, vb, tb = table_vectors(b)
    assert ia.tolist() == ib.tolist()
    np.testing.assert_array_equal(va, vb)
    assert ta.column("tag").to_pylist() == tb.column("tag").to_pylist()


def test_same_rows_as_local_and_rerun_adds_nothing(engine, storage, lake, tmp_path, small_tasks):
    src, rows = make_sources(storage, tmp_path)
    ref = lake.create_table("ref", dim=DIM)
    r_ref = ref.add(src)
    t = lake.create_table("t", dim=DIM)
    with small_tasks(engine, TASK_BYTES):
        r = t.add(src, engine=engine)
    assert (r.rows_added, r.rows_rejected) == (len(rows["id"]), 0) == (r_ref.rows_added, 0)
    assert r.key == r_ref.key and r.key.startswith("src-")  # the key is derived from the sources
    assert r.version == t.version
    _same_rows(t, ref)
    if engine != "local":  # the work was split: every task wrote its own fragment(s)
        assert len(t.snapshot().fragments) >= 5
    # a re-run of the same sources commits nothing
    v = t.version
    with small_tasks(engine, TASK_BYTES):
        again = t.add(src, engine=engine)
    assert again.skipped and again.rows_added == 0
    assert t.version == v and t.count_rows() == len(rows["id"])


def test_explicit_idempotency_key(dist_engine, local_lake, tmp_path, small_tasks):
    from core_helpers import write_parquet as wp
    from conftest import Storage
    lake = local_lake
    st = Storage("local", lake.uri, None)
    src, rows = make_sources(st, tmp_path)
    t = lake.create_table("t", dim=DIM)
    with small_tasks(dist_engine, TASK_BYTES):
        r1 = t.add(src, engine=dist_engine, idempotency_key="nightly-2024-06-01")
        wp(st, src, "e.parquet", _arrow(_rows(10_000, 10, seed=9)))  # the folder changed, the key did not
        r2 = t.add(src, engine=dist_engine, idempotency_key="nightly-2024-06-01")
    assert r1.rows_added == len(rows["id"]) and r2.skipped and r2.rows_added == 0
    assert t.count_rows() == len(rows["id"])


def test_only_new_files_of_a_folder_are_ingested(dist_engine, local_lake, ref_lake, tmp_path, small_tasks):
    from conftest import Storage
    src, rows = make_sources(Storage("local", local_lake.uri, None), tmp_path)
    ref = ref_lake.create_table("t", dim=DIM)
    t = local_lake.create_table("t", dim=DIM)
    ref.add(src)
    with small_tasks(dist_engine, TASK_BYTES):
        t.add(src, engine=dist_engine)
    # a new file lands in the folder: the next run ingests it alone (the others were committed)
    write_parquet(Storage("local", local_lake.uri, None), src, "e.parquet", _arrow(_rows(20_000, 300, seed=7)))
    r_ref = ref.add(src)
    with small_tasks(dist_engine, TASK_BYTES):
        r = t.add(src, engine=dist_engine)
    assert (r.rows_added, r.files_skipped, r.key) == (r_ref.rows_added, r_ref.files_skipped, r_ref.key) == \
        (300, 4, r_ref.key)
    _same_rows(t, ref)
    with small_tasks(dist_engine, TASK_BYTES):
        again = t.add(src, engine=dist_engine)
    assert again.skipped and again.files_skipped == 5 and t.count_rows() == len(rows["id"]) + 300


def test_append_to_indexed_table_writes_partition_pure_fragments(dist_engine, lake, tmp_path, small_tasks):
    from conftest import Storage
    t = lake.create_table("t", dim=DIM)
    t.add(_rows(100_000, 2000, seed=42))
    t.build_index(num_partitions=8)
    src, rows = make_sources(Storage("local", lake.uri, None), tmp_path)
    with small_tasks(dist_engine, TASK_BYTES):
        r = t.add(src, engine=dist_engine)
    assert r.rows_added == len(rows["id"])
    snap = t.snapshot()
    assert snap.index is not None and not snap.unassigned  # every new file has its sidecar entry
    model = IvfModel(snap.model.centroids, "l2")
    checked = 0
    for f in snap.fragments:
        tbl = snap.ds.get_fragment(f.fragment_id).to_table(columns=["vector", "_partition"])
        parts = np.unique(tbl.column("_partition").to_numpy())
        assert parts.tolist() == [f.partition]  # one partition per fragment
        vec = np.stack(tbl.column("vector").to_numpy(zero_copy_only=False))
        assert (model.assign(vec) == f.partition).all()  # and it is the rows' nearest centroid
        checked += tbl.num_rows
    assert checked == 2000 + len(rows["id"])


def _nan_in_slice(name, d):
    if name == "d.parquet":  # inside one slice of the big file (row 2010 of it)
        d["vector"][2010, 3] = np.nan
    if name == "b.parquet":
        d["vector"][5] = np.inf


def _cross_duplicates(name, d):
    if name == "d.parquet":
        d["id"][3000] = 100  # first seen in a.parquet (another task)
        d["id"][3100] = 3700  # first seen earlier in d.parquet (another slice of the same file)
    if name == "c.parquet":
        d["id"][7] = d["id"][8]  # inside one task


@pytest.mark.parametrize("edit", [_nan_in_slice, _cross_duplicates], ids=["nan", "duplicates"])
@pytest.mark.parametrize("mode", ["raise", "skip", "quarantine"])
def test_bad_rows_give_the_local_engine_result(dist_engine, local_lake, ref_lake, tmp_path, small_tasks, edit, mode):
    from conftest import Storage
    src, rows = make_sources(Storage("local", local_lake.uri, None), tmp_path, edit)
    ref = ref_lake.create_table("t", dim=DIM)  # same table name: same messages
    t = local_lake.create_table("t", dim=DIM)
    for tab in (ref, t):
        tab.add(_rows(50_000, 3, seed=5))
    before = TableState(t)
    local_err = dist_err = None
    try:
        r_ref = ref.add(src, on_bad_rows=mode)
    except lakevec.ValidationError as e:
        local_err = e
    try:
        with small_tasks(dist_engine, TASK_BYTES):
            r = t.add(src, engine=dist_engine, on_bad_rows=mode)
    except lakevec.ValidationError as e:
        dist_err = e
    if mode == "raise":
        assert local_err is not None and dist_err is not None
        assert str(dist_err) == str(local_err)  # same rows, same reasons, same wording
        assert dist_err.problems == local_err.problems and dist_err.source == local_err.source
        before.assert_unchanged(files=True)  # nothing committed, every written file deleted
        return
    assert local_err is None and dist_err is None
    assert (r.rows_added, r.rows_rejected, r.problems) == (r_ref.rows_added, r_ref.rows_rejected, r_ref.problems)
    assert r.rows_rejected > 0
    _same_rows(t, ref)
    if mode == "quarantine":
        cols = ["source", "row", "id", "reason"]
        assert t.rejects().select(cols).to_pylist() == ref.rejects().select(cols).to_pylist()


def test_schema_drift_in_one_file_is_the_local_error(dist_engine, local_lake, ref_lake, tmp_path, small_tasks):
    from conftest import Storage
    st = Storage("local", local_lake.uri, None)
    src, _ = make_sources(st, tmp_path)
    drift = _arrow(_rows(20_000, 50, seed=3)).append_column("extra", pa.array(np.zeros(50)))
    write_parquet(st, src, "b2.parquet", drift)
    ref = ref_lake.create_table("t", dim=DIM)
    t = local_lake.create_table("t", dim=DIM)
    with pytest.raises(lakevec.SchemaError) as local:
        ref.add(src, on_bad_rows="skip")
    before = TableState(t)
    with small_tasks(dist_engine, TASK_BYTES):
        with pytest.raises(lakevec.SchemaError) as dist:
            t.add(src, engine=dist_engine, on_bad_rows="skip")
    assert str(dist.value) == str(local.value) and "b2.parquet" in str(dist.value)
    before.assert_unchanged(files=True)


def _check_retried(t, fo, r, rows):
    assert sorted(fo.attempts()) == ["1", "4"]  # those tasks failed once, after writing their fragments
    ids = t.to_arrow(columns=["id"]).column("id").to_numpy()
    assert r.rows_added == len(ids) == len(np.unique(ids)) == len(rows["id"])
    # the failed attempts' files are orphans: vacuum removes them, the data stays
    files = data_files(t)
    committed = {fr.metadata.files[0].path for fr in t.snapshot().ds.get_fragments()}
    assert files - committed  # orphans exist
    out = t.vacuum(older_than=0, force=True)
    assert out["data_files_removed"] >= len(files - committed)
    assert data_files(t) == committed
    assert t.count_rows() == len(rows["id"])


def test_retried_tasks_do_not_duplicate_rows(dist_engine, storage, lake, tmp_path, small_tasks):
    src, rows = make_sources(storage, tmp_path)
    t = lake.create_table("t", dim=DIM)
    fo = FailOnce(str(tmp_path / "markers"), how="raise", task_ids=(1, 4))
    with small_tasks(dist_engine, TASK_BYTES, task_wrapper=fo):
        r = t.add(src, engine=dist_engine)
    _check_retried(t, fo, r, rows)


def test_killed_workers_do_not_duplicate_rows(dist_engine, local_lake, tmp_path, small_tasks):
    from conftest import Storage
    src, rows = make_sources(Storage("local", local_lake.uri, None), tmp_path)
    t = local_lake.create_table("t", dim=DIM)
    fo = FailOnce(str(tmp_path / "markers"), how="exit", task_ids=(1, 4))  # the worker process dies
    with small_tasks(dist_engine, TASK_BYTES, task_wrapper=fo):
        r = t.add(src, engine=dist_engine)
    _check_retried(t, fo, r, rows)


@pytest.mark.ray
def test_job_killed_before_commit_leaves_table_unchanged_and_vacuum_cleans_up(ray_cluster, local_lake, tmp_path):
    from conftest import Storage
    lake = local_lake
    src, rows = make_sources(Storage("local", lake.uri, None), tmp_path)
    t = lake.create_table("t", dim=DIM)
    t.add(_rows(100_000, 1000, seed=1))
    t.build_index(num_partitions=4)  # so that the dead job writes per-partition fragments and an id run
    t.vacuum(older_than=0, force=True)  # only the current version's files remain
    before = TableState(t)
    meta_before = _meta_objects(t)
    # The driver dies (SIGKILL) right when it commits: tasks ran on the shared Ray, files are written.
    code = textwrap.dedent(f"""
        import os, signal
        import lakevec, lakevec.commit.job as job
        from lakevec.engines import get_engine
        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)
        job.commit = die
        t = lakevec.connect({lake.uri!r}).open_table("t")
        t.add({src!r}, engine=get_engine("ray", task_bytes={TASK_BYTES}))
    """)
    env = dict(os.environ, RAY_ADDRESS=ray_cluster.get_runtime_context().gcs_address)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env)
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    t = lake.open_table("t")
    before.assert_unchanged(files=False)  # same version, same rows
    orphans = data_files(t) - before.files
    assert orphans  # the dead job's fragments are still there...
    new_meta = _meta_objects(t) - meta_before
    assert any(n.startswith("ids/") for n in new_meta)  # ...and its id run, its lease and its key's claim
    assert any(n.startswith("leases/") for n in new_meta) and any(n.startswith("claims/") for n in new_meta)
    # the lease of the dead job keeps vacuum away from its files until it expires
    out = t.vacuum(older_than=0, force=True)
    assert out["live_jobs"] == 1 and data_files(t) - before.files == orphans
    _expire_leases(t)
    out = t.vacuum(older_than=0, force=True)
    assert data_files(t) == before.files  # vacuum removed exactly the orphans
    assert _meta_objects(t) == meta_before and out["claims_removed"] >= 2
    # the sources can now be ingested for real
    r = t.add(src, engine="ray")
    assert r.rows_added == len(rows["id"]) and t.count_rows() == before.rows + len(rows["id"])


def _meta_objects(t) -> set[str]:
    import pyarrow.fs as pafs
    root = t.loc.join("_lakevec")
    out = set()
    for i in t.store.list(root, recursive=True):
        if i.type == pafs.FileType.File:
            rel = i.path.split("/_lakevec/", 1)[1]
            if not rel.startswith(("commits/", "checkpoints/")):  # the ones of committed versions come and go
                out.add(rel)
    return out


def _expire_leases(t) -> None:
    """Make every lease and claim look expired (as after the dead process's lease time)."""
    import pyarrow.fs as pafs
    for i in t.store.list(t.loc.join("_lakevec"), recursive=True):
        if i.type == pafs.FileType.File and ("/leases/" in i.path or "/claims/" in i.path):
            uri = i.path if t.store.loc.is_local else f"s3://{i.path}"
            body = t.store.read_json(uri)
            body["expires_at"] = 0
            t.store.write_json(uri, body)


def test_in_memory_input_with_a_distributed_engine(dist_engine, local_lake):
    t = local_lake.create_table("t", dim=DIM)
    r = t.add(_rows(0, 100, seed=0), engine=dist_engine)  # already on the driver: validated there
    assert r.rows_added == 100 and t.count_rows() == 100
