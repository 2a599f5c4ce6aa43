"""ml4ep.root.define: compiled models and forests as RDataFrame columns, checked entry by entry against the model's
own Python call (``m(x)``, ``forest.predict(x)``) on a TTree written by uproot, single-threaded and with implicit
multi-threading; errors name the column at fault.

ROOT's import and cling's declarations are slow: the files, models and event loops are shared at module scope."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

try:
    with warnings.catch_warnings():  # the pip wheel's notice that it is an alpha release
        warnings.filterwarnings("ignore", message=r"\s*This distribution of ROOT is in alpha stage")
        import ROOT
except Exception as exc:  # noqa: BLE001 - whatever stops ROOT from loading skips the file
    pytest.skip(f"ROOT cannot be imported ({type(exc).__name__}: {exc}); pip install 'ml4ep[root]'",
                allow_module_level=True)

import ml4ep.root
from ml4ep.errors import InputError

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")
onnx = pytest.importorskip("onnx")

N_FILES, PER_FILE, JETS = 4, 300, 8
N_FEATURES = 3 + JETS  # pt, eta, nhits, jet_pt[8]
INPUTS = ["pt", "eta", "nhits", ("jet_pt", JETS)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four files of one tree (several files: several tasks under implicit MT) and the model's input rows, built in
    NumPy as define builds them: float, int and double scalars, then jet_pt padded with 0 / truncated to 8."""
    rng = np.random.default_rng(7)
    n = N_FILES * PER_FILE
    pt = rng.exponential(30, n).astype(np.float32)
    eta = rng.normal(0, 1.5, n)  # float64
    nhits = rng.integers(0, 40, n).astype(np.int32)
    counts = rng.integers(0, 13, n)  # up to 12 jets: some truncated, some padded
    flat = rng.exponential(20, counts.sum()).astype(np.float32)
    jets = ak.unflatten(flat, counts)
    folder = tmp_path_factory.mktemp("rdf")
    files = []
    for k in range(N_FILES):
        s = slice(k * PER_FILE, (k + 1) * PER_FILE)
        path = folder / f"events_{k}.root"
        with uproot.recreate(path) as f:
            f["Events"] = {"pt": pt[s], "eta": eta[s], "nhits": nhits[s], "jet_pt": jets[s]}
        files.append(str(path))
    padded = ak.to_numpy(ak.fill_none(ak.pad_none(jets, JETS, clip=True), 0.0)).astype(np.float32)
    x = np.concatenate([pt[:, None], eta.astype(np.float32)[:, None], nhits.astype(np.float32)[:, None], padded],
                       axis=1)
    return files, np.ascontiguousarray(x, dtype=np.float32)


