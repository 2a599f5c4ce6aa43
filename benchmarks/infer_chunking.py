"""Batch chunking in ml4ep.infer: the same compiled models with and without it, in one process.

``whole`` is compiled with ``-DML4EP_CHUNK_BYTES=(1LL<<40)`` (one chunk: the whole batch, as before chunking),
``chunked`` with the default (1 MiB of workspace per chunk). Both run the ``ml4ep bench`` zoo's full models from
Python on one thread, in alternating blocks (A B B A ...); the table gives the median time per call and the
speed-up. The workspace each needs is in the generated code: ``per_sample_`` bytes times the chunk.

    python benchmarks/infer_chunking.py [--models gnn,transformer] [--batches 64,1024] [--rounds 4]
                                        [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("ML4EP_BLAS_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _docs import cpu_model, write_section  # noqa: E402

import ml4ep.infer as mi  # noqa: E402
from ml4ep.bench import zoo  # noqa: E402
from ml4ep.bench.progress import progress, write  # noqa: E402

WHOLE = ["-DML4EP_CHUNK_BYTES=(1LL<<40)"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="gnn,interaction,transformer,diffusion,cnn")
    ap.add_argument("--batches", default="64,1024")
    ap.add_argument("--rounds", type=int, default=4, help="alternation rounds (each A B or B A)")
    ap.add_argument("--write", help="replace the chunking section of this markdown file")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ml4ep-chunking-"))
    rows = []
    models, batches = args.models.split(","), [int(b) for b in args.batches.split(",")]
    bar = progress(total=len(models) * len(batches), desc="infer_chunking", unit="case")
    for name in models:
        bar.set_postfix_str(f"{name}: export, compile")
        m = zoo.bench_model(name)
        path = work / f"{name}.onnx"
        m.export(path)
        variants = {"whole": mi.compile(path, cache=False, extra_flags=WHOLE), "chunked": mi.compile(path, cache=False)}
        per = int(variants["chunked"].source.split("const int64_t per_sample_ = ")[1].split(";")[0])
        for b in batches:
            bar.set_postfix_str(f"{name}: batch {b}")
            feeds = m.inputs(b)
            xs = [feeds[k] for k in m.input_names]
            y0, y1 = variants["whole"](*xs), variants["chunked"](*xs)
            assert np.allclose(y0, y1, rtol=1e-4, atol=1e-5 * float(np.abs(y0).max())), name
            one = time.perf_counter()
            variants["whole"](*xs)
            calls = max(1, int(0.5 / (time.perf_counter() - one)))
            times: dict[str, list[float]] = {k: [] for k in variants}
            for r in range(args.rounds):
                for k in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        variants[k](*xs)
                    times[k].append((time.perf_counter() - t0) / calls * 1e3)
            med = {k: float(np.median(v)) for k, v in times.items()}
            chunk = max(1, (1 << 20) // max(per, 1))
            rows.append({"model": name, "batch": b, "whole_ms": med["whole"], "chunked_ms": med["chunked"],
                         "speedup": med["whole"] / med["chunked"], "per_sample_kb": per / 1024,
                         "chunk": min(chunk, b)})
            r = rows[-1]
            write(f"{name:12s} b={b:5d}  whole {r['whole_ms']:9.2f} ms  chunked {r['chunked_ms']:9.2f} ms  "
                  f"x{r['speedup']:.2f}  ({r['per_sample_kb']:.0f} kB a sample, chunks of {r['chunk']})")
            bar.update()
    bar.close()
    if args.write:
        lines = [f"Machine: {cpu_model()}, one thread; `python benchmarks/infer_chunking.py --write "
                 "docs/benchmarks.md`; medians of alternating blocks, ml4ep from Python.", "",
                 "| model | batch | workspace per sample | chunk | whole batch ms | chunked ms | speed-up |",
                 "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['batch']} | {r['per_sample_kb']:.0f} kB | {r['chunk']} | {r['whole_ms']:.1f} | "
                  f"{r['chunked_ms']:.1f} | {r['speedup']:.2f} |" for r in rows]
        write_section(Path(args.write), "infer-chunking", lines, "## ml4ep.infer: batch chunking")
    return 0


if __name__ == "__main__":
    sys.exit(main())
