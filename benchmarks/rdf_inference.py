"""Entries per second of an RDataFrame event loop computing a dense-network and a BDT score.

Contenders, over the same TTree file (float branches ``f0..f15``, written by uproot), each summing the score over
every entry:
- ``no model``: the same event loop with a functor that only adds the 16 inputs (``DefineSlot``, like the others):
  the floor set by reading 16 columns per entry through RDataFrame;
- ``ml4ep.root``: ``ml4ep.root.define(df, model, ...)`` (the ml4ep.infer header, or the ml4ep.bdt header, declared
  to cling, one model per slot);
- ``sofie``: SOFIE's generated header for the same ONNX network (batch 1, ``pip install sofie``), declared to cling
  with the same BLAS (the pip OpenBLAS) and called from a hand-written functor added with ``DefineSlot`` (as ROOT's
  ``SofieFunctor``: one ``Session`` and one input vector per slot); dense network only (SOFIE has no trees);
- ``onnxruntime (py)``: a Python loop over the file read by ``uproot.iterate`` in chunks, each chunk one
  ``InferenceSession.run`` (the network's ONNX, or the forest converted to ONNX-ML by onnxmltools), intra- and
  inter-op threads 1.
Each timed run is a whole event loop (the graph built once; one new ``Sum`` per run); contenders alternate
A B C C B A and are compared by medians. One slot unless ``--mt N``.

cling compiles declared code with ROOT's defaults (no ``-march``); ``EXTRA_CLING_ARGS="-O2 -march=native"`` in the
environment changes that for both generated headers, and the results then go to a section of their own.

    python benchmarks/rdf_inference.py [--entries 200000] [--reps 3] [--mt 0] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _docs import cpu_model, write_section  # noqa: E402

N_FEATURES = 16
COLUMNS = [f"f{k}" for k in range(N_FEATURES)]


def make_file(path: Path, n: int, seed: int = 1) -> np.ndarray:
    import uproot

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, N_FEATURES)).astype(np.float32)
    with uproot.recreate(path) as f:
        f.mktree("Events", {c: np.float32 for c in COLUMNS})
        for s in range(0, n, 100_000):
            f["Events"].extend({c: x[s:s + 100_000, k] for k, c in enumerate(COLUMNS)})
    return x


def make_dense(path: Path, width: int = 64, seed: int = 2) -> Path:
    """A dense network 16 -> 64 -> 64 -> 1 (Gemm, Relu, Gemm, Relu, Gemm, Sigmoid) as ONNX."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    sizes = [N_FEATURES, width, width, 1]
    inits, nodes, prev = [], [], "x"
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits += [numpy_helper.from_array((rng.normal(0, 1, (a, b)) / np.sqrt(a)).astype(np.float32), f"w{k}"),
                  numpy_helper.from_array(rng.normal(0, 0.1, b).astype(np.float32), f"b{k}")]
        nodes.append(helper.make_node("Gemm", [prev, f"w{k}", f"b{k}"], [f"z{k}"]))
        act = "Relu" if k < len(sizes) - 2 else "Sigmoid"
        prev = f"a{k}" if k < len(sizes) - 2 else "y"
        nodes.append(helper.make_node(act, [f"z{k}"], [prev]))
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", N_FEATURES])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def make_bdt(x: np.ndarray, trees: int, depth: int):
    import xgboost as xgb

    label = (x[:, 0] * x[:, 1] + np.sin(x[:, 2]) + x[:, 3] > 0).astype(np.float32)
    n = min(len(x), 50_000)
    return xgb.train({"objective": "binary:logistic", "max_depth": depth, "nthread": 1, "seed": 1},
                     xgb.DMatrix(x[:n], label=label[:n]), trees)


def bdt_onnx(booster, path: Path) -> Path:
    import onnx
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = onnxmltools.convert_xgboost(booster, initial_types=[("x", FloatTensorType([None, N_FEATURES]))],
                                        target_opset=15)
    onnx.save(model, path)
    return path


