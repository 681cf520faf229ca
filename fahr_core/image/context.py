"""The build context: what is sent to the engine, as a tar fahr makes itself.

.dockerignore applies as docker applies it (:func:`context_files`), then every secret path
(:func:`~fahr_core.secrets.secret_component`) is dropped whatever .dockerignore says, and every
file whose first MiB holds a credential (:mod:`fahr_core.secrets`, :func:`content_rule`), as it is
read into the tar (:func:`context_tar`); the files the build cannot do without are refused
instead. A context bigger than :func:`context_warn_bytes` draws one warning.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fahr_core import ui
from fahr_core.errors import UsageError
from fahr_core.hashing import HashingReader
from fahr_core.image.cache import ContextHashes, read_head
from fahr_core.image.dockerfile import _dockerfile_links, _read_dockerfile, _read_project_file, fahr_files
from fahr_core.secrets import ALLOW_FILE, ContentRule, parse_allowed, secret_component
from fahr_core.values import BuildContext

_ALLOW_MAX = 1024 * 1024  # far more than any list of files in .fahr-allow-secrets


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
    tar, _ = _context_tar(root, files.paths, None, rule, context_fahr_files(context))
    warn_kept_out(files, rule)
    return tar


def context_fahr_files(context: BuildContext, dockerfile_text: str | None = None) -> dict[str, bytes]:
    """The files fahr adds to ``context``'s tar (:func:`~fahr_core.image.dockerfile.fahr_files`):
    none for a container of the user's own."""
    if context.user_container:
        return {}
    text = _read_dockerfile(context.dockerfile) if dockerfile_text is None else dockerfile_text
    return fahr_files(text, context.artifact.name)


def fahr_entries(fahr: dict[str, bytes]) -> list[list]:
    """The entries (:func:`context_entries`) of the files fahr adds: its launcher is part of what
    an image is built from, so a fahr whose launcher changed builds anew."""
    import hashlib

    return [[name, "f", 0o644, hashlib.sha256(data).hexdigest()] for name, data in sorted(fahr.items())]


def _context_tar(root: Path, paths: list[str], hashes: ContextHashes | None,
                 rule: ContentRule | None = None, fahr: dict[str, bytes] | None = None) -> tuple[IO[bytes], list[list]]:
    """The tar of ``paths`` and, with ``hashes``, its entries (:func:`context_entries`), each file
    hashed as it is read into the tar (once: what the tar holds is what the fingerprint says);
    then ``fahr``'s files (path: content), which replace any of the project's under their names.

    A file is scanned (its first MiB, read before any of it goes into the tar) unless ``hashes``
    knows it unchanged; the files ``rule`` keeps out are neither in the tar nor in the entries.
    """
    import io
    import tarfile

    fahr = fahr or {}
    paths = [p for p in paths if p not in fahr]
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
            for name, data in sorted(fahr.items()):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            if hashes is not None:
                entries += fahr_entries(fahr)
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
                head, kind = read_head(data, info.size)
                if rule.keeps_out(relative, kind):
                    _forget(tar, before, relative)
                    return None
                reader = HashingReader(data, head)
                tar.addfile(info, reader)
                digest = reader.hexdigest()
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
