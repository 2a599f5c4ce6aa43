"""The saved C++ of a fixed sample of ONNX node tests, built into standalone programs with
``-fsanitize=undefined,float-cast-overflow,address -fno-sanitize-recover=all`` and run outside the Python process
(ASan does not mix with a process that also loads onnxruntime or torch): any undefined behaviour (a float cast
out of range, a shift by the bit width, signed overflow, an out-of-bounds read) stops the program with the case's
name, on whatever CPU the suite runs (it builds for ``$ML4EP_MARCH`` like the rest). The outputs are compared with the cases' expected data as in
test_conformance.py. ``float-cast-overflow`` is not part of GCC's ``undefined``: it is what finds the float to
integer casts whose results differ from CPU to CPU.

The sample: test_conformance.SAMPLE (every 8th passing case: more than 200, across the operator families) and the casts to
the 4- and 2-bit integers and the bit shifts; cases whose outputs depend on the data's values in size (their
example programs write the bound) or that need shape values at run time are left to test_conformance.py."""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import ml4ep.infer as mi
from ml4ep.infer import build
from ml4ep.infer.runtime import CompiledModel

from test_conformance import EXPECTED, SAMPLE, _arrays, _compare, _defined_only, _graph_inputs, node_cases

# ML4EP_SANITIZE_RECOVER=1: report every error of a run instead of stopping at the first (to find them all)
RECOVER = os.environ.get("ML4EP_SANITIZE_RECOVER") == "1"
SANITIZE = ["-fsanitize=undefined,float-cast-overflow,address",
            "-fsanitize-recover=all" if RECOVER else "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
MUST = re.compile(r"test_(cast|castlike)_(FLOAT|FLOAT16)_to_(U?INT[24]|BFLOAT16|FLOAT8E4M3FN)$|test_bitshift_")
PROGRAMS = 4  # translation units, built in parallel


def sample() -> list[str]:
    return sorted(set(SAMPLE) | {n for n in EXPECTED["pass"] if MUST.search(n)})


def _cid(name: str) -> str:
    return re.sub(r"\W", "_", name)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The sample compiled, saved, its inputs written, and its example programs built into sanitized programs."""
    tmp = tmp_path_factory.mktemp("sanitized")
    cases = node_cases()
    names = [n for n in sample() if n in cases]
    compiled = mi.compile_many([cases[n].model for n in names], names=[_cid(n) for n in names])
    runs = []  # (case name, folder, data set index, expected outputs, output dtypes and shapes)
    for n, m in zip(names, compiled):
        if not isinstance(m, CompiledModel) or m.symbols or m.meta.get("derived", {}).get("__runtime__"):
            continue
        case = cases[n]
        folder = tmp / _cid(n)
        m.save(folder)
        for k, (ins, outs) in enumerate(case.data_sets):
            ins, outs = _arrays(ins), _arrays(outs)
            feeds = dict(zip(_graph_inputs(case.model), ins))
            with open(folder / f"in{k}.raw", "wb") as f:
                for name, (dt, _shape) in zip(m.input_names, m._in):
                    f.write(np.ascontiguousarray(np.asarray(feeds[name]).astype(dt)).tobytes())
            runs.append((n, folder, k, _defined_only(n, ins, outs), [(dt, tuple(s)) for dt, s in m._out], case))
    assert len({r[0] for r in runs}) >= 200, f"only {len({r[0] for r in runs})} cases in the sample"
    # one program per group of models: each example.cpp's main renamed, a dispatcher main calls them in turn
    folders = sorted({r[1] for r in runs})
    groups = [folders[i::PROGRAMS] for i in range(PROGRAMS)]
    srcs = []
    for g, group in enumerate(groups):
        parts = ["#include <cstdio>\n#include <cstring>\n"]
        for i, folder in enumerate(group):
            parts.append(f'#define main case_main_{i}\n#include "{folder / "example.cpp"}"\n#undef main\n')
        table = ", ".join(f'{{"{folder.name}", case_main_{i}}}' for i, folder in enumerate(group))
        parts.append(f"""
struct Case {{ const char* name; int (*run)(int, char**); }};
static const Case cases[] = {{{table}}};
int main(int argc, char** argv) {{  // prog <folder> <weights> <inputs.raw>, ...: each run in turn
  for (int a = 1; a + 2 < argc; a += 3) {{
    const Case* c = nullptr;
    for (const Case& k : cases) if (!std::strcmp(k.name, argv[a])) c = &k;
    if (!c) {{ std::fprintf(stderr, "unknown case %s\\n", argv[a]); return 2; }}
    std::fprintf(stderr, "case %s\\n", argv[a]);
    char* args[] = {{argv[0], argv[a + 1], argv[a + 2], nullptr}};
    if (c->run(3, args) != 0) {{ std::fprintf(stderr, "case %s failed\\n", argv[a]); return 3; }}
  }}
  return 0;
}}
""")
        src = tmp / f"prog{g}.cpp"
        src.write_text("".join(parts))
        srcs.append(src)

    def compile_one(src):
        cmd = [build.compiler(), "-std=c++17", "-O1", "-g1", *build.target().flags, "-DML4EP_NO_BLAS",
               "-Wall", "-Wextra", *SANITIZE, str(src), "-o", str(src.with_suffix(""))]
        return subprocess.run(cmd, capture_output=True, text=True)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(compile_one, srcs))
    for src, res in zip(srcs, results):
        assert res.returncode == 0, f"{src}: {res.stderr[-3000:]}"
    return tmp, groups, runs


def test_sanitized_programs_run_clean_and_agree(built):
    tmp, groups, runs = built
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    for g, group in enumerate(groups):
        args = []
        members = set(group)
        for _n, folder, k, *_ in runs:
            if folder in members:
                args += [folder.name, str(folder / f"{folder.name}.bin"), str(folder / f"in{k}.raw")]
        res = subprocess.run([str(tmp / f"prog{g}"), *args], capture_output=True, text=True, env=env, timeout=600)
        if "runtime error" in res.stderr or "AddressSanitizer" in res.stderr or res.returncode != 0:
            last = [ln for ln in res.stderr.splitlines() if ln.startswith("case ")][-1:]
            pytest.fail(f"sanitized program {g} stopped in {last}:\n{res.stderr[-4000:]}")
    errors = []
    for n, folder, k, outs, specs, case in runs:
        data = (folder / f"in{k}.raw.out").read_bytes()
        off = 0
        for (dt, shape), want in zip(specs, outs):
            size = int(np.prod(shape)) * np.dtype(dt).itemsize
            got = np.frombuffer(data[off:off + size], dtype=np.uint8 if dt == np.bool_ else dt).reshape(shape)
            off += size
            e = _compare(n, got.astype(bool) if dt == np.bool_ else got, want, case.rtol, case.atol)
            if e:
                errors.append(e)
    assert not errors, "\n".join(errors)
