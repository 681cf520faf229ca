"""Run a training image under the SageMaker container contract on a Docker engine.

This is the local driver's engine room, and the SageMaker emulator of the tests runs jobs with
it too, so both stand on one implementation of the container contract (docs/contract.md):

- each host ``algo-1`` … ``algo-N`` is a container started as ``IMAGE train``; with several hosts
  they share a private network on which each resolves the others by name;
- ``/opt/ml/input/config/{hyperparameters,inputdataconfig,resourceconfig}.json`` and the
  channels' files under ``/opt/ml/input/data/<channel>/`` are copied into the container before it
  starts; after it ends ``/opt/ml/model`` and ``/opt/ml/output/data`` are copied out and packed as
  ``model.tar.gz`` and ``output.tar.gz`` (hosts merged), and ``/opt/ml/output/failure`` becomes
  the failure reason;
- with checkpointing configured (``ContainerJob.checkpoints``), ``/opt/ml/checkpoints`` holds a
  local folder's files at start and :meth:`ContractRun.copy_out` brings it back; without it, the
  folder does not exist, as on SageMaker.

Files move in and out with the engine's archive API rather than bind mounts: this works with a
remote engine (``DOCKER_HOST``), never leaves root-owned files in the user's folders, and keeps
``/opt/ml`` an ordinary folder of the container as on SageMaker.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import queue
import re
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from fahr_core.errors import EnvironmentProblem, UsageError
from fahr_core.jobfolder import Folder
from fahr_core.values import COMPLETED, FAILED, OUT_OF_MEMORY, PLATFORM, USER
from fahr_core.joblog import Tail

LABEL_JOB = "fahr.job"
LABEL_HOST = "fahr.host"
# The local driver's checkpoint policy (its marker, and the hosts' copies merged back into a
# folder) lives in fahr_core.drivers.local.checkpoints; these names stay importable from here.
_CHECKPOINT_NAMES = frozenset({"CHECKPOINT_MARKER", "MARKER_TEXT", "CopiedBack", "CheckpointMerge",
                               "checkpoint_manifest"})
FAILURE_REASON_MAX = 1024
#: The start of the failure reason of a host killed for its memory: SageMaker's own word for it.
OUT_OF_MEMORY_ERROR = "OutOfMemoryError"
_TAIL_LINES = 10
_LAUNCHER_LINES = 10  # read beyond the tail: the launcher's frames (fahr_core.report) are left out of it


@dataclass
class ContainerJob:
    """One training job to run on the engine."""

    job_name: str
    image: str
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, Path] = field(default_factory=dict)
    """Channel name -> a local folder (or file) whose contents the container sees."""
    environment: Mapping[str, str] = field(default_factory=dict)
    execution_environment: str = "local"
    """The value of FAHR_EXECUTION_ENVIRONMENT in the container."""
    instance_count: int = 1
    instance_type: str = "local"
    gpus: str = ""
    """'' for none, 'all', a count ('2') or device ids ('0,1')."""
    stop_timeout: int = 10
    job_arn: str = ""
    """The job's ARN as TRAINING_JOB_ARN; empty: the variable is not set (no fake ARN)."""
    content_types: Mapping[str, str] = field(default_factory=dict)
    """Channel name -> the ContentType the job was given for it; a channel without one has none
    in inputdataconfig.json, as on SageMaker."""
    checkpoints: Path | None = None
    """A local folder whose contents the hosts find in ``checkpoint_dir`` at start; None: no
    checkpointing, and no ``checkpoint_dir`` in the container (as on SageMaker without
    CheckpointConfig)."""
    checkpoint_dir: str = "/opt/ml/checkpoints"
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Variable name -> value, copied into each host as a file of ``fahr_core.launcher.SECRETS_DIR``
    (0600, its folder 0700) before it starts: never in the container's configuration (its
    environment, mounts, command), which ``docker inspect`` shows. fahr's launcher reads and
    removes them; the container's files go with the container."""
    host_network: bool = False
    """Run the (single) host on the engine's host network: the SageMaker emulator's jobs reach
    the emulated AWS on loopback that way."""
    memory: int = 0
    """Each host's memory limit in bytes (the engine's ``--memory``, no swap beyond it); 0: none.
    A host killed for going past it failed with ``out_of_memory``, its reason naming the limit."""
    cpus: float = 0.0
    """Each host's share of the machine's CPUs (the engine's ``--cpus``); 0: no limit."""

    @property
    def hosts(self) -> list[str]:
        return [f"algo-{i}" for i in range(1, self.instance_count + 1)]

    @property
    def network_name(self) -> str:
        return f"fahr-{self.job_name}"

    def container_name(self, host: str) -> str:
        return f"{self.job_name}-{host}"


@dataclass
class Outcome:
    """How the containers ended."""

    status: str
    failure_reason: str = ""
    exit_codes: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    ended_at: float = 0.0
    failure_kind: str = ""
    """Why it failed (fahr_core.values.FAILURE_KINDS): ``out_of_memory``, ``platform`` when a
    host never started or its container is gone, else ``user``; '' when it completed."""


OutputSink = Callable[[str, bytes], None]  # (host, a piece of its output: see ContractRun.follow)


class EngineLost(EnvironmentProblem):
    """The Docker engine stopped answering (or failed) in the middle of a job.

    The job itself may well be fine: its containers run on in the engine. The caller says how
    to reconcile it once the engine is back.
    """


def is_engine_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the engine went away or broke down, rather than a bug or a local
    file problem: the connection refused, reset or cut in the middle of a stream, a timeout, or
    the engine answering with a server error."""
    if isinstance(exc, EngineLost):
        return True
    import requests
    import urllib3
    from docker import errors as docker_errors

    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.Timeout, urllib3.exceptions.HTTPError, ConnectionError,
                        TimeoutError)):
        return True
    return isinstance(exc, docker_errors.APIError) and exc.is_server_error()


def engine_lost(exc: BaseException, doing: str) -> EngineLost:
    """``exc`` (an engine error) as one line: what fahr was doing and what the engine said."""
    if isinstance(exc, EngineLost):
        return exc
    explanation = getattr(exc, "explanation", None)
    detail = str(explanation or exc).splitlines()[0][:200] if str(explanation or exc) else ""
    lost = EngineLost(f"lost the Docker engine while {doing} ({type(exc).__name__}: {detail})")
    lost.__cause__ = exc
    return lost


def _is_gone(exc: BaseException) -> bool:
    """A container or network removed meanwhile: nothing left to do with it."""
    from docker import errors as docker_errors

    return isinstance(exc, docker_errors.NotFound)


_FRAME_HEADER = 8  # the engine's multiplexed stream: a byte for stdout/stderr, 3 zeros, a big-endian length
_READ_SIZE = 64 * 1024
_ATTACH_HOLD = 16 * 1024 * 1024  # what an attached host's output may pile up unread before it is let go


def _exited(state: dict) -> bool:
    return state.get("Status") in ("exited", "dead")


_ENGINE_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def _never_started(state: dict) -> bool:
    """A host's container created but never started: only the fahr launching the job starts it."""
    return state.get("Status") == "created"


def _engine_time(text) -> float | None:
    """A container's ``StartedAt``/``FinishedAt`` (RFC 3339, nanoseconds) in seconds since 1970;
    None for the engine's "never" (year 1) or anything else."""
    from datetime import datetime

    found = _ENGINE_TIME.fullmatch(text) if isinstance(text, str) else None
    if not found or found.group(1).startswith("0001-"):
        return None
    base, fraction, zone = found.groups()
    zone = "+00:00" if zone == "Z" else zone
    try:
        return datetime.fromisoformat(f"{base}.{(fraction or '0')[:6].ljust(6, '0')}{zone}").timestamp()
    except ValueError:
        return None


