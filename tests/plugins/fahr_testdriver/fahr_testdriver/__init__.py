"""A driver for fahr's own tests, installed as a real distribution (`fahr-testdriver`).

It builds and runs nothing: every step appends what it received to `<record_dir>/steps.jsonl`,
so tests can check which hooks ran, in which order, with which configuration. Its "model" is a
tar.gz of the job's hyperparameters. It also contributes a project template (`testdrv-hello`)
through the `templates` hook, as a driver shipping its own template would.
"""

import io
import json
import tarfile
from pathlib import Path

from fahr_core import COMPLETED, FAILED, ConfigKey, ImageRef, JobHandle, JobResult, Template, hookimpl


@hookimpl
def config_keys():
    return [
        ConfigKey("record_dir", str, "", "Folder the steps are recorded in.", required=True),
        ConfigKey("flavour", int, 1, "A number, to test typed config."),
        ConfigKey("verbose_steps", bool, False, "A flag, to test typed config."),
        ConfigKey("fail_with", str, "", "When set, the job fails with this reason."),
        ConfigKey("claim_s3", bool, False, "Claim s3:// locations too, to test two drivers claiming one."),
    ]


@hookimpl
def claims_location(location, config):
    # Its own record folders are plain paths, left to `--train-driver testdrv`; s3:// only on demand,
    # so that tests can install two claimants of one location (with the sagemaker driver).
    return True if config["claim_s3"] and location.startswith("s3://") else None


def _record(config, step, **data):
    if not config["record_dir"]:
        return  # `fahr fetch` resolves config without requiring it: record nothing, anywhere
    folder = Path(config["record_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "steps.jsonl", "a") as out:
        out.write(json.dumps({"step": step, "config": dict(config), **data}, default=str) + "\n")


@hookimpl
def templates():
    return [Template("testdrv-hello", "A one-file project from the test driver.",
                     str(Path(__file__).parent / "template"))]


@hookimpl
def build_image(context, config):
    _record(config, "build_image", model_tag=context.model_tag, dockerfile=str(context.dockerfile))
    return ImageRef(name=context.model_tag, image_id="sha256:" + "0" * 64)


@hookimpl
def push_image(image, config):
    _record(config, "push_image", image=image.reference)
    return ImageRef(name=f"registry.test/{image.name}", digest="sha256:" + "1" * 64)


@hookimpl
def launch(spec, config):
    _record(config, "launch", job_name=spec.job_name, image=spec.image.reference,
            hyperparameters=dict(spec.hyperparameters), inputs=dict(spec.inputs),
            environment=dict(spec.environment))
    return JobHandle(driver="testdrv", job_name=spec.job_name, model_tag=spec.model_tag,
                     details={"hyperparameters": dict(spec.hyperparameters)})


@hookimpl
def wait(job, config):
    _record(config, "wait", job_name=job.job_name)
    folder = Path(config["record_dir"]) / job.job_name
    folder.mkdir(parents=True, exist_ok=True)
    if config["fail_with"]:
        return JobResult(job=job, status=FAILED, failure_reason=config["fail_with"])
    data = json.dumps(job.details.get("hyperparameters", {})).encode()
    with tarfile.open(folder / "model.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("hyperparameters.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (folder / "tag").write_text(job.model_tag)
    return JobResult(job=job, status=COMPLETED, model_artifact=str(folder / "model.tar.gz"),
                     training_seconds=1.0, billable_seconds=1.0)


@hookimpl
def fetch(request, config):
    _record(config, "fetch", model_tag=request.model_tag, job_name=request.job_name,
            location=request.location)
    root = Path(request.location or config["record_dir"])
    if not root.is_dir():
        return None  # an s3:// location it claimed on demand: it holds nothing there
    candidates = [root / request.job_name] if request.job_name else sorted(
        (p for p in root.iterdir() if (p / "tag").is_file() and (p / "tag").read_text() == request.model_tag),
        key=lambda p: p.stat().st_mtime,
    )
    if not candidates:
        return None
    target = Path(request.download_dir) / "model.tar.gz"
    target.write_bytes((candidates[-1] / "model.tar.gz").read_bytes())
    return target
