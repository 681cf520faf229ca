"""The training image: the Dockerfile fahr writes for a bare script, and the default build.

The generated Dockerfile keeps the SageMaker contract (docs/contract.md): ``docker run IMAGE
train`` trains; the entrypoint is exec-form so the training process is PID 1 and receives
SIGTERM; dependencies sit in a layer before the code so that editing the code reinstalls nothing.

A container of the user's own (``fahr fit DIR`` with DIR holding a Dockerfile, or ``fahr fit
DIR/Dockerfile``) is built from that Dockerfile as it is, never written or changed: its image
brings its own ``train`` program (:func:`check_artifact`, :func:`prepare_context`).

The entrypoint's program is :mod:`fahr_core.launcher` (it exports the multi-host variables, then
runs the script); a notebook (``train.ipynb``) is executed headless with papermill by
:mod:`fahr_core.notebook_runner`, whose source precedes the launcher's in a notebook image.
``FAHR_EXECUTION_ENVIRONMENT`` defaults to ``sagemaker`` in the image (drivers set their own).

The built-in templates of ``fahr init`` write their Dockerfile and .dockerignore with
:func:`dockerfile_text` and :data:`DOCKERIGNORE` too: one source for both.

fahr tars the build context itself (:func:`context_tar`): .dockerignore applies as docker applies
it, then every secret path (:func:`secret_component`) is dropped whatever .dockerignore says, and
every file whose first MiB holds a credential (:mod:`fahr_core.secrets`), as it is read into the tar.

An unchanged project is not rebuilt (:func:`build`): the image carries, as a label, the
:func:`fingerprint` of what it was built from (the files that tar holds, the Dockerfile, the ids of
its base images, fahr's version), and a fit whose fingerprint equals it uses the image as it is. A
file is hashed only when its stat changed since the last run (:class:`ContextHashes`, a cache in
``$XDG_CACHE_HOME/fahr``), so an unchanged data folder costs a walk of ``lstat`` calls.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fahr_core import __version__, ui
from fahr_core.errors import BuildError, EnvironmentProblem, FahrError, UsageError
from fahr_core.jobs import BuildContext, ImageRef
# The secret rule lives in fahr_core.secrets; is_secret and secret_component stay importable from here.
from fahr_core.secrets import (ALLOW_FILE, HEAD_BYTES, SCANNER, ContentRule, is_secret,  # noqa: F401
                                parse_allowed, scan, secret_component)
from fahr_core.values import StashKey

SUPPORTED_SUFFIXES = (".py", ".ipynb")

#: Installed in notebook images, in their own layer (cached across projects).
NOTEBOOK_REQUIREMENTS = ("papermill>=2.6,<3", "ipykernel>=6.29,<8")

DOCKERIGNORE = """\
# Written by fahr: what stays out of the training image's build context.
# Whatever this file says, fahr never sends credentials, at any depth: .git, .env, .env.*, *.env,
# .envrc, .aws, .ssh, .netrc, cloud, ML-tool and registry logins, ssh private keys, *.pem, *.key,
# their backups (~, .bak, …), and any file holding a private key or API token (fahr's README:
# "No secret goes into an image"; .fahr-allow-secrets lets in one that only looks like one).
.git
.gitignore
.venv
venv
.env
.env.*
.aws
.ssh
*.pem
*.key
id_rsa
.netrc
**/__pycache__
**/*.pyc
.pytest_cache
.mypy_cache
.ruff_cache
.ipynb_checkpoints
checkpoints
.fahr
"""

# The default of FAHR_EXECUTION_ENVIRONMENT baked into the generated image: the contract the image
# follows. fahr's drivers set their own name at launch; any other SageMaker runner (the SDK's local
# mode, `docker run IMAGE train`) leaves this one, so a script that saves to /opt/ml/model when
# the variable is set does so under every runner.
DEFAULT_EXECUTION_ENVIRONMENT = "sagemaker"


def _source(module: str) -> str:
    from importlib import resources

    return resources.files("fahr_core").joinpath(f"{module}.py").read_text(encoding="utf-8")


def entrypoint_program(script_name: str) -> str:
    """The Python program of the generated image's entrypoint, run as ``python -c PROGRAM SCRIPT``.

    :mod:`fahr_core.launcher`; for a notebook, :mod:`fahr_core.notebook_runner` followed by the
    launcher (one copy of the start-up: SIGTERM, the host variables).
    """
    launcher = _source("launcher")
    if script_name.endswith(".ipynb"):
        return _source("notebook_runner") + "\n\n" + launcher
    return launcher


def dockerfile_text(script_name: str, base_image: str, has_requirements: bool) -> str:
    """The Dockerfile fahr generates for a training script or notebook (also the templates')."""
    check_base_image(base_image)
    notebook = script_name.endswith(".ipynb")
    runner = ""
    if notebook:
        pins = " ".join(f'"{r}"' for r in NOTEBOOK_REQUIREMENTS)
        runner = (
            "# The notebook runner: papermill executes the notebook headless on an IPython kernel.\n"
            f"RUN pip install {pins}\n"
        )
    deps = (
        "# Dependencies first, in their own layer: editing the code does not reinstall them.\n"
        "COPY requirements.txt ./\n"
        "RUN pip install -r requirements.txt\n"
        if has_requirements
        else "# Add a requirements.txt beside the script to install dependencies here.\n"
    )
    entry = json.dumps(["python", "-c", entrypoint_program(script_name), script_name])
    if notebook:
        entry_comment = (
            "# Exec form: the runner is PID 1 and receives SIGTERM on stop. The program is fahr's\n"
            "# fahr_core/notebook_runner.py followed by fahr_core/launcher.py: it exports the host\n"
            "# variables (fahr's docs/multi-host.md), types the hyperparameters like the defaults of the\n"
            "# notebook's `parameters` cell, runs it with papermill, saves the executed notebook to\n"
            "# /opt/ml/output/data/ and turns a failing cell's error into /opt/ml/output/failure.\n"
        )
    else:
        entry_comment = (
            "# Exec form: the training process is PID 1 and receives SIGTERM on stop. The program is\n"
            "# fahr's fahr_core/launcher.py: it exports the host variables (FAHR_HOSTS, MASTER_ADDR,\n"
            "# NODE_RANK, ...: fahr's docs/multi-host.md), then runs the script as `python SCRIPT` would.\n"
        )
    return (
        f"{GENERATED_MARK} {__version__} for {script_name}. Edit freely: fahr never overwrites\n"
        "# it without --regenerate-dockerfile. `docker run IMAGE train` trains (the SageMaker contract).\n"
        f"FROM {base_image}\n"
        "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 \\\n"
        "    PIP_DISABLE_PIP_VERSION_CHECK=1\n"
        "# The contract this image follows, for runners that do not set it: fahr's drivers set\n"
        "# their own name (local, sagemaker, …) at launch.\n"
        f"ENV FAHR_EXECUTION_ENVIRONMENT={DEFAULT_EXECUTION_ENVIRONMENT}\n"
        "WORKDIR /opt/program\n"
        f"{runner}"
        f"{deps}"
        "COPY . .\n"
        f"{entry_comment}"
        f"ENTRYPOINT {entry}\n"
        'CMD ["train"]\n'
    )


#: The file name that makes a folder a container of the user's own (``fahr fit DIR``).
DOCKERFILE = "Dockerfile"

_WHAT = "pass a train.py, a notebook (.ipynb), or a folder holding your own Dockerfile"


def check_artifact(path: Path) -> Path:
    """The training artifact, absolute, or a :class:`UsageError` saying what is wrong.

    A script or notebook is returned resolved. A container of the user's own, given as its folder
    or as its ``Dockerfile``, is returned as ``<folder, resolved>/Dockerfile`` (the Dockerfile
    itself is not resolved: a link named Dockerfile stays in its folder); see :func:`is_container`.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"training artifact {str(path)!r} does not exist; {_WHAT}")
    if path.is_dir():
        return _container_folder(path)
    if not path.is_file():
        raise UsageError(f"training artifact {str(path)!r} is not a file or a folder; {_WHAT}")
    if path.name == DOCKERFILE:
        # Pointing at the Dockerfile is choosing it, even beside a train.py.
        _read_dockerfile(path)  # a one-line error now for one that cannot be read
        return path.parent.resolve() / DOCKERFILE
    if path.suffix not in SUPPORTED_SUFFIXES:
        raise UsageError(
            f"{path.name}: a training artifact must be a Python script (.py) or a notebook (.ipynb), "
            f"or a folder holding a Dockerfile (or that Dockerfile); got {path.suffix or 'no suffix'!r}"
        )
    if path.suffix == ".ipynb":
        _check_notebook(path)
    return path.resolve()


def is_container(artifact: Path) -> bool:
    """Whether a checked artifact (:func:`check_artifact`) is a container of the user's own."""
    return Path(artifact).name == DOCKERFILE


def _container_folder(folder: Path) -> Path:
    """``fahr fit DIR``: DIR's Dockerfile, or a one-line error saying what to pass instead."""
    dockerfile = folder / DOCKERFILE
    if not dockerfile.exists() and not dockerfile.is_symlink():
        scripts = [name for name in ("train.py", "train.ipynb") if (folder / name).is_file()]
        if scripts:
            # A folder is a container only when it has a Dockerfile: the script was meant.
            raise UsageError(f"{folder} has no Dockerfile; to train its {scripts[0]} pass the script: "
                             f"fahr fit {folder / scripts[0]}")
        raise UsageError(f"{folder} has no Dockerfile; pass a train.py or a notebook (.ipynb), "
                         "or add a Dockerfile whose image has a 'train' program on its PATH")
    text = _read_dockerfile(dockerfile)
    if text.startswith(GENERATED_MARK):
        # fahr wrote it for a script: building it as a container would give the same image another
        # model tag (parent/folder instead of folder/script).
        match = re.match(rf"{re.escape(GENERATED_MARK)} \S+ for (.+?)\. ", text)
        script = folder / match.group(1) if match else folder / "train.py"
        raise UsageError(f"{dockerfile} was written by fahr for a script: pass the script, fahr fit {script} "
                         f"(or pass {dockerfile} itself to build it as your own container)")
    return folder.resolve() / DOCKERFILE


def _check_notebook(path: Path) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path.name} is not a notebook: it is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise UsageError(f"{path.name} is not a Jupyter notebook (no 'cells' list)")
    if data.get("nbformat", 4) < 4:
        raise UsageError(f"{path.name} is nbformat {data.get('nbformat')}; save it as nbformat 4")


GENERATED_MARK = "# Written by fahr"

# Docker's image reference grammar (the distribution project's reference package):
# [HOST[:PORT]/]PATH[:TAG][@DIGEST], path components lowercase. ASCII only, and fullmatch: `$`
# would accept a trailing newline, which is exactly what must not reach a FROM line.
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(
    rf"(?P<name>{_NAME})(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    re.ASCII,
)


def image_reference_problem(value: object) -> str | None:
    """Why ``value`` is not a Docker image reference (``NAME[:TAG][@DIGEST]``), or None if it is one."""
    match = _REFERENCE.fullmatch(value) if isinstance(value, str) else None
    if match is None or len(match.group("name")) > 255:
        return ("is not a Docker image reference: write [REGISTRY[:PORT]/]NAME[:TAG][@DIGEST], "
                "lowercase names, no spaces, e.g. python:3.11-slim")
    return None


def check_base_image(base_image: str) -> str:
    """``base_image``, or a :class:`UsageError`: it is written into a FROM line."""
    problem = image_reference_problem(base_image)
    if problem:
        raise UsageError(f"base image {base_image!r} {problem}")
    return base_image


def prepare_context(artifact: Path, model_tag: str, base_image: str, overwrite: bool,
                    base_image_set: bool = False) -> BuildContext:
    """Write the Dockerfile (and a .dockerignore) when the artifact's folder has none.

    An existing Dockerfile is the user's: it is used as it is. With ``overwrite`` it is
    regenerated, and one that fahr did not write is first kept as ``Dockerfile.bak`` (a
    Dockerfile that is a symbolic link is kept as that link, never read or written through).
    ``base_image_set``: the user chose a base image for this run (warn when the Dockerfile in
    use starts from another).
    """
    check_base_image(base_image)
    folder = artifact.parent
    dockerfile = folder / "Dockerfile"
    ignore = folder / ".dockerignore"
    if is_container(artifact):
        # The user's own container: built as it is, never written; nothing here is fahr's.
        if overwrite:
            raise UsageError(regenerate_refused(artifact))
        text = _read_dockerfile(dockerfile)
        if base_image_set and f"FROM {base_image}\n" not in text:
            ui.warn(f"config base_image={base_image} is not used: {dockerfile} is your own container's "
                    "Dockerfile, built as it is")
        return BuildContext(artifact=artifact, context_dir=folder, dockerfile=dockerfile, model_tag=model_tag,
                            user_container=True)
    if dockerfile.exists() and not overwrite:
        text = _read_dockerfile(dockerfile)  # also refuses a folder or a pipe called Dockerfile
        if base_image_set and f"FROM {base_image}\n" not in text:
            ui.warn(f"config base_image={base_image} is not used: {dockerfile} has its own FROM; "
                    "pass --regenerate-dockerfile to regenerate it")
        return BuildContext(artifact=artifact, context_dir=folder, dockerfile=dockerfile, model_tag=model_tag)
    written = [dockerfile.name]
    backup = folder / "Dockerfile.bak"
    if dockerfile.is_symlink():
        # Moving the link itself: its target (maybe outside the project) is neither read nor written.
        _guard_write(backup, lambda: os.replace(dockerfile, backup))
        ui.warn(f"your Dockerfile (a symbolic link) is kept as {backup}")
    elif dockerfile.exists():
        current = _read_dockerfile(dockerfile)
        if not current.startswith(GENERATED_MARK):
            _write_atomically(backup, current)
            ui.warn(f"your Dockerfile is kept as {backup}")
    _write_atomically(dockerfile, dockerfile_text(artifact.name, base_image, (folder / "requirements.txt").is_file()))
    if not ignore.exists():
        _write_atomically(ignore, DOCKERIGNORE)
        written.append(ignore.name)
    ui.info(f"wrote {' and '.join(written)} in {folder} (edit freely; fahr keeps your changes)")
    return BuildContext(artifact=artifact, context_dir=folder, dockerfile=dockerfile, model_tag=model_tag)


def regenerate_refused(dockerfile: Path) -> str:
    """The one-line error of ``--regenerate-dockerfile`` with a container of the user's own."""
    return (f"--regenerate-dockerfile: {dockerfile} is your own container's Dockerfile, which fahr "
            "builds as it is and never rewrites; drop the flag (it is for the Dockerfile fahr "
            "writes beside a train.py)")


_DOCKERFILE_MAX = 1024 * 1024  # far more than any Dockerfile: a bigger "Dockerfile" is no Dockerfile
_ALLOW_MAX = 1024 * 1024  # and than any list of files in .fahr-allow-secrets


def _read_dockerfile(path: Path) -> str:
    """The text of the project's Dockerfile, or a one-line error: a folder, a pipe or a device
    under that name must neither crash fahr nor hang it, and a link is followed only as the engine
    follows it (:func:`_dockerfile_links`): what fahr reads is what the engine will build."""
    real = path.parent / _dockerfile_links(path.parent, path.name)[-1]
    data = _read_project_file(path, _DOCKERFILE_MAX, "put the Dockerfile there", "a Dockerfile", real=real)
    return data.decode("utf-8", errors="replace")


def _read_project_file(path: Path, limit: int, instead: str, kind: str, real: Path | None = None) -> bytes:
    """The bytes of a small file of the project (``kind``, at most ``limit`` bytes), read at
    ``real`` (a link's file, not followed further) or at ``path`` (followed), or a one-line error
    naming ``path`` (``instead`` says what to do with a folder or pipe there)."""
    try:
        data = _read_regular(real or path, limit, follow=real is None)
    except _NotAFile:
        raise UsageError(f"{path} is not a file; remove it, or {instead}") from None
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror}); fix it or remove it") from None
    if len(data) > limit:
        raise UsageError(f"{path} is larger than {limit // 1024} KiB: it is not {kind}")
    return data


def _dockerfile_links(root: Path, relative: str) -> list[str]:
    """The symbolic links the Dockerfile ``relative`` (inside the build context ``root``) leads
    through, then the path it names: all relative to ``root``, ``/``-separated.

    The engine reads the Dockerfile inside the context it was sent, following links only within
    it (an absolute target is taken from the context's top): a link that leads out of ``root``, or
    an absolute one, makes it fail late with "Cannot locate specified Dockerfile". Here it is one
    line, before anything is built. A part that does not exist ends the walk: reading says so.
    """
    todo = [p for p in relative.split("/") if p not in ("", ".")]
    done: list[str] = []
    links: list[str] = []

    def refuse(why: str) -> UsageError:
        return UsageError(f"{root / relative} is a symbolic link that {why} ({links[-1]} -> {target}); the engine "
                          f"reads a Dockerfile only inside {root}: put the file there (a relative link to a file "
                          "there works too)")

    while todo:
        part = todo.pop(0)
        if part == "..":
            if not done:
                raise refuse(f"leads out of {root}")
            done.pop()
            continue
        here = "/".join(done + [part])
        try:
            if not stat.S_ISLNK(os.lstat(root / here).st_mode):
                done.append(part)
                continue
            target = os.readlink(root / here)
        except OSError:
            done.append(part)
            continue
        links.append(here)
        if os.path.isabs(target):
            raise refuse("leads to an absolute path")
        if len(links) > 40:
            raise refuse("goes round in a loop")
        todo = [p for p in target.split("/") if p not in ("", ".")] + todo
    return links + ["/".join(done)]


def _write_atomically(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all, never through a symlink planted in the folder.

    The temporary file is created by ``mkstemp`` (O_EXCL, a random name: no planted link can be
    opened in its place), then renamed over ``path``: a rename replaces a link at ``path``, it
    does not write to the link's target.
    """

    def write() -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".fahr-tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                os.fchmod(out.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 would surprise
                out.write(text)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    _guard_write(path, write)


def _guard_write(path: Path, write) -> None:
    try:
        write()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise EnvironmentProblem(f"cannot write {path}: {exc.strerror}; free some space and retry") from None
        raise UsageError(f"cannot write {path}: {exc.strerror}; make {path.parent} writable, "
                         "or write a Dockerfile there yourself") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _ignore_patterns(context_dir: Path) -> list[str]:
    patterns = []
    ignore = context_dir / ".dockerignore"
    if ignore.is_file():
        for line in ignore.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line)
    return patterns


@dataclass(frozen=True)
class ContextFiles:
    """What a build context holds: ``paths`` are sent; ``kept_out`` are the secrets fahr withheld
    that .dockerignore would have let through (folders end with ``/``). Both relative, ``/``-separated."""

    paths: list[str]
    kept_out: list[str]


def context_files(context_dir: Path, dockerfile: str = "Dockerfile") -> ContextFiles:
    """Walk ``context_dir`` as ``docker build`` would, never following a symlink, never entering a secret.

    .dockerignore is applied with the Docker SDK's matcher (the Dockerfile and .dockerignore are
    always sent, as docker does); then every path one of whose components is a secret
    (:func:`secret_component`) is dropped, unconditionally. The secret rule is fahr's own code,
    not a pattern handed to a matcher, so that no ``!`` line can bring a secret back.
    """
    from docker.utils.build import PatternMatcher

    root = str(context_dir)
    matcher = PatternMatcher(_ignore_patterns(context_dir) + [f"!{dockerfile}"])
    exceptions = [p.cleaned_pattern + "/" for p in matcher.patterns if p.exclusion]
    paths: list[str] = []
    kept_out: list[str] = []

    def visit(parts: list[str]) -> None:
        folder = os.path.join(root, *parts)
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as exc:
            raise UsageError(f"cannot read {folder} in the build context: {exc.strerror}; "
                             "make it readable or add it to .dockerignore") from None
        for entry in entries:
            here = parts + [entry.name]
            relative = "/".join(here)
            is_dir = entry.is_dir(follow_symlinks=False)
            excluded = matcher.matches(relative)
            # An excluded folder is still entered when a `!` line may bring back something inside.
            enter = is_dir and (not excluded or any(e.startswith(relative + "/") for e in exceptions))
            if secret_component(here) is not None:
                if not excluded or enter:
                    kept_out.append(relative + "/" if is_dir else relative)
                continue
            if not excluded:
                paths.append(relative)
            if enter:
                visit(here)

    visit([])
    return ContextFiles(paths=paths, kept_out=kept_out)


def warn_kept_out(files: ContextFiles, rule: ContentRule | None = None) -> None:
    """One line naming the secrets kept out, if any: by name (:func:`context_files`) and, each with
    the kind of credential it holds, by content (``rule.found``)."""
    found = rule.found if rule is not None else {}
    kept = sorted([(path, "") for path in files.kept_out] + list(found.items()),
                  key=lambda item: item[0].rstrip("/").split("/"))  # the walk's order
    if kept:
        count = len(kept)
        # A name with a newline or other control character is quoted: the line stays one line.
        shown = ", ".join((path if path.isprintable() else repr(path)) + (f" ({kind})" if kind else "")
                          for path, kind in kept[:5]) + (", …" if count > 5 else "")
        hint = f"; list a file in {ALLOW_FILE} if what it seems to hold is no secret" if found else ""
        ui.warn(f"kept {count} secret file{'s' if count != 1 else ''} out of the image: {shown}{hint}")


def content_rule(context: BuildContext) -> ContentRule:
    """The content half of the secret rule for ``context``. The files a build cannot do without
    are required, a credential in one an error rather than a file left out: the Dockerfile (the
    file it links to, if a link) and, for a script, the script and the requirements.txt the
    generated Dockerfile installs."""
    dockerfile = _dockerfile_in_context(context)
    required = [dockerfile, _dockerfile_links(context.context_dir, dockerfile)[-1]]  # a link's file too
    if not context.user_container:
        needed = ["requirements.txt"]
        if context.artifact.is_relative_to(context.context_dir):
            needed.append(context.artifact.relative_to(context.context_dir).as_posix())
        for name in needed:
            required.append(name)
            # The file a link of that name leads to in the context, too: kept out, it would leave
            # the image a dangling link, and the job a "No such file" at run time. (A link that
            # leads out of the context brings nothing in: not the scan's concern.)
            with contextlib.suppress(UsageError):
                required.append(_dockerfile_links(context.context_dir, name)[-1])
    allow = context.context_dir / ALLOW_FILE
    allowed = frozenset()
    if os.path.lexists(allow):
        data = _read_project_file(allow, _ALLOW_MAX, "list paths there, one a line", "a list of paths")
        allowed = parse_allowed(data.decode("utf-8", "surrogateescape"))
    return ContentRule(allowed=allowed, required=tuple(required))


def _check_required(root: Path, stats: list[tuple[str, os.stat_result]], hashes: ContextHashes,
                    rule: ContentRule) -> None:
    """Refuse now, before anything is said to be built, a credential in a file the build needs
    (scanned as the fingerprint scans it: what is read here is not read again)."""
    for relative, st in stats:
        if relative in rule.required and stat.S_ISREG(st.st_mode):
            try:
                _, kind = hashes.scanned(relative, root / relative)
            except OSError as exc:
                raise _unreadable(root / relative, exc) from None
            rule.keeps_out(relative, kind)


def context_tar(context: BuildContext) -> IO[bytes]:
    """The build context as a tar stream (a temporary file): :func:`context_files`, symlinks as
    symlinks, no file holding a credential (:class:`ContentRule`).

    Prints one line naming the secrets it kept out, if any.
    """
    root = context.context_dir
    files = context_files(root, _dockerfile_in_context(context))
    rule = content_rule(context)
    tar, _ = _context_tar(root, files.paths, None, rule)
    warn_kept_out(files, rule)
    return tar


def _context_tar(root: Path, paths: list[str], hashes: ContextHashes | None,
                 rule: ContentRule | None = None) -> tuple[IO[bytes], list[list]]:
    """The tar of ``paths`` and, with ``hashes``, its entries (:func:`context_entries`), each file
    hashed as it is read into the tar (once: what the tar holds is what the fingerprint says).

    A file is scanned (its first MiB, read before any of it goes into the tar) unless ``hashes``
    knows it unchanged; the files ``rule`` keeps out are neither in the tar nor in the entries.
    """
    import tarfile

    rule = rule if rule is not None else ContentRule()
    entries: list[list] = []
    digests: dict[str, tuple[str, str]] = {}  # this tar's regular files' hashes and verdicts, for its hard links
    out = tempfile.TemporaryFile()
    try:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for relative in paths:
                entry = _add(tar, root / relative, relative, rule, hashes, digests)
                if entry is not None:
                    entries.append(entry)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out, entries


def _check_dockerfile_sent(context: BuildContext, files: ContextFiles) -> None:
    """A one-line error when the Dockerfile is a link to a file the context does not hold (kept
    out by .dockerignore or the secret rule): the engine, which follows it in the context, could
    not find it."""
    if not context.dockerfile.is_relative_to(context.context_dir):
        return
    sent = set(files.paths)
    for relative in _dockerfile_links(context.context_dir, _dockerfile_in_context(context)):
        if relative not in sent:
            raise UsageError(f"{context.dockerfile} is a symbolic link to {relative}, which is not sent to the "
                             "engine (.dockerignore or fahr's secret rule keeps it out), so the engine cannot "
                             "read it: link to a file that is sent, or put the Dockerfile itself there")


def _dockerfile_in_context(context: BuildContext) -> str:
    """The Dockerfile's path inside the context, as the engine reads it."""
    if context.dockerfile.is_relative_to(context.context_dir):
        return context.dockerfile.relative_to(context.context_dir).as_posix()
    return context.dockerfile.name


def _unreadable(path: Path, exc: OSError) -> UsageError:
    return UsageError(f"cannot read {path} in the build context: {exc.strerror or exc}; "
                      "make it readable or add it to .dockerignore")


class _HashingReader:
    """A file read through to tarfile, hashing the bytes it hands over: first ``head`` (what was
    already read of it, for the secret scan), then the rest of ``handle``."""

    def __init__(self, handle, head: bytes = b"") -> None:
        self.handle = handle
        self.head = head
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        if self.head:
            # tarfile expects whole blocks: the head's rest and the file's next bytes together.
            take = len(self.head) if size < 0 else min(size, len(self.head))
            data, self.head = self.head[:take], self.head[take:]
            if size < 0 or take < size:
                data += self.handle.read(-1 if size < 0 else size - take)
        else:
            data = self.handle.read(size)
        self.sha.update(data)
        return data


def _add(tar, path: Path, relative: str, rule: ContentRule, hashes: ContextHashes | None = None,
         digests: dict[str, tuple[str, str]] | None = None) -> list | None:
    """Add one path to the tar; its entry (:func:`context_entries`) when ``hashes`` is given.

    A regular file ``rule`` keeps out for its content is not added (None); one that ``hashes``
    knows unchanged is judged by its recorded scan, any other by its first MiB, read before the tar
    gets a byte of it."""
    try:
        info = tar.gettarinfo(str(path), arcname=relative)  # lstat: a symlink stays a symlink
        if info is None:
            return None  # a socket: docker skips them too
        info.mtime = int(info.mtime)  # tarfile cannot write negative or fractional times
        mode = stat.S_IMODE(info.mode)
        if info.islnk():  # a hard link to a file already in the tar: the same content, the same verdict
            digest, kind = (digests or {}).get(info.linkname, ("", ""))
            if rule.keeps_out(relative, kind):  # (its first name may be allowed, this one is not)
                return None
            tar.addfile(info)
            return [relative, "f", mode, digest]
        if not info.isreg():
            tar.addfile(info)
            return [relative, *_special(info, mode)]
        # O_NOFOLLOW: a file swapped for a symlink since the walk is refused, not followed.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as data:
            before = os.fstat(data.fileno())
            known = hashes.known(relative, before) if hashes is not None and before.st_size == info.size else None
            if known is not None:
                digest, kind = known
                if rule.keeps_out(relative, kind):
                    _forget(tar, before, relative)
                    return None
                tar.addfile(info, data)
            else:
                started = time.time_ns()
                head = data.read(min(HEAD_BYTES, info.size))
                kind = scan(head)
                if rule.keeps_out(relative, kind):
                    _forget(tar, before, relative)
                    return None
                reader = _HashingReader(data, head)
                tar.addfile(info, reader)
                digest = reader.sha.hexdigest()
                # Remembered unless the file changed since the lstat (or nothing remembers).
                if hashes is not None and before.st_size == info.size:
                    hashes.remember(relative, before, os.fstat(data.fileno()), digest, started, kind)
        if digests is not None:
            digests[relative] = (digest, kind)
        return [relative, "f", mode, digest] if hashes is not None else None
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _forget(tar, st: os.stat_result, relative: str) -> None:
    """Undo tarfile's note of a file left out of the tar (``gettarinfo`` records every inode it
    sees): another hard link to it must go in as a file of its own (and be judged as one), not
    as a link to a member the tar does not hold."""
    key = (st.st_ino, st.st_dev)
    if tar.inodes.get(key) == relative:
        del tar.inodes[key]


def _special(info, mode: int) -> list:
    """The entry of a tar member that is neither a regular file nor a hard link."""
    if info.isdir():
        return ["d", mode, ""]
    if info.issym():
        return ["l", mode, info.linkname]
    if info.ischr() or info.isblk():
        return ["c" if info.ischr() else "b", mode, f"{info.devmajor},{info.devminor}"]
    return ["p", mode, ""]  # a FIFO


# -- skipping unchanged builds ---------------------------------------------------------------------

#: The image label recording what the image was built from (:func:`fingerprint`): an image whose
#: label equals the fingerprint of the project now is what a build would make, and is not rebuilt.
FINGERPRINT_LABEL = "fahr.context-fingerprint"
#: The labels of every image fahr builds: the model tag it was built for, and fahr's version. An
#: image under a project's tag without them is not fahr's, and fahr never removes it.
MODEL_TAG_LABEL = "fahr.model_tag"
VERSION_LABEL = "fahr.version"
_FINGERPRINT_FORMAT = 1

#: Set in ``config.stash`` by ``fahr fit --rebuild``: build even when the fingerprint matches.
REBUILD: StashKey[bool] = StashKey()

# A file hashed less than this after its last change is "racy": a write in the same tick of a
# coarse filesystem clock would leave its stat unchanged, so its hash is not trusted next run.
_RACY_NS = 2_000_000_000


def fahr_cache_dir() -> Path:
    """fahr's cache folder: ``$XDG_CACHE_HOME/fahr``, else ``~/.cache/fahr``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fahr"


def hash_cache_file(context_dir: Path) -> Path:
    """Where the content hashes of one build context are kept between runs."""
    key = hashlib.sha256(os.path.abspath(context_dir).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return fahr_cache_dir() / _CONTEXTS / f"{key}.json"


_CONTEXTS = "contexts"
# The only names fahr writes in its contexts folder: records, and the temporary files they are
# written to (mkstemp's names, as an older fahr made them, and this one's). Nothing else there,
# nor anything that is not a regular file of this user, is ever removed.
_RECORD_NAME = re.compile(r"[0-9a-f]{32}\.json")
_TEMP_NAME = re.compile(r"\.hashes\.[0-9a-z_]{8,16}\.tmp")
#: A record is about 150 bytes a file: a bigger one (over 400,000 files) is ignored, not read.
_RECORD_MAX = 64 * 1024**2


def _cache_folder(create: bool, warn: bool = False) -> int | None:
    """A descriptor of the folder of :func:`hash_cache_file`, or None when there is none to use.

    ``fahr`` and ``contexts`` are opened one by one without following a link (``O_NOFOLLOW``,
    relative to the folder above): a link at either name may lead to a folder of the user's, and
    fahr must neither prune nor write there. Both must be folders of this user, and ``contexts``
    writable by no one else: records planted by another user would decide which files are not
    read again. Otherwise the cache is not used (with ``warn``, one line says so), and builds work
    as without it. The folder above (``$XDG_CACHE_HOME``) is the user's.
    """
    cache = fahr_cache_dir()
    try:
        if create:
            os.makedirs(cache.parent, exist_ok=True)
        fd = os.open(cache.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    where, problem = cache.parent, None
    try:
        for name in (cache.name, _CONTEXTS):
            where = where / name
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=fd)  # it lists the projects' files
            try:
                inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                # Nothing there (no cache yet, or it cannot be made: a read-only disk) is no problem.
                problem = (_not_a_cache(os.stat(name, dir_fd=fd, follow_symlinks=False), name)
                           or f"cannot be opened ({exc.strerror})")
                break
            os.close(fd)
            fd = inner
            problem = _not_a_cache(os.fstat(fd), name)
            if problem:
                break
        else:
            return fd
    except OSError:
        pass
    os.close(fd)
    if warn and problem:
        if problem.startswith("is a symbolic link"):
            ui.warn(f"{where} is a symbolic link, not fahr's cache folder: fahr neither reads nor writes "
                    "through it, and hashes the build context's files anew at every fit; remove the link")
        else:
            fix = f"chmod go-w {where}" if "written" in problem else "remove it"
            ui.warn(f"{where} {problem}: fahr does not use it as its cache, and hashes the build context's "
                    f"files anew at every fit; {fix}")
    return None


def _not_a_cache(st: os.stat_result, name: str) -> str | None:
    """Why the ``lstat``/``fstat`` ``st`` of fahr's cache folder ``name`` rules it out, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if st.st_uid != os.geteuid():
        return "belongs to another user"
    if name == _CONTEXTS and st.st_mode & 0o022:
        return "can be written by other users"
    return None


class _NotAFile(Exception):
    """What :func:`_read_regular` found is a folder, a pipe, a device or a socket (or, when an owner
    was asked for, a file of another user)."""


def _read_regular(path, limit: int, *, dir_fd: int | None = None, follow: bool = True,
                  owner: int | None = None) -> bytes:
    """At most ``limit + 1`` bytes of the regular file at ``path`` (more than ``limit``: too big).

    A pipe or a device under that name (or, with ``follow``, a link to one, such as /dev/zero)
    raises :class:`_NotAFile` at once, never blocking, never reading without end; without
    ``follow`` a link raises ``OSError`` (ELOOP). ``OSError`` when it cannot be opened or read.
    With ``owner``, a file of another user raises :class:`_NotAFile` too.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (owner is not None and st.st_uid != owner):
            raise _NotAFile(path)
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(limit + 1)
    finally:
        os.close(fd)


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class ContextHashes:
    """The sha256 of each file of a build context and what the secret scan found in it
    (:func:`fahr_core.secrets.scan`, "" for nothing), remembered between runs by its stat.

    A file whose size, mtime, ctime, inode and device are those recorded when it was last hashed
    is not read again: an unchanged folder costs a walk of ``lstat`` calls. The record is one JSON
    file per context folder in :func:`hash_cache_file`, replaced atomically; one that cannot be
    read or makes no sense (not a regular file, a link, another user's, too big, not JSON) is
    ignored (and rewritten), never an error: it is only a cache. Every access goes through
    :func:`_cache_folder`.
    """

    def __init__(self, context_dir: Path) -> None:
        self.context_dir = os.path.abspath(context_dir)
        self.file = hash_cache_file(Path(self.context_dir))
        self._old = self._load()
        self._new: dict[str, list] = {}
        #: The files read and hashed in this run (relative paths).
        self.hashed: list[str] = []

    def _load(self) -> dict[str, list]:
        folder = _cache_folder(create=False, warn=True)
        if folder is None:
            return {}
        try:
            text = _read_regular(self.file.name, _RECORD_MAX, dir_fd=folder, follow=False, owner=os.geteuid())
            if len(text) > _RECORD_MAX:
                return {}
            data = json.loads(text)
            files = data["files"]
            # A verdict of another scan (an older fahr's detectors) is no verdict: read afresh.
            if (data.get("format") != _CACHE_FORMAT or data.get("context") != self.context_dir
                    or data.get("scanner") != SCANNER or not isinstance(files, dict)):
                return {}
            for entry in files.values():
                if not (isinstance(entry, list) and len(entry) == 8 and isinstance(entry[5], str)
                        and isinstance(entry[7], str) and all(type(n) is int for n in entry[:5])):
                    return {}
            return files
        except Exception:  # missing, unreadable, not a file, not JSON, not ours: start afresh
            return {}
        finally:
            os.close(folder)

    def known(self, relative: str, st: os.stat_result) -> tuple[str, str] | None:
        """The remembered hash and scan verdict of the file whose ``fstat`` is ``st``, or None when
        it must be read."""
        entry = self._new.get(relative)  # hashed earlier in this run: trusted while its stat holds
        if entry is None:
            entry = self._old.get(relative)
            if entry is None or entry[6]:  # never hashed, or hashed too soon after a change
                return None
        if entry[:5] != _stat_key(st):
            return None
        self._new[relative] = entry
        return entry[5], entry[7]

    def remember(self, relative: str, before: os.stat_result, after: os.stat_result, digest: str,
                 started_ns: int, kind: str) -> None:
        """Record the hash and scan verdict of a file read from ``before`` to ``after`` (its fstat
        then and at the end)."""
        self.hashed.append(relative)
        if _stat_key(before) != _stat_key(after):
            self._new.pop(relative, None)  # it changed while read: the next run reads it again
            return
        racy = max(before.st_mtime_ns, before.st_ctime_ns) >= started_ns - _RACY_NS
        self._new[relative] = [*_stat_key(before), digest, 1 if racy else 0, kind]

    def scanned(self, relative: str, path: Path) -> tuple[str, str]:
        """The sha256 of a regular file of the context and the kind of credential its first MiB
        holds ("" for none), in one read, done only when its stat changed."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            before = os.fstat(handle.fileno())
            known = self.known(relative, before)
            if known is not None:
                return known
            started = time.time_ns()
            head = handle.read(HEAD_BYTES)
            kind = scan(head)
            sha = hashlib.sha256(head)
            while chunk := handle.read(1 << 20):
                sha.update(chunk)
            digest = sha.hexdigest()
            self.remember(relative, before, os.fstat(handle.fileno()), digest, started, kind)
        return digest, kind

    def digest(self, relative: str, path: Path) -> str:
        """The sha256 of a regular file of the context (read only when its stat changed)."""
        return self.scanned(relative, path)[0]

    def save(self) -> None:
        """Keep this run's hashes for the next (only when they changed); never an error.

        The record of a folder no fit has used for :data:`_CACHE_DAYS` days is removed then: the
        folder is likely gone, and at worst its files are hashed once more. The record is written
        to a new temporary file (``O_EXCL``) renamed over it, in the folder :func:`_cache_folder`
        opened: a link or a pipe at the record's name is replaced, never written through.
        """
        unchanged = self._new == self._old
        folder = _cache_folder(create=not unchanged)
        if folder is None:
            return  # no usable cache folder: the next run hashes again, nothing worse
        name = self.file.name
        try:
            if unchanged:
                if self._old:
                    os.utime(name, dir_fd=folder, follow_symlinks=False)  # used: kept from pruning
                return
            _prune(folder)
            data = {"format": _CACHE_FORMAT, "context": self.context_dir, "scanner": SCANNER, "files": self._new}
            tmp = f".hashes.{os.urandom(8).hex()}.tmp"
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=folder)
            try:
                with os.fdopen(out, "w", encoding="utf-8") as handle:
                    json.dump(data, handle, separators=(",", ":"))
                os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=folder)
                raise
        except (OSError, ValueError):
            pass  # a read-only or full cache folder: the next run hashes again, nothing worse
        finally:
            os.close(folder)


_CACHE_DAYS = 30
# 2: each file's entry ends with its secret scan's verdict (records of format 1 are read afresh).
_CACHE_FORMAT = 2


def _prune(folder: int) -> None:
    """Remove, in the folder open as ``folder``, the hash records (and leftover temporary files)
    unused for :data:`_CACHE_DAYS` days: only regular files of this user named as fahr names them."""
    cutoff = time.time() - _CACHE_DAYS * 86400
    with contextlib.suppress(OSError), os.scandir(folder) as scan:
        for entry in scan:
            if not (_RECORD_NAME.fullmatch(entry.name) or _TEMP_NAME.fullmatch(entry.name)):
                continue
            with contextlib.suppress(OSError):
                st = os.stat(entry.name, dir_fd=folder, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mtime < cutoff:
                    os.unlink(entry.name, dir_fd=folder)


def stat_context(root: Path, paths: list[str]) -> list[tuple[str, os.stat_result]]:
    """``lstat`` of each path of :func:`context_files` (sockets left out, as the tar leaves them)."""
    stats = []
    for relative in paths:
        path = root / relative
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise _unreadable(path, exc) from None
        if not stat.S_ISSOCK(st.st_mode):
            stats.append((relative, st))
    return stats


def context_entries(root: Path, stats: list[tuple[str, os.stat_result]], hashes: ContextHashes,
                    rule: ContentRule | None = None) -> list[list]:
    """What the context's tar holds, path by path: ``[path, kind, mode, what]``, where kind is
    ``f`` (a regular file; ``what`` its sha256), ``d`` (folder), ``l`` (symlink; ``what`` its
    target), ``p`` (FIFO), ``c`` or ``b`` (device; ``what`` ``major,minor``). Neither times nor
    owners: the image's content does not depend on them (COPY makes root the owner). The files
    ``rule`` keeps out for their content (scanned as they are hashed) are not there."""
    rule = rule if rule is not None else ContentRule()
    entries = []
    for relative, st in stats:
        path = root / relative
        mode = stat.S_IMODE(st.st_mode)
        try:
            if stat.S_ISREG(st.st_mode):
                digest, kind = hashes.scanned(relative, path)
                if not rule.keeps_out(relative, kind):
                    entries.append([relative, "f", mode, digest])
            elif stat.S_ISDIR(st.st_mode):
                entries.append([relative, "d", mode, ""])
            elif stat.S_ISLNK(st.st_mode):
                entries.append([relative, "l", mode, os.readlink(path)])
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
                entries.append([relative, kind, mode, f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"])
            else:
                entries.append([relative, "p", mode, ""])
        except OSError as exc:
            raise _unreadable(path, exc) from None
    return entries


def dockerfile_images(text: str) -> list[str] | None:
    """The images a Dockerfile builds from, outside itself: each FROM and ``COPY --from`` naming
    neither an earlier stage nor ``scratch``, in order.

    None when what the build starts from cannot be known before it runs: a variable in such a
    name (``FROM $BASE``), or an ``ADD`` of a URL (its content is fetched anew by every build).
    """
    escape = "\\"
    lines = text.splitlines()
    for line in lines:  # parser directives: only at the very top
        directive = re.fullmatch(r"\s*#\s*([A-Za-z]+)\s*=\s*(\S+)\s*", line)
        if not directive:
            break
        if directive.group(1).lower() == "escape":
            escape = directive.group(2)
    instructions: list[str] = []
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and blank lines, also inside a continued instruction
        body = line.rstrip()
        if body.endswith(escape):
            current = (current or "") + body[: -len(escape)] + " "
            continue
        instructions.append((current or "") + body)
        current = None
    if current:
        instructions.append(current)
    stages: set[str] = set()
    images: list[str] = []
    for instruction in instructions:
        words = instruction.split()
        op, args = words[0].upper(), words[1:]
        if op == "FROM":
            names = [a for a in args if not a.startswith("--")]
            if not names:
                return None
            name = names[0]
            if "$" in name:
                return None
            if name.lower() != "scratch" and name.lower() not in stages:
                images.append(name)
            if len(names) >= 3 and names[1].lower() == "as":
                stages.add(names[2].lower())
        elif op == "COPY":
            for arg in args:
                if arg.lower().startswith("--from="):
                    source = arg.split("=", 1)[1]
                    if "$" in source:
                        return None
                    if not source.isdigit() and source.lower() not in stages:
                        images.append(source)
        elif op == "ADD" and any("://" in a or a.startswith("git@") for a in args):
            return None
    return images


def _removed_by_engine(name: str, patterns: list[str]) -> bool:
    """Whether the engine drops ``name`` (.dockerignore or the Dockerfile, at the top of the context)
    from the context it builds: the classic builder removes them when .dockerignore's own
    patterns exclude them, after reading them (docker-py's matcher always keeps .dockerignore in
    the tar, so the patterns are applied here without that exception)."""
    from docker.utils.build import Pattern

    removed = False
    for pattern in map(Pattern, patterns):
        if pattern.dirs and pattern.match(name):
            removed = not pattern.exclusion
    return removed


def fingerprint(*, entries: list[list], dockerfile: str, dockerfile_text: str, bases: list[list[str]],
                model_tag: str, ignore_patterns: list[str] = (), version: str = __version__) -> str:
    """``sha256:…`` of everything a build of the context depends on: the files the tar holds
    (:func:`context_entries`), the Dockerfile (its place and text), the id of each image it builds
    from (``[[name, id], …]`` in the order of :func:`dockerfile_images`), the model tag (the
    build's label) and fahr's version (it writes the build's labels).

    The content of .dockerignore and the Dockerfile does not count when ``ignore_patterns`` (the
    .dockerignore's) make the engine drop them: then a .dockerignore line that keeps nothing new
    out changes nothing (what it keeps out is in ``entries``), and the Dockerfile counts by its text.
    """
    gone = {name for name in (".dockerignore", dockerfile) if _removed_by_engine(name, list(ignore_patterns))}
    if gone:
        entries = [[e[0], "-", 0, ""] if e[0] in gone else e for e in entries]
    record = {
        "format": _FINGERPRINT_FORMAT,
        "fahr": version,
        "model_tag": model_tag,
        "dockerfile": dockerfile,
        "dockerfile_sha256": hashlib.sha256(dockerfile_text.encode("utf-8", "surrogateescape")).hexdigest(),
        "bases": bases,
        "files": entries,
    }
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def _base_ids(api, text: str) -> list[list[str]] | None:
    """``[[name, id], …]`` of :func:`dockerfile_images` on the engine; None when one is not there
    (the build would pull it) or cannot be named."""
    images = dockerfile_images(text)
    if images is None:
        return None
    resolved = []
    for name in images:
        image_id = _image_id(api, name)
        if not image_id:
            return None
        resolved.append([name, image_id])
    return resolved


# -- saying what goes in ---------------------------------------------------------------------------

CONTEXT_WARN_ENV = "FAHR_CONTEXT_WARN_BYTES"
#: A build context bigger than this draws one warning (``FAHR_CONTEXT_WARN_BYTES``; 0: never).
DEFAULT_CONTEXT_WARN_BYTES = 100 * 1024**2


def context_warn_bytes(environ=None) -> int:
    """The size above which fit warns about a big build context (0: never warn)."""
    from fahr_core.config import env_size

    return env_size(CONTEXT_WARN_ENV, DEFAULT_CONTEXT_WARN_BYTES, example="104857600 or 100M",
                    zero="to never warn", environ=environ)


def context_size_warning(stats: list[tuple[str, os.stat_result]], threshold: int) -> str | None:
    """The one line about a build context bigger than ``threshold`` bytes (regular files' sizes),
    naming its biggest top-level folders and files; None when it is not (or ``threshold`` is 0)."""
    total = 0
    tops: dict[str, int] = {}
    for relative, st in stats:
        if stat.S_ISREG(st.st_mode):
            first, sep, _ = relative.partition("/")
            name = first + "/" if sep else first
            tops[name] = tops.get(name, 0) + st.st_size
            total += st.st_size
    if not threshold or total <= threshold:
        return None
    biggest = sorted(tops.items(), key=lambda item: (-item[1], item[0]))[:3]
    # The top three, but not those too small to matter (the biggest is always named).
    shown = [(n if n.isprintable() else repr(n), size) for i, (n, size) in enumerate(biggest)
             if i == 0 or size * 20 >= total]
    listed = ", ".join(f"{name} {ui.size(size)}" for name, size in shown)
    return (f"the build context is {ui.size(total)} ({listed}): it is sent to the engine at every build, "
            f"and a COPY . . puts it all in the image; pass data at run time with --input CHANNEL=PATH, or "
            f"keep it out with the line {shown[0][0]} in .dockerignore (warned above {ui.size(threshold)}: "
            f"{CONTEXT_WARN_ENV})")


_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")
# Pulling FROM failed for want of a registry: an environment problem, not a Dockerfile error.
_UNREACHABLE = re.compile(
    r"dial tcp|no such host|connection refused|i/o timeout|TLS handshake|server misbehaving|"
    r"network is unreachable|Client.Timeout"
)


def build(context: BuildContext, rebuild: bool = False) -> ImageRef:
    """Build ``context`` on the user's engine with live progress; tag it ``MODEL_TAG:latest``.

    Unless ``rebuild``, no build happens when ``MODEL_TAG:latest`` already carries the
    :func:`fingerprint` of the project as it is now (its :data:`FINGERPRINT_LABEL`): that image
    is returned. Content is hashed only for files whose stat changed (:class:`ContextHashes`).
    A context bigger than :func:`context_warn_bytes` draws one warning, built or not.

    The image a build replaces under ``MODEL_TAG:latest`` is removed only when fahr built it
    (:func:`_made_by_fahr`): one the user built or tagged there stays.

    A build that fails (or is interrupted) removes the images its steps committed: the classic
    builder keeps each step's image, and a failed build's last one would stay as a dangling
    ``<none>`` image (``labels`` mark only the final image, so they cannot find it).
    """
    from fahr_core import engine

    api = engine.client().api
    reference = f"{context.model_tag}:latest"
    root = context.context_dir
    dockerfile = _dockerfile_in_context(context)
    threshold = context_warn_bytes()
    files = context_files(root, dockerfile)
    _check_dockerfile_sent(context, files)
    rule = content_rule(context)  # files holding a credential: known once their content is read, below
    stats = stat_context(root, files.paths)
    warning = context_size_warning(stats, threshold)
    if warning:
        ui.warn(warning)
    dockerfile_text = _read_dockerfile(context.dockerfile)
    existing = _inspect(api, reference)
    previous = existing.get("Id", "")
    ours = _made_by_fahr(api, existing, context.model_tag)
    # An image built FROM fahr's carries its labels, the fingerprint too: it is not what fahr built.
    recorded = ((existing.get("Config") or {}).get("Labels") or {}).get(FINGERPRINT_LABEL) if ours else None
    bases = _base_ids(api, dockerfile_text)  # None: unknown before the build, which cannot then be skipped
    hashes = ContextHashes(root)
    _check_required(root, stats, hashes, rule)

    def fingerprint_of(entries: list[list]) -> str:
        return fingerprint(entries=entries, dockerfile=dockerfile, dockerfile_text=dockerfile_text,
                           bases=bases or [], model_tag=context.model_tag,
                           ignore_patterns=_ignore_patterns(root))

    if recorded and previous and bases is not None and not rebuild:
        # The secret scan is part of this: a file newly found holding a credential is not in the
        # entries, so an image built with it is not up to date.
        current = fingerprint_of(context_entries(root, stats, hashes, rule))
        hashes.save()
        if current == recorded:
            warn_kept_out(files, rule)
            ui.info(f"image {reference} is up to date (nothing it is built from changed); not rebuilt")
            return ImageRef(name=context.model_tag, tag="latest", image_id=previous)
    step = ""
    steps = cached = 0
    image_id = ""
    committed: list[str] = []  # short ids of the images this build's steps made or reused
    ui.info(f"building image {reference} from {context.dockerfile}")
    # Before the engine is asked: its errors are about the project. Each file is hashed as it is
    # read into the tar, unless its stat shows the hash already known.
    tar, entries = _context_tar(root, files.paths, hashes, rule)
    hashes.save()
    warn_kept_out(files, rule)
    labels = {MODEL_TAG_LABEL: context.model_tag, VERSION_LABEL: __version__}
    if bases is not None:
        labels[FINGERPRINT_LABEL] = fingerprint_of(entries)
    before = _all_image_ids(api)
    try:
        try:
            stream = api.build(
                fileobj=tar, custom_context=True, dockerfile=dockerfile,
                tag=reference, rm=True, forcerm=True, decode=True, labels=labels,
            )
            for chunk in stream:
                if "error" in chunk or "errorDetail" in chunk:
                    message = " ".join((chunk.get("error") or chunk["errorDetail"].get("message", "")).split())
                    where = f"image build failed at {step or 'the start'}"
                    if step.startswith("step 1/") and _UNREACHABLE.search(message):
                        raise EnvironmentProblem(
                            f"{where}: the base image cannot be pulled ({message}); build or load it "
                            "locally (scripts/ensure-base-image.sh does python:3.11-slim), or set config base_image"
                        )
                    # The step's own output was streamed above: the error stays one line.
                    raise BuildError(f"{where}: {message}")
                text = chunk.get("stream", "")
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                for line in text.splitlines():
                    if not line.strip():
                        continue
                    match = _STEP.match(line)
                    if match:
                        step = f"step {match.group(1)}/{match.group(2)} ({match.group(3)})"
                        steps += 1
                        ui.build_step(line)
                    elif "Using cache" in line:
                        cached += 1
                    else:
                        made = _COMMITTED.match(line)
                        if made:
                            committed.append(made.group(1))
                        ui.build_output(line)
        except FahrError:
            raise
        except Exception as exc:
            from docker import errors as docker_errors

            if isinstance(exc, docker_errors.APIError) and exc.status_code and exc.status_code < 500:
                raise BuildError(f"image build refused by the engine: {exc.explanation or exc}") from exc
            raise EnvironmentProblem(f"image build failed talking to the Docker engine: {exc}") from exc
        finally:
            tar.close()
        image_id = image_id or _image_id(api, reference)
        if not image_id:
            raise BuildError(f"image build of {reference} produced no image; see the output above")
    except BaseException:
        _remove_leftovers(api, committed, before)
        raise
    if steps and cached == steps - 1:  # FROM is never "cached"
        ui.info(f"image {reference} is up to date (every step cached)")
    if previous and previous != image_id and ours:
        # The image this build replaced, unless a job still uses it or another name points at it:
        # removed by id, the engine would drop a single remaining tag with it (`docker tag` of the
        # user's). One that fahr did not build (`docker tag` or `docker build -t` of the user's own
        # under this name) is the user's, dangling now or not: it stays.
        if not _names(_inspect(api, previous)):
            _remove_quietly(api, previous)
    return ImageRef(name=context.model_tag, tag="latest", image_id=image_id)


def _made_by_fahr(api, attrs: dict, model_tag: str) -> bool:
    """Whether the engine's record ``attrs`` of an image is of one fahr built for ``model_tag``.

    Its labels say so, and its last steps set them: labels are inherited, so an image the user
    built ``FROM`` fahr's (or committed from its container) has them too, under its own steps.
    fahr's build sets its labels in the builder's last steps, one ``LABEL`` each (the classic
    builder's history: ``/bin/sh -c #(nop)  LABEL fahr.model_tag=…``): above the one setting
    the model tag there is nothing but fahr's other labels.
    """
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    if labels.get(MODEL_TAG_LABEL) != model_tag or VERSION_LABEL not in labels:
        return False
    try:
        history = api.history(attrs["Id"])
    except Exception:
        return False  # unknown: treated as the user's (kept, and rebuilt over)
    for step in history:
        created = step.get("CreatedBy") or ""
        if not _FAHR_LABEL_STEP.search(created):
            return False
        if f"{MODEL_TAG_LABEL}=" in created:
            return True
    return False


_FAHR_LABEL_STEP = re.compile(r"#\(nop\)\s+LABEL\s+\"?fahr\.")


# The classic builder's line for the image a step committed (or found in its cache).
_COMMITTED = re.compile(r"^ ---> ([0-9a-f]{12,64})\s*$")


def _all_image_ids(api) -> set[str] | None:
    try:
        return set(api.images(all=True, quiet=True))
    except Exception:
        return None  # then nothing is removed after a failure: only what was surely new may be


def _remove_leftovers(api, committed: list[str], before: set[str] | None) -> None:
    """Remove the images a failed build's steps committed, newest first; only those that did not
    exist before the build (the base image and cache hits stay), and none of their parents.

    ``committed`` is read from the build's output, which a RUN step's own output can imitate: an
    image is taken for one of this build's only when it is also the child of the image the line
    before it named (the classic builder commits each step on top of the previous one).
    """
    if before is None or not committed:
        return
    new = [i for i in (_all_image_ids(api) or ()) if i not in before]
    for index in reversed(range(1, len(committed))):
        short, parent = committed[index], committed[index - 1]
        for image_id in new:
            if (image_id.split(":", 1)[-1].startswith(short)
                    and _inspect(api, image_id).get("Parent", "").split(":", 1)[-1].startswith(parent)):
                _remove_quietly(api, image_id, noprune=True)


def _names(attrs: dict) -> list[str]:
    """The tags and registry digests naming the image of the engine's record ``attrs``."""
    return [name for name in (attrs.get("RepoTags") or []) + (attrs.get("RepoDigests") or [])
            if not name.startswith("<none>")]


def _image_id(api, reference: str) -> str:
    return _inspect(api, reference).get("Id", "")


def _inspect(api, reference: str) -> dict:
    """The engine's record of an image, or {} when it has none by that name."""
    try:
        return api.inspect_image(reference) or {}
    except Exception:
        return {}


def _remove_quietly(api, image_id: str, noprune: bool = False) -> None:
    try:
        api.remove_image(image_id, noprune=noprune)
    except Exception:
        pass  # still used (a running job, another tag): the engine keeps it, and so do we
