"""The ``local`` driver: train in containers on this machine's Docker engine, as SageMaker would.

Each job runs under the same container contract as SageMaker, and its artifacts are kept in
SageMaker's layout in a local folder:

    <output_path>/<job>/output/model.tar.gz
    <output_path>/<job>/output/output.tar.gz
    <output_path>/<job>/job.json          (fahr's record of the job: status, reason, times)

so that a model that trains here trains on SageMaker unchanged, and ``fahr fetch`` works alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import math
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

from fahr_core import hookimpl, interrupts, jobfolder, names, ui
from fahr_core.commandlines import stop_command, wait_command
from fahr_core.config import ConfigKey
from fahr_core.errors import ConfigError, EnvironmentProblem, UsageError, first_line
from fahr_core.jobfolder import Folder, Refused
from fahr_core.jobs import (COMPLETED, FAILED, FINAL_STATES, IN_PROGRESS, STOPPED, STOPPING, JobHandle,
                            JobResult)

NAME = "local"
RECORD = "job.json"
#: The most hosts one local job may have. Each is a container on this machine: more is a typo (or
#: a billion), refused before anything is built or allocated.
MAX_INSTANCE_COUNT = 64
#: The largest job.json fahr reads: what it writes is a few kilobytes.
_RECORD_MAX_BYTES = 16 * 1024 * 1024

# A record's "unfinished" field: what `fahr wait JOB` still has to do although the status reads final.
# FOLLOW: fahr lost the engine (or hit a bug) while following the job; it recorded the job Failed,
#   for a fit that has exited must not leave it InProgress, but the containers may run on or hold
#   the artifacts: `fahr wait` follows them, or finishes them, and records how the job really ended.
# CLEANUP: the job's end is recorded and its artifacts saved, but its containers could not be removed.
FOLLOW = "follow"
CLEANUP = "cleanup"
# Writing the artifacts or the record failed for want of room or of a writable disk: the user can
# fix that, then `fahr wait` finishes the job (exit 3, not a bug).
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})
_READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def default_output_path() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "fahr", "jobs")


@hookimpl
def config_keys():
    return [
        ConfigKey("output_path", str, default_output_path(),
                  "Folder that receives <job>/output/model.tar.gz and output.tar.gz."),
        ConfigKey("instance_count", int, 1,
                  f"Containers (hosts algo-1..algo-N, 1-{MAX_INSTANCE_COUNT}) on a private network, "
                  "to rehearse distributed training."),
        ConfigKey("instance_type", str, "local", "Reported to the container in resourceconfig.json."),
        ConfigKey("gpus", str, "", "GPUs to pass through: 'all', a count, or device ids '0,1'. Empty: none."),
        ConfigKey("stop_timeout", int, 10, "Seconds between SIGTERM and SIGKILL when a job is stopped."),
        ConfigKey("checkpoint_path", str, "",
                  "Folder copied into /opt/ml/checkpoints at start and back (replacing its contents) when "
                  "the job ends, fails or is stopped, so a job fitted again resumes; new or empty at first use (fahr "
                  "marks it with .fahr-checkpoints). Empty: no checkpointing."),
    ]


@hookimpl
def claims_location(location):
    parsed = urlparse(location)
    if parsed.scheme == "file" or (not parsed.scheme and Path(location).exists()):
        return True
    return None


# -- the job record ----------------------------------------------------------------------------


def _output_root(config) -> Path:
    raw = str(config["output_path"])
    if not raw.strip():
        raise ConfigError("config.output_path is empty; give a folder for the jobs' artifacts")
    if "\x00" in raw:
        raise ConfigError(f"config.output_path={raw!r} holds a NUL character; give a folder for the jobs' artifacts")
    return Path(os.path.abspath(os.path.expanduser(raw)))


def _job_dir(config, job_name: str) -> Path:
    return _output_root(config) / job_name


class BadRecord(UsageError):
    """A job.json fahr cannot use (exit 2): ``reason`` says what is wrong with it."""

    def __init__(self, job_dir: Path, reason: str):
        self.job_dir, self.reason = job_dir, reason
        super().__init__(f"{job_dir / RECORD} {reason}; restore it, or remove the job's folder {job_dir}")


_STATES = (IN_PROGRESS, COMPLETED, FAILED, STOPPING, STOPPED)
_TEXT_FIELDS = ("failure_reason", "model_artifact", "output_artifact", "instance_type", "gpus", "secondary_status",
                "upload_error", "checkpoint_path")
_TIME_FIELDS = ("created", "started", "ended")
_LATEST_TIME = 253402300799  # 9999-12-31T23:59:59Z: the last second a datetime can show
_MAP_FIELDS = ("hyperparameters", "channels", "environment")


def _read_record(job_dir: Path | Folder) -> dict:
    """The job's record, checked: every reader goes through here, since anyone may have edited it.

    ``job_dir`` is the job's folder, or that folder opened (see fahr_core.jobfolder: never through
    a link, the record a regular file of at most _RECORD_MAX_BYTES). A missing record is a
    :class:`UsageError`; one that is not a regular file, not UTF-8 JSON, or whose fields have the
    wrong type, a :class:`BadRecord`; a job folder that is a link, a :class:`Refused`. All exit 2.
    """
    try:
        with _opened(job_dir) as folder:
            raw = folder.read(RECORD, _RECORD_MAX_BYTES)
    except FileNotFoundError:
        raise UsageError(
            f"no local job record at {_path(job_dir)}; check the job name and config.output_path; "
            "if it ran on another driver, pass --train-driver NAME"
        ) from None
    except Refused as exc:
        if exc.path == _path(job_dir):
            raise
        raise BadRecord(_path(job_dir), exc.reason) from None
    except OSError as exc:
        path = _path(job_dir) / RECORD
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # the way to the record, not the record
            raise ConfigError(f"cannot reach {path} ({exc.strerror}): a folder on the way, or "
                              "config.output_path, is not a usable folder; fix it or choose another") from None
        if exc.errno in (errno.EACCES, errno.EPERM):  # the user's to fix, not a broken record
            raise EnvironmentProblem(f"cannot read {path} ({exc.strerror}); make it readable to you, or "
                                     "choose another config.output_path") from None
        raise BadRecord(_path(job_dir), f"cannot be read ({exc.strerror})") from None
    job_dir = _path(job_dir)
    try:
        record = json.loads(raw.decode("utf-8"))
        # JSON may escape half of a UTF-16 pair alone ("\ud800"): no text, and printing it fails.
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRecord(job_dir, "holds an escaped lone surrogate (such as \\ud800), which is not text") from None
    except UnicodeDecodeError:
        raise BadRecord(job_dir, "is not UTF-8 text") from None
    except RecursionError:
        raise BadRecord(job_dir, "nests too deeply to be a job record") from None
    except ValueError as exc:  # json.JSONDecodeError, or an integer too long to convert
        raise BadRecord(job_dir, f"is not valid JSON ({' '.join(str(exc).split())})") from None
    _check_record(job_dir, record)
    return record


def _kind(value) -> str:
    """A value as an error message shows it: short, and never a repr of a deep structure."""
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_record(job_dir: Path, record) -> None:
    if not isinstance(record, dict):
        raise BadRecord(job_dir, f"holds {_kind(record)}, not a job record (a JSON object)")
    for key in ("job_name", "model_tag", "status", "image"):
        if key not in record:
            raise BadRecord(job_dir, f"lacks {key!r}")

    def wrong(key: str, expected: str) -> BadRecord:
        return BadRecord(job_dir, f"has {key} = {_kind(record[key])}, not {expected}")

    if record["job_name"] != job_dir.name:
        raise wrong("job_name", f"its folder's name {job_dir.name!r}")
    try:
        names.validate_model_tag(record["model_tag"])
    except UsageError:
        raise wrong("model_tag", "a model image tag like 'foo/model'") from None
    if record["status"] not in _STATES:
        raise wrong("status", f"one of {', '.join(_STATES)}")
    if not isinstance(record["image"], str) or not record["image"]:
        raise wrong("image", "an image reference")
    for key in _TEXT_FIELDS:
        if key in record and not isinstance(record[key], str):
            raise wrong(key, "a string")
    for key in _TIME_FIELDS:
        value = record.get(key)
        if key in record and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                              or not 0 <= value <= _LATEST_TIME):
            raise wrong(key, "a time in seconds since 1970")
    count = record.get("instance_count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_INSTANCE_COUNT:
        raise wrong("instance_count", f"a number of hosts from 1 to {MAX_INSTANCE_COUNT}")
    for key in _MAP_FIELDS:
        value = record.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise wrong(key, "an object of strings")
    if not isinstance(record.get("stop_requested", False), (bool, str)):
        raise wrong("stop_requested", "true, false or the reason of the stop")
    if record.get("unfinished", FOLLOW) not in (FOLLOW, CLEANUP):
        raise wrong("unfinished", f"{FOLLOW!r} or {CLEANUP!r}")
    if not isinstance(record.get("model_empty", False), bool):
        raise wrong("model_empty", "true or false")
    checkpoints = record.get("checkpoint_path", "")
    if checkpoints:
        # fahr writes the absolute path it checked: the folder it replaces at the job's end. An
        # edited one must not make that replace the jobs' folder or the home folder.
        if not os.path.isabs(checkpoints) or "\x00" in checkpoints:
            raise wrong("checkpoint_path", "an absolute folder path")
        folder = Path(os.path.normpath(checkpoints))
        for kept in (job_dir.absolute(), Path.home()):
            if folder == kept or folder in kept.parents:
                raise wrong("checkpoint_path", f"a folder of checkpoints (it holds {kept})")


def _path(job_dir: Path | Folder) -> Path:
    return job_dir.path if isinstance(job_dir, Folder) else job_dir


@contextlib.contextmanager
def _opened(job_dir: Path | Folder):
    """The job's folder opened (see fahr_core.jobfolder), or kept open when it already is."""
    if isinstance(job_dir, Folder):
        yield job_dir
    else:
        with Folder.open(job_dir) as folder:
            yield folder


