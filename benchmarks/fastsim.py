"""Generation speed of the fastsim generative models (issue 7), one core: per shower at batch 1 and 100.

The Par04-style VAE (ml4ep.fastsim.models.vae) and the CaloDiT-style flow-matching transformer
(ml4ep.fastsim.models.diffusion) at their default sizes on a CaloChallenge geometry, exported to ONNX with a
dynamic batch and run by the ml4ep-compiled C++ (called from Python), by onnxruntime (one thread) and by PyTorch
(one thread). For the flow model one shower is the whole sampler (20 denoiser evaluations, midpoint) plus the
postprocessing graph, with the same Python loop around every engine. The speed does not depend on the trained
weights, so the models are freshly initialised (random weights). Contenders alternate in blocks
(A B C C B A ...); the table gives medians; the outputs are cross-checked first. Targets (issue 7): VAE at most
1 ms per shower at batch 1; the flow model at most 100 ms at batch 1 and 10 ms at batch 100.

    python benchmarks/fastsim.py [--geometry ds2] [--rounds 4] [--write docs/benchmarks.md]

The quality targets (long trainings, outside CI) are measured by benchmarks/fastsim_quality.py.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _docs import cpu_model, write_section  # noqa: E402

from ml4ep.bench.progress import progress, write  # noqa: E402


def _block(fn, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def _timed(fns: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of every contender, in alternating blocks."""
    import torch

    names = list(fns)
    with torch.no_grad():
        slowest = max(_block(f, 1) for f in fns.values())
        number = max(1, int(0.1 / slowest))
        samples: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            for n in (names + names[::-1]) if r % 2 == 0 else (names[::-1] + names):
                samples[n].append(_block(fns[n], number))
    return {n: float(np.median(v)) for n, v in samples.items()}


def run_flow(geometry: str, rounds: int, batches=(1, 100), steps: int = 20, sampler: str = "midpoint",
             bar=None) -> list[dict]:
    import onnxruntime as ort
    import torch

    import ml4ep.infer as mi
    from ml4ep.fastsim.generate import _save_onnx
    from ml4ep.fastsim.geometry import get
    from ml4ep.fastsim.models.diffusion import DenoiserGraph, DiffusionConfig, PostprocessGraph, ShowerFlow, integrate
    from ml4ep.fastsim.train import default_tokens, layer_sizes

    torch.set_num_threads(1)
    torch.manual_seed(0)
    geo = get(geometry)
    cfg = DiffusionConfig(n_voxels=geo.n_voxels, n_tokens=default_tokens(geo.n_voxels, geo),
                          layer_sizes=layer_sizes(geo.n_voxels, geo), steps=steps, sampler=sampler,
                          threshold_mev=geo.threshold)
    model = ShowerFlow(cfg).eval()
    with torch.no_grad():  # random weights everywhere (the zero-initialised gates would skip the blocks' work)
        for prm in model.parameters():
            prm.normal_(0.0, 0.05)
    tmp = Path(tempfile.mkdtemp(prefix="ml4ep-fastsim-bench-"))
    x0, t0, e0 = torch.zeros(2, cfg.state_size), torch.full((2, 1), 0.5), torch.full((2, 1), 1e4)
    _save_onnx(DenoiserGraph(model), (x0, t0, e0), ["x", "t", "incident_energy"], ["v"], tmp / "denoiser.onnx", 17, {})
    _save_onnx(PostprocessGraph(model), (x0, e0), ["x", "incident_energy"], ["showers"], tmp / "post.onnx", 17, {})
    den, post = mi.compile(str(tmp / "denoiser.onnx")), mi.compile(str(tmp / "post.onnx"))
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    s_den = ort.InferenceSession(str(tmp / "denoiser.onnx"), so, providers=["CPUExecutionProvider"])
    s_post = ort.InferenceSession(str(tmp / "post.onnx"), so, providers=["CPUExecutionProvider"])

    def gen_ml4ep(x, e):
        return post(integrate(lambda xx, t: den(xx, t, e), x, steps, sampler), e)

    def gen_ort(x, e):
        xs = integrate(lambda xx, t: s_den.run(None, {"x": xx, "t": t, "incident_energy": e})[0], x, steps, sampler)
        return s_post.run(None, {"x": xs, "incident_energy": e})[0]

    def gen_torch(x, e):
        return model.sample(torch.from_numpy(x), torch.from_numpy(e), steps=steps, sampler=sampler).numpy()

    rows = []
    rng = np.random.default_rng(1)
    for b in batches:
        x = rng.standard_normal((b, cfg.state_size)).astype(np.float32)
        e = np.exp(rng.uniform(np.log(1e3), np.log(1e6), (b, 1))).astype(np.float32)
        ref = gen_torch(x, e)
        for name, fn in (("ml4ep", gen_ml4ep), ("onnxruntime", gen_ort)):
            y = np.asarray(fn(x, e))
            err = float(np.max(np.abs(y - ref)) / max(float(np.max(np.abs(ref))), 1e-30))
            assert err < 1e-3, f"flow model: {name} differs from torch by {err:.2e} (relative to the largest voxel)"
        med = _timed({"ml4ep": lambda x=x, e=e: gen_ml4ep(x, e), "onnxruntime": lambda x=x, e=e: gen_ort(x, e),
                      "torch": lambda x=x, e=e: gen_torch(x, e)}, rounds)
        row = {"model": f"flow, {steps} evaluations ({sampler})", "geometry": geometry, "voxels": geo.n_voxels,
               "batch": b}
        row.update({f"{n}_ms_per_shower": v * 1e3 / b for n, v in med.items()})
        rows.append(row)
        _done(row, bar)
    return rows


