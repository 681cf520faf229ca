"""A job told of its end by AWS itself, followed or not: ``config.notify_topic`` (docs/sagemaker.md,
"Told when a job ends").

One EventBridge rule per topic, ``fahr-notify-<hash of the topic's ARN>``, created or updated at
each launch (events:PutRule, events:PutTargets: both idempotent): it matches the "SageMaker
Training Job State Change" events with a final status of the jobs tagged ``fahr:notify`` with the
rule's name, and publishes each to the topic. So the rules never pile up (one per topic, however
many jobs), and one fahr never has to be there at a job's end to tidy a rule of that job.
"""

from __future__ import annotations

import hashlib
import json
import re

#: The job's tag naming the rule that tells its end: the rule matches it in the event.
TAG = "fahr:notify"
RULE_PREFIX = "fahr-notify-"
TARGET_ID = "fahr-notify-topic"
FINAL_STATUSES = ("Completed", "Failed", "Stopped")
# A standard SNS topic's ARN (EventBridge cannot publish to a FIFO topic without a message group).
_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:([a-z0-9-]+):(\d{12}):[A-Za-z0-9_-]{1,256}")


def topic_problem(value: str) -> str | None:
    """Why ``value`` is not a topic's ARN fahr can target, or None (config.notify_topic's check)."""
    if not value:
        return None
    if not _TOPIC_ARN.fullmatch(value):
        return ("is not the ARN of a standard SNS topic, like arn:aws:sns:us-east-1:123456789012:training-ends "
                "('' for none)")
    return None


def rule_name(topic: str) -> str:
    """The one rule of ``topic``: named by its ARN, so every job told there shares it."""
    return RULE_PREFIX + hashlib.sha256(topic.encode()).hexdigest()[:16]


def pattern(rule: str) -> dict:
    """The events the rule matches: a final state of a training job tagged with the rule's name."""
    return {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Training Job State Change"],
        "detail": {"TrainingJobStatus": list(FINAL_STATUSES), "Tags": {TAG: [rule]}},
    }


def arrange(config, topic: str, region: str) -> str:
    """Create or update the rule of ``topic`` and its target; the rule's name (the job's tag)."""
    from fahr_core import ConfigError

    from fahr_sagemaker import aws

    found = _TOPIC_ARN.fullmatch(topic)
    if found and found.group(1) != region:
        raise ConfigError(f"config.notify_topic={topic} is in {found.group(1)}, the job in {region}: EventBridge "
                          "publishes a job's events to a topic of its own region; name a topic there")
    rule = rule_name(topic)
    events = aws.client(config, "events")
    with aws.translated(f"arranging the EventBridge rule {rule} that tells config.notify_topic of the job's end "
                        "(it needs events:PutRule and events:PutTargets)"):
        events.put_rule(Name=rule, EventPattern=json.dumps(pattern(rule)), State="ENABLED",
                        Description=f"fahr: the end of training jobs tagged {TAG}={rule}, published to {topic}"[:512])
        answer = events.put_targets(Rule=rule, Targets=[{"Id": TARGET_ID, "Arn": topic}])
    if answer.get("FailedEntryCount"):
        entry = (answer.get("FailedEntries") or [{}])[0]
        raise ConfigError(f"config.notify_topic={topic}: EventBridge refused it as the target of rule {rule} "
                          f"({entry.get('ErrorCode', '')} {entry.get('ErrorMessage', '')}".rstrip() + ")")
    return rule
