"""A job's secrets (``fahr fit --secret NAME``) on SageMaker: one Secrets Manager secret per job.

Before CreateTrainingJob, :func:`create` stores the values as one JSON object in a secret named
``fahr/<job>``, tagged with the job; the job's Environment carries its ARN only
(``fahr_core.SECRETS_ARN_ENV``), which fahr's launcher in the image reads at start with the job's
role (secretsmanager:GetSecretValue). DescribeTrainingJob, Search and the console show that ARN,
never a value. fahr deletes the secret, without a recovery window, once it sees the job ended:
``wait``, ``stop``, ``fetch`` of the job, and ``jobs`` for the ended jobs it lists (a detached
job's secret lives until one of them runs); and at once when the launch fails. README of this
driver, "Secrets", lists the IAM actions.
"""

from __future__ import annotations

import json
from typing import Iterable, Mapping

from fahr_core import FINAL_STATES, SECRETS_ARN_ENV, ui, wait_command
from fahr_core import __version__ as fahr_version

PREFIX = "fahr/"


def secret_name(job_name: str) -> str:
    return f"{PREFIX}{job_name}"


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
    """Delete the secret ``arn`` for good; False when it was gone already. ``quiet``: a failure is
    a warning, not an error (the job's own end is what the command reports)."""
    from botocore import exceptions as bex

    from fahr_sagemaker import aws

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
        delete(config, arn, info.get("TrainingJobName", arn), quiet=True)


def forget_ended(config, records: Iterable[Mapping]) -> None:
    """``fahr jobs``: delete the secrets that remain of the ended jobs among ``records`` (Search's
    TrainingJob records). One ListSecrets finds which remain: a listing of long-gone jobs costs
    no DeleteSecret each."""
    ended = {arn_of(r): r.get("TrainingJobName", "") for r in records
             if arn_of(r) and r.get("TrainingJobStatus") in FINAL_STATES}
    if not ended:
        return
    from fahr_sagemaker import aws

    try:
        with aws.translated("listing fahr's job secrets (secretsmanager:ListSecrets)"):
            pages = aws.client(config, "secretsmanager").get_paginator("list_secrets").paginate(
                Filters=[{"Key": "name", "Values": [PREFIX]}])
            remaining = {entry["ARN"] for page in pages for entry in page.get("SecretList", [])}
    except Exception as exc:
        ui.warn(f"{getattr(exc, 'message', exc)}; the secrets of ended jobs were not deleted")
        return
    for arn in sorted(remaining & set(ended)):
        delete(config, arn, ended[arn], quiet=True)
