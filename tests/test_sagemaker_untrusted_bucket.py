"""What the SageMaker driver reads from AWS or its bucket is untrusted: another user may write
the bucket, and a Price List entry is a JSON string. Unit tests on moto in this process (no
emulator, no Docker): an input tree's prefix must hold exactly the folder, whatever stray keys,
lying tree records or files changed after hashing there were; a malformed price is no crash."""

from __future__ import annotations

import hashlib
import json

import pytest

moto = pytest.importorskip("moto")

from fahr_core import UsageError
from fahr_sagemaker import aws, pricing, uploads

BUCKET = "i19revsm-bucket"


@pytest.fixture
def s3(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws():
        import boto3

        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        monkeypatch.setattr(aws, "client", lambda config, service: client)
        yield client


def folder(root, files):
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def contents(s3, uri: str) -> dict[str, bytes]:
    prefix = uri[len(f"s3://{BUCKET}/"):]
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix):]] = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
    return found


def tree_of(path) -> str:
    return hashlib.sha256(uploads.tree_manifest(uploads.hash_files(path))).hexdigest()


@pytest.mark.parametrize("stray", ["a.txt/", "/a.txt", "sub//b.txt", "sub/b.txt/"])
def test_a_stray_key_is_removed_itself_not_the_file_it_resembles(s3, tmp_path, stray):
    # A key under the tree's prefix that is not the tree's is removed by its own name: taken
    # apart and joined again it named a file of the folder, which the job then lacked.
    data = folder(tmp_path / "data", {"a.txt": b"A" * 10, "sub/b.txt": b"B" * 10})
    base = aws.S3Uri(BUCKET, "p/inputs")
    tree = tree_of(data)
    s3.put_object(Bucket=BUCKET, Key=f"p/inputs/{tree}/{stray}", Body=b"stray")
    uri = uploads.upload({}, "train", data, base)
    assert contents(s3, uri) == {"a.txt": b"A" * 10, "sub/b.txt": b"B" * 10}


def test_a_lying_previous_tree_is_never_copied_from(s3, tmp_path):
    # The channel's previous tree says its "a.txt" has a.txt's hash; its object holds other
    # bytes of the same size (anyone writing the bucket can do this). The new tree must hold
    # the folder's bytes, not the bucket's claim.
    data = folder(tmp_path / "data", {"a.txt": b"A" * 100, "b.txt": b"B" * 100})
    base = aws.S3Uri(BUCKET, "p/inputs")
    first = uploads.upload({}, "train", data, base)
    s3.put_object(Bucket=BUCKET, Key=first[len(f"s3://{BUCKET}/"):] + "a.txt", Body=b"X" * 100)
    (data / "b.txt").write_bytes(b"C" * 100)
    second = uploads.upload({}, "train", data, base)
    assert second != first
    assert contents(s3, second) == {"a.txt": b"A" * 100, "b.txt": b"C" * 100}


def test_a_big_file_changed_after_hashing_is_refused_not_uploaded(s3, tmp_path, monkeypatch):
    # Above SINGLE_PUT a file is streamed, not read whole: a change between its hashing and
    # its upload that keeps its size must not land under a tree that names other bytes.
    monkeypatch.setattr(uploads, "SINGLE_PUT", 1024)
    data = folder(tmp_path / "data", {"big.bin": b"A" * 4096})
    hashed = uploads.hash_files

    def then_changed(path):
        files = hashed(path)
        (data / "big.bin").write_bytes(b"Z" * 4096)
        return files

    monkeypatch.setattr(uploads, "hash_files", then_changed)
    with pytest.raises(UsageError, match="changed while it was being uploaded"):
        uploads.upload({}, "train", data, aws.S3Uri(BUCKET, "p/inputs"))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert not [k for k in keys if k.endswith("big.bin")], keys