def _write_record(job_dir: Path | Folder, record: dict) -> None:
    """Replace the record whole: a full disk leaves the previous one, never a cut one. Mode 0600:
    it holds the job's environment (``--env``)."""
    with _opened(job_dir) as folder:
        folder.write(RECORD, json.dumps(record, indent=2, sort_keys=True).encode("utf-8"))


def _container_job(record: dict, config):
    from fahr_core.contract import ContainerJob

    return ContainerJob(
        job_name=record["job_name"],
        image=record["image"],
        hyperparameters=record.get("hyperparameters", {}),
        channels={k: Path(v) for k, v in record.get("channels", {}).items()},
        environment=record.get("environment", {}),
        execution_environment=NAME,
        instance_count=record.get("instance_count", 1),
        instance_type=record.get("instance_type", "local"),
        gpus=record.get("gpus", ""),
        stop_timeout=config["stop_timeout"],
        checkpoints=Path(record["checkpoint_path"]) if record.get("checkpoint_path") else None,
    )


def _channel_path(channel: str, value: str) -> Path:
    parsed = urlparse(value)
    if parsed.scheme not in ("", "file"):
        raise UsageError(
            f"--input {channel}={value}: the local driver reads local folders or file:// URIs, "
            f"not {parsed.scheme}:// (download the data first, or use a cloud driver)"
        )
    path = Path(parsed.path if parsed.scheme == "file" else value).expanduser()
    if not path.exists():
        raise UsageError(f"--input {channel}={value}: {path} does not exist")
    return path.resolve()


# -- the steps ---------------------------------------------------------------------------------


@hookimpl
def check_run(config, inputs):
    _check_output_path(config)
    if not 1 <= config["instance_count"] <= MAX_INSTANCE_COUNT:
        raise ConfigError(
            f"config.instance_count={config['instance_count']}: must be 1 to {MAX_INSTANCE_COUNT} "
            "(each host is a container on this machine)"
        )
    if config["stop_timeout"] < 0:
        raise ConfigError(f"config.stop_timeout={config['stop_timeout']}: must be 0 or more")
    _checkpoint_root(config)
    for name, value in inputs.items():
        _channel_path(name, value)


def _check_output_path(config) -> None:
    """Refuse, before anything is built, an output_path no job folder can be made in."""
    root = _output_root(config)
    setting = f"config.output_path={config['output_path']}"
    probe = _nearest_folder(root, setting, "the jobs' artifacts")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting}: {probe} is not writable; choose a folder you can write to")


def _nearest_folder(root: Path, setting: str, purpose: str) -> Path:
    """``root``, or the nearest of its ancestors that exists (it decides whether ``root`` can be
    made); a ConfigError when that is not a folder, a broken link, or cannot be looked at."""
    probe = root
    while True:
        try:
            info = os.stat(probe)
        except (FileNotFoundError, NotADirectoryError):
            if os.path.islink(probe):
                raise ConfigError(f"{setting}: {probe} is a broken link; fix it or choose another folder") from None
            probe = probe.parent
            continue
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot use {probe} ({exc.strerror}); choose another folder") from None
        break
    if not stat.S_ISDIR(info.st_mode):
        where = "is a file" if probe == root else f"is under {probe}, a file"
        raise ConfigError(f"{setting} {where}, not a folder; choose a folder for {purpose}")
    return probe


