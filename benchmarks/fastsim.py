"""Generation speed of the fastsim generative models (issue 7), one core: per shower at batch 1 and 100.

So far the Par04-style VAE (ml4ep.fastsim.models.vae) at its default size on a CaloChallenge geometry: its
decoder exported to ONNX with a dynamic batch, run by the ml4ep-compiled C++ (called from Python), by
onnxruntime (one thread) and by PyTorch (one thread). The speed does not depend on the trained weights, so the
model is freshly initialised. Contenders alternate in blocks (A B C C B A ...); the table gives medians; the
outputs are cross-checked first. Targets (issue 7): VAE at most 1 ms per shower at batch 1.

    python benchmarks/fastsim.py [--geometry ds2] [--rounds 4] [--write docs/benchmarks.md]
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


def _block(fn, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def run(geometry: str, rounds: int, batches=(1, 100)) -> list[dict]:
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
        names = list(fns)
        with torch.no_grad():
            slowest = max(_block(f, 3) for f in fns.values())
            number = max(1, int(0.1 / slowest))
            samples: dict[str, list[float]] = {n: [] for n in names}
            for r in range(rounds):
                for n in (names + names[::-1]) if r % 2 == 0 else (names[::-1] + names):
                    samples[n].append(_block(fns[n], number))
        row = {"geometry": geometry, "voxels": geo.n_voxels, "batch": b}
        for n in names:
            row[f"{n}_ms_per_shower"] = float(np.median(samples[n])) * 1e3 / b
        rows.append(row)
        print(f"| VAE ({geometry}, {geo.n_voxels} voxels) | {b} | {row['ml4ep_ms_per_shower']:.3f} | "
              f"{row['onnxruntime_ms_per_shower']:.3f} | {row['torch_ms_per_shower']:.3f} |", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--geometry", default="ds2")
    ap.add_argument("--rounds", type=int, default=4, help="alternation rounds")
    ap.add_argument("--write", type=Path, help="replace the fastsim_models section of this markdown file")
    args = ap.parse_args(argv)
    header = ["| model | batch | ml4ep ms/shower | onnxruntime ms/shower | PyTorch ms/shower |", "|---|---|---|---|---|"]
    print("\n".join(header))
    rows = run(args.geometry, args.rounds)
    if args.write:
        lines = ["### Generative shower models (`benchmarks/fastsim.py`)", "",
                 f"{cpu_model()}; one thread each; medians of alternating blocks; the decoder of the default-size "
                 "Par04-style VAE (hidden 256/128/64, latent 10), outputs cross-checked against PyTorch (1e-4). "
                 "Target: at most 1 ms per shower at batch 1 with the compiled model.", "", *header]
        lines += [f"| VAE ({r['geometry']}, {r['voxels']} voxels) | {r['batch']} | {r['ml4ep_ms_per_shower']:.3f} | "
                  f"{r['onnxruntime_ms_per_shower']:.3f} | {r['torch_ms_per_shower']:.3f} |" for r in rows]
        write_section(args.write, "fastsim_models", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
