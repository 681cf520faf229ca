"""Local input folders up to S3, content-addressed: an unchanged folder is uploaded once.

A folder (or one file) given as ``--input CHANNEL=PATH`` is described by its *tree*: the sorted
list of its files' relative paths, sizes and sha256. The tree's JSON (:func:`tree_manifest`)
hashed names the folder's place in the bucket (docs/sagemaker.md, "Input folders")::

    <output_path>/inputs/<tree-sha256>/<relative path>   the files, under their own names
    <output_path>/inputs/<tree-sha256>.json              the tree itself, written last
    <output_path>/inputs/channels/<channel>              the tree last fitted on a channel

SageMaker names a channel's files by their keys under the prefix, so the files keep their
names, and a prefix named by the content holds exactly that content: a deleted file is in no
later tree, two fits of different folders never share a prefix, two of the same folder write
the same bytes. A re-fit lists the tree's prefix and finds everything there: nothing is
uploaded. A new tree takes its unchanged files from the channel's previous tree by server-side
CopyObject (no byte leaves the machine for them); only new or changed files are uploaded, in
parallel (:data:`WORKERS` threads; boto3's clients are thread-safe) with one progress bar.

Hashes are read once per file version (``fahr_core.hash_files``: cached by each file's stat as
the build context's are, a bad record ignored), so a re-fit of an unchanged 1 GiB folder reads
no file.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from fahr_core import UsageError, ui

from fahr_sagemaker import aws

#: Uploads and copies running at once.
WORKERS = 10
#: A file up to this size is read whole, checked against its hash and sent in one PutObject (at
#: most WORKERS of them in memory at once); a bigger one goes through boto3's transfer manager
#: (multipart, its own threads), checked by its stat before and after.
SINGLE_PUT = 8 * 1024**2
#: The tree JSON's format: a tree of another format is never taken for this one's.
TREE_FORMAT = 1
_TREE_NAME = re.compile(r"[0-9a-f]{64}")
#: A previous tree bigger than this is not read (it only saves uploads).
_TREE_MAX = 256 * 1024**2
#: Nor one bigger than this many times this fit's own tree (plus 1 MiB): parsed, a JSON tree
#: takes several times its bytes, so anyone writing the bucket could make a fit use gigabytes.
#: A folder that lost most of its files since saves less, not nothing: what it lacks is uploaded.
_TREE_GROWTH = 4


@dataclass(frozen=True)
class File:
    """A file of an input: its path in the channel, size, sha256 and where it is on this machine."""

    name: str
    size: int
    sha256: str
    path: Path


def hash_files(path: Path) -> list[File]:
    """The files of the input ``path`` with their sha256 (the core's cached hashing)."""
    from fahr_core import hash_files as core_hash_files

    return [File(*entry) for entry in core_hash_files(path)]


def tree_manifest(files: list[File]) -> bytes:
    """The tree of ``files`` as canonical JSON: its sha256 names the tree."""
    listing = [[f.name, f.size, f.sha256] for f in sorted(files, key=lambda f: f.name)]
    return json.dumps({"format": TREE_FORMAT, "files": listing}, separators=(",", ":")).encode()


def parse_tree(data: bytes, name: str) -> dict[str, tuple[str, int]]:
    """A tree JSON read from the bucket (anyone with write access could have written it) as
    {sha256: (file name, size)}; {} when it is not the tree ``name`` or makes no sense."""
    if len(data) > _TREE_MAX or hashlib.sha256(data).hexdigest() != name:
        return {}
    try:
        tree = json.loads(data)
        if tree.get("format") != TREE_FORMAT:
            return {}
        found = {}
        for entry in tree["files"]:
            file, size, digest = entry
            if not (isinstance(file, str) and _relative_key(file) and type(size) is int and size >= 0
                    and isinstance(digest, str) and _TREE_NAME.fullmatch(digest)):
                return {}
            found.setdefault(digest, (file, size))
        return found
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


def _relative_key(name: str) -> bool:
    """Whether ``name`` is a file's path inside a tree as fahr writes it: no empty, ``.`` or ``..``
    segment (a key joined from any other would name something outside the tree, or another file)."""
    return all(part not in ("", ".", "..") for part in name.split("/"))


def upload(config, channel: str, path: Path, base: aws.S3Uri) -> str:
    """Upload the input ``path`` of ``channel`` under ``base`` (``<output_path>/inputs``) as its
    tree; the S3 folder URI the job's channel reads (``…/inputs/<tree>/``)."""
    try:
        files = hash_files(path)
    except OSError as exc:
        raise UsageError(f"--input {channel}: cannot read {exc.filename or path} ({exc.strerror or exc}); "
                         "make it readable or leave it out of the folder") from exc
    manifest = tree_manifest(files)
    tree = hashlib.sha256(manifest).hexdigest()
    target = base.join(tree)
    total = sum(f.size for f in files)
    s3 = aws.client(config, "s3")
    with aws.translated(f"uploading input {channel} to {target.uri}/"):
        present = _listing(s3, target)
        wanted = {f.name: f for f in files}
        missing = [f for f in files if present.get(f.name) != f.size]
        extra = [name for name in present if name not in wanted]
        if not missing and not extra:
            ui.info(f"input {channel}: {len(files)} files, {ui.size(total)}, already at {target.uri}/ "
                    "(unchanged): nothing to upload")
            if not _exists(s3, base.join(f"{tree}.json")):
                _put(s3, base.join(f"{tree}.json"), manifest)
            # The channel's last tree is this one again: the next change copies from it, not from
            # a folder fitted in between (which would upload every file that one lacks).
            if _get(s3, base.join("channels", channel), 64) != tree.encode():
                _put(s3, base.join("channels", channel), tree.encode())
            return target.uri + "/"
        previous = _previous_tree(s3, base, channel, tree, min(_TREE_MAX, _TREE_GROWTH * len(manifest) + 1024**2))
        copies = [(f, previous[f.sha256]) for f in missing if f.sha256 in previous]
        uploads = [f for f in missing if f.sha256 not in previous]
        sent = sum(f.size for f in uploads)
        copied = f", copying {len(copies)} unchanged within S3" if copies else ""
        ui.info(f"input {channel}: {len(files)} files, {ui.size(total)}; uploading {len(uploads)} "
                f"({ui.size(sent)}){copied}, to {target.uri}/")
        with ui.transfer(f"upload of {channel}", sent) as progress, \
                concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="fahr-s3-up") as pool:
            jobs = [pool.submit(_upload_one, s3, f, target, progress) for f in uploads]
            jobs += [pool.submit(_copy_one, s3, f, target, source, progress) for f, source in copies]
            # Not of this tree: the channel must hold the folder only. Deleted by its own key: a
            # stray "a.txt/" or "/a.txt" joined again (join drops empty segments) is "a.txt".
            jobs += [pool.submit(s3.delete_object, Bucket=target.bucket, Key=f"{target.prefix}/{name}")
                     for name in extra]
            try:
                for job in concurrent.futures.as_completed(jobs):
                    job.result()
            except BaseException:
                for job in jobs:
                    job.cancel()
                raise
        _put(s3, base.join(f"{tree}.json"), manifest)  # last: the tree is complete
        _put(s3, base.join("channels", channel), tree.encode())
    return target.uri + "/"


