"""What goes into an image, and what fahr writes beside the script: no secret reaches an image
whatever .dockerignore says, generated files never follow a planted symlink, base_image cannot
inject a Dockerfile line, and a failed build leaves no image behind.

The path rule and the files are tested without Docker; the image tests build real images and
search their whole filesystem.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import stat
import tarfile
import textwrap

import pytest

from conftest import run_fahr
from fahr_core import image
from fahr_core.image import DOCKERIGNORE, GENERATED_MARK, context_files, context_tar, is_secret, prepare_context
from fahr_core.values import BuildContext

# Secrets, relative to the folder they are planted in (top level and sub/deeper/).
SECRET_FILES = [
    ".git/config", ".git/objects/ab/cdef0123", ".git-credentials",
    ".env", ".env.local", ".env_prod", "prod.env", ".envrc",
    ".aws/credentials", ".ssh/config", ".ssh/id_rsa.pub", ".kube/config", ".docker/config.json",
    ".gcloud/credentials.json", ".config/gcloud/configurations/config_default",
    "application_default_credentials.json", "credentials.db", "access_tokens.db",
    "legacy_credentials/me@example.com/adc.json",
    ".netrc", ".pypirc", ".npmrc",
    "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519",
    "server.pem", "tls.key", "cert.p12", "cert.pfx", "UPPER.PEM",
]
# Their near-misses, which must reach the image (and prove that the search finds what is there).
NEIGHBOURS = [
    "id_rsa.pub", "id_ed25519.pub", "keys.py", "environment.yml", ".envelope.txt", "env.txt",
    "pem.md", "key.txt", ".docker/daemon.json", ".config/app.toml", "gcloud_notes.txt",
]
# What fahr reports for one planted folder: a secret folder once, with a trailing slash.
KEPT_OUT = [
    ".aws/", ".config/gcloud/", ".docker/config.json", ".env", ".env.local", ".env_prod", ".envrc",
    ".gcloud/", ".git/", ".git-credentials", ".kube/", ".netrc", ".npmrc", ".pypirc", ".ssh/",
    "UPPER.PEM", "access_tokens.db", "application_default_credentials.json", "cert.p12", "cert.pfx",
    "credentials.db", "id_dsa", "id_ecdsa", "id_ed25519", "id_rsa", "legacy_credentials/", "prod.env",
    "server.pem", "tls.key",
]
HOSTILE_IGNORE = "!.env\n!**/.env\n!**/.git\n!**/.git/**\n!*.pem\n!**/*.pem\n!.ssh\n!**/id_rsa\n!**\n"
SOME_BACK = "!.env\n!**/.git\n!*.pem\n"  # brings some of DOCKERIGNORE's secrets back, not all


def plant(folder, token):
    """Plant every secret and neighbour at top level and under sub/deeper, each holding a unique
    marker; return (secret markers, neighbour markers)."""
    secret_marks, kept_marks = [], []
    for base in ("", "sub/deeper/"):
        for names, marks, kind in ((SECRET_FILES, secret_marks, "secret"), (NEIGHBOURS, kept_marks, "keep")):
            for name in names:
                mark = f"{token}-{kind}-{base}{name}"
                path = folder / base / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(mark + "\n")
                marks.append(mark)
    return secret_marks, kept_marks


def plant_outside_links(folder, outside, token):
    """Symlinks from the project to a file and a folder outside it: sent as links, never followed."""
    outside.mkdir()
    mark = f"{token}-secret-outside"
    (outside / "secret.txt").write_text(mark + "\n")
    (folder / "link_to_file").symlink_to(outside / "secret.txt")
    (folder / "link_to_folder").symlink_to(outside)
    return mark


# -- the path rule --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", SECRET_FILES + [f"sub/deeper/{p}" for p in SECRET_FILES] + [
    ".git", "a/.git", ".ENV", "x/.Env.Production", "id_rsa_work", "certs/site.PFX", ".env/bin/python",
])
def test_secret_paths(path):
    assert is_secret(path)


@pytest.mark.parametrize("path", NEIGHBOURS + [f"sub/deeper/{p}" for p in NEIGHBOURS] + [
    "train.py", "Dockerfile", ".dockerignore", "gitignore", ".gitignore", ".github/workflows/ci.yml",
    "environment", ".envs/readme", "docker/config.json", "gcloud/readme.md", "pem", "keys/readme.md",
    "id_rsa.pub", "model.keystore.txt", "ssh/config",
])
def test_not_secret_paths(path):
    assert not is_secret(path)


# -- the context fahr sends -----------------------------------------------------------------------

def tar_contents(context_dir, dockerfile="Dockerfile"):
    with context_tar(BuildContext(artifact=context_dir / "train.py", context_dir=context_dir,
                                  dockerfile=context_dir / dockerfile, model_tag="t/train")) as stream:
        with tarfile.open(fileobj=stream) as tar:
            return {m.name: (m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()}


@pytest.mark.parametrize("ignore", [DOCKERIGNORE + HOSTILE_IGNORE, HOSTILE_IGNORE, DOCKERIGNORE + SOME_BACK, None],
                         ids=["generated+hostile", "hostile", "generated+some-back", "none"])
def test_context_holds_no_secret_whatever_dockerignore_says(tmp_path, ignore):
    token = secrets.token_hex(8)
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "train.py").write_text("print(1)\n")
    (folder / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY . .\n")
    if ignore is not None:
        (folder / ".dockerignore").write_text(ignore)
    secret_marks, kept_marks = plant(folder, token)
    outside_mark = plant_outside_links(folder, tmp_path / "outside", token)

    members = tar_contents(folder)
    data = b"".join(content for _, content in members.values() if content)
    assert [m for m in secret_marks + [outside_mark] if m.encode() in data] == []
    assert [m for m in kept_marks if m.encode() not in data] == []
    assert "Dockerfile" in members and "train.py" in members
    assert (".dockerignore" in members) == (ignore is not None)
    for name in members:
        assert not is_secret(name), name
    link, _ = members["link_to_file"]
    assert link.issym() and link.linkname == str(tmp_path / "outside" / "secret.txt")
    assert members["link_to_folder"][0].issym()
    assert not any(n.startswith("link_to_folder/") for n in members)

    kept = context_files(folder).kept_out
    if ignore != DOCKERIGNORE + SOME_BACK:
        assert sorted(kept) == sorted(KEPT_OUT + [f"sub/deeper/{k}" for k in KEPT_OUT])
    else:
        # What .dockerignore itself leaves out (its patterns without **/ match the top level only)
        # is not fahr's doing and is not reported; what its `!` lines bring back is.
        for path in (".env", ".git/", "server.pem", "sub/deeper/.git/", "sub/deeper/.aws/", "sub/deeper/tls.key"):
            assert path in kept
        for path in (".aws/", "tls.key", ".ssh/", "id_rsa", ".netrc"):
            assert path not in kept


def test_context_keeps_dockerfile_and_dockerignore_and_applies_exclusions(tmp_path):
    folder = tmp_path / "proj"
    (folder / "data" / "raw").mkdir(parents=True)
    (folder / "data" / "raw" / "big.bin").write_bytes(b"x")
    (folder / "data" / "keep.csv").write_text("1\n")
    (folder / "train.py").write_text("print(1)\n")
    (folder / "Dockerfile").write_text("FROM python:3.11-slim\n")
    (folder / ".dockerignore").write_text("Dockerfile\n.dockerignore\ndata\n!data/keep.csv\n")
    members = tar_contents(folder)
    # docker sends the Dockerfile and .dockerignore whatever .dockerignore says (the engine needs them)
    assert sorted(members) == [".dockerignore", "Dockerfile", "data/keep.csv", "train.py"]
    assert context_files(folder).kept_out == []


def test_kept_out_line_is_one_line_and_absent_without_secrets(tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM python:3.11-slim\n")
    script = folder / "train.py"
    script.write_text("print(1)\n")
    probe = ("from pathlib import Path; from fahr_core.image import context_tar; from fahr_core.values import BuildContext;"
             f"p = Path({str(folder)!r}); context_tar(BuildContext(artifact=p / 'train.py', context_dir=p,"
             " dockerfile=p / 'Dockerfile', model_tag='t/train')).close()")
    import subprocess
    import sys

    def stderr():
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                              env={**os.environ, "NO_COLOR": "1", "COLUMNS": "80"}).stderr

    assert stderr() == ""
    for name in (".env", "conf/.npmrc", ".git/HEAD", "a.pem", "b.key", "c.p12"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    assert stderr().splitlines() == [
        "fahr warning kept 6 secret files out of the image: .env, .git/, a.pem, b.key, c.p12, …"
    ]
    for name in ("a.pem", "b.key", "c.p12", "conf/.npmrc"):
        (folder / name).unlink()
    (folder / "x\ny.env").write_text("x")  # a newline in a name does not split the line
    assert stderr().splitlines() == [
        "fahr warning kept 3 secret files out of the image: .env, .git/, 'x\\ny.env'"
    ]


# -- generated files and planted symlinks ---------------------------------------------------------

def test_generated_files_never_follow_a_planted_symlink(tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    script = folder / "train.py"
    script.write_text("print(1)\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    # The temporary names fahr used before, and any a guess might produce: none may be followed.
    for name in (".Dockerfile.fahr-tmp", ".dockerignore.fahr-tmp", ".Dockerfile.bak.fahr-tmp"):
        (folder / name).symlink_to(victim)
    prepare_context(script, "proj/train", "python:3.11-slim", overwrite=False)
    assert victim.read_text() == "precious\n"
    dockerfile, ignore = folder / "Dockerfile", folder / ".dockerignore"
    assert not dockerfile.is_symlink() and dockerfile.read_text().startswith(GENERATED_MARK)
    assert ignore.read_text() == DOCKERIGNORE
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(dockerfile.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith("fahr-tmp")) == [
        ".Dockerfile.bak.fahr-tmp", ".Dockerfile.fahr-tmp", ".dockerignore.fahr-tmp"]  # left alone

    # A Dockerfile that is a link to a file outside: regenerating replaces the link, not its target,
    # and keeps the link itself as Dockerfile.bak (its target is never read).
    dockerfile.unlink()
    dockerfile.symlink_to(victim)
    prepare_context(script, "proj/train", "python:3.11-slim", overwrite=True)
    assert victim.read_text() == "precious\n"
    assert not dockerfile.is_symlink() and dockerfile.read_text().startswith(GENERATED_MARK)
    backup = folder / "Dockerfile.bak"
    assert backup.is_symlink() and os.readlink(backup) == str(victim)

    # A user's Dockerfile kept as Dockerfile.bak where a link to outside waits: the link is replaced.
    backup.unlink()
    other = tmp_path / "other.txt"
    other.write_text("also precious\n")
    backup.symlink_to(other)
    dockerfile.write_text("FROM python:3.11-slim\n# mine\n")
    prepare_context(script, "proj/train", "python:3.11-slim", overwrite=True)
    assert other.read_text() == "also precious\n" and victim.read_text() == "precious\n"
    assert not backup.is_symlink() and backup.read_text() == "FROM python:3.11-slim\n# mine\n"

    # A dangling link at .dockerignore pointing outside creates nothing there.
    ignore.unlink()
    ignore.symlink_to(tmp_path / "planted-ignore")
    prepare_context(script, "proj/train", "python:3.11-slim", overwrite=True)
    assert not (tmp_path / "planted-ignore").exists()
    assert not ignore.is_symlink() and ignore.read_text() == DOCKERIGNORE


def test_a_write_that_fails_is_one_line_and_leaves_no_temporary(tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "train.py").write_text("print(1)\n")
    (folder / "Dockerfile").write_text("FROM python:3.11-slim\n# mine\n")
    (folder / "Dockerfile.bak" / "x").mkdir(parents=True)  # nothing can be renamed over it, even by root
    with pytest.raises(image.UsageError, match=r"^cannot write .*Dockerfile\.bak: (Is a directory|Directory not empty);"):
        prepare_context(folder / "train.py", "proj/train", "python:3.11-slim", overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["Dockerfile", "Dockerfile.bak", "train.py"]
    assert (folder / "Dockerfile").read_text() == "FROM python:3.11-slim\n# mine\n"  # untouched


# -- base_image -----------------------------------------------------------------------------------

@pytest.mark.parametrize("ref", [
    "python", "python:3.11-slim", "library/python:3.11", "ghcr.io/org/team/img:v1.2_3",
    "localhost:5000/a/b", "my-registry.example.com:443/x__y/z-z:latest", "[::1]:5000/img:tag",
    "img@sha256:" + "a" * 64, "python:3.11@sha256:" + "0123456789abcdef" * 4, "a" * 255,
])
def test_valid_image_references(ref):
    assert image.image_reference_problem(ref) is None


@pytest.mark.parametrize("ref", [
    "", "Python:3.11", "python:3.11\nRUN touch /pwned", "python:3.11\n", "python 3.11",
    "python:3.11 AS base", "python:", ":3.11", "a//b", "-python", "python:.3", "python:" + "t" * 129,
    "$BASE", "${BASE}", "python@sha256:abc", "python:3.11\r\nRUN x", "pythön", "a" * 256, "py\tthon",
])
def test_invalid_image_references(ref):
    assert image.image_reference_problem(ref)
    with pytest.raises(image.UsageError):
        image.dockerfile_text("train.py", ref, has_requirements=False)


INJECTION = "python:3.11-slim\nRUN touch /pwned"


@pytest.mark.parametrize("layer", ["cli", "env", "toml"])
def test_base_image_is_validated_in_every_layer(tmp_path, layer):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "train.py").write_text("print(1)\n")
    args, env = [], {"FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs")}
    if layer == "cli":
        args, source = [f"--config.base_image={INJECTION}"], "--config.base_image"
    elif layer == "env":
        env["FAHR_LOCAL_BASE_IMAGE"], source = INJECTION, "$FAHR_LOCAL_BASE_IMAGE"
    else:
        (folder / "fahr.toml").write_text('[local]\nbase_image = "python:3.11 AS x"\n')
        source = str(folder / "fahr.toml")
    proc = run_fahr("fit", folder / "train.py", *args, env=env)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("fahr error: config.base_image=") and f"(from {source}) is not a Docker image reference" in line
    written = {p.name for p in folder.iterdir()} - {"train.py", "fahr.toml"}
    assert written == set()  # refused before a Dockerfile was written or anything built
    assert not (tmp_path / "jobs").exists()


# -- real images ----------------------------------------------------------------------------------

class _Chunks(io.RawIOBase):
    """A file over the chunks of an export stream, for tarfile's streaming mode."""

    def __init__(self, chunks):
        self._chunks, self._rest = iter(chunks), b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self._rest:
            self._rest = next(self._chunks, None)
            if self._rest is None:
                self._rest = b""
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n], self._rest = self._rest[:n], self._rest[n:]
        return n


