"""The build fingerprint without Docker: what it depends on, the stat cache of content hashes, and
the Dockerfile's base images. The real-engine tests of skipping are in test_build_skip.py."""

from __future__ import annotations

import json
import os
import time

import pytest

from fahr_core import image
from fahr_core.image import cache, context
from fahr_core.image import (ContextHashes, context_entries, context_files, dockerfile_images, fingerprint,
                             hash_cache_file, stat_context)


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


@pytest.fixture
def trusted(monkeypatch):
    """Trust a hash however soon after a change it was taken: files written by a test are seconds
    old, and would otherwise be re-read on the next run (see test_a_file_hashed_right_after_a_change…)."""
    monkeypatch.setattr(cache, "_RACY_NS", -10**12)


def make_project(root):
    (root / "data" / "deep").mkdir(parents=True)
    (root / "train.py").write_text("print('hi')\n")
    (root / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY . .\n")
    (root / "data" / "a.bin").write_bytes(os.urandom(4096))
    (root / "data" / "deep" / "b.txt").write_text("b\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    os.symlink("data/a.bin", root / "link")
    os.link(root / "data" / "a.bin", root / "hard.bin")
    os.mkfifo(root / "pipe")
    return root


def entries_of(root):
    hashes = ContextHashes(root)
    entries = context_entries(root, stat_context(root, context_files(root).paths), hashes)
    hashes.save()
    return entries, hashes


def print_of(root, **over):
    entries, _ = entries_of(root)
    args = dict(entries=entries, dockerfile="Dockerfile", dockerfile_text=(root / "Dockerfile").read_text(),
                bases=[["python:3.11-slim", "sha256:" + "1" * 64]], model_tag="proj/train",
                ignore_patterns=context._ignore_patterns(root))
    args.update(over)
    return fingerprint(**args)


def test_entries_describe_every_kind_of_file(tmp_path):
    root = make_project(tmp_path / "proj")
    entries, _ = entries_of(root)
    by_path = {e[0]: e[1:] for e in entries}
    assert by_path["data"][:1] == ["d"]
    assert by_path["link"] == ["l", 0o777, "data/a.bin"]
    assert by_path["run.sh"][:2] == ["f", 0o755]
    assert by_path["hard.bin"] == by_path["data/a.bin"]  # the same content, the same entry
    assert by_path["pipe"][0] == "p"
    assert [e[0] for e in entries] == context_files(root).paths  # the tar's order, nothing else


def test_the_tar_pass_and_the_check_pass_agree(tmp_path):
    """The label is computed from the tar as it is written; a later check computes it from a stat
    walk. They must agree on an unchanged tree, or nothing would ever be skipped."""
    root = make_project(tmp_path / "proj")
    paths = context_files(root).paths
    tar, from_tar = context._context_tar(root, paths, ContextHashes(root))
    tar.close()
    checked, _ = entries_of(root)
    assert from_tar == checked


def test_fingerprint_is_stable_and_follows_every_input(tmp_path):
    root = make_project(tmp_path / "proj")
    first = print_of(root)
    assert first.startswith("sha256:") and print_of(root) == first
    others = {
        "dockerfile text": print_of(root, dockerfile_text="FROM python:3.11-slim\nCOPY . /x\n"),
        "dockerfile place": print_of(root, dockerfile="sub/Dockerfile"),
        "base id": print_of(root, bases=[["python:3.11-slim", "sha256:" + "2" * 64]]),
        "fahr version": print_of(root, version="99.0"),
        "model tag": print_of(root, model_tag="other/train"),
    }
    assert first not in others.values() and len(set(others.values())) == len(others), others


@pytest.mark.parametrize("change", ["content", "new file", "removed", "mode", "symlink target", "new folder"])
def test_fingerprint_follows_the_files(tmp_path, change):
    root = make_project(tmp_path / "proj")
    before = print_of(root)
    if change == "content":
        (root / "data" / "deep" / "b.txt").write_text("c\n")  # same size, other bytes
    elif change == "new file":
        (root / "data" / "new.txt").write_text("")
    elif change == "removed":
        (root / "data" / "deep" / "b.txt").unlink()
    elif change == "mode":
        os.chmod(root / "train.py", 0o755)
    elif change == "symlink target":
        (root / "link").unlink()
        os.symlink("data/deep/b.txt", root / "link")
    else:
        (root / "empty").mkdir()
    assert print_of(root) != before


def test_dockerignore_matters_by_what_it_keeps_out(tmp_path):
    """A .dockerignore line that keeps nothing new out changes nothing when .dockerignore keeps
    itself out of the image (the engine drops it); one that keeps a file out changes the fingerprint."""
    root = make_project(tmp_path / "proj")
    (root / ".dockerignore").write_text(".dockerignore\n")
    before = print_of(root)
    (root / ".dockerignore").write_text(".dockerignore\n# a comment\nno-such-folder/\n")
    assert print_of(root) == before
    (root / ".dockerignore").write_text(".dockerignore\ndata/deep/\n")
    assert print_of(root) != before


def test_a_dockerignore_that_goes_into_the_image_counts_by_its_content(tmp_path):
    """fahr's own .dockerignore does not keep itself out: COPY . . puts it in the image, so any
    change of it is a change of the image."""
    root = make_project(tmp_path / "proj")
    (root / ".dockerignore").write_text(".venv\n")
    before = print_of(root)
    (root / ".dockerignore").write_text(".venv\n# a comment\n")
    assert print_of(root) != before


def test_a_dockerfile_the_engine_drops_counts_by_its_text(tmp_path):
    root = make_project(tmp_path / "proj")
    (root / ".dockerignore").write_text("Dockerfile\n")
    before = print_of(root)
    os.chmod(root / "Dockerfile", 0o600)  # not in the image: only its text matters
    assert print_of(root) == before
    assert print_of(root, dockerfile_text="FROM python:3.11-slim\n") != before


def test_secrets_are_not_in_it(tmp_path):
    """What fahr never sends does not count: a new .env changes nothing."""
    root = make_project(tmp_path / "proj")
    before = print_of(root)
    (root / ".env").write_text("TOKEN=1\n")
    (root / "data" / "server.pem").write_text("x\n")
    assert print_of(root) == before


def test_an_unchanged_tree_is_not_read_again(tmp_path, trusted):
    root = make_project(tmp_path / "proj")
    _, first = entries_of(root)
    assert sorted(first.hashed) == ["Dockerfile", "data/a.bin", "data/deep/b.txt", "hard.bin", "run.sh", "train.py"]
    _, second = entries_of(root)
    assert second.hashed == []


def test_a_touched_file_is_read_again_and_only_it(tmp_path, trusted):
    root = make_project(tmp_path / "proj")
    before = print_of(root)
    os.utime(root / "data" / "deep" / "b.txt")
    entries, hashes = entries_of(root)
    assert hashes.hashed == ["data/deep/b.txt"]
    assert print_of(root) == before


def test_a_file_hashed_right_after_a_change_is_read_again(tmp_path):
    """Racy git's problem: a write within the filesystem clock's tick of the last one leaves the stat
    as it was, so a hash taken that soon after a change is not trusted by the next run."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_text("print('hi')\n")
    _, first = entries_of(root)
    assert first.hashed == ["train.py"]
    _, second = entries_of(root)
    assert second.hashed == ["train.py"]


def test_the_cache_is_one_file_per_folder_in_xdg_cache_home(tmp_path, cache_home, trusted):
    root = make_project(tmp_path / "proj")
    entries_of(root)
    [cached] = list((cache_home / "fahr" / "contexts").iterdir())
    assert cached == hash_cache_file(root)
    data = json.loads(cached.read_text())
    assert data["context"] == str(root) and "data/a.bin" in data["files"]
    assert oct((cache_home / "fahr" / "contexts").stat().st_mode & 0o777) == "0o700"
    other = make_project(tmp_path / "other")
    assert hash_cache_file(other) != cached


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe", b'{"format": 1, "context": "/else", "files": {}}',
                                     b'{"format": 1, "files": {"train.py": [1, 2]}}', b"[]"])
def test_a_corrupt_cache_is_ignored_and_rewritten(tmp_path, trusted, content):
    root = make_project(tmp_path / "proj")
    before = print_of(root)
    cache = hash_cache_file(root)
    cache.write_bytes(content)
    entries, hashes = entries_of(root)
    assert "train.py" in hashes.hashed  # read again: nothing trusted
    assert print_of(root) == before
    assert json.loads(cache.read_text())["context"] == str(root)  # rewritten whole


def test_a_wrong_hash_in_a_matching_entry_is_what_the_cache_is_trusted_for(tmp_path, trusted):
    """The cache is trusted by stat alone (that is its point): proof that a second run does not read."""
    root = make_project(tmp_path / "proj")
    entries_of(root)
    cache = hash_cache_file(root)
    data = json.loads(cache.read_text())
    data["files"]["train.py"][5] = "0" * 64
    cache.write_text(json.dumps(data))
    entries, hashes = entries_of(root)
    assert dict((e[0], e[3]) for e in entries)["train.py"] == "0" * 64 and hashes.hashed == []


def test_records_unused_for_30_days_are_pruned(tmp_path, trusted):
    root = make_project(tmp_path / "proj")
    entries_of(root)
    cache = hash_cache_file(root)
    stale = cache.parent / ("0" * 32 + ".json")
    stale.write_text("{}")
    month_ago = time.time() - 31 * 86400
    os.utime(stale, (month_ago, month_ago))
    os.utime(cache, (month_ago, month_ago))
    entries_of(root)  # unchanged: nothing written, but the record is marked used
    assert cache.stat().st_mtime > month_ago + 86400 and stale.exists()
    (root / "train.py").write_text("print('changed')\n")
    entries_of(root)  # a write prunes
    assert cache.exists() and not stale.exists()


def test_an_unwritable_cache_folder_is_no_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where the folder would be
    root = make_project(tmp_path / "proj")
    entries, hashes = entries_of(root)
    assert entries and hashes.hashed


def test_dockerfile_images():
    assert dockerfile_images("FROM python:3.11-slim\nCOPY . .\n") == ["python:3.11-slim"]
    multi = ("# escape=`\nfrom repo/builder:1 AS Build\nRUN make `\n  all\nFROM build\nCOPY --from=build /a /b\n"
             "COPY --from=nginx:1.25 /etc/nginx /n\nFROM scratch\nCOPY --from=0 /a /a\n")
    assert dockerfile_images(multi) == ["repo/builder:1", "nginx:1.25"]
    continued = "FROM --platform=linux/amd64 \\\n# a comment inside\n  base:2 \\\n  AS x\nRUN y\n"
    assert dockerfile_images(continued) == ["base:2"]
    assert dockerfile_images("FROM scratch\nCOPY train /train\n") == []
    # What cannot be known before the build: never skipped.
    assert dockerfile_images("ARG BASE=python:3.11-slim\nFROM $BASE\n") is None
    assert dockerfile_images("FROM a\nCOPY --from=${IMG} /x /y\n") is None
    assert dockerfile_images("FROM a\nADD https://example.com/x.tgz /x\n") is None
    assert dockerfile_images("FROM --platform=linux/amd64\n") is None
