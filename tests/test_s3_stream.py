"""`fahr fetch` of a model.tar.gz on S3, streamed into the safe extractor while it downloads.

Two halves: the ranged reader against a fake S3 client (order, the window that bounds memory,
parts that break off, an object changed midway, close() while parts are in flight); then the real
`fahr fetch` command against the emulated S3 (moto on loopback: the `stack` fixture; run these with
`flock /tmp/fahr-emulator.lock`), where a multi-part model must arrive byte for byte and a hostile,
truncated or corrupt one be refused in one line with nothing left behind, also when the refusal
or a Ctrl-C comes midway.
"""

from __future__ import annotations

import io
import os
import random
import tarfile
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ResponseStreamingError
from hostile import MiB, cve_2025_4517, interrupt_midway, make_scene, member, snapshot, up_and_out

from fahr_core import EnvironmentProblem, UsageError
from fahr_sagemaker.artifacts import PART_ATTEMPTS, PartFailed, RangedReader
from fahr_sagemaker.aws import S3Uri

WHERE = S3Uri("bucket", "models/job/output/model.tar.gz")
ETAG = '"0123abcd"'


def part_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fahr-s3-part-")]


@pytest.fixture(autouse=True)
def no_thread_left():
    yield
    deadline = time.monotonic() + 3
    while part_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert part_threads() == []


# -- the ranged reader, against a fake S3 client -------------------------------------------------


class Body:
    """A GetObject body: ``data`` in reads of at most ``step`` bytes; ``fail_at`` raises after
    that many bytes; ``gate`` (an Event) blocks every read until it is set or the body closed."""

    def __init__(self, data, *, step=64 * 1024, fail_at=None, gate=None):
        self.file, self.step, self.fail_at, self.gate = io.BytesIO(data), step, fail_at, gate
        self.closed = False

    def read(self, amt=None):
        if self.gate is not None:
            self.gate.wait()
        if self.closed:
            raise ValueError("I/O operation on closed file")  # as a connection closed under a reader
        if self.fail_at is not None and self.file.tell() >= self.fail_at:
            raise ResponseStreamingError(error="Connection broken: IncompleteRead")
        return self.file.read(min(amt or self.step, self.step))

    def close(self):
        self.closed = True
        if self.gate is not None:
            self.gate.set()


class FakeS3:
    """get_object with Range and IfMatch over ``data``; ``plan(index, attempt)`` may sleep, raise,
    or return a dict of what to change: ``data`` (the part's bytes), ``range`` (ContentRange),
    ``body`` (Body keyword arguments)."""

    def __init__(self, data, part_size, plan=None):
        self.data, self.part_size, self.plan = data, part_size, plan or (lambda index, attempt: None)
        self.etag = ETAG
        self.calls: list[tuple[int, str | None]] = []
        self.bodies: list[Body] = []
        self.lock = threading.Lock()

    def get_object(self, Bucket, Key, Range, IfMatch=None):
        assert (Bucket, Key) == (WHERE.bucket, WHERE.prefix)
        start, end = map(int, Range.removeprefix("bytes=").split("-"))
        index = start // self.part_size
        with self.lock:
            self.calls.append((index, IfMatch))
            attempt = sum(1 for i, _ in self.calls if i == index)
        change = self.plan(index, attempt) or {}
        if IfMatch is not None and IfMatch != self.etag:
            raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "At least one of the "
                               "pre-conditions you specified did not hold"},
                               "ResponseMetadata": {"HTTPStatusCode": 412}}, "GetObject")
        body = Body(change.get("data", self.data[start:end + 1]), **change.get("body", {}))
        self.bodies.append(body)
        return {"Body": body, "ContentRange": change.get("range", f"bytes {start}-{end}/{len(self.data)}")}


def reader(data, part_size=1000, plan=None, **kwargs):
    s3 = FakeS3(data, part_size, plan)
    return s3, RangedReader(s3, WHERE, len(data), ETAG, part_size=part_size, **kwargs)


def read_all(stream, sizes=(1, 777, 4096, 123)):
    out, turn = bytearray(), 0
    while chunk := stream.read(sizes[turn % len(sizes)]):
        out += chunk
        turn += 1
    return bytes(out)


