"""Deferred imports of optional heavy dependencies with an error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import OptionalDependencyError


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise an error telling the user to ``pip install 'ml4ep[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise OptionalDependencyError(
            f"the optional dependency '{module}' is needed{what}; install it with "
            f"pip install 'ml4ep[{extra}]'"
        ) from exc