def _checkpoint_root(config) -> Path | None:
    """config.checkpoint_path, checked and made absolute (links resolved: the folder itself is
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
    root = Path(os.path.realpath(os.path.expanduser(raw)))
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
    from fahr_core.contract import CHECKPOINT_MARKER

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
    from fahr_core.contract import CHECKPOINT_MARKER, MARKER_TEXT

    try:
        folder.mkdir(parents=True, exist_ok=True)
        _check_owned(folder, setting)  # again: it may have changed since the check before building
        marker = folder / CHECKPOINT_MARKER
        if not marker.is_file():
            marker.write_bytes(MARKER_TEXT)
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot create {folder} ({exc.strerror}); choose another folder") from None


IN_USE = "in use by the job in "
"""The line a launch adds to the checkpoint folder's marker, with the job's folder (JSON): the
folder is that job's until its record says it has ended. The copy back writes the marker anew."""


def _named(folder: Path) -> Path | None:
    """The job folder that ``folder``'s marker names (see IN_USE), or None."""
    from fahr_core.contract import CHECKPOINT_MARKER

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


def _release(folder: Path, job_dir: Path) -> None:
    """The job is recorded ended: its name leaves the marker, under the lock beside the folder
    (a launch holds it while it looks). Best effort: a name whose job has ended holds nothing."""
    from fahr_core.contract import MARKER_TEXT

    with contextlib.suppress(OSError), _locked_beside(folder.parent):
        if _names(folder, job_dir):
            _rewrite_marker(folder, MARKER_TEXT)


def _rewrite_marker(folder: Path, data: bytes) -> None:
    """Make ``folder``'s marker hold ``data``, written in place: only into a regular file that is
    this folder's alone. A link, or a file hard-linked elsewhere (`cp -al`, a user's file linked
    in), may be anyone's: an OSError, nothing written."""
    from fahr_core.contract import CHECKPOINT_MARKER

    fd = os.open(folder / CHECKPOINT_MARKER, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "wb") as out:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise OSError(errno.EPERM, "it is not a file of that folder alone, but "
                          f"{'linked elsewhere too' if stat.S_ISREG(info.st_mode) else 'not a regular file'}")
        out.truncate(0)
        out.write(data)


def _check_not_in_use(folder: Path, setting: str) -> None:
    """Refuse a checkpoint folder another job will copy back into: one of the two would lose its
    checkpoints to the other's."""
    user = _user_of(folder)
    if user is not None:
        name, job_dir = user
        wait = wait_command(name, NAME, str(job_dir.parent))
        raise ConfigError(f"{setting}: job {name} is using that folder (its checkpoints go back there when it "
                          f"ends); let it end ('{wait}') or stop it, or give this job a folder of its own")


def _claimed(job_dir: Path) -> bytes:
    """The marker of a checkpoint folder that the job in ``job_dir`` holds."""
    from fahr_core.contract import MARKER_TEXT

    return MARKER_TEXT + f"{IN_USE}{json.dumps(str(job_dir))}\n".encode()


def _claim(folder: Path, job_dir: Path) -> None:
    """Name the job in the marker of its checkpoint folder (see IN_USE); the caller holds the
    lock of the folder's parent, and has checked that no other job uses it."""
    _rewrite_marker(folder, _claimed(job_dir))


GIVEN = "checkpoints-given.json"
"""In the job's folder: what the checkpoint folder gave the hosts at start (name -> what)."""
#: The largest checkpoints-given.json fahr reads: a line per checkpoint file, not the files.
_GIVEN_MAX_BYTES = 64 * 1024 * 1024


def _write_given(job_dir: Path, folder: Path) -> None:
    from fahr_core.contract import checkpoint_manifest

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


def _record_launch(spec, config, channels: dict, checkpoints: Path | None) -> tuple[Path, dict]:
    """Make the job's folder and record (and, with checkpoints, what the hosts are given), and
    name the job in its checkpoint folder's marker; nothing is left half-made on a failure."""
    job_dir = _job_dir(config, spec.job_name)
    try:
        job_dir.parent.mkdir(parents=True, exist_ok=True)
        job_dir.mkdir(mode=jobfolder.FOLDER_MODE)  # 0700: its record holds the job's environment
    except FileExistsError:
        raise UsageError(f"job {spec.job_name} already exists in {job_dir.parent}; choose another name") from None
    except OSError as exc:
        if exc.errno in _NO_ROOM | {errno.EROFS}:
            raise EnvironmentProblem(f"cannot create {job_dir} ({exc.strerror}): {_fix(exc)} there, "
                                     "then run fahr fit again") from None
        raise ConfigError(f"config.output_path={config['output_path']}: cannot create {job_dir} ({exc.strerror})") from None
    record = {
        "job_name": spec.job_name,
        "model_tag": spec.model_tag,
        "image": spec.image.reference,
        "hyperparameters": dict(spec.hyperparameters),
        "channels": channels,
        "environment": dict(spec.environment),
        "instance_count": config["instance_count"],
        "instance_type": config["instance_type"],
        "gpus": config["gpus"],
        **({"checkpoint_path": str(checkpoints)} if checkpoints else {}),
        "status": IN_PROGRESS,
        "secondary_status": "Starting",
        "created": time.time(),
    }
    written = job_dir / RECORD
    try:
        _write_record(job_dir, record)
        if checkpoints is not None:  # what the hosts are given: the copy back is merged against it
            written = job_dir / GIVEN
            _write_given(job_dir, checkpoints)
    except OSError as exc:
        shutil.rmtree(job_dir, ignore_errors=True)  # nothing started: no half-made job to keep
        raise EnvironmentProblem(f"cannot write {written} ({exc.strerror}): {_fix(exc)} in "
                                 f"{job_dir.parent}, then run fahr fit again; nothing was started") from None
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)  # an unreadable checkpoint: nothing started
        raise
    if checkpoints is not None:
        try:
            _claim(checkpoints, job_dir)
        except OSError as exc:
            shutil.rmtree(job_dir, ignore_errors=True)
            fix = "" if exc.errno == errno.EPERM else f"{_fix(exc)} or "
            raise ConfigError(f"config.checkpoint_path={config['checkpoint_path']}: cannot write its marker in "
                              f"{checkpoints} ({exc.strerror}); {fix}choose another folder") from None
    return job_dir, record


