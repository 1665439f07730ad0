"""optimize: no-op when healthy; local split/merge of drifted tables in one commit; exact search, partition
purity, untouched files kept, time travel, failures leave no trace, retrain, CLI (local disk and S3)."""
from __future__ import annotations

import json

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pytest
from core_helpers import brute_force, hermetic_aws, result_matrix  # noqa: F401

import lakevec
from lakevec.config import PARTITION_COLUMN, UNASSIGNED, default_num_partitions

pytestmark = pytest.mark.usefixtures("hermetic_aws")

DIM = 16
rng0 = np.random.default_rng(0)
CENTERS = (rng0.standard_normal((8, DIM)) * 10).astype(np.float32)


def _rows(n, start=0, seed=0, center=None, spread=1.0):
    """Rows around the 8 CENTERS (or around ``center``), with ids start..start+n and a ``tag`` column."""
    rng = np.random.default_rng(seed)
    base = CENTERS[rng.integers(0, 8, n)] if center is None else np.broadcast_to(center, (n, DIM))
    x = (base + rng.standard_normal((n, DIM)) * spread).astype(np.float32)
    ids = np.arange(start, start + n, dtype=np.int64)
    return {"id": ids, "vector": x, "tag": ids % 5}


def _indexed(lake, name="t", n=1200, nlist=8):
    t = lake.create_table(name, dim=DIM)
    t.add(_rows(n))
    t.build_index(num_partitions=nlist)
    return t


def _drifted(lake, name="t"):
    """Index 1,200 rows of 8 clusters, then append 3,000 rows spread on the segment from cluster 0 towards
    cluster 1 (mostly nearer 0): cluster 0's partition grows far too large, cluster 1's takes some rows
    that the children of a split will be nearer to."""
    t = _indexed(lake, name)
    rng = np.random.default_rng(5)
    along = rng.uniform(0.05, 0.56, 3000)[:, None]
    x = CENTERS[0] + along * (CENTERS[1] - CENTERS[0]) + rng.standard_normal((3000, DIM))
    ids = np.arange(100_000, 103_000, dtype=np.int64)
    t.add({"id": ids, "vector": x.astype(np.float32), "tag": ids % 5})
    return t


def _all_rows(t):
    tbl = t.to_arrow().sort_by("id")
    return np.asarray(tbl.column("id").to_pylist()), np.stack(tbl.column("vector").to_numpy(zero_copy_only=False))


def _assert_pure(t):
    """Every fragment's live rows carry one _partition value, equal to the partition map's; return the rows
    per partition."""
    snap = t.snapshot()
    ds = lance.dataset(t.data_uri, version=snap.version, storage_options=t.lake.lance_options)
    by_id = {f.fragment_id: f for f in snap.fragments}
    seen = {}
    for fr in ds.get_fragments():
        info = by_id[fr.fragment_id]
        vals = pc.unique(fr.to_table(columns=[PARTITION_COLUMN]).column(PARTITION_COLUMN)).to_pylist()
        assert vals == [info.partition], f"fragment {fr.fragment_id}: _partition {vals}, map {info.partition}"
        seen[info.partition] = seen.get(info.partition, 0) + fr.count_rows()
    return seen


def _assert_nearest(t):
    """Every row lives in the partition of its nearest centroid (split rows, and rows a new centroid took)."""
    snap = t.snapshot()
    ds = lance.dataset(t.data_uri, version=snap.version, storage_options=t.lake.lance_options)
    part = {f.fragment_id: f.partition for f in snap.fragments}
    cents = snap.model.centroids.astype(np.float64)
    for fr in ds.get_fragments():
        x = np.stack(fr.to_table(columns=["vector"]).column("vector").to_numpy(zero_copy_only=False))
        d = ((x[:, None, :].astype(np.float64) - cents[None]) ** 2).sum(-1)
        mine = d[:, part[fr.fragment_id]]
        assert np.all(mine <= d.min(axis=1) + 1e-3), f"fragment {fr.fragment_id}: rows not in their nearest partition"


def _assert_exact(t, ids, x, nq=6, seed=3):
    """Indexed search probing every partition returns exactly the brute-force neighbours."""
    q = (np.random.default_rng(seed).standard_normal((nq, DIM)) * 10).astype(np.float32)
    q[:2] = x[:2] + 0.01
    idx, dist = brute_force(x, q, 10, "l2")
    nlist = t.index_info()["num_partitions"]
    got_ids, got = result_matrix(t.search(q, k=10, nprobe=nlist), nq, 10)
    assert np.array_equal(got_ids, ids[idx])
    np.testing.assert_allclose(got, dist, rtol=1e-4, atol=1e-3)


