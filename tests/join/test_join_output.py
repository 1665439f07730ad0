"""Join output written exactly once: one commit, re-runs commit nothing, a join killed mid-way and re-run writes
one complete output, concurrent runs with one key commit once, and a join during appends reads one version."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pyarrow.dataset as pads
import pytest
from join_helpers import make_table, pair_set, vectors

import lakevec
from lakevec.join import read_output

NLIST = 8
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _files(store, uri):
    """Paths of the files below ``uri``, relative to it."""
    base = store.loc.fs_path(uri).rstrip("/") + "/"
    return sorted(i.path[len(base):] for i in store.list(uri, recursive=True) if i.type.name == "File")


def test_output_written_once_and_reruns_commit_nothing(storage, lake):
    t = make_table(lake, "t", vectors(1000, seed=61), nlist=NLIST)
    left = make_table(lake, "left", vectors(150, seed=62), nlist=2)
    want = lakevec.knn_join(left, t, k=3, nprobe=3)
    dest = storage.uri + "-pairs"
    res = lakevec.knn_join(left, t, k=3, nprobe=3, output=dest)
    assert res.output == dest and not res.skipped and res.report.output["committed"]
    assert res.table.sort_by([("left_id", "ascending"), ("rank", "ascending")]).equals(
        want.table.sort_by([("left_id", "ascending"), ("rank", "ascending")]))
    files = _files(lake.store, dest)
    parts = [f for f in files if f.endswith(".parquet")]
    assert "_lakevec_join.json" in files and "_SUCCESS" in files and parts
    assert not any("_staging" in f for f in files)
    # any Parquet reader sees exactly the result
    ds = pads.dataset(lake.store.loc.fs_path(dest), filesystem=lake.store.fs, format="parquet",
                      exclude_invalid_files=True)
    assert ds.to_table().num_rows == want.num_rows
    # the same join again (its key derives from the inputs): nothing committed, nothing written
    again = lakevec.knn_join(left, t, k=3, nprobe=3, output=dest)
    assert again.skipped and again.report.output["skipped"] and _files(lake.store, dest) == files
    assert pair_set(again) == pair_set(want)
    # another join into the same folder is refused before it does any work
    with pytest.raises(lakevec.InvalidArgumentError, match="already holds the result of another join"):
        lakevec.knn_join(left, t, k=4, nprobe=3, output=dest)
    with pytest.raises(lakevec.InvalidArgumentError, match="already holds the result of another join"):
        lakevec.knn_join(left, t, k=3, nprobe=3, output=dest, idempotency_key="other")
    assert _files(lake.store, dest) == files


KILLED_RUN = """
import os, signal, sys
import numpy as np
import lakevec
from lakevec.join import output as out_mod
lake = lakevec.connect({lake!r})
t = lake.open_table("t")
left = lake.open_table("left")
where = {where!r}
if where == "after-parts":
    class KillingEngine:
        name = "local"
        def map(self, fn, tasks, name="job"):
            res = [fn(x) for x in tasks]
            if name == "join: merge":  # final parts are staged: die before the commit
                os.kill(os.getpid(), signal.SIGKILL)
            return res
    engine = KillingEngine()
else:
    engine = "local"
    def die(self, manifest):  # the manifest is committed: die before publishing the parts
        os.kill(os.getpid(), signal.SIGKILL)
    out_mod.ParquetOutput.publish = die