@hookimpl
def launch(spec, config):
    from fahr_core.contract import ContractRun, EngineLost

    check_run(config, spec.inputs)
    channels = {name: str(_channel_path(name, value)) for name, value in spec.inputs.items()}
    checkpoints = _checkpoint_root(config)
    with contextlib.ExitStack() as held:
        if checkpoints is not None:
            setting = f"config.checkpoint_path={config['checkpoint_path']}"
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
        job_dir, record = _record_launch(spec, config, channels, checkpoints)
    # Until `wait` follows the job, an interrupt stops it (start() itself cleans up after one).
    interrupts.until_followed(spec.job_name, lambda: _stop_unfollowed(spec.job_name, job_dir, config))
    run = ContractRun(_container_job(record, config))
    try:
        run.start(on_status=lambda status: ui.status_change(spec.job_name, status))
    except BaseException as exc:  # start() removed what it had created; record how it ended
        lost = isinstance(exc, EngineLost)
        if isinstance(exc, KeyboardInterrupt):
            record.update(status=STOPPED, failure_reason="Interrupted while starting")
        else:
            record.update(status=FAILED, failure_reason=f"Could not start: {exc}")
        if lost:  # start() could not remove what it had created: `fahr wait` does, later
            record["unfinished"] = CLEANUP
        record.pop("secondary_status", None)
        record["ended"] = time.time()
        try:
            _write_record(job_dir, record)
        except OSError:
            shutil.rmtree(job_dir, ignore_errors=True)  # a record left InProgress would lie
        if checkpoints is not None:
            _release(checkpoints, job_dir)
        if lost:
            raise EnvironmentProblem(f"{exc}; once the engine is back, remove what the job left with: "
                                     f"{_command('wait', spec.job_name, config)}") from exc
        raise
    record["started"] = time.time()
    try:
        _write_record(job_dir, record)
    except OSError as exc:
        # Only the start time is lost: the record still says InProgress, which is true, and the
        # end is recorded (or the full disk reported, the job kept) when the job ends.
        ui.warn(f"could not note the start of {spec.job_name} in {job_dir / RECORD} ({exc.strerror}); "
                "it trains on, but free space there before it ends")
    return JobHandle(driver=NAME, job_name=spec.job_name, model_tag=spec.model_tag,
                     details={"job_dir": str(job_dir), "hosts": config["instance_count"]})


def _command(verb: str, job_name: str, config) -> str:
    """The exact ``fahr wait|stop JOB`` that reaches this job from any folder."""
    line = {"wait": wait_command, "stop": stop_command}[verb]
    return line(job_name, NAME, str(_job_dir(config, job_name).parent))


def _ended(record: dict) -> bool:
    """Whether the record's status is the job's real end (not a lost fit's provisional Failed)."""
    return record["status"] in FINAL_STATES and record.get("unfinished") != FOLLOW


def _fix(exc: OSError) -> str:
    if exc.errno in _NO_ROOM:
        return "free space"
    if exc.errno in _READ_ONLY:
        return "make it writable"
    return "fix that"


def _result(job: JobHandle, job_dir: Path, record: dict) -> JobResult:
    seconds = None
    if record.get("started") and record.get("ended"):
        seconds = round(record["ended"] - record["started"], 3)
    return JobResult(
        job=job,
        status=record["status"],
        failure_reason=record.get("failure_reason", ""),
        model_artifact=record.get("model_artifact", ""),
        output_artifact=record.get("output_artifact", ""),
        training_seconds=seconds,
        billable_seconds=seconds,
        model_empty=record.get("model_empty"),
    )


@hookimpl
def wait(job, config):
    from fahr_core.contract import ContractRun

    job_dir = _job_dir(config, job.job_name)
    record = _read_record(job_dir)
    if not job.model_tag:  # re-attached by name (`fahr wait JOB`): the record knows the tag
        job = dataclasses.replace(job, model_tag=record["model_tag"])
    if _ended(record):
        _replay_logs(job_dir, record)  # as SageMaker's wait prints a finished job's logs
        if record.get("unfinished") == CLEANUP:
            run = ContractRun(_container_job(record, config))
            with interrupts.shield(f"removing the containers of job {job.job_name}"), _locked(job_dir) as folder:
                record = _read_record(folder)
                _remove_containers(run, job_dir, config, record)
        return _result(job, job_dir, record)
    run = ContractRun(_container_job(record, config))
    several = record.get("instance_count", 1) > 1
    try:
        interrupts.followed(job.job_name)  # in the try: from here on, Ctrl-C is handled below
        gone = not run.containers()
        if not gone:
            # Its output is copied into the job's logs folder as it comes: the folder as opened
            # (never a link), which the run holds until it saves the logs.
            with Folder.open(job_dir) as folder:
                logs = folder.sub("logs", create=True)
            outcome = run.follow(lambda host, data: ui.log_output(data, host if several else None),
                                 started_at=record.get("started"), lines=several, keep_in=logs)
            ui.flush_output()  # the job's last output before anything fahr prints next
    except KeyboardInterrupt:
        _stop_interrupted(run, job.job_name, job_dir, config)
        raise
    except Exception as exc:
        problem = _lost_sight(job.job_name, job_dir, config, exc, "following")
        if problem is None:
            raise
        raise problem from exc
    if gone:
        record = _finish(run, job_dir, config, FAILED, "Its containers are gone (removed outside fahr)")
    else:
        record = _finish(run, job_dir, config, outcome.status, outcome.failure_reason)
    ui.status_change(job.job_name, record["status"])
    return _result(job, job_dir, record)


def _stop_interrupted(run, job_name: str, job_dir: Path, config) -> None:
    """After Ctrl-C: stop the job, save what it left, remove its containers. Further Ctrl-C are
    deferred meanwhile (see fahr_core.interrupts): cut here, the job would be left running."""
    stop_command = _command("stop", job_name, config)
    interrupts.doing(f"stopping job {job_name} and removing its containers "
                     f"(if fahr is killed, '{stop_command}' does it)")
    reason = "Stopped by the user (interrupt)"
    try:
        run.reconnect()
        codes = run.exit_codes()
        if codes is None:
            ui.status_change(job_name, "Stopping", f"SIGTERM, then SIGKILL after {config['stop_timeout']} s; "
                                                   "Ctrl-C again does not abandon it")
            _request_stop(job_dir, reason)
            run.stop()
    except Exception as exc:
        problem = _lost_sight(job_name, job_dir, config, exc, "stopping", stop_requested=reason)
        if problem is None:
            raise
        raise problem from exc
    if codes is None:
        record = _finish(run, job_dir, config, STOPPED, reason)
    else:  # every host had already ended: record how, rather than calling it stopped
        failed = sorted(h for h, c in codes.items() if c != 0)
        try:
            why = run.failure_reason(failed[0], codes[failed[0]]) if failed else ""
        except Exception as exc:
            problem = _lost_sight(job_name, job_dir, config, exc, "following")
            if problem is None:
                raise
            raise problem from exc
        record = _finish(run, job_dir, config, FAILED if failed else COMPLETED, why)
    ui.status_change(job_name, record["status"])


