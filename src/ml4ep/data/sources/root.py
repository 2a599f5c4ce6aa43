"""ROOT files through uproot: TTrees and RNTuples, every compression uproot reads (ZLIB, LZ4, ZSTD, LZMA).

Flat numeric branches and fixed-size arrays come back as NumPy arrays of their own dtype; variable-length
branches (``std::vector<float>``, ``float x[n]``, RNTuple collections of numbers) are padded or truncated.
When the ``isal`` package is installed, ZLIB baskets are inflated with ISA-L (about 1.8x faster than the
standard library's zlib here); the choice is made once at import.
"""

from __future__ import annotations

import logging

import numpy as np

from ..._optional import require
from . import Column, DataError, pad_jagged

log = logging.getLogger(__name__)

_uproot = None


def _lib():
    global _uproot
    if _uproot is None:
        _uproot = require("uproot", "data", "reading ROOT files")  # awkward: imported for jagged columns only
        try:
            import isal.isal_zlib  # noqa: F401

            # uproot documents ZLIB.library = "zlib" | "isal" | "deflate"; its reading path uses this instance
            _uproot.compression._decompress_ZLIB.library = "isal"
        except (ImportError, AttributeError):  # pragma: no cover - isal is an optional speed-up
            pass
    return _uproot


_TREE_CLASSES = ("TTree", "ROOT::RNTuple", "ROOT::Experimental::RNTuple")