SOFIE_FUNCTOR = r"""
namespace rdf_bench_sofie {
class Functor {
 public:
  Functor(unsigned nslots, const std::string& weights) : x_(nslots, std::vector<float>(@N@)) {
    for (unsigned s = 0; s < nslots; ++s) sessions_.emplace_back(std::make_shared<@NS@::Session>(weights));
  }
  float operator()(unsigned slot, @PARAMS@) {
    float* const x = x_[slot].data();
@FILL@
    return sessions_[slot]->infer(x)[0];
  }
 private:
  std::vector<std::shared_ptr<@NS@::Session>> sessions_;
  std::vector<std::vector<float>> x_;
};
ROOT::RDF::RNode define(ROOT::RDF::RNode df, const std::string& out, const std::vector<std::string>& cols,
                        const std::string& weights) {
  return df.DefineSlot(out, Functor(df.GetNSlots(), weights), cols);
}
}  // namespace rdf_bench_sofie
"""


def floor_define(ROOT, df):
    """The floor: a DefineSlot functor reading the 16 columns and adding them."""
    params = ", ".join(f"const float& c{k}" for k in range(N_FEATURES))
    total = " + ".join(f"c{k}" for k in range(N_FEATURES))
    if not ROOT.gInterpreter.Declare(f"""
namespace rdf_bench_floor {{
struct Functor {{ float operator()(unsigned, {params}) {{ return {total}; }} }};
ROOT::RDF::RNode define(ROOT::RDF::RNode df, const std::vector<std::string>& cols) {{
  return df.DefineSlot("score", Functor(), cols);
}}
}}"""):
        raise RuntimeError("cling could not parse the floor's functor")
    return ROOT.rdf_bench_floor.define(ROOT.RDF.AsRNode(df), COLUMNS)


def sofie_define(ROOT, df, onnx_path: Path, folder: Path):
    """SOFIE's header for ``onnx_path`` at batch 1 declared to cling (its BLAS routines renamed to the pip OpenBLAS's,
    already loaded by ml4ep.root) and a hand-written DefineSlot functor around it."""
    from ml4ep.bench import sofie as sofie_anchor

    fixed = folder / "dense_b1.onnx"
    sofie_anchor.make_fixed_batch_model(str(onnx_path), str(fixed), 1, [(N_FEATURES,)])
    info = sofie_anchor.sofie_generate(str(fixed), str(folder / "sofie"))
    if info["infer_dims"] or len(info["infer_inputs"]) != 1:
        raise RuntimeError(f"unexpected SOFIE signature: {info}")
    renames = "".join(f"#define {s} scipy_{s}\n" for s in info["blas_symbols"])
    if not ROOT.gInterpreter.Declare(renames + f'#include "{info["header"]}"\n'):
        raise RuntimeError("cling could not parse SOFIE's header")
    code = (SOFIE_FUNCTOR.replace("@NS@", info["namespace"]).replace("@N@", str(N_FEATURES))
            .replace("@PARAMS@", ", ".join(f"float c{k}" for k in range(N_FEATURES)))
            .replace("@FILL@", "\n".join(f"    x[{k}] = c{k};" for k in range(N_FEATURES))))
    if not ROOT.gInterpreter.Declare(code):
        raise RuntimeError("cling could not parse the SOFIE functor")
    return ROOT.rdf_bench_sofie.define(ROOT.RDF.AsRNode(df), "score", COLUMNS, info["weights"] or "")


def ort_loop(path: str, onnx_path: Path, chunk: int, label_output: bool) -> float:
    """Sum of the score over the file: uproot chunks, one onnxruntime run each."""
    import onnxruntime as ort
    import uproot

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    out = sess.get_outputs()[1 if label_output else 0].name
    total = 0.0
    for arrays in uproot.iterate(f"{path}:Events", COLUMNS, step_size=chunk, library="np"):
        x = np.stack([arrays[c] for c in COLUMNS], axis=1)
        y = sess.run([out], {"x": x})[0]
        total += float(np.asarray(y)[:, -1].sum()) if label_output else float(np.asarray(y).sum())
    return total


