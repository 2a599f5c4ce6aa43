"""Compiling generated code: the compiler call, the BLAS from pip, and the cache.

BLAS: the generated code calls the standard CBLAS ``cblas_sgemm`` for large products. Inside the Python
package it is linked against the OpenBLAS of the ``scipy-openblas32`` wheel (a dependency of ml4ep, the
same build SciPy ships; its symbols carry a ``scipy_`` prefix, hence ``-DML4EP_CBLAS_SGEMM=scipy_cblas_sgemm``).
Code saved for experiments links against any CBLAS (OpenBLAS, MKL, BLIS) or none (``-DML4EP_NO_BLAS``).

Cache: ``$ML4EP_CACHE_DIR`` or the user cache directory, one folder per key = hash of the model bytes, the
ml4ep code generator's own sources, the flags and the compiler's version.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import CompilerError

log = logging.getLogger(__name__)

NATIVE_FLAGS = ["-std=c++17", "-O3", "-march=native", "-fno-math-errno"]
# for code to ship to other machines: x86-64-v2 runs on every x86-64 machine of the last decade
PORTABLE_FLAGS = ["-std=c++17", "-O3", "-fno-math-errno"]
WARNING_FLAGS = ["-Wall", "-Wextra"]


def compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise CompilerError("no C++ compiler found: install g++ (or set CXX to a C++17 compiler)")
    return cxx


@functools.lru_cache(maxsize=None)
def compiler_version(cxx: str) -> str:
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompilerError(f"the C++ compiler '{cxx}' cannot be run: {exc}") from exc
    if out.returncode != 0:
        raise CompilerError(f"the C++ compiler '{cxx}' failed to report its version: {out.stderr.strip()}")
    return out.stdout.splitlines()[0] if out.stdout else cxx


def flags(portable: bool = False, extra: list[str] | None = None) -> list[str]:
    base = list(PORTABLE_FLAGS if portable else NATIVE_FLAGS)
    if portable:
        import platform

        if platform.machine() in ("x86_64", "AMD64"):
            base.append("-march=x86-64-v2")
    return base + WARNING_FLAGS + list(extra or [])


@functools.lru_cache(maxsize=1)
def blas() -> dict:
    """Compiler and linker arguments for the pip OpenBLAS."""
    try:
        import scipy_openblas32 as sob
    except ImportError as exc:  # a hard dependency: only a broken install gets here
        raise CompilerError("the BLAS package scipy-openblas32 is missing: pip install scipy-openblas32") from exc
    libdir = sob.get_lib_dir()
    return {
        "defines": ["-DML4EP_CBLAS_SGEMM=scipy_cblas_sgemm"],
        "link": [f"-L{libdir}", f"-l{sob.get_library()}", f"-Wl,-rpath,{libdir}"],
        "libdir": libdir,
        "library": sob.get_library(),
    }


@functools.lru_cache(maxsize=1)
def generator_hash() -> str:
    """Hash of the code generator's sources: a change to ml4ep invalidates cached builds."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.suffix in (".py", ".hpp") and "__pycache__" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def cache_dir() -> Path:
    env = os.environ.get("ML4EP_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("ml4ep")) / "infer"


def compile_shared(src: Path, out: Path, cxxflags: list[str], use_blas: bool = True) -> None:
    """Compile ``src`` (the Python bridge, a CPython extension module) into the shared library ``out``."""
    import sysconfig

    cxx = compiler()
    py_include = sysconfig.get_paths()["include"]
    # hidden visibility and no GNU-unique symbols: two loaded models (even of the same name) never share
    # a symbol, whatever RTLD flags the loader uses; only PyInit_<module> is exported
    cmd = [cxx, *cxxflags, "-fPIC", "-shared", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
           "-fno-gnu-unique", f"-I{py_include}", str(src), "-o", str(out)]
    if use_blas:
        b = blas()
        cmd[1:1] = b["defines"]
        cmd += b["link"]
    else:
        cmd.insert(1, "-DML4EP_NO_BLAS")
    run_compiler(cmd, src)


def run_compiler(cmd: list[str], src: Path) -> None:
    log.debug("compiling: %s", " ".join(cmd))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as exc:
        raise CompilerError(f"the C++ compiler '{cmd[0]}' was not found (generated code: {src})") from exc
    except subprocess.TimeoutExpired as exc:
        raise CompilerError(f"the C++ compiler timed out on {src}") from exc
    if res.returncode != 0:
        tail = "\n".join(res.stderr.strip().splitlines()[-30:])
        raise CompilerError(f"compiling {src} failed (exit {res.returncode}):\n{' '.join(cmd)}\n{tail}")