def test_a_tree_record_naming_files_outside_its_tree_is_not_trusted():
    files = [["../../secret", 3, "a" * 64], ["/abs", 3, "b" * 64], ["x//y", 3, "c" * 64], ["ok", 3, "d" * 64]]
    for entry in files[:3]:
        data = json.dumps({"format": uploads.TREE_FORMAT, "files": [entry]}, separators=(",", ":")).encode()
        assert uploads.parse_tree(data, hashlib.sha256(data).hexdigest()) == {}, entry
    data = json.dumps({"format": uploads.TREE_FORMAT, "files": [files[3]]}, separators=(",", ":")).encode()
    assert uploads.parse_tree(data, hashlib.sha256(data).hexdigest()) == {"d" * 64: ("ok", 3)}


@pytest.mark.parametrize("entry", [
    {"product": "x"},
    {"terms": [1]},
    {"terms": {"OnDemand": {"t": {"priceDimensions": {"d": {"unit": "Hrs", "pricePerUnit": ["1"]}}}}}},
    {"terms": {"OnDemand": {"t": {"priceDimensions": {"d": {"unit": "Hrs", "pricePerUnit": {"USD": True}}}}}}},
    "[" * 100000,
])
def test_a_malformed_price_list_entry_is_no_price_not_a_crash(entry):
    good = {"terms": {"OnDemand": {"t": {"priceDimensions": {"d": {"unit": "Hrs", "pricePerUnit": {"USD": "1.5"}}}}}}}
    raw = entry if isinstance(entry, str) else json.dumps(entry)
    assert pricing.hourly_from_price_list([raw]) is None
    assert pricing.hourly_from_price_list([raw, json.dumps(good)]) == 1.5


def test_a_previous_tree_far_bigger_than_this_one_is_not_read(s3, tmp_path, monkeypatch):
    # A tree record parsed takes several times its bytes: one written (with its pointer) by
    # anyone writing the bucket must not make a fit of a small folder read and parse hundreds of
    # MiB. It only saves uploads, so a far bigger one is passed over and the file sent.
    data = folder(tmp_path / "data", {"a.txt": b"A" * 100})
    base = aws.S3Uri(BUCKET, "p/inputs")
    digest = hashlib.sha256(b"A" * 100).hexdigest()
    entries = [["a.txt", 100, digest]] + [[f"pad/{i:08d}", 0, "0" * 64] for i in range(30000)]
    record = json.dumps({"format": uploads.TREE_FORMAT, "files": entries}, separators=(",", ":")).encode()
    assert len(record) > 2 * 1024**2
    name = hashlib.sha256(record).hexdigest()
    s3.put_object(Bucket=BUCKET, Key=f"p/inputs/{name}.json", Body=record)
    s3.put_object(Bucket=BUCKET, Key=f"p/inputs/{name}/a.txt", Body=b"A" * 100)
    s3.put_object(Bucket=BUCKET, Key="p/inputs/channels/train", Body=name.encode())
    parsed = []
    real = uploads.parse_tree
    monkeypatch.setattr(uploads, "parse_tree", lambda data, name: parsed.append(len(data)) or real(data, name))
    uri = uploads.upload({}, "train", data, base)
    assert contents(s3, uri) == {"a.txt": b"A" * 100}
    assert max(parsed, default=0) < 2 * 1024**2, parsed



def test_back_to_a_folder_then_one_change_uploads_only_that_file(s3, tmp_path, monkeypatch):
    # X, then Y, then X again (unchanged: nothing sent), then X with one file changed: the
    # channel's previous tree is X's, so only that file is sent, not all that Y lacks.
    x = folder(tmp_path / "x", {"a.txt": b"A" * 50, "b.txt": b"B" * 50})
    y = folder(tmp_path / "y", {"c.txt": b"C" * 50})
    base = aws.S3Uri(BUCKET, "p/inputs")
    for path in (x, y, x):
        uploads.upload({}, "train", path, base)
    sent = []
    real = uploads._upload_one
    monkeypatch.setattr(uploads, "_upload_one", lambda s3, file, *rest: sent.append(file.name) or real(s3, file, *rest))
    (x / "b.txt").write_bytes(b"D" * 50)
    uri = uploads.upload({}, "train", x, base)
    assert sent == ["b.txt"]
    assert contents(s3, uri) == {"a.txt": b"A" * 50, "b.txt": b"D" * 50}
