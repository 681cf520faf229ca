"""End to end: the real ``fahr`` command, the ``sagemaker`` driver, against an emulated AWS.

Nothing is patched: fahr runs as a subprocess, boto3 talks HTTP to a moto server and to the
SageMaker emulator (tests/aws_emulator), Docker logs in and pushes to a real registry over TLS,
and the emulator runs the training containers on the Docker engine. See tests/aws_emulator.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import fahr_core

from aws_emulator.fixtures import (  # the `stack` fixture itself comes from conftest.py
    BUCKET, FAHR, ROLE, job_name_of, run_fahr, sagemaker_args, write_model,
)

pytestmark = pytest.mark.docker

HELLO = (Path(__file__).resolve().parent.parent / "examples" / "hello" / "train.py").read_text()

FAILING = """\
import os, sys
from pathlib import Path
print("loading data", flush=True)
out = Path("/opt/ml/output")
out.mkdir(parents=True, exist_ok=True)
(out / "failure").write_text("ValueError: learning rate -1 is negative")
sys.exit(3)
"""

SLOW = """\
import time
for i in range(600):
    print(f"tick {i}", flush=True)
    time.sleep(0.5)
"""

TWO_HOSTS = """\
import json
import os
from pathlib import Path
cfg = json.loads(Path("/opt/ml/input/config/resourceconfig.json").read_text())
host = cfg["current_host"]
print(f"I am {host} of {cfg['hosts']}", flush=True)
model = Path("/opt/ml/model")
model.mkdir(parents=True, exist_ok=True)
(model / f"{host}.txt").write_text(host)
"""


def _describe(stack, job: str) -> dict:
    return stack.client("sagemaker").describe_training_job(TrainingJobName=job)


def _repositories(stack) -> set[str]:
    return {r["repositoryName"] for r in stack.client("ecr").describe_repositories()["repositories"]}


def _model_json(folder: Path) -> dict:
    return json.loads((folder / "model.json").read_text())


# -- the seed's usage ------------------------------------------------------------------------------


def test_seed_commands_verbatim_train_and_fetch(stack, tmp_path):
    model = write_model(tmp_path, "hello", HELLO)
    env = {
        **stack.env(),
        "MODEL_ARTIFACT_FILEPATH": str(model),
        "S3_ARTIFACT_DIRECTORY": f"s3://{BUCKET}/seed",
        "EXECUTION_ROLE_NAME": ROLE,
        "LOCAL_TARGET_DIRECTORY": str(tmp_path / "fetched"),
        "MODEL_IMAGE_TAG": "hello/train",
        "S3_ARTIFACT_FILEPATH": f"s3://{BUCKET}/seed",
        "PATH": f"{FAHR.parent}:{stack.env()['PATH']}",
    }
    throttled = stack.throttled()
    # The two commands exactly as the seed document writes them.
    fit = subprocess.run(["bash", "-c", """fahr fit $MODEL_ARTIFACT_FILEPATH --train-driver='sagemaker' \\
        --config.output_path=$S3_ARTIFACT_DIRECTORY --config.role_name=$EXECUTION_ROLE_NAME"""],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert fit.returncode == 0, fit.stderr
    assert "trained on 200 points: slope=2.989" in fit.stdout  # the container's log, streamed
    # The emulator refused some DescribeTrainingJob calls as throttled; boto3 retried them unseen.
    assert stack.throttled() > throttled
    assert "Throttl" not in fit.stderr and "Rate exceeded" not in fit.stderr
    for status in ("Starting", "Downloading", "Training", "Completed"):
        assert f": {status}" in fit.stderr
    job = fit.stderr.split("training job ", 1)[1].split()[0]
    info = _describe(stack, job)
    assert info["TrainingJobStatus"] == "Completed"
    assert re.fullmatch(rf"123456789012\.dkr\.ecr\.us-east-1\.amazonaws\.com/hello/train@sha256:[0-9a-f]{{64}}",
                        info["AlgorithmSpecification"]["TrainingImage"])
    assert info["Environment"]["FAHR_EXECUTION_ENVIRONMENT"] == "sagemaker"
    assert info["RoleArn"] == f"arn:aws:iam::123456789012:role/{ROLE}"
    assert info["ResourceConfig"]["InstanceType"] == "ml.c4.2xlarge"
    tags = {t["Key"]: t["Value"] for t in stack.client("sagemaker").list_tags(ResourceArn=info["TrainingJobArn"])["Tags"]}
    from fahr_sagemaker.jobs import tag_value  # the project folder as a tag value AWS takes

    assert tags == {"fahr:model-tag": "hello/train", "fahr:version": fahr_core.__version__,
                    "fahr:project": tag_value(os.path.realpath(model.parent))}  # no git work tree: no commit
    keys = {o["Key"] for o in stack.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"seed/{job}/")["Contents"]}
    assert keys == {f"seed/{job}/output/model.tar.gz", f"seed/{job}/output/output.tar.gz"}
    streams = stack.client("logs").describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                                        logStreamNamePrefix=f"{job}/")["logStreams"]
    assert [s["logStreamName"].rsplit("-", 1)[0] for s in streams] == [f"{job}/algo-1"]
    assert f"https://us-east-1.console.aws.amazon.com/sagemaker/home?region=us-east-1#/jobs/{job}" in fit.stderr

    fetch = subprocess.run(["bash", "-c", """fahr fetch $LOCAL_TARGET_DIRECTORY $MODEL_IMAGE_TAG $S3_ARTIFACT_FILEPATH"""],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert fetch.returncode == 0, fetch.stderr
    assert abs(_model_json(tmp_path / "fetched")["slope"] - 3.0) < 0.05
    assert job in fetch.stderr


def test_rerun_of_unchanged_model_pushes_nothing(stack, tmp_path):
    model = write_model(tmp_path, "rerun", HELLO)
    first = run_fahr(stack, "fit", str(model), *sagemaker_args("rerun"), cwd=tmp_path)
    assert first.code == 0, first.stderr
    assert "pushed " in first.stderr
    manifests = stack.manifest_puts()
    assert manifests >= 1

    second = run_fahr(stack, "fit", str(model), "--hp", "slope=5", *sagemaker_args("rerun"), cwd=tmp_path)
    assert second.code == 0, second.stderr
    assert "nothing to push" in second.stderr
    assert "pushing " not in second.stderr
    assert stack.manifest_puts() == manifests  # the registry received no new manifest
    job1, job2 = job_name_of(first), job_name_of(second)
    assert job1 != job2
    image1 = _describe(stack, job1)["AlgorithmSpecification"]["TrainingImage"]
    assert _describe(stack, job2)["AlgorithmSpecification"]["TrainingImage"] == image1
    assert _describe(stack, job2)["HyperParameters"] == {"slope": "5"}

    fetched = run_fahr(stack, "fetch", str(tmp_path / "m2"), "rerun/train", f"s3://{BUCKET}/rerun",
                       "--job", job2, cwd=tmp_path)
    assert fetched.code == 0, fetched.stderr
    assert abs(_model_json(tmp_path / "m2")["slope"] - 5.0) < 0.05


# -- jobs that do not complete ---------------------------------------------------------------------


def test_failing_model_exits_1_with_failure_reason(stack, tmp_path):
    model = write_model(tmp_path, "failing", FAILING)
    result = run_fahr(stack, "fit", str(model), *sagemaker_args(), cwd=tmp_path)
    assert result.code == 1, result.output
    assert "loading data" in result.stdout
    errors = result.error_lines()
    assert len(errors) == 1 and "failed" in errors[0] and "ValueError: learning rate -1 is negative" in errors[0]
    assert "Traceback" not in result.stderr
    info = _describe(stack, job_name_of(result))
    assert info["TrainingJobStatus"] == "Failed"
    assert info["FailureReason"] == "ValueError: learning rate -1 is negative"


def test_a_missing_module_is_the_failure_line_with_its_hint(stack, tmp_path):
    # The launcher writes the exception's last line whole as the job's FailureReason (no frames of
    # its own); the core adds which requirements file to list the package in, as on local.
    model = write_model(tmp_path, "nopandas", "import os\nprint('starting', flush=True)\nimport pandas\n")
    (model.parent / "requirements.txt").write_text("")
    result = run_fahr(stack, "fit", str(model), *sagemaker_args(), cwd=tmp_path)
    assert result.code == 1, result.output
    errors = result.error_lines()
    assert len(errors) == 1, result.stderr  # the traceback's tail is folded into that one line
    assert not any(line.startswith(("Traceback", "  File")) for line in result.stderr.splitlines()), result.stderr
    line = errors[0]
    assert line.endswith(f"add its package to {model.parent / 'requirements.txt'}, which the image installs, "
                         "and fit again"), line
    assert "ModuleNotFoundError: No module named 'pandas'" in line, line
    assert "<string>" not in line and "launcher.py" not in line, line
    reason = _describe(stack, job_name_of(result))["FailureReason"]
    assert "ModuleNotFoundError: No module named 'pandas'" in reason and "launcher.py" not in reason, reason


def test_ctrl_c_detaches_then_stop_and_wait(stack, tmp_path):
    model = write_model(tmp_path, "slow", SLOW)
    proc = subprocess.Popen([str(FAHR), "fit", str(model), *sagemaker_args()], cwd=tmp_path, env=stack.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read(stream):
        for line in stream:
            lines.append(line)

    readers = [threading.Thread(target=read, args=(s,), daemon=True) for s in (proc.stdout, proc.stderr)]
    for r in readers:
        r.start()
    deadline = time.monotonic() + 300
    while not any(line.startswith("tick 2") for line in lines):
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=60)
    for r in readers:
        r.join(timeout=10)
    text = "".join(lines)
    assert code == 130, text
    job = re.search(r"training job (\S+) created", text).group(1)
    assert "keeps running on SageMaker" in text
    assert f"fahr stop {job} --train-driver sagemaker" in text
    assert f"fahr wait {job} --train-driver sagemaker" in text
    assert f"fahr fetch ./model slow/train s3://{BUCKET}/models --train-driver sagemaker --job {job}" in text
    assert _describe(stack, job)["TrainingJobStatus"] == "InProgress"  # detached, not stopped

    stopped = run_fahr(stack, "stop", job, "--train-driver", "sagemaker", cwd=tmp_path)
    assert stopped.code == 0, stopped.stderr
    assert f"stop requested for {job}" in stopped.stderr
    waited = run_fahr(stack, "wait", job, "--train-driver", "sagemaker", "--config.poll_interval=1", cwd=tmp_path)
    assert waited.code == 1, waited.output
    assert "Stopped" in waited.stderr and f"job {job} stopped" in waited.stderr
    assert "stopped by StopTrainingJob" in waited.stderr
    assert _describe(stack, job)["TrainingJobStatus"] == "Stopped"
    again = run_fahr(stack, "stop", job, "--train-driver", "sagemaker", cwd=tmp_path)
    assert again.code == 0 and "already ended" in again.stderr


def test_max_run_stops_the_job(stack, tmp_path):
    model = write_model(tmp_path, "maxrun", SLOW)
    result = run_fahr(stack, "fit", str(model), *sagemaker_args(), "--config.max_run=4", cwd=tmp_path)
    _one_error(result, 1, "stopped", "MaxRuntimeExceeded: it ran longer than max_run (4 s)")
    assert "tick 1" in result.stdout
    assert ": MaxRuntimeExceeded" in result.stderr
    info = _describe(stack, job_name_of(result))
    assert (info["TrainingJobStatus"], info["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")


# -- configuration and environment errors: one line, documented exit code ---------------------------


def _one_error(result, code: int, *needles: str) -> str:
    assert result.code == code, result.output
    errors = result.error_lines()
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_spot_needs_max_wait_above_max_run_and_reports_savings(stack, tmp_path):
    model = write_model(tmp_path, "spot", "import time\ntime.sleep(3)\nprint('spot done')\n")
    bad = run_fahr(stack, "fit", str(model), *sagemaker_args(), "--config.spot=true",
                   "--config.max_run=3600", "--config.max_wait=3600", cwd=tmp_path)
    _one_error(bad, 2, "config.max_wait=3600 must exceed config.max_run=3600")
    assert "spot/train" not in _repositories(stack)  # refused before anything was pushed

    good = run_fahr(stack, "fit", str(model), *sagemaker_args(), "--config.spot=true",
                    "--config.max_run=3600", "--config.max_wait=7200", cwd=tmp_path)
    assert good.code == 0, good.output
    info = _describe(stack, job_name_of(good))
    assert info["EnableManagedSpotTraining"] is True
    assert info["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    training, billable = info["TrainingTimeInSeconds"], info["BillableTimeInSeconds"]
    savings = (1 - billable / training) * 100
    assert f"training seconds: {training}, billable seconds: {billable}, managed spot training savings: {savings:.1f}%" in good.stderr


def test_unknown_role_lists_the_permissions(stack, tmp_path):
    model = write_model(tmp_path, "norole", HELLO)
    result = run_fahr(stack, "fit", str(model), "--train-driver=sagemaker", f"--config.output_path=s3://{BUCKET}/m",
                      "--config.role_name=no-such-role", cwd=tmp_path)
    _one_error(result, 2, "IAM role 'no-such-role' does not exist", "sagemaker.amazonaws.com", "ECR read",
               "S3 read-write", "CloudWatch Logs")
    assert "norole/train" not in _repositories(stack)

    # Given as an ARN the role is not looked up: SageMaker itself refuses it, and fahr shows its message.
    arn = "arn:aws:iam::123456789012:role/no-such-role"
    result = run_fahr(stack, "fit", str(model), "--train-driver=sagemaker", f"--config.output_path=s3://{BUCKET}/m",
                      f"--config.role_name={arn}", cwd=tmp_path)
    _one_error(result, 2, "SageMaker refused the job", f"Could not assume role {arn}")


@pytest.mark.parametrize("path, message", [
    ("/tmp/models", "is not an S3 location"),
    ("s3://Bad_Bucket/x", "is not a valid S3 bucket name"),
    ("s3://no-such-bucket-fahr/models", "bucket 'no-such-bucket-fahr' does not exist"),
])
def test_bad_output_path(stack, tmp_path, path, message):
    model = write_model(tmp_path, "badpath", HELLO)
    result = run_fahr(stack, "fit", str(model), "--train-driver=sagemaker", f"--config.output_path={path}",
                      f"--config.role_name={ROLE}", cwd=tmp_path)
    _one_error(result, 2, message)


def test_unknown_instance_type_and_region_suggest_near_matches(stack, tmp_path):
    model = write_model(tmp_path, "typo", HELLO)
    result = run_fahr(stack, "fit", str(model), *sagemaker_args(), "--config.train_instance_type=ml.c4.2xlarg",
                      cwd=tmp_path)
    _one_error(result, 2, "'ml.c4.2xlarg' is not a SageMaker training instance type", "ml.c4.2xlarge")
    result = run_fahr(stack, "fit", str(model), *sagemaker_args(), "--config.region=us-eats-1", cwd=tmp_path)
    _one_error(result, 2, "region 'us-eats-1' is not a SageMaker region", "us-east-1")


def test_aws_region_alone_chooses_the_region(stack, tmp_path):
    # AWS_REGION as the AWS CLI v2 and the other SDKs read it, with no AWS_DEFAULT_REGION (boto3's
    # only variable) and no profile: the job runs in that region, as README says.
    model = write_model(tmp_path, "i17failline-region", HELLO)
    env = {k: v for k, v in stack.env().items() if k != "AWS_DEFAULT_REGION"}
    env["AWS_REGION"] = "us-east-1"
    result = run_fahr(stack, "fit", str(model), *sagemaker_args("i17failline-region"), cwd=tmp_path, env=env)
    assert result.code == 0, result.output
    assert f"training job {job_name_of(result)} created in us-east-1" in result.stderr
    assert "trained on 200 points" in result.stdout


def test_no_credentials_is_an_environment_problem(stack, tmp_path):
    model = write_model(tmp_path, "nocreds", HELLO)
    result = run_fahr(stack, "fit", str(model), *sagemaker_args(), cwd=tmp_path, env=stack.env(credentials=False))
    _one_error(result, 3, "no AWS credentials found")


def test_invalid_or_expired_credentials_are_an_environment_problem(stack, tmp_path):
    model = write_model(tmp_path, "badcreds", HELLO)
    with stack.checking_moto() as endpoint:
        env = {**stack.env(), "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "AKIAREVOKEDKEY000000"}
        result = run_fahr(stack, "fit", str(model), *sagemaker_args(), cwd=tmp_path, env=env)
    _one_error(result, 3, "AWS rejected the credentials", "InvalidClientTokenId")


def test_registry_unreachable_is_an_environment_problem(stack, tmp_path):
    model = write_model(tmp_path, "noregistry", HELLO)
    stack.stop_registry()
    try:
        result = run_fahr(stack, "fit", str(model), *sagemaker_args(), cwd=tmp_path)
    finally:
        stack.start_registry()
    _one_error(result, 3, "registry unreachable")


def test_registry_refusing_the_login_is_an_environment_problem(stack, tmp_path):
    model = write_model(tmp_path, "refused", HELLO)
    other = tmp_path / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(other), "AWS", "not-the-token"], check=True, capture_output=True)
    stack.stop_registry()
    try:
        stack.start_registry(htpasswd=other)
        result = run_fahr(stack, "fit", str(model), *sagemaker_args(), cwd=tmp_path)
    finally:
        stack.stop_registry()
        stack.start_registry()
    _one_error(result, 3, "registry refused logging in to registry 123456789012.dkr.ecr.us-east-1.amazonaws.com")


# -- several instances --------------------------------------------------------------------------------


def test_two_instances_log_by_host_and_merge_models(stack, tmp_path):
    model = write_model(tmp_path, "twohosts", TWO_HOSTS)
    result = run_fahr(stack, "fit", str(model), *sagemaker_args(), "--config.train_instance_count=2",
                      "--fetch", str(tmp_path / "model"), cwd=tmp_path)
    assert result.code == 0, result.output
    assert "[algo-1] I am algo-1 of ['algo-1', 'algo-2']" in result.stdout
    assert "[algo-2] I am algo-2 of ['algo-1', 'algo-2']" in result.stdout
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["algo-1.txt", "algo-2.txt"]
    job = job_name_of(result)
    streams = stack.client("logs").describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                                        logStreamNamePrefix=f"{job}/")["logStreams"]
    assert sorted(s["logStreamName"].rsplit("-", 1)[0] for s in streams) == [f"{job}/algo-1", f"{job}/algo-2"]


# -- fetch: the newest completed job of a tag, past the first page ----------------------------------


def test_fetch_finds_newest_job_of_tag_among_more_than_100(stack, tmp_path):
    model = write_model(tmp_path, "many", HELLO)
    target = run_fahr(stack, "fit", str(model), "--hp", "slope=7", *sagemaker_args("many"), cwd=tmp_path)
    assert target.code == 0, target.output
    target_job = job_name_of(target)
    info = _describe(stack, target_job)

    # 101 newer completed jobs of the same model tag (as fahr tags them) and image, writing
    # elsewhere: the job to fetch is then the 102nd newest, on the second page of Search.
    sm = stack.client("sagemaker")
    names = [f"many-train-extra-{i:03d}" for i in range(101)]
    for name in names:
        sm.create_training_job(
            TrainingJobName=name,
            AlgorithmSpecification=info["AlgorithmSpecification"],
            RoleArn=info["RoleArn"],
            OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/elsewhere"},
            ResourceConfig=info["ResourceConfig"],
            StoppingCondition={"MaxRuntimeInSeconds": 600},
            HyperParameters={"slope": "1", "points": "2"},
            Environment={"FAHR_EXECUTION_ENVIRONMENT": "sagemaker", "FAHR_MODEL_TAG": "many/train"},
            Tags=[{"Key": "fahr:model-tag", "Value": "many/train"}],
        )
    deadline = time.monotonic() + 400
    while True:
        statuses = [sm.describe_training_job(TrainingJobName=n)["TrainingJobStatus"] for n in names[-5:]]
        done = sum(1 for page in sm.get_paginator("list_training_jobs").paginate(NameContains="many-train",
                                                                                  StatusEquals="Completed")
                   for _ in page["TrainingJobSummaries"])
        if done >= 102:
            break
        assert "Failed" not in statuses and time.monotonic() < deadline, statuses
        time.sleep(2)
    first_page = sm.search(Resource="TrainingJob", SortBy="CreationTime", SortOrder="Descending", MaxResults=100,
                           SearchExpression={"Filters": [
                               {"Name": "Tags.fahr:model-tag", "Operator": "Equals", "Value": "many/train"},
                               {"Name": "TrainingJobStatus", "Operator": "Equals", "Value": "Completed"}]})
    assert first_page.get("NextToken")
    assert target_job not in {r["TrainingJob"]["TrainingJobName"] for r in first_page["Results"]}

    fetched = run_fahr(stack, "fetch", str(tmp_path / "newest"), "many/train", f"s3://{BUCKET}/many", cwd=tmp_path)
    assert fetched.code == 0, fetched.output
    assert "102 completed jobs of many/train looked at (2 pages of sagemaker:Search)" in fetched.stderr
    assert f"fetching the model of job {target_job}" in fetched.stderr
    assert abs(_model_json(tmp_path / "newest")["slope"] - 7.0) < 0.05

    # The archive itself can be given too.
    direct = run_fahr(stack, "fetch", str(tmp_path / "direct"), "many/train",
                      f"s3://{BUCKET}/elsewhere/{names[-1]}/output/model.tar.gz", cwd=tmp_path)
    assert direct.code == 0, direct.output
    assert abs(_model_json(tmp_path / "direct")["slope"] - 1.0) < 0.5


def test_fetch_of_a_failed_job_says_so(stack, tmp_path):
    model = write_model(tmp_path, "nomodel", FAILING)
    failed = run_fahr(stack, "fit", str(model), *sagemaker_args("nomodel"), cwd=tmp_path)
    assert failed.code == 1
    job = job_name_of(failed)
    result = run_fahr(stack, "fetch", str(tmp_path / "m"), "nomodel/train", f"s3://{BUCKET}/nomodel", "--job", job,
                      cwd=tmp_path)
    _one_error(result, 2, f"job {job} is Failed, it has no model to fetch")
    result = run_fahr(stack, "fetch", str(tmp_path / "m"), "nomodel/train", f"s3://{BUCKET}/nomodel", cwd=tmp_path)
    _one_error(result, 2, "no completed job of 'nomodel/train'")


OUTPUTS = """\
import json, os, sys
hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
os.makedirs("/opt/ml/output/data", exist_ok=True)
open("/opt/ml/output/data/x.txt", "w").write("written by the job")
os.makedirs("/opt/ml/model", exist_ok=True)
open("/opt/ml/model/model.txt", "w").write("the model")
if hp.get("fail") == "1":
    sys.exit("failing on purpose")
