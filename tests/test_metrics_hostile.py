"""``fahr metrics`` on job folders written by hand, as a careless or hostile hand leaves them (a
job folder is untrusted: README, "What fahr guarantees"): through the real console script, no
Docker engine needed. Each case ended in "internal error" (exit 4) before."""

from __future__ import annotations

import json

import pytest

from conftest import run_fahr
from test_charts import check_png, check_svg
from test_exit_codes import make_job

JOB = "i18revcharts-train-20261203-170000-0001"
OTHER = "i18revcharts-train-20261203-170000-0002"


def with_points(jobs_dir, name, points, **fields):
    job = make_job(jobs_dir, name, **fields)
    (job / "metrics.jsonl").write_text("".join(
        json.dumps({"name": "loss", "value": value, "step": step, "time": 1000.0 + i, "host": "algo-1"}) + "\n"
        for i, (value, step) in enumerate(points)))
    return job


def test_a_character_stdout_cannot_encode_is_written_as_its_escape(jobs_dir):
    with_points(jobs_dir, JOB, [(1.0, 0), (0.5, 1)], hyperparameters={"model": "模型"})
    with_points(jobs_dir, OTHER, [(2.0, 0), (1.5, 1)], hyperparameters={"model": "small"})
    for args in (("metrics", JOB, OTHER), ("metrics", JOB, OTHER, "--csv"), ("jobs",)):
        proc = run_fahr(*args, env={"PYTHONIOENCODING": "latin-1"})
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "fahr error" not in proc.stderr
    assert "model=\\u6a21\\u578b" in run_fahr("metrics", JOB, OTHER, env={"PYTHONIOENCODING": "latin-1"}).stdout


def test_a_stored_step_of_thirty_digits_is_no_step(jobs_dir):
    with_points(jobs_dir, JOB, [(1.0, 10**30), (0.5, 1)])
    proc = run_fahr("metrics", JOB, check=0)
    assert "time (s)" in proc.stdout  # a point without a step: the chart's x axis is the time
    assert [row["step"] for row in json.loads(run_fahr("metrics", JOB, "--json", check=0).stdout)] == [None, 1]


@pytest.mark.parametrize("value", [1.7e308, -1.7e308])
def test_a_value_near_the_largest_float_is_drawn(jobs_dir, tmp_path, value):
    with_points(jobs_dir, JOB, [(value, 0)])
    out = run_fahr("metrics", JOB, check=0).stdout
    assert "inf" not in out and "nan" not in out
    run_fahr("metrics", JOB, "--plot", tmp_path / "a.png", check=0)
    check_png((tmp_path / "a.png").read_bytes(), 1)
    run_fahr("metrics", JOB, "--plot", tmp_path / "a.svg", check=0)
    check_svg((tmp_path / "a.svg").read_text(), 1)
