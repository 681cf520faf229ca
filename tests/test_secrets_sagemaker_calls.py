"""The sagemaker driver's secret of a job against the answers AWS gives when a call goes wrong
(README "Secrets", docs/sagemaker.md): a real botocore client, with its retries, talks to a small
AWS-speaking server on loopback that answers each call as the case needs and records the calls.

- CreateTrainingJob created the job but its answer was lost (a 5xx), botocore's retry is told
  ResourceInUse: the job naming fahr's new secret is this launch's; the secret stays.
- A job of that name that names another secret is not: one line, the secret deleted.
- Ctrl-C during CreateTrainingJob: the secret stays (the job may exist), one line says how to stop it.
- fahr deletes only a secret named ``fahr/<that job>``, never another ARN a job's Environment names.
- `fahr jobs` deletes the secret of a job that does not exist, once past the grace period.
"""

from __future__ import annotations

import datetime
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fahr_core import UsageError
from fahr_sagemaker import _create, aws, secrets

REGION = "us-east-1"
ACCOUNT = "123456789012"
JOB = "i17secfix-train-20261203-120000-abcd"
OURS = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:fahr/{JOB}-Ab12Cd"
CONFIG = {"region": REGION}
REQUEST = {  # what CreateTrainingJob requires, no more
    "TrainingJobName": JOB, "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/r",
    "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
    "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"}, "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
    "Environment": {"FAHR_SECRETS_ARN": OURS},
}


def secret_arn(name: str) -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-Zz98Yy"


def job_record(name: str, status: str, arn: str) -> dict:
    return {"TrainingJobName": name, "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}",
            "TrainingJobStatus": status, "Environment": {"FAHR_SECRETS_ARN": arn}}


def error(status: int, code: str, message: str):
    return status, {"__type": code, "message": message}


