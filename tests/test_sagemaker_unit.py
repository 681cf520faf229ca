"""The sagemaker driver's pieces that need no AWS: packaging, configuration checks, error
translation, names; and the emulator's request validation."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fahr_core import config as cfg
from fahr_core import names
from fahr_core.errors import ConfigError, EnvironmentProblem

import fahr_sagemaker
from fahr_sagemaker import aws, ecr

REPO = Path(__file__).resolve().parent.parent


def _config(**values):
    pairs = [(k, str(v)) for k, v in values.items()]
    keys = fahr_sagemaker.config_keys()
    return cfg.resolve("sagemaker", keys, cfg.ProjectFile(None, {}), pairs, environ={})


GOOD = dict(output_path="s3://bucket/models", role_name="role")


# -- packaging -------------------------------------------------------------------------------------


def test_distribution_metadata():
    core = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert not any("boto" in dep for dep in core["project"]["dependencies"])  # pip install fahr: no boto3
    driver = tomllib.loads((REPO / "fahr_sagemaker/pyproject.toml").read_text())
    assert driver["project"]["name"] == "fahr-sagemaker"
    assert any(dep.startswith("fahr") for dep in driver["project"]["dependencies"])
    assert any(dep.startswith("boto3") for dep in driver["project"]["dependencies"])
    assert driver["project"]["entry-points"]["fahr.drivers"] == {"sagemaker": "fahr_sagemaker"}


def test_driver_is_listed_and_nothing_heavy_is_imported_for_help_and_drivers():
    probe = (
        "import sys\n"
        "from fahr_core import cli\n"
        "for argv in (['fahr', '--help'], ['fahr', 'drivers']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        cli.main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "import fahr_sagemaker\n"
        "heavy = sorted(m for m in ('boto3', 'botocore', 'docker') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert any(line.startswith("sagemaker ") and "fahr-sagemaker" in line for line in out.splitlines())


def test_without_fahr_sagemaker_the_driver_is_absent_and_fit_says_how_to_install(tmp_path):
    # A view of this environment's site-packages without the fahr-sagemaker distribution: what
    # `pip install fahr` alone gives (fahr's own dependencies include no boto3, see above).
    import sysconfig

    view = tmp_path / "site-packages"
    view.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if "fahr_sagemaker" not in entry.name:
            (view / entry.name).symlink_to(entry)
    runner = ("import site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv[0] = 'fahr'; "
              "from fahr_core.cli import main; main()")

    def fahr(*args):
        return subprocess.run([sys.executable, "-S", "-c", runner, str(view), *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    drivers = fahr("drivers")
    assert drivers.returncode == 0, drivers.stderr
    listed = [line.split()[0] for line in drivers.stdout.splitlines()]
    assert "local" in listed and "sagemaker" not in listed
    model = tmp_path / "m" / "train.py"
    model.parent.mkdir()
    model.write_text("print('hi')\n")
    fit = fahr("fit", str(model), "--train-driver", "sagemaker")
    assert fit.returncode == 2, fit.stderr
    assert "pip install fahr-sagemaker" in fit.stderr
    assert "Traceback" not in fit.stderr


def test_claims_only_s3_locations():
    assert fahr_sagemaker.claims_location("s3://bucket/models") is True
    assert fahr_sagemaker.claims_location("/tmp/models") is None
    assert fahr_sagemaker.claims_location("gs://bucket/models") is None


# -- configuration ---------------------------------------------------------------------------------


def test_defaults():
    config = _config()
    assert config["train_instance_type"] == "ml.c4.2xlarge"
    assert (config["train_instance_count"], config["volume_size"], config["max_run"]) == (1, 30, 86400)
    assert config["spot"] is False


@pytest.mark.parametrize("path, message", [
    ("/data/models", "is not an S3 location"),
    ("s3://", "is not an S3 location"),
    ("s3://UPPER/x", "not a valid S3 bucket name"),
    ("s3://abc/" + "x" * 1030, "longer than SageMaker's 1024"),
])
def test_output_path_is_validated(path, message):
    with pytest.raises(ConfigError, match=message) as info:
        aws.check_local(_config(output_path=path, role_name="r"))
    assert info.value.exit_code == 2


def _resolve_for(command, **values):
    pairs = [(k, str(v)) for k, v in values.items()]
    return cfg.resolve("sagemaker", fahr_sagemaker.config_keys(), cfg.ProjectFile(None, {}), pairs,
                       environ={}, command=command)


def test_output_path_and_role_are_needed_to_fit_only():
    # The driver declares it (required_for); the core words the error, the driver no longer does.
    with pytest.raises(ConfigError) as info:
        _resolve_for("fit", role_name="r")
    assert str(info.value).startswith("driver 'sagemaker' needs config.output_path to fit (S3 folder for artifacts")
    assert "--config.output_path=VALUE, set FAHR_SAGEMAKER_OUTPUT_PATH, or add it to fahr.toml" in str(info.value)
    with pytest.raises(ConfigError, match=r"^driver 'sagemaker' needs config.role_name to fit \(IAM execution role"):
        _resolve_for("fit", output_path="s3://bucket/x")
    for command in ("wait", "stop", "fetch", None):
        assert _resolve_for(command)["output_path"] == ""
    # Nothing in the driver re-checks it: an empty output path is only a bad S3 location there.
    with pytest.raises(ConfigError, match="is not an S3 location"):
        aws.check_local(_config(role_name="r"))


def test_parse_s3_normalises():
    assert aws.parse_s3("s3://bucket/a/b/", "x") == aws.S3Uri("bucket", "a/b")
    assert aws.parse_s3("s3://bucket", "x").uri == "s3://bucket"
    assert aws.parse_s3("s3://bucket/a", "x").join("job", "output").uri == "s3://bucket/a/job/output"


def test_instance_types_come_from_botocore_with_near_matches():
    assert "ml.c4.2xlarge" in aws.instance_types() and len(aws.instance_types()) > 50
    with pytest.raises(ConfigError, match=r"did you mean .*ml\.p3\.2xlarge"):
        aws.check_local(_config(**GOOD, train_instance_type="ml.p3.2xlarg"))
    aws.check_local(_config(**GOOD, train_instance_type="ml.g5.xlarge"))


@pytest.mark.parametrize("extra, message", [
    (dict(spot=True), "spot training needs config.max_wait"),
    (dict(spot=True, max_wait=86400), "must exceed config.max_run=86400"),
    (dict(spot=True, max_run=100, max_wait=50), "must exceed config.max_run=100"),
    (dict(max_wait=90000), "spot training only"),
    (dict(train_instance_count=0), "must be 1 to 1000"),
    (dict(train_instance_count=-1), "must be 1 to 1000"),
    (dict(train_instance_count=1001), "must be 1 to 1000"),
    (dict(train_instance_count=10**9), "must be 1 to 1000"),
])
def test_spot_and_counts(extra, message):
    with pytest.raises(ConfigError, match=message):
        aws.check_local(_config(**GOOD, **extra))


def test_spot_with_a_longer_wait_is_fine():
    aws.check_local(_config(**GOOD, spot=True, max_run=3600, max_wait=7200))


def test_the_instance_count_limit_is_allowed_and_the_api_declares_none_lower():
    aws.check_local(_config(**GOOD, train_instance_count=aws.MAX_INSTANCE_COUNT))
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateTrainingJob").input_shape.members["ResourceConfig"].members["InstanceCount"]
    assert shape.metadata.get("max", aws.MAX_INSTANCE_COUNT) >= aws.MAX_INSTANCE_COUNT


def test_s3_uris_and_role_arns_with_a_trailing_newline_are_refused():
    with pytest.raises(ConfigError, match="not an S3 location"):
        aws.parse_s3("s3://bucket/models\n", "config.output_path")
    with pytest.raises(ConfigError, match="not a valid S3 bucket name"):
        aws.parse_s3("s3://bucket\n/models", "config.output_path")
    with pytest.raises(ConfigError, match="not an IAM role ARN"):
        aws.resolve_role(_config(**{**GOOD, "role_name": "arn:aws:iam::123456789012:role/r\n"}), "123456789012")


def test_region_is_checked_against_botocore():
    aws.check_region("eu-west-1")
    with pytest.raises(ConfigError, match="did you mean 'eu-west-1'"):
        aws.check_region("eu-wset-1")


def _aws_environment(monkeypatch, tmp_path, profile_region: str | None, **variables: str) -> None:
    """No AWS setting of the caller's, a profile file with ``profile_region``, then ``variables``."""
    import os

    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    profile = tmp_path / "aws-config"
    profile.write_text("[default]\n" + (f"region = {profile_region}\n" if profile_region else ""))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(profile))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for var, value in variables.items():
        monkeypatch.setenv(var, value)
    aws._session.cache_clear()
    aws._client.cache_clear()


