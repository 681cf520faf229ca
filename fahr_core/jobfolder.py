"""A job's folder, read and written only as fahr made it: never through a link, regular files only.

Anyone who can write the jobs' folder (``output_path``) can replace what is in a job's folder: its
``output/`` or ``logs/`` by a link to another folder, a log by a FIFO or a link to ``/dev/zero``.
fahr must then neither write its archives, logs and records elsewhere nor read endlessly or hang.

A :class:`Folder` is a folder opened once, without following a link at its name; every name in it
is opened relative to that open folder (``dir_fd``), without following a link, and a file read
must be a regular one (opened non-blocking, so a FIFO cannot hang the open). Files are written
whole: under a temporary ``.NAME.*.partial`` in the same folder, renamed over ``NAME`` when
complete, mode 0600, since a job's record holds its ``--env`` values; a folder fahr writes in is
made (or tightened to) 0700. Anything else is :class:`Refused`: one line, exit 2.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from fahr_core.errors import UsageError

FOLDER_MODE = 0o700
FILE_MODE = 0o600
PARTIAL = ".partial"
"""The suffix of the files being written: what a killed fahr leaves, and the next one tidies."""

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC


class Refused(UsageError):
    """Something in a job's folder is not what fahr made there (a link, a FIFO, a folder, too big)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path} {reason}; fahr reads and writes a job's files only in the job's own folder, "
                         "as regular files: replace it by what fahr made, or remove the job's folder")


def _refusal(parent: int, path: Path, exc: OSError, kind: str) -> OSError | Refused:
    """An OSError of opening ``path`` (in the open folder ``parent``) without following links,
    as what it means. (Linux says ENOTDIR, not ELOOP, for a link opened as a folder.)"""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.lstat(path.name, dir_fd=parent).st_mode):
                return Refused(path, f"is a symbolic link, not the {kind} fahr made")
        if kind == "folder":
            return Refused(path, "is not a folder")
    if exc.errno == errno.EISDIR:
        return Refused(path, "is a folder, not a file")
    return exc


