"""A small SageMaker control plane for fahr's tests: it really runs the training containers.

moto marks every training job Completed at once and runs nothing, so fahr's tests talk to this
server instead, through ``AWS_ENDPOINT_URL_SAGEMAKER``. It speaks SageMaker's JSON protocol
(``X-Amz-Target: SageMaker.<Operation>``) and implements CreateTrainingJob, DescribeTrainingJob,
StopTrainingJob, ListTrainingJobs, ListTags (to read a job's tags back) and Search (training jobs
only, filters joined by And or Or, as fahr finds and lists the jobs of a model tag). ``GET /``
reports the job count, the throttled calls and the DescribeTrainingJob calls per job name:

- requests are validated against botocore's own service model (required members, types, enums,
  lengths, ranges, patterns), and the errors look like AWS's (``ValidationException``,
  ``ResourceInUse``); so are the answers (an answer botocore's model would not allow is this
  emulator's bug: an InternalFailure, never a reply fahr could trust);
- CreateTrainingJob checks that the role exists in IAM and that the image is in the registry
  (both in the emulated AWS: moto for IAM, the real registry for the image);
- each job is a thread that walks InProgress: Starting, Downloading (pulls the image by digest
  from the registry, input channels from S3), Training (the containers, run by
  ``fahr_core.contract.ContractRun``, the local driver's own runner), Uploading (model.tar.gz and
  output.tar.gz to ``<S3OutputPath>/<job>/output/``, or uncompressed files when
  CompressionType is NONE) and ends Completed, Failed (FailureReason from
  ``/opt/ml/output/failure``) or Stopped; the containers' output goes to CloudWatch Logs,
  group ``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-N-<epoch>``;
- as SageMaker does with ``AlgorithmSpecification.MetricDefinitions``: each line a definition's
  regex matches (its first group a finite number) is a CloudWatch metric, namespace
  ``/aws/sagemaker/TrainingJobs``, the definition's name, dimension ``Host`` =
  ``<job>/algo-N``, at the line's time (PutMetricData to moto); DescribeTrainingJob's
  ``FinalMetricDataList`` holds each metric's last value;
- with CheckpointConfig, the objects under its S3Uri are copied into each host's LocalPath
  (``/opt/ml/checkpoints``) at start, and the hosts' checkpoint folders (merged as the model is,
  read with fahr's safe extractor) uploaded back at the end, whatever the ending; SageMaker also
  uploads during the job, the emulation does not; without it, there is no such folder;
- spot jobs are billed, in this emulation, 30% of their training seconds, so that the savings
  line has something to show;
- a job whose Environment names a Secrets Manager secret (``fahr_core.SECRETS_ARN_ENV``, fahr's
  ``--secret``) gets what a real training container has to read it: the job role's credentials
  from a container credentials endpoint (``GET /credentials`` of this server, as
  ``AWS_CONTAINER_CREDENTIALS_FULL_URI``) and the AWS endpoints (moto's, ``AWS_ENDPOINT_URL``).
  Both are on 127.0.0.1, so that job's (single) host runs on the engine's host network; these
  variables are the platform's, not the job's, and are not in its DescribeTrainingJob.

- a job fails as a test asks, through its Environment's ``FAHR_EMU_INJECT`` (a test-only name;
  several injections joined by ``;``), with the statuses and FailureReasons SageMaker documents
  (docs/sagemaker.md, "Why a job did not complete"):
  ``capacity@TYPE[,TYPE]``: on those instance types the job fails while Starting,
  ``CapacityError: Unable to provision requested ML compute capacity…`` (another type runs);
  ``platform``: it fails while Starting, ``InternalServerError: …``;
  ``interrupted``: when a host prints the line ``fahr-emu: reclaim``, its spot instances are
  reclaimed: the containers are stopped (SIGTERM, as a stop), the checkpoints uploaded, and the
  job ends Stopped with SecondaryStatus ``Interrupted``;
  ``memory@SIZE``: each host's container gets that memory limit (``64m``), so a host that needs
  more is killed and the job fails ``OutOfMemoryError: …`` (fahr_core.contract's reason).
  ``provision@SECONDS``: a fresh job waits that long for its instances (Starting), instead of
  ``FAHR_EMU_PROVISION_DELAY``; a job placed on a warm pool waits none.
  A timeout needs no injection: a short ``MaxRuntimeInSeconds`` (``max_run``) does it.

- provisioning takes ``FAHR_EMU_PROVISION_DELAY`` seconds (the Starting phase of a fresh job;
  0 under the tests' stack, so that only a test that injects ``provision@SECONDS`` pays for it);
  a job with ``ResourceConfig.KeepAlivePeriodInSeconds`` leaves a warm pool when it ends, as
  SageMaker documents managed warm pools (docs/sagemaker.md, "Warm pools"): ``Available`` from
  its TrainingEndTime for the keep-alive, billed (``ResourceRetainedBillableTimeInSeconds``
  grows) until a new job matching it (:func:`pool_key`) takes it at CreateTrainingJob, which
  then skips the provisioning delay, the old job's pool becoming ``Reused`` (``ReusedByJob``),
  or until it expires (``Terminated``). Spot jobs and heterogeneous clusters have no pool.

It also answers the AWS Price List API's GetProducts (``X-Amz-Target:
AWSPriceListService.GetProducts``, through ``AWS_ENDPOINT_URL_PRICING``) for ServiceCode
``AmazonSageMaker``: a Training and a Hosting product of each instance type of
:data:`TRAINING_PRICES` in each of :data:`PRICED_REGIONS`, matched by the request's filters,
each a JSON string shaped as AWS's (``product.attributes``, ``terms.OnDemand.*.priceDimensions.*
.pricePerUnit.USD``), the request and the answer validated against botocore's ``pricing`` model.

Everything else (S3, IAM, ECR's API, CloudWatch Logs) is the moto server given by
``AWS_ENDPOINT_URL``. Run: ``python sagemaker_server.py --port PORT`` (binds 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import tempfile
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import botocore.session
from botocore.config import Config as BotoConfig

from fahr_core import SECRETS_ARN_ENV
from fahr_core.config import parse_size
from fahr_core.contract import ContainerJob, ContractRun

ACCOUNT = "123456789012"
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
#: Where SageMaker publishes a training job's MetricDefinitions, and the dimension it names the
#: host by: ``<job>/algo-N`` (SageMaker developer guide, "SageMaker AI job metrics").
METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
SPOT_BILLING = 0.3
STOP_TIMEOUT = int(os.environ.get("FAHR_EMU_STOP_TIMEOUT", "120"))
# Every Nth DescribeTrainingJob is refused with ThrottlingException, as AWS does under load
# (0: never), so that the tests see clients retry rather than fail.
THROTTLE_EVERY = int(os.environ.get("FAHR_EMU_THROTTLE_EVERY", "0"))
MODEL = botocore.session.get_session().get_service_model("sagemaker")
#: Seconds a fresh job waits for its instances (Starting); a job on a warm pool waits none.
PROVISION_DELAY = float(os.environ.get("FAHR_EMU_PROVISION_DELAY", "0.2"))
#: Guards every job's warm pool state: a CreateTrainingJob takes one job's pool for another.
POOL_LOCK = threading.RLock()
#: How a failed job's FailureReason starts when its cluster stays healthy: its pool is kept
#: (SageMaker's guide, "Warm pool creation": an algorithm or client error keeps it).
POOL_KEEPING_ERRORS = ("AlgorithmError", "ClientError")
PRICING_MODEL = botocore.session.get_session().get_service_model("pricing")
#: The emulated Price List's on-demand training prices, dollars per instance-hour (us-east-1's
#: published ones); hosting is listed at a different price, so a request that does not ask for
#: training finds two prices.
TRAINING_PRICES = {"ml.c4.2xlarge": "0.5570000000", "ml.m5.large": "0.1150000000", "ml.m5.xlarge": "0.2300000000",
                   "ml.g4dn.xlarge": "0.7364000000", "ml.g5.xlarge": "1.4080000000"}
HOSTING_FACTOR = 0.9
PRICED_REGIONS = {"us-east-1": "US East (N. Virginia)", "eu-west-1": "EU (Ireland)"}
#: The failures a test injects into a job (its Environment), and how they read: see above.
INJECT_ENV = "FAHR_EMU_INJECT"
RECLAIM_LINE = "fahr-emu: reclaim"
CAPACITY_ERROR = ("CapacityError: Unable to provision requested ML compute capacity. "
                  "Please retry using a different ML instance type.")
INTERNAL_ERROR = "InternalServerError: We encountered an internal error. Please try again."


def provision_delay(job) -> float:
    """Seconds a fresh ``job`` waits for its instances: its ``provision@SECONDS``, else the server's."""
    try:
        return min(60.0, max(0.0, float(job.inject.get("provision") or PROVISION_DELAY)))
    except ValueError:
        return PROVISION_DELAY


