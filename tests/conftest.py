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
