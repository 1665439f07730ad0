"""lakevec.arrays.unique matches np.unique (sorted distinct values) on the inputs lakevec gives it."""
from __future__ import annotations

import numpy as np
import pytest

from lakevec.arrays import unique


@pytest.mark.parametrize("a", [
    np.array([], dtype=np.int64),
    np.array([7], dtype=np.int64),
    np.array([3, 1, 3, 3, 2, 1, -5], dtype=np.int64),
    np.random.default_rng(0).integers(0, 1000, 20_000).astype(np.uint64),
    np.arange(10, dtype=np.int64)[::-1],
    np.array(["b", "a", "b", "c"]),
    np.array([[2, 1], [1, 2]]),
], ids=["empty", "one", "small", "many-dups", "reversed", "strings", "2-d"])
def test_unique_is_np_unique(a):
    got = unique(a)
    want = np.unique(a)
    assert got.dtype == want.dtype and np.array_equal(got, want)