def _lake_files(t) -> set:
    """Every object of the table's data folder, deletion vectors and index folder."""
    out = set()
    for sub in (t.data_uri + "/data", t.data_uri + "/_deletions", t.loc.join("index")):
        try:
            infos = t.store.list(sub, recursive=True)
        except lakevec.LakevecError:
            continue
        out |= {i.path for i in infos if i.type == pafs.FileType.File}
    return out


def test_a_healthy_table_is_left_alone(lake):
    t = _indexed(lake)
    t.add(_rows(300, start=10_000, seed=1))  # more of the same distribution
    v, files, index = t.version, _lake_files(t), t.index_info()["index_id"]
    for dry in (True, False):
        r = t.optimize(dry_run=dry)
        assert r["action"] == "none" and not r["committed"] and r["reasons"] == []
        assert "healthy" in r["message"]
        b = r["before"]
        assert b["largest_over_mean"] <= 3.5 and b["unassigned_share"] == 0.0
        assert b["recall_at_default_nprobe"]["recent_queries"] == 200  # the 300 appended rows are the recent ones
        assert b["recall_at_default_nprobe"]["recent"] >= 0.95
        assert t.version == v and _lake_files(t) == files and t.index_info()["index_id"] == index


def test_a_drifted_table_is_split_locally_in_one_commit(storage, lake):
    t = _drifted(lake)
    v0 = t.version
    before = t.snapshot()
    old_files = {f.file: f.partition for f in before.fragments}
    ids, x = _all_rows(t)
    r = t.optimize()
    assert r["committed"] and r["action"] == "rebalance" and r["new_version"] == v0 + 1 == t.version
    assert any("largest partition" in s for s in r["reasons"])
    assert r["before"]["largest_over_mean"] > 3.5
    assert r["after"]["largest_over_mean"] <= 3.5
    split = {s["partition"] for s in r["plan"]["split"]}
    assert split, r["plan"]
    # the committed state is what the report says
    snap = t.snapshot()
    sizes = snap.partition_rows()
    assert sizes.max() / sizes.mean() <= 3.5 and sizes.sum() == len(ids) == t.count_rows()
    assert snap.index.index_id == r["index_after"] and snap.model.nlist == r["plan"]["partitions_after"]
    assert sizes.tolist() == snap.index.partition_sizes and not snap.unassigned
    assert r["after"]["default_nprobe"] == snap.index.default_nprobe >= 1
    # every row is there once, every fragment is partition-pure, search probing all partitions is exact
    got_ids, got_x = _all_rows(t)
    assert np.array_equal(got_ids, ids)
    np.testing.assert_array_equal(got_x, x)
    seen = _assert_pure(t)
    assert [seen.get(p, 0) for p in range(snap.model.nlist)] == sizes.tolist()
    _assert_exact(t, ids, x)
    _assert_nearest(t)  # as after a full build: split rows and the rows new centroids took moved
    # rows of the partitions that were not split nor merged stay in their files (the same data files)
    untouched = {p for p in range(before.model.nlist) if p not in split and p not in r["plan"]["merged"]}
    now = {f.file: f.partition for f in snap.fragments}
    kept = [f for f, p in old_files.items() if p in untouched and f in now]
    assert kept and all(now[f] == old_files[f] for f in kept)
    # ... except rows a new centroid is nearer to: a kept partition gave some away (SPFresh's reassign)
    old_sizes = before.partition_rows()
    assert any(sizes[p] < old_sizes[p] for p in untouched), (old_sizes, sizes)
    assert r["rewrite"]["bytes_written"] < r["rewrite"]["table_bytes"]
    assert 0 < r["rewrite"]["bytes_share"] < 1
    # each appended row is found again at the new default nprobe
    res = t.search(x[-50:], k=1)
    assert res.column("id").to_pylist() == ids[-50:].tolist()
    # time travel: the version before is read with its own index, unchanged
    old = t.checkout(v0)
    assert old.index_info()["index_id"] == r["index_before"] and old.count_rows() == len(ids)
    assert {f.file: f.partition for f in old.snapshot().fragments} == old_files
    _assert_exact(old, ids, x)
    # and the optimized table is healthy now: nothing was added since, so no data is even read
    again = t.optimize()
    assert again["action"] == "none" and not again["committed"] and t.version == v0 + 1
    assert "no row was added" in again["message"] and again["measure"]["seconds"] == 0.0
    assert again["before"]["recall_at_default_nprobe"]["calibrated"] >= 0.95


