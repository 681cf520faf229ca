"""A job that completes with nothing in /opt/ml/model is reported, on every driver.

The script here follows the seed document's own snippet: it saves to /opt/ml/model only when
FAHR_EXECUTION_ENVIRONMENT is 'sagemaker', else to ./model. Under `local` that model is thrown
away with the container; fahr says so instead of handing back an empty model silently.
(Every driver's conformance suite checks the warning too: ModelContract.)
"""

from __future__ import annotations

import pytest

from aws_emulator.fixtures import run_fahr as run_emulated
from aws_emulator.fixtures import sagemaker_args, write_model

pytestmark = pytest.mark.docker

SEED_SNIPPET = """\
import os
from pathlib import Path
if os.environ.get("FAHR_EXECUTION_ENVIRONMENT") == "sagemaker":
    model_dir = Path("/opt/ml/model")
else:
    model_dir = Path("model")
model_dir.mkdir(parents=True, exist_ok=True)
(model_dir / "model.txt").write_text("weights")
print(f"saved to {model_dir}", flush=True)
"""

WARNING = "saved no model: /opt/ml/model was empty when it ended"


def test_local_warns_when_the_script_saved_for_another_driver_only(fahr, tmp_path, jobs_dir, docker_engine):
    script = write_model(tmp_path, "seedsnippet", SEED_SNIPPET)
    result = fahr("fit", script, "--fetch", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "saved to model" in result.stdout
    lines = [line for line in result.stderr.splitlines() if WARNING in line]
    assert len(lines) == 1, result.stderr
    assert "it is 'local' here" in lines[0] and "FAHR_EXECUTION_ENVIRONMENT" in lines[0]
    assert (tmp_path / "out").is_dir() and not any((tmp_path / "out").iterdir())


def test_a_saved_model_is_not_reported(fahr, tmp_path, jobs_dir, docker_engine, model_dir):
    result = fahr("fit", model_dir / "train.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "saved no model" not in result.stderr


def test_sagemaker_saves_what_the_seed_snippet_saves(stack, tmp_path):
    script = write_model(tmp_path, "seedsnippet", SEED_SNIPPET)
    result = run_emulated(stack, "fit", str(script), *sagemaker_args("emptymodel"),
                          "--fetch", str(tmp_path / "out"), cwd=tmp_path)
    assert result.code == 0, result.output
    assert "saved to /opt/ml/model" in result.stdout
    assert "saved no model" not in result.stderr
    assert (tmp_path / "out" / "model.txt").read_text() == "weights"
