"""File readers: one module per format, all behind the same small interface.

A reader opens one file and gives
- ``num_entries``;
- ``columns``: name -> :class:`Column` (dtype, and whether the column is a scalar, a fixed-size array per
  entry, a variable-length ("jagged") list per entry, or something ml4ep cannot batch);
- ``boundaries(names, chunk_size)``: entry numbers where reading ``names`` is cheapest to cut (baskets,
  clusters, row groups, HDF5 chunks), and whether the units between them must be kept whole (one flag,
  or one per unit);
- ``read(names, start, stop, max_sizes, padding)``: NumPy arrays for entries ``[start, stop)``; a jagged
  column comes back padded or truncated to ``max_sizes[name]`` together with its per-entry lengths.

Readers open their file lazily and drop the handle when pickled, so a loader can be sent to
``DataLoader`` worker processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ...errors import Ml4epError


class DataError(Ml4epError, ValueError):
    """A data file, tree, dataset or column is missing or cannot be batched."""


@dataclass(frozen=True)
class Column:
    name: str
    dtype: np.dtype | None
    kind: str  # "scalar" | "fixed" | "jagged" | "unsupported"
    shape: tuple[int, ...] = ()  # per-entry shape of a "fixed" column
    why: str = ""  # for "unsupported": what the column is

    @property
    def numeric(self) -> bool:
        return self.kind != "unsupported" and self.dtype is not None and (
            self.dtype.kind in "biuf"
        )


def pad_jagged(offsets: np.ndarray, content: np.ndarray, max_size: int, padding) -> tuple[np.ndarray, np.ndarray]:
    """Pad or truncate a list column given as offsets + flat content to ``(n, max_size)``; also the lengths."""
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    n = counts.shape[0]
    out = np.full((n, max_size), padding, dtype=content.dtype)
    if n and max_size:
        valid = np.arange(max_size)[None, :] < np.minimum(counts, max_size)[:, None]
        flat = content[offsets[0]:offsets[-1]]  # the values in list order: the valid slots' order
        if counts.max() > max_size:  # drop what lies beyond max_size in each list
            pos = np.arange(len(flat)) - np.repeat(offsets[:-1] - offsets[0], counts)
            flat = flat[pos < max_size]
        out[valid] = flat
    return out, counts


def reader_for(path: str, fmt: str | None, tree: str | None):
    """The reader class instance for ``path`` by its format (``root``, ``hdf5``, ``parquet``) or extension."""
    fmt = fmt or guess_format(path)
    if fmt == "root":
        from .root import RootReader

        return RootReader(path, tree)
    if fmt == "hdf5":
        from .hdf5 import HDF5Reader

        return HDF5Reader(path, tree)
    if fmt == "parquet":
        from .parquet import ParquetReader

        return ParquetReader(path, tree)
    raise DataError(f"{path}: unknown format {fmt!r} (use 'root', 'hdf5' or 'parquet')")


_EXTENSIONS = {
    ".root": "root",
    ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".he5": "hdf5",
    ".parquet": "parquet", ".pq": "parquet", ".parq": "parquet",
}


def guess_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    raise DataError(
        f"{path}: cannot tell the format from the extension {ext!r}; pass format='root'|'hdf5'|'parquet'"
    )
