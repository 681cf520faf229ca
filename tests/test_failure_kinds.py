"""Every ended job says why it did not complete (plugin API 1.6, ``failure_kind``): on the local
driver a host killed past its ``memory`` limit is ``out_of_memory`` and its failure line names the
limit; a script that fails is ``user``; ``fahr jobs`` shows the kind, ``--json`` carries it; the
``memory`` and ``cpus`` keys refuse a bad value with one line.

The end-to-end cases share one project and one image (module-scoped): the real ``fahr`` console
script, the real local driver, real containers on a real Docker engine.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import one_line_error, remove_local_jobs, run_fahr
from fahr_core import report
from fahr_core.drivers.local import lifecycle, records
from fahr_core.values import FAILED, STOPPED, JobHandle, JobResult

TAG = "i19failkinds/train"

# `mode=oom` keeps 16 MiB pieces written (so that their pages are really used) until it is killed;
# `mode=fail` exits 3; anything else completes.
SCRIPT = textwrap.dedent("""\
    import json, sys

    hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
    mode = hp.get("mode", "")
    print("mode", mode, flush=True)
    if mode == "oom":
        kept = []
        for i in range(64):
            kept.append(b"\\x01" * (16 * 1024 * 1024))
            print("allocated", 16 * (i + 1), "MiB", flush=True)
    elif mode == "fail":
        sys.exit(3)