def _stop_unfollowed(job_name: str, job_dir: Path, config) -> None:
    """An interrupt came after launch and before `wait` followed the job: stop it all the same."""
    from fahr_core.contract import ContractRun

    record = _read_record(job_dir)
    if _ended(record):
        return  # start() was interrupted and has recorded it
    _stop_interrupted(ContractRun(_container_job(record, config)), job_name, job_dir, config)


def _request_stop(job_dir: Path, reason: str) -> None:
    """Note the stop before it is made: whoever finishes the job later records it Stopped."""
    with _locked(job_dir) as folder:
        record = _read_record(folder)
        if record.get("stop_requested"):
            return
        record["stop_requested"] = reason
        with contextlib.suppress(OSError):  # a full disk: the stop goes on, the finish reports it
            _write_record(folder, record)


def _lost_sight(job_name: str, job_dir: Path, config, exc: Exception, doing: str,
                stop_requested: str = "") -> Exception | None:
    """fahr can no longer follow the job (the engine went away, or a bug): record it Failed for
    now, ``unfinished``, with the command that reconciles it, and say so.

    Returns the error to raise, or None to re-raise ``exc`` (a bug: exit 4, but the record is
    still not left InProgress).
    """
    from fahr_core.contract import engine_lost, is_engine_error

    command = _command("stop" if stop_requested else "wait", job_name, config)
    if is_engine_error(exc):
        lost = engine_lost(exc, f"{doing} job {job_name}")
        reason = f"fahr {lost.message}; its containers may still run: '{command}' reconciles it"
        problem = EnvironmentProblem(f"{lost.message}; the job may still run: once the engine is back, "
                                     f"{'stop' if stop_requested else 'reconcile'} it with: {command}")
    elif isinstance(exc, Refused):  # the job's folder was tampered with: nothing written elsewhere
        reason = f"fahr stopped {doing} the job: {exc.path} {exc.reason}; '{command}' reconciles it"
        problem = _refused(exc, command)
    else:
        reason = f"fahr stopped {doing} the job ({type(exc).__name__}: {first_line(exc)}); '{command}' reconciles it"
        problem = None
    with _locked(job_dir) as folder:
        _mark_unfinished(folder, reason, stop_requested)
    return problem


def _refused(exc: Refused, command: str) -> UsageError:
    """What fahr says when it found the job's folder not as it made it, with the job kept."""
    return UsageError(f"{exc.path} {exc.reason}: fahr writes a job's files only in the job's own folder; "
                      f"the job's containers keep everything: make it what fahr made (or remove it), then "
                      f"finish the job with: {command}")


def _mark_unfinished(job_dir: Path | Folder, reason: str, stop_requested: str = "") -> None:
    """Record a job fahr lost sight of (the caller holds the lock)."""
    record = _read_record(job_dir)
    if _ended(record):
        return  # another process (a `fahr stop`) finished it meanwhile
    record.update(status=FAILED, failure_reason=reason, unfinished=FOLLOW)
    if stop_requested:
        record.setdefault("stop_requested", stop_requested)
    record.pop("secondary_status", None)
    with contextlib.suppress(OSError):  # a full disk: the record stays as it was, InProgress
        _write_record(job_dir, record)


def _replay_logs(job_dir: Path, record: dict) -> None:
    several = record.get("instance_count", 1) > 1
    for host, data in _saved_output(job_dir, lines=several):
        ui.log_output(data, host if several else None)
        if ui.output_closed():
            break  # stdout's reader has gone (`| head`)
    ui.flush_output()


@contextlib.contextmanager
def _locked(job_dir: Path):
    """One process at a time finishes a job (a `fit` following it and a `fahr stop`, say).

    The lock is taken on the job's folder itself, opened read-only: a lock file would have to be
    created, and a full or read-only disk must still let fahr say what it cannot write. Yields
    the folder opened (never through a link): what is read and written under the lock goes
    through it.
    """
    with Folder.open(job_dir) as folder:
        fcntl.flock(folder.fd, fcntl.LOCK_EX)
        yield folder


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


def _finish(run, job_dir: Path, config, status: str, reason: str) -> dict:
    """Pack the artifacts in SageMaker's layout, record the end, remove containers and network.

    Nothing is lost on the way: the containers, which hold the model, are removed only once
    every archive and the record are written whole. When a local write fails (a full disk, say)
    the job stays InProgress, its secondary status says why, the containers are kept and the
    EnvironmentProblem raised names the `fahr wait JOB` that finishes it once that is fixed.
    When the engine goes away, the job is recorded Failed but ``unfinished`` (see FOLLOW).

    Idempotent: a job another process has finished is left as it is. Returns the final record.
    Ctrl-C is deferred until it is done (a finished job's model must not be cut in half).
    """
    job_name = job_dir.name
    with interrupts.shield(f"saving the artifacts of job {job_name} and removing its containers"), \
            _locked(job_dir) as folder, contextlib.ExitStack() as opened:
        record = _read_record(folder)
        if _ended(record):
            _remove_containers(run, job_dir, config, record)
            return record
        stop_reason = record.get("stop_requested")
        if stop_reason and status != COMPLETED:
            status = STOPPED
            reason = stop_reason if isinstance(stop_reason, str) else "Stopped by 'fahr stop'"
        final = dict(record)
        out = job_dir / "output"
        step, where = "the logs", job_dir / "logs"
        try:
            logs = opened.enter_context(folder.sub("logs", create=True))
            _tidy_partials(folder)  # the logs: save_logs tidies them (a copy follow() wrote may be the log)
            run.save_logs(logs)
            step, where = "the output folder", out
            output = opened.enter_context(folder.sub("output", create=True))
            _tidy_partials(output)
            if status == COMPLETED:
                ui.status_change(job_name, "Uploading", str(out))
                step = "model.tar.gz"
                run.pack_into("/opt/ml/model", output, "model.tar.gz")
                final["model_artifact"] = str(out / "model.tar.gz")
                final["model_empty"] = not _holds_a_file(output, "model.tar.gz")
            # Output data comes back whatever the ending: it is where a failed run leaves its clues.
            step = "output.tar.gz"
            run.pack_into("/opt/ml/output/data", output, "output.tar.gz")
            final["output_artifact"] = str(out / "output.tar.gz")
            if record.get("checkpoint_path"):  # whatever the ending: a stopped job resumes from them
                step, where = "the checkpoints", Path(record["checkpoint_path"])
                _save_checkpoints(run, folder, where)
            ended = record.get("ended") if record.get("upload_error") else None  # a retried upload
            final.update(status=status, failure_reason=reason, ended=ended or time.time())
            for key in ("secondary_status", "unfinished", "upload_error"):
                final.pop(key, None)
            step, where = RECORD, job_dir
            _write_record(folder, final)
            checkpoints = Path(record.get("checkpoint_path") or ".")
            if record.get("checkpoint_path") and not _among_jobs(checkpoints, job_dir):  # ended: free again
                _release(checkpoints, job_dir)
        except Exception as exc:
            problem = _not_saved(run, job_dir, config, record, exc, step, where)
            if problem is None:
                raise
            raise problem from exc
        _remove_containers(run, job_dir, config, final)
    return final


