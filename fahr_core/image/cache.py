"""The content hashes of a build context's files, remembered between runs (:class:`ContextHashes`).

A file is hashed (and its first MiB scanned for credentials, :mod:`fahr_core.secrets`) only when
its stat changed since the last run: an unchanged data folder costs a walk of ``lstat`` calls.
The record of each context is a file in ``$XDG_CACHE_HOME/fahr/contexts`` (:func:`hash_cache_file`),
used only when it is this user's own folder, never through a link; at worst the cache is not
used, and every file is read again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import BinaryIO

from fahr_core import ui
from fahr_core.hashing import file_digest
from fahr_core.jobfolder import PARTIAL, open_regular, replacing_in
from fahr_core.secrets import HEAD_BYTES, SCANNER, scan

# A file hashed less than this after its last change is "racy": a write in the same tick of a
# coarse filesystem clock would leave its stat unchanged, so its hash is not trusted next run.
_RACY_NS = 2_000_000_000


def fahr_cache_dir() -> Path:
    """fahr's cache folder: ``$XDG_CACHE_HOME/fahr``, else ``~/.cache/fahr``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fahr"


def hash_cache_file(context_dir: Path) -> Path:
    """Where the content hashes of one build context are kept between runs."""
    key = hashlib.sha256(os.path.abspath(context_dir).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return fahr_cache_dir() / _CONTEXTS / f"{key}.json"


_CONTEXTS = "contexts"
# The only names fahr writes in its contexts folder: records, and the temporary files they are
# written to (an older fahr's `.hashes.*.tmp`, this one's `.RECORD.*.partial`: jobfolder.replacing_in).
# Nothing else there, nor anything that is not a regular file of this user, is ever removed.
_RECORD_NAME = re.compile(r"[0-9a-f]{32}\.json")
_TEMP_NAME = re.compile(r"\.hashes\.[0-9a-z_]{8,16}\.tmp|\.[0-9a-f]{32}\.json\.[0-9a-f]{8}" + re.escape(PARTIAL))
#: A record is about 150 bytes a file: a bigger one (over 400,000 files) is ignored, not read.
_RECORD_MAX = 64 * 1024**2


def _cache_folder(create: bool, warn: bool = False) -> int | None:
    """A descriptor of the folder of :func:`hash_cache_file`, or None when there is none to use.

    ``fahr`` and ``contexts`` are opened one by one without following a link (``O_NOFOLLOW``,
    relative to the folder above): a link at either name may lead to a folder of the user's, and
    fahr must neither prune nor write there. Both must be folders of this user, and ``contexts``
    writable by no one else: records planted by another user would decide which files are not
    read again. Otherwise the cache is not used (with ``warn``, one line says so), and builds work
    as without it. The folder above (``$XDG_CACHE_HOME``) is the user's.
    """
    cache = fahr_cache_dir()
    try:
        if create:
            os.makedirs(cache.parent, exist_ok=True)
        fd = os.open(cache.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    where, problem = cache.parent, None
    try:
        for name in (cache.name, _CONTEXTS):
            where = where / name
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=fd)  # it lists the projects' files
            try:
                inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                # Nothing there (no cache yet, or it cannot be made: a read-only disk) is no problem.
                problem = (_not_a_cache(os.stat(name, dir_fd=fd, follow_symlinks=False), name)
                           or f"cannot be opened ({exc.strerror})")
                break
            os.close(fd)
            fd = inner
            problem = _not_a_cache(os.fstat(fd), name)
            if problem:
                break
        else:
            return fd
    except OSError:
        pass
    os.close(fd)
    if warn and problem:
        if problem.startswith("is a symbolic link"):
            ui.warn(f"{where} is a symbolic link, not fahr's cache folder: fahr neither reads nor writes "
                    "through it, and hashes the build context's files anew at every fit; remove the link")
        else:
            fix = f"chmod go-w {where}" if "written" in problem else "remove it"
            ui.warn(f"{where} {problem}: fahr does not use it as its cache, and hashes the build context's "
                    f"files anew at every fit; {fix}")
    return None


def _not_a_cache(st: os.stat_result, name: str) -> str | None:
    """Why the ``lstat``/``fstat`` ``st`` of fahr's cache folder ``name`` rules it out, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if st.st_uid != os.geteuid():
        return "belongs to another user"
    if name == _CONTEXTS and st.st_mode & 0o022:
        return "can be written by other users"
    return None


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class ContextHashes:
    """The sha256 of each file of a build context and what the secret scan found in it
    (:func:`fahr_core.secrets.scan`, "" for nothing), remembered between runs by its stat.

    A file whose size, mtime, ctime, inode and device are those recorded when it was last hashed
    is not read again: an unchanged folder costs a walk of ``lstat`` calls. The record is one JSON
    file per context folder in :func:`hash_cache_file`, replaced atomically; one that cannot be
    read or makes no sense (not a regular file, a link, another user's, too big, not JSON) is
    ignored (and rewritten), never an error: it is only a cache. Every access goes through
    :func:`_cache_folder`.
    """

    def __init__(self, context_dir: Path) -> None:
        self.context_dir = os.path.abspath(context_dir)
        self.file = hash_cache_file(Path(self.context_dir))
        self._old = self._load()
        self._new: dict[str, list] = {}
        #: The files read and hashed in this run (relative paths).
        self.hashed: list[str] = []

    def _load(self) -> dict[str, list]:
        folder = _cache_folder(create=False, warn=True)
        if folder is None:
            return {}
        try:
            # Not through a link, never a pipe (refused, not read), never another user's records.
            with open_regular(self.file, dir_fd=folder, follow=False) as handle:
                if os.fstat(handle.fileno()).st_uid != os.geteuid():
                    return {}
                text = handle.read(_RECORD_MAX + 1)
            if len(text) > _RECORD_MAX:
                return {}
            data = json.loads(text)
            files = data["files"]
            # A verdict of another scan (an older fahr's detectors) is no verdict: read afresh.
            if (data.get("format") != _CACHE_FORMAT or data.get("context") != self.context_dir
                    or data.get("scanner") != SCANNER or not isinstance(files, dict)):
                return {}
            for entry in files.values():
                if not (isinstance(entry, list) and len(entry) == 8 and isinstance(entry[5], str)
                        and isinstance(entry[7], str) and all(type(n) is int for n in entry[:5])):
                    return {}
            return files
        except Exception:  # missing, unreadable, not a file, not JSON, not ours: start afresh
            return {}
        finally:
            os.close(folder)

    def known(self, relative: str, st: os.stat_result) -> tuple[str, str] | None:
        """The remembered hash and scan verdict of the file whose ``fstat`` is ``st``, or None when
        it must be read."""
        entry = self._new.get(relative)  # hashed earlier in this run: trusted while its stat holds
        if entry is None:
            entry = self._old.get(relative)
            if entry is None or entry[6]:  # never hashed, or hashed too soon after a change
                return None
        if entry[:5] != _stat_key(st):
            return None
        self._new[relative] = entry
        return entry[5], entry[7]

    def remember(self, relative: str, before: os.stat_result, after: os.stat_result, digest: str,
                 started_ns: int, kind: str) -> None:
        """Record the hash and scan verdict of a file read from ``before`` to ``after`` (its fstat
        then and at the end)."""
        self.hashed.append(relative)
        if _stat_key(before) != _stat_key(after):
            self._new.pop(relative, None)  # it changed while read: the next run reads it again
            return
        racy = max(before.st_mtime_ns, before.st_ctime_ns) >= started_ns - _RACY_NS
        self._new[relative] = [*_stat_key(before), digest, 1 if racy else 0, kind]

    def scanned(self, relative: str, path: Path) -> tuple[str, str]:
        """The sha256 of a regular file of the context and the kind of credential its first MiB
        holds ("" for none), in one read, done only when its stat changed."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            before = os.fstat(handle.fileno())
            known = self.known(relative, before)
            if known is not None:
                return known
            started = time.time_ns()
            head, kind = read_head(handle)
            digest = file_digest(handle, head)
            self.remember(relative, before, os.fstat(handle.fileno()), digest, started, kind)
        return digest, kind

    def digest(self, relative: str, path: Path) -> str:
        """The sha256 of a regular file of the context (read only when its stat changed)."""
        return self.scanned(relative, path)[0]

    def save(self) -> None:
        """Keep this run's hashes for the next (only when they changed); never an error.

        The record of a folder no fit has used for :data:`_CACHE_DAYS` days is removed then: the
        folder is likely gone, and at worst its files are hashed once more. The record is written
        to a new temporary file renamed over it (:func:`fahr_core.jobfolder.replacing_in`), in the
        folder :func:`_cache_folder` opened: a link or a pipe at the record's name is replaced,
        never written through.
        """
        unchanged = self._new == self._old
        folder = _cache_folder(create=not unchanged)
        if folder is None:
            return  # no usable cache folder: the next run hashes again, nothing worse
        name = self.file.name
        try:
            if unchanged:
                if self._old:
                    os.utime(name, dir_fd=folder, follow_symlinks=False)  # used: kept from pruning
                return
            _prune(folder)
            data = {"format": _CACHE_FORMAT, "context": self.context_dir, "scanner": SCANNER, "files": self._new}
            with replacing_in(folder, name, mode=0o600) as handle:
                handle.write(json.dumps(data, separators=(",", ":")).encode("utf-8"))
        except (OSError, ValueError):
            pass  # a read-only or full cache folder: the next run hashes again, nothing worse
        finally:
            os.close(folder)


_CACHE_DAYS = 30
# 2: each file's entry ends with its secret scan's verdict (records of format 1 are read afresh).
_CACHE_FORMAT = 2


def _prune(folder: int) -> None:
    """Remove, in the folder open as ``folder``, the hash records (and leftover temporary files)
    unused for :data:`_CACHE_DAYS` days: only regular files of this user named as fahr names them."""
    cutoff = time.time() - _CACHE_DAYS * 86400
    with contextlib.suppress(OSError), os.scandir(folder) as listing:
        for entry in listing:
            if not (_RECORD_NAME.fullmatch(entry.name) or _TEMP_NAME.fullmatch(entry.name)):
                continue
            with contextlib.suppress(OSError):
                st = os.stat(entry.name, dir_fd=folder, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mtime < cutoff:
                    os.unlink(entry.name, dir_fd=folder)


def read_head(handle: BinaryIO, size: int = HEAD_BYTES) -> tuple[bytes, str]:
    """The first ``size`` bytes (at most :data:`~fahr_core.secrets.HEAD_BYTES`) of an open file,
    and the kind of credential the secret scan finds in them ("" for none): every file of a build
    context is scanned here, once, as it is first read (to be hashed, or into the tar)."""
    head = handle.read(min(size, HEAD_BYTES))
    return head, scan(head)
