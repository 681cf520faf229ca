"""`fahr sweep` end to end on the local driver, the real CLI and real containers: a grid at
--parallel 2 whose leaderboard's best is the job whose own recorded objective is best, its model
fetched, a failing job among the others; Ctrl-C mid-sweep leaves no container, and --resume
launches only what is missing; --detach, `jobs --sweep`, `stop --sweep`; a seeded random sweep
draws the same points again. Bad input is one line, exit 2, before any build."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import FAHR, one_line_error, remove_local_jobs, run_fahr
from test_detached import until

# val_loss ends at |lr - 0.01| * layers + 1/3: lr 0.01 is best, the fewer layers the better
# elsewhere; one point (FAIL) fails. A point sleeps SLEEP s unless /opt/ml/input/data/data/fast exists.
SCRIPT = textwrap.dedent("""\
    import json, os, sys, time
    hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
    lr, layers = float(hp.get("lr", "0.01")), int(hp.get("layers", "1"))
    print("began", time.time(), flush=True)
    if hp.get("fail") == f"{hp.get('lr')}/{hp.get('layers')}":
        sys.exit("boom: this point fails")
    slow = float(hp.get("sleep", "0"))
    if slow and not os.path.exists("/opt/ml/input/data/data/fast"):
        time.sleep(slow)
    for step in range(3):
        print(f"fahr-metric val_loss={abs(lr - 0.01) * layers + 1 / (step + 1)} step={step}", flush=True)
        time.sleep(0.2)
    open("/opt/ml/model/model.txt", "w").write(f"lr={hp.get('lr')} layers={hp.get('layers')}")
    print("done", time.time(), flush=True)
""")


@pytest.fixture(scope="module")
def made(tmp_path_factory, docker_engine):
    root = tmp_path_factory.mktemp("sweep")
    project = root / f"i18sweep{secrets.token_hex(3)}"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    jobs = root / "jobs"
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(jobs), "XDG_STATE_HOME": str(root / "state")}
    yield {"root": root, "project": project, "jobs": jobs, "env": env}
    remove_local_jobs(jobs, docker_engine, f"{project.name}/train:latest")


def records(made, sweep_id: str) -> list[dict]:
    found = []
    for record in made["jobs"].glob("*/job.json"):
        data = json.loads(record.read_text())
        if data.get("sweep") == sweep_id:
            found.append(data)
    return sorted(found, key=lambda r: r["created"])


def sweep(made, *args, check=None, cwd=None):
    return run_fahr("sweep", *args, env=made["env"], cwd=cwd or made["root"], check=check)


def board_of(proc) -> dict:
    return json.loads(proc.stdout)


def final_metrics(made, names: list[str]) -> dict:
    """Each job's own recorded metrics, as another process reads them (Job.final_metrics)."""
    code = ("import json, sys, fahr_core\n"
            "config = {'output_path': sys.argv[1]}\n"
            "print(json.dumps({n: fahr_core.job(n, driver='local', config=config).final_metrics for n in sys.argv[2:]}))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(made["jobs"]), *names], capture_output=True, text=True,
                          timeout=120, cwd=made["root"])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.docker
