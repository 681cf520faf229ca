"""Moving data to and from S3: local input folders up, models down.

Transfers go through boto3's transfer manager (multipart, concurrent) with a progress line at
most every couple of seconds. The core extracts the downloaded archive; nothing here unpacks.
"""

from __future__ import annotations

import os
import tarfile
import threading
import time
from pathlib import Path

from fahr_core import COMPLETED, IN_PROGRESS, UsageError, ui

from fahr_sagemaker import aws

MODEL_TAG_ENV = "FAHR_MODEL_TAG"


class Progress:
    """A thread-safe byte counter that prints ``what: NN% of SIZE`` now and then."""

    def __init__(self, what: str, total: int):
        self.what, self.total, self.done = what, max(total, 0), 0
        self._lock = threading.Lock()
        self._last = 0.0

    def __call__(self, count: int) -> None:
        with self._lock:
            self.done += count
            now = time.monotonic()
            if now - self._last >= 2 or self.done >= self.total:
                if self.done >= self.total and self._last < 0:
                    return
                self._last = -1 if self.done >= self.total else now
                ui.info(f"{self.what}: {self._percent()} of {_size(self.total)}")

    def _percent(self) -> str:
        return f"{100 * self.done / self.total:.0f}%" if self.total else "100%"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(max_concurrency=8, multipart_threshold=16 * 1024 * 1024)


# -- inputs -----------------------------------------------------------------------------------


def check_input(channel: str, value: str) -> None:
    """An ``--input`` value this driver can use: an s3:// URI, or a local file or folder."""
    if value.startswith("s3://"):
        aws.parse_s3(value, f"--input {channel}")
        return
    path = Path(value[len("file://"):] if value.startswith("file://") else value).expanduser()
    if not path.exists():
        raise UsageError(f"--input {channel}={value}: {path} does not exist (and is not an s3:// URI)")


def input_uri(config, job_name: str, channel: str, value: str, output: aws.S3Uri) -> str:
    """The S3 URI of an input channel: as given, or a local folder/file uploaded first."""
    check_input(channel, value)
    if value.startswith("s3://"):
        return value  # as given: "s3://b/data/" is a folder, "s3://b/data.csv" one object
    path = Path(value[len("file://"):] if value.startswith("file://") else value).expanduser()
    target = output.join(job_name, "input", channel)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    ui.info(f"uploading input {channel} ({len(files)} files, {_size(total)}) to {target.uri}/")
    progress = Progress(f"upload of {channel}", total)
    s3 = aws.client(config, "s3")
    with aws.translated(f"uploading input {channel} to {target.uri}"):
        for file in files:
            rel = file.name if path.is_file() else file.relative_to(path).as_posix()
            s3.upload_file(str(file), target.bucket, target.join(rel).prefix, Callback=progress,
                           Config=_transfer_config())
    return target.uri + "/"


# -- fetch ------------------------------------------------------------------------------------


#: The tag every job fahr launches carries: the model tag it trained.
MODEL_TAG_TAG = "fahr:model-tag"


def recorded_tag(info: dict) -> str:
    """The model tag a job trained, as launch recorded it: its environment, else its tags."""
    tag = (info.get("Environment") or {}).get(MODEL_TAG_ENV)
    if tag:
        return tag
    return next((t.get("Value", "") for t in info.get("Tags") or [] if t.get("Key") == MODEL_TAG_TAG), "")


def newest_completed(config, model_tag: str, location: aws.S3Uri) -> dict:
    """The newest Completed job of ``model_tag`` whose output path is ``location``.

    Found by the model tag recorded with the job (its ``fahr:model-tag`` tag), not by its name,
    which ``base_job_name`` changes: SageMaker's Search (sagemaker:Search), Completed jobs of the
    tag, newest first, page after page until one wrote to ``location``; that one is described
    afresh and its recorded tag confirmed.
    """
    from fahr_sagemaker.follow import describe

    sm = aws.client(config, "sagemaker")
    request = {
        "Resource": "TrainingJob",
        "SearchExpression": {
            "Filters": [
                {"Name": f"Tags.{MODEL_TAG_TAG}", "Operator": "Equals", "Value": model_tag},
                {"Name": "TrainingJobStatus", "Operator": "Equals", "Value": COMPLETED},
            ],
            "Operator": "And",
        },
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": 100,
    }
    looked = pages = 0
    with aws.translated("searching the training jobs of the model tag (sagemaker:Search)"):
        while True:
            page = sm.search(**request)
            pages += 1
            for record in page.get("Results", []):
                job = record.get("TrainingJob") or {}
                looked += 1
                output = (job.get("OutputDataConfig") or {}).get("S3OutputPath", "")
                if not output or aws.parse_s3(output, "S3OutputPath") != location:
                    continue
                if recorded_tag(job) not in ("", model_tag) or job.get("TrainingJobStatus") != COMPLETED:
                    continue  # a search index lagging behind the job: trust only its own record
                info = describe(config, job["TrainingJobName"])
                if recorded_tag(info) in ("", model_tag) and info["TrainingJobStatus"] == COMPLETED:
                    ui.info(f"{looked} completed jobs of {model_tag} looked at ({pages} page{'s' * (pages > 1)} "
                            f"of sagemaker:Search); the newest under {location.uri} is {info['TrainingJobName']}")
                    return info
            if not page.get("NextToken"):
                break
            request["NextToken"] = page["NextToken"]
    _bucket_must_exist(config, location)  # a typo in the bucket deserves its own message
    raise UsageError(
        f"no completed job of {model_tag!r} under {location.uri} in {aws.region_of(config)}; "
        "train it first with 'fahr fit', or pass --job NAME"
    )