def _span(states) -> tuple[float | None, float | None]:
    """(the earliest StartedAt, the latest FinishedAt) of exited hosts' states; None when unknown."""
    starts = [_engine_time(state.get("StartedAt")) for state in states]
    ends = [_engine_time(state.get("FinishedAt")) for state in states]
    if not starts or None in starts or None in ends:
        return None, None
    started, ended = min(starts), max(ends)
    return (started, ended) if ended >= started else (None, None)


def _frames(read: Callable[[int], bytes], streams: bool = False) -> Iterator:
    """The payloads of the engine's multiplexed stream read with ``read(n)`` (which returns what
    is there, up to n bytes): a chunk of all the frames that came whole with each read. With
    ``streams``, ``(chunk, frames)``: the frames as ``(stream, payload)`` too (1 stdout, 2 stderr)."""
    import struct

    header = struct.Struct(">BxxxL")
    buffer = bytearray()
    while data := read(_READ_SIZE):
        buffer += data
        payloads, kinds, start, size = [], [], 0, len(buffer)
        while size - start >= _FRAME_HEADER:
            kind, length = header.unpack_from(buffer, start)
            end = start + _FRAME_HEADER + length
            if end > size:
                break
            payloads.append(buffer[start + _FRAME_HEADER:end])
            kinds.append(kind)
            start = end
        del buffer[:start]
        if payloads:
            chunk = b"".join(payloads)
            yield (chunk, list(zip(kinds, payloads))) if streams else chunk


_NOT_UTF8 = "[\udc80-\udcff]"  # a byte that is not UTF-8, decoded with surrogateescape


class LoggedSize:
    """How many bytes of each stream (stdout, stderr) the engine's log holds for the output seen:
    as many, but with the json-file log driver (Docker's default), which keeps each byte that is
    not UTF-8 as U+FFFD (3 bytes), 2 more for each such byte. A stream attached and let go is
    followed on in the engine's log from there: stream by stream, as the log keeps the two streams'
    order only within each (see live_output). Bytes already kept as U+FFFD count as they are."""

    def __init__(self, replaces: bool = True):
        self._replaces = replaces
        self._decoders: dict = {}

    @classmethod
    def of(cls, container) -> "LoggedSize":
        log_config = (container.attrs.get("HostConfig") or {}).get("LogConfig") or {}
        return cls(log_config.get("Type", "json-file") == "json-file")

    def __call__(self, stream: int, payload) -> int:
        if not self._replaces:
            return len(payload)
        decoder = self._decoders.get(stream)
        if payload.isascii() and (decoder is None or not decoder.getstate()[0]):
            return len(payload)
        if decoder is None:  # incremental: a character may be cut between two frames
            import codecs

            decoder = self._decoders[stream] = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        return len(payload) + 2 * len(re.findall(_NOT_UTF8, decoder.decode(payload)))

    def cut(self, stream: int, payload, logged: int) -> int:
        """Where in ``payload`` (of fewer logged bytes than its own) the first ``logged`` bytes,
        as the log holds them, end: at the end of a character."""
        raw = 0
        for char in payload.decode("utf-8", "surrogateescape"):
            if "\udc80" <= char <= "\udcff":  # a byte that is not UTF-8
                raw, logged = raw + 1, logged - (3 if self._replaces else 1)
            else:
                size = len(char.encode())
                raw, logged = raw + size, logged - size
            if logged <= 0:
                break
        return raw


def output_chunks(container, follow: bool, skip: dict[int, int] | None = None) -> Iterator[bytes]:
    """A container's output (stdout and stderr merged, as ``docker logs`` prints them), byte for
    byte, in chunks of what arrived together, from the engine's log of it. ``skip``: how many
    bytes of each stream (1 stdout, 2 stderr) to leave out from the start (see live_output).

    The engine sends a frame per line; the Docker SDK reads each frame with two reads of its
    own, which made a chatty job's output many times slower to follow than ``docker logs``. Here
    the stream is read as much at a time as is there and the frames are cut out of it.

    A followed log may end before the output does: the engine (Docker 20.10's json-file driver,
    `docker logs -f` too) stops it when the container stops, whatever it has not sent yet. So
    when it ends, the log is read once more, without following, past what each stream gave.
    """
    read = {stream: size for stream, size in (skip or {}).items() if size > 0}
    if (container.attrs.get("Config") or {}).get("Tty"):  # a terminal's output is not framed
        passed = sum(read.values())  # (one stream: nothing to tell apart)
        for chunk in container.logs(stream=True, follow=follow, stdout=True, stderr=True):
            if passed:
                chunk, passed = chunk[passed:], max(0, passed - len(chunk))
            if chunk:
                yield chunk
        return
    yield from _logged(container, follow, read)
    if follow:
        yield from _logged(container, False, read)


def _logged(container, follow: bool, read: dict[int, int], timestamps: bool = False) -> Iterator[bytes]:
    """The engine's log of a container, each stream past its first ``read[stream]`` bytes; ``read``
    is kept up to date with the bytes of each stream passed on. ``timestamps``: each line (each
    frame) begins with the time the engine received it, RFC 3339 and a space."""
    api = container.client.api
    response = api._get(api._url("/containers/{0}/logs", container.id), stream=True, params={
        "stdout": 1, "stderr": 1, "timestamps": int(timestamps), "follow": int(follow), "tail": "all"})
    api._raise_for_status(response)
    api._disable_socket_timeout(api._get_raw_response_socket(response))  # a job may be silent for long
    reader = getattr(response.raw, "read1", None)  # what is there, up to n bytes, no waiting for more
    if reader is None:  # an older urllib3: its HTTP chunks as they come (the engine sends one per frame)
        pieces = response.raw.stream(_READ_SIZE, decode_content=False)
        reader = lambda n: next(pieces, b"")  # noqa: E731
    left = dict(read)
    try:
        for chunk, frames in _frames(reader, streams=True):
            if any(left.values()):
                parts = []
                for stream, payload in frames:
                    if more := left.get(stream, 0):
                        left[stream] = max(0, more - len(payload))
                        payload = payload[more:]
                    parts.append(payload)
                    read[stream] = read.get(stream, 0) + len(payload)
                chunk = b"".join(parts)
            else:
                for stream, payload in frames:
                    read[stream] = read.get(stream, 0) + len(payload)
            if chunk:
                yield chunk
    finally:
        response.close()


# Attached streams of containers this process started, by container id, until follow() takes them.
_attached: dict[str, "_Attachment"] = {}
_attached_lock = threading.Lock()


