#!/usr/bin/env bash
# `make demo`: train a small model with the local driver, fetch it, show where it is.
# Runs after `make setup` (virtualenv with fahr, Docker engine, base image).
set -euo pipefail
VENV="${1:-.venv}"
FAHR="$VENV/bin/fahr"
cd "$(dirname "$0")/.."
work="$(mktemp -d "${TMPDIR:-/tmp}/fahr-demo.XXXXXX")"
export FAHR_LOCAL_OUTPUT_PATH="$work/jobs"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a model project: $work/hello (examples/hello/train.py, no dependencies)"
mkdir -p "$work/hello"
cp examples/hello/train.py "$work/hello/train.py"

step "fahr fit $work/hello/train.py --hp slope=2.5   (local driver, real Docker)"
"$FAHR" fit "$work/hello/train.py" --hp slope=2.5 --hp intercept=-1

step "fahr fetch $work/model hello/train $FAHR_LOCAL_OUTPUT_PATH"
"$FAHR" fetch "$work/model" hello/train "$FAHR_LOCAL_OUTPUT_PATH"

step "the trained model"
ls -l "$work/model"
cat "$work/model/model.json"; echo
printf '\nDone. The model is in %s/model (jobs and archives under %s).\n' "$work" "$FAHR_LOCAL_OUTPUT_PATH"
