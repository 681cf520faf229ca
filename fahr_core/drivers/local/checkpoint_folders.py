"""Which local folder a job's checkpoints go back into, and which job holds it.

``config.checkpoint_path`` is copied into the job's ``/opt/ml/checkpoints`` at start and replaced
by the hosts' copy when the job ends (see fahr_core.drivers.local.checkpoints). A folder is
replaced only when fahr owns it: it was new or empty, and fahr marked it
(:data:`~fahr_core.drivers.local.checkpoints.CHECKPOINT_MARKER`). A launch names its job in the
marker (:data:`IN_USE`) until the job's record says it has ended, so that two jobs never copy
back into one folder; the lock of the folder's parent orders launches, copies back and tidying.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
from pathlib import Path

from fahr_core import ui
from fahr_core.commandlines import wait_command
from fahr_core.config import folder_setting
from fahr_core.drivers.local.checkpoints import CHECKPOINT_MARKER, MARKER_TEXT, checkpoint_manifest
from fahr_core.drivers.local.records import NAME, _ended, _nearest_folder, _opened, _output_root, _path, _read_record
from fahr_core.errors import ConfigError, EnvironmentProblem, UsageError
from fahr_core.jobfolder import Folder, Refused

IN_USE = "in use by the job in "
"""The line a launch adds to the checkpoint folder's marker, with the job's folder (JSON): the
folder is that job's until its record says it has ended. The copy back writes the marker anew."""

GIVEN = "checkpoints-given.json"
"""In the job's folder: what the checkpoint folder gave the hosts at start (name -> what)."""
#: The largest checkpoints-given.json fahr reads: a line per checkpoint file, not the files.
_GIVEN_MAX_BYTES = 64 * 1024 * 1024


def _checkpoint_root(config) -> Path | None:
    """config.checkpoint_path, checked and made absolute (relative to the project when fahr.toml sets
    it: :func:`~fahr_core.config.folder_setting`; links resolved: the folder itself is
    replaced at the job's end), or None when checkpointing is off. Refused before anything is
    built: a path no folder can be made at, and a folder whose replacement would lose more than
    checkpoints (the jobs' output_path or a folder holding it, the home or current folder or one
    holding them)."""
    raw = str(config["checkpoint_path"])
    if not raw.strip():
        return None
    setting = f"config.checkpoint_path={raw}"
    if "\x00" in raw:
        raise ConfigError(f"config.checkpoint_path={raw!r} holds a NUL character; give a folder for the checkpoints")
    root = Path(os.path.realpath(folder_setting(config, "checkpoint_path")))
    output = Path(os.path.realpath(_output_root(config)))
    guarded = {"the jobs' output_path": output, "your home folder": Path.home(), "the current folder": Path.cwd()}
    for what, folder in guarded.items():
        folder = Path(os.path.realpath(folder))
        if root == folder or root in folder.parents:
            raise ConfigError(f"{setting} is {'' if root == folder else 'a folder holding '}{what}; fahr replaces "
                              "that folder's contents with the job's checkpoints: give the checkpoints a folder of their own")
    if output in root.parents:  # a job would write records and models where fahr lists and fetches them
        raise ConfigError(f"{setting} is inside the jobs' output_path ({output}), where fahr keeps the jobs' records "
                          "and models, and a job's checkpoints would land among them: give the checkpoints a folder "
                          "outside it")
    probe = _nearest_folder(root, setting, "the checkpoints")
    if probe == root:
        _check_owned(root, setting)
        _check_not_in_use(root, setting)
        if os.path.ismount(root):  # the copy back renames a fresh folder over it: not a mount point
            raise ConfigError(f"{setting} is a mount point; fahr replaces the checkpoint folder whole when a job "
                              "ends: give the checkpoints a folder inside it")
    # The folder is replaced by renaming a fresh copy beside it: its parent must be writable.
    writable = probe if probe != root else root.parent
    if not os.access(writable, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting}: {writable} is not writable; choose a folder you can write to")
    return root


def _check_owned(folder: Path, setting: str) -> None:
    """Refuse a checkpoint folder fahr does not own: one holding files but not fahr's marker
    (the project, a folder of the user's own); fahr replaces the folder's contents."""
    try:
        owned = (folder / CHECKPOINT_MARKER).is_file()
        with os.scandir(folder) as entries:
            empty = not owned and next(entries, None) is None
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot use {folder} ({exc.strerror}); choose another folder") from None
    if not owned and not empty:
        raise ConfigError(f"{setting}: {folder} holds files fahr did not put there, and fahr replaces the "
                          "checkpoint folder's contents; give the checkpoints a folder of their own (new or empty)")


