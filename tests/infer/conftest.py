"""Fixtures shared by the tests under tests/infer."""

from __future__ import annotations

import os

import pytest

from ml4ep._native import build


@pytest.fixture(scope="module")
def strict_warnings():
    """The generated code must compile warning-free: build the module's tests with -Wall -Wextra -Werror.

    Use it with ``pytestmark = pytest.mark.usefixtures("strict_warnings")``.
    """
    orig = build.WARNING_FLAGS
    build.WARNING_FLAGS = [*orig, "-Werror"]  # what every generated build's flags end with (Target.cxxflags)
    yield
    build.WARNING_FLAGS = orig

# ML4EP_DEVICE=cuda-host reruns the kernel tests through the CUDA code built for the host (make test): a test whose
# model has an operator without CUDA code is skipped, naming it (tests/infer/cuda/test_cuda_coverage.py checks that the
# operators the HEP models need all have one). ML4EP_DEVICE=cuda on a machine without a GPU builds every test model
# with nvcc (with ML4EP_NVCC_FLAGS="-Werror all-warnings": warning-free) and skips the tests there.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if call.excinfo is None or os.environ.get("ML4EP_DEVICE", "cpu") == "cpu":
        return
    from ml4ep.errors import UnsupportedOperatorError

    exc = call.excinfo.value
    if isinstance(exc, UnsupportedOperatorError) and "(device='cuda')" in str(exc):
        ops = sorted({op for _, op, _ in exc.problems})
        rep.outcome = "skipped"
        rep.longrepr = (str(item.path), item.location[1] or 0, f"refused by the CUDA code: {', '.join(ops)}")
    from ml4ep.errors import DeviceError

    if isinstance(exc, DeviceError) and "cannot run here" in str(exc):
        rep.outcome = "skipped"
        rep.longrepr = (str(item.path), item.location[1] or 0, "built by nvcc; no GPU here to run it")
