# Set-up and checks of ml4ep. On a fresh machine: `make demo` or `make test`; both create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ml4ep-installed
# PyTorch from the local CPU wheel, installed before anything that depends on torch
TORCH := torch==2.13.0
JOBS ?= 2

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) examples/infer_demo.py
	$(PY) examples/data_demo.py
	$(PY) examples/fastsim_demo.py

# the kernel-level tests (every operator family, the low-precision types, integer arithmetic, C++ literals, the BDT
# kernels, a fixed sample of 200+ ONNX node tests), run again for the lower ISA levels of users' machines (AVX2-only
# grid nodes, any x86-64 of the last decade), the operator-family tests sampled (every 2nd, ML4EP_TEST_SAMPLE);
# the sanitized standalone programs (tests/infer/test_sanitized.py) run once
KERNEL_TESTS := $(wildcard tests/infer/test_ops_*.py) tests/infer/test_lowp_types.py tests/infer/test_literals.py \
	tests/infer/test_int_arith.py tests/bdt/test_kernels.py tests/infer/test_conformance.py::test_isa_sample \
	tests/infer/test_march.py
ISA_LEVELS := x86-64-v3 x86-64-v2
# the same operator-family tests (sampled), the HEP models and the conformance sample once more through the CUDA code,
# built by g++ for the host (docs/cuda.md); tests whose model has an operator without CUDA code are skipped
CUDA_HOST_TESTS := $(wildcard tests/infer/test_ops_*.py) tests/infer/test_hep_models.py \
	tests/infer/test_conformance.py::test_isa_sample

test: install
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m pytest -n $(JOBS) -q tests
	for isa in $(ISA_LEVELS); do \
	  echo "== kernel tests for ML4EP_MARCH=$$isa"; \
	  ML4EP_MARCH=$$isa ML4EP_TEST_SAMPLE=2 $(PY) -m pytest -n $(JOBS) -q -p no:cacheprovider $(KERNEL_TESTS) || exit 1; \
	done
	@echo "== kernel tests through the CUDA code built for the host (ML4EP_DEVICE=cuda-host)"
	ML4EP_DEVICE=cuda-host ML4EP_TEST_SAMPLE=2 $(PY) -m pytest -n $(JOBS) -q -p no:cacheprovider $(CUDA_HOST_TESTS)

bench: install
	$(PY) -m pip install -q -e '.[bench]'
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PY) benchmarks/infer_latency.py --hep --write docs/benchmarks.md
	$(VENV)/bin/ml4ep bench --rounds 2 --repeats 3 --json docs/bench_results.json --write docs/benchmarks.md
	$(PY) benchmarks/data_loader.py --write docs/benchmarks.md
	OMP_NUM_THREADS=1 $(PY) benchmarks/bdt.py --write docs/benchmarks.md
	$(PY) benchmarks/fastsim_gflash.py --write docs/benchmarks.md
	$(PY) benchmarks/fastsim_evaluate.py --write docs/benchmarks.md
	$(PY) benchmarks/fastsim.py --write docs/benchmarks.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info
