"""The commands' work, between the CLI (which parses and prints errors) and the hooks.

``fit`` walks the five steps: build_image -> push_image -> launch -> wait -> (fetch).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from fahr_core import config as cfg
from fahr_core import names, plugins, ui
from fahr_core.commandlines import wait_command
from fahr_core.errors import ConfigError, JobFailed, PluginError, UsageError, first_line
from fahr_core.jobs import FetchRequest, JobHandle, JobResult, JobSpec


def parse_pairs(values: Iterable[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` options (``--hp``, ``--input``, ``--env``) into a dict; values may hold ``=``."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} {item!r}: expected {flag} KEY=VALUE")
        pairs[key.strip()] = value
    return pairs


@dataclass
class Session:
    """A driver's plugin manager and the run's resolved configuration."""

    pm: object
    config: cfg.Config

    @property
    def hook(self):
        return self.pm.hook


def open_session(driver: str | None, project_dir: Path, cli_config: Iterable[tuple[str, str]] = (),
                 check_required: bool = True, command: str | None = None) -> Session:
    """Choose the driver, load it and resolve its configuration.

    ``check_required`` enforces the keys marked ``required``; ``command`` (``fit``, ``wait``,
    ``stop``, ``fetch``) also those whose ``required_for`` names it.
    """
    project = cfg.read_project_file(project_dir)
    name = cfg.choose_driver(driver, project)
    pm = plugins.manager_for(name)
    keys = plugins.driver_config_keys(pm)
    config = cfg.resolve(name, keys, project, cli_config, check_required=check_required, command=command)
    return Session(pm, config)


# SageMaker's ChannelName (botocore's service model): [A-Za-z0-9.\-_]+, 1-64 characters.
_CHANNEL = re.compile(r"^[A-Za-z0-9.\-_]{1,64}\Z")  # \Z: '$' would let a trailing newline in


def _validate_channels(inputs: Mapping[str, str]) -> None:
    for channel in inputs:
        if not _CHANNEL.match(channel) or channel in (".", ".."):
            raise UsageError(
                f"--input {_shown(channel)}=…: a channel name is 1-64 letters, digits, '.', '-' or '_' "
                "(e.g. train)"
            )


# What a process environment may be called (POSIX; also SageMaker's Environment key pattern).
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


# Linux refuses to start a process with one environment string (NAME=VALUE and its NUL) longer
# than MAX_ARG_STRLEN, 32 pages: the container would fail as the job ("argument list too long"),
# after the build and push.
_ENV_STRING_MAX = 131072


def _validate_environment(environment: Mapping[str, str]) -> None:
    for name, value in environment.items():
        if not _ENV_NAME.match(name):
            raise UsageError(f"--env {_shown(name)}=…: a variable name is letters, digits and '_', "
                             "not starting with a digit")
        size = len(f"{name}={value}".encode("utf-8", "surrogateescape")) + 1
        if size > _ENV_STRING_MAX:
            raise UsageError(f"--env {_shown(name)}=…: the variable is {size} bytes, over the {_ENV_STRING_MAX} bytes "
                             "one environment variable may hold: pass large values in a file (--input)")


def _validate_text(flag: str, pairs: Mapping[str, str], utf8: bool = True) -> None:
    """Refuse, before the build, a name or value the job could not be given intact (see
    :func:`fahr_core.config.text_problem`). Hyperparameters too: SageMaker-style containers get
    them as arguments and environment variables as well as in hyperparameters.json. ``utf8=False``
    for channel paths, whose bytes may be any but NUL."""
    for name, value in pairs.items():
        for what, text, check_utf8 in (("name", name, True), ("value", value, utf8)):
            problem = cfg.text_problem(text, utf8=check_utf8)
            if problem:
                raise UsageError(f"{flag} {_shown(name)}=…: the {what} {problem}")


def _shown(text: str) -> str:
    """A name as one printable line: quoted and escaped when it holds anything unprintable."""
    return text if text.isprintable() else repr(text)


from fahr_core.commandlines import MODEL_TAG_PLACEHOLDER  # noqa: E402  (kept importable from here)


def fetch_command(result_job: JobHandle, location: str) -> str:
    """The exact command that fetches this job's model (``MODEL_TAG`` when the tag is unknown)."""
    from fahr_core.commandlines import fetch_command as line

    return line(result_job.job_name, result_job.model_tag, result_job.driver, location)


