"""fahr's driver conformance suite, run against this driver (the fsspec abstract-tests pattern):
it trains known models through `fahr` and checks the contract every driver keeps."""

import pytest

from fahr_core.testing import DriverConformance


class TestConformance(DriverConformance):
    # The plugin API level whose conformance rules this driver keeps: a rule a later fahr adds is
    # a warning until you raise it (docs/writing-a-driver.md of fahr, "Moving up an API level").
    api_level = "1.6"

    @pytest.fixture(scope="class")
    @classmethod
    def driver_name(cls):
        return "{{ cookiecutter.driver_name }}"

    @pytest.fixture(scope="class")
    @classmethod
    def driver_config(cls, tmp_path_factory):
        return {"output_path": str(tmp_path_factory.mktemp("jobs")), "stop_timeout": "5"}
