"""Shape and data-movement operators against onnxruntime, plus folding of symbolic shape values."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ml4ep.infer as mi
from ml4ep.errors import ShapeError, UnsupportedOperatorError
from ml4ep.infer import dims as D
from ml4ep.infer.graph import Graph, Node
from ml4ep.infer.ops import shape_ops as S
from ml4ep.infer.ops.common import CannotFold
from opcheck import check_op, finish_model, rand, run_ort

I64_MAX = np.iinfo(np.int64).max
I64_MIN = np.iinfo(np.int64).min
N = D.Dim.symbol("N")

pytestmark = pytest.mark.usefixtures("strict_warnings")


def i64(*v) -> np.ndarray:
    return np.array(v, dtype=np.int64)


def C(op: str, inputs: list, attrs: dict | None = None, const=(), n: int = 1, sym=None) -> dict:
    """A test case: one ``op`` node; inputs in ``const`` are initializers; ``sym`` = {input: {axis: name}}."""
    return {"op": op, "inputs": inputs, "attrs": attrs or {}, "const": const, "n": n, "sym": sym or {}}


def B(k: int = 0) -> dict:
    """Input ``k`` has the symbolic batch axis N (every symbolic test input has batch 3)."""
    return {k: {0: "N"}}


def check_cases(cases: list[dict]) -> None:
    """All cases as independent nodes of one model (one g++ run), compared output by output with onnxruntime.

    Each case's inputs are graph inputs (or initializers) and its outputs graph outputs, so the views copy
    here; aliasing inside a graph is tested separately.
    """
    nodes, graph_inputs, inits, outs, feeds, labels = [], [], [], [], {}, {}
    for ci, c in enumerate(cases):
        ins = list(c["inputs"])
        while ins and ins[-1] is None:
            ins.pop()
        names = []
        for k, x in enumerate(ins):
            if x is None:
                names.append("")
                continue
            name = f"c{ci}_x{k}"
            names.append(name)
            x = np.asarray(x)
            if k in c["const"]:
                inits.append(numpy_helper.from_array(x, name))
            else:
                shape: list = list(x.shape)
                for ax, sym in c["sym"].get(k, {}).items():
                    assert x.shape[ax] == 3, "symbolic test inputs have batch 3"
                    shape[ax] = sym
                elem = helper.np_dtype_to_tensor_dtype(x.dtype)
                graph_inputs.append(helper.make_tensor_value_info(name, elem, shape))
                feeds[name] = x
        o = [f"c{ci}_y{j}" for j in range(c["n"])]
        desc = f"case {ci}: {c['op']} {c['attrs']} inputs {[np.shape(x) for x in ins]}"
        labels.update({name: desc for name in o})
        outs += o
        nodes.append(helper.make_node(c["op"], names, o, name=f"case{ci}_{c['op']}", **c["attrs"]))
    out_info = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs]
    model = finish_model(helper.make_graph(nodes, "cases", graph_inputs, out_info, inits), 21)
    expected = run_ort(model, feeds)
    got = mi.compile(model).run(feeds)
    for name, e in zip(outs, expected):
        g = got[name]
        assert (g.shape, g.dtype) == (e.shape, e.dtype), f"{labels[name]}: {g.dtype}{g.shape}, ort {e.dtype}{e.shape}"
        np.testing.assert_array_equal(g, e, err_msg=labels[name])


# ------------------------------------------------------------------------------------------------------
# views

def test_views():
    check_cases([
        C("Reshape", [rand(2, 3, 4), i64(4, -1)], const=(1,)),
        C("Reshape", [rand(3, 4, 5), i64(0, -1)], const=(1,), sym=B()),
        C("Reshape", [rand(3, 4, 5), i64(-1, 20)], const=(1,), sym=B()),
        C("Reshape", [rand(2, 3, 4), i64(0, 12)], const=(1,)),
        C("Reshape", [rand(2, 3, 4), i64(6, 4)], {"allowzero": 1}, const=(1,)),
        C("Reshape", [np.arange(12, dtype=np.int64), i64(3, 4)], const=(0, 1)),  # folded
        C("Flatten", [rand(2, 3, 4)], {"axis": 0}),
        C("Flatten", [rand(2, 3, 4)], {"axis": -1}),
        C("Flatten", [rand(3, 4, 5)], {"axis": 2}, sym=B()),
        C("Squeeze", [rand(2, 1, 3, 1), i64(1, -1)], const=(1,)),
        C("Squeeze", [rand(1, 3, 1)]),
        C("Squeeze", [rand(3, 1, 4), i64(1)], const=(1,), sym=B()),
        C("Unsqueeze", [rand(2, 3, dtype=np.int64, low=-9, high=9), i64(0, -1)], const=(1,)),
        C("Unsqueeze", [rand(3, 4), i64(1)], const=(1,), sym=B()),
        C("Identity", [rand(3, 2, dtype=np.int32, low=-9, high=9)]),
        C("Unsqueeze", [np.array(2.5, np.float32), i64(0)], const=(1,)),  # scalar -> (1,)
        C("Squeeze", [rand(1), i64(0)], const=(1,)),  # (1,) -> scalar
        C("Flatten", [rand(4)], {"axis": 1}),
    ])


def test_check_op_symbolic_reshape():
    check_op("Reshape", [rand(3, 4, 5), i64(0, 2, -1)], const=(1,), symbolic={0: {0: "N"}})


# ------------------------------------------------------------------------------------------------------
# Transpose

def test_transpose():
    check_cases([
        C("Transpose", [rand(2, 3, 4)]),
        C("Transpose", [rand(2, 40, 50)], {"perm": [0, 2, 1]}),  # tiled
        C("Transpose", [rand(3, 2, 3, 4)], {"perm": [0, 2, 3, 1]}, sym=B()),
        C("Transpose", [rand(2, 3, 1, 4, dtype=np.int64, low=-50, high=50)], {"perm": [3, 2, 0, 1]}),
        C("Transpose", [rand(3, 6)], {"perm": [1, 0]}, sym=B()),  # symbolic strides
        C("Transpose", [rand(3, 4, 5, dtype=np.bool_)], {"perm": [1, 0, 2]}),
    ])


# ------------------------------------------------------------------------------------------------------
# Concat and Split

def test_concat():
    def r(*s, dtype=np.float32):
        return rand(*s, dtype=dtype, low=-9, high=9)

    check_cases([
        C("Concat", [r(2, 3), r(2, 4), r(2, 1)], {"axis": 1}),
        C("Concat", [r(2, 3, 4), r(2, 3, 2)], {"axis": -1}, const=(1,)),
        C("Concat", [r(3, 4), r(3, 4)], {"axis": 0}, sym={0: {0: "N"}, 1: {0: "N"}}),  # 2*N
        C("Concat", [r(3, 2, 5), r(3, 1, 5)], {"axis": 1}, sym={0: {0: "N"}, 1: {0: "N"}}),
        C("Concat", [r(2, 2, 5), np.zeros((2, 0, 5), np.float32), r(2, 1, 5)], {"axis": 1}, const=(1,)),
        C("Concat", [r(2, 2, dtype=np.int64), r(1, 2, dtype=np.int64)], {"axis": 0}),
        C("Concat", [r(4)], {"axis": 0}),
    ])


def test_split():
    check_cases([
        C("Split", [rand(6, 4)], {"axis": 0, "num_outputs": 3}, n=3),
        C("Split", [rand(2, 6, 3), i64(2, 3, 1)], {"axis": 1}, const=(1,), n=3),
        C("Split", [rand(2, 7)], {"axis": -1, "num_outputs": 3}, n=3),  # uneven: 3, 3, 1
        C("Split", [rand(3, 8), i64(5, 3)], {"axis": 1}, const=(1,), n=2, sym=B()),
        C("Split", [rand(3, 4, 2, dtype=np.int64, low=-9, high=9), i64(0, 4)], {"axis": 1}, const=(1,), n=2),
    ])


# ------------------------------------------------------------------------------------------------------
# Slice

def _slice(shape, starts, ends, axes=None, steps=None, sym=None, dtype=np.float32):
    x = rand(*shape, dtype=dtype, low=-9, high=9)
    ins = [x, i64(*starts), i64(*ends), None if axes is None else i64(*axes),
           None if steps is None else i64(*steps)]
    return C("Slice", ins, const=(1, 2, 3, 4), sym=sym)


def test_slice():
    check_cases([
        _slice((5, 6), [1, 2], [4, 5]),
        _slice((5, 6, 7), [-3], [I64_MAX], [-1]),
        _slice((5, 6), [4, -1], [0, -100], [0, 1], [-1, -2]),  # negative steps, clamping
        _slice((5, 6), [-1], [I64_MIN], [1], [-1]),  # whole axis reversed
        _slice((4, 5), [10], [20], [1]),  # empty slice
        _slice((4, 5), [3], [1], [0]),  # empty: end before start
        _slice((1, 4, 1, 3), [0, 1], [1, 3], [0, 1], dtype=np.int64),
        _slice((3, 6, 4), [1, 0], [I64_MAX, 6], [1, 2], [2, 1], sym=B()),
        _slice((3, 6), [0], [I64_MAX], [0], sym=B()),  # whole symbolic axis
        _slice((3, 6), [-1], [I64_MAX], [0], sym=B()),  # last row of the batch
        _slice((3, 6), [-1, 1], [I64_MIN, 5], [0, 1], [-1, 1], sym=B()),  # reversed batch
        _slice((3, 6), [0], [1], [0], sym=B()),  # first row of the batch
    ])


# ------------------------------------------------------------------------------------------------------
# Gather

def test_gather():
    check_cases([
        C("Gather", [rand(5, 4), i64(0, 3, -1)], {"axis": 0}, const=(1,)),  # constant rows, negative
        C("Gather", [rand(5, 4, 3), i64(1, 2)], {"axis": 1}, const=(1,)),  # contiguous block: a slice
        C("Gather", [rand(5, 4), np.array(-2, np.int64)], {"axis": 1}, const=(1,)),  # scalar: rank drops
        C("Gather", [rand(5, 4, 3), i64([0, -1], [2, 2])], {"axis": 1}),  # run-time 2-D indices
        C("Gather", [rand(6, 3), np.array([5, 0, -6], np.int32)], {"axis": 0}),  # run-time int32
        C("Gather", [rand(3, 7), i64(6, 0, -2)], {"axis": 1}, sym=B()),
        C("Gather", [rand(3, 7), np.array(-1, np.int64)], {"axis": 0}, const=(1,), sym=B()),
        C("Gather", [rand(3, 7), i64(2, 0)], {"axis": 0}, const=(1,), sym=B()),
        C("Gather", [rand(4, 3, dtype=np.int64, low=-9, high=9), i64(3, 1, 3)], {"axis": 0}, const=(0,)),
        C("Gather", [rand(3, 4, 5), i64(4, 0, -1, 2)], {"axis": -1}, const=(1,), sym=B()),
        C("Gather", [rand(20, 2), np.arange(19, -1, -1, dtype=np.int64)], {"axis": 0}, const=(1,)),  # table
    ])


def test_gather_out_of_range():
    model = _graph_model(
        [helper.make_node("Gather", ["x", "i"], ["y"], axis=0, name="g_const"),
         helper.make_node("Gather", ["x", "j"], ["z"], axis=0, name="g_runtime")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 4]),
         helper.make_tensor_value_info("j", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("y", "z")],
        [numpy_helper.from_array(i64(5), "i")],
    )
    with pytest.raises(UnsupportedOperatorError, match="out of range"):
        mi.compile(model)
    model.graph.node.pop(0)
    model.graph.output.pop(0)
    compiled = mi.compile(model)
    x = rand(5, 4)
    np.testing.assert_array_equal(compiled.run({"x": x, "j": i64(-5, 4)})["z"], x[[0, 4]])
    with pytest.raises(Exception, match="out of range"):
        compiled.run({"x": x, "j": i64(0, 5)})


# ------------------------------------------------------------------------------------------------------
# constants and shapes

def test_constants_and_shapes():
    t = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3))
    check_cases([
        C("Constant", [], {"value": t}),
        C("Constant", [], {"value_ints": [3, -1, 7]}),
        C("Constant", [], {"value_float": 2.5}),
        C("ConstantOfShape", [i64(2, 3)], const=(0,)),
        C("ConstantOfShape", [i64(2)], {"value": numpy_helper.from_array(i64(7))}, const=(0,)),
        C("Shape", [rand(3, 4, 5)], sym=B()),
        C("Shape", [rand(3, 4, 5)], {"start": 1, "end": -1}),
        C("Shape", [rand(3, 4, 5)], {"start": -2}, sym=B()),
        C("Size", [rand(3, 4)], sym=B()),
        C("Size", [rand(3, 4)]),
        C("Range", [np.array(1, np.int64), np.array(11, np.int64), np.array(3, np.int64)], const=(0, 1, 2)),
        C("Range", [np.array(2.0, np.float32), np.array(-1.0, np.float32), np.array(-0.5, np.float32)],
          const=(0, 1, 2)),
        C("Range", [np.array(5, np.int32), np.array(1, np.int32), np.array(1, np.int32)], const=(0, 1, 2)),
    ])


# ------------------------------------------------------------------------------------------------------
# Expand, Tile

def test_expand_tile():
    def r(*s, dtype=np.float32):
        return rand(*s, dtype=dtype, low=-9, high=9)

    check_cases([
        C("Expand", [r(3, 1), i64(2, 3, 4)], const=(1,)),
        C("Expand", [r(3, 1, 4), i64(1, 5, 1)], const=(1,), sym=B()),
        C("Expand", [r(1, 4), i64(3, 1)], const=(1,)),
        C("Expand", [r(2, 3, dtype=np.int64), i64(2, 3)], const=(1,)),
        C("Tile", [r(2, 3), i64(2, 3)], const=(1,)),
        C("Tile", [r(3, 4), i64(1, 2)], const=(1,), sym=B()),
        C("Tile", [r(2, 1, 3, dtype=np.int64), i64(2, 4, 1)], const=(1,)),
        C("Tile", [r(2, 3), i64(0, 1)], const=(1,)),  # zero repeats: empty
    ])


# ------------------------------------------------------------------------------------------------------
# Pad

def test_pad():
    def pad(shape, pads, mode, value=None, axes=None, sym=None, dtype=np.float32):
        return C("Pad", [rand(*shape, dtype=dtype, low=-9, high=9), pads, value, axes], {"mode": mode},
                 const=(1, 2, 3), sym=sym)

    check_cases([
        pad((2, 3, 4), i64(0, 1, 2, 0, 2, 1), "constant", np.array(1.5, np.float32)),
        pad((3, 4), i64(1, -1, 0, 2), "constant"),  # negative pads crop
        pad((3, 5), i64(2, 3, 1, 4), "reflect"),
        pad((3, 3, 4), i64(1, 2, 3, 0), "edge", axes=i64(1, -1), sym=B()),
        pad((3, 4), i64(2, 5), "wrap", axes=i64(1)),
        pad((2, 3), i64(1, 1, 0, 1), "constant", np.array(-7, np.int64), dtype=np.int64),
        pad((3, 2, 4), i64(0, 0, 1, 0, 0, 1), "reflect", sym=B()),
    ])


# ------------------------------------------------------------------------------------------------------
# graphs: symbolic shape values through several nodes, as PyTorch exports them

def _graph_model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    inferred = onnx.shape_inference.infer_shapes(m)
    for out, inf in zip(m.graph.output, inferred.graph.output):
        if not out.type.tensor_type.elem_type:
            out.type.tensor_type.elem_type = inf.type.tensor_type.elem_type
    return m


def _compare(model, feeds):
    exp = run_ort(model, feeds)
    got = mi.compile(model).run(feeds)
    for o, e in zip(model.graph.output, exp):
        np.testing.assert_array_equal(got[o.name], e)


def test_view_batch_minus_one():
    """x.view(x.size(0), -1): Shape -> Gather -> Unsqueeze -> Concat -> Reshape, then a Range over N."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["spec"], axis=0),
        helper.make_node("Reshape", ["x", "spec"], ["y"]),
        helper.make_node("Range", ["zero", "n", "one"], ["r"]),
        helper.make_node("Slice", ["s", "one1", "big"], ["tail"]),
        helper.make_node("Expand", ["y", "spec2"], ["z"]),
        helper.make_node("Concat", ["n1", "tail"], ["shape_out"], axis=0),
        helper.make_node("ConstantOfShape", ["s"], ["ones"], value=numpy_helper.from_array(i64(1))),
        helper.make_node("Concat", ["n1", "four"], ["spec3"], axis=0),
        helper.make_node("Expand", ["row", "spec3"], ["rows"]),  # constant row broadcast over the batch
    ]
    inits = [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(i64(0), "ax0"),
        numpy_helper.from_array(i64(-1), "minus1"),
        numpy_helper.from_array(i64(1), "one1"),
        numpy_helper.from_array(i64(I64_MAX), "big"),
        numpy_helper.from_array(i64(2, 1, 1), "spec2"),
        numpy_helper.from_array(i64(4), "four"),
        numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "row"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])]
    outputs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None)
               for o in ("y", "r", "z", "shape_out", "ones", "rows")]
    model = _graph_model(nodes, inputs, outputs, inits)
    _compare(model, {"x": rand(5, 3, 4)})


