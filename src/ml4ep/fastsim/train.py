"""Train a shower model (the Par04-style VAE or the CaloDiT-style flow-matching transformer) on a CaloChallenge
HDF5 file, read through :class:`ml4ep.data.BatchLoader`.

>>> from ml4ep.fastsim.train import train
>>> result = train("showers.h5", "runs/vae", epochs=20, batch_size=256, lr=1e-3, latent=10, seed=1)  # doctest: +SKIP
>>> result = train("showers.h5", "runs/flow", model="diffusion", epochs=50, geometry="ds2")        # doctest: +SKIP

``init_from`` (a checkpoint or run directory of the same model type and voxel count) starts from pretrained weights
and keeps their preprocessing: the fine-tuning of the MetaHEP-style adaptation to another geometry or material.

``out_dir`` receives ``last.pt`` (written after every epoch: model, optimizer, epoch, RNG states, preprocessing,
configuration, history; ``resume=True`` continues from it), ``best.pt`` (the weights of the lowest validation loss,
what :mod:`ml4ep.fastsim.generate` uses) and ``history.json``. The same seed gives the same weights, also across an
interruption and resume (on the same device and thread count).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import Ml4epError
from . import io

log = logging.getLogger(__name__)

LAST, BEST, HISTORY = "last.pt", "best.pt", "history.json"
FORMAT = "ml4ep.fastsim.vae/1"
FORMATS = {"vae": FORMAT, "diffusion": "ml4ep.fastsim.diffusion/1"}
MODELS = tuple(FORMATS)
CHUNK_BYTES = 8 * 2**20


class TrainError(Ml4epError, ValueError):
    """Invalid training input or an unusable checkpoint."""


def _device(device):
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise TrainError(f"device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"device {device!r}: CUDA is not available")
    return dev


def _loader(path: str, n_voxels: int, conditions: Sequence[str], batch_size: int, seed: int,
            validation_split: float, shuffle: bool = True):
    from ..data import BatchLoader

    # reading parts of about CHUNK_BYTES: the loader's default of 32768 rows would be 850 MB of ds2 showers
    row_bytes = 4 * (int(n_voxels) + 1 + len(conditions))
    chunk = int(np.clip(CHUNK_BYTES // row_bytes, 64, 32768))
    return BatchLoader(path, format="hdf5", columns=[io.E_KEY, io.S_KEY, *conditions], batch_size=batch_size,
                       shuffle=shuffle, seed=seed, validation_split=validation_split, dtype=np.float32,
                       chunk_size=chunk)


def _unpack(batch, conditions: Sequence[str], device):
    import torch

    e = batch[io.E_KEY].reshape(-1, 1)
    s = batch[io.S_KEY].reshape(len(e), -1)
    c = torch.stack([batch[n].reshape(-1) for n in conditions], 1) if conditions else None
    out = [t.to(device=device, dtype=torch.float32) if t is not None else None for t in (e, s, c)]
    return out[0], out[1], out[2]


def _lstsq(ptp: np.ndarray, pty: np.ndarray) -> np.ndarray:
    return np.linalg.solve(ptp + 1e-9 * np.trace(ptp) * np.eye(len(ptp)), pty)


def flow_moments(loader, model) -> dict:
    """The flow model's energy-dependent standardisation: polynomial coefficients (in the model's
    :meth:`~ml4ep.fastsim.models.diffusion.ShowerFlow.basis`, whose energy range must be set) of the mean and of the
    variance of the log voxel shares and log layer fractions of the training split, by least squares on the values
    and then on the squared residuals (two passes in order)."""
    import torch

    def passes(fit):
        acc: dict[str, np.ndarray] = {}
        with torch.no_grad():
            for batch in loader.train.numpy(as_dict=True):
                e = np.asarray(batch[io.E_KEY], np.float32).reshape(-1, 1)
                if not len(e):
                    continue
                s = np.asarray(batch[io.S_KEY], np.float32).reshape(len(e), -1)
                et = torch.from_numpy(e)
                y, ell = (t.double().numpy() for t in model.transform(torch.from_numpy(s), et))
                p = model.basis(et).double().numpy()
                if fit is not None:  # squared residuals around the fitted means
                    y, ell = (y - p @ fit["y"]) ** 2, (ell - p @ fit["l"]) ** 2
                for k, v in (("ptp", p.T @ p), ("y", p.T @ y), ("l", p.T @ ell)):
                    acc[k] = v if k not in acc else acc[k] + v
        return {k: _lstsq(acc["ptp"], acc[k]) for k in ("y", "l")}

    mean = passes(None)
    var = passes(mean)
    return {"y_coef": mean["y"], "y_var": var["y"], "l_coef": mean["l"], "l_var": var["l"]}


def preprocessing(loader, conditions: Sequence[str], sizes: Sequence[int] | None = None) -> dict:
    """One pass over the training split (in order): the per-voxel largest fraction of the incident energy, the
    incident-energy range (MeV), the extra conditions' mean and standard deviation and the energy guard's running
    maxima (``"guard"``, a :class:`~ml4ep.fastsim.models.guard.GuardStats` over the layers of voxel counts ``sizes``,
    default one layer of all voxels)."""
    from .models.guard import GuardStats

    scale, e_min, e_max, n = None, math.inf, 0.0, 0
    c_sum = c_sq = f_sum = None
    sizes = tuple(int(k) for k in sizes) if sizes else None
    guard = member = None
    for batch in loader.train.numpy(as_dict=True):
        e = np.asarray(batch[io.E_KEY], np.float64).reshape(-1, 1)
        s = np.asarray(batch[io.S_KEY], np.float64).reshape(len(e), -1)
        if e.size and (not np.all(np.isfinite(e)) or e.min() <= 0):
            raise TrainError(f"{loader._files[0][0]}: '{io.E_KEY}' must be finite and positive")
        if s.size and (not np.all(np.isfinite(s)) or s.min() < 0):
            raise TrainError(f"{loader._files[0][0]}: '{io.S_KEY}' must be finite and non-negative")
        if not len(e):
            continue
        if guard is None:
            sizes = sizes or (s.shape[1],)
            if sum(sizes) != s.shape[1]:
                raise TrainError(f"{loader._files[0][0]}: {s.shape[1]} voxels do not fit layers of {sizes} voxels")
            guard, member = GuardStats(len(sizes)), np.zeros((s.shape[1], len(sizes)))
            member[np.arange(s.shape[1]), np.repeat(np.arange(len(sizes)), sizes)] = 1.0
        guard.add(e, s @ member)
        frac = s / e
        f_max, f_tot = frac.max(axis=0), frac.sum(axis=0)
        scale = f_max if scale is None else np.maximum(scale, f_max)
        f_sum = f_tot if f_sum is None else f_sum + f_tot
        e_min, e_max, n = min(e_min, float(e.min())), max(e_max, float(e.max())), n + len(e)
        if conditions:
            c = np.stack([np.asarray(batch[k], np.float64).reshape(-1) for k in conditions], 1)
            c_sum = c.sum(0) if c_sum is None else c_sum + c.sum(0)
            c_sq = (c**2).sum(0) if c_sq is None else c_sq + (c**2).sum(0)
    if n == 0:
        raise TrainError(f"{loader._files[0][0]}: the training split is empty")
    from .models.vae import MIN_SCALE

    out = {"voxel_scale": scale, "e_min_mev": e_min, "e_max_mev": e_max, "n_train": n,
           "mean_target": f_sum / n / np.maximum(scale, MIN_SCALE), "guard": guard}
    if conditions:
        mean = c_sum / n
        out["cond_mean"], out["cond_std"] = mean, np.sqrt(np.maximum(c_sq / n - mean**2, 0.0))
    return out


def _save(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".part")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _safe_types() -> list:
    """The only non-torch types the unpickler may build: what our checkpoints hold (NumPy arrays and scalars of
    numeric dtypes, e.g. NumPy's RNG state); nothing of them can run code."""
    dtypes = {type(np.dtype(c)) for c in "?bBhHiIlLqQefd"}
    return [np.ndarray((0,)).__reduce__()[0], np.ndarray, np.dtype, np.float64(0).__reduce__()[0], *dtypes]


def _require(ck: dict, keys, path) -> None:
    for k in keys:
        if not isinstance(ck.get(k), dict):
            raise TrainError(f"{path}: incomplete ml4ep.fastsim checkpoint: its {k!r} entry is missing or not a dict")


def _refusal(exc: Exception) -> str:
    """The reason in an error of torch's safe unpickler, without its advice to load unsafely."""
    msg = str(exc).partition("WeightsUnpickler error:")[2] or str(exc)
    lines = [ln.strip() for ln in msg.splitlines()
             if ln.strip() and not ln.strip().startswith(("Weights only load failed", "Check the documentation"))]
    return lines[0].split(". Please use")[0] if lines else "refused by the safe unpickler"


def load_checkpoint(path) -> dict:
    """A checkpoint dict (``best.pt``/``last.pt`` or a run directory, whose ``best.pt`` is preferred).

    Checkpoints are untrusted: they are read with ``torch.load(weights_only=True)``, which builds only tensors,
    plain containers and the NumPy types of :func:`_safe_types`; anything else is a :class:`TrainError`."""
    import pickle

    import torch

    p = Path(path)
    if p.is_dir():
        p = p / BEST if (p / BEST).exists() else p / LAST
    if not p.exists():
        raise TrainError(f"{p}: no checkpoint (train first, or give a .pt file or a run directory)")
    try:
        with torch.serialization.safe_globals(_safe_types()):
            ck = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # the safe unpickler refused a global: never retried unsafely
        raise TrainError(f"{p}: not a ml4ep checkpoint or it holds objects that could run code: "
                         f"{_refusal(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise TrainError(f"{p}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    kinds = {v: k for k, v in FORMATS.items()}
    if not isinstance(ck, dict) or not isinstance(ck.get("format"), str) or ck["format"] not in kinds:
        raise TrainError(f"{p}: not an ml4ep.fastsim model checkpoint (VAE or diffusion)")
    ck["path"], ck["kind"] = str(p), kinds[ck["format"]]
    _require(ck, ("config", "model", "state"), p)
    _config(ck["kind"], ck["config"], p)
    return ck


def _config(kind: str, config: dict, path=None):
    """The configuration object of a ``kind`` model; an invalid ``config`` is a :class:`TrainError` naming
    ``path``."""
    if kind == "vae":
        from .models.vae import VAEConfig as cls
    elif kind == "diffusion":
        from .models.diffusion import DiffusionConfig as cls
    else:
        raise TrainError(f"model must be one of {MODELS}, got {kind!r}")
    try:
        return cls.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise TrainError(f"{path or 'config'}: invalid {kind} configuration: {exc}") from None


def _guard_sizes(net) -> tuple[int, ...] | None:
    """The layers (voxel counts) over which the guard of ``net`` is fitted: the flow model's, or None (the VAE)."""
    return tuple(net.config.layer_sizes) if hasattr(net.config, "layer_sizes") else None


def _load_state(net, state: dict, path) -> None:
    from .models.guard import fill_missing_guard

    try:
        net.load_state_dict(fill_missing_guard(net, state, path))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise TrainError(f"{path}: the weights do not fit the configured model: {exc}") from None


def new_model(kind: str, config: dict):
    """An untrained model of ``kind`` (``vae`` or ``diffusion``) from its configuration dict."""
    cfg = _config(kind, config)
    if kind == "vae":
        from .models.vae import ShowerVAE

        return ShowerVAE(cfg)
    from .models.diffusion import ShowerFlow

    return ShowerFlow(cfg)


def model_from_checkpoint(ck: dict):
    """The model of a checkpoint dict (:class:`~ml4ep.fastsim.models.vae.ShowerVAE` or
    :class:`~ml4ep.fastsim.models.diffusion.ShowerFlow`; for the latter the averaged (EMA) weights), in eval
    mode on the CPU."""
    model = new_model(ck.get("kind", "vae"), ck["config"])
    _load_state(model, ck["model"], ck.get("path", "checkpoint"))
    return model.eval()


def layer_sizes(n_voxels: int, geometry=None) -> tuple[int, ...]:
    """Voxels per layer of ``geometry`` (one layer of all voxels without one)."""
    if geometry is not None:
        from .geometry import get

        geo = get(geometry)
        if geo.n_voxels == n_voxels:
            return tuple(int(lay.n_voxels) for lay in geo.layers)
    return (int(n_voxels),)


def default_tokens(n_voxels: int, geometry=None) -> int:
    """Tokens of the flow model: one per calorimeter layer (its voxel shapes and energy) when the layers have equal
    voxel counts (ds2, ds3), otherwise chunks of about 64 numbers of the state."""
    sizes = layer_sizes(n_voxels, geometry)
    if len(sizes) > 1 and len(set(sizes)) == 1:
        return len(sizes)
    return max(1, -(-(int(n_voxels) + len(sizes)) // 64))


def _evaluate(model, loader, conditions, device, seed: int, epoch: int) -> float | None:
    import torch

    if not loader.validation.parts:
        return None
    loader.validation.set_epoch(0)  # the same validation order every epoch
    gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch + 7)
    total, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for batch in loader.validation.torch(as_dict=True):
            e, s, c = _unpack(batch, conditions, device)
            loss = model(s, e, c, generator=gen)[0]
            total, n = total + float(loss) * len(e), n + len(e)
    return total / max(n, 1)


class _Progress:
    """What :func:`train` shows while it runs, when ``enabled``: a tqdm bar per epoch over its steps with the running
    mean of the loss and of its terms, drawn only on a terminal (``stream``, default the current ``sys.stderr``); the
    bar stays up through the validation and the epoch's summary line is printed above it (on any stream)."""

    def __init__(self, enabled: bool, stream=None):
        self.enabled, self.stream, self.bar = enabled, stream, None

    def steps(self, batches, epoch: int, epochs: int, n: int):
        """The items of ``batches`` under a new bar for epoch ``epoch`` of ``epochs`` (``n`` steps; 0: unknown)."""
        from ..bench.progress import progress as progress_bar

        self.close()
        self.bar = progress_bar(total=n or None, desc=f"epoch {epoch}/{epochs}", unit="step", file=self.stream,
                                enabled=self.enabled, leave=False)
        try:
            yield from batches
        except BaseException:  # an error or an interruption in the loop: the bar goes before the traceback
            self.close()
            raise
        self.bar.refresh()  # the last step and the epoch's mean loss, shown through the validation

    def batch(self, sums, n: int, names) -> None:
        """A step done; ``sums / n``: the running means of the loss and of its terms ``names``."""
        if not self.bar.disable:
            means = sums / max(n, 1)
            parts = ", ".join(f"{k} {v:.4g}" for k, v in zip(names, means[1:]))
            self.bar.set_postfix_str(f"loss {means[0]:.4g} ({parts})", refresh=False)
        self.bar.update()

    def line(self, text: str) -> None:
        if self.enabled:
            from ..bench.progress import write

            write(text, file=self.stream if self.stream is not None else sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fit_preprocessing(net, model: str, pre_loader, pre: dict, init_output: bool) -> None:
    """Set the preprocessing of ``net`` from the training split (``pre`` from :func:`preprocessing`); a VAE's output
    biases start at the mean shower when ``init_output``."""
    layer_max, total_max = pre["guard"].bounds(pre["e_min_mev"], pre["e_max_mev"])
    if model == "vae":
        net.set_preprocessing(pre["voxel_scale"], pre["e_min_mev"], pre["e_max_mev"], pre.get("cond_mean"),
                              pre.get("cond_std"), pre["mean_target"] if init_output else None)
        net.set_guard(total_max[:, None], total_max)  # the whole shower as one layer
        return
    if layer_max.shape[1] != len(net.config.layer_sizes):
        raise TrainError(f"the data's {layer_max.shape[1]} layers do not fit the model's {len(net.config.layer_sizes)}")
    net._set_condition_stats(pre["e_min_mev"], pre["e_max_mev"], pre.get("cond_mean"), pre.get("cond_std"))
    net.set_guard(layer_max, total_max)  # before the moments: the u-variables use the guard's bound on E_tot
    mom = flow_moments(pre_loader, net)
    net.set_preprocessing(pre["e_min_mev"], pre["e_max_mev"], mom["y_coef"], mom["y_var"], mom["l_coef"],
                          mom["l_var"], pre.get("cond_mean"), pre.get("cond_std"))


#: learning-rate schedules after the warm-up: constant, or a cosine from lr to LR_FLOOR lr over the planned steps
SCHEDULES = ("constant", "cosine")
LR_FLOOR = 0.05


def _lr_factor(step: int, warm: int, schedule: str, planned: int) -> float:
    """The learning rate of optimizer step ``step`` (from 0) as a fraction of ``lr``."""
    f = min(1.0, (step + 1) / warm) if warm else 1.0
    if schedule == "cosine":
        x = min(1.0, step / max(planned, 1))
        f *= LR_FLOOR + (1.0 - LR_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * x))
    return f


def _alpha_rotation(geo, dev):
    """``rotate(showers (N, V), generator) -> showers`` turned by a random number of angular bins per shower."""
    import torch

    if geo is None or len({(lay.n_alpha, lay.n_voxels) for lay in geo.layers}) != 1 or geo.layers[0].n_alpha < 2:
        raise TrainError("rotate_alpha needs a geometry whose layers share one binning in (alpha, r) with several "
                         f"angular bins (got {geo.name if geo is not None else 'no geometry'!r})")
    n_layers, n_alpha = len(geo.layers), int(geo.layers[0].n_alpha)
    n_r = geo.layers[0].n_voxels // n_alpha
    base = torch.arange(n_alpha, device=dev)

    def rotate(s, gen):
        k = torch.randint(0, n_alpha, (s.shape[0], 1), generator=gen, device=dev)
        idx = ((base + k) % n_alpha).view(-1, 1, n_alpha, 1).expand(-1, n_layers, n_alpha, n_r)
        return torch.gather(s.view(-1, n_layers, n_alpha, n_r), 2, idx).reshape(s.shape)

    return rotate


def _check_positive_int(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise TrainError(f"{name} must be a positive integer, got {v!r}")


def _loss_names(model) -> tuple[str, ...]:
    return tuple(getattr(model, "loss_terms", ("recon", "kl")))


def train(path, out_dir, *, model: str = "vae", epochs: int = 20, batch_size: int = 256, lr: float = 1e-3,
          latent: int = 10, seed: int = 0, validation_split: float = 0.2, patience: int | None = 5, device="auto",
          resume: bool = False, progress: bool = True, hidden: Sequence[int] = (256, 128, 64), beta: float = 1.0,
          loss: str = "bce", conditions: Sequence[str] = (), geometry=None, dim: int = 64, depth: int = 4,
          heads: int = 4, mlp_ratio: float = 2.0, tokens: int | None = None, steps: int = 20,
          sampler: str = "midpoint", ema_decay: float = 0.999, warmup: int = 200, init_from=None,
          refit_preprocessing: bool = False, max_seconds: float | None = None, workers: int = 0,
          head: str = "switch", energy: str = "u", schedule: str = "constant", rotate_alpha: bool = False,
          empty_noise: bool = False) -> dict:
    """Train a model on the showers of ``path`` and checkpoint it in ``out_dir``; returns ``{"epochs_run",
    "epoch", "steps", "best_epoch", "best_val_loss", "stopped_early", "history", "best", "last", "seconds"}``.

    ``model``: ``vae`` (:class:`~ml4ep.fastsim.models.vae.ShowerVAE`; ``latent``, ``hidden``, ``beta``, ``loss``)
    or ``diffusion`` (:class:`~ml4ep.fastsim.models.diffusion.ShowerFlow`; ``dim``, ``depth``, ``heads``,
    ``mlp_ratio``, ``tokens`` (default: one per layer of ``geometry`` when its layers are alike), the sampler's
    default ``steps`` and ``sampler``, ``ema_decay`` (the exponential moving average of the weights that is
    validated, saved and used for generation; 0 disables it) and ``warmup`` (optimizer steps of linear learning-rate
    warm-up), ``head`` (the output head: ``switch``, ``mlp`` or ``none``, see
    :class:`~ml4ep.fastsim.models.diffusion.DiffusionConfig`), ``energy`` (the layer energies' representation: ``u``,
    bounded by construction, or ``log``), ``empty_noise`` (empty voxels as noise below the snap level)). ``schedule``: the learning rate after the warm-up, ``constant`` or
    ``cosine`` (down to 5% of ``lr`` over the planned ``epochs``). ``rotate_alpha``: turn every training shower by a
    random number of angular bins (the same in every layer; needs a ``geometry`` whose layers share one (alpha, r)
    binning), an augmentation that teaches the symmetry in alpha of showers at normal incidence.

    ``patience``: stop after that many epochs without a lower validation loss (the training loss without a
    validation split; ``None`` never stops early). ``max_seconds``: the run's training-time budget, earlier sessions of
a resumed run included: training stops after the epoch that exceeds it.
    ``resume``: continue from ``out_dir/last.pt`` (the other arguments must describe the same run; ``epochs`` may be
    raised). ``conditions``: extra scalar datasets of the file used as conditions besides the incident energy.
    ``geometry`` (optional) checks the voxel count and gives the flow model its readout threshold and tokens.
    ``init_from``: start from the weights and preprocessing of this checkpoint (fine-tuning); with
    ``refit_preprocessing`` the preprocessing is fitted to the new data instead (the network's weights are kept).
    ``workers``: processes reading the training batches (``torch.utils.data.DataLoader`` workers; 0 reads in a
    background thread of this process). A CUDA device gets pinned batches. The batches are the same for any number
    of workers except where one worker's run of windows ends, so a resumed run is bit-identical only with the same
    ``workers``.
    """
    import torch

    if model not in MODELS:
        raise TrainError(f"model must be one of {MODELS}, got {model!r}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("latent", latent)):
        _check_positive_int(name, v)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise TrainError(f"workers must be a non-negative integer, got {workers!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise TrainError(f"lr must be positive, got {lr!r}")
    if patience is not None and patience < 1:
        raise TrainError(f"patience must be >= 1 or None, got {patience!r}")
    if not 0 <= float(ema_decay) < 1:
        raise TrainError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
    if schedule not in SCHEDULES:
        raise TrainError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    conditions = list(conditions)
    meta = io.info(path)  # a clear ShowerFileError naming the file for a missing file or wrong keys
    geo = None
    if geometry is not None:
        from .geometry import get

        geo = get(geometry)
        if geo.n_voxels != meta["n_voxels"]:
            raise TrainError(f"{path}: {meta['n_voxels']} voxels per shower but geometry {geo.name!r} has "
                             f"{geo.n_voxels}")
    if meta["n_showers"] == 0:
        raise TrainError(f"{path}: the file holds no showers")
    dev = _device(device)
    rotate = _alpha_rotation(geo, dev) if rotate_alpha else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_args = {"path": str(Path(path).resolve()), "batch_size": int(batch_size), "lr": float(lr),
                "seed": int(seed), "validation_split": float(validation_split), "conditions": conditions}
    if model == "vae":
        run_args.update(latent=int(latent), hidden=[int(h) for h in hidden], beta=float(beta), loss=loss)
    else:
        run_args.update(model=model, ema_decay=float(ema_decay), warmup=int(warmup))
    if schedule != "constant":  # absent from the runs that predate the schedules, so they still resume
        run_args["schedule"] = schedule
    if rotate_alpha:
        run_args["rotate_alpha"] = True
    pre_ck = None
    if init_from is not None:
        pre_ck = load_checkpoint(init_from)
        if pre_ck["kind"] != model or pre_ck["config"]["n_voxels"] != meta["n_voxels"]:
            raise TrainError(f"{pre_ck['path']}: cannot fine-tune from a {pre_ck['kind']} model with "
                             f"{pre_ck['config']['n_voxels']} voxels to a {model} model on {path} "
                             f"({meta['n_voxels']} voxels)")
        if list(pre_ck["config"].get("condition_names", [])) != conditions:
            raise TrainError(f"{pre_ck['path']}: the pretrained model's conditions "
                             f"{pre_ck['config'].get('condition_names')} differ from {conditions}")
        run_args["init_from"] = pre_ck["path"]
        run_args["refit_preprocessing"] = bool(refit_preprocessing)

    loader = _loader(str(path), meta["n_voxels"], conditions, int(batch_size), int(seed), float(validation_split))
    torch.manual_seed(int(seed))
    ck = None
    if resume and (out / LAST).exists():
        ck = load_checkpoint(out / LAST)
        _require(ck, ("run", "optimizer", "rng"), ck["path"])
        old = {k: v for k, v in ck["run"].items() if k != "path"}
        new = {k: v for k, v in run_args.items() if k != "path"}
        if old != new or ck["kind"] != model:
            diff = {k: (old.get(k), new.get(k)) for k in set(new) | set(old) if old.get(k) != new.get(k)}
            raise TrainError(f"{out / LAST}: cannot resume, the run was started with other settings "
                             f"(saved, given): {diff}")
        net = new_model(model, ck["config"])
        _load_state(net, ck.get("model_raw", ck["model"]), ck["path"])
    elif pre_ck is not None:
        if resume:
            log.info("%s: no checkpoint to resume from; starting a new run", out / LAST)
        net = new_model(model, pre_ck["config"])
        _load_state(net, pre_ck["model"], pre_ck["path"])
        if refit_preprocessing:  # the pretrained network, the preprocessing of the new data
            pre_loader = _loader(str(path), meta["n_voxels"], conditions, 4096, int(seed), float(validation_split), shuffle=False)
            _fit_preprocessing(net, model, pre_loader, preprocessing(pre_loader, conditions, _guard_sizes(net)),
                               init_output=False)
    else:
        if resume:
            log.info("%s: no checkpoint to resume from; starting a new run", out / LAST)
        pre_loader = _loader(str(path), meta["n_voxels"], conditions, 4096, int(seed), float(validation_split), shuffle=False)
        pre = preprocessing(pre_loader, conditions, layer_sizes(meta["n_voxels"], geo) if model != "vae" else None)
        if model == "vae":
            from .models.vae import VAEConfig

            cfg = VAEConfig(n_voxels=meta["n_voxels"], latent=int(latent), hidden=tuple(hidden),
                            n_conditions=len(conditions), condition_names=tuple(conditions), beta=float(beta),
                            loss=loss)
            net = new_model(model, cfg.to_dict())
        else:
            from .models.diffusion import DiffusionConfig, DiffusionConfigError

            n_tok = int(tokens) if tokens is not None else default_tokens(meta["n_voxels"], geo)
            try:
                cfg = DiffusionConfig(n_voxels=meta["n_voxels"], n_tokens=n_tok,
                                      layer_sizes=layer_sizes(meta["n_voxels"], geo), dim=dim, depth=depth, heads=heads,
                                      mlp_ratio=float(mlp_ratio), n_conditions=len(conditions), head=head,
                                      energy=energy, empty_noise=bool(empty_noise),
                                      condition_names=tuple(conditions), steps=steps, sampler=sampler,
                                      threshold_mev=float(geo.threshold) if geo is not None else 0.0)
            except DiffusionConfigError as exc:
                raise TrainError(str(exc)) from None
            net = new_model(model, cfg.to_dict())
        _fit_preprocessing(net, model, pre_loader, pre, init_output=True)
    net.to(dev).train()
    ema = None
    if model == "diffusion" and float(ema_decay) > 0:
        ema = new_model(model, net.config.to_dict()).to(dev)
        ema.load_state_dict(ck["model"] if ck is not None else net.state_dict())
        ema.eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=float(lr))
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    state = {"epoch": 0, "step": 0, "best_val_loss": math.inf, "best_epoch": -1, "bad_epochs": 0, "history": [],
             "stopped_early": False}
    if ck is not None:
        try:
            opt.load_state_dict(ck["optimizer"])
            gen.set_state(ck["rng"]["generator"])
            torch.set_rng_state(ck["rng"]["torch"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise TrainError(f"{ck['path']}: cannot resume from its optimizer or RNG state ({exc!r})") from None
        state.update(ck["state"])

    names = _loss_names(net)
    prog = _Progress(progress)
    n_batches = len(loader.train)
    t0 = time.perf_counter()
    epochs_run = 0
    start = state["epoch"]
    warm = int(warmup) if model == "diffusion" else 0
    spent = float(sum(h["seconds"] for h in state["history"]))  # training time of earlier sessions
    out_of_time = max_seconds is not None and spent >= float(max_seconds)
    if state["stopped_early"]:
        prog.line(f"{out}: the run stopped early at epoch {start}; nothing to do")
    elif out_of_time and start < int(epochs):
        prog.line(f"{out}: the run has used its time budget ({spent:.0f} s of {max_seconds} s); nothing to do")
    for epoch in range(start, int(epochs)):
        if state["stopped_early"] or out_of_time:
            break
        te = time.perf_counter()
        net.train()
        loader.train.set_epoch(epoch)
        sums, n = np.zeros(1 + len(names)), 0
        batches = loader.train.torch(num_workers=int(workers), pin_memory=dev.type == "cuda", as_dict=True)
        for batch in prog.steps(batches, epoch + 1, epochs, n_batches):
            e, s, c = _unpack(batch, conditions, dev)
            if rotate is not None:
                s = rotate(s, gen)
            if warm or schedule == "cosine":
                for g in opt.param_groups:
                    g["lr"] = float(lr) * _lr_factor(state["step"], warm, schedule, int(epochs) * n_batches)
            terms = net(s, e, c, generator=gen)
            opt.zero_grad(set_to_none=True)
            terms[0].backward()
            opt.step()
            state["step"] += 1
            if ema is not None:
                with torch.no_grad():
                    d = min(float(ema_decay), (1 + state["step"]) / (10 + state["step"]))
                    for pe, pn in zip(ema.parameters(), net.parameters()):
                        pe.mul_(d).add_(pn.detach(), alpha=1 - d)
            vals = torch.stack([t.detach() for t in terms]).cpu().numpy().astype(np.float64)
            sums, n = sums + vals * len(e), n + len(e)
            prog.batch(sums, n, names)
        if n == 0:
            prog.close()
            raise TrainError(f"{path}: the training split is empty (validation_split {validation_split})")
        means = (sums / n).tolist()
        val = _evaluate(ema if ema is not None else net, loader, conditions, dev, int(seed), epoch)
        monitored = val if val is not None else means[0]
        if not math.isfinite(monitored):
            prog.close()
            raise TrainError(f"epoch {epoch + 1}: the loss is {monitored} (lower lr?)")
        improved = monitored < state["best_val_loss"]
        if improved:
            state["best_val_loss"], state["best_epoch"], state["bad_epochs"] = monitored, epoch + 1, 0
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["stopped_early"] = patience is not None and state["bad_epochs"] >= patience
        entry = {"epoch": epoch + 1, "step": state["step"], "train_loss": means[0]}
        entry.update({f"train_{k}": v for k, v in zip(names, means[1:])})
        entry.update(val_loss=val, seconds=time.perf_counter() - te)
        state["history"].append(entry)
        saved = ema if ema is not None else net
        ckpt = {"format": FORMATS[model], "config": net.config.to_dict(),
                "model": {k: v.detach().cpu() for k, v in saved.state_dict().items()},
                "optimizer": opt.state_dict(), "state": state, "run": run_args,
                "rng": {"generator": gen.get_state().cpu(), "torch": torch.get_rng_state(),
                        "numpy": np.random.get_state()},
                "data": {"n_voxels": meta["n_voxels"], "n_showers": meta["n_showers"]}}
        if ema is not None:
            ckpt["model_raw"] = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        if improved:
            _save(ckpt, out / BEST)
        _save(ckpt, out / LAST)
        (out / HISTORY).write_text(json.dumps(state["history"], indent=1))
        epochs_run += 1
        vtxt = f"val {val:.4g}" if val is not None else "no validation"
        parts = ", ".join(f"{k} {v:.4g}" for k, v in zip(names, means[1:]))
        prog.line(f"epoch {epoch + 1}/{epochs}: train {means[0]:.4g} ({parts}), {vtxt}{' *' if improved else ''}"
                  f", {time.perf_counter() - te:.1f} s")
        if state["stopped_early"]:
            prog.line(f"early stop: no improvement for {patience} epoch(s); best epoch {state['best_epoch']}")
        if max_seconds is not None and spent + time.perf_counter() - t0 > float(max_seconds):
            prog.line(f"stopping after epoch {epoch + 1}: the time budget of {max_seconds} s is used")
            break
    prog.close()
    return {"epochs_run": epochs_run, "epoch": state["epoch"], "steps": state["step"],
            "best_epoch": state["best_epoch"], "best_val_loss": state["best_val_loss"],
            "stopped_early": state["stopped_early"], "history": list(state["history"]), "best": str(out / BEST),
            "last": str(out / LAST), "seconds": time.perf_counter() - t0}