def test_rows_leaving_a_fragment_are_marked_deleted_not_rewritten(lake):
    t = _drifted(lake)
    ids, x = _all_rows(t)
    before = {f.file for f in t.snapshot().fragments}
    r = t.optimize(rewrite_over=1.0)  # never rewrite a fragment: deletion vectors for every row that moves
    assert r["committed"]
    w = r["rewrite"]
    assert w["fragments_with_deletions"] > 0
    assert w["rows_written"] == w["rows_moved"] > 0  # only fragments that lost every row were removed
    snap = t.snapshot()
    deleted = [f for f in snap.fragments if f.has_deletions]
    assert len(deleted) == w["fragments_with_deletions"] and all(f.file in before for f in deleted)
    got_ids, got_x = _all_rows(t)
    assert np.array_equal(got_ids, ids) and len(np.unique(got_ids)) == len(ids)
    np.testing.assert_array_equal(got_x, x)
    _assert_pure(t)
    _assert_exact(t, ids, x)
    _assert_nearest(t)
    # compaction folds the deletion vectors away, the index stays in force
    t.compact()
    assert not any(f.has_deletions for f in t.snapshot().fragments)
    assert t.index_info()["index_id"] == r["index_after"]
    _assert_pure(t)
    _assert_exact(t, ids, x)


def test_cosine_table_with_string_ids(lake):
    rng = np.random.default_rng(2)
    t = lake.create_table("c", dim=DIM, metric="cosine", id_type="string")
    x0 = CENTERS[rng.integers(0, 8, 1200)] + rng.standard_normal((1200, DIM))
    t.add({"id": [f"a{i}" for i in range(1200)], "vector": x0.astype(np.float32)})
    t.build_index(num_partitions=8)
    x1 = CENTERS[0] + rng.uniform(0.05, 0.56, (3000, 1)) * (CENTERS[1] - CENTERS[0]) + rng.standard_normal((3000, DIM))
    t.add({"id": [f"b{i}" for i in range(3000)], "vector": x1.astype(np.float32)})
    r = t.optimize()
    assert r["committed"] and r["plan"]["split"] and r["after"]["largest_over_mean"] <= 3.5
    _assert_pure(t)
    ids = np.array([f"a{i}" for i in range(1200)] + [f"b{i}" for i in range(3000)])
    x = np.concatenate([x0, x1])
    q = x[[3, 1500, 4000]] + 0.05
    idx, dist = brute_force(x, q, 10, "cosine")
    got_ids, got = result_matrix(t.search(q, k=10, nprobe=r["after"]["partitions"]), 3, 10)
    assert np.array_equal(got_ids, ids[idx])
    np.testing.assert_allclose(got, dist, rtol=1e-4, atol=1e-4)
    assert t.count_rows() == 4200 and t.optimize()["action"] == "none"


def test_dry_run_is_exact_and_writes_nothing(lake):
    t = _drifted(lake)
    v, files = t.version, _lake_files(t)
    d = t.optimize(dry_run=True)
    assert not d["committed"] and d["dry_run"] and t.version == v and _lake_files(t) == files
    assert d["message"].startswith("would ")
    r = t.optimize()
    assert r["committed"]
    for k in ("rows_moved", "rows_written", "fragments_rewritten", "fragments_with_deletions", "fragments_read"):
        assert d["rewrite"][k] == r["rewrite"][k], k
    assert d["plan"] == r["plan"]
    assert d["after"]["partitions"] == r["after"]["partitions"] and d["after"]["largest"] == r["after"]["largest"]
    assert d["after"]["default_nprobe"] == r["after"]["default_nprobe"]
    est, real = d["rewrite"]["bytes_written_estimate"], r["rewrite"]["bytes_written"]
    assert 0.5 * real <= est <= 1.5 * real


