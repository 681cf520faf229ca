#!/usr/bin/env bash
# Install fahr, its drivers and the test-only plugins into the given Python's environment.
set -euo pipefail
PY="${1:-python3}"
cd "$(dirname "$0")/.."
pkgs=(-e ".[test]")  # test extras: papermill, ipykernel, nbformat, scikit-learn (template tests)
# The sagemaker driver with its test extra: moto's server is the emulated AWS of its tests.
[ -f fahr_sagemaker/pyproject.toml ] && pkgs+=(-e "./fahr_sagemaker[test]")
for plugin in tests/plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && pkgs+=(-e "$plugin")
done
"$PY" -m pip install -q "${pkgs[@]}" pytest "setuptools>=68" wheel
"$PY" -c "import fahr_core" # fail loudly if the install did not take
