"""fahr's driver conformance suite, run against this driver (the fsspec abstract-tests pattern):
it trains known models through `fahr` and checks the contract every driver keeps."""

import pytest

from fahr_core.testing import DriverConformance


class TestConformance(DriverConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def driver_name(cls):
        return "{{ cookiecutter.driver_name }}"

    @pytest.fixture(scope="class")
    @classmethod
    def driver_config(cls, tmp_path_factory):
        return {"output_path": str(tmp_path_factory.mktemp("jobs")), "stop_timeout": "5"}