"""


def test_fetch_output_brings_output_data_and_refuses_a_hostile_one(stack, tmp_path):
    import io
    import tarfile

    model = write_model(tmp_path, "i17output", OUTPUTS)
    location = f"s3://{BUCKET}/i17output"
    done = run_fahr(stack, "fit", str(model), *sagemaker_args("i17output"), cwd=tmp_path)
    assert done.code == 0, done.output
    job = job_name_of(done)
    fetched = run_fahr(stack, "fetch", str(tmp_path / "output"), "i17output/train", location, "--output",
                       cwd=tmp_path)
    assert fetched.code == 0, fetched.output
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == ["x.txt"]
    assert (tmp_path / "output" / "x.txt").read_text() == "written by the job"
    assert f"fetching the output of job {job}" in fetched.stderr
    # A failed job's output (its clues) comes with --job; its model does not.
    failed = run_fahr(stack, "fit", str(model), *sagemaker_args("i17output"), "--hp", "fail=1", cwd=tmp_path)
    assert failed.code == 1, failed.output
    clues = run_fahr(stack, "fetch", str(tmp_path / "clues"), "i17output/train", location, "--output",
                     "--job", job_name_of(failed), cwd=tmp_path)
    assert clues.code == 0 and (tmp_path / "clues" / "x.txt").is_file(), clues.output
    # An output.tar.gz with a link out is refused as a model's would be: nothing written.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, "../../outside"
        tar.addfile(link)
    stack.client("s3").put_object(Bucket=BUCKET, Key=f"i17output/{job}/output/output.tar.gz",
                                  Body=buffer.getvalue())
    hostile = run_fahr(stack, "fetch", str(tmp_path / "hostile"), "i17output/train", location, "--output",
                       "--job", job, cwd=tmp_path)
    _one_error(hostile, 2, "refusing the job's output: entry 'escape' is a symlink to '../../outside', "
                           "which leads outside the target")
    assert not (tmp_path / "hostile").exists() and not (tmp_path / "outside").exists()


# -- a job name that is taken -------------------------------------------------------------------------


def test_job_name_collision_is_one_line_exit_2(stack, tmp_path, monkeypatch):
    model = write_model(tmp_path, "collide", HELLO)
    first = run_fahr(stack, "fit", str(model), *sagemaker_args(), "--detach", cwd=tmp_path)
    assert first.code == 0, first.output
    job = job_name_of(first)
    assert f"fahr wait {job} --train-driver sagemaker" in first.stderr
    image = _describe(stack, job)["AlgorithmSpecification"]["TrainingImage"]

    # The launch hook itself, in this process, against the same emulated AWS (nothing patched):
    # SageMaker answers ResourceInUse for a name that exists, and the driver says so in one line.
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    for var, value in stack.env().items():
        if var.startswith("AWS_"):
            monkeypatch.setenv(var, value)
    import fahr_sagemaker as driver
    from fahr_core import config as cfg
    from fahr_core.errors import UsageError
    from fahr_core import ImageRef, JobSpec
    from fahr_sagemaker import aws

    aws._session.cache_clear()
    aws._client.cache_clear()
    config = cfg.resolve("sagemaker", driver.config_keys(), cfg.ProjectFile(None, {}),
                         [("output_path", f"s3://{BUCKET}/models"), ("role_name", ROLE)], environ={})
    name, digest = image.split("@")
    spec = JobSpec(job_name=job, model_tag="collide/train", image=ImageRef(name=name, digest=digest))
    with pytest.raises(UsageError, match=f"a training job named {job} already exists") as info:
        driver.launch(spec=spec, config=config)
    assert info.value.exit_code == 2
    aws._session.cache_clear()
    aws._client.cache_clear()


# -- inputs, environment, checkpoints, uncompressed output ----------------------------------------------

CHANNELS = """\
import json, os
from pathlib import Path
data = Path("/opt/ml/input/data")
config = json.loads(Path("/opt/ml/input/config/inputdataconfig.json").read_text())
listing = {ch: sorted(p.relative_to(data / ch).as_posix() for p in (data / ch).rglob("*") if p.is_file())
           for ch in sorted(config)}