def test_unassigned_rows_are_assigned(lake):
    t = _indexed(lake)
    ds = lance.dataset(t.data_uri, storage_options=t.lake.lance_options)
    new = _rows(400, start=50_000, seed=9)
    tbl = pa.table({"id": new["id"], "vector": pa.FixedSizeListArray.from_arrays(pa.array(new["vector"].ravel()), DIM),
                    "tag": new["tag"], PARTITION_COLUMN: pa.array(np.full(400, UNASSIGNED, np.int32))})
    lance.write_dataset(tbl.cast(ds.schema), t.data_uri, mode="append", storage_options=t.lake.lance_options)
    assert t.index_info()["unassigned_rows"] == 400  # written by another Lance writer: no partition
    ids, x = _all_rows(t)
    r = t.optimize()
    assert r["committed"] and any("unassigned" in s for s in r["reasons"])
    assert r["before"]["unassigned_share"] == pytest.approx(400 / 1600, abs=1e-3)
    assert r["after"]["unassigned_share"] == 0 and t.index_info()["unassigned_rows"] == 0
    assert r["plan"]["split"] == [] and r["plan"]["partitions_after"] == 8
    seen = _assert_pure(t)
    assert UNASSIGNED not in seen and sum(seen.values()) == 1600
    _assert_exact(t, ids, x)


def test_low_recall_recalibrates_nprobe_without_moving_rows(lake):
    rng = np.random.default_rng(4)  # no clusters: neighbours straddle partitions, recall < 1 at the default
    t = lake.create_table("t", dim=DIM)
    t.add({"id": np.arange(1500), "vector": rng.standard_normal((1500, DIM)).astype(np.float32)})
    t.build_index(num_partitions=8)
    t.add({"id": np.arange(5000, 5300), "vector": rng.standard_normal((300, DIM)).astype(np.float32)})
    files = {f.file: f.partition for f in t.snapshot().fragments}
    nprobe = t.index_info()["default_nprobe"]
    # ask for more recall than the index gives at its default nprobe; no split or merge: only nprobe changes
    r = t.optimize(min_recall=1.0, target_recall=1.0, split_over=100.0, merge_under=0.0)
    assert r["committed"] and r["new_version"] == t.version and any("recall@10" in s for s in r["reasons"])
    assert r["before"]["recall_at_default_nprobe"]["recent"] < 1.0
    assert r["plan"]["split"] == [] and r["plan"]["merged"] == []
    assert r["rewrite"]["rows_written"] == 0 and r["rewrite"]["bytes_written"] == 0
    assert {f.file: f.partition for f in t.snapshot().fragments} == files
    info = t.index_info()
    assert info["index_id"] == r["index_after"] != r["index_before"]
    assert info["default_nprobe"] == r["after"]["default_nprobe"] > nprobe
    assert r["after"]["recall_at_default_nprobe"]["all"] == r["after"]["recall_at_default_nprobe"]["recent"] == 1.0
    res = t.search(t.to_arrow().column("vector").to_numpy(zero_copy_only=False)[0], k=3)
    assert res.num_rows == 3


def test_a_concurrent_change_refuses_the_commit_and_leaves_no_files(lake, monkeypatch):
    import importlib
    opt = importlib.import_module("lakevec.maintenance.optimize")  # the module (the package exports the function)
    t = _drifted(lake)
    other = lakevec.connect(lake.uri, storage_options=lake.storage_options).open_table("t")
    real = opt._check_unchanged
    seen = {}

    def compact_first(table, snap):  # a compaction lands while optimize has written its files
        seen["files"] = _lake_files(table)
        other.compact()
        seen["version"] = other.version
        return real(table, snap)

    monkeypatch.setattr(opt, "_check_unchanged", compact_first)
    # a compaction that checked for running rewrites just before optimize took its lease (else it yields)
    monkeypatch.setattr(importlib.import_module("lakevec.maintenance.compact"), "running_rewrites", lambda *a: [])
    files = _lake_files(t)
    with pytest.raises(lakevec.CommitConflictError, match="nothing was committed"):
        t.optimize(rewrite_over=0.9)
    written = seen["files"] - files  # the data files, deletion vectors and index objects optimize had written
    assert any("/data/" in f for f in written) and any("/_deletions/" in f for f in written)
    assert any(f.endswith(".centroids.npy") for f in written)
    assert t.version == seen["version"]  # only the compaction committed
    assert t.index_info()["index_id"] == other.index_info()["index_id"]
    assert not written & _lake_files(t), "files of the failed optimize were left behind"
    monkeypatch.setattr(opt, "_check_unchanged", real)
    ids, x = _all_rows(t)
    r = t.optimize()  # a re-run succeeds
    assert r["committed"]
    _assert_pure(t)
    _assert_exact(t, ids, x)


