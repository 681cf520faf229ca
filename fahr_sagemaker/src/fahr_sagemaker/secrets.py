"""A job's secrets (``fahr fit --secret NAME``) on SageMaker: one Secrets Manager secret per job.

Before CreateTrainingJob, :func:`create` stores the values as one JSON object in a secret named
``fahr/<job>``, tagged with the job; the job's Environment carries its ARN only
(``fahr_core.SECRETS_ARN_ENV``), which fahr's launcher in the image reads at start with the job's
role (secretsmanager:GetSecretValue). DescribeTrainingJob, Search and the console show that ARN,
never a value. fahr deletes the secret, without a recovery window, once it sees the job ended:
``wait``, ``stop``, ``fetch`` of the job, and ``jobs`` for the ended jobs it lists (a detached
job's secret lives until one of them runs); and at once when the launch fails. ``jobs`` also
deletes a secret whose job does not exist (a launch interrupted before SageMaker created it),
once it is older than :data:`GRACE_SECONDS`. fahr deletes only a secret named ``fahr/<job>`` for
job ``<job>``, never another ARN a job's Environment names. README of this driver, "Secrets",
lists the IAM actions.
"""

from __future__ import annotations

import json
import re
import time
from typing import Iterable, Mapping

from fahr_core import FINAL_STATES, SECRETS_ARN_ENV, ui, wait_command
from fahr_core import __version__ as fahr_version

PREFIX = "fahr/"

#: A secret this young whose job does not exist yet may be a launch's still calling
#: CreateTrainingJob (botocore's retries included): ``fahr jobs`` spares it.
GRACE_SECONDS = 15 * 60


def secret_name(job_name: str) -> str:
    return f"{PREFIX}{job_name}"


def is_jobs_own(arn: str, job_name: str) -> bool:
    """Whether ``arn`` is the ARN of the secret fahr makes for job ``job_name``: ``fahr/<job>``,
    with the six characters Secrets Manager appends to a secret's name in its ARN."""
    parts = arn.split(":", 6)
    return (len(parts) == 7 and parts[0] == "arn" and parts[2] == "secretsmanager" and parts[5] == "secret"
            and re.fullmatch(re.escape(secret_name(job_name)) + r"-[A-Za-z0-9]{6}", parts[6]) is not None)


def create(config, job_name: str, values: Mapping[str, str]) -> str:
    """Store ``values`` in the job's secret; its ARN."""
    from fahr_sagemaker import aws

    with aws.translated(f"storing the secrets of job {job_name} (secretsmanager:CreateSecret)"):
        answer = aws.client(config, "secretsmanager").create_secret(
            Name=secret_name(job_name),
            Description=f"fahr: the --secret values of SageMaker training job {job_name}; "
                        "fahr deletes it when the job ends",
            SecretString=json.dumps(dict(values)),
            Tags=[{"Key": "fahr:job", "Value": job_name}, {"Key": "fahr:version", "Value": fahr_version}],
        )
    return answer["ARN"]


def arn_of(info: Mapping) -> str:
    """The ARN of the secret a job was given (its Environment says), or ''."""
    return (info.get("Environment") or {}).get(SECRETS_ARN_ENV, "")


def delete(config, arn: str, job_name: str, quiet: bool = False) -> bool:
    """Delete the secret ``arn`` for good; False when it was gone already, or is not job
    ``job_name``'s own (:func:`is_jobs_own`: a job's Environment may name any ARN, and fahr deletes
    only what it made). ``quiet``: a failure is a warning, not an error (the job's own end is what
    the command reports)."""
    from botocore import exceptions as bex

    from fahr_sagemaker import aws

    if not is_jobs_own(arn, job_name):
        return False
    try:
        with aws.translated(f"deleting the secrets of job {job_name} (secretsmanager:DeleteSecret)"):
            try:
                aws.client(config, "secretsmanager").delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
            except bex.ClientError as exc:
                if aws.error_code(exc) == "ResourceNotFoundException":
                    return False
                raise
    except Exception as exc:
        if not quiet:
            raise
        ui.warn(f"{getattr(exc, 'message', exc)}; '{wait_command(job_name, 'sagemaker')}' deletes it later, "
                f"or delete {arn} yourself")
        return False
    return True


def forget_if_ended(config, info: Mapping) -> None:
    """Delete the secret of a job that has ended (``info``: DescribeTrainingJob's answer)."""
    arn = arn_of(info)
    if arn and info.get("TrainingJobStatus") in FINAL_STATES:
        delete(config, arn, info.get("TrainingJobName", ""), quiet=True)


def forget_ended(config, records: Iterable[Mapping], now: float | None = None) -> None:
    """``fahr jobs``: delete the secrets that remain of ended jobs (``records``: Search's
    TrainingJob records), and of jobs that do not exist, older than :data:`GRACE_SECONDS`. One
    ListSecrets finds which remain: a listing of long-gone jobs costs no DeleteSecret each; a
    secret of a job ``records`` does not hold costs one DescribeTrainingJob."""
    from fahr_core import UsageError

    from fahr_sagemaker import aws, follow

    records = {r.get("TrainingJobName", ""): r for r in records}
    try:
        with aws.translated("listing fahr's job secrets (secretsmanager:ListSecrets)"):
            pages = aws.client(config, "secretsmanager").get_paginator("list_secrets").paginate(
                Filters=[{"Key": "name", "Values": [PREFIX]}])
            remaining = [entry for page in pages for entry in page.get("SecretList", [])]
    except Exception as exc:
        if any(arn_of(r) and r.get("TrainingJobStatus") in FINAL_STATES for r in records.values()):
            ui.warn(f"{getattr(exc, 'message', exc)}; the secrets of ended jobs were not deleted")
        return  # else nothing is known to remain: no warning for who never gave a job a secret
    now = time.time() if now is None else now
    for entry in remaining:
        name, arn = entry.get("Name", ""), entry.get("ARN", "")
        job_name = name[len(PREFIX):] if name.startswith(PREFIX) else ""
        if not job_name or not is_jobs_own(arn, job_name):
            continue
        record = records.get(job_name)
        if record is None:
            created = entry.get("CreatedDate")
            if created is None or now - created.timestamp() < GRACE_SECONDS:
                continue
            try:
                record = follow.describe(config, job_name)
            except UsageError:  # no such job: nothing will read it
                delete(config, arn, job_name, quiet=True)
                continue
            except Exception:
                continue  # unknown: left for the next listing
        if record.get("TrainingJobStatus") in FINAL_STATES:
            delete(config, arn, job_name, quiet=True)
