"""Compiling generated code: the compiler call, the target ISA, the BLAS from pip, and the build cache.

One module for every native build of ml4ep: the models of ``ml4ep.infer`` (:mod:`ml4ep.infer.pipeline`), the forests
of ``ml4ep.bdt`` (:mod:`ml4ep.bdt.compiled`), and the timing programs of ``ml4ep bench`` (:func:`compile_program`).
The fast-simulation hook only writes C++ (built by the user's CMake), with the flags and target described here.

Compiler: ``$CXX``, else ``g++``, else ``c++`` (:func:`compiler`). Extension modules are compiled by
:func:`compile_shared`, standalone programs by :func:`compile_program`; both go through :func:`run_compiler`, which
turns every failure into a :class:`~ml4ep.errors.CompilerError` holding the command and the end of its diagnostics.

BLAS: the generated code calls the standard CBLAS ``cblas_sgemm`` for large products. Inside the Python
package it is linked against the OpenBLAS of the ``scipy-openblas32`` wheel (a dependency of ml4ep, the
same build SciPy ships; its symbols carry a ``scipy_`` prefix, hence ``-DML4EP_CBLAS_SGEMM=scipy_cblas_sgemm``).
Code saved for experiments links against any CBLAS (OpenBLAS, MKL, BLIS) or none (``-DML4EP_NO_BLAS``).

Target ISA: ``$ML4EP_MARCH`` (default ``native``; ``x86-64-v2``, ``x86-64-v3``, ``x86-64-v4``, ``znver4``,
``sapphirerapids``, any ``-march`` the compiler knows) is the target of every generated build (ml4ep.infer,
ml4ep.bdt, the fast-sim hook); a ``march=`` argument overrides it. Any target can be built and saved (code for grid
nodes is built on a laptop); a library is loaded only on a CPU that has every ISA extension its target implies
(:func:`check_cpu`: a clear error naming the missing ones instead of SIGILL). ``native`` is resolved to this CPU's
extensions, so a cache shared by machines of different CPUs never serves one the other's native build.

Cache: ``$ML4EP_CACHE_DIR`` or the user cache directory, one folder per kind of build (:func:`cache_dir`:
``infer``, ``bdt``) and in it one folder per key (:func:`cache_key`) = hash of the model bytes, the code
generator's own sources (:func:`generator_hash`), the flags, the target's extensions, the compiler's version, the
Python version and the BLAS. Builds are made in a private folder (:func:`new_build`), sealed with a manifest of
their files' hashes (:func:`seal`), renamed into place (:func:`install`) and checked again before every use
(:func:`verify`, :func:`cached`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import CompilerError, UnsupportedCPUError

log = logging.getLogger(__name__)

BASE_FLAGS = ["-std=c++17", "-O3", "-fno-math-errno"]
WARNING_FLAGS = ["-Wall", "-Wextra"]
# `portable=True` (before ML4EP_MARCH existed): x86-64-v2 runs on every x86-64 machine of the last decade
PORTABLE_MARCH = "x86-64-v2"
_MARCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


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


def _x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


@functools.lru_cache(maxsize=None)
def _isa_macros(cxx: str, march: str) -> frozenset[str]:
    """The ISA macros (``AVX2``, ``AVX512VBMI``, ...) the compiler defines for ``-march=march``: those beyond
    baseline x86-64 (empty elsewhere than on x86-64, where no check is made)."""
    def macros(m: str) -> set[str]:
        try:
            res = subprocess.run([cxx, f"-march={m}", "-dM", "-E", "-x", "c++", os.devnull],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CompilerError(f"the C++ compiler '{cxx}' cannot be run: {exc}") from exc
        if res.returncode != 0:
            why = (res.stderr.strip().splitlines() or ["?"])[0]
            raise CompilerError(f"the compiler '{cxx}' does not accept -march={m} (from ML4EP_MARCH or march=): {why}")
        return set(re.findall(r"^#define __([A-Z0-9_]+)__ 1$", res.stdout, flags=re.M))

    if not _x86():
        return frozenset()
    return frozenset(macros(march) - macros("x86-64"))


@dataclass(frozen=True)
class Target:
    """The ISA generated code is built for: ``march`` ("native", "x86-64-v3", ...; "" is the compiler's default)
    and the extensions beyond baseline x86-64 it implies (``native``: this CPU's)."""

    march: str
    features: tuple[str, ...]

    @property
    def flags(self) -> list[str]:
        return [f"-march={self.march}"] if self.march else []

    def cxxflags(self, extra: list[str] | None = None) -> list[str]:
        """The compiler flags of a generated build for this target."""
        return BASE_FLAGS + self.flags + WARNING_FLAGS + list(extra or [])

    @property
    def key(self) -> str:
        """Cache-key part: the name and the extensions (``native`` differs from CPU to CPU)."""
        return f"{self.march}[{','.join(self.features)}]"


def target(march: str | None = None, portable: bool = False) -> Target:
    """The build target: ``march`` if given, else x86-64-v2 for ``portable``, else ``$ML4EP_MARCH``, else native."""
    if march is None and portable:
        march = PORTABLE_MARCH if _x86() else ""
    m = march if march is not None else (os.environ.get("ML4EP_MARCH") or "native")
    m = m.strip()
    if m and not _MARCH_NAME.fullmatch(m):
        raise CompilerError(f"'{m}' is not a CPU name for -march (ML4EP_MARCH or march=); e.g. native, x86-64-v3")
    return Target(m, tuple(sorted(_isa_macros(compiler(), m))) if m else ())


def native_features() -> frozenset[str]:
    return _isa_macros(compiler(), "native")


def check_cpu(features, what: str) -> None:
    """Refuse to load code that needs ISA extensions this CPU lacks (it would die of SIGILL)."""
    if not features or not _x86():
        return
    missing = sorted(set(features) - native_features())
    if missing:
        names = ", ".join(f.lower() for f in missing)
        raise UnsupportedCPUError(
            f"{what} was built for a CPU with {names}, which this CPU lacks; rebuild it for this machine "
            f"(ML4EP_MARCH=native, or a common level such as x86-64-v3 or x86-64-v2)")


def flags(portable: bool = False, extra: list[str] | None = None, march: str | None = None) -> list[str]:
    """Compiler flags of a generated build for the target of :func:`target`."""
    return target(march, portable).cxxflags(extra)


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


# the packages whose sources shape every build: ml4ep.infer's code generator and this build layer (flags, names)
GENERATOR_PACKAGES = ("infer", "_native")


@functools.lru_cache(maxsize=1)
def generator_hash() -> str:
    """Hash of the code generator's sources (:data:`GENERATOR_PACKAGES`): a change to ml4ep invalidates cached
    builds."""
    root = Path(__file__).parent.parent  # the ml4ep package
    h = hashlib.sha256()
    for pkg in GENERATOR_PACKAGES:
        for p in sorted((root / pkg).rglob("*")):
            if p.suffix in (".py", ".hpp", ".cpp") and "__pycache__" not in p.parts:
                h.update(p.relative_to(root).as_posix().encode())
                h.update(p.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# the cache: what is in it was built by this user, is writable by nobody else, and is what was built
# ---------------------------------------------------------------------------------------------------------------
MANIFEST = "manifest.json"
_private_root: Path | None = None


def _configured_root() -> Path:
    env = os.environ.get("ML4EP_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("ml4ep"))


def untrusted(path: Path) -> str | None:
    """Why ``path`` (a cache folder or file, not followed if a link) cannot be trusted, or None: it must belong to
    this user and be writable by nobody else; a link must point inside ``path``'s folder."""
    try:
        st = path.lstat()
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"belongs to another user (uid {st.st_uid})"
    if stat.S_ISLNK(st.st_mode):
        return None  # the link itself cannot be written by others (its folder is checked); its target is checked
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by {'others' if st.st_mode & stat.S_IWOTH else 'its group'} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _make_private(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_uid == getattr(os, "getuid", lambda: -1)():
        os.chmod(folder, 0o700)


def cache_root() -> Path:
    """The cache folder: ``$ML4EP_CACHE_DIR`` or the user cache directory, created 0700. One that belongs to another
    user or is writable by others (a shared group area, a shared /tmp) is not used: a warning, then a private
    folder of this process."""
    global _private_root
    root = _configured_root()
    try:
        if not root.exists():
            _make_private(root)
        why = untrusted(root)
    except OSError as exc:
        why = f"cannot be created ({exc.strerror})"
    if why is None:
        return root
    if _private_root is None or not _private_root.is_dir():
        _private_root = Path(tempfile.mkdtemp(prefix="ml4ep-private-cache-"))
        log.warning("the ml4ep cache %s %s: not trusted; building in the private folder %s instead (point "
                    "ML4EP_CACHE_DIR at a folder of your own)", root, why, _private_root)
    return _private_root


def cache_dir(kind: str = "infer") -> Path:
    """The cache folder of one kind of build (``infer``, ``bdt``), created 0700."""
    root = cache_root()
    folder = root / kind
    if not folder.is_dir():
        _make_private(folder)
    why = None if root == _private_root else untrusted(folder)  # the private folder: made by mkdtemp just now
    if why is not None:
        raise CompilerError(f"the cache folder {folder} {why}: remove it (ml4ep recreates it)")
    return folder


def cache_key(*parts: str | bytes) -> str:
    """Hash of ``parts`` and of everything else a build depends on: the code generator, the compiler's version, the
    Python version (the bridge is a CPython extension module) and the BLAS linked in."""
    b = blas()
    h = hashlib.sha256()
    for part in (*parts, generator_hash(), compiler_version(compiler()), sys.version, str(sys.implementation.cache_tag),
                 b["libdir"], b["library"]):
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file's bytes, read in blocks of 1 MiB."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def new_build(kind: str, name: str) -> Path:
    """A fresh private folder (0700) beside the cached builds of ``kind``, to build into."""
    return Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir(kind)))


def seal(folder: Path) -> None:
    """Make a finished build read-only to others and record every file's content hash (the manifest)."""
    files = {}
    for p in sorted(folder.iterdir()):
        if p.name == MANIFEST or p.is_dir():
            continue
        if not p.is_symlink():
            os.chmod(p, stat.S_IMODE(p.stat().st_mode) & ~0o022)
        files[p.name] = file_sha256(p)
    (folder / MANIFEST).write_text(json.dumps(files, indent=1, sort_keys=True))
    os.chmod(folder / MANIFEST, 0o600)


def install(tmp: Path, target: Path) -> Path:
    """Move the sealed build ``tmp`` to ``target`` atomically (the build of another process that got there first,
    if it is sound, is used instead)."""
    try:
        os.rename(tmp, target)
    except OSError:
        if verify(target) is None:
            shutil.rmtree(tmp, ignore_errors=True)
            return target
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:  # lost another race: that build is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def verify(folder: Path) -> str | None:
    """Why the cached build ``folder`` must not be used (absent, not trusted, changed since it was built), or None."""
    if not folder.is_dir():
        return "absent"
    why = untrusted(folder)
    if why:
        return f"the folder {why}"
    try:
        files = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return "no manifest of its files (an unfinished or foreign build)"
    present = {p.name for p in folder.iterdir() if p.name != MANIFEST and not p.is_dir()}
    if not isinstance(files, dict) or set(files) != present:
        return "its files are not those its manifest lists"
    for name, digest in files.items():
        p = folder / name
        why = untrusted(p)
        if p.is_symlink():  # a library shared by a joint build: its own folder must be ours too
            real = p.resolve()
            why = why or untrusted(real) or untrusted(real.parent)
        if why:
            return f"{name} {why}"
        try:
            if file_sha256(p) != digest:
                return f"{name} has changed since it was built"
        except OSError as exc:
            return f"{name} cannot be read ({exc.strerror})"
    return None


def cached(folder: Path) -> bool:
    """Whether the build in ``folder`` can be used; a present but unsound one is reported and removed."""
    why = verify(folder)
    if why is None:
        return True
    if why != "absent":
        log.warning("cached build %s not used: %s; rebuilding it", folder, why)
        if untrusted(folder) is None:
            shutil.rmtree(folder, ignore_errors=True)
    return False


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


# ---------------------------------------------------------------------------------------------------------------
# CUDA: nvcc for device="cuda", the host compiler for the same source as device="cuda-host"
# ---------------------------------------------------------------------------------------------------------------
DEFAULT_CUDA_ARCHS = ("80", "90")
CUDA_FLAGS = ["-std=c++17", "-O3", "--expt-relaxed-constexpr", "--extended-lambda", "-Xptxas", "-warn-spills"]


def nvcc_extra_flags() -> list[str]:
    """Flags added to every nvcc call: ``$ML4EP_NVCC_FLAGS`` split at spaces (e.g. "-Werror all-warnings")."""
    return os.environ.get("ML4EP_NVCC_FLAGS", "").split()


def nvcc() -> str:
    """The CUDA compiler: ``$ML4EP_NVCC``, else ``nvcc`` on the PATH, else ``$CUDA_HOME/bin/nvcc``, else
    /usr/local/cuda/bin/nvcc; a :class:`CompilerError` naming them when there is none."""
    env = os.environ.get("ML4EP_NVCC")
    if env:
        return env
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    raise CompilerError("device='cuda' needs the CUDA compiler nvcc, which was not found (not on the PATH, nor in "
                        "$CUDA_HOME/bin or /usr/local/cuda/bin): install the CUDA toolkit or set ML4EP_NVCC to its path")


@functools.lru_cache(maxsize=8)
def nvcc_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompilerError(f"the CUDA compiler '{exe}' cannot be run: {exc}") from exc
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    if out.returncode != 0 or not lines:
        raise CompilerError(f"the CUDA compiler '{exe}' failed to report its version: {out.stderr.strip()}")
    return lines[-1]


def cuda_archs(archs=None) -> tuple[str, ...]:
    """The GPU architectures of a CUDA build (the ``ML4EP_MARCH`` of GPUs): ``archs`` (e.g. ``["80", "90"]`` or
    "80,90"), else ``$ML4EP_CUDA_ARCHS``, else sm_80 and sm_90 (A100, H100/H200)."""
    if archs is None:
        archs = os.environ.get("ML4EP_CUDA_ARCHS") or ",".join(DEFAULT_CUDA_ARCHS)
    if isinstance(archs, str):
        archs = [a for a in re.split(r"[,;\s]+", archs) if a]
    out = []
    for a in archs:
        a = str(a).strip().lower().removeprefix("sm_").removeprefix("compute_")
        if not re.fullmatch(r"[0-9]{2,3}[af]?", a):
            raise CompilerError(f"'{a}' is not a GPU architecture (ML4EP_CUDA_ARCHS or cuda_archs=): e.g. 80, 90, 100")
        out.append(a)
    if not out:
        raise CompilerError("no GPU architecture given (ML4EP_CUDA_ARCHS or cuda_archs=)")
    return tuple(dict.fromkeys(out))


def gencode_flags(archs: tuple[str, ...]) -> list[str]:
    """``-gencode`` per architecture (a repeated ``-arch`` builds only the last one); the newest also as PTX, which
    the driver compiles for later GPUs."""
    flags = []
    for k, a in enumerate(archs):
        code = f"[sm_{a},compute_{a}]" if k == len(archs) - 1 else f"sm_{a}"
        flags += ["-gencode", f"arch=compute_{a},code={code}"]
    return flags


def compile_cuda_shared(src: Path, out: Path, flags: list[str], host: bool) -> None:
    """Compile the bridge of a CUDA model (plain ``extern "C"`` functions, loaded with ctypes) into ``out``: with
    nvcc for the GPU, or with the host compiler as C++ (``host``: device="cuda-host")."""
    hidden = ["-fPIC", "-fvisibility=hidden", "-fvisibility-inlines-hidden", "-fno-gnu-unique"]
    if host:
        cmd = [compiler(), *flags, "-DML4EP_NO_BLAS", *hidden, "-shared", "-x", "c++", str(src), "-o", str(out)]
    else:
        cmd = [nvcc(), *flags, "-DML4EP_NO_BLAS", "-shared", "-Xcompiler", ",".join(hidden), str(src), "-o",
               str(out), "-ldl"]
    run_compiler(cmd, src)


def program_command(src: Path, exe: Path, flags: list[str], include=(), extra=(), libs=(), *,
                    cxx: str | None = None) -> list[str]:
    """The command of :func:`compile_program`: ``cxx flags -I<include>... extra... src -o exe libs...`` (``cxx``:
    :func:`compiler` unless given; ``extra``: flags after the include folders, such as defines; ``libs``: linker
    arguments)."""
    return [cxx or compiler(), *flags, *[f"-I{d}" for d in include], *extra, str(src), "-o", str(exe), *libs]


def compile_program(src: Path, exe: Path, flags: list[str], include=(), extra=(), libs=(), *,
                    cxx: str | None = None, cwd: Path | None = None, timeout: float = 600) -> float:
    """Compile and link the standalone program ``src`` into ``exe`` with :func:`program_command` (in ``cwd`` if
    given). Returns the compiler's wall time; a :class:`CompilerError` when it fails or takes over ``timeout``
    seconds."""
    cmd = program_command(src, exe, flags, include, extra, libs, cxx=cxx)
    t0 = time.perf_counter()
    run_compiler(cmd, src, cwd=cwd, timeout=timeout)
    return time.perf_counter() - t0


def run_compiler(cmd: list[str], src: Path, *, cwd: Path | None = None, timeout: float = 600) -> None:
    """Run the compiler command ``cmd`` (``src``: what it compiles, for the messages), in ``cwd`` if given; a
    :class:`CompilerError` holding the command and the last 30 lines of its diagnostics when it fails."""
    log.debug("compiling: %s", " ".join(cmd))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except FileNotFoundError as exc:
        raise CompilerError(f"the C++ compiler '{cmd[0]}' was not found (generated code: {src})") from exc
    except subprocess.TimeoutExpired as exc:
        raise CompilerError(f"the C++ compiler timed out on {src}") from exc
    if res.returncode != 0:
        tail = "\n".join(res.stderr.strip().splitlines()[-30:])
        raise CompilerError(f"compiling {src} failed (exit {res.returncode}):\n{' '.join(cmd)}\n{tail}")