print("channels", json.dumps(listing, sort_keys=True), flush=True)
print("greeting", os.environ.get("GREETING"), flush=True)
model = Path("/opt/ml/model")
(model / "nested").mkdir(parents=True, exist_ok=True)
(model / "listing.json").write_text(json.dumps(listing))
(model / "nested" / "weights.bin").write_bytes(b"\\x00\\x01" * 1000)
(model / "context.json").write_text(json.dumps({
    "arn": os.environ.get("TRAINING_JOB_ARN"),
    "content_types": {ch: config[ch].get("ContentType") for ch in config},
    "checkpoints": os.path.isdir("/opt/ml/checkpoints"),
}))
"""


def test_inputs_env_checkpoints_and_uncompressed_output(stack, tmp_path):
    model = write_model(tmp_path, "channels", CHANNELS)
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("a")
    (data / "sub" / "b.txt").write_text("b")
    stack.client("s3").put_object(Bucket=BUCKET, Key="shared/c.txt", Body=b"c")
    result = run_fahr(stack, "fit", str(model), *sagemaker_args("channels"),
                      "--input", f"train={data}", "--input", f"extra=s3://{BUCKET}/shared",
                      "--env", "GREETING=hello", "--config.checkpoint_s3_uri=s3://fahr-emulated/ckpt",
                      "--config.tags=team=ml", "--fetch", str(tmp_path / "model"), cwd=tmp_path)
    assert result.code == 0, result.output
    assert 'channels {"extra": ["c.txt"], "train": ["a.txt", "sub/b.txt"]}' in result.stdout
    assert "greeting hello" in result.stdout
    job = job_name_of(result)
    info = _describe(stack, job)
    uris = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in info["InputDataConfig"]}
    # The local folder under its content's tree (tests/test_sagemaker_uploads.py), the URI as given.
    assert re.fullmatch(rf"s3://{BUCKET}/channels/inputs/[0-9a-f]{{64}}/", uris["train"])
    assert uris["extra"] == f"s3://{BUCKET}/shared"  # as given, as SageMaker takes it
    tree = uris["train"][len(f"s3://{BUCKET}/"):]
    keys = {o["Key"] for o in stack.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=tree)["Contents"]}
    assert keys == {f"{tree}a.txt", f"{tree}sub/b.txt"}
    assert info["CheckpointConfig"] == {"S3Uri": "s3://fahr-emulated/ckpt"}
    assert info["Environment"]["GREETING"] == "hello"
    tags = {t["Key"]: t["Value"] for t in stack.client("sagemaker").list_tags(ResourceArn=info["TrainingJobArn"])["Tags"]}
    assert tags["team"] == "ml" and tags["fahr:model-tag"] == "channels/train"
    assert json.loads((tmp_path / "model" / "listing.json").read_text())["train"] == ["a.txt", "sub/b.txt"]
    # TRAINING_JOB_ARN is the job's ARN; a channel given no ContentType has none (the driver sends
    # none); CheckpointConfig makes /opt/ml/checkpoints.
    assert json.loads((tmp_path / "model" / "context.json").read_text()) == {
        "arn": info["TrainingJobArn"], "content_types": {"train": None, "extra": None}, "checkpoints": True}

    # A job whose output is not compressed (CompressionType NONE): fetch packs the files itself.
    sm = stack.client("sagemaker")
    plain = f"{job[:40]}-plain"
    sm.create_training_job(
        TrainingJobName=plain, AlgorithmSpecification=info["AlgorithmSpecification"], RoleArn=info["RoleArn"],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/channels", "CompressionType": "NONE"},
        ResourceConfig=info["ResourceConfig"], StoppingCondition={"MaxRuntimeInSeconds": 600},
        InputDataConfig=[dict(c, ContentType="text/csv") if c["ChannelName"] == "train" else c
                         for c in info["InputDataConfig"]],
        Environment=info["Environment"],
    )
    deadline = time.monotonic() + 120
    while (status := sm.describe_training_job(TrainingJobName=plain)["TrainingJobStatus"]) == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(1)
    assert status == "Completed"
    assert sm.describe_training_job(TrainingJobName=plain)["ModelArtifacts"]["S3ModelArtifacts"].endswith("/output/model/")
    fetched = run_fahr(stack, "fetch", str(tmp_path / "plain"), "channels/train", f"s3://{BUCKET}/channels",
                       "--job", plain, cwd=tmp_path)
    assert fetched.code == 0, fetched.output
    assert (tmp_path / "plain" / "nested" / "weights.bin").read_bytes() == b"\x00\x01" * 1000
    assert json.loads((tmp_path / "plain" / "listing.json").read_text())["extra"] == ["c.txt"]
    context = json.loads((tmp_path / "plain" / "context.json").read_text())
    assert context["content_types"] == {"train": "text/csv", "extra": None}  # the request's, when given
    assert context["checkpoints"] is False  # no CheckpointConfig, no checkpoint folder
    assert context["arn"] == sm.describe_training_job(TrainingJobName=plain)["TrainingJobArn"]


def test_bad_inputs_are_refused_before_building(stack, tmp_path):
    model = write_model(tmp_path, "badinput", HELLO)
    for value, message in ((str(tmp_path / "nowhere"), "does not exist"), ("s3://Bad_Bucket/x", "--input train")):
        result = run_fahr(stack, "fit", str(model), *sagemaker_args(), "--input", f"train={value}", cwd=tmp_path)
        _one_error(result, 2, message)
        assert "building image" not in result.stderr  # refused in check_run, before the build


def test_fetch_from_a_missing_bucket_is_one_line(stack, tmp_path):
    result = run_fahr(stack, "fetch", str(tmp_path / "out"), "hello/train", "s3://no-such-bucket-here/models",
                      cwd=tmp_path)
    _one_error(result, 2, "bucket 'no-such-bucket-here' does not exist")
    assert not (tmp_path / "out").exists()


def test_a_push_keeps_the_users_own_registry_tag(stack, tmp_path, monkeypatch, docker_engine):
    """The push itself, in-process, against the emulated ECR and its real registry: the image's
    registry-named tag, pulled before by the user, is still theirs afterwards; the one fahr made for
    another image is gone again."""
    import secrets

    from aws_emulator.stack import REGISTRY_HOST
    from fahr_core import ImageRef
    from fahr_core import config as cfg
    from test_build_skip import _build_base

    import fahr_sagemaker
    from fahr_sagemaker import ecr

    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    config = cfg.resolve("sagemaker", fahr_sagemaker.config_keys(), cfg.ProjectFile(None, {}),
                         [("output_path", f"s3://{BUCKET}/i15imgreview"), ("role_name", ROLE)], environ=dict(os.environ))
    name = f"i15imgreview{secrets.token_hex(3)}/train"
    api = docker_engine.api
    ids = [_build_base(docker_engine, f"{name}:{mark}", f"{mark}{secrets.token_hex(4)}") for mark in ("mine", "new")]
    remotes = [f"{REGISTRY_HOST}/{name}:{ecr.content_tag(i)}" for i in ids]
    api.tag(ids[0], *remotes[0].rsplit(":", 1))  # as `docker pull` of it from the registry would leave it
    try:
        for image_id in ids:
            pushed = ecr.push(ImageRef(name=name, image_id=image_id), config)
            assert pushed.digest.startswith("sha256:") and pushed.tag == ecr.content_tag(image_id)
        assert api.inspect_image(remotes[0])["Id"] == ids[0]  # the user's tag: kept
        assert not [t for t in api.inspect_image(ids[1])["RepoTags"] if t.startswith(REGISTRY_HOST)]  # fahr's: gone
    finally:
        for reference in [remotes[0], *ids]:
            with contextlib.suppress(Exception):
                api.remove_image(reference, force=True)
