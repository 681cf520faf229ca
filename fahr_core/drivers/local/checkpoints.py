"""The local driver's checkpoint policy: a folder fahr owns, and the hosts' copies merged back into it.

A checkpoint folder fahr owns holds :data:`CHECKPOINT_MARKER`; fahr replaces only such a folder
(fahr_core.drivers.local.checkpoint_folders decides which folder that is, and which job holds it).
At start the hosts are given the folder's files (:func:`checkpoint_manifest` says what they were
given); when the job ends each host's ``/opt/ml/checkpoints`` is merged against that
(:class:`CheckpointMerge`) and :func:`copy_back` replaces the folder with the result, whole.

The container contract (fahr_core.contract) re-exports these names, and its ``ContractRun.copy_out``
is :func:`copy_back`: the SageMaker emulator of the tests merges its hosts' checkpoints alike.
This module imports nothing of the contract (the contract imports it): a run is anything with
``host_archives(path, stack, cap=...)`` (fahr_core.contract.ContractRun).
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import stat
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from fahr_core.errors import UsageError
from fahr_core.hashing import file_digest

CHECKPOINT_MARKER = ".fahr-checkpoints"
"""The file fahr puts in a local checkpoint folder it owns: it only ever replaces a folder holding it."""
MARKER_TEXT = (b"This folder holds checkpoints that fahr copies back from its jobs, replacing its contents.\n"
               b"fahr replaces only a checkpoint folder holding this file.\n")


@dataclass
class CopiedBack:
    """What :func:`copy_back` did besides copying."""

    dropped: list[tuple[str, str]]
    """(name, host) of the changes dropped on a clash (an earlier host changed the file too)."""
    skipped: list[tuple[str, str]]
    """(name, host) of entries fahr does not copy back: devices, fifos, links leading out."""
    not_folders: list[tuple[str, str]]
    """(host, what) of hosts whose checkpoint folder was replaced by a link or a file."""
    placed: bool = True
    """Whether the local folder was replaced (False: no host had a folder to copy)."""


def checkpoint_manifest(folder: Path) -> dict[str, tuple]:
    """What a checkpoint folder gives the hosts at start, by relative name: ``("file", size,
    sha256)``, ``("link", target)`` or ``("dir",)``; fahr's marker and other entries (fifos…)
    are left out. It is what :class:`CheckpointMerge` compares each host's copy with."""
    found: dict[str, tuple] = {}

    def walk(path: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            name = f"{prefix}{entry.name}"
            if name == CHECKPOINT_MARKER:
                continue
            try:
                if entry.is_symlink():
                    found[name] = ("link", os.readlink(entry.path))
                elif entry.is_dir():
                    found[name] = ("dir",)
                    walk(Path(entry.path), name + "/")
                elif entry.is_file():
                    with open(entry.path, "rb") as handle:
                        size = os.fstat(handle.fileno()).st_size
                        found[name] = ("file", size, file_digest(handle))
            except OSError as exc:
                raise UsageError(f"cannot read {entry.path} ({exc.strerror or exc}); make it readable, "
                                 "or choose another folder") from None

    if folder.is_dir():
        walk(folder, "")
    return found


class CheckpointMerge:
    """The hosts' checkpoint folders merged three ways, against what they were given at start.

    A host whose entry equals the given one (same bytes, same link, a folder) did not write it.
    An entry a host changed or added is kept; when several hosts changed it differently, the
    first host's (``algo-1`` before ``algo-2``) is kept and the others listed in ``dropped``.
    A given entry no host changed is removed when some host deleted it, kept otherwise. Without
    a manifest (``given`` None), every entry counts as added: identical copies are no clash.

    Entries fahr does not copy back are left out and listed in ``skipped``: devices, fifos, and
    links that lead out of the folder; an absolute link into the folder (``latest.pt ->
    /opt/ml/checkpoints/ckpt-3.pt``) becomes the equivalent relative link. A host whose folder
    is a link or a file (the script replaced it) is listed in ``not_folders`` and left out. The
    archives must stay open (random access) until :meth:`write`.
    """

    def __init__(self, base: str, path: str, given: Mapping[str, tuple] | None):
        self.prefix = base.strip("/") + "/"
        self.base = base.strip("/")
        self.path = posixpath.normpath("/" + path.strip("/"))
        self.given = dict(given or {})
        self.hosts: list[str] = []
        self.entries: dict[str, dict[str, tuple]] = {}  # host -> name -> (sig, tar, member, linkname)
        self.dropped: list[tuple[str, str]] = []
        self.skipped: list[tuple[str, str]] = []
        self.not_folders: list[tuple[str, str]] = []

    def _relative(self, name: str) -> str | None:
        """An engine archive's name relative to the folder (as fahr_core.contract.TreeMerge reads
        the same archives); None for the folder itself."""
        name = name.rstrip("/")
        if not name.startswith(self.prefix):
            return None
        return name[len(self.prefix):].strip("/") or None

    def _link(self, name: str, link: str) -> str | None:
        """The link kept for ``name -> link``, or None when it leads out of the folder."""
        here = posixpath.dirname(name) or "."
        if posixpath.isabs(link):
            norm = posixpath.normpath(link)
            if norm != self.path and not norm.startswith(self.path.rstrip("/") + "/"):
                return None
            return posixpath.relpath(norm[len(self.path):].lstrip("/") or ".", here)
        resolved = posixpath.normpath(posixpath.join(here, link))
        return None if resolved == ".." or resolved.startswith("../") else link

    def add(self, host: str, tar: tarfile.TarFile) -> None:
        members = tar.getmembers()
        root = next((m for m in members if m.name.rstrip("/") == self.base), None)
        if root is None or not root.isdir():
            what = "a link" if root is not None and root.issym() else "not a folder"
            self.not_folders.append((host, what))
            return
        mine: dict[str, tuple] = {}
        files: dict[str, tarfile.TarInfo] = {}
        for member in members:
            name = self._relative(member.name)
            if name is None or name == CHECKPOINT_MARKER:
                continue
            if member.isreg():
                files[name] = member
                mine[name] = (("file", member.size, file_digest(tar.extractfile(member))), tar, member, "")
            elif member.islnk() and self._relative(member.linkname) in files:
                source = files[self._relative(member.linkname)]
                mine[name] = (mine[self._relative(member.linkname)][0], tar, source, "")
            elif member.issym() and self._link(name, member.linkname) is not None:
                link = self._link(name, member.linkname)
                mine[name] = (("link", link), tar, member, link)
            elif member.isdir():
                mine[name] = (("dir",), tar, member, "")
            else:
                self.skipped.append((name, host))
        self.hosts.append(host)
        self.entries[host] = mine

    def plan(self) -> list[tuple[str, str, tuple | None]]:
        """The merged tree, ``(name, host, entry)`` in the order :meth:`write` writes it (entry
        None: a folder only a kept entry needs). Call once: it lists what it leaves out."""
        from fahr_core.extract import refused_links

        kept: dict[str, tuple[str, tuple]] = {}  # name -> (host, entry)
        names = set(self.given).union(*(set(e) for e in self.entries.values()))
        for name in sorted(names):
            given = self.given.get(name)
            have = [(host, self.entries[host].get(name)) for host in self.hosts]
            changed = [(host, e) for host, e in have if e is not None and e[0] != given]
            if changed:
                first_host, first = changed[0]
                kept[name] = (first_host, first)
                self.dropped.extend((name, host) for host, e in changed[1:] if e[0] != first[0])
            elif all(e is not None for _, e in have):  # given, and no host deleted it
                kept[name] = have[0]
        # Folders are walked up only to the nearest one known: each of a deep tree's names costs a
        # step or two, not one per folder above it (a tree of folders nested in each other would
        # cost its depth cubed).
        for name in list(kept):  # the folders of what is kept stay, even if a host deleted them
            folder = name
            while "/" in folder:
                folder = folder.rpartition("/")[0]
                if folder in kept:
                    break  # and so are its own folders, or they will be when its turn comes
                kept[folder] = next(((h, self.entries[h][folder]) for h in self.hosts
                                     if self.entries[h].get(folder, ((),))[0] == ("dir",)), ("", None))
        kinds: dict[str, bool] = {}
        planned: list[tuple[str, str, tuple | None]] = []
        for name in sorted(kept, key=lambda n: n.split("/")):
            host, entry = kept[name]
            folder, under_a_file = name, False
            while "/" in folder:
                folder = folder.rpartition("/")[0]
                if folder in kinds:  # planned before this name (sorted): what is above it was checked then
                    under_a_file = not kinds[folder]
                    break
            if under_a_file:
                self.dropped.append((name, host))  # under a file or link kept from an earlier host
                continue
            planned.append((name, host, entry))
            kinds[name] = entry is None or entry[0] == ("dir",)
        # A link that leads out only through another link (x -> sub/up/../../y, sub/up -> ..) is
        # left out as the others are: the extractor would refuse the whole folder for it.
        links = [(tuple(name.split("/")), entry[3]) for name, _, entry in planned
                 if entry is not None and entry[0][0] == "link"]
        out = {"/".join(path) for path in refused_links(links)}
        self.skipped.extend((name, host) for name, host, _ in planned if name in out)
        return [item for item in planned if item[0] not in out]

    def write(self, out: tarfile.TarFile, planned: list[tuple[str, str, tuple | None]] | None = None) -> None:
        """Write the merged tree (``planned``, or :meth:`plan`'s) into ``out``, names relative to the folder."""
        for name, _, entry in self.plan() if planned is None else planned:
            info = tarfile.TarInfo(name)
            data = None
            if entry is None:  # a folder only a kept entry still needs
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            else:
                sig, tar, member, link = entry
                info.mode = member.mode & 0o7777
                info.uid, info.gid, info.uname, info.gname = member.uid, member.gid, member.uname, member.gname
                info.mtime = int(member.mtime)
                if sig[0] == "file":
                    info.type, info.size = tarfile.REGTYPE, member.size
                    data = tar.extractfile(member)
                elif sig[0] == "link":
                    info.type, info.linkname = tarfile.SYMTYPE, link
                else:
                    info.type = tarfile.DIRTYPE
            out.addfile(info, data)


def copy_back(run, path: str, target: Path, given: Mapping[str, tuple] | None = None, *,
              marker: bool | bytes = False, spool_dir: Path | None = None) -> "CopiedBack | None":
    """Make the local folder ``target`` a copy of ``path`` (the checkpoints) of every host of ``run``.

    Hosts are merged against ``given`` (:func:`checkpoint_manifest` of what they were given
    at start), see :class:`CheckpointMerge`. The container's files are untrusted: entries
    fahr does not copy back (devices, fifos, links leading out of ``path``) are left out and
    listed, an absolute link into ``path`` becomes the equivalent relative one, and the rest
    is unpacked by fahr's safe extractor into a staging folder beside ``target``, which
    replaces ``target`` whole only when complete, so an interrupted copy leaves the previous
    folder. ``target`` keeps its own mode (and owner, as root). ``marker``: the new folder
    holds :data:`CHECKPOINT_MARKER` (these bytes, or :data:`MARKER_TEXT`). The merged archive is spooled in ``spool_dir`` (the
    job's folder), not beside ``target``. None, and ``target`` untouched, when no host has
    ``path`` as a folder (its containers are gone, or the script removed or replaced it).
    Refusals of the extractor (:class:`UsageError`) and OSError propagate.
    """
    from fahr_core.extract import max_model_bytes, over_the_cap, place

    base = path.rstrip("/").rsplit("/", 1)[-1]
    merge = CheckpointMerge(base, path, given)
    cap = max_model_bytes()  # checked on the headers, before the data is copied
    with contextlib.ExitStack() as stack:  # every host's archive open until the merge is written
        for host, tar in run.host_archives(path, stack, cap=cap):
            merge.add(host, tar)
        if not merge.hosts:  # no host has it as a folder: nothing to copy, the folder stays
            return CopiedBack([], merge.skipped, merge.not_folders, placed=False) if merge.not_folders else None
        planned = merge.plan()
        total = 0
        for name, _, entry in planned:
            total += entry[2].size if entry is not None and entry[0][0] == "file" else 0
            if total > cap:  # the hosts' files together
                raise over_the_cap(cap, name)
        if spool_dir is not None:
            spool_dir.mkdir(parents=True, exist_ok=True)
        # A spool, not a file put in place: extract.place unpacks it into a staging folder and
        # renames that over ``target`` (a folder swap, which Folder.replacing, for files, is not).
        fd, name = tempfile.mkstemp(prefix=".checkpoints.", suffix=".tar.partial", dir=spool_dir)
        os.close(fd)
        spool = Path(name)
        try:
            with tarfile.open(spool, mode="w", format=tarfile.PAX_FORMAT) as out:
                if marker:
                    data = marker if isinstance(marker, bytes) else MARKER_TEXT
                    info = tarfile.TarInfo(CHECKPOINT_MARKER)
                    info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                    out.addfile(info, io.BytesIO(data))
                merge.write(out, planned)
            try:
                before = os.stat(target)
            except FileNotFoundError:
                before = None
            target.parent.mkdir(parents=True, exist_ok=True)
            place(spool, target, extract=True, overwrite=True)
            if before is not None:  # the folder is new: its mode and owner are the old one's
                os.chmod(target, stat.S_IMODE(before.st_mode))
                if os.geteuid() == 0:
                    os.chown(target, before.st_uid, before.st_gid)
        finally:
            spool.unlink(missing_ok=True)
    return CopiedBack(merge.dropped, merge.skipped, merge.not_folders)
