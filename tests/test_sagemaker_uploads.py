"""Local input folders uploaded once (issue 19, item 2): content-addressed under
``<output_path>/inputs/<tree>/``, a re-fit of the same folder sending nothing, a changed file
sending only itself, and the job seeing exactly the folder it was given.

First the rules on the real filesystem (the hashes, their cache, the tree), then the uploader
against moto on loopback (the stack's S3), the bytes counted at the wire; then real ``fahr fit``
processes on the emulated SageMaker whose job lists its channel (run these with
``flock /tmp/fahr-emulator.lock``), the bytes counted by a proxy in front of moto.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

from aws_emulator.fixtures import BUCKET, ROLE, job_name_of, run_fahr, sagemaker_args, write_model

import fahr_core.hashing
from fahr_core import hash_files
from fahr_core.image.cache import hash_cache_file


def make_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- hashes, their cache, the tree: the real filesystem ------------------------------------------------


@pytest.fixture
def reads(monkeypatch):
    """The files whose bytes fahr hashed (each call of the core's chunked digest)."""
    seen = []
    real = fahr_core.hashing.file_digest

    def counting(handle, head=b""):
        seen.append(Path(handle.name).name)
        return real(handle, head)

    monkeypatch.setattr(fahr_core.hashing, "file_digest", counting)
    return seen


FILES = {"a.txt": b"alpha", "sub/b.bin": b"\x00" * 3000, "sub/deeper/c.csv": b"1,2\n3,4\n"}


def test_a_folder_is_hashed_once_per_file_version(tmp_path, reads):
    data = make_folder(tmp_path / "data", FILES)
    time.sleep(2.1)  # past the racy window: a file changed in the clock's tick of its hashing is read again
    first = hash_files(data)
    assert [(n, s, d) for n, s, d, _ in first] == sorted((n, len(b), sha(b)) for n, b in FILES.items())
    assert sorted(reads) == ["a.txt", "b.bin", "c.csv"]
    reads.clear()
    assert hash_files(data) == first and reads == []  # unchanged: stat calls only
    (data / "a.txt").write_bytes(b"ALPHA")  # same size, new content
    again = hash_files(data)
    assert reads == ["a.txt"] and dict((n, d) for n, _, d, _ in again)["a.txt"] == sha(b"ALPHA")


@pytest.mark.parametrize("record", [b"not json", b'{"format": 2, "files": []}', b"\xff" * 100,
                                    b'{"format": 2, "context": "x", "files": {"a.txt": [1, 2]}}'])
def test_a_corrupt_hash_cache_is_ignored(tmp_path, reads, record):
    data = make_folder(tmp_path / "data", FILES)
    hash_files(data)
    cache = hash_cache_file(data.resolve())
    assert cache.is_file()
    cache.write_bytes(record)
    reads.clear()
    found = hash_files(data)
    assert {n: d for n, _, d, _ in found} == {n: sha(b) for n, b in FILES.items()}
    assert sorted(reads) == ["a.txt", "b.bin", "c.csv"]  # read afresh, never trusted, never a crash


def test_a_single_file_is_its_own_tree_under_its_name(tmp_path):
    (tmp_path / "one.csv").write_bytes(b"x,y\n")
    assert [(n, s, d) for n, s, d, _ in hash_files(tmp_path / "one.csv")] == [("one.csv", 4, sha(b"x,y\n"))]


def test_a_tree_from_the_bucket_is_trusted_only_as_the_tree_it_names():
    from fahr_sagemaker.uploads import File, parse_tree, tree_manifest

    manifest = tree_manifest([File("b", 1, "b" * 64, Path("b")), File("a", 2, "a" * 64, Path("a"))])
    assert json.loads(manifest)["files"] == [["a", 2, "a" * 64], ["b", 1, "b" * 64]]  # sorted: one name per tree
    name = sha(manifest)
    assert parse_tree(manifest, name) == {"a" * 64: ("a", 2), "b" * 64: ("b", 1)}
    assert parse_tree(manifest.replace(b'"a",2', b'"z",2'), name) == {}  # not the tree it is named
    for bad in (b'{"format":1,"files":[["a",-1,"%s"]]}' % (b"a" * 64), b'{"format":1,"files":[["a",1,"zz"]]}',
                b'{"format":9,"files":[]}', b"[1]", b"{"):
        assert parse_tree(bad, sha(bad)) == {}


def test_one_progress_display_for_many_threads(monkeypatch):
    import io

    from rich.console import Console

    from fahr_core import ui

    screen = io.StringIO()
    monkeypatch.setattr(ui, "_console", Console(file=screen, force_terminal=True, width=100, highlight=False))
    with ui.transfer("upload of train", 64 * 1000) as moved:
        threads = [threading.Thread(target=lambda: [moved(1000) for _ in range(8)]) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    text = screen.getvalue()
    assert "━" in text  # the bar, drawn by rich
    assert "upload of train: 62.5 KiB done" in text and text.count(" done") == 1
    plain = io.StringIO()  # not a terminal: no bar, a line at most every 2 s, then the one line
    monkeypatch.setattr(ui, "_console", Console(file=plain, force_terminal=False, width=200, highlight=False))
    with ui.transfer("upload of train", 1000) as moved:
        for _ in range(10):
            moved(100)
    assert plain.getvalue().splitlines() == ["fahr upload of train: 1000 bytes done"]


# -- the uploader against the emulated S3 ----------------------------------------------------------------


class CountingS3:
    """A proxy in front of moto that counts the bytes sent to it in object uploads (PutObject,
    UploadPart; a CopyObject sends none: S3 copies it), by key."""

    def __init__(self, upstream_port: int):
        self.upstream = upstream_port
        self.sent: dict[str, int] = {}
        self.copies: list[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while (size := int(self.rfile.readline().split(b";")[0], 16)):
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    return data
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self):
                body = self._body()
                key = self.path.split("?")[0]
                if self.command in ("PUT", "POST") and body:
                    with proxy.lock:
                        if "x-amz-copy-source" in self.headers:
                            proxy.copies.append(key)
                        else:
                            sent = int(self.headers.get("x-amz-decoded-content-length") or len(body))
                            proxy.sent[key] = proxy.sent.get(key, 0) + sent
                elif self.command == "PUT" and "x-amz-copy-source" in self.headers:
                    with proxy.lock:
                        proxy.copies.append(key)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
                headers["Content-Length"] = str(len(body))
                connection = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=60)
                connection.request(self.command, self.path, body=body, headers=headers)
                reply = connection.getresponse()
                data = reply.read()
                self.send_response(reply.status, reply.reason)
                for k, v in reply.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                connection.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.sent, self.copies = {}, []

    def bytes_sent(self) -> int:
        with self.lock:
            return sum(self.sent.values())


@pytest.fixture(scope="module")
def proxy(stack):
    counting = CountingS3(stack.moto_port)
    yield counting
    counting.server.shutdown()


@pytest.fixture
def s3_config(stack, proxy, monkeypatch):
    """The driver's config and environment for the uploader, in this process, through the proxy."""
    from fahr_sagemaker import aws

    for key, value in {**stack.env(), "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{proxy.port}"}.items():
        monkeypatch.setenv(key, value)
    aws._session.cache_clear()
    aws._client.cache_clear()
    proxy.reset()
    yield {"profile": "", "region": "us-east-1"}
    aws._session.cache_clear()
    aws._client.cache_clear()


def listing(stack, uri: str) -> dict[str, bytes]:
    """{name under the S3 folder ``uri``: its bytes}."""
    s3 = stack.client("s3")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix):]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return found


