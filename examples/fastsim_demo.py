"""ml4ep.fastsim end to end (what ``make demo`` runs): parameterised ds2 showers simulated with the GFlash-type
generator, the Par04-style VAE and the CaloDiT-style flow model trained briefly on them through ml4ep.data,
exported to ONNX and compiled with ml4ep.infer (with their C++ fast-simulation hooks; the flow model's is built with
CMake and run), 10 000 showers generated with each compiled model for the reference's energies, and the
CaloChallenge metrics of both, and of a second GFlash sample (the ideal), against the reference, written to
``report.md`` and one HTML report per sample.

The models train for a few minutes only, and the classifier is a quick one (the challenge's is 3 x 2048 for 50
epochs): the numbers show the pipeline, not the models' reach (see docs/benchmarks.md for the long trainings).

    python examples/fastsim_demo.py [--n-train 20000] [--n-reference 10000] [--flow-seconds 180] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ml4ep.fastsim.pipeline import run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=20_000)
    ap.add_argument("--n-reference", type=int, default=10_000)
    ap.add_argument("--vae-epochs", type=int, default=8)
    ap.add_argument("--flow-seconds", type=float, default=180.0, help="training-time budget of the flow model")
    ap.add_argument("--out", type=Path, default=Path("/tmp/ml4ep-fastsim-demo"))
    args = ap.parse_args()
    run(args.out, geometry="ds2", n_train=args.n_train, n_reference=args.n_reference, energy=(1.0, 1000.0),
        vae_epochs=args.vae_epochs, flow_seconds=args.flow_seconds)


if __name__ == "__main__":
    main()