class _Attachment:
    """A container's output from its first byte, as ``docker run`` reads it: attached before the
    start, straight from the container (the engine's log of it, which ``docker logs`` reads, is
    several times slower to read for a chatty job).

    A thread reads it into a queue of at most ``_ATTACH_HOLD`` bytes that follow() empties. If
    nobody follows (``fit --detach`` in a long-lived Python), or the reader falls that far behind,
    the attachment is let go and follow() goes on from the engine's log, past the bytes it had:
    nothing is lost and the container never waits on fahr.
    """

    def __init__(self, container):
        from docker.utils.socket import read as socket_read

        api = container.client.api
        self.id = container.id
        self._response = api._post(api._url("/containers/{0}/attach", container.id), stream=True,
                                   headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                                   params={"stdout": 1, "stderr": 1, "stream": 1})
        api._raise_for_status(self._response)
        self._socket = api._get_raw_response_socket(self._response)
        api._disable_socket_timeout(self._socket)
        self._read = lambda n: socket_read(self._socket, n)
        self._chunks: queue.Queue = queue.Queue()
        self._held = 0
        self._claimed = False
        self.whole = False  # the stream ended with the container's output, every byte queued
        self.passed: dict[int, int] = {}  # the bytes of each stream chunks() passed on, as the engine's log holds them
        self._logged_size = LoggedSize.of(container)
        with _attached_lock:
            _attached[self.id] = self
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for chunk, frames in _frames(self._read, streams=True):
                sizes: dict[int, int] = {}
                for stream, payload in frames:
                    sizes[stream] = sizes.get(stream, 0) + self._logged_size(stream, payload)
                with _attached_lock:
                    self._held += len(chunk)
                    if self._held > _ATTACH_HOLD:
                        break
                self._chunks.put((chunk, sizes))
            else:
                self.whole = True
        except Exception:
            pass  # the engine went away, or the container: follow() reads on from the engine's log
        finally:
            with _attached_lock:
                if not self._claimed or not self.whole:
                    _attached.pop(self.id, None)
                    self._drop()
            self._chunks.put(None)

    def _drop(self) -> None:
        self.whole = False
        while not self._chunks.empty():
            self._chunks.get_nowait()
        with contextlib.suppress(Exception):
            self._response.close()

    @classmethod
    def claim(cls, container) -> "_Attachment | None":
        with _attached_lock:
            attachment = _attached.pop(container.id, None)
            if attachment is not None:
                attachment._claimed = True
            return attachment

    def chunks(self) -> Iterator[bytes]:
        while (item := self._chunks.get()) is not None:
            chunk, sizes = item
            with _attached_lock:
                self._held -= len(chunk)
            for stream, size in sizes.items():  # counted before it is passed on: the caller has it
                self.passed[stream] = self.passed.get(stream, 0) + size
            yield chunk


def live_output(container) -> Iterator[bytes]:
    """A running container's output, byte for byte, from the start to its end: from the stream
    attached when this process started it, else (or past where that stream was let go) from the
    engine's log.

    The handover goes on in the log past the bytes passed on, counted stream by stream: the log
    keeps stdout's and stderr's bytes each in order, but may interleave the two differently (it
    holds a part of a line until the line ends), and keeps bytes that are not UTF-8 as U+FFFD.
    """
    skip = None
    attachment = _Attachment.claim(container)
    if attachment is not None:
        yield from attachment.chunks()
        if attachment.whole:
            return
        skip = attachment.passed
    yield from output_chunks(container, follow=True, skip=skip)


class _Gone(Exception):
    """A container removed while its output was being saved."""


def _is_folder(path: Path, folder: Folder) -> bool:
    """Whether ``path`` names the very folder ``folder`` has open."""
    try:
        one, other = os.stat(path), os.fstat(folder.fd)
    except OSError:
        return False
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)


class _LogCopy:
    """A host's output written to a temporary file beside its log as it is followed.

    Appended a MiB at a time, the file open only while it is written: a job that prints little
    holds no file of the job folder open for long (a disk can still be remounted read-only).
    """

    _BATCH = 1024 * 1024

    def __init__(self, folder: Folder, host: str):
        # Made as fahr_core.jobfolder makes a file it writes; save_logs renames it over the log
        # (Folder.commit) once it is whole. Not Folder.replacing: that holds the file open.
        self.path: Path | None = Path(folder.pinned) / folder.partial(f"{host}.log")
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, chunk: bytes) -> None:
        if self.path is None:
            return
        self._pending.append(chunk)
        self._size += len(chunk)
        if self._size >= self._BATCH:
            self._append()

    def _append(self) -> None:
        try:
            # O_NOFOLLOW: the file partial() made, not a link put in its place since.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "ab") as handle:
                handle.writelines(self._pending)
        except OSError:  # a full disk, say: following goes on, save_logs reads from the engine
            self.discard()
        self._pending, self._size = [], 0

    def close(self) -> Path | None:
        if self.path is not None and self._pending:
            self._append()
        return self.path

    def discard(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
        self.path = None
        self._pending, self._size = [], 0


class _ChunkReader(io.RawIOBase):
    """The engine's streamed chunks as a readable file (for ``tarfile`` in stream mode); with
    ``copy``, every byte read is also written there."""

    def __init__(self, chunks, copy=None):
        self._chunks = iter(chunks)
        self._pending = b""
        self._copy = copy

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        if self._copy is not None:
            self._copy.write(buffer[:size])
        return size


def _spool_capped(stream, spool, cap: int, path: str) -> None:
    """Write the engine's archive of ``path`` into ``spool``, refusing it at the entry whose data
    would take its files past ``cap`` bytes: before that data is read, so a checkpoint of 3 GiB
    (sparse, maybe: the engine's archive holds every byte) costs no more than its header."""
    from fahr_core.extract import over_the_cap

    reader = _ChunkReader(stream, copy=spool)
    prefix = path.rstrip("/").rsplit("/", 1)[-1] + "/"
    total = 0
    try:
        with tarfile.open(fileobj=reader, mode="r|", bufsize=1 << 20) as tar:
            for member in tar:  # the next header is read past this one's data: checked before that
                if member.isreg():
                    total += member.size
                    if total > cap:
                        raise over_the_cap(cap, member.name.removeprefix(prefix))
    finally:
        with contextlib.suppress(Exception):
            stream.close()  # nothing past the end-of-archive marker (padding) or the cap is read


def _channel_config(channels: Mapping[str, Path], content_types: Mapping[str, str]) -> dict:
    config = {}
    for name in channels:
        entry = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
        if content_types.get(name):  # SageMaker writes the key only for a channel given one
            entry["ContentType"] = content_types[name]
        config[name] = entry
    return config


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644, owner: tuple[int, int] = (0, 0)) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.uid, info.gid = owner
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755, owner: tuple[int, int] = (0, 0)) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.uid, info.gid = owner
    info.mtime = int(time.time())
    tar.addfile(info)


def _add_path(tar: tarfile.TarFile, source: Path, arcname: str) -> None:
    """``source`` (recursively) into ``tar``; a file that cannot be read (no permission, gone
    meanwhile, a /proc file that lies about its size) is the user's to fix: one line naming it."""
    try:
        tar.add(str(source), arcname=arcname, recursive=True)
    except (OSError, tarfile.TarError) as exc:
        where = getattr(exc, "filename", None) or source
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise UsageError(f"cannot copy {where} into the job ({why}); make it a readable ordinary file, "
                         "or give another folder") from None


