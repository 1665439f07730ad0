"""ingest.convert.read_ahead: the items in order, the producer's error raised in place, an early close stops
the producer."""
from __future__ import annotations

import threading
import time

import pytest

from lakevec.ingest.convert import read_ahead


def test_items_in_order_then_the_producers_error():
    def items():
        yield from range(5)
        raise OSError("the store went away at item 5")

    got = []
    with pytest.raises(OSError, match="item 5"):
        for x in read_ahead(items(), depth=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_closing_early_stops_the_producer():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    gen = read_ahead(items(), depth=2)
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    time.sleep(0.5)
    n = len(produced)
    time.sleep(0.3)
    assert len(produced) == n <= 3 + 2 + 2  # stopped within the read-ahead window
    assert not any(t.name == "lakevec-read-ahead" and t.is_alive() for t in threading.enumerate())
