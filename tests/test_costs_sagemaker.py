"""Costs on the emulated SageMaker (issue 19 item 4; docs/sagemaker.md, "Costs"): the real ``fahr``
asks the Price List (GetProducts, answered by tests/aws_emulator/sagemaker_server.py in AWS's
shape, validated against botocore's ``pricing`` model) before it launches, says the estimate,
refuses a run above ``max_cost`` before building or pushing anything, and says the cost after.
"""

from __future__ import annotations

import json

import pytest

from aws_emulator.fixtures import job_name_of, run_fahr, sagemaker_args, write_model

pytestmark = pytest.mark.docker

#: The emulator's training price of ml.m5.large (its TRAINING_PRICES).
M5_LARGE = 0.115


@pytest.fixture(scope="module")
def fitted(stack, tmp_path_factory):
    """One fit on ml.m5.large, max_run 600 s, with a cache folder of its own; ``jobs --cost`` after."""
    root = tmp_path_factory.mktemp("costs-sm")
    model = write_model(root, "i19costssm", "print('trained')\n")
    env = {**stack.env(), "XDG_CACHE_HOME": str(root / "cache")}
    asked = stack.get_products_calls()
    fit = run_fahr(stack, "fit", str(model), *sagemaker_args("costs"), "--config.train_instance_type=ml.m5.large",
                   "--config.max_run=600", cwd=root, env=env)
    assert fit.code == 0, fit.output
    asked = stack.get_products_calls() - asked
    listed = run_fahr(stack, "jobs", "i19costssm/train", "--cost", "--json", "--train-driver=sagemaker", cwd=root,
                      env=env)
    table = run_fahr(stack, "jobs", "i19costssm/train", "--cost", "--train-driver=sagemaker", cwd=root, env=env)
    waited = run_fahr(stack, "wait", job_name_of(fit), "--train-driver=sagemaker", cwd=root, env=env)
    return root, env, fit, asked, listed, table, waited


def test_fit_says_the_price_and_the_ceiling_before_the_launch(fitted):
    root, _, fit, asked, *_ = fitted
    lines = fit.stderr.splitlines()
    [estimate] = [i for i, line in enumerate(lines) if line.startswith("fahr about $")]
    assert lines[estimate] == ("fahr about $0.1150/h × 1 instance; at most $0.0192 if it runs max_run (600 s) "
                               "— AWS Price List")
    launched = next(i for i, line in enumerate(lines) if line.startswith("fahr launching a job"))
    assert estimate < launched
    assert asked == 1  # one GetProducts, then the week's cache
    cached = json.loads((root / "cache" / "fahr" / "sagemaker" / "prices.json").read_text())
    assert cached["prices"]["us-east-1 ml.m5.large"]["usd_per_hour"] == M5_LARGE


def test_fit_and_wait_say_what_the_billable_seconds_cost(fitted):
    _, _, fit, _, listed, _, waited = fitted
    [job] = json.loads(listed.stdout)
    assert waited.code == 0, waited.output
    for told in (fit, waited):
        [line] = [line for line in told.stderr.splitlines() if line.startswith("fahr cost:")]
        assert line.startswith("fahr cost: about $")
        assert f"({job['billable_seconds']:.0f} billable s × 1 × $0.1150/h, 1 × ml.m5.large)" in line


def test_jobs_cost_lists_each_jobs_cost(fitted, stack):
    _, _, fit, _, listed, table, _ = fitted
    [job] = json.loads(listed.stdout)
    assert job["job_name"] == job_name_of(fit)
    assert (job["price_per_hour"], job["instances"], job["spot"]) == (M5_LARGE, 1, False)
    assert job["cost"] == pytest.approx(job["billable_seconds"] * M5_LARGE / 3600, abs=1e-6)
    header, row = table.stdout.splitlines()[:2]
    assert "COST" in header.split()
    assert header.index("COST") == row.index("$", header.index("COST") - 2)


def test_max_cost_refuses_before_anything_is_built_pushed_or_launched(stack, fitted):
    root, env, *_ = fitted
    model = write_model(root, "i19costssmrefused", "print('never')\n")
    jobs = len(stack.client("sagemaker").list_training_jobs(MaxResults=100)["TrainingJobSummaries"])
    pushes = stack.manifest_puts()
    # 2 × $0.115/h × 24 h = $5.52 > $5
    proc = run_fahr(stack, "fit", str(model), *sagemaker_args("costs"), "--config.train_instance_type=ml.m5.large",
                    "--config.train_instance_count=2", "--config.max_run=86400", "--config.max_cost=5", cwd=root,
                    env=env)
    assert proc.code == 2, proc.output
    assert proc.stderr.splitlines() == ["fahr error: the run may cost up to $5.52 ($0.1150/h × 2 × 86400 s of max_run), "
                                  "more than max_cost $5; lower max_run or train_instance_count, or raise max_cost"]
    assert "Traceback" not in proc.stderr and "Step " not in proc.stderr  # nothing built
    assert stack.manifest_puts() == pushes
    assert len(stack.client("sagemaker").list_training_jobs(MaxResults=100)["TrainingJobSummaries"]) == jobs

    # A type the Price List does not list: the price is unknown, so max_cost cannot hold: refused too.
    unknown = run_fahr(stack, "fit", str(model), *sagemaker_args("costs"), "--config.train_instance_type=ml.p3.2xlarge",
                       "--config.max_cost=5", cwd=root, env=env)
    assert unknown.code == 2, unknown.output
    [line] = unknown.stderr.splitlines()  # the refusal alone: one line
    assert "the price is unknown (the AWS Price List has no single on-demand training price of ml.p3.2xlarge" in line
    assert "--config.price_per_hour=DOLLARS" in line
    assert stack.manifest_puts() == pushes
