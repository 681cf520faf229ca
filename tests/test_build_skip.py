"""An unchanged re-fit builds nothing; every change of what goes into the image rebuilds it.

Real engine, real `fahr` CLI, a project of a few MB on a base image of the test's own (so that
re-tagging it is this test's business). "No build" is proven by the engine, not by fahr's own
line: any build tags ``MODEL_TAG:latest`` (a build of nothing but cached steps too), so a fit that
built nothing left no ``tag`` event of that image in the engine's event log, and the image's id
and creation time are those of before. The fingerprint itself is unit-tested in
test_build_fingerprint.py.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import tarfile
import time

import pytest

from conftest import run_fahr
from fahr_core.image import FINGERPRINT_LABEL, hash_cache_file
from fahr_core.names import container_image_tag

pytestmark = pytest.mark.docker

SKIPPED = "is up to date (nothing it is built from changed); not rebuilt"

TRAIN = """\
import os
os.makedirs("/opt/ml/model", exist_ok=True)
open("/opt/ml/model/model.txt", "w").write(open("version.txt").read())
print("trained", open("version.txt").read().strip())
"""


def _build_base(engine, tag: str, mark: str) -> str:
    """A base image of our own: python:3.11-slim and a label (a different image per mark)."""
    dockerfile = f"FROM python:3.11-slim\nLABEL fahr-test-base-mark={mark}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buf.seek(0)
    image, _ = engine.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True)
    return image.id


@pytest.fixture(scope="module")
def base(docker_engine):
    """``fahr-test-base-<random>:1``, removed afterwards with every image tagged by the tests."""
    tag = f"fahr-test-base-{secrets.token_hex(4)}:1"
    made = {"tags": [tag], "ids": [_build_base(docker_engine, tag, "one")]}
    yield tag, made
    for name in made["tags"]:
        try:
            docker_engine.images.remove(name, noprune=False)
        except Exception:
            pass
    for image_id in made["ids"]:
        try:
            docker_engine.images.remove(image_id)
        except Exception:
            pass


class Project:
    """A model folder `skip<random>` with train.py, version.txt and a data folder of a few MB."""

    def __init__(self, root, engine, base, made, name=None):
        self.engine = engine
        self.folder = root / (name or f"skip{secrets.token_hex(3)}")
        self.folder.mkdir()
        (self.folder / "train.py").write_text(TRAIN)
        (self.folder / "version.txt").write_text("1\n")
        (self.folder / "data" / "deep").mkdir(parents=True)
        for i in range(3):
            (self.folder / "data" / f"part{i}.bin").write_bytes(os.urandom(1024 * 1024))
        (self.folder / "data" / "deep" / "notes.txt").write_text("notes\n")
        self.tag = f"{self.folder.name}/train"
        made["tags"].append(f"{self.tag}:latest")
        self.env = {"XDG_CACHE_HOME": str(root / "cache"), "FAHR_LOCAL_OUTPUT_PATH": str(root / "jobs")}
        self.base_args = [f"--config.base_image={base}"]

    def fit(self, *args, artifact=None, env=None):
        """``fahr fit`` of the project; the engine's ``tag`` events of its image while it ran."""
        start = time.time()
        proc = run_fahr("fit", artifact or self.folder / "train.py", *self.base_args, *args,
                        env={**self.env, **(env or {})}, cwd=self.folder.parent)
        end = time.time()
        assert proc.returncode == 0, proc.stderr
        return proc, self.tag_events(start, end)

    def tag_events(self, start, end):
        """The engine's ``tag`` events of the project's image between ``start`` and ``end``."""
        events = self.engine.api.events(since=int(start) - 1, until=f"{end + 0.5:.6f}", decode=True,
                                        filters={"type": "image", "event": "tag"})
        return [e for e in events if e.get("Actor", {}).get("Attributes", {}).get("name") == f"{self.tag}:latest"
                and start * 1e9 <= e.get("timeNano", 0) <= end * 1e9]

    def image(self):
        attrs = self.engine.api.inspect_image(f"{self.tag}:latest")
        return attrs["Id"], attrs["Created"], attrs["Config"]["Labels"].get(FINGERPRINT_LABEL)

    def assert_skipped(self, before, *args, **kwargs):
        proc, tags = self.fit(*args, **kwargs)
        assert tags == [], f"the image was built: {tags}\n{proc.stderr}"
        assert f"image {self.tag}:latest {SKIPPED}" in proc.stderr
        assert "building image" not in proc.stderr
        assert self.image() == before
        return proc

    def assert_rebuilt(self, before, *args, **kwargs):
        proc, tags = self.fit(*args, **kwargs)
        assert len(tags) == 1, proc.stderr
        assert f"building image {self.tag}:latest" in proc.stderr and SKIPPED not in proc.stderr
        after = self.image()
        assert after[2] and after[2] != before[2]  # a new fingerprint label
        return proc, after


