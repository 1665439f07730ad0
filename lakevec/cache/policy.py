"""Promotion and demotion per IVF partition: a decayed access score, scan-resistant admission, victims.

A unit is one partition of one index of one table, ``(table root URI, index id, partition)``: the next
index reuses partition numbers for unrelated clusters, so statistics and pins never carry over to it.
Rows outside any partition (appended after the index, or of an unindexed table) form the pseudo-partition
``("<table>", "", -1)``.

**Temperature.** Every read of a partition (cached or not) adds 1 to its score, and the score halves
every ``half_life`` seconds (default one hour): it counts recent accesses, weighing frequency and
recency in one number. It is stored as ``lscore = log2(score) + t / half_life`` at the time ``t`` of
the last update; the score now is ``2 ** (lscore - now / half_life)``. Since every score decays at the
same rate, ``lscore`` orders partitions by current temperature without being recomputed, so the
coldest partitions are an ``ORDER BY lscore`` away.

**Admission (TinyLFU-style).** A missed object of partition P is admitted when it fits in the free
budget. Otherwise the coldest unpinned partitions are chosen as victims until enough bytes would be
freed, and P is admitted only if it is hotter than every victim. A large scan touches each partition
once (score ~1), so it fills free space but cannot push out partitions that are read repeatedly; a
partition that keeps coming back accumulates score and gets in. Objects larger than
``max_object_fraction`` of the budget are never admitted (one huge unindexed fragment would flush
everything).

**Demotion.** Victims are whole partitions (all their files), the coldest first; pinned partitions
are never victims. ``warm`` admits regardless of temperature (it still never evicts pinned partitions
or those it is warming).
"""
from __future__ import annotations

import math

DEFAULT_HALF_LIFE = 3600.0
MAX_OBJECT_FRACTION = 0.5
NEVER = -1e300  # lscore of a partition never accessed


def bump_lscore(lscore: float | None, now: float, half_life: float, weight: float = 1.0) -> float:
    """Return the new lscore after ``weight`` accesses at time ``now``."""
    cur = temperature(lscore, now, half_life)
    return math.log2(cur + weight) + now / half_life


def temperature(lscore: float | None, now: float, half_life: float) -> float:
    """Return the decayed access score at ``now`` (0 for never accessed)."""
    if lscore is None or lscore <= NEVER / 2:
        return 0.0
    x = lscore - now / half_life
    return 2.0 ** x if x < 1000 else float("inf")


def choose_victims(units, need: int, candidate_lscore: float | None, force: bool):
    """Pick victims among ``units`` (iterable of (*unit key, bytes, lscore), coldest first; the key is
    e.g. (table, index id, partition)).

    Return (victims, ok): the units to evict, as (*unit key, bytes), to free ``need`` bytes, and whether
    admission may go on (enough bytes freed, and - unless ``force`` - every victim colder than the candidate).
    """
    victims = []
    freed = 0
    for *key, nbytes, lscore in units:
        if freed >= need:
            break
        if not force and candidate_lscore is not None and (lscore if lscore is not None else NEVER) >= candidate_lscore:
            return victims, False
        victims.append((*key, nbytes))
        freed += nbytes
    return victims, freed >= need


def tier_of(cached_bytes: int, total_bytes: int) -> str:
    """Return "hot" (every byte cached), "partial" or "cold"."""
    if total_bytes and cached_bytes >= total_bytes:
        return "hot"
    return "partial" if cached_bytes else "cold"
