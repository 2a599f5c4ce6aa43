"""One loader per model format, each producing a :class:`ml4ep.bdt.forest.Forest`."""

from __future__ import annotations

import os

from ..forest import ModelError


def read_model_file(path: str | os.PathLike) -> tuple[str, bytes]:
    """The path as a string and the file's bytes, or a ModelError naming the file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return path, f.read()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model file ({exc.strerror})") from None