def _own(folder: Path, setting: str) -> None:
    """Make ``folder`` (new or empty, or fahr's already) a checkpoint folder fahr owns: mark it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _check_owned(folder, setting)  # again: it may have changed since the check before building
        marker = folder / CHECKPOINT_MARKER
        if not marker.is_file():
            # Not Folder.replacing: the folder is the user's, and keeps its mode (replacing makes a
            # folder 0700); any marker, even a cut one, marks it fahr's.
            marker.write_bytes(MARKER_TEXT)
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot create {folder} ({exc.strerror}); choose another folder") from None


def _check_not_in_use(folder: Path, setting: str) -> None:
    """Refuse a checkpoint folder another job will copy back into: one of the two would lose its
    checkpoints to the other's."""
    user = _user_of(folder)
    if user is not None:
        name, job_dir = user
        wait = wait_command(name, NAME, str(job_dir.parent))
        raise ConfigError(f"{setting}: job {name} is using that folder (its checkpoints go back there when it "
                          f"ends); let it end ('{wait}') or stop it, or give this job a folder of its own")


@contextlib.contextmanager
def taking(checkpoints: Path | None, config):
    """Make ``checkpoints`` (config.checkpoint_path as :func:`_checkpoint_root` checked it, or None)
    a folder fahr owns, free for a new job: held (the lock of its parent) until the block, which
    records the job and names it in the folder's marker (:func:`_claim`), ends."""
    if checkpoints is None:
        yield
        return
    setting = f"config.checkpoint_path={config['checkpoint_path']}"
    with contextlib.ExitStack() as held:
        try:
            checkpoints.parent.mkdir(parents=True, exist_ok=True)
            # Held until the job is recorded and named in the folder's marker: not while another
            # job's copy back is under way, and no second job taking the folder meanwhile.
            held.enter_context(_locked_beside(checkpoints.parent))
            _tidy_staging(checkpoints)  # an earlier copy back cut short may have moved the folder aside
            _own(checkpoints, setting)
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot create {checkpoints} ({exc.strerror}); "
                              "choose another folder") from None
        _check_not_in_use(checkpoints, setting)
        yield


# -- the marker: which job holds the folder --------------------------------------------------