def fit(
    artifact: Path,
    *,
    driver: str | None,
    cli_config: list[tuple[str, str]],
    hyperparameters: Mapping[str, str],
    inputs: Mapping[str, str],
    environment: Mapping[str, str],
    detach: bool,
    fetch_dir: Path | None,
    overwrite: bool,
    regenerate_dockerfile: bool = False,
    rebuild: bool = False,
) -> JobResult | JobHandle:
    """Build, push, launch and (unless ``detach``) follow one training job.

    ``artifact`` is a script, a notebook, or a container of the user's own: a folder holding a
    Dockerfile, or that Dockerfile (built as it is; the image is started as ``IMAGE train``).
    ``overwrite`` lets ``--fetch`` replace a non-empty folder (as ``fahr fetch --overwrite``);
    ``regenerate_dockerfile`` writes the Dockerfile anew. Two decisions, two flags: the one
    flag ``--overwrite`` once meant both, and so replaced the project with the model.
    ``rebuild`` builds the image even when nothing it is built from changed (the core's build
    skips it then; see :func:`fahr_core.image.build`).
    """
    from fahr_core import image

    if overwrite and fetch_dir is None:
        # Refused rather than ignored: people used `fit --overwrite` to regenerate the Dockerfile.
        raise UsageError("--overwrite replaces a non-empty --fetch folder; "
                         "to regenerate the Dockerfile pass --regenerate-dockerfile")
    given = Path(artifact)
    artifact = image.check_artifact(artifact)
    container = image.is_container(artifact)
    if container:
        # The user's own container (`fahr fit DIR` or `DIR/Dockerfile`): its folder is the project,
        # named as a script's stem is (…/byoc/container -> byoc/container).
        if given.is_dir():
            given = given / image.DOCKERFILE
        if regenerate_dockerfile:
            raise UsageError(image.regenerate_refused(given))
        model_tag = names.container_image_tag(artifact.parent)
    else:
        model_tag = names.model_image_tag(artifact)
    _validate_channels(inputs)
    _validate_environment(environment)
    _validate_text("--hp", hyperparameters)
    _validate_text("--env", environment)
    _validate_text("--input", inputs, utf8=False)
    if fetch_dir is not None and detach:
        raise UsageError("--fetch needs the job to end: drop --detach, or fetch later with 'fahr fetch'")
    if fetch_dir is not None:
        from fahr_core.extract import check_target

        _check_fetch_spares_project(Path(fetch_dir), given, artifact)
        check_target(Path(fetch_dir), overwrite)  # fail before training, not after
    session = open_session(driver, artifact.parent, cli_config, command="fit")
    config, hook = session.config, session.hook
    if fetch_dir is not None:
        _check_fetch_spares_output(Path(fetch_dir), config)

    hook.check_run(config=config, inputs=dict(inputs))
    _check_checkpoints_spare_project(config, given, artifact)
    if fetch_dir is not None:
        _check_fetch_spares_checkpoints(Path(fetch_dir), config)
    context = image.prepare_context(artifact, model_tag, config["base_image"], regenerate_dockerfile,
                                    base_image_set=config.sources.get("base_image") != "default", rebuild=rebuild)
    built = hook.build_image(context=context, config=config)
    pushed = hook.push_image(image=built, config=config)
    spec = JobSpec(
        job_name=names.job_name(model_tag),
        model_tag=model_tag,
        image=pushed,
        hyperparameters={k: str(v) for k, v in hyperparameters.items()},
        inputs=dict(inputs),
        environment=dict(environment),
    )
    # The driver names the job (sagemaker's base_job_name renames it): the name is printed from
    # the handle it returns, never from the spec. No "launching job NAME" before it is known.
    ui.info(f"launching a job of {model_tag} on driver {config.driver!r}")
    job = hook.launch(spec=spec, config=config)
    if job is None:
        raise PluginError(f"driver {config.driver!r} launched nothing (its launch hook returned None)")
    ui.info(f"launching job {job.job_name} on driver {config.driver!r}: accepted")
    location = _location(config)
    if detach:
        from fahr_core import interrupts

        interrupts.followed(job.job_name)  # launched to run on: an interrupt now leaves it running
        ui.success(f"job {job.job_name} launched; follow it with:")
        ui.command(wait_command(job.job_name, job.driver, _flagged_location(config)))
        ui.info("and once it has completed, fetch its model with:")
        ui.command(fetch_command(job, location))
        return job
    result = _follow(session, job)
    if fetch_dir is not None:
        fetch(Path(fetch_dir), model_tag, location, driver=config.driver, job_name=job.job_name,
              extract=True, overwrite=overwrite, session=session)
    return result


