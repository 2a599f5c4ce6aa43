"""A small ONNX -> JAX translator: the "XLA" entry of the inference benchmark.

:func:`to_jax` turns an ONNX model into a plain Python function over ``jax.numpy`` / ``jax.lax`` that
``jax.jit`` traces and XLA compiles. It is an interpreter run once per trace: every node calls one small
function named like its ONNX operator (tinygrad style, registry :data:`OPS`).

Design
------
- Initializers and ``Constant`` nodes stay NumPy arrays. A node whose inputs are all NumPy arrays is evaluated
  with NumPy (``xp`` is ``numpy``), so shape computations (``Shape -> Gather -> Concat -> Reshape``) stay
  concrete inside ``jax.jit``; ``Shape`` of a traced array is a NumPy ``int64`` array of its static shape.
  Only data-carrying tensors are JAX arrays (``xp`` is ``jax.numpy``).
- JAX runs without 64-bit types unless ``jax_enable_x64`` is set: 64-bit ONNX types (``Cast`` to int64,
  ``ArgMax`` and ``TopK`` indices) become their 32-bit counterparts in traced tensors; NumPy shape arithmetic
  keeps int64.
- Every unsupported operator (or unsupported variant of a supported one) of the graph is reported at once, in
  one :class:`~ml4ep.errors.UnsupportedOperatorError`, before anything is traced.

Limits
------
- Shapes must be static within one trace (one jit specialisation per input shape). Operators whose output
  shape depends on data (``NonZero``, ``Unique``, ``NonMaxSuppression``, ...) and control flow (``If``,
  ``Loop``, ``Scan``) are not supported; nor are quantized operators, strings, sparse tensors or custom
  domains.
- ``Resize``: modes ``nearest`` and ``linear`` (n-linear, separable), no ``tf_crop_and_resize``, antialias
  or ``keep_aspect_ratio_policy``. ``MaxPool`` without its ``Indices`` output. Recurrent operators (``LSTM``,
  ``GRU``, ``RNN``) without ``sequence_lens`` and ``input_forget``.
- Opset 17 forms are the reference; the older/newer attribute-vs-input forms of ``Split``, ``Squeeze``,
  ``Unsqueeze``, ``Reduce*``, ``Slice``, ``Pad``, ``Clip``, ``Resize`` and ``Softmax`` are handled.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._optional import require
from ..errors import Ml4epError, ModelLoadError, UnsupportedOperatorError

# Bound by _bind() on the first call of to_jax(): jax is an optional dependency.
jax: Any = None
jnp: Any = None
lax: Any = None

Array = Any  # a NumPy array or a JAX array (possibly a tracer)


def _bind() -> None:
    global jax, jnp, lax
    if jax is None:
        jax = require("jax", "jax", "the JAX/XLA backend")
        jnp = jax.numpy
        lax = jax.lax


# ----------------------------------------------------------------------------------------------------------
# Node context and helpers
# ----------------------------------------------------------------------------------------------------------
class Ctx:
    """What an op function sees besides its inputs: attributes, array module (NumPy or jax.numpy), opset."""

    def __init__(self, op: str, name: str, attrs: dict[str, Any], xp: Any, opset: int, n_out: int):
        self.op, self.name, self.attrs, self.xp, self.opset, self.n_out = op, name, attrs, xp, opset, n_out

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    @property
    def numpy(self) -> bool:
        return self.xp is np

    def dtype(self, dt: Any) -> np.dtype:
        """``dt`` as the array module can hold it (int64 -> int32 in JAX without x64)."""
        dt = np.dtype(dt)
        return dt if self.numpy else np.dtype(jax.dtypes.canonicalize_dtype(dt))

    def fail(self, why: str) -> Ml4epError:
        return Ml4epError(f"node '{self.name}' ({self.op}): {why}")


def _is_np(a: Any) -> bool:
    return isinstance(a, (np.ndarray, np.generic))


def _ints(c: Ctx, a: Array | None, what: str = "input") -> list[int] | None:
    """A static integer input as Python ints (None stays None)."""
    if a is None:
        return None
    if not _is_np(a):
        raise c.fail(f"{what} must be static (computed from constants and shapes), got a traced tensor")
    return [int(v) for v in np.asarray(a).reshape(-1)]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _index(c: Ctx, idx: Array, dim: int | Array) -> Array:
    """Indices with negatives wrapped, as int32 for JAX (int64 kept for NumPy)."""
    idx = c.xp.where(idx < 0, idx + dim, idx)
    return idx if c.numpy else idx.astype(np.int32)


def _opt_out(c: Ctx, *outs: Array) -> tuple[Array, ...]:
    return tuple(outs[: max(c.n_out, 1)])


# ----------------------------------------------------------------------------------------------------------
# Elementwise: arithmetic, math, activations, logic
# ----------------------------------------------------------------------------------------------------------
def Add(c: Ctx, a: Array, b: Array) -> Array:
    return a + b


def Sub(c: Ctx, a: Array, b: Array) -> Array:
    return a - b


def Mul(c: Ctx, a: Array, b: Array) -> Array:
    return a * b


def Div(c: Ctx, a: Array, b: Array) -> Array:
    if np.issubdtype(a.dtype, np.integer):  # C-style division, truncating toward zero
        q = a // b
        return c.xp.where((a % b != 0) & ((a < 0) != (b < 0)), q + 1, q).astype(a.dtype)
    return a / b


def Pow(c: Ctx, a: Array, b: Array) -> Array:
    if np.issubdtype(a.dtype, np.floating):
        return c.xp.power(a, b.astype(a.dtype))
    return c.xp.power(a, b).astype(a.dtype)


def Mod(c: Ctx, a: Array, b: Array) -> Array:
    return c.xp.fmod(a, b) if c.get("fmod", 0) else c.xp.mod(a, b)


def Neg(c: Ctx, x: Array) -> Array:
    return -x


def _elementwise(op: str, numpy_name: str) -> Callable[..., Array]:
    """The ONNX unary operator ``op`` that is the function ``numpy_name`` of NumPy / jax.numpy."""

    def f(c: Ctx, x: Array) -> Array:
        return getattr(c.xp, numpy_name)(x)

    f.__name__ = f.__qualname__ = op
    return f


# Round: NumPy's and JAX's round half to even, as ONNX does
Abs, Sqrt, Exp, Log, Floor, Ceil, Round, Sign, Cos, Sin, Tan, Atan = (_elementwise(op, fn) for op, fn in (
    ("Abs", "abs"), ("Sqrt", "sqrt"), ("Exp", "exp"), ("Log", "log"), ("Floor", "floor"), ("Ceil", "ceil"),
    ("Round", "round"), ("Sign", "sign"), ("Cos", "cos"), ("Sin", "sin"), ("Tan", "tan"), ("Atan", "arctan")))


def Reciprocal(c: Ctx, x: Array) -> Array:
    return (1 / x).astype(x.dtype)


def Erf(c: Ctx, x: Array) -> Array:
    return jax.scipy.special.erf(x)


def IsNaN(c: Ctx, x: Array) -> Array:
    return c.xp.isnan(x)


def IsInf(c: Ctx, x: Array) -> Array:
    pos, neg = c.get("detect_positive", 1), c.get("detect_negative", 1)
    return c.xp.isinf(x) & (((x > 0) & bool(pos)) | ((x < 0) & bool(neg)))


def Relu(c: Ctx, x: Array) -> Array:
    return c.xp.maximum(x, 0).astype(x.dtype)


def LeakyRelu(c: Ctx, x: Array) -> Array:
    return c.xp.where(x >= 0, x, x * c.get("alpha", 0.01))


def PRelu(c: Ctx, x: Array, slope: Array) -> Array:
    return c.xp.where(x >= 0, x, x * slope)


def Elu(c: Ctx, x: Array) -> Array:
    return c.xp.where(x > 0, x, c.get("alpha", 1.0) * (c.xp.exp(c.xp.minimum(x, 0)) - 1))


def Selu(c: Ctx, x: Array) -> Array:
    alpha, gamma = c.get("alpha", 1.67326319217681884765625), c.get("gamma", 1.05070102214813232421875)
    return gamma * c.xp.where(x > 0, x, alpha * (c.xp.exp(c.xp.minimum(x, 0)) - 1))


def Sigmoid(c: Ctx, x: Array) -> Array:
    return 1 / (1 + c.xp.exp(-x)) if c.numpy else jax.nn.sigmoid(x)


def HardSigmoid(c: Ctx, x: Array) -> Array:
    return c.xp.clip(c.get("alpha", 0.2) * x + c.get("beta", 0.5), 0, 1).astype(x.dtype)


def HardSwish(c: Ctx, x: Array) -> Array:
    return x * c.xp.clip(x / 6 + 0.5, 0, 1).astype(x.dtype)


def Tanh(c: Ctx, x: Array) -> Array:
    return c.xp.tanh(x)


def Softplus(c: Ctx, x: Array) -> Array:
    return c.xp.logaddexp(x, 0).astype(x.dtype)


def Softsign(c: Ctx, x: Array) -> Array:
    return x / (1 + c.xp.abs(x))


def Mish(c: Ctx, x: Array) -> Array:
    return x * c.xp.tanh(c.xp.logaddexp(x, 0)).astype(x.dtype)


def Gelu(c: Ctx, x: Array) -> Array:
    return jax.nn.gelu(x, approximate=c.get("approximate", "none") == "tanh")


def Clip(c: Ctx, x: Array, lo: Array | None = None, hi: Array | None = None) -> Array:
    if c.opset < 11:
        lo, hi = c.get("min"), c.get("max")
    if lo is not None:
        x = c.xp.maximum(x, c.xp.asarray(lo, dtype=x.dtype))
    if hi is not None:
        x = c.xp.minimum(x, c.xp.asarray(hi, dtype=x.dtype))
    return x


def Equal(c: Ctx, a: Array, b: Array) -> Array:
    return a == b


def Less(c: Ctx, a: Array, b: Array) -> Array:
    return a < b


def LessOrEqual(c: Ctx, a: Array, b: Array) -> Array:
    return a <= b


def Greater(c: Ctx, a: Array, b: Array) -> Array:
    return a > b


def GreaterOrEqual(c: Ctx, a: Array, b: Array) -> Array:
    return a >= b


def Not(c: Ctx, x: Array) -> Array:
    return c.xp.logical_not(x)


def And(c: Ctx, a: Array, b: Array) -> Array:
    return c.xp.logical_and(a, b)


def Or(c: Ctx, a: Array, b: Array) -> Array:
    return c.xp.logical_or(a, b)


def Xor(c: Ctx, a: Array, b: Array) -> Array:
    return c.xp.logical_xor(a, b)


def Where(c: Ctx, cond: Array, a: Array, b: Array) -> Array:
    return c.xp.where(cond, a, b)


def Min(c: Ctx, *xs: Array) -> Array:
    return functools.reduce(c.xp.minimum, xs)


def Max(c: Ctx, *xs: Array) -> Array:
    return functools.reduce(c.xp.maximum, xs)


def Sum(c: Ctx, *xs: Array) -> Array:
    return functools.reduce(lambda a, b: a + b, xs)


def Mean(c: Ctx, *xs: Array) -> Array:
    return (Sum(c, *xs) / len(xs)).astype(xs[0].dtype)


def Identity(c: Ctx, x: Array) -> Array:
    return x


def Dropout(c: Ctx, x: Array, ratio: Array | None = None, training: Array | None = None) -> tuple[Array, ...]:
    return _opt_out(c, x, c.xp.ones(x.shape, dtype=bool))


def Cast(c: Ctx, x: Array) -> Array:
    from onnx import helper

    return x.astype(c.dtype(helper.tensor_dtype_to_np_dtype(c.get("to"))))


def CastLike(c: Ctx, x: Array, like: Array) -> Array:
    return x.astype(c.dtype(like.dtype))


# ----------------------------------------------------------------------------------------------------------
# Linear algebra
# ----------------------------------------------------------------------------------------------------------
def MatMul(c: Ctx, a: Array, b: Array) -> Array:
    return c.xp.matmul(a, b)


def Gemm(c: Ctx, a: Array, b: Array, bias: Array | None = None) -> Array:
    a = a.T if c.get("transA", 0) else a
    b = b.T if c.get("transB", 0) else b
    y = c.xp.matmul(a, b)
    alpha, beta = c.get("alpha", 1.0), c.get("beta", 1.0)
    if alpha != 1.0:
        y = y * alpha
    if bias is not None:
        y = y + (bias * beta if beta != 1.0 else bias)
    return y


def Einsum(c: Ctx, *xs: Array) -> Array:
    return c.xp.einsum(c.get("equation").replace(" ", ""), *xs)


# ----------------------------------------------------------------------------------------------------------
# Softmax, normalisation
# ----------------------------------------------------------------------------------------------------------
def _softmax_like(c: Ctx, x: Array, log: bool) -> Array:
    xp = c.xp
    legacy = c.opset < 13
    axis = _axis(c.get("axis", 1 if legacy else -1), x.ndim)
    shape = x.shape
    if legacy:  # coerced to 2-D at axis
        x = x.reshape(int(np.prod(shape[:axis])), -1)
        axis = 1
    m = x.max(axis=axis, keepdims=True)
    z = x - m
    if log:
        y = z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))
    else:
        e = xp.exp(z)
        y = e / e.sum(axis=axis, keepdims=True)
    return y.reshape(shape)


def Softmax(c: Ctx, x: Array) -> Array:
    return _softmax_like(c, x, log=False)


def LogSoftmax(c: Ctx, x: Array) -> Array:
    return _softmax_like(c, x, log=True)


def LayerNormalization(c: Ctx, x: Array, scale: Array, bias: Array | None = None) -> tuple[Array, ...]:
    xp = c.xp
    axis = _axis(c.get("axis", -1), x.ndim)
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    inv = 1 / xp.sqrt(var + c.get("epsilon", 1e-5))
    y = d * inv * scale
    if bias is not None:
        y = y + bias
    return _opt_out(c, y.astype(x.dtype), mean, inv)


def BatchNormalization(c: Ctx, x: Array, scale: Array, bias: Array, mean: Array, var: Array) -> Array:
    if c.get("training_mode", 0):
        raise c.fail("training_mode=1 is not supported (inference only)")
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale / c.xp.sqrt(var + c.get("epsilon", 1e-5))
    return x * inv.reshape(shape) + (bias - mean * inv).reshape(shape)


def InstanceNormalization(c: Ctx, x: Array, scale: Array, bias: Array) -> Array:
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return d / c.xp.sqrt(var + c.get("epsilon", 1e-5)) * scale.reshape(shape) + bias.reshape(shape)


# ----------------------------------------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------------------------------------
def _reduce(c: Ctx, x: Array, axes_in: Array | None, fn: Callable[..., Array]) -> Array:
    axes = c.get("axes")
    if axes is None:
        axes = _ints(c, axes_in, "axes")
    keep = bool(c.get("keepdims", 1))
    if not axes:
        if c.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.ndim))
    return fn(x, tuple(_axis(a, x.ndim) for a in axes), keep)


def ReduceSum(c: Ctx, x: Array, axes: Array | None = None) -> Array:
    return _reduce(c, x, axes, lambda x, a, k: x.sum(axis=a, keepdims=k).astype(x.dtype))


def ReduceMean(c: Ctx, x: Array, axes: Array | None = None) -> Array:
    return _reduce(c, x, axes, lambda x, a, k: x.mean(axis=a, keepdims=k).astype(x.dtype))


def ReduceMax(c: Ctx, x: Array, axes: Array | None = None) -> Array:
    return _reduce(c, x, axes, lambda x, a, k: x.max(axis=a, keepdims=k))


def ReduceMin(c: Ctx, x: Array, axes: Array | None = None) -> Array:
    return _reduce(c, x, axes, lambda x, a, k: x.min(axis=a, keepdims=k))


def ReduceProd(c: Ctx, x: Array, axes: Array | None = None) -> Array:
    return _reduce(c, x, axes, lambda x, a, k: x.prod(axis=a, keepdims=k).astype(x.dtype))


def ReduceL1(c: Ctx, x: Array, axes: Array | None = None) -> Array:
    return _reduce(c, x, axes, lambda x, a, k: c.xp.abs(x).sum(axis=a, keepdims=k).astype(x.dtype))


def ReduceL2(c: Ctx, x: Array, axes: Array | None = None) -> Array:
    return _reduce(c, x, axes, lambda x, a, k: c.xp.sqrt((x * x).sum(axis=a, keepdims=k)).astype(x.dtype))


def ReduceSumSquare(c: Ctx, x: Array, axes: Array | None = None) -> Array:
    return _reduce(c, x, axes, lambda x, a, k: (x * x).sum(axis=a, keepdims=k).astype(x.dtype))


def ReduceLogSumExp(c: Ctx, x: Array, axes: Array | None = None) -> Array:
    def lse(x: Array, a: tuple[int, ...], k: bool) -> Array:
        m = x.max(axis=a, keepdims=True)
        y = c.xp.log(c.xp.exp(x - m).sum(axis=a, keepdims=True)) + m
        return (y if k else y.squeeze(a)).astype(x.dtype)

    return _reduce(c, x, axes, lse)


def _arg(c: Ctx, x: Array, fn: Callable[..., Array]) -> Array:
    axis = _axis(c.get("axis", 0), x.ndim)
    if c.get("select_last_index", 0):
        idx = x.shape[axis] - 1 - fn(c.xp.flip(x, axis), axis=axis)
    else:
        idx = fn(x, axis=axis)
    if c.get("keepdims", 1):
        idx = c.xp.expand_dims(idx, axis)
    return idx.astype(c.dtype(np.int64))


def ArgMax(c: Ctx, x: Array) -> Array:
    return _arg(c, x, c.xp.argmax)


def ArgMin(c: Ctx, x: Array) -> Array:
    return _arg(c, x, c.xp.argmin)


def CumSum(c: Ctx, x: Array, axis: Array) -> Array:
    xp = c.xp
    ax = _axis(_ints(c, axis, "axis")[0], x.ndim)
    if c.get("reverse", 0):
        x = xp.flip(x, ax)
    y = xp.cumsum(x, axis=ax).astype(x.dtype)
    if c.get("exclusive", 0):
        pad = [(0, 0)] * x.ndim
        pad[ax] = (1, 0)
        y = xp.take(xp.pad(y, pad), np.arange(x.shape[ax]), axis=ax)
    return xp.flip(y, ax) if c.get("reverse", 0) else y


# ----------------------------------------------------------------------------------------------------------
# Convolution and pooling (always JAX)
# ----------------------------------------------------------------------------------------------------------
def _conv_pads(c: Ctx, in_shape: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
               dilations: Sequence[int]) -> list[tuple[int, int]]:
    """(low, high) padding per spatial axis from ``pads`` / ``auto_pad``."""
    n = len(kernel)
    auto = c.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for i in range(n):
            o = -(-in_shape[i] // strides[i])
            total = max(0, (o - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_shape[i])
            small = total // 2
            out.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        return out
    if auto == "VALID":
        return [(0, 0)] * n
    pads = c.get("pads", [0] * (2 * n))
    return [(pads[i], pads[i + n]) for i in range(n)]


def Conv(c: Ctx, x: Array, w: Array, b: Array | None = None) -> Array:
    n = x.ndim - 2
    kernel = c.get("kernel_shape", list(w.shape[2:]))
    strides = c.get("strides", [1] * n)
    dil = c.get("dilations", [1] * n)
    pads = _conv_pads(c, x.shape[2:], kernel, strides, dil)
    y = lax.conv_general_dilated(jnp.asarray(x), jnp.asarray(w, dtype=x.dtype), tuple(strides), pads,
                                 rhs_dilation=tuple(dil), feature_group_count=c.get("group", 1))
    if b is not None:
        y = y + jnp.asarray(b).reshape((1, -1) + (1,) * n)
    return y


def ConvTranspose(c: Ctx, x: Array, w: Array, b: Array | None = None) -> Array:
    n = x.ndim - 2
    g = c.get("group", 1)
    kernel = c.get("kernel_shape", list(w.shape[2:]))
    strides = c.get("strides", [1] * n)
    dil = c.get("dilations", [1] * n)
    out_pad = c.get("output_padding", [0] * n)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    auto = c.get("auto_pad", "NOTSET")
    out_shape = c.get("output_shape")
    if out_shape is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [x.shape[2 + i] * strides[i] for i in range(n)]
    if out_shape is not None:
        out_shape = list(out_shape)[-n:]
        pads = []
        for i in range(n):
            total = strides[i] * (x.shape[2 + i] - 1) + out_pad[i] + eff[i] - out_shape[i]
            half = total // 2
            pads.append((half, total - half) if auto == "SAME_UPPER" else (total - half, half))
    else:
        p = c.get("pads", [0] * (2 * n))
        pads = [(p[i], p[i + n]) for i in range(n)]
    # the transposed convolution is a convolution of the stride-dilated input with the flipped kernel
    cin, mg = w.shape[0], w.shape[1]
    wj = jnp.asarray(w, dtype=x.dtype).reshape((g, cin // g, mg) + tuple(w.shape[2:]))
    wj = jnp.swapaxes(wj, 1, 2).reshape((g * mg, cin // g) + tuple(w.shape[2:]))
    wj = jnp.flip(wj, axis=tuple(range(2, 2 + n)))
    conv_pads = [(eff[i] - 1 - pads[i][0], eff[i] - 1 - pads[i][1] + out_pad[i]) for i in range(n)]
    y = lax.conv_general_dilated(jnp.asarray(x), wj, (1,) * n, conv_pads, lhs_dilation=tuple(strides),
                                 rhs_dilation=tuple(dil), feature_group_count=g)
    if b is not None:
        y = y + jnp.asarray(b).reshape((1, -1) + (1,) * n)
    return y


def _pool_geometry(c: Ctx, x: Array) -> tuple[list[int], list[int], list[int], list[tuple[int, int]], list[int]]:
    """kernel, strides, dilations, explicit pads and the extra high padding that ceil_mode adds."""
    kernel = c.get("kernel_shape")
    n = len(kernel)
    strides = c.get("strides", [1] * n)
    dil = c.get("dilations", [1] * n)
    pads = _conv_pads(c, x.shape[2:], kernel, strides, dil)
    extra = [0] * n
    if c.get("ceil_mode", 0):
        for i in range(n):
            size, eff = x.shape[2 + i], (kernel[i] - 1) * dil[i] + 1
            span = size + pads[i][0] + pads[i][1] - eff
            out = -(-span // strides[i]) + 1
            if (out - 1) * strides[i] >= size + pads[i][0]:  # the last window must start inside the input
                out -= 1
            extra[i] = max(0, (out - 1) * strides[i] + eff - (size + pads[i][0] + pads[i][1]))
    return kernel, strides, dil, pads, extra


def MaxPool(c: Ctx, x: Array) -> Array:
    kernel, strides, dil, pads, extra = _pool_geometry(c, x)
    x = jnp.asarray(x)
    init = -jnp.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min
    return lax.reduce_window(x, jnp.asarray(init, x.dtype), lax.max, (1, 1, *kernel), (1, 1, *strides),
                             [(0, 0), (0, 0)] + [(lo, hi + e) for (lo, hi), e in zip(pads, extra)],
                             window_dilation=(1, 1, *dil))


def AveragePool(c: Ctx, x: Array) -> Array:
    kernel, strides, dil, pads, extra = _pool_geometry(c, x)
    x = jnp.asarray(x)
    zero = jnp.asarray(0, x.dtype)
    window, step, wd = (1, 1, *kernel), (1, 1, *strides), (1, 1, *dil)
    full = [(0, 0), (0, 0)] + [(lo, hi + e) for (lo, hi), e in zip(pads, extra)]
    total = lax.reduce_window(x, zero, lax.add, window, step, full, window_dilation=wd)
    ones = jnp.ones(x.shape, x.dtype)
    if c.get("count_include_pad", 0):  # explicit padding counts, the ceil_mode extra does not
        ones = jnp.pad(ones, [(0, 0), (0, 0)] + pads, constant_values=1)
        count = lax.reduce_window(ones, zero, lax.add, window, step, [(0, 0), (0, 0)] + [(0, e) for e in extra],
                                  window_dilation=wd)
    else:
        count = lax.reduce_window(ones, zero, lax.add, window, step, full, window_dilation=wd)
    return total / count


def GlobalAveragePool(c: Ctx, x: Array) -> Array:
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)


def GlobalMaxPool(c: Ctx, x: Array) -> Array:
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


# ----------------------------------------------------------------------------------------------------------
# Shapes and layout
# ----------------------------------------------------------------------------------------------------------
def Shape(c: Ctx, x: Array) -> np.ndarray:
    dims = list(x.shape)
    start, end = c.get("start", 0), c.get("end")
    return np.array(dims[start:end] if end is not None else dims[start:], dtype=np.int64)


def Size(c: Ctx, x: Array) -> np.ndarray:
    return np.array(int(np.prod(x.shape)), dtype=np.int64)


def Constant(c: Ctx) -> np.ndarray:
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in c.attrs:
            return np.asarray(c.attrs[key], dtype=dtype)
    for key in ("value_string", "value_strings"):
        if key in c.attrs:
            return np.asarray(c.attrs[key], dtype=object)
    raise c.fail("Constant without a supported value attribute (sparse_value is not supported)")


def ConstantOfShape(c: Ctx, shape: Array) -> Array:
    value = c.get("value", np.zeros(1, np.float32))
    dims = _ints(c, shape, "shape")
    return np.full(dims, value.reshape(-1)[0], dtype=value.dtype)


def Range(c: Ctx, start: Array, limit: Array, delta: Array) -> Array:
    for v in (start, limit, delta):
        if not _is_np(v):
            raise c.fail("Range bounds must be static")
    return np.arange(start.item(), limit.item(), delta.item(), dtype=np.asarray(start).dtype)


def Reshape(c: Ctx, x: Array, shape: Array) -> Array:
    dims = _ints(c, shape, "shape")
    if not c.get("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def Flatten(c: Ctx, x: Array) -> Array:
    axis = _axis(c.get("axis", 1), x.ndim)
    return x.reshape(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))


def Transpose(c: Ctx, x: Array) -> Array:
    perm = c.get("perm", list(range(x.ndim))[::-1])
    return c.xp.transpose(x, perm)


def Squeeze(c: Ctx, x: Array, axes: Array | None = None) -> Array:
    ax = c.get("axes") if c.get("axes") is not None else _ints(c, axes, "axes")
    if not ax:
        return c.xp.squeeze(x)
    return c.xp.squeeze(x, axis=tuple(_axis(a, x.ndim) for a in ax))


def Unsqueeze(c: Ctx, x: Array, axes: Array | None = None) -> Array:
    ax = c.get("axes") if c.get("axes") is not None else _ints(c, axes, "axes")
    rank = x.ndim + len(ax)
    shape = list(x.shape)
    for a in sorted(_axis(a, rank) for a in ax):
        shape.insert(a, 1)
    return x.reshape(shape)


def Concat(c: Ctx, *xs: Array) -> Array:
    axis = c.get("axis")
    if not c.numpy:
        xs = tuple(jnp.asarray(x) for x in xs)
    return c.xp.concatenate(xs, axis=axis)


def Split(c: Ctx, x: Array, split: Array | None = None) -> tuple[Array, ...]:
    axis = _axis(c.get("axis", 0), x.ndim)
    dim = x.shape[axis]
    sizes = c.get("split") if c.get("split") is not None else _ints(c, split, "split")
    if not sizes:
        n = c.get("num_outputs", c.n_out)
        chunk = -(-dim // n)
        sizes = [min(chunk, dim - i * chunk) for i in range(n)]
    cuts = np.cumsum(sizes)[:-1].tolist()
    return tuple(c.xp.split(x, cuts, axis=axis))


def Slice(c: Ctx, x: Array, starts: Array | None = None, ends: Array | None = None, axes: Array | None = None,
          steps: Array | None = None) -> Array:
    if c.opset < 10:
        st, en, ax, sp = c.get("starts"), c.get("ends"), c.get("axes"), None
    else:
        st, en, ax, sp = _ints(c, starts, "starts"), _ints(c, ends, "ends"), _ints(c, axes), _ints(c, steps)
    ax = ax if ax is not None else list(range(len(st)))
    sp = sp if sp is not None else [1] * len(st)
    index = [slice(None)] * x.ndim
    for s, e, a, k in zip(st, en, ax, sp):
        a = _axis(a, x.ndim)
        dim = x.shape[a]
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if k > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
            index[a] = slice(s, e, k)
        else:
            s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
            index[a] = slice(s, None if e < 0 else e, k)
    return x[tuple(index)]


def Expand(c: Ctx, x: Array, shape: Array) -> Array:
    return c.xp.broadcast_to(x, np.broadcast_shapes(tuple(x.shape), tuple(_ints(c, shape, "shape"))))


def Tile(c: Ctx, x: Array, repeats: Array) -> Array:
    return c.xp.tile(x, _ints(c, repeats, "repeats"))


def Pad(c: Ctx, x: Array, pads: Array | None = None, value: Array | None = None,
        axes: Array | None = None) -> Array:
    mode = c.get("mode", "constant")
    if c.opset < 11:
        p, v = list(c.get("pads")), c.get("value", 0.0)
    else:
        p, v = _ints(c, pads, "pads"), (0 if value is None else value)
    n = len(p) // 2
    ax = [_axis(a, x.ndim) for a in _ints(c, axes, "axes")] if axes is not None else list(range(x.ndim))
    width = [(0, 0)] * x.ndim
    for i, a in enumerate(ax[:n]):
        width[a] = (p[i], p[i + n])
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in width]
    if mode == "constant":
        y = c.xp.pad(x, grow, mode="constant", constant_values=c.xp.asarray(v, dtype=x.dtype).reshape(()))
    elif mode in ("reflect", "edge", "wrap"):
        y = c.xp.pad(x, grow, mode=mode)
    else:
        raise c.fail(f"Pad mode '{mode}' is not supported")
    if any(lo < 0 or hi < 0 for lo, hi in width):  # negative pads crop
        y = y[tuple(slice(-min(lo, 0), y.shape[i] + min(hi, 0)) for i, (lo, hi) in enumerate(width))]
    return y


def Trilu(c: Ctx, x: Array, k: Array | None = None) -> Array:
    kk = _ints(c, k, "k")[0] if k is not None else 0
    return c.xp.triu(x, kk) if c.get("upper", 1) else c.xp.tril(x, kk)


# ----------------------------------------------------------------------------------------------------------
# Indexing: gather, scatter, top-k
# ----------------------------------------------------------------------------------------------------------
def Gather(c: Ctx, x: Array, idx: Array) -> Array:
    axis = _axis(c.get("axis", 0), x.ndim)
    return c.xp.take(x, _index(c, idx, x.shape[axis]), axis=axis)


def GatherElements(c: Ctx, x: Array, idx: Array) -> Array:
    axis = _axis(c.get("axis", 0), x.ndim)
    return c.xp.take_along_axis(x, _index(c, idx, x.shape[axis]), axis=axis)


def _nd_index(c: Ctx, data_shape: Sequence[int], idx: Array, b: int) -> tuple[Array, ...]:
    """Advanced-indexing tuple for GatherND / ScatterND with ``b`` batch dimensions."""
    k = idx.shape[-1]
    lead = []
    for i in range(b):
        shape = [1] * (idx.ndim - 1)
        shape[i] = idx.shape[i]
        lead.append(np.arange(idx.shape[i], dtype=np.int32).reshape(shape))
    cols = [_index(c, idx[..., j], data_shape[b + j]) for j in range(k)]
    return tuple(lead + cols)


def GatherND(c: Ctx, x: Array, idx: Array) -> Array:
    return x[_nd_index(c, x.shape, idx, c.get("batch_dims", 0))]


def _scatter(c: Ctx, x: Array, index: tuple[Array, ...], updates: Array) -> Array:
    at = jnp.asarray(x).at[index]
    red = c.get("reduction", "none")
    fns = {"none": at.set, "add": at.add, "mul": at.multiply, "max": at.max, "min": at.min}
    if red not in fns:
        raise c.fail(f"reduction '{red}' is not supported")
    return fns[red](jnp.asarray(updates, dtype=x.dtype))


def ScatterElements(c: Ctx, x: Array, idx: Array, updates: Array) -> Array:
    axis = _axis(c.get("axis", 0), x.ndim)
    grids: list[Array] = [g.astype(np.int32) for g in np.indices(idx.shape, sparse=True)]
    grids[axis] = _index(c, idx, x.shape[axis])
    return _scatter(c, x, tuple(grids), updates)


def Scatter(c: Ctx, x: Array, idx: Array, updates: Array) -> Array:  # deprecated alias (opset 9-10)
    return ScatterElements(c, x, idx, updates)


def ScatterND(c: Ctx, x: Array, idx: Array, updates: Array) -> Array:
    return _scatter(c, x, _nd_index(c, x.shape, idx, 0), updates)


def TopK(c: Ctx, x: Array, k: Array) -> tuple[Array, Array]:
    kk = _ints(c, k, "K")[0] if k is not None else c.get("k")
    axis = _axis(c.get("axis", -1), x.ndim)
    xl = jnp.moveaxis(jnp.asarray(x), axis, -1)
    if jnp.issubdtype(xl.dtype, jnp.floating):  # -0.0 ties with 0.0 in ONNX; XLA's sorts order them
        xl = jnp.where(xl == 0, jnp.zeros((), xl.dtype), xl)
    if c.get("largest", 1):
        vals, idx = lax.top_k(xl, kk)  # ties: the lower index first, as ONNX
    else:
        idx = jnp.argsort(xl, axis=-1, stable=True)[..., :kk]
        vals = jnp.take_along_axis(xl, idx, axis=-1)
    return jnp.moveaxis(vals, -1, axis), jnp.moveaxis(idx, -1, axis).astype(c.dtype(np.int64))


# ----------------------------------------------------------------------------------------------------------
# Resize (nearest / linear, separable per axis)
# ----------------------------------------------------------------------------------------------------------
def _source_coords(mode: str, n_out: int, n_in: int, scale: float) -> np.ndarray:
    x = np.arange(n_out, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(x)
    if mode == "align_corners":
        return x * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros_like(x)
    if mode == "asymmetric":
        return x / scale
    if mode == "half_pixel_symmetric":
        adj = n_out / (scale * n_in)
        return n_in / 2 * (1 - adj) + (x + 0.5) / scale - 0.5
    raise Ml4epError(f"Resize coordinate_transformation_mode '{mode}' is not supported")


def Resize(c: Ctx, x: Array, roi: Array | None = None, scales: Array | None = None,
           sizes: Array | None = None) -> Array:
    if c.opset < 11:  # Upsample-like form (X, scales)
        scales, roi = roi, None
    mode = c.get("mode", "nearest")
    ctm = c.get("coordinate_transformation_mode", "half_pixel" if c.opset >= 11 else "asymmetric")
    axes = c.get("axes", list(range(x.ndim)))
    axes = [_axis(a, x.ndim) for a in axes]
    sc = [float(v) for v in np.asarray(scales).reshape(-1)] if scales is not None and np.size(scales) else None
    sz = _ints(c, sizes, "sizes") if sizes is not None and np.size(sizes) else None
    xp = c.xp
    for i, a in enumerate(axes):
        n_in = x.shape[a]
        if sz is not None:
            n_out, scale = sz[i], sz[i] / n_in
        else:
            scale = sc[i]
            n_out = int(math.floor(n_in * scale))
        if n_out == n_in and scale == 1.0:
            continue
        src = _source_coords(ctm, n_out, n_in, scale)
        if mode == "nearest":
            nm = c.get("nearest_mode", "round_prefer_floor")
            rnd = {"round_prefer_floor": lambda v: np.ceil(v - 0.5), "round_prefer_ceil": lambda v: np.floor(v + 0.5),
                   "floor": np.floor, "ceil": np.ceil}[nm]
            idx = np.clip(rnd(src), 0, n_in - 1).astype(np.int32)
            x = xp.take(x, idx, axis=a)
        elif mode == "linear":
            src = np.clip(src, 0, n_in - 1)
            lo = np.floor(src).astype(np.int32)
            hi = np.minimum(lo + 1, n_in - 1)
            shape = [1] * x.ndim
            shape[a] = n_out
            w = (src - lo).astype(x.dtype).reshape(shape)
            x = xp.take(x, lo, axis=a) * (1 - w) + xp.take(x, hi, axis=a) * w
        else:
            raise c.fail(f"mode '{mode}' is not supported")
    return x


# ----------------------------------------------------------------------------------------------------------
# Recurrent operators (lax.scan over time)
# ----------------------------------------------------------------------------------------------------------
def _rnn_acts(c: Ctx, defaults: list[str]) -> list[Callable[[Array], Array]]:
    names = c.get("activations", defaults)
    alphas, betas = list(c.get("activation_alpha", [])), list(c.get("activation_beta", []))
    out = []
    for name in names:
        if name == "Sigmoid":
            out.append(jax.nn.sigmoid)
        elif name == "Tanh":
            out.append(jnp.tanh)
        elif name == "Relu":
            out.append(jax.nn.relu)
        elif name == "Softsign":
            out.append(lambda v: v / (1 + jnp.abs(v)))
        elif name == "Softplus":
            out.append(jax.nn.softplus)
        elif name == "HardSigmoid":
            al, be = (alphas.pop(0) if alphas else 0.2), (betas.pop(0) if betas else 0.5)
            out.append(lambda v, al=al, be=be: jnp.clip(al * v + be, 0, 1))
        elif name == "LeakyRelu":
            al = alphas.pop(0) if alphas else 0.01
            out.append(lambda v, al=al: jnp.where(v >= 0, v, al * v))
        else:
            raise c.fail(f"activation '{name}' is not supported")
    return out


def _rnn(c: Ctx, x: Array, w: Array, r: Array, b: Array | None, n_gates: int,
         cell: Callable[..., tuple[Array, ...]], state0: Callable[[int, int], tuple[Array, ...]],
         n_acts: int, default_acts: list[str]) -> tuple[Array, ...]:
    """Shared driver: layout, directions, the input projection hoisted out of the scan, outputs."""
    hsz = c.get("hidden_size", r.shape[-1])
    layout = c.get("layout", 0)
    x = jnp.asarray(x)
    if layout:
        x = jnp.swapaxes(x, 0, 1)  # -> (seq, batch, input); initial states were swapped by _initial
    direction = c.get("direction", "forward")
    dirs = ["forward", "reverse"] if direction == "bidirectional" else [direction]
    acts = _rnn_acts(c, default_acts * len(dirs))
    clip = c.get("clip")
    batch = x.shape[1]
    ys, finals = [], []
    for d, dname in enumerate(dirs):
        wd, rd = jnp.asarray(w[d], x.dtype), jnp.asarray(r[d], x.dtype)
        if b is not None:
            wb, rb = jnp.asarray(b[d][: n_gates * hsz], x.dtype), jnp.asarray(b[d][n_gates * hsz:], x.dtype)
        else:
            wb = rb = jnp.zeros(n_gates * hsz, x.dtype)
        xs = jnp.einsum("tbi,gi->tbg", x, wd) + wb  # input projection for every step at once
        init = state0(d, batch)
        f = acts[d * n_acts:(d + 1) * n_acts]

        def step(state: tuple[Array, ...], xt: Array, rd: Array = rd, rb: Array = rb, f: list = f,
                 d: int = d) -> tuple[tuple[Array, ...], Array]:
            new = cell(state, xt, rd, rb, f, clip, d)
            return new, new[0]

        last, y = lax.scan(step, init, xs, reverse=dname == "reverse")
        ys.append(y)
        finals.append(last)
    y = jnp.stack(ys, axis=1)  # (seq, dirs, batch, hidden)
    states = [jnp.stack([f[i] for f in finals], axis=0) for i in range(len(finals[0]))]  # (dirs, batch, hidden)
    if layout:
        y = jnp.transpose(y, (2, 0, 1, 3))
        states = [jnp.swapaxes(s, 0, 1) for s in states]
    return _opt_out(c, y, *states)


def _clip(v: Array, clip: float | None) -> Array:
    return v if clip is None else jnp.clip(v, -clip, clip)


def _initial(c: Ctx, h: Array | None, hsz: int, dtype: Any) -> Callable[[int, int], Array]:
    """Initial state of direction d: (dirs, batch, hidden), or (batch, dirs, hidden) with layout=1."""
    if h is None:
        return lambda d, batch: jnp.zeros((batch, hsz), dtype)
    h = jnp.asarray(h, dtype)
    if c.get("layout", 0):
        h = jnp.swapaxes(h, 0, 1)
    return lambda d, batch: h[d]


def RNN(c: Ctx, x: Array, w: Array, r: Array, b: Array | None = None, seq_lens: Array | None = None,
        h0: Array | None = None) -> tuple[Array, ...]:
    hsz = c.get("hidden_size", r.shape[-1])
    init_h = _initial(c, h0, hsz, x.dtype)

    def cell(state: tuple[Array, ...], xt: Array, rd: Array, rb: Array, f: list, clip: float | None,
             d: int) -> tuple[Array, ...]:
        return (f[0](_clip(xt + state[0] @ rd.T + rb, clip)),)

    return _rnn(c, x, w, r, b, 1, cell, lambda d, n: (init_h(d, n),), 1, ["Tanh"])


def GRU(c: Ctx, x: Array, w: Array, r: Array, b: Array | None = None, seq_lens: Array | None = None,
        h0: Array | None = None) -> tuple[Array, ...]:
    hsz = c.get("hidden_size", r.shape[-1])
    lbr = c.get("linear_before_reset", 0)
    init_h = _initial(c, h0, hsz, x.dtype)

    def cell(state: tuple[Array, ...], xt: Array, rd: Array, rb: Array, f: list, clip: float | None,
             d: int) -> tuple[Array, ...]:
        h = state[0]
        xz, xr, xh = jnp.split(xt, 3, axis=-1)
        rz, rr, rh = jnp.split(rd, 3, axis=0)
        bz, br, bh = jnp.split(rb, 3)
        z = f[0](_clip(xz + h @ rz.T + bz, clip))
        rg = f[0](_clip(xr + h @ rr.T + br, clip))
        if lbr:
            hh = f[1](_clip(xh + rg * (h @ rh.T + bh), clip))
        else:
            hh = f[1](_clip(xh + (rg * h) @ rh.T + bh, clip))
        return ((1 - z) * hh + z * h,)

    return _rnn(c, x, w, r, b, 3, cell, lambda d, n: (init_h(d, n),), 2, ["Sigmoid", "Tanh"])


def LSTM(c: Ctx, x: Array, w: Array, r: Array, b: Array | None = None, seq_lens: Array | None = None,
         h0: Array | None = None, c0: Array | None = None, p: Array | None = None) -> tuple[Array, ...]:
    hsz = c.get("hidden_size", r.shape[-1])
    init_h, init_c = _initial(c, h0, hsz, x.dtype), _initial(c, c0, hsz, x.dtype)
    peep = None if p is None else jnp.asarray(p, x.dtype)

    def cell(state: tuple[Array, ...], xt: Array, rd: Array, rb: Array, f: list, clip: float | None,
             d: int) -> tuple[Array, ...]:
        h, cc = state
        gi, go, gf, gc = jnp.split(xt + h @ rd.T + rb, 4, axis=-1)
        if peep is not None:
            pi, po, pf = jnp.split(peep[d], 3)
            gi, gf = gi + pi * cc, gf + pf * cc
        i, fg = f[0](_clip(gi, clip)), f[0](_clip(gf, clip))
        cn = fg * cc + i * f[1](_clip(gc, clip))
        if peep is not None:
            go = go + po * cn
        o = f[0](_clip(go, clip))
        return (o * f[2](cn), cn)

    return _rnn(c, x, w, r, b, 4, cell, lambda d, n: (init_h(d, n), init_c(d, n)), 3,
                ["Sigmoid", "Tanh", "Tanh"])


# ----------------------------------------------------------------------------------------------------------
# Registry, checks and the translator
# ----------------------------------------------------------------------------------------------------------
OPS: dict[str, Callable[..., Any]] = {
    f.__name__: f for f in (
        Add, Sub, Mul, Div, Pow, Mod, Neg, Abs, Sqrt, Exp, Log, Reciprocal, Floor, Ceil, Round, Sign, Cos, Sin,
        Tan, Atan, Erf, IsNaN, IsInf, Relu, LeakyRelu, PRelu, Elu, Selu, Sigmoid, HardSigmoid, HardSwish, Tanh,
        Softplus, Softsign, Mish, Gelu, Clip, Equal, Less, LessOrEqual, Greater, GreaterOrEqual, Not, And, Or,
        Xor, Where, Min, Max, Sum, Mean, Identity, Dropout, Cast, CastLike, MatMul, Gemm, Einsum, Softmax,
        LogSoftmax, LayerNormalization, BatchNormalization, InstanceNormalization, ReduceSum, ReduceMean,
        ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSumExp, ArgMax, ArgMin,
        CumSum, Conv, ConvTranspose, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, Shape, Size,
        Constant, ConstantOfShape, Range, Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat, Split, Slice,
        Expand, Tile, Pad, Trilu, Gather, GatherElements, GatherND, Scatter, ScatterElements, ScatterND, TopK,
        Resize, RNN, GRU, LSTM,
    )
}
"""ONNX operator type -> its JAX translation."""

_IMPOSSIBLE = {
    "NonZero": "output shape depends on the data: impossible under jax.jit",
    "Unique": "output shape depends on the data: impossible under jax.jit",
    "NonMaxSuppression": "output shape depends on the data: impossible under jax.jit",
    "Compress": "output shape depends on the data: impossible under jax.jit",
    "If": "control flow (subgraphs) is not translated",
    "Loop": "control flow (subgraphs) is not translated",
    "Scan": "control flow (subgraphs) is not translated",
}


def _variant_problem(op: str, attrs: dict[str, Any], node: Any) -> str | None:
    """Why a supported operator's variant is not (None if it is supported)."""
    if op == "MaxPool" and len([o for o in node.output if o]) > 1:
        return "the Indices output is not supported"
    if op in ("RNN", "GRU", "LSTM"):
        if len(node.input) > 4 and node.input[4]:
            return "sequence_lens is not supported"
        if attrs.get("input_forget", 0):
            return "input_forget=1 is not supported"
    if op == "Resize":
        if attrs.get("mode", "nearest") not in ("nearest", "linear"):
            return f"mode '{attrs['mode']}' is not supported (nearest and linear only)"
        if attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
            return "coordinate_transformation_mode 'tf_crop_and_resize' is not supported"
        if attrs.get("antialias", 0):
            return "antialias is not supported"
        if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            return "keep_aspect_ratio_policy other than 'stretch' is not supported"
    if op == "Pad" and attrs.get("mode", "constant") not in ("constant", "reflect", "edge", "wrap"):
        return f"mode '{attrs['mode']}' is not supported"
    if op == "ScatterElements" or op == "ScatterND":
        if attrs.get("reduction", "none") not in ("none", "add", "mul", "max", "min"):
            return f"reduction '{attrs['reduction']}' is not supported"
    if op == "Constant" and "sparse_value" in attrs:
        return "sparse_value is not supported"
    return None


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import AttributeProto, helper, numpy_helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type == AttributeProto.TENSOR:
            out[a.name] = numpy_helper.to_array(a.t)
        elif a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS, AttributeProto.SPARSE_TENSOR):
            out[a.name] = a  # kept opaque: the operators using them are unsupported
        else:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [s.decode() for s in v]
            out[a.name] = v
    return out