def markers_in_image(client, reference, token):
    """Every marker (``TOKEN-…`` up to the end of its line) in any regular file of the image."""
    container = client.containers.create(reference, entrypoint=["true"])
    found, files = set(), 0
    pattern = re.compile(re.escape(token.encode()) + rb"-[^\n]*")
    try:
        with tarfile.open(fileobj=io.BufferedReader(_Chunks(container.export()), 1 << 20), mode="r|") as tar:
            for member in tar:
                if member.isreg():
                    files += 1
                    found.update(m.decode() for m in pattern.findall(tar.extractfile(member).read()))
    finally:
        container.remove(force=True)
    assert files > 1000  # the whole filesystem was searched, not just the project
    return found


@pytest.mark.docker
@pytest.mark.parametrize("dockerfile", ["generated", "own"])
def test_no_secret_reaches_the_image(docker_engine, fahr, jobs_dir, tmp_path, dockerfile):
    token = secrets.token_hex(8)
    folder = tmp_path / f"secrets-{dockerfile}"
    folder.mkdir()
    (folder / "train.py").write_text(textwrap.dedent("""\
        import os
        print("listing:", sorted(os.listdir(".")))
    """))
    if dockerfile == "own":
        (folder / "Dockerfile").write_text(
            'FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nENTRYPOINT ["python", "/app/train.py"]\n')
        (folder / ".dockerignore").write_text(HOSTILE_IGNORE)
    else:
        (folder / ".dockerignore").write_text(DOCKERIGNORE + HOSTILE_IGNORE)
    secret_marks, kept_marks = plant(folder, token)
    outside_mark = plant_outside_links(folder, tmp_path / "outside", token)
    proc = fahr("fit", folder / "train.py", check=0)
    [line] = [l for l in proc.stderr.splitlines() if "out of the image" in l]
    assert re.fullmatch(r"fahr warning kept \d+ secret files out of the image: \.aws/, .*, …", line)
    reference = f"{folder.name}/train:latest"
    try:
        found = markers_in_image(docker_engine, reference, token)
    finally:
        docker_engine.images.remove(reference, force=True)
    assert sorted(set(secret_marks + [outside_mark]) & found) == []
    assert sorted(set(kept_marks) - found) == []


