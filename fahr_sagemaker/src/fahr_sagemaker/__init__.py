"""The ``sagemaker`` driver of fahr: train on AWS SageMaker, images in ECR, artifacts in S3.

Installed as its own distribution (``pip install fahr-sagemaker``), registered under the entry
point ``sagemaker`` of group ``fahr.drivers``, and built only on fahr's public plugin API.
Neither boto3 nor the Docker SDK is imported until a hook runs.

    check_run    configuration, credentials, bucket and role, before anything is built
    build_image  (the core's)   -> local image
    push_image   ECR: repository per model tag, tag derived from content, skipped when present
    launch       CreateTrainingJob: the image by digest, each channel's input mode, output to config.output_path;
                 --secret values in a Secrets Manager secret of the job's, deleted when it ends
    wait         DescribeTrainingJob + CloudWatch Logs until the end; Ctrl-C detaches
    fetch        model.tar.gz of a job, or of the newest completed job of a tag
    stop         StopTrainingJob
    list_jobs    Search: fahr's jobs (tag fahr:version), of a model tag (tag fahr:model-tag), newest first
    logs         CloudWatch Logs of the job, per host; with follow, until the job has ended
    metrics      CloudWatch metrics of the job's MetricDefinitions, the convention's from its logs
"""

from __future__ import annotations

from urllib.parse import urlparse

from fahr_core import __version__ as fahr_version
from fahr_core import (COMPLETED, FAILED, FINAL_STATES, SECRETS_ARN_ENV, STOPPED, ConfigError, ConfigKey, JobHandle,
                       JobResult, UsageError, fetch_command, hookimpl, stop_command, ui, wait_command)
from fahr_core import job_name as new_job_name

__version__ = "0.5.0"
NAME = "sagemaker"
EXECUTION_ENVIRONMENT = "sagemaker"


@hookimpl
def config_keys():
    """The driver's configuration keys (README, "The sagemaker driver", "Configuration")."""
    from fahr_sagemaker.aws import MAX_INSTANCE_COUNT  # imports no AWS SDK

    return [
        # Required to fit, not to wait, stop or fetch: the core enforces it and words the error.
        ConfigKey("output_path", str, "",
                  "S3 folder for artifacts, s3://bucket[/prefix]; jobs write <job>/output/model.tar.gz there",
                  required_for=("fit",)),
        ConfigKey("role_name", str, "",
                  "IAM execution role SageMaker assumes: a role name (looked up with iam:GetRole) or its ARN",
                  required_for=("fit",)),
        ConfigKey("train_instance_type", str, "ml.c4.2xlarge",
                  "Training instance type, e.g. ml.m5.xlarge, ml.g5.xlarge; a list ml.g5.xlarge,ml.g4dn.xlarge is "
                  "tried in order when fit --retry relaunches a job that found no capacity."),
        ConfigKey("train_instance_count", int, 1,
                  f"Number of instances (hosts algo-1..algo-N), 1 to {MAX_INSTANCE_COUNT}."),
        ConfigKey("volume_size", int, 30, "Storage volume per instance, in GB."),
        ConfigKey("max_run", int, 86400, "Maximum training time in seconds (StoppingCondition.MaxRuntimeInSeconds)."),
        ConfigKey("spot", bool, False, "Use managed spot training (cheaper, may be interrupted; needs max_wait)."),
        ConfigKey("max_wait", int, 0,
                  "Spot only: seconds to wait for capacity plus training; must exceed max_run."),
        ConfigKey("keep_alive", int, 0,
                  "Seconds (0-3600) SageMaker keeps a finished job's instances warm, billed, for a matching next "
                  "job to start on without waiting (ResourceConfig.KeepAlivePeriodInSeconds); 0: none. "
                  "Not with spot."),
        ConfigKey("checkpoint_s3_uri", str, "", "S3 folder synced with /opt/ml/checkpoints (CheckpointConfig)."),
        ConfigKey("tags", dict, {}, "Extra AWS tags for the job, k=v,k2=v2."),
        ConfigKey("notify_topic", str, "",
                  "SNS topic ARN told of each job's end by AWS itself, followed or detached: fahr keeps one "
                  "EventBridge rule per topic (events:PutRule, events:PutTargets; docs/sagemaker.md). Empty: none.",
                  check=_topic_problem),
        ConfigKey("base_job_name", str, "", "Job names start with this instead of the model tag."),
        ConfigKey("region", str, "", "AWS region; default: AWS_REGION, else AWS_DEFAULT_REGION, else the profile's (as the AWS CLI v2)."),
        ConfigKey("profile", str, "", "AWS profile; default: the standard boto3 chain (AWS_PROFILE)."),
        ConfigKey("input_mode", dict, {},
                  "Per channel, how the job reads it: CHANNEL=File (copied to the instance before the start, the "
                  "default), FastFile (streamed from S3 on first read) or Pipe (one FIFO stream); docs/sagemaker.md."),
        ConfigKey("input_distribution", dict, {},
                  "Per channel, with several instances: CHANNEL=FullyReplicated (every host gets every file, the "
                  "default) or ShardedByS3Key (each host 1/N of the files)."),
        ConfigKey("poll_interval", float, 10.0, "Longest pause, in seconds, between two looks at the job and its logs."),
    ]


