"""Errors raised by ml4ep. Every error a user can trigger is an :class:`Ml4epError`."""

from __future__ import annotations


class Ml4epError(Exception):
    """Base class of all ml4ep errors."""


class ModelLoadError(Ml4epError):
    """A model file could not be read (missing, not ONNX, invalid)."""


class UnsupportedOperatorError(Ml4epError):
    """The model uses operators (or operator variants) ml4ep cannot compile.

    ``problems`` lists ``(node_name, op_type, reason)`` for every offending node, all at once.
    """

    def __init__(self, problems: list[tuple[str, str, str]], source: str = "model"):
        self.problems = list(problems)
        lines = [f"{source}: {len(self.problems)} node(s) cannot be compiled by ml4ep:"]
        for node, op, why in self.problems:
            lines.append(f"  - node '{node}' ({op}): {why}")
        super().__init__("\n".join(lines))


class ShapeError(Ml4epError):
    """Shapes in the model are inconsistent or cannot be resolved."""


class CompilerError(Ml4epError):
    """The C++ compiler is missing or failed on the generated code."""


class UnsupportedCPUError(CompilerError):
    """Compiled code needs ISA extensions (AVX2, AVX-512, ...) that this CPU lacks; the message names them."""


class InputError(Ml4epError, ValueError):
    """Wrong inputs given at call time (name, dtype or shape)."""


class OptionalDependencyError(Ml4epError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class DeviceError(Ml4epError):
    """A model built for a GPU cannot run here (no driver, no GPU, a missing CUDA library) or was given data on the
    wrong device; the message names what is missing."""