def injections(text: str) -> dict[str, str]:
    """``FAHR_EMU_INJECT``'s injections: ``capacity@ml.g5.xlarge;interrupted`` ->
    ``{"capacity": "ml.g5.xlarge", "interrupted": ""}``."""
    found = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, value = part.partition("@")
        found[name] = value
    return found
PORT = 0  # this server's, once it listens
_boto = {"config": BotoConfig(retries={"mode": "standard", "max_attempts": 3})}


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


# -- validation against botocore's model ----------------------------------------------------------


def validate(shape, value, path: str, errors: list[str]) -> None:
    """AWS-style server-side validation of ``value`` against a botocore shape."""
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a structure")
            return
        for name in shape.required_members:
            if name not in value:
                errors.append(f"Value null at '{path}.{name}' failed to satisfy constraint: Member must not be null")
        for name, member in value.items():
            if name not in shape.members:
                errors.append(f"Unknown member '{path}.{name}'")
                continue
            validate(shape.members[name], member, f"{path}.{name}".lstrip("."), errors)
    elif kind == "list":
        if not isinstance(value, list):
            errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a list")
            return
        _length(meta, len(value), value, path, errors)
        for i, item in enumerate(value):
            validate(shape.member, item, f"{path}.{i + 1}", errors)
    elif kind == "map":
        if not isinstance(value, dict):
            errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a map")
            return
        _length(meta, len(value), value, path, errors)
        for k, v in value.items():
            validate(shape.key, k, f"{path}.key", errors)
            validate(shape.value, v, f"{path}.{k}", errors)
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a string")
            return
        if shape.enum and value not in shape.enum:
            errors.append(f"Value '{value}' at '{path}' failed to satisfy constraint: "
                          f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        _length(meta, len(value), value, path, errors)
        pattern = meta.get("pattern")
        if pattern:
            try:
                ok = re.fullmatch(pattern, value, flags=re.DOTALL) is not None
            except re.error:
                ok = True  # a Java-only construct: not checked here
            if not ok:
                errors.append(f"Value '{value}' at '{path}' failed to satisfy constraint: "
                              f"Member must satisfy regular expression pattern: {pattern}")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be an integer")
            return
        if "min" in meta and value < meta["min"]:
            errors.append(f"Value '{value}' at '{path}' failed to satisfy constraint: "
                          f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            errors.append(f"Value '{value}' at '{path}' failed to satisfy constraint: "
                          f"Member must have value less than or equal to {meta['max']}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a boolean")
    elif kind in ("float", "double", "timestamp"):  # a timestamp: seconds since the epoch, in JSON
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a number")


def _length(meta, n: int, value, path: str, errors: list[str]) -> None:
    if "min" in meta and n < meta["min"]:
        errors.append(f"Value at '{path}' failed to satisfy constraint: Member must have length greater than or equal to {meta['min']}")
    if "max" in meta and n > meta["max"]:
        errors.append(f"Value at '{path}' failed to satisfy constraint: Member must have length less than or equal to {meta['max']}")


def check_channel(channel: dict, default_mode: str) -> None:
    """A channel's InputMode (``default_mode``, the AlgorithmSpecification's, when it has none) and
    data source as SageMaker combines them: an augmented manifest is read in Pipe mode only (the
    enums are checked by the model already). Every mode and distribution is then run as File and
    FullyReplicated: each host gets the channel's files under /opt/ml/input/data/<channel>/ (this
    emulation streams and shards nothing)."""
    source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
    mode = channel.get("InputMode") or default_mode
    if source.get("S3DataType") == "AugmentedManifestFile" and mode != "Pipe":
        raise ApiError("ValidationException", f"Channel {channel.get('ChannelName')}: augmented manifest files "
                       f"are supported only for channels using Pipe input mode, not {mode}.")


def check_request(operation: str, body: dict, model=MODEL) -> None:
    errors: list[str] = []
    validate(model.operation_model(operation).input_shape, body, "", errors)
    if errors:
        count = len(errors)
        raise ApiError("ValidationException",
                       f"{count} validation error{'s' * (count > 1)} detected: " + "; ".join(errors[:5]))


def check_response(operation: str, payload: dict, model=MODEL) -> None:
    """An answer as botocore's model allows it: one that does not is this emulator's bug."""
    shape = model.operation_model(operation).output_shape
    errors: list[str] = []
    if shape is not None:
        validate(shape, payload, "", errors)
    if errors:
        raise ApiError("InternalFailure", f"the emulator's {operation} answer breaks botocore's model: "
                       + "; ".join(errors[:5]), 500)


# -- the emulated AWS around us -------------------------------------------------------------------


def aws(service: str):
    return boto3.client(service, region_name=REGION, **_boto)


def _docker():
    import docker

    return docker.from_env(timeout=600)


def registry_auth() -> dict:
    data = aws("ecr").get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return {"username": user, "password": password}


def image_in_registry(image: str) -> bool:
    from docker import errors as docker_errors

    try:
        _docker().api.inspect_distribution(image, auth_config=registry_auth())
        return True
    except docker_errors.APIError:
        return False


def role_exists(arn: str) -> bool:
    name = arn.rsplit("/", 1)[-1]
    try:
        aws("iam").get_role(RoleName=name)
        return True
    except aws("iam").exceptions.NoSuchEntityException:
        return False


# -- jobs -----------------------------------------------------------------------------------------


class Job:
    def __init__(self, request: dict):
        self.request = request
        self.name = request["TrainingJobName"]
        self.arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{self.name.lower()}"
        self.created = time.time()
        self.modified = self.created
        self.status = "InProgress"
        self.secondary = ""
        self.transitions: list[dict] = []
        self.failure_reason = ""
        self.started: float | None = None
        self.ended: float | None = None
        self.stop_requested = False
        self.max_runtime_exceeded = False
        self.interrupted = False  # its spot instances reclaimed (FAHR_EMU_INJECT=interrupted)
        self.inject = injections(request.get("Environment", {}).get(INJECT_ENV, ""))
        self.run: ContractRun | None = None
        self.lock = threading.Lock()
        # MetricDefinitions as SageMaker reads them: (name, compiled regex); each metric's last
        # (value, time), for FinalMetricDataList.
        self.definitions = []
        for definition in request["AlgorithmSpecification"].get("MetricDefinitions", []):
            try:
                self.definitions.append((definition["Name"], re.compile(definition["Regex"])))
            except re.error:  # a construct of SageMaker's regex engine Python's lacks: not emulated
                print(f"{self.name}: metric {definition['Name']}: regex not emulated", flush=True)
        self.final_metrics: dict[str, tuple[float, float]] = {}
        self.output = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        self.compression = request["OutputDataConfig"].get("CompressionType", "GZIP")
        self.set_secondary("Starting", "Launching requested ML instances")
        # The warm pool (see the module's docstring): "" (none), InUse, Available, Reused, Terminated.
        self.keep_alive = request["ResourceConfig"].get("KeepAlivePeriodInSeconds", 0)
        self.pool_status = "InUse" if self.keep_alive and pool_key(request) is not None else ""
        self.pool_since: float | None = None  # when it became Available
        self.pool_billed: int | None = None  # ResourceRetainedBillableTimeInSeconds once it stopped growing
        self.reused_by = ""
        self.warm_from = ""  # the job whose pool this one took (then it skips provisioning)

    def pool_state(self, now: float | None = None) -> str:
        """The pool's status at ``now``: an Available pool past its keep-alive has expired."""
        now = time.time() if now is None else now
        with POOL_LOCK:
            if self.pool_status == "Available" and now >= self.pool_since + self.keep_alive:
                self.pool_status, self.pool_billed = "Terminated", int(self.keep_alive)
            return self.pool_status

    def warm_pool_status(self, now: float | None = None) -> dict | None:
        """DescribeTrainingJob's WarmPoolStatus; None for a job without a pool."""
        now = time.time() if now is None else now
        status = self.pool_state(now)
        if not status:
            return None
        out = {"Status": status}
        with POOL_LOCK:
            if status == "Available":
                out["ResourceRetainedBillableTimeInSeconds"] = max(0, int(now - self.pool_since))
            elif self.pool_billed is not None:
                out["ResourceRetainedBillableTimeInSeconds"] = self.pool_billed
            if self.reused_by:
                out["ReusedByJob"] = self.reused_by
        return out

    def leave_pool(self, status: str, reason: str) -> None:
        """At the job's end: its instances wait as an Available pool when it had a keep-alive and
        its cluster stayed healthy (completed, stopped once launched, failed by its algorithm or
        its client); else the pool is gone."""
        with POOL_LOCK:
            if not self.pool_status:
                return
            healthy = status in ("Completed", "Stopped") or reason.split(":", 1)[0] in POOL_KEEPING_ERRORS
            if self.keep_alive and self.started is not None and healthy:
                self.pool_status, self.pool_since = "Available", self.ended
            else:
                self.pool_status, self.pool_billed = "Terminated", 0

    def set_secondary(self, status: str, message: str) -> None:
        with self.lock:
            now = time.time()
            if self.transitions and "EndTime" not in self.transitions[-1]:
                self.transitions[-1]["EndTime"] = now
            self.secondary = status
            self.transitions.append({"Status": status, "StartTime": now, "StatusMessage": message})
            self.modified = now

    def finish(self, status: str, reason: str = "", secondary: str = "") -> None:
        self.ended = self.ended or time.time()
        messages = {"Completed": "Training job completed", "Stopped": "Training job stopped",
                    "Failed": "Training job failed",
                    "MaxRuntimeExceeded": "Training job stopped: MaxRuntimeInSeconds reached",
                    "Interrupted": "Training job interrupted: the spot instances were reclaimed"}
        self.set_secondary(secondary or status, messages[secondary or status])
        with self.lock:
            self.transitions[-1]["EndTime"] = self.ended
            self.status = status
            self.failure_reason = reason[:1024]
        self.leave_pool(status, reason)

    @property
    def model_uri(self) -> str:
        if self.compression == "NONE":
            return f"{self.output}/{self.name}/output/model/"
        return f"{self.output}/{self.name}/output/model.tar.gz"

    def describe(self) -> dict:
        r = self.request
        resource = r["ResourceConfig"]
        out = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "ModelArtifacts": {"S3ModelArtifacts": self.model_uri},
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary,
            "HyperParameters": r.get("HyperParameters", {}),
            "AlgorithmSpecification": r["AlgorithmSpecification"],
            "RoleArn": r["RoleArn"],
            "OutputDataConfig": r["OutputDataConfig"],
            "ResourceConfig": resource,
            "StoppingCondition": r["StoppingCondition"],
            "CreationTime": self.created,
            "LastModifiedTime": self.modified,
            "SecondaryStatusTransitions": [dict(t) for t in self.transitions],
            "EnableManagedSpotTraining": r.get("EnableManagedSpotTraining", False),
            "Environment": r.get("Environment", {}),
        }
        if r.get("InputDataConfig"):  # absent without inputs, as on AWS (its model: 1 to 20 channels)
            out["InputDataConfig"] = r["InputDataConfig"]
        if r.get("CheckpointConfig"):
            out["CheckpointConfig"] = r["CheckpointConfig"]
        if self.failure_reason:
            out["FailureReason"] = self.failure_reason
        with self.lock:
            finals = dict(self.final_metrics)
        if finals:
            out["FinalMetricDataList"] = [{"MetricName": name, "Value": value, "Timestamp": at}
                                          for name, (value, at) in finals.items()]
        if self.started:
            out["TrainingStartTime"] = self.started
        if self.ended:
            out["TrainingEndTime"] = self.ended
        pool = self.warm_pool_status()
        if pool:
            out["WarmPoolStatus"] = pool
        if self.status in ("Completed", "Failed", "Stopped") and self.started:
            seconds = max(1, math.ceil((self.ended or time.time()) - self.started))
            out["TrainingTimeInSeconds"] = seconds
            spot = r.get("EnableManagedSpotTraining", False)
            out["BillableTimeInSeconds"] = max(1, round(seconds * SPOT_BILLING)) if spot else seconds
        return out

    def search_record(self) -> dict:
        """The job as Search returns it (SearchRecord.TrainingJob): DescribeTrainingJob plus Tags."""
        return {**self.describe(), "Tags": list(self.request.get("Tags", []))}

    def summary(self) -> dict:
        out = {"TrainingJobName": self.name, "TrainingJobArn": self.arn, "CreationTime": self.created,
               "LastModifiedTime": self.modified, "TrainingJobStatus": self.status,
               "SecondaryStatus": self.secondary}
        if self.ended:
            out["TrainingEndTime"] = self.ended
        pool = self.warm_pool_status()
        if pool:
            out["WarmPoolStatus"] = pool
        return out


def pool_key(request: dict) -> tuple | None:
    """What a new job must share with a warm pool's job to be placed on its pool (SageMaker's
    guide, "Matching training jobs": the role, the instance count and type, the volume's size and
    KMS key, the VPC's security groups and subnets, inter-container traffic encryption, network
    isolation); None for a job that can use no pool (spot instances, a heterogeneous cluster:
    "Considerations")."""
    resource = request["ResourceConfig"]
    if request.get("EnableManagedSpotTraining") or resource.get("InstanceGroups"):
        return None
    vpc = request.get("VpcConfig") or {}
    return (request["RoleArn"], resource.get("InstanceCount"), resource.get("InstanceType"),
            resource.get("VolumeKmsKeyId", ""), resource.get("VolumeSizeInGB"),
            tuple(sorted(vpc.get("SecurityGroupIds", []))), tuple(sorted(vpc.get("Subnets", []))),
            bool(request.get("EnableInterContainerTrafficEncryption", False)),
            bool(request.get("EnableNetworkIsolation", False)))


class CloudWatchSink:
    """Container output to CloudWatch Logs, one stream per host, and the lines the job's
    MetricDefinitions match to CloudWatch metrics, flushed twice a second."""

    def __init__(self, job: Job, hosts: list[str]):
        self.job = job
        self.metrics: list[dict] = []  # PutMetricData's MetricData not yet sent
        self.cloudwatch = aws("cloudwatch") if job.definitions else None
        self.logs = aws("logs")
        try:
            self.logs.create_log_group(logGroupName=LOG_GROUP)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass
        epoch = int(time.time())
        self.streams = {h: f"{job.name}/{h}-{epoch}" for h in hosts}
        for stream in self.streams.values():
            self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        self.pending: dict[str, list[dict]] = {h: [] for h in hosts}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def __call__(self, host: str, piece: bytes) -> None:  # a line, or a slice of a long one (ContractRun.follow)
        line = piece.decode("utf-8", "replace").removesuffix("\n").rstrip("\r")
        if line == RECLAIM_LINE and "interrupted" in self.job.inject and not self.job.interrupted:
            self.job.interrupted = True  # the spot instances reclaimed: the hosts get SIGTERM, as on a stop
            if self.job.run is not None:
                threading.Thread(target=self.job.run.stop, daemon=True).start()
        now = time.time()
        points = self._metrics(host, line, now)
        with self.lock:
            self.pending.setdefault(host, []).append({"timestamp": int(now * 1000), "message": line})
            self.metrics.extend(points)

    def _metrics(self, host: str, line: str, at: float) -> list[dict]:
        """The MetricData of one line: each definition whose regex matches, its first group a
        finite number, as SageMaker reads a training job's logs."""
        points = []
        for name, regex in self.job.definitions:
            match = regex.search(line)
            try:
                value = float(match.group(1)) if match and match.groups() else math.nan
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                continue
            points.append({"MetricName": name, "Value": value, "Timestamp": at,
                           "Dimensions": [{"Name": "Host", "Value": f"{self.job.name}/{host}"}]})
            with self.job.lock:
                if at >= self.job.final_metrics.get(name, (0.0, 0.0))[1]:
                    self.job.final_metrics[name] = (value, at)
        return points

    def flush(self) -> None:
        with self.lock:
            batches = {h: events for h, events in self.pending.items() if events}
            self.pending = {h: [] for h in self.pending}
            metrics, self.metrics = self.metrics, []
        for i in range(0, len(metrics), 1000):  # PutMetricData's limit a call
            self.cloudwatch.put_metric_data(Namespace=METRICS_NAMESPACE, MetricData=metrics[i:i + 1000])
        for host, events in batches.items():
            for i in range(0, len(events), 1000):
                self.logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=self.streams[host],
                                         logEvents=events[i:i + 1000])

    def _loop(self) -> None:
        while not self.done.wait(0.5):
            try:
                self.flush()
            except Exception:
                traceback.print_exc()

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.flush()


