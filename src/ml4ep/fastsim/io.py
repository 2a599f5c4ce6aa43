"""CaloChallenge HDF5 shower files: read, write, stream.

A file holds two datasets: ``incident_energies`` of shape ``(N, 1)`` and ``showers`` of shape ``(N, n_voxels)``,
both in MeV, voxels flattened in (layer, alpha, r) order with r fastest. Files written here are gzip-compressed
(with the byte-shuffle filter), chunked by rows and resizable; showers are stored as float32 by default,
incident energies always as float64. Any h5py-written file in that layout (such as the challenge's own) is read::

    from ml4ep.fastsim import io
    io.write("gen.h5", energies, showers, geometry="ds2")
    e, s = io.read("gen.h5", geometry="ds2", start=0, stop=1000)
    for e, s in io.iter_chunks("gen.h5", chunk_size=10_000):
        ...
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..errors import Ml4epError
from .geometry import Geometry, get

logger = logging.getLogger(__name__)

E_KEY = "incident_energies"
S_KEY = "showers"
COMPRESSIONS = ("gzip", "lzf", None)
_CHUNK_BYTES = 4 << 20  # target size of one HDF5 chunk (uncompressed)
_MAX_CHUNK_ROWS = 512
_READ_CACHE_BYTES = 32 << 20  # HDF5 chunk cache per dataset when reading: holds a row block of foreign chunkings


class ShowerFileError(Ml4epError, ValueError):
    """A shower file or shower array is missing, unreadable or invalid (the message names the file and key)."""


def _h5py():
    return require("h5py", "fastsim", "CaloChallenge HDF5 shower files")


def _resolve(geometry) -> Geometry | None:
    return None if geometry is None else get(geometry)


def _chunk_rows(n_voxels: int, itemsize: int, n_rows: int | None = None) -> int:
    """Rows per HDF5 chunk: about 4 MiB, at most 512 rows, at least 1, at most ``n_rows`` when known."""
    rows = max(1, min(_MAX_CHUNK_ROWS, _CHUNK_BYTES // max(1, n_voxels * itemsize)))
    if n_rows is not None:
        rows = min(rows, max(1, n_rows))
    return int(rows)


def _check_dtype(dtype, source: str) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ShowerFileError(f"{source}: invalid dtype {dtype!r} ({exc})") from None
    if dt.kind != "f":
        raise ShowerFileError(f"{source}: showers must be stored as a floating-point type, got {dt}")
    return dt


def _check_compression(compression, source: str):
    if compression not in COMPRESSIONS:
        raise ShowerFileError(f"{source}: compression must be one of {COMPRESSIONS}, got {compression!r}")
    return compression


# -- validation ---------------------------------------------------------------------------------------


def _check_kind(dtype: np.dtype, key: str, source: str) -> None:
    if dtype.kind not in "fiu":
        raise ShowerFileError(f"{source}: '{key}' must hold real numbers, got dtype {dtype}")


def _check_structure(e_shape: tuple, s_shape: tuple, geometry: Geometry | None, source: str,
                     n_voxels: int | None = None) -> None:
    """Ranks, lengths and the voxel count, from the shapes alone."""
    if len(e_shape) not in (1, 2) or (len(e_shape) == 2 and e_shape[1] != 1):
        raise ShowerFileError(f"{source}: '{E_KEY}' must have shape (N,) or (N, 1), got {tuple(e_shape)}")
    if len(s_shape) != 2:
        raise ShowerFileError(f"{source}: '{S_KEY}' must be 2-D (N, n_voxels), got shape {tuple(s_shape)}")
    if e_shape[0] != s_shape[0]:
        raise ShowerFileError(f"{source}: '{E_KEY}' has {e_shape[0]} rows but '{S_KEY}' has {s_shape[0]}")
    want = geometry.n_voxels if geometry is not None else n_voxels
    if want is not None and s_shape[1] != want:
        what = f"geometry {geometry.name!r} has {want}" if geometry is not None else f"expected {want}"
        raise ShowerFileError(f"{source}: '{S_KEY}' has {s_shape[1]} voxels per shower but {what}")


def _first_row(bad: np.ndarray) -> int:
    rows = bad.reshape(len(bad), -1).any(axis=1)
    return int(np.argmax(rows))


def _value_error(source: str, key: str, what: str, bad: np.ndarray, row0: int, where: str) -> ShowerFileError:
    return ShowerFileError(f"{source}: '{key}' has {int(bad.sum())} {what}{where}, first in row "
                           f"{row0 + _first_row(bad)}")


def _check_values(e: np.ndarray, s: np.ndarray, source: str, row0: int = 0, block: bool = False) -> None:
    """Finite, non-negative voxels and finite, positive incident energies; ``row0`` offsets the reported rows,
    ``block`` says the counts cover only rows ``[row0, row0 + len(e))`` of a file."""
    where = f" in rows [{row0}, {row0 + len(e)})" if block else ""
    if e.size:
        emin, emax = e.min(), e.max()
        if not (np.isfinite(emin) and np.isfinite(emax) and emin > 0):
            bad = ~np.isfinite(e)
            if bad.any():
                raise _value_error(source, E_KEY, "NaN or inf value(s)", bad, row0, where)
            if emin < 0:
                raise _value_error(source, E_KEY, f"negative value(s) (minimum {float(emin):g} MeV)", e < 0, row0,
                                   where)
            raise _value_error(source, E_KEY, "value(s) equal to 0 (incident energies must be positive)", e <= 0,
                               row0, where)
    if s.size:
        smin, smax = s.min(), s.max()
        if not (np.isfinite(smin) and np.isfinite(smax) and smin >= 0):
            bad = ~np.isfinite(s)
            if bad.any():
                raise _value_error(source, S_KEY, "NaN or inf voxel value(s)", bad, row0, where)
            raise _value_error(source, S_KEY, f"negative voxel energies (minimum {float(smin):g} MeV)", s < 0, row0,
                               where)


def _as_arrays(incident_energies, showers, source: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for key, x in ((E_KEY, incident_energies), (S_KEY, showers)):
        try:
            a = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise ShowerFileError(f"{source}: '{key}' is not a numeric array ({exc})") from None
        _check_kind(a.dtype, key, source)
        arrays.append(a)
    return arrays[0], arrays[1]


def _validate(incident_energies, showers, geometry: Geometry | None, source: str, n_voxels: int | None = None,
              row0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    e, s = _as_arrays(incident_energies, showers, source)
    _check_structure(e.shape, s.shape, geometry, source, n_voxels)
    _check_values(e, s, source, row0)
    return e.reshape(-1), s


def validate(incident_energies, showers, geometry=None, source: str = "showers") -> None:
    """Raise :class:`ShowerFileError` unless ``incident_energies`` ((N,) or (N, 1)) and ``showers`` ((N, V)) are a
    valid shower set: equal lengths, V = the geometry's voxel count (if a geometry is given), all values finite,
    voxel energies >= 0 and incident energies > 0. ``source`` prefixes the messages."""
    _validate(incident_energies, showers, _resolve(geometry), source)


# -- writing ------------------------------------------------------------------------------------------


def _fits(s: np.ndarray, dtype: np.dtype, source: str, row0: int = 0) -> None:
    """Voxel values must not overflow the storage type (they would become inf)."""
    if s.size and dtype.itemsize < s.dtype.itemsize and s.dtype.kind == "f":
        big = s > np.finfo(dtype).max
        if big.any():
            raise ShowerFileError(f"{source}: '{S_KEY}' has {int(big.sum())} value(s) too large for {dtype}, first "
                                  f"in row {row0 + _first_row(big)}")


def _create(f, n_voxels: int, n_rows: int | None, compression, dtype: np.dtype):
    comp = {} if compression is None else {"compression": compression, "shuffle": True}
    rows = _chunk_rows(n_voxels, dtype.itemsize, n_rows)
    n0 = n_rows or 0
    e_rows = min(4096, max(rows, n0)) if n0 else 4096
    e_ds = f.create_dataset(E_KEY, shape=(n0, 1), maxshape=(None, 1), dtype=np.float64, chunks=(e_rows, 1), **comp)
    s_ds = f.create_dataset(S_KEY, shape=(n0, n_voxels), maxshape=(None, n_voxels), dtype=dtype,
                            chunks=(rows, n_voxels), **comp)
    return e_ds, s_ds


def _write_rows(e_ds, s_ds, at: int, e: np.ndarray, s: np.ndarray, dtype: np.dtype) -> None:
    """Write rows ``[at, at + len(e))`` in blocks, so the conversion to ``dtype`` never copies all of ``s``."""
    step = max(1, 8 * s_ds.chunks[0])
    e_ds[at:at + len(e), 0] = e.astype(np.float64, copy=False)
    for i in range(0, len(s), step):
        s_ds[at + i:at + i + step] = np.asarray(s[i:i + step], dtype=dtype)


def _part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _open_for_writing(h5py, tmp: Path, path: Path):
    try:
        return h5py.File(tmp, "w")
    except OSError as exc:
        raise ShowerFileError(f"{path}: cannot create the file ({exc})") from None


def write(path, incident_energies, showers, geometry=None, compression="gzip", dtype=np.float32) -> Path:
    """Validate and write showers to a CaloChallenge HDF5 file; returns the path.

    ``incident_energies`` (N,) or (N, 1) and ``showers`` (N, V) in MeV. The file is written under a temporary name
    and renamed when complete, so ``path`` never holds a partial file."""
    h5py = _h5py()
    path = Path(path)
    source = str(path)
    dt = _check_dtype(dtype, source)
    _check_compression(compression, source)
    e, s = _validate(incident_energies, showers, _resolve(geometry), source)
    _fits(s, dt, source)
    tmp = _part_path(path)
    f = _open_for_writing(h5py, tmp, path)
    try:
        with f:
            e_ds, s_ds = _create(f, s.shape[1], len(s), compression, dt)
            _write_rows(e_ds, s_ds, 0, e, s, dt)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("wrote %d showers of %d voxels to %s", len(s), s.shape[1], path)
    return path


class ShowerWriter:
    """Append showers chunk by chunk to a CaloChallenge HDF5 file (for sets larger than memory).

    ``n_voxels_or_geometry``: a voxel count, or a geometry (object or name) whose voxel count every chunk must
    match. Data go to ``<path>.part``, renamed to ``path`` by :meth:`close`; leaving a ``with`` block through an
    exception deletes the partial file instead. Every appended chunk is validated like :func:`validate`."""

    def __init__(self, path, n_voxels_or_geometry, compression="gzip", dtype=np.float32):
        h5py = _h5py()
        self.path = Path(path)
        source = str(self.path)
        if isinstance(n_voxels_or_geometry, (int, np.integer)) and not isinstance(n_voxels_or_geometry, bool):
            if n_voxels_or_geometry < 1:
                raise ShowerFileError(f"{source}: the number of voxels must be >= 1, got {n_voxels_or_geometry}")
            self.geometry, self.n_voxels = None, int(n_voxels_or_geometry)
        else:
            self.geometry = get(n_voxels_or_geometry)
            self.n_voxels = self.geometry.n_voxels
        self.dtype = _check_dtype(dtype, source)
        self.compression = _check_compression(compression, source)
        self.n_written = 0
        self._tmp = _part_path(self.path)
        self._file = _open_for_writing(h5py, self._tmp, self.path)
        try:
            self._e_ds, self._s_ds = _create(self._file, self.n_voxels, None, compression, self.dtype)
        except BaseException:
            self.discard()
            raise

    @property
    def closed(self) -> bool:
        return self._file is None

    def append(self, incident_energies, showers) -> None:
        """Validate one chunk (rows reported counting from the start of the file) and append it."""
        if self._file is None:
            raise ShowerFileError(f"{self.path}: the writer is closed")
        source = f"{self.path} (chunk starting at row {self.n_written})"
        e, s = _validate(incident_energies, showers, self.geometry, source, self.n_voxels, row0=self.n_written)
        _fits(s, self.dtype, source, self.n_written)
        n = len(e)
        if n == 0:
            return
        at = self.n_written
        self._e_ds.resize(at + n, axis=0)
        self._s_ds.resize(at + n, axis=0)
        _write_rows(self._e_ds, self._s_ds, at, e, s, self.dtype)
        self.n_written = at + n

    def close(self) -> None:
        """Finish the file and move it to ``path`` (idempotent)."""
        if self._file is None:
            return
        f, self._file = self._file, None
        try:
            f.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        logger.info("wrote %d showers of %d voxels to %s", self.n_written, self.n_voxels, self.path)

    def discard(self) -> None:
        """Close and delete the partial file; ``path`` is left untouched."""
        f, self._file = self._file, None
        try:
            if f is not None:
                f.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShowerWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            logger.warning("discarding the partial shower file %s after %s", self._tmp, exc_type.__name__)
            self.discard()

    def __repr__(self) -> str:
        state = "closed" if self._file is None else "open"
        return f"ShowerWriter({str(self.path)!r}, {self.n_voxels} voxels, {self.n_written} written, {state})"


# -- reading ------------------------------------------------------------------------------------------


@contextmanager
def _open(path, geometry: Geometry | None) -> Iterator[tuple[Any, Any, Path]]:
    """Open a shower file and check its keys, dtypes and shapes; yields ``(e_dataset, s_dataset, path)``."""
    h5py = _h5py()
    p = Path(path)
    if not p.exists():
        raise ShowerFileError(f"{p}: file not found")
    if p.is_dir():
        raise ShowerFileError(f"{p}: is a directory, not a shower file")
    if not h5py.is_hdf5(p):
        raise ShowerFileError(f"{p}: not an HDF5 file")
    try:
        f = h5py.File(p, "r", rdcc_nbytes=_READ_CACHE_BYTES, rdcc_nslots=10007)
    except OSError as exc:
        raise ShowerFileError(f"{p}: cannot open the HDF5 file ({exc})") from None
    with f:
        keys = sorted(f.keys())
        dsets = []
        for key in (E_KEY, S_KEY):
            if key not in f:
                raise ShowerFileError(f"{p}: missing dataset '{key}' (the file has {keys or 'no keys'})")
            obj = f[key]
            if not isinstance(obj, h5py.Dataset):
                raise ShowerFileError(f"{p}: '{key}' is a {type(obj).__name__}, not a dataset")
            _check_kind(obj.dtype, key, str(p))
            dsets.append(obj)
        _check_structure(dsets[0].shape, dsets[1].shape, geometry, str(p))
        yield dsets[0], dsets[1], p


def _range(start: int, stop: int | None, n: int, source: str) -> tuple[int, int]:
    stop = n if stop is None else stop
    for name, v in (("start", start), ("stop", stop)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ShowerFileError(f"{source}: {name} must be an integer, got {v!r}")
    if not 0 <= start <= stop <= n:
        raise ShowerFileError(f"{source}: rows [{start}, {stop}) are not within the file's {n} showers")
    return int(start), int(stop)


def _read_rows(e_ds, s_ds, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(e_ds[a:b], dtype=np.float64).reshape(-1, 1)
    return e, s_ds[a:b]


def info(path) -> dict:
    """``{"path", "n_showers", "n_voxels", "dtype", "compression", "chunks", "keys"}`` of a shower file (no data
    read; the layout is checked)."""
    with _open(path, None) as (e_ds, s_ds, p):
        return {"path": str(p), "n_showers": int(s_ds.shape[0]), "n_voxels": int(s_ds.shape[1]),
                "dtype": str(s_ds.dtype), "compression": s_ds.compression, "chunks": s_ds.chunks,
                "keys": sorted(s_ds.file.keys())}


def read(path, geometry=None, start: int = 0, stop: int | None = None,
         check: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[start, stop)`` of a shower file: incident energies ``(n, 1)`` float64 and showers ``(n, V)`` in the
    file's dtype. The layout (keys, ranks, lengths, voxel count of ``geometry``) is always checked; ``check`` also
    checks the values read (finite, voxels >= 0, incident energies > 0)."""
    with _open(path, _resolve(geometry)) as (e_ds, s_ds, p):
        a, b = _range(start, stop, s_ds.shape[0], str(p))
        e, s = _read_rows(e_ds, s_ds, a, b)
    if check:
        _check_values(e, s, str(p), row0=a, block=(a, b) != (0, s_ds.shape[0]))
    logger.debug("read rows [%d, %d) of %s", a, b, p)
    return e, s


