"""The conformance suite fails sloppy drivers: for each defect, it runs (only the relevant tests)
against a copy of the `local` driver that has that one defect (tests/plugins/fahr_brokendrivers)
and must fail; against the copy without a defect, the same tests must pass (real Docker)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.docker

# driver -> (the test that must fail, the phrases its failure must show)
DEFECTS = {
    "broken-latelogs": ("test_the_logs_arrive_while_the_job_runs", "not streamed live"),
    "broken-noenv": ("test_the_env_option_reaches_the_code", "the job did not see --env"),
    "broken-noconfig": ("test_the_job_finds_its_resource_and_input_config", "resourceconfig.json"),
    "broken-sigkill": ("test_stop_ends_a_running_job_stopped", "SIGTERM handler never finished"),
    "broken-leftovers": ("test_nothing_is_left_behind", "left behind by the suite's jobs|docker network|temporary file"),
    "broken-longreason": ("test_the_failure_reason_is_cut_to_1024_characters", "characters; SageMaker keeps"),
    "broken-nooutput": ("test_the_job_writes_its_output_data_archive", "output_artifact is empty"),
    "broken-claimsforeign": ("test_the_driver_claims_no_foreign_location", "which is not its own"),
    "broken-anytag": ("test_job_names_are_unique_and_fetch_takes_the_newest", "without --job got the model"),
    "broken-anystatus": ("test_job_names_are_unique_and_fetch_takes_the_newest", "is Failed, it has no model"),
    "broken-nodetach": ("test_a_detached_job_can_be_waited_for", "cannot follow job"),
    "broken-lossy": ("test_links_long_and_non_ascii_names_survive", "lost in the round trip"),
}

SUITE = textwrap.dedent('''\
    import pytest

    from fahr_core.testing import DriverConformance


    class TestDriver(DriverConformance):
        @pytest.fixture(scope="class")
        @classmethod
        def driver_name(cls):
            return {driver!r}

        @pytest.fixture(scope="class")
        @classmethod
        def driver_config(cls, tmp_path_factory):
            return {{"output_path": str(tmp_path_factory.mktemp("jobs")), "stop_timeout": "5"}}
''')


def run_suite(tmp_path, driver: str, tests: list[str]) -> subprocess.CompletedProcess:
    (tmp_path / "test_suite.py").write_text(SUITE.format(driver=driver))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'base'}",
         "test_suite.py", "-k", " or ".join(tests)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )


@pytest.fixture
def no_leftovers(tmp_path):
    """The broken drivers leave things on the engine on purpose (broken-leftovers its networks,
    others the containers of jobs they cannot follow): remove what this test's jobs left, and
    nothing else (another run on the same engine keeps its containers)."""
    import docker

    client = docker.from_env()
    yield
    from fahr_brokendrivers.leftovers import LABEL

    ours = {job.name for jobs in (tmp_path / "base").glob("jobs*") for job in jobs.iterdir()}
    try:
        for container in client.containers.list(all=True, filters={"label": "fahr.job"}):
            if container.labels.get("fahr.job") in ours:
                container.remove(force=True)
        for network in client.networks.list(filters={"label": LABEL}):
            network.remove()
    finally:
        client.close()


@pytest.mark.parametrize("driver", sorted(DEFECTS))
def test_the_suite_fails_a_driver_with_the_defect(tmp_path, driver, no_leftovers):
    test, phrases = DEFECTS[driver]
    result = run_suite(tmp_path, driver, [test])
    out = result.stdout
    assert result.returncode == 1, out[-4000:]
    assert f"FAILED test_suite.py::TestDriver::{test}" in out, out[-4000:]
    for phrase in phrases.split("|"):
        assert phrase in out, out[-4000:]


def test_the_suite_passes_the_same_driver_without_a_defect(tmp_path):
    tests = sorted({test for test, _ in DEFECTS.values()})
    result = run_suite(tmp_path, "broken-reference", tests)
    out = result.stdout
    assert result.returncode == 0, out[-4000:]
    for test in tests:
        assert f"PASSED test_suite.py::TestDriver::{test}" in out, out[-4000:]