@pytest.mark.docker
def test_a_failed_build_leaves_no_image(docker_engine, fahr, jobs_dir, tmp_path):
    folder = tmp_path / "fails-late"
    folder.mkdir()
    (folder / "train.py").write_text("print(1)\n")
    marker = secrets.token_hex(8)  # new steps: no cache hit may stand in for what this build makes
    (folder / "Dockerfile").write_text(
        f"FROM python:3.11-slim\nRUN echo {marker} > /one\nRUN echo two > /two\nCOPY train.py /\n"
        "RUN echo about to fail && exit 3\n")
    api = docker_engine.api
    dangling_before = set(api.images(all=True, quiet=True, filters={"dangling": True}))
    proc = fahr("fit", folder / "train.py")
    assert proc.returncode == 2 and "image build failed at step 5/" in proc.stderr, proc.stderr
    base = docker_engine.images.get("python:3.11-slim").id
    committed = re.findall(r"^\s*---> ([0-9a-f]{12})\s*$", proc.stderr, re.M)
    containers = re.findall(r"^\s*---> Running in ([0-9a-f]{12})\s*$", proc.stderr, re.M)
    made = [i for i in committed if not base.split(":")[1].startswith(i)]
    assert len(made) == 3  # the steps before the failing one each committed an image
    assert len(containers) == 3  # the three RUN steps, the failing one included, ran a container
    import docker.errors

    for short in made:
        with pytest.raises(docker.errors.ImageNotFound):
            docker_engine.images.get(short)
    for short in containers:
        with pytest.raises(docker.errors.NotFound):
            docker_engine.containers.get(short)
    # Other builds may run on this engine meanwhile: no dangling image that appeared stems from ours.
    for image_id in set(api.images(all=True, quiet=True, filters={"dangling": True})) - dangling_before:
        try:
            history = {layer["Id"].split(":")[-1][:12] for layer in api.history(image_id)}
        except docker.errors.NotFound:
            continue  # another build's, removed meanwhile
        assert not history & set(made), image_id
    assert api.images(all=True, quiet=True, filters={"label": "fahr.model_tag=fails-late/train"}) == []
    docker_engine.images.get("python:3.11-slim")  # the base image stays


