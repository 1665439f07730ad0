"""Real processes against one table: concurrent runs of one ingestion, overlapping ids, ``kill -9``.

Each writer is a separate Python process (as Airflow retries and overlapping jobs are), started together;
they talk to the table on local disk or on the embedded S3 server. Leases are shortened in the children
(``LAKEVEC_LEASE_SECONDS``) so that the claim of a killed run expires within the test.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from core_helpers import arrow_rows, data_files, source_root, write_parquet

import lakevec

DIM = 8


def _env(storage, **extra) -> dict:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _child(storage, body: str) -> str:
    """Python code that opens the table (``t``) and runs ``body``."""
    return textwrap.dedent(f"""
        import json, os, signal, sys, time
        import numpy as np
        import lakevec
        t = lakevec.connect({storage.uri!r}, storage_options={storage.storage_options!r}).open_table("t")
    """) + textwrap.dedent(body)


def _start(storage, body: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _child(storage, body)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(storage, **env))


def _finish(p: subprocess.Popen, timeout: float = 240):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _ids(storage) -> np.ndarray:
    t = lakevec.connect(storage.uri, storage_options=storage.storage_options).open_table("t")
    return np.sort(t.to_arrow(columns=["id"]).column("id").to_numpy())


@pytest.mark.parametrize("keyed", [False, True])
def test_the_same_parquet_file_ingested_three_times_at_once_lands_once(storage, lake, tmp_path, keyed):
    lake.create_table("t", dim=DIM)
    root = source_root(storage, tmp_path)
    path = write_parquet(storage, root, "day.parquet", arrow_rows(3000, DIM, 0, seed=1))
    key = ', idempotency_key="2026-12-01"' if keyed else ""
    body = f"""
        r = t.add({path!r}{key})
        print(json.dumps({{"skipped": r.skipped, "rows": r.rows_added}}))
    """
    procs = [_start(storage, body) for _ in range(3)]
    outs = []
    for p in procs:
        code, out, err = _finish(p)
        assert code == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(o["skipped"] for o in outs) == [False, True, True], outs
    assert np.array_equal(_ids(storage), np.arange(3000))


def test_processes_adding_overlapping_ids_keep_each_id_once(storage, lake):
    lake.create_table("t", dim=DIM)
    body = """
        w = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ["W"])
        ok = 0
        for i in range(4):
            start = 100 * i + 50 * (w % 2)   # writers 0/1 overlap on half of every batch
            d = {"id": np.arange(start, start + 100), "vector": np.random.default_rng(w * 10 + i).standard_normal((100, 8)).astype(np.float32)}
            try:
                ok += t.add(d, on_bad_rows="skip").rows_added
            except lakevec.LakevecError as e:
                print("ERR", type(e).__name__, e, file=sys.stderr)
                raise
        print(json.dumps({"rows": ok}))
    """
    procs = [_start(storage, body, W=w) for w in range(4)]
    total = 0
    for p in procs:
        code, out, err = _finish(p)
        assert code == 0, err[-2000:]
        total += json.loads(out.strip().splitlines()[-1])["rows"]
    ids = _ids(storage)
    assert len(ids) == len(np.unique(ids)) == total  # every acknowledged row, once
    assert np.array_equal(ids, np.arange(0, 450))


def test_a_run_killed_before_its_commit_leaves_no_trace_and_its_key_is_taken_over(storage, lake, tmp_path):
    t = lake.create_table("t", dim=DIM)
    t.add({"id": np.arange(10), "vector": np.ones((10, DIM), np.float32)})
    before = data_files(t)
    v0 = t.version
    marker = tmp_path / "written"
    # the first run writes its fragments and id run, then dies (SIGKILL) right before its Lance commit
    killed = _start(storage, f"""
        import lakevec.commit.protocol as protocol
        def die(*a):
            open({str(marker)!r}, "w").close()
            time.sleep(3)  # the second run starts meanwhile and waits for this run's claim
            os.kill(os.getpid(), signal.SIGKILL)
        protocol._before_lance_commit = die
        t.add({{"id": np.arange(100, 200), "vector": np.ones((100, 8), np.float32)}}, idempotency_key="nightly")
    """, LAKEVEC_LEASE_SECONDS=4)
    while not marker.exists():
        assert killed.poll() is None, killed.communicate()[1][-2000:]
        time.sleep(0.1)
    second = _start(storage, """
        t0 = time.time()
        r = t.add({"id": np.arange(100, 200), "vector": np.ones((100, 8), np.float32)}, idempotency_key="nightly")
        print(json.dumps({"rows": r.rows_added, "skipped": r.skipped, "waited": time.time() - t0}))
    """, LAKEVEC_LEASE_SECONDS=4)
    code, _, _ = _finish(killed)
    assert code == -signal.SIGKILL
    code, out, err = _finish(second)
    assert code == 0, err[-2000:]
    res = json.loads(out.strip().splitlines()[-1])
    assert res["rows"] == 100 and not res["skipped"]
    from lakevec.commit.claims import CLAIMS_DIR, claim_name
    from lakevec.config import META_DIR
    claims = lake.store.list_names(lake.loc.join("t", META_DIR, CLAIMS_DIR, claim_name("nightly")))
    assert claims == ["000000.json", "000001.json"], claims  # it took over the dead run's claim, as a new attempt
    assert np.array_equal(_ids(storage), np.r_[np.arange(10), np.arange(100, 200)])
    t = lakevec.connect(storage.uri, storage_options=storage.storage_options).open_table("t")
    assert t.version == v0 + 1  # the killed run committed nothing
    orphans = data_files(t) - before - {fr.metadata.files[0].path for fr in t.snapshot().ds.get_fragments()}
    assert orphans  # the dead run's files: not referenced by any version...
    time.sleep(4.5)  # ...and its lease has expired: vacuum removes them
    out = t.vacuum(older_than=0, force=True)
    assert out["data_files_removed"] >= len(orphans) and not (data_files(t) & orphans)
    assert t.count_rows() == 110
