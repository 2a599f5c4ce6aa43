"""Compiled models and forests as columns of a ROOT RDataFrame (docs/root.md).

```python
import ml4ep.root
df = ml4ep.root.define(df, model, inputs=["pt", "eta", ("jet_pt", 8)], output="score")
df = ml4ep.root.define(df, forest, inputs=["pt", "eta"], output="bdt")
```

``model`` is an :class:`ml4ep.infer.CompiledModel` (or the path of an ONNX file, compiled here), ``forest`` an
:class:`ml4ep.bdt.Forest` (or its ``forest.compile()``). What runs inside the event loop is the generated header that
C++ users deploy, declared to ROOT's interpreter (cling), called by a small generated functor class:

- the header: ``#include "<dir>/<name>.hpp"`` of the compiled model (its weights ``<name>.bin`` read once), or the
  forest's header written by :func:`ml4ep.bdt.codegen.header` into a private folder of this process. The infer header
  calls ``cblas_sgemm`` through the macro ``ML4EP_CBLAS_SGEMM``: the OpenBLAS of the ``scipy-openblas32`` wheel (the
  one ml4ep's own builds link, :func:`ml4ep._native.build.blas`) is loaded into the process with
  ``gSystem.Load`` and the macro defined as ``scipy_cblas_sgemm`` before the first header; if that library cannot be
  loaded, the headers are declared with ``ML4EP_NO_BLAS`` (plain loops) and a warning says so.
- the functor (one per ``define`` call, in a namespace of its own whose name goes through
  :func:`ml4ep._native.names.identifier`): one model instance and one input buffer per RDataFrame slot, so that
  ``ROOT.EnableImplicitMT()`` runs the slots in parallel (as SOFIE's ``SofieFunctor``); added with
  ``df.DefineSlot(output, functor, columns)`` by a typed C++ function, so RDataFrame checks the column types itself.
- inputs: scalar columns of any arithmetic type and fixed-size vectors (``(name, n)``: an ``RVec`` or
  ``std::vector`` column padded with 0 or truncated to ``n`` values, as ``ml4ep.data``'s ``max_vec_sizes``), cast to
  the model's input type (float for ml4ep.infer models, double for forests, which compare in their own precision as
  ``forest.predict`` does) and concatenated in the order given; their total must be the model's feature count.
- output: a ``float`` column when the model gives one value per entry, else an ``ROOT::RVec<float>``.

Column names and types never become C++ text: the names are passed to ``DefineSlot`` as strings, and the types are
checked against a list of arithmetic type names before they are written into the functor.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import itertools
import logging
import math
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from ._native.names import identifier
from .errors import InputError, Ml4epError

__all__ = ["define"]

log = logging.getLogger(__name__)

InputSpec = Union[str, tuple[str, int]]

# arithmetic type names as RDataFrame reports column types (ROOT's typedefs and the C++ names)
_ARITHMETIC = frozenset("""
    Bool_t Char_t UChar_t Short_t UShort_t Int_t UInt_t Long_t ULong_t Long64_t ULong64_t Float_t Double_t
    Float16_t Double32_t Byte_t
    bool char float double int short long unsigned
    int8_t uint8_t int16_t uint16_t int32_t uint32_t int64_t uint64_t
