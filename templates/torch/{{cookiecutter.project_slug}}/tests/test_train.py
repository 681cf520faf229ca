"""The training script's own tests: its hyperparameters, and (with torch installed) that it
trains under torchrun with 2 workers, checkpoints on SIGTERM and resumes."""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "train.py"


def load_train():
    spec = importlib.util.spec_from_file_location("train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # torch is imported inside its functions only
    return module


def test_hyperparameters_are_typed_like_their_defaults():
    train = load_train()
    assert train.hyperparameters(["epochs=3", "lr=0.5"]) == {**train.DEFAULTS, "epochs": 3, "lr": 0.5}
    with pytest.raises(ValueError, match="unknown hyperparameter 'epoch'"):
        train.hyperparameters(["epoch=3"])
    with pytest.raises(ValueError, match="is not a valid int"):
        train.hyperparameters(["epochs=many"])


@pytest.fixture
def workdir(tmp_path):
    pytest.importorskip("torch")
    shutil.copy(SCRIPT, tmp_path / "train.py")
    return tmp_path


def environment(**extra):
    names = ("FAHR_EXECUTION_ENVIRONMENT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith(("PET_", "TORCHELASTIC_"))}
    return {**env, "NPROC_PER_NODE": "2", **extra}


def run(workdir, *args):
    return subprocess.run([sys.executable, "train.py", *args], cwd=workdir, env=environment(),
                          capture_output=True, text=True, timeout=300)


def losses(stdout):
    return {int(line.split("step=")[1]): float(line.split("loss=")[1].split()[0])
            for line in stdout.splitlines() if line.startswith("fahr-metric ")}


def test_trains_under_torchrun_on_two_workers(workdir):
    result = run(workdir, "epochs=4", "samples=512")
    assert result.returncode == 0, result.stderr
    assert "training on 2 workers, 256 samples each" in result.stdout
    seen = losses(result.stdout)
    assert list(seen) == [0, 1, 2, 3] and seen[3] < seen[0]
    assert (workdir / "model" / "model.pt").is_file()
    assert json.loads((workdir / "model" / "metrics.json").read_text())["workers"] == 2
    assert not (workdir / "checkpoints" / "checkpoint.pt").exists()  # trained to the end: nothing to resume


def test_checkpoints_on_sigterm_and_resumes(workdir):
    proc = subprocess.Popen([sys.executable, "train.py", "epochs=100000", "samples=512"], cwd=workdir,
                            env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("fahr-metric ") and "step=2" in line:
            break
    proc.send_signal(signal.SIGTERM)  # to torchrun, as a container's stop does
    out, err = proc.communicate(timeout=60)
    assert "stopped in epoch" in out, err
    assert (workdir / "checkpoints" / "checkpoint.pt").is_file()
    stopped_in = int(out.split("stopped in epoch ")[1].split(";")[0])

    result = run(workdir, f"epochs={stopped_in + 2}", "samples=512")
    assert result.returncode == 0, result.stderr
    assert f"at epoch {stopped_in}" in result.stdout
    assert list(losses(result.stdout)) == [stopped_in, stopped_in + 1]
    assert not (workdir / "checkpoints" / "checkpoint.pt").exists()