def _listing(s3, where: aws.S3Uri) -> dict[str, int]:
    """{name under the folder ``where``: size} of its objects."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=where.bucket, Prefix=where.prefix + "/"):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(where.prefix) + 1:]] = obj["Size"]
    return found


def _exists(s3, where: aws.S3Uri) -> bool:
    from botocore import exceptions as bex

    try:
        s3.head_object(Bucket=where.bucket, Key=where.prefix)
        return True
    except bex.ClientError as exc:
        if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def _get(s3, where: aws.S3Uri, limit: int) -> bytes | None:
    """The object at ``where`` (None when there is none, or it is bigger than ``limit``)."""
    from botocore import exceptions as bex

    try:
        reply = s3.get_object(Bucket=where.bucket, Key=where.prefix)
    except bex.ClientError as exc:
        if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound", "403", "AccessDenied"):
            return None
        raise
    body = reply["Body"]
    try:
        data = body.read(limit + 1)
    finally:
        body.close()
    return None if len(data) > limit else data


def _put(s3, where: aws.S3Uri, data: bytes) -> None:
    s3.put_object(Bucket=where.bucket, Key=where.prefix, Body=data)


def _previous_tree(s3, base: aws.S3Uri, channel: str, tree: str, limit: int) -> dict[str, aws.S3Uri]:
    """{sha256: its object in the channel's previous tree}: where unchanged files are copied
    from. {} when there is none, or it cannot be trusted (its JSON is not the tree it names)."""
    pointer = _get(s3, base.join("channels", channel), 64)
    name = (pointer or b"").decode("ascii", "replace").strip()
    if not _TREE_NAME.fullmatch(name) or name == tree:
        return {}
    data = _get(s3, base.join(f"{name}.json"), limit)
    found = parse_tree(data or b"", name)
    return {digest: base.join(name, file) for digest, (file, _) in found.items()}


class _HashingReader:
    """A file read once, front to back, by boto3's transfer manager, hashed as it is read: the
    bytes sent are the bytes hashed. No ``seek``: the manager reads it as a stream, in order."""

    def __init__(self, handle):
        self._handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, amount=-1):
        data = self._handle.read(amount)
        self.sha256.update(data)
        self.size += len(data)
        return data


def _upload_one(s3, file: File, target: aws.S3Uri, progress) -> None:
    key = target.join(file.name).prefix
    if file.size <= SINGLE_PUT:
        with open(file.path, "rb") as handle:
            data = handle.read(SINGLE_PUT + 1)
        if hashlib.sha256(data).hexdigest() != file.sha256:  # the prefix names this content, no other
            raise UsageError(f"{file.path} changed while it was being uploaded; run the fit again")
        s3.put_object(Bucket=target.bucket, Key=key, Body=data)
        progress(file.size)
    else:
        from boto3.s3.transfer import TransferConfig

        # Hashed as sent: a change since the file was hashed (same size, any mtime) is caught,
        # which a stat before and after the upload cannot see. The parts read ahead are bounded
        # (max_in_memory_upload_chunks × 8 MiB per file).
        transfer = TransferConfig(max_concurrency=4, multipart_threshold=SINGLE_PUT)
        transfer.max_in_memory_upload_chunks = 4  # s3transfer's own setting, not in boto3's arguments
        with open(file.path, "rb") as handle:
            reader = _HashingReader(handle)
            s3.upload_fileobj(reader, target.bucket, key, Callback=progress, Config=transfer)
        if (reader.size, reader.sha256.hexdigest()) != (file.size, file.sha256):
            s3.delete_object(Bucket=target.bucket, Key=key)  # not the content the prefix names
            raise UsageError(f"{file.path} changed while it was being uploaded; run the fit again")


def _copy_one(s3, file: File, target: aws.S3Uri, source: aws.S3Uri, progress) -> None:
    """CopyObject (in S3: nothing is sent from here), kept only when S3's SHA-256 of the copy is
    the file's; else (the source has gone, or holds other bytes than its tree claims: anyone
    writing the bucket can write both) an upload."""
    from botocore import exceptions as bex

    key = target.join(file.name).prefix
    if file.size > 5 * 1024**3:  # beyond CopyObject's limit a copy's checksum is of its parts:
        return _upload_one(s3, file, target, progress)  # it cannot be checked against the file
    try:
        reply = s3.copy_object(Bucket=target.bucket, Key=key, ChecksumAlgorithm="SHA256",
                               CopySource={"Bucket": source.bucket, "Key": source.prefix})
    except bex.ClientError as exc:
        if aws.error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
            raise
        return _upload_one(s3, file, target, progress)  # expired or deleted since: send it
    copied = (reply.get("CopyObjectResult") or {}).get("ChecksumSHA256")
    if copied != base64.b64encode(bytes.fromhex(file.sha256)).decode():
        _upload_one(s3, file, target, progress)  # overwrites the copy with the file's own bytes
