"""Test session set-up: a fresh compile cache per session, so every test compiles what it checks."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

_cache = tempfile.mkdtemp(prefix="ml4ep-test-cache-")
os.environ.setdefault("ML4EP_CACHE_DIR", _cache)
sys.path.insert(0, str(Path(__file__).parent / "infer"))
