"""`fahr fetch --output`: a job's output.tar.gz (its /opt/ml/output/data) into its own target,
under the model's rules, through the real command. These need no Docker: the jobs sit where the
local driver keeps them (tests/hostile.py ``local_job``); tests/test_fetch_output_e2e.py runs real
jobs on the local driver, tests/test_sagemaker_e2e.py on the emulated SageMaker."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from conftest import one_line_error
from hostile import local_job, make_scene, member, snapshot, up_and_out

from fahr_core import PluginError, api
from fahr_core.values import FetchRequest

TAG = "hostile/train"


def tar_bytes(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


MODEL = tar_bytes([member("model.bin", data=b"weights")])
OUTPUT = tar_bytes([member("x.txt", data=b"output data"), member("train.ipynb", data=b"{}")])


@pytest.fixture
def scene(tmp_path):
    (tmp_path / "jobs").mkdir()
    return make_scene(tmp_path)


def job_with_output(scene, output_bytes, status="Completed"):
    job = local_job(scene / "jobs", MODEL)
    folder = scene / "jobs" / job
    (folder / "output" / "output.tar.gz").write_bytes(output_bytes)
    if status != "Completed":
        record = json.loads((folder / "job.json").read_text())
        record.update(status=status, failure_reason="AlgorithmError: exit code 1", model_artifact="")
        (folder / "output" / "model.tar.gz").unlink()
        (folder / "job.json").write_text(json.dumps(record))
    return job


def test_the_output_comes_back_into_its_own_target(fahr, scene):
    job = job_with_output(scene, OUTPUT)
    out = scene / "work" / "output"
    proc = fahr("fetch", out, TAG, scene / "jobs", "--job", job, "--output", check=0)
    assert sorted(p.name for p in out.iterdir()) == ["train.ipynb", "x.txt"]  # the outputs, not the model
    assert (out / "x.txt").read_bytes() == b"output data"
    assert f"output of {TAG} (job {job}) is in {out}" in proc.stderr
    # Without --job: the newest completed job's; --no-extract keeps output.tar.gz as it is.
    raw = scene / "work" / "raw"
    fahr("fetch", raw, TAG, scene / "jobs", "--output", "--no-extract", check=0)
    assert (raw / "output.tar.gz").read_bytes() == OUTPUT


def test_a_failed_jobs_output_comes_back_its_model_does_not(fahr, scene):
    job = job_with_output(scene, OUTPUT, status="Failed")
    fahr("fetch", scene / "work" / "clues", TAG, scene / "jobs", "--job", job, "--output", check=0)
    assert (scene / "work" / "clues" / "train.ipynb").is_file()
    line = one_line_error(fahr("fetch", scene / "work" / "m", TAG, scene / "jobs", "--job", job), 2)
    assert f"job {job} is Failed, it has no model to fetch" in line


def test_an_empty_output_is_said(fahr, scene):
    job = job_with_output(scene, tar_bytes([member("./", tarfile.DIRTYPE)]))
    proc = fahr("fetch", scene / "work" / "o", TAG, scene / "jobs", "--job", job, "--output", check=0)
    assert "the job's output is empty: it wrote no file in /opt/ml/output/data" in proc.stderr


def test_a_hostile_output_is_refused_as_a_model_would_be(fahr, scene, tmp_path):
    job = job_with_output(scene, up_and_out(tmp_path / "up.tar.gz", ups=2).read_bytes())
    watched = {k: v for k, v in snapshot(scene).items() if not k.startswith("jobs")}
    proc = fahr("fetch", scene / "work" / "out", TAG, scene / "jobs", "--job", job, "--output", "--overwrite",
                cwd=scene)
    line = one_line_error(proc, 2)
    assert line.startswith("fahr error: refusing the job's output: entry 'escape' is a symlink to "
                           "'sub/up/../../victim-dir', which leads outside the target"), line
    assert {k: v for k, v in snapshot(scene).items() if not k.startswith("jobs")} == watched


def test_a_job_without_output_archive_is_one_line(fahr, scene):
    job = job_with_output(scene, OUTPUT)
    (scene / "jobs" / job / "output" / "output.tar.gz").unlink()
    line = one_line_error(fahr("fetch", scene / "work" / "o", TAG, scene / "jobs", "--job", job, "--output"), 2)
    assert f"job {job} has no output.tar.gz" in line
    assert not (scene / "work" / "o").exists()


# -- a driver that ignores FetchRequest.what (before plugin API 1.3) ------------------------------

class _Session:
    """The part of a Session ``api._fetch`` uses, with a driver's fetch hook that answers ``answer``."""

    driver, location = "old", None

    def __init__(self, answer):
        self.answer, self.requests = answer, []

    def call(self, hook, request):
        self.requests.append(request)
        return self.answer(request)


class _Stream(io.BytesIO):
    pass


@pytest.mark.parametrize("kind", ["path", "named stream", "unnamed stream"])
def test_a_driver_that_hands_over_the_model_is_refused(tmp_path, kind):
    streams = []

    def old_fetch(request: FetchRequest):
        if kind == "path":
            path = request.download_dir / "model.tar.gz"
            path.write_bytes(MODEL)
            return path
        stream = _Stream(MODEL)
        if kind == "named stream":
            stream.name = "model.tar.gz"
        streams.append(stream)
        return stream

    session = _Session(old_fetch)
    target = tmp_path / "out"
    with pytest.raises(PluginError) as caught:
        api._fetch(session, target, TAG, None, "job-1", True, False, output=True)
    assert session.requests[0].what == "output"
    assert "driver 'old' cannot fetch a job's output: asked for output.tar.gz, it answered with" in str(caught.value)
    assert "before plugin API 1.3" in str(caught.value)
    assert not target.exists()
    assert all(stream.closed for stream in streams)


def test_a_model_request_says_so(tmp_path):
    def fetch(request):
        path = request.download_dir / "model.tar.gz"
        path.write_bytes(MODEL)
        return path

    session = _Session(fetch)
    api._fetch(session, tmp_path / "m", TAG, None, "job-1", True, False)
    assert session.requests[0].what == "model"
    assert (tmp_path / "m" / "model.bin").read_bytes() == b"weights"


def test_quiet_takes_true_false_or_status():
    with pytest.raises(api.UsageError, match=r"fetch\(\): quiet must be True, False or 'status', not str"):
        api.fetch("x", TAG, quiet="loud")
