"""A job's output as bytes, in bounded pieces: what ``fit``, ``wait`` and ``logs`` stream.

A job may print gigabytes, or one line of many megabytes. fahr passes its output through
byte for byte (like ``docker logs``) and never holds more than a bounded amount of it: the
output is cut into pieces that end at a newline, or into slices of a line longer than
:data:`MAX_PIECE`, and the work is linear in the bytes (each byte is scanned and copied a fixed
number of times, whatever the chunks it comes in).
"""

from __future__ import annotations

import collections
from typing import BinaryIO, Iterator

MAX_PIECE = 64 * 1024
"""The longest piece of a line held before it is passed on (a longer line goes in slices)."""

READ_SIZE = 256 * 1024
"""How much of a saved log is read at a time."""


class LineSplitter:
    """Cuts a byte stream, fed in chunks of any size, into pieces.

    Each piece returned by :meth:`feed` ends with ``b"\\n"`` (the end of a line) or is a slice of
    at least ``limit`` bytes of a line that goes on; :meth:`end` returns the rest (a last line
    without newline, or ``b""``). Joined, the pieces are the stream, byte for byte. What it holds
    between calls is under ``limit`` bytes plus the last chunk.
    """

    def __init__(self, limit: int = MAX_PIECE):
        self.limit = limit
        self._parts: list[bytes] = []  # the unfinished line: joined once when it ends, never re-scanned
        self._size = 0

    @property
    def held(self) -> int:
        """How many bytes of an unfinished line are held."""
        return self._size

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        *lines, rest = chunk.split(b"\n")  # only the new chunk is scanned
        pieces = []
        if lines:
            first = lines[0] + b"\n"
            if self._parts:
                self._parts.append(first)
                first = b"".join(self._parts)
                self._parts, self._size = [], 0
            pieces.append(first)
            pieces.extend(line + b"\n" for line in lines[1:])
        if rest:
            self._parts.append(rest)
            self._size += len(rest)
            if self._size >= self.limit:  # output without newlines: pass it on in slices
                pieces.append(b"".join(self._parts))
                self._parts, self._size = [], 0
        return pieces

    def end(self) -> bytes:
        rest = b"".join(self._parts)
        self._parts, self._size = [], 0
        return rest


def pieces(chunks, limit: int = MAX_PIECE) -> Iterator[bytes]:
    """The pieces (see :class:`LineSplitter`) of a stream given as an iterable of chunks."""
    splitter = LineSplitter(limit)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    rest = splitter.end()
    if rest:
        yield rest


def read_chunks(handle: BinaryIO, size: int = READ_SIZE) -> Iterator[bytes]:
    """A file's bytes, ``size`` at a time."""
    while chunk := handle.read(size):
        yield chunk


class Tail:
    """The last bytes of a stream (at least ``keep``, at most ``keep`` plus one chunk): what a
    failure message quotes of a job's output, whatever its size."""

    def __init__(self, keep: int = 4 * MAX_PIECE):
        self.keep = keep
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        while self._size - len(self._chunks[0]) >= self.keep:
            self._size -= len(self._chunks.popleft())

    def lines(self, count: int) -> list[str]:
        """The last ``count`` lines kept (decoded, invalid UTF-8 replaced), without newlines."""
        text = b"".join(self._chunks).decode("utf-8", "replace")
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        return [line.rstrip("\r") for line in lines[-count:]]
