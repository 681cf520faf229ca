"""Moving data to and from S3: local input folders up (fahr_sagemaker.uploads), models down.

A model.tar.gz comes down
as a stream (:class:`RangedReader`): concurrent ranged GETs, handed over in order, which the core
unpacks as they arrive, so that downloading and unpacking overlap; a model saved uncompressed
(its files as S3 keys under a prefix) comes down as one stream of an uncompressed tar archive of
those files (:class:`ObjectsAsTar`), its keys checked first by the core's rules. Both print a
progress line at most every couple of seconds. The core extracts the archive; nothing here unpacks.
"""

from __future__ import annotations

import io
import re
import tarfile
import threading
import time
from pathlib import Path

from fahr_core import (COMPLETED, FINAL_STATES, IN_PROGRESS, ConfigError, EnvironmentProblem, FahrError, UsageError,
                       ui)

from fahr_sagemaker import aws

MODEL_TAG_ENV = "FAHR_MODEL_TAG"


class Progress:
    """A thread-safe byte counter that prints ``what: NN% of SIZE`` now and then."""

    def __init__(self, what: str, total: int):
        self.what, self.total, self.done = what, max(total, 0), 0
        self._lock = threading.Lock()
        self._last = 0.0

    def __call__(self, count: int) -> None:
        with self._lock:
            self.done += count
            now = time.monotonic()
            if now - self._last >= 2 or self.done >= self.total:
                if self.done >= self.total and self._last < 0:
                    return
                self._last = -1 if self.done >= self.total else now
                ui.info(f"{self.what}: {self._percent()} of {ui.size(self.total)}")

    def _percent(self) -> str:
        return f"{100 * self.done / self.total:.0f}%" if self.total else "100%"


# -- inputs -----------------------------------------------------------------------------------


def check_input(channel: str, value: str) -> None:
    """An ``--input`` value this driver can use: an s3:// URI, or a local file or folder."""
    if value.startswith("s3://"):
        aws.parse_s3(value, f"--input {channel}")
        return
    path = Path(value[len("file://"):] if value.startswith("file://") else value).expanduser()
    if not path.exists():
        raise UsageError(f"--input {channel}={value}: {path} does not exist (and is not an s3:// URI)")


#: How a job may read a channel (Channel.InputMode) and share it among hosts
#: (S3DataSource.S3DataDistributionType): docs/sagemaker.md, "Input modes".
INPUT_MODES = ("File", "FastFile", "Pipe")
DISTRIBUTIONS = ("FullyReplicated", "ShardedByS3Key")


def check_channel_settings(config, inputs) -> None:
    """``input_mode`` and ``input_distribution`` name channels that are given, with values
    SageMaker knows, and none that cannot apply: a ConfigError (exit 2) otherwise."""
    for key, allowed in (("input_mode", INPUT_MODES), ("input_distribution", DISTRIBUTIONS)):
        for channel, value in config[key].items():
            if channel not in inputs:
                given = ", ".join(sorted(inputs)) or "none"
                raise ConfigError(f"{key} sets channel {channel!r}, but no --input {channel}=… is given "
                                  f"(channels: {given}); add the input or remove {channel} from {key}")
            if value not in allowed:
                raise ConfigError(f"{key} {channel}={value!r} is not one of {', '.join(allowed)}")
    count = config["train_instance_count"]
    for channel, value in config["input_distribution"].items():
        given = inputs[channel]
        path = Path(given[len("file://"):] if given.startswith("file://") else given).expanduser()
        if value == "ShardedByS3Key" and count > 1 and not given.startswith("s3://") and path.is_file():
            raise ConfigError(f"input_distribution {channel}=ShardedByS3Key shares out whole files, and {given} "
                              f"is one file: {count - 1} of the {count} hosts would get nothing; give a folder of "
                              "several files, or FullyReplicated")


def input_uri(config, job_name: str, channel: str, value: str, output: aws.S3Uri) -> str:
    """The S3 URI of an input channel: as given, or a local folder/file uploaded first, content-
    addressed under ``<output_path>/inputs/`` (fahr_sagemaker.uploads): once per content."""
    from fahr_sagemaker import uploads

    check_input(channel, value)
    if value.startswith("s3://"):
        return value  # as given: "s3://b/data/" is a folder, "s3://b/data.csv" one object
    path = Path(value[len("file://"):] if value.startswith("file://") else value).expanduser()
    return uploads.upload(config, channel, path, output.join("inputs"))


