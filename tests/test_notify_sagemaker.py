"""Told when a job ends, on the emulated ``sagemaker`` (docs/notifications.md, docs/sagemaker.md):
an attached fit POSTs to ``--notify URL`` itself (a loopback server of the test); with
``notify_topic`` AWS itself tells an SNS topic, through the one EventBridge rule fahr keeps per topic.

moto's EventBridge delivers to SQS, CloudWatch Logs and archives, not to SNS (nor does it answer
TestEventPattern), and the emulated SageMaker emits no events: so the rule's pattern is checked by
moto's EventBridge delivering the events SageMaker sends at a job's end to a queue of the test,
added to the rule as a second target; the SNS target is checked as configured, not by a delivery.
"""

from __future__ import annotations

import json
import time

import pytest

from aws_emulator.fixtures import job_name_of, run_fahr, sagemaker_args, write_model
from fahr_sagemaker import notifications
from test_notify import receiver  # noqa: F401 - the loopback server, a module's own

SCRIPT = "import json\njson.dump({'ok': 1}, open('/opt/ml/model/model.json', 'w'))\n"


@pytest.fixture(scope="module")
def launched(stack, tmp_path_factory, receiver):
    """An attached fit with --notify and notify_topic, then a detached one with both: the module's jobs."""
    root = tmp_path_factory.mktemp("i19notifysm")
    script = write_model(root, "i19notifysm", SCRIPT)
    topic = stack.client("sns").create_topic(Name="i19-training-ends")["TopicArn"]
    args = [*sagemaker_args("i19notify"), f"--config.notify_topic={topic}"]
    attached = run_fahr(stack, "fit", str(script), *args, "--notify", f"{receiver.url}/sm", cwd=root)
    detached = run_fahr(stack, "fit", str(script), *args, "--detach", "--notify", f"{receiver.url}/sm-detached",
                        cwd=root)
    return {"topic": topic, "attached": attached, "detached": detached, "root": root}


def _final_event(job: str, status: str, tags: dict) -> dict:
    """The event SageMaker sends on a training job's state change (its detail: the job's record)."""
    return {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "SageMaker Training Job State Change",
            "source": "aws.sagemaker", "account": "123456789012", "time": "2026-12-03T20:00:00Z",
            "region": "us-east-1", "resources": [f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}"],
            "detail": {"TrainingJobName": job, "TrainingJobStatus": status, "SecondaryStatus": status,
                       "ModelArtifacts": {"S3ModelArtifacts": f"s3://b/{job}/output/model.tar.gz"}, "Tags": tags}}


def test_an_attached_sagemaker_fit_posts_its_end(launched, receiver):
    result = launched["attached"]
    assert result.code == 0, result.output
    (body,) = receiver.to("/sm")
    assert body["job"] == job_name_of(result) and body["driver"] == "sagemaker" and body["status"] == "Completed"
    assert body["model"].startswith("s3://") and body["failure_kind"] is None
    assert body["duration_seconds"] is not None
    assert isinstance(body["cost"], float) and body["cost"] >= 0  # priced by the (emulated) Price List


def test_a_detached_sagemaker_fit_says_the_url_is_not_told_but_the_topic_is(launched, receiver):
    result = launched["detached"]
    assert result.code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "--notify" in line and "warning" in line]
    assert len(warnings) == 1 and "detached" in warnings[0], result.stderr
    time.sleep(1)
    assert receiver.to("/sm-detached") == []


def test_one_rule_per_topic_matches_the_end_of_the_jobs_launched_with_it(launched, stack):
    events = stack.client("events")
    rule = notifications.rule_name(launched["topic"])
    rules = [r for r in events.list_rules(NamePrefix=notifications.RULE_PREFIX)["Rules"]]
    assert [r["Name"] for r in rules] == [rule]  # two launches, one rule
    assert rules[0]["State"] == "ENABLED"
    targets = events.list_targets_by_rule(Rule=rule)["Targets"]
    assert [t["Arn"] for t in targets] == [launched["topic"]]
    # What the rule matches, through moto's EventBridge (which delivers to SQS, and fails on an SNS
    # target): the rule's own pattern on a bus of the test, a queue as its target, and the events
    # SageMaker would send put on that bus.
    sqs = stack.client("sqs")
    queue = sqs.create_queue(QueueName="i19-notify-seen")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.create_event_bus(Name="i19-notify-test")
    events.put_rule(Name="i19-notify-copy", EventBusName="i19-notify-test", EventPattern=rules[0]["EventPattern"])
    events.put_targets(Rule="i19-notify-copy", EventBusName="i19-notify-test",
                       Targets=[{"Id": "i19-test-queue", "Arn": queue_arn}])
    sm = stack.client("sagemaker")
    sent = []
    for result in (launched["attached"], launched["detached"]):
        job = job_name_of(result)
        arn = sm.describe_training_job(TrainingJobName=job)["TrainingJobArn"]
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
        assert tags[notifications.TAG] == rule
        for status in ("InProgress", "Completed"):
            sent.append(_final_event(job, status, tags))
    sent.append(_final_event("someone-elses-job", "Failed", {"team": "x"}))
    events.put_events(Entries=[{"Source": e["source"], "DetailType": e["detail-type"], "Resources": e["resources"],
                                "Detail": json.dumps(e["detail"]), "EventBusName": "i19-notify-test"} for e in sent])
    seen = []
    for _ in range(10):
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        seen += [json.loads(m["Body"])["detail"] for m in messages]
        if len(seen) >= 2:
            break
    assert sorted((d["TrainingJobName"], d["TrainingJobStatus"]) for d in seen) == sorted(
        (job_name_of(r), "Completed") for r in (launched["attached"], launched["detached"]))


@pytest.mark.parametrize("topic", ["arn:aws:sqs:us-east-1:123456789012:q", "my-topic",
                                   "arn:aws:sns:us-east-1:123456789012:t.fifo"])
def test_a_notify_topic_that_is_no_sns_topic_is_refused(stack, tmp_path, topic):
    script = write_model(tmp_path, "i19notifysmbad", SCRIPT)
    result = run_fahr(stack, "fit", str(script), *sagemaker_args("i19notify"), f"--config.notify_topic={topic}",
                      cwd=tmp_path)
    assert result.code == 2, result.output
    assert len(result.error_lines()) == 1 and "notify_topic" in result.error_lines()[0]


def test_a_topic_of_another_region_is_refused_before_the_job(stack, tmp_path):
    from fahr_core import ConfigError

    with pytest.raises(ConfigError, match="region"):
        notifications.arrange({}, "arn:aws:sns:eu-west-1:123456789012:t", "us-east-1")
