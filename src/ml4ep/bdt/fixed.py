"""``forest.compile(precision="ap_fixed<18,8>")``: conifer's fixed-point ``decision_function``, bit for bit, as
generated C++ (docs/fpga.md, "BDTs: conifer").

The forest is first written as conifer's model (:func:`ml4ep.bdt.conifer.convert`: the same trees, classes,
``init_predict`` and refusals as the JSON of :meth:`Forest.to_conifer`), then compiled with conifer's arithmetic, read
from its ``cpp`` backend (``conifer/backends/cpp/include/conifer.h``, one precision for input, threshold, weight and
score) and its HLS backends (``BDT_unrolled.h``, the same conversions and comparisons):

- each input ``x`` (double) is converted to the type ``T`` as ``ap_fixed``'s constructor from double does: the exact
  value quantised by ``T``'s quantisation mode, then brought into range by its overflow mode (NaN reads as an
  infinity of its sign: 0 under WRAP, the saturated value under SAT); thresholds, leaf values, ``init_predict`` and
  ``norm`` (doubles in the JSON) likewise;
- a node computes ``x . weight`` in ``T``: with one-hot weights ``(T) 1.0`` that is ``x[f] * (T) 1.0`` cast back to
  ``T`` (``x[f]`` itself when 1.0 is exact in ``T``), and goes left when that is ``<`` (or ``<=``) the threshold;
- per class, ``init_predict`` then each tree's leaf value is added in tree order, each sum converted back to ``T``
  (WRAP: modulo 2^W; SAT: clamped after every addition), and the result multiplied by ``norm`` (1: unchanged).

The HLS backends add the trees' values by a balanced tree of additions (``reduce``) after ``init_predict``; under WRAP
(the default) the result is the same, under the saturating modes a sum that saturates part-way may differ.

The C++ is the template ``cpp/forest_fixed.hpp`` with the tables filled in and ml4ep's own fixed-point header
(:func:`ml4ep._native.fixed.header`, namespace ``ml4ep_fx``) embedded: only the C++17 standard library. It is
compiled with the CPython bridge of :mod:`ml4ep.bdt.compiled` (``cpp/bridge.cpp``) and cached by content in the same
way (:mod:`ml4ep._native.build`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .._native import build, template
from .._native import fixed as fx
from .._native.names import identifier, text
from ..errors import InputError, UnsupportedCPUError
from . import codegen
from .compiled import load_extension
from .conifer import convert
from .forest import Forest, ModelError

__all__ = ["FixedForest", "header"]

log = logging.getLogger(__name__)

MAX_PADDED_DEPTH = 12  # deeper forests keep their own node order and walk with child indices
INT64_MAX = (1 << 63) - 1  # padding nodes: every value is below this threshold, so they go left
_NATIVE = (np.dtype(np.float32), np.dtype(np.float64))


def tables(model: dict, ft: fx.FixedType) -> dict:
    """The conifer model's trees as raw fixed-point tables: tree ``t`` of class ``c`` is tree ``k = t * n_classes + c``.
    Padded (depth <= MAX_PADDED_DEPTH): every tree is a complete tree of the forest's depth ``D``, leaves reached
    above ``D`` pushed down along always-left padding nodes; else each tree's own nodes with child indices."""
    n_classes, n_trees, depth = len(model["init_predict"]), model["n_trees"], int(model["max_depth"])
    padded = depth <= MAX_PADDED_DEPTH
    feats, thrs, pads, values, lefts, rights, offsets = [], [], [], [], [], [], []
    n_inner, n_leaf = (1 << depth) - 1, 1 << depth
    node_count = 0
    for t in range(n_trees):
        for c in range(n_classes):
            tree = model["trees"][t][c]
            feature = tree["feature"]
            if padded:
                f = np.zeros(n_inner, np.int32)
                th = np.zeros(n_inner)
                pad = np.ones(n_inner, bool)
                lv = np.zeros(n_leaf)
                stack = [(0, 0, 0)]  # (conifer node, padded index, level)
                while stack:
                    node, idx, level = stack.pop()
                    if feature[node] < 0:
                        while level < depth:  # down the always-left padding to the last level
                            idx, level = 2 * idx + 1, level + 1
                        lv[idx - n_inner] = tree["value"][node]
                        continue
                    f[idx], th[idx], pad[idx] = feature[node], tree["threshold"][node], False
                    stack.append((tree["children_left"][node], 2 * idx + 1, level + 1))
                    stack.append((tree["children_right"][node], 2 * idx + 2, level + 1))
                feats.append(f)
                thrs.append(th)
                pads.append(pad)
                values.append(lv)
            else:
                f = np.asarray(feature, np.int32)
                feats.append(np.where(f < 0, -1, f).astype(np.int32))
                thrs.append(np.where(f < 0, 0.0, np.asarray(tree["threshold"], np.float64)))
                pads.append(f < 0)
                values.append(np.asarray(tree["value"], np.float64))
                lefts.append(np.asarray(tree["children_left"], np.int32))
                rights.append(np.asarray(tree["children_right"], np.int32))
                offsets.append(node_count)
                node_count += len(f)
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    thr, pad, val = cat(thrs, np.float64), cat(pads, bool), cat(values, np.float64)
    thr_raw = ft.raw_of(thr)
    thr_raw[pad] = INT64_MAX if padded else 0
    inner = ~pad
    _warn_range(ft, "thresholds", thr[inner])
    _warn_range(ft, "leaf values", val)
    _warn_range(ft, "init_predict values", np.asarray(model["init_predict"], np.float64))
    return {"padded": padded, "depth": depth, "feature": cat(feats, np.int32), "threshold": thr_raw,
            "leaf": ft.raw_of(val), "left": cat(lefts, np.int32), "right": cat(rights, np.int32),
            "node_off": np.asarray(offsets, np.int64), "init": ft.raw_of(np.asarray(model["init_predict"], float)),
            "norm": int(ft.raw_of(np.array([float(model["norm"])]))[0])}


