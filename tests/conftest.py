"""Test session set-up: a fresh compile cache per session, so every test compiles what it checks."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

_cache = tempfile.mkdtemp(prefix="ml4ep-test-cache-")
os.environ.setdefault("ML4EP_CACHE_DIR", _cache)
sys.path.insert(0, str(Path(__file__).parent / "infer"))


@pytest.fixture(scope="session")
def hep_exported(tmp_path_factory):
    """Each model of tests/infer/hep_models.py exported once per session: name -> ONNX path."""
    import hep_models

    directory = tmp_path_factory.mktemp("hep_models")
    cache: dict = {}

    def get(name):
        if name not in cache:
            cache[name] = hep_models.export(name, directory)
        return cache[name]

    return get


def pytest_collection_modifyitems(config, items):
    """``ML4EP_TEST_SAMPLE=k`` (make test's reruns of the kernel tests for other ISA levels): of the operator-family
    tests (tests/infer/test_ops_*.py) keep every k-th in collection order, the first of each file included, so every
    family is still built and checked for that ISA at a k-th of the cost; every other test runs whole."""
    k = int(os.environ.get("ML4EP_TEST_SAMPLE", "1") or 1)
    if k <= 1:
        return
    kept, deselected, seen = [], [], {}
    for item in items:
        path = Path(str(item.fspath))
        if path.name.startswith("test_ops_"):
            n = seen.get(path.name, 0)
            seen[path.name] = n + 1
            if n % k:
                deselected.append(item)
                continue
        kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
