"""The plan of one ``fit``, and the guards that refuse a bad one before anything is built.

:func:`plan_fit` is the first stop of the pipeline (docs/architecture.md): from the command's
arguments alone it finds the training artifact, its model tag and project folder, and refuses
what cannot work (channel and variable names, text no process can be given, ``--fetch`` into the
project). It reads the file system but changes nothing and needs no Docker engine and no driver.
:func:`check_fit` is the second: the guards that need the driver's resolved configuration, then
the driver's own ``check_run``.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from fahr_core import config as cfg
from fahr_core import names
from fahr_core.errors import ConfigError, UsageError, first_line
from fahr_core.launcher import HOST_VARIABLES  # standard library only: cheap to import


@dataclass(frozen=True)
class FitPlan:
    """What one ``fit`` will do, decided before the driver is loaded.

    ``given`` is the artifact as the user named it (a container's folder becomes its Dockerfile);
    ``artifact`` the checked, absolute one; ``project_dir`` its folder, where ``fahr.toml`` is read
    and which the build context is.
    """

    given: Path
    artifact: Path
    container: bool
    model_tag: str
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    """``--secret`` name -> its value, read once from fahr's environment (:func:`read_secrets`)."""
    wait: bool = True
    fetch_to: Path | None = None
    overwrite: bool = False
    regenerate_dockerfile: bool = False
    rebuild: bool = False
    metric_definitions: tuple = ()
    """The job's metrics named by regex (fahr_core.metrics.Definition): ``[metrics]`` of the
    project's fahr.toml, then ``--metric``."""
    notify: str = ""
    """The URL told of each job's end (``--notify``, else ``notify`` of the project's fahr.toml;
    docs/notifications.md), checked; '' for none."""

    @property
    def project_dir(self) -> Path:
        return self.artifact.parent


def plan_fit(artifact: Path, *, hyperparameters: Mapping[str, str] = {}, inputs: Mapping[str, str] = {},
             environment: Mapping[str, str] = {}, wait: bool = True, fetch_to: Path | None = None,
             overwrite: bool = False, regenerate_dockerfile: bool = False, rebuild: bool = False,
             secrets: Sequence[str] = (), environ: Mapping[str, str] | None = None,
             metrics: Mapping[str, str] = {}, notify: str | None = None) -> FitPlan:
    """The plan of a fit of ``artifact`` (a script, a notebook, or a container of the user's own:
    a folder holding a Dockerfile, or that Dockerfile), or the :class:`UsageError` refusing it.

    ``overwrite`` lets ``fetch_to`` replace a non-empty folder; ``regenerate_dockerfile`` writes
    the Dockerfile anew. Two decisions, two flags: the one flag ``--overwrite`` once meant both,
    and so replaced the project with the model.
    """
    from fahr_core import image

    if overwrite and fetch_to is None:
        # Refused rather than ignored: people used `fit --overwrite` to regenerate the Dockerfile.
        raise UsageError("--overwrite replaces a non-empty --fetch folder; "
                         "to regenerate the Dockerfile pass --regenerate-dockerfile")
    given = Path(artifact)
    artifact = image.check_artifact(given)
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
        if artifact.suffix == ".py":
            check_compiles(given, artifact)
    validate_channels(inputs)
    validate_environment(environment)
    validate_text("--hp", hyperparameters)
    validate_text("--env", environment)
    validate_text("--input", inputs, utf8=False)
    secret_values = read_secrets(secrets, environment, container, os.environ if environ is None else environ)
    metric_definitions = metric_definitions_of(artifact.parent, metrics)
    notify = notify_of(artifact.parent, notify)
    if secret_values and not regenerate_dockerfile:
        check_runs_the_launcher(artifact, next(iter(secret_values)))
    if fetch_to is not None and not wait:
        raise UsageError("--fetch needs the job to end: drop --detach, or fetch later with 'fahr fetch'")
    if fetch_to is not None:
        from fahr_core.extract import check_target

        fetch_spares_project(Path(fetch_to), given, artifact)
        check_target(Path(fetch_to), overwrite)  # fail before training, not after
    if artifact.suffix == ".ipynb":
        warning = unread_parameters(given, artifact, hyperparameters)
        if warning:
            from fahr_core import ui

            ui.warn(warning)
    return FitPlan(given, artifact, container, model_tag, dict(hyperparameters), dict(inputs), dict(environment),
                   secret_values, wait, None if fetch_to is None else Path(fetch_to), overwrite,
                   regenerate_dockerfile, rebuild, metric_definitions, notify)


def metric_definitions_of(project_dir: Path, given: Mapping[str, str]) -> tuple:
    """The job's metric definitions: the ``[metrics]`` table of the project's fahr.toml (or
    ``[tool.fahr.metrics]``), each ``--metric NAME=REGEX`` over it (docs/metrics.md)."""
    from fahr_core import metrics

    project = cfg.read_project_file(project_dir)
    table = project.data.get("metrics")
    return metrics.definitions(given, table, source=str(project.path))


def notify_of(project_dir: Path, given: str | None) -> str:
    """The URL told of a job's end: ``given`` (``--notify``; '' for none), else the top-level
    ``notify`` of the project's fahr.toml (or ``[tool.fahr]``), checked (docs/notifications.md)."""
    from fahr_core import notify

    if given is not None:
        return notify.check_url(given, "--notify") if given != "" else ""
    project = cfg.read_project_file(project_dir)
    value = project.data.get("notify", "")
    return notify.check_url(value, f"{project.path}: notify =") if value != "" else ""


def check_fit(plan: FitPlan, session) -> None:
    """The guards of ``plan`` that need the driver's configuration, then the driver's ``check_run``:
    all before the build, so a refusal costs nothing."""
    if plan.fetch_to is not None:
        fetch_spares_output(plan.fetch_to, session.location)
    if plan.secrets and not any("secrets" in impl.argnames for impl in session.pm.hook.check_run.get_hookimpls()):
        # A driver of plugin API 1.3 or older would launch the job without them (hookspec check_run).
        raise UsageError(f"--secret {next(iter(plan.secrets))}: driver {session.driver!r} cannot give a job secrets "
                         "(it does not take them, plugin API 1.4); use a driver that does, e.g. local or sagemaker")
    session.hook.check_run(config=session.config, inputs=dict(plan.inputs), secrets=tuple(plan.secrets))
    checkpoints_spare_project(session.config, plan.given, plan.artifact)
    if plan.fetch_to is not None:
        fetch_spares_checkpoints(plan.fetch_to, session.config)


def check_compiles(given: Path, script: Path) -> None:
    """Refuse a script that does not compile, in one line ``GIVEN:LINE: SyntaxError: …``.

    The job would fail at its start anyway, but only after a build (and, on a cloud driver, a push
    and an instance start). Compiled in memory by the Python that runs fahr, as ``py_compile``
    would: nothing is written (no ``__pycache__`` in the project). A notebook's JSON is checked
    with the artifact (:func:`fahr_core.image.check_artifact`); a container of the user's own is
    the user's to check.
    """
    from fahr_core import ui

    try:
        source = script.read_bytes()
    except OSError as exc:
        raise UsageError(f"{ui.visible(given)}: cannot be read ({exc.strerror}); fix it and fit again") from None
    try:
        with warnings.catch_warnings():
            # A warning (an invalid escape sequence…) is the job's to print, not a refusal here,
            # even under -W error.
            warnings.simplefilter("ignore")
            compile(source, str(given), "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f":{exc.lineno}" if exc.lineno else ""
        raise UsageError(f"{ui.visible(given)}{where}: {type(exc).__name__}: {ui.visible(exc.msg)}; "
                         "it does not compile: fix it and fit again") from None
    except ValueError as exc:  # Python 3.11 says so of a NUL byte in the source
        raise UsageError(f"{ui.visible(given)}: {ui.visible(exc)}; it does not compile: fix it and fit again") from None


# -- a notebook's parameters -----------------------------------------------------------------------

PARAMETERS_TAG = "parameters"
"""The tag of the cell papermill injects the hyperparameters after (its first such cell)."""


def parameters_cell(notebook: Path) -> str | None:
    """The source of the first cell tagged ``parameters`` of ``notebook``, or None when it has none.
    (:func:`fahr_core.image.check_artifact` has refused a notebook that is not JSON.)"""
    import json

    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells")
    except (OSError, ValueError, AttributeError):
        return None
    for cell in cells if isinstance(cells, list) else ():
        metadata = cell.get("metadata") if isinstance(cell, dict) else None
        if isinstance(metadata, dict) and PARAMETERS_TAG in (metadata.get("tags") or ()):
            source = cell.get("source", "")
            return "".join(source) if isinstance(source, list) else str(source)
    return None


def assigned_names(source: str) -> list[str] | None:
    """The names a cell's top-level assignments set (``a = 1``, ``b: int = 2``, ``c, d = 3, 4``), in
    order; None when it is not Python ``ast`` parses, even without its IPython ``%magic`` and
    ``!shell`` lines. Parsed, never executed."""
    import ast

    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except (SyntaxError, ValueError):
        return None
    targets = [target for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
               for target in (node.targets if isinstance(node, ast.Assign) else [node.target])]
    names: list[str] = []
    while targets:
        target = targets.pop(0)
        if isinstance(target, (ast.Tuple, ast.List)):
            targets[:0] = target.elts
        elif isinstance(target, ast.Starred):
            targets.insert(0, target.value)
        elif isinstance(target, ast.Name) and target.id not in names:
            names.append(target.id)
    return names


def unread_parameters(given: Path, notebook: Path, hyperparameters: Mapping[str, str]) -> str | None:
    """The warning for ``--hp`` names that the notebook's ``parameters`` cell does not set: papermill
    injects them all the same, and the notebook runs on its defaults, with only a line deep in the
    job's log to say so. With no such cell, papermill injects every ``--hp`` before the first cell,
    whose own assignments replace them: that is warned of too. None when all is well, or when fahr
    cannot tell (a cell ``ast`` cannot parse). A warning, not a refusal: papermill passes such
    names on, and a notebook may read them (``globals().get(...)``)."""
    if not hyperparameters:
        return None
    name = str(given)  # as the user named it, as the other lines of the plan do
    source = parameters_cell(notebook)
    if source is None:
        return (f"--hp {', '.join(map(_shown, hyperparameters))}: {name} has no cell tagged '{PARAMETERS_TAG}', so "
                "papermill injects the hyperparameters before its first cell, whose own assignments replace them: "
                f"tag the cell that sets their defaults '{PARAMETERS_TAG}'")
    known = assigned_names(source)
    unknown = [key for key in hyperparameters if known is not None and key not in known]
    if not unknown:
        return None
    one = len(unknown) == 1
    return (f"--hp {', '.join(map(_shown, unknown))}: not {'a parameter' if one else 'parameters'} of {name}, whose "
            f"cell tagged '{PARAMETERS_TAG}' sets {', '.join(known) or 'nothing'}; the notebook does not read "
            f"{'it' if one else 'them'}: check the name")


# -- the arguments a job is given ------------------------------------------------------------------

# SageMaker's ChannelName (botocore's service model): [A-Za-z0-9.\-_]+, 1-64 characters.
_CHANNEL = re.compile(r"^[A-Za-z0-9.\-_]{1,64}\Z")  # \Z: '$' would let a trailing newline in


def validate_channels(inputs: Mapping[str, str]) -> None:
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


def validate_environment(environment: Mapping[str, str], flag: str = "--env", shown: str = "=…") -> None:
    from fahr_core.launcher import SECRETS_ARN_ENV

    for name, value in environment.items():
        if not _ENV_NAME.match(name):
            raise UsageError(f"{flag} {_shown(name)}{shown}: a variable name is letters, digits and '_', "
                             "not starting with a digit")
        if name in HOST_VARIABLES and name != "MASTER_PORT":  # the hosts must agree: never the user's value
            raise UsageError(f"{flag} {name}{shown}: fahr sets {name} on every host of a job from its hosts "
                             "(docs/multi-host.md); leave it out" + ("; choose the port with --env MASTER_PORT=…"
                                                                     if name == "PET_MASTER_PORT" else ""))
        if name == SECRETS_ARN_ENV:  # fahr's own: it names the job's secret, which fahr deletes at the end
            raise UsageError(f"{flag} {name}{shown}: fahr sets {name} itself, for --secret; hand the job a "
                             "secret with --secret NAME")
        size = len(f"{name}={value}".encode("utf-8", "surrogateescape")) + 1
        if size > _ENV_STRING_MAX:
            raise UsageError(f"{flag} {_shown(name)}{shown}: the variable is {size} bytes, over the {_ENV_STRING_MAX} "
                             "bytes one environment variable may hold: pass large values in a file (--input)")


# The variables fahr's launcher and drivers set in every job (README, "Your training code"): a
# secret of that name would override the hosts or the job's name (the launcher applies secrets
# last), and FAHR_SECRETS_ARN names the Secrets Manager secret fahr deletes when the job ends.
_FAHR_PREFIXES = ("FAHR_", "SM_")
_FAHR_NAMES = frozenset({"TRAINING_JOB_NAME", *HOST_VARIABLES})

# All of a job's secrets together, UTF-8: AWS Secrets Manager holds at most 64 KiB in a secret,
# which the sagemaker driver makes of them all; secrets are keys and tokens, not data (--input).
_SECRETS_MAX = 64 * 1024


def fahr_variable(name: str) -> bool:
    """Whether ``name`` is a variable fahr sets in a job itself."""
    return name.startswith(_FAHR_PREFIXES) or name in _FAHR_NAMES


def check_runs_the_launcher(artifact: Path, name: str) -> None:
    """``--secret`` reaches the script through fahr's launcher (the generated Dockerfile's
    ENTRYPOINT): a project Dockerfile whose last ENTRYPOINT does not run it would start the script
    without its secrets, silently. No Dockerfile yet: fahr writes one that does."""
    from fahr_core import image
    from fahr_core.image.dockerfile import LAUNCHER_PATH, _read_dockerfile, last_entrypoint

    path = artifact.parent / image.DOCKERFILE
    if not os.path.lexists(path):
        return
    if LAUNCHER_PATH not in last_entrypoint(_read_dockerfile(path)):
        raise UsageError(f"--secret {name}: {path} does not start fahr's launcher ({LAUNCHER_PATH}), which hands "
                         "the script its secrets; pass --regenerate-dockerfile (or make its ENTRYPOINT "
                         f'["python", "{LAUNCHER_PATH}", "{artifact.name}"])')


def read_secrets(names: Sequence[str], environment: Mapping[str, str], container: bool,
                 environ: Mapping[str, str]) -> dict[str, str]:
    """``--secret NAME…``: each name -> ``$NAME`` of fahr's own environment, read here once, or the
    one-line refusal. No message holds a value; the job gets them by the driver's own way
    (``JobSpec.secrets``), never as ``--env`` (README, "Secrets")."""
    if not names:
        return {}
    for name in names:
        if not _ENV_NAME.match(name):
            raise UsageError(f"--secret {_shown(name)}: a variable name is letters, digits and '_', "
                             "not starting with a digit")
        if fahr_variable(name):
            raise UsageError(f"--secret {name}: fahr sets {name} in every job itself (names starting FAHR_ or SM_, "
                             "TRAINING_JOB_NAME and the host variables); give the secret another name")
        if name in environment:
            raise UsageError(f"--secret {name} and --env {name}=…: give the variable one way (a secret's value "
                             "is never written where --env values are)")
        if not environ.get(name):
            raise UsageError(f"--secret {name}: ${name} is {'empty' if name in environ else 'not set'} in fahr's "
                             f"environment; set it (export {name}=…) in the shell that runs fahr, then run again")
    if container:
        raise UsageError(f"--secret {names[0]}: your own container has no fahr launcher to hand secrets to its "
                         "program; train a script or notebook, or have the container read them itself")
    values = {name: environ[name] for name in names}
    validate_environment(values, "--secret", "")
    for name, value in values.items():  # what the job could not be given intact (never shown)
        problem = cfg.text_problem(value)
        if problem:
            raise UsageError(f"--secret {name}: the value of ${name} {problem}")
    # Measured as the sagemaker driver stores them: one JSON object, UTF-8 (quotes, newlines escaped)
    size = len(json.dumps(values, ensure_ascii=False).encode("utf-8"))
    if size > _SECRETS_MAX:
        raise UsageError(f"--secret: the secrets are {size} bytes together, over the {_SECRETS_MAX} a job's "
                         "secrets may hold (a Secrets Manager secret's limit); pass data in a file (--input)")
    return values


def validate_text(flag: str, pairs: Mapping[str, str], utf8: bool = True) -> None:
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


# -- folders that must not overlap -----------------------------------------------------------------

def real(path: Path) -> Path:
    """``path`` absolute with every symlink of its existing part resolved: an alias is caught too."""
    try:
        return Path(os.path.abspath(path)).resolve()
    except (RuntimeError, OSError) as exc:  # Python 3.11 raises RuntimeError on a symlink loop
        raise UsageError(f"{path}: cannot follow its symbolic links ({first_line(exc) or type(exc).__name__}); "
                         "choose another folder") from None


def fetch_spares_project(fetch_dir: Path, given: Path, artifact: Path) -> None:
    """Refuse a ``--fetch`` folder that is the training artifact's folder or holds it.

    Extracting there (with ``--overwrite``) would replace the user's script and notes with the
    model. A folder inside the project (``--fetch my-model/model``) is fine.
    """
    found = _project_under(real(fetch_dir), given, artifact)
    if found:
        what, project = found
        raise UsageError(
            f"--fetch {fetch_dir}: that folder {what} the project of {given.name} ({project}); "
            "fetching there would replace your files with the model; choose another folder"
        )


def _project_under(target: Path, given: Path, artifact: Path) -> tuple[str, Path] | None:
    """("is" or "holds", the project folder) when ``target`` is the artifact's folder or holds it:
    the folder the script was named in, and the one it really lives in when it is a symlink."""
    for project in {real(given.parent), artifact.parent}:
        if target == project or target in project.parents:
            return ("is" if target == project else "holds"), project
    return None


def _checkpoint_setting(config: cfg.Config) -> str | None:
    """A local ``checkpoint_path`` as set (a driver with the key: the local driver), else None; a
    relative one set in fahr.toml is taken from the project (:func:`fahr_core.config.folder_setting`)."""
    raw = str(config.get("checkpoint_path") or "")
    return None if not raw.strip() or "\x00" in raw else cfg.folder_setting(config, "checkpoint_path")


def checkpoints_spare_project(config: cfg.Config, given: Path, artifact: Path) -> None:
    """Refuse a local ``checkpoint_path`` that is the build context (the artifact's folder) or
    holds it: the copy back replaces that folder's contents. (The driver's own check, which does
    not know the artifact, refuses any folder holding files fahr did not put there.)"""
    raw = _checkpoint_setting(config)
    found = raw and _project_under(real(Path(raw)), given, artifact)
    if found:
        what, project = found
        raise ConfigError(
            f"config.checkpoint_path={config['checkpoint_path']}: that folder {what} the project of {given.name} "
            f"({project}); fahr replaces the checkpoint folder's contents: give the checkpoints a folder of their own"
        )


def fetch_spares_checkpoints(fetch_dir: Path, config: cfg.Config) -> None:
    """Refuse a ``--fetch`` folder that is, lies inside, or holds the local ``checkpoint_path``:
    the job's checkpoints replace that folder when it ends, and the model would replace them."""
    raw = _checkpoint_setting(config)
    if raw is None:
        return
    checkpoints = real(Path(raw))
    if _overlap(real(fetch_dir), checkpoints):
        raise UsageError(
            f"--fetch {fetch_dir}: that folder overlaps the checkpoint folder {checkpoints} (config.checkpoint_path), "
            "which the job's checkpoints replace when it ends; choose a folder outside it"
        )


def _overlap(a: Path, b: Path) -> bool:
    """Whether one of two resolved folders is, or lies inside, the other."""
    return a == b or a in b.parents or b in a.parents


def fetch_spares_output(fetch_dir: Path, location: str, flag: str = "--fetch") -> None:
    """Refuse a ``--fetch`` folder (or ``fahr fetch`` target) that is, lies inside, or holds the
    driver's local output folder or the local location fetched from (where jobs and their
    artifacts are kept: the model would replace them)."""
    if not location or ("://" in location and not location.startswith("file://")):
        return
    output = real(Path(os.path.expanduser(location.removeprefix("file://"))))
    if _overlap(real(fetch_dir), output):
        raise UsageError(
            f"{flag} {fetch_dir}: that folder overlaps the output folder {output}, where the jobs and "
            "their artifacts are kept (config.output_path); choose a folder outside it"
        )
