#!/usr/bin/env bash
# `make demo`: scaffold a model with `fahr init`, train it with the local driver (real Docker),
# fetch it, show where it is. Runs after `make setup` (virtualenv, Docker engine, base image).
set -euo pipefail
VENV="${1:-.venv}"
FAHR="$(cd "$(dirname "$VENV/bin/fahr")" && pwd)/fahr"
work="$(mktemp -d "${TMPDIR:-/tmp}/fahr-demo.XXXXXX")"
cd "$work"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "fahr templates"
"$FAHR" templates

step "fahr init digits-model --no-input   (template: model)"
"$FAHR" init digits-model --no-input
ls -A digits-model

step "fahr fit digits-model/train.py --hp epochs=30   (local driver; the first build installs scikit-learn)"
"$FAHR" fit digits-model/train.py --train-driver local --config.output_path="$work/jobs" --hp epochs=30

step "fahr fetch ./model digits-model/train $work/jobs"
"$FAHR" fetch ./model digits-model/train "$work/jobs" --train-driver local

step "the trained model"
ls -l model
cat model/metrics.json; echo
printf '\nDone. The model is in %s/model (jobs and archives under %s/jobs).\n' "$work" "$work"
