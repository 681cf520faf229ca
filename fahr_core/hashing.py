"""The sha256 of a file as it is read: one read serves both the copy (into a tar) and its hash."""

from __future__ import annotations

import hashlib
from typing import BinaryIO

CHUNK = 1 << 20


class HashingReader:
    """A file object read through (by ``tarfile``, say), hashing the bytes it hands over: first
    ``head`` (what the caller already read of it, e.g. for the secret scan), then the rest of
    ``handle``."""

    def __init__(self, handle: BinaryIO, head: bytes = b"") -> None:
        self.handle = handle
        self.head = head
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        if self.head:
            # tarfile expects whole blocks: the head's rest and the file's next bytes together.
            take = len(self.head) if size < 0 else min(size, len(self.head))
            data, self.head = self.head[:take], self.head[take:]
            if size < 0 or take < size:
                data += self.handle.read(-1 if size < 0 else size - take)
        else:
            data = self.handle.read(size)
        self.sha256.update(data)
        return data

    def hexdigest(self) -> str:
        return self.sha256.hexdigest()


def file_digest(handle: BinaryIO, head: bytes = b"") -> str:
    """The sha256 (hex) of ``head`` and the rest of ``handle``, read in chunks of :data:`CHUNK`."""
    reader = HashingReader(handle, head)
    while reader.read(CHUNK):
        pass
    return reader.hexdigest()


def hash_files(path) -> list[tuple[str, int, str, "Path"]]:
    """The files of a local input (a folder, or one file) with their sha256, for a driver that
    uploads it content-addressed: ``(name, size, sha256, path)`` each, sorted by name, a folder's
    files named by their path under it (``/``-separated; links to files followed), a single
    file by its own name.

    A file is read (in chunks: memory stays bounded) only when its stat (size, mtime, ctime,
    inode) changed since fahr last hashed it: the hashes are kept in fahr's cache folder as the
    build context's are (``fahr_core.image.cache``; a record that cannot be trusted or read is
    ignored, never an error), so an unchanged folder costs a walk of ``stat`` calls.
    (Added in plugin API 1.6.)
    """
    import os
    import time
    from pathlib import Path

    from fahr_core.image.cache import ContextHashes, read_head

    path = Path(path)
    if path.is_file():
        listed = [(path.name, path)]
    else:
        listed = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
    # One record per input (a single file's own): never that of a folder that is also a build
    # context, whose entries it would crowd out.
    hashes = ContextHashes(path.resolve())
    found = []
    for name, file in listed:
        with open(file, "rb") as handle:
            before = os.fstat(handle.fileno())
            known = hashes.known(name, before)
            if known is None:
                started = time.time_ns()
                head, kind = read_head(handle)  # the same verdict the build context's record holds
                digest = file_digest(handle, head)
                hashes.remember(name, before, os.fstat(handle.fileno()), digest, started, kind)
            else:
                digest = known[0]
        found.append((name, before.st_size, digest, file))
    hashes.save()
    return found