def _download_channels(job: Job, folder: Path) -> dict[str, Path]:
    s3 = aws("s3")
    channels = {}
    for channel in job.request.get("InputDataConfig", []):
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        target = folder / channel["ChannelName"]
        target.mkdir(parents=True)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix):].lstrip("/") or obj["Key"].rsplit("/", 1)[-1]
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(dest))
        channels[channel["ChannelName"]] = target
    return channels


def _upload(job: Job, run: ContractRun, folder: Path) -> None:
    s3 = aws("s3")
    bucket, _, prefix = job.output[len("s3://"):].partition("/")
    base = "/".join(p for p in (prefix.strip("/"), job.name, "output") if p)
    if job.compression == "NONE":
        import tarfile

        packed = run.pack("/opt/ml/model", folder / "model.tar.gz")
        with tarfile.open(packed) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    s3.upload_fileobj(tar.extractfile(member), bucket, f"{base}/model/{member.name}")
    else:
        s3.upload_file(str(run.pack("/opt/ml/model", folder / "model.tar.gz")), bucket, f"{base}/model.tar.gz")
    s3.upload_file(str(run.pack("/opt/ml/output/data", folder / "output.tar.gz")), bucket, f"{base}/output.tar.gz")


def _s3_folder(uri: str) -> tuple[str, str]:
    """An S3 folder URI as (bucket, key prefix ending in '/', or '' for the whole bucket)."""
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def _download_checkpoints(job: Job, folder: Path) -> Path | None:
    """CheckpointConfig.S3Uri's objects into ``folder``: what the hosts find in the checkpoint
    folder at start. None without CheckpointConfig (and then no such folder in the container)."""
    config = job.request.get("CheckpointConfig")
    if not config:
        return None
    s3 = aws("s3")
    bucket, prefix = _s3_folder(config["S3Uri"])
    folder.mkdir(parents=True)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix):]
            if not rel or rel.endswith("/") or ".." in rel.split("/"):
                continue
            dest = folder / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(dest))
    return folder


