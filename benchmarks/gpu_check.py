"""The GPU check of ml4ep's CUDA backend: the one script a lent GPU runs (issue 20).

Every HEP model of the bench zoo (``ml4ep.bench.zoo``) built with ``device="cuda"`` must match the CPU reference
(rtol 1e-4, atol 1e-5 of the output's scale), with torch CUDA tensors and with NumPy arrays, through the direct
first call, the CUDA-graph capture of the second and the replays after; one small model runs under
``compute-sanitizer --tool memcheck``. Then, timed with CUDA events after warm-up, ml4ep (torch tensors on the
current stream) against torch eager and a torch CUDA graph of the same module: latency at batch 1 (median of
single synchronised calls), throughput at batch 64 and 1024 (samples/s from blocks of back-to-back calls), the
contenders alternated in blocks (A B C, C B A, ...) and the medians compared. The targets, per model:

- batch 1: at least 2x faster than torch eager, and not slower than replaying a torch CUDA graph;
- batch 1024: at least torch eager's throughput.

Three subcommands:

``prepare`` (here, on a machine without a GPU, with onnx and onnxruntime): per zoo model (full size by default)
export ONNX, compile with ``device="cuda"`` for sm_90 only (H100/H200), copy the build folder (``meta.json``,
``lib.so``, ``<name>.bin``, the sources) into ``--dir``, save the feeds and the reference outputs (onnxruntime,
no graph optimisation; else ml4ep's CPU build) at batch 1 and 3 as ``.npy``, and ``manifest.json``. A model the
CUDA code refuses (``UnsupportedOperatorError``: ops with no CUDA kernel) is recorded as such and the others go on.
One small model is also built, for the sanitizer. The torch baseline rebuilds its modules on the device from the
zoo code with the same seed; a SHA-256 of each state dict lets the device tell whether its weights are the
exported ones (then torch's outputs are checked too); the weights themselves (``np.savez``, loaded with
``allow_pickle=False``) are added, smallest first, where they fit the size budget (``--max-mib``, 55 by default:
the device tool carries at most 64 MiB). ``--host`` builds ``device="cuda-host"`` instead (for ``--dry-run``).

``run`` (on the device, under 5 minutes, ``--time-budget`` seconds in all): imports ml4ep's CUDA runtime without
``ml4ep/infer/__init__.py`` (no onnx: only numpy, ``ml4ep.errors``, ``ml4ep._native.names`` and
``ml4ep.infer``'s dims, limits, graph, runtime and cuda.runtime), checks and times each model in a process of its
own (``model``: a crash or a sticky CUDA error is recorded with that model, whose results so far are kept, and the
next one goes on; a model is shortened or skipped, and says so, when the run is late; its log is
``--out/models/<key>.log``), runs the sanitizer on ``one`` in a subprocess, writes ``--out/gpu_check.json``
(card, versions, per model: correctness, latencies, throughputs, ratios, targets met or not), ``gpu_check.txt``
(the table) and ``sanitizer.log``.
``--dry-run`` (automatic for a ``--host`` preparation) runs the same code on the CPU: the cuda-host builds,
torch on the CPU, ``time.perf_counter`` instead of CUDA events, no torch CUDA graphs, the ``one`` subprocess
without the sanitizer.

``one --dir D --model KEY`` (the sanitizer's subject): the model at batch 3 with NumPy arrays, three calls (direct,
graph capture, replay), each compared with the reference; prints one JSON line, exits 1 on a mismatch. No torch.

How to run it (``build/`` is git-ignored, so the artifacts are never committed)::

    # here: build (about 1 minute per model with nvcc) and check the size (< 55 MiB)
    .venv/bin/python benchmarks/gpu_check.py prepare --dir build/gpu_check
    # on the lent GPU, with the device tool: run(command=..., carry=["build/gpu_check"], timeout_s=420)
    python3 benchmarks/gpu_check.py run --dir build/gpu_check --out $OUT
    # the results come back as $OUT/gpu_check.json, gpu_check.txt and sanitizer.log

    # the same code paths on this machine (cuda-host builds, small models, quick):
    .venv/bin/python benchmarks/gpu_check.py prepare --dir build/gpu_check_host --host --size small
    .venv/bin/python benchmarks/gpu_check.py run --dir build/gpu_check_host --out /tmp/gpu_check --dry-run

The device's Python needs torch (CUDA build) and numpy; ``compute-sanitizer`` is looked for on the PATH, then in
``/usr/local/cuda*/bin`` (skipped, with a note, when absent).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

import numpy as np

T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
SEED = 0  # the zoo's module seed and feed seed, here and on the device
CHECK_BATCHES = (1, 3)
RTOL, ATOL = 1e-4, 1e-5  # ml4ep's CUDA build against the reference; ATOL relative to the output's scale
ONE_MARKER = "GPU_CHECK_ONE "
# what ml4ep's CUDA runtime may import on the device (nothing of ONNX)
RUNTIME_MODULES = {"ml4ep", "ml4ep.errors", "ml4ep._native", "ml4ep._native.names", "ml4ep.infer",
                   "ml4ep.infer.dims", "ml4ep.infer.limits", "ml4ep.infer.graph", "ml4ep.infer.runtime",
                   "ml4ep.infer.cuda", "ml4ep.infer.cuda.runtime"}
DRY_NOTE = "no torch CUDA graphs on the CPU (dry run)"
SANITIZER_PREFERENCE = ("transformer", "diffusion", "gnn", "interaction", "cnn", "dense", "vae")


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {msg}", flush=True)


def _json_default(x):
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON: {type(x).__name__}")


def _dump(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=1, default=_json_default))


def _tail(exc: BaseException, n: int = 1500) -> str:
    return traceback.format_exc()[-n:] if exc else ""


def _dir_bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


# ------------------------------------------------------------------------------------------------------
# prepare (here)
# ------------------------------------------------------------------------------------------------------
def state_fingerprint(module) -> str:
    """SHA-256 of a torch module's state dict (names, dtypes, shapes, bytes): equal iff the weights are."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"{name}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _git() -> dict:
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=20).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20).stdout.strip()
        return {"commit": commit, "modified_files": len(dirty.splitlines())}
    except (OSError, subprocess.SubprocessError):
        return {}


