"""`fahr sweep` on the emulated SageMaker: one image pushed, a job per point tagged fahr:sweep,
ranked by the metric each printed; `fahr jobs --sweep ID` finds them by that tag (the driver and
configuration from the sweep's record)."""

from __future__ import annotations

import json

import pytest

from aws_emulator.fixtures import run_fahr, sagemaker_args, write_model

pytestmark = pytest.mark.docker

PRINTS = """\
import json
from pathlib import Path
hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
print(f"fahr-metric acc={float(hp['alpha']) / 10}", flush=True)
Path("/opt/ml/model").mkdir(parents=True, exist_ok=True)
Path("/opt/ml/model/weights.txt").write_text(hp["alpha"])
"""


def test_a_sweep_on_sagemaker_tags_its_jobs_and_lists_them_by_sweep(stack, tmp_path):
    model = write_model(tmp_path, "i18sweepsm", PRINTS)
    env = {**stack.env(), "XDG_STATE_HOME": str(tmp_path / "state")}
    swept = run_fahr(stack, "sweep", str(model), *sagemaker_args("sweep"), "--hp", "alpha=1,3", "--hp", "beta=x",
                     "--objective", "acc:max", "--parallel", "2", "--json", cwd=tmp_path, env=env)
    assert swept.code == 0, swept.output
    out = json.loads(swept.stdout)
    board = out["leaderboard"]
    assert [(row["hyperparameters"], row["status"], row["objective"]) for row in board] == [
        ({"alpha": "3"}, "Completed", 0.3), ({"alpha": "1"}, "Completed", 0.1)]
    sm = stack.client("sagemaker")
    for row in board:
        described = sm.describe_training_job(TrainingJobName=row["job"])
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=described["TrainingJobArn"])["Tags"]}
        assert tags["fahr:sweep"] == out["sweep"]
        assert described["HyperParameters"] == {**row["hyperparameters"], "beta": "x"}
    assert swept.stderr.count("pushing") <= 1 or "push" not in swept.stderr
    listed = run_fahr(stack, "jobs", "--sweep", out["sweep"], "--json", cwd=tmp_path, env=env)
    assert listed.code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert sorted(row["job_name"] for row in rows) == sorted(row["job"] for row in board)
    assert all(row["driver"] == "sagemaker" for row in rows)
    assert {row["job_name"]: row["final_metrics"]["acc"] for row in rows} == {row["job"]: row["objective"] for row in board}


SLOW = """\
import time
time.sleep(600)
"""


def test_ctrl_c_on_sagemaker_detaches_and_stop_sweep_stops_them_all(stack, tmp_path):
    import signal
    import subprocess
    import time

    from aws_emulator.fixtures import FAHR

    model = write_model(tmp_path, "i18sweepsmslow", SLOW)
    env = {**stack.env(), "XDG_STATE_HOME": str(tmp_path / "state"), "NO_COLOR": "1"}
    proc = subprocess.Popen([str(FAHR), "sweep", str(model), *sagemaker_args("sweepslow"), "--hp", "alpha=1,2",
                             "--parallel", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sm = stack.client("sagemaker")
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, proc.communicate()
            # Filtered by the service: the emulator serves the whole session's jobs, oldest first,
            # so a first page of 100 held none of these late in a full run.
            mine = [j for j in sm.list_training_jobs(MaxResults=100, NameContains="i18sweepsmslow",
                                                     StatusEquals="InProgress")["TrainingJobSummaries"]]
            if len(mine) == 2:
                break
            assert time.monotonic() < deadline, "the two jobs did not start"
            time.sleep(1)
        time.sleep(2)  # both followed
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    sweep_id = next(line for line in err.splitlines() if "fahr stop --sweep" in line).split("--sweep ")[1].strip()
    assert "detached: its jobs run on" in err
    names = [j["TrainingJobName"] for j in mine]
    assert all(sm.describe_training_job(TrainingJobName=n)["TrainingJobStatus"] == "InProgress" for n in names)
    stopped = run_fahr(stack, "stop", "--sweep", sweep_id, cwd=tmp_path, env=env)  # the record names the driver
    assert stopped.code == 0, stopped.output
    assert sorted(n for n in names if f"stop requested for {n}" in stopped.stderr) == sorted(names)