def _upload_checkpoints(job: Job, run: ContractRun, folder: Path) -> None:
    """The hosts' checkpoint folders (merged, first host's file on a clash, read with fahr's safe
    extractor) up to CheckpointConfig.S3Uri, at the end of the job whatever its ending. Objects
    are added or replaced, none deleted."""
    config = job.request.get("CheckpointConfig")
    if not config:
        return
    from fahr_core.contract import checkpoint_manifest
    from fahr_core.errors import UsageError

    copied = folder / "copied"
    try:
        copied_back = run.copy_out(run.job.checkpoint_dir, copied, checkpoint_manifest(run.job.checkpoints))
        if copied_back is None or not copied_back.placed:
            return
    except UsageError as exc:  # files fahr's extractor refuses (a link out of the folder): not uploaded
        print(f"checkpoints of {job.name} not uploaded: {exc}", flush=True)
        return
    s3 = aws("s3")
    bucket, prefix = _s3_folder(config["S3Uri"])
    for path in sorted(copied.rglob("*")):
        if path.is_file() and not path.is_symlink():
            s3.upload_file(str(path), bucket, prefix + path.relative_to(copied).as_posix())


def platform_environment() -> dict[str, str]:
    """What SageMaker gives a training container besides the job's Environment: the role's
    credentials (here from this server's endpoint on loopback) and, in this emulation, the AWS
    endpoints."""
    return {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{PORT}/credentials",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
    }