def _done(row: dict, bar) -> None:
    """Print a row of the table above the progress bar, and count it."""
    write(_row(row))
    if bar is not None:
        bar.update()


def _row(r: dict) -> str:
    return (f"| {r['model']} ({r['geometry']}, {r['voxels']} voxels) | {r['batch']} | "
            f"{r['ml4ep_ms_per_shower']:.3f} | {r['onnxruntime_ms_per_shower']:.3f} | {r['torch_ms_per_shower']:.3f} |")


def run(geometry: str, rounds: int, batches=(1, 100), bar=None) -> list[dict]:
    import onnxruntime as ort
    import torch

    import ml4ep.infer as mi
    from ml4ep.fastsim.geometry import get
    from ml4ep.fastsim.models.vae import DecoderGraph, ShowerVAE, VAEConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    geo = get(geometry)
    cfg = VAEConfig(n_voxels=geo.n_voxels)
    dec = DecoderGraph(ShowerVAE(cfg).eval())
    path = Path(tempfile.mkdtemp(prefix="ml4ep-fastsim-bench-")) / "decoder.onnx"
    z0, e0 = torch.randn(2, cfg.latent), torch.full((2, 1), 1e4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(dec, (z0, e0), str(path), input_names=["z", "incident_energy"], output_names=["showers"],
                          dynamic_axes={"z": {0: "N"}, "incident_energy": {0: "N"}, "showers": {0: "N"}},
                          opset_version=17, dynamo=False)
    compiled = mi.compile(str(path))
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    rows = []
    rng = np.random.default_rng(1)
    for b in batches:
        z = rng.standard_normal((b, cfg.latent)).astype(np.float32)
        e = np.exp(rng.uniform(np.log(1e3), np.log(1e6), (b, 1))).astype(np.float32)
        zt, et = torch.from_numpy(z), torch.from_numpy(e)
        with torch.no_grad():
            ref = dec(zt, et).numpy()
        got = {"ml4ep": compiled(z, e), "onnxruntime": sess.run(None, {"z": z, "incident_energy": e})[0]}
        for name, y in got.items():
            err = float(np.max(np.abs(y - ref)) / max(float(np.max(np.abs(ref))), 1e-30))
            assert err < 1e-4, f"{name} differs from torch by {err:.2e} (relative to the largest voxel)"
        fns = {"ml4ep": lambda z=z, e=e: compiled(z, e),
               "onnxruntime": lambda z=z, e=e: sess.run(None, {"z": z, "incident_energy": e}),
               "torch": lambda zt=zt, et=et: dec(zt, et)}
        med = _timed(fns, rounds)
        row = {"model": "VAE", "geometry": geometry, "voxels": geo.n_voxels, "batch": b}
        row.update({f"{n}_ms_per_shower": v * 1e3 / b for n, v in med.items()})
        rows.append(row)
        _done(row, bar)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--geometry", default="ds2")
    ap.add_argument("--rounds", type=int, default=4, help="alternation rounds")
    ap.add_argument("--write", type=Path, help="replace the fastsim_models section of this markdown file")
    args = ap.parse_args(argv)
    header = ["| model | batch | ml4ep ms/shower | onnxruntime ms/shower | PyTorch ms/shower |", "|---|---|---|---|---|"]
    print("\n".join(header))
    batches = (1, 100)
    with progress(total=2 * len(batches), desc="fastsim", unit="case") as bar:  # (VAE, flow) x batches
        rows = run(args.geometry, args.rounds, batches, bar=bar)
        rows += run_flow(args.geometry, args.rounds, batches, bar=bar)
    if args.write:
        lines = ["### Generative shower models: speed (`benchmarks/fastsim.py`)", "",
                 f"{cpu_model()}; one thread each; medians of alternating blocks; random weights at the default "
                 "sizes: the decoder of the Par04-style VAE (hidden 256/128/64, latent 10) and the whole sampler of "
                 "the CaloDiT-style flow model (one token per layer: its 144 voxel shapes and its energy; width 64, 4 blocks, 4 heads; 20 denoiser "
                 "evaluations with the midpoint rule, then the postprocessing graph; the same Python loop around "
                 "each engine). Outputs cross-checked against PyTorch. Targets: VAE at most 1 ms per shower at "
                 "batch 1; flow model at most 100 ms per shower at batch 1 and 10 ms at batch 100.", "", *header]
        lines += [_row(r) for r in rows]
        write_section(args.write, "fastsim_models", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
