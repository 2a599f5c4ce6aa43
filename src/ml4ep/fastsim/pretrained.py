"""Shower models that ship with ml4ep: a name (``ds2-default``) stands for a folder of the package data holding the
exported ONNX graphs, a slim checkpoint for fine-tuning and ``model.json`` (how the model was trained: command, data
and seeds, training time, the measured metrics, and the SHA-256 of every file).

>>> from ml4ep.fastsim import pretrained
>>> pretrained.names()                                   # doctest: +SKIP
['ds2-default']
>>> pretrained.info("ds2-default")["metrics"]            # doctest: +SKIP

``ml4ep fastsim generate ds2-default ...`` and ``ml4ep fastsim export ds2-default --cpp DIR`` use them through
:func:`resolve`; neither needs torch (the graphs run through ml4ep.infer or onnxruntime). The files are checked
against their recorded SHA-256 before use. :func:`publish` writes a trained run as such a folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .._native.build import file_sha256
from ..errors import Ml4epError

__all__ = ["PretrainedError", "ROOT", "directory", "info", "names", "publish", "resolve"]

#: the package folder of the shipped models, one sub-folder each
ROOT = Path(__file__).parent / "pretrained"
META = "model.json"
CHECKPOINT = "checkpoint.pt"


class PretrainedError(Ml4epError, ValueError):
    """An unknown or damaged shipped model."""


def names() -> list[str]:
    """The shipped models' names."""
    return sorted(p.name for p in ROOT.iterdir() if (p / META).is_file()) if ROOT.is_dir() else []


def directory(name: str) -> Path:
    """The folder of a shipped model."""
    if name not in names():
        raise PretrainedError(f"{name!r} is not a shipped model (shipped: {', '.join(names()) or 'none'})")
    return ROOT / name


def info(name: str) -> dict:
    """``model.json`` of a shipped model (``files`` maps each file to its SHA-256; ``onnx`` names the graph that
    :func:`resolve` returns)."""
    path = directory(name) / META
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PretrainedError(f"{path}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict) or meta.get("onnx") not in meta["files"]:
        raise PretrainedError(f"{path}: not a shipped-model description (needs 'files' and 'onnx')")
    return meta


def verify(name: str) -> Path:
    """The folder of a shipped model after checking every file against its recorded SHA-256."""
    folder, meta = directory(name), info(name)
    for file, digest in meta["files"].items():
        p = folder / file
        if not p.is_file():
            raise PretrainedError(f"{p}: missing from the shipped model {name!r} (reinstall ml4ep)")
        if file_sha256(p) != digest:
            raise PretrainedError(f"{p}: its SHA-256 differs from the one recorded in {folder / META} "
                                  "(a damaged or altered file; reinstall ml4ep)")
    return folder


def resolve(model) -> Path | None:
    """The ONNX graph (verified) of ``model`` when it names a shipped model and is not an existing path; else None."""
    if isinstance(model, Path) or Path(str(model)).exists() or str(model) not in names():
        return None
    return verify(str(model)) / info(str(model))["onnx"]


def publish(run, name: str, metadata: dict, *, root: Path | None = None) -> Path:
    """Write the run directory ``run`` (a trained flow model) as the shipped model ``name``: its exported graphs, a
    slim checkpoint (configuration, averaged weights and training state: enough to fine-tune with ``init_from``,
    not to resume) and ``model.json`` (``metadata`` plus the files' SHA-256). Returns the folder."""
    import torch

    from .generate import DENOISER_NAME, POST_NAME, export
    from .train import load_checkpoint

    folder = (ROOT if root is None else Path(root)) / name
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ck = load_checkpoint(run)
    if ck["kind"] != "diffusion":
        raise PretrainedError(f"{ck['path']}: only flow models are shipped")
    export(ck["path"], tmp / DENOISER_NAME)
    slim = {k: ck[k] for k in ("format", "config", "model", "state") if k in ck}
    slim["state"] = {k: v for k, v in slim["state"].items() if k != "history"}
    torch.save(slim, tmp / CHECKPOINT)
    files = {f: file_sha256(tmp / f) for f in (DENOISER_NAME, POST_NAME, CHECKPOINT)}
    meta = {"name": name, **metadata, "onnx": DENOISER_NAME, "files": files}
    (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder
