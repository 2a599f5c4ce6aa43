"""Image operators (GridSample, AffineGrid, LpPool, LpNormalization, Col2Im, MaxUnpool, RoiAlign, DeformConv)
against onnxruntime, on shapes other than the ONNX node tests' and with a symbolic batch dimension ``N``.

Each test compiles one model holding several nodes (one C++ compile each keeps the file fast).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

import ml4ep.infer as mi
from ml4ep.errors import Ml4epError
from opcheck import check_model, graph_model

RNG = np.random.default_rng(11)


def _f(*shape, low=-1.0, high=1.0, dtype=np.float32):
    return RNG.uniform(low, high, size=shape).astype(dtype)


_model = partial(graph_model, name="image", opset=20)
_check = partial(check_model, rtol=1e-5, atol=1e-5)


def test_gridsample_modes_and_padding_2d():
    x = _f(3, 2, 5, 6)
    grid = _f(3, 4, 7, 2, low=-1.4, high=1.4)
    nodes, outs = [], []
    for mode in ("linear", "nearest", "cubic"):
        for pad in ("zeros", "border", "reflection"):
            for align in (0, 1):
                o = f"y_{mode}_{pad}_{align}"
                nodes.append(("GridSample", ["x", "g"], [o],
                              {"mode": mode, "padding_mode": pad, "align_corners": align}))
                outs.append(o)
    model = _model(nodes, {"x": x, "g": grid}, outs, sym={"x": {0: "N"}, "g": {0: "N"}})
    compiled = _check(model, {"x": x, "g": grid}, atol=1e-4)
    x2, g2 = _f(2, 2, 5, 6), _f(2, 4, 7, 2, low=-1.4, high=1.4)  # another batch size
    _check(model, {"x": x2, "g": g2}, compiled, atol=1e-4)


def test_affine_grid_into_gridsample_3d():
    theta = np.tile(np.eye(3, 4, dtype=np.float32), (2, 1, 1)) + _f(2, 3, 4, low=-0.3, high=0.3)
    x = _f(2, 2, 3, 4, 5)
    size = np.array([2, 2, 4, 3, 5], np.int64)
    nodes = [("AffineGrid", ["t", "size"], ["grid"], {"align_corners": 0}),
             ("AffineGrid", ["t", "size"], ["grid1"], {"align_corners": 1}),
             ("GridSample", ["x", "grid"], ["y_lin"], {"mode": "linear", "padding_mode": "border"}),
             ("GridSample", ["x", "grid1"], ["y_near"], {"mode": "nearest", "align_corners": 1})]
    model = _model(nodes, {"t": theta, "x": x}, ["grid", "grid1", "y_lin", "y_near"], inits={"size": size},
                   sym={"t": {0: "N"}, "x": {0: "N"}})
    _check(model, {"t": theta, "x": x}, atol=1e-4)


def test_affine_grid_2d():
    theta = _f(3, 2, 3)
    size = np.array([3, 1, 4, 7], np.int64)
    nodes = [("AffineGrid", ["t", "size"], ["g0"], {"align_corners": 0}),
             ("AffineGrid", ["t", "size"], ["g1"], {"align_corners": 1})]
    model = _model(nodes, {"t": theta}, ["g0", "g1"], inits={"size": size}, sym={"t": {0: "N"}})
    _check(model, {"t": theta})


def test_lppool_and_lpnormalization():
    x = _f(3, 2, 7, 6)
    x1 = _f(3, 4, 9)
    nodes = [("LpPool", ["x"], ["p3"], {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1], "p": 3}),
             ("LpPool", ["x"], ["p2"], {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "p": 2}),
             ("LpPool", ["x1"], ["p1"], {"kernel_shape": [3], "dilations": [2], "p": 1}),
             ("LpNormalization", ["x"], ["n1"], {"axis": 1, "p": 1}),
             ("LpNormalization", ["x"], ["n2"], {"axis": -1, "p": 2})]
    model = _model(nodes, {"x": x, "x1": x1}, ["p3", "p2", "p1", "n1", "n2"],
                   sym={"x": {0: "N"}, "x1": {0: "N"}}, opset=18)
    compiled = _check(model, {"x": x, "x1": x1})
    _check(model, {"x": _f(1, 2, 7, 6), "x1": _f(1, 4, 9)}, compiled)


def test_col2im_and_maxunpool():
    # Col2Im: 2 channels, 3x2 blocks on a 6x7 image, strides (2, 1), dilations (1, 2), pads
    img, blk, st, dl, pads = [6, 7], [3, 2], [2, 1], [1, 2], [1, 0, 0, 1]
    nb = [(img[i] + pads[i] + pads[i + 2] - dl[i] * (blk[i] - 1) - 1) // st[i] + 1 for i in range(2)]
    cols = _f(2, 2 * 6, nb[0] * nb[1])
    # MaxUnpool: indices as MaxPool would make them (flat over N, C, H, W), kernel 2, stride 2
    n, c, h, w = 2, 3, 4, 6
    xv = _f(n, c, h // 2, w // 2)
    idx = np.zeros((n, c, h // 2, w // 2), np.int64)
    for a in range(n):
        for b in range(c):
            for i in range(h // 2):
                for j in range(w // 2):
                    di, dj = RNG.integers(0, 2, size=2)
                    idx[a, b, i, j] = ((a * c + b) * h + 2 * i + di) * w + 2 * j + dj
    nodes = [("Col2Im", ["cols", "img", "blk"], ["im"], {"strides": st, "dilations": dl, "pads": pads}),
             ("MaxUnpool", ["xv", "idx"], ["u0"], {"kernel_shape": [2, 2], "strides": [2, 2]}),
             ("MaxUnpool", ["xv", "idx", "oshape"], ["u1"], {"kernel_shape": [2, 2], "strides": [2, 2]})]
    inits = {"img": np.array(img, np.int64), "blk": np.array(blk, np.int64),
             "oshape": np.array([n, c, h + 1, w + 2], np.int64)}
    feeds = {"cols": cols, "xv": xv, "idx": idx}
    model = _model(nodes[:2], feeds, ["im", "u0"], inits=inits, sym={"cols": {0: "N"}}, opset=18)
    _check(model, feeds)
    # with output_shape, indices address the inferred (N, C, 4, 6) tensor, placed at the output's origin as
    # the ONNX reference and node test do (onnxruntime reads them as offsets into the larger output instead)
    model = _model(nodes[1:], {"xv": xv, "idx": idx}, ["u0", "u1"], inits=inits, opset=18)
    got = mi.compile(model).run({"xv": xv, "idx": idx})
    want = np.zeros((n, c, h + 1, w + 2), np.float32)
    want[:, :, :h, :w] = got["u0"]
    np.testing.assert_array_equal(got["u1"], want)


def test_col2im_with_gaps_and_maxunpool_1d_3d():
    # Col2Im: strides larger than the block leave image positions that no block covers (0)
    cols = _f(2, 4, 4)
    # MaxUnpool 1-D (stride 3 > kernel 2) and 3-D, indices into the inferred output
    xv, ix = _f(1, 2, 4), np.array([[[0, 4, 6, 10], [13, 15, 19, 21]]], np.int64)
    xv3, ix3 = _f(1, 1, 1, 2, 2), np.array([[[[[0, 3], [10, 15]]]]], np.int64)
    nodes = [("Col2Im", ["cols", "img", "blk"], ["im"], {"strides": [3, 2]}),
             ("MaxUnpool", ["xv", "ix"], ["u"], {"kernel_shape": [2], "strides": [3]}),
             ("MaxUnpool", ["xv3", "ix3"], ["u3"], {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2]})]
    inits = {"img": np.array([5, 4], np.int64), "blk": np.array([2, 1], np.int64)}
    feeds = {"cols": cols, "xv": xv, "ix": ix, "xv3": xv3, "ix3": ix3}
    model = _model(nodes, feeds, ["im", "u", "u3"], inits=inits, sym={"cols": {0: "N"}}, opset=18)
    _check(model, feeds)
    # a 1-D image, padded and dilated: onnxruntime gets it wrong, the ONNX reference is the oracle
    cols1 = _f(1, 6, 6)
    model = _model([("Col2Im", ["cols1", "img1", "blk1"], ["im1"], {"pads": [1, 2], "dilations": [2]})],
                   {"cols1": cols1}, ["im1"], inits={"img1": np.array([7], np.int64), "blk1": np.array([3], np.int64)},
                   opset=18)
    want = ReferenceEvaluator(model).run(None, {"cols1": cols1})[0]
    np.testing.assert_allclose(mi.compile(model).run({"cols1": cols1})["im1"], want, rtol=1e-6, atol=1e-6)

def test_roialign_and_deformconv():
    x = _f(2, 3, 9, 11, low=-2, high=2)
    rois = np.array([[0.5, 1.0, 6.3, 7.2], [2.0, 0.0, 10.5, 8.9], [-1.0, -0.5, 3.0, 2.0], [4.0, 4.0, 4.5, 4.2]],
                    np.float32)
    bi = np.array([1, 0, 1, 0], np.int64)
    # DeformConv: group 2, offset_group 2, with mask and bias
    xd = _f(2, 4, 6, 7)
    wd = _f(6, 2, 3, 2)
    oh, ow = (6 + 2 - 3) // 1 + 1, (7 + 0 - 2) // 2 + 1
    off = _f(2, 2 * 3 * 2 * 2, oh, ow, low=-1.5, high=1.5)
    mask = _f(2, 2 * 3 * 2, oh, ow, low=0, high=1)
    bias = _f(6)
    nodes = [("RoiAlign", ["x", "rois", "bi"], ["ra"],
              {"output_height": 3, "output_width": 4, "sampling_ratio": 2, "spatial_scale": 0.8}),
             ("RoiAlign", ["x", "rois", "bi"], ["rb"],
              {"output_height": 2, "output_width": 2, "sampling_ratio": 0,
               "coordinate_transformation_mode": "output_half_pixel"}),
             ("RoiAlign", ["x", "rois", "bi"], ["rm"], {"output_height": 2, "output_width": 3, "mode": "max"}),
             ("DeformConv", ["xd", "wd", "off", "bias", "mask"], ["dc"],
              {"group": 2, "offset_group": 2, "pads": [1, 0, 1, 0], "strides": [1, 2]}),
             ("DeformConv", ["xd", "wd", "off"], ["dc0"], {"group": 2, "offset_group": 2, "pads": [1, 0, 1, 0],
                                                          "strides": [1, 2]})]
    model = _model(nodes, {"x": x, "rois": rois, "bi": bi, "xd": xd, "off": off, "mask": mask},
                   ["ra", "rb", "rm", "dc", "dc0"], inits={"wd": wd, "bias": bias},
                   sym={"rois": {0: "R"}, "bi": {0: "R"}, "xd": {0: "N"}, "off": {0: "N"}, "mask": {0: "N"}},
                   opset=19)
    compiled = _check(model, {"x": x, "rois": rois, "bi": bi, "xd": xd, "off": off, "mask": mask}, atol=1e-4)
    feeds = {"x": x, "rois": rois[:2], "bi": bi[:2], "xd": xd[:1], "off": off[:1], "mask": mask[:1]}
    _check(model, feeds, compiled, atol=1e-4)
    # a batch index outside X: an error naming the node (before, the CPU code read past X's end)
    for b in (2, -1):
        bad = dict(feeds, bi=np.array([0, b], np.int64))
        if getattr(compiled, "available", True):
            with pytest.raises(Ml4epError, match="roialign_0.*batch index out of range"):
                compiled.run(bad)


def test_bad_models_name_the_node():
    x, grid = _f(1, 2, 4, 4), _f(1, 3, 3, 3)
    model = _model([("GridSample", ["x", "g"], ["y"], {})], {"x": x, "g": grid}, ["y"])
    with pytest.raises(Ml4epError, match="gridsample_0.*grid of shape"):
        mi.compile(model)
    model = _model([("GridSample", ["x", "g"], ["y"], {"padding_mode": "wrap"})], {"x": x, "g": _f(1, 3, 3, 2)},
                   ["y"])
    problems = mi.check(model)
    assert [p.node for p in problems] == ["gridsample_0"] and "padding_mode 'wrap'" in str(problems[0])
    cols = _f(1, 8, 5)
    model = _model([("Col2Im", ["c", "img", "blk"], ["y"], {})], {"c": cols}, ["y"],
                   inits={"img": np.array([4, 4], np.int64), "blk": np.array([2, 2], np.int64)}, opset=18)
    with pytest.raises(Ml4epError, match="col2im_0.*does not match block_shape"):
        mi.compile(model)