# -- fetch ------------------------------------------------------------------------------------


#: The tag every job fahr launches carries: the model tag it trained.
MODEL_TAG_TAG = "fahr:model-tag"


def recorded_tag(info: dict) -> str:
    """The model tag a job trained, as launch recorded it: its environment, else its tags."""
    tag = (info.get("Environment") or {}).get(MODEL_TAG_ENV)
    if tag:
        return tag
    return next((t.get("Value", "") for t in info.get("Tags") or [] if t.get("Key") == MODEL_TAG_TAG), "")


def newest_completed(config, model_tag: str, location: aws.S3Uri) -> dict:
    """The newest Completed job of ``model_tag`` whose output path is ``location``.

    Found by the model tag recorded with the job (its ``fahr:model-tag`` tag), not by its name,
    which ``base_job_name`` changes: SageMaker's Search (sagemaker:Search), Completed jobs of the
    tag, newest first, page after page until one wrote to ``location``; that one is described
    afresh and its recorded tag confirmed.
    """
    from fahr_sagemaker.follow import describe

    sm = aws.client(config, "sagemaker")
    request = {
        "Resource": "TrainingJob",
        "SearchExpression": {
            "Filters": [
                {"Name": f"Tags.{MODEL_TAG_TAG}", "Operator": "Equals", "Value": model_tag},
                {"Name": "TrainingJobStatus", "Operator": "Equals", "Value": COMPLETED},
            ],
            "Operator": "And",
        },
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": 100,
    }
    looked = pages = 0
    with aws.translated("searching the training jobs of the model tag (sagemaker:Search)"):
        while True:
            page = sm.search(**request)
            pages += 1
            for record in page.get("Results", []):
                job = record.get("TrainingJob") or {}
                looked += 1
                output = (job.get("OutputDataConfig") or {}).get("S3OutputPath", "")
                if not output or aws.parse_s3(output, "S3OutputPath") != location:
                    continue
                if recorded_tag(job) not in ("", model_tag) or job.get("TrainingJobStatus") != COMPLETED:
                    continue  # a search index lagging behind the job: trust only its own record
                info = describe(config, job["TrainingJobName"])
                if recorded_tag(info) in ("", model_tag) and info["TrainingJobStatus"] == COMPLETED:
                    ui.info(f"{looked} completed jobs of {model_tag} looked at ({pages} page{'s' * (pages > 1)} "
                            f"of sagemaker:Search); the newest under {location.uri} is {info['TrainingJobName']}")
                    return info
            if not page.get("NextToken"):
                break
            request["NextToken"] = page["NextToken"]
    _bucket_must_exist(config, location)  # a typo in the bucket deserves its own message
    raise UsageError(
        f"no completed job of {model_tag!r} under {location.uri} in {aws.region_of(config)}; "
        "train it first with 'fahr fit', or pass --job NAME"
    )


def _bucket_must_exist(config, location: aws.S3Uri) -> None:
    """A :class:`UsageError` when the bucket of ``location`` does not exist; anything else passes
    (without s3:ListBucket, HeadBucket is denied: that says nothing about the jobs)."""
    from botocore import exceptions as bex

    with aws.translated(f"checking bucket {location.bucket}"):
        try:
            aws.client(config, "s3").head_bucket(Bucket=location.bucket)
        except bex.ClientError as exc:
            if aws.error_code(exc) in ("NoSuchBucket", "404", "NotFound"):
                raise UsageError(
                    f"{location.uri}: bucket {location.bucket!r} does not exist in {aws.region_of(config)}; "
                    "check ARTIFACT_LOCATION (the output_path the job used)"
                ) from exc


def job_for_fetch(config, model_tag: str, job_name: str | None, location: aws.S3Uri | None,
                  output: bool = False) -> dict:
    """DescribeTrainingJob of the job to fetch, checked to be Completed and of ``model_tag``
    (``output``: a job named by ``job_name`` may have failed or been stopped too)."""
    from fahr_sagemaker.follow import describe

    if job_name:
        info = describe(config, job_name)
    else:
        if location is None:
            raise UsageError("fetch needs the S3 folder the job wrote to (ARTIFACT_LOCATION or config.output_path)")
        info = newest_completed(config, model_tag, location)
    name = info["TrainingJobName"]
    tag = recorded_tag(info)
    if tag and tag != model_tag:
        raise UsageError(f"job {name} trained {tag!r}, not {model_tag!r}")
    status = info["TrainingJobStatus"]
    if status != COMPLETED and not (output and job_name and status in FINAL_STATES):
        hint = f"; follow it with 'fahr wait {name} --train-driver sagemaker'" if status == IN_PROGRESS else ""
        raise UsageError(f"job {name} is {status}, it has no {'output' if output else 'model'} to fetch{hint}")
    return info


