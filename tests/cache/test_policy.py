"""The partition temperature and victim choice (pure functions of lakevec.cache.policy)."""
from __future__ import annotations

import math

from lakevec.cache import policy


def test_score_counts_accesses_and_halves_every_half_life():
    h = 100.0
    ls = None
    for _ in range(4):
        ls = policy.bump_lscore(ls, 1000.0, h)
    assert math.isclose(policy.temperature(ls, 1000.0, h), 4.0, rel_tol=1e-9)
    assert math.isclose(policy.temperature(ls, 1100.0, h), 2.0, rel_tol=1e-9)
    assert policy.temperature(None, 1000.0, h) == 0.0


def test_lscore_orders_by_current_temperature_without_recomputing():
    h = 60.0
    old_hot = None
    for _ in range(8):  # 8 accesses three half-lives ago -> 1.0 now
        old_hot = policy.bump_lscore(old_hot, 0.0, h)
    recent = policy.bump_lscore(policy.bump_lscore(None, 180.0, h), 180.0, h)  # 2 accesses now -> 2.0
    assert recent > old_hot
    assert policy.temperature(recent, 180.0, h) > policy.temperature(old_hot, 180.0, h)


def test_victims_must_be_colder_than_the_candidate_unless_forced():
    units = [("t", 1, 100, 1.0), ("t", 2, 100, 2.0), ("t", 3, 100, 5.0)]
    victims, ok = policy.choose_victims(iter(units), 150, candidate_lscore=3.0, force=False)
    assert ok and [v[1] for v in victims] == [1, 2]
    victims, ok = policy.choose_victims(iter(units), 250, candidate_lscore=3.0, force=False)
    assert not ok  # would have to evict partition 3, which is hotter
    victims, ok = policy.choose_victims(iter(units), 250, candidate_lscore=3.0, force=True)
    assert ok and [v[1] for v in victims] == [1, 2, 3]
    victims, ok = policy.choose_victims(iter(units), 1000, candidate_lscore=9.0, force=True)
    assert not ok  # not enough bytes to free at all


def test_tier_labels():
    assert policy.tier_of(10, 10) == "hot"
    assert policy.tier_of(5, 10) == "partial"
    assert policy.tier_of(0, 10) == "cold"
