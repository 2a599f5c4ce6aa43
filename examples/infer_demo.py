"""The main end-to-end job of `make demo` (until the fast-simulation pipeline exists):

a PyTorch model exported to ONNX, compiled by ml4ep into C++, checked against onnxruntime, and the
latency of ml4ep and onnxruntime (one thread each) printed at batch 1 and 64.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import ml4ep.infer as mi
from ml4ep.bench import zoo


def median_us(fn, x, repeat: int = 7, number: int = 200) -> float:
    fn(x)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn(x)
        times.append((time.perf_counter() - t0) / number)
    return float(np.median(times) * 1e6)


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="ml4ep-demo-"))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    print(f"{'model':<12} {'batch':>5} {'max |diff|':>11} {'ml4ep us':>9} {'onnxrt us':>9} {'speed-up':>8}")
    for family in ("mlp", "cnn2d", "vae_decoder"):
        path = out / f"{family}.onnx"
        zoo.family_onnx(family, path)
        t0 = time.perf_counter()
        model = mi.compile(path)
        compile_s = time.perf_counter() - t0
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        for batch in (1, 64):
            x = np.random.default_rng(0).normal(size=(batch, *zoo.FAMILIES[family].input_shape)).astype(np.float32)
            diff = float(np.abs(model(x) - sess.run(None, {"x": x})[0]).max())
            if diff > 1e-4:
                raise SystemExit(f"{family}: ml4ep and onnxruntime disagree by {diff}")
            t_ml = median_us(model, x)
            t_ort = median_us(lambda a, s=sess: s.run(None, {"x": a}), x)
            print(f"{family:<12} {batch:>5} {diff:>11.2e} {t_ml:>9.1f} {t_ort:>9.1f} {t_ort / t_ml:>7.1f}x")
        saved = model.save(out / family)
        print(f"  compiled in {compile_s:.2f} s; standalone C++ in {saved}")
    print(f"\nDone. Try: ml4ep compile {out / 'mlp.onnx'} -o mlp_cpp --print")


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    main()