def iter_chunks(path, geometry=None, chunk_size: int = 10000, check: bool = True, start: int = 0,
                stop: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(incident_energies (n, 1), showers (n, V))`` for rows ``[start, stop)`` in file order, at most
    ``chunk_size`` rows at a time, each read from disk when needed. The layout and range are checked at the call,
    the values (if ``check``) chunk by chunk."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ShowerFileError(f"{path}: chunk_size must be a positive integer, got {chunk_size!r}")
    geo = _resolve(geometry)
    with _open(path, geo) as (_, s_ds, p):
        a, b = _range(start, stop, s_ds.shape[0], str(p))
    return _chunks(p, geo, int(chunk_size), check, a, b)


def _chunks(p: Path, geo: Geometry | None, chunk_size: int, check: bool, a: int,
            b: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    with _open(p, geo) as (e_ds, s_ds, _):
        if s_ds.shape[0] < b:
            raise ShowerFileError(f"{p}: the file shrank to {s_ds.shape[0]} showers while being read")
        for i in range(a, b, chunk_size):
            j = min(b, i + chunk_size)
            e, s = _read_rows(e_ds, s_ds, i, j)
            if check:
                _check_values(e, s, str(p), row0=i, block=(i, j) != (0, s_ds.shape[0]))
            yield e, s