lakevec.knn_join(left, t, k=3, nprobe=3, output={dest!r}, idempotency_key="job-7", engine=engine, plan="shuffle")
print("not killed")
"""


@pytest.mark.parametrize("where", ["after-parts", "after-commit"])
def test_killed_join_rerun_writes_one_complete_output(local_lake, tmp_path, where):
    t = make_table(local_lake, "t", vectors(1000, seed=63), nlist=NLIST)
    left = make_table(local_lake, "left", vectors(150, seed=64), nlist=2)
    want = lakevec.knn_join(left, t, k=3, nprobe=3)
    dest = str(tmp_path / "pairs")
    script = KILLED_RUN.format(lake=local_lake.uri, dest=dest, where=where)
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": REPO}, timeout=300)
    assert p.returncode == -9, (p.returncode, p.stdout, p.stderr[-2000:])
    before = _files(local_lake.store, dest)
    if where == "after-parts":
        assert before and all(f.startswith("_staging/") for f in before)  # staged parts only: nothing committed
    else:
        assert "_lakevec_join.json" in before and "_SUCCESS" not in before
    res = lakevec.knn_join(left, t, k=3, nprobe=3, output=dest, idempotency_key="job-7", plan="shuffle")
    assert res.skipped == (where == "after-commit")  # a committed run is completed, not repeated
    files = _files(local_lake.store, dest)
    assert "_SUCCESS" in files and not any(f.startswith("_staging") for f in files)
    parts = [f for f in files if f.endswith(".parquet")]
    import json
    manifest = json.loads(open(os.path.join(dest, "_lakevec_join.json")).read())
    assert sorted(manifest["parts"]) == sorted(parts)  # exactly the committed parts, no orphans
    out = read_output(dest)
    assert out.num_rows == want.num_rows and pair_set(out) == pair_set(want)
    assert pads.dataset(dest, format="parquet", exclude_invalid_files=True).to_table().num_rows == want.num_rows


def test_concurrent_runs_with_one_key_commit_once(local_lake, tmp_path, monkeypatch):
    t = make_table(local_lake, "t", vectors(1500, seed=65), nlist=NLIST)
    left = make_table(local_lake, "left", vectors(300, seed=66), nlist=2)
    dest = str(tmp_path / "pairs")
    results, errors = [], []
    # all runs reach their commit point together: only the conditional create can decide
    from lakevec.join import output as out_mod
    barrier = threading.Barrier(3, timeout=120)
    real_commit = out_mod.ParquetOutput.commit

    def commit_together(self, *a, **kw):
        barrier.wait()
        return real_commit(self, *a, **kw)
    monkeypatch.setattr(out_mod.ParquetOutput, "commit", commit_together)

    def run():
        try:
            results.append(lakevec.knn_join(left, t, k=3, nprobe=3, output=dest, idempotency_key="k1"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert sum(not r.skipped for r in results) == 1  # exactly one commit
    out = read_output(dest)
    assert out.num_rows == 900 and len(pair_set(out)) == 900
    parts = [f for f in os.listdir(dest) if f.endswith(".parquet")]
    import json
    assert sorted(json.load(open(os.path.join(dest, "_lakevec_join.json")))["parts"]) == sorted(parts)


@pytest.mark.parametrize("engine", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_join_during_concurrent_appends_reads_one_version(local_lake, request, engine):
    if engine == "ray":
        request.getfixturevalue("ray_cluster")
    x = vectors(2000, seed=67)
    t = make_table(local_lake, "t", x, nlist=NLIST)
    q = vectors(200, seed=68)
    left = {"id": np.arange(200), "vector": q}
    stop = threading.Event()
    appended = []

    def append():  # rows right next to the queries: a join that saw them would return them
        writer = local_lake.open_table("t")
        i = 0
        while not stop.is_set() and i < 40:
            ids = 100_000 + i * 10 + np.arange(10)
            # (each appended vector is distinct: exact ties may rank either way)
            writer.add({"id": ids, "vector": q[(i * 10) % 200:(i * 10) % 200 + 10] + 1e-3 * (i + 1)})
            appended.append(writer.version)
            i += 1

    th = threading.Thread(target=append)
    th.start()
    try:
        results = [lakevec.knn_join(left, t, k=3, nprobe=NLIST, engine=engine, plan=plan)
                   for plan in ("grouped", "shuffle")]
    finally:
        stop.set()
        th.join()
    assert len(appended) >= 2  # appends really happened during the joins
    for res in results:
        v = res.report.right_version
        pinned = lakevec.knn_join(left, t.checkout(v), k=3, nprobe=NLIST, plan=res.report.plan)
        assert pair_set(res) == pair_set(pinned)  # one version, throughout
    latest = lakevec.knn_join(left, local_lake.open_table("t"), k=3, nprobe=NLIST)
    assert any(r >= 100_000 for r in latest.column("right_id").to_pylist())  # the appends do change results


def test_lance_dataset_output_written_once(storage, lake):
    import lance
    t = make_table(lake, "t", vectors(800, seed=69), nlist=NLIST)
    left = make_table(lake, "left", vectors(100, seed=70), nlist=2)
    want = lakevec.knn_join(left, t, k=3, nprobe=3)
    dest = storage.uri + "-pairs.lance"
    res = lakevec.knn_join(left, t, k=3, nprobe=3, output=dest)
    assert not res.skipped
    ds = lance.dataset(dest, storage_options=lake.loc.lance_options())
    assert ds.count_rows() == 300 and ds.version == 1  # one commit
    assert pair_set(ds.to_table()) == pair_set(want) == pair_set(read_output(dest, storage.storage_options))
    again = lakevec.knn_join(left, t, k=3, nprobe=3, output=dest)
    assert again.skipped
    assert lance.dataset(dest, storage_options=lake.loc.lance_options()).version == 1  # nothing committed
    with pytest.raises(lakevec.InvalidArgumentError, match="another join"):
        lakevec.knn_join(left, t, k=2, nprobe=3, output=dest)
    # an existing Lance dataset that is not a join output is never overwritten
    other = storage.uri + "-other.lance"
    lance.write_dataset(want.table, other, storage_options=lake.loc.lance_options())
    with pytest.raises(lakevec.InvalidArgumentError, match="already a Lance dataset"):
        lakevec.knn_join(left, t, k=3, nprobe=3, output=other)