def test_parts_finishing_out_of_order_are_read_in_order():
    data = random.Random(1).randbytes(50 * 1000 + 17)  # 51 parts, the last one short
    # Every sixth part is slow: the parts after it are done before it, while the reader waits for it.
    s3, stream = reader(data, plan=lambda index, attempt: time.sleep(0.01 if index % 6 == 0 else 0), workers=4,
                        window=6)
    try:
        assert read_all(stream) == data
        assert stream.read(10) == b""
    finally:
        stream.close()
    assert sorted(index for index, _ in s3.calls) == list(range(51))  # each part fetched once
    assert {etag for _, etag in s3.calls} == {ETAG}  # every GET pinned to the object read by HEAD


def test_memory_is_bounded_by_the_window():
    data = random.Random(2).randbytes(40 * 1000)
    s3, stream = reader(data, workers=3, window=5)
    try:
        assert stream.read(1) == data[:1]  # the reader is on part 0 and stops there
        time.sleep(0.3)
        assert len(s3.calls) == 5  # parts 0-4, no more: the workers wait for the reader
        assert stream.read(999) == data[1:1000]
        assert stream.read(1) == data[1000:1001]  # on part 1 now: one more may come
        deadline = time.monotonic() + 2
        while len(s3.calls) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert len(s3.calls) == 6
        assert read_all(stream) == data[1001:]
    finally:
        stream.close()


def test_a_part_that_breaks_off_is_fetched_again():
    data = random.Random(3).randbytes(10 * 1000)
    plan = lambda index, attempt: {"body": {"fail_at": 300, "step": 100}} if index == 4 and attempt == 1 else None
    s3, stream = reader(data, plan=plan)
    try:
        assert read_all(stream) == data
    finally:
        stream.close()
    assert [index for index, _ in s3.calls].count(4) == 2


def test_a_part_that_keeps_breaking_is_one_line():
    data = random.Random(4).randbytes(10 * 1000)
    plan = lambda index, attempt: {"body": {"fail_at": 300, "step": 100}} if index == 4 else None
    s3, stream = reader(data, plan=plan)
    try:
        with pytest.raises(EnvironmentProblem, match=r"^AWS SDK error while downloading s3://bucket/models/job/"
                                                     r"output/model.tar.gz: .*IncompleteRead"):
            read_all(stream)
    finally:
        stream.close()
    assert [index for index, _ in s3.calls].count(4) == PART_ATTEMPTS


def test_an_object_changed_midway_is_refused():
    data = random.Random(5).randbytes(10 * 1000)
    s3 = None

    def replaced_after_part_two(index, attempt):
        if index >= 2:
            s3.etag = '"another"'
        time.sleep(0.01 * (index < 2))

    s3, stream = reader(data, plan=replaced_after_part_two, workers=1, window=2)
    try:
        with pytest.raises(EnvironmentProblem) as caught:
            read_all(stream)
    finally:
        stream.close()
    assert str(caught.value) == ("s3://bucket/models/job/output/model.tar.gz changed while it was being downloaded "
                                 '(it is no longer the object of ETag "0123abcd"); nothing was written; fetch again')
    assert caught.value.exit_code == 3


def test_access_denied_midway_is_the_same_line_as_at_the_start():
    def denied(index, attempt):
        if index == 3:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                               "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")

    _, stream = reader(random.Random(6).randbytes(10 * 1000), plan=denied)
    try:
        with pytest.raises(UsageError) as caught:
            read_all(stream)
    finally:
        stream.close()
    assert str(caught.value) == ("s3://bucket/models/job/output/model.tar.gz is not readable with these "
                                 "credentials (access denied)")


def test_a_connection_error_is_one_line_exit_3():
    def reset(index, attempt):
        if index == 2:
            raise ConnectionResetError(104, "Connection reset by peer")

    _, stream = reader(random.Random(9).randbytes(10 * 1000), plan=reset)
    try:
        with pytest.raises(EnvironmentProblem) as caught:
            read_all(stream)
    finally:
        stream.close()
    assert str(caught.value) == ("downloading s3://bucket/models/job/output/model.tar.gz failed: [Errno 104] "
                                 "Connection reset by peer; nothing was written; fetch again")


