"""A job's folder is untrusted too (issue 15): through the real `fahr` command, fahr reads and
writes a job's files only in the job's own folder, never through a link, regular files only
(fahr_core/jobfolder.py). Its records are private (0600, folders 0700: they hold the --env
values); what a fahr killed while saving left (GiB of partial archives) is tidied by the next;
an output_path fahr may not read is one line naming it.

The first part needs no Docker engine: finished job folders are written as the local driver
lays them out (as in test_exit_codes.py). The second runs real jobs, one image for the module.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import textwrap

import pytest

from conftest import run_fahr
from hostile import snapshot
from test_exit_codes import TAG, make_job, one_error_line

SECRET = "SECRET-OUTSIDE-THE-JOB"


def finished_job(jobs_dir, name="job-1", **fields):
    """A finished job as the driver leaves it, with its saved log."""
    job = make_job(jobs_dir, name, **fields)
    (job / "logs").mkdir()
    (job / "logs" / "algo-1.log").write_text("the job's own line\n")
    return job


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- reading: the saved logs, the records ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["logs a link", "log a link to a file", "job folder a link", "log a FIFO",
                                  "log a link to /dev/zero"])
def test_logs_and_wait_read_only_the_jobs_own_regular_files(jobs_dir, tmp_path, kind):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "algo-1.log").write_text(SECRET + "\n")
    job = finished_job(jobs_dir)
    log = job / "logs" / "algo-1.log"
    if kind == "logs a link":
        shutil.rmtree(job / "logs")
        (job / "logs").symlink_to(elsewhere)
    elif kind == "log a link to a file":
        log.unlink()
        log.symlink_to(elsewhere / "algo-1.log")
    elif kind == "job folder a link":
        shutil.rmtree(job / "logs")
        (job / "logs").symlink_to(elsewhere)  # not even reached: the job's folder is refused first
        job.rename(tmp_path / "job-1")
        job.symlink_to(tmp_path / "job-1")
    elif kind == "log a FIFO":  # today: `fahr wait` hangs for ever
        log.unlink()
        os.mkfifo(log)
    else:  # today: read until MemoryError, exit 4
        log.unlink()
        log.symlink_to("/dev/zero")
    refused = {"logs a link": job / "logs", "job folder a link": job}.get(kind, log)
    for command in ("wait", "logs"):
        proc = run_fahr(command, "job-1", timeout=60)
        line = one_error_line(proc)
        assert f"{refused} is " in line and "only in the job's own folder" in line, line
        assert SECRET not in proc.stdout


def test_a_job_folder_that_is_a_link_is_skipped_by_jobs_and_fetch(jobs_dir, tmp_path):
    finished_job(jobs_dir, "job-1", created=1.0)
    foreign = finished_job(tmp_path / "elsewhere", "job-2", created=2.0)  # newer: fetch by tag would take it
    (jobs_dir / "job-2").symlink_to(foreign)
    proc = run_fahr("jobs", "--json", check=0)
    assert [row["job_name"] for row in json.loads(proc.stdout)] == ["job-1"]
    [warning] = [line for line in proc.stderr.splitlines() if line.strip()]
    assert warning.startswith(f"fahr warning skipping {jobs_dir / 'job-2'}: it is a symbolic link"), warning
    run_fahr("fetch", tmp_path / "out", TAG, "--no-extract", check=0)
    assert (tmp_path / "out" / "model.tar.gz").read_bytes() == (jobs_dir / "job-1" / "output" / "model.tar.gz").read_bytes()
    line = one_error_line(run_fahr("fetch", tmp_path / "out2", TAG, "--job", "job-2"))
    assert f"{jobs_dir / 'job-2'} is a symbolic link" in line
    assert not (tmp_path / "out2").exists()


def test_a_lone_surrogate_in_a_record_is_one_skipped_job(jobs_dir):
    finished_job(jobs_dir, "good")
    odd = finished_job(jobs_dir, "odd", status="InProgress")  # its secondary status is shown: today exit 4
    text = (odd / "job.json").read_text()
    (odd / "job.json").write_text(text.replace('"status"', '"secondary_status": "\\ud800", "status"'))
    assert "\\ud800" in (odd / "job.json").read_text()
    proc = run_fahr("jobs", check=0)
    assert "good" in proc.stdout and "odd" not in proc.stdout
    [warning] = [line for line in proc.stderr.splitlines() if line.strip()]
    assert warning.startswith(f"fahr warning skipping {odd}: its job.json holds an escaped lone surrogate"), warning
    line = one_error_line(run_fahr("wait", "odd"))
    assert "lone surrogate" in line


# -- an output_path fahr may not read (EACCES) --------------------------------------------------


def run_without_dac_override(*args, env=None):
    """`fahr` as root without the capabilities that let root read any folder: EACCES happens as
    it does to a user (a plain user cannot run this suite's Python, which lives under /root)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to drop CAP_DAC_OVERRIDE")
    from conftest import FAHR

    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("FAHR_DEBUG", None)
    full_env.pop("FAHR_TRACE_PLUGINS", None)
    return subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", str(FAHR), *map(str, args)],
                          capture_output=True, text=True, env=full_env, timeout=120)


