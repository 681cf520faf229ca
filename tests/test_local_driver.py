"""End to end with the real Docker engine: the local driver under the SageMaker container contract.

Every test runs the installed `fahr` console script as a real process, builds a real image and
runs real containers; afterwards no container or network of the job may remain.
"""

import json
import os
import re
import signal
import subprocess
import tarfile
import textwrap
import time

import pytest

from conftest import FAHR, run_fahr
from fahr_core.image import DOCKERIGNORE

pytestmark = pytest.mark.docker


def job_records(jobs_dir):
    return [json.loads(p.read_text()) for p in sorted(jobs_dir.glob("*/job.json"))]


def assert_nothing_left(client, job_name):
    label = f"fahr.job={job_name}"
    assert client.containers.list(all=True, filters={"label": label}) == []
    assert client.networks.list(filters={"label": label}) == []


def write_script(folder, body):
    folder.mkdir(exist_ok=True)
    (folder / "train.py").write_text(textwrap.dedent(body))
    return folder / "train.py"


def test_fit_and_fetch_a_model(docker_engine, fahr, jobs_dir, model_dir, tmp_path):
    proc = fahr("fit", model_dir / "train.py", "--hp", "slope=5", "--hp", "intercept=-2", check=0)
    assert "trained on 200 points: slope=4.9" in proc.stdout  # the container's log, live on stdout
    assert "wrote Dockerfile and .dockerignore" in proc.stderr
    [record] = job_records(jobs_dir)
    assert record["status"] == "Completed" and record["model_tag"] == "hello/train"
    job = record["job_name"]
    archive = jobs_dir / job / "output" / "model.tar.gz"
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["model.json"]  # SageMaker's layout: contents of /opt/ml/model
    assert (jobs_dir / job / "output" / "output.tar.gz").is_file()
    printed = [l.strip() for l in proc.stderr.splitlines() if l.strip().startswith("fahr fetch ./")]
    assert printed == [f"fahr fetch ./model hello/train {jobs_dir} --train-driver local --job {job}"]
    assert_nothing_left(docker_engine, job)

    # The seed's form: fahr fetch DIR TAG LOCATION (newest completed job of the tag).
    out = tmp_path / "out"
    fahr("fetch", out, "hello/train", jobs_dir, check=0)
    model = json.loads((out / "model.json").read_text())
    assert abs(model["slope"] - 5) < 0.1 and abs(model["intercept"] + 2) < 0.2
    # --no-extract keeps the archive as it is.
    fahr("fetch", tmp_path / "raw", "hello/train", "--job", job, "--no-extract", check=0)
    assert (tmp_path / "raw" / "model.tar.gz").read_bytes() == archive.read_bytes()


def test_second_fit_rebuilds_nothing(docker_engine, fahr, jobs_dir, model_dir):
    fahr("fit", model_dir / "train.py", check=0)
    first = docker_engine.images.get("hello/train:latest").id
    proc = fahr("fit", model_dir / "train.py", check=0)
    assert "hello/train:latest is up to date (nothing it is built from changed); not rebuilt" in proc.stderr
    assert "building image" not in proc.stderr
    assert docker_engine.images.get("hello/train:latest").id == first
    assert "wrote Dockerfile" not in proc.stderr


def test_failing_model_reports_failure_file(docker_engine, fahr, jobs_dir, tmp_path):
    script = write_script(tmp_path / "bad", """
        import os, sys
        print("about to fail")
        os.makedirs("/opt/ml/output", exist_ok=True)
        open("/opt/ml/output/failure", "w").write("ValueError: learning rate must be positive" + "x" * 2000)
        sys.exit(3)
    """)
    proc = fahr("fit", script)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "failed" in proc.stderr and "ValueError: learning rate must be positive" in proc.stderr
    [record] = job_records(jobs_dir)
    assert record["status"] == "Failed"
    assert record["failure_reason"].startswith("ValueError: learning rate must be positive")
    assert len(record["failure_reason"]) == 1024  # the first 1024 characters, as SageMaker
    assert not (jobs_dir / record["job_name"] / "output" / "model.tar.gz").exists()
    assert_nothing_left(docker_engine, record["job_name"])