def opt_ml_archive(job: ContainerJob, host: str, out) -> None:
    """Write, as a tar stream rooted at ``/``, the ``/opt/ml`` a host finds when it starts."""
    resource = {
        "current_host": host,
        "hosts": job.hosts,
        "network_interface_name": "eth0",
        "current_instance_type": job.instance_type,
        "current_group_name": "homogeneousCluster",
        "instance_groups": [
            {"instance_group_name": "homogeneousCluster", "instance_type": job.instance_type, "hosts": job.hosts}
        ],
    }
    hyper = {str(k): str(v) for k, v in job.hyperparameters.items()}
    with tarfile.open(fileobj=out, mode="w|") as tar:
        for folder in ("opt", "opt/ml", "opt/ml/input", "opt/ml/input/config", "opt/ml/input/data",
                       "opt/ml/model", "opt/ml/output", "opt/ml/output/data", "opt/ml/code"):
            _add_dir(tar, folder)
        _add_bytes(tar, "opt/ml/input/config/hyperparameters.json", json.dumps(hyper).encode())
        _add_bytes(tar, "opt/ml/input/config/inputdataconfig.json",
                   json.dumps(_channel_config(job.channels, job.content_types)).encode())
        _add_bytes(tar, "opt/ml/input/config/resourceconfig.json", json.dumps(resource).encode())
        for channel, source in job.channels.items():
            source = Path(source)
            arc = f"opt/ml/input/data/{channel}"
            if source.is_dir():
                _add_path(tar, source, arc)
            else:
                _add_dir(tar, arc)
                _add_path(tar, source, f"{arc}/{source.name}")
        if job.checkpoints is not None:
            # The folder exists only when checkpointing is configured: a script that checks for it
            # behaves as on SageMaker. Its parents are made as the engine would.
            arc = job.checkpoint_dir.strip("/")
            parts = arc.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) not in ("opt", "opt/ml"):
                    _add_dir(tar, "/".join(parts[:i]))
            _add_dir(tar, arc)
            from fahr_core.drivers.local import checkpoints

            source = Path(job.checkpoints)
            if source.is_dir():
                for child in sorted(source.iterdir()):
                    if child.name != checkpoints.CHECKPOINT_MARKER:  # fahr's own mark, not a checkpoint
                        _add_path(tar, child, f"{arc}/{child.name}")


def secrets_archive(secrets: Mapping[str, str], owner: tuple[int, int] = (0, 0)) -> bytes:
    """A tar rooted at ``/`` of ``fahr_core.launcher.SECRETS_DIR`` (0700) holding one 0600 file per
    secret, named after its variable, its value as UTF-8; fahr's folders and files owned by
    ``owner`` (uid, gid: the user the image runs as, :func:`image_user`), for only the launcher
    to read them and remove them once read. The engine keeps a tar's owners."""
    from fahr_core.launcher import SECRETS_DIR

    buffer = io.BytesIO()
    folder = SECRETS_DIR.strip("/")
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        parts = folder.split("/")
        for i in range(2, len(parts)):  # /run is the image's; fahr's folders beneath it are made here,
            _add_dir(tar, "/".join(parts[:i]), owner=owner)  # the user's: the launcher removes the secrets'
        _add_dir(tar, folder, mode=0o700, owner=owner)
        for name, value in secrets.items():
            _add_bytes(tar, f"{folder}/{name}", value.encode("utf-8"), mode=0o600, owner=owner)
    return buffer.getvalue()


def _container_entry(container, path: str, limit: int = 0) -> tuple[tarfile.TarInfo | None, bytes]:
    """The (created, not started) container's entry ``path`` and the first ``limit`` bytes of a
    file's data, read with the engine's archive API: a container that never ran has no process
    to ask. The engine's errors (docker.errors.NotFound: no such path) propagate."""
    stream, _ = container.get_archive(path)
    with tempfile.TemporaryFile() as spool:
        for chunk in stream:
            spool.write(chunk)
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r:") as tar:
            member = tar.next()
            handle = tar.extractfile(member) if limit and member is not None and member.isreg() else None
            return member, handle.read(limit) if handle else b""


def _container_file(container, path: str) -> str:
    """The text of the (created, not started) container's file ``path``; '' when it has none."""
    from docker import errors as docker_errors

    try:
        return _container_entry(container, path, limit=1 << 22)[1].decode("utf-8", "replace")
    except docker_errors.NotFound:
        return ""


def _entries(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(spec: str, passwd: Callable[[], str], group: Callable[[], str]) -> tuple[int, int] | None:
    """The uid and gid a container runs as whose image says ``USER spec`` (``name``, ``uid``,
    ``name:group``, ``uid:gid``), as the engine resolves it: a name from /etc/passwd (its gid the
    user's primary group unless one is given), a group name from /etc/group, numbers as they are;
    ``passwd``/``group`` give those files' text, read only when needed. None: a name the files
    do not hold (the engine would refuse to start the container)."""
    user, _, grp = (spec or "").strip().partition(":")
    if user in ("", "root", "0"):
        uid, gid = 0, 0
    else:
        entry = next((e for e in _entries(passwd()) if len(e) >= 4 and user in (e[0], e[2])), None)
        if entry is not None and entry[2].isdigit() and entry[3].isdigit():
            uid, gid = int(entry[2]), int(entry[3])
        elif user.isdigit():
            uid, gid = int(user), 0
        else:
            return None
    if grp:
        if grp.isdigit():
            gid = int(grp)
        else:
            entry = next((e for e in _entries(group()) if len(e) >= 3 and e[0] == grp and e[2].isdigit()), None)
            if entry is None:
                return None
            gid = int(entry[2])
    return uid, gid


def image_user(container, job_name: str) -> tuple[int, int]:
    """The uid and gid the (created, not started) ``container`` will run as: its image's USER.
    A USER its files do not name is the project's to fix (exit 2), before the job starts."""
    spec = (container.attrs.get("Config") or {}).get("User") or ""
    ids = resolve_user(spec, lambda: _container_file(container, "/etc/passwd"),
                       lambda: _container_file(container, "/etc/group"))
    if ids is None:
        raise UsageError(f"the image of job {job_name} runs as USER {spec}, which its /etc/passwd or /etc/group "
                         "does not name, so its --secret values cannot be handed to it; create that user in the "
                         "Dockerfile (RUN useradd ...), or give USER as uid:gid")
    return ids


def _not_executable(container, program: str) -> str | None:
    """The first ``program`` on the (created, not started) container's PATH when it is a file
    nobody may execute, else None: best effort, for a better message only."""
    try:
        env = dict(item.split("=", 1) for item in container.attrs["Config"].get("Env") or [] if "=" in item)
        for folder in env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":"):
            path = f"{folder.rstrip('/')}/{program}"
            try:
                member, _ = _container_entry(container, path)
            except Exception:
                continue  # not there: the next folder
            if member is not None and member.isreg() and not member.mode & 0o111:
                return path  # the engine passed over it, as it does every file it may not run
    except Exception:
        return None
    return None


