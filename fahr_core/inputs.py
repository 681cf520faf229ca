"""The files of a local input folder and their content hashes (``fahr_core.hash_files``): what a
driver uploads content-addressed (the sagemaker driver: docs/sagemaker.md, "Input folders")."""

from __future__ import annotations

from pathlib import Path


def hash_files(path: Path) -> list[tuple[str, int, str, Path]]:
    """The files of a local input (a folder, or one file) with their sha256, for a driver that
    uploads it content-addressed: ``(name, size, sha256, path)`` each, sorted by name, a folder's
    files named by their path under it (``/``-separated; links to files followed), a single
    file by its own name.

    A file is read (in chunks: memory stays bounded) only when its stat (size, mtime, ctime,
    inode) changed since fahr last hashed it: the hashes are kept in fahr's cache folder as the
    build context's are (``fahr_core.image.cache``; a record that cannot be trusted or read is
    ignored, never an error), so an unchanged folder costs a walk of ``stat`` calls.
    (Added in plugin API 1.6.)
    """
    import os
    import time

    from fahr_core.image.cache import ContextHashes, read_head
    from fahr_core.hashing import file_digest

    path = Path(path)
    if path.is_file():
        listed = [(path.name, path)]
    else:
        listed = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
    # One record per input (a single file's own): never that of a folder that is also a build
    # context, whose entries it would crowd out.
    hashes = ContextHashes(path.resolve())
    found = []
    for name, file in listed:
        with open(file, "rb") as handle:
            before = os.fstat(handle.fileno())
            known = hashes.known(name, before)
            if known is None:
                started = time.time_ns()
                head, kind = read_head(handle)  # the same verdict the build context's record holds
                digest = file_digest(handle, head)
                hashes.remember(name, before, os.fstat(handle.fileno()), digest, started, kind)
            else:
                digest = known[0]
        found.append((name, before.st_size, digest, file))
    hashes.save()
    return found
