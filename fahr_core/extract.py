"""Putting a fetched model in place, safely. Shared by every driver.

An archive from a training job is untrusted input. fahr unpacks it itself, entry by entry, in one
streaming pass, into a temporary folder beside the target, and moves that folder into place only
when the whole model is there; on any refusal the temporary folder is removed and the target is
exactly as it was. The rules, checked on the archive's own entries (lexically: never by asking the
filesystem, never with ``realpath``, so no trick with long paths or planted links can fool them):

- names: no absolute path, no ``..``, valid UTF-8, no NUL, no component over 255 bytes
  (``NAME_MAX``), no name over 4096 bytes (``PATH_MAX``);
- no entry passes *through* a symlink declared earlier in the archive, or through a file;
- a symlink must resolve, through the archive's other symlinks (at most 40 of them in a row, like
  the kernel), to a place inside the target, both when it appears and once the archive is complete;
- a hard link must point to a regular file that came earlier in the archive;
- no devices, pipes or unknown entry types; a name appears twice only as a folder, or as a file
  that replaces a file;
- sizes: the uncompressed archive may hold at most ``FAHR_MAX_MODEL_BYTES`` bytes (default
  64 GiB; a number of bytes, or with a K/M/G/T suffix in powers of 1024), and the files must fit in
  the free space of the target's filesystem less a 1 MiB margin. Both are checked on each entry's
  header before its data is decompressed, so an archive bomb is refused after reading only what
  precedes the entry that crosses the limit;
- damaged archives (truncated or corrupt compression, bad headers, no end-of-archive marker) are
  refused.

Writing never follows a symlink either: every folder is opened with ``O_NOFOLLOW`` relative to its
parent's descriptor, files are created with ``O_EXCL | O_NOFOLLOW``, hard links with ``linkat``
without following. A model that arrives as a folder of files goes through the same rules, and so
does one that arrives as a stream (a driver's download still running): it is read once, forward,
as it comes, every rule applying as above, and closed when done or refused. A driver that fetches
a model file by file (an object store's keys) checks their names whole, before downloading, by the
same rules (:func:`check_listing`).

A refusal is a :class:`UsageError` (exit 2) with one line naming the entry.
"""

from __future__ import annotations

import bz2
import collections
import contextlib
import contextvars
import errno
import gzip
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Mapping

from fahr_core import ui
from fahr_core.errors import EnvironmentProblem, FahrError, UsageError, first_line

MAX_MODEL_BYTES_ENV = "FAHR_MAX_MODEL_BYTES"
DEFAULT_MAX_MODEL_BYTES = 64 * 1024**3
#: Kept free on the target's filesystem on top of the model (the disk must stay usable).
FREE_SPACE_MARGIN = 1024**2
#: How many symlinks in a row one resolution may follow (Linux's MAXSYMLINKS).
MAX_LINK_HOPS = 40
# Path components one resolution may walk through (targets of followed links included). A link's
# text holds at most ~2048 of them, the kernel follows 40 links: a hostile chain of long link
# texts would otherwise cost millions of steps per symlink from an archive of a few hundred bytes.
MAX_RESOLVE_PARTS = 8192
NAME_MAX = 255
PATH_MAX = 4096

_CHUNK = 1024**2
#: What is being placed, as the refusals name it: the model, or (``fahr fetch --output``) the
#: job's output, which :func:`place` takes under the same rules.
_placing: contextvars.ContextVar[str] = contextvars.ContextVar("fahr_placing", default="the model")
_NOUNS = {"model": "the model", "output": "the job's output"}
#: Largest PAX or GNU long-name header read into memory: real ones are a few hundred bytes.
_MAX_META_HEADER = 1024**2
#: What the tar reader may read ahead of the entry being checked (its buffer is 10 KiB).
_READ_SLACK = 1024**2
#: What is decompressed ahead of the tar reader (its reads are small).
_AHEAD = 256 * 1024


class UnsafeArchive(UsageError):
    """The model holds an entry that would land outside the target, or a device file."""


class ModelTooLarge(UsageError):
    """The model is larger than the cap or than the free space of the target's filesystem."""


class DamagedArchive(UsageError):
    """The archive cannot be read to its end: truncated, corrupt, not a tar archive."""


def max_model_bytes() -> int:
    """The cap on a model's uncompressed size: ``FAHR_MAX_MODEL_BYTES`` or 64 GiB."""
    from fahr_core.config import env_size

    return env_size(MAX_MODEL_BYTES_ENV, DEFAULT_MAX_MODEL_BYTES, example="68719476736 or 64G")


def over_the_cap(cap: int, entry_name: str) -> ModelTooLarge:
    """The refusal of a model (or checkpoints) whose entry ``entry_name`` crosses ``cap``."""
    return ModelTooLarge(f"refusing {_placing.get()}: it unpacks to more than {ui.size(cap)} (at entry {_show(entry_name)}), "
                         f"the limit set by {MAX_MODEL_BYTES_ENV}; raise it if {_placing.get()} really is that large; "
                         "nothing was written")


@dataclass(frozen=True)
class FreeSpace:
    bytes: int
    inodes: int | None  # None: the filesystem does not count them
    block: int


def free_space(folder: Path) -> FreeSpace:
    """What the filesystem holding ``folder`` can still take (unprivileged view)."""
    st = os.statvfs(folder)
    block = st.f_frsize or st.f_bsize or 4096
    return FreeSpace(bytes=st.f_bavail * block, inodes=st.f_favail if st.f_files else None, block=block)


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