def _holds_a_file(folder: Folder, name: str) -> bool:
    """Whether the archive fahr just packed holds anything but folders (read up to the first)."""
    import tarfile

    with folder.open_file(name) as handle, tarfile.open(fileobj=handle, mode="r:gz") as tar:
        return any(not member.isdir() for member in tar)


def _among_jobs(target: Path, job_dir: Path) -> bool:
    """Whether a record's checkpoint folder is, lies inside, or holds the jobs' folder (a record
    edited by hand, or an older fahr's: launch refuses it). Its copy back would put files among
    the jobs, and lock a job's folder while the job's own lock is held: `fahr wait` would hang."""
    jobs, folder = Path(os.path.realpath(job_dir.parent)), Path(os.path.realpath(target))
    return folder == jobs or jobs in folder.parents or folder in jobs.parents


def _tidy_partials(*folders: Folder) -> None:
    """Remove what a fahr killed while saving this job left (the caller holds the job's lock, so
    no other fahr is writing them): the files it was writing (``.NAME.*.partial``, see
    fahr_core.jobfolder), and the checkpoints spooled on their way back (``.checkpoints.*.tar.partial``).
    They can be as large as the model."""
    for folder in folders:
        folder.tidy(r"\..+\.partial")


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
    from fahr_core.contract import CHECKPOINT_MARKER, clash_warning
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

    from fahr_core.contract import CHECKPOINT_MARKER

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


def _not_saved(run, job_dir: Path, config, record: dict, exc: Exception, step: str, where: Path):
    """The artifacts could not be saved: keep the containers, record why, say what to do.

    Returns the error to raise, or None to re-raise ``exc`` (a bug). The caller holds the lock.
    """
    from fahr_core.contract import engine_lost, is_engine_error

    job_name = job_dir.name
    command = _command("wait", job_name, config)
    if is_engine_error(exc):
        lost = engine_lost(exc, f"saving the artifacts of job {job_name}")
        _mark_unfinished(job_dir, f"fahr {lost.message}; '{command}' finishes the job", record.get("stop_requested", ""))
        return EnvironmentProblem(f"{lost.message}; its containers keep them: once the engine is back, "
                                  f"finish the job with: {command}")
    if isinstance(exc, Refused):  # the job's folder was tampered with: nothing written elsewhere
        _mark_unfinished(job_dir, f"fahr could not save the artifacts: {exc.path} {exc.reason}; "
                                  f"'{command}' tries again", record.get("stop_requested", ""))
        return _refused(exc, command)
    if not isinstance(exc, OSError):
        _mark_unfinished(job_dir, f"fahr could not save the artifacts ({type(exc).__name__}: {first_line(exc)}); "
                                  f"'{command}' tries again", record.get("stop_requested", ""))
        return None
    strerror = exc.strerror or str(exc)
    details = []
    source = {"model.tar.gz": "/opt/ml/model", "output.tar.gz": "/opt/ml/output/data"}.get(step)
    size = run.size_of(source) if source and exc.errno in _NO_ROOM else None
    if size is not None:
        details.append(f"about {_megabytes(size)} uncompressed")
    free = _free_bytes(where)
    if free is not None:
        details.append(f"{_megabytes(free)} free there")
    spool = Path(tempfile.gettempdir())
    if source and exc.errno in _NO_ROOM and not _same_filesystem(spool, where):
        spool_free = _free_bytes(spool)  # the engine's archive is spooled there on its way
        if spool_free is not None and (size is None or spool_free < size):
            details.append(f"fahr also spools it in {spool}, {_megabytes(spool_free)} free")
    detail = f" ({'; '.join(details)})" if details else ""
    message = (f"{strerror} writing {step} of job {job_name} in {where}{detail}; the job's containers keep "
               f"everything until it is saved: {_fix(exc)}, then finish the job with: {command}")
    # "ended": the training has ended (its containers had exited), whenever its artifacts are saved.
    kept = dict(record, status=IN_PROGRESS, secondary_status=f"Uploading failed: {strerror}", upload_error=message,
                ended=record.get("ended") or time.time())
    kept.pop("unfinished", None)  # InProgress says it already: not finished, `fahr wait` finishes it
    with contextlib.suppress(OSError):  # the disk may not even take this: the record stays InProgress
        _write_record(job_dir, kept)
    return EnvironmentProblem(message)


def _remove_containers(run, job_dir: Path, config, record: dict) -> None:
    """Remove a finished job's containers and network (the caller holds the lock)."""
    from fahr_core.contract import is_engine_error

    try:
        run.cleanup()
    except Exception as exc:
        if not is_engine_error(exc):
            raise
        record["unfinished"] = CLEANUP
        with contextlib.suppress(OSError):
            _write_record(job_dir, record)
        raise EnvironmentProblem(
            f"job {job_dir.name} is {record['status']} and its artifacts are saved, but {exc}; once the "
            f"engine is back, remove its containers with: {_command('wait', job_dir.name, config)}"
        ) from exc
    if record.get("unfinished") == CLEANUP:
        record.pop("unfinished")
        with contextlib.suppress(OSError):
            _write_record(job_dir, record)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def _same_filesystem(a: Path, b: Path) -> bool:
    def device(path: Path):
        for folder in (path, *path.parents):
            with contextlib.suppress(OSError):
                return os.stat(folder).st_dev
        return None

    return device(a) == device(b)