""".split()) | frozenset({
    "signed char", "unsigned char", "short int", "unsigned short", "unsigned short int", "signed int",
    "unsigned int", "long int", "unsigned long", "unsigned long int", "long long", "long long int",
    "unsigned long long", "unsigned long long int", "long double",
})
_VECTOR = re.compile(r"^(?:ROOT::VecOps::|ROOT::)?RVec<(?P<rvec>.+)>$|^(?:std::)?vector<(?P<vec>[^,]+)(?:,.*)?>$")

# the C++ types of the ONNX dtypes ml4ep.infer models take and give here
_CTYPES = {"float32": "float", "float64": "double", "int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t",
           "uint16": "uint16_t", "int32": "int32_t", "uint32": "uint32_t", "int64": "int64_t", "uint64": "uint64_t",
           "bool": "bool"}

_lock = threading.Lock()
_counter = itertools.count()
_declared_headers: dict[str, str] = {}  # infer model namespace -> sha256 of the header declared under it


def _arith(name: str) -> str | None:
    """``name`` without its ``std::`` prefix and extra spaces if it names an arithmetic type, else None."""
    n = " ".join(name.replace("std::", "").split())
    return n if n in _ARITHMETIC else None


@dataclass(frozen=True)
class _Column:
    name: str
    size: int | None  # None: a scalar
    param: str  # the C++ parameter type of the functor

    @property
    def width(self) -> int:
        return 1 if self.size is None else self.size


def _root() -> Any:
    from ._optional import require

    return require("ROOT", "root", "ml4ep.root (RDataFrame columns)")


def _columns(df: Any, inputs: Sequence[InputSpec]) -> list[_Column]:
    """The input columns, checked: present, arithmetic, vectors with a size and scalars without."""
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence) or not inputs:
        raise InputError(f"inputs must be a non-empty list of column names and (name, size) pairs, got {inputs!r}")
    out = []
    for spec in inputs:
        if isinstance(spec, str):
            name, size = spec, None
        elif (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str)
              and isinstance(spec[1], (int, np.integer)) and not isinstance(spec[1], bool)):
            name, size = spec[0], int(spec[1])
            if size < 1:
                raise InputError(f"column '{name}': the size of a vector input must be at least 1, got {size}")
        else:
            raise InputError(f"an input is a column name or a (name, size) pair, got {spec!r}")
        if not bool(df.HasColumn(name)):
            raise InputError(f"column '{name}' is not in the RDataFrame (no such branch or defined column)")
        ctype = " ".join(str(df.GetColumnType(name)).split())
        vec = _VECTOR.match(ctype)
        if vec is not None:
            elem = _arith(vec.group("rvec") or vec.group("vec"))
            if elem is None:
                raise InputError(f"column '{name}' has type {ctype}, a vector of a type that is not arithmetic")
            if size is None:
                raise InputError(f"column '{name}' is a vector ({ctype}): give it with the number of values to take, "
                                 f"('{name}', n) (padded with 0 or truncated to n)")
            out.append(_Column(name, size, f"ROOT::RVec<{elem}>"))
            continue
        scalar = _arith(ctype)
        if scalar is None:
            raise InputError(f"column '{name}' has type {ctype}, which is not an arithmetic type nor a vector of one")
        if size is not None:
            raise InputError(f"column '{name}' is a scalar ({ctype}) but was given a size ({size}): give its name alone")
        out.append(_Column(name, None, scalar))
    return out


def _check_width(columns: list[_Column], n_features: int, what: str) -> None:
    total = sum(c.width for c in columns)
    if total != n_features:
        parts = " + ".join(f"{c.name}: {c.width}" for c in columns)
        raise InputError(f"{what} takes {n_features} features per entry, the inputs give {total} ({parts})")


# ---------------------------------------------------------------------------------------------------------------
# the process's interpreter: BLAS, private folder, declarations
# ---------------------------------------------------------------------------------------------------------------
@functools.cache
def _private_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="ml4ep-root-"))
    atexit.register(shutil.rmtree, d, True)
    return d


def _include(path: Path) -> str:
    """``#include "path"`` (a header name is not a string literal: no escapes, so odd paths are refused)."""
    p = str(path.resolve())
    if any(ch in p for ch in '"\\\n\r<>') or not p.isprintable():
        raise Ml4epError(f"the header {p!r} cannot be named in an #include (its path holds a quote, a backslash or a "
                         "control character): set ML4EP_CACHE_DIR (or TMPDIR) to a plain folder")
    return f'#include "{p}"\n'


def _declare(ROOT: Any, code: str, what: str) -> None:
    log.debug("declaring to cling (%s):\n%s", what, code)
    if not ROOT.gInterpreter.Declare(code):
        raise Ml4epError(f"ROOT's interpreter could not parse {what} (its diagnostics are printed above, on stderr)")


@functools.cache
def _prepare(ROOT: Any) -> bool:
    """Once per process: the pip OpenBLAS loaded and ``ML4EP_CBLAS_SGEMM`` defined (True), or ``ML4EP_NO_BLAS``
    (False, with a warning) when it cannot be loaded; plus the RDataFrame header the functors use."""
    from ._native import build
    from .infer.runtime import _set_blas_threads

    use_blas = True
    try:
        b = build.blas()
        lib = Path(b["libdir"]) / f"lib{b['library']}.so"
        if int(ROOT.gSystem.Load(str(lib))) < 0:
            raise OSError(f"gSystem.Load({lib}) failed")
        _set_blas_threads()  # single-threaded unless ML4EP_BLAS_THREADS says otherwise, as in ml4ep.infer
    except (Ml4epError, OSError) as exc:
        log.warning("ml4ep.root: the BLAS of scipy-openblas32 cannot be loaded into ROOT (%s): models are declared "
                    "with ML4EP_NO_BLAS (their products as plain loops)", exc)
        use_blas = False
    macro = ("#ifndef ML4EP_CBLAS_SGEMM\n#define ML4EP_CBLAS_SGEMM scipy_cblas_sgemm\n#endif\n" if use_blas
             else "#ifndef ML4EP_NO_BLAS\n#define ML4EP_NO_BLAS 1\n#endif\n")
    _declare(ROOT, macro + "#include <ROOT/RDataFrame.hxx>\n#include <ROOT/RVec.hxx>\n#include <algorithm>\n"
             "#include <cstddef>\n#include <memory>\n#include <string>\n#include <vector>\n",
             "ml4ep.root's prelude")
    return use_blas