def _ignored(path: Path) -> bool | None:
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(path)], capture_output=True, timeout=20)
        return r.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return None


def _reference(onnx_path: Path, feeds: dict, output_names: list[str]) -> tuple[list[np.ndarray], str]:
    """The reference outputs: onnxruntime without graph optimisation (as ml4ep bench), else ml4ep's CPU build."""
    try:
        import onnxruntime as ort
    except ImportError:
        import ml4ep.infer as mi

        cpu = mi.compile(onnx_path)
        out = cpu.run(feeds)
        return [np.asarray(out[n]) for n in output_names], "ml4ep (CPU build)"
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    return sess.run(output_names, feeds), f"onnxruntime {ort.__version__} (no graph optimisation)"


def prepare_model(name: str, size: str, device: str, archs: str, dest: Path, tmp: Path) -> dict:
    """Export, compile and copy one zoo model; its feeds and reference outputs at the check batches."""
    import ml4ep.infer as mi
    from ml4ep.bench import zoo
    from ml4ep.errors import UnsupportedOperatorError

    bm = zoo.bench_model(name, size)
    key = f"{name}-{size}"
    entry: dict = {"name": name, "size": size, "description": bm.description,
                   "input_names": list(bm.input_names), "output_names": list(bm.output_names),
                   "batch_inputs": list(bm.batch_inputs or bm.input_names)}
    onnx_path = tmp / f"{key}.onnx"
    bm.export(onnx_path, seed=SEED)
    t0 = time.perf_counter()
    try:
        model = mi.compile(onnx_path, device=device, cuda_archs=archs, name=key.replace("-", "_"))
    except UnsupportedOperatorError as exc:
        ops = sorted({p[1] for p in exc.problems})
        entry.update(status="unsupported", reason=f"no CUDA code for {', '.join(ops)}")
        return entry
    entry["build_s"] = round(time.perf_counter() - t0, 1)
    folder = dest / "models" / key
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(model.directory, folder, symlinks=False)  # a lib.so linked to a joint build: its bytes
    entry["folder"] = f"models/{key}"
    data = folder / "data"
    data.mkdir()
    entry["inputs"], entry["outputs"] = [], []
    for b in CHECK_BATCHES:
        feeds = bm.inputs(b, seed=SEED)
        ref, how = _reference(onnx_path, feeds, list(bm.output_names))
        entry["reference"] = how
        for k, n in enumerate(bm.input_names):
            np.save(data / f"in{k}_b{b}.npy", feeds[n], allow_pickle=False)
        for k, r in enumerate(ref):
            np.save(data / f"out{k}_b{b}.npy", np.asarray(r), allow_pickle=False)
        if b == 1:
            entry["inputs"] = [{"name": n, "dtype": str(feeds[n].dtype), "shape_b1": list(feeds[n].shape)}
                               for n in bm.input_names]
            entry["outputs"] = [{"name": n, "dtype": str(np.asarray(r).dtype), "shape_b1": list(np.shape(r))}
                                for n, r in zip(bm.output_names, ref)]
    entry["check_batches"] = list(CHECK_BATCHES)
    module = bm.module(seed=SEED)
    entry["parameters"] = int(sum(p.numel() for p in module.parameters()))
    entry["torch_fingerprint"] = state_fingerprint(module)
    entry["torch_weights"] = None
    entry["torch_weights_bytes"] = int(sum(t.numel() * t.element_size() for t in module.state_dict().values()))
    entry["bytes"] = _dir_bytes(folder)
    entry["status"] = "ok"
    return entry


def _save_weights(name: str, size: str, path: Path) -> None:
    from ml4ep.bench import zoo

    sd = zoo.bench_model(name, size).module(seed=SEED).state_dict()
    np.savez(path, **{k: v.detach().cpu().numpy() for k, v in sd.items()})


