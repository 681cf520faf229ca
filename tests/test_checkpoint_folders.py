"""The local driver's checkpoint folder rules, on the real filesystem (no engine): which folders
may be a checkpoint_path, which job holds one, and what tidying beside one may remove.
tests/test_checkpoints.py runs the same rules end to end."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from conftest import one_line_error, run_fahr
from hostile import counted_steps

from fahr_core import contract
from fahr_core.contract import CHECKPOINT_MARKER, MARKER_TEXT
from fahr_core.drivers import local
from fahr_core.errors import ConfigError


def config(tmp_path: Path, checkpoints) -> dict:
    return {"output_path": str(tmp_path / "jobs"), "checkpoint_path": str(checkpoints)}


def test_a_checkpoint_folder_inside_the_jobs_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs").mkdir()
    for inside in (tmp_path / "jobs" / "ckpt", tmp_path / "jobs" / "fake-job" / "output"):
        with pytest.raises(ConfigError, match=r"is inside the jobs' output_path \(.*/jobs\), where fahr keeps"):
            local._checkpoint_root(config(tmp_path, inside))
    (tmp_path / "alias").symlink_to(tmp_path / "jobs")  # the same folder by another name
    with pytest.raises(ConfigError, match="is inside the jobs' output_path"):
        local._checkpoint_root(config(tmp_path, tmp_path / "alias" / "ckpt"))
    with pytest.raises(ConfigError, match="is a folder holding the jobs' output_path"):
        local._checkpoint_root(config(tmp_path, tmp_path))
    assert local._checkpoint_root(config(tmp_path, tmp_path / "ckpt")) == tmp_path / "ckpt"  # beside it: fine


def record(jobs: Path, name: str, checkpoints: Path, **fields) -> Path:
    job_dir = jobs / name
    job_dir.mkdir(parents=True)
    (job_dir / "job.json").write_text(json.dumps({"job_name": name, "model_tag": "i15ckpt/train", "image": "img",
                                                  "status": "InProgress", "checkpoint_path": str(checkpoints),
                                                  **fields}))
    return job_dir


def test_a_folder_is_held_by_the_job_its_marker_names_until_that_job_has_ended(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / CHECKPOINT_MARKER).write_bytes(MARKER_TEXT)
    assert local._user_of(folder) is None  # a folder no job has taken (or an older fahr's)
    jobs = tmp_path / "jobs"
    running = record(jobs, "i15ckpt-train-1", folder)
    local._claim(folder, running)
    assert (folder / CHECKPOINT_MARKER).read_bytes().startswith(MARKER_TEXT)
    assert local._user_of(folder) == ("i15ckpt-train-1", running)
    with pytest.raises(ConfigError, match=r"config.checkpoint_path=x: job i15ckpt-train-1 is using that folder .*"
                                          r"fahr wait i15ckpt-train-1 --train-driver local "):
        local._check_not_in_use(folder, "config.checkpoint_path=x")
    # A lost fit's provisional Failed (fahr lost sight of the job): it may run still.
    record_path = running / "job.json"
    held = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**held, "status": "Failed", "unfinished": "follow"}))
    assert local._user_of(folder) is not None
    # A mark nothing holds any more never blocks: the job ended (without copying back, say), its
    # record is gone or unreadable, or it names another folder (a copy of the marker).
    for status in ("Completed", "Failed", "Stopped"):
        record_path.write_text(json.dumps({**held, "status": status}))
        assert local._user_of(folder) is None
    record_path.write_text(json.dumps({**held, "checkpoint_path": str(tmp_path / "other")}))
    assert local._user_of(folder) is None
    record_path.write_text("{not json")
    assert local._user_of(folder) is None
    record_path.unlink()
    assert local._user_of(folder) is None
    # The job's end takes its name out of the marker (another job's end leaves it).
    local._release(folder, tmp_path / "jobs" / "another")
    assert local._named(folder) == running
    local._release(folder, running)
    assert (folder / CHECKPOINT_MARKER).read_bytes() == MARKER_TEXT
    (folder / CHECKPOINT_MARKER).write_bytes(MARKER_TEXT + b'in use by the job in "relative/x"\n')
    assert local._user_of(folder) is None


def test_tidying_removes_only_what_a_copy_back_of_fahrs_left(tmp_path):
    # Beside a folder of the user's (a record's edited checkpoint_path): folders and files that
    # merely have the names of fahr's staging folders and spools are the user's.
    victim = tmp_path / "data"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine")
    foreign = [tmp_path / ".data.fahr-abcd1234", tmp_path / ".data.fahr-abcd1234-old"]
    for folder in foreign:
        folder.mkdir()
        (folder / "notes.txt").write_text("mine too")
    spool = tmp_path / ".data.abcd1234.tar.partial"
    spool.write_text("mine as well")
    local._tidy_staging(victim)
    assert all((folder / "notes.txt").read_text() == "mine too" for folder in foreign)
    assert spool.read_text() == "mine as well" and (victim / "notes.txt").read_text() == "mine"
    local._tidy_staging(tmp_path / "gone")  # a target that is missing: nothing of the user's is put there
    assert not (tmp_path / "gone").exists()

    # Beside fahr's own folder: the staging folder (marked, or empty: cut before the marker was
    # unpacked) goes; a folder of the user's with that name stays.
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / CHECKPOINT_MARKER).write_bytes(MARKER_TEXT)
    staging, empty, users = (tmp_path / f".ckpt.fahr-{n}" for n in ("aaaa1111", "bbbb2222", "cccc3333"))
    for folder in (staging, empty, users):
        folder.mkdir()
    (staging / CHECKPOINT_MARKER).write_bytes(MARKER_TEXT)
    (staging / "state.json").write_text("{}")
    (users / "notes.txt").write_text("mine")
    old_spool = tmp_path / ".ckpt.abcd1234.tar.partial"
    old_spool.write_text("an older fahr's spool")
    local._tidy_staging(ckpt)
    assert not staging.exists() and not empty.exists() and not old_spool.exists()
    assert (users / "notes.txt").read_text() == "mine" and (ckpt / CHECKPOINT_MARKER).is_file()

    # Killed between the two renames: the previous folder (marked) is put back.
    ckpt.rename(tmp_path / ".ckpt.fahr-dddd4444-old")
    local._tidy_staging(ckpt)
    assert (ckpt / CHECKPOINT_MARKER).is_file() and not (tmp_path / ".ckpt.fahr-dddd4444-old").exists()


@pytest.mark.parametrize("named", ['"/\\ud800/jobs/x"', '"/jobs\\u0000/x"'])
def test_a_marker_naming_a_path_no_file_can_have_names_no_job(tmp_path, named):
    # A lone surrogate or a NUL in the marker's JSON: no such folder can exist, so no job holds
    # the folder; it is not a UnicodeEncodeError or ValueError (exit 4) from opening its record.
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / CHECKPOINT_MARKER).write_bytes(MARKER_TEXT + f"{local.IN_USE}{named}\n".encode())
    assert local._named(folder) is None and local._user_of(folder) is None
    local._check_not_in_use(folder, "config.checkpoint_path=x")
    local._release(folder, tmp_path / "jobs" / "x")  # nothing named it: the marker is left as it is
    assert (folder / CHECKPOINT_MARKER).read_bytes().endswith(f"{named}\n".encode())


def test_fit_checks_a_marker_naming_a_path_no_file_can_have_before_the_build(tmp_path):
    (tmp_path / "i15ckreview").mkdir()
    (tmp_path / "i15ckreview" / "train.py").write_text("print('never run')\n")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / CHECKPOINT_MARKER).write_bytes(MARKER_TEXT + f'{local.IN_USE}"/\\ud800"\n'.encode())
    # The missing input is refused after the checkpoint folder is looked at, and before the build.
    proc = run_fahr("fit", "i15ckreview/train.py", "--config.checkpoint_path=ckpt", "--config.output_path=jobs",
                    "--input", f"train={tmp_path / 'absent'}", cwd=tmp_path)
    assert one_line_error(proc, 2).startswith(f"fahr error: --input train={tmp_path / 'absent'}: ")


def test_wait_on_a_record_whose_checkpoint_path_is_among_the_jobs_ends_it_without_copying_back(tmp_path,
                                                                                                 docker_engine):
    # A record edited by hand (launch refuses such a folder): its copy back locked the job's own
    # folder while `fahr wait` held that lock, and hung for good, deaf to Ctrl-C.
    jobs = tmp_path / "jobs"
    name = "i15ckreview-train-20261203-000000-abcd"
    inside = jobs / name / "ckpt"
    job_dir = record(jobs, name, inside, created=1.0)
    inside.mkdir()
    (inside / CHECKPOINT_MARKER).write_bytes(local._claimed(job_dir))
    proc = run_fahr("wait", name, f"--config.output_path={jobs}", cwd=tmp_path, timeout=60)
    assert proc.returncode == 1, proc.stderr  # its containers are gone: it failed
    assert (f"the checkpoints of job {name} were not copied back: {inside} (its record's checkpoint_path) "
            f"overlaps the jobs' folder {jobs}") in proc.stderr, proc.stderr
    assert json.loads((job_dir / "job.json").read_text())["status"] == "Failed"
    assert [p.name for p in inside.iterdir()] == [CHECKPOINT_MARKER]


def test_a_job_is_known_in_its_marker_however_its_folder_is_spelled(tmp_path):
    # The launch names the job folder as its output_path was given; `fahr wait` may reach the same
    # folder through a link. The job's end must free the folder, and the copy back (which keeps
    # the job's name while its end is not yet recorded) must know it as the same job.
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / CHECKPOINT_MARKER).write_bytes(MARKER_TEXT)
    real = record(tmp_path / "jobs", "i15ckreview-train-1", folder)
    (tmp_path / "alias").symlink_to(tmp_path / "jobs")
    aliased = tmp_path / "alias" / real.name
    for claimed, ending in ((aliased, real), (real, aliased)):
        local._claim(folder, claimed)
        assert local._names(folder, ending) and not local._names(folder, tmp_path / "jobs" / "another")
        local._release(folder, ending)
        assert (folder / CHECKPOINT_MARKER).read_bytes() == MARKER_TEXT


def test_naming_a_job_never_writes_into_a_marker_shared_with_another_file(tmp_path):
    # A marker hard-linked elsewhere (a user's file linked in, a `cp -al` copy of the folder):
    # writing the job's name in place would write into that file too.
    folder = tmp_path / "ckpt"
    folder.mkdir()
    users = tmp_path / "notes.txt"
    users.write_bytes(MARKER_TEXT)  # as fahr's marker reads, so that the folder looks like fahr's
    os.link(users, folder / CHECKPOINT_MARKER)
    job_dir = record(tmp_path / "jobs", "i15ckreview-train-2", folder)
    with pytest.raises(OSError, match="not a file of that folder alone, but linked elsewhere too"):
        local._claim(folder, job_dir)
    assert users.read_bytes() == MARKER_TEXT
    users.write_bytes(MARKER_TEXT + f"{local.IN_USE}{json.dumps(str(job_dir))}\n".encode())
    local._release(folder, job_dir)  # the job's end: nothing written there either
    assert users.read_bytes().endswith(f"{json.dumps(str(job_dir))}\n".encode())


def _plan_steps(depth: int) -> tuple[int, list]:
    """The lines of fahr_core/contract.py that planning the copy-back of ``depth`` folders nested
    in each other (a file at the bottom) executes: work counted, not timed; and the plan."""
    names = ["checkpoints"] + ["checkpoints/" + "/".join(["d"] * i) for i in range(1, depth + 1)]
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        info = tarfile.TarInfo(names[-1] + "/last.pt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    data.seek(0)
    merge = contract.CheckpointMerge("checkpoints", "/opt/ml/checkpoints", None)
    merge.add("algo-1", tarfile.open(fileobj=data, mode="r"))
    planned = []
    steps = counted_steps(contract, lambda: planned.extend(merge.plan()))
    return steps, planned


def test_planning_a_deep_copy_back_costs_steps_linear_in_its_depth():
    # Each name's folders were checked, and joined again, one by one up from the top: a step a
    # folder for each name, its depth squared for a tree of folders nested in each other.
    small, planned = _plan_steps(400)
    large, _ = _plan_steps(800)
    assert len(planned) == 401 and planned[-1][0] == "/".join(["d"] * 400) + "/last.pt"
    assert large <= 2.2 * small, (small, large)


def test_a_relative_checkpoint_path_in_fahr_toml_is_the_project_s_wherever_fahr_runs(tmp_path, monkeypatch):
    # The model template's fahr.toml sets checkpoint_path = ".fahr/checkpoints": fitted as
    # `fahr fit proj/train.py` from the folder above, the checkpoints must still be the project's
    # (one folder per project, found again by the next fit), not a folder beside it.
    from fahr_core import plan
    from fahr_core.session import open_session

    project = tmp_path / "proj"
    project.mkdir()
    (project / "train.py").write_text("print('training')\n")
    (project / "fahr.toml").write_text(f'[local]\noutput_path = "{tmp_path / "jobs"}"\n'
                                       'checkpoint_path = ".fahr/checkpoints"\n')
    for var in [v for v in os.environ if v.startswith("FAHR_")]:
        monkeypatch.delenv(var)
    for cwd in (tmp_path, project):
        monkeypatch.chdir(cwd)
        session = open_session("local", project, check_required=False)
        assert local._checkpoint_root(session.config) == project / ".fahr" / "checkpoints"
        plan.check_fit(plan.plan_fit(project / "train.py"), session)  # inside the project: fine
    # Set on the command line or in the environment, a relative path is the current folder's.
    monkeypatch.chdir(tmp_path)
    session = open_session("local", project, {"checkpoint_path": "ckpt"}, check_required=False)
    assert local._checkpoint_root(session.config) == tmp_path / "ckpt"
    # "." in fahr.toml is the project itself: refused before building, whatever the current folder.
    (project / "fahr.toml").write_text(f'[local]\noutput_path = "{tmp_path / "jobs"}"\ncheckpoint_path = "."\n')
    session = open_session("local", project, check_required=False)
    with pytest.raises(ConfigError, match=rf"config\.checkpoint_path=\.: {project} holds files fahr did not put there"):
        plan.check_fit(plan.plan_fit(project / "train.py"), session)
