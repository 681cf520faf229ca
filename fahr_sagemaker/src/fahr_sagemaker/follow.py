"""Follow a training job: DescribeTrainingJob with backoff, every SecondaryStatus change as it
happens, and the CloudWatch log events of every stream of the job, labelled by host when the
job has several (``wait``); the same reader yields them as LogLine to the ``logs`` hook.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from fahr_core import FINAL_STATES, LogLine, UsageError, ui

from fahr_sagemaker import aws


_AFTER_TRAINING = frozenset({"Uploading", "Completed", "Failed", "Stopping", "Stopped", "MaxRuntimeExceeded",
                             "MaxWaitTimeExceeded", "Interrupted"})


class LogFollower:
    """Reads new events of every log stream ``<job>/…`` of the job, in order per stream.

    Shared by ``wait`` (which prints them) and ``logs`` (which yields them): each call of
    :meth:`read` returns what arrived since the last one.
    """

    def __init__(self, config, job_name: str):
        self.logs = aws.client(config, "logs")
        self.job_name = job_name
        self.tokens: dict[str, str | None] = {}
        self.label = False
        self.streams_seen = 0

    def _streams(self) -> list[str]:
        from botocore import exceptions as bex

        names: list[str] = []
        kwargs = {"logGroupName": aws.LOG_GROUP, "logStreamNamePrefix": f"{self.job_name}/"}
        try:
            while True:
                page = self.logs.describe_log_streams(**kwargs)
                names += [s["logStreamName"] for s in page.get("logStreams", [])]
                if not page.get("nextToken"):
                    break
                kwargs["nextToken"] = page["nextToken"]
        except bex.ClientError as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":  # no log group yet
                return []
            raise
        return sorted(names)

    def host_of(self, stream: str) -> str:
        """``algo-N`` of a stream ``<job>/algo-N-<epoch>``."""
        return stream[len(self.job_name) + 1:].rsplit("-", 1)[0] or stream

    def read(self) -> list[LogLine]:
        """The events that arrived since the last call, stream after stream, each in order."""
        lines: list[LogLine] = []
        with aws.translated(f"reading the logs of {self.job_name}"):
            streams = self._streams()
            self.streams_seen = max(self.streams_seen, len(streams))
            for stream in streams:
                host = self.host_of(stream)
                while True:
                    kwargs = {"logGroupName": aws.LOG_GROUP, "logStreamName": stream, "startFromHead": True}
                    if self.tokens.get(stream):
                        kwargs["nextToken"] = self.tokens[stream]
                    page = self.logs.get_log_events(**kwargs)
                    for event in page.get("events", []):
                        stamp = event.get("timestamp")
                        lines.append(LogLine(host=host, text=event["message"].rstrip("\n"),
                                             timestamp=stamp / 1000 if stamp is not None else None))
                    token = page.get("nextForwardToken")
                    if not page.get("events") or token == self.tokens.get(stream):
                        self.tokens[stream] = token or self.tokens.get(stream)
                        break
                    self.tokens[stream] = token
        return lines

    def poll(self, several_hosts: bool) -> int:
        """Print the events that arrived since the last call; how many there were."""
        lines = self.read()
        self.label = several_hosts or self.streams_seen > 1
        for line in lines:
            ui.log_line(line.text, line.host if self.label else None)
        return len(lines)


def describe(config, job_name: str) -> dict:
    """DescribeTrainingJob, with a missing job as a usage error."""
    from botocore import exceptions as bex

    with aws.translated(f"describing training job {job_name}"):
        try:
            return aws.client(config, "sagemaker").describe_training_job(TrainingJobName=job_name)
        except bex.ClientError as exc:
            if aws.error_code(exc) in ("ValidationException", "ResourceNotFound") and "not found" in aws.error_message(exc).lower():
                raise UsageError(
                    f"no training job {job_name!r} in {aws.region_of(config)}; check the name and the region"
                ) from exc
            raise


def follow(config, job_name: str, poll_interval: float) -> dict:
    """Print status changes and logs until the job ends; the final DescribeTrainingJob."""
    logs = LogFollower(config, job_name)
    seen_status = ""
    printed = 0
    delay = 1.0
    while True:
        info = describe(config, job_name)
        several = info.get("ResourceConfig", {}).get("InstanceCount", 1) > 1
        # Every transition, also those that came and went between two looks (as the SDK does);
        # the ones that end training are printed after the logs the job wrote before them.
        transitions = info.get("SecondaryStatusTransitions") or []
        fresh = transitions[printed:]
        printed = max(printed, len(transitions))
        cut = next((i for i, t in enumerate(fresh) if t["Status"] in _AFTER_TRAINING), len(fresh))
        for transition in fresh[:cut]:
            ui.status_change(job_name, transition["Status"], transition.get("StatusMessage", ""))
        changed = logs.poll(several) > 0 or bool(fresh)
        for transition in fresh[cut:]:
            ui.status_change(job_name, transition["Status"], transition.get("StatusMessage", ""))
        secondary = info.get("SecondaryStatus", "")
        if not transitions and secondary and secondary != seen_status:
            seen_status = secondary  # a backend that reports no transitions
            ui.status_change(job_name, secondary)
            changed = True
        if info["TrainingJobStatus"] in FINAL_STATES:
            # Log events can land shortly after the status changes: drain until quiet.
            for _ in range(3):
                if not logs.poll(several):
                    break
                time.sleep(0.5)
            return info
        # Back off while nothing happens; come back quickly after something did.
        delay = 1.0 if changed else min(poll_interval, delay * 1.5)
        time.sleep(delay)


def job_logs(config, job_name: str, follow_job: bool, poll_interval: float) -> Iterator[LogLine]:
    """The job's log lines from the start (the ``logs`` hook).

    Without ``follow_job``: every line written so far, then stop. With it: DescribeTrainingJob
    and the streams again and again, with ``wait``'s backoff, until the job has ended and its
    streams are drained.
    """
    logs = LogFollower(config, job_name)
    if not follow_job:
        lines = logs.read()
        if not lines and not logs.streams_seen:
            describe(config, job_name)  # no streams: a job that has not logged yet, or no such job
        yield from lines
        return
    delay = 1.0
    while True:
        info = describe(config, job_name)
        lines = logs.read()
        yield from lines
        if info["TrainingJobStatus"] in FINAL_STATES:
            # Log events can land shortly after the status changes: drain until quiet.
            while True:
                time.sleep(0.5)
                lines = logs.read()
                if not lines:
                    return
                yield from lines
        delay = 1.0 if lines else min(poll_interval, delay * 1.5)
        time.sleep(delay)


def timings(info: dict) -> str:
    """Training seconds, billable seconds and, for spot jobs, the savings."""
    training = info.get("TrainingTimeInSeconds")
    billable = info.get("BillableTimeInSeconds")
    if training is None:
        return ""
    text = f"training seconds: {training}"
    if billable is not None:
        text += f", billable seconds: {billable}"
        if info.get("EnableManagedSpotTraining") and training:
            savings = (1 - billable / training) * 100
            text += f", managed spot training savings: {savings:.1f}%"
    return text