def _real(path: Path) -> Path:
    """``path`` absolute with every symlink of its existing part resolved: an alias is caught too."""
    try:
        return Path(os.path.abspath(path)).resolve()
    except (RuntimeError, OSError) as exc:  # Python 3.11 raises RuntimeError on a symlink loop
        raise UsageError(f"{path}: cannot follow its symbolic links ({first_line(exc) or type(exc).__name__}); "
                         "choose another folder") from None


def _check_fetch_spares_project(fetch_dir: Path, given: Path, artifact: Path) -> None:
    """Refuse a ``--fetch`` folder that is the training artifact's folder or holds it.

    Extracting there (with ``--overwrite``) would replace the user's script and notes with the
    model. A folder inside the project (``--fetch my-model/model``) is fine.
    """
    found = _project_under(_real(fetch_dir), given, artifact)
    if found:
        what, project = found
        raise UsageError(
            f"--fetch {fetch_dir}: that folder {what} the project of {given.name} ({project}); "
            "fetching there would replace your files with the model; choose another folder"
        )


def _project_under(target: Path, given: Path, artifact: Path) -> tuple[str, Path] | None:
    """("is" or "holds", the project folder) when ``target`` is the artifact's folder or holds it:
    the folder the script was named in, and the one it really lives in when it is a symlink."""
    for project in {_real(given.parent), artifact.parent}:
        if target == project or target in project.parents:
            return ("is" if target == project else "holds"), project
    return None


def _check_checkpoints_spare_project(config: cfg.Config, given: Path, artifact: Path) -> None:
    """Refuse a local ``checkpoint_path`` that is the build context (the artifact's folder) or
    holds it: the copy back replaces that folder's contents. (The driver's own check, which does
    not know the artifact, refuses any folder holding files fahr did not put there.)"""
    raw = str(config.get("checkpoint_path") or "")
    if not raw.strip() or "\x00" in raw:
        return
    found = _project_under(_real(Path(os.path.expanduser(raw))), given, artifact)
    if found:
        what, project = found
        raise ConfigError(
            f"config.checkpoint_path={raw}: that folder {what} the project of {given.name} ({project}); "
            "fahr replaces the checkpoint folder's contents: give the checkpoints a folder of their own"
        )


def _check_fetch_spares_checkpoints(fetch_dir: Path, config: cfg.Config) -> None:
    """Refuse a ``--fetch`` folder that is, lies inside, or holds the local ``checkpoint_path``:
    the job's checkpoints replace that folder when it ends, and the model would replace them."""
    raw = str(config.get("checkpoint_path") or "")
    if not raw.strip() or "\x00" in raw:
        return
    checkpoints = _real(Path(os.path.expanduser(raw)))
    if _overlap(_real(fetch_dir), checkpoints):
        raise UsageError(
            f"--fetch {fetch_dir}: that folder overlaps the checkpoint folder {checkpoints} (config.checkpoint_path), "
            "which the job's checkpoints replace when it ends; choose a folder outside it"
        )


def _overlap(a: Path, b: Path) -> bool:
    """Whether one of two resolved folders is, or lies inside, the other."""
    return a == b or a in b.parents or b in a.parents


def _check_fetch_spares_output(fetch_dir: Path, config: cfg.Config, location: str | None = None,
                               flag: str = "--fetch") -> None:
    """Refuse a ``--fetch`` folder (or ``fahr fetch`` target) that is, lies inside, or holds the
    driver's local output folder or the local location fetched from (where jobs and their
    artifacts are kept: the model would replace them)."""
    location = location or _location(config)
    if not location or ("://" in location and not location.startswith("file://")):
        return
    output = _real(Path(os.path.expanduser(location.removeprefix("file://"))))
    target = _real(fetch_dir)
    if _overlap(target, output):
        raise UsageError(
            f"{flag} {fetch_dir}: that folder overlaps the output folder {output}, where the jobs and "
            "their artifacts are kept (config.output_path); choose a folder outside it"
        )