def test_region_is_config_then_aws_region_then_aws_default_region_then_the_profile(monkeypatch, tmp_path):
    # The AWS CLI v2's order. boto3 alone reads no AWS_REGION: the variable AWS documents for
    # every other tool (and fahr's own "no AWS region" error names) must still choose the region.
    _aws_environment(monkeypatch, tmp_path, "eu-west-1")
    assert aws.region_of(_config(**GOOD)) == "eu-west-1"
    _aws_environment(monkeypatch, tmp_path, "eu-west-1", AWS_REGION="us-west-2")
    assert aws.region_of(_config(**GOOD)) == "us-west-2"
    _aws_environment(monkeypatch, tmp_path, None, AWS_REGION="us-west-2")
    assert aws.region_of(_config(**GOOD)) == "us-west-2"
    assert aws.client(_config(**GOOD), "sagemaker").meta.region_name == "us-west-2"
    _aws_environment(monkeypatch, tmp_path, "eu-west-1", AWS_REGION="us-west-2", AWS_DEFAULT_REGION="eu-central-1")
    assert aws.region_of(_config(**GOOD)) == "us-west-2"
    assert aws.region_of(_config(**GOOD, region="ap-south-1")) == "ap-south-1"
    _aws_environment(monkeypatch, tmp_path, "eu-west-1", AWS_DEFAULT_REGION="eu-central-1")
    assert aws.region_of(_config(**GOOD)) == "eu-central-1"
    assert aws.chosen_region(_config(**GOOD), environ={"AWS_REGION": ""}) is None  # empty: not set


