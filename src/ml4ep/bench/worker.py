"""One backend on one model, in a process of its own: ``python -m ml4ep.bench.worker job.json``.

The job (written by :mod:`ml4ep.bench.run`) names the backend, the model, its ONNX file, the check batch, the
timed batches, the repeats and the reference outputs. The worker

1. pins the threads (and, for one-thread backends, binds the process to one CPU) before any engine loads;
2. makes the feeds of every batch (the same for every backend: :meth:`BenchModel.inputs` with a fixed seed);
3. imports the engine and notes the resident memory (the baseline of the model's own memory);
4. loads the model (Python backends) or builds the C++ timing program (C++ backends);
5. runs the check batch and compares its outputs with the reference: a backend that disagrees is not timed;
6. times each batch: a warm-up call, then ``repeats`` blocks of calls, each lasting about ``block_s`` (the GPU
   backends: on inputs already on the GPU, each block between two CUDA events);
7. prints one JSON line after :data:`ml4ep.bench.cpp.MARKER`.

With ``"reference": true`` it only runs the check batch with onnxruntime (1 thread, no graph optimisation)
and writes the reference outputs.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ML4EP_BLAS_THREADS")


def pin_threads(single: bool) -> None:
    """One thread everywhere (env of the BLAS, OpenMP, XLA) and the process bound to one CPU."""
    if not single:
        return
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})


def status_kb(key: str) -> int:
    """VmRSS / VmHWM of this process in kB (Linux), or -1."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def compare(got: list, ref: list, rtol: float) -> tuple[bool, float, str]:
    """Whether every output matches the reference within ``rtol`` of the output's scale (max |ref|); returns
    (ok, the largest difference relative to the scale, a message)."""
    import numpy as np

    if len(got) != len(ref):
        return False, float("inf"), f"{len(got)} outputs, the reference has {len(ref)}"
    worst = 0.0
    for k, (g, r) in enumerate(zip(got, ref)):
        g = np.asarray(g)
        if g.size != r.size:
            return False, float("inf"), f"output {k} has {g.size} values, the reference {r.size}"
        g = g.reshape(r.shape).astype(np.float64)
        if not np.all(np.isfinite(g)):
            return False, float("inf"), f"output {k} has non-finite values"
        scale = max(float(np.max(np.abs(r))), 1e-6)
        worst = max(worst, float(np.max(np.abs(g - r))) / scale)
    return worst <= rtol, worst, f"largest difference {worst:.2e} of the output scale (tolerance {rtol:g})"


def _time_blocks(run, arrays, repeats: int, block_s: float) -> dict:
    if hasattr(run, "time_block"):  # the GPU backends: inputs on the device, CUDA events around each block
        feeds = run.device_feeds(arrays)
        run.time_block(feeds, 2)  # warm-up (ml4ep-cuda: the direct call, then the CUDA graph's capture)
        one = run.time_block(feeds, 1) / 1e3
        n = max(1, int(block_s / max(one, 1e-7)))
        return {"calls": n, "ms": [run.time_block(feeds, n) for _ in range(repeats)]}
    run(arrays)  # warm-up (and, for jit engines, the compile of this shape)
    t0 = time.perf_counter()
    run(arrays)
    one = time.perf_counter() - t0
    n = max(1, int(block_s / max(one, 1e-7)))
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            run(arrays)
        ms.append((time.perf_counter() - t0) / n * 1e3)
    return {"calls": n, "ms": ms}


def _python(job: dict, model, feeds: dict) -> dict:
    from .backends import PYTHON_BACKENDS

    engine = PYTHON_BACKENDS[job["backend"]]()
    engine.imports()
    arrays = {b: [f[n] for n in model.input_names] for b, f in feeds.items()}
    base = status_kb("VmRSS:")
    t0 = time.perf_counter()
    run = engine.load(Path(job["onnx"]), model, Path(job["work"]))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = run(arrays[job["check_batch"]])
    first_s = time.perf_counter() - t0
    res = {"load_s": load_s, "first_s": first_s}
    if not _check(job, out, _load_ref(job), res):
        return res
    res["batches"] = {str(b): _time_blocks(run, arrays[b], job["repeats"], job["block_s"]) for b in job["batches"]}
    res.update(base_kb=base, peak_kb=status_kb("VmHWM:"))
    return res


def _cpp(job: dict, model, feeds: dict) -> dict:
    from . import cpp
    from .backends import CPP_BACKENDS

    work = Path(job["work"])
    ref = _load_ref(job)
    check = job["check_batch"]
    built = CPP_BACKENDS[job["backend"]](Path(job["onnx"]), model, feeds[check], ref, work)
    cpp.write_feeds(work, {b: [f[n] for n in model.input_names] for b, f in feeds.items()})
    timeout = job.get("timeout", 3600)
    first = cpp.run_program(built["exe"], work, check, [], 1, 0.0, timeout)  # the check batch only
    res = {"build_s": built["build_s"], "load_s": first["load_s"], "first_s": first["first_s"]}
    if not _check(job, cpp.read_outputs(work, built["outputs"], check), ref, res):
        return res
    timed = cpp.run_program(built["exe"], work, check, job["batches"], job["repeats"], job["block_s"], timeout)
    res.update(batches=timed["batches"], base_kb=timed["base_kb"], peak_kb=timed["peak_kb"])
    return res


def _load_ref(job: dict) -> list:
    import numpy as np

    with np.load(job["reference"]) as z:
        return [z[f"out{k}"] for k in range(len(z.files))]


def _check(job: dict, out: list, ref: list, res: dict) -> bool:
    ok, diff, msg = compare(out, ref, job["rtol"])
    res["max_diff"] = diff
    if not ok:
        res.update(status="mismatch", reason=f"outputs differ from onnxruntime at batch {job['check_batch']}: {msg}")
    return ok


def _reference(job: dict, model, feeds: dict) -> dict:
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(job["onnx"], so, providers=["CPUExecutionProvider"])
    out = sess.run(None, feeds[job["check_batch"]])
    np.savez(job["reference"], **{f"out{k}": o for k, o in enumerate(out)})
    return {"status": "ok"}


def run_job(job: dict) -> dict:
    from .backends import BACKENDS
    from .zoo import bench_model

    reference = job.get("reference_only", False)
    pin_threads(reference or BACKENDS[job["backend"]].single_thread)
    model = bench_model(job["model"], job["size"])
    batches = sorted({job["check_batch"], *([] if reference else job["batches"])})
    feeds = {b: model.inputs(b, seed=job.get("seed", 0)) for b in batches}
    if reference:
        return _reference(job, model, feeds)
    res = (_cpp if BACKENDS[job["backend"]].kind == "cpp" else _python)(job, model, feeds)
    res.setdefault("status", "ok")
    return res


def main(argv: list[str] | None = None) -> int:
    from .cpp import MARKER

    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    try:
        res = run_job(job)
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the parent, with its reason
        res = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}".strip(),
               "traceback": traceback.format_exc()[-4000:]}
    sys.stdout.flush()
    print(MARKER + json.dumps(res), flush=True)  # noqa: T201 - the protocol with the parent process
    return 0


if __name__ == "__main__":
    sys.exit(main())