def _location(config: cfg.Config) -> str:
    """The driver's ``output_path`` as the user can paste it anywhere (local paths absolute)."""
    location = str(config.get("output_path", "") or "")
    if location and "://" not in location:
        location = os.path.abspath(os.path.expanduser(location))
    return location


def _flagged_location(config: cfg.Config) -> str | None:
    """The output path when it was set for this run (``wait`` must look in the same place), else None."""
    if "output_path" in config and config.sources.get("output_path") != "default":
        return _location(config)
    return None


def _follow(session: Session, job: JobHandle) -> JobResult:
    # KeyboardInterrupt passes through: the driver's wait stops or detaches, the CLI exits 130.
    result = session.hook.wait(job=job, config=session.config)
    return report(result, session.config)


def report(result: JobResult, config: cfg.Config) -> JobResult:
    """Print how a job ended; raise :class:`JobFailed` unless it completed."""
    job = result.job
    timing = ""
    if result.training_seconds is not None:
        timing = f" in {result.training_seconds:.1f} s"
        if result.billable_seconds is not None and result.billable_seconds != result.training_seconds:
            timing += f" (billable {result.billable_seconds:.0f} s)"
    if not result.succeeded:
        # One line: the job's output was streamed above, the full reason is in the job's record.
        reason = " ".join(result.failure_reason.split()) or "no reason given"
        if len(reason) > 400:
            reason = reason[:400] + " …"
        raise JobFailed(f"job {job.job_name} {result.status.lower()}{timing}: {reason}")
    ui.success(f"job {job.job_name} completed{timing}; model at {result.model_artifact}")
    if result.model_empty:
        ui.warn(empty_model_warning(job.job_name, job.driver or config.driver))
    if job.model_tag:
        ui.info("fetch it with:")
    else:  # a driver that does not honour the wait hook's contract: say so rather than print ''
        ui.warn(f"driver {config.driver!r} did not report the model tag of job {job.job_name}; "
                f"fetch it with the command below, {MODEL_TAG_PLACEHOLDER} replaced by the tag it trained")
    ui.command(fetch_command(job, _location(config)))
    return result


def empty_model_warning(job_name: str, driver: str) -> str:
    """The one line for a job that completed with nothing in /opt/ml/model.

    The usual cause is a script that saves to /opt/ml/model only when FAHR_EXECUTION_ENVIRONMENT
    is one driver's name (the seed's own snippet tested for 'sagemaker'): under another driver it
    saved to its working folder, which is thrown away with the container.
    """
    return (f"job {job_name} saved no model: /opt/ml/model was empty when it ended. Did the script "
            f"save elsewhere, or save to /opt/ml/model only when FAHR_EXECUTION_ENVIRONMENT is one "
            f"driver's name (it is {driver!r} here)? Test that the variable is set, whatever its "
            f"value, and save under /opt/ml/model")


def wait(job_name: str, *, driver: str | None, cli_config: list[tuple[str, str]]) -> JobResult:
    """Re-attach to a launched job (``fit --detach``) and follow it to the end."""
    names.validate_job_name(job_name)
    session = open_session(driver, Path.cwd(), cli_config, command="wait")
    # Rebuilt from the name alone: the driver's wait fills in the model tag (hookspec ``wait``).
    job = JobHandle(driver=session.config.driver, job_name=job_name, model_tag="")
    return _follow(session, job)


def stop(job_name: str, *, driver: str | None, cli_config: list[tuple[str, str]]) -> bool:
    """Ask the driver to stop a job."""
    names.validate_job_name(job_name)
    session = open_session(driver, Path.cwd(), cli_config, command="stop")
    job = JobHandle(driver=session.config.driver, job_name=job_name, model_tag="")
    stopped = session.hook.stop(job=job, config=session.config)
    if stopped is None:
        raise PluginError(f"driver {session.config.driver!r} cannot stop jobs")
    return bool(stopped)