def _named(folder: Path) -> Path | None:
    """The job folder that ``folder``'s marker names (see IN_USE), or None."""
    try:  # fahr's marker is a small regular file: anything else under its name names no job
        fd = os.open(folder / CHECKPOINT_MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        text = os.read(fd, 64 * 1024) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    except OSError:
        return None
    finally:
        os.close(fd)
    for line in text.decode("utf-8", "replace").splitlines():
        if line.startswith(IN_USE):
            try:
                job_dir = json.loads(line[len(IN_USE):])
            except ValueError:
                return None
            if not isinstance(job_dir, str) or not os.path.isabs(job_dir) or "\x00" in job_dir:
                return None
            try:  # a name no file can have (a lone surrogate from the JSON) names no job either
                os.fsencode(job_dir)
            except UnicodeError:
                return None
            return Path(job_dir)
    return None


def _names(folder: Path, job_dir: Path) -> bool:
    """Whether ``folder``'s marker names the job in ``job_dir``, however either is spelled (the
    launch wrote the output_path it was given; a `fahr wait` may reach it through another link)."""
    named = _named(folder)
    return named is not None and os.path.realpath(named) == os.path.realpath(job_dir)


def _user_of(folder: Path) -> tuple[str, Path] | None:
    """The job (name, folder) whose checkpoints go back into ``folder`` when it ends: the one
    the folder's marker names, while its record says it has not ended (a job that ended, or
    whose record is gone or names another folder, holds nothing: a mark never blocks for good)."""
    job_dir = _named(folder)
    if job_dir is None:
        return None
    try:
        record = _read_record(job_dir)
    except (UsageError, ConfigError, EnvironmentProblem):  # gone, or not a record fahr can read: no job of fahr's
        return None
    if record.get("checkpoint_path") != str(folder) or _ended(record):
        return None
    return record["job_name"], job_dir


def _claimed(job_dir: Path) -> bytes:
    """The marker of a checkpoint folder that the job in ``job_dir`` holds."""
    return MARKER_TEXT + f"{IN_USE}{json.dumps(str(job_dir))}\n".encode()


def _claim(folder: Path, job_dir: Path) -> None:
    """Name the job in the marker of its checkpoint folder (see IN_USE); the caller holds the
    lock of the folder's parent, and has checked that no other job uses it."""
    _rewrite_marker(folder, _claimed(job_dir))


def _release(folder: Path, job_dir: Path) -> None:
    """The job is recorded ended: its name leaves the marker, under the lock beside the folder
    (a launch holds it while it looks). Best effort: a name whose job has ended holds nothing."""
    with contextlib.suppress(OSError), _locked_beside(folder.parent):
        if _names(folder, job_dir):
            _rewrite_marker(folder, MARKER_TEXT)


def _rewrite_marker(folder: Path, data: bytes) -> None:
    """Make ``folder``'s marker hold ``data``, written in place: only into a regular file that is
    this folder's alone. A link, or a file hard-linked elsewhere (`cp -al`, a user's file linked
    in), may be anyone's: an OSError, nothing written. (In place, not Folder.replacing: the
    folder is the user's and keeps its mode, and a cut rewrite still marks it fahr's.)"""
    fd = os.open(folder / CHECKPOINT_MARKER, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "wb") as out:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise OSError(errno.EPERM, "it is not a file of that folder alone, but "
                          f"{'linked elsewhere too' if stat.S_ISREG(info.st_mode) else 'not a regular file'}")
        out.truncate(0)
        out.write(data)


@contextlib.contextmanager
def _locked_beside(folder: Path):
    """The lock of a checkpoint folder's parent (taken as a job's, on the folder itself), which
    one copy back at a time and a fit tidying beside it hold."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- what the hosts were given, and the copy back -------------------------------------------


def _write_given(job_dir: Path, folder: Path) -> None:
    given = {name: list(what) for name, what in checkpoint_manifest(folder).items()}
    with Folder.open(job_dir) as job_folder:
        job_folder.write(GIVEN, json.dumps(given).encode("utf-8"))


def _read_given(job_dir: Path | Folder) -> dict[str, tuple] | None:
    """The manifest :func:`_write_given` wrote, checked as job.json is; None when absent (a job
    of an older fahr: every host's file then counts as written by it)."""
    path = _path(job_dir) / GIVEN
    try:
        with _opened(job_dir) as folder:
            data = json.loads(folder.read(GIVEN, _GIVEN_MAX_BYTES).decode("utf-8"))
    except FileNotFoundError:
        return None
    except Refused:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path} cannot be read ({exc}); restore it, or remove the job's folder "
                         f"{_path(job_dir)}") from None

    def valid(name, what) -> bool:
        if not (isinstance(name, str) and name and "\x00" not in name and isinstance(what, list) and what):
            return False
        if what[0] == "file":
            return (len(what) == 3 and isinstance(what[1], int) and not isinstance(what[1], bool) and what[1] >= 0
                    and isinstance(what[2], str) and len(what[2]) == 64)
        if what[0] == "link":
            return len(what) == 2 and isinstance(what[1], str)
        return what == ["dir"]

    if not isinstance(data, dict) or not all(valid(k, v) for k, v in data.items()):
        raise UsageError(f"{path} is not what fahr wrote (names of checkpoint files and what they held); "
                         f"restore it, or remove the job's folder {job_dir}")
    return {name: tuple(what) for name, what in data.items()}


def _among_jobs(target: Path, job_dir: Path) -> bool:
    """Whether a record's checkpoint folder is, lies inside, or holds the jobs' folder (a record
    edited by hand, or an older fahr's: launch refuses it). Its copy back would put files among
    the jobs, and lock a job's folder while the job's own lock is held: `fahr wait` would hang."""
    jobs, folder = Path(os.path.realpath(job_dir.parent)), Path(os.path.realpath(target))
    return folder == jobs or jobs in folder.parents or folder in jobs.parents


def _save_checkpoints(run, job_dir: Folder, target: Path) -> None:
    """Copy the job's /opt/ml/checkpoints back into ``target`` (the caller holds the job's lock; this
    takes the lock of ``target``'s parent, which a fit tidying beside ``target`` takes too).

    Only into a folder fahr owns (it holds fahr's marker, looked for now: job.json may have been
    edited since the start), else a warning and ``target`` is left alone. A folder the extractor
    refuses is not worth keeping the job for: it is reported and ``target`` kept as it was. One
    that does not fit (the size cap, the free space) is an OSError, so that the job waits, its
    containers kept, for ``fahr wait`` once room is made.
    """
    if _among_jobs(target, job_dir.path):
        ui.warn(f"the checkpoints of job {job_dir.name} were not copied back: {target} (its record's "
                f"checkpoint_path) overlaps the jobs' folder {job_dir.path.parent}, where fahr keeps the jobs' records "
                "and models; fahr copies checkpoints only into a folder outside it")
        return
    with contextlib.ExitStack() as stack:
        if target.parent.is_dir():  # one copy back at a time beside a folder; a fit's tidying waits
            stack.enter_context(_locked_beside(target.parent))
        _copy_back(run, job_dir.name, job_dir, target)


