"""Every error keeps its documented exit code, in one line (issue 7, section 6), and `fetch` copies
nothing from outside the job's own folder (section 1).

Through the real `fahr` command. The job folders are written here as the local driver lays them
out (``<output_path>/<job>/job.json`` and ``output/model.tar.gz``), broken in the ways a careless
or hostile hand breaks them; no Docker engine is needed: each refusal comes before any.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time

import pytest

from conftest import run_fahr

TAG = "hello/train"


def one_error_line(proc, code=2):
    """The process ended with ``code`` and said why in exactly one line, with no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stderr}"
    assert len(lines) == 1 and lines[0].startswith("fahr error: "), proc.stderr
    return lines[0]


def archive_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_job(jobs_dir, name, *, record=None, raw=None, model=b"own model", **fields):
    """A finished local job as the driver leaves it; ``raw`` replaces its job.json's bytes."""
    job = jobs_dir / name
    (job / "output").mkdir(parents=True)
    if model is not None:
        (job / "output" / "model.tar.gz").write_bytes(archive_of({"model.json": model}))
    if record is None:
        record = {"job_name": name, "model_tag": TAG, "image": f"{TAG}:abc", "status": "Completed",
                  "created": time.time(), **fields}
    (job / "job.json").write_bytes(raw if raw is not None else json.dumps(record).encode())
    return job


# -- 1. job.json is untrusted --------------------------------------------------------------------

GOOD = {"job_name": "job-1", "model_tag": TAG, "image": f"{TAG}:abc", "status": "Completed", "created": 1.0}

BAD_RECORDS = {
    "truncated": json.dumps(GOOD)[:40].encode(),
    "a list": b'["job-1", "Completed"]',
    "no status": json.dumps({k: v for k, v in GOOD.items() if k != "status"}).encode(),
    "no model_tag": json.dumps({k: v for k, v in GOOD.items() if k != "model_tag"}).encode(),
    "no job_name": json.dumps({k: v for k, v in GOOD.items() if k != "job_name"}).encode(),
    "not UTF-8": b'{"job_name": "job-1", "status": "\xff\xfe"}',
    "status a list": json.dumps({**GOOD, "status": ["Completed"]}).encode(),
    "created a string": json.dumps({**GOOD, "created": "yesterday"}).encode(),
    "created NaN": json.dumps({**GOOD, "created": float("nan")}).encode(),
    "instance_count a billion": json.dumps({**GOOD, "instance_count": 10**9}).encode(),
    "channels not strings": json.dumps({**GOOD, "channels": {"train": 3}}).encode(),
    "another job's name": json.dumps({**GOOD, "job_name": "job-2"}).encode(),
    "checkpoint_path relative": json.dumps({**GOOD, "checkpoint_path": "ckpt"}).encode(),
    "checkpoint_path a number": json.dumps({**GOOD, "checkpoint_path": 3}).encode(),
    "checkpoint_path the root": json.dumps({**GOOD, "checkpoint_path": "/"}).encode(),
    "nested 200 000 deep": b"[" * 200_000 + b"]" * 200_000,
    "empty": b"",
}


@pytest.mark.parametrize("kind", [*BAD_RECORDS, "a folder", "a link to /dev/zero"])
def test_a_bad_job_record_is_one_line_exit_2_for_fetch_wait_and_stop(kind, jobs_dir, tmp_path):
    if kind == "a folder":
        job = make_job(jobs_dir, "job-1", raw=b"")
        (job / "job.json").unlink()
        (job / "job.json").mkdir()
    elif kind == "a link to /dev/zero":
        job = make_job(jobs_dir, "job-1", raw=b"")
        (job / "job.json").unlink()
        (job / "job.json").symlink_to("/dev/zero")
    else:
        job = make_job(jobs_dir, "job-1", raw=BAD_RECORDS[kind])
    for command in (["fetch", tmp_path / "out", TAG, "--job", "job-1"], ["wait", "job-1"], ["stop", "job-1"]):
        line = one_error_line(run_fahr(*command, timeout=60))
        assert f"{job / 'job.json'} " in line and "restore it, or remove the job's folder" in line, line
    assert not (tmp_path / "out").exists()


