"""A small fuzz target (fixed seeds, well under a minute): random graphs with random names through mi.check and
mi.compile, checked against onnxruntime; the same graphs broken in random ways (attributes, wiring, shapes,
bytes) give an ml4ep error, never another exception, a crash or a hang."""

from __future__ import annotations

import random

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import ml4ep.infer as mi
from ml4ep.errors import Ml4epError
from ml4ep.infer import codegen
from ml4ep.infer import dims as D
from ml4ep.infer.onnx_import import load_proto

NAMES = "ab_/.:- \n\"'\\*?%#\x01\u00e9"
UNARY = ["Relu", "Tanh", "Sigmoid", "Abs", "Neg", "Identity", "Softsign", "Floor"]
BINARY = ["Add", "Mul", "Sub", "Max", "Min"]


class _Builder:
    def __init__(self, rng: random.Random):
        self.rng, self.nodes, self.inits, self.used = rng, [], [], set()

    def name(self) -> str:
        while True:
            s = "".join(self.rng.choice(NAMES) for _ in range(self.rng.randrange(1, 7)))
            if s not in self.used:
                self.used.add(s)
                return s

    def node(self, op, inputs, **attrs) -> str:
        out = self.name()
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(), **attrs))
        return out

    def const(self, array) -> str:
        n = self.name()
        self.inits.append(numpy_helper.from_array(np.asarray(array), n))
        return n


def random_model(seed: int) -> onnx.ModelProto:
    """A random DAG over (batch, width) float tensors: elementwise, MatMul, reductions, Softmax, Concat, Gather,
    Slice, Transpose and back; every tensor, node, the graph and the batch dimension with a random name."""
    rng = random.Random(seed)
    b = _Builder(rng)
    batch, width = b.name(), rng.randrange(1, 6)
    xs = [b.name() for _ in range(rng.randrange(1, 3))]
    live = [(x, width) for x in xs]
    for _ in range(rng.randrange(2, 9)):
        t, w = rng.choice(live)
        kind = rng.randrange(9)
        if kind == 0:
            live.append((b.node(rng.choice(UNARY), [t]), w))
        elif kind == 1:
            other = rng.choice([u for u, wu in live if wu == w] + [b.const(np.float32(rng.uniform(-2, 2)))])
            live.append((b.node(rng.choice(BINARY), [t, other]), w))
        elif kind == 2:
            w2 = rng.randrange(1, 6)
            wt = np.asarray(np.random.default_rng(seed).uniform(-1, 1, (w, w2)), np.float32)
            live.append((b.node("MatMul", [t, b.const(wt)]), w2))
        elif kind == 3:
            live.append((b.node(rng.choice(["ReduceSum", "ReduceMax", "ReduceMean"]), [t, b.const(np.array([1]))],
                                keepdims=1), 1))
        elif kind == 4:
            live.append((b.node("Softmax", [t], axis=-1), w))
        elif kind == 5:
            u = rng.choice(live)
            live.append((b.node("Concat", [t, u[0]], axis=1), w + u[1]))
        elif kind == 6:
            idx = np.array([rng.randrange(-w, w) for _ in range(rng.randrange(1, 4))], np.int64)
            live.append((b.node("Gather", [t, b.const(idx)], axis=1), len(idx)))
        elif kind == 7 and w > 1:
            lo = rng.randrange(w - 1)
            live.append((b.node("Slice", [t, b.const(np.array([lo])), b.const(np.array([w])), b.const(np.array([1]))]),
                         w - lo))
        else:
            live.append((b.node("Transpose", [b.node("Transpose", [t], perm=[1, 0])], perm=[1, 0]), w))
    outs = {t: w for t, w in rng.sample(live[len(xs):], k=min(2, len(live) - len(xs)))} or {live[-1][0]: live[-1][1]}
    g = helper.make_graph(
        b.nodes, b.name(), [helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, width]) for x in xs],
        [helper.make_tensor_value_info(t, TensorProto.FLOAT, [batch, w]) for t, w in outs.items()], b.inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def _feed(model, n, seed):
    rng = np.random.default_rng(seed)
    return {i.name: rng.uniform(-2, 2, (n, i.type.tensor_type.shape.dim[1].dim_value)).astype(np.float32)
            for i in model.graph.input}


def test_random_graphs_against_onnxruntime():
    models = [random_model(seed) for seed in range(24)]
    for m in models:
        assert mi.check(m) == []
    compiled = mi.compile_many(models, extra_flags=["-Werror"])
    for seed, (m, c) in enumerate(zip(models, compiled)):
        assert not isinstance(c, BaseException), f"seed {seed}: {c}"
        for n in (1, 3):
            feed = _feed(m, n, seed)
            want = ort.InferenceSession(m.SerializeToString()).run(None, feed)
            got = c.run(feed)
            for o, ref in zip(got, want):
                np.testing.assert_allclose(got[o], ref, rtol=2e-5, atol=2e-5, err_msg=f"seed {seed}, {o!r}")


def _break(model: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto | bytes:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    how = rng.randrange(8)
    node = rng.choice(list(g.node))
    if how == 0:  # an attribute out of range
        node.attribute.append(helper.make_attribute("axis", rng.choice([7, -9, 2**40])))
    elif how == 1:  # an input nobody produces
        node.input[0] = "nowhere"
    elif how == 2:  # two producers of one tensor
        node.output[0] = g.node[0].output[0] if node is not g.node[0] else g.input[0].name
    elif how == 3 and g.initializer:  # a weight of another shape
        t = rng.choice(list(g.initializer))
        t.CopyFrom(numpy_helper.from_array(np.zeros((3, 7, 2), numpy_helper.to_array(t).dtype), t.name))
    elif how == 4:  # an input of another rank or element type
        vi = g.input[0].type.tensor_type
        vi.elem_type = rng.choice([TensorProto.STRING, TensorProto.INT8, TensorProto.FLOAT])
        vi.shape.dim.add().dim_value = rng.choice([0, 2**62, 3])
    elif how == 5:  # a cycle
        node.input[0] = node.output[0]
    elif how == 6:  # no outputs, or an output nobody produces
        del g.output[:]
        if rng.random() < 0.5:
            g.output.append(helper.make_tensor_value_info("ghost", TensorProto.FLOAT, None))
    else:  # flipped bytes
        data = bytearray(m.SerializeToString())
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    return m


def test_broken_graphs_give_ml4ep_errors():
    """Lowered and generated (no compiler call: that is the slow part, checked above): each broken model either
    goes through or raises an ml4ep error."""
    rng = random.Random(1818)
    outcomes = {"ok": 0, "error": 0}
    for k in range(1500):
        broken = _break(random_model(k % 40), rng)
        try:
            mi.check(broken)
            proto, _ = load_proto(broken)
            g, plan = mi.lower(proto)
            with D.scope(g.derived):
                gen = codegen.generate(g, "fuzz", plan)
            assert gen.header and all(c == "\n" or 32 <= ord(c) < 127 for c in gen.header)
            outcomes["ok"] += 1
        except Ml4epError:
            outcomes["error"] += 1
    assert outcomes["error"] > 500 and outcomes["ok"] > 50, outcomes  # both paths were exercised
