"""``JobsContract``: the optional hooks ``list_jobs`` and ``logs`` (skipped for a driver that
lacks them)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from fahr_core.testing.fixtures import MODEL_TAG, OTHER_FOLDER
from fahr_core.testing.harness import _show
from fahr_core.testing.levels import since


class JobsContract:
    """The optional hooks ``list_jobs`` and ``logs`` (skipped for a driver that lacks them)."""

    @staticmethod
    def _list(driver_session, **query):
        from fahr_core.values import JobQuery

        with driver_session.session() as session:
            infos = session.hook.list_jobs(query=JobQuery(**query), config=session.config)
        if infos is None:
            pytest.skip(f"driver {driver_session.driver!r} does not implement list_jobs")
        return list(infos)

    def test_the_suite_s_jobs_are_listed_newest_first(self, driver_session, trained, failed):
        from fahr_core.values import COMPLETED, FAILED

        infos = self._list(driver_session, model_tag=MODEL_TAG)
        by_name = {info.job_name: info for info in infos}
        assert trained["job"] in by_name and failed["job"] in by_name, \
            f"list_jobs({MODEL_TAG!r}) lacks the suite's jobs {trained['job']}, {failed['job']}: {sorted(by_name)}"
        assert all(info.model_tag == MODEL_TAG for info in infos), "list_jobs(model_tag=…) gave another tag's jobs"
        created = [info.created for info in infos]
        assert None not in created and created == sorted(created, reverse=True), \
            f"list_jobs is not newest first: {[(i.job_name, i.created) for i in infos]}"
        assert by_name[trained["job"]].status == COMPLETED and by_name[trained["job"]].model_artifact
        assert by_name[failed["job"]].status == FAILED and failed["token"] in by_name[failed["job"]].failure_reason
        failures = self._list(driver_session, model_tag=MODEL_TAG, status=FAILED)
        assert failed["job"] in {i.job_name for i in failures} and all(i.status == FAILED for i in failures)
        assert [i.job_name for i in self._list(driver_session, model_tag=MODEL_TAG, limit=1)] == [infos[0].job_name]

    @since("1.4", "list_jobs reports the project folder a job was launched from (JobInfo.project) and "
                  "filters by it (JobQuery.project)")
    def test_jobs_know_the_project_they_were_built_from(self, driver_session, trained, failed, model_script,
                                                         workspace):
        from fahr_core.provenance import project_folder

        project = project_folder(Path(model_script).parent)
        infos = {info.job_name: info for info in self._list(driver_session, model_tag=MODEL_TAG)}
        assert infos[trained["job"]].project == project, \
            f"list_jobs reports job {trained['job']} built from {infos[trained['job']].project!r}, not {project!r}"
        ours = self._list(driver_session, model_tag=MODEL_TAG, project=project)
        assert {trained["job"], failed["job"]} <= {i.job_name for i in ours}, \
            f"list_jobs(project={project!r}) lacks the jobs launched from it: {[i.job_name for i in ours]}"
        assert all(i.project == project for i in ours), "list_jobs(project=…) gave another folder's jobs"
        elsewhere = self._list(driver_session, model_tag=MODEL_TAG, project=project_folder(workspace / OTHER_FOLDER))
        assert not elsewhere, f"list_jobs(project=…) of a folder none of them came from: {[i.job_name for i in elsewhere]}"

    @since("1.6", "list_jobs reports why an ended job did not complete (JobInfo.failure_kind 'user' for a "
                  "script that failed, '' for a completed job)")
    def test_jobs_know_their_failure_kind(self, driver_session, trained, failed):
        by_name = {info.job_name: info for info in self._list(driver_session, model_tag=MODEL_TAG)}
        assert by_name[failed["job"]].failure_kind == "user", by_name[failed["job"]]
        assert by_name[trained["job"]].failure_kind == "", by_name[trained["job"]]

    @since("1.5", "list_jobs reports the hyperparameters a job was launched with (JobInfo.hyperparameters)")
    def test_jobs_know_their_hyperparameters(self, driver_session, trained):
        # `fahr jobs` shows the ones that differ between jobs; a sweep compares jobs by them.
        infos = {info.job_name: info for info in self._list(driver_session, model_tag=MODEL_TAG)}
        reported = dict(getattr(infos[trained["job"]], "hyperparameters", None) or {})
        assert reported == trained["hyperparameters"], \
            f"list_jobs reports job {trained['job']}'s hyperparameters as {reported!r}, not {trained['hyperparameters']!r}"

    @since("1.5", "list_jobs reports the sweep a job was launched in (JobInfo.sweep) and filters by it "
                  "(JobQuery.sweep)")
    def test_jobs_know_their_sweep(self, driver_session, fahr, model_script, workspace):
        # `fahr sweep --resume`, `fahr jobs --sweep` and `fahr stop --sweep` find a sweep's jobs so.
        result = fahr("sweep", model_script, "--hp", "mode=ok,empty", "--hp", f"token={uuid.uuid4().hex}",
                      "--parallel", "2", "--json", env={"XDG_STATE_HOME": str(workspace / "sweeps")})
        assert result.returncode == 0, _show(result)
        swept = json.loads(result.stdout)
        names = {row["job"] for row in swept["leaderboard"]}
        infos = self._list(driver_session, sweep=swept["sweep"])
        assert {i.job_name for i in infos} == names, \
            f"list_jobs(sweep={swept['sweep']!r}) gave {sorted(i.job_name for i in infos)}, not the sweep's {sorted(names)}"
        assert all(getattr(i, "sweep", "") == swept["sweep"] for i in infos), \
            f"list_jobs reports the sweep of {swept['sweep']}'s jobs as {[getattr(i, 'sweep', '') for i in infos]}"
        none = self._list(driver_session, sweep="sw-20000101-000000-0000")
        assert not none, f"list_jobs(sweep=…) of a sweep that never ran gave {[i.job_name for i in none]}"

    def test_the_logs_of_a_finished_job_hold_its_lines(self, driver_session, trained):
        from fahr_core.values import JobHandle

        with driver_session.session() as session:
            job = JobHandle(driver=driver_session.driver, job_name=trained["job"], model_tag="")
            lines = session.hook.logs(job=job, config=session.config, follow=False)
            if lines is None:
                pytest.skip(f"driver {driver_session.driver!r} does not implement logs")
            lines = list(lines)
        texts = [line.text for line in lines]
        assert "conformance model: done" in texts, f"logs({trained['job']}) lacks the model's last line: {texts[-20:]}"
        assert all(re.fullmatch(r"algo-[1-9][0-9]*", line.host) for line in lines)
