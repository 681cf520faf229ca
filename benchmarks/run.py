"""fahr's performance targets, measured side by side in one run (results go to benchmarks/RESULTS.md
by hand: the script prints a markdown table to paste, and the machine it ran on).

Measures (``--only`` takes these names):

startup      `fahr --help` against the floor of any typer CLI, `python -c "import typer"`, run
             interleaved; medians and their ratio (target <= 1.5). Also checks that `--help` and
             `drivers` import no Docker SDK, no boto3 and no driver module.
refit        The example model (examples/hello/train.py) fitted once, then N unchanged re-fits
             interleaved with N `docker run --rm IMAGE train` of the same image: the re-fit's
             median minus the container's (target <= 1.5 s).
data-refit   The same with a project whose `data/` folder beside train.py holds 1 GiB of random
             bytes in 256 files (the script ignores it; many files, as data folders hold, so the
             first fit pays the secret scan of each file's first MiB): the first fit (time, image
             size, the warnings fit printed), then N unchanged re-fits against N `docker run`
             (target <= 1.5 s overhead).
s3-fetch     A 512 MiB model (random bytes and some zeros, gzip) on an emulated S3 (a moto server on
             a free loopback port; the job record is moto's own SageMaker, whose jobs complete at
             once): `fahr fetch TARGET TAG s3://BUCKET/PREFIX --job JOB` against the by-hand way,
             boto3 `download_file` with the transfer config fahr uses and then `tar xzf`, each into a
             fresh folder, interleaved: ratio of medians (target <= 1.0) and fahr's peak RSS
             (target < 150 MiB).
local-fetch  The same archive as a local job's model.tar.gz: `fahr fetch` against `tar xzf` of it
             (target <= 1.3).
log-throughput  A job printing 1,000,000 lines (about 70 MB; --log-lines), image up to date: `fahr
             fit` against `docker run --rm IMAGE train`, each with its stdout to a file (which must
             hold the same bytes), interleaved: ratio of medians (target <= 1.5).
log-memory   A job printing 400 MiB (--output-mib) in lines of 1 KiB: peak RSS of `fahr fit`, then
             of `fahr wait JOB` and `fahr logs JOB` of the finished job (target < 150 MiB each).
log-long-line  A running job that printed one 40 MiB line (--line-mib): `fahr logs JOB` against
             `docker logs CONTAINER`, interleaved: ratio of medians (target <= 3: linear; the old
             quadratic reading took 87 s where docker took 0.7).
s3-upload    10,000 files of 10 KiB (--upload-files) as a local input folder: fahr's upload (the
             sagemaker driver's, content-addressed, fresh hash cache) against s3transfer's
             TransferManager with 10 threads, each into a new prefix of an emulated S3 (moto on
             loopback), interleaved: ratio of medians (target <= 1.2). Then a folder of 1 GiB
             (--upload-mib, 256 files) uploaded once and again unchanged: the bytes the re-upload
             added to the bucket (its objects listed before and after: target 0) and its time.
sweep        8 jobs of a one-second script (--sweep-jobs), image up to date: `fahr sweep --parallel 2`
             against the same 8 `docker run --rm IMAGE train` two at a time by `xargs -P2`,
             interleaved: ratio of medians (target <= 1.3).

Peak RSS is the kernel's high-water mark of the process (`ru_maxrss` of `os.wait4` on it, what GNU
`time -v` reports): exact, where polling (psutil) can miss a short peak between two samples, and
with no extra tool. It covers fahr and any child it waited for (the largest of them). The command
is started by a bare interpreter of ~8 MiB (Linux keeps the forking process's peak in the child's
figure): nothing below that floor can be seen; the table gives the floor.

Everything the run creates is removed at the end, also on Ctrl-C or a failure: a work folder
/tmp/fahr-bench-*, images fahr-bench-*, the moto server (which also dies with this process).

Exit codes: 0 every target met, 1 a target missed, 2 bad options, 3 a prerequisite missing (no
Docker engine, no base image, no moto, no `tar`, too little disk), 4 a step failed (its output
is printed), 130 interrupted.

Usage: python benchmarks/run.py [--runs N] [--only NAME[,NAME...]] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FAHR = BIN / "fahr"
MEASURES = ("startup", "refit", "data-refit", "s3-fetch", "local-fetch", "log-throughput", "log-memory",
            "log-long-line", "log-metrics", "sweep", "s3-upload")
LOG_MEASURES = {"log-throughput", "log-memory", "log-long-line", "log-metrics"}
DOCKER_MEASURES = {"refit", "data-refit", "sweep"} | LOG_MEASURES
BASE_IMAGE = "python:3.11-slim"
MiB = 1024 * 1024
GiB = 1024 * MiB
# The targets.
STARTUP_RATIO = 1.5
REFIT_OVERHEAD_S = 1.5
S3_RATIO = 1.0
S3_RSS_MIB = 150
LOCAL_RATIO = 1.3
METRICS_RATIO = 1.1  # a chatty job followed with five metric definitions, against none
LOG_RATIO = 1.5
LOG_RSS_MIB = 150
LONG_LINE_RATIO = 3.0
UPLOAD_RATIO = 1.2  # many small input files uploaded by fahr, against s3transfer with 10 threads
SWEEP_RATIO = 1.3  # a sweep at --parallel 2 against its jobs' containers run two at a time by xargs


class Missing(Exception):
    """A prerequisite of the benchmark is missing: the message says what to do."""


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- running things ------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    max_rss_kib: int
    code: int
    stdout: str
    stderr: str


# Runs the command given after its first argument (a file for the figures): wall time and peak
# RSS of that command, read from os.wait4. Started from this small process rather than from the
# benchmark itself because Linux carries the peak RSS of the process that forks (here ~8 MiB of a
# bare interpreter, not the benchmark's ~70) into the child's ru_maxrss across exec. It ignores
# SIGINT (the command gets it back to its default) so that on Ctrl-C it still waits for the
# command to finish its own cleanup.
LAUNCHER = """\
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
start = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ, setsigdef=(signal.SIGINT,))
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    f.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def measure(cmd: list[str], *, env: dict | None = None, cwd: Path | None = None,
            stdout_to: Path | None = None) -> Run:
    """Run ``cmd`` to its end: wall time, peak RSS (``ru_maxrss`` from ``os.wait4``), output.

    Output goes to temporary files, not pipes, so that nothing has to read while we wait; with
    ``stdout_to``, stdout goes to that file and is not read (``Run.stdout`` is empty). The
    command runs in its own process group: a Ctrl-C here is passed on to it, and it is waited for.
    """
    with (open(stdout_to, "w+b") if stdout_to else tempfile.TemporaryFile()) as out, \
            tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", prefix="fahr-bench-") as figures:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER, figures.name, *cmd],
                                env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            code = proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            raise
        if code != 0:
            raise RuntimeError(f"could not run {cmd[0]} (exit {code})")
        seconds, rss, status = figures.read().split()
        out.seek(0)
        err.seek(0)
        return Run(float(seconds), int(rss), int(status),
                   "" if stdout_to else out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def must(run: Run, what: str) -> Run:
    if run.code != 0:
        tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {run.code}):\n{tail}")
    return run


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without FAHR_* and AWS_* settings: a user's FAHR_DRIVER or AWS
    profile must neither change what is measured nor reach a real account. fahr's own cost is
    measured: the optional fahr-mlflow tracker, installed in the dev venv, is turned off (its
    cost, an MLflow import and a run per job, is the plugin's: benchmarks/RESULTS.md)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAHR_", "AWS_", "MLFLOW_"))}
    env.update(NO_COLOR="1", FAHR_MLFLOW="off", **extra)
    return env


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_random(path: Path, size: int, chunk: int = 16 * MiB) -> None:
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


def tree_of(folder: Path) -> dict[str, int]:
    """Relative path -> size of every regular file under ``folder``."""
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def remove_image(reference: str) -> None:
    """Remove one image this benchmark built (its untagged parent layers go with it)."""
    subprocess.run(["docker", "image", "rm", reference], capture_output=True)


# -- 1. start-up ---------------------------------------------------------------------------------


def startup(runs: int) -> dict:
    floor, help_, drivers = [], [], []
    for _ in range(2):  # warm the page cache
        timed([sys.executable, "-c", "import typer"])
        timed([str(FAHR), "--help"])
    for _ in range(runs):
        floor.append(timed([sys.executable, "-c", "import typer"]))
        help_.append(timed([str(FAHR), "--help"]))
        drivers.append(timed([str(FAHR), "drivers"]))
    probe = (
        "import sys, json\n"
        "sys.argv = ['fahr'] + sys.argv[1:]\n"
        "from fahr_core.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('docker','boto3','botocore','fahr_sagemaker','cookiecutter') or m == 'fahr_core.drivers.local')))\n"
    )
    heavy = {}
    for args in (["--help"], ["drivers"]):
        out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True).stdout
        heavy[" ".join(args)] = json.loads(out.strip().splitlines()[-1])
    m_floor, m_help, m_drivers = (median(x) for x in (floor, help_, drivers))
    return {
        "runs": runs,
        "import_typer_s": round(m_floor, 3),
        "fahr_help_s": round(m_help, 3),
        "fahr_drivers_s": round(m_drivers, 3),
        "help_ratio": round(m_help / m_floor, 2),
        "heavy_modules_imported": heavy,
    }


