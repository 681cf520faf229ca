"""`fahr fetch` of a SageMaker model saved uncompressed (``CompressionType: NONE``): its files are
S3 keys under the model's prefix, fetched one by one, and a key is an untrusted path.

First the rules on a listing of keys (``fahr_core.extract.check_listing``: an archive entry's
rules, plus folder markers and keys that clash) and the keys' archive stream into the core's
extractor, against a fake S3 client; then the real `fahr fetch` against the emulated AWS (a job
run with ``CompressionType: NONE``, hostile keys put beside its files; run these with
`flock /tmp/fahr-emulator.lock`): a refusal is one line, exit 2, nothing written anywhere.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import one_line_error
from hostile import MiB, counted_folds, interrupt_midway, make_scene, snapshot

from fahr_core.errors import EnvironmentProblem
from fahr_core.extract import ModelTooLarge, UnsafeArchive, check_listing, place
from fahr_sagemaker.artifacts import ObjectsAsTar
from fahr_sagemaker.aws import S3Uri

SHOWN = "s3://bucket/jobs/j/output/model/"


# -- the rules on a listing ------------------------------------------------------------------------


@pytest.mark.parametrize("keys, expected", [
    ([("../../../../tmp/x", 1)], "S3 key 's3://bucket/jobs/j/output/model/../../../../tmp/x' climbs out with '..'"),
    ([("ok.txt", 1), ("d/../../x", 1)], "'s3://bucket/jobs/j/output/model/d/../../x' climbs out with '..'"),
    ([("..\\..\\x", 1)], "climbs out with '..'"),
    ([("/etc/passwd", 1)], "S3 key 's3://bucket/jobs/j/output/model//etc/passwd' has an absolute path"),
    ([("x" * 256, 1)], "has a path component of 256 bytes, more than a file name may have (255)"),
    ([("a", 1), ("a/b", 1)], "S3 key 's3://bucket/jobs/j/output/model/a/b' passes through 'a', which is a file"),
    ([("a", 1), ("a/", 0)], "'s3://bucket/jobs/j/output/model/a/' appears twice in the archive (as a file, "
                            "then as a dir)"),
    ([("./a/b", 1), ("a", 1)], "appears twice in the archive (as a dir, then as a file)"),
    ([("a/b", 1), ("a//b", 1)], "S3 key 's3://bucket/jobs/j/output/model/a//b' lands on 'a/b', as an earlier "
                                "S3 key does"),
    ([("./x", 1), ("x", 1)], "lands on 'x', as an earlier S3 key does"),
    ([("d/", 5)], "S3 key 's3://bucket/jobs/j/output/model/d/' ends in '/' (a folder marker) but holds 5 bytes"),
    ([("", 5)], "S3 key 's3://bucket/jobs/j/output/model/' ends in '/' (a folder marker) but holds 5 bytes"),
])
def test_a_hostile_listing_is_refused_naming_the_key(keys, expected):
    with pytest.raises(UnsafeArchive) as caught:
        check_listing(keys, noun="S3 key", prefix=SHOWN)
    message = caught.value.message
    assert message.startswith("refusing the model: S3 key ") and expected in message, message
    assert message.endswith("nothing was downloaded or written (do not fetch these files by other means)")
    assert "\n" not in message


@pytest.mark.parametrize("keys", [
    [("d/", 0), ("d/x.txt", 3)],  # a folder marker beside its files, as the S3 console makes them
    [("", 0), ("x", 1)],  # the marker of the model's folder itself
    [("a//b", 1), ("./c", 1), ("e/./f", 1)],  # empty and '.' segments, each landing on one path only
    [("a-b", 1), ("a/b", 1), ("a.txt", 1)],  # names that share a beginning are no clash
    [("weird \\ name", 1)],  # a backslash is an ordinary character in a file name here
])
def test_an_ordinary_listing_passes(keys):
    check_listing(keys, noun="S3 key", prefix=SHOWN)


def test_a_listing_costs_work_linear_in_its_keys_and_their_depth(monkeypatch):
    # S3 keys are up to 1024 bytes: ~500 folders deep. Each key's case-folded form was computed
    # anew for each of its beginnings: 1,000 such keys (puts of empty objects) took minutes of CPU
    # before anything was downloaded. Many ordinary keys cost the same per key, however many.
    folds = counted_folds(monkeypatch)
    keys = [("/".join([f"top{i}"] + ["d"] * 500), 1) for i in range(4)]
    keys += [(f"shard{i // 1000:03d}/part-{i:06d}.bin", 1) for i in range(20_000)]
    check_listing(keys, noun="S3 key", prefix=SHOWN)
    components = sum(len(name.split("/")) for name, _ in keys)
    assert len(folds) <= 3 * components, f"{len(folds)} folds for {components} path components"


# -- the keys as one archive, into the core's extractor ---------------------------------------------

WHERE = S3Uri("bucket", "jobs/j/output/model")
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class FakeBucket:
    """get_object with Range (and IfMatch) over ``objects`` (key -> bytes); counts the GETs."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects
        self.gets: list[str] = []

    def listed(self, names) -> list[tuple[str, dict]]:
        return [(name, {"Key": f"{WHERE.prefix}/{name}", "Size": len(self.objects[f"{WHERE.prefix}/{name}"]),
                        "ETag": '"e"', "LastModified": WHEN}) for name in names]

    def get_object(self, Bucket, Key, Range, IfMatch=None):
        assert Bucket == WHERE.bucket and IfMatch == '"e"'
        self.gets.append(Key)
        if Key not in self.objects:  # deleted after the listing
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "The specified key does not exist."},
                               "ResponseMetadata": {"HTTPStatusCode": 404}}, "GetObject")
        data = self.objects[Key]
        start, end = map(int, Range.removeprefix("bytes=").split("-"))
        return {"Body": io.BytesIO(data[start:end + 1]), "ContentRange": f"bytes {start}-{end}/{len(data)}"}