@pytest.mark.parametrize("change,expected", [
    ({"data": b"x" * 999}, "the bytes 5000-5999 came back with 999 bytes instead of 1000"),
    ({"data": b"x" * 1001}, "the bytes 5000-5999 came back longer than asked"),
    ({"range": "bytes 0-999/10000"}, "asked for the bytes 5000-5999 of 10000, got 'bytes 0-999/10000'"),
    ({"range": "bytes 5000-5999/20000"}, "asked for the bytes 5000-5999 of 10000, got 'bytes 5000-5999/20000'"),
    ({"range": None}, "the bytes 5000-5999 came back without their range (None)"),
])
def test_a_part_other_than_asked_is_refused(change, expected):
    data = random.Random(7).randbytes(10 * 1000)
    _, stream = reader(data, plan=lambda index, attempt: change if index == 5 else None)
    try:
        with pytest.raises(PartFailed) as caught:
            read_all(stream)
    finally:
        stream.close()
    assert str(caught.value) == (f"downloading s3://bucket/models/job/output/model.tar.gz: {expected}; "
                                 "nothing was written; fetch again")
    assert caught.value.exit_code == 3


def test_close_midway_stops_the_workers_at_once():
    gate = threading.Event()  # never set: the GETs of parts 2 and later hang mid-body
    data = random.Random(8).randbytes(20 * 1000)
    s3, stream = reader(data, plan=lambda index, attempt: {"body": {"gate": gate}} if index >= 2 else None,
                        workers=4, window=6)
    assert stream.read(1500) == data[:1000]  # reads stop at a part's end
    deadline = time.monotonic() + 2
    while len(s3.calls) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(part_threads()) == 4
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 1
    assert part_threads() == [] and stream.closed
    assert all(body.closed for body in s3.bodies)
    assert stream._ready == {}  # the parts downloaded and not read are let go
    with pytest.raises(ValueError):
        stream.read(1)


def test_an_empty_object_is_an_empty_stream():
    _, stream = reader(b"")
    assert stream.read(100) == b"" and part_threads() == []
    stream.close()


# -- the real `fahr fetch` against the emulated S3 -------------------------------------------------

from aws_emulator.fixtures import BUCKET, run_fahr  # noqa: E402

TAG = "stream/train"


def gz_tar(members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=0) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_files():
    """A 40 MiB model (five parts of the download and more): random weights, a text file, a
    nested folder, a symlink."""
    rng = random.Random(11)
    files = {f"weights/shard-{i}.bin": rng.randbytes(7 * MiB + 1234 * i) for i in range(5)}
    files["model.json"] = b'{"layers": 12}'
    files["nested/deeper/notes.txt"] = b"hello\n" * 1000
    files["zeros.bin"] = bytes(4 * MiB)
    return files


@pytest.fixture(scope="module")
def model_archive(model_files) -> bytes:
    members = [member(name, data=data) for name, data in model_files.items()]
    members.append(member("weights/latest", tarfile.SYMTYPE, linkname="shard-4.bin"))
    return gz_tar(members)


def put(stack, key: str, body: bytes) -> str:
    stack.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


@pytest.fixture
def scene(tmp_path):
    return make_scene(tmp_path)


def fetch(stack, target, uri, *args, cwd):
    return run_fahr(stack, "fetch", str(target), TAG, uri, *args, cwd=cwd)


def refused(stack, scene, uri, code=2):
    before = snapshot(scene)
    result = fetch(stack, scene / "work" / "out", uri, "--overwrite", cwd=scene)
    assert result.code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("fahr error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert snapshot(scene) == before  # the old model, the victim, and no staging folder left
    return lines[0]


def test_a_multi_part_model_arrives_byte_for_byte(stack, tmp_path, model_files, model_archive):
    assert len(model_archive) > 4 * 8 * MiB  # several parts of the ranged download
    uri = put(stack, "stream/good/model.tar.gz", model_archive)
    result = fetch(stack, tmp_path / "model", uri, cwd=tmp_path)
    assert result.code == 0, result.output
    assert "download: 100% of" in result.stderr
    out = tmp_path / "model"
    found = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.is_symlink()}
    assert found == set(model_files)
    for name, data in model_files.items():
        assert (out / name).read_bytes() == data, name
    assert os.readlink(out / "weights" / "latest") == "shard-4.bin"
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no staging folder, nothing else

    kept = fetch(stack, tmp_path / "archive", uri, "--no-extract", cwd=tmp_path)
    assert kept.code == 0, kept.output
    assert os.listdir(tmp_path / "archive") == ["model.tar.gz"]
    assert (tmp_path / "archive" / "model.tar.gz").read_bytes() == model_archive


