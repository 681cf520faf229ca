"""fahr_core.jobfolder on the real filesystem: a job's folder is read and written only as fahr
made it (never through a link, regular files only, size-capped reads, whole 0600 files)."""

from __future__ import annotations

import os
import stat
import time

import pytest

from fahr_core.jobfolder import Folder, Refused


@pytest.fixture
def job(tmp_path):
    folder = tmp_path / "jobs" / "job-1"
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "algo-1.log").write_bytes(b"line\n")
    return folder


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_folder_itself_as_a_link_is_refused(job, tmp_path):
    (tmp_path / "jobs" / "job-2").symlink_to(job)
    with pytest.raises(Refused, match="job-2 is a symbolic link, not the folder fahr made"):
        Folder.open(tmp_path / "jobs" / "job-2")
    (tmp_path / "jobs" / "job-3").write_text("")
    with pytest.raises(Refused, match="job-3 is not a folder"):
        Folder.open(tmp_path / "jobs" / "job-3")
    with pytest.raises(FileNotFoundError):
        Folder.open(tmp_path / "jobs" / "job-4")


def test_a_link_above_the_folder_is_the_users_to_choose(job, tmp_path):
    (tmp_path / "elsewhere").symlink_to(tmp_path / "jobs")
    with Folder.open(tmp_path / "elsewhere" / "job-1") as folder, folder.sub("logs") as logs:
        assert logs.read("algo-1.log", 1024) == b"line\n"


@pytest.mark.parametrize("create", [False, True])
def test_a_subfolder_as_a_link_is_refused_and_nothing_is_made_through_it(job, tmp_path, create):
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(victim, job / "output")
    with Folder.open(job) as folder, pytest.raises(Refused, match="output is a symbolic link"):
        folder.sub("output", create=create)
    assert list(victim.iterdir()) == []


@pytest.mark.parametrize("kind", ["link to a file", "link to /dev/zero", "fifo", "folder"])
def test_a_file_that_is_not_a_regular_one_is_refused_without_hanging(job, tmp_path, kind):
    log = job / "logs" / "algo-1.log"
    log.unlink()
    if kind == "link to a file":
        (tmp_path / "secret").write_text("SECRET")
        log.symlink_to(tmp_path / "secret")
    elif kind == "link to /dev/zero":
        log.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(log)
    else:
        log.mkdir()
    says = {"fifo": "is not a regular file", "folder": "is a folder, not a file"}.get(kind, "is a symbolic link")
    started = time.monotonic()
    with Folder.open(job) as folder, folder.sub("logs") as logs:
        with pytest.raises(Refused, match=says):
            logs.open_file("algo-1.log")
        with pytest.raises(Refused, match=says):
            logs.read("algo-1.log", 1024)
    assert time.monotonic() - started < 5


def test_a_read_is_capped(job):
    with Folder.open(job) as folder, folder.sub("logs") as logs:
        assert logs.read("algo-1.log", 5) == b"line\n"
        with pytest.raises(Refused, match=r"is 5 bytes, larger than any fahr writes \(4 at most\)"):
            logs.read("algo-1.log", 4)


def test_a_write_is_whole_private_and_replaces_a_link_not_its_target(job, tmp_path):
    outside = tmp_path / "outside.log"
    outside.write_text("theirs")
    (job / "logs" / "algo-1.log").unlink()
    (job / "logs" / "algo-1.log").symlink_to(outside)
    os.chmod(job, 0o755)
    os.chmod(job / "logs", 0o755)
    with Folder.open(job) as folder, folder.sub("logs") as logs:
        logs.write("algo-1.log", b"mine\n")
        with pytest.raises(RuntimeError), logs.replacing("algo-2.log") as handle:
            handle.write(b"half")
            raise RuntimeError("killed while writing")
    assert outside.read_text() == "theirs"
    assert (job / "logs" / "algo-1.log").read_bytes() == b"mine\n" and not (job / "logs" / "algo-1.log").is_symlink()
    assert sorted(os.listdir(job / "logs")) == ["algo-1.log"]  # no half algo-2.log, no temporary file
    assert mode(job / "logs" / "algo-1.log") == 0o600
    assert mode(job / "logs") == 0o700  # an older fahr's folder, tightened once fahr writes in it
    assert mode(job) == 0o755  # not written in


def test_a_folder_made_is_private(job):
    with Folder.open(job) as folder, folder.sub("output", create=True):
        pass
    assert mode(job / "output") == 0o700


def test_a_write_over_a_folder_is_refused(job):
    (job / "logs" / "algo-2.log").mkdir()
    with Folder.open(job) as folder, folder.sub("logs") as logs, pytest.raises(Refused, match="is a folder"):
        logs.write("algo-2.log", b"x")


def test_tidy_removes_only_regular_files_of_the_pattern(job, tmp_path):
    keep = tmp_path / "keep.partial"
    keep.write_text("not fahr's")
    (job / ".model.tar.gz.abcd1234.partial").write_bytes(b"\0" * 1024)
    (job / ".link.partial").symlink_to(keep)
    (job / ".folder.partial").mkdir()
    (job / "model.tar.gz").write_bytes(b"kept")
    with Folder.open(job) as folder:
        assert folder.tidy(r"\..+\.partial") == [".model.tar.gz.abcd1234.partial"]
    assert keep.read_text() == "not fahr's"
    assert sorted(os.listdir(job)) == [".folder.partial", ".link.partial", "logs", "model.tar.gz"]


def test_replacing_in_writes_whole_with_its_mode_and_leaves_nothing_when_it_fails(tmp_path):
    """The one write-then-rename (the project's Dockerfile, the build cache, a job's files): the
    file appears whole with the mode asked (less the umask), replaces a link at the name without
    writing to its target, and a failed write leaves the old file and no temporary one."""
    from fahr_core.jobfolder import replacing_in

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "Dockerfile").symlink_to(victim)
    umask = os.umask(0o022)
    os.umask(umask)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with replacing_in(fd, "Dockerfile", mode=0o666) as handle:
            handle.write(b"FROM python:3.11-slim\n")
        with pytest.raises(ZeroDivisionError), replacing_in(fd, "Dockerfile") as handle:
            handle.write(b"half")
            1 / 0
    finally:
        os.close(fd)
    assert victim.read_text() == "precious\n" and not (folder / "Dockerfile").is_symlink()
    assert (folder / "Dockerfile").read_text() == "FROM python:3.11-slim\n"
    assert mode(folder / "Dockerfile") == 0o666 & ~umask
    assert sorted(p.name for p in folder.iterdir()) == ["Dockerfile"]