@hookimpl
def stop(job, config):
    from fahr_core.contract import ContractRun, engine_lost, is_engine_error

    job_dir = _job_dir(config, job.job_name)
    record = _read_record(job_dir)
    if _ended(record):
        return False
    run = ContractRun(_container_job(record, config))
    reason = "Stopped by 'fahr stop'"
    with interrupts.shield(f"stopping job {job.job_name} and removing its containers"):
        try:
            codes = run.exit_codes()
            if codes is None:
                _request_stop(job_dir, reason)
                run.stop()
        except Exception as exc:
            if not is_engine_error(exc):
                raise
            lost = engine_lost(exc, f"stopping job {job.job_name}")
            raise EnvironmentProblem(f"{lost.message}; the job may still run: once the engine is back, "
                                     f"run again: {_command('stop', job.job_name, config)}") from exc
        if codes is None:
            _finish(run, job_dir, config, STOPPED, reason)
        elif record.get("stop_requested"):
            # Stopped already, but the fahr that stopped it was killed (or lost the engine) before
            # finishing: finish it as that fahr would have.
            _finish(run, job_dir, config, STOPPED, "")
        else:
            return False  # it has ended on its own; `fahr wait` records how
    return True


@hookimpl
def fetch(request, config):
    location = Path(os.path.expanduser(request.location or config["output_path"]))
    if request.location and urlparse(request.location).scheme == "file":
        location = Path(urlparse(request.location).path)
    target = Path(request.download_dir) / "model.tar.gz"
    kind = _kind_of(location)
    if kind == "file":  # an archive the user named
        _copy(_open_named(location), location, target)
        return target
    if kind != "folder":
        raise UsageError(f"{location} is not a folder of local jobs; pass the output_path the job used")
    if request.job_name:
        job_dir = location / request.job_name
        record = _read_record(job_dir)
    else:
        job_dir, record = _newest_completed(location, request.model_tag)
    if record["model_tag"] != request.model_tag:
        raise UsageError(f"job {job_dir.name} trained {record['model_tag']!r}, not {request.model_tag!r}")
    if record["status"] != COMPLETED:
        unfinished = record["status"] == IN_PROGRESS or record.get("unfinished") == FOLLOW
        command = wait_command(job_dir.name, NAME, str(job_dir.parent.absolute()))
        hint = f"; finish it with '{command}'" if unfinished else ""
        raise UsageError(f"job {job_dir.name} is {record['status']}, it has no model to fetch{hint}")
    # Only the job folder's own archive, whatever the record's model_artifact says: the record is
    # a file anyone may have edited, and fetch must copy nothing from outside the job's folder.
    archive = job_dir / "output" / "model.tar.gz"
    try:
        with Folder.open(job_dir) as folder, folder.sub("output") as output:
            source = output.open_file(archive.name)
    except FileNotFoundError:
        raise UsageError(f"{archive} is missing; was the job's folder changed by hand?") from None
    except Refused as exc:
        raise UsageError(f"{exc.path} {exc.reason}; refusing to fetch it") from None
    except OSError as exc:
        raise UsageError(f"cannot read {archive} ({exc.strerror})") from None
    _copy(source, archive, target)
    return target


def _open_named(archive: Path):
    """An archive the user named (links followed): a regular file, else one line."""
    try:
        return jobfolder.open_regular(archive)
    except Refused as exc:
        raise UsageError(f"{archive} {exc.reason}; it is not a model archive") from None
    except OSError as exc:
        raise UsageError(f"cannot read {archive} ({exc.strerror})") from None


def _copy(source, archive: Path, target: Path) -> None:
    """Copy the open ``source`` (the file ``archive``) to ``target``, and close it."""
    try:
        with source, open(target, "xb") as sink:
            shutil.copyfileobj(source, sink, 1024 * 1024)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        hint = "; free space there and retry" if full else ""
        raise EnvironmentProblem(f"cannot copy {archive} to {target.parent} ({exc.strerror}){hint}") from None


def _kind_of(location: Path) -> str | None:
    """What ``location`` is: "file", "folder", or None (nothing usable there). A location fahr may
    not look at is one line naming it (exit 3), not a PermissionError."""
    try:
        mode = os.stat(location).st_mode
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise EnvironmentProblem(f"cannot look at {location} ({exc.strerror}); make it readable to you, "
                                     "or choose another folder of jobs (config.output_path)") from None
        return None
    return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else None


def _records(location: Path):
    """``(record file, record)`` of every job folder in ``location``, in name order. A record that
    cannot be read is skipped with one warning line: one broken job must not hide the others."""
    try:
        names = sorted(os.listdir(location))
    except OSError as exc:
        raise EnvironmentProblem(f"cannot list the jobs in {location} ({exc.strerror}); make it readable to you, "
                                 "or choose another folder of jobs (config.output_path)") from None
    for name in names:
        job_dir = location / name
        if not os.path.isdir(job_dir):
            continue  # not a job's folder
        try:
            record = _read_record(job_dir)
        except BadRecord as exc:
            ui.warn(f"skipping {exc.job_dir}: its {RECORD} {exc.reason}")
            continue
        except Refused as exc:  # the job's folder is a link: what it leads to is no job of here
            ui.warn(f"skipping {exc.path}: it {exc.reason}")
            continue
        except EnvironmentProblem as exc:  # a job folder fahr may not read: the others may be readable
            ui.warn(f"skipping {job_dir}: {exc.message}")
            continue
        except UsageError:  # no job's folder (no record), or gone since the listing
            continue
        yield job_dir / RECORD, record

def _newest_completed(location: Path, model_tag: str) -> tuple[Path, dict]:
    """The newest completed job of ``model_tag`` in ``location``, and its record.

    A record that cannot be read is skipped with a warning: one broken job must not hide the others.
    """
    best: tuple[float, str, Path, dict] | None = None
    for record_file, record in _records(location):
        if record["model_tag"] == model_tag and record["status"] == COMPLETED:
            key = (record.get("created", 0.0), record_file.parent.name, record_file.parent, record)
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:
        raise UsageError(f"no completed job of {model_tag!r} in {location}; train it first with 'fahr fit'")
    return best[2], best[3]


# -- remembering jobs --------------------------------------------------------------------------


