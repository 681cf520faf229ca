"""``RunContract``: a job runs as the SageMaker container contract says, and ends as SageMaker's
would (launch, logs, what the code receives, failure, output data, detach and wait)."""

from __future__ import annotations

import json
import re

from fahr_core.names import JOB_NAME, JOB_NAME_MAX
from fahr_core.testing.conformance_model import ENV_NAME, SECRET_NAME, long_failure_reason
from fahr_core.testing.fixtures import LINGER_SECONDS, MODEL_TAG, _tar_members
from fahr_core.testing.harness import _job_name, _show
from fahr_core.testing.levels import since

#: The least time between a line's arrival and fahr's exit that counts as "streamed live".
LIVE_MARGIN_SECONDS = 4
#: SageMaker's FailureReason is the first 1024 characters of /opt/ml/output/failure.
FAILURE_REASON_MAX = 1024


class RunContract:
    """A job runs as the SageMaker container contract says, and ends as SageMaker's would."""

    def test_the_logs_are_streamed(self, trained):
        assert "conformance model: mode=ok" in trained["result"].stdout
        assert "conformance model: done" in trained["result"].stdout

    def test_the_logs_arrive_while_the_job_runs(self, trained):
        result = trained["result"]
        seen = result.arrival("conformance model: lingering")
        assert seen is not None, "the model's line never reached fahr's stdout\n" + _show(result)
        # The model waits LINGER_SECONDS after that line: a driver that prints the logs only once
        # the job has ended shows it a fraction of a second before fahr exits.
        assert result.ended - seen >= LIVE_MARGIN_SECONDS, (
            f"the model's line reached fahr's stdout only {result.ended - seen:.1f} s before fahr exited, "
            f"though the model went on for {LINGER_SECONDS} s after it: the logs are not streamed live")

    def test_hyperparameters_reach_the_code_as_strings(self, trained):
        hyperparameters = trained["report"]["hyperparameters"]
        assert hyperparameters == trained["hyperparameters"]

    def test_channel_data_reaches_the_code(self, trained, channel):
        assert trained["report"]["channels"] == {"train": channel}

    def test_the_env_option_reaches_the_code(self, trained):
        seen = trained["report"]["environment"][ENV_NAME]
        assert seen == trained["env_value"], f"the job did not see --env {ENV_NAME}=…: it saw {seen!r}"

    @since("1.4", "a --secret reaches the job's process, and its value is in nothing fahr shows of the job "
                  "(a driver whose check_run does not take secrets has it refused before the build)")
    def test_a_secret_reaches_the_code_and_nothing_fahr_shows(self, fahr, model_script, workspace, fetch_location):
        import hashlib
        import uuid

        token = uuid.uuid4().hex
        value = f"conformance secret {token}"
        result = fahr("fit", model_script, "--hp", "mode=ok", "--hp", f"token={token}", "--secret", SECRET_NAME,
                      env={SECRET_NAME: value})
        if result.returncode == 2 and "cannot give a job secrets" in result.stderr:
            # A driver may not take secrets (its check_run has no `secrets`): fahr refuses them in
            # one line before anything is built, rather than launching a job without them.
            assert value not in result.stdout + result.stderr and "Traceback" not in result.stderr, _show(result)
            return
        assert result.returncode == 0, _show(result)
        job = _job_name(result)
        target = workspace / "fetched-secret"
        fetched = self.fetch(fahr, fetch_location, target, job)
        assert fetched.returncode == 0, _show(fetched)
        report = json.loads((target / "report.json").read_text())
        assert report["secret_sha256"] == hashlib.sha256(value.encode()).hexdigest(), (
            f"the job did not get --secret {SECRET_NAME} (JobSpec.secrets) in its environment")
        for shown in (result, fetched, fahr("jobs", "--json"), fahr("logs", job)):
            assert value not in shown.stdout + shown.stderr, (
                f"the value of --secret {SECRET_NAME} is shown by 'fahr {' '.join(shown.args[1:3])}'\n" + _show(shown))

    def test_the_job_finds_its_resource_and_input_config(self, trained):
        resource, inputs = trained["report"]["resourceconfig"], trained["report"]["inputdataconfig"]
        assert isinstance(resource, dict), "no readable /opt/ml/input/config/resourceconfig.json"
        assert resource.get("current_host") in resource.get("hosts", []), resource
        assert isinstance(inputs, dict), "no readable /opt/ml/input/config/inputdataconfig.json"
        assert sorted(inputs) == ["train"], inputs
        assert inputs["train"].get("TrainingInputMode"), inputs

    def test_the_job_sees_its_environment_and_a_valid_name(self, trained, execution_environment):
        env = trained["report"]["environment"]
        assert env["FAHR_EXECUTION_ENVIRONMENT"] == execution_environment
        assert env["TRAINING_JOB_NAME"] == trained["job"]
        assert JOB_NAME.match(trained["job"]) and len(trained["job"]) <= JOB_NAME_MAX

    @since("1.1", "TRAINING_JOB_ARN is the job's SageMaker ARN, or not set")
    def test_training_job_arn_is_an_arn_or_absent(self, trained):
        # SageMaker's variable holds the job's ARN, which a script may parse; a backend without
        # ARNs leaves it unset rather than inventing one.
        arn = trained["report"]["environment"].get("TRAINING_JOB_ARN")
        assert arn is None or re.fullmatch(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:training-job/"
                                           + re.escape(trained["job"]), arn, re.IGNORECASE), (
            f"TRAINING_JOB_ARN is {arn!r}: not the job's ARN (leave it unset when there is none)")

    @since("1.1", "a channel given no content type has no ContentType in inputdataconfig.json")
    def test_a_channel_given_no_content_type_has_none(self, trained):
        # As on SageMaker, which writes the key only for a channel given one.
        channel = trained["report"]["inputdataconfig"]["train"]
        assert "ContentType" not in channel, (
            f"inputdataconfig.json gives the channel 'train' the ContentType {channel['ContentType']!r}, "
            "though it was given none")

    def test_a_failing_model_fails_with_its_failure_reason(self, fahr, failed, workspace, fetch_location):
        result, token = failed["result"], failed["token"]
        assert f"ConformanceError: {token}" in result.stderr, _show(result)
        target = workspace / "fetched-failed"
        fetched = self.fetch(fahr, fetch_location, target, failed["job"])
        assert fetched.returncode != 0, "a failed job must have no model to fetch\n" + _show(fetched)
        assert not target.exists() or not any(target.iterdir())

    def test_the_failure_reason_is_cut_to_1024_characters(self, failed, driver_session):
        result = driver_session.wait(failed["job"])
        full = long_failure_reason(failed["token"])
        assert result.status == "Failed", result
        assert result.failure_reason, "the JobResult of a failed job has no failure_reason"
        assert len(result.failure_reason) <= FAILURE_REASON_MAX, (
            f"failure_reason is {len(result.failure_reason)} characters; SageMaker keeps the first "
            f"{FAILURE_REASON_MAX} of /opt/ml/output/failure")
        assert full.startswith(result.failure_reason) and len(result.failure_reason) >= 100, result.failure_reason

    @since("1.6", "a job whose script failed is the user's (JobResult.failure_kind 'user'); a completed job "
                  "has no failure kind")
    def test_a_failed_script_is_the_user_s(self, failed, trained, driver_session):
        from fahr_core.values import USER

        result = driver_session.wait(failed["job"])
        assert result.status == "Failed", result
        assert result.failure_kind == USER, (
            f"the job's script failed, so its failure kind is {USER!r}, not {result.failure_kind!r}: a retry "
            "(fahr fit --retry) would fail again")
        completed = driver_session.wait(trained["job"])
        assert completed.status == "Completed" and completed.failure_kind == "", completed

    def test_a_crash_without_failure_file_still_has_a_reason(self, fahr, model_script):
        result = fahr("fit", model_script, "--hp", "mode=crash")
        assert result.returncode == 1, _show(result)
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        assert "failed" in result.stderr and "no reason given" not in result.stderr, _show(result)
        assert last, _show(result)

    def test_the_job_writes_its_output_data_archive(self, trained, driver_session, read_artifact):
        result = driver_session.wait(trained["job"])
        assert result.status == "Completed", result
        assert result.output_artifact, "the JobResult names no output.tar.gz (output_artifact is empty)"
        members = _tar_members(read_artifact(result.output_artifact))
        assert members.get("notes.txt") == f"output data of {trained['token']}".encode(), sorted(members)

    def test_a_detached_job_can_be_waited_for(self, fahr, detached, workspace, fetch_location):
        waited = detached["waited"]
        assert waited.returncode == 0, _show(waited)
        target = workspace / "fetched-detached"
        fetched = self.fetch(fahr, fetch_location, target, detached["job"])
        assert fetched.returncode == 0, _show(fetched)
        assert json.loads((target / "report.json").read_text())["hyperparameters"]["token"] == detached["token"]

    def test_a_job_waited_for_by_name_knows_its_model_tag(self, detached):
        """``fahr wait JOB`` rebuilds the handle from the name alone: the driver fills in the tag,
        so the fetch command fahr prints names it (never ``fahr fetch ./model '' …``)."""
        waited = detached["waited"]
        assert waited.returncode == 0, _show(waited)
        fetch_lines = [line for line in waited.stderr.splitlines() if "fahr fetch " in line and "--job" in line]
        assert fetch_lines, _show(waited)
        assert all(f" {MODEL_TAG} " in f"{line} " for line in fetch_lines), _show(waited)
