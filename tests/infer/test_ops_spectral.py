"""Spectral operators (DFT, STFT, HannWindow, HammingWindow, BlackmanWindow, MelWeightMatrix) against
onnxruntime, on shapes other than the ONNX node tests' and with a symbolic batch dimension ``N``.

Each test compiles one model holding several nodes (one C++ compile each keeps the file fast).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from onnx import TensorProto

import ml4ep.infer as mi
from ml4ep.errors import Ml4epError
from opcheck import check_model, graph_model

RNG = np.random.default_rng(5)


def _f(*shape, dtype=np.float32):
    return RNG.uniform(-1.0, 1.0, size=shape).astype(dtype)


def _i(v) -> np.ndarray:
    return np.array(v, np.int64)


_model = partial(graph_model, name="spectral", opset=20)
_check = partial(check_model, rtol=1e-4, atol=1e-5)


def test_dft_variants():
    xr = _f(3, 12, 5, 1)  # real signals along axis 1 (and 2)
    xc = _f(3, 7, 2)  # complex signals along axis 1
    spec = _f(3, 5, 4, 2)  # one-sided spectra along axis 1
    nodes = [("DFT", ["xr", "", "a1"], ["f_real"], {}),
             ("DFT", ["xr", "", "a2"], ["f_axis2"], {}),
             ("DFT", ["xr", "", "a1"], ["f_onesided"], {"onesided": 1}),
             ("DFT", ["xr", "n16", "a1"], ["f_padded"], {}),
             ("DFT", ["xc", "n5", "am2"], ["f_trunc"], {}),
             ("DFT", ["xc", "", "a1"], ["inv"], {"inverse": 1}),
             ("DFT", ["spec", "", "a1"], ["irfft"], {"inverse": 1, "onesided": 1}),
             ("DFT", ["spec", "n9", "a1"], ["irfft9"], {"inverse": 1, "onesided": 1})]
    inits = {"a1": _i(1), "a2": _i(2), "am2": _i(-2), "n16": _i(16), "n5": _i(5), "n9": _i(9)}
    feeds = {"xr": xr, "xc": xc, "spec": spec}
    model = _model(nodes, feeds, [n[2][0] for n in nodes], inits=inits,
                   sym={k: {0: "N"} for k in feeds})
    compiled = _check(model, feeds)
    _check(model, {"xr": xr[:1], "xc": xc[:1], "spec": spec[:1]}, compiled)


def test_dft_opset17_axis_attribute_and_float64():
    x = _f(2, 6, 2, dtype=np.float64)
    nodes = [("DFT", ["x"], ["y"], {"axis": 1}), ("DFT", ["x"], ["yi"], {"axis": 1, "inverse": 1})]
    model = _model(nodes, {"x": x}, ["y", "yi"], opset=17)
    # computed in double (onnxruntime scales the inverse by a float 1/n, hence rtol 1e-7)
    _check(model, {"x": x}, rtol=1e-7, atol=1e-12)


def test_stft_and_windows():
    sig = _f(2, 40, 1)
    csig = _f(2, 30, 2)
    # windows feeding STFT are not graph outputs themselves: a folded tensor that is both a graph output and
    # another node's input is read before it is written (passes/fold.py _materialize, reported)
    nodes = [("HannWindow", ["n10"], ["hann"], {}),
             ("HammingWindow", ["n10"], ["hamming"], {"periodic": 0}),
             ("BlackmanWindow", ["n10"], ["blackman"], {"output_datatype": TensorProto.DOUBLE}),
             ("HannWindow", ["n10"], ["hann_w"], {}),
             ("HammingWindow", ["n10"], ["hamming_w"], {"periodic": 0}),
             ("STFT", ["sig", "step", "hann_w", ""], ["s_win"], {}),
             ("STFT", ["sig", "step", "", "n10"], ["s_rect"], {"onesided": 0}),
             ("STFT", ["csig", "step7", "hamming_w", "n10"], ["s_complex"], {"onesided": 0}),
             ("MelWeightMatrix", ["n8", "n64", "rate", "lo", "hi"], ["mel"], {})]
    inits = {"n10": _i(10), "step": _i(4), "step7": _i(7), "n8": _i(8), "n64": _i(64), "rate": _i(8000),
             "lo": np.array(100.0, np.float32), "hi": np.array(3000.0, np.float32)}
    feeds = {"sig": sig, "csig": csig}
    outs = ["hann", "hamming", "blackman", "s_win", "s_rect", "s_complex", "mel"]
    model = _model(nodes, feeds, outs, inits=inits, sym={"sig": {0: "N"}, "csig": {0: "N"}}, opset=17)
    compiled = _check(model, feeds)
    _check(model, {"sig": sig[1:], "csig": csig[1:]}, compiled)


def test_bad_models_name_the_node():
    x = _f(2, 6, 2)
    model = _model([("DFT", ["x", "", "ax"], ["y"], {})], {"x": x}, ["y"], inits={"ax": _i(2)})
    with pytest.raises(Ml4epError, match="dft_0.*trailing"):
        mi.compile(model)
    model = _model([("STFT", ["x", "st", "", "fl"], ["y"], {})], {"x": x}, ["y"],
                   inits={"st": _i(1), "fl": _i(9)}, opset=17)
    with pytest.raises(Ml4epError, match="stft_0.*frame_length 9"):
        mi.compile(model)
