"""Names from untrusted models never become code: the one sanitiser and escaper of ml4ep._native.names, checked by a
C++ compiler, and hostile names in every place a model can hold one, compiled with -Werror and run."""

from __future__ import annotations

import random
import re
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ml4ep.infer as mi
from ml4ep._native import build
from ml4ep._native.names import CPP_KEYWORDS, identifier, printf_text, string, text

# each would break the build (#error, a stray quote, a spliced line) or run code if copied into C++ as it is
HOSTILE = [
    "x\n#error INJECTED\n//",
    "x\r\n#error INJECTED\r\n//",
    "x */ #error INJECTED /*",
    'x"); static_assert(false, "INJECTED',
    "ends with a backslash \\",
    "x\n__attribute__((constructor)) static void p() { __builtin_trap(); }\n//",
    "trigraph ??/",
    "%n%s%d percent",
    "nul\x00byte",
    "tab\tand \x7f del",
    "caf\u00e9 \u2211 \U0001F600",
    "'single' \"double\" `back`",
]


def _cxx_run(source: str, tmp_path, name="t") -> bytes:
    src = tmp_path / f"{name}.cpp"
    src.write_text(source)
    exe = tmp_path / name
    subprocess.run([build.compiler(), "-std=c++17", "-Wall", "-Wextra", "-Werror", str(src), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return subprocess.run([str(exe)], check=True, capture_output=True).stdout


def test_string_literals_give_back_the_bytes(tmp_path):
    """The compiler is the oracle: each literal, printed by a C++ program, is the name's UTF-8 (a comment holding
    the same text beside it must not change the program)."""
    body = "".join(f'  // {text(s)}\n  /* {text(s)} */ std::fwrite({string(s)}, 1, sizeof({string(s)}) - 1, stdout);\n'
                   f'  std::printf("{printf_text(s)}|");\n' for s in HOSTILE)
    out = _cxx_run(f"#include <cstdio>\nint main() {{\n{body}  return 0;\n}}\n", tmp_path)
    assert out == b"".join(s.encode() + s.replace("\x00", "\\0").encode() + b"|" for s in HOSTILE)


def test_text_is_printable_ascii():
    rng = random.Random(3)
    for _ in range(2000):
        s = "".join(chr(rng.choice([rng.randrange(0, 128), rng.randrange(128, 0x3000)])) for _ in range(rng.randrange(12)))
        t = text(s)
        assert all(32 <= ord(c) < 127 for c in t), repr(t)
        assert "*/" not in t and '"' not in t and "??" not in t
        assert not re.search(r"\\(?![0-7]{3})", t), t  # every backslash starts an octal escape


def test_identifiers():
    rng = random.Random(4)
    seen: dict[str, str] = {}
    alphabet = "ab_.-/:1 \n\u00e9"
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
        for prefix in ("", "v_", "dim_"):
            i = identifier(s, prefix)
            assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", i), (s, i)
            assert i not in CPP_KEYWORDS
        i = identifier(s, "v_")
        assert seen.setdefault(i, s) == s, f"{s!r} and {seen[i]!r} share {i}"  # injective
    assert identifier("input_1", "v_") == "v_input_1" and identifier("while") == "t_while"
    assert identifier("3d", unique=False) == "t_3d" and identifier("_Z", unique=False) == "t__Z"


def _hostile_model(names: list[str], dim: str, graph_name: str):
    """x (dim, 4) -> MatMul W -> Relu -> Gather(idx) -> y, and NonZero(x) -> nz: every tensor, node, the graph and
    the dimension named by ``names``; Gather checks its run-time indices (a message naming the node)."""
    nx, nw, nh, nr, ni, ny, nz, n1, n2, n3, n4 = names[:11]
    x = helper.make_tensor_value_info(nx, TensorProto.FLOAT, [dim, 4])
    idx = helper.make_tensor_value_info(ni, TensorProto.INT64, [2])
    y = helper.make_tensor_value_info(ny, TensorProto.FLOAT, [dim, 2])
    z = helper.make_tensor_value_info(nz, TensorProto.INT64, [2, None])
    w = helper.make_tensor(nw, TensorProto.FLOAT, [4, 3], np.linspace(-1, 1, 12).tolist())
    nodes = [helper.make_node("MatMul", [nx, nw], [nh], name=n1), helper.make_node("Relu", [nh], [nr], name=n2),
             helper.make_node("Gather", [nr, ni], [ny], name=n3, axis=1),
             helper.make_node("NonZero", [nx], [nz], name=n4)]
    g = helper.make_graph(nodes, graph_name, [x, idx], [y, z], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _check_runs(compiled, model, n=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    x[0, 1] = 0.0
    idx = np.array([2, 0], np.int64)
    inputs = [i.name for i in model.graph.input]
    want = ort.InferenceSession(model.SerializeToString()).run(None, dict(zip(inputs, (x, idx))))
    got = compiled.run(dict(zip(inputs, (x, idx))))
    outs = [o.name for o in model.graph.output]
    assert list(got) == outs
    for o, ref in zip(outs, want):
        np.testing.assert_allclose(got[o], ref, rtol=1e-6, atol=1e-6)
    # the run-time check names the node exactly (the escapes of the message give back the name's bytes)
    with pytest.raises(Exception, match=re.escape(model.graph.node[2].name.split("\x00")[0])):
        compiled.run(dict(zip(inputs, (x, np.array([7, 0], np.int64)))))


@pytest.mark.parametrize("k", range(len(HOSTILE)))
def test_hostile_names_everywhere(k, tmp_path):
    """The same hostile string (made unique per place) as every name of a model, its dimension and its file
    name; compiled with -Werror, the outputs match onnxruntime, the saved example builds and runs."""
    h = HOSTILE[k]
    names = [f"{h}#{j}" for j in range(11)]
    model = _hostile_model(names, f"{h}#dim", f"{h}#graph")
    path = tmp_path / f"{h.replace('/', '_').replace(chr(0), '_')}.onnx"
    path.write_bytes(model.SerializeToString())
    compiled = mi.compile(path, extra_flags=["-Werror"])
    _check_runs(compiled, model)
    for f in compiled.directory.iterdir():
        if f.suffix in (".hpp", ".cpp", ".txt"):
            assert all(c == "\n" or 32 <= ord(c) < 127 for c in f.read_text()), f
    out = tmp_path / "saved"
    compiled.save(out)
    exe = tmp_path / "example"
    subprocess.run([build.compiler(), "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-DML4EP_NO_BLAS",
                    str(out / "example.cpp"), "-I", str(out), "-o", str(exe)], check=True, capture_output=True, text=True)
    res = subprocess.run([str(exe), str(next(out.glob("*.bin")))], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_random_names_fuzz():
    """Random strings (control characters, quotes, backslashes, non-ASCII) as every name of several models,
    fixed seeds, built in one compiler call with -Werror, each checked against onnxruntime."""
    rng = random.Random(18)
    pool = "ab/\\\"'*?%\n\r\t\x00\x01 #{}();:.\u00e9\u2028\U0001F600"
    models = []
    for _ in range(8):
        names = set()
        while len(names) < 13:
            names.add("".join(rng.choice(pool) for _ in range(rng.randrange(1, 12))))
        names = sorted(names)
        rng.shuffle(names)
        models.append(_hostile_model(names[:11], names[11], names[12]))
    compiled = mi.compile_many(models, extra_flags=["-Werror"])
    for k, (c, model) in enumerate(zip(compiled, models)):
        assert not isinstance(c, Exception), f"model {k}: {c}"
        _check_runs(c, model, seed=k)
        assert mi.check(model) == []


def test_bdt_source_path_is_escaped(tmp_path):
    import ml4ep.bdt as mb

    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    booster = xgb.train({"max_depth": 2, "objective": "binary:logistic"}, xgb.DMatrix(X, label=y), 3)
    path = tmp_path / (HOSTILE[0].replace("/", "_") + ".json")
    booster.save_model(str(path))
    forest = mb.load(path)
    fast = forest.compile(name=HOSTILE[2])
    np.testing.assert_allclose(fast.predict(X), booster.predict(xgb.DMatrix(X)), rtol=1e-6)
    out = tmp_path / "saved"
    forest.save(out, name=HOSTILE[0])
    header = next(out.glob("*.hpp"))
    assert "\n#error" not in header.read_text()
    (tmp_path / "use.cpp").write_text(f'#include "{header.name}"\n')
    subprocess.run([build.compiler(), "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I", str(out),
                    str(tmp_path / "use.cpp")], check=True, capture_output=True, text=True)
