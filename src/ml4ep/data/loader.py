"""``BatchLoader``: shuffled batches from ROOT, HDF5 and Parquet files, bounded in memory.

The pipeline, top to bottom:
1. sources: every file of every input :class:`Dataset` is opened for its entry count and schema
   (``sources/``), and the selected columns are checked in every file;
2. plan: files are cut into chunks of about ``chunk_size`` entries at cheap boundaries, the tail of every
   chunk goes to validation (``plan.split_validation``), and each epoch orders the chunks (``plan.epoch_plan``);
3. pipeline: parts are read and filtered in one background thread; another fills windows of rows taken from
   every lane (distant places of the files) and permutes them; batches are cut from them (``pipeline``);
4. adapters: NumPy, PyTorch, TensorFlow and JAX views of the same batches (``adapters``).
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .expr import Expression, FilterError
from .pipeline import Output, PartReader, Position, Schema, _Prefetch, batches, window_stream
from .plan import Part, cut_file, epoch_plan, split_validation
from .sources import Column, DataError, reader_for

log = logging.getLogger(__name__)

__all__ = ["BatchLoader", "Dataset", "Split", "DataError", "FilterError"]

# the default mixing buffer's limit when the files' reading units (baskets, row groups) are large
DEFAULT_BUFFER_BYTES = 192 * 2**20
# places of the files a window (hence a batch) draws from: one cached part each
MAX_LANES = 32
# rows of a window: permuted in one go, small enough to stay in cache (random gathers over a few MB
# run 3x faster than over 100 MB); the mixing comes from the lanes, each window takes rows from all
WINDOW_ROWS = 65536
# and its bytes: wide rows (a calorimeter shower of thousands of voxels) get fewer rows, so that an epoch's first
# batch does not wait for gigabytes to be read and permuted
WINDOW_BYTES = 64 * 2**20


@dataclass
class Dataset:
    """One input dataset: files (paths or glob patterns), optionally an entry range over their concatenation
    and constant columns (e.g. ``constants={"label": 1}`` for signal files)."""

    files: str | os.PathLike | Sequence[str | os.PathLike]
    tree: str | None = None
    format: str | None = None
    entries: tuple[int, int] | None = None
    constants: dict = field(default_factory=dict)
    name: str | None = None


def _as_datasets(sources, tree, fmt, entries) -> list[Dataset]:
    if isinstance(sources, Dataset):
        sources = [sources]
    elif isinstance(sources, (str, os.PathLike)):
        sources = [Dataset(sources)]
    elif isinstance(sources, Sequence) and all(isinstance(s, (str, os.PathLike)) for s in sources):
        sources = [Dataset(list(sources))]
    elif not (isinstance(sources, Sequence) and sources and all(isinstance(s, (Dataset, str, os.PathLike)) for s in sources)):
        raise DataError(f"sources must be paths, glob patterns or ml4ep.data.Dataset objects, got {sources!r}")
    out = []
    for s in sources:
        d = s if isinstance(s, Dataset) else Dataset(s)
        d = Dataset(d.files, d.tree if d.tree is not None else tree, d.format or fmt,
                    d.entries if d.entries is not None else entries, dict(d.constants), d.name)
        out.append(d)
    if not out:
        raise DataError("no input files given")
    return out


def _expand(files) -> list[str]:
    items = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    paths: list[str] = []
    for item in items:
        item = os.fspath(item)
        if glob.has_magic(item):
            hits = sorted(glob.glob(item))
            if not hits:
                raise DataError(f"no file matches {item!r}")
            paths.extend(hits)
        else:
            if not os.path.exists(item):
                raise DataError(f"{item}: file not found")
            paths.append(item)
    return paths


def _names(x) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


class BatchLoader:
    """Shuffled mini-batches from ROOT (TTree, RNTuple), HDF5 and Parquet files, train and validation.

    ``loader.train`` and ``loader.validation`` are :class:`Split` objects; ``loader.train.numpy()`` runs one
    epoch and yields ``x`` (and ``y`` with a ``target``, and ``w`` with ``weights``); ``.torch()``,
    ``.tensorflow()`` and ``.jax()`` give the same batches in those frameworks.

    Memory bound (per process): ``buffer_size`` entries of the read columns (the lanes' cached parts) plus
    the part being read and ``prefetch + 2`` windows of at most ``WINDOW_ROWS`` rows
    and ``WINDOW_BYTES`` (or 8 batches, if more); see ``docs/data.md``.
    """

    def __init__(self, sources, *, tree: str | None = None, format: str | None = None,
                 columns: Sequence[str] | None = None, target: str | Sequence[str] | None = None,
                 weights: str | None = None, filter: str | None = None, batch_size: int = 1024,
                 shuffle: bool = True, seed: int | None = None, validation_split: float = 0.0,
                 drop_remainder: bool = False, max_vec_sizes: dict[str, int] | None = None,
                 vec_padding: float = 0.0, vec_mask: bool = False, dtype=None, target_dtype=None,
                 entries: tuple[int, int] | None = None, chunk_size: int = 32768, buffer_size: int | None = None,
                 prefetch: int = 1, background: bool = True, rank: int | None = None,
                 world_size: int | None = None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not 0.0 <= float(validation_split) < 1.0:
            raise DataError(f"validation_split must be in [0, 1), got {validation_split!r}")
        if chunk_size < 1:
            raise DataError("chunk_size must be positive")
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        self.validation_split = float(validation_split)
        if buffer_size is not None and buffer_size < 1:
            raise DataError("buffer_size must be positive")
        self.chunk_size = int(chunk_size)
        self.prefetch, self.background = int(prefetch), bool(background)
        self.max_vec_sizes = dict(max_vec_sizes or {})
        self.vec_padding, self.vec_mask = vec_padding, bool(vec_mask)
        self.datasets = _as_datasets(sources, tree, format, entries)
        self.targets = _names(target)
        self._target_is_list = target is not None and not isinstance(target, str)
        self.weights = weights
        self.filter = Expression(filter) if filter is not None else None
        self.rank, self.world_size = _distributed(rank, world_size)
        self.seed = _seed(seed, self.world_size)
        self._started = False
        self._x_dtype = None if dtype is None else np.dtype(dtype)
        self._y_dtype = None if target_dtype is None else np.dtype(target_dtype)

        # 1. sources
        files, readers, per_dataset = [], {}, []
        for d in self.datasets:
            idx = []
            for path in _expand(d.files):
                r = reader_for(path, d.format, d.tree)
                readers[len(files)] = r
                idx.append(len(files))
                files.append((path, r.format, r.tree_name))
            per_dataset.append(idx)
        self._files = files
        self.columns = self._resolve_columns(columns, readers, per_dataset)
        self.feature_names = self._feature_names()
        # 2. plan
        chunks = []
        for di, (d, idx) in enumerate(zip(self.datasets, per_dataset)):
            chunks.extend(self._chunks(di, d, [(i, readers[i]) for i in idx]))
        for i, r in list(readers.items()):
            if len(readers) > 32:
                r.close()
                del readers[i]
        self._readers = readers
        self._schema_array = self._schema(as_dict=False)
        self._schema_dict = self._schema(as_dict=True)
        # the mixing buffer: MAX_LANES chunks by default, more (up to DEFAULT_BUFFER_BYTES) when the files'
        # reading units are larger than a chunk; lanes: as many whole parts as the buffer holds
        largest = max((c.stop - c.start for c in chunks), default=self.chunk_size)
        row_bytes = max(1, sum(int(np.prod(o.shape, dtype=np.int64)) * o.dtype.itemsize
                               for o in self._schema_array.outputs))
        if buffer_size is None:
            budget = max(MAX_LANES * self.chunk_size, DEFAULT_BUFFER_BYTES // max(row_bytes, 1))
            buffer_size = max(MAX_LANES * self.chunk_size, min(MAX_LANES * largest, budget))
        self.buffer_size = int(max(buffer_size, batch_size))
        # as many lanes as the buffer holds even if they all hold the largest parts at the same time
        sizes = np.sort(np.array([c.stop - c.start for c in chunks], dtype=np.int64))[::-1]
        fits = int(np.searchsorted(np.cumsum(sizes), self.buffer_size, side="right"))
        self.lanes = int(np.clip(fits, 1, MAX_LANES))
        self.window_size = int(min(self.buffer_size, max(min(WINDOW_ROWS, WINDOW_BYTES // row_bytes), 8 * batch_size)))
        if self.shuffle and self.lanes < 4:
            log.info("reading units of up to %d entries and a buffer of %d rows: each window mixes %d places; "
                     "a larger buffer_size mixes more", largest, self.buffer_size, self.lanes)
        train, val = split_validation(chunks, self.validation_split)
        # entries are counted after the filter when ranks must get equal shares
        self._units_selected = self.filter is None or self.world_size > 1
        if self.filter is None:
            for p in train + val:
                p.count = p.stop - p.start
        elif self.world_size > 1:
            self._count(train + val)
        known = [p.count for p in train + val if p.count is not None]
        if (train or val) and len(known) == len(train + val) and sum(known) == 0:
            raise DataError(f"the selection is empty: no entry passes the filter {self.filter.text!r}"
                            if self.filter else "the selection is empty: the inputs have no entries")
        if not train and not val:
            raise DataError("the selection is empty: the inputs have no entries in the requested range")
        self.train = Split(self, "train", 0, train)
        self.validation = Split(self, "validation", 1, val)

    # -- schema ------------------------------------------------------------------------------------
    def _constant_names(self) -> set[str]:
        common = set(self.datasets[0].constants)
        for d in self.datasets[1:]:
            common &= set(d.constants)
        return common

    def _resolve_columns(self, columns, readers, per_dataset) -> dict[str, Column]:
        first = readers[per_dataset[0][0]]
        schema = first.columns
        consts = self._constant_names()
        special = set(self.targets) | ({self.weights} if self.weights else set())
        if columns is None:
            columns = [n for n, c in schema.items()
                       if n not in special and n not in consts
                       and (c.kind in ("scalar", "fixed") and c.numeric or n in self.max_vec_sizes)]
            if not columns:
                raise DataError(f"{first.path}: no numeric column to use as features; pass columns=[...]")
        columns = _names(columns)
        wanted = list(dict.fromkeys(columns + self.targets + _names(self.weights)))
        filter_cols = self.filter.columns if self.filter else []
        for name in list(self.max_vec_sizes):
            if name not in wanted:
                raise DataError(f"max_vec_sizes names {name!r}, which is not a selected column")
        resolved: dict[str, Column] = {}
        for idx in per_dataset:
            for i in idx:
                r = readers[i]
                cols = r.columns
                for n in list(dict.fromkeys(wanted + filter_cols)):
                    ds_consts = self.datasets[per_dataset.index(idx)].constants
                    if n in ds_consts and n not in cols:
                        resolved.setdefault(n, Column(n, np.asarray(ds_consts[n]).dtype, "scalar"))
                        continue
                    if n not in cols:
                        raise DataError(f"{r.path}: no column {n!r} in {r.tree_name!r} "
                                        f"(available: {', '.join(sorted(cols)) or 'none'})")
                    c = cols[n]
                    if c.kind == "unsupported" or not c.numeric:
                        raise DataError(f"{r.path}: column {n!r} cannot be batched: it is {c.why or c.dtype}")
                    if c.kind == "jagged" and n not in self.max_vec_sizes:
                        raise DataError(f"{r.path}: column {n!r} has a variable length per entry; give its size "
                                        f"with max_vec_sizes={{{n!r}: N}} (padded with vec_padding, truncated)")
                    if n in filter_cols and c.kind != "scalar":
                        raise FilterError(f"{r.path}: filter {self.filter.text!r} uses {n!r}, which is not a "
                                          "scalar column (one number per entry)")
                    if n in resolved and (resolved[n].kind, resolved[n].shape) != (c.kind, c.shape):
                        raise DataError(f"{r.path}: column {n!r} is {c.kind} {c.shape} here but "
                                        f"{resolved[n].kind} {resolved[n].shape} in {readers[per_dataset[0][0]].path}")
                    if n in resolved and resolved[n].dtype != c.dtype:
                        c = Column(n, np.result_type(resolved[n].dtype, c.dtype), c.kind, c.shape)
                    resolved[n] = c
                if hasattr(r, "check_lengths"):
                    r.check_lengths([n for n in wanted + filter_cols if n in cols])
        for n in self.max_vec_sizes:
            if resolved[n].kind != "jagged":
                raise DataError(f"max_vec_sizes names {n!r}, which has a fixed size per entry")
            if int(self.max_vec_sizes[n]) < 1:
                raise DataError(f"max_vec_sizes[{n!r}] must be a positive integer")
        needed = list(dict.fromkeys(wanted + filter_cols))
        self._read = [[n for n in needed if n not in d.constants] for d in self.datasets]
        self._all_columns = resolved
        return {n: resolved[n] for n in columns}

    def _width(self, n: str) -> tuple[int, tuple[int, ...]]:
        c = self._all_columns[n]
        if c.kind == "jagged":
            return int(self.max_vec_sizes[n]), (int(self.max_vec_sizes[n]),)
        return int(np.prod(c.shape, dtype=np.int64)), c.shape

    def _feature_names(self) -> list[str]:
        names = []
        for n, c in self.columns.items():
            if c.kind == "scalar":
                names.append(n)
            else:
                k = self.max_vec_sizes[n] if c.kind == "jagged" else int(np.prod(c.shape))
                names.extend(f"{n}[{i}]" for i in range(k))
        if self.vec_mask:
            for n, c in self.columns.items():
                if c.kind == "jagged":
                    names.extend(f"{n}.mask[{i}]" for i in range(self.max_vec_sizes[n]))
        return names

    def _schema(self, as_dict: bool) -> Schema:
        outputs: list[Output] = []
        feats = list(self.columns)
        if as_dict:
            for n in dict.fromkeys(feats + self.targets + _names(self.weights)):
                width, shape = self._width(n)
                outputs.append(Output(n, self._all_columns[n].dtype, [(n, 0, width, shape)], shape))
            if self.vec_mask:
                for n in feats:
                    if self._all_columns[n].kind == "jagged":
                        width, shape = self._width(n)
                        outputs.append(Output(n + ".mask", np.dtype(bool), [(n + ".mask", 0, width, shape)], shape))
        else:
            outputs.append(self._matrix("x", feats, self._x_dtype, masks=self.vec_mask))
            if self.targets:
                y = self._matrix("y", self.targets, self._y_dtype, masks=False)
                if not self._target_is_list:
                    y.shape = self._width(self.targets[0])[1]
                outputs.append(y)
            if self.weights:
                width, shape = self._width(self.weights)
                c = self._all_columns[self.weights]
                outputs.append(Output("w", c.dtype, [(self.weights, 0, width, shape)], shape))
        return Schema(files=self._files, read=self._read,
                      constants=[dict(d.constants) for d in self.datasets], outputs=outputs,
                      max_sizes={k: int(v) for k, v in self.max_vec_sizes.items()},
                      padding=self.vec_padding, filter=self.filter)

    def _matrix(self, name: str, cols: list[str], dtype, masks: bool) -> Output:
        members, at = [], 0
        for n in cols:
            width, shape = self._width(n)
            members.append((n, at, width, shape))
            at += width
        if masks:
            for n in cols:
                if self._all_columns[n].kind == "jagged":
                    width, shape = self._width(n)
                    members.append((n + ".mask", at, width, shape))
                    at += width
        if dtype is None:
            dts = [self._all_columns[n].dtype for n in cols]
            dtype = np.result_type(*dts) if dts else np.dtype(np.float32)
        return Output(name, np.dtype(dtype), members, (at,))

    def _chunks(self, di: int, d: Dataset, readers) -> list[Part]:
        total = sum(r.num_entries for _, r in readers)
        lo, hi = (0, total) if d.entries is None else d.entries
        if not (0 <= lo <= hi):
            raise DataError(f"entries={d.entries!r} is not a valid range (start <= stop, both >= 0)")
        hi = min(hi, total)
        parts, base = [], 0
        for i, r in readers:
            a, b = max(lo - base, 0), min(hi - base, r.num_entries)
            if b > a:
                names = [n for n in self._read[di] if n in r.columns]
                bounds, whole = r.boundaries(names, self.chunk_size)
                for s, e in cut_file(a, b, self.chunk_size, bounds, whole):
                    parts.append(Part(di, i, s, e))
            base += r.num_entries
        return parts

    def _count(self, parts: list[Part]) -> None:
        """Counts the entries that pass the filter in every part (reads the filter's columns only)."""
        reader = PartReader(self._schema_array, self._readers)
        for p in parts:
            consts = self.datasets[p.dataset].constants
            cols = [c for c in self.filter.columns if c not in consts]
            arrays = reader.reader(p.file).read(cols, p.start, p.stop, {}, 0)
            env = dict(arrays)
            env.update(self.datasets[p.dataset].constants)
            p.count = int(np.count_nonzero(self.filter.evaluate(env, p.stop - p.start)))


def _distributed(rank, world_size) -> tuple[int, int]:
    if rank is None and world_size is None:
        try:
            import sys

            dist = sys.modules.get("torch.distributed")
            if dist is not None and dist.is_available() and dist.is_initialized():
                return int(dist.get_rank()), int(dist.get_world_size())
        except Exception:  # pragma: no cover
            pass
        return 0, 1
    if rank is None or world_size is None:
        raise DataError("give both rank and world_size, or neither")
    if not 0 <= rank < world_size:
        raise DataError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    return int(rank), int(world_size)


def _seed(seed, world_size) -> int:
    if seed is not None:
        return int(seed)
    if world_size > 1:
        import sys

        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            import torch

            t = torch.tensor([int(np.random.SeedSequence().entropy % (2**62))], dtype=torch.int64)
            dist.broadcast(t, src=0)
            return int(t.item())
        raise DataError("with several ranks, pass seed= so that every rank draws the same order")
    return int(np.random.SeedSequence().entropy % (2**62))


class Split:
    """The train or validation share of a :class:`BatchLoader`. Each call of ``numpy()``, ``torch()``,
    ``jax()`` (or each pass over ``tensorflow()``) runs the next epoch; ``set_epoch`` chooses one."""

    def __init__(self, loader: BatchLoader, name: str, split_id: int, parts: list[Part]):
        self.loader, self.name, self._id, self.parts = loader, name, split_id, parts
        self.epoch = 0
        self._resume_rows = 0
        self._state = {"epoch": 0, "rows": 0}

    # -- sizes ---------------------------------------------------------------------------------------
    @property
    def num_entries(self) -> int:
        """Entries this rank receives per epoch (after the filter; counting it once if needed)."""
        if any(p.count is None for p in self.parts):
            self.loader._count(self.parts)
        n = [sum(p.count for p in self.parts if p.dataset == d) for d in range(len(self.loader.datasets))]
        w = self.loader.world_size
        return sum(x // w for x in n) if w > 1 else sum(n)

    def __len__(self) -> int:
        """Batches per epoch on this rank (in one process; worker processes each end with their own remainder)."""
        n = self.num_entries
        b = self.loader.batch_size
        return n // b if self.loader.drop_remainder else -(-n // b)

    # -- epochs and state ------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._resume_rows = 0

    def state_dict(self) -> dict:
        """Where the stream stands: resume with ``load_state_dict`` (in-process iteration)."""
        ld = self.loader
        return {"split": self.name, "epoch": self._state["epoch"], "rows": self._state["rows"],
                "seed": ld.seed, "rank": ld.rank, "world_size": ld.world_size, "batch_size": ld.batch_size}

    def load_state_dict(self, state: dict) -> None:
        ld = self.loader
        for k, v in (("seed", ld.seed), ("world_size", ld.world_size), ("rank", ld.rank), ("split", self.name)):
            if state.get(k) != v:
                raise DataError(f"state was saved with {k}={state.get(k)!r}, this loader has {k}={v!r}")
        self.epoch = int(state["epoch"])
        self._resume_rows = int(state["rows"])

    def _next_epoch(self) -> tuple[int, int]:
        epoch, skip = self.epoch, self._resume_rows
        self.epoch, self._resume_rows = epoch + 1, 0
        return epoch, skip

    # -- the stream ---------------------------------------------------------------------------------------
    def _schema(self, as_dict: bool) -> Schema:
        return self.loader._schema_dict if as_dict else self.loader._schema_array

    def _arrays(self, epoch: int, skip: int, as_dict: bool, worker: int = 0, n_workers: int = 1,
                track: bool = True) -> Iterator[list[np.ndarray]]:
        ld = self.loader
        schema = self._schema(as_dict)
        if not self.parts:
            return
        units_selected = ld._units_selected
        plan = epoch_plan(self.parts, len(ld.datasets), seed=ld.seed, epoch=epoch, split=self._id,
                          shuffle=ld.shuffle, rank=ld.rank, world=ld.world_size, worker=worker,
                          n_workers=n_workers, window_size=ld.window_size, lanes=ld.lanes,
                          units=None if units_selected else [p.stop - p.start for p in self.parts])
        # the readers opened at construction serve one run at a time; a concurrent run (validation inside a
        # training epoch) or a worker process opens its own
        own = ld._readers if n_workers == 1 else None
        ld._readers = {} if own is not None else ld._readers
        reader = PartReader(schema, own)
        windows = window_stream(schema, self.parts, plan, seed=ld.seed, epoch=epoch, split=self._id,
                                rank=ld.rank, shuffle=ld.shuffle, raw_units=not units_selected,
                                skip_rows=skip, reader=reader, fast_start=not ld._started)
        ld._started = True  # only the loader's first run reads its first window with two threads
        if ld.background:
            windows = _Prefetch(windows, ld.prefetch)
        position = Position(skip)
        if track:
            self._state = {"epoch": epoch, "rows": skip}
        produced = False
        try:
            for arrays in batches(windows, ld.batch_size, ld.drop_remainder, position):
                produced = True
                if track:
                    self._state = {"epoch": epoch, "rows": position.rows}
                yield arrays
        finally:
            if isinstance(windows, _Prefetch):
                windows.close()
            if own is not None and not ld._readers:
                ld._readers = dict(reader._readers)  # handed back for the next run
            else:
                reader.close()
        if track:
            self._state = {"epoch": epoch + 1, "rows": 0}
        if not produced and skip == 0 and ld.filter is not None and plan.total is None and n_workers == 1:
            raise DataError(f"the selection is empty: no entry of the {self.name} split passes the filter "
                            f"{ld.filter.text!r}")

    def _pack(self, arrays: list[np.ndarray], as_dict: bool, convert=lambda a: a):
        outs = self._schema(as_dict).outputs
        if as_dict:
            return {o.name: convert(a) for o, a in zip(outs, arrays)}
        if len(arrays) == 1:
            return convert(arrays[0])
        return tuple(convert(a) for a in arrays)

    # -- adapters -------------------------------------------------------------------------------------------
    def numpy(self, as_dict: bool = False) -> Iterator:
        """One epoch of NumPy batches: ``x``, ``(x, y)`` or ``(x, y, w)``; with ``as_dict`` a dict per batch of
        every selected column (exact dtypes) and ``<name>.mask`` for padded columns when ``vec_mask``."""
        epoch, skip = self._next_epoch()
        for arrays in self._arrays(epoch, skip, as_dict):
            yield self._pack(arrays, as_dict)

    def torch(self, num_workers: int = 0, pin_memory: bool = False, device=None, as_dict: bool = False):
        """One epoch of PyTorch tensors; ``num_workers`` > 0 reads in that many ``DataLoader`` processes."""
        from .adapters import torch_epoch

        return torch_epoch(self, num_workers=num_workers, pin_memory=pin_memory, device=device, as_dict=as_dict)

    def torch_dataset(self, as_dict: bool = False):
        """An ``IterableDataset`` for your own ``DataLoader(ds, batch_size=None, num_workers=...)``; call
        ``ds.set_epoch(e)`` before each epoch."""
        from .adapters import TorchDataset

        return TorchDataset(self, as_dict=as_dict)

    def tensorflow(self, as_dict: bool = False):
        """A ``tf.data.Dataset``; each pass over it (e.g. each Keras epoch) is the next epoch."""
        from .adapters import tensorflow_dataset

        return tensorflow_dataset(self, as_dict=as_dict)

    def jax(self, as_dict: bool = False) -> Iterator:
        """One epoch of JAX arrays (64-bit columns need ``jax_enable_x64`` or a cast via ``dtype=``)."""
        from .adapters import jax_epoch

        return jax_epoch(self, as_dict=as_dict)