FIT = ["fit", "PROJECT", "--config.checkpoint_path=JOBS/ck"]


@pytest.mark.parametrize("locked, cases", [
    ("a folder above it", [(["jobs"], 3), (["fetch", "OUT", TAG], 3), (["fetch", "OUT", TAG, "--job", "job-1"], 3),
                           (["wait", "job-1"], 3), (["logs", "job-1"], 3), (FIT, 2)]),
    ("the folder itself, not listable", [(["jobs"], 3), (["fetch", "OUT", TAG], 3)]),
])
def test_an_output_path_fahr_may_not_read_is_one_line_naming_it(tmp_path, monkeypatch, locked, cases):
    guard = tmp_path / "guard"
    jobs = guard / "jobs"
    finished_job(jobs, "job-1")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "train.py").write_text("print('hi')\n")
    monkeypatch.setenv("FAHR_LOCAL_OUTPUT_PATH", str(jobs))
    names = {"OUT": str(tmp_path / "out"), "PROJECT": str(tmp_path / "proj" / "train.py"), "JOBS": str(jobs)}
    if locked == "a folder above it":
        guard.chmod(0o000)
    else:
        jobs.chmod(0o300)
    try:
        for args, code in cases:
            args = [next((arg.replace(k, v) for k, v in names.items() if k in arg), arg) for arg in args]
            line = one_error_line(run_without_dac_override(*args), code)
            assert str(jobs) in line and "Permission denied" in line, (args, line)
    finally:
        guard.chmod(0o755)
        jobs.chmod(0o755)
    assert not (tmp_path / "out").exists()


# -- writing: real jobs --------------------------------------------------------------------------

SCRIPT = """
import os, time
with open("/opt/ml/model/model.json", "w") as handle:
    handle.write('{"w": 1}')
with open("/opt/ml/output/data/clues.txt", "w") as handle:
    handle.write("clues")
print("trained", flush=True)
time.sleep(int(os.environ.get("SLEEP", "0")))
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory, docker_engine):
    """The module's one model (tag i15jobdir/train), built by a first fit."""
    folder = tmp_path_factory.mktemp("i15") / "i15jobdir"
    folder.mkdir()
    (folder / "train.py").write_text(textwrap.dedent(SCRIPT))
    return folder / "train.py"


@pytest.fixture
def jobs(tmp_path, monkeypatch, docker_engine):
    """The job folders of a test; the containers of its jobs are removed at the end."""
    path = tmp_path / "jobs"
    monkeypatch.setenv("FAHR_LOCAL_OUTPUT_PATH", str(path))
    yield path
    for job in (path.iterdir() if path.is_dir() else ()):
        for container in docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job.name}"}):
            container.remove(force=True)


def detach(project, jobs, docker_engine, *flags, ended=True):
    """A detached job's folder; ``ended``: once its container has exited (not yet saved).

    Without a follower: the `fahr wait` or `fahr stop` of the test finishes the job, from the
    folder as the test leaves it."""
    run_fahr("fit", project, "--detach", "--config.follower=false", *flags, check=0)
    [job] = [p for p in jobs.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if ended:
        [container] = docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job.name}"})
        assert container.wait(timeout=120)["StatusCode"] == 0
    return job


@pytest.mark.docker
def test_a_jobs_folder_and_files_are_private(project, jobs, docker_engine):
    run_fahr("fit", project, "--env", "API_TOKEN=s3cr3t", check=0)
    [job] = list(jobs.iterdir())
    assert json.loads((job / "job.json").read_text())["environment"] == {"API_TOKEN": "s3cr3t"}
    assert mode(job) == 0o700
    for folder in ("output", "logs"):
        assert mode(job / folder) == 0o700, folder
    for name in ("job.json", "output/model.tar.gz", "output/output.tar.gz", "logs/algo-1.log"):
        assert mode(job / name) == 0o600, name


