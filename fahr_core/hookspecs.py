"""The map of fahr: the five steps of a run, as pluggy hook specifications.

A run of ``fahr fit`` is::

    build_image(context, config)  -> ImageRef     # Dockerfile + context -> local image
    push_image(image, config)     -> ImageRef     # local image -> where the backend can pull it
    launch(spec, config)          -> JobHandle    # start the training job
    wait(job, config)             -> JobResult    # follow it to the end, streaming its logs
    fetch(request, config)        -> Path | BinaryIO  # model.tar.gz, or a stream of it (fahr extracts it safely)

A *driver* (entry-point group ``fahr.drivers``) implements at least ``launch``, ``wait`` and
``fetch``; the core ships default ``build_image`` (Docker SDK) and ``push_image`` (no push: the
image stays on the local engine) registered ``trylast``, so a driver's own implementation wins.
Extension plugins (group ``fahr.plugins``) may wrap any step with ``@hookimpl(wrapper=True)``.

Every step hook is ``firstresult``: the first non-None result is the answer. Implementations may
take fewer arguments than the spec names, so hooks can gain keyword arguments later without
breaking any plugin; no argument is ever renamed or removed.

``config`` is always the resolved :class:`fahr_core.Config` of the run: a read-only mapping
of the keys that the core and the driver declared through :func:`config_keys`, with the driver's
name in ``config.driver`` and a per-run :class:`fahr_core.Stash` in ``config.stash``.

All the types named here are importable from :mod:`fahr_core` (``from fahr_core import JobSpec``).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Iterable, Mapping, Sequence

import pluggy

# The hooks' vocabulary: plain data, imported for real (it is cheap), so that this module depends
# on nothing else of fahr and the type hints name real objects.
from fahr_core.values import (BuildContext, Config, ConfigKey, FetchRequest, ImageRef, JobHandle, JobInfo,
                              JobQuery, JobResult, JobSpec, LogLine, MetricPoint, Price, Template, TrackedJob)

hookspec = pluggy.HookspecMarker("fahr")


# -------------------------------------------------------------------------
# Declarations
# -------------------------------------------------------------------------


@hookspec
def config_keys() -> list[ConfigKey]:
    """Declare the configuration keys a plugin reads, with type, default and help.

    Called on the run's plugin manager; the lists of all plugins are merged (a key declared twice
    is an error). Values reach the step hooks through their ``config`` argument, layered: the
    declared default < ``fahr.toml`` < ``FAHR_<DRIVER>_<KEY>`` < ``--config.KEY=VALUE``.

    A key a command cannot do without says so, and the core enforces it before any hook of that
    command runs, with one line naming the key, its help and the three ways to set it:
    ``required=True`` for every command that runs jobs (``fit``, ``wait``, ``stop``), or
    ``required_for=("fit",)`` (any of ``fit``, ``wait``, ``stop``, ``fetch``) for those
    commands only. Drivers do not check for a missing required key themselves.

    :returns: a list of :class:`fahr_core.ConfigKey`.

    Example::

        @hookimpl
        def config_keys():
            return [ConfigKey("region", str, "eu-west-1", "Region the jobs run in."),
                    ConfigKey("bucket", str, "", "Bucket for artifacts.", required_for=("fit",))]
    """


@hookspec(firstresult=True)
def claims_location(location: str, config: Config) -> bool | None:
    """Say whether an artifact location (``s3://…``, a folder…) belongs to this driver.

    ``fahr fetch DIR TAG LOCATION`` without ``--train-driver`` asks the installed drivers and
    picks, in this order: the driver ``FAHR_DRIVER`` or ``fahr.toml``'s ``driver`` names, if it
    claims the location; else the one driver that claims it. When several claim it, the fetch
    is refused (exit 2) naming them, and the user chooses with ``--train-driver`` or
    ``FAHR_DRIVER``; so claim only what is really yours (your scheme, or a folder your jobs
    wrote), never everything.

    :param location: the ``ARTIFACT_LOCATION`` argument of ``fahr fetch``.
    :param config: this driver's resolved configuration (defaults, ``fahr.toml``, environment,
        the ``--config.KEY`` it declares), without its required keys enforced: they may be unset.
        Implementations that take only ``location`` keep working.
    :returns: True to claim it; None (or False) otherwise.

    Stops at first non-None result.

    Example::

        @hookimpl
        def claims_location(location, config):
            return True if location.startswith("mine://") else None
    """


@hookspec
def templates() -> list[Template]:
    """Contribute project templates to ``fahr init`` and ``fahr templates``.

    Called on a plugin manager holding the core (which contributes the built-in ``model``,
    ``notebook`` and ``driver`` templates through this same hook), every installed driver and
    every extension plugin; the lists are merged. Two templates with one name is an error that
    names both plugins. Listing reads only these objects; the template itself is read when
    ``fahr init --template NAME`` renders it with cookiecutter.

    :returns: a list of :class:`fahr_core.Template`: a name, a one-line description,
        and a ``location`` (a folder holding ``cookiecutter.json``, or a git URL).

    Example::

        @hookimpl
        def templates():
            here = Path(__file__).parent / "template"
            return [Template("mydriver", "A model set up to train on mydriver.", str(here))]
    """


@hookspec
def check_run(config: Config, inputs: Mapping[str, str], secrets: Sequence[str]) -> None:
    """Check a run's configuration and inputs before anything is built or pushed.

    Every implementation is called (not firstresult). Raise a :class:`fahr_core.FahrError`
    (``ConfigError``, ``UsageError``…) to refuse the run with a one-line message, so the user
    does not wait for an image build to learn that a value is wrong.

    :param config: the run's resolved configuration.
    :param inputs: the ``--input`` channels, name -> path or URI.
    :param secrets: the names of the job's secrets (``--secret``; new in plugin API 1.4). A driver
        whose ``check_run`` names this argument promises to deliver ``JobSpec.secrets`` to the
        job's process; the core refuses ``--secret`` (one line, before the build) with a driver
        none of whose implementations names it, rather than launch a job without its secrets.

    Example::

        @hookimpl
        def check_run(config, inputs):
            if config["instance_count"] < 1:
                raise ConfigError("config.instance_count must be 1 or more")
    """


# -------------------------------------------------------------------------
# The five steps of a run
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def build_image(context: BuildContext, config: Config) -> ImageRef | None:
    """Build the training image from ``context.dockerfile`` in ``context.context_dir``.

    The core's default builds with the Docker SDK against the user's engine (``DOCKER_HOST`` is
    honoured), shows progress, and tags the image ``context.model_tag:latest``; it skips the
    build when the image's ``fahr.context-fingerprint`` label says nothing it is built from
    changed (``context.rebuild``, set by ``fahr fit --rebuild``, builds anyway). A driver
    implements this only when its backend builds images elsewhere.

    :param context: the training artifact, its folder, its Dockerfile and the model tag.
    :param config: the run's resolved configuration.
    :returns: the built image, with its ``image_id``.

    Stops at first non-None result.

    Example::

        @hookimpl
        def build_image(context, config):
            image_id = remote_builder.build(context.context_dir)
            return ImageRef(name=context.model_tag, image_id=image_id)
    """


@hookspec(firstresult=True)
def push_image(image: ImageRef, config: Config) -> ImageRef | None:
    """Make the image available where the backend runs it.

    The core's default returns ``image`` unchanged (the ``local`` driver runs it where it is).
    A cloud driver pushes to its registry, skips the push when the remote already holds the same
    content, and returns the remote reference with its ``digest`` so the job runs exactly it.

    :param image: the image ``build_image`` returned.
    :param config: the run's resolved configuration.
    :returns: the image as the backend will pull it.

    Stops at first non-None result.

    Example::

        @hookimpl
        def push_image(image, config):
            digest = registry.push(image.image_id, f"{config['registry']}/{image.name}")
            return ImageRef(name=f"{config['registry']}/{image.name}", digest=digest)
    """


@hookspec(firstresult=True)
def launch(spec: JobSpec, config: Config) -> JobHandle | None:
    """Start the training job and return as soon as it is accepted.

    The container must be started as ``IMAGE train`` under the SageMaker container contract
    (``/opt/ml/...``; ``FAHR_EXECUTION_ENVIRONMENT`` set to the driver's environment name), with
    ``spec.hyperparameters``, ``spec.inputs`` and ``spec.environment``.

    ``spec.job_name`` is the core's proposal; a driver may name the job otherwise (a prefix
    from its configuration, a backend's own id). The handle's ``job_name`` is the job's real
    name: the core prints it (after ``launch`` returns, never before), and passes it to
    ``fahr wait``/``stop``/``fetch --job``. The handle's ``model_tag`` is ``spec.model_tag``, and
    the driver records it with the job (a tag, the environment, a record file) so that
    :func:`wait` can recover it from the name alone and :func:`fetch` can find the jobs of a tag
    whatever they are named.

    ``launch`` prints no status line of the job (``ui.status_change``): the core announces the
    job once ``launch`` returns, and its statuses (``Training``…) are :func:`wait`'s to print;
    a status printed from here comes before the job's announcement.

    A retried fit (``fahr fit --retry``, plugin API 1.6) launches each attempt as a job of its
    own, ``spec.attempt_of`` naming the first: the driver records it and reports it as
    ``JobInfo.attempt_of``. ``spec.capacity_failures`` counts the earlier attempts that found no
    capacity: a driver whose configuration lists instance types in order launches on the next.

    :param spec: job name, model tag, image, hyperparameters, input channels, environment.
    :param config: the run's resolved configuration.
    :returns: a handle that :func:`wait`, :func:`stop` and :func:`fetch` understand, also in a
        later process (keep ``details`` JSON-serialisable). None is a driver bug.

    Stops at first non-None result.

    Example::

        @hookimpl
        def launch(spec, config):
            job_id = backend.submit(spec.image.reference, spec.hyperparameters)
            return JobHandle(driver="mine", job_name=spec.job_name, model_tag=spec.model_tag,
                             details={"id": job_id})
    """


@hookspec(firstresult=True)
def wait(job: JobHandle, config: Config) -> JobResult | None:
    """Follow the job to its end, printing status changes and streaming its logs live.

    On ``KeyboardInterrupt`` a driver either stops the job (``local``: nothing may be left
    running) or detaches from it (a cloud job keeps running), then re-raises.

    ``fahr wait JOB`` rebuilds the handle from the job's name alone: ``model_tag`` is empty and
    ``details`` too. The driver then looks the tag up where :func:`launch` recorded it, and the
    result's ``job`` carries it, for the core prints ``fahr fetch ./model TAG …`` from it (a
    result without a tag gets the placeholder ``MODEL_TAG`` and a warning).

    :param job: the handle :func:`launch` returned (or one rebuilt from a job name).
    :param config: the run's resolved configuration.
    :returns: the result: its ``job`` with the model tag, status, failure reason, artifact
        locations, timings; and (plugin API 1.6) for a job that did not complete, its
        ``failure_kind``: ``user`` (its script failed, its image could not run, or it was stopped
        by its user), ``out_of_memory``, ``timeout`` (its longest run reached), ``interrupted``
        (a spot reclaim), ``capacity`` (no instance, a quota) or ``platform`` (the backend's own
        fault). ``fahr fit --retry`` launches again only after the last three; the failure line
        and ``fahr jobs`` show it, and ``list_jobs`` reports the same in ``JobInfo.failure_kind``.

    Stops at first non-None result.

    Example::

        @hookimpl
        def wait(job, config):
            for line in backend.follow(job.details["id"]):
                print(line)
            info = backend.describe(job.details["id"])
            return JobResult(job=job, status=info.status, model_artifact=info.model_uri)
    """


@hookspec(firstresult=True)
def fetch(request: FetchRequest, config: Config) -> Path | BinaryIO | None:
    """Download a job's ``model.tar.gz``: into ``request.download_dir``, or as a stream.

    Without ``request.job_name`` the newest completed job of ``request.model_tag`` is meant,
    found by the model tag recorded with each job at launch, not by the job's name (which the
    driver's configuration may have changed). A job of another tag, or one that did not
    complete, is never fetched. (From plugin API 1.4, ``fahr fetch TAG`` without a location
    chooses the job itself from ``list_jobs``, by project, and names it here: a driver with
    ``list_jobs`` is asked without a job name only with ``request.location`` given.) The driver only downloads; the core extracts the archive safely (no absolute paths, no
    ``..``, no links out, no devices, the size cap and the free space) and moves it into place.

    Two ways to hand the archive over (plugin API 1.1 added the second):

    - its **path**, a file the driver wrote inside ``request.download_dir``;
    - a **readable binary stream** of it (a file object: ``read(size)`` returning ``bytes``, ``b""``
      at the end, and ``close()``), its download still running: the core unpacks it as it arrives,
      so downloading and unpacking overlap. The core reads it once, forward, in chunks (never
      seeks), applies every check while it streams, and always calls ``close()``: at the end, on
      a refusal midway (the target folder is then left as it was) and on Ctrl-C. ``close()``
      must stop the download promptly (threads included) and release its memory. A failed
      download raises from ``read()``: a :class:`fahr_core.FahrError` (one line, its own exit
      code) passes to the user as it is; any other exception reads "reading the model failed"
      (exit 3). With ``fahr fetch --no-extract`` the stream is written to a file as it comes,
      named after the stream's ``name`` attribute (default ``model.tar.gz``).

    ``request.what`` (plugin API 1.3) says which archive: ``"model"`` (the default, as above) or
    ``"output"``, the job's ``output.tar.gz`` (its ``/opt/ml/output/data``), for ``fahr fetch
    --output``: of a completed job, or of the job ``request.job_name`` names if it failed or was
    stopped too (that is where a failed run leaves its clues). Handed over the same two ways, named
    ``output.tar.gz`` (the path's name, or the stream's ``name``). A driver that cannot fetch it
    raises a one-line :class:`fahr_core.UsageError`; one that ignores ``what`` answers with its
    model, which the core recognises by its name and refuses (``PluginError``: nothing written).

    :param request: model tag, optional job name, optional location, download folder.
    :param config: the run's resolved configuration.
    :returns: the path of the downloaded archive (inside ``request.download_dir``), or a
        readable binary stream of it.

    Stops at first non-None result.

    Example::

        @hookimpl
        def fetch(request, config):
            target = request.download_dir / "model.tar.gz"
            backend.download(request.job_name, target)
            return target

        # or, to overlap downloading with unpacking:
        @hookimpl
        def fetch(request, config):
            return backend.open_download(request.job_name)  # a file-like object
    """


# -------------------------------------------------------------------------
# Optional steps
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def stop(job: JobHandle, config: Config) -> bool | None:
    """Ask the backend to stop a running job (``fahr stop``).

    :param job: the job to stop.
    :param config: the run's resolved configuration.
    :returns: True when a stop was requested; None when the driver cannot stop jobs.

    Stops at first non-None result.
    """



@hookspec(firstresult=True)
def list_jobs(query: JobQuery, config: Config) -> list[JobInfo] | None:
    """The driver's jobs, newest first (``fahr jobs``, :func:`fahr_core.jobs`).

    Optional: a driver without it makes ``fahr jobs`` say so in one line (exit 2).

    :param query: the optional filters: a model tag, a status, at most ``limit`` jobs, the project
        folder the jobs were built from (plugin API 1.4: ``JobSpec.project``, as the driver
        stored it at launch; each :class:`fahr_core.JobInfo` reports it back). ``fahr fetch TAG``
        asks with ``limit=1`` a few times to choose the job: each answer should cost the backend
        one small request, not a listing of every job.
    :param config: the resolved configuration (where the driver keeps its jobs).
    :returns: a list of :class:`fahr_core.JobInfo`, newest (by creation time) first, filtered
        as ``query`` says; None when the driver cannot list jobs.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def logs(job: JobHandle, config: Config, follow: bool) -> Iterable[LogLine] | None:
    """A job's output lines, from the start (``fahr logs``, ``Job.logs()``).

    Optional: a driver without it makes ``fahr logs`` say so in one line (exit 2). ``wait`` keeps
    streaming as before; a driver may build one on the other.

    :param job: the job (perhaps a handle rebuilt from its name alone).
    :param config: the resolved configuration.
    :param follow: False: the lines printed so far, then stop. True: go on yielding lines as the
        job prints them, and stop when the job has ended.
    :returns: an iterable of :class:`fahr_core.LogLine` (each with its host), in the order each
        host printed them; None when the driver cannot read logs. A driver that reads bytes may
        hand a long line over in slices (``newline=False`` but on the last), so that nothing holds
        it whole, and bytes that are not UTF-8 as surrogate escapes (``decode("utf-8",
        "surrogateescape")``): ``fahr logs`` prints them as they were.

    Stops at first non-None result.
    """

