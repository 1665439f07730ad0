"""A reader process for test_two_processes_share_one_cache: searches one query at a time through a shared
cache folder and compares every result with the expected one. Prints one JSON line of counts.

usage: reader_proc.py LAKE_URI STORAGE_OPTIONS_JSON CACHE_DIR BUDGET QUERIES_NPZ SEARCHES SEED
"""
import json
import sys

import numpy as np

import lakevec


def main(argv):
    uri, opts, cache_dir, budget, qfile, searches, seed = argv[:7]
    cache_dir = None if cache_dir == "-" else cache_dir
    data = np.load(qfile)
    queries, qidx, ids, dist = data["queries"], data["qidx"], data["ids"], data["dist"]
    lake = lakevec.connect(uri, storage_options=json.loads(opts), cache_dir=cache_dir, cache_bytes=int(budget))
    t = lake.open_table("vecs")
    rng = np.random.default_rng(int(seed))
    mismatches = 0
    for _ in range(int(searches)):
        i = int(rng.integers(len(queries)))
        r = t.search(queries[i], k=10, nprobe=4)
        sel = qidx == i
        if not (np.array_equal(r.column("id").to_numpy(), ids[sel])
                and np.allclose(r.column("distance").to_numpy(), dist[sel], rtol=1e-4, atol=2e-3)):
            mismatches += 1
            if len(sys.argv) > 8: print(i, r.column("id").to_numpy(), ids[sel], r.column("distance").to_numpy(), dist[sel], file=sys.stderr)
    c = lake.store.counters.snapshot()
    lake.cache.flush()
    print(json.dumps({"searches": int(searches), "mismatches": mismatches, "cache_hits": c.cache_hits,
                      "cache_misses": c.cache_misses, "gets": c.gets}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