def bucket_of(files: dict[str, bytes]) -> FakeBucket:
    return FakeBucket({f"{WHERE.prefix}/{name}": data for name, data in files.items()})


def test_the_keys_arrive_as_files_byte_for_byte(tmp_path):
    files = {"BZh9.bin": b"not bzip2", "d/": b"", "d/x.txt": b"x" * 3000, "empty.txt": b"",
             "big.bin": os.urandom(3 * MiB + 17), "deep/er/n\u00e4me.txt": b"utf-8"}
    s3 = bucket_of(files)
    place(ObjectsAsTar(s3, WHERE, s3.listed(sorted(files))), tmp_path / "out", extract=True, overwrite=False)
    out = tmp_path / "out"
    for name, data in files.items():
        if not name.endswith("/"):
            assert (out / name).read_bytes() == data, name
            assert (out / name).stat().st_mtime == WHEN.timestamp()
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging folder left
    assert sorted(os.listdir(out)) == ["BZh9.bin", "big.bin", "d", "deep", "empty.txt"]

    kept = place(ObjectsAsTar(s3, WHERE, s3.listed(sorted(files))), tmp_path / "kept", extract=False,
                 overwrite=False)
    assert os.listdir(kept) == ["model.tar"]  # an uncompressed tar, named as one
    with tarfile.open(kept / "model.tar") as tar:
        assert tar.getnames() == [".", *(name.rstrip("/") for name in sorted(files))]


def test_the_size_cap_applies_before_the_file_is_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("FAHR_MAX_MODEL_BYTES", "1M")
    s3 = bucket_of({"a.txt": b"a", "huge.bin": bytes(2 * MiB)})
    scene = make_scene(tmp_path)
    before = snapshot(scene)
    with pytest.raises(ModelTooLarge, match="at entry 'huge.bin'"):
        place(ObjectsAsTar(s3, WHERE, s3.listed(["a.txt", "huge.bin"])), scene / "work" / "out", extract=True,
              overwrite=True)
    assert s3.gets == [f"{WHERE.prefix}/a.txt"]  # huge.bin was refused on its size, never asked for
    assert snapshot(scene) == before


def test_a_key_deleted_after_the_listing_is_said_so(tmp_path):
    # It was listed a moment ago: "does not exist" (exit 2, as for a mistyped URI) misled.
    s3 = bucket_of({"a.txt": b"a", "b.txt": b"b"})
    listed = s3.listed(["a.txt", "b.txt"])
    del s3.objects[f"{WHERE.prefix}/b.txt"]
    with pytest.raises(EnvironmentProblem) as caught:
        place(ObjectsAsTar(s3, WHERE, listed), tmp_path / "out", extract=True, overwrite=False)
    assert str(caught.value) == (f"s3://bucket/{WHERE.prefix}/b.txt was deleted while it was being downloaded; "
                                 "nothing was written; fetch again")
    assert caught.value.exit_code == 3
    assert os.listdir(tmp_path) == []


# -- the real `fahr fetch` against the emulated AWS ----------------------------------------------------

from aws_emulator.fixtures import BUCKET, run_fahr, sagemaker_args, write_model, job_name_of  # noqa: E402

HELLO = (Path(__file__).resolve().parent.parent / "examples" / "hello" / "train.py").read_text()
TAG = "i15s3keys/train"