def _topic_problem(value: str) -> str | None:
    from fahr_sagemaker.notifications import topic_problem  # imports no AWS SDK

    return topic_problem(value)


@hookimpl
def claims_location(location):
    """``s3://…`` locations are this driver's: ``fahr fetch DIR TAG s3://…`` picks it.

    It needs no configuration, so it takes ``location`` alone (pluggy passes only what it names).
    """
    return True if urlparse(location).scheme == "s3" else None


@hookimpl
def check_run(config, inputs, secrets):
    """Check inputs, configuration, credentials, bucket and role before the image is even built.
    ``secrets`` named: the driver gives the job its secrets (fahr_sagemaker.secrets)."""
    from fahr_sagemaker import artifacts, aws

    for channel, value in inputs.items():
        artifacts.check_input(channel, value)
    artifacts.check_channel_settings(config, inputs)
    aws.preflight(config)  # cached for the run: push_image and launch reuse its answer


@hookimpl
def push_image(image, config):
    """Check the configuration, then push the image to ECR unless it is there already."""
    from fahr_sagemaker import aws, ecr

    aws.preflight(config)  # fail on configuration before spending minutes on a push
    return ecr.push(image, config)


@hookimpl
def price(config):
    """The on-demand price of ``train_instance_count`` of the dearest listed instance type, from
    config.price_per_hour or the AWS Price List (fahr_sagemaker.pricing); max_run bounds it."""
    from fahr_sagemaker import aws, pricing

    return pricing.price(config, aws.train_instance_types(config), config["train_instance_count"],
                         config["max_run"], bool(config["spot"]))


