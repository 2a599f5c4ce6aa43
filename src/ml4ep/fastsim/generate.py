"""Export a trained shower VAE's decoder to ONNX and generate showers with PyTorch, ONNX Runtime or ml4ep.infer.

>>> from ml4ep.fastsim.generate import export, generate
>>> export("runs/vae", "runs/vae/decoder.onnx")                               # doctest: +SKIP
>>> showers = generate("runs/vae", energies_mev, backend="ml4ep", seed=1)     # doctest: +SKIP

The exported graph: inputs ``z`` (N, latent) float32 and ``incident_energy`` (N, 1) float32 in MeV (and ``cond``
(N, k) for a model with extra conditions), output ``showers`` (N, V) float32 in MeV; N is dynamic. For the same
noise every backend gives the same showers up to float rounding.
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
OPSET = 17
_compiled: dict = {}


class GenerateError(Ml4epError, ValueError):
    """Invalid generation input (model path, backend, energies, noise)."""


def export(checkpoint_or_dir, out_onnx=None, *, opset: int = OPSET) -> Path:
    """Write the decoder of a checkpoint (``.pt`` or run directory) as ONNX with a dynamic batch; returns the path
    (default: ``decoder.onnx`` beside the checkpoint)."""
    import onnx
    import torch

    from .models.vae import DecoderGraph

    ck = load_checkpoint(checkpoint_or_dir)
    model = model_from_checkpoint(ck)
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
    dyn = {n: {0: "batch"} for n in [*names, "showers"]}
    tmp = out.with_name(out.name + ".part")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice (a static graph suffices)
        torch.onnx.export(DecoderGraph(model), args, str(tmp), input_names=names, output_names=["showers"],
                          dynamic_axes=dyn, opset_version=opset, dynamo=False)
    proto = onnx.load(str(tmp))
    meta = {"ml4ep.model": "fastsim.vae", "latent": str(cfg.latent), "n_voxels": str(cfg.n_voxels),
            "conditions": ",".join(cfg.condition_names), "checkpoint_epoch": str(ck["state"]["epoch"])}
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    log.info("exported the decoder of %s to %s", ck["path"], out)
    return out


def _onnx_for(src: Path) -> Path:
    """The ONNX file of a source: itself, or ``decoder.onnx`` in a run directory (exported when missing or older
    than the checkpoint)."""
    if src.suffix == ".onnx":
        if not src.exists():
            raise GenerateError(f"{src}: file not found")
        return src
    ck_path = Path(load_checkpoint(src)["path"])
    onnx_path = ck_path.parent / ONNX_NAME
    if not onnx_path.exists() or onnx_path.stat().st_mtime < ck_path.stat().st_mtime:
        export(ck_path, onnx_path)
    return onnx_path


def _onnx_sizes(path: Path) -> tuple[int, list[str]]:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001
        raise GenerateError(f"{path}: not a readable ONNX file ({exc})") from None
    names = [i.name for i in proto.graph.input]
    if names[:2] != ["z", "incident_energy"]:
        raise GenerateError(f"{path}: not a fastsim decoder (inputs {names}, expected z, incident_energy)")
    latent = proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    return int(latent), names


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


def _runner(src: Path, backend: str):
    """``(latent, n_conditions, fn(z, e, c) -> showers)`` for a backend."""
    if backend == "torch":
        import torch

        if src.suffix == ".onnx":
            raise GenerateError(f"{src}: the torch backend needs a checkpoint or run directory, not ONNX")
        model = model_from_checkpoint(load_checkpoint(src))

        def run_torch(z, e, c):
            with torch.no_grad():
                ct = None if c is None else torch.from_numpy(c)
                return model.decode(torch.from_numpy(z), torch.from_numpy(e), ct).numpy()

        return model.config.latent, model.config.n_conditions, run_torch
    onnx_path = _onnx_for(src)
    latent, names = _onnx_sizes(onnx_path)
    n_cond = 1 if "cond" in names else 0
    if backend == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

        def run_ort(z, e, c):
            feeds = {"z": z, "incident_energy": e}
            if c is not None:
                feeds["cond"] = c
            return sess.run(["showers"], feeds)[0]

        return latent, n_cond, run_ort
    import ml4ep.infer as mi

    key = (str(onnx_path.resolve()), onnx_path.stat().st_mtime_ns)
    if key not in _compiled:
        _compiled[key] = mi.compile(str(onnx_path))
    compiled = _compiled[key]

    def run_ml4ep(z, e, c):
        out = compiled(z, e) if c is None else compiled(z, e, c)
        return np.asarray(out)

    return latent, n_cond, run_ml4ep


def generate(model_dir_or_onnx, energies, *, backend: str = "torch", seed: int | None = None, noise=None,
             conditions=None, batch_size: int = 10_000, output=None, geometry=None) -> np.ndarray:
    """Showers ``(N, V)`` float32 in MeV for incident ``energies`` (N values, MeV).

    ``model_dir_or_onnx``: a run directory or ``.pt`` checkpoint (every backend; the ONNX backends use its
    ``decoder.onnx``, exported when needed) or an exported ``.onnx`` file (``onnxruntime`` and ``ml4ep``).
    ``noise``: the latent draws ``(N, latent)``; otherwise standard normal from ``seed``. ``conditions``: the extra
    condition columns ``(N, k)`` of a model trained with some. ``output``: also write the showers and energies to
    this CaloChallenge HDF5 file (``geometry`` optionally checks the voxel count).
    """
    if backend not in BACKENDS:
        raise GenerateError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise GenerateError(f"batch_size must be a positive integer, got {batch_size!r}")
    src = Path(model_dir_or_onnx)
    if not src.exists():
        raise GenerateError(f"{src}: file not found")
    e64 = _energies(energies)
    n = len(e64)
    latent, n_cond, run = _runner(src, backend)
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
    parts = []
    for i in range(0, n, int(batch_size)):
        j = min(n, i + int(batch_size))
        parts.append(np.asarray(run(np.ascontiguousarray(z[i:j]), np.ascontiguousarray(e32[i:j]),
                                    None if c is None else np.ascontiguousarray(c[i:j])), dtype=np.float32))
    showers = np.concatenate(parts, axis=0)
    np.maximum(showers, 0.0, out=showers)  # the sigmoid is >= 0; this only removes -0.0 and rounding
    if output is not None:
        io.write(output, e64, showers, geometry=geometry)
    return showers