def _copy_back(run, job_name: str, job_dir: Folder, target: Path) -> None:
    from fahr_core.contract import clash_warning
    from fahr_core.extract import MAX_MODEL_BYTES_ENV, ModelTooLarge, UnsafeArchive

    _tidy_staging(target)
    if not (target / CHECKPOINT_MARKER).is_file() or target.is_symlink():
        ui.warn(f"the checkpoints of job {job_name} were not copied back: {target} is not a checkpoint folder "
                f"fahr made (it lacks {CHECKPOINT_MARKER}), and fahr replaces only its own")
        return
    try:
        # The job holds the folder until its end is recorded (a record that could not be written
        # keeps the job, and `fahr wait` copies back again): the new marker names it still.
        marker = _claimed(job_dir.path) if _names(target, job_dir.path) else True
        copied = run.copy_out(run.job.checkpoint_dir, target, _read_given(job_dir), marker=marker,
                              spool_dir=Path(job_dir.pinned))
    except UnsafeArchive as exc:
        why = exc.message.removeprefix("refusing the model: ").split("; nothing was written")[0]
        ui.warn(f"the checkpoints of job {job_name} were not copied back, {target} is as it was: {why}")
        return
    except ModelTooLarge as exc:  # the size cap, or the free space: fixable, the containers keep them
        why = exc.message.split(";")[0].removeprefix("refusing the model: it ")
        why = why.replace("unpacks", "unpack", 1).replace("needs", "need", 1)
        capped = MAX_MODEL_BYTES_ENV in why
        raise OSError(errno.EFBIG if capped else errno.ENOSPC,
                      f"the checkpoints {why}{' (raise it)' if capped else ''},") from None
    except UsageError as exc:
        raise OSError(errno.EACCES, exc.message.split(";")[0]) from None
    if copied is None:
        return
    if copied.not_folders:
        hosts = ", ".join(f"{host} ({what})" for host, what in copied.not_folders)
        kept = "is as it was" if not copied.placed else "holds the other hosts' checkpoints"
        ui.warn(f"the checkpoints of job {job_name}: {run.job.checkpoint_dir} is not a folder on {hosts}, "
                f"the script replaced it; nothing copied back from there, {target} {kept}")
    if copied.skipped:
        names = sorted({name for name, _ in copied.skipped})
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        ui.warn(f"the checkpoints of job {job_name}: skipped {', '.join(names[:5])}{more} (links leading out of "
                f"{run.job.checkpoint_dir}, fifos or devices, which fahr does not copy back); the rest is in {target}")
    if copied.dropped:
        ui.warn(clash_warning(str(target), copied.dropped))


def _tidy_staging(target: Path) -> None:
    """What an interrupted copy back left beside ``target``: the previous folder moved aside
    (put back when ``target`` is missing), the staging folder (removed). Only folders that carry
    fahr's marker (the copy back unpacks it first), or empty ones, are fahr's: a folder of the
    user's that merely has such a name is left alone, as is an older fahr's spool beside a
    folder that is not fahr's."""
    import re

    def marked(folder: Path) -> bool:
        try:
            return stat.S_ISREG(os.lstat(folder / CHECKPOINT_MARKER).st_mode)
        except OSError:
            return False

    pattern = re.compile(rf"\.{re.escape(target.name)}\.fahr-[A-Za-z0-9_]{{8}}(-old)?")
    spool = re.compile(rf"\.{re.escape(target.name)}\.[A-Za-z0-9_]{{8}}\.tar\.partial")  # an older fahr's
    try:
        with os.scandir(target.parent) as found:
            beside = [Path(entry.path) for entry in found]
        leftovers = [p for p in beside if pattern.fullmatch(p.name) and not p.is_symlink() and p.is_dir()]
        if marked(target) and not target.is_symlink():
            for old in beside:
                if spool.fullmatch(old.name) and old.is_file() and not old.is_symlink():
                    old.unlink()
    except OSError:
        return
    for old in leftovers:
        if old.name.endswith("-old") and not os.path.lexists(target) and marked(old):
            os.replace(old, target)  # killed between the two renames: the previous checkpoints
    for leftover in leftovers:
        if not leftover.exists():
            continue
        if marked(leftover):
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.rmdir()  # killed before the marker was unpacked: empty, else not fahr's
