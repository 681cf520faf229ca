"""fahr remembers jobs: `fahr jobs`, `fahr logs` and the Python API (fahr_core.fit/jobs/job/fetch),
on the local driver with a real Docker engine and the real `fahr` console script."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import time
from datetime import timezone
from pathlib import Path

import pytest

from conftest import run_fahr

# Prints ticks (each host names itself), fails when asked: one script makes every job here.
TICKER = textwrap.dedent("""\
    import json, os, sys, time
    from pathlib import Path
    ml = Path("/opt/ml")
    hp = json.loads((ml / "input/config/hyperparameters.json").read_text())
    host = json.loads((ml / "input/config/resourceconfig.json").read_text())["current_host"]
    for i in range(int(hp.get("ticks", "3"))):
        print(f"tick {i} on {host}", flush=True)
        time.sleep(float(hp.get("pause", "0")))
    if hp.get("fail") == "1":
        (ml / "output").mkdir(parents=True, exist_ok=True)
        (ml / "output/failure").write_text("asked to fail (fail=1)")
        print("failing as asked", flush=True)
        sys.exit(1)
    (ml / "model").mkdir(parents=True, exist_ok=True)
    (ml / "model/model.json").write_text(json.dumps({"host": host}))
""")


def _project(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "train.py").write_text(TICKER)
    return folder / "train.py"


@pytest.fixture(scope="module")
def made(tmp_path_factory, docker_engine):
    """Three jobs in one output folder: ticker/train ok, other/train ok, ticker/train failed."""
    root = tmp_path_factory.mktemp("remember")
    out = root / "jobs"
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(out)}
    ticker, other = _project(root, "ticker"), _project(root, "other")
    names = []
    for script, extra, code in ((ticker, [], 0), (other, [], 0), (ticker, ["--hp", "fail=1"], 1)):
        run_fahr("fit", script, *extra, env=env, cwd=root, check=code)
        names.append(_newest(out))
    return {"root": root, "out": out, "env": env, "ticker": ticker, "names": names}


def _newest(out: Path) -> str:
    records = [json.loads(p.read_text()) for p in out.glob("*/job.json")]
    return max(records, key=lambda r: r["created"])["job_name"]


def _jobs_json(made, *args) -> list[dict]:
    proc = run_fahr("jobs", "--json", *args, env=made["env"], cwd=made["root"], check=0)
    return json.loads(proc.stdout)


@pytest.mark.docker
def test_jobs_are_listed_newest_first_and_filtered(made):
    first, second, failed = made["names"]
    rows = _jobs_json(made)
    assert [r["job_name"] for r in rows] == [failed, second, first]
    assert [r["model_tag"] for r in rows] == ["ticker/train", "other/train", "ticker/train"]
    assert [r["status"] for r in rows] == ["Failed", "Completed", "Completed"]
    assert "asked to fail" in rows[0]["failure_reason"] and rows[0]["model_artifact"] == ""
    assert rows[2]["model_artifact"] == str(made["out"] / first / "output" / "model.tar.gz")
    for row in rows:  # ISO 8601 times, in UTC; seconds where the driver knows them
        assert row["started"].endswith("+00:00") and row["ended"] >= row["started"]
        assert row["billable_seconds"] is not None and row["billable_seconds"] >= 0
    assert [r["job_name"] for r in _jobs_json(made, "ticker/train")] == [failed, first]
    assert [r["job_name"] for r in _jobs_json(made, "--status", "Completed")] == [second, first]
    assert [r["job_name"] for r in _jobs_json(made, "ticker/train", "--status", "failed")] == [failed]
    assert [r["job_name"] for r in _jobs_json(made, "--limit", "1")] == [failed]
    assert _jobs_json(made, "nobody/train") == []

    table = run_fahr("jobs", env=made["env"], cwd=made["root"], check=0).stdout.splitlines()
    # --hp fail=1 of one job alone: the hyperparameter that differs between the listed jobs
    assert table[0].split() == ["JOB", "TAG", "STATUS", "STARTED", "DURATION", "BILLABLE", "fail", "PROJECT"]
    assert [line.split()[0] for line in table[1:]] == [failed, second, first]
    assert table[1].split()[1:3] == ["ticker/train", "Failed"] and "ago)" in table[1]
    table = run_fahr("jobs", "ticker/train", "--status", "Completed", env=made["env"], cwd=made["root"], check=0)
    assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == [first]


@pytest.mark.docker
def test_logs_replay_a_finished_job(made):
    first, _, failed = made["names"]
    proc = run_fahr("logs", first, env=made["env"], cwd=made["root"], check=0)
    assert proc.stdout.splitlines() == [f"tick {i} on algo-1" for i in range(3)]  # one host: no prefix
    proc = run_fahr("logs", failed, env=made["env"], cwd=made["root"], check=0)
    assert proc.stdout.splitlines()[-1] == "failing as asked"
    proc = run_fahr("logs", "no-such-job-1", env=made["env"], cwd=made["root"], check=2)
    assert proc.stderr.count("\n") == 1 and "no local job record" in proc.stderr


@pytest.mark.docker
def test_logs_follow_a_running_job_to_its_end_and_filter_a_host(made, docker_engine):
    ticks = 8
    run_fahr("fit", made["ticker"], "--detach", "--config.instance_count=2", "--hp", f"ticks={ticks}",
             "--hp", "pause=0.5", env=made["env"], cwd=made["root"], check=0)
    name = _newest(made["out"])
    try:
        started = time.monotonic()
        proc = run_fahr("logs", name, "--follow", env=made["env"], cwd=made["root"], timeout=120, check=0)
        assert time.monotonic() - started > 2  # it followed, rather than printing what was there
        lines = proc.stdout.splitlines()
        for host in ("algo-1", "algo-2"):  # every tick of each host, in order, prefixed with its host
            assert [line for line in lines if line.startswith(f"[{host}] ")] == \
                [f"[{host}] tick {i} on {host}" for i in range(ticks)]
        assert len(lines) == 2 * ticks
        # Still InProgress for fahr until `fahr wait` finishes it: then the saved logs replay.
        run_fahr("wait", name, env=made["env"], cwd=made["root"], check=0)
        proc = run_fahr("logs", name, "--host", "algo-2", env=made["env"], cwd=made["root"], check=0)
        assert proc.stdout.splitlines() == [f"tick {i} on algo-2" for i in range(ticks)]
        proc = run_fahr("logs", name, "--host", "nohost", env=made["env"], cwd=made["root"], check=2)
        assert "algo-N" in proc.stderr
    finally:
        run_fahr("stop", name, env=made["env"], cwd=made["root"])


@pytest.mark.docker
def test_the_python_api_fits_lists_and_fetches_quietly(made, tmp_path, capfd, monkeypatch):
    import fahr_core

    monkeypatch.chdir(made["root"])
    config = {"output_path": str(made["out"])}
    capfd.readouterr()
    job = fahr_core.fit(made["ticker"], config=config, hyperparameters={"ticks": 2}, quiet=True)
    assert capfd.readouterr() == ("", "")  # quiet: no status line, no log line
    assert job.status == "Completed" and job.model_tag == "ticker/train" and job.driver == "local"
    assert job.started.tzinfo == timezone.utc and job.ended >= job.started
    newest = fahr_core.jobs("ticker/train", config=config)[0]
    assert newest.name == job.name and newest.status == "Completed"
    assert fahr_core.job(job.name, config=config).model_artifact == job.model_artifact
    assert list(job.logs()) == ["tick 0 on algo-1", "tick 1 on algo-1"]
    placed = job.fetch(tmp_path / "model")
    assert json.loads((placed / "model.json").read_text()) == {"host": "algo-1"}
    assert capfd.readouterr() == ("", "")  # the job was made quiet: so are its methods
    fahr_core.fetch(tmp_path / "again", "ticker/train", config=config)  # the newest completed job's
    assert "model of ticker/train is in" in capfd.readouterr().err  # not quiet: it says where

    with pytest.raises(fahr_core.JobFailed, match="asked to fail"):
        fahr_core.fit(made["ticker"], config=config, hyperparameters={"fail": 1}, quiet=True)
    assert fahr_core.jobs(config=config, status="Failed", limit=1)[0].failure_reason.startswith("asked to fail")
    with pytest.raises(fahr_core.UsageError):
        fahr_core.job("no-such-job-1", config=config)


@pytest.mark.docker
def test_a_job_keeps_the_session_of_its_project_from_another_folder(made, tmp_path, monkeypatch):
    """A project whose fahr.toml (beside train.py) sets output_path, fitted through the API from
    another folder, once returned a Job whose logs(), refresh(), fetch(), stop() and wait() all
    failed with "no local job record" (they opened a session in the current folder, without that
    fahr.toml), whose created was None, and whose detached job could not be stopped."""
    import fahr_core

    script = _project(tmp_path, "keptsession")
    out = tmp_path / "the-project-s-jobs"
    (script.parent / "fahr.toml").write_text(f"[local]\noutput_path = {json.dumps(str(out))}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("FAHR_LOCAL_OUTPUT_PATH", raising=False)

    job = fahr_core.fit(script, hyperparameters={"ticks": 1}, quiet=True)
    assert job.status == "Completed" and (out / job.name / "job.json").is_file()
    assert job.created is not None and job.started is not None
    assert list(job.logs()) == ["tick 0 on algo-1"]
    assert job.refresh().status == "Completed"
    assert job.wait().status == "Completed"
    placed = job.fetch(tmp_path / "model")
    assert json.loads((placed / "model.json").read_text()) == {"host": "algo-1"}
    assert job.stop() is False  # it has ended
    again = pickle.loads(pickle.dumps(job))  # opens the same project's session anew
    assert again.refresh().status == "Completed" and list(again.logs()) == ["tick 0 on algo-1"]

    running = fahr_core.fit(script, hyperparameters={"ticks": 600, "pause": "0.5"}, wait=False, quiet=True)
    assert running.status == "InProgress" and running.created is not None
    assert running.stop() is True
    with pytest.raises(fahr_core.JobFailed, match="stopped"):
        running.wait()
    assert running.status == "Stopped"
    assert list(elsewhere.iterdir()) == []  # nothing was looked for, or left, in the current folder


@pytest.mark.docker
def test_none_in_the_api_means_not_set_in_a_real_fit(made, tmp_path, monkeypatch):
    """config={"output_path": None} once made a folder ./None and kept the job there; a channel
    or a hyperparameter None reached the job as the text "None"."""
    import fahr_core

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAHR_LOCAL_OUTPUT_PATH", str(made["out"]))
    job = fahr_core.fit(made["ticker"], config={"output_path": None}, inputs={"train": None},
                        hyperparameters={"ticks": 1, "pause": None}, environment={"SEED": None}, quiet=True)
    assert job.status == "Completed" and not (tmp_path / "None").exists()
    record = json.loads((made["out"] / job.name / "job.json").read_text())  # the default folder's
    assert record["channels"] == {} and record["hyperparameters"] == {"ticks": "1"}
    assert "SEED" not in record["environment"]


@pytest.mark.docker
def test_a_notebook_fits_through_the_api(made, tmp_path):
    import nbformat

    code = (f"import fahr_core\n"
            f"job = fahr_core.fit({str(made['ticker'])!r}, config={{'output_path': {str(made['out'])!r}}})\n"
            f"print('status', job.status, job.name)")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source, executed = tmp_path / "fit.ipynb", tmp_path / "fit-out.ipynb"
    nbformat.write(notebook, source)
    before = {r["job_name"] for r in _jobs_json(made)}
    proc = subprocess.run([sys.executable, "-m", "papermill", str(source), str(executed), "-k", "python3"],
                          capture_output=True, text=True, cwd=made["root"], timeout=600,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = nbformat.read(executed, as_version=4).cells[0].outputs
    printed = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    line = next(line for line in printed.splitlines() if line.startswith("status "))
    _, status, name = line.split()
    assert status == "Completed" and name not in before
    assert _jobs_json(made, "ticker/train")[0]["job_name"] == name


def test_a_driver_without_the_hooks_says_so_in_one_line(fahr, tmp_path):
    proc = fahr("jobs", "--train-driver", "testdrv", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "fahr error: driver 'testdrv' cannot list jobs (it does not implement list_jobs)\n"
    proc = fahr("logs", "some-job-1", "--train-driver", "testdrv", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "fahr error: driver 'testdrv' cannot read logs (it does not implement logs)\n"


def test_a_bad_record_is_skipped_with_one_warning(fahr, tmp_path):
    out = tmp_path / "jobs"
    for name, created, status in (("a-1", 100.0, "Completed"), ("b-1", 300.0, "Failed"), ("c-1", 200.0, "Completed")):
        (out / name).mkdir(parents=True)
        record = {"job_name": name, "model_tag": "m/train", "status": status, "image": "x:1",
                  "created": created, "started": created + 1, "ended": created + 11}
        (out / name / "job.json").write_text(json.dumps(record))
    (out / "broken-1").mkdir()
    (out / "broken-1" / "job.json").write_text("{not json")
    proc = fahr("jobs", "--json", f"--config.output_path={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["job_name"] for r in rows] == ["b-1", "c-1", "a-1"]
    assert rows[0]["training_seconds"] == 10 and rows[0]["duration_seconds"] == 10
    warnings = proc.stderr.splitlines()
    assert len(warnings) == 1 and "skipping" in warnings[0] and "broken-1" in warnings[0]


def _fake_jobs(out: Path, *names: str) -> None:
    for i, name in enumerate(names):
        (out / name).mkdir(parents=True)
        (out / name / "job.json").write_text(json.dumps(
            {"job_name": name, "model_tag": "m/train", "status": "Completed", "image": "x:1", "created": 100.0 + i}))


def test_the_api_config_is_layered_over_the_environment_as_cli_pairs(tmp_path, monkeypatch):
    import fahr_core

    _fake_jobs(tmp_path / "from-env", "env-1")
    _fake_jobs(tmp_path / "from-dict", "dict-1", "dict-2")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAHR_LOCAL_OUTPUT_PATH", str(tmp_path / "from-env"))
    assert [j.name for j in fahr_core.jobs()] == ["env-1"]
    assert [j.name for j in fahr_core.jobs(config={"output_path": tmp_path / "from-dict"})] == ["dict-2", "dict-1"]
    with pytest.raises(fahr_core.ConfigError, match="stop_timeout"):  # typed as the CLI's strings are
        fahr_core.jobs(config={"stop_timeout": "soon"})
    with pytest.raises(fahr_core.ConfigError):
        fahr_core.jobs(config={"no_such_key": 1})
    with pytest.raises(fahr_core.UsageError, match="expected one of"):
        fahr_core.jobs(status="Done")
    assert fahr_core.jobs(status="completed", limit=1)[0].name == "env-1"


def test_quiet_mutes_status_and_log_lines_and_nests(capsys):
    from fahr_core import ui

    with ui.quiet():
        with ui.quiet():
            ui.info("hidden")
        ui.log_line("hidden too", "algo-1")
        ui.warn("and this")
    assert capsys.readouterr() == ("", "")
    ui.log_line("shown")
    ui.info("said")
    out, err = capsys.readouterr()
    assert out == "shown\n" and "said" in err
