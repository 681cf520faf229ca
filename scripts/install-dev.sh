#!/usr/bin/env bash
# Install fahr and its drivers into the given Python's environment, and the test-only plugins
# where only the tests see them.
set -euo pipefail
PY="${1:-python3}"
cd "$(dirname "$0")/.."
pkgs=(-e ".[test]")  # test extras: papermill, ipykernel, nbformat, scikit-learn (template tests)
# The sagemaker driver with its test extra: moto's server is the emulated AWS of its tests.
[ -f fahr_sagemaker/pyproject.toml ] && pkgs+=(-e "./fahr_sagemaker[test]")
# The MLflow tracker (docs/trackers.md): its tests read the runs back with MLflow's own client.
[ -f fahr_mlflow/pyproject.toml ] && pkgs+=(-e "./fahr_mlflow[test]")
"$PY" -m pip install -q "${pkgs[@]}" pytest "setuptools>=68" wheel
"$PY" -c "import fahr_core" # fail loudly if the install did not take

# The test-only plugins (tests/plugins/*: a recording driver, drivers with one defect each) are
# real distributions, but not of this environment, which `make demo` points users at: their
# metadata goes to tests/plugins/.site, which tests/conftest.py puts (with their folders) on the
# test session's path and on the PYTHONPATH of every process it starts.
plugins=()
for plugin in tests/plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && plugins+=("$plugin")
done
# An environment made by an earlier version of this script holds them: taken out.
names=$("$PY" -c 'import sys, tomllib; print(*(tomllib.load(open(p, "rb"))["project"]["name"] for p in sys.argv[1:]))' \
    "${plugins[@]/%//pyproject.toml}")
"$PY" -m pip uninstall -q -y $names 2>/dev/null || true
site=tests/plugins/.site
rm -rf "$site"
"$PY" -m pip install -q --no-deps --no-build-isolation --target "$site" "${plugins[@]}"
for plugin in "${plugins[@]}"; do rm -rf "$plugin/build"; done  # setuptools' leftovers: stale on the next install
