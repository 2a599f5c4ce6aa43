"""Checking a fixed-point FPGA design on many events: ml4ep's bit-exact emulation against the tools' own
C-simulation, one thread.

Contenders, per model, on the same rows:
- ``hls4ml csim``: ``ModelGraph.predict`` of the design ``mi.to_hls4ml`` makes (hls4ml's C-simulation: its
  templates over Xilinx's ap_types, built by g++ with hls4ml's own flags), the anchor of the ratio;
- ``ml4ep``: ``mi.compile(model, precision=...)``, the generated C++ emulation;
- for the BDT: ``conifer cpp`` (conifer's ``cpp`` backend, ``decision_function``) against
  ``forest.compile(precision=...)``.
Every contender's outputs are checked bit for bit against the anchor's first. Contenders alternate in blocks
(A B B A ...), medians of the blocks; rows/s on ``--rows`` rows (100k by default).

    python benchmarks/fpga.py [--rows 100000] [--rounds 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["ML4EP_CACHE_DIR"] = tempfile.mkdtemp(prefix="ml4ep-fpga-bench-")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from _docs import cpu_model, write_section  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import ml4ep.infer as mi  # noqa: E402


def _mlp(sizes, softmax=True, seed=0) -> onnx.ModelProto:
    """A dense network (ReLU between the layers), as the hls4ml tutorial's jet tagger 16-64-32-32-5."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits += [numpy_helper.from_array(rng.normal(0, 1.2 / np.sqrt(a), (b, a)).astype(np.float32), f"w{k}"),
                  numpy_helper.from_array(rng.normal(0, 0.2, b).astype(np.float32), f"b{k}")]
        nodes.append(helper.make_node("Gemm", [x, f"w{k}", f"b{k}"], [f"h{k}"], name=f"fc{k}", transB=1))
        x = f"h{k}"
        if k < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{k}"], name=f"relu{k}"))
            x = f"r{k}"
    if softmax:
        nodes.append(helper.make_node("Softmax", [x], ["y"], name="softmax", axis=-1))
        x = "y"
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", sizes[-1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _cnn(seed=1) -> onnx.ModelProto:
    """A small calorimeter-image CNN: (1, 12, 12) -> Conv 3x3 x8 + ReLU -> MaxPool 2 -> Conv 3x3 x8 + ReLU ->
    MaxPool 2 -> Dense 16 + ReLU -> Dense 3 -> Softmax."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(name, shape, scale):
        inits.append(numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name))
        return name

    def add(op, ins, out, **kw):
        nodes.append(helper.make_node(op, ins, [out], name=out, **kw))
        return out

    h = add("Conv", ["x", const("c1w", (8, 1, 3, 3), 0.3), const("c1b", (8,), 0.1)], "conv1", kernel_shape=[3, 3],
            pads=[1, 1, 1, 1])
    h = add("MaxPool", [add("Relu", [h], "relu1")], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    h = add("Conv", [h, const("c2w", (8, 8, 3, 3), 0.12), const("c2b", (8,), 0.1)], "conv2", kernel_shape=[3, 3],
            pads=[1, 1, 1, 1])
    h = add("MaxPool", [add("Relu", [h], "relu2")], "pool2", kernel_shape=[2, 2], strides=[2, 2])
    h = add("Flatten", [h], "flatten", axis=1)
    h = add("Relu", [add("Gemm", [h, const("d1w", (16, 72), 0.12), const("d1b", (16,), 0.1)], "fc1", transB=1)],
            "relu3")
    h = add("Gemm", [h, const("d2w", (3, 16), 0.3), const("d2b", (3,), 0.1)], "fc2", transB=1)
    y = add("Softmax", [h], "softmax", axis=-1)
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 12, 12])],
                          [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _time(fn, x) -> float:
    t0 = time.perf_counter()
    fn(x)
    return time.perf_counter() - t0


def _race(contenders: dict, x: np.ndarray, rounds: int) -> dict[str, float]:
    """Median seconds per contender over ``rounds`` A B B A blocks."""
    names = list(contenders)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            times[n].append(_time(contenders[n], x))
    return {n: float(np.median(t)) for n, t in times.items()}


def bench_nn(name: str, model, precision: str, accum: str | None, rows: int, rounds: int, work: Path) -> dict:
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    x = np.random.default_rng(7).normal(0, 1, (rows, *shape)).astype(np.float32)
    t0 = time.perf_counter()
    hls = mi.to_hls4ml(model, work, precision=precision, accum=accum)
    hls.compile()
    t_hls = time.perf_counter() - t0
    t0 = time.perf_counter()
    q = mi.compile(model, precision=precision, accum=accum)
    t_ml4ep = time.perf_counter() - t0
    flat = np.ascontiguousarray(x.reshape(rows, -1))
    ref = np.asarray(hls.predict(flat), dtype=np.float32).reshape(rows, -1)
    mine = q(x).reshape(rows, -1)
    same = int(np.sum(ref != mine))
    if same:
        raise SystemExit(f"{name}: {same} outputs differ from hls4ml's C-simulation")
    med = _race({"hls4ml csim": lambda a: hls.predict(a.reshape(rows, -1)), "ml4ep": q}, x, rounds)
    return {"model": name, "precision": precision + (f", accum {accum}" if accum else ""), "rows": rows,
            "anchor": "hls4ml csim", "anchor_rows_s": rows / med["hls4ml csim"], "ml4ep_rows_s": rows / med["ml4ep"],
            "speedup": med["hls4ml csim"] / med["ml4ep"], "build_anchor_s": t_hls, "build_ml4ep_s": t_ml4ep,
            "bit_identical": True}


def _conifer_cpp(forest, work: Path, precision: str):
    """conifer's cpp backend over the JSON ``forest.to_conifer`` writes (its headers: nlohmann/json from the
    nlohmann-json wheel, ap_types from hls4ml's copy)."""
    import importlib.util

    import conifer

    hls4ml_dir = Path(importlib.util.find_spec("hls4ml").origin).parent
    json_dir = Path(importlib.util.find_spec("nlohmann_json").origin).parent / "include"
    os.environ["XILINX_AP_INCLUDE"] = str(hls4ml_dir / "templates" / "vivado" / "ap_types")
    os.environ["CPLUS_INCLUDE_PATH"] = os.pathsep.join(filter(None, [str(json_dir), os.environ.get("CPLUS_INCLUDE_PATH")]))
    work.mkdir(parents=True, exist_ok=True)
    forest.to_conifer(work / "bdt.json")
    cfg = conifer.backends.cpp.auto_config()
    cfg.update(Precision=precision, OutputDir=str(work / "prj"), ProjectName="prj")
    model = conifer.model.load_model(str(work / "bdt.json"), new_config=cfg)
    model.compile()
    return model


