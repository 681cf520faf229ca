"""Hostile model archives, built here by the tests (shared by the unit and the CLI tests).

Not a conftest.py; import it: ``from hostile import ...``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile
import time
from pathlib import Path

MiB = 1024**2
GiB = 1024**3


def member(name, kind=tarfile.REGTYPE, data=None, linkname="", mode=0o644):
    """One entry: (TarInfo, bytes or None)."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, linkname, mode, 1_700_000_000
    if data is not None:
        info.size = len(data)
    return info, data


def write_tar(path, members, mode="w:gz", **kwargs):
    with tarfile.open(path, mode, **kwargs) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return Path(path)


def cve_2025_4517(path, ups=2, victim="victim-dir"):
    """The CVE-2025-4517 pattern: nested 247-character folders reached through one-letter
    symlinks (a -> ddd…, ddd…/b -> ddd…, …) until the real path is longer than PATH_MAX, so that
    ``os.path.realpath`` stops resolving; a symlink at the end of the chain back up to the top;
    ``escape`` through all of it and ``ups`` folders higher, to ``victim``; then a file written
    through ``escape`` and a hard link to a file through it."""
    comp = "d" * 247
    steps = "abcdefghijklmnop"
    members, path_so_far = [], ""
    for step in steps:
        members.append(member(os.path.join(path_so_far, comp), tarfile.DIRTYPE, mode=0o755))
        members.append(member(os.path.join(path_so_far, step), tarfile.SYMTYPE, linkname=comp))
        path_so_far = os.path.join(path_so_far, comp)
    linkpath = os.path.join(*steps, "l" * 254)
    members.append(member(linkpath, tarfile.SYMTYPE, linkname=os.path.join(*[".."] * len(steps))))
    members.append(member("escape", tarfile.SYMTYPE, linkname=linkpath + "/.." * ups + "/" + victim))
    members.append(member("escape/victim.txt", data=b"OWNED"))
    members.append(member("escape/planted.txt", data=b"OWNED"))
    members.append(member("hard", tarfile.LNKTYPE, linkname="escape/victim.txt"))
    return write_tar(path, members)


def up_and_out(path, ups=1, victim="victim-dir"):
    """The same escape without long names: ``sub/up -> ..`` is inside (it is the top), but
    ``escape -> sub/up/../victim`` leads out although it *looks* inside to ``normpath``."""
    return write_tar(path, [
        member("sub", tarfile.DIRTYPE, mode=0o755),
        member("sub/up", tarfile.SYMTYPE, linkname=".."),
        member("escape", tarfile.SYMTYPE, linkname="sub/up" + "/.." * ups + "/" + victim),
        member("escape/victim.txt", data=b"OWNED"),
    ])


def zero_bomb(path, size, name="zeros.bin"):
    """A gzip tar holding one ``size``-byte file of zeros, written without ever holding more than
    64 MiB: gzip members concatenated (a valid gzip file), one per 64 MiB of zeros. 10 GiB give
    about 10 MB (deflate cannot compress better than about 1:1000)."""
    assert size % (64 * MiB) == 0
    info = tarfile.TarInfo(name)
    info.size = size
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    zeros = gzip.compress(bytes(64 * MiB), compresslevel=9, mtime=0)
    with open(path, "wb") as out:
        out.write(gzip.compress(header, mtime=0))
        for _ in range(size // (64 * MiB)):
            out.write(zeros)
        out.write(gzip.compress(bytes(2 * 512), mtime=0))
    return Path(path)


def local_job(output_path: Path, archive_bytes: bytes, tag="hostile/train", job="hostile-train-20250101-000000-beef"):
    """A completed job of the local driver, as it records one, whose model is ``archive_bytes``."""
    job_dir = output_path / job
    (job_dir / "output").mkdir(parents=True)
    artifact = job_dir / "output" / "model.tar.gz"
    artifact.write_bytes(archive_bytes)
    record = {"job_name": job, "model_tag": tag, "status": "Completed", "image": "sha256:" + "0" * 64,
              "created": time.time(),
              "ended": time.time(), "model_artifact": str(artifact)}
    (job_dir / "job.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return job


def make_scene(root: Path) -> Path:
    """The scene a hostile fetch plays in: victim-dir/ (outside the target, must stay untouched)
    and work/out, a target that holds a model already; returns ``root``."""
    (root / "victim-dir").mkdir()
    (root / "victim-dir" / "victim.txt").write_text("precious")
    (root / "work" / "out").mkdir(parents=True)
    (root / "work" / "out" / "old-model.bin").write_bytes(b"old")
    return root


def snapshot(root: Path) -> dict:
    """Everything under ``root`` (``root`` included), without following a symlink."""
    root = Path(root)
    if not os.path.lexists(root):
        return {}
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files) + ([""] if folder == str(root) else []):
            path = os.path.join(folder, name) if name else folder
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                seen[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                seen[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                seen[rel] = ("file", stat.S_IMODE(st.st_mode), Path(path).read_bytes(), st.st_mtime)
    return seen


def counted_folds(monkeypatch) -> list[str]:
    """The names the extractor folds (as a filesystem ignoring case sees them), one per call."""
    import types
    import unicodedata

    from fahr_core import extract

    folds: list[str] = []

    def normalize(form, text):
        folds.append(text)
        return unicodedata.normalize(form, text)

    monkeypatch.setattr(extract, "unicodedata", types.SimpleNamespace(normalize=normalize))
    return folds


def counted_steps(module, run) -> int:
    """How many lines of ``module``'s source ``run()`` executes: work counted, not timed (the
    interpreter's steps, without the work of the C code they call)."""
    import sys

    steps = 0

    def tracer(frame, event, arg):
        nonlocal steps
        if frame.f_code.co_filename != module.__file__:
            return None
        steps += event == "line"
        return tracer

    sys.settrace(tracer)
    try:
        run()
    finally:
        sys.settrace(None)
    return steps


def interrupt_midway(args: list[str], *, cwd: Path, env: dict, started) -> tuple[int, str]:
    """Run ``args`` (a fetch into ``cwd``/work/out) and send it SIGINT once ``started(staging)``
    says the download is under way in its staging folder beside the target; its exit code and
    standard error."""
    import signal
    import subprocess

    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, staging = time.monotonic() + 60, []
    while time.monotonic() < deadline and proc.poll() is None:
        staging = [p for p in (Path(cwd) / "work").iterdir() if p.name.startswith(".out.fahr-")]
        try:
            if staging and started(staging[0]):
                break
        except FileNotFoundError:
            pass  # the staging folder went meanwhile
        time.sleep(0.05)
    assert staging and proc.poll() is None, "the fetch ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    return proc.returncode, stderr
