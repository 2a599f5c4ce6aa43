"""``ml4ep fastsim ...`` subcommands."""

from __future__ import annotations

import argparse
import json
import logging

from pathlib import Path

import numpy as np

from ..errors import Ml4epError

log = logging.getLogger(__name__)


def parse_energy(text: str):
    """``lo:hi`` (GeV, log-uniform; ``10:10`` fixed) or a comma list of discrete energies in GeV."""
    try:
        if ":" in text:
            lo, hi = (float(v) for v in text.split(":", 1))
            if not 0 < lo <= hi:
                raise ValueError
            return (lo, hi)
        values = [float(v) for v in text.split(",") if v.strip()]
        if not values or min(values) <= 0:
            raise ValueError
        return values
    except ValueError:
        raise Ml4epError(f"--energy {text!r}: expected lo:hi in GeV (0 < lo <= hi) or a comma list of "
                         "positive energies in GeV") from None


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ..bench.progress import progress
    from . import gflash, io
    from .geometry import get

    geo = get(args.geometry)
    energy = parse_energy(args.energy)
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % (2**63))
    with io.ShowerWriter(args.output, geo) as w, \
            progress(total=args.n, desc="simulate", unit="shower", enabled=not args.quiet) as bar:
        for e_inc, showers in gflash.simulate_chunks(geo, args.n, energy=energy, seed=seed, angle=args.angle,
                                                     chunk_size=args.chunk_size):
            w.append(e_inc, showers)
            bar.update(len(e_inc))
    print(f"{args.output}: {args.n} {geo.name} showers ({geo.n_voxels} voxels), E {args.energy} GeV, seed {seed}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import METRICS, evaluate

    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else list(METRICS)
    classifier = {"hidden": args.cls_hidden, "epochs": args.cls_epochs, "device": args.device}
    if args.cls_layers is not None:
        classifier["n_hidden_layers"] = args.cls_layers
    result = evaluate(args.reference, args.generated, args.geometry, args.output, metrics=metrics,
                      chunk_size=args.chunk_size, classifier=classifier, seed=args.seed, plots=not args.no_plots,
                      max_showers=args.max_showers, workers=args.workers, progress=not args.quiet)
    lines = [f"{args.generated} vs {args.reference} ({result['geometry']}, {result['n_generated']} vs "
             f"{result['n_reference']} showers):"]
    for key in ("fpd", "kpd"):
        if key in result:
            lines.append(f"  {key.upper()} x 1e3: {result[key]['value_x1e3']:.4g} +- {result[key]['error_x1e3']:.2g}")
    for key in ("classifier_low", "classifier_high"):
        if key in result:
            lines.append(f"  {key}: AUC {result[key]['auc']:.4f}, JSD {result[key]['jsd']:.4f}")
    for k, v in result.get("separation_power_summary", {}).items():
        lines.append(f"  separation power {k}: {v:.3g}")
    lines.append(f"  time: {result['timing']['total_s']:.1f} s; wrote {args.output}/metrics.json"
                 + ("" if args.no_plots else " and the plots (index.html)"))
    print("\n".join(lines))
    if args.json:
        print(json.dumps(result.get("timing", {})))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    hidden = tuple(int(h) for h in args.hidden.split(",")) if args.hidden else (256, 128, 64)
    conds = [c.strip() for c in args.conditions.split(",") if c.strip()] if args.conditions else []
    lr = args.lr if args.lr is not None else (1e-3 if args.model == "vae" else 5e-4)
    r = train(args.input, args.output, model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=lr,
              latent=args.latent, seed=args.seed, validation_split=args.validation_split,
              patience=args.patience if args.patience > 0 else None, device=args.device, resume=args.resume,
              progress=not args.quiet, hidden=hidden, beta=args.beta, loss=args.loss, conditions=conds,
              geometry=args.geometry, dim=args.dim, depth=args.depth, heads=args.heads, tokens=args.tokens,
              steps=args.steps, sampler=args.sampler, ema_decay=args.ema, warmup=args.warmup,
              init_from=args.init_from, max_seconds=args.max_seconds, workers=args.workers, head=args.head,
              energy=args.energy, schedule=args.schedule, rotate_alpha=args.rotate_alpha,
              empty_noise=args.empty_noise)
    print(f"{args.output}: {r['epochs_run']} epoch(s) run, at epoch {r['epoch']} (step {r['steps']}), best epoch "
          f"{r['best_epoch']} "
          f"(loss {r['best_val_loss']:.4g}){', stopped early' if r['stopped_early'] else ''}; {r['seconds']:.1f} s")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from .generate import generate

    energy = parse_energy(args.energy)
    rng = np.random.default_rng(args.seed)
    e_gev = (np.exp(rng.uniform(np.log(energy[0]), np.log(energy[1]), args.n)) if isinstance(energy, tuple)
             else rng.choice(np.asarray(energy, float), args.n))
    seed = int(rng.integers(2**62))  # the latent noise: its own stream from the same seed
    if args.backend is None:
        from . import pretrained

        onnx_like = str(args.model).endswith(".onnx") or pretrained.resolve(args.model) is not None
        args.backend = "ml4ep" if onnx_like else "torch"
    generate(args.model, e_gev * 1e3, backend=args.backend, seed=seed, batch_size=args.batch_size,
             output=args.output, geometry=args.geometry, steps=args.steps, sampler=args.sampler,
             progress=not args.quiet)
    print(f"{args.output}: {args.n} showers from {args.model} ({args.backend}), E {args.energy} GeV, "
          f"seed {args.seed}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .generate import export

    if not args.cpp and (args.steps is not None or args.sampler is not None):
        raise Ml4epError("export: --steps and --sampler set the C++ hook's sampler; they need --cpp")
    import onnx

    from . import pretrained

    shipped = pretrained.resolve(args.model)
    if shipped is None:
        path = export(args.model, args.output)
    elif args.output:  # the shipped pair, copied
        import shutil

        from .generate import POST_NAME

        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped, path)
        shutil.copyfile(shipped.with_name(POST_NAME), path.with_name(POST_NAME))
    else:
        path = shipped
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if meta.get("ml4ep.model") == "fastsim.diffusion":
        msg = (f"{path}: denoiser ONNX (inputs x (N, V), t (N, 1), incident_energy (N, 1) MeV[, cond (N, k)]; output "
               f"v (N, V)) and {path.with_name(meta.get('postprocess', 'postprocess.onnx'))}: postprocessing ONNX "
               "(x, incident_energy -> showers (N, V) MeV)")
    else:
        msg = f"{path}: decoder ONNX (inputs z (N, latent), incident_energy (N, 1) MeV; output showers (N, V) MeV)"
    if args.cpp:
        from .hook import export_cpp

        res = export_cpp(path, args.cpp, steps=args.steps, sampler=args.sampler, march=args.march)
        msg += (f"; C++ ({', '.join(res['models'])}: headers, weights, example programs, CMakeLists.txt) in "
                f"{res['dir']} with the hook example (shower_hook.hpp, hook_main.cpp, target shower_hook)")
    print(msg)
    return 0


def add_parsers(sub) -> None:
    f = sub.add_parser("fastsim", help="ml4ep.fastsim: calorimeter showers (CaloChallenge format)")
    fsub = f.add_subparsers(dest="fastsim_command", required=True)

    s = fsub.add_parser("simulate", help="parameterised (GFlash-type) electromagnetic showers, not Geant4")
    s.add_argument("--geometry", default="ds2", help="ds1-photons, ds1-pions, ds2, ds3 or a JSON/YAML binning file")
    s.add_argument("--n", type=int, required=True, help="number of showers")
    s.add_argument("--energy", default="1:1000",
                   help="incident energy in GeV: lo:hi log-uniform (10:10 fixed), or a comma list drawn uniformly")
    s.add_argument("--angle", type=float, default=None, help="incidence angle in radians (default: normal)")
    s.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one, printed)")
    s.add_argument("--chunk-size", type=int, default=2000, help="showers generated and written at a time")
    s.add_argument("-o", "--output", required=True, help="the CaloChallenge HDF5 file to write")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_simulate)

    e = fsub.add_parser("evaluate", help="CaloChallenge metrics and plots, generated vs reference")
    e.add_argument("--reference", required=True, help="reference showers (CaloChallenge HDF5)")
    e.add_argument("--generated", required=True, help="generated showers (CaloChallenge HDF5)")
    e.add_argument("--geometry", default="ds2", help="ds1-photons, ds1-pions, ds2, ds3 or a binning file")
    e.add_argument("-o", "--output", required=True, help="report directory (metrics.json, plots, index.html)")
    e.add_argument("--metrics", help="comma list of hist, fpd, kpd, cls-low, cls-high (default: all)")
    e.add_argument("--chunk-size", type=int, default=10000, help="showers read at a time")
    e.add_argument("--max-showers", type=int, default=None, help="use only the first N showers of each file")
    e.add_argument("--cls-hidden", type=int, default=2048, help="classifier width (the challenge's: 2048)")
    e.add_argument("--cls-layers", type=int, default=None, help="classifier hidden layers (the challenge's: 3)")
    e.add_argument("--cls-epochs", type=int, default=50, help="classifier epochs (the challenge's: 50)")
    e.add_argument("--device", default="auto", help="classifier device: auto (CUDA if present), cpu, cuda")
    e.add_argument("--workers", type=int, default=None, help="processes reading the files (default: the CPU count)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-plots", action="store_true", help="metrics.json only")
    e.add_argument("--json", action="store_true", help="also print the timings as JSON")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=_cmd_evaluate)

    t = fsub.add_parser("train", help="train a shower model (Par04-style VAE or CaloDiT-style flow matching) on "
                                      "CaloChallenge HDF5 showers")
    t.add_argument("input", help="training showers (CaloChallenge HDF5)")
    t.add_argument("-o", "--output", required=True, help="run directory (last.pt, best.pt, history.json)")
    t.add_argument("--model", choices=["vae", "diffusion"], default="vae",
                   help="vae (Par04-style) or diffusion (CaloDiT-style flow-matching transformer)")
    t.add_argument("--geometry", default=None, help="check the voxel count against this geometry (the flow model "
                                                    "also takes its readout threshold and one token per layer)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-3 VAE, 5e-4 diffusion)")
    t.add_argument("--init-from", default=None, help="fine-tune: start from this checkpoint or run directory")
    t.add_argument("--max-seconds", type=float, default=None, help="stop after the epoch that exceeds this time")
    t.add_argument("--latent", type=int, default=10, help="VAE: latent dimensions")
    t.add_argument("--hidden", default="256,128,64", help="comma list of hidden-layer widths")
    t.add_argument("--beta", type=float, default=1.0, help="weight of the KL term")
    t.add_argument("--loss", choices=["bce", "mse"], default="bce", help="reconstruction loss on the fractions")
    t.add_argument("--dim", type=int, default=64, help="diffusion: transformer width")
    t.add_argument("--depth", type=int, default=4, help="diffusion: transformer blocks")
    t.add_argument("--heads", type=int, default=4, help="diffusion: attention heads")
    t.add_argument("--tokens", type=int, default=None, help="diffusion: tokens (default: one per layer)")
    t.add_argument("--head", choices=["switch", "mlp", "none"], default="switch",
                   help="diffusion: output head (switch: a + c tanh(s x + b) per state number)")
    t.add_argument("--energy", choices=["u", "log"], default="u",
                   help="diffusion: layer energies as u-variables (bounded, sum to E_tot exactly) or log fractions")
    t.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="learning rate after the warm-up (cosine: down to 5%% of --lr over --epochs)")
    t.add_argument("--empty-noise", action="store_true",
                   help="diffusion: empty voxels as noise below the snap level in training, not a hard zero")
    t.add_argument("--rotate-alpha", action="store_true",
                   help="turn each training shower by a random number of angular bins (normal incidence)")
    t.add_argument("--steps", type=int, default=20, help="diffusion: default sampler network evaluations (<= 20)")
    t.add_argument("--sampler", choices=["euler", "midpoint", "heun"], default="midpoint",
                   help="diffusion: default ODE sampler")
    t.add_argument("--ema", type=float, default=0.999, help="diffusion: EMA decay of the saved weights (0: off)")
    t.add_argument("--warmup", type=int, default=200, help="diffusion: learning-rate warm-up steps")
    t.add_argument("--conditions", default=None, help="comma list of extra scalar datasets used as conditions")
    t.add_argument("--validation-split", type=float, default=0.2)
    t.add_argument("--patience", type=int, default=5, help="early stopping patience in epochs (0: never)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    t.add_argument("--workers", type=int, default=0, help="processes reading the batches (0: a background thread)")
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    t.set_defaults(func=_cmd_train)

    g = fsub.add_parser("generate", help="generate showers with a trained model")
    g.add_argument("model", help="run directory or .pt checkpoint (any backend), exported .onnx or a shipped model "
                                 "(ds2-default) (onnxruntime, ml4ep)")
    g.add_argument("--n", type=int, required=True, help="number of showers")
    g.add_argument("--energy", default="1:1000", help="incident energy in GeV: lo:hi log-uniform, or a comma list")
    g.add_argument("--backend", choices=["torch", "onnxruntime", "ml4ep"], default=None,
                   help="default: ml4ep for an .onnx file or a shipped model, torch for a run")
    g.add_argument("--geometry", default=None, help="check the voxel count against this geometry")
    g.add_argument("--batch-size", type=int, default=10000)
    g.add_argument("--steps", type=int, default=None, help="diffusion: sampler network evaluations (<= 20)")
    g.add_argument("--sampler", choices=["euler", "midpoint", "heun"], default=None, help="diffusion: ODE sampler")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("-o", "--output", required=True, help="the CaloChallenge HDF5 file to write")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_cmd_generate)

    x = fsub.add_parser("export", help="export a trained model to ONNX (and C++ with the fast-simulation hook with "
                                       "--cpp)")
    x.add_argument("model", help="run directory or .pt checkpoint, or a shipped model (ds2-default)")
    x.add_argument("-o", "--output", default=None,
                   help="ONNX file (default beside the checkpoint: decoder.onnx for a VAE; denoiser.onnx for the flow "
                        "model, with postprocess.onnx beside it)")
    x.add_argument("--cpp", default=None, help="also compile with ml4ep.infer and write the C++ (model headers, "
                                               "weights, shower_hook.hpp, hook_main.cpp, CMakeLists.txt) here")
    x.add_argument("--steps", type=int, default=None,
                   help="flow model, with --cpp: the hook's default network evaluations (default: the model's)")
    x.add_argument("--sampler", choices=["euler", "midpoint", "heun"], default=None,
                   help="flow model, with --cpp: the hook's default ODE sampler (default: the model's)")
    x.add_argument("--march", default=None, help="with --cpp: target ISA of the compiled models (native, x86-64-v3, "
                                                 "...; default $ML4EP_MARCH, else native)")
    x.set_defaults(func=_cmd_export)
