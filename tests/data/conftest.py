"""Fixtures: one small file per format (and per ROOT compression) holding the same values."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from datafiles import make_columns, write_hdf5, write_parquet, write_root  # noqa: E402


@pytest.fixture(scope="session")
def cols():
    return make_columns()


@pytest.fixture(scope="session")
def files(tmp_path_factory, cols):
    """One file per format (and per ROOT compression) holding the same ``cols``."""
    import uproot

    d = tmp_path_factory.mktemp("data")
    out = {
        "root": write_root(d / "zlib.root", cols, uproot.ZLIB(1)),
        "root-lz4": write_root(d / "lz4.root", cols, uproot.LZ4(1)),
        "root-zstd": write_root(d / "zstd.root", cols, uproot.ZSTD(1)),
        "root-lzma": write_root(d / "lzma.root", cols, uproot.LZMA(1)),
        "root-none": write_root(d / "none.root", cols, None),
        "rntuple": write_root(d / "rntuple.root", cols, uproot.ZLIB(1), rntuple=True),
        "hdf5": write_hdf5(d / "data.h5", cols),
        "parquet": write_parquet(d / "data.parquet", cols),
    }
    return {k: str(v) for k, v in out.items()}
