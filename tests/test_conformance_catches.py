"""The conformance suite can fail: run against the test driver, which fakes its jobs (its model is
a tarball of the hyperparameters and it never runs the code), the contract tests must fail."""

import subprocess
import sys


def test_the_suite_fails_a_driver_that_does_not_run_the_model(tmp_path):
    (tmp_path / "test_fake.py").write_text(
        "import pytest\n"
        "from fahr_core.testing import DriverConformance\n\n"
        "class TestFake(DriverConformance):\n"
        "    @pytest.fixture(scope='class')\n"
        "    @classmethod\n"
        "    def driver_name(cls):\n"
        "        return 'testdrv'\n\n"
        "    @pytest.fixture(scope='class')\n"
        "    @classmethod\n"
        "    def driver_config(cls, tmp_path_factory):\n"
        "        return {'record_dir': str(tmp_path_factory.mktemp('rec'))}\n\n"
        "    @pytest.fixture(scope='class')\n"
        "    @classmethod\n"
        "    def supports_stop(cls):\n"
        "        return False\n"
    )
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "test_fake.py"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    # The fake "completes" every job, so a failing model does not fail, and no report comes back.
    # (The failing job is a shared fixture: its "success" is an error at the set-up of the tests using it.)
    assert ("FAILED test_fake.py::TestFake::test_a_failing_model_fails_with_its_failure_reason" in out
            or "ERROR test_fake.py::TestFake::test_a_failing_model_fails_with_its_failure_reason" in out)
    assert "FAILED test_fake.py::TestFake::test_a_crash_without_failure_file_still_has_a_reason" in out
    assert "test_fake.py::TestFake::test_the_model_comes_back_intact" in out
    assert "PASSED test_fake.py::TestFake::test_the_model_comes_back_intact" not in out
    assert "SKIPPED" in out and "does not support stop" in out


def test_the_suite_reads_the_job_name_fahr_printed_last():
    """fahr may print the name it proposes before the launch and the name the driver returned
    after it (a driver may rename the job): the suite follows the last one printed."""
    from fahr_core.testing import job_names

    before_only = "fahr launching job m-train-20260101-000000-ab12 on driver 'local'\n"
    assert job_names(before_only) == ["m-train-20260101-000000-ab12"]
    renamed = (before_only + "fahr job team-x-20260101-000000-ab12 launched on driver 'sagemaker'\n"
               "fahr follow it with:\n    fahr wait team-x-20260101-000000-ab12 --train-driver sagemaker\n")
    assert job_names(renamed)[-1] == "team-x-20260101-000000-ab12"
    assert job_names("fahr job m-1 launched; follow it with:\n") == ["m-1"]
    assert job_names("no job here, 'fahr fetch ./model' only\n") == []
