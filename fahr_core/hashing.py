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
