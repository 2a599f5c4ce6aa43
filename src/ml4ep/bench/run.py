"""The benchmark run: every model of the zoo on every backend, each backend in a process of its own.

For each model: export it to ONNX (dynamic batch), compute the reference outputs of the check batch with
onnxruntime in a subprocess, then run one worker per backend (:mod:`ml4ep.bench.worker`). With ``rounds`` > 1
the backends run again in reverse order (A B C, C B A, ...) so slow drifts of a shared machine fall on every
backend alike; the blocks of all rounds are pooled and their median taken.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import Ml4epError
from .backends import BACKENDS, DEFAULT_BACKENDS, gpu_name, missing_dependency
from .cpp import MARKER
from .progress import paused
from .progress import progress as progress_bar
from .zoo import MODEL_NAMES, bench_model

log = logging.getLogger(__name__)


@dataclass
class Config:
    models: list[str] = field(default_factory=lambda: list(MODEL_NAMES))
    backends: list[str] = field(default_factory=lambda: list(DEFAULT_BACKENDS))  # GPU ones: opt-in
    batches: list[int] = field(default_factory=lambda: [1, 64, 1024])
    size: str = "full"  # the zoo's model sizes: "full" or "small"
    repeats: int = 5  # timed blocks per batch and round
    block_s: float = 0.2  # seconds per block (at least one call)
    rounds: int = 1
    check_batch: int = 3
    rtol: float = 2e-3  # cross-check tolerance, relative to the output's scale
    timeout_s: float = 3600.0  # per worker
    work: str | None = None  # keeps the exported models, programs and raw results (a temporary folder if None)

    def validate(self) -> None:
        unknown = [m for m in self.models if m not in MODEL_NAMES]
        if unknown:
            raise Ml4epError(f"unknown bench models {unknown}; known: {', '.join(MODEL_NAMES)}")
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise Ml4epError(f"unknown bench backends {unknown}; known: {', '.join(BACKENDS)}")
        if not self.models or not self.backends or not self.batches:
            raise Ml4epError("bench: give at least one model, one backend and one batch size")
        if min(self.batches) < 1 or self.repeats < 1 or self.rounds < 1 or self.check_batch < 1:
            raise Ml4epError("bench: batch sizes, repeats, rounds and the check batch must be at least 1")
        if self.size not in ("full", "small"):
            raise Ml4epError(f"bench: size must be 'full' or 'small', not {self.size!r}")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "system": platform.platform()}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("ml4ep", "onnxruntime", "torch", "jax", "sofie", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _worker(job: dict, path: Path, timeout: float) -> dict:
    path.write_text(json.dumps(job))
    try:
        proc = subprocess.run([sys.executable, "-m", "ml4ep.bench.worker", str(path)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "reason": f"the worker died (exit code {proc.returncode}): {tail}"}
    return json.loads(lines[-1][len(MARKER):])


def summarise(runs: list[dict], batches: list[int]) -> dict:
    """Pool the rounds of one backend: medians and spread of the per-call times, throughput, memory."""
    bad = next((r for r in runs if r.get("status") != "ok"), None)
    if bad is not None:
        return {k: v for k, v in bad.items() if k != "traceback"}
    out: dict = {"status": "ok", "batches": {}}
    for key in ("build_s", "load_s", "first_s"):
        vals = [r[key] for r in runs if key in r]
        if vals:
            out[key] = float(np.median(vals))
    out["max_diff"] = max(r.get("max_diff", 0.0) for r in runs)
    for b in batches:
        ms = np.array([t for r in runs for t in r["batches"][str(b)]["ms"]])
        med = float(np.median(ms))
        out["batches"][str(b)] = {
            "median_ms": med, "q25_ms": float(np.percentile(ms, 25)), "q75_ms": float(np.percentile(ms, 75)),
            "min_ms": float(ms.min()), "max_ms": float(ms.max()), "blocks": len(ms),
            "calls_per_block": int(runs[0]["batches"][str(b)]["calls"]), "per_s": b / med * 1e3,
        }
    out["peak_mb"] = max(r["peak_kb"] for r in runs) / 1024
    out["model_mb"] = max(r["peak_kb"] - r["base_kb"] for r in runs) / 1024
    return out


def run(config: Config, progress=None, bar: bool = True) -> dict:
    """Run the benchmark; returns the report (see :mod:`ml4ep.bench.report`). ``progress(text)`` is called
    as each worker finishes. With ``bar``, a progress bar over the runs (models x rounds x backends) is drawn
    on stderr when stderr is a terminal; ``progress`` is then called with the bar cleared."""
    config.validate()
    say = progress or (lambda text: log.info("%s", text))
    work = Path(config.work) if config.work else Path(tempfile.mkdtemp(prefix="ml4ep-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "versions": versions(), "config": asdict(config), "backends":
              {b: BACKENDS[b].description for b in config.backends}, "models": {}}
    if any(BACKENDS[b].gpu for b in config.backends):
        report["machine"]["gpu"] = gpu_name()
    with progress_bar(total=len(config.models) * config.rounds * len(config.backends), desc="bench",
                      enabled=bar) as runs_bar:
        for name in config.models:
            runs_bar.set_postfix_str(f"{name}: export, reference")
            model = bench_model(name, config.size)
            mdir = work / name
            mdir.mkdir(exist_ok=True)
            onnx_path = mdir / f"{name}.onnx"
            model.export(onnx_path)
            entry = {"description": model.description, "parameters": model.n_parameters(),
                     "onnx_bytes": onnx_path.stat().st_size, "backends": {}}
            report["models"][name] = entry
            base = {"model": name, "size": config.size, "onnx": str(onnx_path), "check_batch": config.check_batch,
                    "batches": config.batches, "repeats": config.repeats, "block_s": config.block_s,
                    "rtol": config.rtol, "reference": str(mdir / "reference.npz"), "timeout": config.timeout_s}
            ref = _worker({**base, "backend": "onnxruntime", "reference_only": True, "work": str(mdir)},
                          mdir / "reference.json", config.timeout_s)
            if ref.get("status") != "ok":
                raise Ml4epError(f"bench: the onnxruntime reference of '{name}' failed: {ref.get('reason')}")
            runs: dict[str, list[dict]] = {}
            for r in range(config.rounds):
                order = config.backends if r % 2 == 0 else config.backends[::-1]
                for b in order:
                    runs_bar.set_postfix_str(f"{name}: {b}, round {r + 1}")
                    why = missing_dependency(b)
                    if why:
                        runs[b] = [{"status": "unavailable", "reason": why}]
                        runs_bar.update()
                        continue
                    if runs.get(b) and runs[b][-1].get("status") != "ok":
                        runs_bar.update()
                        continue  # failed or disagreed once: not run again
                    bdir = mdir / f"{b}-r{r}"
                    bdir.mkdir(exist_ok=True)
                    t0 = time.perf_counter()
                    res = _worker({**base, "backend": b, "work": str(bdir)}, bdir / "job.json", config.timeout_s)
                    runs.setdefault(b, []).append(res)
                    (bdir / "result.json").write_text(json.dumps(res, indent=1))
                    with paused():
                        say(f"{name:12s} {b:15s} round {r + 1}: {res.get('status')} "
                            f"({time.perf_counter() - t0:.1f} s)"
                            + (" - " + str(res.get("reason")).replace("\n", " | ") if res.get("status") != "ok"
                               else ""))
                    runs_bar.update()
            entry["backends"] = {b: summarise(runs[b], config.batches) for b in config.backends}
            (work / "report.json").write_text(json.dumps({**report, "work": str(work)}, indent=1))  # so far
    report["work"] = str(work)
    return report
