"""Parquet is read with page-checksum verification: a damaged file is refused, naming it, and nothing is ingested.

The file is written with page CRCs (``write_page_checksum=True``, as Spark and many writers do), then 200 bytes
inside a data page of the vector column are flipped. Read without verification, the damage is silent: the
vectors simply differ. lakevec must refuse the file, on local disk and on S3, through the library and the CLI.
"""
from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lakevec
from lakevec.cli import main as cli_main
from lakevec.store.location import parse_location
from lakevec.store.objects import ObjectStore

DIM = 8
ROWS = 20_000


def damaged_parquet(start: int = 0) -> tuple[bytes, bytes]:
    """Return (good file, the same file with 200 bytes flipped near the end of the vector column's data);
    ids ``start .. start + ROWS - 1``."""
    x = np.random.default_rng(start).standard_normal((ROWS, DIM)).astype(np.float32)
    t = pa.table({"id": np.arange(start, start + ROWS), "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM)})
    buf = io.BytesIO()
    pq.write_table(t, buf, write_page_checksum=True, compression="none", use_dictionary=False)
    good = buf.getvalue()
    col = pq.ParquetFile(io.BytesIO(good)).metadata.row_group(0).column(1)
    start = col.dictionary_page_offset or col.data_page_offset
    off = start + col.total_compressed_size - 5000  # inside the values of the last data page
    bad = bytearray(good)
    for i in range(off, off + 200):
        bad[i] ^= 0xFF
    return good, bytes(bad)


def test_the_damage_is_silent_without_verification(tmp_path):
    good, bad = damaged_parquet()
    (tmp_path / "good.parquet").write_bytes(good)
    (tmp_path / "bad.parquet").write_bytes(bad)
    a = pq.ParquetFile(tmp_path / "good.parquet").read()
    b = pq.ParquetFile(tmp_path / "bad.parquet").read()  # no error: that is why verification matters
    changed = (a["vector"].combine_chunks().values.to_numpy() != b["vector"].combine_chunks().values.to_numpy())
    assert changed.reshape(-1, DIM).any(axis=1).sum() > 0
    with pytest.raises(OSError, match="CRC checksum verification failed"):
        pq.ParquetFile(tmp_path / "bad.parquet", page_checksum_verification=True).read()


def test_a_damaged_parquet_file_is_refused_and_nothing_is_ingested(storage, tmp_path, capsys):
    good, _ = damaged_parquet()
    _, bad = damaged_parquet(start=ROWS)  # other ids: without verification both files would go in
    base = f"{storage.uri}-src" if storage.kind == "s3" else str(tmp_path / "src")
    store = ObjectStore(parse_location(base, storage.storage_options))
    bad_uri, good_uri = f"{base}/bad.parquet", f"{base}/good.parquet"
    store.write_bytes(bad_uri, bad)
    store.write_bytes(good_uri, good)

    lake = lakevec.connect(storage.uri, storage_options=storage.storage_options)
    t = lake.create_table("t", dim=DIM)
    version = t.version
    with pytest.raises((lakevec.ValidationError, lakevec.StorageError)) as ei:
        t.add([good_uri, bad_uri])  # one commit for both: the good file's rows must not land either
    assert "bad.parquet" in str(ei.value) and "checksum" in str(ei.value)
    assert t.count_rows() == 0 and t.version == version

    argv = ["ingest", "t", bad_uri, "--lake", storage.uri]
    for k, v in (storage.storage_options or {}).items():
        argv += ["--storage-option", f"{k}={v}"]
    code = cli_main.main(argv)
    err = capsys.readouterr().err
    assert code == 1 and err.splitlines()[-1].startswith("lakevec: error: ") and "bad.parquet" in err.splitlines()[-1]
    assert t.count_rows() == 0

    r = t.add(good_uri)  # the intact file goes in
    assert r.rows_added == ROWS
