"""Export a trained shower model to ONNX and generate showers with PyTorch, ONNX Runtime or ml4ep.infer.

>>> from ml4ep.fastsim.generate import export, generate
>>> export("runs/vae", "runs/vae/decoder.onnx")                               # doctest: +SKIP
>>> showers = generate("runs/vae", energies_mev, backend="ml4ep", seed=1)     # doctest: +SKIP

The VAE's exported graph (``decoder.onnx``): inputs ``z`` (N, latent) float32 and ``incident_energy`` (N, 1)
float32 in MeV (and ``cond`` (N, k) for a model with extra conditions), output ``showers`` (N, V) float32 in MeV.

The flow model exports two graphs: ``denoiser.onnx`` (``x`` (N, S), ``t`` (N, 1), ``incident_energy`` (N, 1)[,
``cond``]) -> ``v`` (N, S), the velocity on the state of S = V + L numbers (voxel shapes and layer energies), and
``postprocess.onnx`` (``x``, ``incident_energy``) -> ``showers`` (N, V).
Generation integrates ``dx/dt = v`` from standard-normal noise ``x`` at t = 0 to t = 1 with the sampler loop of
:func:`ml4ep.fastsim.sampler.integrate` around the backend's denoiser (at most 20 network evaluations),
then applies the postprocessing graph. N is dynamic in every graph. For the same noise every backend gives the
same showers up to float rounding.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from ..errors import Ml4epError
from . import io
from .train import load_checkpoint, model_from_checkpoint

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "ml4ep")
ONNX_NAME = "decoder.onnx"
DENOISER_NAME, POST_NAME = "denoiser.onnx", "postprocess.onnx"
OPSET = 17
_compiled: dict = {}


class GenerateError(Ml4epError, ValueError):
    """Invalid generation input (model path, backend, energies, noise)."""


def _save_onnx(module, args, names, out_names, out: Path, opset: int, meta: dict) -> None:
    import onnx
    import torch

    dyn = {n: {0: "batch"} for n in [*names, *out_names]}
    tmp = out.with_name(out.name + ".part")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice (a static graph suffices)
        torch.onnx.export(module, args, str(tmp), input_names=names, output_names=out_names, dynamic_axes=dyn,
                          opset_version=opset, dynamo=False)
    proto = onnx.load(str(tmp))
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    tmp.replace(out)


def _export_flow(ck: dict, model, out: Path, opset: int) -> Path:
    import torch

    from .models.diffusion import DenoiserGraph, PostprocessGraph

    cfg = model.config
    v, size = int(cfg.n_voxels), int(cfg.state_size)
    x, t, e = torch.zeros(2, size), torch.full((2, 1), 0.5), torch.full((2, 1), 1000.0)
    args: tuple = (x, t, e)
    names = ["x", "t", "incident_energy"]
    if cfg.n_conditions:
        args += (torch.zeros(2, cfg.n_conditions),)
        names.append("cond")
    post = out.with_name(POST_NAME if out.name != POST_NAME else "postprocess_graph.onnx")
    meta = {"ml4ep.model": "fastsim.diffusion", "n_voxels": str(v), "state_size": str(size), "steps": str(cfg.steps),
            "sampler": cfg.sampler, "conditions": ",".join(cfg.condition_names), "postprocess": post.name,
            "checkpoint_epoch": str(ck["state"]["epoch"])}
    _save_onnx(DenoiserGraph(model), args, names, ["v"], out, opset, meta)
    _save_onnx(PostprocessGraph(model), (x, e), ["x", "incident_energy"], ["showers"], post, opset,
               {"ml4ep.model": "fastsim.diffusion.postprocess", "n_voxels": str(v), "state_size": str(size)})
    log.info("exported the denoiser of %s to %s (postprocessing: %s)", ck["path"], out, post)
    return out


def export(checkpoint_or_dir, out_onnx=None, *, opset: int = OPSET) -> Path:
    """Write a checkpoint (``.pt`` or run directory) as ONNX with a dynamic batch; returns the path. A VAE gives
    its decoder (default ``decoder.onnx`` beside the checkpoint); a flow model its denoiser (default
    ``denoiser.onnx``) and, beside it, ``postprocess.onnx``."""
    import torch

    from .models.vae import DecoderGraph

    ck = load_checkpoint(checkpoint_or_dir)
    model = model_from_checkpoint(ck)
    if ck["kind"] == "diffusion":
        out = Path(out_onnx) if out_onnx is not None else Path(ck["path"]).parent / DENOISER_NAME
        out.parent.mkdir(parents=True, exist_ok=True)
        return _export_flow(ck, model, out, opset)
    cfg = model.config
    out = Path(out_onnx) if out_onnx is not None else Path(ck["path"]).parent / ONNX_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    z = torch.zeros(2, cfg.latent)
    e = torch.full((2, 1), 1000.0)
    args: tuple = (z, e)
    names = ["z", "incident_energy"]
    if cfg.n_conditions:
        args += (torch.zeros(2, cfg.n_conditions),)
        names.append("cond")
    meta = {"ml4ep.model": "fastsim.vae", "latent": str(cfg.latent), "n_voxels": str(cfg.n_voxels),
            "conditions": ",".join(cfg.condition_names), "checkpoint_epoch": str(ck["state"]["epoch"])}
    _save_onnx(DecoderGraph(model), args, names, ["showers"], out, opset, meta)
    log.info("exported the decoder of %s to %s", ck["path"], out)
    return out


def _onnx_for(src: Path) -> Path:
    """The ONNX file of a source: itself, or the exported graph in a run directory (``decoder.onnx`` or
    ``denoiser.onnx``, exported when missing or older than the checkpoint)."""
    if src.suffix == ".onnx":
        if not src.exists():
            raise GenerateError(f"{src}: file not found")
        return src
    ck = load_checkpoint(src)
    ck_path = Path(ck["path"])
    onnx_path = ck_path.parent / (DENOISER_NAME if ck["kind"] == "diffusion" else ONNX_NAME)
    post = ck_path.parent / POST_NAME
    stale = not onnx_path.exists() or onnx_path.stat().st_mtime < ck_path.stat().st_mtime
    if stale or (ck["kind"] == "diffusion" and not post.exists()):
        export(ck_path, onnx_path)
    return onnx_path


def _onnx_info(path: Path) -> dict:
    """``{"kind", "noise", "names", "meta"}`` of an exported fastsim graph (decoder or denoiser)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001
        raise GenerateError(f"{path}: not a readable ONNX file ({exc})") from None
    names = [i.name for i in proto.graph.input]
    meta = {p.key: p.value for p in proto.metadata_props}
    dim1 = proto.graph.input[0].type.tensor_type.shape.dim
    if names[:2] == ["z", "incident_energy"]:
        return {"kind": "vae", "noise": int(dim1[1].dim_value), "names": names, "meta": meta}
    if names[:3] == ["x", "t", "incident_energy"]:
        return {"kind": "diffusion", "noise": int(dim1[1].dim_value), "names": names, "meta": meta}
    raise GenerateError(f"{path}: not a fastsim decoder or denoiser (inputs {names}, expected z, incident_energy "
                        "or x, t, incident_energy)")


