"""The ``ml4ep`` command: one argparse subcommand per job.

- ``ml4ep compile MODEL.onnx -o DIR``, ``ml4ep check MODEL.onnx``, ``ml4ep operators``: :mod:`ml4ep.infer`;
- ``ml4ep hls4ml MODEL.onnx -o DIR``: an hls4ml project (:func:`ml4ep.infer.to_hls4ml`);
- ``ml4ep bdt compile MODEL -o DIR``, ``ml4ep bdt conifer MODEL -o JSON``: :mod:`ml4ep.bdt`;
- ``ml4ep data inspect FILES``: :mod:`ml4ep.data`'s readers;
- ``ml4ep bench``: :mod:`ml4ep.bench` (:func:`ml4ep.bench.run.run`, with a progress bar on a terminal);
- ``ml4ep fastsim simulate | train | generate | export | evaluate``: :mod:`ml4ep.fastsim`, whose parsers live in
  :mod:`ml4ep.fastsim.cli`.

An :class:`~ml4ep.errors.Ml4epError` ends the command with ``ml4ep: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .errors import Ml4epError


def _cmd_compile(args: argparse.Namespace) -> int:
    import ml4ep.infer as mi

    model = mi.compile(args.model, name=args.name, portable=args.portable, march=args.march, device=args.device,
                       cuda_archs=args.cuda_archs, precision=args.precision, accum=args.accum,
                       layer_precision=_layer_precision(args.layer_precision))
    out = model.save(args.output)
    if args.print_code:
        sys.stdout.write(model.source)
    files = sorted(p.name for p in out.iterdir() if p.name.startswith(model.name) or p.name.startswith(("example",
                                                                                                        "CMake")))
    print(f"{args.model}: wrote {out}/ {', '.join(files)}")
    print(f"  {model!r}")
    return 0


def _layer_precision(items: list[str] | None) -> dict | None:
    """``--layer-precision NODE:KEY=TYPE`` (repeated) as ``{NODE: {KEY: TYPE}}``."""
    out: dict = {}
    for item in items or []:
        node, sep, rest = item.rpartition(":")
        key, eq, typ = rest.partition("=")
        if not sep or not eq or not node or not key:
            raise Ml4epError(f"--layer-precision {item!r}: expected NODE:KEY=TYPE, e.g. fc1:weight=ap_fixed<8,3>")
        out.setdefault(node, {})[key] = typ
    return out or None


def _cmd_hls4ml(args: argparse.Namespace) -> int:
    import ml4ep.infer as mi

    hls = mi.to_hls4ml(args.model, args.output, precision=args.precision, accum=args.accum,
                       layer_precision=_layer_precision(args.layer_precision), backend=args.backend,
                       io_type=args.io_type, reuse_factor=args.reuse_factor, project_name=args.project)
    hls.write()
    print(f"{args.model}: hls4ml project {args.output}/ ({args.backend}, {len(list(hls.get_layers()))} layers); "
          f"the same arithmetic in C++: mi.compile(..., precision={args.precision!r})")
    return 0


def _add_precision(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument("--precision", default=default,
                        help="fixed-point type of inputs, weights, biases and results, e.g. 'ap_fixed<16,6>'"
                             + ("" if default else " (compile: the bit-exact emulation of the hls4ml design)"))
    parser.add_argument("--accum", default=None, help="the accumulators' type (default: --precision)")
    parser.add_argument("--layer-precision", action="append", metavar="NODE:KEY=TYPE",
                        help="one layer's type by ONNX node name, e.g. fc1:weight=ap_fixed<8,3> (repeatable)")


def _cmd_check(args: argparse.Namespace) -> int:
    import ml4ep.infer as mi

    problems = mi.check(args.model, device=args.device)
    if not problems:
        print(f"{args.model}: every node can be compiled by ml4ep" + (f" for {args.device}" if args.device else ""))
        return 0
    print(f"{args.model}: {len(problems)} node(s) cannot be compiled:")
    for p in problems:
        print(f"  {p}")
    return 1


def _cmd_ops(args: argparse.Namespace) -> int:
    import ml4ep.infer as mi

    print("\n".join(mi.supported_operators()))
    for op, missing in mi.partially_supported_operators().items():
        print(f"{op} (partly: {missing})")
    return 0


def _cmd_data_inspect(args: argparse.Namespace) -> int:
    from .data.loader import _expand
    from .data.sources import reader_for

    for path in _expand(args.files):
        r = reader_for(path, args.format, args.tree)
        where = f" {r.tree_name!r}" if r.tree_name else ""
        print(f"{path}:{where} {r.num_entries} entries ({r.format})")
        for name, c in r.columns.items():
            if c.kind == "unsupported":
                what = f"cannot be batched: {c.why}"
            elif c.kind == "jagged":
                what = f"{c.dtype} variable length (needs max_vec_sizes)"
            elif c.kind == "fixed":
                what = f"{c.dtype} x {'x'.join(map(str, c.shape))}"
            else:
                what = str(c.dtype)
            print(f"  {name:<24} {what}")
        r.close()
    return 0


def _cmd_bdt_compile(args: argparse.Namespace) -> int:
    import ml4ep.bdt as mb

    forest = mb.load(args.model)
    name = args.name or __import__("pathlib").Path(args.model).stem
    out = forest.save(args.output, name=name)
    fast = forest.compile(name=name, march=args.march)  # proves the header compiles for the target here
    print(f"{args.model}: wrote {out}/{fast.name}.hpp and example.cpp ({len(forest.trees)} trees, "
          f"{forest.n_features} features, {forest.n_outputs} output(s), split '{forest.split}')")
    return 0


def _cmd_bdt_conifer(args: argparse.Namespace) -> int:
    import ml4ep.bdt as mb

    forest = mb.load(args.model)
    if args.precision:  # proves the fixed-point emulation compiles here (before anything is written)
        forest.compile(precision=args.precision)
    model = forest.to_conifer(args.output)
    n_scores = len(model["init_predict"])
    print(f"{args.model}: wrote {args.output} (conifer JSON: {model['n_trees']} trees x {n_scores} score(s), "
          f"{model['n_features']} features, depth {model['max_depth']}, split '{model['splitting_convention']}')")
    return 0


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import report as R
    from .bench.run import Config, run

    try:
        batches = [int(b) for b in _csv(args.batch)]
    except ValueError:
        raise Ml4epError(f"--batch takes comma-separated integers, not {args.batch!r}") from None
    cfg = Config(models=_csv(args.models), backends=_csv(args.backends), batches=batches, size=args.size,
                 repeats=args.repeats, block_s=args.block, rounds=args.rounds, check_batch=args.check_batch,
                 work=args.work)
    rep = run(cfg, progress=None if args.quiet else lambda text: print(text, file=sys.stderr, flush=True),
              bar=not args.quiet)  # the bar: on a terminal only
    print(R.table(rep))
    if args.json:
        R.write_json(rep, args.json)
    if args.write:
        R.write_markdown(rep, args.write)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ml4ep", description="Machine learning for experimental particle physics.")
    p.add_argument("--version", action="version", version=f"ml4ep {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what ml4ep does")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile an ONNX model into a standalone C++ header + weights file")
    c.add_argument("model", help="the .onnx file")
    c.add_argument("-o", "--output", required=True, help="output directory")
    c.add_argument("--name", help="C++ namespace and file names (default: the file's stem)")
    c.add_argument("--march", default=None,
                   help="target ISA of the build (-march: native, x86-64-v2, x86-64-v3, x86-64-v4, znver4, "
                        "sapphirerapids, ...; default $ML4EP_MARCH, else native)")
    c.add_argument("--portable", action="store_true", help="the same as --march=x86-64-v2 (any x86-64 of the "
                                                           "last decade)")
    c.add_argument("--device", default=None, help="cpu, cuda (nvcc: <name>.cu for NVIDIA GPUs) or cuda-host (the "
                                                    "CUDA code built for the host); default $ML4EP_DEVICE, else cpu")
    c.add_argument("--cuda-archs", default=None, help="GPU architectures of a CUDA build, e.g. 80,90 (default "
                                                      "$ML4EP_CUDA_ARCHS, else 80,90)")
    c.add_argument("--print", dest="print_code", action="store_true", help="print the generated C++")
    _add_precision(c, None)
    c.set_defaults(func=_cmd_compile)

    k = sub.add_parser("check", help="list the nodes of an ONNX model that ml4ep cannot compile")
    k.add_argument("model", help="the .onnx file")
    k.add_argument("--device", default=None, help="also what the CUDA code refuses (--device cuda)")
    k.set_defaults(func=_cmd_check)

    o = sub.add_parser("operators", help="list the ONNX operators ml4ep compiles")
    o.set_defaults(func=_cmd_ops)

    h = sub.add_parser("hls4ml", help="an ONNX model as an hls4ml project (FPGA), from ml4ep's lowered graph")
    h.add_argument("model", help="the .onnx file")
    h.add_argument("-o", "--output", required=True, help="the project directory")
    _add_precision(h, "ap_fixed<16,6>")
    h.add_argument("--backend", default="Vitis", help="hls4ml backend: Vitis (default) or Vivado")
    h.add_argument("--io-type", default="io_parallel", help="io_parallel")
    h.add_argument("--reuse-factor", type=int, default=1, help="hls4ml's ReuseFactor (default 1)")
    h.add_argument("--project", default="myproject", help="the project's (top function's) name")
    h.set_defaults(func=_cmd_hls4ml)

    b = sub.add_parser("bdt", help="ml4ep.bdt: boosted decision trees to C++")
    bsub = b.add_subparsers(dest="bdt_command", required=True)
    bc = bsub.add_parser("compile", help="a tree model (XGBoost .json/.ubj, LightGBM .txt) to a C++ header")
    bc.add_argument("model", help="the model file")
    bc.add_argument("-o", "--output", required=True, help="output directory")
    bc.add_argument("--name", help="C++ namespace and file name (default: the file's stem)")
    bc.add_argument("--march", default=None, help="target ISA the header is checked to compile for (default "
                                                  "$ML4EP_MARCH, else native); the header itself picks its kernel "
                                                  "from the ISA it is compiled for")
    bc.set_defaults(func=_cmd_bdt_compile)
    bk = bsub.add_parser("conifer", help="a tree model to conifer's model JSON (conifer.model.load_model reads it)")
    bk.add_argument("model", help="the model file (XGBoost .json/.ubj, LightGBM .txt, TMVA .xml, ONNX-ML .onnx)")
    bk.add_argument("-o", "--output", required=True, help="the conifer JSON file to write")
    bk.add_argument("--precision", default=None, help="also compile ml4ep's bit-exact emulation of conifer in this "
                                                      "fixed-point type (e.g. 'ap_fixed<18,8>') as a check")
    bk.set_defaults(func=_cmd_bdt_conifer)

    d = sub.add_parser("data", help="ml4ep.data: look into ROOT, HDF5 and Parquet files")
    dsub = d.add_subparsers(dest="data_command", required=True)
    di = dsub.add_parser("inspect", help="entries and columns of files, and which ones can be batched")
    di.add_argument("files", nargs="+", help="paths or glob patterns")
    di.add_argument("--tree", help="TTree/RNTuple name (ROOT) or group/compound dataset (HDF5)")
    di.add_argument("--format", choices=["root", "hdf5", "parquet"], help="instead of guessing from the extension")
    di.set_defaults(func=_cmd_data_inspect)

    from .bench.backends import BACKENDS, DEFAULT_BACKENDS
    from .bench.zoo import MODEL_NAMES

    be = sub.add_parser("bench", help="CPU time and memory of HEP models (VAE, GNN, transformer, diffusion, ...) "
                        "across ml4ep, SOFIE, ONNX Runtime, PyTorch and JAX/XLA")
    be.add_argument("--models", default=",".join(MODEL_NAMES), help=f"comma-separated, of: {', '.join(MODEL_NAMES)}")
    be.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                    help=f"comma-separated, of: {', '.join(BACKENDS)} (default: all but the GPU ones, "
                         f"{', '.join(b for b in BACKENDS if b not in DEFAULT_BACKENDS)}, which run where torch sees "
                         f"a CUDA GPU)")
    be.add_argument("--batch", default="1,64,1024", help="batch sizes; the first is reported as latency, the "
                    "others as throughput (default 1,64,1024)")
    be.add_argument("--size", choices=["full", "small"], default="full", help="realistic models or small ones")
    be.add_argument("--repeats", type=int, default=5, help="timed blocks per batch size and round")
    be.add_argument("--block", type=float, default=0.2, help="seconds per timed block (at least one call)")
    be.add_argument("--rounds", type=int, default=1, help="rounds, alternately in order and reversed")
    be.add_argument("--check-batch", type=int, default=3, help="batch of the cross-check against onnxruntime")
    be.add_argument("--json", help="write the full results here")
    be.add_argument("--write", help="write the tables and charts into this markdown file (section 'bench')")
    be.add_argument("--work", help="keep the exported models, programs and raw results here")
    be.add_argument("-q", "--quiet", action="store_true", help="no progress lines and no progress bar")
    be.set_defaults(func=_cmd_bench)

    from .fastsim.cli import add_parsers as add_fastsim

    add_fastsim(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        return int(args.func(args))
    except Ml4epError as exc:
        print(f"ml4ep: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
