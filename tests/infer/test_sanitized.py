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
import onnx
import pytest

import ml4ep.infer as mi
from ml4ep._native import build
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


def _build_program(folders: list, exe) -> str:
    """One sanitized program running the saved models of ``folders`` (each example.cpp's main renamed; a
    dispatcher main runs ``prog <folder name> <weights> <inputs.raw> <batch> ...`` in turn); the compiler's errors
    or ""."""
    parts = ["#include <cstdio>\n#include <cstring>\n"]
    for i, folder in enumerate(folders):
        parts.append(f'#define main case_main_{i}\n#include "{folder / "example.cpp"}"\n#undef main\n')
    table = ", ".join(f'{{"{folder.name}", case_main_{i}}}' for i, folder in enumerate(folders))
    parts.append(f"""
struct Case {{ const char* name; int (*run)(int, char**); }};
static const Case cases[] = {{{table}}};
int main(int argc, char** argv) {{
  for (int a = 1; a + 3 < argc; a += 4) {{
    const Case* c = nullptr;
    for (const Case& k : cases) if (!std::strcmp(k.name, argv[a])) c = &k;
    if (!c) {{ std::fprintf(stderr, "unknown case %s\\n", argv[a]); return 2; }}
    std::fprintf(stderr, "case %s\\n", argv[a]);
    char* args[] = {{argv[0], argv[a + 1], argv[a + 2], argv[a + 3], nullptr}};
    if (c->run(4, args) != 0) {{ std::fprintf(stderr, "case %s failed\\n", argv[a]); return 3; }}
  }}
  return 0;
}}
""")
    src = exe.with_suffix(".cpp")
    src.write_text("".join(parts))
    cmd = [build.compiler(), "-std=c++17", "-O1", "-g1", *build.target().flags, "-DML4EP_NO_BLAS", "-Wall", "-Wextra",
           *SANITIZE, str(src), "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    return "" if res.returncode == 0 else f"{src}: {res.stderr[-3000:]}"


def _run_program(exe, args: list[str]) -> None:
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    res = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=600)
    if "runtime error" in res.stderr or "AddressSanitizer" in res.stderr or res.returncode != 0:
        last = [ln for ln in res.stderr.splitlines() if ln.startswith("case ")][-1:]
        pytest.fail(f"sanitized program {exe.name} stopped in {last}:\n{res.stderr[-4000:]}")


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
    # one program per group of models, built in parallel
    folders = sorted({r[1] for r in runs})
    groups = [folders[i::PROGRAMS] for i in range(PROGRAMS)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        errors = list(pool.map(lambda g: _build_program(groups[g], tmp / f"prog{g}"), range(PROGRAMS)))
    assert not any(errors), "\n".join(e for e in errors if e)
    return tmp, groups, runs


def test_sanitized_programs_run_clean_and_agree(built):
    tmp, groups, runs = built
    for g, group in enumerate(groups):
        members = set(group)
        args = []
        for _n, folder, k, *_ in runs:
            if folder in members:
                args += [folder.name, str(folder / f"{folder.name}.bin"), str(folder / f"in{k}.raw"), "1"]
        _run_program(tmp / f"prog{g}", args)
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


def _nan_coordinates():
    """GridSample (zeros, border, reflection padding), RoiAlign and float OneHot indices fed NaN, +-inf and huge
    coordinates: indices made of them must not be undefined casts (nor read outside the image: RoiAlign's NaN
    boxes did)."""
    from onnx import TensorProto as T
    from onnx import helper

    nodes = [helper.make_node("GridSample", ["img", "grid"], [f"gs_{pad}_{mode}"], padding_mode=pad, mode=mode,
                              align_corners=0) for pad in ("zeros", "border", "reflection") for mode in ("nearest", "linear")]
    nodes += [helper.make_node("RoiAlign", ["img", "rois", "bi"], ["roi"], output_height=2, output_width=2,
                               sampling_ratio=2),
              helper.make_node("OneHot", ["idx", "depth", "vals"], ["oh"])]
    outs = [helper.make_tensor_value_info(n.output[0], T.FLOAT, None) for n in nodes]
    ins = [helper.make_tensor_value_info("img", T.FLOAT, [1, 2, 4, 5]), helper.make_tensor_value_info("grid", T.FLOAT, [1, 3, 3, 2]),
           helper.make_tensor_value_info("rois", T.FLOAT, [4, 4]), helper.make_tensor_value_info("idx", T.FLOAT, [6])]
    arr = onnx.numpy_helper.from_array
    inits = [arr(np.zeros(4, np.int64), "bi"), arr(np.array(5, np.int64), "depth"),
             arr(np.array([0.0, 1.0], np.float32), "vals")]
    model = helper.make_model(helper.make_graph(nodes, "nan_coords", ins, outs, initializer=inits),
                              opset_imports=[helper.make_opsetid("", 20)])
    bad = [np.nan, np.inf, -np.inf, 1e30, -1e30, 0.25, -0.5, 0.9, 3e9]
    feeds = {"img": np.arange(40, dtype=np.float32).reshape(1, 2, 4, 5),
             "grid": np.array(bad * 2, np.float32).reshape(1, 3, 3, 2),
             "rois": np.array([[np.nan, 0, 2, 2], [0, np.nan, np.inf, 3], [-1e30, -1e30, 1e30, 1e30], [0.5, 0.5, 3, 3]],
                              np.float32),
             "idx": np.array([np.nan, np.inf, -np.inf, 2.7, -1.5, 1e30], np.float32)}
    return model, feeds, "1"


def test_sanitized_edge_values(tmp_path):
    """The models of test_march (float casts out of range and NaN to int8/uint32/int4, doubles to bfloat16, int32
    products that overflow, shifts by the bit width and more), test_int_arith (integer overflow, division and
    remainder by zero, lowest / -1, Neg and Abs of the lowest value, integer reductions) and NaN, inf and huge
    coordinates in GridSample, RoiAlign and OneHot (``_nan_coordinates``) saved and built sanitized:
    no undefined behaviour, and the same bytes as the models run from Python (whose values those tests check
    against formulas)."""
    from test_int_arith import TYPES, _model, _pairs
    from test_march import _feeds, _mixed_model

    feeds = _feeds()
    cases = [("sanitized_mixed", _mixed_model(), feeds, str(len(feeds["x"])))]
    for dt in TYPES:
        a, b = _pairs(dt)
        cases.append((f"sanitized_{np.dtype(dt).name}", _model(dt, len(a), False), {"a": a, "b": b}, "1"))
    cases.append(("sanitized_nan_coords", *_nan_coordinates()))
    models = mi.compile_many([c[1] for c in cases], names=[c[0] for c in cases])
    folders, args, wants, sizes = [], [], [], {}
    for (name, _, feed, batch), m in zip(cases, models):
        assert isinstance(m, CompiledModel), m
        out = m.save(tmp_path / name)
        with open(out / "in.raw", "wb") as f:
            for i in m.input_names:
                f.write(np.ascontiguousarray(feed[i]).tobytes())
        folders.append(out)
        sizes[name] = [v.nbytes for v in m.run(feed).values()]
        # (GridSample's reflection of a coordinate beyond float precision, 3e9, is a matter of rounding: FMA
        # contraction differs between -O1 and -O3; only its freedom from undefined behaviour is checked)
        wants.append((out, [None if k.startswith("gs_reflection") else v for k, v in m.run(feed).items()]))
        args += [name, str(out / f"{name}.bin"), str(out / "in.raw"), batch]
    exe = tmp_path / "edges"
    err = _build_program(folders, exe)
    assert not err, err
    _run_program(exe, args)
    for out, want in wants:  # integers and conversions bit for bit; float32 results of another build within 1e-6
        data, off = (out / "in.raw.out").read_bytes(), 0
        for w, size in zip(want, sizes[out.name]):
            if w is None:
                off += size
                continue
            got = np.frombuffer(data[off:off + w.nbytes], dtype=w.dtype).reshape(w.shape)
            off += w.nbytes
            if w.dtype == np.float32:
                np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-7, err_msg=out.name)
            else:
                assert got.tobytes() == w.tobytes(), out.name
        assert off == len(data)


