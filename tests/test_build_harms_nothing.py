"""The image build harms nothing that is not fahr's, and fails before the engine where it must.

- An image under the project's tag that fahr did not build (no fahr labels, fahr's labels for
  another tag, or inherited from fahr's image by one built FROM it) survives a fit and is not
  taken as up to date; the fahr image a rebuild replaces (any fahr version) is still removed,
  unless a tag of the user's names it.
- The hash cache (``$XDG_CACHE_HOME/fahr/contexts``) is never pruned, read or written through a
  link at ``fahr`` or ``contexts`` (nor when one is swapped in while fahr uses it), nor when
  either is no folder, another user's, or ``contexts`` is writable by others; pruning removes
  only regular files named as fahr names them; a record that is a pipe, a link, another user's or
  too big is ignored and rewritten, never hangs or fills memory; a read-only cache costs nothing.
- A Dockerfile the engine could not follow (a link out of the build context, an absolute link, a
  link to a file .dockerignore keeps out), and one that is dangling, a folder or a pipe, is one
  line, exit 2, before anything is built.

The cache rules are tested on the real filesystem without Docker; one real fit shows them with
the foreign image; the Dockerfile cases run the real ``fahr fit`` on the real engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT, one_line_error, run_fahr
from fahr_core import image
from fahr_core.image import builder, cache
from fahr_core.image import ContextHashes, context_entries, context_files, hash_cache_file, stat_context
from test_build_skip import _build_base as foreign_image

MONTH_AGO = time.time() - 31 * 86400


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.setattr(cache, "_RACY_NS", -10**12)  # trust hashes of files a test just wrote
    return home


def make_project(root):
    root.mkdir(parents=True)
    (root / "train.py").write_text("print('hi')\n")
    (root / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY . .\n")
    (root / "data.bin").write_bytes(os.urandom(4096))
    return root


def hash_project(root) -> ContextHashes:
    hashes = ContextHashes(root)
    entries = context_entries(root, stat_context(root, context_files(root).paths), hashes)
    assert {e[0] for e in entries} == {"train.py", "Dockerfile", "data.bin"}
    hashes.save()
    return hashes


class Blocked(BaseException):
    """Not an Exception: no ``except Exception`` of the code under test may swallow it."""


@contextlib.contextmanager
def deadline(seconds):
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""
    def expired(signum, frame):
        raise Blocked(f"still running after {seconds} s: blocked")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def users_folder(root):
    """A folder of the user's holding a file named like a stale record, a stale temporary and a
    stale note: what pruning would remove if it looked there."""
    root.mkdir(parents=True)
    for name in ("0" * 32 + ".json", ".hashes.abcdefgh.tmp", "notes.txt"):
        (root / name).write_text(f"the user's {name}\n")
        os.utime(root / name, (MONTH_AGO, MONTH_AGO))
    return root


def snapshot(root):
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else "folder", p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def link_cache_folder(cache_home, where, mine):
    """``fahr`` or ``fahr/contexts`` in the cache made a link to the user's folders; the user's
    files end up where fahr's records would be."""
    if where == "fahr":
        cache_home.mkdir(parents=True, exist_ok=True)
        (cache_home / "fahr").symlink_to(mine)
        return users_folder(mine / "contexts")
    (cache_home / "fahr").mkdir(parents=True, exist_ok=True)
    (cache_home / "fahr" / "contexts").symlink_to(mine)
    return users_folder(mine)


# -- the hash cache --------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["fahr", "contexts"])
def test_the_cache_is_never_used_through_a_link(tmp_path, cache_home, capsys, where):
    root = make_project(tmp_path / "proj")
    mine = tmp_path / "mine"
    link_cache_folder(cache_home, where, mine)
    before = snapshot(mine)
    hash_project(root)
    (root / "train.py").write_text("print('changed')\n")  # a changed record is written (and prunes)
    second = hash_project(root)
    assert snapshot(mine) == before  # nothing pruned, nothing written there
    assert "train.py" in second.hashed and "data.bin" in second.hashed  # no cache: everything read
    warnings = [line for line in capsys.readouterr().err.splitlines() if "symbolic link" in line]
    assert warnings and all("fahr neither reads nor writes through it" in w for w in warnings), warnings
    assert (cache_home / "fahr").is_symlink() or (cache_home / "fahr" / "contexts").is_symlink()