@pytest.mark.parametrize("case", ["cve-2025-4517", "up-and-out", "after-30-MiB"])
def test_a_hostile_model_is_refused_in_one_line(stack, scene, tmp_path, case):
    if case == "cve-2025-4517":
        body, expected = cve_2025_4517(tmp_path / "a.tar.gz", ups=2).read_bytes(), "passes through the symlink 'a'"
    elif case == "up-and-out":
        body = up_and_out(tmp_path / "a.tar.gz", ups=2).read_bytes()
        expected = "entry 'escape' is a symlink to 'sub/up/../../victim-dir', which leads outside the target"
    else:  # refused midway: four parts of the download are unpacked before the bad entry comes
        body = gz_tar([member("big.bin", data=random.Random(3).randbytes(30 * MiB)),
                       member("../victim-dir/victim.txt", data=b"OWNED")])
        expected = "entry '../victim-dir/victim.txt' climbs out with '..'"
    (tmp_path / "a.tar.gz").unlink(missing_ok=True)
    line = refused(stack, scene, put(stack, f"stream/{case}/model.tar.gz", body))
    assert line.startswith("fahr error: refusing the model: ") and expected in line, line


@pytest.mark.parametrize("case", ["truncated", "corrupt"])
def test_a_damaged_object_is_refused(stack, scene, model_archive, case):
    if case == "truncated":
        body, expected = model_archive[: len(model_archive) * 3 // 5], "(its compressed data ends early"
    else:  # one byte in the middle changed: a bad block, or else the gzip CRC at the very end, tells
        body = bytearray(model_archive)
        body[len(body) // 2] ^= 0xFF
        body, expected = bytes(body), "(its compressed data is damaged: "
    line = refused(stack, scene, put(stack, f"stream/{case}/model.tar.gz", body))
    assert line.startswith("fahr error: refusing the model: model.tar.gz is not a readable tar archive "), line
    assert expected in line, line


def test_a_missing_object_is_one_line(stack, scene):
    line = refused(stack, scene, f"s3://{BUCKET}/stream/nothing-here/model.tar.gz")
    assert line == f"fahr error: s3://{BUCKET}/stream/nothing-here/model.tar.gz does not exist"


def test_ctrl_c_midway_leaves_the_target_as_it_was(stack, scene):
    # 80 MiB of random bytes: seconds from the emulated S3, long enough to be caught in the middle.
    body = gz_tar([member(f"big-{i}.bin", data=random.Random(i).randbytes(40 * MiB)) for i in range(2)])
    uri = put(stack, "stream/slow/model.tar.gz", body)
    before = snapshot(scene)
    from aws_emulator.fixtures import FAHR

    code, stderr = interrupt_midway([str(FAHR), "fetch", str(scene / "work" / "out"), TAG, uri, "--overwrite"],
                                    cwd=scene, env=stack.env(),
                                    # unpacking has begun, the download is still running
                                    started=lambda staging: any(p.stat().st_size > 0 for p in staging.iterdir()))
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert snapshot(scene) == before


def test_a_refusal_midway_stops_the_download_threads(stack, scene, monkeypatch):
    """In process (fahr_core.fetch): once refused, no download thread is left running."""
    import fahr_core
    from fahr_core.extract import UnsafeArchive
    from fahr_sagemaker import aws

    body = gz_tar([member("big.bin", data=random.Random(4).randbytes(20 * MiB)),
                   member("/etc/evil", data=b"OWNED"),
                   member("more.bin", data=random.Random(5).randbytes(40 * MiB))])
    uri = put(stack, "stream/inproc/model.tar.gz", body)
    for key in [k for k in os.environ if k.startswith(("AWS_", "FAHR_"))]:
        monkeypatch.delenv(key)
    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(scene)
    aws._client.cache_clear()
    aws._session.cache_clear()
    before = snapshot(scene)
    try:
        with pytest.raises(UnsafeArchive, match="entry '/etc/evil' has an absolute path"):
            fahr_core.fetch(scene / "work" / "out", TAG, uri, overwrite=True, quiet=True)
        assert part_threads() == []  # close() joined them before the refusal came out
        assert snapshot(scene) == before
    finally:
        aws._client.cache_clear()
        aws._session.cache_clear()
