"""What an image is built from, as one hash: an unchanged project is not rebuilt.

The image carries, as its :data:`FINGERPRINT_LABEL`, the :func:`fingerprint` of what it was built
from: the files the context's tar holds (:func:`context_entries`, hashed through
:class:`~fahr_core.image.cache.ContextHashes`), the Dockerfile, the ids of its base images
(:func:`dockerfile_images`), the model tag and fahr's version. A fit whose fingerprint equals it
uses the image as it is (:func:`fahr_core.image.build`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

from fahr_core import __version__
from fahr_core.image.cache import ContextHashes
from fahr_core.image.context import _unreadable
from fahr_core.secrets import ContentRule

#: The image label recording what the image was built from (:func:`fingerprint`): an image whose
#: label equals the fingerprint of the project now is what a build would make, and is not rebuilt.
FINGERPRINT_LABEL = "fahr.context-fingerprint"
_FINGERPRINT_FORMAT = 1


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
