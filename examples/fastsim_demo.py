"""ml4ep.fastsim end to end on a small scale: parameterised ds2 showers written in the CaloChallenge format, a
second sample from the same generator and a distorted one (energies x1.1), and the CaloChallenge metrics of
both against the first (a quick classifier; the challenge's is 3 x 2048 wide and trains for 50 epochs).

    python examples/fastsim_demo.py [--n 3000] [--out /tmp/ml4ep-fastsim-demo]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ml4ep.fastsim import geometry, gflash, io
from ml4ep.fastsim.evaluate import evaluate

QUICK = {"hidden": 64, "n_hidden_layers": 2, "epochs": 40, "lr": 1e-3, "batch_size": 100, "device": "cpu",
         "standardise": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/ml4ep-fastsim-demo"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    geo = geometry.get("ds2")
    t0 = time.perf_counter()
    ref = gflash.simulate(geo, args.n, energy=(1.0, 100.0), seed=1)
    same = gflash.simulate(geo, args.n, energy=(1.0, 100.0), seed=2)
    io.write(args.out / "reference.h5", *ref, geometry=geo)
    io.write(args.out / "same.h5", *same, geometry=geo)
    io.write(args.out / "scaled.h5", same[0], same[1] * 1.1, geometry=geo)
    print(f"simulated and wrote 3 x {args.n} ds2 showers in {time.perf_counter() - t0:.1f} s ({args.out})")
    small = {"min_samples": args.n // 3, "max_samples": args.n, "num_batches": 5, "num_points": 5,
             "batch_size": args.n // 2}
    for name in ("same", "scaled"):
        r = evaluate(args.out / "reference.h5", args.out / f"{name}.h5", geo, args.out / f"report_{name}",
                     metrics=("hist", "fpd", "kpd", "cls-high"), classifier=QUICK, fpd_kpd=small)
        print(f"{name:>6}: S(E_tot/E_inc) = {r['separation_power']['e_ratio']:.3g}, "
              f"classifier AUC = {r['classifier_high']['auc']:.3f}, "
              f"FPD x 1e3 = {r['fpd']['value_x1e3']:.3g} +- {r['fpd']['error_x1e3']:.2g}, "
              f"KPD x 1e3 = {r['kpd']['value_x1e3']:.3g} +- {r['kpd']['error_x1e3']:.2g}; "
              f"report: {args.out / f'report_{name}' / 'index.html'}")


if __name__ == "__main__":
    main()
