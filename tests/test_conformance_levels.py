"""The conformance suite versions its rules: a rule added after plugin API 1.0 is a warning, not a
failure, for a driver's test class targeting a lower level (docs/writing-a-driver.md, "Moving up
an API level").

The end-to-end half runs the suite for real (real fahr, real Docker) against ``broken-oldrules``
(tests/plugins/fahr_brokendrivers), a driver as written to the suite of 1.0: no ARN in
``TRAINING_JOB_ARN``, a ``ContentType`` always set, no ``model_empty``. One pytest run holds two
classes on that driver, one targeting 1.0 (by saying nothing), one the current level; the tests
here read its outcome. The other half checks the level machinery in-process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings

import pytest

import fahr_core
from fahrcli import REPO
from fahr_core.testing import RULES, ConformanceWarning, DriverConformance
from fahr_core.testing.levels import check_level, since

#: The rules the 1.0 driver breaks, by test: each was added at 1.1.
BROKEN_AT_1_0 = {
    "test_training_job_arn_is_an_arn_or_absent": "TRAINING_JOB_ARN is the job's SageMaker ARN, or not set",
    "test_a_channel_given_no_content_type_has_none": "a channel given no content type has no ContentType",
    "test_a_model_with_no_file_is_reported": "a job that saved no file in /opt/ml/model is reported",
}
#: The rules added after 1.1, by test, with their level (the 1.0 driver is not run against them).
LATER = {"test_jobs_know_the_project_they_were_built_from": "1.4",
         "test_a_secret_reaches_the_code_and_nothing_fahr_shows": "1.4",
         "test_jobs_know_their_hyperparameters": "1.5", "test_jobs_know_their_sweep": "1.5",
         "test_a_failed_script_is_the_user_s": "1.6", "test_jobs_know_their_failure_kind": "1.6"}
#: Rules of 1.0 run beside them: the driver keeps these at every level.
KEPT = ["test_the_job_sees_its_environment_and_a_valid_name", "test_the_env_option_reaches_the_code",
        "test_the_model_comes_back_intact"]

SUITE = textwrap.dedent('''\
    import pytest

    from fahr_core.testing import DriverConformance


    class Config:
        @pytest.fixture(scope="class")
        @classmethod
        def driver_name(cls):
            return "broken-oldrules"

        @pytest.fixture(scope="class")
        @classmethod
        def driver_config(cls, tmp_path_factory):
            return {{"output_path": str(tmp_path_factory.mktemp("jobs")), "stop_timeout": "5"}}

        @pytest.fixture(scope="class")
        @classmethod
        def execution_environment(cls):
            return "local"  # a copy of the local driver: its jobs say so


    class TestAtFirstLevel(Config, DriverConformance):
        pass  # says no api_level: targets 1.0


    class TestAtCurrentLevel(Config, DriverConformance):
        api_level = {current!r}
''')

#: Records every warning of the run with its test, as JSON lines (pytest's summary is for people).
CONFTEST = textwrap.dedent('''\
    import json
    import os


    def pytest_warning_recorded(warning_message, when, nodeid, location):
        with open(os.environ["WARNINGS_LOG"], "a") as log:
            log.write(json.dumps({"test": nodeid, "category": warning_message.category.__name__,
                                  "message": str(warning_message.message)}) + "\\n")
''')


@pytest.fixture(scope="module")
def levels_run(tmp_path_factory):
    """One pytest run of the rules above on both classes, against real Docker (about a minute)."""
    folder = tmp_path_factory.mktemp("levels")
    (folder / "test_suite.py").write_text(SUITE.format(current=fahr_core.PLUGIN_API_VERSION))
    (folder / "conftest.py").write_text(CONFTEST)
    log = folder / "warnings.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", f"--basetemp={folder / 'base'}",
         "test_suite.py", "-k", " or ".join([*BROKEN_AT_1_0, *KEPT])],
        cwd=folder, capture_output=True, text=True, timeout=900, env={**os.environ, "WARNINGS_LOG": str(log)},
    )
    recorded = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, recorded


def _outcomes(out: str, cls: str) -> dict[str, str]:
    return {m[2]: m[1] for m in re.finditer(rf"^(PASSED|FAILED|ERROR|SKIPPED) test_suite\.py::{cls}::(\w+)", out, re.M)}


@pytest.mark.docker
def test_a_driver_targeting_1_0_passes_the_later_rules_with_warnings(levels_run):
    result, recorded = levels_run
    out = result.stdout
    assert _outcomes(out, "TestAtFirstLevel") == {test: "PASSED" for test in [*BROKEN_AT_1_0, *KEPT]}, out[-6000:]
    conformance = [w for w in recorded if w["category"] == "ConformanceWarning"]
    by_test = {w["test"].rpartition("::")[2]: w["message"] for w in conformance}
    assert all("::TestAtFirstLevel::" in w["test"] for w in conformance), conformance
    assert sorted(by_test) == sorted(BROKEN_AT_1_0) and len(conformance) == len(BROKEN_AT_1_0), conformance
    for test, rule in BROKEN_AT_1_0.items():
        message = by_test[test]
        assert rule in message and "plugin API 1.1" in message and 'api_level = "1.1"' in message, message
        assert "TestAtFirstLevel targets 1.0" in message, message
    # What broke, as the driver's author reads it in pytest's warnings summary.
    assert "dockers3:" in by_test["test_training_job_arn_is_an_arn_or_absent"]
    assert "application/octet-stream" in by_test["test_a_channel_given_no_content_type_has_none"]
    assert "ConformanceWarning: conformance rule of plugin API 1.1 broken" in out, out[-6000:]


@pytest.mark.docker
def test_the_same_driver_targeting_the_current_level_fails_exactly_those_rules(levels_run):
    result, _ = levels_run
    out = result.stdout
    assert result.returncode == 1, out[-6000:]
    expected = {**{test: "FAILED" for test in BROKEN_AT_1_0}, **{test: "PASSED" for test in KEPT}}
    assert _outcomes(out, "TestAtCurrentLevel") == expected, out[-6000:]


# -- the level machinery, in-process ------------------------------------------------------------


def test_the_rules_after_1_0_are_tagged_with_their_level():
    assert {test: rule.level for test, rule in RULES.items()} == {**{test: "1.1" for test in BROKEN_AT_1_0}, **LATER}
    for test, text in BROKEN_AT_1_0.items():
        assert RULES[test].text.startswith(text) and RULES[test].test == test
        assert hasattr(getattr(DriverConformance, test), "rule")


def test_a_class_says_nothing_and_targets_1_0():
    class TestDriver(DriverConformance):
        pass

    assert TestDriver.api_level == "1.0"


@pytest.mark.parametrize("level", ["1.7", "2.0", "0.9", "1", 1.1, "latest"])
def test_a_level_this_fahr_does_not_have_is_refused_when_the_class_is_defined(level):
    with pytest.raises(TypeError, match=r"TestDriver\.api_level"):
        class TestDriver(DriverConformance):
            api_level = level


def test_every_level_up_to_the_current_one_is_accepted():
    major, minor = map(int, fahr_core.PLUGIN_API_VERSION.split("."))
    for level in (f"{major}.{n}" for n in range(minor + 1)):
        check_level(level, "TestDriver")


class _Rules:
    @since("1.2", "the example rule")
    def test_example(self, ok):
        assert ok, "it broke\nmore detail"

    @since("1.2", "the skipping rule")
    def test_skips(self):
        pytest.skip("not implemented")


def test_a_later_rule_broken_warns_below_its_level_and_fails_at_it():
    below, at = _Rules(), _Rules()
    below.api_level, at.api_level = "1.1", "1.2"
    with pytest.warns(ConformanceWarning) as caught:
        below.test_example(False)
    message = str(caught[0].message)
    assert "the example rule" in message and "plugin API 1.2" in message and "(it broke)" in message
    assert 'api_level = "1.2" or higher' in message and "_Rules targets 1.1" in message
    with pytest.raises(AssertionError, match="it broke"), warnings.catch_warnings():
        warnings.simplefilter("error")
        at.test_example(False)
    with warnings.catch_warnings():  # kept: no warning at any level
        warnings.simplefilter("error")
        below.test_example(True)
        at.test_example(True)
    with pytest.raises(pytest.skip.Exception):  # a skip stays a skip
        below.test_skips()


def test_the_changelog_lists_every_rule_under_its_level():
    text = (REPO / "CHANGELOG.md").read_text()
    for rule in RULES.values():
        heading = f"\n### Plugin API {rule.level}"
        assert heading in text, f"CHANGELOG.md has no section {heading.strip()!r}"
        section = re.split(r"\n##", text.partition(heading)[2], maxsplit=1)[0]
        assert f"`{rule.test}`" in section, f"CHANGELOG.md's section of plugin API {rule.level} lacks {rule.test}"