def test_a_grid_at_parallel_2_ranks_by_the_jobs_own_metrics_fetches_the_best_and_survives_a_failure(made):
    target = made["root"] / "best-model"
    proc = sweep(made, made["project"] / "train.py", "--hp", "lr=0.1,0.01,0.001", "--hp", "layers=2,4",
                 "--hp", "fail=0.1/4", "--objective", "val_loss:min", "--parallel", "2", "--fetch", target, "--json",
                 check=0)
    out = board_of(proc)
    board = out["leaderboard"]
    assert len(board) == 6 and out["objective"] == "val_loss:min"
    jobs = records(made, out["sweep"])
    assert len(jobs) == 6
    assert len({r["image"] for r in jobs}) == 1  # one image for all
    assert proc.stderr.count("building image") <= 1
    assert {(r["hyperparameters"]["lr"], r["hyperparameters"]["layers"]) for r in jobs} == {
        (lr, layers) for lr in ("0.1", "0.01", "0.001") for layers in ("2", "4")}
    assert all(r["hyperparameters"]["fail"] == "0.1/4" for r in jobs)  # a fixed --hp goes to every job
    # the failing job did not stop the others; its failure line is in the table and the board
    failed = [row for row in board if row["status"] == "Failed"]
    assert [row["hyperparameters"] for row in failed] == [{"lr": "0.1", "layers": "4"}]
    assert "boom: this point fails" in failed[0]["failure"] and "boom: this point fails" in proc.stderr
    completed = [row for row in board if row["status"] == "Completed"]
    assert len(completed) == 5 and board[-1]["status"] == "Failed"
    # the best is the job whose own recorded objective is best; the board is ranked by it
    own = final_metrics(made, [row["job"] for row in completed])
    best_job = min(own, key=lambda name: own[name]["val_loss"])
    assert board[0]["job"] == best_job and board[0]["rank"] == 1
    assert [row["objective"] for row in completed] == sorted(own[row["job"]]["val_loss"] for row in completed)
    assert board[0]["hyperparameters"]["lr"] == "0.01"
    best_record = next(r for r in jobs if r["job_name"] == best_job)
    assert (target / "model.txt").read_text() == (f"lr={best_record['hyperparameters']['lr']} "
                                                  f"layers={best_record['hyperparameters']['layers']}")
    # never more than 2 at once: the containers' own run times, as the jobs printed them
    spans = []
    for r in jobs:
        words = dict(line.split()[:2] for line in (made["jobs"] / r["job_name"] / "logs" / "algo-1.log")
                     .read_text().splitlines() if line.startswith(("began", "done")))
        spans.append((float(words["began"]), float(words.get("done", words["began"]))))
    for began, _ in spans:
        assert sum(1 for b, d in spans if b <= began <= d) <= 2
    # `fahr jobs --sweep ID` lists them with their hyperparameters and metrics
    listed = run_fahr("jobs", "--sweep", out["sweep"], "--json", env=made["env"], cwd=made["root"], check=0)
    rows = json.loads(listed.stdout)
    assert sorted(row["job_name"] for row in rows) == sorted(r["job_name"] for r in jobs)
    assert {row["job_name"]: row["final_metrics"].get("val_loss") for row in rows if row["status"] == "Completed"} == {
        name: metrics["val_loss"] for name, metrics in own.items()}
    table = run_fahr("jobs", "--sweep", out["sweep"], env=made["env"], cwd=made["root"], check=0)
    assert "val_loss" in table.stdout.splitlines()[0] and "layers" in table.stdout.splitlines()[0]


@pytest.mark.docker
def test_each_point_keeps_its_checkpoints_in_a_folder_of_its_own(made):
    # A project that checkpoints (the model template's fahr.toml does): jobs running at once must
    # not share the folder (the second was refused), nor a point resume from another's.
    checkpoints = made["root"] / "ckpt"
    proc = sweep(made, made["project"] / "train.py", "--hp", "lr=0.01,0.02", "--objective", "val_loss:min",
                 "--parallel", "2", f"--config.checkpoint_path={checkpoints}", "--json", check=0)
    sweep_id = board_of(proc)["sweep"]
    done = records(made, sweep_id)
    assert [r["status"] for r in done] == ["Completed", "Completed"], proc.stderr
    by_lr = {r["hyperparameters"]["lr"]: Path(r["checkpoint_path"]) for r in done}
    assert by_lr == {"0.01": checkpoints / sweep_id / "0", "0.02": checkpoints / sweep_id / "1"}
    assert all(folder.is_dir() for folder in by_lr.values())
    # fahr metrics --sweep charts (here: lists) the sweep's jobs' metrics, found as jobs --sweep finds them
    rows = json.loads(run_fahr("metrics", "--sweep", sweep_id, "--json", env=made["env"], cwd=made["root"], check=0).stdout)
    assert {row["job"] for row in rows} == {r["job_name"] for r in done}
    assert {row["metric"] for row in rows} == {"val_loss"} and len(rows) == 6


