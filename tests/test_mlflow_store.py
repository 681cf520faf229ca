"""fahr-mlflow's hooks on a real MLflow file store, without jobs: each in a process of its own
(MLflow is never imported by the test session), read back with MLflow's own client. Two
processes telling one job at once (two `fahr wait JOB`) make one run; a file store the user
names in MLFLOW_TRACKING_URI is used (MLflow 3.7 refuses it unless opted into); hyperparameters MLflow
refuses as params are one warning line, and the run is still found by its job. docs/trackers.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("fahr_mlflow")

# Tells one job (argv[2]) whole, as `fahr wait JOB` does, to the store argv[1]; argv[3] the
# hyperparameters (JSON). A slow server is played by a search answering after 1.5 s, so that two
# such processes both search before either makes the run.
TELL = textwrap.dedent("""\
    import json, os, sys, time
    os.environ["MLFLOW_TRACKING_URI"] = sys.argv[1]  # a file store the user chose: no MLFLOW_ALLOW_FILE_STORE
    import fahr_mlflow
    from mlflow.tracking import MlflowClient
    search = MlflowClient.search_runs
    def slow_search(self, *args, **kwargs):
        found = search(self, *args, **kwargs)
        time.sleep(1.5)
        return found
    MlflowClient.search_runs = slow_search
    from fahr_core.values import JobHandle, JobResult, MetricPoint, TrackedJob
    job = TrackedJob(job_name=sys.argv[2], model_tag="i18revtrack/train", driver="local",
                     hyperparameters=json.loads(sys.argv[3]), created=1.0)
    fahr_mlflow.job_started(job)
    fahr_mlflow.job_metrics(job, [MetricPoint("loss", 1 / (i + 1), i, 2.0 + i, "algo-1") for i in range(3)], True)
    fahr_mlflow.job_ended(job, JobResult(job=JobHandle(driver="local", job_name=job.job_name, model_tag=job.model_tag), status="Completed"))
""")

READ = textwrap.dedent("""\
    import json, sys
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=sys.argv[1])
    print(json.dumps([{"status": run.info.status, "params": run.data.params, "tags": run.data.tags,
                       "loss": [[m.step, m.value] for m in client.get_metric_history(run.info.run_id, "loss")]}
                      for experiment in client.search_experiments()
                      for run in client.search_runs([experiment.experiment_id])]))
""")


def tell(store, job, hyperparameters=None) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_ALLOW_FILE_STORE"}
    return subprocess.Popen([sys.executable, "-c", TELL, store.as_uri(), job, json.dumps(hyperparameters or {})],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def runs(store) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", READ, store.as_uri()], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_two_processes_telling_one_job_at_once_make_one_run(tmp_path):
    store = tmp_path / "store"
    both = [tell(store, "i18revtrack-train-1"), tell(store, "i18revtrack-train-1")]
    for proc in both:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    (run,) = runs(store)
    assert run["status"] == "FINISHED" and run["loss"] == [[0, 1.0], [1, 0.5], [2, 1 / 3]]  # each point once


def test_hyperparameters_mlflow_refuses_are_one_warning_and_the_run_is_still_found_by_its_job(tmp_path):
    store = tmp_path / "store"
    refused = {"it's": "1", "n" * 300: "2"}
    proc = tell(store, "i18revtrack-train-2", {**refused, "lr": "0.1", "long": "v" * 7000})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    warnings = [line for line in err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("fahr warning MLflow refused hyperparameter \"it's\", "), err
    (run,) = runs(store)
    assert run["params"] == {"lr": "0.1", "long": "v" * 6000}
    assert run["tags"]["fahr.job"] == "i18revtrack-train-2" and run["status"] == "FINISHED"
    again = tell(store, "i18revtrack-train-2", {**refused, "lr": "0.1"})  # a second `fahr wait`: the same run
    assert again.wait(timeout=120) == 0
    assert len(runs(store)) == 1