def run_job(job: Job, slots: threading.Semaphore) -> None:
    with slots:
        _run_job(job)


def _run_job(job: Job) -> None:
    r = job.request
    resource = r["ResourceConfig"]
    image = r["AlgorithmSpecification"]["TrainingImage"]
    with tempfile.TemporaryDirectory(prefix=f"emu-{job.name}-") as tmp:
        folder = Path(tmp)
        try:
            if not job.warm_from:  # on a warm pool the instances are there already
                time.sleep(provision_delay(job))
            if job.stop_requested:
                job.finish("Stopped")
                return
            if resource["InstanceType"] in job.inject.get("capacity", "").split(","):
                job.finish("Failed", CAPACITY_ERROR)
                return
            if "platform" in job.inject:
                job.finish("Failed", INTERNAL_ERROR)
                return
            job.set_secondary("Downloading", "Downloading the training image and input data")
            try:
                _docker().images.pull(image, auth_config=registry_auth())
            except Exception as exc:
                job.finish("Failed", f"ClientError: cannot pull the training image {image}: {exc}")
                return
            channels = _download_channels(job, folder / "channels")
            checkpoints = _download_checkpoints(job, folder / "checkpoints")
            reads_secret = bool(r.get("Environment", {}).get(SECRETS_ARN_ENV)) and resource["InstanceCount"] == 1
            container_job = ContainerJob(
                job_name=job.name,
                image=image,
                hyperparameters=r.get("HyperParameters", {}),
                channels=channels,
                environment={**r.get("Environment", {}), **(platform_environment() if reads_secret else {})},
                host_network=reads_secret,
                execution_environment=r.get("Environment", {}).get("FAHR_EXECUTION_ENVIRONMENT", "sagemaker"),
                instance_count=resource["InstanceCount"],
                instance_type=resource["InstanceType"],
                stop_timeout=STOP_TIMEOUT,
                job_arn=job.arn,
                content_types={c["ChannelName"]: c["ContentType"] for c in r.get("InputDataConfig", [])
                               if c.get("ContentType")},
                checkpoints=checkpoints,
                checkpoint_dir=(r.get("CheckpointConfig") or {}).get("LocalPath") or "/opt/ml/checkpoints",
                memory=parse_size(job.inject["memory"]) or 0 if job.inject.get("memory") else 0,
            )
            run = ContractRun(container_job, client=_docker())
            job.run = run
            sink = CloudWatchSink(job, container_job.hosts)
            try:
                run.start()
                job.started = time.time()
                job.set_secondary("Training", "Training image download completed. Training in progress.")
                if job.stop_requested:
                    run.stop()

                def expire() -> None:  # StoppingCondition.MaxRuntimeInSeconds reached
                    job.max_runtime_exceeded = True
                    run.stop()

                limit = threading.Timer(r["StoppingCondition"].get("MaxRuntimeInSeconds", 86400), expire)
                limit.daemon = True
                limit.start()
                try:
                    outcome = run.follow(sink, started_at=job.started)
                finally:
                    limit.cancel()
            finally:
                sink.close()
            job.ended = time.time()
            stopped = job.stop_requested
            job.set_secondary("Uploading", "Uploading generated training model")
            _upload(job, run, folder)
            _upload_checkpoints(job, run, folder)
            run.cleanup()
            if job.max_runtime_exceeded and not stopped:
                job.finish("Stopped", secondary="MaxRuntimeExceeded")
            elif job.interrupted and not stopped:
                job.finish("Stopped", secondary="Interrupted")
            elif stopped:
                job.finish("Stopped")
            elif outcome.status == "Completed":
                job.finish("Completed")
            else:
                job.finish("Failed", outcome.failure_reason)
        except Exception as exc:
            traceback.print_exc()
            if job.run:
                job.run.cleanup()
            job.finish("Failed", f"InternalServerError: {type(exc).__name__}: {exc}")