def test_pruning_removes_only_fahrs_stale_files(tmp_path, cache_home):
    root = make_project(tmp_path / "proj")
    hash_project(root)
    folder = hash_cache_file(root).parent
    stale_record = folder / ("1" * 32 + ".json")
    stale_tmp = folder / ".hashes.k3j4h5g6.tmp"  # what an older fahr's mkstemp left
    for path in (stale_record, stale_tmp):
        path.write_text("{}")
    note = folder / "notes.txt"  # not a name fahr writes
    note.write_text("the user's\n")
    victim = tmp_path / "victim.json"
    victim.write_text("the user's\n")
    link = folder / ("2" * 32 + ".json")  # fahr's name, but a link: not a file fahr wrote
    link.symlink_to(victim)
    named_folder = folder / ("3" * 32 + ".json")
    named_folder.mkdir()
    for path in (stale_record, stale_tmp, note, victim, named_folder):
        os.utime(path, (MONTH_AGO, MONTH_AGO))
    os.utime(link, (MONTH_AGO, MONTH_AGO), follow_symlinks=False)
    (root / "train.py").write_text("print('changed')\n")
    hash_project(root)  # a write prunes
    assert not stale_record.exists() and not stale_tmp.exists()
    assert note.read_text() == "the user's\n" and victim.read_text() == "the user's\n"
    assert link.is_symlink() and named_folder.is_dir()
    assert hash_cache_file(root).exists()


def test_pruning_removes_what_a_killed_write_of_a_record_left(tmp_path, cache_home):
    """A record is written to a new ``.NAME.*.partial`` renamed over it: one a killed fahr left is
    fahr's, pruned once stale; a fresh one (another fahr writing now) and one of another name stay."""
    root = make_project(tmp_path / "proj")
    hash_project(root)
    folder = hash_cache_file(root).parent
    stale = folder / f".{'4' * 32}.json.0123abcd.partial"
    fresh = folder / f".{'5' * 32}.json.4567cdef.partial"
    other = folder / f".{'6' * 32}.json.partial"
    for path in (stale, fresh, other):
        path.write_text("{")
    for path in (stale, other):
        os.utime(path, (MONTH_AGO, MONTH_AGO))
    (root / "train.py").write_text("print('changed')\n")
    hash_project(root)  # a write prunes
    assert not stale.exists() and fresh.exists() and other.exists()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".") and p not in (fresh, other)]


@pytest.mark.parametrize("kind", ["a pipe", "a link to a file of the user's", "too big"])
def test_a_bad_record_is_ignored_and_rewritten(tmp_path, cache_home, monkeypatch, kind):
    root = make_project(tmp_path / "proj")
    hash_project(root)
    record = hash_cache_file(root)
    victim = tmp_path / "victim.json"
    victim.write_text(record.read_text())  # a valid record: not even that is read through a link
    if kind == "too big":
        monkeypatch.setattr(cache, "_RECORD_MAX", 100)
    else:
        record.unlink()
        if kind == "a pipe":
            os.mkfifo(record)
        else:
            record.symlink_to(victim)
    kept = victim.read_bytes()
    with deadline(20):
        again = hash_project(root)
    assert sorted(again.hashed) == ["Dockerfile", "data.bin", "train.py"]  # nothing trusted
    assert victim.read_bytes() == kept  # never written through a link
    assert not record.is_symlink() and record.is_file()  # rewritten as a file of fahr's
    assert json.loads(record.read_text())["context"] == str(root)
    if kind != "too big":
        assert hash_project(root).hashed == []  # and used again


