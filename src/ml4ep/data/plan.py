"""The reading plan: chunks of files, the train/validation split, and each epoch's order.

Terms
- A *part* is a contiguous entry range of one file (a chunk, or the train or validation share of a chunk);
  it is the unit that is read and cached. Its *units* are its entries after the filter when those counts
  are known (always without a filter; after a counting pass with one), else its raw entries.
- An epoch's order is a pure function of (seed, epoch, split): every input dataset's parts in a random
  order, one stream per dataset. A rank takes an equal share of every dataset's stream and splits it into
  *lanes* (contiguous runs of the stream, at most ``lanes`` over all datasets, in proportion to their
  sizes). The share is cut into *windows* of about ``window_size`` units, each taking the same fraction of
  every lane (so every window, hence every batch, holds rows from every lane - distant places of the
  files - and every dataset in its global proportion); workers take contiguous runs of windows. A lane is
  read sequentially with one part cached, so ``lanes`` x part size (the loader's ``buffer_size``) bounds
  the memory of mixing, while windows stay small enough for their permutation to run in cache. A window's rows are permuted with a generator seeded by
  (seed, epoch, split, rank, window), so the stream does not depend on the number of workers except at
  the batch boundaries between workers' runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Part:
    dataset: int
    file: int  # index into the loader's list of files
    start: int
    stop: int
    count: int | None = None  # entries passing the filter, when known

    @property
    def units(self) -> int:
        return self.count if self.count is not None else self.stop - self.start


@dataclass(frozen=True)
class Piece:
    part: int  # index into the split's parts
    lo: int  # unit range inside the part
    hi: int
    lane: int = 0  # the reading lane (one cached part each)


def cut_file(start: int, stop: int, chunk_size: int, boundaries: np.ndarray | None,
             whole: np.ndarray | bool = False) -> list[tuple[int, int]]:
    """Chunk ``[start, stop)`` into ranges of about ``chunk_size`` entries.

    ``boundaries`` are the reader's cheap cut points and ``whole`` says, per interval between two of them
    (or for all), whether that interval must stay in one piece (a basket, row group or HDF5 chunk longer than
    half a chunk): such intervals are chunks of their own (small ones merged up to ``chunk_size``); the
    others are cut evenly."""
    if stop <= start:
        return []
    if boundaries is None or len(boundaries) < 2:
        return _even(start, stop, chunk_size)
    b = np.asarray(boundaries, dtype=np.int64)
    flags = np.broadcast_to(np.asarray(whole, dtype=bool), (len(b) - 1,))
    out: list[tuple[int, int]] = []
    for lo, hi, w in zip(b[:-1], b[1:], flags):
        lo, hi = max(int(lo), start), min(int(hi), stop)
        if hi <= lo:
            continue
        if not w:
            out.extend(_even(lo, hi, chunk_size))
        elif out and out[-1][1] == lo and out[-1][1] - out[-1][0] + (hi - lo) <= chunk_size:
            out[-1] = (out[-1][0], hi)  # merge small whole units
        else:
            out.append((lo, hi))
    # entries outside the boundaries (should not happen) are still covered
    if not out:
        return _even(start, stop, chunk_size)
    if out[0][0] > start:
        out = _even(start, out[0][0], chunk_size) + out
    if out[-1][1] < stop:
        out = out + _even(out[-1][1], stop, chunk_size)
    return out


def _even(start: int, stop: int, chunk_size: int) -> list[tuple[int, int]]:
    n = max(1, round((stop - start) / chunk_size))
    cuts = start + (np.arange(n + 1) * (stop - start)) // n
    return [(int(a), int(c)) for a, c in zip(cuts[:-1], cuts[1:]) if c > a]


def split_validation(chunks: list[Part], fraction: float) -> tuple[list[Part], list[Part]]:
    """The tail of every chunk goes to validation; cumulative rounding makes the total exact per dataset.

    The split depends only on the chunks (not on the seed or the epoch), so it is the same every epoch."""
    if fraction <= 0:
        return list(chunks), []
    train, val = [], []
    cum = {}
    for c in chunks:
        before = cum.get(c.dataset, 0)
        after = before + (c.stop - c.start)
        cum[c.dataset] = after
        n_val = int(round(after * fraction)) - int(round(before * fraction))
        cut = c.stop - n_val
        if cut > c.start:
            train.append(Part(c.dataset, c.file, c.start, cut))
        if c.stop > cut:
            val.append(Part(c.dataset, c.file, cut, c.stop))
    return train, val


@dataclass
class EpochPlan:
    windows: list[list[Piece]]  # this worker's windows, in order
    window_ids: list[int]  # their indices within the rank's share (seed of their permutation)
    sizes: list[int | None]  # rows each window yields, when known
    total: int | None  # rows of the whole rank share (all workers), when known


def epoch_plan(parts: list[Part], n_datasets: int, *, seed: int, epoch: int, split: int, shuffle: bool,
               rank: int, world: int, worker: int, n_workers: int, window_size: int,
               units: list[int] | None = None, lanes: int = 16) -> EpochPlan:
    """This worker's windows of an epoch; ``units`` overrides the parts' units (raw entries when the
    filter's counts are unknown, in which case window sizes are unknown too)."""
    known = units is None and all(p.count is not None for p in parts)
    units = np.array([p.units for p in parts] if units is None else units, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch, split, 0x5EED])
    # one stream of part indices per dataset (a single stream, in file order, without shuffling)
    if shuffle:
        streams = []
        for d in range(n_datasets):
            idx = np.array([i for i, p in enumerate(parts) if p.dataset == d], dtype=np.int64)
            streams.append(rng.permutation(idx))
    else:  # file order: one stream read by one lane
        streams = [np.arange(len(parts), dtype=np.int64)]
        lanes = 1
    ends = [np.cumsum(units[s]) for s in streams]
    lengths = [int(e[-1]) if len(e) else 0 for e in ends]
    # the rank's equal share of every stream
    if world > 1:
        share = [n // world for n in lengths]
        offset = [rank * q for q in share]
    else:
        share, offset = lengths, [0] * len(lengths)
    total = int(sum(share))
    # lanes per dataset, in proportion to its share, at least one, at most one per part
    counts = [len(st) for st in streams]
    n_lanes = [0 if q == 0 else max(1, min(c, round(lanes * q / max(total, 1)))) for q, c in zip(share, counts)]
    lane_ranges = []  # (stream index, first unit, length, global lane id)
    lane_id = 0
    for si, (q, off, k) in enumerate(zip(share, offset, n_lanes)):
        # lanes start at part boundaries, so that no part is read by two lanes: k - 1 cuts among the
        # boundaries inside the share, each the nearest to its ideal place that leaves room for the rest
        e = ends[si]
        inside = e[(e > off) & (e < off + q)]
        k = min(k, len(inside) + 1)
        cuts = [off]
        prev = -1
        for j in range(1, k):
            ideal = off + q * j / k
            lo, hi = prev + 1, len(inside) - (k - 1 - j)  # candidate indices [lo, hi)
            x = lo + int(np.argmin(np.abs(inside[lo:hi] - ideal)))
            cuts.append(int(inside[x]))
            prev = x
        cuts.append(off + q)
        for a, b in zip(cuts[:-1], cuts[1:]):
            if b > a:
                lane_ranges.append((si, a, b - a, lane_id))
                lane_id += 1
    n_windows = max(1, -(-total // window_size))
    if n_workers > 1:
        n_windows = max(n_windows, min(n_workers, max(1, total)))
    first = n_windows * worker // n_workers
    last = n_windows * (worker + 1) // n_workers
    windows, sizes = [], []
    for w in range(first, last):
        pieces = []
        for si, a, length, lid in lane_ranges:
            lo = a + length * w // n_windows
            hi = a + length * (w + 1) // n_windows
            pieces.extend(_pieces(streams[si], ends[si], lo, hi, lid))
        windows.append(pieces)
        sizes.append(sum(p.hi - p.lo for p in pieces) if known else None)
    return EpochPlan(windows, list(range(first, last)), sizes, total if known else None)


def _pieces(stream: np.ndarray, ends: np.ndarray, a: int, b: int, lane: int) -> list[Piece]:
    """The pieces of parts covering units ``[a, b)`` of a stream whose parts end at ``ends``."""
    out = []
    if b <= a:
        return out
    i = int(np.searchsorted(ends, a, side="right"))
    while a < b:
        start_i = int(ends[i - 1]) if i else 0
        stop = min(b, int(ends[i]))
        if stop > a:
            out.append(Piece(int(stream[i]), a - start_i, stop - start_i, lane))
        a = stop
        i += 1
    return out


def window_permutation(n: int, *, seed: int, epoch: int, split: int, rank: int, window: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, split, rank, window]).permutation(n)