def test_a_failing_task_leaves_the_table_unchanged(lake, monkeypatch):
    import importlib

    from lakevec.commit import FragmentSink
    rebalance = importlib.import_module("lakevec.maintenance.rebalance")
    t = _drifted(lake)
    v, files = t.version, _lake_files(t)
    monkeypatch.setattr(rebalance, "MOVE_TASK_BYTES", 30_000)  # several move tasks: the second one fails
    real = FragmentSink.finish
    calls = []

    def finish_then_fail(self):
        out = real(self)
        calls.append(len(out.fragments))
        if len(calls) == 2:
            raise OSError("disk on fire")
        return out

    monkeypatch.setattr(FragmentSink, "finish", finish_then_fail)
    with pytest.raises(lakevec.LakevecError, match="disk on fire"):
        t.optimize(rewrite_over=0.9)
    assert len(calls) == 2 and calls[0] > 0  # the first task had written files (and deletion vectors)
    assert t.version == v and _lake_files(t) == files


def test_retrain_rebuilds_the_whole_index(lake):
    t = _drifted(lake)
    ids, x = _all_rows(t)
    v = t.version
    d = t.optimize(retrain=True, dry_run=True)
    assert d["action"] == "retrain" and not d["committed"] and t.version == v and d["rewrite"]["bytes_share"] == 1.0
    r = t.optimize(retrain=True)
    assert r["committed"] and r["action"] == "retrain" and t.version == r["new_version"] > v
    info = t.index_info()
    assert info["index_id"] == r["index_after"] != r["index_before"]
    assert info["num_partitions"] == default_num_partitions(len(ids)) == r["after"]["partitions"]
    assert not ({f.file for f in t.checkout(v).snapshot().fragments} & {f.file for f in t.snapshot().fragments})
    _assert_pure(t)
    _assert_exact(t, ids, x)
    # an unindexed table: optimize explains, retrain builds
    u = lake.create_table("u", dim=DIM)
    u.add(_rows(500))
    with pytest.raises(lakevec.IndexError_, match="no index"):
        u.optimize()
    assert u.optimize(retrain=True)["committed"] and u.index_info() is not None


def test_bad_arguments_are_rejected(lake):
    t = _indexed(lake)
    for kw in ({"max_imbalance": -1}, {"min_recall": 2}, {"split_over": 0.5}, {"bogus": 1}, {"seed": -3},
               {"rewrite_over": "x"}):
        with pytest.raises(lakevec.InvalidArgumentError):
            t.optimize(**kw)
    with pytest.raises(lakevec.InvalidArgumentError, match="read-only"):
        t.checkout(t.version).optimize()


def _cli(capsys, *argv):
    from lakevec.cli.main import main
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_dry_run_and_errors(storage, lake, capsys):
    t = _drifted(lake)
    lake_args = ["--lake", storage.uri] + [a for k, v in (storage.storage_options or {}).items()
                                           for a in ("--storage-option", f"{k}={v}")]
    v = t.version
    code, out, _ = _cli(capsys, *lake_args, "--json", "optimize", "t", "--dry-run")
    assert code == 0
    dry = json.loads(out)
    assert dry["dry_run"] and not dry["committed"] and dry["action"] == "rebalance" and t.version == v
    code, out, err = _cli(capsys, *lake_args, "optimize", "t")
    assert code == 0 and f"version {v} -> {v + 1}" in out and "why: largest partition" in out
    assert f"{dry['rewrite']['rows_written']:,} rows" in out
    code, out, _ = _cli(capsys, *lake_args, "--json", "optimize", "t")
    again = json.loads(out)
    assert code == 0 and again["action"] == "none" and not again["committed"] and t.version == v + 1
    code, out, err = _cli(capsys, *lake_args, "optimize", "t", "--max-imbalance", "-2")
    assert code == 2 and err.strip().splitlines()[-1].startswith("lakevec: error: --max-imbalance")
    lake.create_table("u", dim=DIM).add(_rows(100))
    code, out, err = _cli(capsys, *lake_args, "optimize", "u")
    assert code == 1 and "no index" in err and "lakevec optimize --retrain" in err