def link_in(job, link, victim):
    """Make ``link`` (``output``, ``logs`` or the job's folder itself) a link to the folder
    ``victim``: an empty one, or for the job's folder the job's real folder, moved there."""
    if link == "the job's folder":
        job.rename(victim)
        job.symlink_to(victim)
        return job
    victim.mkdir()
    (job / link).symlink_to(victim)
    return job / link


def unlink_in(job, link, victim):
    """Undo link_in: the job's folder as fahr made it, without the link."""
    if link == "the job's folder":
        job.unlink()
        victim.rename(job)
    else:
        (job / link).unlink()


@pytest.mark.docker
@pytest.mark.parametrize("link", ["output", "logs", "the job's folder"])
def test_wait_writes_nothing_through_a_link_and_finishes_once_it_is_gone(project, jobs, docker_engine, tmp_path, link):
    job = detach(project, jobs, docker_engine)
    victim = tmp_path / "victim"
    linked = link_in(job, link, victim)
    before = snapshot(victim)  # names, modes, contents and times: a job.json rewritten there fails this
    # --quiet: `wait` follows the job (and says `Training`) before it saves into the job's folder;
    # what is asserted is the one error line, and that nothing was written through the link.
    line = one_error_line(run_fahr("wait", job.name, "--quiet"))
    assert f"{linked} is a symbolic link" in line, line
    assert snapshot(victim) == before  # nothing saved, rewritten or tidied there
    if link != "the job's folder":
        assert "fahr wait" in line  # the containers keep everything: the command that finishes it
    unlink_in(job, link, victim)
    proc = run_fahr("wait", job.name, check=0)
    assert "trained" in proc.stdout
    assert json.loads((job / "job.json").read_text())["status"] == "Completed"
    assert (job / "output" / "model.tar.gz").is_file() and (job / "logs" / "algo-1.log").is_file()


@pytest.mark.docker
@pytest.mark.parametrize("link", ["output", "logs", "the job's folder"])
def test_stop_writes_nothing_through_a_link(project, jobs, docker_engine, tmp_path, link):
    job = detach(project, jobs, docker_engine, "--env", "SLEEP=600", "--config.stop_timeout=1", ended=False)
    victim = tmp_path / "victim"
    linked = link_in(job, link, victim)
    before = snapshot(victim)
    line = one_error_line(run_fahr("stop", job.name, "--config.stop_timeout=1"))
    assert f"{linked} is a symbolic link" in line, line
    assert snapshot(victim) == before
    unlink_in(job, link, victim)
    run_fahr("stop", job.name, "--config.stop_timeout=1", check=0)  # stops it, or finishes what was stopped
    assert json.loads((job / "job.json").read_text())["status"] == "Stopped"
    assert (job / "output" / "output.tar.gz").is_file() and (job / "logs" / "algo-1.log").is_file()


@pytest.mark.docker
def test_wait_tidies_what_a_killed_fahr_left_and_tightens_an_older_fahrs_modes(project, jobs, docker_engine):
    # As a fahr SIGKILLed while copying the checkpoints back or packing the model leaves the job:
    # InProgress, its containers exited, the partial files where they were being written.
    job = detach(project, jobs, docker_engine)
    (job / "output").mkdir()
    (job / "logs").mkdir()
    partials = [job / ".checkpoints.k3y_ab12.tar.partial", job / "output" / ".model.tar.gz.x9_ab12c.partial",
                job / "output" / ".output.tar.gz.abcd1234.partial", job / "logs" / ".algo-1.log.abcd1234.partial"]
    for partial in partials:
        partial.write_bytes(b"\0" * 1024 * 1024)
    for path, loose in [(job, 0o755), (job / "job.json", 0o644), (job / "output", 0o755), (job / "logs", 0o755)]:
        path.chmod(loose)  # an older fahr's
    run_fahr("wait", job.name, check=0)
    assert [p for p in partials if os.path.lexists(p)] == []
    assert sorted(os.listdir(job / "output")) == ["model.tar.gz", "output.tar.gz"]
    assert json.loads((job / "job.json").read_text())["status"] == "Completed"
    for path, private in [(job, 0o700), (job / "job.json", 0o600), (job / "output", 0o700), (job / "logs", 0o700)]:
        assert mode(path) == private, path