@pytest.mark.parametrize("march", ["native", "x86-64-v3", "x86-64-v2", "x86-64"])
def test_sanitized_bdt_kernels(tmp_path, march):
    """A saved ml4ep.bdt header (the ranked kernel of each ISA level: vpermb, AVX2 and SSSE3 byte shuffles, and the
    walk) in a sanitized program: bulk and single-row predictions with missing values, equal to XGBoost's."""
    xgb = pytest.importorskip("xgboost")
    import ml4ep.bdt as mb

    if not set(build.target(march).features) <= build.native_features():
        pytest.skip(f"this CPU does not run -march={march}")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((700, 12)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nansum(X[:, :4], axis=1) > 0).astype(int)
    booster = xgb.train({"max_depth": 6, "objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(X, y), 40)
    mb.from_xgboost(booster).save(tmp_path, name="forest")
    X.tofile(tmp_path / "x.bin")
    (tmp_path / "main.cpp").write_text("""
#include <cstdio>
#include <vector>
#include "forest.hpp"
int main(int, char** argv) {
  std::vector<float> x(700 * 12);
  FILE* f = std::fopen(argv[1], "rb");
  if (std::fread(x.data(), 4, x.size(), f) != x.size()) return 1;
  std::fclose(f);
  std::vector<double> y(700), one(700);
  forest::predict(x.data(), 700, y.data());
  for (int i = 0; i < 700; ++i) forest::predict(x.data() + i * 12, 1, one.data() + i);
  FILE* o = std::fopen(argv[2], "wb");
  std::fwrite(y.data(), 8, y.size(), o);
  std::fwrite(one.data(), 8, one.size(), o);
  std::fclose(o);
  return 0;
}
""")
    exe = tmp_path / "prog"
    res = subprocess.run([build.compiler(), "-std=c++17", "-O1", "-g1", f"-march={march}", "-Wall", "-Wextra",
                          *SANITIZE, str(tmp_path / "main.cpp"), "-o", str(exe)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    _run_program(exe, [str(tmp_path / "x.bin"), str(tmp_path / "y.bin")])
    got = np.fromfile(tmp_path / "y.bin").reshape(2, 700)
    want = booster.predict(xgb.DMatrix(X))
    np.testing.assert_allclose(got[0], want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got[1], got[0])
