"""Adaptation after MetaHEP (issue 7): fine-tune a shower model pretrained on the Par04 SiW calorimeter (ds2
voxelisation) to a lead / plastic-scintillator calorimeter with the same voxelisation from few showers, against
training the same architecture from scratch on the same showers with the same budget; one thread.

Without ``--pretrained`` a model (``--model``) is first trained on ``--n-pretrain`` GFlash-type SiW ds2 showers.
The target showers (``--n-target`` for training, ``--n-reference`` for the comparison) come from
``gflash.Calorimeter.pb_scintillator()`` (X0_eff 9.45 mm, R_M 17.1 mm against 4.22 and 9.48 mm), stored
calibrated. Both arms then generate for the reference's incident energies with the ml4ep backend and are
evaluated with ``ml4ep.fastsim.evaluate`` (high-level classifier AUC, FPD, KPD, separation powers).

    python benchmarks/fastsim_adapt.py [--pretrained RUN] [--model vae] [--n-target 1000] [--epochs 10]
        [--max-seconds S] [--workdir /tmp/ml4ep-fastsim-adapt] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _docs import cpu_model, write_section  # noqa: E402

from ml4ep.bench.progress import progress  # noqa: E402

ENERGY_GEV = (1.0, 1000.0)


def _simulate(path: Path, n: int, seed: int, geometry, calorimeter=None) -> Path:
    from ml4ep.fastsim import gflash, io

    if path.exists() and io.info(path)["n_showers"] == n:
        return path
    e, s = gflash.simulate(geometry, n, energy=ENERGY_GEV, seed=seed, calorimeter=calorimeter)
    return io.write(path, e, s, geometry=geometry)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pretrained", type=Path, help="a run directory or checkpoint trained on ds2 (SiW)")
    ap.add_argument("--model", choices=("vae", "diffusion"), default="vae")
    ap.add_argument("--n-pretrain", type=int, default=10000, help="SiW showers to pretrain on (no --pretrained)")
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--n-target", type=int, default=1000, help="Pb/scintillator showers to adapt on")
    ap.add_argument("--n-reference", type=int, default=2000, help="Pb/scintillator showers to compare with")
    ap.add_argument("--epochs", type=int, help="budget of both arms (default 10 without --max-seconds)")
    ap.add_argument("--max-seconds", type=float, help="wall-time budget of both arms")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=20, help="flow model: learning-rate warm-up steps of both arms")
    ap.add_argument("--refit-preprocessing", action="store_true",
                    help="fine-tune the pretrained network with a preprocessing fitted to the target showers")
    ap.add_argument("--classifier-hidden", type=int, default=256)
    ap.add_argument("--classifier-epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ml4ep-fastsim-adapt"))
    ap.add_argument("--write", type=Path, help="replace the fastsim_adapt section of this markdown file")
    args = ap.parse_args(argv)

    import torch

    from ml4ep.fastsim import gflash
    from ml4ep.fastsim.adapt import compare, target_geometry, to_markdown
    from ml4ep.fastsim.geometry import get
    from ml4ep.fastsim.train import load_checkpoint, train

    torch.set_num_threads(1)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    geo = get("ds2")
    pbsc = gflash.Calorimeter.pb_scintillator()
    t0 = time.perf_counter()
    pre_note = ""
    stages = (["pretrain"] if args.pretrained is None else []) + ["target showers", "reference showers", "compare"]
    bar = progress(total=len(stages), desc="fastsim_adapt", unit="stage")
    if args.pretrained is None:
        bar.set_postfix_str("pretrain")
        src = _simulate(work / f"siw_{args.n_pretrain}.h5", args.n_pretrain, args.seed, geo)
        pre_dir = work / f"pretrained_{args.model}_{args.n_pretrain}_{args.pretrain_epochs}"
        kw = {"hidden": (256, 128, 64), "latent": 10} if args.model == "vae" else \
            {"dim": 64, "depth": 2, "heads": 4, "steps": 10}
        tp = time.perf_counter()
        res = train(src, pre_dir, model=args.model, epochs=args.pretrain_epochs, batch_size=args.batch_size,
                    lr=args.lr, seed=args.seed, geometry=geo, progress=False, device="cpu", patience=None, **kw)
        pre_note = (f"Pretrained here on {args.n_pretrain} SiW ds2 showers: {res['steps']} steps, "
                    f"{time.perf_counter() - tp:.0f} s. ")
        pretrained = pre_dir
        bar.update()
    else:
        pretrained = args.pretrained
    kind = load_checkpoint(pretrained)["kind"]
    tgt_geo = target_geometry(geo, pbsc)
    bar.set_postfix_str("target showers")
    tgt = _simulate(work / f"pbsc_train_{args.n_target}_{args.seed}.h5", args.n_target, args.seed + 100, tgt_geo,
                    pbsc)
    bar.update()
    bar.set_postfix_str("reference showers")
    ref = _simulate(work / f"pbsc_ref_{args.n_reference}_{args.seed}.h5", args.n_reference, args.seed + 200,
                    tgt_geo, pbsc)
    bar.update()
    bar.set_postfix_str("compare: fine-tune, from scratch, evaluate")
    result = compare(pretrained, tgt, ref, work / f"compare_{kind}", epochs=args.epochs,
                     max_seconds=args.max_seconds, geometry=tgt_geo, seed=args.seed, backend="ml4ep",
                     batch_size=args.batch_size, lr=args.lr, metrics=("hist", "fpd", "kpd", "cls-high"),
                     refit_preprocessing=args.refit_preprocessing,
                     **({"warmup": args.warmup} if kind == "diffusion" else {}),
                     classifier={"hidden": args.classifier_hidden, "epochs": args.classifier_epochs,
                                 "standardise": True},
                     fpd_kpd={"min_samples": min(500, args.n_reference), "batch_size": min(1000, args.n_reference)},
                     workers=1)
    bar.update()
    bar.close()
    budget = f"{args.max_seconds:g} s" if args.max_seconds is not None else f"{result['arms']['finetune']['epochs']} epochs"
    how = " (preprocessing refitted to the target)" if args.refit_preprocessing else ""
    lines = [f"### Adaptation of the {kind} model{how}: fine-tuning against training from scratch "
             "(`benchmarks/fastsim_adapt.py`)", "",
             f"Machine: {cpu_model()}, one thread; {datetime.date.today()}; command: "
             f"`python benchmarks/fastsim_adapt.py {' '.join(argv if argv is not None else sys.argv[1:])}`. "
             f"{pre_note}Model: {kind} ({pretrained}). Target: GFlash-type Pb/scintillator showers "
             f"(2.0 mm Pb + 1.4 mm scintillator per 3.4 mm layer, ds2 voxels, log-uniform 1 GeV-1 TeV): "
             f"{result['n_train']} to train on (80 % train, 20 % validation), {result['n_reference']} as the "
             f"reference. Same settings for both arms (batch {args.batch_size}, lr {args.lr:g}, seed {args.seed}"
             f"{f', warm-up {args.warmup} steps' if kind == 'diffusion' else ''}), "
             f"budget {budget}. Generation: the ml4ep backend for the reference's energies. Classifier: "
             f"{args.classifier_hidden} x 3 hidden, {args.classifier_epochs} epochs, standardised high-level inputs. "
             "The validation losses of the two arms are not comparable (fine-tuning keeps the SiW "
             "preprocessing).", "", to_markdown(result), "",
             f"Total {time.perf_counter() - t0:.0f} s."]
    print("\n".join(lines))
    if args.write:
        suffix = "_refit" if args.refit_preprocessing else ""
        write_section(args.write, f"fastsim_adapt_{kind}{suffix}", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