# -- 2. and 3. unchanged re-fits -----------------------------------------------------------------


def refit(model: Path, runs: int, work: Path) -> dict:
    """Fit ``model`` once, then ``runs`` unchanged re-fits interleaved with ``docker run --rm``.

    The image's id is compared after every re-fit: an unchanged project must give the same image
    (whether fahr skipped the build or every step hit the cache).
    """
    env = clean_env(FAHR_LOCAL_OUTPUT_PATH=str(work / "jobs"))
    tag = f"{model.parent.name}/{model.stem}"
    image = f"{tag}:latest"
    fit = [str(FAHR), "fit", str(model), "--train-driver", "local"]
    first = must(measure(fit, env=env, cwd=work), f"the first fit of {tag}")
    image_id = docker("image", "inspect", "-f", "{{.Id}}", image)
    size = int(docker("image", "inspect", "-f", "{{.Size}}", image))
    fits, containers, same_image, up_to_date, rss = [], [], 0, 0, [first.max_rss_kib]
    for i in range(runs):
        say(f"  {tag}: re-fit {i + 1} of {runs}")
        container = ["docker", "run", "--rm", "-e", "FAHR_EXECUTION_ENVIRONMENT=bench", image, "train"]
        containers.append(must(measure(container, env=env), f"docker run {image}").seconds)
        run = must(measure(fit, env=env, cwd=work), f"re-fit {i + 1} of {tag}")
        fits.append(run.seconds)
        rss.append(run.max_rss_kib)
        same_image += docker("image", "inspect", "-f", "{{.Id}}", image) == image_id
        up_to_date += "up to date" in run.stderr
    m_fit, m_container = median(fits), median(containers)
    return {
        "runs": runs,
        "first_fit_s": round(first.seconds, 2),
        "image_bytes": size,
        "first_fit_warnings": [line.strip() for line in first.stderr.splitlines() if "warning" in line],
        "same_image_every_refit": same_image == runs,
        "refits_saying_up_to_date": up_to_date,
        "fahr_fit_s": round(m_fit, 3),
        "docker_run_s": round(m_container, 3),
        "overhead_s": round(m_fit - m_container, 3),
        "fahr_fit_peak_rss_mib": round(max(rss) / 1024, 1),
    }


def hello_refit(runs: int, work: Path) -> dict:
    model = work / "fahr-bench-hello" / "train.py"
    model.parent.mkdir()
    shutil.copy(ROOT / "examples" / "hello" / "train.py", model)
    remove_image("fahr-bench-hello/train:latest")  # left by a run that was killed
    try:
        return refit(model, runs, work)
    finally:
        remove_image("fahr-bench-hello/train:latest")