def driver_for_location(location: str, project_dir: Path | None = None,
                        cli_config: Iterable[tuple[str, str]] = (),
                        environ: Mapping[str, str] | None = None) -> str | None:
    """The installed driver that claims an artifact location (``s3://…`` → sagemaker), or None.

    The driver ``FAHR_DRIVER`` or ``fahr.toml``'s ``driver`` (in ``project_dir``) names, if it
    claims the location; else the only driver that claims it. Several claimants is a
    :class:`UsageError` naming them and how to choose. Each driver is asked with its own resolved
    configuration (required keys not enforced; ``--config.KEY`` pairs given to those that declare KEY).
    """
    environ = os.environ if environ is None else environ
    project = cfg.read_project_file(project_dir or Path.cwd())
    cli_config = list(cli_config)
    preferred = environ.get("FAHR_DRIVER") or project.driver

    def claims(name: str) -> bool:
        try:
            pm = plugins.manager_for(name)
        except PluginError:
            return False  # a driver that cannot load claims nothing; naming it is `fahr drivers`' job
        keys = plugins.driver_config_keys(pm)
        declared = {key.name for key in keys}
        config = cfg.resolve(name, keys, project, [(k, v) for k, v in cli_config if k in declared],
                             environ=environ, check_required=False)
        # Implementations written before `config` was passed take `location` alone: pluggy hands
        # each implementation only the arguments it names.
        return bool(pm.hook.claims_location(location=location, config=config))

    installed = plugins.installed_drivers()
    if preferred in installed and claims(preferred):
        return preferred
    claimants = [name for name in sorted(installed) if name != preferred and claims(name)]
    if len(claimants) > 1:
        listed = ", ".join(repr(name) for name in claimants)
        raise UsageError(
            f"{location} is claimed by several installed drivers ({listed}); choose one with "
            f"--train-driver NAME, or set FAHR_DRIVER=NAME"
        )
    return claimants[0] if claimants else None


def fetch(
    target: Path,
    model_tag: str,
    location: str | None,
    *,
    driver: str | None,
    job_name: str | None,
    extract: bool,
    overwrite: bool,
    cli_config: list[tuple[str, str]] = (),
    session: Session | None = None,
) -> Path:
    """Download a job's model and put it, extracted safely, in ``target``.

    The driver's ``fetch`` hook answers with the downloaded archive's path, or with a readable
    stream of it (its download still running): the stream is extracted as it arrives, under the
    same rules, and closed at the end or on any refusal or interrupt.
    """
    from fahr_core.extract import check_target, is_stream, max_model_bytes, place

    names.validate_model_tag(model_tag)
    if job_name:
        names.validate_job_name(job_name)
    check_target(Path(target), overwrite)
    if extract:
        max_model_bytes()  # a bad FAHR_MAX_MODEL_BYTES fails now, not after the download
    if session is None:
        if driver is None and location:
            driver = driver_for_location(location, Path.cwd(), cli_config)
            if driver is None and "://" in location:
                raise UsageError(
                    f"no installed driver handles {location}; pass --train-driver NAME "
                    "(see 'fahr drivers'), or install the driver for it"
                )
        session = open_session(driver, Path.cwd(), cli_config, check_required=False, command="fetch")
        # Replacing the folder the jobs live in (with --overwrite) would delete them all.
        _check_fetch_spares_output(Path(target), session.config, location, flag="fetch target")
    with tempfile.TemporaryDirectory(prefix="fahr-fetch-") as download_dir:
        request = FetchRequest(model_tag=model_tag, job_name=job_name, location=location or None,
                               download_dir=Path(download_dir))
        archive = session.hook.fetch(request=request, config=session.config)
        if archive is None:
            raise PluginError(f"driver {session.config.driver!r} fetched nothing")
        if not is_stream(archive) and not isinstance(archive, (str, os.PathLike)):
            raise PluginError(f"driver {session.config.driver!r} fetched a {type(archive).__name__}, neither "
                              "the path of an archive nor a readable stream of one (its fetch hook is wrong)")
        placed = place(archive if is_stream(archive) else Path(archive), Path(target), extract=extract,
                       overwrite=overwrite)
    ui.success(f"model of {model_tag} is in {placed}")
    return placed