def bench_bdt(rows: int, rounds: int, work: Path) -> dict:
    import xgboost as xgb

    import ml4ep.bdt as mb

    rng = np.random.default_rng(3)
    X = rng.normal(0, 1, (20000, 16)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(0, 0.5, len(X)) > 0).astype(int)
    booster = xgb.train({"max_depth": 4, "eta": 0.2, "objective": "binary:logistic", "nthread": 1},
                        xgb.DMatrix(X, y), 100)
    forest = mb.from_xgboost(booster)
    precision = "ap_fixed<18,8>"
    t0 = time.perf_counter()
    cm = _conifer_cpp(forest, work / "conifer", precision)
    t_conifer = time.perf_counter() - t0
    t0 = time.perf_counter()
    qf = forest.compile(precision=precision)
    t_ml4ep = time.perf_counter() - t0
    Xt = rng.normal(0, 1.5, (rows, 16)).astype(np.float32)
    ref = np.asarray(cm.decision_function(Xt), dtype=np.float64).reshape(rows, -1)
    mine = np.asarray(qf.decision_function(Xt), dtype=np.float64).reshape(rows, -1)
    diff = int(np.sum(ref != mine))
    if diff:
        raise SystemExit(f"bdt: {diff} outputs differ from conifer's cpp backend")
    med = _race({"conifer cpp": cm.decision_function, "ml4ep": qf.decision_function}, Xt, rounds)
    return {"model": "xgboost 100 trees, depth 4, 16 features", "precision": precision, "rows": rows,
            "anchor": "conifer cpp", "anchor_rows_s": rows / med["conifer cpp"], "ml4ep_rows_s": rows / med["ml4ep"],
            "speedup": med["conifer cpp"] / med["ml4ep"], "build_anchor_s": t_conifer, "build_ml4ep_s": t_ml4ep,
            "bit_identical": True}


def table(results: list[dict]) -> str:
    lines = ["| model | types | anchor | anchor rows/s | ml4ep rows/s | ml4ep / anchor | build s (anchor / ml4ep) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['precision']} | {r['anchor']} | {r['anchor_rows_s']:,.0f} | "
                     f"{r['ml4ep_rows_s']:,.0f} | **{r['speedup']:.0f}x** | {r['build_anchor_s']:.1f} / "
                     f"{r['build_ml4ep_s']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-bdt", action="store_true")
    ap.add_argument("--write", help="update this markdown file's FPGA section (docs/benchmarks.md)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ml4ep-fpga-"))
    results = [
        bench_nn("jet tagger MLP 16-64-32-32-5", _mlp([16, 64, 32, 32, 5]), "ap_fixed<16,6>", "ap_fixed<32,12>",
                 args.rows, args.rounds, work / "mlp16"),
        bench_nn("jet tagger MLP 16-64-32-32-5", _mlp([16, 64, 32, 32, 5]), "ap_fixed<24,8>", None, args.rows,
                 args.rounds, work / "mlp24"),
        bench_nn("CNN 1x12x12 (2 conv, 2 dense)", _cnn(), "ap_fixed<16,6>", "ap_fixed<32,12>", args.rows,
                 args.rounds, work / "cnn16"),
        bench_nn("CNN 1x12x12 (2 conv, 2 dense)", _cnn(), "ap_fixed<24,8>", None, args.rows, args.rounds,
                 work / "cnn24"),
    ]
    if not args.no_bdt:
        results.append(bench_bdt(args.rows, args.rounds, work))
    text = table(results)
    print(text)
    if args.write:
        head = (f"Command: `python benchmarks/fpga.py --rows {args.rows} --rounds {args.rounds}` on {cpu_model()} "
                f"({platform.machine()}), {datetime.date.today()}, one thread; Python {sys.version.split()[0]}. "
                "Rows/s of the whole call from Python (float32 in, float out); every output bit-identical to the "
                "anchor's; medians of alternating blocks.")
        write_section(args.write, "fpga", [head, "", text],
                      heading="## Fixed-point FPGA designs: ml4ep's emulation against the tools' C-simulation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
