"""A failed job says why in its first line: the failure line keeps the exception, leaves out fahr's
launcher frames and hints at the requirements file of a missing module; a script that cannot
compile is refused before any build; ``JobFailed`` carries its job; ``Job.stop()`` updates it.

The end-to-end cases share one project, one image and one failed job (module-scoped): the real
``fahr`` console script, the real local driver, a real Docker engine.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import one_line_error, run_fahr
from fahr_core import api, report
from fahr_core.errors import JobFailed
from fahr_core.image import LAUNCHER_PATH, dockerfile_text

MISSING = "pandas_not_installed_i17"

# One script, one image: `mode=sleep` runs until stopped, else it imports a module not installed.
SCRIPT = textwrap.dedent(f"""\
    import json, sys
    import time

    hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
    print("starting", hp.get("mode", "import"), file=sys.stderr, flush=True)  # the traceback's stream: in order
    if hp.get("mode") == "sleep":
        time.sleep(300)
    import {MISSING}
""")

# A traceback as Python 3.11 prints it for a script started by fahr's launcher.
TRACEBACK = f"""\
Traceback (most recent call last):
  File "/opt/fahr/launcher.py", line 95, in <module>
    main(sys.argv[1])
  File "/opt/fahr/launcher.py", line 91, in main
    runpy.run_path(artifact, run_name="__main__")
  File "<frozen runpy>", line 291, in run_path
  File "<frozen runpy>", line 98, in _run_module_code
  File "<frozen runpy>", line 88, in _run_code
  File "/opt/program/train.py", line 8, in <module>
    import {MISSING}