def download_output(config, info: dict) -> "RangedReader":
    """The job's output.tar.gz (its /opt/ml/output/data) as a stream, the download running:
    SageMaker writes it beside model.tar.gz, ``<S3OutputPath>/<job>/output/output.tar.gz``."""
    name = info["TrainingJobName"]
    output = (info.get("OutputDataConfig") or {}).get("S3OutputPath", "").rstrip("/")
    if not output:
        raise UsageError(f"job {name} reports no S3OutputPath: it has no output.tar.gz to fetch")
    where = aws.parse_s3(output, "S3OutputPath").join(name, "output", "output.tar.gz")
    return open_object(config, where, name="output.tar.gz",
                       missing=f"job {name} has no output.tar.gz ({where.uri} does not exist)")


def download_model(config, info: dict) -> "RangedReader | ObjectsAsTar":
    """The job's model as a stream of a tar archive, the download running (the core unpacks it
    as it arrives): its model.tar.gz (see :func:`open_object`), or, with ``CompressionType:
    NONE``, the files SageMaker left uncompressed under a prefix, as one uncompressed archive
    (:class:`ObjectsAsTar`).

    The keys of those files are names chosen by whoever could write to the bucket: they are
    checked whole, before anything is downloaded, by the rules the core applies to an archive's
    entries (``fahr_core.check_listing``), and the core applies them again, with the
    size cap and the free space, as it unpacks.
    """
    from fahr_core import check_listing

    artifact = (info.get("ModelArtifacts") or {}).get("S3ModelArtifacts", "")
    if not artifact:
        raise UsageError(f"job {info['TrainingJobName']} reports no model artifacts")
    where = aws.parse_s3(artifact, "S3ModelArtifacts")
    compression = (info.get("OutputDataConfig") or {}).get("CompressionType", "GZIP")
    if compression != "NONE" or artifact.endswith(".tar.gz"):
        return open_object(config, where)
    s3 = aws.client(config, "s3")
    base = where.prefix + "/"
    with aws.translated(f"listing {artifact}"):
        objects = _list_objects(s3, where)
    names = [(obj["Key"][len(base):], obj["Size"]) for obj in objects]
    check_listing(names, noun="S3 key", prefix=f"s3://{where.bucket}/{base}")
    total = sum(size for _, size in names)
    ui.info(f"downloading {len(objects)} uncompressed model files ({ui.size(total)}) from {where.uri}/")
    return ObjectsAsTar(s3, where, [(name, obj) for (name, _), obj in zip(names, objects)],
                        progress=Progress("download", total))


def model_is_empty(config, info: dict) -> bool | None:
    """Whether a completed job's model holds no file; None when that cannot be read.

    model.tar.gz is streamed only up to its first file, so a large model costs one small read;
    an uncompressed model is empty when its prefix holds no object.
    """
    artifact = (info.get("ModelArtifacts") or {}).get("S3ModelArtifacts", "")
    if not artifact:
        return None
    try:
        where = aws.parse_s3(artifact, "S3ModelArtifacts")
        s3 = aws.client(config, "s3")
        if not artifact.endswith(".tar.gz") and (info.get("OutputDataConfig") or {}).get("CompressionType") == "NONE":
            listed = s3.list_objects_v2(Bucket=where.bucket, Prefix=where.prefix + "/", MaxKeys=1)
            return not listed.get("KeyCount", len(listed.get("Contents", [])))
        body = s3.get_object(Bucket=where.bucket, Key=where.prefix)["Body"]
        try:
            with tarfile.open(fileobj=body, mode="r|gz") as tar:
                return all(member.isdir() for member in tar)
        finally:
            body.close()
    except Exception:  # noqa: BLE001 - a hint only: the job's result stands whatever happens here
        return None


def _list_objects(s3, where: aws.S3Uri) -> list[dict]:
    """The objects under the folder ``where``, in S3's order (the keys' UTF-8 bytes)."""
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=where.bucket, Prefix=where.prefix + "/"):
        objects += page.get("Contents", [])
    return objects