def test_the_cache_folder_swapped_for_a_link_while_in_use_is_not_followed(tmp_path, cache_home, monkeypatch):
    """``contexts`` replaced by a link to the user's folder after fahr opened it (just before it
    prunes): pruning and the record's write stay in the folder fahr opened."""
    root = make_project(tmp_path / "proj")
    hash_project(root)
    folder = hash_cache_file(root).parent
    mine = users_folder(tmp_path / "mine")
    before = snapshot(mine)
    prune = cache._prune

    def swapped(fd):
        os.rename(folder, tmp_path / "opened")
        folder.symlink_to(mine)
        prune(fd)

    monkeypatch.setattr(cache, "_prune", swapped)
    (root / "train.py").write_text("print('changed')\n")
    hash_project(root)
    assert snapshot(mine) == before
    assert json.loads((tmp_path / "opened" / hash_cache_file(root).name).read_text())["context"] == str(root)


NOBODY = 65534


@pytest.mark.parametrize("kind", ["writable by others", "another user's", "fahr is a file", "contexts is a file",
                                  "a dangling link"])
def test_a_cache_folder_fahr_cannot_trust_is_not_used(tmp_path, cache_home, capsys, kind):
    """Records in a folder another user can write (or owns) would decide which files fahr does not
    read again: such a folder, like one that is no folder, is neither read, written nor pruned;
    one warning says so, and the build works as without a cache."""
    if kind == "another user's" and os.geteuid() != 0:
        pytest.skip("making a folder another user's needs root")
    root = make_project(tmp_path / "proj")
    hash_project(root)
    folder = hash_cache_file(root).parent
    stale = folder / ("4" * 32 + ".json")
    stale.write_text("{}")
    os.utime(stale, (MONTH_AGO, MONTH_AGO))
    if kind == "writable by others":
        os.chmod(folder, 0o777)
    elif kind == "another user's":
        os.chown(folder, NOBODY, NOBODY)
    elif kind == "contexts is a file":
        shutil.rmtree(folder)
        folder.write_text("not a folder\n")
    else:
        shutil.rmtree(cache_home / "fahr")
        if kind == "a dangling link":
            (cache_home / "fahr").symlink_to(tmp_path / "nowhere")
        else:
            (cache_home / "fahr").write_text("not a folder\n")
    before = snapshot(cache_home)
    capsys.readouterr()
    (root / "train.py").write_text("print('changed')\n")  # a changed record would be written (and prune)
    again = hash_project(root)
    assert sorted(again.hashed) == ["Dockerfile", "data.bin", "train.py"]  # no record trusted
    assert snapshot(cache_home) == before  # nothing written, nothing pruned
    assert not (tmp_path / "nowhere").exists()
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warnings) == 1 and "hashes the build context's files anew at every fit" in warnings[0], warnings


def test_a_record_of_another_user_is_ignored(tmp_path, cache_home):
    if os.geteuid() != 0:
        pytest.skip("making a file another user's needs root")
    root = make_project(tmp_path / "proj")
    hash_project(root)
    record = hash_cache_file(root)
    os.chown(record, NOBODY, NOBODY)
    again = hash_project(root)
    assert sorted(again.hashed) == ["Dockerfile", "data.bin", "train.py"]
    assert record.stat().st_uid == os.geteuid()  # rewritten as the user's
    assert hash_project(root).hashed == []


def test_a_read_only_cache_costs_nothing_but_hashing(tmp_path):
    """``$XDG_CACHE_HOME`` on a read-only filesystem (a bind mount made read-only in a mount
    namespace of the child's own): hashing works, silently, with and without records there."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a read-only mount needs root and unshare")
    filled, empty = tmp_path / "filled", tmp_path / "empty"
    root = make_project(tmp_path / "proj")
    empty.mkdir()
    child = textwrap.dedent("""
        import sys
        from pathlib import Path
        from fahr_core.image import ContextHashes, cache, context_entries, context_files, stat_context
        cache._RACY_NS = -10**12
        root = Path(sys.argv[1])
        for _ in range(2):
            hashes = ContextHashes(root)
            context_entries(root, stat_context(root, context_files(root).paths), hashes)
            hashes.save()
            print(len(hashes.hashed))
    """)
    for home in (filled, empty):
        env = {**os.environ, "XDG_CACHE_HOME": str(home)}
        if home == filled:
            subprocess.run([sys.executable, "-c", child, str(root)], env=env, check=True, capture_output=True)
        script = f'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" -c "$3" "$4"'
        proc = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", str(home), sys.executable, child,
                               str(root)], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        assert proc.stdout.split() == (["0", "0"] if home == filled else ["3", "3"])


def test_a_record_linked_to_dev_zero_is_not_read(tmp_path, cache_home):
    """In a child under a memory limit (the machine's safety net), whose peak shows what was read."""
    root = make_project(tmp_path / "proj")
    hash_project(root)
    record = hash_cache_file(root)
    record.unlink()
    record.symlink_to("/dev/zero")
    child = textwrap.dedent("""
        import resource, sys
        from pathlib import Path
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from fahr_core.image import ContextHashes
        ContextHashes(Path(sys.argv[1]))
        # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak (pytest's) across exec.
        print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
    """)
    proc = subprocess.run([sys.executable, "-c", child, str(root)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache_home)})
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) < 200 * 1024, f"peak {proc.stdout.strip()} KiB: the record was read"