class ContractRun:
    """The containers of one job on one engine: start, follow, stop, collect, clean up.

    A run can be re-attached from another process (``fahr wait`` after ``fit --detach``):
    containers and network are found again by name and label.
    """

    def __init__(self, job: ContainerJob, client=None):
        from fahr_core import engine

        self.job = job
        self.client = client or engine.client()
        self._tails: dict[str, Tail] = {}
        self._oom: dict[str, bool] = {}  # host -> whether failure_reason found it killed for its memory
        self._copies: dict[str, Path] = {}  # each host's whole output, written as follow() read it
        self._logs_saved = False
        self._keep_in: Folder | None = None

    def reconnect(self) -> None:
        """Use a new connection to the engine: after an interrupt, a pooled connection may be
        left in the middle of a streamed response, and reusing it would hang."""
        from fahr_core import engine

        try:
            self.client = engine.new_client()
        except EnvironmentProblem as exc:
            raise EngineLost(exc.message) from exc

    # -- start -------------------------------------------------------------------------------

    def start(self, on_status: Callable[[str], None] = lambda s: None) -> None:
        """Create the network and containers, copy ``/opt/ml`` in, start every host."""
        from docker import errors as docker_errors
        from docker.types import DeviceRequest

        job = self.job
        network = None
        in_flight: tuple[str, str] | None = None  # a create the engine may finish after an interrupt
        containers: list = []
        owner: tuple[int, int] | None = None  # the image's user, the secrets' owner: one lookup per job
        try:
            if len(job.hosts) > 1:
                in_flight = ("network", job.network_name)
                network = self.client.networks.create(
                    job.network_name, driver="bridge", labels={LABEL_JOB: job.job_name}
                )
                in_flight = None
            on_status("Downloading")
            for host in job.hosts:
                env = {
                    **{str(k): str(v) for k, v in job.environment.items()},
                    "TRAINING_JOB_NAME": job.job_name,
                    "FAHR_EXECUTION_ENVIRONMENT": job.execution_environment,
                }
                if job.job_arn:  # an ARN or nothing: a script may parse it as one
                    env["TRAINING_JOB_ARN"] = job.job_arn
                devices = None
                if job.gpus:
                    if job.gpus == "all":
                        devices = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
                    elif job.gpus.isdigit():
                        devices = [DeviceRequest(count=int(job.gpus), capabilities=[["gpu"]])]
                    else:
                        devices = [DeviceRequest(device_ids=job.gpus.split(","), capabilities=[["gpu"]])]
                in_flight = ("container", job.container_name(host))
                container = self.client.containers.create(
                    job.image,
                    command=["train"],
                    name=job.container_name(host),
                    hostname=host,
                    environment=env,
                    labels={LABEL_JOB: job.job_name, LABEL_HOST: host},
                    network=job.network_name if network else None,
                    networking_config=(
                        {job.network_name: self.client.api.create_endpoint_config(aliases=[host])}
                        if network else None
                    ),
                    stop_signal="SIGTERM",
                    device_requests=devices,
                    # memswap_limit equal to the limit: past it the host is killed, not swapped out
                    **({"mem_limit": job.memory, "memswap_limit": job.memory} if job.memory else {}),
                    **({"nano_cpus": int(job.cpus * 1e9)} if job.cpus else {}),
                    **({"network_mode": "host", "extra_hosts": {host: "127.0.0.1"}} if job.host_network else {}),
                )
                in_flight = None
                with tempfile.TemporaryFile() as archive:
                    opt_ml_archive(job, host, archive)
                    archive.seek(0)
                    container.put_archive("/", archive)
                if job.secrets:
                    # In memory, never a file of this machine's: only the engine holds them, in
                    # the container, until the launcher has read them or the container is removed.
                    # Owned by the image's user: 0600 files only their owner, the launcher, reads.
                    owner = owner or image_user(container, job.job_name)
                    container.put_archive("/", secrets_archive(job.secrets, owner))
                containers.append(container)
                with contextlib.suppress(Exception):  # a speed-up: follow() reads the engine's log without it
                    _Attachment(container)
            on_status("Training")
            for container in containers:
                container.start()
        except docker_errors.ImageNotFound as exc:
            self._cleanup_quietly()
            raise EnvironmentProblem(f"image {job.image} is not on the engine: {exc.explanation}") from exc
        except docker_errors.APIError as exc:
            detail = exc.explanation or str(exc)
            unrunnable = None
            if 'exec: "train"' in detail and "not found" in detail and containers:
                unrunnable = _not_executable(containers[0], "train")
            self._cleanup_quietly()
            if job.gpus and ("device driver" in detail or "gpu" in detail.lower()):
                raise EnvironmentProblem(
                    f"GPUs were requested (gpus={job.gpus!r}) but the Docker engine cannot provide "
                    f"them: {detail}; install the NVIDIA container toolkit, or drop the gpus setting"
                ) from exc
            if unrunnable:
                # The engine says "not found" for a file it may not run: say what to change.
                raise UsageError(f"the image of job {job.job_name} cannot be started as 'IMAGE train': {unrunnable} "
                                 "is not executable; make it so (chmod 755 train before building, or RUN chmod "
                                 f"755 {unrunnable} in the Dockerfile)") from exc
            if 'exec: "train"' in detail and "not found" in detail:
                # An image that brings its own program (a container of the user's own) lacks it:
                # the project's fault, not the engine's.
                raise UsageError(f"the image of job {job.job_name} cannot be started as 'IMAGE train': it has no program "
                                 "'train' on its PATH; put one there (e.g. COPY train /usr/local/bin/train)") from exc
            raise EnvironmentProblem(f"the Docker engine refused to start the job: {detail}") from exc
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                # The engine goes on with a request fahr stopped waiting for: a container or
                # network may appear after the clean-up has looked. Look with a fresh connection
                # (the interrupted one is mid-response), and wait a moment for that one.
                with contextlib.suppress(Exception):
                    self.reconnect()
            self._cleanup_quietly()
            if isinstance(exc, KeyboardInterrupt) and in_flight:
                self._remove_when_it_appears(*in_flight)
                self._cleanup_quietly()  # the network, once that late container is gone
            if isinstance(exc, Exception) and is_engine_error(exc):
                raise engine_lost(exc, f"starting job {job.job_name}") from exc
            raise

    # -- follow ------------------------------------------------------------------------------

    def containers(self) -> dict[str, object]:
        """This job's containers by host, found by label."""
        try:
            found = self.client.containers.list(all=True, filters={"label": f"{LABEL_JOB}={self.job.job_name}"})
        except Exception as exc:
            if is_engine_error(exc):
                raise engine_lost(exc, f"looking for job {self.job.job_name}'s containers") from exc
            raise
        return {c.labels.get(LABEL_HOST, c.name): c for c in found}

    def follow(self, on_output: OutputSink, started_at: float | None = None, *, lines: bool = True,
               keep_in: Path | Folder | None = None) -> Outcome:
        """Stream every host's output live until all have exited; a failing host stops the others.

        ``on_output(host, data)`` gets the output byte for byte, from each host's own thread:
        with ``lines``, in pieces that each end a line or are a slice of a long one (see
        :class:`fahr_core.joblog.LineSplitter`), else in chunks as they come. What is held meanwhile
        is bounded, whatever the job prints. With ``keep_in`` (an existing folder), each host's
        output is also written there as it comes, for :meth:`save_logs` to keep rather than read
        it all again from the engine (a :class:`Folder`: held open by the run until then).

        KeyboardInterrupt propagates (the caller stops and cleans up). :class:`EngineLost` is
        raised when the engine stops answering: the hosts' fate is then unknown, not failed.
        """
        from fahr_core.joblog import LineSplitter

        containers = self.containers()
        events: queue.Queue = queue.Queue()
        started_at = started_at or time.time()
        if keep_in is not None:  # the copies' folder stays the one opened, until save_logs
            self._keep_in = keep_in if isinstance(keep_in, Folder) else Folder.open(keep_in)
        kept_in = self._keep_in if keep_in is not None else None

        def stream(host: str, container) -> None:
            tail = self._tails[host] = Tail()
            splitter = LineSplitter() if lines else None
            copy = _LogCopy(kept_in, host) if kept_in is not None else None
            try:
                for chunk in live_output(container):
                    tail.add(chunk)
                    if copy is not None:
                        copy.write(chunk)
                    if splitter is None:
                        on_output(host, chunk)
                    else:
                        for piece in splitter.feed(chunk):
                            on_output(host, piece)
                if copy is not None and not self._logs_saved and (whole := copy.close()):
                    self._copies[host], copy = whole, None  # the output ended: the copy is whole
            except Exception:
                pass  # the container went away (stopped and removed): nothing more to read
            finally:
                if copy is not None:
                    copy.discard()
                if splitter is not None and (rest := splitter.end()):
                    on_output(host, rest)
                events.put(("logs-done", host, None))

        def await_exit(host: str, container) -> None:
            code = -1  # removed meanwhile (by 'fahr stop' in another process, say)
            try:
                code = container.wait()["StatusCode"]
                # The engine's wait returns 0 at once for a container never started (the fahr
                # that launched the job was stopped while starting it): that is no success.
                container.reload()
                if _never_started(container.attrs.get("State") or {}):
                    events.put(("never", host, -1))
                    return
            except Exception as exc:
                if is_engine_error(exc):
                    events.put(("lost", host, exc))
                    return
            events.put(("exit", host, code))

        threads = []
        for host, container in containers.items():
            for target in (stream, await_exit):
                thread = threading.Thread(target=target, args=(host, container), daemon=True)
                thread.start()
                threads.append(thread)

        codes: dict[str, int] = {}
        logs_done: set[str] = set()
        stopping = False
        first_failed = ""  # the host that failed on its own, before fahr stopped its peers
        never: set[str] = set()
        while len(codes) < len(containers) or len(logs_done) < len(containers):
            try:
                kind, host, value = events.get(timeout=0.25)
            except queue.Empty:
                continue
            if kind == "lost":
                raise engine_lost(value, f"following job {self.job.job_name}")
            if kind == "never":
                never.add(host)
            if kind in ("exit", "never"):
                codes[host] = value
                if value != 0 and not stopping:
                    first_failed = host
                if value != 0 and not stopping and len(codes) < len(containers):
                    stopping = True  # peers would wait for the failed host forever
                    for other, container in containers.items():
                        if other not in codes:
                            self._stop_one(container)
            else:
                logs_done.add(host)
        ended_at = time.time()
        if not first_failed:
            return Outcome(COMPLETED, exit_codes=codes, started_at=started_at, ended_at=ended_at)
        if first_failed in never:
            reason, kind = f"host {first_failed} never started", PLATFORM
        else:
            reason, kind = self.failure(first_failed, codes[first_failed])
        return Outcome(FAILED, reason, codes, started_at, ended_at, kind)

    def failure(self, host: str, code: int) -> tuple[str, str]:
        """Why ``host`` failed with exit code ``code``: its :meth:`failure_reason` and its kind,
        ``out_of_memory`` or ``user``."""
        reason = self.failure_reason(host, code)
        return reason, OUT_OF_MEMORY if self._oom.get(host) else USER

    def failure_reason(self, host: str, code: int) -> str:
        """A host killed for its memory: ``OutOfMemoryError: …`` naming its limit, and its last
        lines. Else ``/opt/ml/output/failure`` (first 1024 characters), else the exit code and
        last lines.

        The last lines are the output's, without the frames of fahr's launcher (read from further
        back, so that they do not take the place of the script's), cut in the middle when long:
        the last line, a traceback's exception, stays whole.
        """
        from fahr_core.report import without_launcher_frames
        from fahr_core.ui import cut_middle

        out_of_memory = self._out_of_memory(host, code)
        self._oom[host] = out_of_memory is not None
        text = self.read_file(host, "/opt/ml/output/failure")
        if out_of_memory is None and text and text.strip():
            return text.decode("utf-8", "replace")[:FAILURE_REASON_MAX]
        tail = self._tails[host].lines(_TAIL_LINES + _LAUNCHER_LINES) if host in self._tails else []
        if not tail:
            try:
                logs = self.containers()[host].logs(tail=_TAIL_LINES + _LAUNCHER_LINES)
                tail = logs.decode("utf-8", "replace").splitlines()
            except Exception:
                tail = []
        where = f" on {host}" if len(self.job.hosts) > 1 else ""
        reason = f"AlgorithmError: exit code {code}{where}"
        if out_of_memory is not None:
            reason = f"{OUT_OF_MEMORY_ERROR}: {out_of_memory} (exit code {code}{where})"
        if tail:
            reason += "; last output:\n" + "\n".join(without_launcher_frames(tail)[-_TAIL_LINES:])
        return cut_middle(reason, FAILURE_REASON_MAX)

    def _out_of_memory(self, host: str, code: int) -> str | None:
        """Why ``host`` was killed for its memory, or None when it was not: the engine's
        ``State.OOMKilled``, or exit code 137 (SIGKILL) under a memory limit (the kernel may kill
        a process of the container rather than its first one, which the flag does not tell)."""
        try:
            container = self.containers()[host]
            container.reload()
            state = container.attrs.get("State") or {}
            limit = (container.attrs.get("HostConfig") or {}).get("Memory") or self.job.memory
        except Exception:
            state, limit = {}, self.job.memory
        if not state.get("OOMKilled") and not (code == 137 and limit):
            return None
        from fahr_core.ui import size

        if limit:
            return f"the host used more than its memory limit of {size(limit)} and was killed"
        return "the host ran out of memory and was killed"

    def exit_codes(self) -> dict[str, int] | None:
        """Every host's exit code when all have exited, else None."""
        states = self._states()
        if any(not _exited(state) for state in states.values()):
            return None
        return {host: state.get("ExitCode", -1) for host, state in states.items()} or None

    def _states(self) -> dict[str, dict]:
        """Every host's ``State`` as the engine has it now (one request each); a container
        removed meanwhile is left out."""
        states = {}
        try:
            for host, container in self.containers().items():
                try:
                    container.reload()
                except Exception as exc:
                    if _is_gone(exc):
                        continue
                    raise
                states[host] = container.attrs.get("State") or {}
        except Exception as exc:
            if is_engine_error(exc):
                raise engine_lost(exc, f"looking at job {self.job.job_name}'s containers") from exc
            raise
        return states

    def settled(self) -> Outcome | None:
        """One look at the hosts, for a process that follows the job without its output: None
        while any host runs, else how the job ended, as :meth:`follow` tells it (no container
        left: Failed, ``exit_codes`` empty). As in follow, a host that failed stops its peers,
        which would wait for it forever; the first to fail is the one whose exit came first. A
        host whose container is gone (removed outside fahr) or never started (the fahr that
        launched the job was stopped while starting it: nothing will start it) has failed first."""
        states = self._states()
        if not states:
            return Outcome(FAILED, "Its containers are gone (removed outside fahr)", failure_kind=PLATFORM)
        lost = {host: f"The container of host {host} is gone (removed outside fahr)"
                for host in self.job.hosts if host not in states}
        lost.update({host: f"host {host} never started" for host, state in states.items() if _never_started(state)})
        running = [host for host, state in states.items() if not _exited(state) and host not in lost]
        failed = sorted((_engine_time(states[h].get("FinishedAt")) or 0.0, h)
                        for h in states if h not in running and h not in lost and states[h].get("ExitCode") != 0)
        if running:
            if failed or lost:
                threads = [threading.Thread(target=self._stop_one, args=(c,))
                           for h, c in self.containers().items() if h in running]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            return None
        codes = {host: state.get("ExitCode", -1) for host, state in states.items()}
        codes.update({host: -1 for host in lost})
        started, ended = _span([state for host, state in states.items() if host not in lost])
        if lost:
            first = next(host for host in [*self.job.hosts, *sorted(lost)] if host in lost)
            return Outcome(FAILED, lost[first], codes, started or 0.0, ended or 0.0, PLATFORM)
        if not failed:
            return Outcome(COMPLETED, exit_codes=codes, started_at=started or 0.0, ended_at=ended or 0.0)
        first = failed[0][1]
        reason, kind = self.failure(first, codes[first])
        return Outcome(FAILED, reason, codes, started or 0.0, ended or 0.0, kind)

    def until_a_host_ends(self, since: float, seconds: float) -> None:
        """Return when one of the job's containers has died or been removed since ``since``
        (seconds since 1970, the engine's clock), or after about ``seconds``: one request held
        open (the engine's events), rather than a look at every host again and again."""
        filters = {"label": f"{LABEL_JOB}={self.job.job_name}", "type": "container", "event": ["die", "destroy"]}
        try:  # whole seconds, the engine's unit: since is rounded down, so nothing in between is missed
            stream = self.client.events(since=int(since), until=int(time.time() + seconds) + 1, filters=filters,
                                        decode=True)
            try:
                next(iter(stream), None)
            finally:
                with contextlib.suppress(Exception):
                    stream.close()
        except Exception as exc:
            if is_engine_error(exc):
                raise engine_lost(exc, f"looking at job {self.job.job_name}'s containers") from exc
            # An engine without these events (refused as a bad request): the caller looks again anyway.

    def times(self) -> tuple[float | None, float | None]:
        """When the job's first host started and its last one ended, as the engine recorded them
        (seconds since 1970; None when unknown, or while a host runs): the job's true times,
        whenever fahr looks."""
        states = self._states()
        if not states or not all(_exited(state) for state in states.values()):
            return None, None
        return _span(states.values())

    # -- stop --------------------------------------------------------------------------------

    def _stop_one(self, container, lost: list | None = None) -> None:
        try:
            container.stop(timeout=self.job.stop_timeout)
        except Exception as exc:
            if is_engine_error(exc) and lost is not None:
                lost.append(exc)
            # else: already gone, or (in follow) a peer whose fate the engine reports anyway

    def stop(self) -> None:
        """SIGTERM every host, SIGKILL after ``stop_timeout`` seconds (as ``docker stop``).

        Raises :class:`EngineLost` when the engine cannot be told (the job may still run).
        """
        lost: list[BaseException] = []
        try:
            containers = self.containers().values()
        except Exception as exc:
            if is_engine_error(exc):
                raise engine_lost(exc, f"stopping job {self.job.job_name}") from exc
            raise
        threads = [threading.Thread(target=self._stop_one, args=(c, lost)) for c in containers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if lost:
            raise engine_lost(lost[0], f"stopping job {self.job.job_name}") from lost[0]

    # -- collect -----------------------------------------------------------------------------

    @staticmethod
    @contextlib.contextmanager
    def _archive(container, path: str, seekable: bool = False, cap: int | None = None):
        """``path`` of a (stopped) container as a tarfile, or None when it is absent.

        The engine's stream is spooled to a temporary file first; ``seekable`` opens that file
        for random access, so that a member already passed (a hard link's target) can be read.
        Only an absent path is None: any other failure of the engine propagates, lest a model
        that could not be read be packed as an empty one. With ``cap``, the headers are read as
        the stream is spooled, and files adding up to more than ``cap`` bytes are refused
        (:class:`~fahr_core.extract.ModelTooLarge`) before the data that crosses it is read.
        """
        from docker import errors as docker_errors

        try:
            stream, _ = container.get_archive(path)
        except docker_errors.NotFound:
            yield None
            return
        with tempfile.TemporaryFile() as spool:
            if cap is None:
                for chunk in stream:
                    spool.write(chunk)
            else:
                _spool_capped(stream, spool, cap, path)
            spool.seek(0)
            with tarfile.open(fileobj=spool, mode="r:" if seekable else "r|") as tar:
                yield tar

    def read_file(self, host: str, path: str) -> bytes | None:
        """One file from a (stopped) host container, or None."""
        try:
            container = self.containers().get(host)
            if container is None:
                return None
            with self._archive(container, path) as tar:
                for member in tar or ():
                    if member.isfile():
                        handle = tar.extractfile(member)
                        return handle.read() if handle else None
        except Exception:
            return None  # best effort: the caller falls back to the exit code and the log's tail
        return None

    def pack(self, path: str, target: Path) -> Path:
        """Pack ``path`` (``/opt/ml/model``…) of every host, merged, into ``target`` (.tar.gz):
        :meth:`pack_into` the folder holding ``target``."""
        with Folder.open(target.parent) as folder:
            self.pack_into(path, folder, target.name)
        return target

    def pack_into(self, path: str, folder: Folder, name: str) -> None:
        """Pack ``path`` of every host, merged, into the file ``name`` of ``folder`` (.tar.gz).

        As on SageMaker, entries are relative to ``path``. SageMaker documents that the hosts'
        names must not clash; when they do, the first host's file is kept and the clash reported.
        The archive is written as fahr_core.jobfolder writes (a temporary name renamed when
        complete, never through a link), so it is never half-written; OSError (a full disk)
        propagates for the caller to report.
        """
        base = path.rstrip("/").rsplit("/", 1)[-1]
        with folder.replacing(name) as handle:
            dropped = self._pack_into(handle, path, base)
        if dropped:
            from fahr_core import ui

            ui.warn(clash_warning(name, dropped))

    def _pack_into(self, handle, path: str, base: str) -> list[tuple[str, str]]:
        with tarfile.open(fileobj=handle, mode="w:gz", format=tarfile.PAX_FORMAT) as out:
            merge = TreeMerge(out, base)
            for host, tar in self.host_archives(path):
                merge.add(host, tar)
        return merge.dropped

    def host_archives(self, path: str, stack: contextlib.ExitStack | None = None, *,
                      cap: int | None = None) -> Iterator[tuple[str, tarfile.TarFile]]:
        """``(host, tarfile)`` of ``path`` on every host that has it, in host order (``algo-2``
        before ``algo-10``: the first host's file is kept on a clash), each open for random access
        (see :meth:`_archive`, ``cap`` too): until ``stack`` closes, for a reader that needs them
        all at once; without it, until the next one is asked for (one host's spool at a time)."""
        order = {host: i for i, host in enumerate(self.job.hosts)}
        containers = sorted(self.containers().items(), key=lambda hc: (order.get(hc[0], len(order)), hc[0]))
        for host, container in containers:
            with contextlib.ExitStack() as own:
                tar = (stack or own).enter_context(self._archive(container, path, seekable=True, cap=cap))
                if tar is not None:  # None: absent, or the container is gone
                    yield host, tar

    def copy_out(self, path: str, target: Path, given: Mapping[str, tuple] | None = None, *,
                 marker: bool | bytes = False, spool_dir: Path | None = None):
        """Make the local folder ``target`` a copy of ``path`` (the checkpoints) of every host,
        merged against ``given``: the local driver's checkpoint policy, which the tests' SageMaker
        emulator shares (fahr_core.drivers.local.checkpoints.copy_back says how)."""
        from fahr_core.drivers.local.checkpoints import copy_back

        return copy_back(self, path, target, given, marker=marker, spool_dir=spool_dir)

    def save_logs(self, folder: Path | Folder) -> None:
        """Keep every host's whole output as ``folder/<host>.log`` (before the containers go).

        Each log is written as fahr_core.jobfolder writes (a temporary name renamed when
        complete, never through a link), so a full disk leaves the previous log (or none), never
        a cut one; ``OSError`` of the local files propagates (the caller keeps the containers),
        and so does :class:`EngineLost`. ``folder``: a path (made when missing), or a folder open.
        """
        if not isinstance(folder, Folder):
            with Folder.open(folder, create=True) as opened:
                return self.save_logs(opened)
        folder.make_private()
        try:
            containers = self.containers()
        except Exception as exc:
            if is_engine_error(exc):
                raise engine_lost(exc, f"saving job {self.job.job_name}'s logs") from exc
            raise
        for host in sorted(set(containers) | set(self._copies)):  # a whole copy is kept, its container gone or not
            container = containers.get(host)
            copy = self._copies.pop(host, None)
            kept = copy is not None and copy.is_file() and _is_folder(copy.parent, folder)
            if kept:  # follow() wrote it whole: it is the log (0600, as Folder.partial made it)
                folder.commit(copy.name, f"{host}.log")
            folder.tidy(rf"\.{re.escape(host)}\.log\..+\.partial")  # left by a fahr that was killed
            if kept:
                continue
            if container is None:
                continue  # removed meanwhile (by `fahr stop` elsewhere, say): no logs to keep
            try:
                with folder.replacing(f"{host}.log") as handle:
                    try:
                        for chunk in output_chunks(container, follow=False):  # streamed: any size
                            handle.write(chunk)
                    except Exception as exc:
                        if not _is_gone(exc):
                            if is_engine_error(exc):
                                raise engine_lost(exc, f"saving job {self.job.job_name}'s logs") from exc
                            raise
                        raise _Gone() from None
            except _Gone:
                continue  # a container removed meanwhile has no logs to keep
        self._logs_saved = True  # a host's stream that ends later drops its copy
        for copy in self._copies.values():
            copy.unlink(missing_ok=True)
        self._copies.clear()
        self._keep_in = None

    def size_of(self, path: str) -> int | None:
        """The bytes of the files under ``path`` on every host, streamed (nothing written), or
        None when the engine cannot say: how much a full disk was asked to hold."""
        total = 0
        try:
            for container in self.containers().values():
                try:
                    stream, _ = container.get_archive(path)
                except Exception as exc:
                    if _is_gone(exc):
                        continue
                    raise
                reader = io.BufferedReader(_ChunkReader(stream), buffer_size=1 << 20)
                with tarfile.open(fileobj=reader, mode="r|") as tar:
                    total += sum(member.size for member in tar if member.isfile())
        except Exception:
            return None
        return total

    # -- clean up ----------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Remove this job's containers and network. Safe to call more than once.

        Raises :class:`EngineLost` when the engine cannot be reached: what is left must be
        removed later, and the caller has to say so rather than claim nothing is left.
        """
        try:
            for container in self.containers().values():
                try:
                    container.remove(force=True)
                except Exception as exc:
                    if is_engine_error(exc):
                        raise  # else: gone already, or being removed by another process
            for network in self.client.networks.list(filters={"label": f"{LABEL_JOB}={self.job.job_name}"}):
                try:
                    network.remove()
                except Exception as exc:
                    if is_engine_error(exc):
                        raise  # else: gone already, or being removed by another process
        except Exception as exc:
            if is_engine_error(exc):
                raise engine_lost(exc, f"removing job {self.job.job_name}'s containers") from exc
            raise

    def _remove_when_it_appears(self, kind: str, name: str, patience: float = 3.0) -> None:
        from docker import errors as docker_errors

        collection = self.client.containers if kind == "container" else self.client.networks
        deadline = time.time() + patience
        while time.time() < deadline:
            try:
                found = collection.get(name)
            except docker_errors.NotFound:
                time.sleep(0.1)
                continue
            except Exception:
                return  # the engine is gone: nothing to do now
            with contextlib.suppress(Exception):
                found.remove(force=True) if kind == "container" else found.remove()
            return

    def _cleanup_quietly(self) -> None:
        """Clean up after a failed start without hiding why it failed."""
        with contextlib.suppress(Exception):
            self.cleanup()


# -- packing -----------------------------------------------------------------------------------


class TreeMerge:
    """Writes the engine's archives of one folder (one per host) into ``out`` as one tree.

    The engine names every entry ``<base>/…`` (``model/…``) and hard links' targets likewise;
    entries that need it carry the full name in a PAX ``path``/``linkpath`` header. Each entry is
    written as a NEW TarInfo, relative to the folder: reusing the engine's member would carry its
    PAX headers along, and they would put the stale ``model/`` prefix back.

    Hosts are merged in the order given: a folder present on several hosts is one folder; any
    other entry that an earlier host already wrote (or that would land under an earlier host's
    file or symlink) is dropped and listed in ``dropped`` as (name, host). (Checkpoints are merged
    otherwise, against what the hosts were given: fahr_core.drivers.local.checkpoints.)
    """

    def __init__(self, out: tarfile.TarFile, base: str):
        self.out = out
        self.prefix = base.strip("/") + "/"
        self.kinds: dict[str, bool] = {}  # name written -> is it a folder
        self.dropped: list[tuple[str, str]] = []

    def _relative(self, name: str) -> str | None:
        name = name.rstrip("/")
        if not name.startswith(self.prefix):
            return None  # the folder itself
        return name[len(self.prefix):].strip("/") or None

    def _clashes(self, name: str, is_dir: bool) -> bool:
        if name in self.kinds:
            return not (is_dir and self.kinds[name])
        parts = name.split("/")
        return any(self.kinds.get("/".join(parts[:i])) is False for i in range(1, len(parts)))

    def add(self, host: str, tar: tarfile.TarFile) -> None:
        """Add one host's archive; ``tar`` must be open for random access (hard links)."""
        originals: dict[str, tarfile.TarInfo] = {}  # this host's files by relative name
        written: set[str] = set()  # this host's files that made it into ``out``
        for member in tar:
            name = self._relative(member.name)
            if name is None:
                continue
            if member.isreg():
                originals[name] = member
            if self._clashes(name, member.isdir()):
                self.dropped.append((name, host))
                continue
            info = tarfile.TarInfo(name)
            info.type = member.type
            info.mode = member.mode & 0o7777
            info.uid, info.gid, info.uname, info.gname = member.uid, member.gid, member.uname, member.gname
            info.mtime = int(member.mtime)
            data = None
            if member.isreg():
                info.size = member.size
                data = tar.extractfile(member)
            elif member.issym():
                info.linkname = member.linkname  # relative to the link's folder: kept as it is
            elif member.islnk():
                target = self._relative(member.linkname)
                if target in written:
                    info.linkname = target
                elif target in originals:
                    # Its target is another host's file now (a clash): this host's content is
                    # kept under this name as a file of its own.
                    source = originals[target]
                    info.type, info.size = tarfile.REGTYPE, source.size
                    data = tar.extractfile(source)
                else:  # the engine lists a link's target before the link; never seen otherwise
                    self.dropped.append((name, host))
                    continue
            elif member.ischr() or member.isblk():
                info.devmajor, info.devminor = member.devmajor, member.devminor
            self.out.addfile(info, data)
            self.kinds[name] = member.isdir()
            if not member.isdir():
                written.add(name)


def clash_warning(archive: str, dropped: list[tuple[str, str]]) -> str:
    """The one line that says which host's entries were dropped from ``archive``."""
    shown = ", ".join(f"{name} ({host})" for name, host in dropped[:5])
    more = f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
    return (f"{archive}: several hosts wrote the same files; dropped {shown}{more}, "
            f"keeping the copy of the first host that wrote each")


def __getattr__(name: str):
    # Looked up when first used: importing the contract does not load the local driver.
    if name in _CHECKPOINT_NAMES:
        from fahr_core.drivers.local import checkpoints

        return getattr(checkpoints, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