def test_no_region_anywhere_names_every_way_to_set_one(monkeypatch, tmp_path):
    _aws_environment(monkeypatch, tmp_path, None)
    with pytest.raises(ConfigError, match=r"no AWS region: set AWS_REGION \(or AWS_DEFAULT_REGION\), a region in "
                                          r"your AWS profile, or --config.region=REGION"):
        aws.region_of(_config(**GOOD))
    aws._session.cache_clear()


def test_clients_retry_throttling_adaptively(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = aws.client(_config(region="eu-west-1"), "sagemaker")
    assert client.meta.config.retries["mode"] == "adaptive"
    assert client.meta.region_name == "eu-west-1"


# -- errors ----------------------------------------------------------------------------------------


def _client_error(code, message="msg", status=400):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "AnOperation")


@pytest.mark.parametrize("exc, kind, code, message", [
    ("nocreds", EnvironmentProblem, 3, "no AWS credentials found"),
    ("endpoint", EnvironmentProblem, 3, "cannot reach AWS"),
    (("ExpiredToken", "The security token included in the request is expired"), EnvironmentProblem, 3,
     "AWS rejected the credentials"),
    (("InvalidClientTokenId", "bad"), EnvironmentProblem, 3, "AWS rejected the credentials"),
    (("ValidationException", "1 validation error"), ConfigError, 2, "1 validation error"),
    (("AccessDeniedException", "not allowed"), ConfigError, 2, "access denied"),
    (("InternalFailure", "oops", 500), EnvironmentProblem, 3, "AWS failed while doing something"),
])
def test_botocore_errors_become_one_line_fahr_errors(exc, kind, code, message):
    from botocore import exceptions as bex

    if exc == "nocreds":
        raised = bex.NoCredentialsError()
    elif exc == "endpoint":
        raised = bex.EndpointConnectionError(endpoint_url="https://sagemaker.xx-east-9.amazonaws.com")
    else:
        raised = _client_error(*exc)
    with pytest.raises(kind, match=message) as info:
        with aws.translated("doing something"):
            raise raised
    assert info.value.exit_code == code
    assert "\n" not in info.value.message
    assert info.value.__cause__ is raised


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["hello/train", "a-very-long-folder-name-for-a-model/with-a-long-script-name", "x/y"])
def test_job_stem_is_the_start_of_the_cores_job_names(tag):
    assert names.job_name(tag).startswith(names.job_stem(tag) + "-")
    assert names.job_name(tag, base="my-base").startswith(names.job_stem(tag, "my-base") + "-")