def test_one_bad_record_does_not_break_fetch_by_tag(jobs_dir, tmp_path):
    now = time.time()
    make_job(jobs_dir, "old-good", model=b"older", created=now - 100)
    make_job(jobs_dir, "new-good", model=b"newest good", created=now - 50)
    make_job(jobs_dir, "other-tag", model=b"other", created=now, model_tag="other/train")
    make_job(jobs_dir, "still-running", model=None, created=now, status="InProgress")
    for name, raw in [("bad-list", b"[]"), ("bad-truncated", b'{"job_name": "bad-truncated", "sta'),
                      ("bad-status", json.dumps({**GOOD, "job_name": "bad-status", "status": 3}).encode())]:
        make_job(jobs_dir, name, raw=raw, model=b"bad")
    (jobs_dir / "bad-folder" / "job.json").mkdir(parents=True)

    proc = run_fahr("fetch", tmp_path / "out", TAG, check=0)
    assert (tmp_path / "out" / "model.json").read_bytes() == b"newest good"
    warnings = sorted(line for line in proc.stderr.splitlines() if line.startswith("fahr warning skipping"))
    # The newest job of the tag is still running: said in one line, then the newest completed one.
    assert "fahr warning the newest job of hello/train, still-running, is InProgress" in proc.stderr
    expected = sorted([
        ("bad-folder", "is a folder, not a file"),
        ("bad-list", "holds a JSON array, not a job record (a JSON object)"),
        ("bad-status", "has status = 3, not one of InProgress, Completed, Failed, Stopping, Stopped"),
        ("bad-truncated", "is not valid JSON (Unterminated string"),
    ])
    assert len(warnings) == len(expected), proc.stderr  # one line for each bad folder, no more
    for line, (name, why) in zip(warnings, expected):
        assert line.startswith(f"fahr warning skipping {jobs_dir / name}: its job.json {why}"), line



@pytest.mark.parametrize("field, value", [("created", 1e300), ("started", -1e12)])
def test_a_time_no_date_can_hold_is_one_bad_record_not_a_broken_listing(jobs_dir, field, value):
    now = time.time()
    make_job(jobs_dir, "good", created=now - 10)
    make_job(jobs_dir, "odd", **{"created": now, field: value})
    proc = run_fahr("jobs", "--json", check=0)
    assert [row["job_name"] for row in json.loads(proc.stdout)] == ["good"]
    [warning] = [line for line in proc.stderr.splitlines() if line.strip()]
    assert warning.startswith(f"fahr warning skipping {jobs_dir / 'odd'}: its job.json has {field} = "), warning

# -- 2. fetch copies only the job folder's own archive ------------------------------------------


@pytest.mark.parametrize("extract", [False, True])
def test_fetch_ignores_a_model_artifact_that_points_elsewhere(jobs_dir, tmp_path, extract):
    marker = tmp_path / "secret.tar.gz"
    marker.write_bytes(archive_of({"model.json": b"SECRET MARKER"}))
    own = make_job(jobs_dir, "job-1", model=b"own model", model_artifact=str(marker))
    make_job(jobs_dir, "job-2", model=b"own model 2", model_artifact="/etc/passwd", created=0)
    flags = [] if extract else ["--no-extract"]

    run_fahr("fetch", tmp_path / "a", TAG, "--job", "job-1", *flags, check=0)
    run_fahr("fetch", tmp_path / "b", TAG, "--job", "job-2", *flags, check=0)
    if extract:
        assert (tmp_path / "a" / "model.json").read_bytes() == b"own model"
        assert (tmp_path / "b" / "model.json").read_bytes() == b"own model 2"
    else:
        assert (tmp_path / "a" / "model.tar.gz").read_bytes() == (own / "output" / "model.tar.gz").read_bytes()
        with tarfile.open(tmp_path / "b" / "model.tar.gz") as tar:
            assert tar.extractfile("model.json").read() == b"own model 2"

    # Without an archive of its own, the job has nothing to fetch: what the record names is not taken.
    (own / "output" / "model.tar.gz").unlink()
    line = one_error_line(run_fahr("fetch", tmp_path / "c", TAG, "--job", "job-1", *flags))
    assert f"{own / 'output' / 'model.tar.gz'} is missing" in line
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("link", ["archive", "output folder"])
def test_fetch_refuses_an_archive_reached_through_a_symlink(jobs_dir, tmp_path, link):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.tar.gz").write_bytes(archive_of({"model.json": b"SECRET MARKER"}))
    job = make_job(jobs_dir, "job-1", model=None)
    if link == "archive":
        (job / "output" / "model.tar.gz").symlink_to(outside / "model.tar.gz")
    else:
        (job / "output").rmdir()
        (job / "output").symlink_to(outside)
    for flags in ([], ["--no-extract"]):
        line = one_error_line(run_fahr("fetch", tmp_path / "out", TAG, "--job", "job-1", *flags))
        assert "is a symbolic link" in line and "refusing" in line
        assert not (tmp_path / "out").exists()


