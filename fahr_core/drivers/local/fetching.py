"""``fahr fetch`` from local jobs: a finished job's model archive (or, ``fetch --output``, its
output.tar.gz), copied out of its folder."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

from fahr_core import jobfolder
from fahr_core.commandlines import wait_command
from fahr_core.drivers.local.records import (FOLLOW, NAME, _kind_of, _newest_completed, _read_record)
from fahr_core.errors import EnvironmentProblem, UsageError
from fahr_core.jobfolder import Folder, Refused
from fahr_core.values import COMPLETED, FINAL_STATES, IN_PROGRESS


def fetch(request, config):
    location = Path(os.path.expanduser(request.location or config["output_path"]))
    if request.location and urlparse(request.location).scheme == "file":
        location = Path(urlparse(request.location).path)
    output = getattr(request, "what", "model") == "output"
    name = "output.tar.gz" if output else "model.tar.gz"
    target = Path(request.download_dir) / name
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
    unfinished = record["status"] == IN_PROGRESS or record.get("unfinished") == FOLLOW
    # A failed or stopped job has its output (its clues), packed whatever the ending, once finished.
    if record["status"] != COMPLETED and (not output or unfinished or record["status"] not in FINAL_STATES):
        command = wait_command(job_dir.name, NAME, str(job_dir.parent.absolute()))
        hint = f"; finish it with '{command}'" if unfinished else ""
        what = "output" if output else "model"
        raise UsageError(f"job {job_dir.name} is {record['status']}, it has no {what} to fetch{hint}")
    # Only the job folder's own archive, whatever the record's model_artifact says: the record is
    # a file anyone may have edited, and fetch must copy nothing from outside the job's folder.
    archive = job_dir / "output" / name
    try:
        with Folder.open(job_dir) as folder, folder.sub("output") as sub:
            source = sub.open_file(archive.name)
    except FileNotFoundError:
        if output:
            raise UsageError(f"job {job_dir.name} has no output.tar.gz ({archive} is missing): it ended before "
                             "it could start, or its folder was changed by hand") from None
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
