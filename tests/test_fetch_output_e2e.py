"""The everyday loop's output on the real local driver: `fetch --output` of a job that wrote
/opt/ml/output/data, `--quiet`, and fahr's status lines in the order things happen. One image
(the project i17output/train.py), built once for the module; each fit after it is a few seconds."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from conftest import run_fahr

pytestmark = pytest.mark.docker

TAG = "i17output/train"
SCRIPT = textwrap.dedent("""\
    import json, os, sys
    hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
    os.makedirs("/opt/ml/output/data/plots", exist_ok=True)
    open("/opt/ml/output/data/x.txt", "w").write("written by the job")
    open("/opt/ml/output/data/plots/loss.csv", "w").write("epoch,loss\\n1,0.5\\n")
    print("epoch 1 loss 0.5", flush=True)
    if hp.get("fail") == "1":
        sys.exit("failing on purpose")
    os.makedirs("/opt/ml/model", exist_ok=True)
    open("/opt/ml/model/model.txt", "w").write("the model")
""")


@pytest.fixture(scope="module")
def loop(tmp_path_factory, docker_engine):
    """The project, its jobs folder, and its first fit (the module's one image build)."""
    root = tmp_path_factory.mktemp("i17output")
    project = root / "i17output"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(root / "jobs")}
    first = run_fahr("fit", project / "train.py", env=env, cwd=root)
    assert first.returncode == 0, first.stderr
    return {"root": root, "project": project, "env": env, "first": first}


def _job(proc) -> str:
    return re.search(r"launching job (\S+) on driver 'local': accepted", proc.stderr).group(1)


def test_status_lines_come_in_the_order_things_happen(loop):
    lines = [line.strip() for line in loop["first"].stderr.splitlines()]
    job = _job(loop["first"])
    at = {what: next(i for i, line in enumerate(lines) if line.endswith(what))
          for what in ("accepted", f"{job}: Training", f"{job}: Completed")}
    assert at["accepted"] < at[f"{job}: Training"] < at[f"{job}: Completed"], loop["first"].stderr


def test_fetch_output_brings_what_the_job_left_in_output_data(loop):
    root, job = loop["root"], _job(loop["first"])
    run_fahr("fetch", root / "model", TAG, "--job", job, env=loop["env"], cwd=root, check=0)
    proc = run_fahr("fetch", root / "output", TAG, "--job", job, "--output", env=loop["env"], cwd=root, check=0)
    assert (root / "model" / "model.txt").read_text() == "the model"
    assert (root / "output" / "x.txt").read_text() == "written by the job"
    assert (root / "output" / "plots" / "loss.csv").read_text() == "epoch,loss\n1,0.5\n"
    assert not (root / "output" / "model.txt").exists()
    assert f"output of {TAG} (job {job}) is in {root / 'output'}" in proc.stderr


def test_a_failed_jobs_output_comes_back_through_the_python_api(loop, monkeypatch):
    from fahr_core import JobFailed, api

    monkeypatch.setenv("FAHR_LOCAL_OUTPUT_PATH", loop["env"]["FAHR_LOCAL_OUTPUT_PATH"])
    with pytest.raises(JobFailed):
        api.fit(loop["project"] / "train.py", hyperparameters={"fail": 1}, quiet=True)
    [failed] = api.jobs(TAG, status="Failed", limit=1)
    placed = failed.fetch(loop["root"] / "clues", output=True)
    assert (placed / "x.txt").read_text() == "written by the job"


def test_quiet_keeps_the_jobs_output_and_drops_fahrs_lines(loop):
    root = loop["root"]
    fit = run_fahr("fit", loop["project"] / "train.py", "--quiet", env=loop["env"], cwd=root, check=0)
    assert fit.stderr == ""
    assert "epoch 1 loss 0.5" in fit.stdout
    records = [json.loads(p.read_text()) for p in (root / "jobs").glob("*/job.json")]
    job = max((r for r in records if r["status"] == "Completed"), key=lambda r: r["created"])["job_name"]
    assert job != _job(loop["first"])
    wait = run_fahr("wait", job, "--quiet", env=loop["env"], cwd=root, check=0)
    assert wait.stderr == "" and "epoch 1 loss 0.5" in wait.stdout  # a finished job's log, replayed
    fetch = run_fahr("fetch", root / "quiet-out", TAG, "--job", job, "-q", env=loop["env"], cwd=root, check=0)
    assert fetch.stderr == "" and (root / "quiet-out" / "model.txt").is_file()
    # An error still says itself, in one line, under --quiet.
    refused = run_fahr("fetch", root / "quiet-out", TAG, "--job", job, "-q", env=loop["env"], cwd=root)
    assert refused.returncode == 2 and refused.stderr.startswith("fahr error:") and len(refused.stderr.splitlines()) == 1