@pytest.fixture
def project(tmp_path, docker_engine, base, monkeypatch):
    tag, made = base
    made_project = Project(tmp_path, docker_engine, tag, made)
    monkeypatch.setenv("XDG_CACHE_HOME", made_project.env["XDG_CACHE_HOME"])  # for hash_cache_file here
    return made_project


def test_an_unchanged_refit_builds_nothing(project):
    proc, tags = project.fit()
    assert len(tags) == 1 and "building image" in proc.stderr
    first = project.image()
    assert first[2].startswith("sha256:")
    cache = hash_cache_file(project.folder)
    assert cache.is_relative_to(project.env["XDG_CACHE_HOME"])

    again = project.assert_skipped(first)
    assert "trained 1" in again.stdout  # the job ran, on the same image

    # Touched, not changed: read again (its cache entry follows the new stat), not rebuilt.
    before = json.loads(cache.read_text())["files"]
    os.utime(project.folder / "data" / "part1.bin")
    project.assert_skipped(first)
    after = json.loads(cache.read_text())["files"]
    changed = sorted(p for p in after if after[p][:5] != before.get(p, [None])[:5])
    assert changed == ["data/part1.bin"]
    assert after["data/part1.bin"][5] == before["data/part1.bin"][5]

    # A corrupt cache is no error: everything is read again, nothing rebuilt, the cache rewritten.
    cache.write_bytes(b"\x00{garbage")
    project.assert_skipped(first)
    assert set(json.loads(cache.read_text())["files"]) >= {"train.py", "data/part0.bin"}

    # --rebuild builds (the engine's layer cache makes it the same image).
    proc, tags = project.fit("--rebuild")
    assert len(tags) == 1 and "building image" in proc.stderr and SKIPPED not in proc.stderr
    assert project.image()[0] == first[0]


def test_the_core_builder_builds_a_context_marked_rebuild(tmp_path, docker_engine, base, monkeypatch, capsys):
    """In process, through the core's build_image hook: ``BuildContext.rebuild`` (plugin API 1.3,
    set by prepare_context from ``fahr fit --rebuild``) builds although nothing changed; the same
    context without it skips the build. The hook reads the context, not a stash of the config."""
    from dataclasses import replace

    from fahr_core import defaults
    from fahr_core.image import prepare_context

    tag, made = base
    project = Project(tmp_path, docker_engine, tag, made, name=f"i16image{secrets.token_hex(3)}")
    monkeypatch.setenv("XDG_CACHE_HOME", project.env["XDG_CACHE_HOME"])
    context = prepare_context(project.folder / "train.py", project.tag, tag, overwrite=False)
    assert context.rebuild is False
    assert prepare_context(project.folder / "train.py", project.tag, tag, overwrite=False, rebuild=True).rebuild

    def build(ctx):
        start = time.time()
        built = defaults.build_image(context=ctx, config={})
        return built, project.tag_events(start, time.time()), capsys.readouterr().err

    first, tags, err = build(context)
    assert len(tags) == 1 and "building image" in err
    again, tags, err = build(context)
    assert tags == [] and SKIPPED in err and again.image_id == first.image_id
    rebuilt, tags, err = build(replace(context, rebuild=True))
    assert len(tags) == 1 and "building image" in err and SKIPPED not in err
    assert rebuilt.image_id == first.image_id  # the engine's layer cache: the same image