def _head(s3, where: aws.S3Uri, missing: str | None = None) -> dict:
    """HeadObject of the model, a missing (``missing`` says it) or unreadable one said in one line."""
    from botocore import exceptions as bex

    try:
        return s3.head_object(Bucket=where.bucket, Key=where.prefix)
    except bex.ClientError as exc:
        if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            raise UsageError(missing or f"{where.uri} does not exist") from exc
        if aws.error_code(exc) in ("403", "AccessDenied"):
            raise UsageError(f"{where.uri} is not readable with these credentials (access denied)") from exc
        raise


def open_object(config, where: aws.S3Uri, name: str = "model.tar.gz", missing: str | None = None) -> "RangedReader":
    """One object as a stream (the download starts at once): what the fetch hook hands the core,
    ``name`` being what it is called (and kept as by ``--no-extract``)."""
    s3 = aws.client(config, "s3")
    with aws.translated(f"downloading {where.uri}"):
        head = _head(s3, where, missing)
    size = head["ContentLength"]
    ui.info(f"downloading {where.uri} ({ui.size(size)})")
    reader = RangedReader(s3, where, size, head.get("ETag") or None, progress=Progress("download", size))
    reader.name = name
    return reader


# -- the streamed download ----------------------------------------------------------------------

#: Bytes per ranged GET: big enough that a request's latency does not count, small enough that
#: the window below stays small.
PART_SIZE = 8 * 1024**2
#: Ranged GETs running at once (each its own connection: what makes S3 fast).
WORKERS = 6
#: Parts held at once, the one being read included: memory stays under WINDOW * PART_SIZE
#: however slowly the reader unpacks (the workers wait for it).
WINDOW = 8
#: Tries of one part when its body breaks off (the request itself is retried by botocore).
PART_ATTEMPTS = 3
_READ = 1024**2
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class PartFailed(EnvironmentProblem):
    """A part of the object came back other than asked (exit 3: fetch again)."""


