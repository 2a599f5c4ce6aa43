"""The lowered graph as hls4ml layers: which ONNX nodes map to which layer, in channels-last layouts (docs/fpga.md).

:func:`from_graph` walks a lowered graph (:func:`ml4ep.infer.pipeline.lower`: constants folded, BatchNormalization
folded into the convolution before it, activations fused into Gemm/Conv) and gives the list of
:class:`~ml4ep.infer.hls.layer.Layer`, every fixed-point type resolved from the model's ``precision``/``accum`` and
the per-layer settings. Anything outside the subset hls4ml and the emulation share is refused, every node at once.

Layouts: ONNX tensors are channels-first (N, C, H, W); hls4ml's io_parallel layers are channels-last. An input of
rank 3 or 4 is transposed by a ``Transpose`` layer right after the input (so the hls4ml design and the emulation
take the ONNX layout); a channels-last map flattened for a Dense has the Dense's weight rows permuted instead;
a map that is a graph output is transposed back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..._native import fixed
from ..._native.names import identifier
from ...errors import InputError, UnsupportedOperatorError
from .. import dims as D
from ..graph import Graph, Node
from .layer import Layer

ACTIVATIONS = {"Relu": "relu", "LeakyRelu": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}
SUPPORTED = ("Gemm", "MatMul", "Conv", "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool",
             "GlobalMaxPool", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "Flatten", "Reshape", "Add", "Concat",
             "Identity", "Dropout")


def family(kind: str):
    """The module of a layer kind (the four functions of layer.py)."""
    from . import activation, conv, dense, merge, pooling, reshape

    if kind in ("Dense", "BatchNormalization"):
        return dense
    if kind in ("Conv1D", "Conv2D"):
        return conv
    if "Pooling" in kind:
        return pooling
    if kind in ("Activation", "Softmax"):
        return activation
    if kind in ("Add", "Concatenate"):
        return merge
    if kind in ("Input", "Transpose", "Reshape"):
        return reshape
    raise KeyError(kind)


@dataclass
class _Value:
    """A tensor of the graph as a layer output: the producing layer, its channels-last shape, and ``order``: for a
    flat tensor made from a channels-last map, the ONNX flat index held at each position (None: ONNX order)."""

    layer: str
    shape: tuple[int, ...]
    order: np.ndarray | None = None
    channels_last: bool = False  # a rank >= 2 map (without batch) held channels-last


def _static(shape, what: str) -> tuple[int, ...]:
    if not D.shape_static(shape):
        raise InputError(f"{what}: only the batch dimension may be dynamic for hls4ml (shape {D.fmt_shape(shape)})")
    return tuple(int(s) for s in shape)


def _cl(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Channels-last of a channels-first shape without batch: (C, H, W) -> (H, W, C)."""
    return shape if len(shape) < 2 else (*shape[1:], shape[0])