def test_uploaded_once_changed_files_alone_and_the_prefix_is_the_folder(stack, proxy, s3_config, tmp_path):
    from fahr_sagemaker import aws, uploads

    files = {f"part-{i:03}.txt": os.urandom(1000 + i) for i in range(40)}
    data = make_folder(tmp_path / "data", files)
    base = aws.S3Uri(BUCKET, "i19uploads-unit/inputs")
    first = uploads.upload(s3_config, "train", data, base)
    assert re.fullmatch(rf"s3://{BUCKET}/i19uploads-unit/inputs/[0-9a-f]{{64}}/", first)
    assert proxy.bytes_sent() >= sum(map(len, files.values()))
    assert listing(stack, first) == files

    proxy.reset()
    assert uploads.upload(s3_config, "train", data, base) == first
    assert proxy.bytes_sent() == 0 and proxy.copies == []  # nothing at all

    (data / "part-007.txt").write_bytes(b"changed")
    (data / "part-008.txt").unlink()
    (data / "new" / "n.txt").parent.mkdir()
    (data / "new" / "n.txt").write_bytes(b"new file")
    proxy.reset()
    second = uploads.upload(s3_config, "train", data, base)
    sent = {k.split("/")[-1]: n for k, n in proxy.sent.items() if "/inputs/" in k and not k.endswith(".json")
            and "/channels/" not in k}
    assert sent == {"part-007.txt": 7, "n.txt": 8}  # the changed and the new file, nothing else
    assert len(proxy.copies) == 38  # the unchanged files, copied within S3
    expected = {n: b for n, b in files.items() if n != "part-008.txt"}
    expected.update({"part-007.txt": b"changed", "new/n.txt": b"new file"})
    assert second != first and listing(stack, second) == expected  # no stale file, no extra one
    assert listing(stack, first) == files  # the first job's channel is as it was