@hookspec(firstresult=True)
def metrics(job: JobHandle, config: Config) -> Iterable[MetricPoint] | None:
    """A job's metrics as the driver keeps them (``Job.metrics``, ``fahr jobs``), from the start.

    Optional (added in plugin API 1.5): without it, or when it answers None, the core reads them
    from the job's ``logs`` with the convention and the job's
    :attr:`JobInfo.metric_definitions` (docs/metrics.md), so every driver with ``logs`` has
    metrics. A driver implements it to serve them faster or natively (the local driver keeps
    them in the job's folder as they are printed; a cloud backend its metrics service).

    :param job: the job (perhaps a handle rebuilt from its name alone).
    :param config: the resolved configuration.
    :returns: an iterable of :class:`fahr_core.MetricPoint`, in the order they were printed;
        None to let the core read the logs.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def price(config: Config) -> Price | None:
    """What the run this configuration describes will be billed by the hour, before it is launched.

    Optional (added in plugin API 1.6): ``fahr fit`` prints "about $X/h × N instances; at most $Y
    if it runs max_run" from the answer, and refuses (exit 2, before the build) a run whose
    ceiling exceeds ``config.max_cost``. A driver that cannot say answers
    ``Price(per_hour=None, source=why)``, and never guesses; one that costs nothing, ``0.0``.
    After a job, the driver reports the same in :attr:`JobResult.price` and :attr:`JobInfo.price`.

    :param config: the run's resolved configuration.
    :returns: a :class:`fahr_core.Price`; None when the driver has no notion of price.

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------
# Experiment trackers (plugin API 1.5; docs/trackers.md)
# -------------------------------------------------------------------------
#
# Implemented by any plugin, typically an extension plugin (group ``fahr.plugins``) such as
# fahr-mlflow: who calls them, when and from which process is said in job_started's docstring.