def _energies(energies) -> np.ndarray:
    try:
        e = np.asarray(energies, dtype=np.float64).reshape(-1, 1)
    except (TypeError, ValueError):
        raise GenerateError("energies must be numbers (incident energies in MeV)") from None
    if e.size == 0:
        raise GenerateError("no incident energies given")
    if not np.all(np.isfinite(e)) or e.min() <= 0:
        raise GenerateError("incident energies must be finite and positive (MeV)")
    return e


def _sampler_args(steps, sampler, defaults: dict) -> tuple[int, str]:
    from .sampler import DiffusionConfigError, check_sampler

    steps = int(defaults.get("steps", 20)) if steps is None else steps
    sampler = defaults.get("sampler", "midpoint") if sampler is None else sampler
    try:
        check_sampler(sampler, steps)
    except DiffusionConfigError as exc:
        raise GenerateError(str(exc)) from None
    return int(steps), sampler


def _ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _ml4ep_compiled(path: Path):
    import ml4ep.infer as mi

    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _compiled:
        _compiled[key] = mi.compile(str(path))
    return _compiled[key]


def _runner(src: Path, backend: str, steps=None, sampler=None):
    """``(noise_dim, n_conditions, fn(noise, e, c) -> showers)`` for a backend; ``noise_dim`` is the VAE's latent
    size or the flow model's voxel count."""
    if backend == "torch":
        import torch

        if src.suffix == ".onnx":
            raise GenerateError(f"{src}: the torch backend needs a checkpoint or run directory, not ONNX")
        model = model_from_checkpoint(load_checkpoint(src))
        cfg = model.config
        if hasattr(model, "sample"):
            n_steps, smp = _sampler_args(steps, sampler, {"steps": cfg.steps, "sampler": cfg.sampler})

            def run_flow(x, e, c):
                ct = None if c is None else torch.from_numpy(c)
                return model.sample(torch.from_numpy(x), torch.from_numpy(e), ct, n_steps, smp).numpy()

            return cfg.state_size, cfg.n_conditions, run_flow

        def run_torch(z, e, c):
            with torch.no_grad():
                ct = None if c is None else torch.from_numpy(c)
                return model.decode(torch.from_numpy(z), torch.from_numpy(e), ct).numpy()

        return cfg.latent, cfg.n_conditions, run_torch
    onnx_path = _onnx_for(src)
    info = _onnx_info(onnx_path)
    n_cond = 1 if "cond" in info["names"] else 0
    if info["kind"] == "vae":
        if backend == "onnxruntime":
            sess = _ort_session(onnx_path)

            def run_ort(z, e, c):
                feeds = {"z": z, "incident_energy": e}
                if c is not None:
                    feeds["cond"] = c
                return sess.run(["showers"], feeds)[0]

            return info["noise"], n_cond, run_ort
        compiled = _ml4ep_compiled(onnx_path)

        def run_ml4ep(z, e, c):
            out = compiled(z, e) if c is None else compiled(z, e, c)
            return np.asarray(out)

        return info["noise"], n_cond, run_ml4ep
    # the flow model: the sampler loop around the backend's denoiser, then the postprocessing graph
    from .sampler import integrate

    n_steps, smp = _sampler_args(steps, sampler, info["meta"])
    post_path = onnx_path.with_name(info["meta"].get("postprocess", POST_NAME))
    if not post_path.exists():
        raise GenerateError(f"{onnx_path}: its postprocessing graph {post_path} is missing (export again)")
    if backend == "onnxruntime":
        den, post = _ort_session(onnx_path), _ort_session(post_path)

        def velocity_ort(x, t, e, c):
            feeds = {"x": x, "t": t, "incident_energy": e}
            if c is not None:
                feeds["cond"] = c
            return den.run(["v"], feeds)[0]

        def postprocess_ort(x, e):
            return post.run(["showers"], {"x": x, "incident_energy": e})[0]

        velocity, postprocess = velocity_ort, postprocess_ort
    else:
        den, post = _ml4ep_compiled(onnx_path), _ml4ep_compiled(post_path)

        def velocity_ml4ep(x, t, e, c):
            return np.asarray(den(x, t, e) if c is None else den(x, t, e, c))

        def postprocess_ml4ep(x, e):
            return np.asarray(post(x, e))

        velocity, postprocess = velocity_ml4ep, postprocess_ml4ep

    def run_flow_onnx(x, e, c):
        x = integrate(lambda xx, t: velocity(np.ascontiguousarray(xx, dtype=np.float32), t, e, c),
                      np.ascontiguousarray(x, dtype=np.float32), n_steps, smp)
        return postprocess(np.ascontiguousarray(x, dtype=np.float32), e)

    return info["noise"], n_cond, run_flow_onnx


