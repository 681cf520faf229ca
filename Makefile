# fahr's two commands: `make demo` and `make test`. Both set up what they need, idempotently:
# a virtualenv with fahr installed, a Docker engine, and the base image.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup venv engine aws-emulation test test-torch demo demo-sagemaker benchmark clean

setup: venv engine

venv: $(VENV)/.fahr-installed

# The test plugins go to tests/plugins/.site, not into $(VENV) (scripts/install-dev.sh).
$(VENV)/.fahr-installed: pyproject.toml $(wildcard fahr_sagemaker/pyproject.toml) $(wildcard fahr_mlflow/pyproject.toml) $(wildcard tests/plugins/*/pyproject.toml) \
		scripts/install-dev.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	bash scripts/install-dev.sh $(PY)
	touch $@

engine:
	bash scripts/ensure-docker.sh
	bash scripts/ensure-base-image.sh

# The emulated AWS of the SageMaker tests and demo: a registry on 127.0.0.1:443 (root needed).
aws-emulation:
	bash scripts/ensure-aws-emulation.sh >/dev/null

test: setup aws-emulation
	$(PY) -m pytest -ra $(PYTEST_ARGS)

# Real PyTorch across local hosts (tests/test_torch_e2e.py, the torch template's own tests): out of
# `make test`, as torch makes a large image. torch goes into $(VENV) and into a base image kept as
# i19torchrun-torch-base:cpu: the CPU wheel from pip's find-links when there is one (an image of
# about 1 GB), else PyPI's torch (several GB). E.g. `make test-torch TORCH_WHEEL=/path/torch-…+cpu-….whl`.
TORCH_WHEEL ?= $(firstword $(wildcard $(addsuffix /torch-*+cpu-cp311-*.whl,$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))))
test-torch: setup
	$(PY) -m pip install -q $(or $(TORCH_WHEEL),torch) numpy
	FAHR_TEST_TORCH=1 FAHR_TEST_TORCH_WHEEL=$(TORCH_WHEEL) $(PY) -m pytest -ra \
		tests/test_torch_e2e.py tests/test_templates.py tests/test_launcher.py -k "torch" $(PYTEST_ARGS)

demo: setup
	bash scripts/demo.sh $(VENV)

# The SageMaker flow against an emulated AWS on 127.0.0.1 (no AWS account needed, none used).
demo-sagemaker: setup aws-emulation
	bash scripts/demo-sagemaker.sh $(VENV)

# All of benchmarks/run.py's measures (about 10 minutes on 2 cores); e.g.
# `make benchmark BENCHMARK_ARGS="--only s3-fetch --runs 3"`. Its emulated S3 is a moto server on
# a free loopback port (no root, no registry): aws-emulation is not needed.
BENCHMARK_ARGS ?=
benchmark: setup
	$(PY) benchmarks/run.py $(BENCHMARK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info tests/plugins/.site