@hookspec
def job_started(job: TrackedJob, config: Config) -> None:
    """A job was launched, or is told of by a later process: record it (an experiment tracker).

    The three tracker hooks (``job_started``, ``job_metrics``, ``job_ended``; plugin API 1.5,
    docs/trackers.md) are implemented by any plugin, typically an extension plugin (group
    ``fahr.plugins``). Every implementation is called (none is firstresult), each on its own: one
    that raises breaks neither the job nor the other trackers; fahr prints one ``fahr warning``
    line naming the plugin and what failed, and that plugin hears nothing more of the job in this
    process. The process that follows the job tells them:

    - the one that launched it and follows it (``fahr fit``, ``fit()``): ``job_started`` at the
      launch, ``job_metrics`` in batches as the job's streamed output is read
      (``whole=False``), ``job_ended`` at its end;
    - any other process that follows a job to its end (``fahr wait JOB`` of a ``fit
      --detach``'s job, ``Job.wait()`` after ``fit(wait=False)``): at the job's end,
      ``job_started`` again, ``job_metrics`` once with its stored metrics read back whole
      (``whole=True``, as ``Job.metrics`` reads them), then ``job_ended``. ``fit --detach``
      tells only ``job_started``.

    So one job may be told of more than once (a second ``fahr wait`` of an ended job tells it all
    again): a tracker finds its record by ``job.job_name`` and records each job once. Implement
    them with ``@hookimpl(optionalhook=True)``: a fahr before plugin API 1.5 then ignores them
    rather than refuse the plugin.

    :param job: the job: its name, model tag, driver, hyperparameters, image, project, git
        commit, sweep id, metric definitions.
    :param config: the resolved configuration of the session telling it.

    Must not block for long: ``fahr fit`` waits for it before following the job.

    Example::

        @hookimpl(optionalhook=True)
        def job_started(job):
            tracker.open_run(job.job_name, params=job.hyperparameters, tags={"driver": job.driver})
    """