class _Builder:
    def __init__(self, g: Graph, precision: str, accum: str | None, layer_precision: dict | None):
        self.g = g
        self.precision = fixed.parse(precision, "precision")
        self.accum = fixed.parse(accum, "accum") if accum is not None else self.precision
        self.settings = {str(k): dict(v) for k, v in (layer_precision or {}).items()}
        for k, v in (layer_precision or {}).items():
            if not isinstance(v, dict):
                raise InputError(f"layer_precision[{k!r}]: a dict like {{'weight': 'ap_fixed<8,3>', 'result': ...}}, "
                                 f"not {v!r}")
        self.used: set[str] = set()
        self.layers: list[Layer] = []
        self.values: dict[str, _Value] = {}
        self.idents: set[str] = set()
        self.problems: list[tuple[str, str, str]] = []  # (node, op_type, reason)

    # -- helpers ----------------------------------------------------------------------------------------------
    def ident(self, name: str) -> str:
        base = identifier(name, unique=False).strip("_") or "layer"
        s, k = base, 1
        while s in self.idents:
            k += 1
            s = f"{base}_{k}"
        self.idents.add(s)
        return s

    def refuse(self, node: Node, why: str) -> None:
        self.problems.append((node.name, node.op_type, why))

    def add(self, kind: str, name: str, inputs: list[str], out_shape, attrs=None, weights=None,
            aliases=()) -> Layer:
        ins = [self.values[i] for i in inputs]
        layer = Layer(kind, name, self.ident(name), [v.layer for v in ins], [v.shape for v in ins],
                      tuple(out_shape), dict(attrs or {}), dict(weights or {}))
        producers = {lay.ident: lay for lay in self.layers}
        in_types = [producers[v.layer].result for v in ins]
        layer.attrs.setdefault("in_types", in_types)
        layer.attrs.setdefault("in_type", in_types[0] if in_types else self.precision)
        fam = family(kind)
        types = dict(fam.types(layer, self.precision, self.accum))
        for key in (name, *aliases):
            over = self.settings.get(key)
            if over is None:
                continue
            self.used.add(key)
            for k, v in over.items():
                if k not in types:
                    raise InputError(f"layer_precision[{key!r}]: {kind} layer {name!r} has no type {k!r} "
                                     f"(it has {', '.join(sorted(types))})")
                types[k] = fixed.parse(v, f"layer_precision[{key!r}][{k!r}]")
        layer.types = types
        self.layers.append(layer)
        return layer

    def set(self, tensor: str, layer: Layer, order=None, channels_last=False) -> None:
        self.values[tensor] = _Value(layer.ident, layer.out_shape, order, channels_last)

    # -- nodes ----------------------------------------------------------------------------------------------
    def run(self) -> list[Layer]:
        g = self.g
        for i in g.inputs:
            t = g.t(i)
            shape = _static(t.shape[1:], f"input {i!r}")
            lay = self.add("Input", i, [], shape)
            self.set(i, lay)
            if len(shape) >= 2:  # ONNX channels-first -> channels-last inside the design
                tr = self.add("Transpose", f"{i}/to_channels_last", [i], _cl(shape),
                              {"perm": [*range(1, len(shape)), 0]})
                self.set(i, tr, channels_last=True)
        for node in g.nodes:
            if node.op_type not in SUPPORTED or node.domain not in ("", "ai.onnx"):
                self.refuse(node, "no hls4ml layer")
                continue
            missing = [x for x in node.inputs if x and not g.is_const(x) and x not in self.values]
            if missing:  # fed by a refused node (reported): only what this node itself lacks is added
                bad = [op for op, _ in node.fused if op not in ACTIVATIONS]
                if bad:
                    self.refuse(node, f"fused activation {', '.join(bad)} has no hls4ml layer")
                continue
            try:
                getattr(self, f"_{node.op_type}")(node)
            except _Refused as r:
                self.refuse(node, str(r))
        if not self.problems:
            for o in g.outputs:
                v = self.values.get(o)
                if v is None:
                    raise InputError(f"output {o!r} is not computed by an hls4ml layer")
                if v.order is not None:
                    raise InputError(f"output {o!r} is a flattened channels-last map: add a Dense after it or "
                                     "output the map itself")
                if v.channels_last:
                    lay = self.add("Transpose", f"{o}/to_channels_first", [o], (v.shape[-1], *v.shape[:-1]),
                                   {"perm": [len(v.shape) - 1, *range(len(v.shape) - 1)]})
                    self.set(o, lay)
        if self.problems:
            raise UnsupportedOperatorError(self.problems, f"{self.g.source or 'model'} (hls4ml)")
        unknown = set(self.settings) - self.used
        if unknown:
            raise InputError(f"layer_precision names {sorted(unknown)}, which are not nodes of the model's hls4ml "
                             f"layers ({', '.join(lay.name for lay in self.layers)})")
        return self.layers

    def _in(self, node: Node, k: int = 0) -> _Value:
        return self.values[node.inputs[k]]

    def _const(self, node: Node, k: int) -> np.ndarray | None:
        name = node.input(k)
        if not name:
            return None
        if not self.g.is_const(name):
            raise _Refused(f"input {k} ({name}) must be a constant")
        return np.asarray(self.g.const(name), dtype=np.float64)

    def _activations(self, node: Node, layer: Layer, out_tensor: str, order=None, channels_last=False) -> None:
        """The activations fused into ``node`` as layers of their own, named after their ONNX nodes."""
        names = node.origin[len(node.origin) - len(node.fused):] if node.fused else []
        for (op, attrs), name in zip(node.fused, names):
            layer = self._activation_layer(op, attrs, name, layer.ident, layer.out_shape)
        self.values[out_tensor] = _Value(layer.ident, layer.out_shape, order, channels_last)

    def _activation_layer(self, op: str, attrs: dict, name: str, src: str, shape) -> Layer:
        act = ACTIVATIONS[op]
        a = {"activation": act}
        if op == "LeakyRelu":
            a["alpha"] = float(attrs.get("alpha", 0.01))
        self.values[f"\0{name}"] = _Value(src, shape)
        return self.add("Activation", name, [f"\0{name}"], shape, a)

    def _check_fused(self, node: Node) -> None:
        bad = [op for op, _ in node.fused if op not in ACTIVATIONS]
        if bad:
            raise _Refused(f"fused activation {', '.join(bad)} has no hls4ml layer")

    def _Gemm(self, node: Node) -> None:
        a = node.attrs
        if float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0 or int(a.get("transA", 0)):
            raise _Refused("alpha, beta other than 1 or transA")
        self._dense(node, bool(int(a.get("transB", 0))))

    def _MatMul(self, node: Node) -> None:
        self._dense(node, False)

    def _dense(self, node: Node, trans_b: bool) -> None:
        self._check_fused(node)
        x = self._in(node)
        w = self._const(node, 1)
        if len(x.shape) != 1 or w is None or w.ndim != 2:
            raise _Refused("a Dense layer takes a (batch, features) input and a 2-D constant weight")
        w = w.T if trans_b else w
        n_in, n_out = w.shape
        if n_in != x.shape[0]:
            raise _Refused(f"weight rows {n_in} != input features {x.shape[0]}")
        b = self._const(node, 2)
        bias = np.zeros(n_out) if b is None else np.broadcast_to(b.reshape(-1) if b.size > 1 else b, (n_out,))
        if x.order is not None:  # the input holds ONNX element order[p] at position p
            w = w[x.order]
        lay = self.add("Dense", node.name, [node.inputs[0]], (n_out,), {},
                       {"weight": w.astype(np.float32), "bias": np.asarray(bias, np.float32)},
                       aliases=node.origin[1:len(node.origin) - len(node.fused)])
        self._activations(node, lay, node.outputs[0])

    def _Conv(self, node: Node) -> None:
        self._check_fused(node)
        x = self._in(node)
        w = self._const(node, 1)
        a = node.attrs
        rank = len(x.shape) - 1
        if rank not in (1, 2) or not x.channels_last:
            raise _Refused("Conv1D and Conv2D over channels-first maps only")
        if int(a.get("group", 1)) != 1 or any(int(d) != 1 for d in a.get("dilations", [1] * rank)):
            raise _Refused("groups and dilations are not supported by hls4ml's Conv layers")
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise _Refused(f"auto_pad {a.get('auto_pad')} (the lowered graph should carry explicit pads)")
        k = [int(v) for v in w.shape[2:]]
        strides = [int(v) for v in a.get("strides", [1] * rank)]
        pads = [int(v) for v in a.get("pads", [0] * 2 * rank)]
        spatial = x.shape[:-1]
        out_sp = [(spatial[i] + pads[i] + pads[i + rank] - k[i]) // strides[i] + 1 for i in range(rank)]
        c_out = w.shape[0]
        b = self._const(node, 2)
        bias = np.zeros(c_out) if b is None else b.reshape(-1)
        wl = np.transpose(w, (*range(2, 2 + rank), 1, 0))  # (k..., c_in, c_out)
        lay = self.add(f"Conv{rank}D", node.name, [node.inputs[0]], (*out_sp, c_out),
                       {"kernel": k, "strides": strides, "pads": pads},
                       {"weight": wl.astype(np.float32), "bias": bias.astype(np.float32)},
                       aliases=node.origin[1:len(node.origin) - len(node.fused)])
        self._activations(node, lay, node.outputs[0], channels_last=True)

    def _BatchNormalization(self, node: Node) -> None:
        x = self._in(node)
        if x.order is not None:
            raise _Refused("BatchNormalization of a flattened map")
        gamma, beta, mean, var = (self._const(node, k) for k in range(1, 5))
        eps = float(node.attrs.get("epsilon", 1e-5))
        scale = gamma / np.sqrt(var + eps)
        bias = beta - mean * scale
        lay = self.add("BatchNormalization", node.name, [node.inputs[0]], x.shape, {},
                       {"scale": scale.astype(np.float32), "bias": bias.astype(np.float32)})
        self.set(node.outputs[0], lay, channels_last=x.channels_last)

    def _pool(self, node: Node, op: str, global_: bool) -> None:
        x = self._in(node)
        rank = len(x.shape) - 1
        if rank not in (1, 2) or not x.channels_last:
            raise _Refused("pooling over 1-D and 2-D channels-first maps only")
        spatial, c = x.shape[:-1], x.shape[-1]
        a = node.attrs
        if global_:
            lay = self.add(f"Global{op}Pooling{rank}D", node.name, [node.inputs[0]], (c,), {"op": op})
            # ONNX keeps the spatial axes as 1: (N, C, 1, 1), whose flat order is that of the C values
            self.set(node.outputs[0], lay)
            return
        if int(a.get("ceil_mode", 0)) or any(int(d) != 1 for d in a.get("dilations", [1] * rank)):
            raise _Refused("ceil_mode and dilations are not supported by hls4ml's pooling layers")
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise _Refused(f"auto_pad {a.get('auto_pad')}")
        k = [int(v) for v in a["kernel_shape"]]
        strides = [int(v) for v in a.get("strides", [1] * rank)]
        pads = [int(v) for v in a.get("pads", [0] * 2 * rank)]
        out_sp = [(spatial[i] + pads[i] + pads[i + rank] - k[i]) // strides[i] + 1 for i in range(rank)]
        lay = self.add(f"{op}Pooling{rank}D", node.name, [node.inputs[0]], (*out_sp, c),
                       {"op": op, "kernel": k, "strides": strides, "pads": pads,
                        "count_include_pad": int(a.get("count_include_pad", 0))})
        self.set(node.outputs[0], lay, channels_last=True)

    def _MaxPool(self, node: Node) -> None:
        self._pool(node, "Max", False)

    def _AveragePool(self, node: Node) -> None:
        self._pool(node, "Average", False)

    def _GlobalAveragePool(self, node: Node) -> None:
        self._pool(node, "Average", True)

    def _GlobalMaxPool(self, node: Node) -> None:
        self._pool(node, "Max", True)

    def _act(self, node: Node) -> None:
        x = self._in(node)
        lay = self._activation_layer(node.op_type, node.attrs, node.name, x.layer, x.shape)
        self.values[node.outputs[0]] = _Value(lay.ident, x.shape, x.order, x.channels_last)

    _Relu = _LeakyRelu = _Sigmoid = _Tanh = _act

    def _Softmax(self, node: Node) -> None:
        x = self._in(node)
        axis = int(node.attrs.get("axis", -1))
        if len(x.shape) != 1 or axis not in (-1, 1) or x.order is not None:
            raise _Refused("Softmax over the features of a (batch, features) tensor only")
        lay = self.add("Softmax", node.name, [node.inputs[0]], x.shape, {"axis": -1})
        self.set(node.outputs[0], lay)

    def _view(self, node: Node) -> None:
        """Flatten / Reshape to (batch, features): no layer; a channels-last map is flattened in its own order."""
        x = self._in(node)
        out = _static(self.g.t(node.outputs[0]).shape[1:], f"{node.op_type} {node.name!r}")
        if len(out) != 1:
            raise _Refused("only a reshape to (batch, features) is supported")
        if x.channels_last and len(x.shape) >= 2:
            cf = (x.shape[-1], *x.shape[:-1])  # the ONNX (C, H, W) shape
            order = np.transpose(np.arange(int(np.prod(cf))).reshape(cf), (*range(1, len(cf)), 0)).reshape(-1)
        else:
            order = x.order
        n = int(np.prod(x.shape))
        if len(x.shape) >= 2:  # hls4ml's Reshape (a no-op in io_parallel: the same flat array)
            lay = self.add("Reshape", node.name, [node.inputs[0]], (n,), {"target_shape": [n]})
            self.values[node.outputs[0]] = _Value(lay.ident, (n,), order, False)
        else:
            self.values[node.outputs[0]] = _Value(x.layer, (n,), order, False)

    _Flatten = _Reshape = _view

    def _Identity(self, node: Node) -> None:
        self.values[node.outputs[0]] = self._in(node)

    _Dropout = _Identity

    def _Add(self, node: Node) -> None:
        if any(self.g.is_const(i) for i in node.inputs):
            raise _Refused("an Add of a constant has no hls4ml layer (only Add of two layer outputs)")
        a, b = self._in(node, 0), self._in(node, 1)
        if a.shape != b.shape or a.channels_last != b.channels_last or not _same_order(a.order, b.order):
            raise _Refused("Add of tensors of different shapes (no broadcasting)")
        lay = self.add("Add", node.name, list(node.inputs[:2]), a.shape)
        self.values[node.outputs[0]] = _Value(lay.ident, a.shape, a.order, a.channels_last)

    def _Concat(self, node: Node) -> None:
        ins = [self._in(node, k) for k in range(len(node.inputs))]
        if len(ins) != 2 or any(self.g.is_const(i) for i in node.inputs):
            raise _Refused("Concatenate of exactly two layer outputs")
        a, b = ins
        rank = len(a.shape)
        axis = int(node.attrs["axis"])
        axis = axis + rank + 1 if axis < 0 else axis
        if axis == 0 or a.order is not None or b.order is not None or a.channels_last != b.channels_last:
            raise _Refused("Concatenate over the batch axis or of flattened maps")
        cl_axis = (rank - 1 if axis == 1 else axis - 2) if a.channels_last else axis - 1
        shape = list(a.shape)
        shape[cl_axis] += b.shape[cl_axis]
        lay = self.add("Concatenate", node.name, list(node.inputs[:2]), tuple(shape), {"axis": cl_axis})
        self.values[node.outputs[0]] = _Value(lay.ident, tuple(shape), None, a.channels_last)


def _same_order(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))


class _Refused(Exception):
    pass


@dataclass
class Design:
    """The layers of a graph, and which layer gives each graph input and output (by tensor name)."""

    layers: list[Layer]
    inputs: dict[str, str]  # graph input -> ident of its input layer
    outputs: dict[str, str]  # graph output -> ident of the layer computing it


def from_graph(g: Graph, precision: str = "ap_fixed<16,6>", accum: str | None = None,
               layer_precision: dict | None = None) -> Design:
    """The hls4ml layers of a lowered graph with their resolved types (see the module's docstring)."""
    if len(g.symbols) > 1:
        raise InputError(f"hls4ml models have one dynamic dimension (the batch), this one has {list(g.symbols)}")
    for t in [*g.inputs, *g.outputs]:
        if g.t(t).dtype != np.float32:
            raise InputError(f"tensor {t!r} is {g.t(t).dtype}: hls4ml models take and give float32")
        if g.t(t).rank < 2:
            raise InputError(f"tensor {t!r} has no batch axis (shape {D.fmt_shape(g.t(t).shape)})")
    b = _Builder(g, precision, accum, layer_precision)
    layers = b.run()
    inputs = {i: next(lay.ident for lay in layers if lay.kind == "Input" and lay.name == i) for i in g.inputs}
    return Design(layers, inputs, {o: b.values[o].layer for o in g.outputs})