# -- images under the project's tag ----------------------------------------------------------------


@pytest.mark.docker
def test_a_fit_removes_no_image_and_no_file_it_did_not_make(tmp_path, docker_engine):
    """A foreign image under the project's tag stays, dangling or not; the user's files behind a
    linked cache folder stay; a cache record that is a pipe does not hang the fit. The fahr image a
    rebuild replaces is still removed."""
    import docker.errors

    folder = tmp_path / f"i15images{secrets.token_hex(3)}"
    folder.mkdir()
    (folder / "train.py").write_text("print('trained', open('version.txt').read())\n")
    (folder / "version.txt").write_text("1")
    tag = f"{folder.name}/train:latest"
    api = docker_engine.api
    made = [foreign_image(docker_engine, tag, secrets.token_hex(4))]  # no fahr label
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs"), "XDG_CACHE_HOME": str(tmp_path / "linked")}
    mine = link_cache_folder(tmp_path / "linked", "contexts", tmp_path / "mine")
    before = snapshot(mine)
    try:
        proc = run_fahr("fit", folder / "train.py", env=env, cwd=tmp_path)
        assert proc.returncode == 0 and "trained 1" in proc.stdout, proc.stderr
        first = api.inspect_image(tag)
        made.append(first["Id"])
        assert first["Id"] != made[0] and first["Config"]["Labels"]["fahr.model_tag"] == f"{folder.name}/train"
        assert api.inspect_image(made[0])["Id"] == made[0]  # the foreign image, untagged now, stays
        assert snapshot(mine) == before
        assert "fahr neither reads nor writes through it" in proc.stderr

        # A cache of fahr's own whose record is a pipe: ignored and rewritten; fahr's image replaced.
        env["XDG_CACHE_HOME"] = str(tmp_path / "own")
        record_home = tmp_path / "own" / "fahr" / "contexts"
        record_home.mkdir(parents=True)
        record = record_home / hash_cache_file(folder).name
        os.mkfifo(record)
        (folder / "version.txt").write_text("2")
        proc = run_fahr("fit", folder / "train.py", env=env, cwd=tmp_path, timeout=180)
        assert proc.returncode == 0 and "trained 2" in proc.stdout, proc.stderr
        made.append(api.inspect_image(tag)["Id"])
        assert record.is_file() and json.loads(record.read_text())["context"] == str(folder)
        with pytest.raises(docker.errors.ImageNotFound):
            api.inspect_image(made[1])  # fahr's own image, replaced: removed
        assert api.inspect_image(made[0])["Id"] == made[0]
    finally:
        for image_id in reversed(made):
            with contextlib.suppress(docker.errors.APIError):
                docker_engine.images.remove(image_id, force=True)


class _FakeApi:
    """The engine as _remove_leftovers sees it: image ids and their parents."""

    def __init__(self, parents):
        self.parents = parents
        self.removed = []

    def images(self, all, quiet):
        return list(self.parents)

    def inspect_image(self, image_id):
        return {"Id": image_id, "Parent": self.parents[image_id]}

    def remove_image(self, image_id, noprune):
        self.removed.append(image_id)


