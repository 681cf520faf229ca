"""{{ cookiecutter.project_slug }}: {{ cookiecutter.description | replace('\\', '\\\\') | replace('"', '\\"') }}

A fahr driver is a pluggy plugin: a module with ``@hookimpl`` functions, registered under the
``fahr.drivers`` entry point (see pyproject.toml). fahr builds the image (its default
``build_image``), calls ``push_image`` (the default keeps the image on the local engine), then this
module's ``launch``, ``wait`` and ``fetch``. The hooks, their arguments and the value types
(``from fahr_core import JobSpec, JobHandle, …``) are documented in fahr's docs/writing-a-driver.md.

This driver's backend is the ``docker`` command line: each job is a container of the Docker
engine, started as ``IMAGE train`` under the SageMaker container contract (``/opt/ml/...``).
It works out of the box; to target your own backend, replace the ``docker`` commands with your
backend's API (submit, follow the logs, describe, stop, download) and keep the rest.

Each job keeps its state in ``<output_path>/<job>/``: ``job.json`` (fahr's record: status,
failure reason, times) and ``output/model.tar.gz`` / ``output/output.tar.gz`` as SageMaker lays
them out, so that ``fahr fetch`` works alike on every driver.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

# fahr's plugin API: every name a driver uses comes from fahr_core itself (its __all__), the
# surface fahr keeps compatible within a major version; fahr_core's submodules are internal.
from fahr_core import (COMPLETED, FAILED, FINAL_STATES, IN_PROGRESS, OUT_OF_MEMORY, PLATFORM, STOPPED, USER,
                       ConfigError, ConfigKey, EnvironmentProblem, JobHandle, JobResult, UsageError, hookimpl, ui)

NAME = "{{ cookiecutter.driver_name }}"
RECORD = "job.json"
MARKER = ".{{ cookiecutter.project_slug }}"
"""A file in output_path that says the folder holds this driver's jobs (claims_location)."""
FAILURE_REASON_MAX = 1024


# -- configuration -----------------------------------------------------------------------------


@hookimpl
def config_keys():
    """The keys users set in fahr.toml ``[{{ cookiecutter.driver_name }}]``, as FAHR_{{ cookiecutter.driver_name|upper }}_<KEY>, or --config.KEY=VALUE."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return [
        ConfigKey("output_path", str, os.path.join(base, "{{ cookiecutter.project_slug }}", "jobs"),
                  "Folder that receives <job>/output/model.tar.gz and output.tar.gz."),
        ConfigKey("stop_timeout", int, 10, "Seconds between SIGTERM and SIGKILL when a job is stopped."),
        ConfigKey("docker", str, "docker", "The docker command line to run jobs with."),
    ]


@hookimpl
def claims_location(location):
    """``fahr fetch DIR TAG LOCATION`` without --train-driver: claim folders that hold our jobs."""
    path = Path(os.path.expanduser(location))
    return True if (path / MARKER).is_file() else None


# -- the backend: the docker command line --------------------------------------------------------


def _docker(config, *args, check=True, text=True) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run([config["docker"], *args], capture_output=True, text=text)
    except FileNotFoundError:
        raise EnvironmentProblem(f"config.docker={config['docker']!r}: no such command; install Docker") from None
    if check and result.returncode != 0:
        raise EnvironmentProblem(f"docker {args[0]} failed: {(result.stderr or result.stdout).strip()}")
    return result


def _container(job_name: str) -> str:
    return f"fahr-{NAME}-{job_name}"


def _job_dir(config, job_name: str) -> Path:
    return Path(os.path.expanduser(config["output_path"])) / job_name


def _read_record(job_dir: Path) -> dict:
    try:
        return json.loads((job_dir / RECORD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no {NAME} job at {job_dir}; check the job name and config.output_path") from None


def _write_record(job_dir: Path, record: dict) -> None:
    tmp = job_dir / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(job_dir / RECORD)


def _opt_ml(spec, staging: Path) -> None:
    """The /opt/ml a job finds when it starts (the SageMaker container contract)."""
    config_dir = staging / "input" / "config"
    config_dir.mkdir(parents=True)
    # No checkpoints folder: SageMaker makes one only when checkpointing is configured.
    for folder in ("model", "output/data", "input/data"):
        (staging / folder).mkdir(parents=True, exist_ok=True)
    (config_dir / "hyperparameters.json").write_text(json.dumps(dict(spec.hyperparameters)))
    channels = {}
    for channel, value in spec.inputs.items():
        source = Path(value.removeprefix("file://")).expanduser()
        if "://" in value and not value.startswith("file://"):
            raise UsageError(f"--input {channel}={value}: this driver reads local folders and files only")
        if not source.exists():
            raise UsageError(f"--input {channel}={value}: {source} does not exist")
        target = staging / "input" / "data" / channel
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.mkdir()
            shutil.copy2(source, target / source.name)
        # No ContentType: SageMaker writes one only for a channel given one.
        channels[channel] = {"TrainingInputMode": "File",
                             "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
    (config_dir / "inputdataconfig.json").write_text(json.dumps(channels))
    (config_dir / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0",
         "current_instance_type": NAME}))


# -- the steps ---------------------------------------------------------------------------------


@hookimpl
def launch(spec, config):
    """Create the job's container (``IMAGE train``), copy /opt/ml in, start it, and return."""
    if config["stop_timeout"] < 0:
        raise ConfigError(f"config.stop_timeout={config['stop_timeout']}: must be 0 or more")
    root = Path(os.path.expanduser(config["output_path"]))
    job_dir = root / spec.job_name
    try:
        job_dir.mkdir(parents=True)
    except FileExistsError:
        raise UsageError(f"job {spec.job_name} already exists in {root}; choose another name") from None
    (root / MARKER).touch()
    record = {"job_name": spec.job_name, "model_tag": spec.model_tag, "image": spec.image.reference,
              "container": _container(spec.job_name), "status": IN_PROGRESS, "created": time.time()}
    _write_record(job_dir, record)
    try:
        _opt_ml(spec, job_dir / "opt_ml")
        # No TRAINING_JOB_ARN: on SageMaker it is an ARN, and a script may parse it as one; a
        # driver without ARNs leaves it unset rather than invent one.
        env = {**spec.environment, "TRAINING_JOB_NAME": spec.job_name, "FAHR_EXECUTION_ENVIRONMENT": NAME}
        env_args = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
        _docker(config, "create", "--name", record["container"], "--label", f"fahr.job={spec.job_name}",
                *env_args, spec.image.reference, "train")
        _docker(config, "cp", str(job_dir / "opt_ml"), f"{record['container']}:/opt/ml")
        _docker(config, "start", record["container"])
    except BaseException as exc:
        _docker(config, "rm", "-f", record["container"], check=False)
        record.update(status=FAILED, failure_reason=f"could not start: {exc}", failure_kind=PLATFORM,
                      ended=time.time())
        _write_record(job_dir, record)
        raise
    finally:
        shutil.rmtree(job_dir / "opt_ml", ignore_errors=True)
    record["started"] = time.time()
    _write_record(job_dir, record)
    ui.status_change(spec.job_name, "Training")
    return JobHandle(driver=NAME, job_name=spec.job_name, model_tag=spec.model_tag,
                     details={"job_dir": str(job_dir), "container": record["container"]})