# -- entries: what an archive or a folder holds, in order ------------------------------------------


@dataclass
class _Entry:
    name: str
    kind: str  # "file", "dir", "symlink", "hardlink", or what else it is ("device or pipe", …)
    size: int = 0
    linkname: str = ""
    mode: int = 0o644
    mtime: float | None = None
    #: Where the source stands once this entry's data is read: what the size cap is checked on.
    end: int = 0
    data: Callable[[], Iterator[bytes]] | None = None


def _show(name: str) -> str:
    """A name for a one-line message: quoted, escaped (no newline, no terminal control, invalid
    UTF-8 as ``\\udcXX``), and shortened in the middle when very long."""
    text = repr(name)
    return text if len(text) <= 120 else f"{text[:70]}...{text[-40:]} ({len(name)} characters)"


class _TarInfo(tarfile.TarInfo):
    """tarfile's header parser, stricter: a damaged header or a missing end-of-archive marker is an
    error (tarfile takes both for the end of the archive, which would truncate the model silently),
    and an extended header is not read into memory when it claims to be huge."""

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        try:
            return super().frombuf(buf, encoding, errors)
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError):
            raise DamagedArchive("the archive ends before its end-of-archive marker") from None
        except tarfile.InvalidHeaderError as exc:
            raise DamagedArchive(f"damaged tar header: {exc}") from None

    def _proc_member(self, tarfile_):
        meta = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                tarfile.SOLARIS_XHDTYPE)
        if self.type in meta and self.size > _MAX_META_HEADER:
            raise DamagedArchive(f"an extended tar header claims {self.size} bytes")
        return super()._proc_member(tarfile_)


# Errors that reading a damaged archive can raise from tarfile and the decompressors.
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError, OverflowError)


def _open_raw(path: Path):
    """The downloaded archive's bytes (a seam: tests count what is read)."""
    return open(path, "rb")


class SourceFailed(EnvironmentProblem):
    """The archive's stream failed (not its content): a network or disk error while reading it."""


class _Raw:
    """The archive's compressed bytes as they arrive, read forward once, never seeked: a file, or
    a stream a driver returned while it downloads. Its first bytes are peeked (to recognise the
    compression) and served again. A stream's own failure is not a damaged archive: a driver's
    :class:`FahrError` passes as it is, any other error becomes :class:`SourceFailed`."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.head = b""
        while len(self.head) < 6:
            more = self._read(6 - len(self.head))
            if not more:
                break
            self.head += more
        self.magic = self.head

    def _read(self, size: int) -> bytes:
        try:
            data = self.stream.read(size)
        except FahrError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the stream raises, it is not the archive's fault
            raise SourceFailed(f"reading {_placing.get()} failed: {first_line(exc) or type(exc).__name__}; nothing "
                               "was written; fetch it again") from exc
        if data is None:  # a non-blocking stream with nothing yet: not something fetch can use
            raise SourceFailed(f"reading {_placing.get()} failed: its stream is non-blocking; nothing was written")
        return data

    def read(self, size: int = -1) -> bytes:
        if self.head:
            if size is None or size < 0 or size >= len(self.head):
                data, self.head = self.head, b""
                return data
            data, self.head = self.head[:size], self.head[size:]
            return data
        return self._read(_CHUNK if size is None or size < 0 else size)

    def close(self) -> None:
        self.stream.close()


class _Source:
    """The archive's uncompressed bytes, read forward once, never more than ``limit`` of them."""

    def __init__(self, archive: Path | BinaryIO, limit: int):
        self.limit = limit
        self.count = 0
        self.ahead, self.pos = b"", 0
        stream = _open_raw(archive) if isinstance(archive, (str, os.PathLike)) else archive
        try:
            self.raw = _Raw(stream)
        except BaseException:
            stream.close()
            raise
        magic = self.raw.magic
        if magic[:2] == b"\x1f\x8b":
            self.stream = gzip.GzipFile(fileobj=self.raw, mode="rb")
        elif magic[:3] == b"BZh":
            self.stream = bz2.BZ2File(self.raw)
        elif magic == b"\xfd7zXZ\x00":
            self.stream = lzma.LZMAFile(self.raw)
        else:
            self.stream = self.raw

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _CHUNK
        if self.pos >= len(self.ahead):
            # The tar reader asks for 10 KiB at a time: decompressing that little per call costs more
            # in copies of the compressed input than the decompression itself. So decompress ahead
            # (_AHEAD, or the size asked: at most _READ_SLACK beyond what was handed out, so the
            # size checks still stop a bomb early) and hand it out in slices.
            try:
                self.ahead, self.pos = self.stream.read(max(size, _AHEAD)), 0
            except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
                raise DamagedArchive(_compression_problem(exc)) from None
        data = self.ahead[self.pos:self.pos + size]
        self.pos += len(data)
        self.count += len(data)
        if self.count > self.limit:
            raise ModelTooLarge(
                f"refusing {_placing.get()}: it unpacks to more than {ui.size(self.limit - _READ_SLACK)}, the limit set "
                f"by {MAX_MODEL_BYTES_ENV}; raise it if {_placing.get()} really is that large; nothing was written"
            )
        return data

    def drain(self) -> None:
        """Read to the end, so that the compression's own check (gzip's CRC) is verified. Only
        padding may follow the end-of-archive marker: a bomb hidden there is not decompressed."""
        start = self.count
        while self.read(_CHUNK):
            if self.count - start > _READ_SLACK:
                raise DamagedArchive(f"it holds more than {ui.size(_READ_SLACK)} after its end-of-archive marker")

    def close(self) -> None:
        self.raw.close()