def test_an_incomplete_tree_is_completed_and_a_stray_object_removed(stack, proxy, s3_config, tmp_path):
    from fahr_sagemaker import aws, uploads

    files = {"x.txt": b"x" * 10, "y.txt": b"y" * 20}
    data = make_folder(tmp_path / "data", files)
    base = aws.S3Uri(BUCKET, "i19uploads-partial/inputs")
    uri = uploads.upload(s3_config, "train", data, base)
    prefix = uri[len(f"s3://{BUCKET}/"):]
    s3 = stack.client("s3")
    s3.delete_object(Bucket=BUCKET, Key=prefix + "y.txt")  # an expired object, say
    s3.put_object(Bucket=BUCKET, Key=prefix + "stray.txt", Body=b"not of this folder")
    proxy.reset()
    assert uploads.upload(s3_config, "train", data, base) == uri
    assert listing(stack, uri) == files
    assert {k.split("/")[-1] for k in proxy.sent if not k.endswith(".json")} <= {"y.txt", "train"}


def test_a_file_changed_after_it_was_hashed_is_refused_not_uploaded(stack, s3_config, tmp_path, monkeypatch):
    from fahr_core import UsageError
    from fahr_sagemaker import aws, uploads

    data = make_folder(tmp_path / "data", {"a.txt": b"one", "b.txt": b"b"})
    hashed = uploads.hash_files

    def then_changed(path):
        found = hashed(path)
        (data / "a.txt").write_bytes(b"two")  # after its hash, before its upload
        return found

    monkeypatch.setattr(uploads, "hash_files", then_changed)
    with pytest.raises(UsageError, match="a.txt changed while it was being uploaded; run the fit again"):
        uploads.upload(s3_config, "train", data, aws.S3Uri(BUCKET, "i19uploads-changed/inputs"))
    keys = [o["Key"] for o in stack.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="i19uploads-changed/")
            .get("Contents", [])]
    assert not any(k.endswith("a.txt") or k.endswith(".json") for k in keys)  # no tree claims the old content


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_one_usage_error(s3_config, tmp_path):
    from fahr_core import UsageError
    from fahr_sagemaker import aws, uploads

    data = make_folder(tmp_path / "data", {"a.txt": b"a", "secret.bin": b"s"})
    (data / "secret.bin").chmod(0)
    with pytest.raises(UsageError, match=r"--input train: cannot read .*secret.bin \(Permission denied\)"):
        uploads.upload(s3_config, "train", data, aws.S3Uri(BUCKET, "i19uploads-unreadable/inputs"))


def test_concurrent_uploads_of_different_folders_never_mix(stack, s3_config, tmp_path):
    from fahr_sagemaker import aws, uploads

    base = aws.S3Uri(BUCKET, "i19uploads-race/inputs")
    folders = [make_folder(tmp_path / f"d{i}", {f"f{j}.txt": f"{i}-{j}".encode() for j in range(30 + i)})
               for i in range(3)]
    results: dict[int, str] = {}

    def one(i):
        results[i] = uploads.upload(s3_config, "train", folders[i], base)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results.values())) == 3
    for i, uri in results.items():
        assert listing(stack, uri) == {f"f{j}.txt": f"{i}-{j}".encode() for j in range(30 + i)}


# -- real fits on the emulated SageMaker ------------------------------------------------------------------

LISTS_ITS_CHANNEL = """\
import hashlib, json
from pathlib import Path
data = Path("/opt/ml/input/data/train")
config = json.loads(Path("/opt/ml/input/config/inputdataconfig.json").read_text())
seen = {p.relative_to(data).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data.rglob("*")) if p.is_file()}
print("channel", json.dumps(seen, sort_keys=True), flush=True)
"""


def channel_of(result) -> dict[str, str]:
    for line in result.stdout.splitlines():
        if line.startswith("channel "):
            return json.loads(line[len("channel "):])
    raise AssertionError(f"the job did not list its channel:\n{result.output}")