def test_every_change_of_what_goes_in_rebuilds(project, docker_engine, base):
    base_tag, made = base
    project.fit()
    state = project.image()

    (project.folder / "version.txt").write_text("2\n")  # same size, other content
    proc, state = project.assert_rebuilt(state)
    assert "trained 2" in proc.stdout

    (project.folder / "data" / "extra.csv").write_text("1,2\n")  # a new file
    _, state = project.assert_rebuilt(state)

    (project.folder / "data" / "extra.csv").unlink()  # a file removed
    _, state = project.assert_rebuilt(state)

    # .dockerignore keeps a file out (fahr's .dockerignore is in the image, so it changes too).
    ignore = project.folder / ".dockerignore"
    ignore.write_text(ignore.read_text() + "data/deep/\n")
    _, state = project.assert_rebuilt(state)
    project.assert_skipped(state)

    dockerfile = project.folder / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("WORKDIR /opt/program\n",
                                                         "WORKDIR /opt/program\nENV EDITED=1\n"))
    _, state = project.assert_rebuilt(state)

    # The base image replaced under the same tag: a new id, a rebuild on top of it.
    made["ids"].append(_build_base(docker_engine, base_tag, "two"))
    _, state = project.assert_rebuilt(state)
    labels = docker_engine.api.inspect_image(f"{project.tag}:latest")["Config"]["Labels"]
    assert labels["fahr-test-base-mark"] == "two"
    project.assert_skipped(state)


def test_a_dockerignore_line_that_keeps_nothing_new_out_does_not_rebuild(project):
    """When .dockerignore keeps itself out of the image (the engine drops it), only what it keeps
    out counts: a new line that matches nothing changes nothing."""
    project.fit()  # writes fahr's .dockerignore
    ignore = project.folder / ".dockerignore"
    ignore.write_text(ignore.read_text() + ".dockerignore\n")
    _, state = project.assert_rebuilt(project.image())
    ignore.write_text(ignore.read_text() + "# nothing new\nno-such-folder/\n")
    project.assert_skipped(state)
    ignore.write_text(ignore.read_text() + "data/part2.bin\n")
    project.assert_rebuilt(state)


BYOC_DOCKERFILE = """\
FROM {base}
COPY train /usr/local/bin/train
COPY data /opt/data
"""
BYOC_TRAIN = """\
#!/bin/sh
mkdir -p /opt/ml/model
echo {word} > /opt/ml/model/word.txt
echo "own container says {word}"
"""


def test_your_own_container_is_skipped_too(tmp_path, docker_engine, base):
    base_tag, made = base
    project = Project(tmp_path, docker_engine, base_tag, made, name=f"byoc{secrets.token_hex(3)}")
    folder = project.folder
    project.tag = container_image_tag(folder)  # a container's tag: parent/folder
    made["tags"].append(f"{project.tag}:latest")
    project.base_args = []
    (folder / "Dockerfile").write_text(BYOC_DOCKERFILE.format(base=base_tag))
    (folder / "train").write_text(BYOC_TRAIN.format(word="one"))
    os.chmod(folder / "train", 0o755)
    proc, tags = project.fit(artifact=folder)
    assert len(tags) == 1 and "own container says one" in proc.stdout, proc.stderr
    state = project.image()
    project.assert_skipped(state, artifact=folder)
    (folder / "train").write_text(BYOC_TRAIN.format(word="two"))
    proc, state = project.assert_rebuilt(state, artifact=folder)
    assert "own container says two" in proc.stdout
    os.chmod(folder / "train", 0o700)  # a mode is part of the image too
    project.assert_rebuilt(state, artifact=folder)


def test_a_from_that_names_a_variable_is_always_built(tmp_path, docker_engine, base):
    """What the build starts from is unknown before it runs: no fingerprint, never skipped."""
    base_tag, made = base
    project = Project(tmp_path, docker_engine, base_tag, made, name=f"argfrom{secrets.token_hex(3)}")
    project.tag = container_image_tag(project.folder)
    made["tags"].append(f"{project.tag}:latest")
    project.base_args = []
    (project.folder / "Dockerfile").write_text(f"ARG BASE={base_tag}\nFROM $BASE\nCOPY train /usr/local/bin/train\n")
    (project.folder / "train").write_text(BYOC_TRAIN.format(word="arg"))
    os.chmod(project.folder / "train", 0o755)
    for _ in range(2):
        proc, tags = project.fit(artifact=project.folder)
        assert len(tags) == 1 and SKIPPED not in proc.stderr
    assert project.image()[2] is None  # no label: nothing to compare with
