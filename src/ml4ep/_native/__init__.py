"""ml4ep._native: the one native build layer of ml4ep (internal; no public API).

What ml4ep builds natively, all through this package:

- ``ml4ep.infer``: every ONNX model as a C++ header (``<name>.hpp`` + ``<name>.bin``) and a small CPython extension
  module around it (:mod:`ml4ep.infer.pipeline`);
- ``ml4ep.bdt``: every forest as a self-contained header and its extension module (:mod:`ml4ep.bdt.compiled`, the
  fixed C++ in ``ml4ep/bdt/cpp/``);
- the fast-simulation hook: C++ and CMake text only, built by the user (:mod:`ml4ep.fastsim.hook`, the fixed text
  in ``ml4ep/fastsim/cpp/``);
- ``ml4ep bench``: the timing programs of the C++ backends, ml4ep's and SOFIE's (:mod:`ml4ep.bench.cpp`,
  :mod:`ml4ep.bench.sofie`).

The modules:

- :mod:`~ml4ep._native.build`: the compiler (``$CXX``, else g++), the flags and target ISA (``$ML4EP_MARCH`` /
  ``march=``, checked against this CPU before a library is loaded), the pip OpenBLAS, :func:`~.build.compile_shared`
  (extension modules), :func:`~.build.compile_program` (programs), and the build cache;
- :mod:`~ml4ep._native.names`: the one sanitiser of C++ identifiers and escaper of comment and string text for
  every name that comes from a model or an argument;
- :mod:`~ml4ep._native.template`: the strict filler of the ``@NAME@`` placeholders of the template files.

Why the cache is safe: a build is keyed (:func:`~.build.cache_key`) by everything it depends on (the model's bytes,
ml4ep's code generator, the flags, the target's ISA extensions, the compiler, Python and BLAS versions), so a stale
build is never found; it is made in a private temporary folder, sealed with a manifest of its files' SHA-256 and
renamed into place atomically, so no process sees half a build; the cache folders are created 0700 and a folder or
file that belongs to another user, is writable by others, or no longer matches its manifest is never loaded (a
warning, then a rebuild or a private folder). Names from models reach the generated code only through ``names``,
so no name becomes code, and templates are filled only by ``template.fill``, which refuses to leave a placeholder.
"""