def test_refits_upload_nothing_then_only_the_change_and_the_job_sees_the_folder(stack, proxy, tmp_path):
    model = write_model(tmp_path, "i19uploadse2e", LISTS_ITS_CHANNEL)
    files = {f"shard-{i}.bin": os.urandom(5000 + i) for i in range(12)}
    files["nested/readme.txt"] = b"read me"
    data = make_folder(tmp_path / "data", files)
    env = {**stack.env(), "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{proxy.port}"}

    def fit(*extra):
        proxy.reset()
        result = run_fahr(stack, "fit", str(model), *sagemaker_args("i19uploads"), "--input", f"train={data}",
                          *extra, cwd=tmp_path, env=env)
        assert result.code == 0, result.output
        return result

    first = fit()
    assert proxy.bytes_sent() >= sum(map(len, files.values()))
    assert channel_of(first) == {n: sha(b) for n, b in files.items()}

    again = fit()  # the same folder: not one byte of it leaves the machine, nothing is copied
    assert proxy.bytes_sent() == 0 and proxy.copies == [], proxy.sent
    assert channel_of(again) == {n: sha(b) for n, b in files.items()}

    (data / "shard-3.bin").write_bytes(b"new weights")
    (data / "nested" / "readme.txt").unlink()
    changed = fit("--config.input_mode=train=FastFile", "--config.input_distribution=train=ShardedByS3Key")
    uploaded = {k.split("/")[-1]: n for k, n in proxy.sent.items()
                if re.search(r"/inputs/[0-9a-f]{64}/", k)}
    assert uploaded == {"shard-3.bin": len(b"new weights")}  # the changed file alone
    expected = {n: sha(b) for n, b in files.items() if n != "nested/readme.txt"}
    expected["shard-3.bin"] = sha(b"new weights")
    assert channel_of(changed) == expected  # the deleted file is gone, nothing else is there
    info = stack.client("sagemaker").describe_training_job(TrainingJobName=job_name_of(changed))
    (channel,) = info["InputDataConfig"]
    assert channel["InputMode"] == "FastFile"
    assert channel["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "ShardedByS3Key"


@pytest.mark.parametrize("setting, needle", [
    ("--config.input_mode=train=Stream", "input_mode train='Stream' is not one of File, FastFile, Pipe"),
    ("--config.input_mode=test=Pipe", "input_mode sets channel 'test', but no --input test=… is given"),
    ("--config.input_distribution=train=Sharded", "not one of FullyReplicated, ShardedByS3Key"),
])
def test_bad_channel_settings_are_one_line_exit_2(stack, tmp_path, setting, needle):
    model = write_model(tmp_path, "i19uploadsbad", LISTS_ITS_CHANNEL)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a").write_text("a")
    result = run_fahr(stack, "fit", str(model), *sagemaker_args("i19uploads"), "--input",
                      f"train={tmp_path / 'data'}", setting, cwd=tmp_path)
    assert result.code == 2, result.output
    assert result.error_lines() == [result.stderr.strip().splitlines()[-1]] and needle in result.error_lines()[0]
    assert "Traceback" not in result.output


def test_sharding_one_file_across_hosts_is_refused(stack, tmp_path):
    model = write_model(tmp_path, "i19uploadsbad", LISTS_ITS_CHANNEL)
    (tmp_path / "one.csv").write_text("a,b\n")
    result = run_fahr(stack, "fit", str(model), *sagemaker_args("i19uploads"), "--input",
                      f"train={tmp_path / 'one.csv'}", "--config.input_distribution=train=ShardedByS3Key",
                      "--config.train_instance_count=2", cwd=tmp_path)
    assert result.code == 2, result.output
    assert "1 of the 2 hosts would get nothing" in result.error_lines()[0]


def test_the_emulator_refuses_an_augmented_manifest_outside_pipe_mode(stack):
    from botocore.exceptions import ClientError

    sm = stack.client("sagemaker")
    with pytest.raises(ClientError, match="augmented manifest files are supported only for channels using Pipe input mode, not FastFile"):
        sm.create_training_job(
            TrainingJobName="i19uploads-manifest", RoleArn=f"arn:aws:iam::123456789012:role/{ROLE}",
            AlgorithmSpecification={"TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:y",
                                    "TrainingInputMode": "File"},
            OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/x"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 60},
            InputDataConfig=[{"ChannelName": "train", "InputMode": "FastFile", "DataSource": {"S3DataSource": {
                "S3DataType": "AugmentedManifestFile", "S3Uri": f"s3://{BUCKET}/m.json"}}}])