@hookimpl
def wait(job, config):
    """Stream the container's logs until it exits, then collect its artifacts as SageMaker would."""
    job_dir = _job_dir(config, job.job_name)
    record = _read_record(job_dir)
    if not job.model_tag:  # `fahr wait JOB` rebuilds the handle from the name: the record knows the tag
        job = dataclasses.replace(job, model_tag=record["model_tag"])
    if record["status"] not in FINAL_STATES:
        container = record["container"]
        tail: list[str] = []
        try:
            logs = subprocess.Popen([config["docker"], "logs", "--follow", container],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
            for line in logs.stdout:
                line = line.rstrip("\n")
                tail = (tail + [line])[-10:]
                ui.log_line(line)
            logs.wait()
            code = int(_docker(config, "wait", container).stdout.strip() or -1)
        except KeyboardInterrupt:
            _docker(config, "stop", "-t", str(config["stop_timeout"]), container, check=False)
            _finish(config, job_dir, record, STOPPED, "Stopped by the user (interrupt)")
            raise
        if _read_record(job_dir).get("stop_requested"):
            _finish(config, job_dir, record, STOPPED, "Stopped by 'fahr stop'")
        elif code == 0:
            _finish(config, job_dir, record, COMPLETED, "")
        else:
            reason = _read_failure(config, container) or (
                f"AlgorithmError: exit code {code}; last output:\n" + "\n".join(tail))
            # Why it failed decides whether `fahr fit --retry` tries again: the engine says when
            # the kernel killed it for memory; any other failure is the script's own.
            state = _docker(config, "inspect", container, check=False)
            oom = state.returncode == 0 and json.loads(state.stdout)[0]["State"].get("OOMKilled")
            kind = OUT_OF_MEMORY if oom else USER
            _finish(config, job_dir, record, FAILED, reason[:FAILURE_REASON_MAX], kind)
        ui.status_change(job.job_name, record["status"])
    seconds = round(record["ended"] - record["started"], 3) if record.get("started") and record.get("ended") else None
    return JobResult(job=job, status=record["status"], failure_reason=record.get("failure_reason", ""),
                     failure_kind=record.get("failure_kind", ""),
                     model_artifact=record.get("model_artifact", ""),
                     output_artifact=record.get("output_artifact", ""),
                     training_seconds=seconds, billable_seconds=seconds,
                     model_empty=record.get("model_empty"))


def _read_failure(config, container: str) -> str:
    """``/opt/ml/output/failure`` of the container (its first 1024 characters: the FailureReason)."""
    result = _docker(config, "cp", f"{container}:/opt/ml/output/failure", "-", check=False, text=False)
    if result.returncode != 0 or not result.stdout:
        return ""
    import io

    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
        for member in tar:
            if member.isfile():
                return tar.extractfile(member).read().decode("utf-8", "replace")[:FAILURE_REASON_MAX]
    return ""


def _pack(config, container: str, path: str, target: Path) -> Path | None:
    """Pack the contents of ``path`` (not the folder itself) into ``target``, as SageMaker does.

    ``docker cp CONTAINER:PATH -`` streams a tar of the folder; its entries are re-rooted and
    repacked without ever being extracted here, so links in a model stay links (fahr's fetch
    checks them when it extracts), hard links stay hard links, and long or non-ASCII names
    survive (both tars are PAX).
    """
    import tempfile

    base = path.rstrip("/").rsplit("/", 1)[-1]
    with tempfile.TemporaryFile() as spool:
        copied = subprocess.run([config["docker"], "cp", f"{container}:{path}", "-"], stdout=spool,
                                stderr=subprocess.PIPE)
        if copied.returncode != 0:
            return None
        spool.seek(0)
        partial = target.with_name(f".{target.name}.partial")
        with tarfile.open(fileobj=spool, mode="r|") as source, tarfile.open(partial, "w:gz", format=tarfile.PAX_FORMAT) as out:
            for member in source:
                if not member.name.startswith(base + "/"):
                    continue  # the folder itself
                member.name = member.name[len(base) + 1:]
                if member.islnk():  # a hard link names its target by path in the archive: re-root it too
                    member.linkname = member.linkname.removeprefix(base + "/")
                # A long name came in a PAX header, which would win over the re-rooted name: drop it
                # (tarfile writes a new one from member.name when the name needs it).
                member.pax_headers = {k: v for k, v in member.pax_headers.items() if k not in ("path", "linkpath")}
                out.addfile(member, source.extractfile(member) if member.isfile() else None)
        partial.replace(target)
    return target


def _holds_no_file(archive: Path) -> bool:
    with tarfile.open(archive, "r:gz") as tar:
        return all(member.isdir() for member in tar)  # reads up to the first file only


def _finish(config, job_dir: Path, record: dict, status: str, reason: str, kind: str = "") -> None:
    """Collect the ended container's artifacts and record how it ended (a stopped job is the user's doing)."""
    container = record["container"]
    try:
        out = job_dir / "output"
        out.mkdir(exist_ok=True)
        if status == COMPLETED:
            model = _pack(config, container, "/opt/ml/model", out / "model.tar.gz")
            record["model_artifact"] = str(model) if model else ""
            # fahr warns about a model with no file in it (the script saved it elsewhere).
            record["model_empty"] = not model or _holds_no_file(model)
        output = _pack(config, container, "/opt/ml/output/data", out / "output.tar.gz")
        record["output_artifact"] = str(output) if output else ""
        kind = "" if status == COMPLETED else kind or USER
        record.update(status=status, failure_reason=reason, failure_kind=kind, ended=time.time())
        _write_record(job_dir, record)
    finally:
        _docker(config, "rm", "-f", container, check=False)


@hookimpl
def stop(job, config):
    """``fahr stop JOB``: SIGTERM the container, SIGKILL after stop_timeout seconds."""
    job_dir = _job_dir(config, job.job_name)
    record = _read_record(job_dir)
    if record["status"] in FINAL_STATES:
        return False
    record["stop_requested"] = True
    _write_record(job_dir, record)
    _docker(config, "stop", "-t", str(config["stop_timeout"]), record["container"], check=False)
    return True


@hookimpl
def fetch(request, config):
    """Copy a completed job's model.tar.gz into ``request.download_dir`` (fahr extracts it safely)."""
    root = Path(os.path.expanduser(request.location or config["output_path"]))
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder of {NAME} jobs; pass the output_path the job used")
    job_dir = root / request.job_name if request.job_name else _newest_completed(root, request.model_tag)
    record = _read_record(job_dir)
    if record.get("model_tag") != request.model_tag:
        raise UsageError(f"job {job_dir.name} trained {record.get('model_tag')!r}, not {request.model_tag!r}")
    if record["status"] != COMPLETED:
        raise UsageError(f"job {job_dir.name} is {record['status']}, it has no model to fetch")
    archive = Path(record.get("model_artifact") or "")
    if not archive.is_file():
        raise UsageError(f"job {job_dir.name} has no model.tar.gz in {job_dir / 'output'}")
    target = Path(request.download_dir) / "model.tar.gz"
    shutil.copyfile(archive, target)
    return target


def _newest_completed(root: Path, model_tag: str) -> Path:
    best = None
    for record_file in root.glob(f"*/{RECORD}"):
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("model_tag") == model_tag and record.get("status") == COMPLETED:
            if best is None or record.get("created", 0) > best[0]:
                best = (record.get("created", 0), record_file.parent)
    if best is None:
        raise UsageError(f"no completed {NAME} job of {model_tag!r} in {root}; train it first with 'fahr fit'")
    return best[1]