def test_ctrl_c_stops_every_job_leaving_no_container_and_resume_launches_only_the_missing(made):
    data = made["root"] / "data"
    data.mkdir()
    (data / "x").write_text("x")
    proc = subprocess.Popen([str(FAHR), "sweep", made["project"] / "train.py", "--hp", "sleep=0,120,121,122",
                             "--hp", "lr=0.01", "--parallel", "2", "--objective", "val_loss:min",
                             "--input", f"data={data}"],
                            env={**os.environ, **made["env"], "NO_COLOR": "1"}, cwd=made["root"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def slow_ones_running():
            assert proc.poll() is None, proc.communicate()
            found = [r for r in map(json.loads, (p.read_text() for p in made["jobs"].glob("*/job.json")))
                     if r.get("sweep") and r["hyperparameters"].get("sleep") != "0" and r["status"] == "InProgress"
                     and r.get("started")]
            done = [r for p in made["jobs"].glob("*/job.json") for r in [json.loads(p.read_text())]
                    if r.get("sweep") and r["hyperparameters"].get("sleep") == "0" and r["status"] == "Completed"]
            return found if len(found) == 2 and done else None

        running = until(slow_ones_running, 120, "the quick point done and two slow ones running")
        sweep_id = running[0]["sweep"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert f"fahr sweep --resume {sweep_id}" in err
    jobs = records(made, sweep_id)
    assert len(jobs) == 3  # the fourth point was never launched
    for r in jobs:  # nothing left behind
        left = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=fahr.job={r['job_name']}"],
                              capture_output=True, text=True, check=True).stdout
        assert left == "", r["job_name"]
    assert sorted(r["status"] for r in jobs) == ["Completed", "Stopped", "Stopped"]

    # --resume: the completed point is kept, the stopped and never launched ones launched (quick now)
    (data / "fast").write_text("")
    resumed = sweep(made, "--resume", sweep_id, "--json", "-q", check=0)
    board = board_of(resumed)["leaderboard"]
    assert [row["status"] for row in board] == ["Completed"] * 4
    quick = next(r for r in jobs if r["status"] == "Completed")
    assert quick["job_name"] in [row["job"] for row in board]  # not launched again
    after = records(made, sweep_id)
    assert len(after) == 6  # 3 before, 3 launched by the resume
    assert sorted(r["hyperparameters"]["sleep"] for r in after[3:]) == ["120", "121", "122"]


@pytest.mark.docker
def test_detach_a_seeded_random_sweep_draws_the_same_points_and_stop_sweep_stops_them(made):
    args = (made["project"] / "train.py", "--hp", "lr=loguniform:1e-4:1e-1", "--hp", "layers=int:2:8",
            "--hp", "sleep=120", "--trials", "2", "--seed", "42", "--detach")
    ids, points = [], []
    for _ in range(2):
        launched = sweep(made, *args, check=0)
        assert "fahr sweep --resume sw-" in launched.stderr
        sweep_id = launched.stderr.split("fahr sweep --resume ")[1].split()[0]
        ids.append(sweep_id)
        listed = json.loads(run_fahr("jobs", "--sweep", sweep_id, "--json", env=made["env"], cwd=made["root"],
                                     check=0).stdout)
        assert len(listed) == 2 and all(row["status"] == "InProgress" for row in listed)
        points.append(sorted((row["hyperparameters"]["lr"], row["hyperparameters"]["layers"]) for row in listed))
    assert ids[0] != ids[1] and points[0] == points[1]  # the same seed, the same points
    for sweep_id in ids:
        stopped = run_fahr("stop", "--sweep", sweep_id, env=made["env"], cwd=made["root"], check=0)
        assert stopped.stderr.count("stop requested for") == 2
        for r in records(made, sweep_id):
            assert r["status"] == "Stopped"
            left = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=fahr.job={r['job_name']}"],
                                  capture_output=True, text=True, check=True).stdout
            assert left == ""
    again = run_fahr("stop", "--sweep", ids[0], env=made["env"], cwd=made["root"], check=0)
    assert "no job of sweep" in again.stderr


@pytest.mark.parametrize("args, says", [
    (["--hp", "lr=loguniform:0:1", "--trials", "2"], "loguniform needs 0 < LOW"),
    (["--hp", "lr=uniform:1", "--trials", "2"], "uniform needs LOW:HIGH"),
    (["--hp", "n=int:8:2", "--trials", "2"], "int needs LOW <= HIGH"),
    (["--hp", "opt=choice:adam", "--trials", "2"], "choice needs two or more"),
    (["--hp", "lr=0.1,,0.2"], "an empty value"),
    (["--hp", "lr=uniform:0:1"], "give --trials"),
    (["--hp", "lr=0.1"], "nothing to sweep"),
    (["--hp", "lr=0.1,0.2", "--objective", "acc"], "expected METRIC:min or METRIC:max"),
    (["--hp", "lr=0.1,0.2", "--fetch", "out"], "--fetch fetches the best job's model"),
    (["--hp", "lr=0.1,0.2", "--parallel", "0"], "--parallel 0"),
    (["--hp", "lr=0.1,0.2", "--parallel", "2", "--detach"], "drop one of them"),
    (["--resume", "../../etc/passwd"], "not a sweep id"),
    (["--resume", "sw-20260101-120000-abcd"], "no sweep sw-20260101-120000-abcd on this machine"),
])
def test_bad_input_is_one_line_exit_2_before_any_build(tmp_path, args, says):
    project = tmp_path / "i18sweepbad"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    first = [] if args[0] == "--resume" else [project / "train.py"]
    proc = run_fahr("sweep", *first, *args, cwd=tmp_path,
                    env={"XDG_STATE_HOME": str(tmp_path / "state"), "FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs")})
    line = one_line_error(proc, 2)
    assert says in line
    assert not (project / "Dockerfile").exists()  # refused before the build
    assert not (tmp_path / "jobs").exists()


