"""The same batches as PyTorch tensors, a ``tf.data.Dataset`` or JAX arrays.

Each framework is an optional dependency, imported only when its adapter is used.
"""

from __future__ import annotations

import logging

import numpy as np

from .._optional import require

log = logging.getLogger(__name__)


# -- PyTorch ----------------------------------------------------------------------------------------------
def _torch():  # noqa: D103
    return require("torch", "torch", "PyTorch batches")


def TorchDataset(split, as_dict: bool = False, epoch: int | None = None, skip: int = 0):
    _torch()
    from ._torch import TorchDataset as cls

    return cls(split, as_dict=as_dict, epoch=epoch, skip=skip)


def torch_epoch(split, *, num_workers: int, pin_memory: bool, device, as_dict: bool):
    """Checks and the epoch number happen at the call; the returned generator runs the epoch."""
    torch = _torch()
    epoch, skip = split._next_epoch()
    if num_workers and skip:
        log.warning("resuming mid-epoch is exact only without worker processes; epoch %d restarts", epoch)
        skip = 0
    ds = TorchDataset(split, as_dict=as_dict, epoch=epoch, skip=skip)
    pin = bool(pin_memory) and torch.cuda.is_available()
    if pin_memory and not pin:
        log.info("pin_memory ignored: no CUDA device")
    move = _mover(torch, device, pin and not num_workers, non_blocking=pin)
    return _torch_batches(split, ds, epoch, num_workers, pin, move)


def _torch_batches(split, ds, epoch: int, num_workers: int, pin: bool, move):
    torch = _torch()
    if num_workers:
        it = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=num_workers, pin_memory=pin)
    else:
        it = ds
    for batch in it:
        if isinstance(batch, list):  # DataLoader workers hand tuples back as lists
            batch = tuple(batch)
        yield _apply(batch, move) if move is not None else batch
    if num_workers:  # in-process runs track their position themselves
        split._state = {"epoch": epoch + 1, "rows": 0}


def _mover(torch, device, pin: bool, non_blocking: bool):
    if device is None and not pin:
        return None
    dev = torch.device(device) if device is not None else None

    def move(t):
        if pin:
            t = t.pin_memory()
        return t.to(dev, non_blocking=non_blocking) if dev is not None else t

    return move


def _apply(batch, f):
    if isinstance(batch, dict):
        return {k: f(v) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(f(v) for v in batch)
    return f(batch)


# -- TensorFlow -----------------------------------------------------------------------------------------
def tensorflow_dataset(split, *, as_dict: bool):
    tf = require("tensorflow", "tensorflow", "tf.data batches")
    outs = split._schema(as_dict).outputs

    def spec(o):
        return tf.TensorSpec(shape=(None,) + tuple(o.shape), dtype=tf.as_dtype(o.dtype))

    if as_dict:
        signature = {o.name: spec(o) for o in outs}
    elif len(outs) == 1:
        signature = spec(outs[0])
    else:
        signature = tuple(spec(o) for o in outs)

    def gen():
        yield from split.numpy(as_dict=as_dict)

    return tf.data.Dataset.from_generator(gen, output_signature=signature)


# -- JAX ------------------------------------------------------------------------------------------------------
def jax_epoch(split, *, as_dict: bool):
    """Checks happen at the call; the returned generator runs the epoch."""
    jax = require("jax", "jax", "JAX batches")
    wide = [o.name for o in split._schema(as_dict).outputs if np.dtype(o.dtype).itemsize == 8]
    if wide and not jax.config.read("jax_enable_x64"):
        from .sources import DataError

        raise DataError(
            f"{', '.join(wide)} would be truncated to 32 bits by JAX (jax_enable_x64 is off); enable it with "
            "jax.config.update('jax_enable_x64', True) or ask for a cast with dtype=/target_dtype="
        )
    return (_apply(batch, jax.device_put) for batch in split.numpy(as_dict=as_dict))
