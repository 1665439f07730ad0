"""Soak: 8 writer processes, one re-indexing, one compacting, 8 searching readers sharing one NVMe cache,
for a bounded time on the embedded S3 server. Afterwards every acknowledged row is present exactly once,
nothing refused is present, no reader saw an error or a wrong result, and the cache stayed within budget.

Writers mix unique ids, ids that overlap another writer's (``on_bad_rows="skip"``: the first commit wins),
and batches that carry an idempotency key shared by two writers (exactly one commits it).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import lakevec

DIM = 16
SECONDS = 35
BASE = 2000
CACHE_BYTES = 1 << 20


def _code(storage, body: str) -> str:
    return textwrap.dedent(f"""
        import json, os, sys, time, traceback
        import numpy as np
        import lakevec
        URI, OPTS = {storage.uri!r}, {storage.storage_options!r}
        DIM, SECONDS, BASE = {DIM}, {SECONDS}, {BASE}
        def vec(ids):
            return np.stack([np.random.default_rng(int(i)).standard_normal(DIM).astype(np.float32) for i in ids])
        t = lakevec.connect(URI, storage_options=OPTS).open_table("t")
        t.snapshot()
        open(sys.argv[-1] + ".ready", "w").close()   # imported and connected: wait for everyone
        while not os.path.exists(sys.argv[-1]):
            time.sleep(0.05)
        deadline = time.time() + SECONDS
    """) + textwrap.dedent(body)


WRITER = """
    w = int(sys.argv[1])
    log = []
    i = 0
    while time.time() < deadline:
        i += 1
        if i % 3 == 1:    # ids shared with writer w ^ 1 (same range, the first commit of each id wins)
            ids = np.arange(10_000_000 + 1000 * i + 100 * (w // 2), 10_000_000 + 1000 * i + 100 * (w // 2) + 20)
            kind, key = "shared", None
        elif i % 3 == 2:  # the same keyed batch as writer w ^ 1 (exactly one of them commits it)
            ids = np.arange(20_000_000 + 1000 * i + 100 * (w // 2), 20_000_000 + 1000 * i + 100 * (w // 2) + 20)
            kind, key = "keyed", f"k-{i}-{w // 2}"
        else:
            ids = np.arange(1_000_000 * (w + 1) + 100 * i, 1_000_000 * (w + 1) + 100 * i + 20)
            kind, key = "unique", None
        try:
            r = t.add({"id": ids, "vector": vec(ids)}, on_bad_rows="skip", idempotency_key=key)
            log.append([kind, int(ids[0]), len(ids), "ok", r.rows_added, r.skipped])
        except lakevec.CommitConflictError as e:
            log.append([kind, int(ids[0]), len(ids), "conflict", 0, False])
        except Exception as e:
            log.append([kind, int(ids[0]), len(ids), "error " + type(e).__name__ + ": " + str(e)[:300], 0, False])
    print(json.dumps(log))
"""

MAINTAINER = """
    job = sys.argv[1]
    done = []
    while time.time() < deadline:
        try:
            if job == "index":
                t.build_index(num_partitions=8)
                done.append("ok")
            else:
                done.append("yielded" if t.compact().get("skipped") else "ok")
        except lakevec.CommitConflictError:
            done.append("conflict")
        except Exception as e:
            done.append("error " + type(e).__name__ + ": " + str(e)[:300])
        time.sleep(4 if job == "index" else 1)  # gaps between builds, in which compaction (yielding to builds) runs
    print(json.dumps(done))
"""

READER = """
    import threading
    cache = sys.argv[1]
    lake = lakevec.connect(URI, storage_options=OPTS, cache_dir=cache, cache_bytes=%d)
    rt = lake.open_table("t")
    errors, searches = [], [0]
    def reader(r):
        rng = np.random.default_rng(r)
        while time.time() < deadline:
            ids = rng.choice(BASE, 4, replace=False)
            try:
                res = rt.search(vec(ids), k=1)
                got = res.column("id").to_pylist()
                d = res.column("distance").to_numpy()
                if got != ids.tolist() or not np.allclose(d, 0, atol=1e-4):
                    errors.append(f"wrong result: {ids.tolist()} -> {got} {d.tolist()}")
                searches[0] += 1
            except Exception as e:
                errors.append(type(e).__name__ + ": " + str(e)[:300]
                              + ("" if errors else "\\n" + traceback.format_exc()[-2500:]))
    ths = [threading.Thread(target=reader, args=(r,)) for r in range(8)]
    [x.start() for x in ths]; [x.join() for x in ths]
    print(json.dumps({"errors": errors, "searches": searches[0], "cache": lake.cache.stats()}))
""" % CACHE_BYTES


@pytest.mark.slow
def test_soak_writers_maintenance_and_readers(s3_server, tmp_path):
    from conftest import Storage
    import uuid
    storage = Storage("s3", s3_server.uri("lakevec", uuid.uuid4().hex), dict(s3_server.storage_options))
    lake = lakevec.connect(storage.uri, storage_options=storage.storage_options)
    t = lake.create_table("t", dim=DIM)
    base = np.arange(BASE)
    t.add({"id": base, "vector": np.stack([np.random.default_rng(int(i)).standard_normal(DIM).astype(np.float32)
                                           for i in base])})
    t.build_index(num_partitions=8)
    cache = str(tmp_path / "nvme")

    go = tmp_path / "go"
    n = [0]

    def start(body, *args):
        n[0] += 1
        return subprocess.Popen([sys.executable, "-c", _code(storage, body), *map(str, args), f"{go}-{n[0]}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    procs = [("writer", start(WRITER, w)) for w in range(8)]
    procs += [("index", start(MAINTAINER, "index")), ("compact", start(MAINTAINER, "compact"))]
    procs += [("reader", start(READER, cache))]  # one process, 8 reader threads sharing the NVMe cache
    t0 = time.time()
    while not all((tmp_path / f"go-{i}.ready").exists() for i in range(1, n[0] + 1)):
        dead = [(kind, p.communicate()[1][-3000:]) for kind, p in procs if p.poll() is not None]
        assert time.time() - t0 < 180 and not dead, f"a soak process died starting: {dead}"
        time.sleep(0.1)
    for i in range(1, n[0] + 1):
        (tmp_path / f"go-{i}").touch()
    outs = {}
    for i, (kind, p) in enumerate(procs):
        out, err = p.communicate(timeout=SECONDS + 240)
        assert p.returncode == 0, f"{kind}: {err[-3000:]}"
        outs[(kind, i)] = json.loads(out.strip().splitlines()[-1])
    final = lakevec.connect(storage.uri, storage_options=storage.storage_options).open_table("t")
    ids = np.sort(final.to_arrow(columns=["id"]).column("id").to_numpy())
    assert len(ids) == len(np.unique(ids)), "an id was doubled"
    present = set(ids.tolist())
    assert set(range(BASE)) <= present
    # writers: every acknowledged unique batch is present whole, every refused one absent
    attempts = ok_batches = 0
    shared, keyed = {}, {}
    for (kind, _), log in outs.items():
        if kind != "writer":
            continue
        for k, start_id, n, status, added, skipped in log:
            attempts += 1
            assert not status.startswith("error"), status
            rng = set(range(start_id, start_id + n))
            if k == "unique":
                if status == "ok":
                    ok_batches += 1
                    assert added == n and rng <= present
                else:
                    assert not (rng & present), "rows of a refused commit are in the table"
            elif k == "shared":
                shared.setdefault(start_id, []).append((status, added))
            else:
                keyed.setdefault(start_id, []).append((status, added, skipped))
    for start_id, res in shared.items():  # the writers that got "ok" added, together, each id once
        if any(s == "ok" for s, _ in res):
            assert set(range(start_id, start_id + 20)) <= present
            assert sum(a for s, a in res if s == "ok") == 20 or len(res) == 1
    for start_id, res in keyed.items():
        committed = [r for r in res if r[0] == "ok" and not r[2]]
        assert len(committed) <= 1, res  # one key, one commit
        if committed:
            assert set(range(start_id, start_id + 20)) <= present
    n_shared_ok = sum(1 for res in shared.values() for s, _ in res if s == "ok")
    print(f"soak: {attempts} writes, {ok_batches} unique ok, {n_shared_ok} shared ok, {len(keyed)} keyed batches, "
          f"maintenance {[(k, v.count('ok'), len(v)) for (k, _), v in outs.items() if k in ('index', 'compact')]}, "
          f"searches {[r['searches'] for (k, _), r in outs.items() if k == 'reader']}, rows {len(ids)}")
    assert ok_batches >= 8, f"the writers made too little progress ({ok_batches} of {attempts})"
    maint = {k: v for (k, _), v in outs.items() if k in ("index", "compact")}
    assert all(not s.startswith("error") for v in maint.values() for s in v), maint
    assert "ok" in maint["index"] and "ok" in maint["compact"]
    for (kind, _), r in outs.items():
        if kind == "reader":
            assert not r["errors"], f"{len(r['errors'])} reader errors, the first: " + "\n".join(r["errors"][:2])
            assert r["searches"] > 0
            assert r["cache"]["used_bytes"] <= CACHE_BYTES, r["cache"]
