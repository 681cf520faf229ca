"""Baked `model` and `notebook` projects train end to end with `fahr fit` on the local driver
(real Docker) and their models come back with `fahr fetch`."""

import json
import tarfile
import time

import pytest

from fahrcli import run_fahr, show

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    (root / "jobs").mkdir()
    return root


def init(workspace, name, template):
    result = run_fahr("init", name, "--template", template, "--no-input", cwd=workspace,
                      env={"HOME": str(workspace)})
    assert result.returncode == 0, show(result)
    return workspace / name


def baked(workspace, name, template):
    """The project an earlier test of this module baked, or a new one."""
    project = workspace / name
    return project if project.exists() else init(workspace, name, template)


def fit(workspace, artifact, *args):
    return run_fahr("fit", artifact, "--train-driver", "local", f"--config.output_path={workspace / 'jobs'}",
                    *args, cwd=workspace)


def job_of(result):
    import re

    return re.search(r"launching job (\S+)", result.stderr).group(1)


def load_model(folder):
    import joblib
    from sklearn.datasets import load_digits

    digits = load_digits()
    model = joblib.load(folder / "model.joblib")
    return float((model.predict(digits.data) == digits.target).mean())


def test_model_project_trains_on_local_and_comes_back_with_fetch(workspace):
    project = init(workspace, "digits-e2e", "model")
    from sklearn.datasets import load_digits

    digits = load_digits()
    channel = workspace / "train-channel"
    channel.mkdir()
    rows = [list(x) + [t] for x, t in zip(digits.data[:900], digits.target[:900])]
    (channel / "part-0.csv").write_text("\n".join(",".join(str(int(v)) for v in row) for row in rows))

    result = fit(workspace, project / "train.py", "--hp", "epochs=7", "--hp", "alpha=0.001",
                 "--input", f"train={channel}")
    assert result.returncode == 0, show(result)
    assert "accuracy=" in result.stdout and "channel 'train' (1 CSV files)" in result.stdout

    fetched = run_fahr("fetch", workspace / "model-out", "digits-e2e/train", workspace / "jobs",
                       "--train-driver", "local", cwd=workspace)
    assert fetched.returncode == 0, show(fetched)
    out = workspace / "model-out"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.joblib"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hyperparameters"] == {"epochs": 7, "alpha": 0.001, "test_size": 0.25, "seed": 0}
    assert metrics["types"] == {"epochs": "int", "alpha": "float", "test_size": "float", "seed": "int"}
    assert metrics["data"] == "channel 'train' (1 CSV files)"
    assert load_model(out) > 0.8


def test_model_project_failure_becomes_the_failure_reason(workspace):
    project = baked(workspace, "digits-e2e", "model")
    result = fit(workspace, project / "train.py", "--hp", "epochs=many")
    assert result.returncode == 1, show(result)
    assert "failed" in result.stderr and "ValueError: hyperparameter epochs='many' is not a valid int" in result.stderr


def test_model_project_checkpoints_when_stopped(workspace):
    project = baked(workspace, "digits-e2e", "model")
    launched = fit(workspace, project / "train.py", "--hp", "epochs=1000000000", "--detach")
    assert launched.returncode == 0, show(launched)
    job = job_of(launched)
    time.sleep(6)  # past the imports: training has started
    stopped = run_fahr("stop", job, "--train-driver", "local", f"--config.output_path={workspace / 'jobs'}",
                       cwd=workspace)
    assert stopped.returncode == 0, show(stopped)
    waited = run_fahr("wait", job, "--train-driver", "local", f"--config.output_path={workspace / 'jobs'}",
                      cwd=workspace)
    assert waited.returncode == 1 and "stopped" in waited.stderr.lower(), show(waited)
    assert "checkpoint saved to /opt/ml/checkpoints/checkpoint.joblib" in waited.stdout, show(waited)


def test_notebook_project_trains_with_typed_parameters_and_returns_the_executed_notebook(workspace):
    project = init(workspace, "nb-e2e", "notebook")
    result = fit(workspace, project / "train.ipynb", "--hp", "epochs=4", "--hp", "alpha=0.001")
    assert result.returncode == 0, show(result)
    assert "accuracy=" in result.stdout  # the cells' output is streamed live
    # The kernel's own lines (IPKernelApp's warning at start, its KeyboardInterrupt at shutdown) are
    # not the notebook's: a run that succeeds does not show them.
    assert "IPKernelApp" not in result.stdout + result.stderr, show(result)
    assert "KeyboardInterrupt" not in result.stdout + result.stderr, show(result)
    job = job_of(result)

    fetched = run_fahr("fetch", workspace / "nb-model", "nb-e2e/train", workspace / "jobs",
                       "--train-driver", "local", "--job", job, cwd=workspace)
    assert fetched.returncode == 0, show(fetched)
    metrics = json.loads((workspace / "nb-model" / "metrics.json").read_text())
    assert metrics["hyperparameters"]["epochs"] == 4 and metrics["types"]["epochs"] == "int"
    assert metrics["hyperparameters"]["alpha"] == 0.001 and metrics["types"]["alpha"] == "float"
    assert load_model(workspace / "nb-model") > 0.8

    with tarfile.open(workspace / "jobs" / job / "output" / "output.tar.gz") as tar:
        assert tar.getnames() == ["train.ipynb"]
        executed = json.load(tar.extractfile("train.ipynb"))
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "epochs = 4\n" in "".join(injected[0]["source"]) and "alpha = 0.001" in "".join(injected[0]["source"])
    outputs = "".join(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", []))
                      for c in executed["cells"] for o in c.get("outputs", []))
    assert "accuracy=" in outputs


def test_a_raising_cell_fails_the_notebook_job_with_its_error(workspace):
    project = baked(workspace, "nb-e2e", "notebook")
    result = fit(workspace, project / "train.ipynb", "--hp", "test_size=2.5")
    assert result.returncode == 1, show(result)
    reason = result.stderr.split("failed in", 1)[1]
    assert "InvalidParameterError" in reason or "ValueError" in reason, show(result)
    assert "test_size" in reason and "(cell [" in reason, show(result)
    # A failed run shows what the kernel said too (held while it ran).
    assert "the notebook's kernel said:\n[IPKernelApp] WARNING" in result.stdout, show(result)
    job = job_of(result)
    with tarfile.open(workspace / "jobs" / job / "output" / "output.tar.gz") as tar:
        executed = json.load(tar.extractfile("train.ipynb"))  # the failed run's notebook comes back too
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and "test_size" in errors[0]["evalue"]


def test_a_hyperparameter_that_does_not_fit_the_parameters_cell_fails(workspace):
    project = baked(workspace, "nb-e2e", "notebook")
    result = fit(workspace, project / "train.ipynb", "--hp", "epochs=many")
    assert result.returncode == 1, show(result)
    assert "hyperparameter epochs='many' does not fit the parameters cell's epochs = 20" in result.stderr