class SageMaker:
    def __init__(self, concurrency: int = 3):
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(concurrency)
        self.describes = 0
        self.throttled = 0
        self.throttled_jobs: set[str] = set()
        # Every DescribeTrainingJob asked for, by job name: lets tests prove that listing jobs
        # (Search) does not describe them one by one.
        self.describe_calls: dict[str, int] = {}

    def count(self, operation: str, body: dict) -> None:
        if operation == "DescribeTrainingJob":
            with self.lock:
                name = str(body.get("TrainingJobName", ""))
                self.describe_calls[name] = self.describe_calls.get(name, 0) + 1

    def throttle(self, operation: str, body: dict) -> None:
        """Refuse the first DescribeTrainingJob of each job, and every Nth after, as throttled."""
        if operation != "DescribeTrainingJob" or not THROTTLE_EVERY:
            return
        with self.lock:
            self.describes += 1
            name = body.get("TrainingJobName", "")
            first = name in self.jobs and name not in self.throttled_jobs
            if not first and self.describes % THROTTLE_EVERY:
                return
            self.throttled_jobs.add(name)
            self.throttled += 1
        raise ApiError("ThrottlingException", "Rate exceeded")

    def _job(self, name: str) -> Job:
        job = self.jobs.get(name)
        if job is None:
            raise ApiError("ValidationException", "Requested resource not found.")
        return job

    def CreateTrainingJob(self, body: dict) -> dict:
        name = body["TrainingJobName"]
        stopping = body["StoppingCondition"]
        if body.get("EnableManagedSpotTraining"):
            wait = stopping.get("MaxWaitTimeInSeconds")
            if wait is None:
                raise ApiError("ValidationException", "MaxWaitTimeInSeconds must be set when EnableManagedSpotTraining is true.")
            if wait < stopping.get("MaxRuntimeInSeconds", 86400):
                raise ApiError("ValidationException", "Invalid MaxWaitTimeInSeconds. It must be present and be greater than or equal to MaxRuntimeInSeconds")
        elif "MaxWaitTimeInSeconds" in stopping:
            raise ApiError("ValidationException", "MaxWaitTimeInSeconds is only valid with EnableManagedSpotTraining.")
        if not role_exists(body["RoleArn"]):
            raise ApiError("ValidationException",
                           f"Could not assume role {body['RoleArn']}. Please ensure that the role exists "
                           "and allows principal 'sagemaker.amazonaws.com' to assume the role.")
        for channel in body.get("InputDataConfig", []):
            check_channel(channel, body["AlgorithmSpecification"].get("TrainingInputMode", "File"))
        image = body["AlgorithmSpecification"].get("TrainingImage", "")
        if not image_in_registry(image):
            raise ApiError("ValidationException", f"Cannot find repository or image {image}; check that it exists in ECR.")
        with self.lock:
            if name in self.jobs:
                raise ApiError("ResourceInUse",
                               f"Training job names must be unique within an AWS account and region, and a "
                               f"training job with this name already exists ({self.jobs[name].arn})")
            job = Job(body)
            self.claim_pool(job)
            self.jobs[name] = job
        threading.Thread(target=run_job, args=(job, self.slots), daemon=True).start()
        return {"TrainingJobArn": job.arn}

    def claim_pool(self, job: Job, now: float | None = None) -> str:
        """Place a new job on the oldest Available warm pool it matches (:func:`pool_key`): that
        pool's job becomes Reused by it, and it starts InUse without provisioning. The pool's
        job's name, or '' when none matched."""
        now = time.time() if now is None else now
        key = pool_key(job.request)
        if key is None:
            return ""
        with POOL_LOCK:
            pools = sorted((j for j in self.jobs.values() if j is not job and j.pool_state(now) == "Available"
                            and pool_key(j.request) == key), key=lambda j: j.pool_since)
            if not pools:
                return ""
            pool = pools[0]
            pool.pool_status, pool.pool_billed, pool.reused_by = "Reused", max(0, int(now - pool.pool_since)), job.name
            job.pool_status, job.warm_from = "InUse", pool.name
        return pool.name

    def DescribeTrainingJob(self, body: dict) -> dict:
        return self._job(body["TrainingJobName"]).describe()

    def StopTrainingJob(self, body: dict) -> dict:
        job = self._job(body["TrainingJobName"])
        if job.status != "InProgress":
            raise ApiError("ValidationException",
                           f"The job status is {job.status}. Only jobs with status InProgress can be stopped.")
        job.stop_requested = True
        with job.lock:
            job.status = "Stopping"
        job.set_secondary("Stopping", "Stopping the training job")
        if job.run is not None:
            threading.Thread(target=job.run.stop, daemon=True).start()
        return {}

    def ListTags(self, body: dict) -> dict:
        with self.lock:
            job = next((j for j in self.jobs.values() if j.arn == body["ResourceArn"]), None)
        if job is None:
            raise ApiError("ValidationException", f"Resource {body['ResourceArn']} not found.")
        return {"Tags": job.request.get("Tags", [])}

    def ListTrainingJobs(self, body: dict) -> dict:
        with self.lock:
            jobs = list(self.jobs.values())
        if body.get("NameContains"):
            jobs = [j for j in jobs if body["NameContains"].lower() in j.name.lower()]
        if body.get("StatusEquals"):
            jobs = [j for j in jobs if j.status == body["StatusEquals"]]
        for field, attr, after in (("CreationTimeAfter", "created", True), ("CreationTimeBefore", "created", False),
                                   ("LastModifiedTimeAfter", "modified", True), ("LastModifiedTimeBefore", "modified", False)):
            if field in body:
                limit = float(body[field])
                jobs = [j for j in jobs if (getattr(j, attr) > limit) == after]
        key = {"Name": lambda j: j.name, "Status": lambda j: j.status}.get(body.get("SortBy", "CreationTime"),
                                                                           lambda j: j.created)
        jobs.sort(key=key, reverse=body.get("SortOrder", "Ascending") == "Descending")
        page, token = _page(jobs, body)
        out = {"TrainingJobSummaries": [j.summary() for j in page]}
        if token:
            out["NextToken"] = token
        return out

    # Search: the properties it filters and sorts training jobs by, here.
    _SEARCH_SORT = {"CreationTime": lambda j: j.created, "LastModifiedTime": lambda j: j.modified,
                    "TrainingJobName": lambda j: j.name, "TrainingJobStatus": lambda j: j.status}

    def Search(self, body: dict) -> dict:
        if body["Resource"] != "TrainingJob":
            raise ApiError("ValidationException", f"Resource {body['Resource']} is not emulated (only TrainingJob)")
        expression = body.get("SearchExpression", {})
        extra = sorted(set(expression) - {"Filters", "Operator"})
        if extra:
            raise ApiError("ValidationException", f"SearchExpression.{extra[0]} is not emulated (only Filters)")
        if "SearchExpression" in body and not expression.get("Filters"):
            raise ApiError("ValidationException", "A SearchExpression must contain at least one filter")
        sort_by = body.get("SortBy", "LastModifiedTime")  # AWS's default
        if sort_by not in self._SEARCH_SORT:
            raise ApiError("ValidationException", f"SortBy {sort_by} is not emulated")
        filters = expression.get("Filters", [])
        for f in filters:
            if f.get("Operator", "Equals") not in ("Equals", "NotEquals", "Contains", "Exists", "NotExists"):
                raise ApiError("ValidationException", f"Operator {f['Operator']} is not emulated")
            if f.get("Operator", "Equals") not in ("Exists", "NotExists") and "Value" not in f:
                raise ApiError("ValidationException", f"Filter {f['Name']}: Value is required for {f.get('Operator', 'Equals')}")
        with self.lock:
            jobs = list(self.jobs.values())
        records = {j.name: j.search_record() for j in jobs}

        def lookup(record: dict, name: str):
            if name.startswith("Tags."):
                return next((t["Value"] for t in record.get("Tags", []) if t["Key"] == name[len("Tags."):]), None)
            value = record
            for part in name.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return value

        def matches(record: dict, f: dict) -> bool:
            actual, operator = lookup(record, f["Name"]), f.get("Operator", "Equals")
            if operator == "Exists":
                return actual is not None
            if operator == "NotExists":
                return actual is None
            if operator == "Contains":
                return actual is not None and f["Value"] in str(actual)
            equal = actual is not None and str(actual) == f["Value"]
            return equal if operator == "Equals" else not equal

        join = any if expression.get("Operator", "And") == "Or" else all
        found = [j for j in jobs if not filters or join(matches(records[j.name], f) for f in filters)]
        found.sort(key=self._SEARCH_SORT[sort_by], reverse=body.get("SortOrder", "Descending") == "Descending")
        page, token = _page(found, body)
        out = {"Results": [{"TrainingJob": records[j.name]} for j in page]}
        if token:
            out["NextToken"] = token
        return out



