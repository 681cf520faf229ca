"""``fahr metrics`` end to end on `local`, with the real console script: two real jobs printing
metrics the convention's way and by a --metric regex, charted in the terminal (80 columns),
as --json, --csv, a PNG and an SVG of the documented size; a job without metrics, an unknown job,
a bad --plot refused in one line; --follow of a running job, and Ctrl-C leaving it running."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import signal
import subprocess
import textwrap
import time

import pytest

from conftest import FAHR, one_line_error, remove_local_jobs, run_fahr
from test_charts import check_png, check_svg
from test_detached import job_of

pytestmark = pytest.mark.docker

SCRIPT = textwrap.dedent("""\
    import json, time
    hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
    alpha = float(hp.get("alpha", "0.5"))
    for step in range(int(hp.get("steps", "5"))):
        print(f"fahr-metric loss={alpha / (step + 1)} step={step}", flush=True)
        print(f"epoch {step}: val_loss={2 * alpha / (step + 1)}", flush=True)
        time.sleep(float(hp.get("sleep", "0")))
    open("/opt/ml/model/model.txt", "w").write("trained")
""")


@pytest.fixture(scope="module")
def made(tmp_path_factory, docker_engine):
    root = tmp_path_factory.mktemp("metricscmd")
    project = root / f"i18metricscmd{secrets.token_hex(3)}"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    jobs = root / "jobs"
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(jobs), "COLUMNS": "80"}
    fitted = []
    for alpha in ("0.5", "0.9"):
        proc = run_fahr("fit", project / "train.py", "--hp", f"alpha={alpha}", "--hp", "steps=5",
                        "--metric", r"val_loss=val_loss=(\S+)", env=env, check=0)
        fitted.append(job_of(proc.stderr))
    yield {"project": project, "jobs": jobs, "env": env, "fitted": fitted, "root": root}
    remove_local_jobs(jobs, docker_engine, f"{project.name}/train:latest")


def metrics(made, *args, **kwargs):
    return run_fahr("metrics", *args, env=made["env"], cwd=made["root"], **kwargs)


def test_the_terminal_shows_a_chart_per_metric_the_jobs_overlaid_in_80_columns(made):
    a, b = made["fitted"]
    out = metrics(made, a, b, check=0).stdout
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert out.startswith("loss\n") and "\nval_loss\n" in out
    loss, val_loss = out.split("\nval_loss\n")
    for chart, x_axis in ((loss, "step"), (val_loss, "time (s)")):  # the regex's points have no step
        assert f"  ● {a}  alpha=0.5" in chart and f"  ○ {b}  alpha=0.9" in chart
        assert x_axis in chart
    assert "0.9 ┤" in loss and "0.1 ┤" in loss  # the max (0.9 / 1) and the min (0.5 / 5)
    only = metrics(made, a, b, "--metric", "val_*", check=0).stdout
    assert only.startswith("val_loss\n") and "\nloss\n" not in only


def test_json_and_csv_give_every_point_and_nothing_else(made):
    a, b = made["fitted"]
    rows = json.loads(metrics(made, a, b, "--json", check=0).stdout)
    assert len(rows) == 20 and set(rows[0]) == {"job", "metric", "value", "step", "time", "host"}
    loss_a = [(r["value"], r["step"]) for r in rows if r["job"] == a and r["metric"] == "loss"]
    assert loss_a == [(0.5 / (s + 1), s) for s in range(5)]
    assert {r["step"] for r in rows if r["metric"] == "val_loss"} == {None}
    assert all(r["time"].endswith("+00:00") and r["host"] == "algo-1" for r in rows)
    table = list(csv.reader(io.StringIO(metrics(made, a, b, "--csv", "--metric", "loss", check=0).stdout)))
    assert table[0] == ["job", "metric", "value", "step", "time", "host"] and len(table) == 11
    assert [float(row[2]) for row in table[1:6]] == [r for r, _ in loss_a]
    assert table[1][:4] == [a, "loss", "0.5", "0"] and table[1][4] == rows[next(
        i for i, r in enumerate(rows) if r["job"] == a and r["metric"] == "loss")]["time"]


def test_plot_writes_a_png_and_an_svg_of_the_documented_size(made):
    a, b = made["fitted"]
    for name, check, read in (("m.png", check_png, "read_bytes"), ("m.svg", check_svg, "read_text")):
        proc = metrics(made, a, b, "--plot", made["root"] / name, check=0)
        assert proc.stdout == "" and "2 charts, 800x800 pixels" in proc.stderr
        check(getattr(made["root"] / name, read)(), 2)


def test_bad_input_is_one_line(made, tmp_path):
    a, _ = made["fitted"]
    line = one_line_error(metrics(made, "nope-20261203-170023-9271"), 2)
    assert "no job nope-20261203-170023-9271 on driver 'local'" in line
    line = one_line_error(metrics(made, a, "--plot", tmp_path / "m.jpg"), 2)
    assert ".png, .svg, .html" in line
    (tmp_path / "d.svg").mkdir()
    assert "is a folder" in one_line_error(metrics(made, a, "--plot", tmp_path / "d.svg"), 2)
    assert "no job shown has it; they have loss, val_loss" in one_line_error(metrics(made, a, "--metric", "acc"), 2)
    assert "--json and --csv" in one_line_error(metrics(made, a, "--json", "--csv"), 2)


def test_a_job_without_metrics_is_told_how_to_print_them(made, tmp_path):
    project = made["project"].parent / (made["project"].name + "none")
    project.mkdir()
    (project / "train.py").write_text("print('no metrics here')\n")
    job = job_of(run_fahr("fit", project / "train.py", env=made["env"], check=0).stderr)
    try:
        line = one_line_error(metrics(made, job), 2)
        assert f"job {job} has no metrics" in line and "fahr-metric loss=0.25 step=3" in line
        mixed = metrics(made, made["fitted"][0], job, check=0)  # charted with those that have them
        assert f"job {job} has no metrics" in mixed.stderr and mixed.stdout.startswith("loss\n")
    finally:
        subprocess.run(["docker", "image", "rm", "-f", f"{project.name}/train:latest"], capture_output=True)


def status_of(made, job: str) -> str:
    return json.loads((made["jobs"] / job / "job.json").read_text())["status"]


def test_follow_prints_points_as_they_come_until_the_job_ends_and_ctrl_c_leaves_it_running(made):
    proc = run_fahr("fit", made["project"] / "train.py", "--detach", "--hp", "steps=12", "--hp", "sleep=1",
                    "--hp", "alpha=0.7", env=made["env"], check=0)
    job = job_of(proc.stderr)
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "80", **made["env"]}
    interrupted = subprocess.Popen([str(FAHR), "metrics", job, "--follow"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env)
    follower = subprocess.Popen([str(FAHR), "metrics", job, "--follow", "--metric", "loss"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = follower.stdout.readline()
        assert first.startswith(f"{job}  loss=") and status_of(made, job) == "InProgress", first
        time.sleep(3)
        interrupted.send_signal(signal.SIGINT)
        out, err = interrupted.communicate(timeout=30)
        assert interrupted.returncode == 130 and "Traceback" not in err, err
        assert status_of(made, job) == "InProgress"  # the job runs on
        rest = follower.stdout.read()  # (communicate() would lose what readline() buffered)
        follower.wait(timeout=60)
        err = follower.stderr.read()
    finally:
        for proc in (interrupted, follower):
            if proc.poll() is None:
                proc.kill()
    assert follower.returncode == 0, err
    assert status_of(made, job) == "Completed" and f"job {job} ended: Completed" in err
    printed = [line for line in (first + rest).splitlines() if line.startswith(f"{job}  loss=")]
    assert [line.split("step=")[1].split()[0] for line in printed] == [str(s) for s in range(12)]
    assert "\nloss\n" in rest and "val_loss" not in rest  # the chart once the job ended


def test_follow_on_a_terminal_redraws_the_chart_in_place(made):
    import pty

    proc = run_fahr("fit", made["project"] / "train.py", "--detach", "--hp", "steps=6", "--hp", "sleep=1",
                    env=made["env"], check=0)
    job = job_of(proc.stderr)
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "80", "LINES": "40", **made["env"]}
    main, child = pty.openpty()
    follower = subprocess.Popen([str(FAHR), "metrics", job, "--follow"], stdin=subprocess.DEVNULL, stdout=child,
                                stderr=subprocess.PIPE, env=env)
    os.close(child)
    shown = b""
    try:
        while True:
            try:
                piece = os.read(main, 65536)
            except OSError:  # the child's end closed: it exited
                break
            if not piece:
                break
            shown += piece
        follower.wait(timeout=60)
    finally:
        os.close(main)
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, follower.stderr.read()
    text = shown.decode("utf-8", "replace").replace("\r\n", "\n")
    redraws = re.findall(r"\x1b\[(\d+)F\x1b\[J", text)
    assert redraws, text  # the chart drawn again over itself as points came
    final = text[text.rindex("\x1b[J") + 3:]
    assert final.startswith("loss\n") and f"  {job}" in final.replace("● ", "").replace("* ", "")
    # each redraw goes back exactly over what was drawn before it
    drawn = re.split(r"\x1b\[\d+F\x1b\[J", text)
    assert [int(n) for n in redraws] == [part.count("\n") for part in drawn[:-1]]


def test_a_reader_that_goes_away_ends_the_command_quietly(made):
    """`fahr metrics … --json | head`: no internal error when stdout's reader has gone."""
    env = {**os.environ, "NO_COLOR": "1", **made["env"]}
    proc = subprocess.Popen([str(FAHR), "metrics", *made["fitted"], "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0 and proc.stderr.read() == b""