@hookimpl
def launch(spec, config):
    """CreateTrainingJob for ``spec``: the image by digest, File mode, inputs, spot, tags; its
    secrets in a Secrets Manager secret of its own, named in its Environment."""
    from fahr_sagemaker import artifacts, aws, jobs, secrets

    checked = aws.preflight(config)
    if not spec.image.digest:
        raise UsageError(f"image {spec.image.reference} was not pushed to ECR; SageMaker cannot pull it")
    job_name = spec.job_name
    if config["base_job_name"]:
        job_name = new_job_name(spec.model_tag, base=config["base_job_name"])
    inputs = [
        {
            "ChannelName": channel,
            "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": artifacts.input_uri(config, job_name, channel, value, checked.output),
                "S3DataDistributionType": config["input_distribution"].get(channel, "FullyReplicated"),
            }},
            "InputMode": config["input_mode"].get(channel, "File"),
        }
        for channel, value in spec.inputs.items()
    ]
    stopping = {"MaxRuntimeInSeconds": config["max_run"]}
    if config["spot"]:
        stopping["MaxWaitTimeInSeconds"] = config["max_wait"]
    tags = [{"Key": "fahr:model-tag", "Value": spec.model_tag}, {"Key": "fahr:version", "Value": fahr_version},
            *jobs.job_tags(spec)]
    tags += [{"Key": k, "Value": v} for k, v in config["tags"].items()]
    if config["notify_topic"]:  # AWS tells the topic of the job's end, whoever follows it
        from fahr_sagemaker import notifications

        rule = notifications.arrange(config, config["notify_topic"], checked.region)
        tags.append({"Key": notifications.TAG, "Value": rule})
    request = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {"TrainingImage": spec.image.reference, "TrainingInputMode": "File"},
        "RoleArn": checked.role_arn,
        "OutputDataConfig": {"S3OutputPath": checked.output.uri},
        "ResourceConfig": {
            "InstanceType": aws.instance_type_for(config, getattr(spec, "capacity_failures", 0)),
            "InstanceCount": config["train_instance_count"],
            "VolumeSizeInGB": config["volume_size"],
            # A warm pool (docs/sagemaker.md, "Warm pools"): the instances wait, billed, for the next fit.
            **({"KeepAlivePeriodInSeconds": config["keep_alive"]} if config["keep_alive"] else {}),
        },
        "StoppingCondition": stopping,
        "HyperParameters": {str(k): str(v) for k, v in spec.hyperparameters.items()},
        "Environment": {
            **{str(k): str(v) for k, v in spec.environment.items()},
            "FAHR_EXECUTION_ENVIRONMENT": EXECUTION_ENVIRONMENT,
            artifacts.MODEL_TAG_ENV: spec.model_tag,
        },
        "EnableManagedSpotTraining": bool(config["spot"]),
        "Tags": tags,
    }
    if inputs:
        request["InputDataConfig"] = inputs
    # fahr reads the job's metrics from its logs itself (docs/metrics.md); SageMaker is given the
    # same definitions, so that its console and CloudWatch show them too (plugin API 1.5).
    definitions = getattr(spec, "metric_definitions", ())
    if definitions:
        request["AlgorithmSpecification"]["MetricDefinitions"] = [
            {"Name": name, "Regex": regex} for name, regex in definitions]
    if config["checkpoint_s3_uri"]:
        request["CheckpointConfig"] = {"S3Uri": config["checkpoint_s3_uri"]}
    secret_arn = ""
    if spec.secrets:  # their ARN in the job's Environment, the values in Secrets Manager only
        secret_arn = secrets.create(config, job_name, spec.secrets)
        request["Environment"][SECRETS_ARN_ENV] = secret_arn
    arn = _create(config, job_name, request, secret_arn)
    console, logs = aws.console_urls(checked.region, job_name)
    ui.info(f"training job {job_name} created in {checked.region}")
    ui.info(f"console: {console}")
    ui.info(f"logs: {logs}")
    return JobHandle(driver=NAME, job_name=job_name, model_tag=spec.model_tag,
                     details={"arn": arn, "region": checked.region, "output_path": checked.output.uri,
                              "console_url": console, "logs_url": logs})


def _create(config, job_name: str, request: dict, secret_arn: str) -> str:
    """CreateTrainingJob; the job's ARN. The job's secret (``secret_arn``, or '') is deleted when
    the job surely was not created."""
    from fahr_sagemaker import secrets

    try:
        return _create_training_job(config, job_name, request, secret_arn)
    except KeyboardInterrupt:
        # SageMaker may have created the job before the answer came: its secret stays for it.
        # It goes when fahr sees the job end, or with `fahr jobs` if there is no such job.
        ui.warn(f"interrupted while creating training job {job_name}: it may exist and be running; "
                f"stop it with '{stop_command(job_name, NAME)}'")
        raise
    except BaseException:
        if secret_arn:  # no job will read it
            secrets.delete(config, secret_arn, job_name, quiet=True)
        raise


