"""Parquet files through pyarrow.

Numeric and boolean columns are scalars, ``fixed_size_list`` columns fixed-size arrays, ``list`` /
``large_list`` columns jagged. pyarrow decodes whole row groups, so the read unit is the row group: a chunk
never cuts one, and the memory bound of a loader includes one row group per input dataset.
Nulls become NaN in floating-point columns and are an error in integer ones.
"""

from __future__ import annotations

import numpy as np

from ..._optional import require
from . import Column, DataError, pad_jagged


class ParquetReader:
    format = "parquet"
    def __init__(self, path: str, tree: str | None):
        self.path = path
        self.tree_name = tree
        self._file = None
        self._columns: dict[str, Column] | None = None
        pf = self._open()
        md = pf.metadata
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        self._starts = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        self.num_entries = int(md.num_rows)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def _open(self):
        if self._file is None:
            pq = require("pyarrow.parquet", "data", "reading Parquet files")
            try:
                self._file = pq.ParquetFile(self.path, pre_buffer=True)  # one coalesced read per row group
            except FileNotFoundError:
                raise DataError(f"{self.path}: file not found") from None
            except Exception as exc:
                raise DataError(f"{self.path}: not a readable Parquet file ({exc})") from None
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None

    @property
    def columns(self) -> dict[str, Column]:
        if self._columns is None:
            import pyarrow as pa

            out = {}
            for field in self._open().schema_arrow:
                t, name = field.type, field.name
                if _numeric(t):
                    out[name] = Column(name, _dtype(t), "scalar")
                elif pa.types.is_fixed_size_list(t) and _numeric(t.value_type):
                    out[name] = Column(name, _dtype(t.value_type), "fixed", (t.list_size,))
                elif (pa.types.is_list(t) or pa.types.is_large_list(t)) and _numeric(t.value_type):
                    out[name] = Column(name, _dtype(t.value_type), "jagged")
                else:
                    out[name] = Column(name, None, "unsupported", why=f"type {t}")
            self._columns = out
        return self._columns

    def boundaries(self, names, chunk_size: int) -> tuple[np.ndarray, bool]:
        """Row-group starts; chunks always keep whole row groups (reading part of one decodes all of it)."""
        return self._starts, True

    def read(self, names, start: int, stop: int, max_sizes: dict, padding) -> dict[str, np.ndarray]:
        pf = self._open()
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        last = int(np.searchsorted(self._starts, stop, side="left"))
        try:
            table = pf.read_row_groups(list(range(first, last)), columns=list(names), use_threads=False)
        except Exception as exc:
            raise DataError(f"{self.path}: reading rows [{start}, {stop}) of {list(names)} failed: {exc}") from exc
        table = table.slice(start - int(self._starts[first]), stop - start)
        cols = self.columns
        out = {}
        for n in names:
            arr = table.column(n).combine_chunks()
            c = cols[n]
            if c.kind == "scalar":
                out[n] = self._values(arr, n, c.dtype)
            elif c.kind == "fixed":
                if arr.null_count:
                    raise DataError(f"{self.path}: column {n!r} has null entries")
                out[n] = self._values(arr.flatten(), n, c.dtype).reshape((len(arr),) + c.shape)
            else:
                if arr.null_count:
                    raise DataError(f"{self.path}: column {n!r} has null lists")
                offsets = np.asarray(arr.offsets, dtype=np.int64)
                content = self._values(arr.flatten(), n, c.dtype)
                out[n], out[n + ".counts"] = pad_jagged(offsets - offsets[0], content, max_sizes[n], padding)
        return out

    def _values(self, arr, name: str, dtype: np.dtype) -> np.ndarray:
        if arr.null_count:
            if dtype.kind != "f":
                raise DataError(f"{self.path}: integer column {name!r} has null values")
            arr = arr.fill_null(np.nan)
        return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)


def _numeric(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _dtype(t) -> np.dtype:
    import pyarrow as pa

    return np.dtype(bool) if pa.types.is_boolean(t) else np.dtype(t.to_pandas_dtype())
