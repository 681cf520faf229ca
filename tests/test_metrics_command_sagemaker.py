"""``fahr metrics`` on the emulated SageMaker, with the real console script: a job printing metrics
the convention's way and by a --metric regex (read from its CloudWatch logs) charted in the
terminal, as --json and as a PNG and an SVG of the documented size."""

from __future__ import annotations

import json

import pytest

from aws_emulator.fixtures import BUCKET, ROLE, job_name_of, run_fahr, sagemaker_args, write_model
from test_charts import check_png, check_svg

pytestmark = pytest.mark.docker

PRINTS = """\
from pathlib import Path
for step in range(4):
    print(f"fahr-metric loss={1 / (step + 1)} step={step}", flush=True)
    print(f"epoch {step}: val_loss={2 / (step + 1)}", flush=True)
Path("/opt/ml/model").mkdir(parents=True, exist_ok=True)
Path("/opt/ml/model/weights.txt").write_text("42")
"""


def test_fahr_metrics_charts_a_sagemaker_jobs_metrics(stack, tmp_path):
    model = write_model(tmp_path, "i18metricscmdsm", PRINTS)
    fitted = run_fahr(stack, "fit", str(model), *sagemaker_args("metricscmd"), "--hp", "alpha=0.5",
                      "--metric", r"val_loss=val_loss=(\S+)", cwd=tmp_path)
    assert fitted.code == 0, fitted.output
    job = job_name_of(fitted)
    where = ["--train-driver=sagemaker", f"--config.output_path=s3://{BUCKET}/metricscmd", f"--config.role_name={ROLE}"]
    env = {**stack.env(), "COLUMNS": "80", "NO_COLOR": "1"}

    shown = run_fahr(stack, "metrics", job, *where, cwd=tmp_path, env=env)
    assert shown.code == 0, shown.output
    assert shown.stdout.startswith("loss\n") and "\nval_loss\n" in shown.stdout
    assert all(len(line) <= 80 for line in shown.stdout.splitlines()), shown.stdout
    assert f"  ● {job}" in shown.stdout and "1 ┤" in shown.stdout and "0.25 ┤" in shown.stdout

    rows = json.loads(run_fahr(stack, "metrics", job, "--json", *where, cwd=tmp_path, env=env).stdout)
    assert [(r["metric"], r["value"], r["step"]) for r in rows if r["metric"] == "loss"] == [
        ("loss", 1 / (s + 1), s) for s in range(4)]
    assert [r["value"] for r in rows if r["metric"] == "val_loss"] == [2 / (s + 1) for s in range(4)]
    assert {r["job"] for r in rows} == {job} and all(r["time"] and r["host"] for r in rows)

    for name, check, read in (("m.png", check_png, "read_bytes"), ("m.svg", check_svg, "read_text")):
        plotted = run_fahr(stack, "metrics", job, "--plot", str(tmp_path / name), *where, cwd=tmp_path, env=env)
        assert plotted.code == 0 and plotted.stdout == "", plotted.output
        check(getattr(tmp_path / name, read)(), 2)
