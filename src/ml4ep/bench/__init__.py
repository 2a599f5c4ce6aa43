"""ml4ep.bench: CPU time and memory of common HEP models across inference engines (``ml4ep bench``, docs/bench.md).

The modules, the run readable top to bottom in ``run.py``:

- ``run.py``: :class:`~.run.Config` and :func:`~.run.run`: per model the ONNX export and the onnxruntime reference,
  then one worker process per backend, in rounds (in order, then reversed), and the pooled medians;
- ``zoo.py``: the benchmark's models (``MODEL_NAMES``: vae, gnn, interaction, transformer, diffusion, dense, cnn) in
  PyTorch at a realistic and a small size, exported with a dynamic batch; also the smaller model families of the
  infer tests, the demo and ``benchmarks/infer_latency.py``;
- ``backends.py``: the engines compared (``BACKENDS``) and how each loads and runs a model;
- ``worker.py``: one backend on one model in a process of its own (``python -m ml4ep.bench.worker job.json``);
- ``cpp.py``: the C++ timing program of the C++ backends (ml4ep's header, SOFIE's header);
- ``sofie.py``: SOFIE's code generation and its timing harness;
- ``jax_onnx.py``: a small ONNX to JAX translator, the JAX/XLA backend;
- ``report.py``: the terminal table, the JSON file, the markdown section and the charts (``write_section`` also
  serves the ``benchmarks/`` scripts);
- ``progress.py``: the progress bar of ``ml4ep bench`` and of the ``benchmarks/`` scripts (tqdm, drawn only when
  stderr is a terminal).

The other measurements against anchors are scripts in ``benchmarks/`` (results in docs/benchmarks.md).
"""