def timed(fn) -> tuple[float, float]:
    t0 = time.perf_counter()
    v = fn()
    return time.perf_counter() - t0, float(v)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=3, help="A B C C B A blocks")
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--chunk", type=int, default=50_000, help="entries per onnxruntime batch")
    ap.add_argument("--mt", type=int, default=0, help="ROOT.EnableImplicitMT(N) when > 0")
    ap.add_argument("--write", help="docs/benchmarks.md: write the results into its rdf_inference section")
    args = ap.parse_args(argv)

    import ROOT

    import ml4ep.bdt as mb
    import ml4ep.root

    if args.mt > 0:
        ROOT.EnableImplicitMT(args.mt)
    folder = Path(tempfile.mkdtemp(prefix="rdf-bench-"))
    data = folder / "events.root"
    x = make_file(data, args.entries)
    dense = make_dense(folder / "dense.onnx")
    booster = make_bdt(x, args.trees, args.depth)
    forest = mb.from_xgboost(booster)
    bdt_path = bdt_onnx(booster, folder / "bdt.onnx")

    base = ROOT.RDataFrame("Events", str(data))
    nodes = {
        "dense": {"ml4ep.root": ml4ep.root.define(base, str(dense), inputs=COLUMNS, output="score"),
                  "sofie": sofie_define(ROOT, base, dense, folder)},
        "bdt": {"ml4ep.root": ml4ep.root.define(base, forest, inputs=COLUMNS, output="score")},
    }
    floor = floor_define(ROOT, base)

    def rdf_run(node, column):
        return lambda: node.Sum["float"](column).GetValue()

    results: dict[str, dict[str, list[float]]] = {}
    sums: dict[str, dict[str, float]] = {}
    for model, contenders in nodes.items():
        runs = {"no model": rdf_run(floor, "score")}
        runs.update({k: rdf_run(v, "score") for k, v in contenders.items()})
        onnx_file, label = (dense, False) if model == "dense" else (bdt_path, True)
        runs["onnxruntime (py)"] = (lambda f=onnx_file, lab=label: ort_loop(str(data), f, args.chunk, lab))
        for fn in runs.values():  # warm-up: the JIT of each action, the first reads of the file
            fn()
        names = list(runs)
        order = (names + names[::-1]) * args.reps
        times: dict[str, list[float]] = {n: [] for n in names}
        for n in order:
            dt, value = timed(runs[n])
            times[n].append(dt)
            sums.setdefault(model, {})[n] = value
        results[model] = times

    cpu = cpu_model()
    cling = os.environ.get("EXTRA_CLING_ARGS", "")
    lines = [f"{'`EXTRA_CLING_ARGS=' + repr(cling) + '`: ' if cling else 'cling defaults: '}Event loop over {args.entries} entries of 16 float branches (one file), summing the score; "
             f"{'ROOT.EnableImplicitMT(%d)' % args.mt if args.mt else 'one slot'}; {cpu}, {platform.machine()}, "
             f"ROOT {ROOT.gROOT.GetVersion()}. Median of {2 * args.reps} alternated runs (A B C C B A); dense: "
             f"16-64-64-1 MLP; bdt: XGBoost, {args.trees} trees of depth {args.depth}.",
             "", "| model | contender | entries/s | time (s) | time / ml4ep.root's |", "|---|---|---:|---:|---:|"]
    for model, times in results.items():
        ref = statistics.median(times["ml4ep.root"])
        for n, ts in times.items():
            med = statistics.median(ts)
            rel = "" if n == "no model" else f"{med / ref:.2f}x"
            lines.append(f"| {model} | {n} | {args.entries / med:,.0f} | {med:.3f} | {rel} |")
    lines += ["", "Sums of the score (each contender must agree): " + "; ".join(
        f"{m}: " + ", ".join(f"{n} {v:.6g}" for n, v in s.items() if n != "no model") for m, s in sums.items()),
        "", "`python benchmarks/rdf_inference.py " + " ".join(argv if argv is not None else sys.argv[1:]) + "`"]
    sys.stdout.write("\n".join(lines) + "\n")
    if args.write:
        write_section(args.write, "rdf_inference" + ("_cling_args" if cling else ""), lines, heading="## RDataFrame inference (ml4ep.root)")


if __name__ == "__main__":
    main()
