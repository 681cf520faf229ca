#!/usr/bin/env bash
# `make demo-sagemaker`: the whole SageMaker flow of fahr, against an EMULATED AWS.
#
# No AWS account is used and nothing leaves this machine: a moto server (S3, ECR API, IAM, STS,
# CloudWatch Logs), a real Docker registry posing as ECR on 127.0.0.1:443, and fahr's test
# SageMaker emulator (which runs the training container on the local Docker engine) all listen
# on 127.0.0.1 only, and stop when the demo ends. See tests/aws_emulator/.
set -euo pipefail
VENV="${1:-.venv}"
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="$ROOT/$VENV/bin/python"

if [ -z "${FAHR_EMU_WORKDIR:-}" ]; then
    bash scripts/ensure-aws-emulation.sh >/dev/null
    echo "== fahr SageMaker demo: this is an EMULATION of AWS on 127.0.0.1 (moto + a local registry +"
    echo "== fahr's SageMaker emulator). No AWS account is used; nothing is billed."
    exec "$PY" tests/aws_emulator/stack.py run -- bash "$ROOT/scripts/demo-sagemaker.sh" "$VENV"
fi

# From here on the emulated stack is up and AWS_ENDPOINT_URL* point at it.
export PATH="$ROOT/$VENV/bin:$PATH"
work=$(mktemp -d /tmp/fahr-sagemaker-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/hello"
cp examples/hello/train.py "$work/hello/train.py"
cd "$work"

MODEL_ARTIFACT_FILEPATH=hello/train.py
S3_ARTIFACT_DIRECTORY="s3://$FAHR_EMU_BUCKET/models"
EXECUTION_ROLE_NAME="$FAHR_EMU_ROLE"
LOCAL_TARGET_DIRECTORY=./model
MODEL_IMAGE_TAG=hello/train
S3_ARTIFACT_FILEPATH="$S3_ARTIFACT_DIRECTORY"

step() { printf '\n== %s\n$ %s\n' "$1" "$2"; }

step "1. train on (emulated) SageMaker" \
    "fahr fit $MODEL_ARTIFACT_FILEPATH --train-driver='sagemaker' --config.output_path=$S3_ARTIFACT_DIRECTORY --config.role_name=$EXECUTION_ROLE_NAME"
fahr fit $MODEL_ARTIFACT_FILEPATH --train-driver='sagemaker' \
    --config.output_path=$S3_ARTIFACT_DIRECTORY --config.role_name=$EXECUTION_ROLE_NAME

step "2. fetch the newest model of the tag from (emulated) S3" \
    "fahr fetch $LOCAL_TARGET_DIRECTORY $MODEL_IMAGE_TAG $S3_ARTIFACT_FILEPATH"
fahr fetch $LOCAL_TARGET_DIRECTORY $MODEL_IMAGE_TAG $S3_ARTIFACT_FILEPATH
echo "model/model.json: $(cat model/model.json)"

step "3. train again, unchanged image, other hyperparameters: nothing is pushed" \
    "fahr fit $MODEL_ARTIFACT_FILEPATH --train-driver=sagemaker --hp slope=5 ..."
fahr fit $MODEL_ARTIFACT_FILEPATH --train-driver=sagemaker --hp slope=5 \
    --config.output_path=$S3_ARTIFACT_DIRECTORY --config.role_name=$EXECUTION_ROLE_NAME --fetch ./model5
echo "model5/model.json: $(cat model5/model.json)"

step "4. an error: a role that does not exist (one line, exit code 2)" \
    "fahr fit $MODEL_ARTIFACT_FILEPATH --train-driver=sagemaker --config.role_name=no-such-role ..."
set +e
fahr fit $MODEL_ARTIFACT_FILEPATH --train-driver=sagemaker \
    --config.output_path=$S3_ARTIFACT_DIRECTORY --config.role_name=no-such-role
echo "exit code: $?"
set -e

SM="--train-driver=sagemaker --config.output_path=$S3_ARTIFACT_DIRECTORY --config.role_name=$EXECUTION_ROLE_NAME"
mkdir -p data && for i in $(seq 1 50); do head -c 20000 /dev/urandom > "data/part-$i.bin"; done

step "5. the cloud loop: an input folder, a warm pool kept 10 minutes, the price said before" \
    "fahr fit $MODEL_ARTIFACT_FILEPATH --input train=./data --config.keep_alive=600 $SM"
fahr fit $MODEL_ARTIFACT_FILEPATH --input train=./data --config.keep_alive=600 $SM

step "6. again: the inputs are not uploaded again, the job starts on the warm pool" \
    "fahr fit $MODEL_ARTIFACT_FILEPATH --input train=./data --config.keep_alive=600 $SM"
fahr fit $MODEL_ARTIFACT_FILEPATH --input train=./data --config.keep_alive=600 $SM

step "7. no capacity for the first instance type (injected): retried on the next" \
    "fahr fit $MODEL_ARTIFACT_FILEPATH --retry 1 --config.train_instance_type=ml.m5.large,ml.m5.xlarge ... $SM"
fahr fit $MODEL_ARTIFACT_FILEPATH --retry 1 --config.train_instance_type=ml.m5.large,ml.m5.xlarge \
    --env FAHR_EMU_INJECT=capacity@ml.m5.large $SM

step "8. a ceiling below what max_run could cost: refused before anything is built (exit 2)" \
    "fahr fit $MODEL_ARTIFACT_FILEPATH --config.max_cost=0.01 $SM"
set +e
fahr fit $MODEL_ARTIFACT_FILEPATH --config.max_cost=0.01 $SM
echo "exit code: $?"
set -e

step "9. the jobs, with what each cost" "fahr jobs $MODEL_IMAGE_TAG --cost --train-driver=sagemaker"
fahr jobs $MODEL_IMAGE_TAG --cost --train-driver=sagemaker

printf '\n== done. That was an emulation: with an AWS account, the same commands run on SageMaker.\n'
