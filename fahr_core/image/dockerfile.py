"""The Dockerfile: the one fahr writes for a bare script, and reading one as the engine reads it.

The generated Dockerfile keeps the SageMaker contract (docs/contract.md): ``docker run IMAGE
train`` trains; the entrypoint is exec-form so the training process is PID 1 and receives
SIGTERM; dependencies sit in a layer before the code so that editing the code reinstalls nothing.
Its first line is :data:`GENERATED_MARK`: what fahr wrote, it may write again
(``--regenerate-dockerfile``); anything else is the user's.

The entrypoint's program is :mod:`fahr_core.launcher` (it exports the multi-host variables, then
runs the script); a notebook (``train.ipynb``) is executed headless with papermill by
:mod:`fahr_core.notebook_runner`, whose source precedes the launcher's in a notebook image. That
program is a file the image holds at :data:`LAUNCHER_PATH`, copied from :data:`LAUNCHER_IN_CONTEXT`,
which fahr adds to the build context it sends (:func:`fahr_files`): the project holds no copy of
fahr's code, and the Dockerfile stays short enough to read.
``FAHR_EXECUTION_ENVIRONMENT`` defaults to ``sagemaker`` in the image (drivers set their own).

The built-in templates of ``fahr init`` write their Dockerfile and .dockerignore with
:func:`dockerfile_text` and :data:`DOCKERIGNORE` too: one source for both.

A project's Dockerfile is read (:func:`_read_dockerfile`) as the engine will read it: inside the
build context, a link followed only within it, never a pipe or a folder under that name.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from fahr_core import __version__
from fahr_core.errors import UsageError
from fahr_core.jobfolder import Refused, open_regular
from fahr_core.names import check_base_image

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


#: Where the generated image holds the entrypoint's program (:func:`entrypoint_program`), and the
#: name fahr sends it under in the build context: under ``.fahr``, which no context of fahr's holds
#: otherwise (its .dockerignore keeps the name out; a file of the project there is not sent).
LAUNCHER_PATH = "/opt/fahr/launcher.py"
LAUNCHER_IN_CONTEXT = ".fahr/launcher.py"
_COPY_LAUNCHER = f"COPY {LAUNCHER_IN_CONTEXT} {LAUNCHER_PATH}\n"


def fahr_files(dockerfile_text: str, artifact_name: str) -> dict[str, bytes]:
    """The files fahr adds to the build context (path in the context: content): the launcher, when
    the Dockerfile copies it (one fahr wrote; a Dockerfile of the user's own gets nothing)."""
    if _COPY_LAUNCHER not in dockerfile_text:
        return {}
    return {LAUNCHER_IN_CONTEXT: entrypoint_program(artifact_name).encode("utf-8")}


def entrypoint_program(script_name: str) -> str:
    """The Python program of the generated image's entrypoint, run as ``python PROGRAM SCRIPT``
    (the image holds it at :data:`LAUNCHER_PATH`).

    :mod:`fahr_core.launcher`; for a notebook, :mod:`fahr_core.notebook_runner` followed by the
    launcher (one copy of the start-up: SIGTERM, the host variables).
    """
    launcher = _source("launcher")
    if script_name.endswith(".ipynb"):
        return _source("notebook_runner") + "\n\n" + launcher
    return launcher


#: How the generated Dockerfile installs the project's requirements.txt (when it has one).
_INSTALL_REQUIREMENTS = "COPY requirements.txt ./\nRUN pip install -r requirements.txt\n"


def installs_requirements(text: str) -> bool:
    """Whether a Dockerfile fahr wrote (``text``) installs the project's requirements.txt: one
    written before the file existed does not (until ``--regenerate-dockerfile``)."""
    return _INSTALL_REQUIREMENTS in text


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
        f"{_INSTALL_REQUIREMENTS}"
        if has_requirements
        else "# Add a requirements.txt beside the script to install dependencies here.\n"
    )
    entry = json.dumps(["python", LAUNCHER_PATH, script_name])
    if notebook:
        entry_comment = (
            "# Exec form: the runner is PID 1 and receives SIGTERM on stop. The launcher (fahr's\n"
            "# notebook_runner.py and launcher.py) exports the host variables (fahr's docs/multi-host.md),\n"
            "# types the hyperparameters like the defaults of the notebook's `parameters` cell, runs it\n"
            "# with papermill, saves the executed notebook to /opt/ml/output/data/ and turns a failing\n"
            "# cell's error into /opt/ml/output/failure.\n"
        )
    else:
        entry_comment = (
            "# Exec form: the training process is PID 1 and receives SIGTERM on stop. The launcher\n"
            "# (fahr's launcher.py) exports the host variables (FAHR_HOSTS, MASTER_ADDR, NODE_RANK, ...:\n"
            "# fahr's docs/multi-host.md), then runs the script as `python SCRIPT` would.\n"
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
        "# fahr's launcher, the entrypoint's program (fahr adds it to the build context it sends).\n"
        f"{_COPY_LAUNCHER}"
        "COPY . .\n"
        f"{entry_comment}"
        f"ENTRYPOINT {entry}\n"
        'CMD ["train"]\n'
    )


#: The first words of the Dockerfile fahr writes (:func:`dockerfile_text`): ``GENERATED_MARK
#: VERSION for SCRIPT.`` (:func:`generated_for` reads the script back).
GENERATED_MARK = "# Written by fahr"


def last_entrypoint(text: str) -> str:
    """The Dockerfile ``text``'s last ENTRYPOINT line (the one the image keeps), '' when none."""
    entrypoints = [line for line in text.splitlines() if line.strip().upper().startswith("ENTRYPOINT")]
    return entrypoints[-1] if entrypoints else ""


def generated_for(text: str) -> str | None:
    """The script a Dockerfile fahr wrote (``text``) was written for; None when fahr did not write
    it; "" when it did but names none (an older fahr's mark)."""
    if not text.startswith(GENERATED_MARK):
        return None
    match = re.match(rf"{re.escape(GENERATED_MARK)} \S+ for (.+?)\. ", text)
    return match.group(1) if match else ""


_DOCKERFILE_MAX = 1024 * 1024  # far more than any Dockerfile: a bigger "Dockerfile" is no Dockerfile


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
        with open_regular(real or path, follow=real is None) as handle:
            data = handle.read(limit + 1)
    except Refused:  # a folder, a pipe or a device: refused at once, never read without end
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
