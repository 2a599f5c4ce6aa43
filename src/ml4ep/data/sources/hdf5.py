"""HDF5 files through h5py.

Columns are the numeric datasets of one group (``tree=`` names the group; the file's root by default),
all sharing their first dimension (the entries); a dataset of shape ``(N, a, b)`` is a fixed-size column
of ``a*b`` values per entry (CaloChallenge ``showers`` (N, voxels), ``incident_energies`` (N, 1)).
``tree=`` may also name one compound dataset, whose numeric fields are then the columns.
"""

from __future__ import annotations

import numpy as np

from ..._optional import require
from . import Column, DataError


class HDF5Reader:
    format = "hdf5"

    def __init__(self, path: str, tree: str | None):
        self.path = path
        self.tree_name = tree or "/"
        self._file = None
        self._columns: dict[str, Column] | None = None
        self._compound = None
        self._datasets: dict = {}  # name -> h5py.Dataset, looked up once
        self._open()
        lengths = {c.name: self._length(c.name) for c in self.columns.values() if c.kind != "unsupported"}
        self._lengths = lengths
        self.num_entries = min(lengths.values()) if lengths else 0

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        state["_group"] = None
        state["_datasets"] = {}
        return state

    def _open(self):
        if self._file is not None:
            return self._group
        h5py = require("h5py", "data", "reading HDF5 files")
        try:
            f = h5py.File(self.path, "r")
        except FileNotFoundError:
            raise DataError(f"{self.path}: file not found") from None
        except OSError as exc:
            raise DataError(f"{self.path}: not a readable HDF5 file ({exc})") from None
        if self.tree_name not in f:
            names = sorted(f.keys())
            f.close()
            raise DataError(f"{self.path}: no group or dataset {self.tree_name!r} (the file has: {names})")
        obj = f[self.tree_name]
        if isinstance(obj, h5py.Dataset):
            if obj.dtype.fields is None:
                f.close()
                raise DataError(
                    f"{self.path}: {self.tree_name!r} is a plain dataset; pass the group holding the column "
                    "datasets (tree='/') or a compound dataset"
                )
            self._compound = obj
        self._file, self._group = f, obj
        return obj

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._group = self._compound = None
        self._datasets = {}

    @property
    def columns(self) -> dict[str, Column]:
        if self._columns is None:
            import h5py

            g = self._open()
            out = {}
            if self._compound is not None:
                for name, (dt, _off) in g.dtype.fields.items():
                    out[name] = _column(name, dt, ())
            else:
                for name, obj in g.items():
                    if not isinstance(obj, h5py.Dataset):
                        continue
                    if obj.ndim == 0:
                        out[name] = Column(name, None, "unsupported", why="a scalar dataset (no entries axis)")
                    else:
                        out[name] = _column(name, obj.dtype, obj.shape[1:])
            self._columns = out
        return self._columns

    def _length(self, name: str) -> int:
        g = self._open()
        return int(g.shape[0]) if self._compound is not None else int(g[name].shape[0])

    def boundaries(self, names, chunk_size: int) -> tuple[np.ndarray | None, bool]:
        """HDF5 chunk starts along the entries; whole chunks are kept when they exceed half a chunk."""
        g = self._open()
        steps = []
        for n in names:
            ds = g if self._compound is not None else g[n]
            if ds.chunks is not None:
                steps.append(int(ds.chunks[0]))
        if not steps:
            return None, False
        step = max(steps)
        b = np.unique(np.r_[np.arange(0, self.num_entries, step), self.num_entries]).astype(np.int64)
        return b, step > chunk_size // 2

    def check_lengths(self, names) -> None:
        lens = {n: self._lengths[n] for n in names}
        if len(set(lens.values())) > 1:
            raise DataError(f"{self.path}: the selected datasets have different lengths: {lens}")

    def read(self, names, start: int, stop: int, max_sizes: dict, padding) -> dict[str, np.ndarray]:
        g = self._open()
        out = {}
        try:
            if self._compound is not None:
                rec = g.fields(list(names))[start:stop] if len(names) > 1 else None
                for n in names:
                    out[n] = np.ascontiguousarray(rec[n]) if rec is not None else g.fields(n)[start:stop]
            else:
                for n in names:
                    ds = self._datasets.get(n)
                    if ds is None:
                        ds = self._datasets[n] = g[n]
                    out[n] = ds[start:stop]
        except Exception as exc:
            raise DataError(f"{self.path}: reading entries [{start}, {stop}) of {list(names)} failed: {exc}") from exc
        for n, a in out.items():
            if a.dtype.byteorder not in "=|":
                out[n] = a.astype(a.dtype.newbyteorder("="))
        return out


def _column(name: str, dt: np.dtype, shape: tuple) -> Column:
    dt = np.dtype(dt)
    if dt.subdtype is not None:
        base, sub = dt.subdtype
        dt, shape = base, tuple(shape) + tuple(sub)
    if dt.kind not in "biuf":
        return Column(name, None, "unsupported", why=f"dtype {dt} (not a number)")
    return Column(name, dt.newbyteorder("="), "fixed" if shape else "scalar", tuple(int(s) for s in shape))