def _compression_problem(exc: Exception) -> str:
    if isinstance(exc, EOFError):
        return "its compressed data ends early, as if cut off"
    return f"its compressed data is damaged: {exc}"


def _tar_entries(archive: Path | BinaryIO, cap: int) -> Iterator[_Entry]:
    source = _Source(archive, cap + _READ_SLACK)
    try:
        try:
            tar = tarfile.open(fileobj=source, mode="r|", tarinfo=_TarInfo, encoding="utf-8",
                               errors="surrogateescape")
        except _READ_ERRORS as exc:
            raise DamagedArchive(f"damaged tar header: {exc}") from None
        with tar:
            while True:
                try:
                    member = tar.next()
                except _READ_ERRORS as exc:
                    raise DamagedArchive(f"damaged tar header: {exc}") from None
                if member is None:
                    break
                yield _entry_of(tar, member)
        source.drain()
    finally:
        source.close()


def _entry_of(tar: tarfile.TarFile, member: tarfile.TarInfo) -> _Entry:
    end = member.offset_data + member.size
    entry = _Entry(member.name, "file", member.size, member.linkname, member.mode, member.mtime, end)
    if member.isreg():
        entry.data = lambda: _tar_data(tar, member)
    elif member.isdir():
        entry.kind = "dir"
    elif member.issym():
        entry.kind = "symlink"
    elif member.islnk():
        entry.kind = "hardlink"
    elif member.isdev():
        entry.kind = "device or pipe"
    else:
        entry.kind = f"entry of unknown type {member.type!r}"
    return entry


def _tar_data(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    try:
        data = tar.extractfile(member)
        while chunk := data.read(_CHUNK):
            yield chunk
    except _READ_ERRORS as exc:
        raise DamagedArchive(f"entry {_show(member.name)} cannot be read: {exc}") from None


def _folder_entries(folder: Path) -> Iterator[_Entry]:
    """A folder's tree as entries, in a stable order, never following a symlink."""
    total = 0
    first_name: dict[tuple[int, int], str] = {}  # hard-linked files: (device, inode) -> first name

    def walk(path: str, prefix: str) -> Iterator[_Entry]:
        nonlocal total
        with os.scandir(path) as found:
            children = sorted(found, key=lambda e: e.name)
        for child in children:
            name = prefix + child.name
            st = child.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                yield _Entry(name, "symlink", linkname=os.readlink(child.path), end=total)
            elif stat.S_ISDIR(st.st_mode):
                yield _Entry(name, "dir", mode=st.st_mode, mtime=st.st_mtime, end=total)
                yield from walk(child.path, name + "/")
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in first_name:
                    yield _Entry(name, "hardlink", linkname=first_name[key], end=total)
                    continue
                first_name[key] = name
                total += st.st_size
                yield _Entry(name, "file", st.st_size, "", st.st_mode, st.st_mtime, total,
                             lambda p=child.path, n=st.st_size: _file_data(p, n))
            else:
                yield _Entry(name, "device or pipe" if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)
                             or stat.S_ISBLK(st.st_mode) else "socket", end=total)

    try:
        yield from walk(str(folder), "")
    except OSError as exc:
        raise UsageError(f"cannot read the model's folder {folder}: {exc.strerror}") from None


def _file_data(path: str, size: int) -> Iterator[bytes]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        left = size  # never more than was counted, even if the file grows meanwhile
        while left > 0 and (chunk := os.read(fd, min(_CHUNK, left))):
            left -= len(chunk)
            yield chunk
    finally:
        os.close(fd)


# -- the tree being built in the staging folder ----------------------------------------------------


class _Outside(Exception):
    pass


class _TooDeep(Exception):
    pass


def _file_mode(mode: int) -> int:
    """As tarfile's ``data`` filter: no set-id bits, nobody else writes, the owner reads and
    writes, and others may execute only what the owner may."""
    mode &= 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


class _Names:
    """Paths as numbers (0: the top). A path's number is found from its folder's number and its
    last name in one step, so each beginning of a path is looked up in one step: a tuple of names
    as key would be hashed whole for each beginning, quadratic in a deep path and cubic over an
    archive of folders nested in each other. Each path also has the number of its folded form
    (see :func:`_fold_part`), computed when the path is first seen: a name is folded once, however
    many entries (or resolutions) pass through it."""

    def __init__(self) -> None:
        self.numbers_of: dict[tuple[int, str], int] = {}  # (folder's number, name) -> number
        self.name: list[str] = [""]  # number -> its last name
        self.folded_numbers: dict[tuple[int, str], int] = {}  # the same for the folded paths
        self.folded: list[int] = [0]  # number -> the number of its folded form
        # The last path numbered and its folder, with their numbers: entries come folder by
        # folder, so a path usually begins with one of them, or is one of their beginnings, and
        # only its other names are looked up one by one (comparing beginnings is one comparison
        # of tuples, not a step a name).
        self.recent: list[tuple[tuple[str, ...], list[int]]] = []

    def numbers(self, path: tuple[str, ...]) -> list[int]:
        """The numbers of the beginnings of ``path``: the top's first, its own last."""
        here = [0]
        for known, numbers in self.recent:
            if path[:len(known)] == known:
                here = numbers.copy()
                break
            if known[:len(path)] == path:
                here = numbers[:len(path) + 1]
                break
        for part in path[len(here) - 1:]:
            number = self.numbers_of.get((here[-1], part))
            if number is None:
                number = self.numbers_of[(here[-1], part)] = len(self.name)
                self.name.append(part)
                key = (self.folded[here[-1]], _fold_part(part))
                self.folded.append(self.folded_numbers.setdefault(key, len(self.folded_numbers) + 1))
            here.append(number)
        if path:
            self.recent = [(path, here), (path[:-1], here[:-1])]
        return here

    def child(self, folder: int | None, part: str, fold: bool) -> int | None:
        """The number of ``part`` in ``folder`` (folded numbers with ``fold``); None if never seen."""
        if folder is None:
            return None
        if fold:
            return self.folded_numbers.get((folder, _fold_part(part)))
        return self.numbers_of.get((folder, part))


