"""A local job's secret files belong to the user its image runs as (README "Secrets"): an image
whose Dockerfile sets a non-root USER reads them as on SageMaker, and the launcher removes them.

The USER rules (as the engine resolves them) are tested without Docker; one image of a non-root
USER (the project i17secfixuser) runs a real job given a secret, and the same project with a
USER its files do not name is one line, exit 2, before any container starts."""

from __future__ import annotations

import io
import json
import os
import secrets as random_secrets
import subprocess
import tarfile

import pytest

from conftest import FAHR
from fahr_core.contract import resolve_user, secrets_archive
from fahr_core.image.dockerfile import dockerfile_text
from secret_witness import digest

PASSWD = "root:x:0:0:root:/root:/bin/bash\n# a comment\napp:x:1000:1001::/home/app:/bin/sh\n" \
         "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nstaff:x:50:\napp:x:1001:\n"


@pytest.mark.parametrize("spec, ids", [
    ("", (0, 0)), ("root", (0, 0)), ("0", (0, 0)), ("root:staff", (0, 50)),
    ("app", (1000, 1001)), ("1000", (1000, 1001)), ("app:staff", (1000, 50)), ("app:7", (1000, 7)),
    ("2000", (2000, 0)), ("2000:2000", (2000, 2000)), ("nobody", (65534, 65534)),
])
def test_the_images_user_is_resolved_as_the_engine_does(spec, ids):
    assert resolve_user(spec, lambda: PASSWD, lambda: GROUP) == ids


@pytest.mark.parametrize("spec", ["ghost", "app:ghosts", "ghost:staff"])
def test_a_user_or_group_the_files_do_not_name_is_unresolved(spec):
    assert resolve_user(spec, lambda: PASSWD, lambda: GROUP) is None
    assert resolve_user(spec, lambda: "", lambda: "") is None  # an image without the files


def test_root_and_numbers_need_no_file():
    def unread():
        raise AssertionError("read for nothing")
    assert resolve_user("", unread, unread) == (0, 0)
    assert resolve_user("root:0", unread, unread) == (0, 0)


def test_the_archive_gives_the_secrets_and_fahrs_folders_to_the_owner_and_no_one_else():
    data = secrets_archive({"A": "1", "B": "2"}, owner=(1000, 1001))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {(m.uid, m.gid) for m in members.values()} == {(1000, 1001)}
    assert members["run/fahr/secrets"].mode == 0o700 and members["run/fahr"].mode == 0o755
    assert members["run/fahr/secrets/A"].mode == members["run/fahr/secrets/B"].mode == 0o600


NAME = "I17_SECFIX_TOKEN"
SCRIPT = f"""\
import hashlib, os
print("user", os.getuid(), flush=True)
print("secret sha256", hashlib.sha256(os.environ["{NAME}"].encode()).hexdigest(), flush=True)
print("secret files left:", os.path.exists("/run/fahr/secrets"), flush=True)
"""


@pytest.fixture(scope="module")
def user_project(tmp_path_factory, docker_engine):
    root = tmp_path_factory.mktemp("i17secfixuser")
    project = root / "i17secfixuser"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    yield root, project
    for image in docker_engine.images.list(name="i17secfixuser/train"):
        docker_engine.images.remove(image.id, force=True)


def _fit(root, project, user_lines: str, value: str):
    text = dockerfile_text("train.py", "python:3.11-slim", False)
    text = text.replace("ENTRYPOINT", f"{user_lines}ENTRYPOINT", 1)
    (project / "Dockerfile").write_text(text)
    env = {**os.environ, "NO_COLOR": "1", "FAHR_LOCAL_OUTPUT_PATH": str(root / "jobs"), NAME: value}
    return subprocess.run([str(FAHR), "fit", str(project / "train.py"), "--secret", NAME],
                          env=env, cwd=root, capture_output=True, text=True, timeout=600)


def test_an_image_of_a_non_root_user_gets_its_secret_and_the_files_go(user_project):
    value = "i17-" + random_secrets.token_hex(16)
    proc = _fit(*user_project, "RUN useradd -u 1000 app\nUSER app\n", value)
    assert proc.returncode == 0, proc.stderr
    assert "user 1000" in proc.stdout
    assert f"secret sha256 {digest(value)}" in proc.stdout
    assert "secret files left: False" in proc.stdout  # the launcher, as that user, removed them


def test_a_user_the_image_does_not_name_is_one_line_before_the_job_starts(user_project, docker_engine):
    root, project = user_project
    proc = _fit(root, project, "USER ghost\n", "v")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fahr error:")]
    assert len(errors) == 1 and errors[0] == proc.stderr.strip().splitlines()[-1]  # after the build's output
    assert "runs as USER ghost" in errors[0] and "useradd" in errors[0]
    assert not docker_engine.containers.list(all=True, filters={"name": "i17secfixuser-train-"})
    records = [json.loads(p.read_text()) for p in (root / "jobs").glob("*/job.json")]
    failed = [r for r in records if "runs as USER ghost" in r.get("failure_reason", "")]
    assert len(failed) == 1 and failed[0]["status"] == "Failed"  # the job is Failed with that reason