class RootReader:
    format = "root"

    def __init__(self, path: str, tree: str | None):
        self.path = path
        self.tree_name = tree
        self._file = None
        self._tree = None
        self._columns: dict[str, Column] | None = None
        tree_obj = self._open()
        try:
            self.num_entries = int(tree_obj.num_entries)
        except Exception as exc:  # e.g. a truncated file: its metadata lies beyond the end
            raise DataError(f"{self.path}: not a readable ROOT file, truncated or corrupt ({exc})") from None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        state["_tree"] = None
        return state

    def _open(self):
        if self._tree is not None:
            return self._tree
        uproot = _lib()
        try:
            # no array cache: uproot's default keeps 100 MB of arrays, which would break the memory bound
            f = uproot.open(self.path, array_cache=None)
        except FileNotFoundError:
            raise DataError(f"{self.path}: file not found") from None
        except Exception as exc:
            raise DataError(f"{self.path}: not a readable ROOT file ({exc})") from None
        trees = {k.split(";")[0]: c for k, c in f.classnames().items() if c in _TREE_CLASSES}
        name = self.tree_name
        if name is None:
            if len(trees) != 1:
                f.close()
                raise DataError(
                    f"{self.path}: pass tree=...; the file holds {len(trees)} trees/RNTuples: {sorted(trees)}"
                )
            name = next(iter(trees))
        try:
            obj = f[name]
        except Exception as exc:
            f.close()
            if name in trees:
                raise DataError(f"{self.path}: cannot read {name!r}: the file is truncated or corrupt ({exc})") from None
            raise DataError(
                f"{self.path}: no tree or RNTuple named {name!r} (the file has: {sorted(trees) or 'none'})"
            ) from None
        if getattr(obj, "classname", None) not in _TREE_CLASSES:
            f.close()
            raise DataError(f"{self.path}: {name!r} is a {obj.classname}, not a TTree or RNTuple")
        self.tree_name = name
        self._file, self._tree = f, obj
        self._rntuple = obj.classname != "TTree"
        return obj

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._tree = None

    # -- schema -------------------------------------------------------------------------------------
    @property
    def columns(self) -> dict[str, Column]:
        if self._columns is None:
            t = self._open()
            try:
                self._columns = self._rntuple_columns(t) if self._rntuple else self._ttree_columns(t)
            except (OSError, ValueError) as exc:  # what uproot raises for a truncated or corrupt file
                raise DataError(f"{self.path}: cannot read the columns of {self.tree_name!r}: the file is "
                                f"truncated or corrupt ({exc})") from None
        return self._columns

    def check_lengths(self, names) -> None:
        """Every selected branch of a TTree has the tree's number of entries (a corrupt or hand-made file may
        differ; uproot would then give arrays of other lengths)."""
        if self._rntuple:
            return
        t = self._open()
        lens = {n: int(t[n].num_entries) for n in names}
        if any(v != self.num_entries for v in lens.values()):
            raise DataError(f"{self.path}: the branches of {self.tree_name!r} have different numbers of entries: "
                            f"{lens} (the tree has {self.num_entries})")

    def _ttree_columns(self, t) -> dict[str, Column]:
        uproot = _lib()
        out = {}
        for name, branch in t.iteritems(recursive=True):
            if len(branch.branches):
                continue
            try:
                interp = branch.interpretation
            except Exception as exc:  # uproot cannot interpret it at all
                out[name] = Column(name, None, "unsupported", why=f"uninterpretable branch ({exc})")
                continue
            if isinstance(interp, uproot.AsDtype):
                dt = np.dtype(interp.to_dtype)
                if dt.subdtype is not None:
                    base, shape = dt.subdtype
                    out[name] = Column(name, np.dtype(base).newbyteorder("="), "fixed", tuple(shape))
                elif dt.fields is None:
                    out[name] = Column(name, dt.newbyteorder("="), "scalar")
                else:
                    out[name] = Column(name, None, "unsupported", why=f"a structured branch ({branch.typename})")
            elif isinstance(interp, uproot.AsJagged) and isinstance(interp.content, uproot.AsDtype):
                dt = np.dtype(interp.content.to_dtype)
                if dt.subdtype is not None or dt.fields is not None:
                    out[name] = Column(name, None, "unsupported", why=f"nested lists ({branch.typename})")
                else:
                    out[name] = Column(name, dt.newbyteorder("="), "jagged")
            else:
                out[name] = Column(name, None, "unsupported", why=f"type {branch.typename}")
        return out

    def _rntuple_columns(self, t) -> dict[str, Column]:
        ak = require("awkward", "data", "reading RNTuples")

        form = t.to_akform()
        form = form[0] if isinstance(form, tuple) else form
        out = {}
        for name, sub in zip(form.fields, form.contents):
            if isinstance(sub, ak.forms.NumpyForm):
                dt = np.dtype(ak.types.numpytype.primitive_to_dtype(sub.primitive))
                kind = "fixed" if sub.inner_shape else "scalar"
                out[name] = Column(name, dt, kind, tuple(sub.inner_shape))
            elif isinstance(sub, ak.forms.RegularForm) and isinstance(sub.content, ak.forms.NumpyForm) \
                    and not sub.content.inner_shape:
                dt = np.dtype(ak.types.numpytype.primitive_to_dtype(sub.content.primitive))
                out[name] = Column(name, dt, "fixed", (sub.size,))
            elif isinstance(sub, (ak.forms.ListOffsetForm, ak.forms.ListForm)) \
                    and isinstance(sub.content, ak.forms.NumpyForm) and not sub.content.inner_shape \
                    and sub.parameters.get("__array__") not in ("string", "bytestring"):
                dt = np.dtype(ak.types.numpytype.primitive_to_dtype(sub.content.primitive))
                out[name] = Column(name, dt, "jagged")
            else:
                out[name] = Column(name, None, "unsupported", why=f"type {sub.type}")
        return out

    # -- reading ------------------------------------------------------------------------------------
    def boundaries(self, names, chunk_size: int) -> tuple[np.ndarray | None, np.ndarray | bool]:
        """Entries where every selected branch starts a basket, and for each interval between two of them
        whether it must be read whole.

        uproot decompresses whole baskets, so an interval holding a basket longer than half a chunk (ROOT
        files whose baskets were optimised to span a whole cluster) is read in one piece; the others may be
        cut anywhere."""
        t = self._open()
        try:
            if self._rntuple:
                starts = [int(c.num_first_entry) for c in t.cluster_summaries]
                b = np.asarray(starts + [self.num_entries], dtype=np.int64)
                return b, np.diff(b) > chunk_size // 2
            common = np.asarray(t.common_entry_offsets(filter_name=list(names)), dtype=np.int64)
            whole = np.zeros(max(len(common) - 1, 0), dtype=bool)
            for n in names:
                offsets = np.asarray(t[n].entry_offsets, dtype=np.int64)
                long = np.flatnonzero(np.diff(offsets) > chunk_size // 2)
                if len(long):
                    # the common intervals that contain each long basket's start
                    where = np.searchsorted(common, offsets[long], side="right") - 1
                    whole[np.clip(where, 0, len(whole) - 1)] = True
            return common, whole
        except Exception:  # pragma: no cover - layout information is only a hint
            return None, False

    def read(self, names, start: int, stop: int, max_sizes: dict, padding) -> dict[str, np.ndarray]:
        t = self._open()
        cols = self.columns
        flat = [n for n in names if cols[n].kind != "jagged"]
        jag = [n for n in names if cols[n].kind == "jagged"]
        out: dict[str, np.ndarray] = {}
        try:
            if flat:
                arrays = t.arrays(flat, entry_start=start, entry_stop=stop, library="np")
                for n in flat:
                    a = np.asarray(arrays[n])
                    if a.dtype.byteorder not in "=|":
                        a = a.astype(a.dtype.newbyteorder("="))
                    out[n] = a
            if jag:
                ak = require("awkward", "data", "reading variable-length branches")
                arrays = t.arrays(jag, entry_start=start, entry_stop=stop, library="ak")
                for n in jag:
                    layout = ak.to_packed(arrays[n]).layout
                    offsets = np.asarray(layout.offsets)
                    content = np.asarray(layout.content.data)
                    out[n], out[n + ".counts"] = pad_jagged(offsets, content, max_sizes[n], padding)
        except Exception as exc:
            hint = " (the file is truncated or corrupt)" if isinstance(exc, OSError) else ""
            raise DataError(
                f"{self.path}: reading {self.tree_name!r} entries [{start}, {stop}) of {names} failed{hint}: {exc}"
            ) from exc
        bad = {n: len(a) for n, a in out.items() if len(a) != stop - start}
        if bad:
            raise DataError(f"{self.path}: reading {self.tree_name!r} entries [{start}, {stop}) gave columns of "
                            f"other lengths: {bad}")
        return out