def _resolve(names: _Names, links: Mapping[int, str], folder: list[int], link: str, fold: bool = False) -> None:
    """Follow ``link``, a symlink's target in the folder whose beginnings are numbered ``folder``
    (see :class:`_Names`), through the symlinks of ``links`` (number -> link text; folded numbers
    with ``fold``), as the kernel would, on the map alone. Raises _Outside or _TooDeep."""
    if link.startswith("/"):
        raise _Outside
    # The numbers of where the walk is and of its beginnings: never a symlink (each one is replaced
    # by its target at once); None below a name never seen (no symlink can be there). Each step
    # is one lookup, however deep the walk is.
    here: list[int | None] = list(map(names.folded.__getitem__, folder) if fold else folder)
    todo = collections.deque(link.split("/"))
    hops = steps = 0
    while todo:
        part = todo.popleft()
        steps += 1
        if steps > MAX_RESOLVE_PARTS:
            raise _TooDeep
        if part in ("", "."):
            continue
        if part == "..":
            if len(here) == 1:
                raise _Outside
            here.pop()
            continue
        number = names.child(here[-1], part, fold)
        target = links.get(number) if number is not None else None
        if target is not None:
            hops += 1
            if hops > MAX_LINK_HOPS or target.startswith("/"):
                raise _TooDeep if hops > MAX_LINK_HOPS else _Outside
            todo.extendleft(reversed(target.split("/")))
            continue
        here.append(number)


_LINK_ROUNDS = 8