def _create_training_job(config, job_name: str, request: dict, secret_arn: str = "") -> str:
    """CreateTrainingJob; the job's ARN. ``secret_arn``: the secret fahr made for this job, which
    tells the job as fahr's own when the call failed but its retry finds it existing."""
    from botocore import exceptions as bex

    from fahr_sagemaker import aws

    with aws.translated(f"creating training job {job_name}"):
        try:
            return aws.client(config, "sagemaker").create_training_job(**request)["TrainingJobArn"]
        except bex.ClientError as exc:
            code, message = aws.error_code(exc), aws.error_message(exc)
            if code == "ResourceInUse":
                # botocore retries a call whose answer was lost (a read timeout, a 5xx): the first
                # attempt may have created the job. It is this launch's when it names our secret.
                if secret_arn and (arn := _created_with(config, job_name, secret_arn)):
                    return arn
                raise UsageError(f"a training job named {job_name} already exists; run again for a fresh name") from exc
            if code == "ValidationException":
                raise ConfigError(f"SageMaker refused the job: {message}") from exc
            if code == "ResourceLimitExceeded":
                raise ConfigError(f"SageMaker quota reached: {message}") from exc
            raise


def _created_with(config, job_name: str, secret_arn: str) -> str:
    """The ARN of the existing job ``job_name`` when its Environment names ``secret_arn``, else ''."""
    from fahr_sagemaker import aws, secrets

    try:
        info = aws.client(config, "sagemaker").describe_training_job(TrainingJobName=job_name)
    except Exception:
        return ""
    return info.get("TrainingJobArn", "") if secrets.arn_of(info) == secret_arn else ""


@hookimpl
def wait(job, config):
    """Follow the job to its end; Ctrl-C detaches (the job keeps running) and re-raises."""
    import dataclasses

    from fahr_sagemaker import artifacts, failures, follow, pools, pricing, secrets

    interval = max(1.0, float(config["poll_interval"]))
    try:
        info = follow.follow(config, job.job_name, interval)
    except KeyboardInterrupt:
        _detached(job, config)
        raise
    secrets.forget_if_ended(config, info)
    if not job.model_tag:  # rebuilt from the name (`fahr wait JOB`): the job's own record knows the tag
        tag = artifacts.recorded_tag(info) or _tag_from_tags(config, info)
        if tag:
            job = dataclasses.replace(job, model_tag=tag)
    status = info["TrainingJobStatus"]
    timing = follow.timings(info)
    if timing:
        ui.info(timing)
    reason = info.get("FailureReason", "")
    if status == STOPPED and not reason:
        secondary = info.get("SecondaryStatus", "")
        limits = info.get("StoppingCondition", {})
        reason = {
            "MaxRuntimeExceeded": f"MaxRuntimeExceeded: it ran longer than max_run "
                                  f"({limits.get('MaxRuntimeInSeconds')} s)",
            "MaxWaitTimeExceeded": f"MaxWaitTimeExceeded: no spot capacity within max_wait "
                                   f"({limits.get('MaxWaitTimeInSeconds')} s)",
            "Interrupted": "Interrupted: SageMaker reclaimed the job's spot instances",
        }.get(secondary, "stopped by StopTrainingJob ('fahr stop' or the console)")
    output = info.get("OutputDataConfig", {}).get("S3OutputPath", "").rstrip("/")
    return JobResult(
        job=job,
        status=status if status in (COMPLETED, FAILED, STOPPED) else FAILED,
        failure_reason=reason if status != COMPLETED else "",
        model_artifact=(info.get("ModelArtifacts") or {}).get("S3ModelArtifacts", ""),
        output_artifact=f"{output}/{job.job_name}/output/output.tar.gz" if output else "",
        training_seconds=info.get("TrainingTimeInSeconds"),
        billable_seconds=info.get("BillableTimeInSeconds"),
        model_empty=artifacts.model_is_empty(config, info) if status == COMPLETED else None,
        failure_kind=failures.failure_kind({**info, "TrainingJobStatus": status if status in (COMPLETED, STOPPED)
                                            else FAILED}),
        warm_pool=pools.warm_pool(info, pools.reused_from(config, info)),
        price=pricing.of_job(config, info),
    )


def _tag_from_tags(config, info) -> str:
    """The ``fahr:model-tag`` tag of a job whose environment does not say (ListTags)."""
    from fahr_sagemaker import artifacts, aws

    arn = info.get("TrainingJobArn")
    if not arn:
        return ""
    with aws.translated(f"reading the tags of {info.get('TrainingJobName', arn)}"):
        tags = aws.client(config, "sagemaker").list_tags(ResourceArn=arn).get("Tags", [])
    return artifacts.recorded_tag({"Tags": tags})