def _info(job_dir: Path, record: dict):
    from fahr_core.values import JobInfo

    seconds = None
    if _ended(record) and record.get("started") and record.get("ended"):
        seconds = round(record["ended"] - record["started"], 3)
    artifact = ""
    if record["status"] == COMPLETED:
        # The job folder's own archive, as fetch reads it: the record's field is a file anyone may edit.
        artifact = str(job_dir / "output" / "model.tar.gz")
    return JobInfo(
        job_name=record["job_name"], model_tag=record["model_tag"], driver=NAME, status=record["status"],
        secondary_status=record.get("secondary_status", ""), created=record.get("created"),
        started=record.get("started"), ended=record.get("ended") if _ended(record) else None,
        training_seconds=seconds, billable_seconds=seconds,
        failure_reason=record.get("failure_reason", "")[:1024], model_artifact=artifact,
    )


@hookimpl
def list_jobs(query, config):
    root = _output_root(config)
    if _kind_of(root) != "folder":
        return []  # no job has run here yet
    found: list[tuple[float, str, object]] = []
    for record_file, record in _records(root):
        if query.model_tag and record["model_tag"] != query.model_tag:
            continue
        if query.status and record["status"] != query.status:
            continue
        found.append((record.get("created", 0.0), record["job_name"], _info(record_file.parent, record)))
    found.sort(key=lambda item: item[:2], reverse=True)
    infos = [info for _, _, info in found]
    return infos[:query.limit] if query.limit is not None else infos


def _log_files(job_dir: Path):
    """``(host, open file)`` of every log fahr saved for the job, opened as fahr_core.jobfolder
    says (never through a link, regular files only: a FIFO or /dev/zero is refused, one line)."""
    try:
        with Folder.open(job_dir) as folder:
            logs = folder.sub("logs")
    except FileNotFoundError:
        return  # no logs saved (a job that never started), or the job's folder removed meanwhile
    with logs:
        for name in logs.names():
            if name.endswith(".log") and not name.startswith("."):
                with logs.open_file(name) as handle:
                    yield name[:-len(".log")], handle


def _saved_output(job_dir: Path, lines: bool):
    """The saved logs' bytes, host after host, as ``(host, data)``: read a chunk at a time, in
    pieces that each end a line or slice a long one (see fahr_core.joblog) with ``lines``."""
    from fahr_core import joblog

    for host, handle in _log_files(job_dir):
        chunks = joblog.read_chunks(handle)
        for data in joblog.pieces(chunks) if lines else chunks:
            yield host, data


def _log_line(host: str, piece: bytes, hosts: int):
    """A piece of output as the logs hook yields it: undecodable bytes as surrogate escapes, so
    that `fahr logs` prints them as the job did."""
    from fahr_core.values import LogLine

    newline = piece.endswith(b"\n")
    text = (piece[:-1] if newline else piece).decode("utf-8", "surrogateescape")
    return LogLine(host=host, text=text, newline=newline, hosts=hosts)


def _saved_logs(job_dir: Path, hosts: int, skip: dict[str, int] | None = None):
    """The saved logs as LogLines, without the first ``skip[host]`` bytes of each host's as the
    engine's log holds them (``fahr logs -f`` read that far there): the saved log may hold bytes
    that are not UTF-8 where the engine's has U+FFFD (see fahr_core.contract.LoggedSize)."""
    from fahr_core.contract import LoggedSize

    skip = dict(skip or {})
    sizes: dict[str, LoggedSize] = {}
    for host, piece in _saved_output(job_dir, lines=True):
        left = skip.get(host, 0)
        if left:
            size = sizes.setdefault(host, LoggedSize())
            logged = size(1, piece)
            if logged <= left:
                skip[host] = left - logged
                continue
            skip[host] = 0
            piece = piece[size.cut(1, piece, left):]
            if not piece:
                continue
        yield _log_line(host, piece, hosts)


def _live_logs(run, follow: bool, hosts: int, seen: dict[str, int]):
    """Every host's output from its container, host after host without ``follow``; with it, all
    hosts at once (threads), as the lines come, until every container has stopped. ``seen``
    counts the bytes passed on of each host."""
    import queue
    import threading

    from fahr_core.contract import output_chunks
    from fahr_core.joblog import LineSplitter

    containers = run.containers()

    def output(host, container):
        splitter = LineSplitter()
        try:
            for chunk in output_chunks(container, follow):
                seen[host] = seen.get(host, 0) + len(chunk)
                for piece in splitter.feed(chunk):
                    yield _log_line(host, piece, hosts)
        except Exception:
            pass  # the container went away (the job ended and was cleaned up): the saved logs follow
        if rest := splitter.end():
            yield _log_line(host, rest, hosts)

    if not follow:
        for host in sorted(containers):
            yield from output(host, containers[host])
        return
    # Bounded: a reader slower than the job (stdout a slow pipe) holds the streams back, not
    # the job's output in memory. Closed early (`| head`, an abandoned generator), the threads end.
    events: queue.Queue = queue.Queue(maxsize=_LIVE_QUEUE)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                events.put(item, timeout=0.25)
                return True
            except queue.Full:
                continue
        return False

    def pump(host, container):
        try:
            for line in output(host, container):
                if not put(line):
                    return
        finally:
            put(host)

    for host, container in containers.items():
        threading.Thread(target=pump, args=(host, container), daemon=True).start()
    done = 0
    try:
        while done < len(containers):
            item = events.get()
            if isinstance(item, str):
                done += 1
            else:
                yield item
    finally:
        stop.set()


_LIVE_QUEUE = 64  # pieces of output (each at most a line, or a slice of one: fahr_core.joblog)


@hookimpl
def logs(job, config, follow):
    from fahr_core.contract import ContractRun

    job_dir = _job_dir(config, job.job_name)
    record = _read_record(job_dir)  # raises now, not at the first iteration
    hosts = record.get("instance_count", 1)
    if _ended(record) or record.get("upload_error"):
        return _saved_logs(job_dir, hosts)

    def running():
        seen: dict[str, int] = {}
        run = ContractRun(_container_job(record, config))
        yield from _live_logs(run, follow, hosts, seen)
        if run.containers():
            return  # the containers are still there: their streams held every line
        # The job ended meanwhile and the fahr finishing it saved the logs and removed the
        # containers: lines printed after the streams broke off are in the saved logs.
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if _ended(_read_record(job_dir)):
                    break
            except UsageError:
                return
            time.sleep(0.5)
        yield from _saved_logs(job_dir, hosts, skip=seen)  # what the streams had not passed on

    return running()