class _Stream(io.RawIOBase):
    """A readable stream whose subclass gives ``read(size)``."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.read(len(memoryview(buffer).cast("B")))
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)


class RangedReader(_Stream):
    """An S3 object as a readable stream, downloaded by concurrent ranged GETs and read in order.

    Workers (daemon threads) take the parts in order, at most ``window`` parts ahead of the one
    being read, so memory is bounded whatever the speed of the reader; each GET is pinned to the
    object's ETag (``IfMatch``), so an object replaced mid-download is refused, never mixed, and
    each part's length and range are checked. A worker's failure is raised, as fahr's one-line
    error, by the next :meth:`read`. :meth:`close` stops the workers (the GETs in flight are cut
    off) and drops the parts: the core calls it when done, on a refusal and on Ctrl-C.
    """

    def __init__(self, s3, where: aws.S3Uri, size: int, etag: str | None, *, progress=None,
                 part_size: int = PART_SIZE, workers: int = WORKERS, window: int = WINDOW,
                 attempts: int = PART_ATTEMPTS):
        super().__init__()
        self.s3, self.where, self.size, self.etag = s3, where, size, etag
        self.name = "model.tar.gz"  # what --no-extract keeps, whatever the object's key, as before
        self.part_size, self.window, self.attempts = part_size, max(window, 1), max(attempts, 1)
        self.progress = progress
        self.parts = -(-size // part_size)
        self._cond = threading.Condition()
        self._next = 0  # the next part a worker takes
        self._reading = 0  # the part the reader is on (or waits for): the window starts here
        self._taken = 0  # the next part the reader takes
        self._ready: dict[int, tuple[bytearray, int]] = {}  # part -> (its buffer, its length)
        # The part buffers, made once and used again: memory stays at what the window holds, not at
        # what the allocator keeps of many freed 8 MiB blocks (one arena per thread).
        self._free: list[bytearray] = []
        self._current: bytearray | None = None  # the buffer of the part being read
        self._bodies: set = set()  # the bodies of the GETs in flight, cut off by close()
        self._error: BaseException | None = None
        self._stopped = False
        self._view = memoryview(b"")
        self._pos = 0
        self._threads = [threading.Thread(target=self._work, name=f"fahr-s3-part-{i}", daemon=True)
                         for i in range(min(max(workers, 1), self.window, self.parts))]
        for thread in self._threads:
            thread.start()

    # -- the reader's side ------------------------------------------------------------------------

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if self.closed:
            raise ValueError("read of a closed stream")
        while self._pos >= len(self._view):
            if not self._advance():
                return b""
        data = bytes(self._view[self._pos:self._pos + size])
        self._pos += len(data)
        return data

    def _advance(self) -> bool:
        """Move to the next part (waiting for it); False at the end of the object."""
        self._view, self._pos = memoryview(b""), 0  # the part read is let go of now
        with self._cond:
            if self._current is not None:
                self._free.append(self._current)
                self._current = None
            index = self._reading = self._taken
            self._cond.notify_all()  # the window moved on: a worker may take one more part
            if index >= self.parts:
                return False
            while index not in self._ready and self._error is None and not self._stopped:
                self._cond.wait(0.5)  # timed: a Ctrl-C reaches this (main) thread at once
            if self._stopped:
                raise ValueError("read of a closed stream")
            if self._error is not None:
                self._raise(self._error)
            self._current, length = self._ready.pop(index)
            self._view = memoryview(self._current)[:length]
            self._taken = index + 1
        return True

    def _raise(self, exc: BaseException):
        """``exc``, a worker's failure, as fahr's one-line error: those of :func:`_head`
        (the same ``aws.translated`` floor), and an object changed mid-download said as such."""
        from botocore import exceptions as bex

        if isinstance(exc, FahrError):
            raise exc
        if isinstance(exc, bex.ClientError):
            code = aws.error_code(exc)
            if code in ("PreconditionFailed", "412"):
                raise EnvironmentProblem(f"{self.where.uri} changed while it was being downloaded (it is no longer "
                                         f"the object of ETag {self.etag}); nothing was written; fetch again") from exc
            if code in ("404", "NoSuchKey", "NotFound"):
                # It was there a moment ago (its HeadObject, or the listing, said so): not a typo.
                raise EnvironmentProblem(f"{self.where.uri} was deleted while it was being downloaded; nothing was "
                                         "written; fetch again") from exc
            if code in ("403", "AccessDenied"):
                raise UsageError(f"{self.where.uri} is not readable with these credentials (access denied)") from exc
        try:
            with aws.translated(f"downloading {self.where.uri}"):
                raise exc
        except FahrError:
            raise
        except Exception:  # noqa: BLE001 - not botocore's: the connection's own (urllib3, socket)
            said = (str(exc).splitlines() or [""])[0][:200] or type(exc).__name__
            raise EnvironmentProblem(f"downloading {self.where.uri} failed: {said}; nothing was written; "
                                     "fetch again") from exc

    def close(self) -> None:
        if self.closed:
            return
        with self._cond:
            self._stopped = True
            self._ready.clear()
            self._free.clear()
            self._current = None
            bodies = list(self._bodies)
            self._cond.notify_all()
        for body in bodies:
            try:
                body.close()  # a worker blocked reading it wakes up now
            except Exception:  # noqa: BLE001 - closing a broken connection: nothing more to do
                pass
        deadline = time.monotonic() + 2
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        self._view = memoryview(b"")
        super().close()

    # -- the workers' side ----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and self._error is None and self._next < self.parts \
                        and self._next >= self._reading + self.window:
                    self._cond.wait()
                if self._stopped or self._error is not None or self._next >= self.parts:
                    return
                index = self._next
                self._next += 1
            try:
                data = self._part(index)
            except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised there
                with self._cond:
                    if self._error is None and not self._stopped:
                        self._error = exc
                    self._cond.notify_all()
                return
            if data is None:
                return
            with self._cond:
                if self._stopped:
                    return
                self._ready[index] = data
                self._cond.notify_all()
            if self.progress is not None:
                self.progress(data[1])

    def _part(self, index: int) -> tuple[bytearray, int] | None:
        """Part ``index``, whole and checked (a buffer and the part's length); None once the reader
        has closed the stream."""
        from botocore import exceptions as bex

        start = index * self.part_size
        end = min(self.size, start + self.part_size) - 1
        want = end - start + 1
        extra = {"IfMatch": self.etag} if self.etag else {}
        for attempt in range(1, self.attempts + 1):
            response = self.s3.get_object(Bucket=self.where.bucket, Key=self.where.prefix,
                                          Range=f"bytes={start}-{end}", **extra)
            body = response["Body"]
            with self._cond:
                if self._stopped:
                    body.close()
                    return None
                self._bodies.add(body)
            buffer = None
            try:
                self._check_range(response.get("ContentRange"), start, end)
                with self._cond:
                    buffer = self._free.pop() if self._free else bytearray(self.part_size)
                got = 0
                while chunk := body.read(min(_READ, want + 1 - got)):
                    if got + len(chunk) > want:
                        raise PartFailed(f"downloading {self.where.uri}: the bytes {start}-{end} came back "
                                         f"longer than asked; nothing was written; fetch again")
                    buffer[got:got + len(chunk)] = chunk
                    got += len(chunk)
                    if self._stopped:
                        return None
                if got != want:
                    raise PartFailed(f"downloading {self.where.uri}: the bytes {start}-{end} came back with "
                                     f"{got} bytes instead of {want}; nothing was written; fetch again")
                buffer, taken = None, buffer
                return taken, want
            except (bex.ReadTimeoutError, bex.IncompleteReadError, bex.ResponseStreamingError, OSError):
                if self._stopped:
                    return None
                if attempt == self.attempts:
                    raise
            except Exception:
                if self._stopped:
                    return None  # the connection cut off by close(), whatever it raised
                raise
            finally:
                with self._cond:
                    self._bodies.discard(body)
                    if buffer is not None and not self._stopped:
                        self._free.append(buffer)  # this try failed: its buffer serves the next
                body.close()
        return None  # not reached: the last attempt returns or raises

    def _check_range(self, content_range: str | None, start: int, end: int) -> None:
        match = _CONTENT_RANGE.match(content_range or "")
        if not match:
            raise PartFailed(f"downloading {self.where.uri}: the bytes {start}-{end} came back without their "
                             f"range ({content_range!r}); nothing was written; fetch again")
        first, last, total = int(match.group(1)), int(match.group(2)), match.group(3)
        if (first, last) != (start, end) or (total != "*" and int(total) != self.size):
            raise PartFailed(f"downloading {self.where.uri}: asked for the bytes {start}-{end} of {self.size}, "
                             f"got {content_range!r}; nothing was written; fetch again")


# -- an uncompressed model as an archive --------------------------------------------------------


class ObjectsAsTar(_Stream):
    """S3 objects as one stream of an uncompressed tar archive, read forward once: each object's
    header, then its bytes, downloaded when their turn comes (a :class:`RangedReader` pinned to
    the ETag of the listing, so an object replaced meanwhile is refused, never mixed). The core
    unpacks it as any archive: the same rules, the size cap and the free space, into a folder
    beside the target moved into place only when complete.

    ``objects`` are (name in the archive, the object as listed); a name ending in ``/`` is a
    folder. :meth:`close` stops the download running.
    """

    name = "model.tar"  # what --no-extract keeps: an uncompressed tar

    def __init__(self, s3, where: aws.S3Uri, objects: list[tuple[str, dict]], *, progress=None):
        super().__init__()
        self.s3, self.where, self.objects, self.progress = s3, where, objects, progress
        self._reader: RangedReader | None = None
        self._chunks = self._generate()
        self._view = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed stream")
        while not self._view:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._view = memoryview(chunk)
        size = len(self._view) if size is None or size < 0 else size
        data, self._view = bytes(self._view[:size]), self._view[size:]
        return data

    def close(self) -> None:
        if self.closed:
            return
        if self._reader is not None:
            self._reader.close()
        self._chunks.close()
        self._view = memoryview(b"")
        super().close()

    def _generate(self):
        # The archive's first entry is its top folder ("./"): what the core peeks at to tell the
        # compression is then never a file's name (one named "BZh…" would look like bzip2).
        yield _tar_header("./", tarfile.DIRTYPE)
        for name, obj in self.objects:
            if name.endswith("/") or not name:
                if name:
                    yield _tar_header(name, tarfile.DIRTYPE, obj.get("LastModified"))
                continue
            size = obj["Size"]
            yield _tar_header(name, tarfile.REGTYPE, obj.get("LastModified"), size)
            if not size:
                continue
            where = aws.S3Uri(self.where.bucket, obj["Key"])
            self._reader = RangedReader(self.s3, where, size, obj.get("ETag") or None, progress=self.progress)
            try:
                while chunk := self._reader.read(_READ):
                    yield chunk
            finally:
                self._reader.close()
                self._reader = None
            yield bytes(-size % tarfile.BLOCKSIZE)
        yield bytes(2 * tarfile.BLOCKSIZE)  # the end-of-archive marker


def _tar_header(name: str, kind: bytes, modified=None, size: int = 0) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = modified.timestamp() if modified is not None else time.time()
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