def test_a_fifo_for_an_archive_is_refused_without_hanging(jobs_dir, tmp_path):
    job = make_job(jobs_dir, "job-1", model=None)
    os.mkfifo(job / "output" / "model.tar.gz")
    line = one_error_line(run_fahr("fetch", tmp_path / "out", TAG, "--job", "job-1", timeout=60))
    assert "is not a regular file" in line


# -- 3. fahr.toml ---------------------------------------------------------------------------------


def _project(tmp_path, kind):
    folder = tmp_path / "project"
    folder.mkdir()
    path = folder / "fahr.toml"
    if kind == "arrays 200 000 deep":
        path.write_text("a = " + "[" * 200_000 + "]" * 200_000 + "\n")
    elif kind == "tables 200 000 deep":
        path.write_text("[" + ".".join(["a"] * 200_000) + "]\n")
    elif kind == "a dotted key 200 000 deep":
        path.write_text(".".join(["a"] * 200_000) + " = 1\n")
    elif kind == "inline tables 100 000 deep":
        path.write_text("a = " + "{b = " * 100_000 + "1" + "}" * 100_000 + "\n")
    elif kind == "numeric keys 5 000 deep":  # no letter to count: only the parsed result shows it
        path.write_text("[" + ".".join(["1"] * 5_000) + "]\n")
    elif kind == "a folder":
        path.mkdir()
    elif kind == "not UTF-8":
        path.write_bytes(b'[local]\ninstance_type = "\xff"\n')
    elif kind == "unreadable (a link loop)":
        path.symlink_to(path)
    elif kind == "a FIFO":
        os.mkfifo(path)
    return folder


@pytest.mark.parametrize("kind, says", [
    ("arrays 200 000 deep", "nests tables or arrays more than 64 levels deep"),
    ("tables 200 000 deep", "nests tables or arrays more than 64 levels deep"),
    ("a dotted key 200 000 deep", "nests tables or arrays more than 64 levels deep"),
    ("inline tables 100 000 deep", "nests tables or arrays more than 64 levels deep"),
    ("numeric keys 5 000 deep", "nests tables or arrays more than 64 levels deep"),
    ("a folder", "is a folder, not a TOML file"),
    ("not UTF-8", "is not valid TOML (not UTF-8 text: byte 0xff at offset 25)"),
    ("unreadable (a link loop)", "cannot read"),
    ("a FIFO", "is not a regular file"),
])
def test_a_broken_fahr_toml_is_one_line_exit_2(tmp_path, kind, says):
    folder = _project(tmp_path, kind)
    started = time.monotonic()
    line = one_error_line(run_fahr("config", cwd=folder, timeout=60))
    assert says in line and str(folder / "fahr.toml") in line, line
    assert time.monotonic() - started < 20  # tomllib alone spends a minute on [a.a.a…] 200 000 deep