ModuleNotFoundError: No module named '{MISSING}'"""


# -- the failure line, without Docker -----------------------------------------------------------------


def test_launcher_frames_are_left_out_and_the_script_s_stay():
    kept = report.without_launcher_frames(TRACEBACK.splitlines())
    assert kept == ["Traceback (most recent call last):", '  File "/opt/program/train.py", line 8, in <module>',
                    f"    import {MISSING}", f"ModuleNotFoundError: No module named '{MISSING}'"]
    # The engine may interleave a line of stdout (the streams are read apart): it stays.
    mixed = TRACEBACK.splitlines()
    mixed.insert(1, "starting import")
    assert report.without_launcher_frames(mixed) == [kept[0], "starting import", *kept[1:]]
    # The images of fahr 0.2 ran the launcher as `python -c` ("<string>"): their frames go too.
    older = ["Traceback (most recent call last):", '  File "<string>", line 93, in <module>',
             '  File "<string>", line 89, in main', *TRACEBACK.splitlines()[5:]]
    assert report.without_launcher_frames(older) == kept
    # A '<string>' frame of the script's own exec, below its frames, is the script's: it stays.
    own = ["Traceback (most recent call last):", '  File "/opt/program/train.py", line 3, in <module>',
           '    exec("1/0")', '  File "<string>", line 1, in <module>', "ZeroDivisionError: division by zero"]
    assert report.without_launcher_frames(own) == own
    # An older Python's runpy is a file with source lines: they go with their frames.
    older = ["Traceback (most recent call last):", '  File "<string>", line 93, in <module>',
             '  File "/usr/local/lib/python3.10/runpy.py", line 289, in run_path',
             "    return _run_module_code(code, init_globals, run_name,",
             '  File "/opt/program/train.py", line 1, in <module>', "    1/0", "ZeroDivisionError: division by zero"]
    assert report.without_launcher_frames(older) == [older[0], *older[4:]]


def test_the_failure_line_is_cut_in_the_middle_keeping_the_last_line_whole():
    reason = ("AlgorithmError: exit code 1; last output:\n" + "\n".join(f"progress line {i} " + "x" * 60 for i in range(9))
              + f"\nModuleNotFoundError: No module named '{MISSING}'")
    line = report.failure_line(reason)
    assert len(line) <= report.FAILURE_LINE_MAX and "\n" not in line
    assert line.startswith("AlgorithmError: exit code 1; last output: progress line 0")
    assert line.endswith(f" … ModuleNotFoundError: No module named '{MISSING}'")
    # Short: whole, on one line.
    assert report.failure_line("boom\n  at step 2\n") == "boom at step 2"
    assert report.failure_line("  \n") == "no reason given"
    # A last line longer than the line itself: its start and its end stay.
    long = "ValueError: " + "".join(f"{i:04d}." for i in range(300))
    cut = report.failure_line("first\n" + long)
    assert len(cut) <= report.FAILURE_LINE_MAX and cut.startswith("ValueError: 0000.") and cut.endswith("0299.")


def test_the_missing_module_hint_names_the_requirements_file_the_image_was_built_from(tmp_path):
    reason = TRACEBACK
    project = tmp_path / "proj"
    project.mkdir()
    script = project / "train.py"
    script.write_text("import x\n")
    requirements, dockerfile = project / "requirements.txt", project / "Dockerfile"
    # No requirements file, the Dockerfile fahr wrote for none.
    dockerfile.write_text(dockerfile_text("train.py", "python:3.11-slim", False))
    hint = report.missing_module_hint(reason, script)
    assert hint.startswith(f" — '{MISSING}' is not installed in the job's image, and the project has no requirements file")
    assert f"write {requirements}" in hint and "--regenerate-dockerfile" in hint
    # A requirements file the Dockerfile (written before it) does not install.
    requirements.write_text("numpy\n")
    assert f"{dockerfile} was written before {requirements} existed" in report.missing_module_hint(reason, script)
    # The Dockerfile installs it.
    dockerfile.write_text(dockerfile_text("train.py", "python:3.11-slim", True))
    assert report.missing_module_hint(reason, script) == (
        f" — '{MISSING}' is not installed in the job's image: add its package to {requirements}, which the image "
        "installs, and fit again")
    # The user's own Dockerfile, beside the script or as the container.
    dockerfile.write_text("FROM python:3.11-slim\n")
    assert f"install it in {dockerfile}" in report.missing_module_hint(reason, script)
    assert f"install it in {dockerfile}" in report.missing_module_hint(reason, dockerfile)
    # Not this process's build: no file named, no guess.
    assert "the requirements.txt beside the training script" in report.missing_module_hint(reason, None)
    # A submodule's package is the top-level name; another error has no hint.
    assert "'sklearn' is not installed" in report.missing_module_hint(
        "ModuleNotFoundError: No module named 'sklearn.linear_model'", None)
    assert report.missing_module_hint("ValueError: no\n", script) == ""
    # A line that is no exception after it (stdout logged late) is looked past; another exception is not.
    assert report.missing_module_hint(f"ModuleNotFoundError: No module named '{MISSING}'\nthen more", script) != ""
    assert report.missing_module_hint(f"ModuleNotFoundError: No module named '{MISSING}'\nKeyError: 'x'", script) == ""


# -- end to end: the real local driver ------------------------------------------------------------------


@pytest.fixture(scope="module")
def failed(docker_engine, tmp_path_factory):
    """A project whose image installs its (empty) requirements.txt, and one CLI fit of it that fails
    with ModuleNotFoundError."""
    root = tmp_path_factory.mktemp("failline")
    project = root / "i17failline-deps"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    (project / "requirements.txt").write_text("# nothing needed yet\n")
    jobs = root / "jobs"
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(jobs)}
    proc = run_fahr("fit", "i17failline-deps/train.py", env=env, cwd=root)
    return SimpleNamespace(root=root, project=project, jobs=jobs, env=env, proc=proc)


@pytest.mark.docker
def test_a_missing_module_ends_the_one_error_line_with_a_hint(failed):
    proc = failed.proc
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fahr error:")]
    assert len(errors) == 1, proc.stderr
    [line] = errors
    requirements = failed.project.resolve() / "requirements.txt"
    assert line.endswith(f"ModuleNotFoundError: No module named '{MISSING}' — '{MISSING}' is not installed in the "
                         f"job's image: add its package to {requirements}, which the image installs, and fit again"), line
    assert "AlgorithmError: exit code 1" in line and f'File "train.py", line 8, in <module> import {MISSING}' in line
    assert "launcher.py" not in line and "<string>" not in line and "runpy" not in line
    [record] = [json.loads(p.read_text()) for p in failed.jobs.glob("*/job.json")]
    assert "launcher.py" not in record["failure_reason"] and "<string>" not in record["failure_reason"]
    assert record["failure_reason"].endswith(f"ModuleNotFoundError: No module named '{MISSING}'")
    # The whole traceback, as the job printed it, stays in its log.
    logs = run_fahr("logs", record["job_name"], env=failed.env, cwd=failed.root, check=0)
    # The image runs fahr's launcher as a file (its Dockerfile has no program on a line of its own).
    assert "Traceback (most recent call last):" in logs.stdout and f'File "{LAUNCHER_PATH}"' in logs.stdout
    assert f"ModuleNotFoundError: No module named '{MISSING}'" in logs.stdout


@pytest.mark.docker
def test_a_script_that_does_not_compile_builds_and_launches_nothing(docker_engine, failed):
    project = failed.root / "i17failline-syntax"
    project.mkdir()
    (project / "train.py").write_text("for epoch in range(3)\n    print(epoch)\n")
    for leftover in docker_engine.images.list(name="i17failline-syntax/train"):  # of a run that failed this
        docker_engine.images.remove(leftover.id, force=True)
    proc = run_fahr("fit", "i17failline-syntax/train.py", env=failed.env, cwd=failed.root)
    line = one_line_error(proc, 2)
    assert line.startswith("fahr error: i17failline-syntax/train.py:1: SyntaxError: expected ':'"), line
    assert docker_engine.images.list(name="i17failline-syntax/train") == []
    assert sorted(p.name for p in project.iterdir()) == ["train.py"]  # no Dockerfile written either
    assert not any(failed.jobs.glob("i17failline-syntax-*"))


@pytest.mark.docker
def test_job_failed_carries_the_job_as_it_ended(failed):
    with pytest.raises(JobFailed) as caught:
        api.fit(failed.project / "train.py", config={"output_path": str(failed.jobs)}, quiet=True)
    job = caught.value.job
    assert isinstance(job, api.Job) and job.status == "Failed" and job.ended is not None
    # Among its last lines: the engine orders the job's stdout against its stderr its own way, so
    # the script's "starting import" may come after the traceback.
    assert f"ModuleNotFoundError: No module named '{MISSING}'" in job.failure_reason.splitlines()[-3:]
    assert caught.value.result.status == "Failed" and caught.value.result.job.job_name == job.name
    assert f"ModuleNotFoundError: No module named '{MISSING}'" in list(job.logs())
    # Job.wait() of that job raises it again, carrying the same job.
    with pytest.raises(JobFailed) as again:
        job.wait()
    assert again.value.job is job and job.status == "Failed"


@pytest.mark.docker
def test_stop_leaves_the_job_s_status_up_to_date(failed):
    job = api.fit(failed.project / "train.py", config={"output_path": str(failed.jobs)},
                  hyperparameters={"mode": "sleep"}, wait=False, quiet=True)
    assert job.status == "InProgress"
    assert job.stop() is True
    assert job.status == "Stopped"  # the local driver's stop is done when it returns
    assert job.stop() is False and job.status == "Stopped"


def test_the_missing_module_hint_looks_past_a_line_of_stdout_logged_after_the_traceback(tmp_path):
    # The engine copies stdout and stderr separately: under load a line printed before the
    # import can reach the log after the traceback (seen on a 2-core machine running 7 jobs).
    script = tmp_path / "train.py"
    script.write_text("print('starting')\nimport x\n")
    reason = TRACEBACK + "\nstarting"
    assert report.missing_module_hint(reason, script).startswith(f" — '{MISSING}' is not installed")
    # Another exception after it is the job's own: no hint.
    assert report.missing_module_hint(TRACEBACK + "\nValueError: bad data", script) == ""
