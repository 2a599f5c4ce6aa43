"""The reading plan on its own: chunking, the validation split, and every epoch's coverage by ranks,
workers, lanes and windows (checked by counting units, not by reading files)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ml4ep.data.pipeline import PART_BLOCK, _segments
from ml4ep.data.plan import Part, cut_file, epoch_plan, split_validation


def test_cut_file_even_and_at_boundaries():
    assert cut_file(0, 100, 30, None) == [(0, 33), (33, 66), (66, 100)]
    # free intervals are cut evenly, whole ones (long baskets) kept, small whole ones merged
    b = np.array([0, 40, 540, 560, 580, 1000])
    whole = np.array([False, True, True, True, False])
    got = cut_file(0, 1000, 50, b, whole)
    assert got[0] == (0, 40) and (40, 540) in got and (540, 580) in got
    assert got[-1][1] == 1000 and all(a < c for a, c in got)
    assert [a for a, _ in got[1:]] == [c for _, c in got[:-1]]  # contiguous, nothing lost
    # an entry range inside the file
    assert cut_file(10, 45, 100, b, whole) == [(10, 45)]  # small pieces merge up to a chunk


def test_validation_split_exact_and_per_chunk():
    chunks = [Part(0, 0, s, s + 333) for s in range(0, 3330, 333)] + [Part(1, 1, 0, 7)]
    train, val = split_validation(chunks, 0.25)
    assert sum(p.stop - p.start for p in val if p.dataset == 0) == round(3330 * 0.25)
    assert len({p.start // 333 for p in val if p.dataset == 0}) == 10  # every chunk gives its tail
    for c in chunks:  # train then validation, contiguous, no overlap
        mine = sorted([(p.start, p.stop) for p in train + val if p.dataset == c.dataset and c.start <= p.start < c.stop])
        assert mine[0][0] == c.start and mine[-1][1] == c.stop
        assert all(a[1] == b[0] for a, b in zip(mine, mine[1:]))


def _units(parts, plans):
    """Multiset of (part, unit) covered by the given plans."""
    seen = []
    for plan in plans:
        for pieces in plan.windows:
            for p in pieces:
                seen.extend((p.part, u) for u in range(p.lo, p.hi))
    return seen


@pytest.mark.parametrize("world,workers", [(1, 1), (1, 3), (2, 1), (3, 2)])
def test_epoch_covers_every_unit_once(world, workers):
    rng = np.random.default_rng(0)
    parts = []
    for d, n_parts in enumerate([13, 4]):  # a large and a small dataset
        for i in range(n_parts):
            size = int(rng.integers(50, 400))
            parts.append(Part(d, d, i * 1000, i * 1000 + size, count=size))
    totals = [sum(p.count for p in parts if p.dataset == d) for d in range(2)]
    everything = []
    for rank in range(world):
        plans = [epoch_plan(parts, 2, seed=3, epoch=1, split=0, shuffle=True, rank=rank, world=world,
                            worker=w, n_workers=workers, window_size=300, lanes=6) for w in range(workers)]
        got = _units(parts, plans)
        assert len(got) == len(set(got))
        per_dataset = [sum(1 for p, _ in got if parts[p].dataset == d) for d in range(2)]
        assert per_dataset == [t // world for t in totals]  # an equal share of every dataset
        everything.extend(got)
    assert len(everything) == len(set(everything))  # disjoint across ranks
    assert len(everything) >= sum(totals) - 2 * (world - 1)


def test_windows_draw_from_every_lane_and_lanes_hold_whole_parts():
    parts = [Part(0, 0, i * 100, i * 100 + 100, count=100) for i in range(64)]
    plan = epoch_plan(parts, 1, seed=1, epoch=0, split=0, shuffle=True, rank=0, world=1, worker=0,
                      n_workers=1, window_size=640, lanes=8)
    assert len(plan.windows) == 10 and all(s == 640 for s in plan.sizes)
    lanes_of_part = {}
    for pieces in plan.windows:
        assert len({p.lane for p in pieces}) == 8
        for p in pieces:
            lanes_of_part.setdefault(p.part, set()).add(p.lane)
    assert all(len(v) == 1 for v in lanes_of_part.values())  # no part is read by two lanes
    # the order changes with the epoch and not with the worker count
    other = epoch_plan(parts, 1, seed=1, epoch=1, split=0, shuffle=True, rank=0, world=1, worker=0,
                       n_workers=1, window_size=640, lanes=8)
    assert [p.part for p in other.windows[0]] != [p.part for p in plan.windows[0]]


def test_no_shuffle_is_file_order():
    parts = [Part(d, d, 0, 50, count=50) for d in range(3)]
    plan = epoch_plan(parts, 3, seed=1, epoch=0, split=0, shuffle=False, rank=0, world=1, worker=0,
                      n_workers=1, window_size=40, lanes=8)
    flat = [(p.part, p.lo, p.hi) for w in plan.windows for p in w]
    units = [(part, u) for part, lo, hi in flat for u in range(lo, hi)]
    assert units == [(d, u) for d in range(3) for u in range(50)]


@pytest.mark.parametrize("n", [PART_BLOCK * 3, PART_BLOCK * 3 + 17, 100])
def test_part_block_segments_cover_the_part(n):
    blocks = -(-n // PART_BLOCK)
    order = np.random.default_rng(0).permutation(n // PART_BLOCK)
    if n % PART_BLOCK:
        order = np.append(order, n // PART_BLOCK)
    order = order if blocks > 1 else None
    rows = []
    for lo, hi in itertools.pairwise([0, 5, 2000, 2100, 4097, n]):
        if hi > lo:
            for a, b in _segments(lo, min(hi, n), order, n):
                rows.extend(range(a, b))
    assert sorted(rows) == list(range(n)) and len(rows) == n
    if order is not None:
        assert rows != list(range(n))