def generate(model_dir_or_onnx, energies, *, backend: str = "torch", seed: int | None = None, noise=None,
             conditions=None, batch_size: int = 10_000, output=None, geometry=None, steps: int | None = None,
             sampler: str | None = None, progress: bool = False) -> np.ndarray:
    """Showers ``(N, V)`` float32 in MeV for incident ``energies`` (N values, MeV).

    ``model_dir_or_onnx``: a run directory or ``.pt`` checkpoint (every backend; the ONNX backends use its
    ``decoder.onnx`` or ``denoiser.onnx``, exported when needed), an exported ``.onnx`` file or the name of a shipped
    model (``ds2-default``, :mod:`ml4ep.fastsim.pretrained`) (``onnxruntime`` and ``ml4ep``). ``noise``: the VAE's latent draws ``(N, latent)`` or the flow model's starting noise ``(N, S)``;
    otherwise standard normal from ``seed``. ``steps``/``sampler``: the flow model's network evaluations (at most
    20) and ODE sampler (``euler``, ``midpoint``, ``heun``); default: those stored with the model. ``conditions``: the extra
    condition columns ``(N, k)`` of a model trained with some. ``output``: also write the showers and energies to
    this CaloChallenge HDF5 file (``geometry`` optionally checks the voxel count). ``progress``: a bar in showers,
    batch by batch, on stderr when it is a terminal.
    """
    if backend not in BACKENDS:
        raise GenerateError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise GenerateError(f"batch_size must be a positive integer, got {batch_size!r}")
    from . import pretrained

    shipped = pretrained.resolve(model_dir_or_onnx)
    src = shipped or Path(model_dir_or_onnx)
    if not src.exists():
        raise GenerateError(f"{src}: file not found (nor a shipped model: {', '.join(pretrained.names()) or 'none'})")
    if shipped is not None and backend == "torch":
        raise GenerateError(f"{model_dir_or_onnx}: the shipped model is ONNX; use backend 'ml4ep' or 'onnxruntime'")
    e64 = _energies(energies)
    n = len(e64)
    latent, n_cond, run = _runner(src, backend, steps, sampler)
    if noise is None:
        z = np.random.default_rng(seed).standard_normal((n, latent)).astype(np.float32)
    else:
        z = np.ascontiguousarray(noise, dtype=np.float32)
        if z.shape != (n, latent):
            raise GenerateError(f"noise must have shape ({n}, {latent}), got {z.shape}")
    c = None
    if n_cond:
        if conditions is None:
            raise GenerateError(f"{src}: the model takes extra conditions; pass conditions=(N, k)")
        c = np.ascontiguousarray(conditions, dtype=np.float32).reshape(n, -1)
    elif conditions is not None:
        raise GenerateError(f"{src}: the model takes no extra conditions")
    e32 = e64.astype(np.float32)
    from ..bench.progress import progress as progress_bar

    parts = []
    with progress_bar(total=n, desc="generate", unit="shower", enabled=progress) as bar:
        for i in range(0, n, int(batch_size)):
            j = min(n, i + int(batch_size))
            parts.append(np.asarray(run(np.ascontiguousarray(z[i:j]), np.ascontiguousarray(e32[i:j]),
                                        None if c is None else np.ascontiguousarray(c[i:j])), dtype=np.float32))
            bar.update(j - i)
    showers = np.concatenate(parts, axis=0)
    np.maximum(showers, 0.0, out=showers)  # the sigmoid is >= 0; this only removes -0.0 and rounding
    if output is not None:
        io.write(output, e64, showers, geometry=geometry)
    return showers