def test_views_alias_and_copy():
    """Chained views inside a graph share storage; a view from a graph input into an output copies."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Flatten", ["a"], ["b"], axis=1),
        helper.make_node("Unsqueeze", ["b", "ax"], ["c"]),
        helper.make_node("Squeeze", ["c", "ax"], ["d"]),
        helper.make_node("Reshape", ["d", "spec"], ["e"]),
        helper.make_node("Relu", ["e"], ["f"]),
        helper.make_node("Reshape", ["x", "spec"], ["g"]),
    ]
    inits = [numpy_helper.from_array(i64(2), "ax"), numpy_helper.from_array(i64(-1, 6), "spec")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])]
    outputs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in ("f", "g")]
    model = _graph_model(nodes, inputs, outputs, inits)
    _compare(model, {"x": rand(4, 2, 3)})
    g, plan = mi.lower(model)
    views = [n for n in g.nodes if n.op_type in ("Flatten", "Unsqueeze", "Squeeze", "Reshape")]
    from ml4ep.infer.codegen import Emitter

    cg = Emitter(g, plan)
    codes = {n.outputs[0]: S.emit_view_copy(n, cg) for n in views}
    assert all(codes[o] == "" for o in ("b", "c", "d", "e")), codes
    assert "memcpy" in codes["g"]


def test_copy_forms():
    """The forms the GPU code prints differently (one kernel per node, a device copy, one thread per value)."""
    def r(*s, dtype=np.float32):
        return rand(*s, dtype=dtype, low=-9, high=9)

    both = {0: {0: "N"}, 1: {0: "N"}, 2: {0: "N"}}
    check_cases([
        C("Concat", [r(3, 2), r(2, 2), r(1, 2)], {"axis": 0}, const=(1,)),  # outer 1: no row index
        C("Concat", [r(3, 1, 4), r(3, 2, 4), r(3, 3, 4)], {"axis": 1}, sym=both),
        C("Split", [r(3, 9, dtype=np.int32)], {"axis": 1, "num_outputs": 3}, n=3, sym=B()),
        C("Gather", [r(5, 4, 3), i64(2, 0, 3)], {"axis": 1}, const=(1,)),  # a few constant indices, rows of 3
        C("Gather", [r(3, 5), np.array([[4, -5], [0, 1]], np.int32)], {"axis": 1}, sym=B()),
        _slice((5, 6), [2, 3], [3, 4]),  # one element
        C("Expand", [np.array(1.5, np.float32), i64(2, 3)], const=(1,)),  # a scalar broadcast
        C("Transpose", [r(3, 5, 1, 7, dtype=np.uint8)], {"perm": [2, 3, 0, 1]}, sym=B()),
        C("Tile", [r(3, 2, dtype=np.bool_), i64(1, 3)], const=(1,), sym=B()),
        C("Pad", [r(3, 4), i64(0, 2, 0, 1), np.array(2.5, np.float32)], {"mode": "constant"}, const=(1,),
          sym=B()),  # the padding value given at run time
        C("Pad", [r(2, 3, 4), i64(0, -1, 1, 0, 0, 2)], {"mode": "constant"}, const=(1,)),  # crop and pad
        C("Pad", [r(2, 3, 4), i64(0, 0, 0, 0, 0, 0)], {"mode": "edge"}, const=(1,)),  # no padding: a copy
    ])


# ------------------------------------------------------------------------------------------------------
# check() rejections

def test_check_rejects_runtime_slice_bounds_and_range():
    nodes = [
        helper.make_node("Slice", ["x", "st", "en"], ["y"]),
        helper.make_node("Range", ["st0", "n", "one"], ["r"]),
        helper.make_node("Pad", ["x", "pads"], ["p"], mode="bogus"),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4]),
        helper.make_tensor_value_info("st", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("en", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("n", TensorProto.INT64, []),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "st0"),
             numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(i64(1, 1, 1, 1), "pads")]
    outputs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in ("y", "r", "p")]
    model = _graph_model(nodes, inputs, outputs, inits)
    problems = mi.check(model)
    # Slice bounds and Range limits given at run time are shape arguments: compiled per value when called,
    # so only the bad Pad mode is a problem now
    assert [(p.op_type, "bogus" in p.reason) for p in problems] == [("Pad", True)], problems
    good = _graph_model(nodes[:2], inputs, outputs[:2], inits[:2])
    m = mi.compile(good)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    for st, en, n in ((0, 2, 3), (1, 3, 5)):
        y, r = m(x, i64(st), i64(en), np.array(n, np.int64))
        np.testing.assert_array_equal(y, x[st:en])
        np.testing.assert_array_equal(r, np.arange(0, n, dtype=np.int64))


def test_shape_errors_name_the_node():
    nodes = [helper.make_node("Reshape", ["x", "spec"], ["y"], name="bad_reshape")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])]
    inits = [numpy_helper.from_array(i64(5, -1), "spec")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)]
    problems = mi.check(_graph_model(nodes, inputs, outputs, inits))
    assert len(problems) == 1 and problems[0].node == "bad_reshape" and "reshape" in problems[0].reason


# ------------------------------------------------------------------------------------------------------
# folding and inference on symbolic shape values (oracle: the arithmetic written out)

def obj(*v) -> np.ndarray:
    a = np.empty(len(v), dtype=object)
    a[:] = list(v)
    return a


def node(op, n_in=1, n_out=1, **attrs) -> Node:
    return Node(op, f"{op.lower()}_t", [f"i{k}" for k in range(n_in)], [f"o{k}" for k in range(n_out)], attrs)


def fold(op, vals, n_out=1, **attrs):
    from ml4ep.infer import ops

    return ops.get(op).fold(node(op, len(vals), n_out, **attrs), vals)


def graph_with(shape, name="i0") -> Graph:
    g = Graph("t", 21)
    g.add_tensor(name, np.float32, shape)
    return g


def test_shape_value_and_size_value():
    g = graph_with((N, 4, 5))
    v = S.shape_value(node("Shape"), g)
    assert v.dtype == object and list(v) == [N, 4, 5]
    assert list(S.shape_value(node("Shape", start=1), g)) == [4, 5]
    assert S.shape_value(node("Shape", start=1), g).dtype == np.int64
    assert S.size_value(node("Size"), g).item() == 20 * N
    assert S.size_value(node("Size"), graph_with((2, 3))).item() == 6
    assert S.fold_shape(node("Shape", end=-2), g)[0].tolist() == [N]


def test_fold_symbolic_gather_concat_unsqueeze_squeeze():
    s = obj(N, 4, 5)
    (n,) = fold("Gather", [s, np.array(0, np.int64)], axis=0)
    assert n.shape == () and n.item() == N
    (tail,) = fold("Gather", [s, i64(-2, -1)], axis=0)
    assert tail.dtype == np.int64 and tail.tolist() == [4, 5]  # static again: int64
    (u,) = fold("Unsqueeze", [n, i64(0)])
    assert u.shape == (1,) and u[0] == N
    (c,) = fold("Concat", [u, i64(-1), i64(2) * 10], axis=0)
    assert c.dtype == object and c.tolist() == [N, -1, 20]
    (sq,) = fold("Squeeze", [u, i64(0)])
    assert sq.shape == () and sq.item() == N


def test_fold_symbolic_slice_reshape_expand_tile_transpose_split():
    s = obj(N, 2 * N, 4, 5)
    (sl,) = fold("Slice", [s, i64(1), i64(I64_MAX)])
    assert sl.tolist() == [2 * N, 4, 5]
    (rev,) = fold("Slice", [s, i64(-1), i64(I64_MIN), i64(0), i64(-2)])
    assert rev.tolist() == [5, 2 * N]
    (r,) = fold("Reshape", [s, i64(2, -1)])
    assert r.shape == (2, 2) and r[0, 1] == 2 * N
    (e,) = fold("Expand", [obj(N), i64(3)])
    assert e.tolist() == [N, N, N]
    (t,) = fold("Tile", [obj(N, 3), i64(2)])
    assert t.tolist() == [N, 3, N, 3]
    (tr,) = fold("Transpose", [r])
    assert tr[1, 0] == 2 * N
    a, b = fold("Split", [s, i64(1, 3)], n_out=2, axis=0)
    assert a.tolist() == [N] and b.tolist() == [2 * N, 4, 5]
    (f,) = fold("Flatten", [r], axis=0)
    assert f.shape == (1, 4)


def test_fold_cannot_fold_symbolic_numbers():
    # a numeric tensor of symbolic size cannot be folded: run time takes it (not an ml4ep error)
    with pytest.raises(CannotFold):
        fold("ConstantOfShape", [obj(N, 3)])
    with pytest.raises(CannotFold):
        fold("Reshape", [np.zeros(6, np.float32), obj(N, -1)])
    (r,) = fold("Range", [np.array(0, np.int64), np.array(5, np.int64), np.array(2, np.int64)])
    assert r.tolist() == [0, 2, 4] and r.dtype == np.int64


@pytest.mark.parametrize("shape,spec,expected", [
    ((N, 4, 5), [0, -1], (N, 20)),
    ((N, 4, 5), [-1, 20], (N, 20)),
    ((N, 4, 5), [N, 2, -1], (N, 2, 10)),
    ((2 * N, 3), [N, -1], (N, 6)),
])
def test_reshape_symbolic_infer(shape, spec, expected):
    assert S.reshape_shape(node("Reshape", 2), shape, spec) == expected


def test_reshape_symbolic_infer_errors():
    with pytest.raises(ShapeError, match="reshape_t"):
        S.reshape_shape(node("Reshape", 2), (N, 4, 5), [-1, 3])
    with pytest.raises(ShapeError):
        S.reshape_shape(node("Reshape", 2), (N, 4), [3, 4])


def test_concat_and_slice_symbolic_infer():
    n = node("Concat", 2, axis=0)
    assert S.concat_shape(n, [(N, 4), (N, 4)]) == (2 * N, 4)
    with pytest.raises(ShapeError, match="concat_t"):
        S._infer_concat(n, _graph2((N, 4), (3, 4)))
    # (first, count) of one axis: first is a*N + b
    assert S.slice_axis(N, 0, I64_MAX, 1) == ((0, 0), N)
    assert S.slice_axis(N, 0, N, 1) == ((0, 0), N)
    assert S.slice_axis(N, -1, I64_MAX, 1) == ((1, -1), 1)
    assert S.slice_axis(N, -1, I64_MIN, -1) == ((1, -1), N)
    assert S.slice_axis(4 * N, 0, I64_MAX, 2) == ((0, 0), 2 * N)
    assert S.slice_axis(N, 0, 1, 1) == ((0, 0), 1)
    with pytest.raises(D.SymbolicError):
        S.slice_axis(N, 5, 6, 1)  # N may be shorter than 6: clamping undecidable
    with pytest.raises(D.SymbolicError):
        S.slice_axis(N, 1, I64_MAX, 1)  # N - 1 is not a monomial
    assert S.slice_axis(7, -3, I64_MAX, 1) == ((0, 4), 3)


def _graph2(a, b) -> Graph:
    g = graph_with(a, "i0")
    g.add_tensor("i1", np.float32, b)
    return g


def test_split_and_pad_symbolic_infer():
    g = graph_with((N, 6))
    n = node("Split", 1, 2, axis=1)
    assert [s for _, s in S._infer_split(n, g)] == [(N, 3), (N, 3)]
    n = node("Split", 1, 2, axis=0)
    g2 = graph_with((4 * N, 6))
    assert [s for _, s in S._infer_split(n, g2)] == [(2 * N, 6), (2 * N, 6)]
    g.add_tensor("i1", np.int64, (4,), i64(1, 2, 0, 1))
    with pytest.raises(D.SymbolicError, match="pad_t"):
        S._infer_pad(Node("Pad", "pad_t", ["i0", "i1"], ["o0"], {}), g)


def test_symconst_emit_and_literals():
    from ml4ep.infer.cuda.codegen import CudaEmitter

    class FakeCg:
        device = "cpu"

        def ptr(self, name):
            return "v_" + name

    class FakeCudaCg(FakeCg):
        device = "cuda"
        par_for = CudaEmitter.par_for

    node = Node("SymConst", "sc", [], ["y"], {"value": obj(2 * N, 4)})
    code = S._emit_symconst(node, FakeCg())
    assert code == "v_y[0] = (int64_t(2)*dim_N);\nv_y[1] = 4;\n"
    # on the GPU one thread per value (host code never writes device memory)
    code = S._emit_symconst(node, FakeCudaCg())
    assert code == ("ml4ep_cu::launch(stream, 2, [=] ML4EP_HD (int64_t i) "
                    "{ v_y[i] = i == 0 ? (int64_t(2)*dim_N) : 4; });\n")
    assert S.literal(np.float32(1.5), "float") == "1.5f"
    assert S.literal(I64_MIN, "int64_t") == "int64_t(-9223372036854775807LL - 1)"  # ml4ep.infer.literals
    assert S.literal(True, "bool") == "true"
    assert S.literal(float("-inf"), "float") == "-std::numeric_limits<float>::infinity()"


def test_collapse_merges_contiguous_axes():
    # a full copy of (2, 3, 4) is one run of 24
    assert S.collapse([2, 3, 4], [12, 4, 1], [12, 4, 1]) == [(24, 1, 1)]
    # size-1 axes vanish; broadcast axis keeps stride 0
    assert S.collapse([N, 1, 5], [5, 5, 1], [0, 0, 1]) == [(N, 5, 0), (5, 1, 1)]
    assert S.collapse([3, 0, 2], [2, 2, 1], [2, 2, 1]) is None