""")


# -- without Docker --------------------------------------------------------------------------------


def test_the_failure_line_names_the_kind():
    job = JobHandle(driver="local", job_name="j-1", model_tag="a/b")
    with pytest.raises(Exception) as caught:
        report.ended(JobResult(job=job, status=FAILED, failure_reason="OutOfMemoryError: past 64.0 MiB",
                               failure_kind="out_of_memory", training_seconds=2.0), session=None)
    assert str(caught.value) == "job j-1 failed (out_of_memory) in 2.0 s: OutOfMemoryError: past 64.0 MiB"
    # A driver before plugin API 1.6 reports no kind: the line is as it was.
    with pytest.raises(Exception) as caught:
        report.ended(JobResult(job=job, status=STOPPED, failure_reason="stopped"), session=None)
    assert str(caught.value) == "job j-1 stopped: stopped"


def test_a_record_of_before_the_kinds_reads_as_the_job_s_own_doing():
    record = {"job_name": "j-1", "model_tag": "a/b", "status": FAILED, "failure_reason": "AlgorithmError: exit code 1"}
    assert records._failure_kind(record) == "user"
    assert records._failure_kind({**record, "failure_kind": "platform"}) == "platform"
    assert records._failure_kind({**record, "failure_kind": "nonsense"}) == "user"
    assert records._failure_kind({**record, "status": "Completed", "failure_kind": "user"}) == ""
    assert records._failure_kind({**record, "status": "InProgress"}) == ""
    # A retried fit's attempt (fit --retry) names the first job in its record; the listing says so.
    info = records._info(Path("/nowhere/j-2"), {**record, "job_name": "j-2", "attempt_of": "j-1",
                                                  "failure_kind": "capacity"})
    assert info.attempt_of == "j-1" and info.failure_kind == "capacity"


def test_memory_and_cpus_are_checked():
    assert lifecycle.memory_problem("") is None and lifecycle.memory_problem("64m") is None
    assert lifecycle.memory_limit("64m") == 64 * 1024**2 and lifecycle.memory_limit("") == 0
    assert lifecycle.memory_limit("2GiB") == 2 * 1024**3
    assert "is not a size" in lifecycle.memory_problem("lots")
    assert "smallest memory limit" in lifecycle.memory_problem("1m")
    assert lifecycle.cpus_problem(0) is None and lifecycle.cpus_problem(0.5) is None
    assert "is not a number of CPUs" in lifecycle.cpus_problem(-1)
    assert "is not a number of CPUs" in lifecycle.cpus_problem(10_000)


@pytest.mark.parametrize("key, value, says", [("memory", "lots", "is not a size"),
                                              ("memory", "1k", "smallest memory limit"),
                                              ("memory", "9999999999999G", "largest memory limit"),
                                              ("cpus", "100000", "is not a number of CPUs")])
def test_a_bad_limit_is_one_line_and_exit_2(tmp_path, key, value, says):
    project = tmp_path / "i19failkinds-bad"
    project.mkdir()
    (project / "train.py").write_text("print('never')\n")
    proc = run_fahr("fit", project / "train.py", f"--config.{key}={value}",
                    env={"FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs")}, cwd=tmp_path)
    line = one_line_error(proc, 2)
    assert line.startswith(f"fahr error: config.{key}=") and says in line, line
    assert not (tmp_path / "jobs").exists()  # refused before anything was built or launched


# -- end to end: the real local driver ---------------------------------------------------------------


@pytest.fixture(scope="module")
def fits(docker_engine, tmp_path_factory):
    """One project, one image; a job killed past a 64 MiB limit and a job whose script fails."""
    root = tmp_path_factory.mktemp("failkinds")
    project = root / "i19failkinds"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    jobs = root / "jobs"
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(jobs)}
    try:
        oom = run_fahr("fit", "i19failkinds/train.py", "--hp", "mode=oom", "--config.memory=64m",
                       "--config.cpus=0.5", env=env, cwd=root)
        fail = run_fahr("fit", "i19failkinds/train.py", "--hp", "mode=fail", env=env, cwd=root)
        listed = run_fahr("jobs", "--json", env=env, cwd=root, check=0)
        table = run_fahr("jobs", env=env, cwd=root, check=0)
        yield SimpleNamespace(root=root, jobs=jobs, env=env, oom=oom, fail=fail,
                              listed={job["hyperparameters"]["mode"]: job for job in json.loads(listed.stdout)},
                              table=table.stdout)
    finally:
        remove_local_jobs(jobs, docker_engine, TAG)


@pytest.mark.docker
def test_a_host_past_its_memory_limit_is_out_of_memory_and_the_line_names_the_limit(fits):
    assert fits.oom.returncode == 1, fits.oom.stderr
    [line] = [line for line in fits.oom.stderr.splitlines() if line.startswith("fahr error:")]
    assert " failed (out_of_memory) in " in line, line
    assert "OutOfMemoryError: the host used more than its memory limit of 64.0 MiB and was killed (exit code 137)" in line
    job = fits.listed["oom"]
    assert job["status"] == "Failed" and job["failure_kind"] == "out_of_memory"
    [record] = [json.loads(p.read_text()) for p in fits.jobs.glob("*/job.json")
                if json.loads(p.read_text())["job_name"] == job["job_name"]]
    assert record["memory"] == 64 * 1024**2 and record["cpus"] == 0.5 and record["failure_kind"] == "out_of_memory"


@pytest.mark.docker
def test_a_script_that_fails_is_the_user_s(fits):
    assert fits.fail.returncode == 1, fits.fail.stderr
    [line] = [line for line in fits.fail.stderr.splitlines() if line.startswith("fahr error:")]
    assert " failed (user) in " in line and "AlgorithmError: exit code 3" in line, line
    assert fits.listed["fail"]["failure_kind"] == "user"


@pytest.mark.docker
def test_fahr_jobs_shows_the_kind_in_its_status(fits):
    rows = {line.split()[0]: line for line in fits.table.splitlines()[1:]}
    assert "Failed (out_of_memory)" in rows[fits.listed["oom"]["job_name"]]
    assert "Failed (user)" in rows[fits.listed["fail"]["job_name"]]


def test_retry_needs_a_followed_job_and_a_small_count(tmp_path):
    project = tmp_path / "i19failkinds-retry"
    project.mkdir()
    (project / "train.py").write_text("print('never')\n")
    proc = run_fahr("fit", project / "train.py", "--retry", "2", "--detach",
                    env={"FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs")}, cwd=tmp_path)
    line = one_line_error(proc, 2)
    assert "--retry relaunches a job fahr follows to its end" in line, line
    assert not (tmp_path / "jobs").exists()
    from fahr_core import api
    from fahr_core.errors import UsageError

    for bad in (-1, 21, True, "2"):
        with pytest.raises(UsageError, match="fit\\(\\): retry must be a whole number from 0 to 20"):
            api.fit(project / "train.py", retry=bad)
    proc = run_fahr("sweep", project / "train.py", "--hp", "x=1,2", "--retry", "1", "--detach",
                    env={"FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs")}, cwd=tmp_path)
    line = one_line_error(proc, 2)
    assert "--retry relaunches the jobs a following fahr sees fail" in line, line
    assert not (tmp_path / "jobs").exists()
    with pytest.raises(UsageError, match="sweep\\(\\): retry must be a whole number from 0 to 20"):
        api.sweep(project / "train.py", hyperparameters={"x": [1, 2]}, retry=21)



def test_the_retry_loop_relaunches_only_what_a_retry_can_help(monkeypatch):
    """The core's loop with a fake driver: capacity, then platform, then success; each attempt
    linked to the first, counting the capacity failures; a user failure ends it at once."""
    from fahr_core import api
    from fahr_core.errors import JobFailed, PluginError
    from fahr_core.values import COMPLETED

    class Session:
        driver, project_dir, overrides = "fake", None, {}

        def call(self, hook, **kwargs):  # no list_jobs: the jobs keep the fields the results gave
            raise PluginError("no list_jobs")

    def run(kinds, retry):
        ends, launched = iter(kinds), []

        def launch(session, steps, image, sweep="", attempt_of="", capacity_failures=0):
            launched.append((attempt_of, capacity_failures))
            return JobHandle(driver="fake", job_name=f"j-{len(launched) + 1}", model_tag="a/b")

        def follow(session, handle, artifact=None, **told):  # told: notify, attempt_of (docs/notifications.md)
            kind = next(ends)
            if kind:
                raise JobFailed(f"job {handle.job_name} failed ({kind})",
                                result=JobResult(job=handle, status=FAILED, failure_kind=kind))
            return JobResult(job=handle, status=COMPLETED)

        monkeypatch.setattr(api, "_launch", launch)
        monkeypatch.setattr(api, "_follow", follow)
        steps = SimpleNamespace(artifact=None, hyperparameters={}, metric_definitions=(), notify="")
        first = JobHandle(driver="fake", job_name="j-1", model_tag="a/b")
        job = api.Job._of(Session(), "j-1", "a/b")
        job, handle = api._follow_retrying(Session(), steps, None, job, first, retry, False)
        return job, handle, launched

    job, handle, launched = run(["capacity", "platform", "interrupted", ""], retry=3)
    assert launched == [("j-1", 1), ("j-1", 1), ("j-1", 1)] and handle.job_name == "j-4" and job.status == COMPLETED
    for kind in ("user", "out_of_memory", "timeout"):
        with pytest.raises(JobFailed) as caught:
            run([kind], retry=3)
        assert caught.value.job.failure_kind == kind
    with pytest.raises(JobFailed) as caught:  # retries used up: the last attempt's failure
        run(["capacity", "capacity"], retry=1)
    assert caught.value.job.name == "j-2" and caught.value.job.failure_kind == "capacity"


def test_a_sweep_retries_a_point_whose_job_failed_for_a_retryable_kind():
    """``sweep --retry``: the runner launches a point again when its job failed interrupted,
    capacity or platform, linked to the point's first job and counting its capacity failures;
    a user failure, or retries used up, leaves the point Failed. A fake session, real runner."""
    from fahr_core import sweeps
    from fahr_core.values import COMPLETED

    # Point -> the kinds its attempts end with ('' completes).
    ends = {"a": ["capacity", "platform", ""], "b": ["user"], "c": ["interrupted"] * 3}
    launched: list[tuple[str, str, int]] = []

    class Session:
        driver = "fake"
        _trackers = ()  # no tracker to tell

        def call(self, hook, job):
            assert hook == "wait"
            point, attempt = job.job_name.rsplit("-", 1)
            kind = ends[point][int(attempt) - 1]
            return JobResult(job=job, status=FAILED if kind else COMPLETED, failure_kind=kind,
                             failure_reason=f"{kind}: said by the fake" if kind else "")

    def launch(point, index, attempt_of="", capacity_failures=0):
        name = point["p"]
        attempt = 1 + sum(1 for p, _, _ in launched if p == name)
        launched.append((name, attempt_of, capacity_failures))
        return None, JobHandle(driver="fake", job_name=f"{name}-{attempt}", model_tag="a/b")

    entries = [sweeps.Entry(point={"p": p}) for p in ends]
    sweeps.Runner(Session(), launch, entries, parallel=2, objective=None, show=lambda entries: None, retry=2).run()
    assert [(e.status, e.handle.job_name, e.attempts) for e in entries] == [
        (COMPLETED, "a-3", 3), (FAILED, "b-1", 1), (FAILED, "c-3", 3)]
    assert sorted(launched) == sorted([("a", "", 0), ("a", "a-1", 1), ("a", "a-1", 1), ("b", "", 0),
                                       ("c", "", 0), ("c", "c-1", 0), ("c", "c-1", 0)])
    assert entries[2].failure  # the last attempt's failure line is the point's
    # retry=1: "a" fails for good at its platform failure, "c" at its second interruption.
    launched.clear()
    entries = [sweeps.Entry(point={"p": p}) for p in ends]
    sweeps.Runner(Session(), launch, entries, parallel=3, objective=None, show=lambda entries: None, retry=1).run()
    assert [(e.status, e.handle.job_name) for e in entries] == [(FAILED, "a-2"), (FAILED, "b-1"), (FAILED, "c-2")]