def cmd_prepare(args) -> int:
    dest = Path(args.dir)
    device = "cuda-host" if args.host else "cuda"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if _ignored(dest) is False:
        log(f"warning: {dest} is not git-ignored; its artifacts could be committed (use a folder under build/)")
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    manifest: dict = {"version": 1, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "git": _git(),
                      "device": device, "cuda_archs": args.archs if device == "cuda" else None, "seed": SEED,
                      "size": args.size, "check_batches": list(CHECK_BATCHES), "rtol": RTOL, "atol": ATOL,
                      "python": platform.python_version(), "models": {}, "timing_models": [],
                      "sanitizer_model": None}
    try:
        import torch

        manifest["torch_here"] = torch.__version__
    except ImportError:
        pass
    budget = int(args.max_mib * 2**20)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        def build(name: str, size: str) -> dict:
            key = f"{name}-{size}"
            log(f"{key}: export, compile ({device}), reference")
            try:
                e = prepare_model(name, size, device, args.archs, dest, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - recorded, the others go on
                e = {"name": name, "size": size, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:2000],
                     "traceback": _tail(exc)}
            manifest["models"][key] = e
            extra = f" ({e.get('build_s')} s, {e.get('bytes', 0) / 2**20:.1f} MiB)" if e["status"] == "ok" else \
                f": {e.get('reason', '')[:300]}"
            log(f"{key}: {e['status']}{extra}")
            return e

        for name in names:
            if build(name, args.size)["status"] == "ok":
                manifest["timing_models"].append(f"{name}-{args.size}")
        # the sanitizer's subject: a small model (the main one when the main size is small)
        wanted = [args.sanitizer_model] if args.sanitizer_model != "auto" else list(SANITIZER_PREFERENCE)
        for name in wanted:
            key = f"{name}-small"
            e = manifest["models"].get(key) or build(name, "small")
            if e["status"] == "ok":
                manifest["sanitizer_model"] = key
                break
        if args.small_too and args.size != "small":
            for name in names:
                if f"{name}-small" not in manifest["models"]:
                    build(name, "small")
    # torch weights, smallest first, while they fit the budget (the fingerprints always)
    total = _dir_bytes(dest)
    ok = sorted((e["torch_weights_bytes"], k) for k, e in manifest["models"].items() if e["status"] == "ok")
    for nbytes, key in ok:
        e = manifest["models"][key]
        if total + nbytes + 2**20 > budget:
            continue
        path = dest / e["folder"] / "torch_weights.npz"
        _save_weights(e["name"], e["size"], path)
        e["torch_weights"] = f"{e['folder']}/torch_weights.npz"
        total += path.stat().st_size
    manifest["total_bytes"] = total
    _dump(manifest, dest / "manifest.json")
    total = _dir_bytes(dest)
    print(f"\n{'model':18s} {'status':12s} {'MiB':>6s} {'torch weights':>14s}  reason")
    for key, e in manifest["models"].items():
        mib = f"{e.get('bytes', 0) / 2**20:.1f}" if e["status"] == "ok" else "-"
        tw = "saved" if e.get("torch_weights") else ("fingerprint" if e["status"] == "ok" else "-")
        print(f"{key:18s} {e['status']:12s} {mib:>6s} {tw:>14s}  {e.get('reason', '')[:90]}")
    print(f"\n{dest}: {total / 2**20:.1f} MiB in all (budget {args.max_mib:g} MiB); timing models: "
          f"{', '.join(manifest['timing_models']) or 'none'}; sanitizer model: {manifest['sanitizer_model']}")
    if total > budget:
        print(f"ERROR: {dest} holds {total / 2**20:.1f} MiB, over the {args.max_mib:g} MiB budget: the device tool "
              f"carries at most 64 MiB. Prepare fewer models (--models) or no small ones.", file=sys.stderr)
        return 1
    if not manifest["timing_models"]:
        print("ERROR: no model compiled; nothing for the device to run", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------------------------------
# the device side: import the CUDA runtime without ml4ep.infer's package (no onnx)
# ------------------------------------------------------------------------------------------------------
def import_runtime():
    """``ml4ep.infer.cuda.runtime.CudaModel``, with ``ml4ep.infer`` an empty package module (its ``__init__``
    imports the ONNX front end); checks that nothing beyond numpy and the runtime's own modules came in."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    import ml4ep

    if "ml4ep.infer" not in sys.modules:
        pkg = types.ModuleType("ml4ep.infer", "ml4ep.infer without its __init__ (the CUDA runtime only)")
        pkg.__path__ = [str(SRC / "ml4ep" / "infer")]
        pkg.__package__ = "ml4ep.infer"
        sys.modules["ml4ep.infer"] = pkg
        ml4ep.infer = pkg
    from ml4ep.infer.cuda.runtime import CudaModel

    loaded = {m for m in sys.modules if m == "ml4ep" or m.startswith("ml4ep.")}
    extra = sorted(loaded - RUNTIME_MODULES)
    onnx = sorted(m for m in sys.modules if m == "onnx" or m.startswith(("onnx.", "onnxruntime")))
    if extra or onnx:
        raise RuntimeError(f"the CUDA runtime imported more than it should: ml4ep modules {extra}, onnx {onnx}")
    where = Path(ml4ep.__file__).resolve()
    if SRC.resolve() not in where.parents:
        log(f"warning: ml4ep comes from {where}, not from this working tree's src/")
    return CudaModel, sorted(loaded)


def _load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def check_data(folder: Path, entry: dict, b: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    d = folder / "data"
    ins = [_load_npy(d / f"in{k}_b{b}.npy") for k in range(len(entry["input_names"]))]
    outs = [_load_npy(d / f"out{k}_b{b}.npy") for k in range(len(entry["output_names"]))]
    return ins, outs


def compare(got: list, ref: list[np.ndarray], rtol: float = RTOL, atol: float = ATOL) -> dict:
    """|got - ref| <= atol * scale + rtol * |ref| everywhere (scale: the output's max |ref|); exact for integers
    and booleans. The largest errors, absolute and relative to the scale."""
    res = {"ok": True, "max_abs": 0.0, "max_rel_scale": 0.0, "problem": None}
    if len(got) != len(ref):
        return {**res, "ok": False, "problem": f"{len(got)} outputs, the reference has {len(ref)}"}
    for k, (g, r) in enumerate(zip(got, ref)):
        g = np.asarray(g)
        if g.shape != r.shape:
            return {**res, "ok": False, "problem": f"output {k}: shape {g.shape}, the reference {r.shape}"}
        if r.dtype.kind in "biu":
            bad = int(np.count_nonzero(g != r))
            if bad:
                res.update(ok=False, problem=f"output {k}: {bad} values differ (exact)")
            continue
        g64, r64 = g.astype(np.float64), r.astype(np.float64)
        if not np.all(np.isfinite(g64)):
            return {**res, "ok": False, "problem": f"output {k} has non-finite values"}
        scale = max(float(np.max(np.abs(r64))) if r64.size else 0.0, 1e-30)
        diff = np.abs(g64 - r64)
        mx = float(diff.max()) if diff.size else 0.0
        res["max_abs"] = max(res["max_abs"], mx)
        res["max_rel_scale"] = max(res["max_rel_scale"], mx / scale)
        if np.any(diff > atol * scale + rtol * np.abs(r64)):
            res["ok"] = False
            res["problem"] = res["problem"] or f"output {k}: largest difference {mx:.3g} ({mx / scale:.2e} of scale)"
    return res


def _worst(results: list[dict]) -> dict:
    out = {"ok": all(r["ok"] for r in results), "max_abs": max(r["max_abs"] for r in results),
           "max_rel_scale": max(r["max_rel_scale"] for r in results)}
    out["problems"] = [r["problem"] for r in results if r.get("problem")][:5]
    return out


# ------------------------------------------------------------------------------------------------------
# one (the sanitizer's subject): NumPy only, no torch
# ------------------------------------------------------------------------------------------------------
def cmd_one(args) -> int:
    res: dict = {"model": args.model, "batch": args.batch}
    try:
        CudaModel, _ = import_runtime()
        d = Path(args.dir)
        entry = json.loads((d / "manifest.json").read_text())["models"][args.model]
        folder = d / entry["folder"]
        ins, ref = check_data(folder, entry, args.batch)
        cm = CudaModel(folder)
        if not cm.available:
            raise RuntimeError(cm.problem)
        calls = []
        for _ in range(args.calls):  # direct, graph capture, replay
            out = cm(*ins)
            calls.append(compare(list(out) if isinstance(out, tuple) else [out], ref))
        res.update(_worst(calls), calls=len(calls), device=cm.device)
        del cm
    except Exception as exc:  # noqa: BLE001 - reported on the marker line
        res.update(ok=False, error=f"{type(exc).__name__}: {exc}", traceback=_tail(exc))
    print(ONE_MARKER + json.dumps(res, default=_json_default), flush=True)
    return 0 if res.get("ok") else 1


# ------------------------------------------------------------------------------------------------------
# run (on the device): correctness, timing, sanitizer
# ------------------------------------------------------------------------------------------------------
class Clock:
    """CUDA events on the GPU, ``time.perf_counter`` in a dry run."""

    def __init__(self, torch, gpu: bool):
        self.torch, self.gpu = torch, gpu
        if gpu:
            self.start = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)

    def sync(self) -> None:
        if self.gpu:
            self.torch.cuda.synchronize()

    def single_calls(self, fn, n: int) -> list[float]:
        """ms of each of ``n`` calls, each timed alone (the stream idle before, waited for after): latency."""
        out = []
        self.sync()
        for _ in range(n):
            if self.gpu:
                self.start.record()
                fn()
                self.end.record()
                self.end.synchronize()
                out.append(self.start.elapsed_time(self.end))
            else:
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) * 1e3)
        return out

    def block(self, fn, n: int) -> float:
        """ms per call of ``n`` back-to-back calls: throughput."""
        self.sync()
        if self.gpu:
            self.start.record()
            for _ in range(n):
                fn()
            self.end.record()
            self.end.synchronize()
            return self.start.elapsed_time(self.end) / n
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) * 1e3 / n

    def estimate(self, fn, n: int = 3) -> float:
        """ms per call, roughly (wall clock, synchronised): sizes the blocks."""
        self.sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        self.sync()
        return (time.perf_counter() - t0) * 1e3 / n


def _stats(ms: list[float], batch: int) -> dict:
    a = np.asarray(ms)
    med = float(np.median(a))
    return {"median_ms": med, "q25_ms": float(np.percentile(a, 25)), "q75_ms": float(np.percentile(a, 75)),
            "min_ms": float(a.min()), "samples": int(a.size), "per_s": batch / med * 1e3 if med > 0 else None}


class Runner:
    def __init__(self, args, manifest: dict, torch, CudaModel, gpu: bool, out: Path, budget_s: float):
        self.args, self.manifest, self.torch, self.CudaModel, self.gpu, self.out = \
            args, manifest, torch, CudaModel, gpu, out
        self.dir = Path(args.dir)
        self.dev = torch.device("cuda" if gpu else "cpu")
        self.clock = Clock(torch, gpu)
        self.deadline = T0 + budget_s  # T0: this process's start

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    # ---- correctness -------------------------------------------------------------------------------
    def correctness(self, key: str, entry: dict, cm) -> dict:
        torch = self.torch
        folder = self.dir / entry["folder"]
        torch_calls, numpy_calls = [], []
        for b in entry["check_batches"]:
            ins, ref = check_data(folder, entry, b)
            tins = [torch.from_numpy(a).to(self.dev) for a in ins]
            for _ in range(3):  # direct, graph capture, replay
                out = cm(*tins)
                out = list(out) if isinstance(out, tuple) else [out]
                bad = [f"output {k} is on {o.device}" for k, o in enumerate(out) if o.device.type != self.dev.type]
                self.clock.sync()
                r = compare([o.cpu().numpy() for o in out], ref)
                if bad:
                    r.update(ok=False, problem="; ".join(bad))
                torch_calls.append(r)
            for _ in range(2):
                out = cm(*ins)
                out = list(out) if isinstance(out, tuple) else [out]
                r = compare(out, ref)
                if not all(isinstance(o, np.ndarray) for o in out):
                    r.update(ok=False, problem="NumPy inputs gave non-NumPy outputs")
                numpy_calls.append(r)
        t, n = _worst(torch_calls), _worst(numpy_calls)
        return {"ok": t["ok"] and n["ok"], "torch_tensors": t, "numpy": n, "batches": entry["check_batches"],
                "calls": len(torch_calls) + len(numpy_calls)}

    def torch_module(self, entry: dict) -> tuple[object, dict]:
        """The zoo's module on the device; whether its weights are the exported ones (fingerprint, else the saved
        weights)."""
        from ml4ep.bench import zoo

        module = zoo.bench_model(entry["name"], entry["size"]).module(seed=SEED)
        info = {"weights": "rebuilt from the zoo code (seed 0)"}
        same = state_fingerprint(module) == entry["torch_fingerprint"]
        if not same and entry.get("torch_weights"):
            with np.load(self.dir / entry["torch_weights"], allow_pickle=False) as z:
                sd = {k: self.torch.from_numpy(z[k]) for k in z.files}
            module.load_state_dict(sd)
            same = True
            info["weights"] = "loaded from the saved weights (the rebuilt ones differed)"
        info["same_weights"] = same
        return module.to(self.dev).eval(), info

    def torch_check(self, module, entry: dict) -> dict:
        torch = self.torch
        folder = self.dir / entry["folder"]
        res = []
        with torch.inference_mode():
            for b in entry["check_batches"]:
                ins, ref = check_data(folder, entry, b)
                out = module(*[torch.from_numpy(a).to(self.dev) for a in ins])
                out = list(out) if isinstance(out, (tuple, list)) else [out]
                res.append(compare([o.cpu().numpy() for o in out], ref))
        return _worst(res)

    # ---- timing ------------------------------------------------------------------------------------
    def contenders(self, cm, module, tensors: list, batch: int, notes: list[str]) -> dict:
        torch = self.torch
        c = {"ml4ep": lambda: cm(*tensors), "torch-eager": lambda: module(*tensors)}
        if not self.gpu:
            if DRY_NOTE not in notes:
                notes.append(DRY_NOTE)
            return c
        try:
            static = [t.clone() for t in tensors]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    module(*static)
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                static_out = module(*static)
            outs = list(static_out) if isinstance(static_out, (tuple, list)) else [static_out]

            def graph_io():
                for s, t in zip(static, tensors):
                    s.copy_(t)
                g.replay()
                return [o.clone() for o in outs]

            c["torch-graph"] = g.replay
            c["torch-graph-io"] = graph_io
        except Exception as exc:  # noqa: BLE001 - the module does not capture: noted, timed without
            notes.append(f"batch {batch}: torch CUDA graph capture failed: {type(exc).__name__}: {exc}"[:300])
            torch.cuda.synchronize()
        return c

    def time_batch(self, cm, module, bm, batch: int, latency: bool, budget_s: float, notes: list[str]) -> dict:
        torch = self.torch
        a = self.args
        feeds = bm.inputs(batch, seed=SEED)
        tensors = [torch.from_numpy(feeds[n]).to(self.dev) for n in bm.input_names]
        cont = self.contenders(cm, module, tensors, batch, notes)
        est = {}
        for name, fn in cont.items():
            fn()  # warm-up: ml4ep's first call runs directly, its second captures a CUDA graph
            fn()
            est[name] = self.clock.estimate(fn, 3)
        if latency:
            per_block = {k: a.latency_calls // a.blocks for k in cont}
            cost = sum(per_block[k] * est[k] for k in cont) / 1e3  # s per round of blocks
        else:
            per_block = {k: int(min(a.max_calls, max(1, a.block_ms / max(est[k], 1e-3)))) for k in cont}
            cost = sum(per_block[k] * est[k] for k in cont) / 1e3
        rounds = a.blocks
        if cost * rounds > budget_s:
            rounds = max(2, int(budget_s / max(cost, 1e-9)))
            if rounds < a.blocks:
                notes.append(f"batch {batch}: {rounds} blocks per contender instead of {a.blocks} (time budget)")
        samples: dict[str, list[float]] = {k: [] for k in cont}
        order = list(cont)
        for r in range(rounds):
            for k in (order if r % 2 == 0 else order[::-1]):  # A B C, C B A, ...
                if latency:
                    samples[k] += self.clock.single_calls(cont[k], per_block[k])
                else:
                    samples[k].append(self.clock.block(cont[k], per_block[k]))
        out = {k: {**_stats(v, batch), "calls_per_block": per_block[k], "blocks": rounds} for k, v in samples.items()}
        del cont, tensors
        return out

    def time_model(self, cm, module, entry: dict, rec: dict, save) -> None:
        from ml4ep.bench import zoo

        bm = zoo.bench_model(entry["name"], entry["size"])
        notes: list[str] = rec.setdefault("notes", [])
        res: dict = rec.setdefault("timing", {})
        batches = self.args.batches
        t_end = self.deadline
        with self.torch.inference_mode():
            for i, b in enumerate(batches):
                left = t_end - time.perf_counter()
                share = left / (len(batches) - i)
                if share < 0.5:
                    notes.append(f"batch {b}: skipped (running late: {left:.1f} s left for this model)")
                    continue
                try:
                    res[str(b)] = self.time_batch(cm, module, bm, b, i == 0, share * 0.7, notes)
                except Exception as exc:  # noqa: BLE001 - noted, the other batches go on
                    notes.append(f"batch {b}: {type(exc).__name__}: {exc}"[:500])
                    self.clock.sync()
                if self.gpu:
                    self.torch.cuda.empty_cache()
                save(rec)

    # ---- one model ---------------------------------------------------------------------------------
    def model(self, key: str, save) -> dict:
        """Check and time one model; ``save(record)`` after each step (a crash keeps what was done)."""
        entry = self.manifest["models"][key]
        rec: dict = {"description": entry.get("description"), "parameters": entry.get("parameters")}
        t0 = time.perf_counter()
        cm = module = None
        try:
            cm = self.CudaModel(self.dir / entry["folder"])
            if not cm.available:
                raise RuntimeError(f"the CUDA model cannot run here: {cm.problem}")
            rec["correct"] = self.correctness(key, entry, cm)
            rec["status"] = "ok"
            save(rec)
            module, info = self.torch_module(entry)
            rec["torch_weights"] = info
            if info["same_weights"]:
                rec["torch_check"] = self.torch_check(module, entry)
            self.time_model(cm, module, entry, rec, save)
        except Exception as exc:  # noqa: BLE001 - recorded, the next model goes on
            # a checked model keeps its check
            rec.update(error=f"{type(exc).__name__}: {exc}"[:2000], traceback=_tail(exc),
                       failed_in="timing" if "correct" in rec else "check")
            rec.setdefault("status", "failed")
            try:
                self.clock.sync()
            except Exception:  # noqa: BLE001 - a broken context: the next model will say so
                pass
        finally:
            del cm, module
            if self.gpu:
                self.torch.cuda.empty_cache()
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        rec["ratios"], rec["targets"] = targets(rec.get("timing", {}), self.args.batches)
        save(rec)
        return rec

    # ---- the sanitizer -----------------------------------------------------------------------------
    sanitizer: str | None = None

    def find_sanitizer(self) -> str | None:
        if not self.gpu:
            return None
        found = shutil.which("compute-sanitizer")
        if found:
            return found
        for pattern in ("/usr/local/cuda/bin/compute-sanitizer", "/usr/local/cuda*/bin/compute-sanitizer",
                        "/opt/nvidia/*/compute-sanitizer/compute-sanitizer"):
            hits = sorted(glob.glob(pattern))
            if hits:
                return hits[-1]
        return None

    def run_sanitizer(self) -> dict:
        key = self.manifest.get("sanitizer_model")
        if not key:
            return {"status": "skipped", "reason": "no small model was prepared"}
        cmd = [sys.executable, str(Path(__file__).resolve()), "one", "--dir", str(self.dir.resolve()), "--model", key,
               "--batch", "3"]
        res: dict = {"model": key}
        if self.sanitizer:
            cmd = [self.sanitizer, "--tool", "memcheck", "--error-exitcode", "99", "--print-limit", "30"] + cmd
            res["sanitizer"] = self.sanitizer
        else:
            res["note"] = "dry run: the 'one' subprocess without compute-sanitizer" if not self.gpu else \
                "compute-sanitizer not found (PATH, /usr/local/cuda*/bin): the 'one' subprocess ran without it"
        timeout = max(20.0, min(self.args.sanitizer_timeout, self.left() - 5))
        res["command"] = " ".join(cmd)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
            text, rc = p.stdout + p.stderr, p.returncode
        except subprocess.TimeoutExpired as exc:
            text = "".join(x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
                           for x in (exc.stdout, exc.stderr))
            rc = None
            res["timed_out"] = f"after {timeout:.0f} s"
        res["seconds"] = round(time.perf_counter() - t0, 1)
        (self.out / "sanitizer.log").write_text(res["command"] + "\n\n" + text)
        res["exit_code"] = rc
        summary = [ln.strip() for ln in text.splitlines() if "ERROR SUMMARY" in ln]
        res["error_summary"] = summary[-1] if summary else None
        child = [ln for ln in text.splitlines() if ln.startswith(ONE_MARKER)]
        res["one"] = json.loads(child[-1][len(ONE_MARKER):]) if child else None
        if res["one"]:
            res["one"].pop("traceback", None)
        clean = rc == 0 and (not self.sanitizer or (summary and "0 errors" in summary[-1]))
        res["status"] = "ok" if clean and res["one"] and res["one"].get("ok") else "failed"
        return res


def _median(rec: dict, batch: int, who: str) -> float | None:
    return rec.get(str(batch), {}).get(who, {}).get("median_ms")


def targets(timing: dict, batches: list[int]) -> tuple[dict, dict]:
    """The speed ratios (> 1: ml4ep faster) and the targets: batch 1 at least 2x torch eager and not slower than
    a torch CUDA graph replay; the largest batch at least torch eager's throughput (None: not measured)."""
    ratios: dict = {}
    for b in batches:
        m = _median(timing, b, "ml4ep")
        for who in ("torch-eager", "torch-graph", "torch-graph-io"):
            o = _median(timing, b, who)
            ratios[f"b{b}_vs_{who.removeprefix('torch-').replace('-', '_')}"] = o / m if m and o else None
    first, last = batches[0], batches[-1]
    r = ratios.get
    met = {
        f"b{first}_2x_eager": None if r(f"b{first}_vs_eager") is None else r(f"b{first}_vs_eager") >= 2.0,
        f"b{first}_not_slower_than_graph": None if r(f"b{first}_vs_graph") is None else r(f"b{first}_vs_graph") >= 1.0,
        f"b{last}_throughput_at_least_eager": None if r(f"b{last}_vs_eager") is None else r(f"b{last}_vs_eager") >= 1.0,
    }
    return ratios, met


def _versions(torch, gpu: bool) -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
         "torch_cuda": torch.version.cuda}
    if gpu:
        v["cudnn"] = torch.backends.cudnn.version()
        v["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        v["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
        try:
            import ctypes

            n = ctypes.c_int(0)
            ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(n))
            v["cuda_driver_api"] = f"{n.value // 1000}.{n.value % 1000 // 10}"
        except OSError:
            pass
        try:
            v["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                         capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return v


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "us":
        return f"{v * 1e3:.0f}" if v * 1e3 >= 100 else f"{v * 1e3:.1f}"
    if unit == "/s":
        return f"{v / 1e6:.2f}M" if v >= 1e6 else (f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}")
    if unit == "x":
        return f"{v:.2f}"
    return str(v)


def table(report: dict) -> str:
    batches = report["config"]["batches"]
    first, rest = batches[0], batches[1:]
    head = ["model", "check", "err/scale", f"b{first} us", "eager", "graph", "x eager", "x graph"]
    for b in rest:
        head += [f"b{b} /s", "x eager"]
    head += ["targets"]
    rows = []
    for key, rec in report["models"].items():
        if rec.get("status") != "ok":
            rows.append([key, rec.get("status", "?"), (rec.get("error") or rec.get("reason") or "")[:150]])
            continue
        t, ra, c = rec.get("timing", {}), rec["ratios"], rec["correct"]
        err = max(c["torch_tensors"]["max_rel_scale"], c["numpy"]["max_rel_scale"])
        row = [key, "ok" if c["ok"] else "MISMATCH", f"{err:.1e}", _fmt(_median(t, first, "ml4ep"), "us"),
               _fmt(_median(t, first, "torch-eager"), "us"), _fmt(_median(t, first, "torch-graph"), "us"),
               _fmt(ra.get(f"b{first}_vs_eager"), "x"), _fmt(ra.get(f"b{first}_vs_graph"), "x")]
        for b in rest:
            row += [_fmt(t.get(str(b), {}).get("ml4ep", {}).get("per_s"), "/s"), _fmt(ra.get(f"b{b}_vs_eager"), "x")]
        vals = list(rec["targets"].values())
        row.append(f"{sum(v is True for v in vals)}/{len(vals)}" + ("" if None not in vals else " (?)"))
        rows.append(row)
    ok = [r for r in rows if len(r) == len(head)]
    widths = [max([len(head[i])] + [len(r[i]) for r in ok]) for i in range(len(head))]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    for r in rows:
        if len(r) == len(head):
            lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        else:
            lines.append(f"{r[0].ljust(widths[0])}  {r[1]}: {r[2]}")
    for key, rec in report["models"].items():
        for n in rec.get("notes") or []:
            if n != DRY_NOTE:
                lines.append(f"  note {key}: {n}")
        if rec.get("status") == "ok" and rec.get("error"):
            lines.append(f"  error {key}: {rec['error'][:300]}")
        tc = rec.get("torch_check")
        if tc and not tc["ok"]:
            lines.append(f"  note {key}: torch's own outputs differ from the reference by {tc['max_rel_scale']:.1e} "
                         f"of scale (TF32 convolutions?)")
        for n in (rec.get("correct") or {}).get("torch_tensors", {}).get("problems", []) + \
                (rec.get("correct") or {}).get("numpy", {}).get("problems", []):
            lines.append(f"  mismatch {key}: {n}")
    if report["dry_run"]:
        lines.append(f"  note: {DRY_NOTE}")
    s = report.get("sanitizer", {})
    lines.append(f"sanitizer ({s.get('model')}): {s.get('status')}; {s.get('error_summary') or s.get('note') or ''} "
                 f"exit code {s.get('exit_code')}" + (f", timed out {s['timed_out']}" if s.get("timed_out") else ""))
    summ = report["summary"]
    lines.append(f"correct: {summ['correct']}/{summ['checked']} models run ({summ['unsupported']} not built); "
                 f"targets met: "
                 f"{'yes' if summ['all_targets_met'] else 'no'} ({summ['targets_met']}/{summ['targets']} met, "
                 f"{summ['targets_unmeasured']} not measured)" + (" [DRY RUN: CPU, not a GPU result]"
                                                                  if report["dry_run"] else ""))
    for u in summ["unmet"]:
        lines.append(f"  not met: {u}")
    return "\n".join(lines)


def cmd_run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = Path(args.dir)
    manifest = json.loads((d / "manifest.json").read_text())
    CudaModel, runtime_modules = import_runtime()
    import torch

    dry = args.dry_run or manifest["device"] == "cuda-host"
    if manifest["device"] == "cuda-host" and not args.dry_run:
        log("the builds are cuda-host ones: a dry run")
    gpu = not dry
    if gpu and not torch.cuda.is_available():
        print(f"ERROR: torch sees no CUDA GPU (torch {torch.__version__}, CUDA {torch.version.cuda}); on a machine "
              f"without one, prepare with --host and run with --dry-run", file=sys.stderr)
        _dump({"error": "no CUDA GPU visible to torch"}, out / "gpu_check.json")
        return 2
    if dry and manifest["device"] == "cuda":
        print("ERROR: --dry-run needs a --host preparation (device='cuda' builds need a GPU)", file=sys.stderr)
        return 2
    if dry:
        torch.set_num_threads(1)  # a shared machine
    if args.batches is None:
        args.batches = [1, 8, 32] if dry else [1, 64, 1024]
    models = manifest["timing_models"]
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        models = [k for k in models if k in wanted or k.split("-")[0] in wanted]
    runner = Runner(args, manifest, torch, CudaModel, gpu, out, args.time_budget)
    runner.sanitizer = runner.find_sanitizer()
    report: dict = {
        "card": torch.cuda.get_device_name() if gpu else f"none (dry run on {platform.processor() or 'the CPU'})",
        "dry_run": dry, "versions": _versions(torch, gpu), "prepared": {k: manifest.get(k) for k in
                                                                          ("created", "git", "device", "cuda_archs",
                                                                           "size", "python", "torch_here")},
        "config": {"batches": args.batches, "time_budget_s": args.time_budget, "blocks": args.blocks,
                   "latency_calls": args.latency_calls, "block_ms": args.block_ms, "rtol": RTOL, "atol": ATOL,
                   "timer": "CUDA events" if gpu else "time.perf_counter",
                   "latency": "median of single calls, each timed alone (stream idle before, synchronised after)",
                   "throughput": "median over blocks of back-to-back calls of batch / ms per call",
                   "torch-graph": "torch.cuda.CUDAGraph replay on static inputs and outputs (the target's anchor)",
                   "torch-graph-io": "copy the inputs in, replay, clone the outputs (the work an ml4ep call does)"},
        "runtime_modules": runtime_modules, "models": {},
        "process": "each model in a process of its own (a crash or a sticky CUDA error stays with its model)",
        "unsupported": {k: e.get("reason") for k, e in manifest["models"].items() if e["status"] != "ok"},
    }
    if gpu:
        report["versions"]["nvcc_of_builds"] = sorted({json.loads((d / manifest["models"][k]["folder"] /
                                                                   "meta.json").read_text()).get("compiler", "?")
                                                       for k in models})
    log(f"{report['card']}: {len(models)} models, batches {args.batches}, budget {args.time_budget:.0f} s; "
        f"sanitizer: {runner.sanitizer or 'none'}")
    reserve = args.sanitizer_reserve if manifest.get("sanitizer_model") else 0.0
    for i, key in enumerate(models):
        budget = (runner.left() - reserve) / (len(models) - i)
        if budget < 3:
            report["models"][key] = {"status": "skipped", "reason": f"running late ({runner.left():.0f} s left)"}
            log(f"{key}: skipped (running late)")
            continue
        log(f"{key}: check and time in a process of its own ({budget:.0f} s at most)")
        rec = run_model_process(args, key, budget, dry, out)
        report["models"][key] = rec
        c = rec.get("correct", {})
        log(f"{key}: {rec['status']}" + (f", correct {c.get('ok')}, {rec.get('seconds')} s" if rec["status"] == "ok"
                                          else f": {rec.get('error', '')[:300]}"))
        report["summary"] = summary(report)
        _dump(report, out / "gpu_check.json")  # so far: a run cut short still leaves its results
    log(f"sanitizer on {manifest.get('sanitizer_model')} ({runner.sanitizer or 'none'})")
    report["sanitizer"] = runner.run_sanitizer()
    report["summary"] = summary(report)
    report["seconds"] = round(time.perf_counter() - T0, 1)
    _dump(report, out / "gpu_check.json")
    text = table(report)
    (out / "gpu_check.txt").write_text(text + "\n")
    print("\n" + text, flush=True)
    log(f"wrote {out / 'gpu_check.json'}")
    return 0


def run_model_process(args, key: str, budget: float, dry: bool, out: Path) -> dict:
    """``model`` in a subprocess: its record (what it saved, and how it ended when it did not end well)."""
    mdir = out / "models"
    mdir.mkdir(exist_ok=True)
    path, logf = mdir / f"{key}.json", mdir / f"{key}.log"
    path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "model", "--dir", str(Path(args.dir).resolve()),
           "--out", str(path), "--key", key, "--budget", f"{budget:.1f}", "--batches",
           ",".join(map(str, args.batches)), "--blocks", str(args.blocks), "--latency-calls", str(args.latency_calls),
           "--block-ms", str(args.block_ms), "--max-calls", str(args.max_calls)] + (["--dry-run"] if dry else [])
    ended = None
    with open(logf, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=budget + 30, cwd=str(ROOT)).returncode
        except subprocess.TimeoutExpired:
            rc, ended = None, f"killed after {budget + 30:.0f} s"
    rec = json.loads(path.read_text()) if path.exists() else {"status": "crashed"}
    if rc != 0:
        tail = [ln for ln in logf.read_text(errors="replace").splitlines() if ln.strip()][-3:] or ["no output"]
        ended = ended or f"the process ended with exit code {rc}"
        rec["error"] = (rec.get("error", "") + f" {ended}: " + " | ".join(tail))[-1500:].strip()
        if rec.get("status") == "ok":
            rec.setdefault("notes", []).append(f"{ended}: the results saved before are kept")
        else:
            rec["status"] = "crashed"
        rec["ratios"], rec["targets"] = targets(rec.get("timing", {}), args.batches)
    return rec