@pytest.fixture(scope="module")
def plain_job(stack, tmp_path_factory):
    """A completed job of TAG whose model SageMaker left uncompressed: (its name, its model's prefix)."""
    root = tmp_path_factory.mktemp("i15s3keys")
    trained = run_fahr(stack, "fit", str(write_model(root, "i15s3keys", HELLO)), *sagemaker_args("i15s3keys"),
                       cwd=root)
    assert trained.code == 0, trained.output
    sm = stack.client("sagemaker")
    info = sm.describe_training_job(TrainingJobName=job_name_of(trained))
    name = f"{info['TrainingJobName'][:40]}-plain"
    sm.create_training_job(
        TrainingJobName=name, AlgorithmSpecification=info["AlgorithmSpecification"], RoleArn=info["RoleArn"],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/i15s3keys", "CompressionType": "NONE"},
        ResourceConfig=info["ResourceConfig"], StoppingCondition={"MaxRuntimeInSeconds": 600},
        Environment=info["Environment"], Tags=[{"Key": "fahr:model-tag", "Value": TAG}],
    )
    deadline = time.monotonic() + 120
    while (status := sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]) == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(1)
    assert status == "Completed"
    prefix = f"i15s3keys/{name}/output/model/"
    assert sm.describe_training_job(TrainingJobName=name)["ModelArtifacts"]["S3ModelArtifacts"] == \
        f"s3://{BUCKET}/{prefix}"
    return name, prefix


@pytest.fixture
def keys(stack, plain_job):
    """Put objects (relative key -> bytes) beside the job's own model.json; removed afterwards."""
    s3, put = stack.client("s3"), []

    def add(objects: dict[str, bytes]):
        for rel, body in objects.items():
            s3.put_object(Bucket=BUCKET, Key=plain_job[1] + rel, Body=body)
            put.append(plain_job[1] + rel)

    yield add
    for key in put:
        s3.delete_object(Bucket=BUCKET, Key=key)


def fetch(stack, plain_job, target, *args, cwd):
    return run_fahr(stack, "fetch", str(target), TAG, f"s3://{BUCKET}/i15s3keys", "--job", plain_job[0], *args,
                    cwd=cwd)


def refused(stack, plain_job, scene) -> str:
    before = snapshot(scene)
    result = fetch(stack, plain_job, scene / "work" / "out", "--overwrite", cwd=scene)
    # The suite's rule for a refusal: exactly one non-empty line on stderr in all (no warning, no
    # traceback beside it), and that line is fahr's error.
    line = one_line_error(SimpleNamespace(returncode=result.code, stderr=result.stderr), 2)
    assert line.startswith("fahr error: "), line
    assert snapshot(scene) == before  # the old model, the victim, and no staging folder left
    return line


def test_a_key_climbing_out_writes_nothing_anywhere(stack, plain_job, keys, tmp_path):
    scene = make_scene(tmp_path)
    victim = scene / "victim-dir" / "victim.txt"
    climb = "../" * 30 + str(victim).lstrip("/")  # from wherever the files would be put: up to / and down
    keys({climb: b"OWNED", "zz-new.txt": b"new"})
    line = refused(stack, plain_job, scene)
    # The key is named (shortened in the middle: it is long), then what is wrong with it.
    assert line.startswith(f"fahr error: refusing the model: S3 key 's3://{BUCKET}/i15s3keys/"), line
    assert "/victim-dir/victim.txt' (" in line, line
    assert line.endswith(" characters) climbs out with '..'; nothing was downloaded or written (do not fetch "
                         "these files by other means)"), line
    assert victim.read_text() == "precious"


def test_a_key_through_a_file_is_one_line(stack, plain_job, keys, tmp_path):
    keys({"a": b"file", "a/b": b"under the file"})
    line = refused(stack, plain_job, make_scene(tmp_path))
    assert line.startswith(f"fahr error: refusing the model: S3 key 's3://{BUCKET}/{plain_job[1]}a/b' passes "
                           "through 'a', which is a file"), line


def test_a_folder_marker_fetches(stack, plain_job, keys, tmp_path):
    keys({"d/": b"", "d/x.txt": b"beside its marker"})
    result = fetch(stack, plain_job, tmp_path / "model", cwd=tmp_path)
    assert result.code == 0, result.output
    out = tmp_path / "model"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["d", "d/x.txt", "model.json"]
    assert (out / "d" / "x.txt").read_bytes() == b"beside its marker"
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no staging folder, nothing else


def test_ctrl_c_midway_leaves_the_target_as_it_was(stack, plain_job, keys, tmp_path):
    # Two objects of 40 MiB of random bytes: seconds from the emulated S3, long enough to be
    # caught while the first is being written and the second not yet asked for.
    import random

    from aws_emulator.fixtures import FAHR

    keys({f"big-{i}.bin": random.Random(i).randbytes(40 * MiB) for i in range(2)})
    scene = make_scene(tmp_path)
    before = snapshot(scene)
    code, stderr = interrupt_midway([str(FAHR), "fetch", str(scene / "work" / "out"), TAG, f"s3://{BUCKET}/i15s3keys",
                                     "--job", plain_job[0], "--overwrite"], cwd=scene, env=stack.env(),
                                    # the first file is being written, the download is running
                                    started=lambda staging: (staging / "big-0.bin").stat().st_size > 0)
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert snapshot(scene) == before  # the old model, and nothing beside it