def refused_links(links: list[tuple[tuple[str, ...], str]]) -> set[tuple[str, ...]]:
    """The symlinks of a tree about to be unpacked, ``(path, link text)`` in the archive's order,
    that :func:`place` would refuse (a link that leads out, maybe only through another link, or
    through too many): without them, the rest unpacks. Checked as :class:`_Tree` checks them, as
    each one comes and on the complete map (plain, and folded as on macOS); leaving a link out
    changes where the others lead, so this goes again until none is refused, at most
    ``_LINK_ROUNDS`` times (each costs what the extractor's own checks cost: a hostile chain of
    links cannot make it quadratic; what is left then is refused whole by the extractor)."""
    names = _Names()
    numbered = [(path, names.numbers(path), link) for path, link in links]
    refused: set[tuple[str, ...]] = set()
    for _ in range(_LINK_ROUNDS):
        found: set[tuple[str, ...]] = set()
        plain: dict[int, str] = {}
        folded: dict[int, str] = {}
        # Paths that are one when case is ignored: the last one set is the link there, as in
        # _Tree; leaving it out brings back the one before it (not a rebuild of the whole map).
        same: dict[int, dict[int, str]] = {}

        def leads_out(numbers: list[int], link: str) -> bool:
            try:
                _resolve(names, plain, numbers[:-1], link)
                _resolve(names, folded, numbers[:-1], link, fold=True)
            except (_Outside, _TooDeep):
                return True
            return False

        kept = [item for item in numbered if item[0] not in refused]
        for path, numbers, link in kept:
            number = numbers[-1]
            fnumber = names.folded[number]
            plain[number] = folded[fnumber] = same.setdefault(fnumber, {})[number] = link
            if leads_out(numbers, link):  # as it comes: the archive's later links are not there yet
                found.add(path)
                del plain[number], same[fnumber][number]
                if same[fnumber]:
                    folded[fnumber] = next(reversed(same[fnumber].values()))
                else:
                    del folded[fnumber]
        found.update(path for path, numbers, link in kept if path not in found and leads_out(numbers, link))
        if not found:
            break
        refused |= found
    return refused


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Tree:
    """The model as it is being written into ``root`` (a fresh, empty folder), with its lexical
    map: every path written, and what it is. Nothing on the filesystem is ever asked what a path
    is, so nothing there can lie. Paths are numbered (:class:`_Names`): checking an entry costs
    steps in proportion to its name, never to its name's length squared."""

    def __init__(self, root: Path | None, target: Path, cap: int, space: FreeSpace):
        self.target, self.cap, self.space = target, cap, space
        self.names = _Names()
        self.kinds: dict[int, str] = {0: "dir"}  # number -> "dir", "file" or "symlink"
        self.folded_kinds: dict[int, str] = {}  # folded number -> the same
        # Folders that are recorded as folders all the way down from the top: an entry in one of
        # them passes through no file or symlink without checking each of its beginnings again
        # (a recorded folder never becomes anything else).
        self.sound: set[int] = {0}
        self.links: dict[tuple[str, ...], tuple[list[int], str]] = {}  # path -> (its numbers, link text)
        self.links_at: dict[int, str] = {}  # number -> link text
        self.folded_links: dict[int, str] = {}  # folded number -> link text
        self._resolved: set[tuple] = set()  # resolve()'s successes
        self.dir_times: list[tuple[list[int], float]] = []
        self.needed = 0
        self.count = 0
        # No root: the map alone, nothing written (:class:`_Plan`).
        self.root_fd = -1 if root is None else os.open(root, _DIR_FLAGS)
        # The folder last written into, kept open (see folder()): its numbers, and the device and
        # inode of it and of each folder above it.
        self._fd = -1 if root is None else os.dup(self.root_fd)
        self._at: list[int] = [0]
        self._ids: list[tuple[int, int]] = [] if root is None else [self._id(self._fd)]

    def close(self) -> None:
        for fd in (self._fd, self.root_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self.root_fd = -1

    def refuse(self, entry_name: str, what: str) -> UnsafeArchive:
        return UnsafeArchive(f"refusing {_placing.get()}: entry {_show(entry_name)} {what}; nothing was written "
                             "(do not unpack this archive by other means)")

    # -- names ---------------------------------------------------------------------------------

    def check_text(self, name: str, entry_name: str, what: str = "name") -> None:
        """What any name or link text must be: valid UTF-8, no NUL, shorter than a path."""
        try:
            encoded = name.encode("utf-8")
        except UnicodeEncodeError:
            raise self.refuse(entry_name, f"has a {what} that is not valid UTF-8") from None
        if "\x00" in name:
            raise self.refuse(entry_name, f"has a NUL character in its {what}")
        if len(encoded) >= PATH_MAX:
            raise self.refuse(entry_name, f"has a {what} of {len(encoded)} bytes, more than a path may have")

    def parts(self, name: str, entry_name: str) -> tuple[str, ...]:
        """``name`` as path components, or a refusal."""
        self.check_text(name, entry_name)
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[/\\]", name):
            raise self.refuse(entry_name, "has an absolute path")
        split = name.split("/")
        if ".." in (re.split(r"[/\\]", name) if "\\" in name else split):
            raise self.refuse(entry_name, "climbs out with '..'")
        # Empty and '.' components left out (a folder's trailing '/', a leading './'), a name at a
        # time but in C: this runs on every name, whose length the archive chooses.
        parts = tuple(filter(".".__ne__, filter(None, split)) if "" in split or "." in split else split)
        # A name that short, or names that short (in characters, each at most 4 bytes), are no longer
        # than NAME_MAX: checked whole, not a name at a time.
        long = len(name.encode("utf-8")) > NAME_MAX and 4 * max(map(len, parts), default=0) > NAME_MAX
        for part in parts if long else ():
            if len(part.encode("utf-8")) > NAME_MAX:
                raise self.refuse(entry_name, f"has a path component of {len(part.encode('utf-8'))} bytes, "
                                              f"more than a file name may have ({NAME_MAX})")
        return parts

    def resolve(self, folder: list[int], link: str, fold: bool = False) -> None:
        """Follow ``link``, a symlink's target in ``folder`` (the numbers of its beginnings), through
        the archive's symlinks, as the kernel would, but on the archive's own map. With ``fold``,
        as a filesystem that ignores case and Unicode normalization would (macOS): 'S' is the
        symlink 's'. Raises _Outside or _TooDeep."""
        links = self.folded_links if fold else self.links_at
        key = (folder[-1], link, fold, len(links))  # the map only grows: its size dates an answer
        if key not in self._resolved:
            _resolve(self.names, links, folder, link, fold)
            self._resolved.add(key)

    def check_link(self, numbers: list[int], link: str, entry_name: str) -> None:
        try:
            self.resolve(numbers[:-1], link)
            self.resolve(numbers[:-1], link, fold=True)
        except _Outside:
            raise self.refuse(entry_name, f"is a symlink to {_show(link)}, which leads outside the target") from None
        except _TooDeep:
            raise self.refuse(entry_name, f"is a symlink to {_show(link)}, which goes through more than "
                                          f"{MAX_LINK_HOPS} symlinks or {MAX_RESOLVE_PARTS} path components "
                                          "(a loop?)") from None

    # -- entries -------------------------------------------------------------------------------

    def add(self, entry: _Entry) -> None:
        path = self.parts(entry.name, entry.name)
        if entry.kind not in ("file", "dir", "symlink", "hardlink"):
            raise self.refuse(entry.name, f"is a {entry.kind}")
        if not path:
            if entry.kind == "dir":
                return  # "./": the target folder itself
            raise self.refuse(entry.name, "names the target folder itself")
        numbers = self.names.numbers(path)
        folded = self.names.folded
        for i in range(1, len(path) if numbers[-2] not in self.sound else 1):
            kind = self.kinds.get(numbers[i]) or self.folded_kinds.get(folded[numbers[i]])
            if kind == "symlink":
                raise self.refuse(entry.name, f"passes through the symlink {_show('/'.join(path[:i]))}")
            if kind == "file":
                raise self.refuse(entry.name, f"passes through {_show('/'.join(path[:i]))}, which is a file")
        before = self.kinds.get(numbers[-1])
        kind = "file" if entry.kind == "hardlink" else entry.kind
        if before is not None and not (before == kind == "dir" or before == "file" == entry.kind):
            raise self.refuse(entry.name, f"appears twice in the archive (as a {before}, then as a {entry.kind})")
        self.check_size(entry)
        try:
            if entry.kind == "file":
                self.write_file(path, numbers, entry, replace=before == "file")
            elif entry.kind == "dir":
                self.write_dir(path, numbers, entry)
            elif entry.kind == "symlink":
                self.write_symlink(path, numbers, entry)
            else:
                self.write_hardlink(path, numbers, entry)
        except OSError as exc:
            raise UsageError(f"cannot unpack entry {_show(entry.name)} beside {self.target}: "
                             f"{exc.strerror or exc}; nothing was written") from None
        self.set_kind(numbers[-1], kind, numbers[-2])

    def set_kind(self, number: int, kind: str, folder: int) -> None:
        """Record what the path numbered ``number``, in the folder numbered ``folder``, is."""
        self.kinds[number] = kind
        if kind == "dir" and folder in self.sound:
            self.sound.add(number)
        folded = self.names.folded[number]
        # On a filesystem that ignores case, 'A' and 'a' are one: the stricter kind is kept.
        if kind != "dir" or folded not in self.folded_kinds:
            self.folded_kinds[folded] = kind

    def check_size(self, entry: _Entry) -> None:
        if entry.end > self.cap:
            raise over_the_cap(self.cap, entry.name)
        block = self.space.block
        self.needed += -(-entry.size // block) * block if entry.kind == "file" else (
            block if entry.kind in ("dir", "symlink") else 0)
        self.count += 1
        room = self.space.bytes - FREE_SPACE_MARGIN
        if self.needed > room or (self.space.inodes is not None and self.count > self.space.inodes):
            raise ModelTooLarge(
                f"refusing {_placing.get()}: it needs more than the {ui.size(max(room, 0))} free on the filesystem "
                f"of {self.target.parent} (at entry {_show(entry.name)}); free some space there or fetch "
                "into a folder on another filesystem; nothing was written"
            )

    @staticmethod
    def _id(fd: int) -> tuple[int, int]:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino

    def _enter(self, fd: int) -> None:
        os.close(self._fd)
        self._fd = fd

    def folder(self, numbers: list[int], create: bool = True) -> int:
        """A descriptor of the folder whose beginnings are numbered ``numbers``, made if missing;
        no symlink is ever followed. It stays open, valid until the next call (the caller does not
        close it): entries come folder by folder, so going from the last folder to the next costs a
        step or two, not one open per level from the top (N folders nested in each other cost
        N²/2 opens). Going up is through '..', checked to be the folder that was opened coming
        down (same device and inode): never anywhere else, even if a folder was moved meanwhile."""
        at = self._at
        # The beginnings shared with the folder open now (the top always is): one comparison when
        # one folder holds the other, as for the next entry or a folder's time (see finish()).
        if numbers[:len(at)] == at:
            common = len(at)
        elif at[:len(numbers)] == numbers:
            common = len(numbers)
        else:
            common = 1
            while at[common] == numbers[common]:
                common += 1
        if len(at) - common >= common:  # climbing up costs more than coming down from the top
            self._enter(os.dup(self.root_fd))
            del at[1:], self._ids[1:]
        while len(at) > common:
            self._enter(os.open("..", _DIR_FLAGS, dir_fd=self._fd))
            at.pop()
            self._ids.pop()
            if self._id(self._fd) != self._ids[-1]:
                raise OSError(errno.ESTALE, "a folder of the model being unpacked was moved meanwhile")
        while len(at) < len(numbers):
            number = numbers[len(at)]
            part = self.names.name[number]
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=self._fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o777, dir_fd=self._fd)
                if number not in self.kinds:
                    self.set_kind(number, "dir", at[-1])
                inner = os.open(part, _DIR_FLAGS, dir_fd=self._fd)
            self._enter(inner)
            at.append(number)
            self._ids.append(self._id(inner))
        return self._fd

    def write_dir(self, path: tuple[str, ...], numbers: list[int], entry: _Entry) -> None:
        self.folder(numbers)
        if entry.mtime is not None:
            self.dir_times.append((numbers, entry.mtime))

    def write_file(self, path: tuple[str, ...], numbers: list[int], entry: _Entry, replace: bool) -> None:
        parent = self.folder(numbers[:-1])
        if replace:  # a later copy of the same name wins, as with tar
            os.unlink(path[-1], dir_fd=parent)
        fd = os.open(path[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            for chunk in entry.data() if entry.data else ():
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fchmod(fd, _file_mode(entry.mode))
            _set_mtime(fd, entry.mtime)
        finally:
            os.close(fd)

    def write_symlink(self, path: tuple[str, ...], numbers: list[int], entry: _Entry) -> None:
        link = entry.linkname
        if not link:
            raise self.refuse(entry.name, "is a symlink to nothing")
        self.check_text(link, entry.name, "link target")
        # Resolved with itself in the map, as the kernel would: x -> x loops.
        self.links[path] = (numbers, link)
        self.links_at[numbers[-1]] = link
        self.folded_links[self.names.folded[numbers[-1]]] = link
        self.check_link(numbers, link, entry.name)
        os.symlink(link, path[-1], dir_fd=self.folder(numbers[:-1]))

    def write_hardlink(self, path: tuple[str, ...], numbers: list[int], entry: _Entry) -> None:
        self.check_text(entry.linkname, entry.name, "link target")
        try:
            source = self.parts(entry.linkname, entry.name)
        except UnsafeArchive:
            raise self.refuse(entry.name, f"is a hard link to {_show(entry.linkname)}, which leads outside "
                                          "the target") from None
        source_numbers = self.names.numbers(source)
        if not source or self.kinds.get(source_numbers[-1]) != "file":
            raise self.refuse(entry.name, f"is a hard link to {_show(entry.linkname)}, which is not a file "
                                          "that comes earlier in the archive")
        source_dir = os.dup(self.folder(source_numbers[:-1], create=False))  # folder() moves on next
        try:
            os.link(source[-1], path[-1], src_dir_fd=source_dir, dst_dir_fd=self.folder(numbers[:-1]),
                    follow_symlinks=False)
        finally:
            os.close(source_dir)

    def finish(self) -> None:
        """Check every symlink again on the complete map (a symlink that came later may change
        where an earlier one leads), then give folders their times."""
        for path, (numbers, link) in self.links.items():
            self.check_link(numbers, link, "/".join(path))
        for numbers, mtime in reversed(self.dir_times):
            _set_mtime(self.folder(numbers, create=False), mtime)


class _Plan(_Tree):
    """:class:`_Tree`'s rules on names alone, nothing written: a listing checked whole before
    anything of it is downloaded. Its names are distinct objects, so two that land on one path
    are a clash (in an archive, a later copy of a name replaces the earlier one; here one object
    would silently be lost)."""

    def __init__(self, noun: str, prefix: str):
        super().__init__(None, Path("."), 0, FreeSpace(bytes=0, inodes=None, block=1))
        self.noun, self.prefix = noun, prefix

    def refuse(self, entry_name: str, what: str) -> UnsafeArchive:
        return UnsafeArchive(f"refusing {_placing.get()}: {self.noun} {_show(self.prefix + entry_name)} {what}; nothing "
                             "was downloaded or written (do not fetch these files by other means)")

    def check_size(self, entry: _Entry) -> None:
        pass  # the core checks the cap and the free space as the files arrive, as for any archive

    def write_dir(self, path: tuple[str, ...], numbers: list[int], entry: _Entry) -> None:
        self.implied_folders(numbers)

    def write_file(self, path: tuple[str, ...], numbers: list[int], entry: _Entry, replace: bool) -> None:
        if replace:
            raise self.refuse(entry.name, f"lands on {_show('/'.join(path))}, as an earlier {self.noun} does")
        self.implied_folders(numbers[:-1])

    def implied_folders(self, numbers: list[int]) -> None:
        known = len(numbers) - 1
        while numbers[known] not in self.sound:  # the folders above a sound one are sound too
            known -= 1
        for i in range(known + 1, len(numbers)):  # as _Tree.folder() records the folders it makes
            if numbers[i] not in self.kinds:
                self.set_kind(numbers[i], "dir", numbers[i - 1])


def check_listing(names: Iterable[tuple[str, int]], *, noun: str, prefix: str = "") -> None:
    """Refuse, before anything is downloaded, a model that arrives as a listing of files fetched
    one by one (an object store's keys under the model's prefix): ``names`` are the names relative
    to the model's folder, with their sizes, in the order they will be written. Each name is
    checked as fahr checks an archive entry (README, "Fetch writes into the folder you named"): no
    absolute path, no ``..``, no passing through a file, the length limits; a name ending in ``/``
    is a folder (the empty "folder marker" an S3 console makes); and two names that land on one
    path are refused (an archive lets the later one win; here a file would be lost).

    A refusal raises :class:`UsageError` (exit 2), one line naming the item as ``noun`` and
    ``prefix + name``. A driver then hands the files over as a stream of an archive of exactly
    these names, in this order, which the core unpacks under the same rules, the size cap and the
    free space included.
    """
    plan = _Plan(noun, prefix)
    for name, size in names:
        folder = name.endswith("/") or not name
        plan.add(_Entry(name, "dir" if folder else "file", size))
        if folder and size:
            raise plan.refuse(name, f"ends in '/' (a folder marker) but holds {size} bytes")


def _fold_part(part: str) -> str:
    """A name as a filesystem that ignores case and Unicode normalization sees it."""
    return unicodedata.normalize("NFD", part).casefold()


def _set_mtime(fd: int, mtime: float | None) -> None:
    if mtime is None:
        return
    try:
        os.utime(fd, (mtime, mtime))
    except (OSError, OverflowError, ValueError):
        pass  # a time the filesystem cannot store is no reason to refuse a model


def _unpack(entries: Iterator[_Entry], staging: Path, target: Path, cap: int) -> None:
    tree = _Tree(staging, target, cap, free_space(staging))
    try:
        for entry in entries:
            tree.add(entry)
        tree.finish()
    finally:
        tree.close()
        if hasattr(entries, "close"):
            entries.close()


def _copy(source: Path, into: Path, target: Path) -> None:
    space = free_space(into.parent)
    size = source.stat().st_size
    if size > space.bytes - FREE_SPACE_MARGIN:
        raise ModelTooLarge(f"refusing {_placing.get()}: {source.name} ({ui.size(size)}) does not fit in the "
                            f"{ui.size(max(space.bytes - FREE_SPACE_MARGIN, 0))} free on the filesystem of "
                            f"{target.parent}; free some space there or fetch into another filesystem")
    try:
        shutil.copyfile(source, into)
    except OSError as exc:
        raise UsageError(f"cannot copy {source.name} beside {target}: {exc.strerror or exc}; "
                         "nothing was written") from None


def _write_stream(stream: BinaryIO, into: Path, target: Path) -> None:
    """The archive as it arrives, written to ``into`` (kept unextracted): the free space is
    checked as it grows, the size being unknown in advance."""
    room = free_space(into.parent).bytes - FREE_SPACE_MARGIN
    raw, written = _Raw(stream), 0
    try:
        with open(into, "xb") as out:
            while chunk := raw.read(_CHUNK):
                written += len(chunk)
                if written > room:
                    raise ModelTooLarge(f"refusing {_placing.get()}: {into.name} does not fit in the "
                                        f"{ui.size(max(room, 0))} free on the filesystem of {target.parent}; free "
                                        "some space there or fetch into another filesystem; nothing was written")
                out.write(chunk)
    except OSError as exc:
        raise UsageError(f"cannot write {into.name} beside {target}: {exc.strerror or exc}; "
                         "nothing was written") from None


def _stream_name(stream: BinaryIO) -> str:
    """The file name a stream's archive is kept as (``--no-extract``) and named by in messages."""
    name = getattr(stream, "name", None)
    name = os.path.basename(name) if isinstance(name, str) else ""
    return name if name not in ("", ".", "..") and "\x00" not in name else "model.tar.gz"


def is_stream(source) -> bool:
    """Whether a fetch hook's answer is a readable stream (rather than a path)."""
    return not isinstance(source, (str, os.PathLike)) and callable(getattr(source, "read", None))


def place(source: Path | BinaryIO, target: Path, *, extract: bool, overwrite: bool, what: str = "model") -> Path:
    """Move a downloaded model into ``target``: extracted (safely), or the archive as it is.

    ``source`` is a tar archive (gzip, bzip2, xz or none), or a folder of files (a job whose
    output was not compressed), or a readable binary stream of a tar archive: it is then read
    once, forward, as it arrives (extraction overlaps the download), under the same rules, and
    closed at the end. Nothing is written to ``target`` unless the whole model is ready.
    ``what="output"``: the job's output.tar.gz, under the same rules and caps (its refusals
    name it so).
    """
    token = _placing.set(_NOUNS[what])
    try:
        return _place(source, target, extract=extract, overwrite=overwrite)
    finally:
        _placing.reset(token)


def _place(source: Path | BinaryIO, target: Path, *, extract: bool, overwrite: bool) -> Path:
    target = Path(target).absolute()
    stream = source if is_stream(source) else None
    try:
        if stream is None:
            source = Path(source)
        name = _stream_name(stream) if stream is not None else source.name
        check_target(target, overwrite)
        cap = max_model_bytes() if extract or (stream is None and source.is_dir()) else 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.fahr-", dir=target.parent))
        except OSError as exc:
            raise UsageError(f"cannot create {target}: {exc.strerror}; choose another target directory") from None
        try:
            if stream is None and source.is_dir():
                _unpack(_folder_entries(source), staging, target, cap)
            elif extract:
                try:
                    _unpack(_tar_entries(source, cap), staging, target, cap)
                except DamagedArchive as exc:
                    raise DamagedArchive(f"refusing {_placing.get()}: {name} is not a readable tar archive "
                                         f"({exc.message}); nothing was written; fetch it again, or check the "
                                         "job that wrote it") from None
            elif stream is not None:
                _write_stream(stream, staging / name, target)
            else:
                _copy(source, staging / source.name, target)
            umask = os.umask(0)
            os.umask(umask)
            staging.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the model folder is an ordinary one
            _swap_in(staging, target)
        finally:
            remove_tree(staging)
    except BaseException:
        if stream is not None:
            # Stops a download still running (a refusal mid-stream) at once; the refusal is the news.
            with contextlib.suppress(Exception):
                stream.close()
        raise
    if stream is not None:
        stream.close()
    return target


def remove_tree(path: Path) -> None:
    """Remove ``path`` and all it holds, as far as possible (errors ignored), never following a
    symlink. Unlike ``shutil.rmtree``, which recurses once per level and so raises
    ``RecursionError`` on a model about 1,000 folders deep (its names stay under ``PATH_MAX``),
    this walks with one open folder at a time, going back up through ``..``: no depth limit, no
    path longer than a name, each folder read once."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)  # a file or a symlink: removed, never followed
        return
    names: list[str] = []  # the folders entered below ``path``, one per level
    pending = [_empty_but_folders(fd)]  # per level: the folders still to enter
    try:
        while True:
            if pending[-1]:
                name = pending[-1].pop()
                try:
                    inner = os.open(name, flags, dir_fd=fd)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=fd)
                    continue
                os.close(fd)
                fd = inner
                names.append(name)
                pending.append(_empty_but_folders(fd))
                continue
            pending.pop()
            if not names:
                break
            parent = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = parent
            with contextlib.suppress(OSError):
                os.rmdir(names.pop(), dir_fd=fd)
    except OSError:
        pass  # as far as possible
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _empty_but_folders(fd: int) -> list[str]:
    """Remove what the open folder ``fd`` holds but its folders; their names."""
    folders = []
    try:
        with os.scandir(fd) as found:
            for entry in found:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.name)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.name, dir_fd=fd)
    except OSError:
        pass
    return folders


def _swap_in(staging: Path, target: Path) -> None:
    if target.exists():
        old = staging.with_name(staging.name + "-old")  # unique, as the staging folder's name is
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(old, target)
            raise
        remove_tree(old)
    else:
        os.replace(staging, target)