# (Regenerating over a Dockerfile that is a link keeps the link itself as Dockerfile.bak: tested above.)
@pytest.mark.parametrize("kind, regenerate", [("a folder", False), ("a folder", True), ("a pipe", False),
                                              ("a pipe", True), ("a link to /dev/zero", False)])
def test_a_dockerfile_that_is_not_a_file_is_one_line(tmp_path, kind, regenerate):
    project = tmp_path / "odd"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    dockerfile = project / "Dockerfile"
    if kind == "a folder":
        dockerfile.mkdir()
    elif kind == "a pipe":
        os.mkfifo(dockerfile)
    else:
        dockerfile.symlink_to("/dev/zero")
    args = ["fit", project / "train.py", f"--config.output_path={tmp_path / 'jobs'}"]
    args += ["--regenerate-dockerfile"] if regenerate else ["--config.base_image=python:3.12-slim"]
    proc = run_fahr(*args, timeout=60)
    assert proc.returncode == 2, proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if line.strip()]
    why = "is a symbolic link that leads to an absolute path" if kind == "a link to /dev/zero" else "is not a file"
    assert line.startswith(f"fahr error: {dockerfile} {why}"), line
    assert not (tmp_path / "jobs").exists()


def test_a_dockerfile_fahr_wrote_for_one_script_is_not_used_for_another(tmp_path):
    # `fahr fit train.py`, then `fahr fit eval.py` in the same folder: the Dockerfile written for
    # train.py runs train.py, so the job tagged proj/eval trained train.py and stored its model
    # under eval's tag, silently. Refused in one line (nothing written); --regenerate-dockerfile
    # writes it for eval.py; a Dockerfile whose ENTRYPOINT was edited to run eval.py is used.
    folder = tmp_path / "proj"
    folder.mkdir()
    for name in ("train.py", "eval.py"):
        (folder / name).write_text("print(1)\n")
    prepare_context(folder / "train.py", "proj/train", "python:3.11-slim", overwrite=False)
    written = (folder / "Dockerfile").read_text()
    with pytest.raises(image.UsageError) as caught:
        prepare_context(folder / "eval.py", "proj/eval", "python:3.11-slim", overwrite=False)
    assert str(caught.value).startswith(f"{folder / 'Dockerfile'} was written by fahr for train.py")
    assert "--regenerate-dockerfile" in str(caught.value)
    assert (folder / "Dockerfile").read_text() == written
    assert prepare_context(folder / "train.py", "proj/train", "python:3.11-slim", overwrite=False)  # its own script
    (folder / "Dockerfile").write_text(written.replace('"train.py"]', '"eval.py"]'))
    assert prepare_context(folder / "eval.py", "proj/eval", "python:3.11-slim", overwrite=False)
    prepare_context(folder / "eval.py", "proj/eval", "python:3.11-slim", overwrite=True)
    assert '"eval.py"]' in (folder / "Dockerfile").read_text()
