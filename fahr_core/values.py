"""The values that pass between fahr and its plugins: plain data, no I/O, only the standard library.

A run is::

    check_run(config, inputs)
    build_image(BuildContext) -> ImageRef -> push_image -> ImageRef
    launch(JobSpec) -> JobHandle -> wait -> JobResult
    fetch(FetchRequest) -> Path

The dataclasses are frozen and (but for :class:`ConfigKey` and :class:`Template`, whose positional
order is part of the API) keyword-only: fields may be added later, with defaults, without breaking
any plugin that builds or reads them. Fields are never renamed or removed within one major version
of the plugin API (``fahr_core.PLUGIN_API_VERSION``).

Everything here is re-exported by :mod:`fahr_core`; import it from there
(``from fahr_core import JobSpec``), not from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Mapping, Sequence, TypeVar, cast

# TrainingJobStatus values (docs/contract.md, "Names and states").
IN_PROGRESS = "InProgress"
COMPLETED = "Completed"
FAILED = "Failed"
STOPPING = "Stopping"
STOPPED = "Stopped"
FINAL_STATES = frozenset({COMPLETED, FAILED, STOPPED})

# Why a job did not complete (JobResult.failure_kind, JobInfo.failure_kind; plugin API 1.6).
USER = "user"
"""The job's own doing: its script failed (a non-zero exit, an error it wrote), its image could not
run, or its user stopped it. Running it again unchanged fails again."""
OUT_OF_MEMORY = "out_of_memory"
"""A host used more memory than it had (its container's limit, the instance's memory)."""
TIMEOUT = "timeout"
"""The job reached its longest allowed run (sagemaker's ``max_run``) and was stopped."""
INTERRUPTED = "interrupted"
"""The backend took its instances back (a spot reclaim): running it again may succeed."""
CAPACITY = "capacity"
"""No instance could be had: no capacity of the type, or a quota reached."""
PLATFORM = "platform"
"""The backend's own fault (an internal error, its engine lost, containers removed under it)."""
FAILURE_KINDS = (USER, OUT_OF_MEMORY, TIMEOUT, INTERRUPTED, CAPACITY, PLATFORM)
#: The kinds a retry can help with (``fahr fit --retry``): never the job's own failures.
RETRYABLE_KINDS = frozenset({INTERRUPTED, CAPACITY, PLATFORM})


# A warm pool's states (WarmPool.status; plugin API 1.6), as SageMaker names them.
POOL_IN_USE = "InUse"
"""The job runs on the pool's instances (its own fresh ones, or a pool it took over)."""
POOL_AVAILABLE = "Available"
"""The job has ended and its instances wait, billed, for a matching job until the pool expires."""
POOL_REUSED = "Reused"
"""A matching job took the pool over (:attr:`WarmPool.reused_by`); nothing is billed for it any more."""
POOL_TERMINATED = "Terminated"
"""The pool is gone: it expired, was ended, or could not be kept."""


@dataclass(frozen=True, kw_only=True)
class WarmPool:
    """A job's warm pool: the instances a backend keeps after a job ended, for the next matching
    job to start on without waiting for new ones (sagemaker's ``keep_alive``: docs/sagemaker.md,
    "Warm pools"). A driver without pools reports none. (Added in plugin API 1.6.)"""

    status: str
    """One of ``InUse``, ``Available`` (waiting, and billed, for a matching job), ``Reused``
    (taken over by :attr:`reused_by`), ``Terminated``."""
    billable_seconds: float | None = None
    """Seconds the pool has been billed for while it waited (per instance), when the backend says."""
    expires: float | None = None
    """When an ``Available`` pool ends unless a matching job takes it (seconds since the epoch)."""
    reused_by: str = ""
    """The job that took this job's pool over; '' when none did."""
    reused_from: str = ""
    """The job whose pool this job started on (it skipped provisioning); '' when it got fresh
    instances, or when the driver cannot tell."""


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """What to build: the training artifact and the folder that is the Docker build context."""

    artifact: Path
    """The training script or notebook, absolute (the Dockerfile when ``user_container``)."""
    context_dir: Path
    """The folder sent to the engine as build context (the artifact's folder)."""
    dockerfile: Path
    """The Dockerfile in ``context_dir`` (written by fahr when the user had none)."""
    model_tag: str
    """The model image tag, e.g. ``foo/model`` (see :func:`fahr_core.model_image_tag`)."""
    user_container: bool = False
    """True when the artifact is the user's own container (``fahr fit DIR`` or ``fahr fit
    DIR/Dockerfile``): ``artifact`` and ``dockerfile`` are then that Dockerfile, built as it is
    (fahr neither wrote nor changes it), and the image brings its own ``train`` program (started as
    ``IMAGE train``) instead of fahr's launcher of a script."""
    rebuild: bool = False
    """Build even when nothing the image is built from changed (``fahr fit --rebuild``): a builder
    that skips unchanged builds, as the core's does, builds anyway. (Added in plugin API 1.3.)"""


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    """A built (and perhaps pushed) image."""

    name: str
    """Repository name: ``foo/model`` locally, a registry path after a push."""
    tag: str = "latest"
    """The image tag (used in the reference only when there is neither digest nor id)."""
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
    """Unique, ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`` (see :func:`fahr_core.job_name`)."""
    model_tag: str
    """The model image tag the job trains (``foo/model``)."""
    image: ImageRef
    """The image to run, as ``push_image`` returned it: run ``image.reference``."""
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    """Already stringified, as SageMaker hands them to the container; names and values hold no NUL
    and are valid UTF-8 (fahr refuses others before the build)."""
    inputs: Mapping[str, str] = field(default_factory=dict)
    """Channel name -> local path or URI (without a NUL: fahr refuses one before the build)."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for the container (``--env``); names and values hold no NUL and are
    valid UTF-8 (fahr refuses others before the build)."""
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Variable name -> value the job's process gets in its environment and nothing else sees
    (``--secret NAME``, read from fahr's own environment; new in plugin API 1.4). A driver that
    delivers them names ``secrets`` in its ``check_run`` (hookspec ``check_run``); it must never
    write a value where it can be read back: not in the image, the job's recorded or visible
    environment, a log, a command line. Left out of ``repr`` so no trace or traceback shows one."""
    project: str = ""
    """The project folder the image was built from (the artifact's folder), absolute and resolved
    (no links): the driver records it with the job and reports it as :attr:`JobInfo.project`.
    Empty when unknown. (Added in plugin API 1.4.)"""
    git_commit: str = ""
    """``git rev-parse HEAD`` of ``project`` when it is in a git work tree, with ``-dirty``
    appended when tracked files differ from that commit; empty without git. Recorded like
    ``project``. (Added in plugin API 1.4.)"""
    metric_definitions: Sequence[tuple[str, str]] = ()
    """The job's metrics named by regular expressions, ``(name, regex)`` pairs in SageMaker's
    shape (``--metric NAME=REGEX``, ``[metrics]`` of fahr.toml; exactly one capture group, the
    value): checked by fahr before the build. The core reads them from the job's output itself
    (docs/metrics.md); a driver records them with the job and reports them as
    :attr:`JobInfo.metric_definitions`, and may hand them to its backend (sagemaker:
    ``MetricDefinitions``). (Added in plugin API 1.5.)"""
    sweep: str = ""
    """The id of the sweep the job is one point of (``sw-YYYYMMDD-HHMMSS-xxxx``, docs/sweeps.md);
    '' when it is not. The driver records it with the job, reports it as :attr:`JobInfo.sweep` and
    filters by it (:attr:`JobQuery.sweep`). (Added in plugin API 1.5.)"""
    attempt_of: str = ""
    """The name of the first job of a fit retried (``fahr fit --retry``) after a failure a retry
    can help with (:data:`RETRYABLE_KINDS`); '' for a first attempt. Each attempt is a job of its
    own, launched with the same image, hyperparameters, inputs and configuration (so the same
    checkpoint location: it resumes from the checkpoints). The driver records it with the job and
    reports it as :attr:`JobInfo.attempt_of`. (Added in plugin API 1.6.)"""
    capacity_failures: int = 0
    """How many earlier attempts of this fit failed for ``capacity``: a driver whose configuration
    lists instance types in order (sagemaker's ``train_instance_type=ml.g5.xlarge,ml.g4dn.xlarge``)
    launches on the one after them, the last once all were tried. (Added in plugin API 1.6.)"""
    notify: str = ""
    """The http(s) URL fahr POSTs a JSON summary of the job's end to (``fit --notify URL``,
    ``notify`` in fahr.toml; docs/notifications.md), checked by fahr; '' for none. The core posts
    it when it follows the job to its end. A driver that can tell it when nobody follows the job
    (the local driver's follower of a detached job) records it with the job, tells it once,
    whoever ends the job, and returns a :attr:`JobHandle.notifies` handle. (Added in plugin API 1.6.)"""


@dataclass(frozen=True, kw_only=True)
class JobHandle:
    """A launched job: enough to wait for it, stop it or fetch from it, even from another process."""

    driver: str
    """The name of the driver that launched the job."""
    job_name: str
    """The job's name, as the backend knows it (the driver may have changed the spec's)."""
    model_tag: str
    """The model image tag the job trains."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Driver-specific, JSON-serialisable (ARN, console URL, output folder…)."""
    notifies: bool = False
    """True when the driver itself tells :attr:`JobSpec.notify` of the job's end, exactly once,
    whether a fahr follows the job or nobody does (``fit --detach``): the core then posts nothing.
    False: the core posts when it follows the job to its end, and warns that a detached job will
    not be told. (Added in plugin API 1.6.)"""


@dataclass(frozen=True, kw_only=True)
class Price:
    """What a run is billed by the hour (plugin API 1.6): the answer of the ``price`` hook, and
    :attr:`JobResult.price`/:attr:`JobInfo.price` of a job. Dollars (USD); the core multiplies.
    (Added in plugin API 1.6.)"""

    per_hour: float | None
    """The price of one instance for one hour; ``0.0``: it costs nothing (``local``); None: not
    known (the core then says so, and never guesses)."""
    instances: int = 1
    """How many instances are billed at that price at once."""
    max_seconds: float | None = None
    """The longest the run may be billed (``max_run``); None: no limit the driver knows."""
    spot: bool = False
    """Spot capacity: ``per_hour`` is then the on-demand price, the most it can cost."""
    source: str = ""
    """Where the price came from (``AWS Price List``, ``config.price_per_hour``), or why it is not
    known; shown beside it."""
    resources: str = ""
    """What is billed, as one might say it: ``2 × ml.m5.xlarge``; ``1 host, cpus 2, memory 4G``."""

    @property
    def hourly(self) -> float | None:
        """The price of all the instances for one hour (None: unknown)."""
        return None if self.per_hour is None else self.per_hour * self.instances

    @property
    def ceiling(self) -> float | None:
        """The most the run costs if it runs ``max_seconds`` (None: unknown or unbounded)."""
        if self.hourly == 0:
            return 0.0  # free, however long it runs
        if self.hourly is None or self.max_seconds is None:
            return None
        return self.hourly * self.max_seconds / 3600

    def cost(self, billable_seconds: float | None) -> float | None:
        """What ``billable_seconds`` of every instance cost (None: either is unknown)."""
        if self.hourly is None or billable_seconds is None:
            return None
        return self.hourly * billable_seconds / 3600


@dataclass(frozen=True, kw_only=True)
class JobResult:
    """How a job ended."""

    job: JobHandle
    """The job this result is of."""
    status: str
    """One of Completed, Failed, Stopped."""
    failure_reason: str = ""
    """Why the job failed or stopped, at most 1024 characters; empty when it completed."""
    model_artifact: str = ""
    """Where model.tar.gz is: a local path or a URI (``s3://…``)."""
    output_artifact: str = ""
    """Where output.tar.gz (the job's /opt/ml/output/data) is, when the job wrote one."""
    training_seconds: float | None = None
    """How long the job trained, when the backend says."""
    billable_seconds: float | None = None
    """How long the backend bills for, when it says."""
    model_empty: bool | None = None
    """True when the job completed with no file in ``/opt/ml/model`` (folders at most): fahr then
    warns that the script saved its model elsewhere. None when the driver does not know.
    (Added in plugin API 1.1.)"""
    failure_kind: str = ""
    """Why it did not complete, one of :data:`FAILURE_KINDS` (``user``, ``out_of_memory``,
    ``timeout``, ``interrupted``, ``capacity``, ``platform``); '' when it completed, or from a
    driver before plugin API 1.6. (Added in plugin API 1.6.)"""
    warm_pool: WarmPool | None = None
    """The job's warm pool: whether it started on another job's pool, and whether its own waits,
    billed, for the next job. None from a driver without pools. (Added in plugin API 1.6.)"""
    price: Price | None = None
    """What the job was billed by the hour, as it ran (its instance type and count): the core
    shows ``billable_seconds`` at it. None: the driver does not say. (Added in plugin API 1.6.)"""

    @property
    def succeeded(self) -> bool:
        """Whether the job completed."""
        return self.status == COMPLETED


@dataclass(frozen=True, kw_only=True)
class FetchRequest:
    """Which model to download, and where to put the downloaded archive."""

    model_tag: str
    """The model image tag whose model is wanted."""
    job_name: str | None = None
    """A specific job; ``None`` means the newest completed job of ``model_tag``."""
    location: str | None = None
    """Where the driver keeps artifacts (its ``output_path``), or the archive itself."""
    download_dir: Path
    """An empty folder the driver downloads ``model.tar.gz`` into (or keeps its temporary files in,
    when it returns a stream of the archive instead); removed after the fetch."""
    what: str = "model"
    """Which archive of the job (new in plugin API 1.3): ``"model"``, its ``model.tar.gz``; or
    ``"output"``, its ``output.tar.gz`` (the job's ``/opt/ml/output/data``: other outputs, a
    notebook's executed copy), of a job that completed or, named by ``job_name``, failed or was
    stopped. The answer to ``"output"`` is named ``output.tar.gz`` (the path's name, or the
    stream's ``name``): an answer named otherwise is the model of a driver that does not read this
    field, and the core refuses it."""


@dataclass(frozen=True, kw_only=True)
class JobQuery:
    """Which jobs ``list_jobs`` returns: every filter is optional, and jobs come newest first."""

    model_tag: str | None = None
    """Only the jobs of this model image tag."""
    status: str | None = None
    """Only the jobs in this status (one of the job-status constants)."""
    limit: int | None = None
    """At most this many jobs (the newest); None for all."""
    project: str | None = None
    """Only the jobs built from this project folder (absolute and resolved, as
    :attr:`JobSpec.project` was given): the driver compares it as it stored it. (Added in plugin
    API 1.4: a driver before it ignores the filter, and reports no :attr:`JobInfo.project`.)"""
    sweep: str | None = None
    """Only the jobs of this sweep (:attr:`JobSpec.sweep`). (Added in plugin API 1.5: a driver
    before it ignores the filter and reports no :attr:`JobInfo.sweep`; fahr then keeps only the
    jobs that report it.)"""
    cost: bool = False
    """The caller shows costs (``fahr jobs --cost``): fill :attr:`JobInfo.price`. Without it a
    driver may leave it None rather than ask a price service. (Added in plugin API 1.6.)"""


@dataclass(frozen=True, kw_only=True)
class JobInfo:
    """One job as ``list_jobs`` reports it. Times are seconds since the epoch (UTC); a field the
    backend does not know stays at its default."""

    job_name: str
    """The job's name, as ``fahr wait``/``fahr logs`` take it."""
    model_tag: str
    """The model image tag the job trained ('' when the backend did not record it)."""
    driver: str
    """The driver that ran it."""
    status: str
    """One of IN_PROGRESS, COMPLETED, FAILED, STOPPING, STOPPED."""
    secondary_status: str = ""
    """The backend's finer status (``Training``, ``Uploading``…), when it has one."""
    created: float | None = None
    """When the job was created."""
    started: float | None = None
    """When its training started."""
    ended: float | None = None
    """When it ended (None while it runs)."""
    training_seconds: float | None = None
    """Seconds of training, when known."""
    billable_seconds: float | None = None
    """Seconds billed, when the backend bills (spot jobs: fewer than trained)."""
    failure_reason: str = ""
    """Why it failed or stopped (at most 1024 characters)."""
    model_artifact: str = ""
    """Where model.tar.gz is (a local path or a URI), once the job has completed."""
    project: str = ""
    """The project folder the job was built from, as launch was given it (:attr:`JobSpec.project`),
    or as the driver could store it (a backend that limits its values may shorten a long path:
    a shortened one is not an absolute path); '' when not recorded. (Added in plugin API 1.4.)"""
    git_commit: str = ""
    """The project's git commit at launch (:attr:`JobSpec.git_commit`); '' when not recorded.
    (Added in plugin API 1.4.)"""
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    """The job's hyperparameters as launch was given them (:attr:`JobSpec.hyperparameters`).
    (Added in plugin API 1.5.)"""
    metric_definitions: Sequence[tuple[str, str]] = ()
    """The job's metric definitions as launch was given them (:attr:`JobSpec.metric_definitions`):
    the core reads the job's metrics from its logs with them. (Added in plugin API 1.5.)"""
    sweep: str = ""
    """The sweep the job is a point of, as launch was given it (:attr:`JobSpec.sweep`); '' when
    none. (Added in plugin API 1.5.)"""
    attempt_of: str = ""
    """The first job of the fit this job retried (:attr:`JobSpec.attempt_of`); '' for a first
    attempt. (Added in plugin API 1.6.)"""
    failure_kind: str = ""
    """Why it did not complete, once it has ended: one of :data:`FAILURE_KINDS`, as
    :attr:`JobResult.failure_kind`; '' while it runs, when it completed, or from a driver before
    plugin API 1.6. (Added in plugin API 1.6.)"""
    warm_pool: WarmPool | None = None
    """The job's warm pool, as :attr:`JobResult.warm_pool`; None from a driver without pools.
    (Added in plugin API 1.6.)"""
    price: Price | None = None
    """What the job is billed by the hour, as :attr:`JobResult.price`; asked for with
    :attr:`JobQuery.cost`. (Added in plugin API 1.6.)"""


@dataclass(frozen=True, kw_only=True)
class TrackedJob:
    """A job as experiment trackers hear of it (hooks ``job_started``, ``job_metrics``,
    ``job_ended``; docs/trackers.md). (Added in plugin API 1.5.)"""

    job_name: str
    """The job's name: a tracker finds its record of the job by it (a later process tells the
    same job again)."""
    model_tag: str
    """The model image tag the job trains ('' when the driver did not record it)."""
    driver: str
    """The driver that runs it."""
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    """As the job was given them (strings)."""
    image: str = ""
    """The image it runs, its most precise reference (:attr:`ImageRef.reference`); '' when told
    by a later process whose driver does not report it."""
    image_digest: str = ""
    """The image's registry digest, else the engine's image id (``sha256:…``); '' when unknown."""
    project: str = ""
    """The project folder it was built from (:attr:`JobSpec.project`)."""
    git_commit: str = ""
    """The project's git commit at launch (:attr:`JobSpec.git_commit`)."""
    sweep: str = ""
    """The id of the sweep the job is part of; '' for a job of its own."""
    metric_definitions: Sequence[tuple[str, str]] = ()
    """Its metric definitions, ``(name, regex)`` pairs (:attr:`JobSpec.metric_definitions`)."""
    created: float | None = None
    """When it was launched (seconds since the epoch), when known."""


@dataclass(frozen=True)
class MetricPoint:
    """One value of one metric, read from a line of a job's output (docs/metrics.md); the
    ``metrics`` hook yields them. (Added in plugin API 1.5.)"""

    name: str
    value: float
    """A finite number."""
    step: int | None = None
    """The step the line gave (the convention's ``step=N``), else None."""
    time: float | None = None
    """When it was printed, in seconds since the epoch, when known."""
    host: str = ""
    """The host that printed it (``algo-1`` …)."""

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "step": self.step, "time": self.time, "host": self.host}


@dataclass(frozen=True, kw_only=True)
class LogLine:
    """One line of a job's output, as ``logs`` yields it."""

    host: str
    """The host that printed it: ``algo-1`` … ``algo-N``."""
    text: str
    """The line, without its newline."""
    timestamp: float | None = None
    """When it was printed, in seconds since the epoch, when the backend knows."""
    newline: bool = True
    """False when the line does not end here: a slice of a long line (the host's next LogLine
    goes on with it), or output the job ended without a newline. (Added in plugin API 1.2.)"""
    hosts: int = 0
    """How many hosts the job has, when the driver says (0: it does not); lines need then not be
    held back to learn whether to prefix them with their host. (Added in plugin API 1.2.)"""


#: The commands a :attr:`ConfigKey.required_for` may name.
COMMANDS = ("fit", "wait", "stop", "fetch")


@dataclass(frozen=True)
class ConfigKey:
    """One configuration key a plugin reads.

    ``type`` is one of ``str``, ``int``, ``float``, ``bool`` or ``dict`` (string to string; on
    the command line ``k=v,k2=v2`` or a JSON object). A ``required`` key has no usable default
    for any command that runs jobs (``fit``, ``wait``, ``stop``; ``fetch`` does not insist);
    ``required_for`` names the commands (of :data:`COMMANDS`) that need it when it is not
    required for all, e.g. ``("fit",)``. The core refuses a run that lacks such a key with one
    line naming the key, its help and the three ways to set it: drivers do not check it again.
    ``check``, if given, returns why a converted value is invalid (``"is not …"``), or None.
    """

    name: str
    """The key's name: ``fahr.toml``'s ``[DRIVER] name``, ``FAHR_<DRIVER>_<NAME>``, ``--config.name``."""
    type: type
    """``str``, ``int``, ``float``, ``bool`` or ``dict``; values are converted to it."""
    default: Any
    """The value when no layer sets one."""
    help: str
    """One line for ``fahr config`` and ``fahr drivers --verbose``."""
    required: bool = False
    """True when the key has no usable default: a run without a value is refused (exit 2)."""
    check: Callable[[Any], str | None] | None = None
    """Returns why a converted value is invalid (``"is not …"``), or None when it is fine."""
    required_for: tuple[str, ...] = ()
    """The commands (of ``COMMANDS``: fit, wait, stop, fetch) that cannot run without a value."""

    def required_by(self, command: str | None) -> bool:
        """Whether ``command`` (one of ``COMMANDS``) cannot run without this key."""
        return command is not None and command in self.required_for

    @property
    def type_name(self) -> str:
        """The type as fahr names it to users (``int``, ``mapping k=v,k2=v2``…)."""
        return {dict: "mapping k=v,k2=v2"}.get(self.type, self.type.__name__)


@dataclass(frozen=True)
class Template:
    """A project template ``fahr init`` can render (what the ``templates`` hook returns)."""

    name: str
    """What ``fahr init --template NAME`` calls it."""
    description: str
    """One line, for ``fahr templates``."""
    location: str
    """A folder holding ``cookiecutter.json``, or a git URL cookiecutter can clone."""
    directory: str | None = None
    """The template's folder inside ``location``, when a repository holds several."""
    source: str = ""
    """Which plugin contributed it (filled in by fahr)."""


T = TypeVar("T")
D = TypeVar("D")


class StashKey(Generic[T]):
    """A typed key of a :class:`Stash`: ``RESULT = StashKey[Checked]()``, one per module-level name.

    Keys compare by identity: two plugins cannot collide, whatever they call their keys.
    """

    __slots__ = ()


class Stash:
    """Per-run storage for plugins (pytest's stash pattern): ``config.stash[KEY] = value``.

    A driver keeps there what one run computed (a preflight's answer, a session) instead of module
    globals keyed by ``id(config)``; it lives as long as the run's :class:`Config`. Only
    :class:`StashKey` objects are keys, so that no two plugins share a name by accident.
    """

    __slots__ = ("_storage",)

    def __init__(self) -> None:
        self._storage: dict[StashKey[Any], object] = {}

    @staticmethod
    def _check(key: object) -> None:
        if not isinstance(key, StashKey):
            raise TypeError(f"stash keys are StashKey objects (KEY = StashKey[type]()), not {type(key).__name__}")

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._check(key)
        self._storage[key] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        self._check(key)
        return cast(T, self._storage[key])

    def get(self, key: StashKey[T], default: D) -> T | D:
        """The value of ``key``, or ``default`` when none was stored."""
        try:
            return self[key]
        except KeyError:
            return default

    def setdefault(self, key: StashKey[T], default: T) -> T:
        """The value of ``key``; stores and returns ``default`` when none was stored."""
        try:
            return self[key]
        except KeyError:
            self[key] = default
            return default

    def __delitem__(self, key: StashKey[T]) -> None:
        self._check(key)
        del self._storage[key]

    def __contains__(self, key: object) -> bool:
        self._check(key)
        return key in self._storage

    def __len__(self) -> int:
        return len(self._storage)


class Config(Mapping[str, Any]):
    """The resolved configuration of one run: read-only, plus where each value came from.

    ``config["key"]`` reads a declared key; ``config.driver`` is the driver's name;
    ``config.sources["key"]`` says where the value came from; ``config.stash`` is the run's
    :class:`Stash` (a fresh one per Config).
    """

    def __init__(self, driver: str, values: Mapping[str, Any], sources: Mapping[str, str]):
        self.driver = driver
        self._values = dict(values)
        self.sources = dict(sources)
        self.stash = Stash()

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Config({self.driver!r}, {self._values!r})"
