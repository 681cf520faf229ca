#!/usr/bin/env bash
# The `fahr init` part of `make demo`, for scripts/demo.sh to run (or source) with the demo's
# virtualenv: scaffold a model with `fahr init`, train it on the local driver, fetch it back.
# Usage: bash scripts/demo-init-snippet.sh [VENV] [WORKDIR]
set -euo pipefail
VENV="${1:-.venv}"
WORK="${2:-$(mktemp -d /tmp/fahr-demo.XXXXXX)}"
FAHR="$(cd "$(dirname "$VENV/bin/fahr")" && pwd)/fahr"
mkdir -p "$WORK"
cd "$WORK"

echo "== fahr templates"
"$FAHR" templates

echo "== fahr init digits-model (template: model, defaults)"
rm -rf digits-model model
"$FAHR" init digits-model --no-input
ls -A digits-model

echo "== fahr fit digits-model/train.py on the local driver, then fetch"
"$FAHR" fit digits-model/train.py --train-driver local --config.output_path="$WORK/jobs" --hp epochs=30
"$FAHR" fetch ./model digits-model/train "$WORK/jobs" --train-driver local
ls -l model
cat model/metrics.json