@hookspec
def job_metrics(job: TrackedJob, points: Sequence[MetricPoint], whole: bool, config: Config) -> None:
    """Points of the job's metrics (docs/metrics.md): name, value, step (or None), time, host.

    :param job: the job, as :func:`job_started` was told it.
    :param points: a batch, in the order they were printed. Batches come from the thread that
        streams the job's output, at most about one a second (or every 1000 points): a slow
        tracker slows the streaming of the output, never the job itself.
    :param whole: False: the points printed since the last batch, read as the output streams.
        True: the job's whole series, read back once the job ended, by a process that did not
        follow it from its launch, or that followed other jobs at the same time (a sweep: the
        streamed output does not say whose it is); the tracker may already hold some of them
        (sent live before, or by a ``fit`` killed midway): record only the ones it lacks, and
        none once the job's record says it ended.
    :param config: the resolved configuration of the session telling it.
    """


@hookspec
def job_ended(job: TrackedJob, result: JobResult, config: Config) -> None:
    """The job ended: ``result.status`` (Completed, Failed, Stopped), ``result.failure_reason``,
    ``result.model_artifact`` (where its model.tar.gz is: a local path or a URI).

    Told by the process that followed the job to its end, after its last :func:`job_metrics`.
    A job whose follower was interrupted (Ctrl-C) is told its end by the next ``fahr wait JOB``.

    :param job: the job, as :func:`job_started` was told it.
    :param result: how it ended, as the driver's ``wait`` reported it.
    :param config: the resolved configuration of the session telling it.
    """


#: Hooks every driver must implement; build_image and push_image have core defaults.
REQUIRED_DRIVER_HOOKS = ("launch", "wait", "fetch")