class PriceList:
    """The AWS Price List API's GetProducts, for SageMaker's instances (see the module's doc)."""

    def __init__(self):
        self.calls = 0

    @staticmethod
    def products() -> list[dict]:
        found = []
        for region, location in sorted(PRICED_REGIONS.items()):
            prefix = "".join(part[0] for part in region.split("-")[:2]).upper() + region.rsplit("-", 1)[-1]
            for kind, usd in sorted(TRAINING_PRICES.items()):
                for usage, price in (("Training", usd), ("Hosting", f"{float(usd) * HOSTING_FACTOR:.10f}")):
                    sku = uuid.uuid5(uuid.NAMESPACE_URL, f"{region}/{kind}/{usage}").hex[:16].upper()
                    short = "Train" if usage == "Training" else "Host"
                    found.append({
                        "product": {"productFamily": "ML Instance", "sku": sku, "attributes": {
                            "servicecode": "AmazonSageMaker", "servicename": "Amazon SageMaker",
                            "location": location, "locationType": "AWS Region", "regionCode": region,
                            "instanceName": kind, "instanceType": f"{kind}-{usage}",
                            "component": usage, "platoinstancetype": usage,
                            "usagetype": f"{prefix}-{short}:{kind}", "operation": "RunInstance"}},
                        "serviceCode": "AmazonSageMaker",
                        "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {
                            "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs", "endRange": "Inf", "beginRange": "0", "appliesTo": [],
                                "description": f"${float(price):.3f} per {usage} {kind} instance hour "
                                               f"(or partial hour) in {location}",
                                "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                                "pricePerUnit": {"USD": price}}},
                            "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z", "offerTermCode": "JRTCKXETXF",
                            "termAttributes": {}}}},
                        "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z"})
        return found

    def GetProducts(self, body: dict) -> dict:
        self.calls += 1
        filters = body.get("Filters") or []
        for f in filters:
            if f["Type"] not in ("TERM_MATCH", "EQUALS"):
                raise ApiError("InvalidParameterException", f"filter type {f['Type']} is not emulated")

        def matches(product: dict) -> bool:
            attributes = {**product["product"]["attributes"], "ServiceCode": product["serviceCode"]}
            return all(attributes.get(f["Field"]) == f["Value"] for f in filters)

        found = [p for p in self.products() if p["serviceCode"] == body["ServiceCode"] and matches(p)]
        page, token = _page(found, {"MaxResults": body.get("MaxResults", 100), **body})
        out = {"FormatVersion": body.get("FormatVersion", "aws_v1"), "PriceList": [json.dumps(p) for p in page]}
        if token:
            out["NextToken"] = token
        return out


