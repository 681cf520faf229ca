"""The conformance suite against the `sagemaker` driver, on the emulated AWS (moto, a real
registry, fahr's SageMaker emulator; all on 127.0.0.1)."""

import uuid
from urllib.parse import urlparse

import pytest

from aws_emulator.stack import BUCKET, ROLE
import fahr_core
from fahr_core.testing import DriverConformance

pytestmark = pytest.mark.docker


class TestSageMakerDriver(DriverConformance):
    api_level = fahr_core.PLUGIN_API_VERSION  # fahr's own drivers keep every rule of this fahr

    @pytest.fixture(scope="class")
    @classmethod
    def driver_name(cls):
        return "sagemaker"

    @pytest.fixture(scope="class")
    @classmethod
    def driver_config(cls):
        return {"output_path": f"s3://{BUCKET}/conformance", "role_name": ROLE, "poll_interval": "2"}

    @pytest.fixture(scope="class")
    @classmethod
    def driver_env(cls, stack):
        return stack.env()

    @pytest.fixture(scope="class")
    @classmethod
    def channel_uri(cls, stack):
        """Channels come from S3, as on SageMaker: upload the folder to the emulated bucket."""
        s3 = stack.client("s3")

        def upload(folder):
            prefix = f"conformance-input/{uuid.uuid4().hex}"
            for path in folder.rglob("*"):
                if path.is_file():
                    s3.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")
            return f"s3://{BUCKET}/{prefix}/"

        return upload

    @pytest.fixture(scope="class")
    @classmethod
    def read_artifact(cls, stack):
        """Artifacts are S3 URIs: download them from the emulated bucket."""
        s3 = stack.client("s3")

        def download(uri):
            parsed = urlparse(uri)
            assert parsed.scheme == "s3", uri
            return s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()

        return download