def test_resume_takes_the_sweeps_own_options(tmp_path):
    project = tmp_path / "i18sweepbad"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    proc = run_fahr("sweep", project / "train.py", "--resume", "sw-20260101-120000-abcd", cwd=tmp_path,
                    env={"XDG_STATE_HOME": str(tmp_path / "state")})
    assert "--resume takes the sweep's own artifact and options; drop TRAINING_ARTIFACT" in one_line_error(proc, 2)


@pytest.mark.docker
def test_the_python_api_launches_waits_and_ranks_quietly(made):
    code = textwrap.dedent("""\
        import json, sys, fahr_core
        s = fahr_core.sweep(sys.argv[1], hyperparameters={"lr": [0.1, 0.01], "layers": 2},
                            objective="val_loss:min", wait=False, quiet=True)
        assert all(job.status == "InProgress" for job in s.jobs), s.jobs
        s.wait()
        listed = sorted(job.name for job in fahr_core.jobs(sweep=s.id))
        print(json.dumps({"best": s.best.name, "board": s.leaderboard(), "listed": listed,
                          "jobs": sorted(job.name for job in s.jobs), "points": s.points}))
    """)
    proc = subprocess.run([sys.executable, "-c", code, str(made["project"] / "train.py")], capture_output=True,
                          text=True, env={**os.environ, **made["env"]}, cwd=made["root"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # quiet=True: nothing printed, the later wait() too
    out = json.loads(proc.stdout)
    assert out["points"] == [{"lr": "0.1"}, {"lr": "0.01"}]
    assert out["board"][0]["job"] == out["best"] and out["board"][0]["hyperparameters"] == {"lr": "0.01"}
    assert [row["status"] for row in out["board"]] == ["Completed", "Completed"]
    assert out["listed"] == out["jobs"]


@pytest.mark.docker
def test_jobs_and_stop_by_sweep_find_the_jobs_where_the_projects_fahr_toml_put_them(made, tmp_path):
    project = made["root"] / f"{made['project'].name}toml"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    jobs = tmp_path / "elsewhere-jobs"
    (project / "fahr.toml").write_text(f'[local]\noutput_path = "{jobs}"\n')
    env = {"XDG_STATE_HOME": made["env"]["XDG_STATE_HOME"]}  # no FAHR_LOCAL_OUTPUT_PATH: fahr.toml's
    try:
        launched = run_fahr("sweep", project / "train.py", "--hp", "lr=0.1,0.01", "--hp", "sleep=120", "--detach",
                            env=env, cwd=tmp_path, check=0)
        sweep_id = launched.stderr.split("fahr sweep --resume ")[1].split()[0]
        other = tmp_path / "other"
        other.mkdir()
        listed = json.loads(run_fahr("jobs", "--sweep", sweep_id, "--json", env=env, cwd=other, check=0).stdout)
        assert len(listed) == 2 and {row["status"] for row in listed} == {"InProgress"}
        stopped = run_fahr("stop", "--sweep", sweep_id, env=env, cwd=other, check=0)
        assert stopped.stderr.count("stop requested for") == 2
        assert {json.loads(p.read_text())["status"] for p in jobs.glob("*/job.json")} == {"Stopped"}
    finally:
        for job in jobs.iterdir() if jobs.exists() else ():
            subprocess.run(["docker", "rm", "-f", *subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label=fahr.job={job.name}"], capture_output=True,
                text=True).stdout.split()], capture_output=True)
        subprocess.run(["docker", "image", "rm", "-f", f"{project.name}/train:latest"], capture_output=True)


@pytest.mark.parametrize("command", [["jobs", "--sweep"], ["stop", "--sweep"]])
def test_a_sweep_id_given_to_jobs_or_stop_is_checked(tmp_path, command):
    proc = run_fahr(*command, "sw-1;rm -rf ~", cwd=tmp_path, env={"XDG_STATE_HOME": str(tmp_path / "state")})
    assert "not a sweep id (sw-YYYYMMDD-HHMMSS-xxxx" in one_line_error(proc, 2)