def cmd_model(args) -> int:
    """One model, checked and timed (``run`` starts one such process per model)."""
    d = Path(args.dir)
    manifest = json.loads((d / "manifest.json").read_text())
    CudaModel, _ = import_runtime()
    import torch

    gpu = not args.dry_run
    if not gpu:
        torch.set_num_threads(1)  # a shared machine
    out = Path(args.out)
    runner = Runner(args, manifest, torch, CudaModel, gpu, out.parent, args.budget)
    runner.model(args.key, lambda rec: _dump(rec, out))
    return 0


def summary(report: dict) -> dict:
    checked = list(report["models"])
    correct = [k for k in checked if (report["models"][k].get("correct") or {}).get("ok")]
    met = unmeasured = total = 0
    unmet = []
    for k, r in report["models"].items():
        for t, v in (r.get("targets") or {}).items():
            total += 1
            met += v is True
            unmeasured += v is None
            if v is False:
                unmet.append(f"{k}: {t}")
        if r.get("status") != "ok":
            unmet.append(f"{k}: {r.get('status')}")
    unmet += [f"{k}: {why}" for k, why in report.get("unsupported", {}).items()]
    unmet += [f"{k}: outputs differ" for k in checked if report["models"][k].get("correct") and k not in correct]
    san = report.get("sanitizer")
    return {"checked": len(checked), "correct": len(correct), "targets": total, "targets_met": met,
            "targets_unmeasured": unmeasured, "unmet": unmet,
            "all_correct": bool(checked) and len(correct) == len(checked) and not report.get("unsupported"),
            "unsupported": len(report.get("unsupported", {})),
            "sanitizer_ok": None if san is None else san.get("status") == "ok",
            "all_targets_met": total > 0 and met == total and not unmet}


# ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pp = sub.add_parser("prepare", help="build the CUDA models, feeds and references here (needs onnx, nvcc)")
    pp.add_argument("--dir", default="build/gpu_check")
    pp.add_argument("--models", default="vae,gnn,interaction,transformer,diffusion,dense,cnn")
    pp.add_argument("--size", choices=["full", "small"], default="full")
    pp.add_argument("--archs", default="90", help="cuda_archs of the builds (default 90: H100/H200)")
    pp.add_argument("--host", action="store_true", help="device='cuda-host' builds, for run --dry-run")
    pp.add_argument("--sanitizer-model", default="auto", help="the small model for compute-sanitizer ('auto': "
                    f"the first that compiles of {', '.join(SANITIZER_PREFERENCE)})")
    pp.add_argument("--small-too", action="store_true", help="also build every model at the small size")
    pp.add_argument("--max-mib", type=float, default=55.0, help="size budget of --dir (the device carries 64 MiB)")
    pp.set_defaults(func=cmd_prepare)
    pr = sub.add_parser("run", help="check and time on the GPU (no onnx needed)")
    pr.add_argument("--dir", default="build/gpu_check")
    pr.add_argument("--out", required=True)
    pr.add_argument("--models", default=None, help="a subset of the prepared models (names or keys)")
    pr.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="latency batch, then throughput batches (default 1,64,1024; 1,8,32 in a dry run)")
    pr.add_argument("--time-budget", type=float, default=270.0, help="seconds for the whole run")
    pr.add_argument("--blocks", type=int, default=10, help="timed blocks per contender and batch")
    pr.add_argument("--latency-calls", type=int, default=200, help="single calls per contender at the first batch")
    pr.add_argument("--block-ms", type=float, default=25.0, help="length of a throughput block")
    pr.add_argument("--max-calls", type=int, default=500, help="most calls in a throughput block")
    pr.add_argument("--sanitizer-timeout", type=float, default=120.0)
    pr.add_argument("--sanitizer-reserve", type=float, default=60.0, help="seconds kept for the sanitizer")
    pr.add_argument("--dry-run", action="store_true", help="cuda-host builds, torch on the CPU, no CUDA events")
    pr.set_defaults(func=cmd_run)
    pm = sub.add_parser("model", help="one model, checked and timed (run starts one per model)")
    pm.add_argument("--dir", default="build/gpu_check")
    pm.add_argument("--out", required=True, help="the JSON file of its record")
    pm.add_argument("--key", required=True)
    pm.add_argument("--budget", type=float, required=True, help="seconds, from this process's start")
    pm.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], required=True)
    pm.add_argument("--blocks", type=int, default=10)
    pm.add_argument("--latency-calls", type=int, default=200)
    pm.add_argument("--block-ms", type=float, default=25.0)
    pm.add_argument("--max-calls", type=int, default=500)
    pm.add_argument("--dry-run", action="store_true")
    pm.set_defaults(func=cmd_model)
    po = sub.add_parser("one", help="one model at one batch with NumPy arrays (the sanitizer's subject)")
    po.add_argument("--dir", default="build/gpu_check")
    po.add_argument("--model", required=True, help="a key of the manifest, e.g. dense-small")
    po.add_argument("--batch", type=int, default=3)
    po.add_argument("--calls", type=int, default=3)
    po.set_defaults(func=cmd_one)
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
