# fahr's two commands: `make demo` and `make test`. Both set up what they need, idempotently:
# a virtualenv with fahr installed, a Docker engine, and the base image.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup venv engine aws-emulation test demo demo-sagemaker benchmark clean

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