def test_a_fahr_toml_at_the_depth_limit_is_read(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "fahr.toml").write_text(
        'v = [1.5, 2.5]\n[local]\ninstance_type = "m.5.x"  # a.b.c\n[' + ".".join(["x"] * 64) + ']\nw = 1\n')
    proc = run_fahr("config", cwd=folder, check=0)
    assert "'m.5.x'" in proc.stdout
    (folder / "fahr.toml").write_text('[' + ".".join(["x"] * 65) + ']\nw = 1\n')
    assert "more than 64 levels deep" in one_error_line(run_fahr("config", cwd=folder))


# -- 4. instance counts and 7. output_path: refused before anything is built --------------------


@pytest.mark.parametrize("count", ["1000000000", "65", "0", "-1"])
def test_local_instance_count_out_of_range_is_refused_before_the_build(jobs_dir, model_dir, count):
    line = one_error_line(run_fahr("fit", model_dir / "train.py", f"--config.instance_count={count}"))
    assert f"config.instance_count={count}: must be 1 to 64" in line
    assert not (model_dir / "Dockerfile").exists()  # the build context was never prepared
    assert not jobs_dir.exists()


@pytest.mark.parametrize("count", ["1000000000", "1001", "0", "-1"])
def test_sagemaker_instance_count_out_of_range_is_refused_before_the_build(model_dir, count):
    line = one_error_line(run_fahr(
        "fit", model_dir / "train.py", "--train-driver", "sagemaker", "--config.output_path=s3://bucket/models",
        "--config.role_name=role", f"--config.train_instance_count={count}"))
    assert f"config.train_instance_count={count}: must be 1 to 1000" in line
    assert not (model_dir / "Dockerfile").exists()