def test_failing_model_without_failure_file(docker_engine, fahr, jobs_dir, tmp_path):
    script = write_script(tmp_path / "crash", """
        print("step one")
        raise RuntimeError("boom at step two")
    """)
    proc = fahr("fit", script)
    assert proc.returncode == 1
    [record] = job_records(jobs_dir)
    assert record["failure_reason"].startswith("AlgorithmError: exit code 1")
    assert "RuntimeError: boom at step two" in record["failure_reason"]
    assert "boom at step two" in proc.stderr


def test_hyperparameters_channels_and_environment_reach_the_container(docker_engine, fahr, jobs_dir, tmp_path):
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    (data / "a.csv").write_text("1,2\n")
    (data / "nested" / "b.csv").write_text("3,4\n")
    single = tmp_path / "single.txt"
    single.write_text("one file")
    script = write_script(tmp_path / "probe", """
        import json, os
        ml = "/opt/ml"
        seen = {
            "hp": json.load(open(f"{ml}/input/config/hyperparameters.json")),
            "channels": json.load(open(f"{ml}/input/config/inputdataconfig.json")),
            "resource": json.load(open(f"{ml}/input/config/resourceconfig.json")),
            "train": sorted(os.path.relpath(os.path.join(d, f), f"{ml}/input/data/train")
                            for d, _, fs in os.walk(f"{ml}/input/data/train") for f in fs),
            "extra": open(f"{ml}/input/data/extra_set.v1/single.txt").read(),
            "env": {k: os.environ.get(k) for k in ("TRAINING_JOB_NAME", "FAHR_EXECUTION_ENVIRONMENT", "MY_FLAG",
                                                   "TRAINING_JOB_ARN")},
            "argv_ok": os.path.isdir(f"{ml}/model") and os.path.isdir(f"{ml}/output/data"),
            "checkpoints": os.path.exists(f"{ml}/checkpoints"),
            "pid": os.getpid(),
        }
        json.dump(seen, open(f"{ml}/model/seen.json", "w"))
        open(f"{ml}/output/data/extra.txt", "w").write("output data")
    """)
    fahr("fit", script, "--hp", "epochs=3", "--hp", "lr=0.01", "--hp", "eq=a=b",
         "--input", f"train={data}", "--input", f"extra_set.v1=file://{single}", "--env", "MY_FLAG=on", check=0)
    [record] = job_records(jobs_dir)
    out = tmp_path / "out"
    fahr("fetch", out, "probe/train", "--job", record["job_name"], check=0)
    seen = json.loads((out / "seen.json").read_text())
    assert seen["hp"] == {"epochs": "3", "lr": "0.01", "eq": "a=b"}  # strings, as SageMaker hands them
    assert set(seen["channels"]) == {"train", "extra_set.v1"}  # SageMaker's channel-name rules
    assert seen["channels"]["train"] == {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                                         "RecordWrapperType": "None"}  # no ContentType: none was given
    assert seen["resource"]["current_host"] == "algo-1" and seen["resource"]["hosts"] == ["algo-1"]
    assert seen["train"] == ["a.csv", "nested/b.csv"]
    assert seen["extra"] == "one file"
    assert seen["env"] == {"TRAINING_JOB_NAME": record["job_name"], "FAHR_EXECUTION_ENVIRONMENT": "local", "MY_FLAG": "on",
                           "TRAINING_JOB_ARN": None}  # an ARN or nothing: local jobs have no ARN
    assert seen["argv_ok"] is True
    assert seen["checkpoints"] is False  # only with config.checkpoint_path, as only with CheckpointConfig
    assert seen["pid"] == 1  # exec-form entrypoint: the training process is PID 1 and gets SIGTERM
    with tarfile.open(jobs_dir / record["job_name"] / "output" / "output.tar.gz") as tar:
        assert tar.getnames() == ["extra.txt"]


