"""boto3 sessions and clients, the translation of AWS errors into fahr's, and the checks made
before anything is pushed or launched.

boto3 is imported inside functions only: importing this module costs nothing.

Credentials, profile, region and endpoints resolve the standard boto3 way (``AWS_PROFILE``,
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``…), with ``config.profile``
and ``config.region`` taking precedence when set; the region as the AWS CLI v2 chooses it
(:func:`chosen_region`: ``AWS_REGION`` too, which boto3 alone ignores). fahr never assumes a role itself: the role's
ARN is handed to SageMaker, which assumes it, so a long wait never meets expired one-hour
credentials of an assumed role.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import re
from dataclasses import dataclass
from urllib.parse import urlparse

from fahr_core import ConfigError, EnvironmentProblem, FahrError, StashKey, UsageError

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# \Z, not $: '$' also matches before a trailing newline, which would slip through.
_S3_URI = re.compile(r"^s3://([^/]+)/?(.*)\Z")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@\-_/]+\Z")

#: What the execution role must be allowed to do (printed when the role is missing).
ROLE_PERMISSIONS = (
    "trust sagemaker.amazonaws.com to assume it; allow SageMaker (AmazonSageMakerFullAccess or "
    "sagemaker:*TrainingJob*), ECR read (ecr:GetAuthorizationToken, ecr:BatchGetImage, "
    "ecr:GetDownloadUrlForLayer), S3 read-write on the output path (s3:GetObject, s3:PutObject, "
    "s3:ListBucket) and CloudWatch Logs (logs:CreateLogGroup, logs:CreateLogStream, logs:PutLogEvents)"
)

_BAD_CREDENTIALS = {
    "InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException",
    "SignatureDoesNotMatch", "InvalidSignatureException", "AuthFailure", "InvalidAccessKeyId",
    "TokenRefreshRequired", "RequestExpired",
}
_THROTTLING = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
               "SlowDown", "ProvisionedThroughputExceededException"}


@dataclass(frozen=True)
class S3Uri:
    """An ``s3://bucket/prefix`` location, the prefix without a trailing ``/``."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        """``s3://bucket/prefix``."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def join(self, *parts: str) -> "S3Uri":
        """This location with ``parts`` appended as key components."""
        keys = [p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/")]
        return S3Uri(self.bucket, "/".join(keys))


def parse_s3(value: str, what: str) -> S3Uri:
    """Parse ``s3://bucket[/prefix]`` or raise a :class:`ConfigError` naming ``what``."""
    match = _S3_URI.match(value or "")
    if not match:
        raise ConfigError(f"{what}={value!r} is not an S3 location; expected s3://bucket[/prefix]")
    bucket, prefix = match.group(1), match.group(2).strip("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigError(f"{what}={value!r}: {bucket!r} is not a valid S3 bucket name")
    if len(value) > 1024:
        raise ConfigError(f"{what} is longer than SageMaker's 1024 characters")
    return S3Uri(bucket, prefix)


# -- sessions and clients ---------------------------------------------------------------------


def session(config):
    """The boto3 session of a run: ``config.profile``/``config.region`` over the standard chain."""
    return _session(config.get("profile") or None, chosen_region(config))


def chosen_region(config, environ=None) -> str | None:
    """The region asked for, as the AWS CLI v2 and the other AWS SDKs choose it: ``config.region``,
    else ``AWS_REGION``, else None, which leaves it to boto3's own chain (``AWS_DEFAULT_REGION``,
    then the profile's region). boto3 reads no ``AWS_REGION`` itself: without this, a region set
    the way AWS documents for every other tool would be ignored here."""
    environ = os.environ if environ is None else environ
    return config.get("region") or environ.get("AWS_REGION") or None


@functools.lru_cache(maxsize=8)
def _session(profile, region):
    import boto3
    from botocore import exceptions as bex

    try:
        sess = boto3.Session(profile_name=profile, region_name=region)
    except bex.ProfileNotFound as exc:
        raise ConfigError(f"AWS profile {profile!r} is not configured ({exc}); check config.profile / AWS_PROFILE") from exc
    if not sess.region_name:
        raise ConfigError(
            "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), a region in your AWS profile, "
            "or --config.region=REGION"
        )
    check_region(sess.region_name, sess)
    return sess


def check_region(region: str, sess=None) -> None:
    """Refuse a region SageMaker does not have in botocore's own endpoint data, with a near match."""
    import boto3

    sess = sess or boto3.Session()
    known: set[str] = set()
    for partition in sess.get_available_partitions():
        known.update(sess.get_available_regions("sagemaker", partition_name=partition))
    if known and region not in known:
        close = difflib.get_close_matches(region, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"region {region!r} is not a SageMaker region{hint} (config.region / AWS_REGION)")


def client(config, service: str):
    """A boto3 client with adaptive retries: throttling is retried, never shown as an error."""
    return _client(config.get("profile") or None, chosen_region(config), service)


@functools.lru_cache(maxsize=32)
def _client(profile, region, service):
    from botocore.config import Config as BotoConfig

    sess = _session(profile, region)
    return sess.client(service, config=BotoConfig(retries={"mode": "adaptive", "max_attempts": 10},
                                                  user_agent_extra="fahr-sagemaker"))


def region_of(config) -> str:
    """The region the run's session resolved."""
    return session(config).region_name


# -- errors -----------------------------------------------------------------------------------


def error_code(exc) -> str:
    """The AWS error code of a botocore ClientError ('' for other exceptions)."""
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "") or ""


def error_message(exc) -> str:
    """AWS's own message of a botocore ClientError."""
    return getattr(exc, "response", {}).get("Error", {}).get("Message", "") or str(exc)


@contextlib.contextmanager
def translated(what: str):
    """Turn botocore's exceptions raised while doing ``what`` into fahr's one-line errors.

    Errors that only the caller can name (a missing bucket, a missing role) are caught by the
    caller first; this is the common floor: credentials, connectivity, validation.
    """
    from botocore import exceptions as bex

    try:
        yield
    except FahrError:
        raise
    except bex.NoCredentialsError as exc:
        raise EnvironmentProblem(
            "no AWS credentials found: set AWS_PROFILE (see 'aws configure'), or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from exc
    except (bex.PartialCredentialsError, bex.CredentialRetrievalError) as exc:
        raise EnvironmentProblem(f"AWS credentials are incomplete or unreadable: {exc}") from exc
    except bex.TokenRetrievalError as exc:
        raise EnvironmentProblem(f"AWS SSO session has expired: run 'aws sso login' ({exc})") from exc
    except bex.ProfileNotFound as exc:
        raise ConfigError(f"AWS profile not found: {exc}") from exc
    except bex.NoRegionError as exc:
        raise ConfigError("no AWS region: set AWS_REGION or --config.region=REGION") from exc
    except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError) as exc:
        raise EnvironmentProblem(
            f"cannot reach AWS while {what}: {exc} (check the network, and the region)"
        ) from exc
    except bex.ParamValidationError as exc:
        raise ConfigError(f"invalid request while {what}: {' '.join(str(exc).split())}") from exc
    except bex.ClientError as exc:
        code, message = error_code(exc), error_message(exc)
        if code in _BAD_CREDENTIALS:
            raise EnvironmentProblem(
                f"AWS rejected the credentials while {what} ({code}: {message}); "
                "refresh them (expired session? wrong account?)"
            ) from exc
        if code in ("AccessDenied", "AccessDeniedException", "403"):
            raise ConfigError(f"access denied while {what}: {message}") from exc
        if code in _THROTTLING:
            raise EnvironmentProblem(f"AWS kept throttling while {what}, even after retries: {message}") from exc
        if getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
            raise EnvironmentProblem(f"AWS failed while {what} ({code}: {message}); retry later") from exc
        raise ConfigError(f"AWS refused {what}: {code}: {message}") from exc
    except bex.BotoCoreError as exc:
        raise EnvironmentProblem(f"AWS SDK error while {what}: {exc}") from exc


# -- the checks before a push or a launch --------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """What the preflight established: account, region, role ARN, output location."""

    account: str
    region: str
    role_arn: str
    output: S3Uri


#: The most instances fahr asks for in one training job. SageMaker's API declares no maximum
#: (botocore's TrainingInstanceCount has only min 0) and leaves it to the account's quotas, which
#: refuse far fewer; a count above this is a typo, refused before the image is built or pushed.
MAX_INSTANCE_COUNT = 1000


def instance_types() -> list[str]:
    """SageMaker's training instance types, from botocore's service model (offline)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateTrainingJob").input_shape
    return list(shape.members["ResourceConfig"].members["InstanceType"].enum)


def train_instance_types(config) -> list[str]:
    """``train_instance_type`` as the types to try in order: ``ml.g5.xlarge,ml.g4dn.xlarge`` is
    the first, then (``fahr fit --retry`` after a ``capacity`` failure) the next."""
    return [kind.strip() for kind in str(config["train_instance_type"]).split(",")]


def instance_type_for(config, capacity_failures: int) -> str:
    """The instance type of an attempt after ``capacity_failures`` attempts found no capacity:
    the next of ``train_instance_type``'s list, the last once each was tried."""
    kinds = train_instance_types(config)
    return kinds[min(capacity_failures, len(kinds) - 1)]


def check_local(config) -> S3Uri:
    """The checks that need no network: output path, instance type, counts, spot."""
    # A missing output_path or role_name is refused by the core before fit runs a hook
    # (their ConfigKey says required_for=("fit",)); an empty one here is a bad S3 location.
    output = parse_s3(config["output_path"], "config.output_path")
    known = instance_types()
    for kind in train_instance_types(config):
        if kind not in known:
            close = difflib.get_close_matches(kind, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see https://aws.amazon.com/sagemaker/pricing/"
            raise ConfigError(f"config.train_instance_type={config['train_instance_type']!r}: {kind!r} is not a "
                              f"SageMaker training instance type{hint}")
    if not 1 <= config["train_instance_count"] <= MAX_INSTANCE_COUNT:
        raise ConfigError(
            f"config.train_instance_count={config['train_instance_count']}: must be 1 to {MAX_INSTANCE_COUNT}"
        )
    if config["volume_size"] < 1:
        raise ConfigError(f"config.volume_size={config['volume_size']}: must be 1 GB or more")
    if config["max_run"] < 1:
        raise ConfigError(f"config.max_run={config['max_run']}: must be 1 second or more")
    if config["spot"]:
        if not config["max_wait"]:
            raise ConfigError(
                f"spot training needs config.max_wait, the seconds to wait for spot capacity plus "
                f"training; it must exceed config.max_run ({config['max_run']})"
            )
        if config["max_wait"] <= config["max_run"]:
            raise ConfigError(
                f"config.max_wait={config['max_wait']} must exceed config.max_run={config['max_run']} "
                "for spot training"
            )
    elif config["max_wait"]:
        raise ConfigError("config.max_wait applies to spot training only; add --config.spot=true or drop it")
    if config.get("checkpoint_s3_uri"):
        parse_s3(config["checkpoint_s3_uri"], "config.checkpoint_s3_uri")
    check_keep_alive(config)
    return output


def check_keep_alive(config) -> None:
    """``keep_alive``: 0 to 3600 seconds (SageMaker's warm pools), and no pool for spot jobs."""
    from fahr_sagemaker.pools import MAX_KEEP_ALIVE

    keep_alive = config.get("keep_alive", 0)
    if not 0 <= keep_alive <= MAX_KEEP_ALIVE:
        raise ConfigError(f"config.keep_alive={keep_alive}: must be 0 to {MAX_KEEP_ALIVE} seconds "
                          "(how long SageMaker keeps a finished job's instances warm)")
    if keep_alive and config["spot"]:
        raise ConfigError("config.keep_alive cannot be used with config.spot=true: SageMaker keeps no warm pool "
                          "of spot instances; drop one of them")


#: The preflight's answer, kept in the run's config.stash: push_image and launch reuse it.
CHECKED = StashKey[Checked]()


def preflight(config) -> Checked:
    """Check configuration, credentials, bucket and role once per run, before pushing anything."""
    stash = getattr(config, "stash", None)  # a plain mapping (a unit test's) has none: no caching
    if stash is not None and CHECKED in stash:
        return stash[CHECKED]
    output = check_local(config)
    region = region_of(config)
    with translated("checking the AWS credentials (sts:GetCallerIdentity)"):
        account = client(config, "sts").get_caller_identity()["Account"]
    check_bucket(config, output, "config.output_path")
    role_arn = resolve_role(config, account)
    checked = Checked(account=account, region=region, role_arn=role_arn, output=output)
    if stash is not None:
        stash[CHECKED] = checked
    return checked


def check_bucket(config, where: S3Uri, what: str) -> None:
    """The bucket exists and we may use it; else a one-line error (exit 2)."""
    from botocore import exceptions as bex

    with translated(f"checking bucket {where.bucket}"):
        try:
            client(config, "s3").head_bucket(Bucket=where.bucket)
        except bex.ClientError as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise ConfigError(f"{what}: bucket {where.bucket!r} does not exist; create it or fix the path") from exc
            if code in ("403", "AccessDenied"):
                raise ConfigError(
                    f"{what}: bucket {where.bucket!r} is not readable with these credentials (access denied)"
                ) from exc
            if code in ("301", "PermanentRedirect"):
                raise ConfigError(
                    f"{what}: bucket {where.bucket!r} is in another region than {region_of(config)}; "
                    "set config.region to the bucket's region"
                ) from exc
            raise


def resolve_role(config, account: str) -> str:
    """The execution role's ARN: an ARN as given, a name looked up with iam:GetRole."""
    from botocore import exceptions as bex

    role = config["role_name"]
    if role.startswith("arn:"):
        if not _ROLE_ARN.match(role):
            raise ConfigError(f"config.role_name={role!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        return role
    with translated(f"looking up IAM role {role}"):
        try:
            return client(config, "iam").get_role(RoleName=role)["Role"]["Arn"]
        except bex.ClientError as exc:
            code = error_code(exc)
            if code == "NoSuchEntity":
                raise ConfigError(
                    f"IAM role {role!r} does not exist in account {account}; create an execution role "
                    f"that may {ROLE_PERMISSIONS}, and pass its name or ARN as config.role_name"
                ) from exc
            if code in ("AccessDenied", "AccessDeniedException"):
                raise ConfigError(
                    f"not allowed to look up IAM role {role!r} (iam:GetRole denied); pass the role's "
                    f"ARN instead: --config.role_name=arn:aws:iam::{account}:role/{role}"
                ) from exc
            raise


def console_urls(region: str, job_name: str) -> tuple[str, str]:
    """The AWS console pages of a training job and of its CloudWatch logs."""
    base = f"https://{region}.console.aws.amazon.com"
    job = f"{base}/sagemaker/home?region={region}#/jobs/{job_name}"
    logs = (f"{base}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
            f"$252Faws$252Fsagemaker$252FTrainingJobs$3FlogStreamNameFilter$3D{job_name}")
    return job, logs


def usage_if_not_s3(location: str) -> None:
    """Refuse an artifact location that is not ``s3://…`` (exit 2)."""
    if urlparse(location).scheme != "s3":
        raise UsageError(f"{location!r} is not an S3 location; the sagemaker driver fetches from s3://bucket/prefix")
