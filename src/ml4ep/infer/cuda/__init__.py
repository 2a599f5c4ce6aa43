"""ml4ep.infer on NVIDIA GPUs: the lowered graph printed as CUDA, built by nvcc (``device="cuda"``) or by the host
compiler as plain C++ (``device="cuda-host"``: the same source, its kernels run as loops, on any machine).

- :mod:`.codegen`: the CUDA emitter (operator code from the ops' ``cuda`` facts, kernels through
  ``ml4ep_cu::launch``), ``<name>.hpp`` / ``<name>.cu``, the ``extern "C"`` bridge, the example and its CMake file;
  :func:`.codegen.problems` lists, all at once, what the CUDA code refuses;
- :mod:`.runtime`: :class:`.runtime.CudaModel`, the Python session (torch or CuPy tensors on the caller's stream,
  NumPy arrays copied), over the library loaded with ctypes;
- ``../cpp/cuda.hpp``: the run-time support (launch, device memory, cuBLAS loaded with dlopen or its column-major
  host stand-in, CUDA graphs per set of dimensions).

docs/cuda.md describes the design and how an operator gets its CUDA code.
"""
