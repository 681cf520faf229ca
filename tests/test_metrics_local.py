"""A local job's metrics, end to end: printed both ways (the fahr-metric convention and a regex of
--metric or fahr.toml's [metrics]), kept in the job's folder, read back by a later process through
the Python API; complete for a detached job; kept up to the kill of a fit killed mid-job. A bad
definition is refused before any build, in one line."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import remove_local_jobs, FAHR, one_line_error, run_fahr
from test_detached import job_of, until

# Prints STEPS steps of metrics both ways, then sleeps SLEEP seconds and saves a model.
SCRIPT = textwrap.dedent("""\
    import json, time
    hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
    for step in range(int(hp.get("steps", "3"))):
        print(f"fahr-metric loss={1 / (step + 1)} step={step}", flush=True)
        print(f"epoch {step}: val_loss={2 / (step + 1)} acc: {0.5 + step / 10}", flush=True)
        print("fahr-metric loss=broken step=x", flush=True)  # malformed: ignored
    time.sleep(float(hp.get("sleep", "0")))
    open("/opt/ml/model/model.txt", "w").write("trained")
""")


@pytest.fixture(scope="module")
def made(tmp_path_factory, docker_engine):
    root = tmp_path_factory.mktemp("metrics")
    project = root / f"i18metrics{secrets.token_hex(3)}"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    (project / "fahr.toml").write_text('[metrics]\nacc = "acc: (\\\\S+)"\n')
    jobs = root / "jobs"
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(jobs)}
    yield {"project": project, "jobs": jobs, "env": env}
    remove_local_jobs(jobs, docker_engine, f"{project.name}/train:latest")


def read_back(made, job: str) -> dict:
    """The job's metrics as another process reads them through the Python API."""
    code = ("import json, sys, fahr_core\n"
            "job = fahr_core.job(sys.argv[1], driver='local', config={'output_path': sys.argv[2]})\n"
            "listed = [j for j in fahr_core.jobs(driver='local', config={'output_path': sys.argv[2]}) if j.name == job.name][0]\n"
            "print(json.dumps({'series': {k: [[p.value, p.step, p.host, p.time] for p in v] for k, v in job.metrics.items()},\n"
            "                  'final': job.final_metrics, 'hp': job.hyperparameters,\n"
            "                  'listed': [listed.final_metrics, listed.hyperparameters]}))\n")
    proc = subprocess.run([sys.executable, "-c", code, job, str(made["jobs"])], capture_output=True, text=True,
                          cwd=made["project"].parent, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def status_of(made, job: str) -> str:
    return json.loads((made["jobs"] / job / "job.json").read_text())["status"]


@pytest.mark.docker
def test_a_fits_metrics_both_ways_are_kept_and_read_back_by_a_later_process(made):
    proc = run_fahr("fit", made["project"] / "train.py", "--hp", "steps=3", "--hp", "alpha=0.5",
                    "--metric", r"val_loss=val_loss=(\S+)", env=made["env"], check=0)
    job = job_of(proc.stderr)
    got = read_back(made, job)
    assert {name: [v for v, *_ in series] for name, series in got["series"].items()} == {
        "loss": [1.0, 0.5, 1 / 3], "val_loss": [2.0, 1.0, 2 / 3], "acc": [0.5, 0.6, 0.7]}
    assert [step for _, step, _, _ in got["series"]["loss"]] == [0, 1, 2]
    assert {host for series in got["series"].values() for _, _, host, _ in series} == {"algo-1"}
    assert all(isinstance(t, float) for series in got["series"].values() for *_, t in series)
    assert got["final"] == {"loss": 1 / 3, "val_loss": 2 / 3, "acc": 0.7}
    assert got["hp"] == {"steps": "3", "alpha": "0.5"}
    assert got["listed"] == [got["final"], got["hp"]]  # the same on the jobs fahr_core.jobs() returns


@pytest.mark.docker
def test_a_detached_jobs_metrics_are_complete(made):
    proc = run_fahr("fit", made["project"] / "train.py", "--detach", "--hp", "steps=5", "--hp", "sleep=1",
                    "--metric", r"val_loss=val_loss=(\S+)", env=made["env"], check=0)
    job = job_of(proc.stderr)
    until(lambda: status_of(made, job) == "Completed", 60, "the follower finishes the job")
    got = read_back(made, job)
    assert {name: len(series) for name, series in got["series"].items()} == {"loss": 5, "val_loss": 5, "acc": 5}
    assert got["final"] == {"loss": 0.2, "val_loss": 0.4, "acc": 0.9}
    times = [t for *_, t in got["series"]["loss"]]
    assert times == sorted(times) and times[-1] - times[0] < 30  # the engine's own times of the lines


@pytest.mark.docker
def test_a_running_detached_jobs_points_are_at_the_times_they_were_printed(made, docker_engine):
    import time

    # Its own jobs folder: the module's other tests count the jobs in theirs.
    own = {**made, "jobs": made["jobs"].parent / "running-jobs"}
    own["env"] = {**made["env"], "FAHR_LOCAL_OUTPUT_PATH": str(own["jobs"])}
    proc = run_fahr("fit", made["project"] / "train.py", "--detach", "--hp", "steps=2", "--hp", "sleep=60",
                    env=own["env"], check=0)
    job = job_of(proc.stderr)
    try:
        until(lambda: len(read_back(own, job)["series"].get("loss", [])) == 2, 60, "the job prints its metrics")
        time.sleep(2)
        before = time.time()
        first = read_back(own, job)["series"]
        time.sleep(1.5)
        again = read_back(own, job)["series"]
        assert status_of(own, job) == "InProgress"
        # Read from a running job nobody follows: each point at its line's time, the same at every read.
        assert first == again
        assert all(t < before for series in first.values() for *_, t in series), first
    finally:
        run_fahr("stop", job, env=own["env"], check=None)
        remove_local_jobs(own["jobs"], docker_engine, "")


@pytest.mark.docker
def test_a_killed_fit_keeps_what_was_printed(made):
    full_env = {**os.environ, "NO_COLOR": "1", **made["env"]}
    fit = subprocess.Popen([str(FAHR), "fit", made["project"] / "train.py", "--hp", "steps=2", "--hp", "sleep=60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    try:
        live = lambda: [p for p in made["jobs"].glob("*/metrics.live.jsonl") if len(p.read_text().splitlines()) >= 4]
        found = until(live, 120, "the fit keeps the job's metrics as they are printed")
        fit.send_signal(signal.SIGKILL)
        fit.wait(timeout=30)
    finally:
        if fit.poll() is None:
            fit.kill()
    job = found[0].parent.name
    assert status_of(made, job) == "InProgress"  # its follower finishes it later
    got = read_back(made, job)
    assert got["final"] == {"loss": 0.5, "acc": 0.6}
    run_fahr("stop", job, env=made["env"], check=0)
    got = read_back(made, job)  # stopped: the series read whole from its containers' logs
    assert got["final"] == {"loss": 0.5, "acc": 0.6}
    assert len(got["series"]["loss"]) == 2


@pytest.mark.parametrize("args, words", [
    (["--metric", r"loss=(\S+) (\S+)"], "2 capture groups"),
    (["--metric", "loss=no group"], "0 capture groups"),
    (["--metric", "loss=(unclosed"], "not a regular expression"),
    (["--metric", "step=(x)"], "'step' is the convention's step"),
    (["--metric", "9=(x)"], "a metric's name"),
])
def test_a_bad_metric_is_refused_before_any_build(made, tmp_path, args, words):
    project = tmp_path / "i18metricsrefused"
    project.mkdir()
    (project / "train.py").write_text("print('never')\n")
    proc = run_fahr("fit", project / "train.py", *args, env={"FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs")})
    line = one_line_error(proc, 2)
    assert line.startswith("fahr error: --metric") and words in line, line
    assert not (project / "Dockerfile").exists() and not (tmp_path / "jobs").exists()


@pytest.mark.parametrize("toml, words", [
    ('[metrics]\nloss = "(a)(b)"\n', "2 capture groups"),
    ('[metrics]\nloss = 3\n', "must be a regular expression"),
    ('metrics = "loss"\n', "[metrics] must be a table"),
])
def test_a_bad_metrics_table_is_refused_before_any_build(tmp_path, toml, words):
    project = tmp_path / "i18metricsrefused"
    project.mkdir()
    (project / "train.py").write_text("print('never')\n")
    (project / "fahr.toml").write_text(toml)
    proc = run_fahr("fit", project / "train.py", env={"FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs")})
    line = one_line_error(proc, 2)
    assert "fahr.toml" in line and words in line, line
    assert not (project / "Dockerfile").exists()


@pytest.mark.docker
def test_fahr_jobs_shows_differing_hyperparameters_and_last_metrics_and_sorts_by_one(made):
    """(After the jobs above: a fit of steps=3, a detached one of steps=5, a killed one of steps=2.)"""
    listed = run_fahr("jobs", "--json", env=made["env"], cwd=made["project"].parent, check=0)
    rows = {row["hyperparameters"]["steps"]: row for row in json.loads(listed.stdout)}
    assert rows["3"]["hyperparameters"] == {"steps": "3", "alpha": "0.5"}
    assert rows["3"]["final_metrics"] == {"loss": 1 / 3, "val_loss": 2 / 3, "acc": 0.7}
    assert rows["5"]["final_metrics"] == {"loss": 0.2, "val_loss": 0.4, "acc": 0.9}

    def order(*args):
        proc = run_fahr("jobs", *args, env=made["env"], cwd=made["project"].parent, check=0)
        return proc.stdout.splitlines()

    def column(table, name):  # the cells under a header (left-aligned columns)
        start = table[0].index(f"  {name} ") + 2
        return [line[start:].split()[0] for line in table[1:]]

    table = order("--sort", "loss")
    header = table[0].split()
    # steps, alpha and sleep differ between the jobs; every metric's last value has a column
    assert header[header.index("BILLABLE") + 1:] == ["alpha", "sleep", "steps", "acc", "loss", "val_loss", "PROJECT"]
    assert column(table, "loss") == ["0.2", "0.3333", "0.5"]
    assert column(table, "steps") == ["5", "3", "2"] and column(table, "alpha") == ["-", "0.5", "-"]
    assert column(order("--sort", "-acc"), "steps") == ["5", "3", "2"]
    assert column(order("--sort", "-loss"), "steps") == ["2", "3", "5"]
    proc = run_fahr("jobs", "--sort", "nope", env=made["env"], cwd=made["project"].parent)
    assert "no listed job has a metric 'nope'; they have acc, loss, val_loss" in one_line_error(proc, 2)
