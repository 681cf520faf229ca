"""What ``fahr fit`` trains, and the build context made of it.

The artifact (:func:`check_artifact`) is a script (``.py``), a notebook (``.ipynb``), or a
container of the user's own (``fahr fit DIR`` with DIR holding a Dockerfile, or ``fahr fit
DIR/Dockerfile``): that one is built from its Dockerfile as it is, never written or changed, and
its image brings its own ``train`` program. For a script or notebook, :func:`prepare_context`
writes the generated Dockerfile (:mod:`fahr_core.image.dockerfile`) when the folder has none.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import NoReturn

from fahr_core import ui
from fahr_core.errors import EnvironmentProblem, UsageError
from fahr_core.image.dockerfile import (DOCKERIGNORE, _read_dockerfile, dockerfile_text, generated_for,
                                        last_entrypoint)
from fahr_core.jobfolder import replacing_in
from fahr_core.names import check_base_image
from fahr_core.values import BuildContext

SUPPORTED_SUFFIXES = (".py", ".ipynb")

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
    written_for = generated_for(_read_dockerfile(dockerfile))
    if written_for is not None:
        # fahr wrote it for a script: building it as a container would give the same image another
        # model tag (parent/folder instead of folder/script).
        script = folder / (written_for or "train.py")
        raise UsageError(f"{dockerfile} was written by fahr for a script: pass the script, fahr fit {script} "
                         f"(or pass {dockerfile} itself to build it as your own container)")
    return folder.resolve() / DOCKERFILE


def _check_notebook(path: Path) -> None:
    """Refuse, before any build, a notebook that papermill could not read: ``PATH:LINE: …``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{ui.visible(path)}:{exc.lineno}: the notebook is not valid JSON ({exc.msg}, column "
                         f"{exc.colno}); fix it, or save it again from Jupyter") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{ui.visible(path)}: the notebook is not valid JSON ({ui.visible(exc)}); fix it, "
                         "or save it again from Jupyter") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise UsageError(f"{path.name} is not a Jupyter notebook (no 'cells' list)")
    if data.get("nbformat", 4) < 4:
        raise UsageError(f"{path.name} is nbformat {data.get('nbformat')}; save it as nbformat 4")


def check_runs_the_artifact(dockerfile: Path, text: str, artifact: Path) -> None:
    """A Dockerfile fahr wrote for one script runs that script: fitting another script of the
    same folder with it trained the first one under the second's tag, silently. Refused, unless
    its ENTRYPOINT was edited to run this one."""
    written_for = generated_for(text)
    if not written_for or written_for == artifact.name:
        return
    if artifact.name in last_entrypoint(text):
        return
    raise UsageError(f"{dockerfile} was written by fahr for {written_for}, and its image runs {written_for}, "
                     f"not {artifact.name}: pass --regenerate-dockerfile to write it for {artifact.name}, "
                     f"or give {artifact.name} a folder of its own")


def prepare_context(artifact: Path, model_tag: str, base_image: str, overwrite: bool,
                    base_image_set: bool = False, rebuild: bool = False) -> BuildContext:
    """The :class:`BuildContext` of a checked artifact (:func:`check_artifact`); the Dockerfile
    (and a .dockerignore) written when the artifact's folder has none.

    An existing Dockerfile is the user's: it is used as it is. With ``overwrite`` it is
    regenerated, and one that fahr did not write is first kept as ``Dockerfile.bak`` (a
    Dockerfile that is a symbolic link is kept as that link, never read or written through).
    ``base_image_set``: the user chose a base image for this run (warn when the Dockerfile in
    use starts from another). ``rebuild``: the context's :attr:`BuildContext.rebuild` (build
    even when nothing changed).
    """
    check_base_image(base_image)
    folder = artifact.parent
    dockerfile = folder / DOCKERFILE
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
                            user_container=True, rebuild=rebuild)
    if dockerfile.exists() and not overwrite:
        text = _read_dockerfile(dockerfile)  # also refuses a folder or a pipe called Dockerfile
        check_runs_the_artifact(dockerfile, text, artifact)
        if base_image_set and f"FROM {base_image}\n" not in text:
            ui.warn(f"config base_image={base_image} is not used: {dockerfile} has its own FROM; "
                    "pass --regenerate-dockerfile to regenerate it")
        return BuildContext(artifact=artifact, context_dir=folder, dockerfile=dockerfile, model_tag=model_tag,
                            rebuild=rebuild)
    written = [dockerfile.name]
    backup = folder / "Dockerfile.bak"
    if dockerfile.is_symlink():
        # Moving the link itself: its target (maybe outside the project) is neither read nor written.
        try:
            os.replace(dockerfile, backup)
        except OSError as exc:
            _write_failed(backup, exc)
        ui.warn(f"your Dockerfile (a symbolic link) is kept as {backup}")
    elif dockerfile.exists():
        current = _read_dockerfile(dockerfile)
        if generated_for(current) is None:
            _write_atomically(backup, current)
            ui.warn(f"your Dockerfile is kept as {backup}")
    _write_atomically(dockerfile, dockerfile_text(artifact.name, base_image, (folder / "requirements.txt").is_file()))
    if not ignore.exists():
        _write_atomically(ignore, DOCKERIGNORE)
        written.append(ignore.name)
    ui.info(f"wrote {' and '.join(written)} in {folder} (edit freely; fahr keeps your changes)")
    return BuildContext(artifact=artifact, context_dir=folder, dockerfile=dockerfile, model_tag=model_tag,
                        rebuild=rebuild)


def regenerate_refused(dockerfile: Path) -> str:
    """The one-line error of ``--regenerate-dockerfile`` with a container of the user's own."""
    return (f"--regenerate-dockerfile: {dockerfile} is your own container's Dockerfile, which fahr "
            "builds as it is and never rewrites; drop the flag (it is for the Dockerfile fahr "
            "writes beside a train.py)")


def _write_atomically(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all, never through a symlink planted in the folder
    (:func:`fahr_core.jobfolder.replacing_in`), readable as any file the user makes (0666 less
    the umask: a private Dockerfile would surprise)."""
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with replacing_in(folder, path.name, mode=0o666) as out:
                out.write(text.encode("utf-8"))
        finally:
            os.close(folder)
    except OSError as exc:
        _write_failed(path, exc)


def _write_failed(path: Path, exc: OSError) -> NoReturn:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise EnvironmentProblem(f"cannot write {path}: {exc.strerror}; free some space and retry") from None
    raise UsageError(f"cannot write {path}: {exc.strerror}; make {path.parent} writable, "
                     "or write a Dockerfile there yourself") from None