def test_a_failed_builds_leftovers_are_only_the_images_its_steps_made():
    """The build's output names its steps' images, but a RUN step can print such a line too: an
    image counts as this build's only when it also sits on the step before it."""
    ids = {name: "sha256:" + name * 64 for name in "abcdef"}
    base, step2, step3, users = ids["a"], ids["b"], ids["c"], ids["d"]
    api = _FakeApi({base: "", step2: base, step3: step2, users: ""})
    # step 1 is FROM (the base), a RUN printed the user's new image's id, then steps 2 and 3.
    committed = [base[7:19], users[7:19], step2[7:19], step3[7:19]]
    builder._remove_leftovers(api, committed, before={base})
    assert api.removed == [step3]  # step 2 sits on the base, not on the line before it: kept, safely
    api = _FakeApi({base: "", step2: base, step3: step2, users: ""})
    builder._remove_leftovers(api, [base[7:19], step2[7:19], step3[7:19], users[7:19]], before={base})
    assert api.removed == [step3, step2]  # the user's image is not on step 3: it stays


# -- a Dockerfile the engine could not follow ------------------------------------------------------


def container(tmp_path):
    """A copy of the example container (examples/byoc/container) in a folder of this test."""
    folder = tmp_path / f"i15images{secrets.token_hex(3)}" / "box"
    shutil.copytree(ROOT / "examples" / "byoc" / "container", folder)
    return folder


CASES = {
    "a link out of the folder": lambda f: (f / "Dockerfile").symlink_to(f.parent / "elsewhere" / "Dockerfile"),
    "a relative link out of the folder": lambda f: (f / "Dockerfile").symlink_to("../elsewhere/Dockerfile"),
    "an absolute link into the folder": lambda f: (f / "Dockerfile").symlink_to(f / "docker" / "Dockerfile"),
    "a link through a linked folder": lambda f: ((f / "up").symlink_to(".."),
                                                 (f / "Dockerfile").symlink_to("up/elsewhere/Dockerfile")),
    "a link to a file .dockerignore keeps out": lambda f: ((f / ".dockerignore").write_text("docker/\n"),
                                                           (f / "Dockerfile").symlink_to("docker/Dockerfile")),
    "a link to a secret": lambda f: (f / "Dockerfile").symlink_to("docker/Dockerfile.env"),
    "a dangling link": lambda f: (f / "Dockerfile").symlink_to("nowhere"),
    "a folder": lambda f: (f / "Dockerfile").mkdir(),
    "a pipe": lambda f: os.mkfifo(f / "Dockerfile"),
}
EXPECTED = {
    "a link out of the folder": "is a symbolic link that leads to an absolute path",
    "a relative link out of the folder": "is a symbolic link that leads out of",
    "an absolute link into the folder": "is a symbolic link that leads to an absolute path",
    "a link through a linked folder": "is a symbolic link that leads out of",
    "a link to a file .dockerignore keeps out": "is a symbolic link to docker/Dockerfile, which is not sent",
    "a link to a secret": "is a symbolic link to docker/Dockerfile.env, which is not sent",
    "a dangling link": "cannot be read (No such file or directory)",
    "a folder": "is not a file",
    "a pipe": "is not a file",
}


@pytest.mark.docker
@pytest.mark.parametrize("case", list(CASES))
def test_a_dockerfile_the_engine_could_not_read_is_one_line_before_the_build(tmp_path, docker_engine, case):
    folder = container(tmp_path)
    text = (folder / "Dockerfile").read_text()
    (folder / "Dockerfile").unlink()
    for where in (folder.parent / "elsewhere", folder / "docker"):
        where.mkdir()
        (where / "Dockerfile").write_text(text)
    (folder / "docker" / "Dockerfile.env").write_text(text)
    CASES[case](folder)
    since = int(time.time()) - 1
    proc = run_fahr("fit", folder, f"--config.output_path={tmp_path / 'jobs'}", cwd=tmp_path, timeout=60)
    line = one_line_error(proc, 2)
    assert line.startswith(f"fahr error: {folder / 'Dockerfile'} ") and EXPECTED[case] in line, line
    assert not (tmp_path / "jobs").exists()
    until = f"{time.time() + 0.5:.6f}"
    tag = f"{folder.parent.name}/box"
    builds = [e for e in docker_engine.api.events(since=since, until=until, decode=True, filters={"type": "image"})
              if tag in json.dumps(e)]
    assert builds == []


