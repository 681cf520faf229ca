"""fahr-mlflow, end to end: real `fahr` processes, real local jobs, a real MLflow file store read
back with MLflow's own client. A fit is one run (params, metrics with steps from both ways of
printing them, tags, FINISHED, the model's URI); a failed job a FAILED run with its failure line;
a detached job is recorded once by the `fahr wait` that follows it, and not again by a second; a
tracker that raises breaks no job. docs/trackers.md."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aws_emulator.fixtures import job_name_of, sagemaker_args, write_model
from aws_emulator.fixtures import run_fahr as run_fahr_on
from conftest import remove_local_jobs, run_fahr
from test_detached import job_of

pytestmark = pytest.mark.docker

# Prints `steps` steps of metrics both ways, saves a model; fails when asked to.
SCRIPT = textwrap.dedent("""\
    import json, sys
    hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
    for step in range(int(hp.get("steps", "3"))):
        print(f"fahr-metric loss={1 / (step + 1)} step={step}", flush=True)
        print(f"epoch {step}: val_loss={2 / (step + 1)}", flush=True)
    if hp.get("fail") == "yes":
        sys.exit("ValueError: the data has no label column")
    open("/opt/ml/model/model.txt", "w").write("trained")
""")


@pytest.fixture(scope="module")
def made(tmp_path_factory, docker_engine):
    root = tmp_path_factory.mktemp("mlflow")
    project = root / f"i18mlflow{secrets.token_hex(3)}"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    jobs = root / "jobs"
    store = root / "store"
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(jobs), "FAHR_MLFLOW": "on", "MLFLOW_TRACKING_URI": store.as_uri(),
           "MLFLOW_ALLOW_FILE_STORE": "true"}
    yield {"root": root, "project": project, "tag": f"{project.name}/train", "jobs": jobs, "store": store,
           "env": env}
    remove_local_jobs(jobs, docker_engine, f"{project.name}/train:latest")


def runs_of(store: Path, job: str) -> list[dict]:
    """The MLflow runs recorded for a fahr job, read with MLflow's own client (in a process of its
    own, as a user would: `mlflow` is never imported by the test session)."""
    code = textwrap.dedent("""\
        import json, sys
        from mlflow.tracking import MlflowClient
        client = MlflowClient(tracking_uri=sys.argv[1])
        out = []
        for experiment in client.search_experiments():
            for run in client.search_runs([experiment.experiment_id], filter_string=f"tags.`fahr.job` = '{sys.argv[2]}'"):
                history = {key: [[m.step, m.value, m.timestamp] for m in client.get_metric_history(run.info.run_id, key)]
                           for key in run.data.metrics}
                out.append({"experiment": experiment.name, "status": run.info.status, "name": run.info.run_name,
                            "params": run.data.params, "tags": run.data.tags, "metrics": history})
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code, store.as_uri(), job], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def steps_and_values(history):
    return [(step, round(value, 6)) for step, value, _ in sorted(history)]