def _warn_range(ft: fx.FixedType, what: str, x: np.ndarray) -> None:
    out = int(np.count_nonzero((x < ft.min) | (x > ft.max)))
    if out:
        log.warning("%d of %d %s lie outside %s's range [%g, %g]: they %s, as in conifer", out, len(x), what, ft,
                    ft.min, ft.max, "wrap around" if ft.overflow == "WRAP" else f"overflow ({ft.overflow})")


def _int_array(ctype: str, name: str, values) -> str:
    v = [int(x) for x in np.asarray(values).reshape(-1)] or [0]  # one placeholder entry for an unused table
    return codegen._array(ctype, name, v, lambda i: "INT64_MAX" if i == INT64_MAX else str(i))


def header(model: dict, precision, name: str, source: str = "") -> str:
    """The self-contained C++ header (namespace ``name``) of a conifer model dictionary evaluated in ``precision``."""
    ft = fx.parse(precision)
    tb = tables(model, ft)
    one = int(ft.raw_of(np.array([1.0]))[0])
    weight_one = ft.frac >= 0 and one == 1 << ft.frac
    norm_one = weight_one and tb["norm"] == one
    if not (weight_one and norm_one) and not fx.product_ok(ft, ft):
        raise InputError(f"precision {precision!r}: 1.0 (the one-hot weight) or the norm is not exact in {ft}, so "
                         f"conifer multiplies by it, and the exact product of two {ft.width}-bit values does not fit "
                         "ml4ep's 64-bit fixed-point arithmetic (up to 31 bits then)")
    tables_cpp = "\n".join([
        _int_array("int32_t", "feature", tb["feature"]), _int_array("int64_t", "threshold", tb["threshold"]),
        _int_array("int64_t", "leaf", tb["leaf"]), _int_array("int64_t", "init", tb["init"]),
        # child indices and each tree's first node: the unpadded walk only
        _int_array("int32_t", "left", tb["left"]), _int_array("int32_t", "right", tb["right"]),
        _int_array("int64_t", "node_off", tb["node_off"])])
    return template.render(
        "ml4ep.bdt", "cpp/forest_fixed.hpp", NAME=name, SOURCE=text(source or "a forest"), PRECISION=text(str(ft)),
        TYPE=ft.cpp(), FIXED=fx.header(), N_FEATURES=model["n_features"], N_CLASSES=len(model["init_predict"]),
        N_TREES=model["n_trees"], DEPTH=tb["depth"], PADDED=codegen._bool(tb["padded"]),
        LESS_EQUAL=codegen._bool(model["splitting_convention"] == "<="), LESS=model["splitting_convention"],
        WEIGHT_ONE=codegen._bool(weight_one), WEIGHT=one, NORM_ONE=codegen._bool(norm_one), NORM=tb["norm"],
        TABLES=tables_cpp)


class FixedForest:
    """``forest.compile(precision=...)``: ``decision_function(X)`` is conifer's, bit for bit, for the JSON that
    ``forest.to_conifer`` writes (shape ``(n, n_scores)`` as conifer's cpp backend: one column for a single score)."""

    def __init__(self, forest: Forest, precision, name: str = "forest", threads: int = 1, portable: bool = False,
                 march: str | None = None):
        self.forest, self.threads = forest, int(threads)
        self.precision = fx.parse(precision)
        self.name = identifier(name or "forest", unique=False)  # the C++ namespace
        self.conifer = convert(forest, weights=False)  # the model to_conifer writes, less the one-hot weights
        self.source = header(self.conifer, self.precision, self.name, forest.source)
        self.target = build.target(march, portable)
        self.path, ext = load_extension(self.source, self.name, self.target, "ml4ep_bdtfx", "fx-", forest.source)
        self._n_features = forest.n_features
        self._refused: UnsupportedCPUError | None = ext if isinstance(ext, UnsupportedCPUError) else None
        if self._refused is not None:
            return
        self._predict = ext.predict
        self._outputs = int(ext.OUTPUTS_PER_ROW)

    def decision_function(self, X) -> np.ndarray:
        """conifer's ``decision_function``: ``(n, n_scores)`` float64 (exact values of the fixed-point type); a 1-D
        ``X`` is one row and gives ``(n_scores,)``, as conifer's cpp backend does."""
        if self._refused is not None:
            raise UnsupportedCPUError(str(self._refused))
        X = np.asarray(X)
        one = X.ndim == 1
        if one:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self._n_features:
            raise ModelError(f"the model ({self.forest.source}) takes {self._n_features} features, "
                             f"got an array of shape {X.shape}")
        if X.dtype not in _NATIVE or not X.flags.c_contiguous:
            X = np.ascontiguousarray(X, dtype=np.float64)
        y = np.empty((X.shape[0], self._outputs), dtype=np.float64)
        self._predict(X, y, X.shape[0], self.threads)
        return y[0] if one else y

    def save(self, outdir) -> Path:
        """``outdir/<name>.hpp`` (self-contained, C++17: ``name::predict(x, n, y)``) and ``outdir/example.cpp``."""
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{self.name}.hpp").write_text(self.source)
        (out / "example.cpp").write_text(codegen.example(self.name))
        return out

    def __repr__(self) -> str:
        return (f"FixedForest({self.name!r}, {self.precision}, {self.conifer['n_trees']} x "
                f"{len(self.conifer['init_predict'])} trees, {self.path})")

