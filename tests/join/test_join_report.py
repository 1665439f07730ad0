"""The report of a join: sizes, partitions and bytes read (store and NVMe cache), reads per right byte,
shuffle bytes, both plans' estimates, cost, seconds per phase, recall estimate."""
from __future__ import annotations

import uuid

import numpy as np
from join_helpers import make_table, pair_set, vectors

import lakevec

NLIST = 8


def test_report_fields_and_read_counts(local_lake):
    x = vectors(2000, seed=81, clusters=8)
    t = make_table(local_lake, "t", x, nlist=NLIST)
    left = {"id": np.arange(300), "vector": vectors(300, seed=82, clusters=8)}
    r = lakevec.knn_join(left, t, k=5, nprobe=3, plan="grouped").report
    assert r.rows_left == 300 and r.pairs == 1500 and r.rows_fewer_than_k == 0
    snap = t.snapshot()
    table_bytes = sum(f.file_size for f in snap.fragments)
    assert r.right_bytes["table"] == table_bytes
    # one task (local engine): every partition read once, for the join and the recall sample
    assert r.partitions == {"total": NLIST, "read": NLIST, "reads": NLIST, "max_reads_per_partition": 1,
                            "unassigned_fragments": 0}
    assert r.right_bytes["read"] == r.right_bytes["distinct_read"] == table_bytes
    assert r.right_bytes["reads_per_byte"] == 1.0 and r.right_bytes["bytes_by_times_read"] == {"1": table_bytes}
    assert r.io["right"]["bytes_read"] >= table_bytes  # measured on the store's counters
    assert r.shuffle["bytes_written"] > 0 and r.shuffle["left_rows_written"] == 300  # grouped: once per row
    assert set(r.estimates) == {"shuffle", "grouped"}
    s, g = r.estimates["shuffle"], r.estimates["grouped"]
    assert s["shuffle_bytes"] > 2 * g["shuffle_bytes"]  # nprobe copies vs one
    assert set(r.seconds) >= {"plan", "assign", "score", "collect", "total"}
    assert r.recall["sample_rows"] == 200 and 0 < r.recall["estimate"] <= 1
    assert r.estimated_cost_usd == 0.0  # a local lake: no request cost
    text = str(r)
    assert "300 left rows -> 1,500 pairs" in text and "each byte read 1.00x" in text
    # the shuffle plan: every row written once per probed partition, merged afterwards
    rs = lakevec.knn_join(left, t, k=5, nprobe=3, plan="shuffle").report
    assert rs.shuffle["left_rows_written"] == 300 * 3 and rs.tasks["merge"] >= 1
    assert rs.partitions["max_reads_per_partition"] == 1
    # several grouped blocks read a partition once per block that probes it, and say so
    big = {"id": np.arange(3000), "vector": vectors(3000, seed=85, clusters=8)}
    rm = lakevec.knn_join(big, t, k=5, nprobe=3, plan="grouped", memory_budget=1 << 16, recall_sample=0).report
    assert rm.tasks["score"] > 1
    assert rm.partitions["reads"] > rm.partitions["read"] and rm.right_bytes["reads_per_byte"] > 1.0
    assert sum(int(k) * v for k, v in rm.right_bytes["bytes_by_times_read"].items()) == rm.right_bytes["read"]
    assert rm.recall["estimate"] is None and rm.recall["sample_rows"] == 0


def test_s3_and_nvme_cache_counts(s3_server, tmp_path):
    uri = s3_server.uri("lakevec", uuid.uuid4().hex)
    opts = dict(s3_server.storage_options)
    lake = lakevec.connect(uri, storage_options=opts, cache_dir=str(tmp_path / "nvme"), cache_bytes=1 << 30)
    t = make_table(lake, "t", vectors(2000, seed=83), nlist=NLIST)
    left = {"id": np.arange(200), "vector": vectors(200, seed=84)}
    first = lakevec.knn_join(left, t, k=3, nprobe=NLIST)
    r1 = first.report.io["right"]
    assert r1["cache_misses"] >= NLIST and r1["bytes_read"] >= first.report.right_bytes["distinct_read"]
    assert first.report.estimated_cost_usd > 0  # S3 requests are priced
    again = lakevec.knn_join(left, lakevec.connect(uri, storage_options=opts, cache_dir=str(tmp_path / "nvme"))
                             .open_table("t"), k=3, nprobe=NLIST)
    r2 = again.report.io["right"]
    assert r2["cache_hits"] >= NLIST and r2["cache_bytes_read"] >= first.report.right_bytes["distinct_read"]
    assert r2["bytes_read"] < r1["bytes_read"] - first.report.right_bytes["distinct_read"] // 2  # partitions from NVMe
    assert pair_set(first) == pair_set(again)
    assert "NVMe cache" in str(again.report)
