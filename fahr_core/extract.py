"""Putting a fetched model in place, safely. Shared by every driver.

An archive from a training job is untrusted input: extraction refuses absolute paths, ``..``,
links that lead outside the target and device files (tarfile's ``data`` filter is the floor under
our own checks), unpacks into a temporary folder beside the target, and moves it into place only
when complete. A non-empty target is refused unless ``overwrite``.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from fahr_core.errors import UsageError


class UnsafeArchive(UsageError):
    """The archive holds an entry that would land outside the target, or a device file."""


def check_target(target: Path, overwrite: bool) -> None:
    """Refuse a target that cannot become the model's folder: not a folder, not empty (unless
    ``overwrite``), or under a path where no folder can be made."""
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} exists and is not a folder; choose another target directory")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise UsageError(f"{target} is not empty; choose an empty or new folder, or pass --overwrite")
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"cannot create {target}: {parent} is a file; choose another target directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create {target}: {parent} is not writable; choose another target directory")


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[/\\]", name):
        raise UnsafeArchive(f"refusing archive: entry {name!r} has an absolute path")
    if ".." in parts:
        raise UnsafeArchive(f"refusing archive: entry {name!r} climbs out with '..'")
    if member.isdev() or member.isfifo():
        raise UnsafeArchive(f"refusing archive: entry {name!r} is a device or pipe")
    if member.issym() or member.islnk():
        link = member.linkname
        if member.issym():
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname("/".join(parts)), link))
        else:
            resolved = posixpath.normpath(link)
        if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchive(f"refusing archive: link {name!r} -> {link!r} leads outside the target")


def _check_folder(source: Path) -> None:
    """The same rules as for archives, for a model that arrived as a folder of files."""
    for path in source.rglob("*"):
        info = tarfile.TarInfo(path.relative_to(source).as_posix())
        if path.is_symlink():
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
        elif path.is_char_device() or path.is_block_device():
            info.type = tarfile.CHRTYPE
        elif path.is_fifo():
            info.type = tarfile.FIFOTYPE
        _check_member(info)


def _extract(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            tar.extractall(into, members=members, filter="data")
    except tarfile.TarError as exc:
        raise UsageError(f"{archive.name} is not a readable tar archive ({exc}); fetch it again") from exc


def place(source: Path, target: Path, *, extract: bool, overwrite: bool) -> Path:
    """Move a downloaded model into ``target``: extracted (safely), or the archive as it is.

    ``source`` is a ``.tar.gz`` archive, or a folder of files (a job whose output was not
    compressed). Nothing is written to ``target`` unless the whole model is ready.
    """
    target = Path(target).absolute()
    check_target(target, overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.fahr-", dir=target.parent))
    except OSError as exc:
        raise UsageError(f"cannot create {target}: {exc.strerror}; choose another target directory") from None
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the model folder is an ordinary one
    try:
        if source.is_dir():
            _check_folder(source)
            shutil.copytree(source, staging, dirs_exist_ok=True, symlinks=True)
        elif extract:
            _extract(source, staging)
        else:
            shutil.copyfile(source, staging / source.name)
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _swap_in(staging: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.fahr-old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
