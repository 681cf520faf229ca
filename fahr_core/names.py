"""Model image tags, Docker image references and training job names.

The model image tag comes from the artifact's path, as in the seed document:
``.../foo/model.py`` -> ``foo/model``. Job names derive from the tag and are unique without
counting earlier jobs: a UTC timestamp plus a random suffix.
"""

from __future__ import annotations

import re
import secrets
import time
import unicodedata
from pathlib import Path

from fahr_core.errors import UsageError

# A Docker repository path component: lowercase alphanumerics, separated by '.', '_', '__' or '-'s.
# Every pattern here ends in \Z, not $: '$' also matches before a trailing newline, so 'job-1\n'
# would pass, and `.match` is what callers (plugins too) use.
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_COMPONENT = re.compile(rf"^{_PATH_COMPONENT}\Z")
_REPO_MAX = 255
# SageMaker training job names (docs/contract.md, "Names and states").
JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}\Z")
JOB_NAME_MAX = 63
_SUFFIX_LEN = len("-20260101-000000-abcd")


def _ascii(char: str) -> str:
    """'Ü' -> 'u': the ASCII letters of a character's decomposition ('' for '日')."""
    return "".join(c for c in unicodedata.normalize("NFKD", char) if c.isascii())


def _component(raw: str, whole: str) -> str:
    lowered = "".join(_ascii(c) or "-" for c in raw).lower()
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", lowered)
    cleaned = re.sub(r"[._-]*([._-])[._-]*", r"\1", cleaned)  # one separator between runs
    cleaned = cleaned.strip("._-")
    if not cleaned:
        offending = "".join(sorted(set(c for c in raw if not re.match(r"[a-zA-Z0-9._-]", c))))
        detail = f"its characters {offending!r} cannot appear" if offending else "it has no letter or digit"
        raise UsageError(
            f"cannot make a Docker image name from {whole!r}: in {raw!r} {detail}; "
            "rename the folder or file with letters, digits, '-', '_' or '.'"
        )
    return cleaned


def model_image_tag(artifact: Path) -> str:
    """The model image tag of a training artifact: ``.../foo/model.py`` -> ``foo/model``.

    Lowercased and sanitised into a valid Docker repository name; a :class:`UsageError` names
    the offending characters when nothing valid is left.
    """
    artifact = Path(artifact).absolute()
    return _tag(artifact.parent.name, artifact.stem, f"{artifact.parent.name}/{artifact.name}")


def container_image_tag(folder: Path) -> str:
    """The model image tag of a container of the user's own (``fahr fit DIR``, ``DIR/Dockerfile``):
    ``.../byoc/container`` -> ``byoc/container``.

    The folder plays the part a script's stem plays, its parent the part of the script's folder;
    the folder's whole name counts (a folder has no suffix: ``my.model`` stays ``my.model``).
    """
    folder = Path(folder).absolute()
    return _tag(folder.parent.name, folder.name, f"{folder.parent.name}/{folder.name}")


def _tag(parent: str, stem: str, whole: str) -> str:
    name = _component(stem, whole)[:100].rstrip("._-")
    folder = _component(parent or "fahr", whole)[: _REPO_MAX - len(name) - 1].rstrip("._-")
    tag = f"{folder}/{name}"
    assert all(_COMPONENT.match(c) for c in tag.split("/")) and len(tag) <= _REPO_MAX, tag
    return tag


def validate_model_tag(tag: str) -> str:
    """Check a model image tag given on the command line (``fahr fetch DIR TAG``)."""
    parts = tag.split("/") if isinstance(tag, str) else []
    if not parts or not tag or len(tag) > _REPO_MAX or not all(_COMPONENT.match(p) for p in parts):
        raise UsageError(
            f"{tag!r} is not a model image tag; it looks like 'foo/model' "
            "(lowercase letters, digits and '.', '_', '-' between them)"
        )
    return tag


def job_stem(model_tag: str, base: str | None = None) -> str:
    """What every job name of ``model_tag`` (or of ``base``) starts with, before its timestamp.

    Drivers that look up a tag's jobs by name (ListTrainingJobs' NameContains) use it too.
    """
    stem = re.sub(r"[^a-zA-Z0-9]+", "-", base or model_tag).strip("-") or "fahr"
    return stem[: JOB_NAME_MAX - _SUFFIX_LEN].rstrip("-") or "fahr"


def job_name(model_tag: str, *, now: float | None = None, base: str | None = None) -> str:
    """A fresh, unique job name for ``model_tag``: ``<tag-as-dashes>-YYYYMMDD-HHMMSS-xxxx``.

    Always matches ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``: the tag part is cut so that the whole
    fits 63 characters, and the random suffix makes two jobs started in the same second differ.
    """
    stem = job_stem(model_tag, base)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    name = f"{stem}-{stamp}-{secrets.token_hex(2)}"
    assert JOB_NAME.match(name) and len(name) <= JOB_NAME_MAX, name
    return name


def validate_job_name(name: str) -> str:
    """Check a job name given on the command line."""
    if not isinstance(name, str) or not JOB_NAME.match(name):
        raise UsageError(
            f"{name!r} is not a valid job name: 1-63 letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


# Docker's image reference grammar (the distribution project's reference package):
# [HOST[:PORT]/]PATH[:TAG][@DIGEST], path components lowercase. ASCII only, and fullmatch: `$`
# would accept a trailing newline, which is exactly what must not reach a FROM line.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(
    rf"(?P<name>{_NAME})(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    re.ASCII,
)


def image_reference_problem(value: object) -> str | None:
    """Why ``value`` is not a Docker image reference (``NAME[:TAG][@DIGEST]``), or None if it is one.

    The one check of a base image, wherever one is given (config ``base_image``, ``fahr init``'s
    answers, :func:`fahr_core.image.dockerfile_text`): it is written into a FROM line."""
    match = _REFERENCE.fullmatch(value) if isinstance(value, str) else None
    if match is None or len(match.group("name")) > _REPO_MAX:
        return ("is not a Docker image reference: write [REGISTRY[:PORT]/]NAME[:TAG][@DIGEST], "
                "lowercase names, no spaces, e.g. python:3.11-slim")
    return None


def check_base_image(base_image: str) -> str:
    """``base_image``, or a :class:`UsageError`: it is written into a FROM line."""
    problem = image_reference_problem(base_image)
    if problem:
        raise UsageError(f"base image {base_image!r} {problem}")
    return base_image