def test_a_fit_is_one_mlflow_run_with_params_metrics_tags_and_the_model_uri(made):
    # No MLFLOW_TRACKING_URI: the file store ./mlruns of the folder fahr runs in.
    env = {k: v for k, v in made["env"].items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE")}
    here = made["root"] / "here"
    here.mkdir()
    proc = run_fahr("fit", made["project"] / "train.py", "--hp", "steps=3", "--hp", "lr=0.1",
                    "--metric", r"val_loss=val_loss=(\S+)", env={**env, "MLFLOW_TRACKING_URI": ""}, cwd=here, check=0)
    assert "fahr warning" not in proc.stderr, proc.stderr
    job = job_of(proc.stderr)
    (run,) = runs_of(here / "mlruns", job)
    assert run["experiment"] == made["tag"] and run["name"] == job and run["status"] == "FINISHED"
    assert run["params"] == {"steps": "3", "lr": "0.1"}
    # The convention's steps as printed; a regex's points, which have none, their place 0, 1, 2.
    assert steps_and_values(run["metrics"]["loss"]) == [(0, 1.0), (1, 0.5), (2, 0.333333)]
    assert steps_and_values(run["metrics"]["val_loss"]) == [(0, 2.0), (1, 1.0), (2, 0.666667)]
    stamps = [stamp for _, _, stamp in run["metrics"]["loss"]]
    assert all(stamp > 1.7e12 for stamp in stamps)  # when printed, in milliseconds
    tags = run["tags"]
    assert {k: tags[k] for k in ("fahr.job", "fahr.driver", "fahr.model_tag", "fahr.status")} == {
        "fahr.job": job, "fahr.driver": "local", "fahr.model_tag": made["tag"], "fahr.status": "Completed"}
    assert tags["fahr.image_digest"].startswith("sha256:") and tags["fahr.image"]
    assert tags["fahr.project"] == str(made["project"].resolve())
    model = tags["fahr.model_uri"]
    assert model.startswith("file://") and Path(model.removeprefix("file://")).is_file(), model
    assert "fahr.sweep" not in tags  # a job of no sweep


def test_a_failed_job_is_a_failed_run_with_its_failure_line(made):
    proc = run_fahr("fit", made["project"] / "train.py", "--hp", "steps=2", "--hp", "fail=yes",
                    env=made["env"], cwd=made["root"], check=1)
    job = job_of(proc.stderr)
    (run,) = runs_of(made["store"], job)
    assert run["status"] == "FAILED"
    assert run["tags"]["fahr.status"] == "Failed"
    assert "the data has no label column" in run["tags"]["fahr.failure_reason"]
    assert steps_and_values(run["metrics"]["loss"]) == [(0, 1.0), (1, 0.5)]  # what it printed before failing
    assert "fahr.model_uri" not in run["tags"]


def test_a_sweeps_jobs_are_runs_tagged_with_the_sweep(made):
    proc = run_fahr("sweep", made["project"] / "train.py", "--hp", "steps=2,3", "--objective", "loss:min",
                    "--parallel", "2", env=made["env"], cwd=made["root"], check=0)
    sweep = re.search(r"sweep (sw-[0-9a-z-]+)", proc.stderr).group(1)
    jobs = sorted(set(re.findall(r"^fahr (\S+) \(steps=\d\): Completed", proc.stderr, re.M)))
    assert len(jobs) == 2, proc.stderr
    by_steps = {}
    for job in jobs:
        (run,) = runs_of(made["store"], job)
        assert run["status"] == "FINISHED" and run["tags"]["fahr.sweep"] == sweep, run
        by_steps[run["params"]["steps"]] = run
    assert set(by_steps) == {"2", "3"}
    assert steps_and_values(by_steps["3"]["metrics"]["loss"]) == [(0, 1.0), (1, 0.5), (2, 0.333333)]
    assert steps_and_values(by_steps["2"]["metrics"]["loss"]) == [(0, 1.0), (1, 0.5)]


def test_a_detached_job_is_recorded_once_by_the_wait_that_follows_it(made):
    proc = run_fahr("fit", made["project"] / "train.py", "--hp", "steps=4", "--detach", env=made["env"],
                    cwd=made["root"], check=0)
    job = job_of(proc.stderr)
    (run,) = runs_of(made["store"], job)
    assert run["params"] == {"steps": "4"}  # its start, told by the fit that launched it
    waited = run_fahr("wait", job, env=made["env"], cwd=made["root"], check=0)
    assert "fahr warning" not in waited.stderr, waited.stderr
    (run,) = runs_of(made["store"], job)
    assert run["status"] == "FINISHED" and run["tags"]["fahr.status"] == "Completed"
    assert steps_and_values(run["metrics"]["loss"]) == [(0, 1.0), (1, 0.5), (2, 0.333333), (3, 0.25)]
    run_fahr("wait", job, env=made["env"], cwd=made["root"], check=0)  # told again: recorded once
    assert runs_of(made["store"], job) == [run]


def test_a_tracker_that_raises_breaks_no_job_and_is_said_once(made):
    proc = run_fahr("fit", made["project"] / "train.py", "--hp", "steps=2",
                    env={**made["env"], "FAHR_TEST_BROKEN_TRACKER": "1"}, cwd=made["root"], check=0)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("fahr warning")]
    assert len(warnings) == 1, proc.stderr
    assert re.search(r"plugin brokentracker failed recording the start of job \S+: RuntimeError: tracker server "
                     r"unreachable", warnings[0]), warnings[0]
    assert "Traceback" not in proc.stderr and "completed" in proc.stderr
    (run,) = runs_of(made["store"], job_of(proc.stderr))  # the other tracker heard it all
    assert run["status"] == "FINISHED" and len(run["metrics"]["loss"]) == 2


def test_a_sagemaker_job_is_a_run_too_its_metrics_streamed_from_cloudwatch_its_model_in_s3(stack, tmp_path):
    store = tmp_path / "store"
    env = {**stack.env(), "FAHR_MLFLOW": "on", "MLFLOW_TRACKING_URI": store.as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"}
    model = write_model(tmp_path, "i18mlflowsm", SCRIPT)
    fitted = run_fahr_on(stack, "fit", str(model), *sagemaker_args("mlflow"), "--hp", "lr=0.1",
                         "--metric", r"val_loss=val_loss=(\S+)", cwd=tmp_path, env=env)
    assert fitted.code == 0 and "fahr warning" not in fitted.stderr, fitted.output
    job = job_name_of(fitted)
    (run,) = runs_of(store, job)
    assert run["status"] == "FINISHED" and run["params"] == {"lr": "0.1"}
    assert steps_and_values(run["metrics"]["loss"]) == [(0, 1.0), (1, 0.5), (2, 0.333333)]
    assert steps_and_values(run["metrics"]["val_loss"]) == [(0, 2.0), (1, 1.0), (2, 0.666667)]
    assert run["tags"]["fahr.driver"] == "sagemaker" and run["tags"]["fahr.image_digest"].startswith("sha256:")
    assert run["tags"]["fahr.model_uri"].startswith("s3://") and run["tags"]["fahr.model_uri"].endswith("model.tar.gz")
