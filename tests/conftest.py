"""Shared pytest fixtures: an embedded S3 server, lake roots on local disk and S3, and the real data sets.

Fixtures:
  s3_server  (session)  a running :class:`lakevec.store.seaweed.EmbeddedS3` with bucket ``lakevec``
  storage    (per test) parametrized ``local`` / ``s3``: ``.uri`` is a fresh lake root, ``.storage_options``
                        the options to open it (None for local); the S3 server starts only if needed
  lake       (per test) ``lakevec.connect(storage.uri, storage_options=storage.storage_options)``
  data_dir   (session)  ``../shared/data`` next to the repo (override with ``LAKEVEC_DATA_DIR``)

Helpers (``from conftest import sift10k``): ``sift10k()`` -> (base, queries, groundtruth), or skip.
"""
from __future__ import annotations

import functools
import os
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

# Spark binds to the host's resolved address by default, which breaks on machines whose hostname does not
# resolve; set before any test starts a JVM.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def _interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"terminated by signal {signum}")


# A CI time limit sends SIGTERM, which by default kills Python without running fixture teardown (servers,
# Spark, Ray would be left behind); as an interrupt, pytest tears everything down and reports.
if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LAKEVEC_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")


@dataclass(frozen=True)
class Storage:
    """Where a test's lake lives: ``kind`` is "local" or "s3"."""

    kind: str
    uri: str
    storage_options: dict | None


@pytest.fixture(scope="session")
def s3_server():
    """Start one embedded S3 server (bucket ``lakevec``) for the whole session; stop it at the end."""
    from lakevec.store.seaweed import EmbeddedS3

    with EmbeddedS3(buckets=("lakevec",)) as srv:
        yield srv


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    """A fresh, empty lake root per test, on local disk and on S3."""
    if request.param == "local":
        return Storage("local", str(tmp_path / "lake"), None)
    srv = request.getfixturevalue("s3_server")  # lazily: local-only runs never start the server
    return Storage("s3", srv.uri("lakevec", uuid.uuid4().hex), dict(srv.storage_options))


@pytest.fixture
def lake(storage):
    """A lake connected at ``storage.uri``."""
    import lakevec

    return lakevec.connect(storage.uri, storage_options=storage.storage_options)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared benchmark data folder (may be absent: use the helpers, which skip)."""
    return DATA_DIR


@functools.lru_cache(maxsize=None)
def _load_sift10k(root: str):
    from lakevec.bench.datasets import read_vecs

    d = Path(root)
    base = read_vecs(d / "siftsmall_base.fvecs")
    queries = read_vecs(d / "siftsmall_query.fvecs")
    groundtruth = read_vecs(d / "siftsmall_groundtruth.ivecs")
    for a in (base, queries, groundtruth):
        a.setflags(write=False)  # shared between tests through the cache: in-place edits must fail loudly
    return base, queries, groundtruth


def sift10k():
    """Return SIFT10K as (base 10000x128 float32, queries 100x128 float32, groundtruth 100x100 int32).

    Exact L2 top-100 ground truth (row numbers in base). Skips the test when the files are absent.
    Arrays are cached and shared between tests, hence read-only: copy before modifying.
    """
    names = ("siftsmall_base.fvecs", "siftsmall_query.fvecs", "siftsmall_groundtruth.ivecs")
    missing = [n for n in names if not (DATA_DIR / n).is_file()]
    if missing:
        pytest.skip(f"SIFT10K data not found: {', '.join(missing)} missing in {DATA_DIR} "
                    "(set LAKEVEC_DATA_DIR to the folder holding them)")
    return _load_sift10k(str(DATA_DIR))