def _bucket_must_exist(config, location: aws.S3Uri) -> None:
    """A :class:`UsageError` when the bucket of ``location`` does not exist; anything else passes
    (without s3:ListBucket, HeadBucket is denied: that says nothing about the jobs)."""
    from botocore import exceptions as bex

    with aws.translated(f"checking bucket {location.bucket}"):
        try:
            aws.client(config, "s3").head_bucket(Bucket=location.bucket)
        except bex.ClientError as exc:
            if aws.error_code(exc) in ("NoSuchBucket", "404", "NotFound"):
                raise UsageError(
                    f"{location.uri}: bucket {location.bucket!r} does not exist in {aws.region_of(config)}; "
                    "check ARTIFACT_LOCATION (the output_path the job used)"
                ) from exc


def job_for_fetch(config, model_tag: str, job_name: str | None, location: aws.S3Uri | None) -> dict:
    """DescribeTrainingJob of the job to fetch, checked to be Completed and of ``model_tag``."""
    from fahr_sagemaker.follow import describe

    if job_name:
        info = describe(config, job_name)
    else:
        if location is None:
            raise UsageError("fetch needs the S3 folder the job wrote to (ARTIFACT_LOCATION or config.output_path)")
        info = newest_completed(config, model_tag, location)
    name = info["TrainingJobName"]
    tag = recorded_tag(info)
    if tag and tag != model_tag:
        raise UsageError(f"job {name} trained {tag!r}, not {model_tag!r}")
    status = info["TrainingJobStatus"]
    if status != COMPLETED:
        hint = f"; follow it with 'fahr wait {name} --train-driver sagemaker'" if status == IN_PROGRESS else ""
        raise UsageError(f"job {name} is {status}, it has no model to fetch{hint}")
    return info


def download_model(config, info: dict, download_dir: Path) -> Path:
    """Download the job's model into ``download_dir``/model.tar.gz.

    With ``CompressionType: NONE`` SageMaker leaves the files uncompressed under a prefix: they
    are downloaded and packed into a tar.gz here, so the core extracts both the same way.
    """
    artifact = (info.get("ModelArtifacts") or {}).get("S3ModelArtifacts", "")
    if not artifact:
        raise UsageError(f"job {info['TrainingJobName']} reports no model artifacts")
    where = aws.parse_s3(artifact, "S3ModelArtifacts")
    target = Path(download_dir) / "model.tar.gz"
    s3 = aws.client(config, "s3")
    compression = (info.get("OutputDataConfig") or {}).get("CompressionType", "GZIP")
    with aws.translated(f"downloading {artifact}"):
        if compression != "NONE" or artifact.endswith(".tar.gz"):
            return download_object(config, where, target)
        keys = _list_keys(s3, where)
        total = sum(size for _, size in keys)
        ui.info(f"downloading {len(keys)} uncompressed model files ({_size(total)}) from {where.uri}/")
        progress = Progress("download", total)
        staging = Path(download_dir) / "files"
        for key, _ in keys:
            rel = key[len(where.prefix):].lstrip("/")
            if not rel:
                continue
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(where.bucket, key, str(dest), Callback=progress, Config=_transfer_config())
        with tarfile.open(target, "w:gz") as tar:
            for path in sorted(staging.rglob("*")) if staging.exists() else []:
                tar.add(str(path), arcname=path.relative_to(staging).as_posix(), recursive=False)
    return target


def model_is_empty(config, info: dict) -> bool | None:
    """Whether a completed job's model holds no file; None when that cannot be read.

    model.tar.gz is streamed only up to its first file, so a large model costs one small read;
    an uncompressed model is empty when its prefix holds no object.
    """
    artifact = (info.get("ModelArtifacts") or {}).get("S3ModelArtifacts", "")
    if not artifact:
        return None
    try:
        where = aws.parse_s3(artifact, "S3ModelArtifacts")
        s3 = aws.client(config, "s3")
        if not artifact.endswith(".tar.gz") and (info.get("OutputDataConfig") or {}).get("CompressionType") == "NONE":
            listed = s3.list_objects_v2(Bucket=where.bucket, Prefix=where.prefix + "/", MaxKeys=1)
            return not listed.get("KeyCount", len(listed.get("Contents", [])))
        body = s3.get_object(Bucket=where.bucket, Key=where.prefix)["Body"]
        try:
            with tarfile.open(fileobj=body, mode="r|gz") as tar:
                return all(member.isdir() for member in tar)
        finally:
            body.close()
    except Exception:  # noqa: BLE001 - a hint only: the job's result stands whatever happens here
        return None


def _list_keys(s3, where: aws.S3Uri) -> list[tuple[str, int]]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=where.bucket, Prefix=where.prefix + "/"):
        keys += [(o["Key"], o["Size"]) for o in page.get("Contents", [])]
    return keys


def download_object(config, where: aws.S3Uri, target: Path) -> Path:
    """One object, streamed to disk with concurrent ranged parts and progress."""
    from botocore import exceptions as bex

    s3 = aws.client(config, "s3")
    with aws.translated(f"downloading {where.uri}"):
        try:
            size = s3.head_object(Bucket=where.bucket, Key=where.prefix)["ContentLength"]
        except bex.ClientError as exc:
            if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise UsageError(f"{where.uri} does not exist") from exc
            if aws.error_code(exc) in ("403", "AccessDenied"):
                raise UsageError(f"{where.uri} is not readable with these credentials (access denied)") from exc
            raise
        ui.info(f"downloading {where.uri} ({_size(size)})")
        tmp = target.with_name(target.name + ".partial")
        s3.download_file(where.bucket, where.prefix, str(tmp), Callback=Progress("download", size),
                         Config=_transfer_config())
        os.replace(tmp, target)
    return target