# ---------------------------------------------------------------------------------------------------------------
# what is called per entry
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class _Callee:
    """A model's C++ side: the header to include, the per-slot object, how to call it on one row."""

    header: Path
    what: str  # names the model in errors
    n_features: int
    n_outputs: int
    in_type: str  # the element type of the input row
    out_type: str  # the element type of the output row
    member: str  # the per-slot object's type ("" for a forest: a free function)
    call: str  # C++ statement computing y from x (pointers) for slot `slot`
    weights: str = ""  # the infer model's weights file, given to the functor's constructor


def _infer_callee(model: Any) -> _Callee:
    from .infer import dims as D
    from .infer.runtime import CompiledModel

    if not isinstance(model, CompiledModel):
        raise InputError(f"ml4ep.root.define takes an ml4ep.infer CompiledModel (device 'cpu'), a path to an ONNX "
                         f"file or an ml4ep.bdt Forest, got {type(model).__name__}")
    what = f"model '{model.name}'"
    if len(model.input_names) != 1 or len(model.output_names) != 1:
        raise InputError(f"{what} has {len(model.input_names)} input(s) and {len(model.output_names)} output(s): an "
                         "RDataFrame column is computed from a model of one input and one output")
    if model._derived.runtime:
        raise InputError(f"{what}: the size of its output depends on the data; a column needs a fixed size")
    (in_dt, shape), (out_dt, out_shape) = model._in[0], model._out[0]
    if not shape:
        raise InputError(f"{what}: its input '{model.input_names[0]}' is a scalar; a batch dimension is needed")
    lead, rest = shape[0], shape[1:]
    if any(isinstance(d, D.Dim) for d in rest):
        raise InputError(f"{what}: its input '{model.input_names[0]}' {D.fmt_shape(shape)} has symbolic dimensions "
                         "beyond the batch: give them fixed values (ml4ep.infer.compile(..., constants=...) or the "
                         "exported shapes)")
    if isinstance(lead, D.Dim):
        if not (lead.coeff == 1 and len(lead.syms) == 1 and lead.syms[0][1] == 1):
            raise InputError(f"{what}: the batch dimension of its input is {D.fmt(lead)}; one entry per call needs "
                             "a plain symbolic batch")
    elif lead != 1:
        raise InputError(f"{what}: its input's batch dimension is fixed to {lead}; one entry per call needs a "
                         "dynamic batch (or 1)")
    for dt, role in ((in_dt, "input"), (out_dt, "output")):
        if dt.name not in _CTYPES:
            raise InputError(f"{what}: its {role} has dtype {dt}; ml4ep.root handles {sorted(_CTYPES)}")
    values = model._bind([np.zeros((1, *rest), dtype=in_dt)])
    if model._derived.defs:
        values = model._derived.values(values)
    dims = [int(values[s]) for s in model.symbols]
    n_out = math.prod(int(D.evaluate(model._derived.bound(d), values)) for d in out_shape)
    header = model.header_path
    digest = hashlib.sha256(header.read_bytes()).hexdigest()
    with _lock:
        seen = _declared_headers.get(model.name)
        if seen is not None and seen != digest:
            raise InputError(f"another model named '{model.name}' is already declared to ROOT's interpreter in this "
                             "process (C++ namespaces cannot be redefined): compile this one under another name, "
                             "ml4ep.infer.compile(..., name='...')")
    args = ", ".join(["x", "y", *[f"int64_t({v})" for v in dims]])
    return _Callee(header, what, math.prod(int(d) for d in rest), n_out, _CTYPES[in_dt.name], _CTYPES[out_dt.name],
                   f"{model.name}::Model", f"models_[slot].infer({args});",
                   weights=str(model.directory / f"{model.name}.bin"))


def _forest_callee(forest: Any, ns: str) -> _Callee:
    from .bdt import codegen

    name = f"{ns}_forest"
    header = _private_dir() / f"{name}.hpp"
    header.write_text(codegen.header(forest, name))
    n_out = 1 if forest.meta.get("argmax") else int(forest.n_outputs)
    return _Callee(header, f"the forest ({forest.source or 'a forest'})", int(forest.n_features), n_out, "double",
                   "double", "", f"{name}::predict(x, 1, y, 1);")


def _model(model: Any) -> Any:
    """An ONNX path compiled (under a name unique to its content, so that two files never share a namespace)."""
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise InputError(f"no model file {path}")
        import ml4ep.infer as mi

        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
        return mi.compile(path, name=identifier(f"rdf_{path.stem}_{digest}", unique=False))
    return model


