"""Fast tests of the benchmark datasets, ground truth, Parquet I/O and measurement helpers."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakevec.bench import datasets as D
from lakevec.bench import measure as M


def _brute(base, queries, k, metric):
    b = base.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "l2":
        d = ((q[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    elif metric == "cosine":
        bn = b / np.linalg.norm(b, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = 1.0 - qn @ bn.T
    else:
        d = -(q @ b.T)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, 1)


def test_generator_is_deterministic_by_seed():
    a, qa = D.generate_clustered(3000, n_queries=20, seed=7)
    b, qb = D.generate_clustered(3000, n_queries=20, seed=7)
    c, _ = D.generate_clustered(3000, n_queries=20, seed=8)
    assert a.dtype == np.float32 and a.shape == (3000, 128) and qa.shape == (20, 128)
    assert np.array_equal(a, b) and np.array_equal(qa, qb)
    assert not np.array_equal(a, c)
    # queries are fresh draws, not copies of base rows
    assert not (qa[:, None, :] == a[None, :, :]).all(-1).any()


def test_streaming_chunks_equal_full_generation():
    n = D.BLOCK_ROWS + 1234          # crosses a generation block boundary
    full, _ = D.generate_clustered(n, dim=32, n_queries=1, seed=3, latent_dim=8, n_clusters=16)
    for chunk_rows in (1000, 4096, D.BLOCK_ROWS, n + 5):
        chunks = list(D.iter_clustered(n, chunk_rows, dim=32, seed=3, latent_dim=8, n_clusters=16))
        assert all(len(c) == chunk_rows for c in chunks[:-1])
        assert len(chunks[-1]) <= chunk_rows
        assert np.array_equal(np.concatenate(chunks), full)


def test_generator_is_clustered_not_uniform():
    # nearest-neighbour distances are much smaller than distances to random rows
    x, _ = D.generate_clustered(4000, n_queries=1, seed=0)
    ids, dist = D.exact_knn(x[1:], x[:50], 1)
    rnd = ((x[:50] - x[2000:2050]) ** 2).sum(1)
    assert np.median(dist[:, 0]) < 0.5 * np.median(rnd)


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_exact_knn_matches_brute_force(metric):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((2500, 24)).astype(np.float32)
    queries = rng.standard_normal((37, 24)).astype(np.float32)
    want_ids, want_d = _brute(base, queries, 7, metric)
    ids, d = D.exact_knn(base, queries, 7, metric, query_block=10, base_block=300)
    assert ids.dtype == np.int64 and ids.shape == (37, 7)
    assert np.array_equal(ids, want_ids)
    np.testing.assert_allclose(d, want_d, rtol=1e-5, atol=1e-5)
    # the same through a chunk iterator, with ids given explicitly (offset by 1000)
    chunks = ((np.arange(s, s + 600) + 1000, base[s:s + 600]) for s in range(0, 2500, 600))
    ids2, _ = D.exact_knn(chunks, queries, 7, metric)
    assert np.array_equal(ids2, want_ids + 1000)


def test_exact_knn_pads_when_base_is_small():
    base = np.eye(3, dtype=np.float32)
    ids, d = D.exact_knn(base, base[:1], 5)
    assert list(ids[0, :3]) == [0, 1, 2] and list(ids[0, 3:]) == [-1, -1]
    assert np.isinf(d[0, 3:]).all()


def test_parquet_round_trip(tmp_path):
    x, _ = D.generate_clustered(2500, dim=16, n_queries=1, seed=2, latent_dim=4, n_clusters=8)
    files = D.write_parquet(tmp_path / "dir", D.iter_clustered(2500, 700, dim=16, seed=2, latent_dim=4,
                                                               n_clusters=8),
                            rows_per_file=1000, start_id=10)
    assert len(files) == 3
    sch = pq.read_schema(files[0])
    assert sch.field("id").type == pa.int64()
    assert sch.field("vector").type == pa.list_(pa.float32(), 16)
    ids, vec = D.read_parquet_vectors(files)
    assert np.array_equal(ids, np.arange(10, 2510))
    assert np.array_equal(vec, x)
    single = D.write_parquet(tmp_path / "one.parquet", x)
    ids1, vec1 = D.read_parquet_vectors(single)
    assert np.array_equal(ids1, np.arange(2500)) and np.array_equal(vec1, x)


def test_clustered_dataset_is_cached(tmp_path):
    ds = D.clustered_dataset(3000, 40, cache_dir=tmp_path, gt_k=10, rows_per_file=None)
    want, _ = D.exact_knn(np.asarray(ds.base), ds.queries, 10)
    assert np.array_equal(ds.gt_ids, want)
    stamp = (ds.directory / "base.npy").stat().st_mtime_ns
    again = D.clustered_dataset(3000, 40, cache_dir=tmp_path, gt_k=10, rows_per_file=None)
    assert again.directory == ds.directory
    assert (again.directory / "base.npy").stat().st_mtime_ns == stamp
    other = D.clustered_dataset(3000, 40, cache_dir=tmp_path, gt_k=10, seed=1, rows_per_file=None)
    assert other.directory != ds.directory
    assert np.array_equal(D.read_parquet_vectors(ds.parquet_files)[1], np.asarray(ds.base))


def test_missing_real_data_raises_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="siftsmall_base.fvecs"):
        D.load_sift10k(tmp_path)


def test_sift10k_ground_truth_reproduced():
    try:
        base, queries, gt = D.load_sift10k()
    except D.DatasetNotFound as e:
        pytest.skip(str(e))
    assert base.shape == (10000, 128) and queries.shape == (100, 128) and gt.shape == (100, 100)
    ids, _ = D.exact_knn(base, queries, 10)
    assert M.recall_at_k(ids, gt, 10) == 1.0


def test_recall_and_percentiles():
    true = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 2, 9], [-1, -1, -1]])
    assert M.recall_at_k(found, true, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert M.recall_at_k(true, true, 2) == 1.0
    p = M.latency_percentiles([0.001] * 95 + [0.1] * 5, (50, 99))
    assert p["p50_ms"] == pytest.approx(1.0) and p["p99_ms"] == pytest.approx(100.0)
    s = M.summarize([3, None, 1, 2])
    assert (s["min"], s["median"], s["max"], s["n"]) == (1.0, 2.0, 3.0, 3)


def test_peak_rss_sees_a_short_allocation():
    with M.PeakRSS() as mem:
        a = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
        del a
    assert mem.delta >= 48 * 1024 * 1024
    assert mem.peak >= mem.baseline


def test_peers_and_report_smoke(tmp_path):
    """Peers agree with exact search when every partition is probed; the report flags targets."""
    from lakevec.bench import peers as P
    from lakevec.bench import report as R
    base, queries = D.generate_clustered(3000, dim=16, n_queries=30, seed=5, latent_dim=4, n_clusters=8)
    gt, _ = D.exact_knn(base, queries, 10)
    lance_peer = P.LanceIvfFlatPeer(str(tmp_path / "t.lance"))
    info = lance_peer.build(base, nlist=8)
    assert info["nlist"] == 8 and not info["index_reused"] and info["index_s"] > 0
    assert P.LanceIvfFlatPeer(str(tmp_path / "t.lance")).build(None, nlist=8)["index_reused"]
    faiss_peer = P.FaissIvfFlatPeer(threads=1)
    faiss_peer.build(base, nlist=8)
    lance_all = lance_peer.search(queries, 10, 8)
    assert np.array_equal(lance_all, np.stack([lance_peer.search_one(q, 10, 8) for q in queries]))
    r_lance = P.run_peer(lance_peer, queries, gt, 10, 8, max_queries=12)
    r_faiss = P.run_peer(faiss_peer, queries, gt, 10, 8, single_query_samples=3)
    r_brute = P.run_peer(P.BruteForcePeer(base), queries, gt, 10)
    assert r_lance["recall"] == 1.0 and r_faiss["recall"] == 1.0 and r_brute["recall"] == 1.0
    assert r_lance["n_measured"] == 12 and r_lance["extrapolated"] and r_lance["p95_ms"] >= r_lance["p50_ms"]
    assert not r_faiss["extrapolated"] and r_faiss["latency_source"] == "batch/m"
    n, rec = P.nprobe_for_recall(faiss_peer, queries, gt, 1.0, 10)
    assert rec == 1.0 and (n == 1 or P._recall_of(faiss_peer, queries, gt, 10, n - 1) < 1.0)
    lance_eq = dict(r_lance, label="lance_ivf_flat@recall", qps=10.0)
    bad = dict(r_faiss, label="lakevec", qps=20.0, recall=0.9, rss_peak_bytes=2e9)
    rep = R.build_report([[bad, dict(r_faiss, qps=100.0), lance_eq]])
    assert [t["status"] for t in rep["targets"]] == ["FAIL", "FAIL", "FAIL", "FAIL"]
    assert rep["ratios"]["faiss_ivf_flat"]["qps"]["median"] == pytest.approx(0.2)
    good = dict(bad, qps=60.0, recall=0.96, rss_peak_bytes=1e9)
    rep2 = R.build_report([[good, dict(r_faiss, qps=100.0), lance_eq], [good, dict(r_faiss, qps=90.0), lance_eq]])
    assert [t["status"] for t in rep2["targets"]] == ["PASS"] * 4
    assert rep2["summary"]["faiss_ivf_flat"]["qps"]["min"] == 90.0 and rep2["repeat"] == 2
    assert R.build_report([[good]])["targets"][1]["status"] == "SKIP"
    R.write_json(rep, tmp_path / "r.json")
    assert "FAIL" in R.format_report(rep) and (tmp_path / "r.json").stat().st_size > 0


def test_generator_recall_depends_on_nprobe():
    """Calibration guard: IVF with nlist ~ sqrt(n) is neither trivial at nprobe=1 nor hopeless at ~25%."""
    from lakevec.bench import peers as P
    base, queries = D.generate_clustered(20000, n_queries=200, seed=0)
    gt, _ = D.exact_knn(base, queries, 10)
    peer = P.FaissIvfFlatPeer(threads=1)
    peer.build(base, nlist=141)
    r1 = M.recall_at_k(peer.search(queries, 10, 1), gt, 10)
    r8 = M.recall_at_k(peer.search(queries, 10, 8), gt, 10)
    r36 = M.recall_at_k(peer.search(queries, 10, 36), gt, 10)
    assert r1 < 0.7, r1
    assert r1 < r8 < r36
    assert r36 >= 0.95, r36


def test_read_vecs_the_one_reader_of_texmex_files(tmp_path):
    import lakevec

    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    rows = np.empty((5, 4), dtype=np.float32)
    rows[:, 0] = np.array([3] * 5, dtype=np.int32).view(np.float32)
    rows[:, 1:] = x
    rows.tofile(tmp_path / "a.fvecs")
    assert np.array_equal(D.read_vecs(tmp_path / "a.fvecs"), x)  # kind from the suffix
    assert np.array_equal(D.read_vecs(rows.tobytes(), "fvecs"), x)  # or from bytes (query files on S3)
    ints = np.array([[2, 7, 9], [2, 1, 4]], dtype=np.int32)
    assert D.read_vecs(ints.tobytes(), "ivecs").tolist() == [[7, 9], [1, 4]]
    b = np.array([[2, 0, 0, 0, 255, 1]], dtype=np.uint8)
    got = D.read_vecs(b.tobytes(), "bvecs")
    assert got.dtype == np.float32 and got.tolist() == [[255.0, 1.0]]
    ragged = np.array([3, 1, 2, 3, 2, 1, 2], dtype=np.int32)  # a row of dim 3, then one of dim 2
    with pytest.raises(lakevec.InvalidArgumentError, match="different dimensions|not a ivecs file"):
        D.read_vecs(ragged.tobytes(), "ivecs", name="r.ivecs")
    with pytest.raises(ValueError, match="truncated"):
        D.read_vecs(b"\x01", "fvecs")
    assert np.array_equal(D.read_fvecs(tmp_path / "a.fvecs"), x)  # the old names stay