class Aws:
    """``answers[target]``: a function of the request's body -> (HTTP status, JSON body), or a list
    of such answers given in turn. ``calls``: (target, body) as they came."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []
        aws_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                target = self.headers["X-Amz-Target"].split(".", 1)[1]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                aws_self.calls.append((target, body))
                answer = aws_self.answers.get(target, (200, {}))
                if isinstance(answer, list):
                    answer = answer.pop(0)
                status, reply = answer(body) if callable(answer) else answer
                data = json.dumps(reply, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client(self, service: str):
        import boto3
        from botocore.config import Config

        return boto3.client(service, region_name=REGION, endpoint_url=f"http://127.0.0.1:{self.server.server_port}",
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(retries={"mode": "standard", "max_attempts": 3}))

    def targets(self) -> list[str]:
        return [target for target, _ in self.calls]

    def deleted(self) -> list[str]:
        return [body["SecretId"] for target, body in self.calls if target == "DeleteSecret"]


@pytest.fixture
def fake_aws(monkeypatch):
    made = []

    def serve(answers):
        server = Aws(answers)
        made.append(server)
        monkeypatch.setattr(aws, "client", lambda config, service: server.client(service))
        return server

    yield serve
    for server in made:
        server.server.shutdown()


def test_a_job_created_by_a_call_whose_answer_was_lost_is_this_launchs(fake_aws):
    server = fake_aws({
        "CreateTrainingJob": [error(500, "InternalFailure", "the answer was lost"),
                              error(400, "ResourceInUse", f"Training job names must be unique: {JOB}")],
        "DescribeTrainingJob": (200, job_record(JOB, "InProgress", OURS)),
    })
    arn = _create(CONFIG, JOB, REQUEST, OURS)
    assert arn == job_record(JOB, "InProgress", OURS)["TrainingJobArn"]
    assert server.targets()[:2] == ["CreateTrainingJob", "CreateTrainingJob"]  # botocore retried
    assert server.deleted() == []  # the running job reads it at start


def test_a_job_of_that_name_naming_another_secret_is_not_and_the_secret_goes(fake_aws):
    server = fake_aws({
        "CreateTrainingJob": error(400, "ResourceInUse", "Training job names must be unique"),
        "DescribeTrainingJob": (200, job_record(JOB, "InProgress", secret_arn(f"fahr/{JOB}x"))),
    })
    with pytest.raises(UsageError, match="already exists"):
        _create(CONFIG, JOB, REQUEST, OURS)
    assert server.deleted() == [OURS]


def test_ctrl_c_while_creating_keeps_the_secret_and_says_how_to_stop_the_job(monkeypatch, capfd):
    calls = []

    class Client:
        def create_training_job(self, **request):
            raise KeyboardInterrupt

        def __getattr__(self, name):
            return lambda **kw: calls.append((name, kw))

    monkeypatch.setattr(aws, "client", lambda config, service: Client())
    with pytest.raises(KeyboardInterrupt):
        _create(CONFIG, JOB, REQUEST, OURS)
    assert calls == []  # no DeleteSecret
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "may exist" in lines[0]
    assert f"fahr stop {JOB} --train-driver sagemaker" in lines[0]


@pytest.mark.parametrize("arn", [
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/database-Ab12Cd",  # the user's own
    secret_arn(f"fahr/{JOB}-other"),  # another job's
    secret_arn(f"fahr/{JOB[:-1]}"),
    f"fahr/{JOB}",  # no ARN
])
def test_only_the_jobs_own_secret_is_ever_deleted(fake_aws, arn):
    server = fake_aws({"ListSecrets": (200, {"SecretList": []})})
    secrets.forget_if_ended(CONFIG, job_record(JOB, "Completed", arn))
    assert secrets.delete(CONFIG, arn, JOB) is False
    secrets.forget_ended(CONFIG, [job_record(JOB, "Failed", arn)])
    assert server.deleted() == []


def test_the_jobs_own_secret_is_deleted(fake_aws):
    server = fake_aws({})
    secrets.forget_if_ended(CONFIG, job_record(JOB, "Completed", OURS))
    assert server.deleted() == [OURS]


def test_fahr_jobs_deletes_the_secrets_of_ended_and_missing_jobs_past_the_grace_period(fake_aws):
    now = datetime.datetime.now(datetime.timezone.utc)
    old = now - datetime.timedelta(seconds=secrets.GRACE_SECONDS + 60)
    young = now - datetime.timedelta(seconds=30)
    names = {"listed-ended": old, "listed-running": old, "missing": old, "missing-young": young,
             "unlisted-running": old, "unlisted-ended": old}
    listing = [{"Name": f"fahr/{name}", "ARN": secret_arn(f"fahr/{name}"), "CreatedDate": created.timestamp()}
               for name, created in names.items()]
    listing.append({"Name": "fahr/stray", "ARN": secret_arn("fahr/not-stray"), "CreatedDate": old.timestamp()})

    def describe(body):
        name = body["TrainingJobName"]
        if name.startswith("missing"):
            return error(400, "ValidationException", "Requested resource not found.")
        status = "Completed" if name.endswith("ended") else "InProgress"
        return 200, job_record(name, status, secret_arn(f"fahr/{name}"))

    server = fake_aws({"ListSecrets": (200, {"SecretList": listing}), "DescribeTrainingJob": describe})
    secrets.forget_ended(CONFIG, [job_record("listed-ended", "Stopped", secret_arn("fahr/listed-ended")),
                                  job_record("listed-running", "InProgress", secret_arn("fahr/listed-running"))])
    assert sorted(server.deleted()) == sorted(secret_arn(f"fahr/{n}") for n in ("listed-ended", "missing",
                                                                                "unlisted-ended"))
    described = sorted(b["TrainingJobName"] for t, b in server.calls if t == "DescribeTrainingJob")
    assert described == ["missing", "unlisted-ended", "unlisted-running"]  # not the young, not the listed


def test_a_listing_refused_warns_only_when_an_ended_jobs_secret_is_known(fake_aws, capfd):
    fake_aws({"ListSecrets": error(400, "AccessDeniedException", "not allowed")})
    secrets.forget_ended(CONFIG, [job_record("a-job", "InProgress", secret_arn("fahr/a-job"))])
    assert capfd.readouterr().err == ""  # who never gave a job a secret sees nothing
    secrets.forget_ended(CONFIG, [job_record("a-job", "Completed", secret_arn("fahr/a-job"))])
    assert "the secrets of ended jobs were not deleted" in capfd.readouterr().err