def _load(model: Any) -> Any:
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, (bytes, bytearray)):
            return onnx.load_from_string(bytes(model))
        return onnx.load(str(Path(model)))
    except Exception as exc:  # noqa: BLE001 - any reader error is a load error
        raise ModelLoadError(f"cannot read ONNX model {model!r}: {exc}") from exc


def to_jax(model: Any) -> tuple[Callable[..., tuple[Any, ...]], list[str], list[str]]:
    """Translate an ONNX model (path, bytes or ``onnx.ModelProto``) into a JAX function.

    Returns ``(fn, input_names, output_names)``: ``fn(*arrays)`` takes the graph inputs in order and returns
    the tuple of graph outputs; it is traceable by ``jax.jit``. Raises
    :class:`~ml4ep.errors.UnsupportedOperatorError` listing every unsupported node before any tracing.
    """
    _bind()
    from onnx import numpy_helper

    proto = _load(model)
    graph = proto.graph
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 17)

    problems: list[tuple[str, str, str]] = []
    nodes = []
    for i, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{i}"
        attrs = _attributes(node)
        if node.domain not in ("", "ai.onnx"):
            problems.append((name, f"{node.domain}.{node.op_type}", "custom operator domains are not supported"))
        elif node.op_type in _IMPOSSIBLE:
            problems.append((name, node.op_type, _IMPOSSIBLE[node.op_type]))
        elif node.op_type not in OPS:
            problems.append((name, node.op_type, "no JAX translation for this operator"))
        else:
            why = _variant_problem(node.op_type, attrs, node)
            if why:
                problems.append((name, node.op_type, why))
        nodes.append((node.op_type, name, attrs, list(node.input), list(node.output)))
    if problems:
        raise UnsupportedOperatorError(problems, source=f"ONNX -> JAX ({graph.name or 'graph'})")

    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    input_names = [i.name for i in graph.input if i.name not in consts]
    output_names = [o.name for o in graph.output]

    def fn(*arrays: Any) -> tuple[Any, ...]:
        if len(arrays) != len(input_names):
            raise Ml4epError(f"expected {len(input_names)} inputs {input_names}, got {len(arrays)}")
        env: dict[str, Any] = dict(consts)
        for n, a in zip(input_names, arrays):
            env[n] = jnp.asarray(a)
        for op, name, attrs, ins, outs in nodes:
            args = [env[n] if n else None for n in ins]
            static = all(a is None or _is_np(a) for a in args)
            ctx = Ctx(op, name, attrs, np if static else jnp, opset, len(outs))
            res = OPS[op](ctx, *args)
            res = res if isinstance(res, tuple) else (res,)
            for n, v in zip(outs, res):
                if n:
                    env[n] = np.asarray(v) if _is_np(v) else v
        return tuple(env[n] for n in output_names)

    return fn, input_names, output_names