def data_refit(runs: int, work: Path, data_bytes: int) -> dict:
    model = work / "fahr-bench-data" / "train.py"
    data = model.parent / "data"
    data.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "hello" / "train.py", model)
    files = 256  # the secret scan reads each file's first MiB: a quarter of the data
    say(f"writing {data_bytes / GiB:.2f} GiB of random bytes into {data} ({files} files)")
    for i in range(files):
        write_random(data / f"part-{i}.bin", data_bytes // files)
    remove_image("fahr-bench-data/train:latest")  # left by a run that was killed: the first fit builds
    try:
        result = refit(model, runs, work)
    finally:
        remove_image("fahr-bench-data/train:latest")
        shutil.rmtree(data, ignore_errors=True)
    result["data_bytes"] = data_bytes
    return result


# -- the model archive of 4. and 5. --------------------------------------------------------------


@dataclass
class Archive:
    path: Path
    tree: dict[str, int]  # what extracting it must give

    @property
    def unpacked(self) -> int:
        return sum(self.tree.values())


def make_archive(work: Path, size: int) -> Archive:
    """A model.tar.gz of ``size`` bytes of files: 7/8 random bytes in several files (weights do not
    compress much; random bytes not at all) and 1/8 zeros, packed with tar and gzip's default level."""
    payload = work / "model-payload"
    payload.mkdir()
    parts = 8
    for i in range(parts - 1):
        write_random(payload / f"weights-{i}.bin", size // parts)
    with open(payload / "zeros.bin", "wb") as f:
        f.truncate(size // parts)
    (payload / "config.json").write_text(json.dumps({"layers": parts - 1, "benchmark": True}))
    tree = tree_of(payload)
    path = work / "model.tar.gz"
    subprocess.run(["tar", "-C", str(payload), "-czf", str(path), *sorted(tree)], check=True)
    shutil.rmtree(payload)
    return Archive(path, tree)


def check_extracted(folder: Path, archive: Archive, what: str) -> None:
    got = tree_of(folder)
    if got != archive.tree:
        raise RuntimeError(f"{what} gave {len(got)} files ({sum(got.values())} bytes), "
                           f"expected {len(archive.tree)} ({archive.unpacked} bytes)")


def compare(runs: int, work: Path, archive: Archive, fahr_cmd, baseline_cmd, env: dict,
            name: str) -> tuple[dict, list[Run], list[Run]]:
    """``runs`` interleaved pairs (fahr, baseline), each into a fresh folder; the order is
    alternated so that neither side always runs with the other's page cache state."""
    fahr_runs: list[Run] = []
    base_runs: list[Run] = []
    for i in range(runs):
        say(f"  {name}: run {i + 1} of {runs}")
        order = ("fahr", "baseline") if i % 2 == 0 else ("baseline", "fahr")
        for side in order:
            dest = work / f"{name}-{side}-{i}"
            if side == "fahr":
                run = must(measure(fahr_cmd(dest), env=env, cwd=work), f"fahr fetch ({name})")
                fahr_runs.append(run)
            else:
                dest.mkdir()
                run = must(measure(baseline_cmd(dest), env=env, cwd=work), f"the baseline ({name})")
                base_runs.append(run)
            if i == 0:
                check_extracted(dest, archive, f"{side} ({name})")
            shutil.rmtree(dest)
            Path(f"{dest}.tar.gz").unlink(missing_ok=True)  # the by-hand download
    m_fahr = median([r.seconds for r in fahr_runs])
    m_base = median([r.seconds for r in base_runs])
    return {
        "runs": runs,
        "fahr_runs_s": [round(r.seconds, 2) for r in fahr_runs],
        "baseline_runs_s": [round(r.seconds, 2) for r in base_runs],
        "archive_bytes": archive.path.stat().st_size,
        "unpacked_bytes": archive.unpacked,
        "fahr_fetch_s": round(m_fahr, 2),
        "baseline_s": round(m_base, 2),
        "ratio": round(m_fahr / m_base, 2),
        "fahr_peak_rss_mib": round(max(r.max_rss_kib for r in fahr_runs) / 1024, 1),
        "rss_floor_mib": round(measure(["true"]).max_rss_kib / 1024, 1),
        "baseline_peak_rss_mib": round(max(r.max_rss_kib for r in base_runs) / 1024, 1),
    }, fahr_runs, base_runs


# -- 4. S3 fetch -----------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the moto server's process before exec: SIGTERM when the benchmark dies, however it dies."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def moto_server(work: Path):
    """A moto server on a free loopback port; yields its URL, stops it on the way out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = work / "moto.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=clean_env(),
                                preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the moto server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the moto server did not listen within 30 s:\n{log.read_text()[-2000:]}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def moto_env(url: str, work: Path) -> dict[str, str]:
    """The environment of a command talking to the moto server at ``url``: fake credentials, no
    AWS configuration of the user's, no proxy on loopback."""
    return clean_env(AWS_ENDPOINT_URL=url, AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="testing",
                     AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true",
                     AWS_CONFIG_FILE=str(work / "no-aws-config"),
                     AWS_SHARED_CREDENTIALS_FILE=str(work / "no-aws-credentials"),
                     NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")


def transfer_config() -> dict:
    """The TransferConfig fahr's sagemaker driver downloads with, as keyword arguments, so that
    the by-hand baseline uses the same (read from the driver when it still defines it there)."""
    keys = ("multipart_threshold", "multipart_chunksize", "max_concurrency", "max_io_queue", "io_chunksize")
    try:
        from fahr_sagemaker.artifacts import _transfer_config

        config = _transfer_config()
        return {k: getattr(config, k) for k in keys}
    except (ImportError, AttributeError):
        return {"multipart_threshold": 16 * MiB, "max_concurrency": 8}


# The by-hand way; prints how long its two steps took (seconds: download, tar xzf).
BASELINE = """\
import json, subprocess, sys, time
import boto3
from boto3.s3.transfer import TransferConfig
bucket, key, dest, config = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
archive = dest + ".tar.gz"
start = time.perf_counter()
boto3.client("s3").download_file(bucket, key, archive, Config=TransferConfig(**config))
downloaded = time.perf_counter()
subprocess.run(["tar", "xzf", archive, "-C", dest], check=True)
print(downloaded - start, time.perf_counter() - downloaded)
"""


def s3_fetch(runs: int, work: Path, archive: Archive) -> dict:
    import boto3

    bucket, prefix, tag = "fahr-bench", "models", "fahr-bench-s3/train"
    job = "fahr-bench-s3-train-20261128-000000-0001"
    config = transfer_config()
    with moto_server(work) as url:
        env = moto_env(url, work)
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                region_name="us-east-1")
        s3 = session.client("s3", endpoint_url=url)
        s3.create_bucket(Bucket=bucket)
        # moto's SageMaker completes a job at once, running nothing: a real DescribeTrainingJob
        # record for `fahr fetch --job`, whose model.tar.gz is then the archive uploaded below.
        sm = session.client("sagemaker", endpoint_url=url)
        sm.create_training_job(
            TrainingJobName=job,
            AlgorithmSpecification={"TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/fahr-bench:latest",
                                    "TrainingInputMode": "File"},
            RoleArn="arn:aws:iam::123456789012:role/fahr-bench",
            OutputDataConfig={"S3OutputPath": f"s3://{bucket}/{prefix}"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
            Tags=[{"Key": "fahr:model-tag", "Value": tag}],
        )
        artifact = sm.describe_training_job(TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]
        key = artifact.split(f"s3://{bucket}/", 1)[1]
        say(f"uploading {archive.path.stat().st_size / MiB:.0f} MiB to the emulated {artifact}")
        s3.upload_file(str(archive.path), bucket, key)

        def fahr_cmd(dest: Path) -> list[str]:
            return [str(FAHR), "fetch", str(dest), tag, f"s3://{bucket}/{prefix}", "--job", job,
                    "--train-driver", "sagemaker"]

        def baseline_cmd(dest: Path) -> list[str]:
            return [sys.executable, "-c", BASELINE, bucket, key, str(dest), json.dumps(config)]

        result, _, base_runs = compare(runs, work, archive, fahr_cmd, baseline_cmd, env, "s3-fetch")
    steps = [tuple(map(float, r.stdout.split()[-2:])) for r in base_runs]
    result["baseline_download_s"] = round(median([d for d, _ in steps]), 2)
    result["baseline_tar_s"] = round(median([t for _, t in steps]), 2)
    result["transfer_config"] = config
    return result


# -- 5. local fetch --------------------------------------------------------------------------------


def local_fetch(runs: int, work: Path, archive: Archive) -> dict:
    tag = "fahr-bench-local/train"
    job = "fahr-bench-local-train-20261128-000000-0001"
    jobs = work / "local-jobs"
    output = jobs / job / "output"
    output.mkdir(parents=True)
    try:
        os.link(archive.path, output / "model.tar.gz")  # the same bytes, no second copy on disk
    except OSError:
        shutil.copy(archive.path, output / "model.tar.gz")
    # A finished job's record as the local driver writes it.
    (jobs / job / "job.json").write_text(json.dumps({
        "job_name": job, "model_tag": tag, "image": f"{tag}:latest", "status": "Completed",
        "created": time.time(),
    }))

    def fahr_cmd(dest: Path) -> list[str]:
        return [str(FAHR), "fetch", str(dest), tag, str(jobs), "--job", job, "--train-driver", "local"]

    def baseline_cmd(dest: Path) -> list[str]:
        return ["tar", "xzf", str(archive.path), "-C", str(dest)]

    return compare(runs, work, archive, fahr_cmd, baseline_cmd, clean_env(), "local-fetch")[0]


# -- prerequisites, machine, table -----------------------------------------------------------------


# -- 6., 7. and 8. a job's output ----------------------------------------------------------------

# The job of the log measures: hyperparameters say how much it prints (docker run, without them,
# prints the defaults); it lingers when asked, so that it can be read while it runs.
LOG_JOB = """\
import json, sys, time
from pathlib import Path
given = Path("/opt/ml/input/config/hyperparameters.json")
hp = json.loads(given.read_text()) if given.exists() else {}
lines, width, line_mib = int(hp.get("lines", "%d")), int(hp.get("width", "70")), int(hp.get("line_mib", "0"))
out = sys.stdout.buffer
if line_mib:
    for _ in range(line_mib):
        out.write(b"x" * 1048576)
    out.write(b" the end of the long line\\n")
pad = b"." * (width - 9)
for i in range(lines):
    out.write(b"%%07d %%s\\n" %% (i, pad))
out.write(b"done\\n")
out.flush()
Path("/opt/ml/model").mkdir(parents=True, exist_ok=True)
Path("/opt/ml/model/m.txt").write_text("m")
time.sleep(float(hp.get("linger", "0")))
"""


def log_project(work: Path, lines: int) -> tuple[Path, str, dict]:
    """The log job's train.py, its image built by a first small fit; returns (script, image, env)."""
    model = work / "fahr-bench-logs" / "train.py"
    model.parent.mkdir(exist_ok=True)
    model.write_text(LOG_JOB % lines)
    env = clean_env(FAHR_LOCAL_OUTPUT_PATH=str(work / "jobs"))
    image = "fahr-bench-logs/train:latest"
    if not (work / "jobs").exists():
        remove_image(image)  # left by a run that was killed: the first fit builds
    must(measure([str(FAHR), "fit", str(model), "--train-driver", "local", "--hp", "lines=1"], env=env, cwd=work),
         "the first fit of the log job")
    return model, image, env


def newest_job(work: Path) -> str:
    return max((work / "jobs").iterdir(), key=lambda p: p.stat().st_mtime).name


def log_throughput(runs: int, work: Path, lines: int) -> dict:
    model, image, env = log_project(work, lines)
    fit = [str(FAHR), "fit", str(model), "--train-driver", "local"]
    fits, containers, rss, same = [], [], [], 0
    fit_out, docker_out = work / "fit.out", work / "docker.out"
    for i in range(runs):
        say(f"  {lines} lines: run {i + 1} of {runs}")
        containers.append(must(measure(["docker", "run", "--rm", image, "train"], env=env, stdout_to=docker_out),
                               f"docker run {image}").seconds)
        run = must(measure(fit, env=env, cwd=work, stdout_to=fit_out), "fahr fit of the log job")
        fits.append(run.seconds)
        rss.append(run.max_rss_kib)
        same += fit_out.read_bytes() == docker_out.read_bytes()
        shutil.rmtree(work / "jobs" / newest_job(work), ignore_errors=True)
    m_fit, m_container = median(fits), median(containers)
    return {"runs": runs, "lines": lines, "output_bytes": docker_out.stat().st_size,
            "same_output_every_run": same == runs, "fahr_fit_s": round(m_fit, 3),
            "docker_run_s": round(m_container, 3), "ratio": round(m_fit / m_container, 2),
            "fahr_fit_peak_rss_mib": round(max(rss) / 1024, 1)}


def log_memory(work: Path, output_bytes: int) -> dict:
    model, _, env = log_project(work, 1)
    lines = max(1, output_bytes // 1024)
    out = work / "output.out"
    fit = must(measure([str(FAHR), "fit", str(model), "--train-driver", "local", "--hp", f"lines={lines}",
                        "--hp", "width=1024"], env=env, cwd=work, stdout_to=out), "fahr fit of the log job")
    printed = out.stat().st_size
    job = newest_job(work)
    figures = {}
    for command in ("wait", "logs"):
        run = must(measure([str(FAHR), command, job, "--train-driver", "local"], env=env, cwd=work, stdout_to=out),
                   f"fahr {command} of the finished log job")
        if out.stat().st_size != printed:
            raise RuntimeError(f"fahr {command} printed {out.stat().st_size} bytes, fahr fit {printed}")
        figures[f"fahr_{command}_peak_rss_mib"] = round(run.max_rss_kib / 1024, 1)
    out.unlink()
    shutil.rmtree(work / "jobs" / job, ignore_errors=True)
    return {"output_bytes": printed, "fahr_fit_peak_rss_mib": round(fit.max_rss_kib / 1024, 1), **figures}


def log_long_line(runs: int, work: Path, line_mib: int) -> dict:
    model, _, env = log_project(work, 1)
    must(measure([str(FAHR), "fit", str(model), "--train-driver", "local", "--detach", "--hp", "lines=0",
                  "--hp", f"line_mib={line_mib}", "--hp", "linger=3600"], env=env, cwd=work), "fahr fit --detach")
    job = newest_job(work)
    try:
        container = docker("ps", "-q", "--filter", f"label=fahr.job={job}")
        deadline = time.monotonic() + 600
        while docker("logs", "--tail", "1", container) != "done":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the job {job} did not print its {line_mib} MiB line in 10 minutes")
            time.sleep(1)
        fahr_out, docker_out = work / "logs.out", work / "docker-logs.out"
        fahrs, dockers, same = [], [], 0
        for i in range(runs):
            say(f"  a {line_mib} MiB line: run {i + 1} of {runs}")
            dockers.append(must(measure(["docker", "logs", container], env=env, stdout_to=docker_out),
                                "docker logs").seconds)
            fahrs.append(must(measure([str(FAHR), "logs", job, "--train-driver", "local"], env=env, cwd=work,
                                      stdout_to=fahr_out), "fahr logs").seconds)
            same += fahr_out.read_bytes() == docker_out.read_bytes()
    finally:
        subprocess.run([str(FAHR), "stop", job, "--train-driver", "local"], env=env, cwd=work, capture_output=True)
    m_fahr, m_docker = median(fahrs), median(dockers)
    return {"runs": runs, "line_bytes": line_mib * MiB, "same_output_every_run": same == runs,
            "fahr_logs_s": round(m_fahr, 3), "docker_logs_s": round(m_docker, 3), "ratio": round(m_fahr / m_docker, 2)}


#: Five definitions as a user writes them (none matches the log job's lines: the cost measured is
#: that of ordinary output, which is nearly all of a job's).
METRIC_DEFINITIONS = [r"loss=loss: (\S+)", r"val_loss=val_loss=([0-9.]+)", r"acc=accuracy (\d+\.\d+)",
                      r"lr=lr (\S+)", r"epoch_time=epoch took ([0-9.]+) s"]


def log_metrics(runs: int, work: Path, lines: int) -> dict:
    model, _, env = log_project(work, lines)
    plain = [str(FAHR), "fit", str(model), "--train-driver", "local"]
    defined = plain + [arg for definition in METRIC_DEFINITIONS for arg in ("--metric", definition)]
    without, with_, out = [], [], work / "fit.out"
    for i in range(runs):
        say(f"  {lines} lines: run {i + 1} of {runs}")
        without.append(must(measure(plain, env=env, cwd=work, stdout_to=out), "fahr fit of the log job").seconds)
        shutil.rmtree(work / "jobs" / newest_job(work), ignore_errors=True)
        with_.append(must(measure(defined, env=env, cwd=work, stdout_to=out),
                          "fahr fit of the log job with five --metric").seconds)
        shutil.rmtree(work / "jobs" / newest_job(work), ignore_errors=True)
    m_without, m_with = median(without), median(with_)
    return {"runs": runs, "lines": lines, "definitions": len(METRIC_DEFINITIONS), "fahr_fit_s": round(m_without, 3),
            "fahr_fit_metrics_s": round(m_with, 3), "ratio": round(m_with / m_without, 2)}


SWEEP_JOB = """\
import time
from pathlib import Path
time.sleep(1)
Path("/opt/ml/model").mkdir(parents=True, exist_ok=True)
Path("/opt/ml/model/m.txt").write_text("m")
"""


def sweep(runs: int, work: Path, jobs: int) -> dict:
    """``fahr sweep`` of ``jobs`` one-second jobs at ``--parallel 2`` against their containers run
    two at a time by ``xargs -P2``, interleaved; the image built by a first fit."""
    model = work / "fahr-bench-sweep" / "train.py"
    model.parent.mkdir(exist_ok=True)
    model.write_text(SWEEP_JOB)
    env = clean_env(FAHR_LOCAL_OUTPUT_PATH=str(work / "jobs"), XDG_STATE_HOME=str(work / "state"))
    image = "fahr-bench-sweep/train:latest"
    remove_image(image)  # left by a run that was killed: the first fit builds
    try:
        must(measure([str(FAHR), "fit", str(model), "--train-driver", "local"], env=env, cwd=work),
             "the first fit of the sweep's job")
        points = ",".join(str(i) for i in range(1, jobs + 1))
        command = [str(FAHR), "sweep", str(model), "--train-driver", "local", "--hp", f"i={points}",
                   "--parallel", "2", "-q"]
        baseline = ["bash", "-c", f"seq {jobs} | xargs -P2 -I{{}} docker run --rm -e FAHR_EXECUTION_ENVIRONMENT=bench "
                                  f"{image} train >/dev/null"]
        sweeps, xargs = [], []
        for i in range(runs):
            say(f"  {jobs} jobs two at a time: run {i + 1} of {runs}")
            xargs.append(must(measure(baseline, env=env), "xargs -P2 docker run").seconds)
            run = must(measure(command, env=env, cwd=work), "fahr sweep")
            if run.stdout.count(" Completed ") != jobs:
                raise RuntimeError(f"fahr sweep did not complete its {jobs} jobs:\n{run.stdout}")
            sweeps.append(run.seconds)
            shutil.rmtree(work / "jobs", ignore_errors=True)
    finally:
        remove_image(image)
    m_sweep, m_xargs = median(sweeps), median(xargs)
    return {"runs": runs, "jobs": jobs, "fahr_sweep_s": round(m_sweep, 3), "xargs_s": round(m_xargs, 3),
            "ratio": round(m_sweep / m_xargs, 2)}


# -- s3-upload ------------------------------------------------------------------------------------


# fahr's way: the sagemaker driver's uploader of a local input folder, as `fahr fit` calls it.
UPLOAD_FAHR = """\
import sys
from pathlib import Path
from fahr_sagemaker import aws, uploads
folder, bucket, prefix = sys.argv[1:4]
print(uploads.upload({"profile": "", "region": "us-east-1"}, "train", Path(folder), aws.S3Uri(bucket, prefix)))
"""

# The baseline: s3transfer's TransferManager (what boto3's upload_file runs), 10 threads.
UPLOAD_BASELINE = """\
import os, sys
import boto3
from s3transfer.manager import TransferConfig, TransferManager
folder, bucket, prefix = sys.argv[1:4]
with TransferManager(boto3.client("s3"), TransferConfig(max_request_concurrency=10)) as manager:
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            manager.upload(path, bucket, prefix + "/" + os.path.relpath(path, folder).replace(os.sep, "/"))
"""


def _objects(s3, bucket: str, prefix: str) -> dict[str, tuple]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = (obj["Size"], obj["ETag"], obj["LastModified"])
    return found


def s3_upload(runs: int, work: Path, files: int, file_bytes: int, data_bytes: int) -> dict:
    """fahr's upload of ``files`` small files against s3transfer's (10 threads), interleaved, each
    into a new prefix; then a ``data_bytes`` folder uploaded once and again unchanged."""
    import boto3

    bucket = "fahr-bench-up"
    small = work / "upload-small"
    small.mkdir()
    for i in range(files):
        sub = small / f"d{i % 100:02}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:05}.bin").write_bytes(os.urandom(file_bytes))
    with moto_server(work) as url:
        env = moto_env(url, work)
        s3 = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1").client("s3", endpoint_url=url)
        s3.create_bucket(Bucket=bucket)
        ours, theirs = [], []
        for i in range(runs):
            say(f"  {files} files of {file_bytes // 1024} KiB: run {i + 1} of {runs}")
            base = must(measure([sys.executable, "-c", UPLOAD_BASELINE, str(small), bucket, f"base{i}"], env=env),
                        "the s3transfer upload")
            # A first upload: a hash cache of its own, empty, and a prefix no tree is in yet.
            run = must(measure([sys.executable, "-c", UPLOAD_FAHR, str(small), bucket, f"fahr{i}/inputs"],
                               env={**env, "XDG_CACHE_HOME": str(work / f"cache-{i}")}), "fahr's upload")
            uri = run.stdout.strip().splitlines()[-1]
            for prefix in (f"base{i}/", uri.split(f"s3://{bucket}/", 1)[1]):
                count = len(_objects(s3, bucket, prefix))
                if count != files:
                    raise RuntimeError(f"{prefix} holds {count} objects, not {files}")
            theirs.append(base.seconds)
            ours.append(run.seconds)
        result = {"runs": runs, "files": files, "file_bytes": file_bytes, "fahr_upload_s": round(median(ours), 3),
                  "s3transfer_s": round(median(theirs), 3), "ratio": round(median(ours) / median(theirs), 2)}
        # The big folder: uploaded once, then again unchanged; what the bucket holds is compared.
        big = work / "upload-big"
        big.mkdir()
        count = 256
        for i in range(count):
            write_random(big / f"part-{i:03}.bin", data_bytes // count)
        cache = {**env, "XDG_CACHE_HOME": str(work / "cache-big")}
        say(f"  a {human(data_bytes)} folder: the first upload")
        first = must(measure([sys.executable, "-c", UPLOAD_FAHR, str(big), bucket, "big/inputs"], env=cache),
                     "fahr's upload of the big folder")
        before = _objects(s3, bucket, "")
        again = []
        for i in range(runs):
            say(f"  a {human(data_bytes)} folder, unchanged: run {i + 1} of {runs}")
            again.append(must(measure([sys.executable, "-c", UPLOAD_FAHR, str(big), bucket, "big/inputs"], env=cache),
                              "fahr's re-upload of the big folder").seconds)
        after = _objects(s3, bucket, "")
        added = sum(size for key, (size, *_) in after.items() if after[key] != before.get(key))
    result.update(data_bytes=data_bytes, first_upload_s=round(first.seconds, 2),
                  reupload_s=round(median(again), 3), reupload_bytes_added=added)
    return result


def log_measures(args: argparse.Namespace, work: Path, results: dict) -> None:
    try:
        if "log-throughput" in args.only:
            say(f"a job printing {args.log_lines} lines: fahr fit against docker run")
            results["log-throughput"] = log_throughput(args.runs, work, args.log_lines)
        if "log-memory" in args.only:
            say(f"a job printing {args.output_mib} MiB: peak RSS of fahr fit, wait and logs")
            results["log-memory"] = log_memory(work, args.output_mib * MiB)
        if "log-metrics" in args.only:
            say(f"a job printing {args.log_lines} lines: fahr fit with five metric definitions against none")
            results["log-metrics"] = log_metrics(args.runs, work, args.log_lines)
        if "log-long-line" in args.only:
            say(f"a running job that printed a {args.line_mib} MiB line: fahr logs against docker logs")
            results["log-long-line"] = log_long_line(args.runs, work, args.line_mib)
    finally:
        remove_image("fahr-bench-logs/train:latest")


def check_prerequisites(only: list[str], work_parent: Path, data_bytes: int, model_bytes: int,
                        output_bytes: int = 0) -> None:
    if not FAHR.exists():
        raise Missing(f"{FAHR} not found: run this with the Python of fahr's virtualenv (make benchmark)")
    if DOCKER_MEASURES & set(only):
        if shutil.which("docker") is None:
            raise Missing("no docker command: install Docker, or run make benchmark (it sets one up); "
                          "or leave out refit, data-refit and the log measures with --only")
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise Missing("no Docker engine answers: start one (make benchmark starts one), "
                          "or leave out refit, data-refit and the log measures with --only")
        if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True).returncode != 0:
            raise Missing(f"the base image {BASE_IMAGE} is missing: run make benchmark (it pulls or builds it)")
    if {"s3-fetch", "local-fetch"} & set(only) and shutil.which("tar") is None:
        raise Missing("no tar command: install tar (the baseline is tar xzf)")
    if {"s3-fetch", "s3-upload"} & set(only):
        for module, what in (("moto", "moto (the emulated S3)"), ("fahr_sagemaker", "the sagemaker driver")):
            if importlib.util.find_spec(module) is None:
                raise Missing(f"{what} is not installed in {sys.prefix}: run make venv (make benchmark does), "
                              "or leave out s3-fetch and s3-upload with --only")
    need = 0
    if "data-refit" in only:
        need += 3 * data_bytes  # the data folder, its image layer, the build's context on the way
    if {"s3-fetch", "local-fetch"} & set(only):
        need += 5 * model_bytes  # the payload, the archive, moto's copy, two extracted models
    if "s3-upload" in only:
        need += 3 * GiB  # the folders and moto's copies of them
    if "log-memory" in only:
        need += 4 * output_bytes  # the engine's log of it, the job's saved log, the printed copy
    free = shutil.disk_usage(work_parent).free
    if need and free < need:
        raise Missing(f"{work_parent} has {free / GiB:.1f} GiB free, the benchmark needs about {need / GiB:.1f} GiB")


class LoadSampler:
    """The 1-minute load average every 10 s while the benchmark runs: other work on the machine
    moves every figure, and the table says how much there was."""

    def __init__(self):
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError, ValueError):
                self.samples.append(float(Path("/proc/loadavg").read_text().split()[0]))
            if self._stop.wait(10):
                return

    def __enter__(self) -> "LoadSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {}
        return {"mean": round(statistics.mean(self.samples), 1), "max": round(max(self.samples), 1)}


def machine() -> dict:
    info = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(), "python": platform.python_version()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / MiB, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip('"')
    if shutil.which("docker"):
        proc = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
        info["docker"] = proc.stdout.strip() if proc.returncode == 0 else "no engine"
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("fahr", "fahr-sagemaker"):
        with contextlib.suppress(PackageNotFoundError):
            info[dist] = version(dist)
    return info


def human(n: float) -> str:
    return f"{n / GiB:.3g} GiB" if n >= GiB else f"{n / MiB:.0f} MiB"


def runs_of(r: dict) -> str:
    return f"{r['runs']} run{'s' * (r['runs'] != 1)}"


def describe(info: dict) -> str:
    """The machine in one line, for RESULTS.md."""
    parts = [f"{info['cores']} cores" + (f" ({info['cpu']})" if "cpu" in info else "")]
    if "memory_gib" in info:
        parts.append(f"{info['memory_gib']} GiB")
    parts += [info[k] for k in ("os",) if k in info]
    parts.append(f"Python {info['python']}")
    if "docker" in info:
        parts.append(f"Docker engine {info['docker']}")
    parts.append(" + ".join(f"{d} {info[d]}" for d in ("fahr", "fahr-sagemaker") if d in info))
    line = f"Machine: {', '.join(p for p in parts if p)}; {info['date']}."
    if info.get("load_average"):
        la = info["load_average"]
        line += f" 1-minute load average during the run: mean {la['mean']}, max {la['max']}."
    return line


def verdict(ok: bool, target: str) -> str:
    return f"{target}: {'met' if ok else '**missed**'}"


def table(results: dict) -> tuple[list[str], bool]:
    """Markdown rows of the results, and whether every target was met."""
    rows = ["| measure | median | target |", "| --- | --- | --- |"]
    all_ok = True

    def row(what: str, value: str, target: str = "") -> None:
        rows.append(f"| {what} | {value} | {target} |")

    if "startup" in results:
        r = results["startup"]
        heavy = sorted({m for mods in r["heavy_modules_imported"].values() for m in mods})
        ok_ratio, ok_heavy = r["help_ratio"] <= STARTUP_RATIO, not heavy
        all_ok &= ok_ratio and ok_heavy
        row(f"`python -c \"import typer\"` (the floor; {runs_of(r)})", f"{r['import_typer_s']:.3f} s")
        row("`fahr --help`", f"{r['fahr_help_s']:.3f} s")
        row("`fahr drivers`", f"{r['fahr_drivers_s']:.3f} s")
        row("**ratio `--help` / floor**", f"**{r['help_ratio']:.2f}**", verdict(ok_ratio, f"≤ {STARTUP_RATIO}"))
        row("docker, boto3/botocore, cookiecutter, fahr_sagemaker or the local driver imported by "
            "`--help` / `drivers`", ", ".join(heavy) or "none", verdict(ok_heavy, "none"))
    for name in ("refit", "data-refit"):
        if name not in results:
            continue
        r = results[name]
        label = "example model" if name == "refit" else f"{human(r['data_bytes'])} `data/` folder"
        ok = r["overhead_s"] <= REFIT_OVERHEAD_S and r["same_image_every_refit"]
        all_ok &= ok
        if name == "data-refit":
            row(f"first fit, {label} (one run)", f"{r['first_fit_s']:.1f} s")
            row("its image size (as `docker images` counts: GB = 10^9 bytes)", f"{r['image_bytes'] / 1e9:.2f} GB")
            row("warning lines of the first fit", "; ".join(f"`{w}`" for w in r["first_fit_warnings"]) or "none")
        row(f"unchanged re-fit, {label}: same image every time ({runs_of(r)})",
            str(r["same_image_every_refit"]).lower(), "true")
        row("`fahr fit` (unchanged)", f"{r['fahr_fit_s']:.3f} s")
        row("`docker run --rm IMAGE train`", f"{r['docker_run_s']:.3f} s")
        row(f"**re-fit overhead, {label}**", f"**{r['overhead_s']:.2f} s**", verdict(ok, f"≤ {REFIT_OVERHEAD_S} s"))
        if name == "data-refit":
            row("peak RSS of `fahr fit` (max of the fits)", f"{r['fahr_fit_peak_rss_mib']:.0f} MiB")
    if "s3-fetch" in results:
        r = results["s3-fetch"]
        ok_ratio, ok_rss = r["ratio"] <= S3_RATIO, r["fahr_peak_rss_mib"] < S3_RSS_MIB
        all_ok &= ok_ratio and ok_rss
        what = f"{human(r['unpacked_bytes'])} model ({human(r['archive_bytes'])} gzip)"
        row(f"`fahr fetch` from emulated S3, {what} ({runs_of(r)})", f"{r['fahr_fetch_s']:.2f} s")
        row("boto3 `download_file` (fahr's transfer config) + `tar xzf`", f"{r['baseline_s']:.2f} s")
        row("… its `download_file` / its `tar xzf`", f"{r['baseline_download_s']:.2f} s / {r['baseline_tar_s']:.2f} s")
        row("**ratio S3 fetch / by hand**", f"**{r['ratio']:.2f}**", verdict(ok_ratio, f"≤ {S3_RATIO}"))
        # What overlapping the unpacking with the download can approach: the download alone.
        row("ratio S3 fetch / `download_file` alone (timed in its process: what a streamed fetch can approach)",
            f"{r['fahr_fetch_s'] / r['baseline_download_s']:.2f}")
        row(f"**peak RSS of `fahr fetch`** (max of the runs; floor {r['rss_floor_mib']:.0f} MiB)",
            f"**{r['fahr_peak_rss_mib']:.0f} MiB**",
            verdict(ok_rss, f"< {S3_RSS_MIB} MiB"))
        row("peak RSS of the by-hand download", f"{r['baseline_peak_rss_mib']:.0f} MiB")
    if "local-fetch" in results:
        r = results["local-fetch"]
        ok = r["ratio"] <= LOCAL_RATIO
        all_ok &= ok
        row(f"`fahr fetch` of a local job, same model ({runs_of(r)})", f"{r['fahr_fetch_s']:.2f} s")
        row("`tar xzf` of its model.tar.gz", f"{r['baseline_s']:.2f} s")
        row("**ratio local fetch / `tar xzf`**", f"**{r['ratio']:.2f}**", verdict(ok, f"≤ {LOCAL_RATIO}"))
        row("peak RSS of `fahr fetch` (local)", f"{r['fahr_peak_rss_mib']:.0f} MiB")
    if "log-throughput" in results:
        r = results["log-throughput"]
        ok = r["ratio"] <= LOG_RATIO and r["same_output_every_run"]
        all_ok &= ok
        row(f"a job printing {r['lines']:,} lines ({r['output_bytes'] / 1e6:.0f} MB), stdout to a file: "
            f"same bytes every time ({runs_of(r)})", str(r["same_output_every_run"]).lower(), "true")
        row("`fahr fit` (image up to date)", f"{r['fahr_fit_s']:.2f} s")
        row("`docker run --rm IMAGE train`", f"{r['docker_run_s']:.2f} s")
        row("**ratio log throughput `fit` / `docker run`**", f"**{r['ratio']:.2f}**", verdict(ok, f"≤ {LOG_RATIO}"))
    if "log-metrics" in results:
        r = results["log-metrics"]
        ok = r["ratio"] <= METRICS_RATIO
        all_ok &= ok
        row(f"a job printing {r['lines']:,} lines, `fahr fit` without metric definitions ({runs_of(r)})",
            f"{r['fahr_fit_s']:.2f} s")
        row(f"the same with {r['definitions']} `--metric` definitions", f"{r['fahr_fit_metrics_s']:.2f} s")
        row("**ratio log throughput with / without metric definitions**", f"**{r['ratio']:.2f}**",
            verdict(ok, f"≤ {METRICS_RATIO}"))
    if "log-memory" in results:
        r = results["log-memory"]
        what = human(r["output_bytes"])
        for command in ("fit", "wait", "logs"):
            value = r[f"fahr_{command}_peak_rss_mib"]
            ok = value < LOG_RSS_MIB
            all_ok &= ok
            job = "a job printing" if command == "fit" else "the finished job that printed"
            row(f"**peak RSS of `fahr {command}`**, {job} {what} (one run)", f"**{value:.0f} MiB**",
                verdict(ok, f"< {LOG_RSS_MIB} MiB"))
    if "log-long-line" in results:
        r = results["log-long-line"]
        ok = r["ratio"] <= LONG_LINE_RATIO and r["same_output_every_run"]
        all_ok &= ok
        row(f"`fahr logs` of a running job that printed a {human(r['line_bytes'])} line: same bytes as "
            f"`docker logs` ({runs_of(r)})", str(r["same_output_every_run"]).lower(), "true")
        row("`fahr logs JOB`", f"{r['fahr_logs_s']:.2f} s")
        row("`docker logs CONTAINER`", f"{r['docker_logs_s']:.2f} s")
        row("**ratio `fahr logs` / `docker logs`, long line**", f"**{r['ratio']:.2f}**",
            verdict(ok, f"≤ {LONG_LINE_RATIO:g} (linear)"))
    if "sweep" in results:
        r = results["sweep"]
        ok = r["ratio"] <= SWEEP_RATIO
        all_ok &= ok
        row(f"`fahr sweep` of {r['jobs']} one-second jobs at `--parallel 2`, image up to date ({runs_of(r)})",
            f"{r['fahr_sweep_s']:.2f} s")
        row(f"the same {r['jobs']} `docker run --rm IMAGE train`, `xargs -P2`", f"{r['xargs_s']:.2f} s")
        row("**ratio `fahr sweep` / `xargs -P2 docker run`**", f"**{r['ratio']:.2f}**", verdict(ok, f"≤ {SWEEP_RATIO}"))
    if "s3-upload" in results:
        r = results["s3-upload"]
        ok_ratio, ok_bytes = r["ratio"] <= UPLOAD_RATIO, r["reupload_bytes_added"] == 0
        all_ok &= ok_ratio and ok_bytes
        row(f"fahr's upload of {r['files']:,} files of {r['file_bytes'] // 1024} KiB to emulated S3, first time "
            f"(hashing included; {runs_of(r)})", f"{r['fahr_upload_s']:.2f} s")
        row("s3transfer's TransferManager, 10 threads, the same files", f"{r['s3transfer_s']:.2f} s")
        row("**ratio many-file upload fahr / s3transfer**", f"**{r['ratio']:.2f}**", verdict(ok_ratio, f"≤ {UPLOAD_RATIO}"))
        row(f"first upload of a {human(r['data_bytes'])} folder (one run)", f"{r['first_upload_s']:.1f} s")
        row("its unchanged re-upload", f"{r['reupload_s']:.2f} s")
        row("**bytes the unchanged re-upload added to the bucket**", f"**{r['reupload_bytes_added']}**",
            verdict(ok_bytes, "0"))
    return rows, all_ok


def only_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in MEASURES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown measure {', '.join(unknown) or repr(text)}; choose from {', '.join(MEASURES)}")
    return [n for n in MEASURES if n in names]  # always in the same order


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Measure fahr's performance targets side by side; print a markdown table for "
                    "benchmarks/RESULTS.md. Exit 0 when every target is met, 1 when one is missed, "
                    "3 when a prerequisite is missing, 4 when a step fails.",
    )
    parser.add_argument("--runs", type=positive, default=5, metavar="N",
                        help="interleaved runs of each side of each measure (start-up: 3×N); the "
                             "default 5 takes about 13 minutes on 2 cores")
    parser.add_argument("--only", type=only_list, default=list(MEASURES), metavar="NAME[,NAME...]",
                        help=f"measure only these: {', '.join(MEASURES)} (default: all)")
    parser.add_argument("--data-mib", type=positive, default=1024, metavar="MIB",
                        help="size of the data/ folder of data-refit (target defined at 1024)")
    parser.add_argument("--model-mib", type=positive, default=512, metavar="MIB",
                        help="unpacked size of the model of s3-fetch and local-fetch (target defined at 512)")
    parser.add_argument("--log-lines", type=positive, default=1_000_000, metavar="N",
                        help="lines the job of log-throughput prints (target defined at 1000000)")
    parser.add_argument("--output-mib", type=positive, default=400, metavar="MIB",
                        help="what the job of log-memory prints (target defined at 400)")
    parser.add_argument("--line-mib", type=positive, default=40, metavar="MIB",
                        help="the length of the line of log-long-line (target defined at 40)")
    parser.add_argument("--sweep-jobs", type=positive, default=8, metavar="N",
                        help="jobs of the sweep measure (target defined at 8)")
    parser.add_argument("--upload-files", type=positive, default=10_000, metavar="N",
                        help="small files of s3-upload (10 KiB each; target defined at 10000)")
    parser.add_argument("--upload-mib", type=positive, default=1024, metavar="MIB",
                        help="the folder s3-upload re-uploads unchanged (target defined at 1024)")
    parser.add_argument("--json", action="store_true", help="also print every figure as JSON")
    return parser.parse_args(argv)


def _terminated(signum, frame):
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def measure_all(args: argparse.Namespace, work: Path, results: dict) -> None:
    if "startup" in args.only:
        say("start-up")
        results["startup"] = startup(3 * args.runs)
    if "refit" in args.only:
        say("unchanged re-fit of the example")
        results["refit"] = hello_refit(args.runs, work)
    if "data-refit" in args.only:
        say("unchanged re-fit with a data folder")
        results["data-refit"] = data_refit(args.runs, work, args.data_mib * MiB)
    if {"s3-fetch", "local-fetch"} & set(args.only):
        say(f"making a {args.model_mib} MiB model.tar.gz")
        archive = make_archive(work, args.model_mib * MiB)
        if "s3-fetch" in args.only:
            say("S3 fetch against download_file + tar xzf")
            results["s3-fetch"] = s3_fetch(args.runs, work, archive)
        if "local-fetch" in args.only:
            say("local fetch against tar xzf")
            results["local-fetch"] = local_fetch(args.runs, work, archive)
    if LOG_MEASURES & set(args.only):
        log_measures(args, work, results)
    if "s3-upload" in args.only:
        say(f"{args.upload_files} small files: fahr's upload against s3transfer with 10 threads")
        results["s3-upload"] = s3_upload(args.runs, work, args.upload_files, 10 * 1024, args.upload_mib * MiB)
    if "sweep" in args.only:
        say(f"a sweep of {args.sweep_jobs} one-second jobs at --parallel 2 against xargs -P2 docker run")
        results["sweep"] = sweep(args.runs, work, args.sweep_jobs)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    started = time.perf_counter()
    data_bytes, model_bytes = args.data_mib * MiB, args.model_mib * MiB
    work_parent = Path(tempfile.gettempdir())
    try:
        check_prerequisites(args.only, work_parent, data_bytes, model_bytes, args.output_mib * MiB)
    except Missing as exc:
        print(f"benchmark error: {exc}", file=sys.stderr)
        return 3
    info = machine()
    results: dict = {}
    work = Path(tempfile.mkdtemp(prefix="fahr-bench-", dir=work_parent))
    try:
        with LoadSampler() as sampler:
            measure_all(args, work, results)
    except KeyboardInterrupt:
        print("benchmark interrupted; cleaning up", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 4
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - started
    info["load_average"] = sampler.summary()
    rows, ok = table(results)
    print(describe(info))
    options = f"--runs {args.runs}" + (f" --only {','.join(args.only)}" if args.only != list(MEASURES) else "")
    options += f" --data-mib {args.data_mib}" * (args.data_mib != 1024)
    options += f" --model-mib {args.model_mib}" * (args.model_mib != 512)
    options += f" --log-lines {args.log_lines}" * (args.log_lines != 1_000_000)
    options += f" --output-mib {args.output_mib}" * (args.output_mib != 400)
    options += f" --line-mib {args.line_mib}" * (args.line_mib != 40)
    options += f" --upload-files {args.upload_files}" * (args.upload_files != 10_000)
    options += f" --upload-mib {args.upload_mib}" * (args.upload_mib != 1024)
    print(f"`benchmarks/run.py {options}`: medians of interleaved runs; wall time {wall:.0f} s.\n")
    print("\n".join(rows))
    if args.json:
        print("\n" + json.dumps({"machine": info, "wall_s": round(wall), **results}, indent=2))
    print("\ntargets met" if ok else "\nTARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