def _mlp(path, n_out: int, seed: int):
    """An ONNX MLP (N, 11) -> (N, n_out): Gemm, Relu, Gemm, Sigmoid."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = (rng.normal(0, 0.3, (N_FEATURES, 16)) / np.array([30, 1, 20] + [20] * JETS)[:, None]).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.5, (16, n_out)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, 0.1, n_out).astype(np.float32), "b2")]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["z"]), helper.make_node("Sigmoid", ["z"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", N_FEATURES])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def models(data, tmp_path_factory):
    """An MLP of one output (given as an ONNX path), one of three outputs (given compiled), an XGBoost forest."""
    import ml4ep.bdt as mb
    import ml4ep.infer as mi

    xgb = pytest.importorskip("xgboost")
    _, x = data
    folder = tmp_path_factory.mktemp("models")
    mlp1 = _mlp(folder / "mlp1.onnx", 1, 1)
    mlp3 = mi.compile(_mlp(folder / "mlp3.onnx", 3, 2))
    label = (x[:, 0] + 10 * x[:, 3] > 50).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 1},
                        xgb.DMatrix(x, label=label), 20)
    return {"mlp1": mlp1, "mlp1_oracle": mi.compile(mlp1), "mlp3": mlp3, "forest": mb.from_xgboost(booster),
            "folder": folder}


def _loop(files, models, mt: bool) -> tuple[int, dict]:
    """One event loop computing the three columns; the values in entry order."""
    if mt:
        ROOT.EnableImplicitMT(2)
    try:
        df = ROOT.RDataFrame("Events", files)
        slots = int(df.GetNSlots())
        df = ml4ep.root.define(df, models["mlp1"], inputs=INPUTS, output="score")
        df = ml4ep.root.define(df, models["mlp3"], inputs=INPUTS, output="scores")
        df = ml4ep.root.define(df, models["forest"], inputs=INPUTS, output="bdt")
        cols = df.Define("entry", "rdfentry_").AsNumpy(["entry", "score", "scores", "bdt"])
    finally:
        if mt:
            ROOT.DisableImplicitMT()
    order = np.argsort(cols["entry"])
    return slots, {"score": cols["score"][order], "bdt": cols["bdt"][order],
                   "scores": np.array([np.asarray(v) for v in cols["scores"][order]])}


@pytest.fixture(scope="module", params=["single", "mt2"])
def loop(request, data, models):
    files, _ = data
    return request.param, *_loop(files, models, request.param == "mt2")


def test_columns_equal_the_models(loop, data, models):
    mode, slots, cols = loop
    _, x = data
    assert slots == (2 if mode == "mt2" else 1)
    assert cols["score"].dtype == np.float32 and cols["score"].shape == (len(x),)
    np.testing.assert_allclose(cols["score"], models["mlp1_oracle"](x)[:, 0], rtol=1e-6, atol=1e-7)
    assert cols["scores"].shape == (len(x), 3)
    np.testing.assert_allclose(cols["scores"], models["mlp3"](x), rtol=1e-6, atol=1e-7)
    expected = models["forest"].predict(x)
    assert expected.shape == (len(x),)
    np.testing.assert_allclose(cols["bdt"], expected.astype(np.float32), rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def frame(data):
    files, _ = data
    return ROOT.RDataFrame("Events", files).Define("label", 'std::string("b")')


@pytest.mark.parametrize("inputs, column, why", [
    (["pt", "phi", "nhits", ("jet_pt", 8)], "phi", "not in the RDataFrame"),
    (["pt", "label", "nhits", ("jet_pt", 8)], "label", "not an arithmetic type"),
    (["pt", "eta", "nhits", "jet_pt"], "jet_pt", "is a vector"),
    (["pt", ("eta", 2), "nhits", ("jet_pt", 7)], "eta", "is a scalar"),
    (["pt", "eta", "nhits", ("jet_pt", 7)], "jet_pt: 7", "takes 11 features"),
])
def test_bad_inputs_name_the_column(frame, models, inputs, column, why):
    for model in (models["mlp3"], models["forest"]):
        with pytest.raises(InputError, match=why) as info:
            ml4ep.root.define(frame, model, inputs=inputs, output="y")
        assert f"{column}" in str(info.value)


def test_bad_model_and_output(frame, models):
    with pytest.raises(InputError, match="CompiledModel"):
        ml4ep.root.define(frame, object(), inputs=INPUTS, output="y")
    with pytest.raises(InputError, match="'pt' is already"):
        ml4ep.root.define(frame, models["forest"], inputs=INPUTS, output="pt")


def test_two_models_of_one_name(frame, models):
    """C++ namespaces cannot be redefined: a second, different model under a declared name is refused, clearly."""
    import ml4ep.infer as mi

    folder = models["folder"]
    first = mi.compile(folder / "mlp1.onnx", name="twin")
    second = mi.compile(folder / "mlp3.onnx", name="twin")
    ml4ep.root.define(frame, first, inputs=INPUTS, output="y1")
    ml4ep.root.define(frame, first, inputs=INPUTS, output="y2")  # the same model again: declared once, reused
    with pytest.raises(InputError, match="another model named 'twin'"):
        ml4ep.root.define(frame, second, inputs=INPUTS, output="y3")