def test_content_tag_is_derived_from_the_image_id():
    image_id = "sha256:" + "ab" * 32
    assert ecr.content_tag(image_id) == "fahr-" + "ab" * 10
    assert ecr.content_tag(image_id) == ecr.content_tag(image_id)
    assert ecr.content_tag("sha256:" + "cd" * 32) != ecr.content_tag(image_id)


def test_registry_errors_say_refused_or_unreachable():
    refused = ecr._registry_error("pushing", RuntimeError("denied: requested access to the resource is denied"))
    unreachable = ecr._registry_error("logging in", RuntimeError("Get https://x/v2/: dial tcp 127.0.0.1:443: connect: connection refused"))
    assert "registry refused" in refused.message and refused.exit_code == 3
    assert "registry unreachable" in unreachable.message and unreachable.exit_code == 3


class _FakeImages:
    """The engine as ``ecr.push`` sees it: local tags (``repo:tag`` -> image id) and a registry
    that holds nothing yet."""

    def __init__(self, tags):
        self.tags = dict(tags)
        self.pushed = []

    def inspect_image(self, reference):
        from docker import errors

        if reference.startswith("sha256:"):
            return {"Id": reference, "Size": 1}
        if reference not in self.tags:
            raise errors.ImageNotFound(reference)
        return {"Id": self.tags[reference], "Size": 1}

    def inspect_distribution(self, reference, auth_config):
        from docker import errors

        raise errors.NotFound("manifest unknown")

    def tag(self, image, repository, tag):
        self.tags[f"{repository}:{tag}"] = image

    def remove_image(self, reference, noprune):
        del self.tags[reference]

    def push(self, repository, tag, auth_config, stream, decode):
        self.pushed.append((f"{repository}:{tag}", self.tags[f"{repository}:{tag}"]))
        yield {"aux": {"Digest": "sha256:" + "d" * 64}}


URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/hello/train"


@pytest.mark.parametrize("users_tag", [None, "the same image", "another image"])
def test_a_push_removes_only_the_local_tag_fahr_made(monkeypatch, users_tag):
    """The push goes through a local tag of the registry's name; a tag of that name the user already
    had (an image pulled from the registry) stays, and one naming another image is never moved."""
    from types import SimpleNamespace

    from fahr_core import ImageRef, UsageError

    image_id, other = "sha256:" + "ab" * 32, "sha256:" + "cd" * 32
    remote = f"{URI}:{ecr.content_tag(image_id)}"
    mine = {} if users_tag is None else {remote: image_id if users_tag == "the same image" else other}
    api = _FakeImages({"hello/train:latest": image_id, **mine})
    monkeypatch.setattr(ecr, "_docker", lambda: SimpleNamespace(api=api))
    monkeypatch.setattr(ecr, "ensure_repository", lambda config, name: URI)
    monkeypatch.setattr(ecr, "login", lambda config, engine: {})
    image = ImageRef(name="hello/train", image_id=image_id)
    if users_tag == "another image":
        with pytest.raises(UsageError, match=f"the local image tag {re.escape(remote)} names another image"):
            ecr.push(image, _config(**GOOD))
        assert api.pushed == [] and api.tags[remote] == other
        return
    pushed = ecr.push(image, _config(**GOOD))
    assert pushed.digest == "sha256:" + "d" * 64 and api.pushed == [(remote, image_id)]
    assert api.tags == {"hello/train:latest": image_id, **mine}  # fahr's own vehicle tag gone, the user's kept


def test_spot_savings_line():
    from fahr_sagemaker.follow import timings

    assert timings({"TrainingTimeInSeconds": 100, "BillableTimeInSeconds": 30, "EnableManagedSpotTraining": True}) == \
        "training seconds: 100, billable seconds: 30, managed spot training savings: 70.0%"
    assert timings({"TrainingTimeInSeconds": 100, "BillableTimeInSeconds": 100}) == \
        "training seconds: 100, billable seconds: 100"