def test_two_instances_resolve_each_other(docker_engine, fahr, jobs_dir, tmp_path):
    script = write_script(tmp_path / "dist", """
        # A rendezvous: each host serves on :5000 and connects to its peer by name, so both are
        # up at once and really reach each other over the job's network.
        import json, socket, threading, time
        rc = json.load(open("/opt/ml/input/config/resourceconfig.json"))
        me = rc["current_host"]
        [peer] = [h for h in rc["hosts"] if h != me]
        server = socket.create_server(("", 5000))
        accepted = threading.Thread(target=server.accept)
        accepted.start()
        deadline = time.time() + 60
        while True:
            try:
                address = socket.gethostbyname(peer)
                socket.create_connection((peer, 5000), timeout=2).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        accepted.join(60)
        json.dump({"resource": rc, "resolved": {peer: address}, "hostname": socket.gethostname()},
                  open(f"/opt/ml/model/{me}.json", "w"))
        open("/opt/ml/model/shared.txt", "w").write(f"written by {me}")  # a clash: both hosts write it
        print(f"{me} reached {peer} at {address}")
    """)
    proc = fahr("fit", script, "--config.instance_count=2", check=0)
    assert "[algo-1]" in proc.stdout and "[algo-2]" in proc.stdout  # logs labelled by host
    [record] = job_records(jobs_dir)
    out = tmp_path / "out"
    fahr("fetch", out, "dist/train", check=0)
    assert sorted(p.name for p in out.iterdir()) == ["algo-1.json", "algo-2.json", "shared.txt"]  # merged
    assert (out / "shared.txt").read_text() == "written by algo-1"  # on a clash the first host's file is kept…
    [warning] = [line for line in proc.stderr.splitlines() if "several hosts wrote the same files" in line]
    assert "dropped shared.txt (algo-2)," in warning and "algo-1" not in warning  # …and the DROPPED host named
    for me, other in (("algo-1", "algo-2"), ("algo-2", "algo-1")):
        seen = json.loads((out / f"{me}.json").read_text())
        assert seen["resource"]["current_host"] == me
        assert seen["resource"]["hosts"] == ["algo-1", "algo-2"]
        assert seen["hostname"] == me
        assert other in seen["resolved"]
    assert_nothing_left(docker_engine, record["job_name"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_and_cleans_up(docker_engine, jobs_dir, tmp_path, sig):
    script = write_script(tmp_path / "slow", """
        import time
        print("ready", flush=True)
        time.sleep(600)
    """)
    env = {**os.environ, "NO_COLOR": "1", "FAHR_LOCAL_STOP_TIMEOUT": "5", "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen([str(FAHR), "fit", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.time() + 300
    for line in proc.stdout:
        if line.strip() == "ready" or time.time() > deadline:
            break
    started = time.time()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert time.time() - started < 30  # SIGTERM reached Python (PID 1): no wait for SIGKILL
    assert "Traceback" not in err
    [record] = job_records(jobs_dir)
    assert record["status"] == "Stopped"
    assert_nothing_left(docker_engine, record["job_name"])
    assert list((tmp_path / "tmp").iterdir()) == []  # no temporary folder left behind


def test_detach_then_wait_then_fetch(docker_engine, fahr, jobs_dir, model_dir, tmp_path):
    proc = fahr("fit", model_dir / "train.py", "--detach", check=0)
    [record] = job_records(jobs_dir)
    job = record["job_name"]
    assert re.findall(r"launching job (\S+)", proc.stderr) == [job]  # from the handle, after launch
    assert f"fahr wait {job} --train-driver local" in proc.stderr
    proc = fahr("wait", job, check=0)
    assert "trained on 200 points" in proc.stdout
    # The handle rebuilt from the name got its model tag back from the job's record.
    printed = [l.strip() for l in proc.stderr.splitlines() if l.strip().startswith("fahr fetch ./")]
    assert printed == [f"fahr fetch ./model hello/train {jobs_dir} --train-driver local --job {job}"]
    fahr("fetch", tmp_path / "out", "hello/train", "--job", job, check=0)
    assert (tmp_path / "out" / "model.json").is_file()
    assert_nothing_left(docker_engine, job)


def test_fit_with_fetch_flag(docker_engine, fahr, jobs_dir, model_dir, tmp_path):
    fahr("fit", model_dir / "train.py", "--fetch", tmp_path / "m", check=0)
    assert (tmp_path / "m" / "model.json").is_file()


def test_secrets_and_git_stay_out_of_the_image(docker_engine, fahr, jobs_dir, tmp_path):
    script = write_script(tmp_path / "secretive", """
        import os
        print("files:", sorted(os.listdir(".")))
    """)
    folder = script.parent
    (folder / ".env").write_text("AWS_SECRET_ACCESS_KEY=hunter2\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[core]\n")
    (folder / "deploy.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (folder / "data.csv").write_text("1\n")
    (folder / "model").mkdir()  # a source package may be called `model`: it must reach the image
    (folder / "model" / "__init__.py").write_text("")
    # A .dockerignore cannot bring secrets back: fahr's own exclusions come last.
    (folder / ".dockerignore").write_text(DOCKERIGNORE + "!.env\n!deploy.pem\n!.git\n")
    proc = fahr("fit", script, check=0)
    line = [l for l in proc.stdout.splitlines() if l.startswith("files:")][0]
    assert "data.csv" in line and "train.py" in line and "'model'" in line
    for secret in (".env", ".git", "deploy.pem"):
        assert f"'{secret}'" not in line


def test_own_dockerfile_without_dockerignore_still_excludes_secrets(docker_engine, fahr, jobs_dir, tmp_path):
    script = write_script(tmp_path / "own", """
        import os
        print("files:", sorted(os.listdir("/app")))
    """)
    folder = script.parent
    (folder / "Dockerfile").write_text(
        'FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nENTRYPOINT ["python", "/app/train.py"]\n')
    (folder / ".dockerignore").unlink(missing_ok=True)
    (folder / ".env").write_text("TOKEN=x\n")
    proc = fahr("fit", script, check=0)
    assert "wrote Dockerfile" not in proc.stderr
    assert "ENTRYPOINT [\"python\", \"/app/train.py\"]" in (folder / "Dockerfile").read_text()  # untouched
    line = [l for l in proc.stdout.splitlines() if l.startswith("files:")][0]
    assert "'train.py'" in line and "'.env'" not in line


def test_dockerfile_error_shows_the_failing_step(docker_engine, fahr, jobs_dir, tmp_path):
    script = write_script(tmp_path / "broken", "print(1)\n")
    (script.parent / "Dockerfile").write_text(
        "FROM python:3.11-slim\nRUN echo preparing && echo 'no such package' >&2 && exit 7\n")
    proc = fahr("fit", script)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "image build failed at step 2/" in proc.stderr
    assert "no such package" in proc.stderr
    assert job_records(jobs_dir) == []  # nothing was launched


def test_no_engine_is_an_environment_error(fahr, jobs_dir, model_dir):
    proc = fahr("fit", model_dir / "train.py", env={"DOCKER_HOST": "tcp://127.0.0.1:9"})
    assert proc.returncode == 3, proc.stderr
    assert "no Docker engine answers" in proc.stderr and "Traceback" not in proc.stderr
    assert job_records(jobs_dir) == []


def test_gpus_without_a_gpu_runtime_is_an_environment_error(docker_engine, fahr, jobs_dir, model_dir):
    # This machine has no GPU and no NVIDIA runtime: the request must fail clearly, not hang or crash.
    proc = fahr("fit", model_dir / "train.py", "--config.gpus=all")
    assert proc.returncode == 3, proc.stderr
    assert "GPUs were requested (gpus='all')" in proc.stderr and "Traceback" not in proc.stderr
    [record] = job_records(jobs_dir)
    assert record["status"] == "Failed"
    assert_nothing_left(docker_engine, record["job_name"])


def test_regenerating_keeps_the_users_dockerfile(docker_engine, fahr, jobs_dir, model_dir):
    mine = 'FROM python:3.11-slim\nCOPY train.py /t.py\nENTRYPOINT ["python", "/t.py"]\n'
    (model_dir / "Dockerfile").write_text(mine)
    proc = fahr("fit", model_dir / "train.py", "--regenerate-dockerfile", check=0)
    assert f"your Dockerfile is kept as {model_dir / 'Dockerfile.bak'}" in proc.stderr
    assert (model_dir / "Dockerfile.bak").read_text() == mine
    assert (model_dir / "Dockerfile").read_text().startswith("# Written by fahr")


def test_stop_after_the_end_keeps_the_model(docker_engine, fahr, jobs_dir, model_dir, tmp_path):
    fahr("fit", model_dir / "train.py", "--detach", check=0)
    [record] = job_records(jobs_dir)
    job = record["job_name"]
    [container] = docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job}"})
    assert container.wait(timeout=120)["StatusCode"] == 0
    proc = fahr("stop", job, check=0)
    assert f"job {job} has already ended" in proc.stderr
    fahr("wait", job, check=0)
    assert job_records(jobs_dir)[0]["status"] == "Completed"


def test_stop_a_detached_job_finishes_it(docker_engine, fahr, jobs_dir, tmp_path):
    script = write_script(tmp_path / "long", "import time\nprint('ready', flush=True)\ntime.sleep(600)\n")
    fahr("fit", script, "--detach", "--config.stop_timeout=5", check=0)
    [record] = job_records(jobs_dir)
    proc = fahr("stop", record["job_name"], "--config.stop_timeout=5", check=0)
    assert f"stop requested for {record['job_name']}" in proc.stderr
    [record] = job_records(jobs_dir)
    assert record["status"] == "Stopped" and record["failure_reason"] == "Stopped by 'fahr stop'"
    assert_nothing_left(docker_engine, record["job_name"])
    again = fahr("stop", record["job_name"], check=0)
    assert "has already ended" in again.stderr
    replay = fahr("wait", record["job_name"])  # a finished job's logs are kept and shown again
    assert replay.returncode == 1 and replay.stdout.splitlines() == ["ready"]


def test_the_host_that_failed_is_named(docker_engine, fahr, jobs_dir, tmp_path):
    script = write_script(tmp_path / "onefails", """
        import json, sys, time
        me = json.load(open("/opt/ml/input/config/resourceconfig.json"))["current_host"]
        if me == "algo-2":
            print("algo-2 gives up", flush=True)
            sys.exit(5)
        time.sleep(600)  # the others would wait for their peer forever
    """)
    proc = fahr("fit", script, "--config.instance_count=3", "--config.stop_timeout=2")
    assert proc.returncode == 1
    [record] = job_records(jobs_dir)
    assert record["failure_reason"].startswith("AlgorithmError: exit code 5 on algo-2")
    assert_nothing_left(docker_engine, record["job_name"])


def test_output_without_newlines_streams_as_it_is(docker_engine, fahr, jobs_dir, tmp_path):
    """Passed on in bounded pieces (tests/test_job_output.py), but byte for byte: no newline added."""
    script = write_script(tmp_path / "noisy", """
        import sys
        sys.stdout.write("x" * (8 * 1024 * 1024))
        sys.stdout.flush()
    """)
    proc = fahr("fit", script, check=0, timeout=300)
    assert proc.stdout == "x" * (8 * 1024 * 1024)


def test_unreachable_base_image_registry_is_an_environment_error(docker_engine, fahr, jobs_dir, model_dir):
    # A registry on loopback where nothing listens: the pull of FROM fails for want of a network.
    proc = fahr("fit", model_dir / "train.py", "--config.base_image=127.0.0.1:9/nosuch/base:1",
                "--regenerate-dockerfile")
    assert proc.returncode == 3, proc.stderr
    assert "the base image cannot be pulled" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_input_is_refused_before_building(docker_engine, fahr, jobs_dir, model_dir, tmp_path):
    proc = fahr("fit", model_dir / "train.py", "--input", f"train={tmp_path / 'nowhere'}")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "building image" not in proc.stderr and job_records(jobs_dir) == []
    proc = fahr("fit", model_dir / "train.py", "--input", "train=s3://bucket/data")
    assert proc.returncode == 2 and "not s3://" in proc.stderr and "building image" not in proc.stderr
    (tmp_path / "afile").write_text("x")
    proc = fahr("fit", model_dir / "train.py", "--fetch", tmp_path / "afile" / "sub")
    assert proc.returncode == 2 and "is a file" in proc.stderr and job_records(jobs_dir) == []


def test_relative_output_path_prints_an_absolute_fetch_command(docker_engine, jobs_dir, model_dir, tmp_path):
    proc = run_fahr("fit", model_dir / "train.py", "--config.output_path=rel-jobs", cwd=tmp_path, check=0)
    printed = [l.strip() for l in proc.stderr.splitlines() if l.strip().startswith("fahr fetch ./")]
    assert f"hello/train {tmp_path / 'rel-jobs'} --train-driver local" in printed[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_fahr(*printed[0].split()[1:], cwd=elsewhere, check=0)  # works from anywhere