def _functor(ns: str, callee: _Callee, columns: list[_Column]) -> str:
    params = ", ".join(f"const {c.param}& c{k}" for k, c in enumerate(columns))
    fill, pos = [], 0
    for k, c in enumerate(columns):
        if c.size is None:
            fill.append(f"    x[{pos}] = static_cast<In>(c{k});")
        else:
            fill.append(f"    {{ const std::size_t n = std::min<std::size_t>(c{k}.size(), {c.size});\n"
                        f"      for (std::size_t i = 0; i < n; ++i) x[{pos} + i] = static_cast<In>(c{k}[i]);\n"
                        f"      for (std::size_t i = n; i < {c.size}; ++i) x[{pos} + i] = In(0); }}")
        pos += c.width
    scalar = callee.n_outputs == 1
    ret = "float" if scalar else "ROOT::RVec<float>"
    result = ("return static_cast<float>(y[0]);" if scalar else
              f"ROOT::RVec<float> r({callee.n_outputs});\n    for (int i = 0; i < {callee.n_outputs}; ++i) "
              "r[i] = static_cast<float>(y[i]);\n    return r;")
    members = (f"  std::vector<{callee.member}> models_;\n" if callee.member else "")
    init = (f"    models_.reserve(nslots);\n    const {callee.member} first(weights);\n"
            "    for (unsigned s = 0; s < nslots; ++s) models_.emplace_back(first);\n" if callee.member else
            "    (void)weights;\n")
    return f"""
namespace {ns} {{
// the per-entry call of one ml4ep.root.define: one model instance and one buffer per RDataFrame slot
class Functor {{
 public:
  using In = {callee.in_type};
  using Out = {callee.out_type};
  Functor(unsigned nslots, const std::string& weights)
      : x_(nslots, std::vector<In>({callee.n_features})), y_(nslots, std::vector<Out>({callee.n_outputs})) {{
{init}  }}
  {ret} operator()(unsigned slot, {params}) {{
    In* const x = x_[slot].data();
    Out* const y = y_[slot].data();
{chr(10).join(fill)}
    {callee.call}
    {result}
  }}
 private:
{members}  std::vector<std::vector<In>> x_;
  std::vector<std::vector<Out>> y_;
}};

ROOT::RDF::RNode define(ROOT::RDF::RNode df, const std::string& output, const std::vector<std::string>& columns,
                        const std::string& weights) {{
  return df.DefineSlot(output, Functor(df.GetNSlots(), weights), columns);
}}
}}  // namespace {ns}
"""


def define(df: Any, model: Any, inputs: Sequence[InputSpec], output: str) -> Any:
    """``df`` with the column ``output`` computed per entry by ``model`` from the ``inputs`` columns.

    ``model``: an :class:`ml4ep.infer.CompiledModel` of one input ``(N, ...)`` and one output, a path to an ONNX
    file (compiled with :func:`ml4ep.infer.compile`), an :class:`ml4ep.bdt.Forest` or a compiled forest.
    ``inputs``: column names (scalars of any arithmetic type) and ``(name, n)`` pairs (vector columns, padded with 0
    or truncated to ``n`` values), concatenated in this order into the model's input row. ``output``: the new
    column, ``float`` when the model gives one value per entry, else ``ROOT::RVec<float>``. Returns an
    ``ROOT::RDF::RNode``; nothing runs until an action does. Errors (:class:`~ml4ep.errors.InputError`) name the
    column at fault: absent, of a type that is not arithmetic, a vector without a size or a scalar with one, or
    inputs whose total width is not the model's.
    """
    from .bdt.compiled import CompiledForest
    from .bdt.forest import Forest

    if not isinstance(output, str) or not output:
        raise InputError(f"output must be a column name, got {output!r}")
    ROOT = _root()
    node = ROOT.RDF.AsRNode(df)
    columns = _columns(node, inputs)
    if bool(node.HasColumn(output)):
        raise InputError(f"column '{output}' is already in the RDataFrame: choose another output name")
    model = _model(model)
    if isinstance(model, CompiledForest):
        model = model.forest
    ns = identifier(f"ml4ep_rdf{next(_counter)}_{output}")
    callee = _forest_callee(model, ns) if isinstance(model, Forest) else _infer_callee(model)
    _check_width(columns, callee.n_features, callee.what)
    with _lock:
        _prepare(ROOT)
        if isinstance(model, Forest) or model.name not in _declared_headers:
            _declare(ROOT, _include(callee.header), f"the header of {callee.what} ({callee.header})")
            if not isinstance(model, Forest):
                _declared_headers[model.name] = hashlib.sha256(callee.header.read_bytes()).hexdigest()
        _declare(ROOT, _functor(ns, callee, columns), f"the RDataFrame functor of {callee.what}")
    log.info("ml4ep.root: column '%s' from %s (namespace %s, %d slot(s))", output, callee.what, ns,
             int(node.GetNSlots()))
    fn = getattr(ROOT, ns).define
    return fn(node, output, [c.name for c in columns], callee.weights)
