"""Fixtures shared by the tests under tests/infer."""

from __future__ import annotations

import pytest

from ml4ep._native import build


@pytest.fixture(scope="module")
def strict_warnings():
    """The generated code must compile warning-free: build the module's tests with -Wall -Wextra -Werror.

    Use it with ``pytestmark = pytest.mark.usefixtures("strict_warnings")``.
    """
    orig = build.flags

    def strict(portable: bool = False, extra=None):
        return orig(portable, extra) + ["-Wall", "-Wextra", "-Werror"]

    build.flags = strict
    yield
    build.flags = orig
