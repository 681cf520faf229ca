"""The conformance suite against fahr's built-in `local` driver (real Docker)."""

import pytest

import fahr_core
from fahr_core.testing import DriverConformance

pytestmark = pytest.mark.docker


class TestLocalDriver(DriverConformance):
    api_level = fahr_core.PLUGIN_API_VERSION  # fahr's own drivers keep every rule of this fahr

    @pytest.fixture(scope="class")
    @classmethod
    def driver_name(cls):
        return "local"

    @pytest.fixture(scope="class")
    @classmethod
    def driver_config(cls, tmp_path_factory):
        return {"output_path": str(tmp_path_factory.mktemp("local-jobs")), "stop_timeout": "5"}
