"""The small values that pass between the steps of a run.

build_image -> ImageRef -> push_image -> ImageRef -> launch(JobSpec) -> JobHandle -> wait -> JobResult;
fetch(FetchRequest) -> Path.

They are keyword-only frozen dataclasses: fields may be added later (with defaults) without
breaking any plugin that builds or reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

# TrainingJobStatus values (docs/contract.md, "Names and states").
IN_PROGRESS = "InProgress"
COMPLETED = "Completed"
FAILED = "Failed"
STOPPING = "Stopping"
STOPPED = "Stopped"
FINAL_STATES = frozenset({COMPLETED, FAILED, STOPPED})


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """What to build: the training artifact and the folder that is the Docker build context."""

    artifact: Path
    """The training script or notebook, absolute."""
    context_dir: Path
    """The folder sent to the engine as build context (the artifact's folder)."""
    dockerfile: Path
    """The Dockerfile in ``context_dir`` (written by fahr when the user had none)."""
    model_tag: str
    """The model image tag, e.g. ``foo/model`` (see :func:`fahr_core.names.model_image_tag`)."""


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    """A built (and perhaps pushed) image."""

    name: str
    """Repository name: ``foo/model`` locally, a registry path after a push."""
    tag: str = "latest"
    image_id: str = ""
    """The engine's content-addressed id, ``sha256:…``."""
    digest: str = ""
    """The registry digest ``sha256:…`` after a push; empty for a local-only image."""

    @property
    def reference(self) -> str:
        """The most precise reference: by digest when pushed, else by id, else name:tag."""
        if self.digest:
            return f"{self.name}@{self.digest}"
        if self.image_id:
            return self.image_id
        return f"{self.name}:{self.tag}"


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """Everything a driver needs to launch one training job."""

    job_name: str
    """Unique, ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`` (see :func:`fahr_core.names.job_name`)."""
    model_tag: str
    image: ImageRef
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    """Already stringified, as SageMaker hands them to the container."""
    inputs: Mapping[str, str] = field(default_factory=dict)
    """Channel name -> local path or URI."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for the container (``--env``)."""


@dataclass(frozen=True, kw_only=True)
class JobHandle:
    """A launched job: enough to wait for it, stop it or fetch from it, even from another process."""

    driver: str
    job_name: str
    model_tag: str
    details: Mapping[str, Any] = field(default_factory=dict)
    """Driver-specific, JSON-serialisable (ARN, console URL, output folder…)."""


@dataclass(frozen=True, kw_only=True)
class JobResult:
    """How a job ended."""

    job: JobHandle
    status: str
    """One of Completed, Failed, Stopped."""
    failure_reason: str = ""
    model_artifact: str = ""
    """Where model.tar.gz is: a local path or a URI (``s3://…``)."""
    output_artifact: str = ""
    training_seconds: float | None = None
    billable_seconds: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == COMPLETED


@dataclass(frozen=True, kw_only=True)
class FetchRequest:
    """Which model to download, and where to put the downloaded archive."""

    model_tag: str
    job_name: str | None = None
    """A specific job; ``None`` means the newest completed job of ``model_tag``."""
    location: str | None = None
    """Where the driver keeps artifacts (its ``output_path``), or the archive itself."""
    download_dir: Path
    """An empty folder the driver downloads ``model.tar.gz`` into."""
