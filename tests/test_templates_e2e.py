"""Baked `model` and `notebook` projects train end to end with `fahr fit` on the local driver
(real Docker) and their models come back with `fahr fetch`."""

import json
import re
import tarfile
import time

import pytest

import fahr_core

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
    return re.search(r"launching job (\S+)", result.stderr).group(1)


def load_model(folder):
    import joblib
    from sklearn.datasets import load_digits

    digits = load_digits()
    model = joblib.load(folder / "model.joblib")
    return float((model.predict(digits.data) == digits.target).mean())


@pytest.fixture(scope="module")
def channel(workspace):
    """A folder of CSV files (features, then the label) of 900 digits: what the template reads."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    channel = workspace / "train-channel"
    channel.mkdir()
    rows = [list(x) + [t] for x, t in zip(digits.data[:900], digits.target[:900])]
    (channel / "part-0.csv").write_text("\n".join(",".join(str(int(v)) for v in row) for row in rows))
    return channel


def test_model_project_trains_on_local_and_comes_back_with_fetch(workspace, channel):
    project = init(workspace, "digits-e2e", "model")
    result = fit(workspace, project / "train.py", "--hp", "epochs=7", "--hp", "alpha=0.001",
                 "--input", f"train={channel}")
    assert result.returncode == 0, show(result)
    assert "accuracy=" in result.stdout and "channel 'train' (1 CSV files)" in result.stdout
    # Its loss and accuracy per epoch, by the convention: fahr keeps them with the job.
    job = fahr_core.job(job_of(result), driver="local", config={"output_path": str(workspace / "jobs")})
    assert [p.step for p in job.metrics["loss"]] == list(range(7)) == [p.step for p in job.metrics["accuracy"]]
    assert 0.8 < job.final_metrics["accuracy"] <= 1 and job.final_metrics["loss"] > 0

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


def test_model_project_refuses_an_input_channel_it_does_not_read(workspace, channel):
    project = baked(workspace, "digits-e2e", "model")
    result = fit(workspace, project / "train.py", "--input", f"training={channel}")
    assert result.returncode == 1, show(result)
    failure = [line for line in result.stderr.splitlines() if line.startswith("fahr error:")]
    assert len(failure) == 1, show(result)
    assert failure[0].endswith(": ValueError: got input channels 'training'; this script reads only 'train' "
                               "(CSV files: features, then the label): pass --input train=DIR"), show(result)
    assert "Traceback" not in failure[0], show(result)  # the reason alone; the traceback is in the log
    assert "training on" not in result.stdout, show(result)  # not on the bundled digits instead


def test_model_project_resumes_from_its_checkpoint_after_a_stop(workspace):
    # The template's README promises it; its fahr.toml's checkpoint_path keeps the promise on local.
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
    saved = re.search(r"stopped at epoch (\d+); checkpoint saved to /opt/ml/checkpoints/checkpoint.joblib",
                      waited.stdout)
    assert saved and int(saved[1]) > 0, show(waited)
    epoch = int(saved[1])
    checkpoints = project / ".fahr" / "checkpoints"  # fahr.toml's, taken from the project, not the cwd
    assert (checkpoints / "checkpoint.joblib").is_file() and not (workspace / ".fahr").exists()

    resumed = fit(workspace, project / "train.py", "--hp", f"epochs={epoch + 3}", "--fetch", workspace / "resumed")
    assert resumed.returncode == 0, show(resumed)
    assert f"resuming from /opt/ml/checkpoints/checkpoint.joblib at epoch {epoch}" in resumed.stdout, show(resumed)
    assert "not rebuilt" in resumed.stderr, show(resumed)  # the checkpoint folder is kept out of the image
    assert load_model(workspace / "resumed") > 0.8
    # Trained to the end, the script removed its checkpoint: the next fit starts from epoch 0.
    assert sorted(p.name for p in checkpoints.iterdir()) == [".fahr-checkpoints"]


def test_notebook_project_trains_with_typed_parameters_and_returns_the_executed_notebook(workspace):
    project = init(workspace, "nb-e2e", "notebook")
    result = fit(workspace, project / "train.ipynb", "--hp", "epochs=4", "--hp", "alpha=0.001", "--hp", "epoch=9")
    assert result.returncode == 0, show(result)
    # A name the parameters cell does not set: one warning before the build; the job still runs.
    lines = result.stderr.splitlines()
    warned = [i for i, line in enumerate(lines) if line.startswith("fahr warning --hp epoch:")]
    assert warned == [0] and lines[0] == (
        f"fahr warning --hp epoch: not a parameter of {project / 'train.ipynb'}, whose cell tagged 'parameters' "
        "sets epochs, alpha, test_size, seed; the notebook does not read it: check the name"), show(result)
    assert "accuracy=" in result.stdout  # the cells' output is streamed live
    noted = fahr_core.job(job_of(result), driver="local", config={"output_path": str(workspace / "jobs")})
    assert [p.step for p in noted.metrics["accuracy"]] == [0, 1, 2, 3]  # by the convention
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
    reason = result.stderr.split("failed (user) in", 1)[1]
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