def _detached(job, config) -> None:
    """Ctrl-C while waiting: the job keeps running on SageMaker; say how to follow, fetch and stop it."""
    output = job.details.get("output_path") or config.get("output_path") or "s3://BUCKET/PREFIX"
    ui.warn(f"detached from {job.job_name}: it keeps running on SageMaker (and keeps billing)")
    ui.info("follow it again with:")
    ui.command(wait_command(job.job_name, NAME))
    ui.info("fetch its model once it has completed with:")
    ui.command(fetch_command(job.job_name, job.model_tag, NAME, output))
    ui.info("stop it with:")
    ui.command(stop_command(job.job_name, NAME))


@hookimpl
def stop(job, config):
    """StopTrainingJob; False when the job has already ended."""
    from botocore import exceptions as bex

    from fahr_sagemaker import aws, follow, secrets

    info = follow.describe(config, job.job_name)
    if info["TrainingJobStatus"] in FINAL_STATES:
        secrets.forget_if_ended(config, info)
        return False
    with aws.translated(f"stopping training job {job.job_name}"):
        try:
            aws.client(config, "sagemaker").stop_training_job(TrainingJobName=job.job_name)
        except bex.ClientError as exc:
            if aws.error_code(exc) == "ValidationException" and "status" in aws.error_message(exc).lower():
                secrets.forget_if_ended(config, follow.describe(config, job.job_name))
                return False  # it ended between the two calls
            raise
    # Stopping: its launcher has read the secret already, or never will.
    if secrets.arn_of(info):
        secrets.delete(config, secrets.arn_of(info), job.job_name, quiet=True)
    return True


@hookimpl
def fetch(request, config):
    """The model of a job, of the newest completed job of a tag, or an archive: a model.tar.gz,
    or an uncompressed model's files as one archive, is handed to the core as a stream while it
    downloads (the core unpacks it as it arrives). ``request.what == "output"``: the job's
    output.tar.gz instead, streamed the same way."""
    from fahr_sagemaker import artifacts, aws, secrets

    output = getattr(request, "what", "model") == "output"
    location = request.location or config.get("output_path") or ""
    where = None
    if location:
        aws.usage_if_not_s3(location)
        where = aws.parse_s3(location, "ARTIFACT_LOCATION")
        if where.prefix.endswith(".tar.gz") and not request.job_name:
            # The archive itself (s3://…/output/model.tar.gz) was given.
            return artifacts.open_object(config, where, name="output.tar.gz" if output else "model.tar.gz")
    info = artifacts.job_for_fetch(config, request.model_tag, request.job_name, where, output=output)
    secrets.forget_if_ended(config, info)
    if not request.job_name:
        # Which job the tag led to is news; a job named with --job is not, and a line before a
        # refusal of its model would make the refusal two lines (README "Exit codes": one line).
        ui.info(f"fetching the {'output' if output else 'model'} of job {info['TrainingJobName']}")
    return artifacts.download_output(config, info) if output else artifacts.download_model(config, info)


@hookimpl
def list_jobs(query, config):
    """fahr's training jobs, newest first, through sagemaker:Search (no DescribeTrainingJob per job)."""
    from fahr_sagemaker import jobs

    return jobs.list_jobs(config, query, NAME)


@hookimpl
def logs(job, config, follow):
    """The job's CloudWatch log lines, host by host; with ``follow``, until the job has ended."""
    from fahr_sagemaker import follow as following

    interval = max(1.0, float(config["poll_interval"]))
    return following.job_logs(config, job.job_name, follow, interval)


@hookimpl
def metrics(job, config):
    """The job's metrics: its MetricDefinitions' from CloudWatch, as SageMaker published them,
    the convention's (with steps) from its logs; None for a job without a regex definition of its
    own, or without cloudwatch:GetMetricData (the core then reads the logs: docs/metrics.md)."""
    from fahr_sagemaker import follow as following
    from fahr_sagemaker import cloudwatch as native

    interval = max(1.0, float(config["poll_interval"]))
    return native.job_metrics(config, job.job_name,
                              lambda: following.job_logs(config, job.job_name, False, interval))