# -- the emulator's validation -----------------------------------------------------------------------


def test_emulator_validates_against_botocore_model():
    sys.path.insert(0, str(REPO / "tests" / "aws_emulator"))
    try:
        import sagemaker_server as emu
    finally:
        sys.path.pop(0)
    good = {
        "TrainingJobName": "job-1",
        "AlgorithmSpecification": {"TrainingImage": "x", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/r",
        "OutputDataConfig": {"S3OutputPath": "s3://b/p"},
        "ResourceConfig": {"InstanceType": "ml.c4.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    emu.check_request("CreateTrainingJob", good)
    for broken, needle in (
        ({**good, "TrainingJobName": "bad_name"}, "regular expression pattern"),
        ({**good, "ResourceConfig": {**good["ResourceConfig"], "InstanceType": "ml.nope"}}, "enum value set"),
        ({k: v for k, v in good.items() if k != "RoleArn"}, "RoleArn' failed to satisfy constraint: Member must not be null"),
    ):
        with pytest.raises(emu.ApiError, match=needle):
            emu.check_request("CreateTrainingJob", broken)


def test_emulator_search_filters_sorts_and_pages_like_the_driver_asks():
    sys.path.insert(0, str(REPO / "tests" / "aws_emulator"))
    try:
        import sagemaker_server as emu
    finally:
        sys.path.pop(0)
    api = emu.SageMaker()
    base = {
        "AlgorithmSpecification": {"TrainingImage": "x", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/r",
        "OutputDataConfig": {"S3OutputPath": "s3://b/p"},
        "ResourceConfig": {"InstanceType": "ml.c4.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    for i, (tag, status) in enumerate([("a/m", "Completed"), ("b/m", "Completed"), ("a/m", "Failed"),
                                       ("a/m", "Completed"), ("a/m", "Completed")]):
        job = emu.Job({**base, "TrainingJobName": f"job-{i}", "Tags": [{"Key": "fahr:model-tag", "Value": tag}]})
        job.created, job.status = 1000.0 + i, status
        api.jobs[job.name] = job
    request = {"Resource": "TrainingJob", "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 2,
               "SearchExpression": {"Operator": "And", "Filters": [
                   {"Name": "Tags.fahr:model-tag", "Operator": "Equals", "Value": "a/m"},
                   {"Name": "TrainingJobStatus", "Operator": "Equals", "Value": "Completed"}]}}
    emu.check_request("Search", request)  # the driver's request is valid for botocore's model
    first = api.Search(request)
    assert [r["TrainingJob"]["TrainingJobName"] for r in first["Results"]] == ["job-4", "job-3"]
    assert first["Results"][0]["TrainingJob"]["Tags"] == [{"Key": "fahr:model-tag", "Value": "a/m"}]
    second = api.Search({**request, "NextToken": first["NextToken"]})
    assert [r["TrainingJob"]["TrainingJobName"] for r in second["Results"]] == ["job-0"]
    assert "NextToken" not in second
    with pytest.raises(emu.ApiError, match="only TrainingJob"):
        api.Search({"Resource": "Endpoint"})
    with pytest.raises(emu.ApiError, match="Operator GreaterThan is not emulated"):
        api.Search({"Resource": "TrainingJob", "SearchExpression": {"Filters": [
            {"Name": "CreationTime", "Operator": "GreaterThan", "Value": "1"}]}})
    with pytest.raises(emu.ApiError, match="enum value set"):
        emu.check_request("Search", {**request, "Resource": "TrainingJobs"})


def test_the_recorded_model_tag_comes_from_the_environment_else_the_tags():
    from fahr_sagemaker.artifacts import recorded_tag

    tags = [{"Key": "other", "Value": "x"}, {"Key": "fahr:model-tag", "Value": "from/tags"}]
    assert recorded_tag({"Environment": {"FAHR_MODEL_TAG": "from/env"}, "Tags": tags}) == "from/env"
    assert recorded_tag({"Environment": {}, "Tags": tags}) == "from/tags"
    assert recorded_tag({"TrainingJobName": "j"}) == ""