def _page(items: list, body: dict) -> tuple[list, str]:
    """One page of ``items`` as a List/Search request asks for it (MaxResults, NextToken), and the
    token of the next page ('' after the last)."""
    size = body.get("MaxResults", 10)
    start = 0
    if body.get("NextToken"):
        try:
            start = int(base64.b64decode(body["NextToken"]).decode())
        except ValueError:
            raise ApiError("ValidationException", "Invalid pagination token") from None
    more = start + size < len(items)
    return items[start:start + size], base64.b64encode(str(start + size).encode()).decode() if more else ""

def make_handler(api: SageMaker, prices: PriceList | None = None):
    prices = prices or PriceList()
    services = {"SageMaker": (api, MODEL), "AWSPriceListService": (prices, PRICING_MODEL)}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: the tests read the jobs, not access logs
            pass

        def _reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/credentials":  # the container credentials endpoint of the jobs (moto checks none)
                expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
                self._reply(200, {"AccessKeyId": "testing", "SecretAccessKey": "testing",
                                  "Token": "emulated-role-session", "Expiration": expires,
                                  "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/emulated"})
                return
            with api.lock:
                calls = dict(api.describe_calls)
            self._reply(200, {"emulator": "fahr SageMaker emulator", "jobs": len(api.jobs),
                              "throttled": api.throttled, "describe_calls": calls,
                              "provision_delay": PROVISION_DELAY,
                              "warm_from": {name: job.warm_from for name, job in list(api.jobs.items())},
                              "get_products_calls": prices.calls})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length) if length else b"{}"
            target = self.headers.get("X-Amz-Target", "")
            service, _, operation = target.partition(".")
            server, model = services.get(service, (None, None))
            try:
                if server is None or not operation or not hasattr(server, operation):
                    raise ApiError("UnknownOperationException", f"{operation} is not emulated", 400)
                if "Authorization" not in self.headers:
                    raise ApiError("MissingAuthenticationTokenException", "Missing Authentication Token", 403)
                body = json.loads(raw or b"{}")
                if server is api:
                    api.count(operation, body)
                    api.throttle(operation, body)
                check_request(operation, body, model)
                payload = getattr(server, operation)(body)
                check_response(operation, payload, model)
                self._reply(200, payload)
            except ApiError as exc:
                self._reply(exc.status, {"__type": exc.code, "message": exc.message})
            except Exception as exc:
                traceback.print_exc()
                self._reply(500, {"__type": "InternalFailure", "message": f"{type(exc).__name__}: {exc}"})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=3, help="jobs that run at the same time")
    args = parser.parse_args()
    global PORT
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(SageMaker(args.concurrency)))
    server.daemon_threads = True
    PORT = server.server_address[1]
    print(f"fahr SageMaker emulator on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