class Folder:
    """One folder, opened; close it (or use it as a context manager) when done."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = Path(path), fd

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> "Folder":
        """``path`` itself (not a link at its name; the folders above it are the user's to choose).
        ``create``: made, with its parents, when missing. FileNotFoundError when it is missing."""
        path = Path(path)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        try:
            return cls(path, _open_folder(parent, path, create))
        finally:
            os.close(parent)

    def sub(self, name: str, *, create: bool = False) -> "Folder":
        """The folder ``name`` in this one, opened likewise."""
        return Folder(self.path / name, _open_folder(self.fd, self.path / name, create))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> "Folder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def pinned(self) -> str:
        """A path naming this very folder, whatever has become of its name since it was opened
        (Linux: ``/proc/self/fd/N``), for code that takes a folder's path; elsewhere its path."""
        proc = f"/proc/self/fd/{self.fd}"
        return proc if os.path.isdir(proc) else str(self.path)

    def names(self) -> list[str]:
        return sorted(os.listdir(self.fd))

    def open_file(self, name: str) -> BinaryIO:
        """``name`` for reading: a regular file, not a link, else :class:`Refused`."""
        try:
            return open_regular(self.path / name, dir_fd=self.fd, follow=False)
        except OSError as exc:
            raise _refusal(self.fd, self.path / name, exc, "file") from None

    def read(self, name: str, limit: int) -> bytes:
        """All of ``name`` (see :meth:`open_file`), refused when larger than ``limit`` bytes."""
        with self.open_file(name) as handle:
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(limit + 1) if size <= limit else b""
        if size > limit or len(data) > limit:
            raise Refused(self.path / name, f"is {max(size, len(data))} bytes, larger than any fahr writes "
                                            f"({limit} at most)")
        return data

    @contextlib.contextmanager
    def replacing(self, name: str) -> Iterator[BinaryIO]:
        """A file to write ``name`` with: renamed over it (mode 0600) when the block ends without
        an error, removed otherwise, so ``name`` is never half-written."""
        self._refuse_folder_at(name)
        self.make_private()
        with replacing_in(self.fd, name) as handle:
            yield handle

    def partial(self, name: str) -> str:
        """A new, empty file (mode 0600) to write ``name`` with over a while, the file opened only
        while it is written: its name here (``.NAME.*.partial``), for :meth:`commit` to rename
        over ``name`` once it is whole. :meth:`replacing` is both for a file written at once."""
        self.make_private()
        tmp, fd = _new_partial(self.fd, name, FILE_MODE)
        os.close(fd)
        return tmp

    def commit(self, partial: str, name: str) -> None:
        """Rename the whole file ``partial`` (see :meth:`partial`) over ``name``, in this folder."""
        os.rename(partial, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def open_own(self, name: str, *, create: bool = True, append: bool = False) -> int:
        """An fd on ``name`` for locking (``flock``) or, with ``append``, appending (a log): a
        regular file, made (mode 0600) when missing with ``create``, never opened through a link
        (:class:`Refused`); FileNotFoundError when missing without ``create``. Closed by the caller."""
        flags = ((os.O_WRONLY | os.O_APPEND if append else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
                 | (os.O_CREAT if create else 0))
        if create:
            self.make_private()
        try:
            fd = os.open(name, flags, FILE_MODE, dir_fd=self.fd)
        except OSError as exc:
            raise _refusal(self.fd, self.path / name, exc, "file") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise Refused(self.path / name, "is not a regular file")
        os.set_blocking(fd, True)
        return fd

    def write(self, name: str, data: bytes) -> None:
        with self.replacing(name) as handle:
            handle.write(data)

    def tidy(self, pattern: str) -> list[str]:
        """Remove the regular files (never a link's target, never a folder) whose whole name
        matches ``pattern``: what a fahr killed while writing left. Returns their names."""
        removed = []
        for name in self.names():
            if not re.fullmatch(pattern, name):
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(name, dir_fd=self.fd).st_mode):
                    os.unlink(name, dir_fd=self.fd)
                    removed.append(name)
        return removed

    def make_private(self) -> None:
        """Tighten a folder an older fahr made readable by others to 0700 (a job's record holds
        its ``--env`` values): best effort, a folder of another owner is left as it is."""
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(os.fstat(self.fd).st_mode)
            if mode & 0o077:
                os.fchmod(self.fd, mode & FOLDER_MODE)

    def _refuse_folder_at(self, name: str) -> None:
        try:
            info = os.lstat(name, dir_fd=self.fd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            raise Refused(self.path / name, "is a folder, not a file")


def partial_name(name: str) -> str:
    """The name a file is written under before it is renamed over ``name``: ``.NAME.*.partial``
    (hidden, random, recognisable, so a killed writer's leftover can be pruned)."""
    return f".{name}.{secrets.token_hex(4)}{PARTIAL}"


def _new_partial(folder_fd: int, name: str, mode: int) -> tuple[str, int]:
    """A new file under :func:`partial_name` in the folder: its name and an fd open for writing
    (``O_EXCL``: never a file or link planted under that name)."""
    tmp = partial_name(name)
    return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, mode, dir_fd=folder_fd)


@contextlib.contextmanager
def replacing_in(folder_fd: int, name: str, *, mode: int = FILE_MODE) -> Iterator[BinaryIO]:
    """A file to write ``name`` in the open folder ``folder_fd`` with, renamed over ``name`` when
    the block ends without an error, removed otherwise: ``name`` is whole or as it was.

    The file is new (``O_EXCL``, a random ``.NAME.*.partial`` name, never opened through a link
    planted in its place), made with ``mode`` (less the umask); the rename replaces a link or a
    file at ``name``, it never writes to a link's target. The one write-then-rename of fahr: a
    job's files (:meth:`Folder.replacing`), the project's Dockerfile, the build cache's records.
    """
    tmp, fd = _new_partial(folder_fd, name, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.rename(tmp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=folder_fd)
        raise


def open_regular(path: Path, *, dir_fd: int | None = None, follow: bool = True) -> BinaryIO:
    """``path`` (its name only, with ``dir_fd``) for reading: a regular file, else :class:`Refused`.
    Opened non-blocking, so that a FIFO under the name is refused instead of hanging the open;
    ``follow=False``: a link at the name is an OSError (ELOOP), not followed."""
    flags = os.O_RDONLY | os.O_NONBLOCK | _CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path.name if dir_fd is not None else path, flags, dir_fd=dir_fd)
    try:
        kind = os.fstat(fd).st_mode
        if stat.S_ISDIR(kind):
            raise Refused(path, "is a folder, not a file")
        if not stat.S_ISREG(kind):
            raise Refused(path, "is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_folder(parent: int, path: Path, create: bool) -> int:
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path.name, FOLDER_MODE, dir_fd=parent)
    try:
        return os.open(path.name, _DIRECTORY, dir_fd=parent)
    except OSError as exc:
        raise _refusal(parent, path, exc, "folder") from None