@pytest.mark.docker
def test_a_dockerfile_linked_inside_the_folder_builds(tmp_path, docker_engine):
    folder = container(tmp_path)
    (folder / "docker").mkdir()
    os.replace(folder / "Dockerfile", folder / "docker" / "Dockerfile.gpu")
    (folder / "Dockerfile").symlink_to("docker/Dockerfile.gpu")
    tag = f"{folder.parent.name}/box:latest"
    numbers = tmp_path / "numbers"
    numbers.mkdir()
    (numbers / "a.txt").write_text("1 2 3\n")
    try:
        proc = run_fahr("fit", folder, f"--config.output_path={tmp_path / 'jobs'}", "--input",
                        f"training={numbers}", "--fetch", tmp_path / "model", cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert json.loads((tmp_path / "model" / "model.json").read_text())["sum"] == 6
        docker_engine.api.inspect_image(tag)
    finally:
        with contextlib.suppress(Exception):
            docker_engine.images.remove(tag, force=True)


def other_build(engine, folder, tag, dockerfile, labels):
    """An image built by someone else than fahr (labels as the build API sets them, as fahr does)."""
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(dockerfile)
    made, _ = engine.images.build(path=str(folder), tag=tag, labels=labels, rm=True)
    return made.id


@pytest.mark.docker
def test_a_rebuild_removes_only_fahrs_own_untagged_image(tmp_path, cache_home, docker_engine):
    """In-process builds on the real engine (no job needed). The image a rebuild replaces goes only
    when fahr built it for this tag (any fahr version: an older fahr's image is fahr's too) and
    nothing else names it: a tag of the user's on it keeps it, tag and all. An image the user built
    FROM fahr's inherits its labels, fingerprint included: it is neither taken as up to date nor
    removed."""
    import docker.errors

    from fahr_core.values import BuildContext

    folder = tmp_path / f"i15imgreview{secrets.token_hex(3)}"
    make_project(folder)
    model_tag = f"{folder.name}/train"
    context = BuildContext(artifact=folder / "train.py", context_dir=folder, dockerfile=folder / "Dockerfile",
                           model_tag=model_tag)
    mine = f"{folder.name}-mine:kept"
    api = docker_engine.api
    made = []

    def rebuild(change=True):
        if change:
            (folder / "train.py").write_text(f"print({secrets.token_hex(4)!r})\n")
        made.append(image.build(context).image_id)
        return made[-1]

    def exists(image_id):
        with contextlib.suppress(docker.errors.ImageNotFound):
            return api.inspect_image(image_id)["Id"] == image_id
        return False

    def others(name, labels, base="python:3.11-slim"):
        made.append(other_build(docker_engine, tmp_path / name, f"{model_tag}:latest",
                                f"FROM {base}\nRUN echo {secrets.token_hex(4)} > /mark\n", labels))
        return made[-1]

    try:
        first = rebuild()
        api.tag(first, mine)  # the user keeps fahr's image under a name of their own
        rebuild()
        assert exists(first) and api.inspect_image(mine)["Id"] == first

        # The user's image FROM fahr's, under the project's tag: fahr's labels, not fahr's build.
        derived = others("derived", {}, base=f"{model_tag}:latest")
        assert api.inspect_image(derived)["Config"]["Labels"][image.FINGERPRINT_LABEL]
        assert rebuild(change=False) != derived  # not "up to date": built anew
        assert exists(derived)

        # Built by an older fahr (its labels, another version): fahr's, replaced and removed.
        older = others("older", {image.MODEL_TAG_LABEL: model_tag, image.VERSION_LABEL: "0.0.1"})
        rebuild()
        assert not exists(older)
        # fahr's labels, but for another tag: not this project's image, it stays.
        elsewhere = others("elsewhere", {image.MODEL_TAG_LABEL: f"{model_tag}x", image.VERSION_LABEL: "0.1.0"})
        replaced = rebuild()
        assert exists(elsewhere)
        # fahr's own image that nothing else names: removed.
        rebuild()
        assert not exists(replaced)
    finally:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_image(mine)
        for image_id in reversed(made):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_image(image_id, force=True)