@pytest.mark.parametrize("where", ["a file", "under a file", "not writable", "a broken link", "holding NUL"])
def test_an_unusable_output_path_is_refused_before_the_build(model_dir, tmp_path, monkeypatch, where):
    monkeypatch.delenv("FAHR_LOCAL_OUTPUT_PATH", raising=False)  # it would outrank fahr.toml
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    env = {}
    if where == "a file":
        path, says = afile, f"config.output_path={afile} is a file, not a folder"
    elif where == "under a file":
        path, says = afile / "jobs", f"config.output_path={afile / 'jobs'} is under {afile}, a file, not a folder"
    elif where == "not writable":
        if os.access("/proc/1", os.W_OK):
            pytest.skip("no folder here is unwritable for this user")
        path, says = "/proc/1/fahr-jobs", "/proc/1 is not writable"
    elif where == "a broken link":
        (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
        path, says = tmp_path / "gone", "is a broken link"
    else:  # TOML can spell a NUL character, a path cannot hold one
        (model_dir / "fahr.toml").write_text('[local]\noutput_path = "/tmp/a\\u0000b"\n')
        path, says = None, "holds a NUL character"
    if path is not None:
        env["FAHR_LOCAL_OUTPUT_PATH"] = str(path)
    line = one_error_line(run_fahr("fit", model_dir / "train.py", env=env))
    assert says in line, line
    assert not (model_dir / "Dockerfile").exists()
    assert afile.read_text() == "not a folder"


# -- 5. names with a trailing newline ----------------------------------------------------------


def test_a_job_name_with_a_trailing_newline_is_refused(jobs_dir, tmp_path):
    make_job(jobs_dir, "job-1")
    for command in (["wait", "job-1\n"], ["stop", "job-1\n"], ["fetch", tmp_path / "out", TAG, "--job", "job-1\n"]):
        line = one_error_line(run_fahr(*command))
        assert "'job-1\\n' is not a valid job name" in line
    line = one_error_line(run_fahr("fetch", tmp_path / "out", TAG + "\n", "--job", "job-1"))
    assert "is not a model image tag" in line
    assert not (tmp_path / "out").exists()


def test_an_environment_variable_too_long_for_any_process_is_refused_before_the_build():
    from fahr_core import plan
    from fahr_core.errors import UsageError

    plan.validate_environment({"BIG": "x" * (131072 - len("BIG=") - 1)})  # exactly the limit
    with pytest.raises(UsageError, match=r"--env BIG=…: the variable is 131073 bytes, over the 131072"):
        plan.validate_environment({"BIG": "x" * (131072 - len("BIG="))})


def test_channel_and_env_names_with_a_trailing_newline_are_refused():
    from fahr_core import plan
    from fahr_core.errors import UsageError

    for good in ("train", "a.b-c_d"):
        plan.validate_channels({good: "/data"})
    with pytest.raises(UsageError, match="a channel name is"):
        plan.validate_channels({"train\n": "/data"})
    plan.validate_environment({"TOKEN": "x"})
    with pytest.raises(UsageError, match="a variable name is"):
        plan.validate_environment({"TOKEN\n": "x"})


# -- 6. usage and tar errors are one line --------------------------------------------------------


@pytest.mark.parametrize("args, says", [
    (["fit"], "fahr error: missing argument 'TRAINING_ARTIFACT'; see 'fahr fit --help'"),
    (["fetch"], "fahr error: missing argument 'LOCAL_TARGET_DIRECTORY'; see 'fahr fetch --help'"),
    (["wait"], "fahr error: missing argument 'JOB_NAME'; see 'fahr wait --help'"),
    (["fit", "x.py", "--hp"], "fahr error: option '--hp' requires an argument; see 'fahr fit --help'"),
    (["fetch", "d", TAG, "--job"], "fahr error: option '--job' requires an argument; see 'fahr fetch --help'"),
    (["drivers", "--json=3"], "fahr error: option '--json' does not take a value; see 'fahr drivers --help'"),
    (["drivers", "--bogus"], "fahr error: no such option: --bogus"),
    (["--bogus"], "fahr error: no such option: --bogus; see 'fahr --help'"),
    (["--bogus", "fit", "x.py"], "fahr error: no such option: --bogus; see 'fahr --help'"),
    (["frobnicate"], "fahr error: no such command 'frobnicate'; see 'fahr --help'"),  # no near command: no suggestion
    (["fit", "x.py", "--bogus"], "fahr error: unexpected argument '--bogus': see the command's --help"),
])
def test_usage_errors_are_one_line_exit_2(args, says):
    proc = run_fahr(*args)
    line = one_error_line(proc)
    assert line.startswith(says), line
    if args[0] == "drivers":
        assert line.endswith("; see 'fahr drivers --help'")
    assert proc.stdout == ""


def test_help_and_version_still_work():
    proc = run_fahr("fit", "--help", check=0)
    assert "Usage: fahr fit" in proc.stdout and "--hp" in proc.stdout
    proc = run_fahr("--version", check=0)
    assert proc.stdout.startswith("fahr ") and "driver local" in proc.stdout
    proc = run_fahr()  # fahr alone shows its help, as before (exit 2: a command is missing)
    assert proc.returncode == 2 and "Usage: fahr" in proc.stderr and "Commands" in proc.stderr


def test_a_corrupt_archive_is_one_line(tmp_path):
    junk = tmp_path / "model.tar.gz"
    junk.write_bytes(os.urandom(4096))
    line = one_error_line(run_fahr("fetch", tmp_path / "out", TAG, junk))
    assert "model.tar.gz is not a readable tar archive" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["target", "location"])
def test_a_symlink_loop_in_a_fetch_path_is_one_line(tmp_path, where):
    (tmp_path / "loop").symlink_to("loop")
    args = ["loop", TAG, str(tmp_path / "jobs")] if where == "target" else ["out", TAG, str(tmp_path / "loop")]
    (tmp_path / "jobs").mkdir()
    line = one_error_line(run_fahr("fetch", *args, cwd=tmp_path))
    assert "cannot follow its symbolic links" in line


@pytest.mark.parametrize("command", ["wait", "logs", "stop"])
def test_a_looping_output_path_is_named_as_such(tmp_path, command):
    # The loop is on the way to job.json, not job.json itself: the message must say so.
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    line = one_error_line(run_fahr(command, "hello-train-20260101-000000-abcd", "--train-driver", "local",
                                   f"--config.output_path={tmp_path / 'a'}", cwd=tmp_path))
    assert "cannot reach" in line and "Too many levels of symbolic links" in line
    assert "config.output_path" in line and "is a symbolic link" not in line
