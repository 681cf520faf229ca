"""The training script's own tests: it trains here, fails clearly, and checkpoints on SIGTERM."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "train.py"


@pytest.fixture
def workdir(tmp_path):
    shutil.copy(SCRIPT, tmp_path / "train.py")
    return tmp_path


def run(workdir, *args, **kwargs):
    env = {k: v for k, v in __import__("os").environ.items() if k != "FAHR_EXECUTION_ENVIRONMENT"}
    return subprocess.run([sys.executable, "train.py", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300, **kwargs)


def test_trains_a_model_with_typed_hyperparameters(workdir):
    result = run(workdir, "epochs=5", "alpha=0.001")
    assert result.returncode == 0, result.stderr
    assert "accuracy=" in result.stdout
    metrics = json.loads((workdir / "model" / "metrics.json").read_text())
    assert metrics["hyperparameters"]["epochs"] == 5 and metrics["types"]["epochs"] == "int"
    assert metrics["types"]["alpha"] == "float"
    assert metrics["accuracy"] > 0.8

    import joblib
    from sklearn.datasets import load_digits

    model = joblib.load(workdir / "model" / "model.joblib")
    digits = load_digits()
    assert (model.predict(digits.data[:200]) == digits.target[:200]).mean() > 0.8


def test_reads_the_train_channel(workdir):
    from sklearn.datasets import load_digits

    digits = load_digits()
    channel = workdir / "data" / "train"
    channel.mkdir(parents=True)
    rows = [list(x) + [t] for x, t in zip(digits.data[:600], digits.target[:600])]
    (channel / "part.csv").write_text("\n".join(",".join(str(v) for v in row) for row in rows))
    result = run(workdir, "epochs=3")
    assert result.returncode == 0, result.stderr
    assert "channel 'train' (1 CSV files)" in result.stdout


@pytest.mark.parametrize("channels, why", [
    (["training"], "got input channels 'training'; this script reads only 'train'"),
    (["train", "test"], "got input channels 'test', 'train'; this script reads only 'train'"),
    (["train"], "input channel 'train' holds no .csv file"),
])
def test_an_input_it_does_not_read_fails_instead_of_training_on_the_digits(workdir, channels, why):
    for channel in channels:
        (workdir / "data" / channel).mkdir(parents=True)
        (workdir / "data" / channel / "part.parquet").write_bytes(b"PAR1")
    result = run(workdir, "epochs=3")
    assert result.returncode == 1
    assert f"training failed: ValueError: {why}" in result.stderr
    assert "training on" not in result.stdout and not (workdir / "model").exists()


def test_a_bad_hyperparameter_fails_with_its_name(workdir):
    result = run(workdir, "epochs=many")
    assert result.returncode == 1
    assert "epochs='many' is not a valid int" in result.stderr
    assert not (workdir / "model").exists()


def test_sigterm_saves_a_checkpoint_and_the_next_run_resumes(workdir):
    env = {k: v for k, v in __import__("os").environ.items() if k != "FAHR_EXECUTION_ENVIRONMENT"}
    proc = subprocess.Popen([sys.executable, "train.py", "epochs=100000000"], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "training on" in proc.stdout.readline()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "checkpoint saved" in out
    assert (workdir / "checkpoints" / "checkpoint.joblib").is_file()
    result = run(workdir, "epochs=2")  # fewer epochs than done: resumes, trains no more, saves
    assert "resuming from" in result.stdout and result.returncode == 0, result.stderr
    assert not (workdir / "checkpoints" / "checkpoint.joblib").exists()
