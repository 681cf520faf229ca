"""No secret in an image, also off the list: credential files by name (the tools ML engineers use,
and backups of every listed name), credentials by content (the first MiB of every file sent),
the `.fahr-allow-secrets` way out, and the scan's verdict kept beside each file's hash.

The rules and the context fahr sends are tested without Docker, on the real filesystem; the image
tests build real images (a generated Dockerfile and a container of the user's own) and search
`docker save` of each, every layer, for the credentials' bytes. Every credential here is made at
run time from random characters: none is in this file's text.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import secrets as _random
import string
import subprocess
import sys
import tarfile

import pytest

from conftest import ROOT, one_line_error, run_fahr
from fahr_core import image
from fahr_core.image import cache, context
from fahr_core import secrets as rule
from fahr_core.image import (ContextHashes, context_entries, context_files, context_tar, hash_cache_file, is_secret,
                             stat_context)
from fahr_core.values import BuildContext

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "_-"


def chars(n: int, alphabet: str = ALNUM, mark: str = "") -> str:
    """``n`` random characters of ``alphabet``, beginning with ``mark`` (found again in an image)."""
    return mark + "".join(random.choice(alphabet) for _ in range(n - len(mark)))


def pem(label: str, mark: str = "", headers: str = "", escaped: bool = False) -> str:
    body = "\n".join(chars(64, B64, mark if i == 0 else "") for i in range(6))
    text = f"-----BEGIN {label}-----\n{headers}{body}\n-----END {label}-----\n"
    return text.replace("\n", "\\n") if escaped else text


def service_account(mark: str = "", key: str | None = None) -> str:
    return json.dumps({
        "type": "service_account", "project_id": "my-project-4f2a", "private_key_id": chars(40, HEX),
        "private_key": key if key is not None else pem("PRIVATE KEY", mark),
        "client_email": "trainer@my-project-4f2a.iam.gserviceaccount.com", "client_id": chars(21, "0123456789"),
    }, indent=2)


def credential(kind: str, mark: str = "") -> list[str]:
    """Texts holding a credential of ``kind``, as it appears in files (each holds ``mark``)."""
    aws_id = "AKIA" + chars(16, string.ascii_uppercase + string.digits)
    aws_secret = chars(40, B64, mark)
    return {
        "private key": [pem("RSA PRIVATE KEY", mark), pem("OPENSSH PRIVATE KEY", mark), pem("PRIVATE KEY", mark),
                        pem("EC PRIVATE KEY", mark), pem("ENCRYPTED PRIVATE KEY", mark), pem("DSA PRIVATE KEY", mark),
                        pem("RSA PRIVATE KEY", mark, "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0F1E2D\n\n"),
                        pem("PGP PRIVATE KEY BLOCK", mark, "Version: GnuPG v2\n\n"),
                        f"key = \"{pem('PRIVATE KEY', mark, escaped=True)}\"\n",
                        f"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: me\nPublic-Lines: 2\n"
                        f"{chars(64, B64)}\n{chars(20, B64)}\nPrivate-Lines: 1\n{chars(44, B64, mark)}\n",
                        "AGE-SECRET-KEY-1" + chars(58, "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L")],
        rule.SERVICE_ACCOUNT_KEY: [service_account(mark)],
        "AWS secret access key": [
            f"[default]\naws_access_key_id = {aws_id}\naws_secret_access_key = {aws_secret}\n",
            f"Access key ID,Secret access key\n{aws_id},{aws_secret}\n",
            f"export AWS_SECRET_ACCESS_KEY='{aws_secret}'\n",
            json.dumps({"Credentials": {"AccessKeyId": "ASIA" + aws_id[4:], "SecretAccessKey": aws_secret}}),
        ],
        "Hugging Face token": [f"HF_TOKEN=hf_{chars(34, ALNUM, mark)}\n",
                               f'login(token="hf_{chars(37, ALNUM, mark)}")'],
        "GitHub token": [f"ghp_{chars(36, ALNUM, mark)}", f"oauth_token: gho_{chars(36, ALNUM, mark)}",
                         f"git clone https://ghs_{chars(36, ALNUM, mark)}@github.com/org/repo.git",
                         f"github_pat_{chars(22, ALNUM, mark)}_{chars(59)}"],
        "GitLab token": [f"--extra-index-url https://__token__:glpat-{chars(20, URLSAFE, mark)}@gitlab.com/simple"],
        "Slack token": [f"xoxb-{chars(11, '0123456789')}-{chars(13, '0123456789')}-{chars(24, ALNUM, mark)}"],
        "Slack webhook": [f"https://hooks.slack.com/services/T{chars(8, string.ascii_uppercase)}/"
                          f"B{chars(10, string.ascii_uppercase)}/{chars(24, ALNUM, mark)}"],
        "Anthropic API key": [f"ANTHROPIC_API_KEY=sk-ant-api03-{chars(93, URLSAFE, mark)}AA"],
        "OpenAI-style API key": [f"openai.api_key = 'sk-proj-{chars(156, URLSAFE, mark)}'",
                                 f"sk-{chars(48, ALNUM, mark)}", f"sk-{chars(32, HEX, mark)}"],
        "Stripe secret key": [f"sk_live_{chars(24, ALNUM, mark)}", f"rk_live_{chars(99, ALNUM, mark)}"],
        "npm token": [f"//registry.npmjs.org/:_authToken=npm_{chars(36, ALNUM, mark)}"],
        "PyPI token": [f"password = pypi-AgEIcHlwaS5vcmc{chars(70, URLSAFE, mark)}"],
        "Google API key": [f"GOOGLE_API_KEY=AIza{chars(35, URLSAFE, mark)}"],
        "Google OAuth client secret": [
            json.dumps({"installed": {"client_secret": f"GOCSPX-{chars(28, URLSAFE, mark)}"}})],
        "Databricks token": [f"token = dapi{chars(32, HEX, mark)}"],
        "Replicate token": [f"r8_{chars(37, ALNUM, mark)}"],
        "Groq API key": [f"gsk_{chars(52, ALNUM, mark)}"],
        "Perplexity API key": [f"pplx-{chars(48, ALNUM, mark)}"],
        "xAI API key": [f"xai-{chars(80, ALNUM, mark)}"],
        "LangSmith API key": [f"lsv2_pt_{chars(32, HEX, mark)}_{chars(10, HEX)}"],
        "Docker Hub token": [f"dckr_pat_{chars(27, URLSAFE, mark)}"],
        "Vault token": [f"hvs.{chars(90, URLSAFE, mark)}"],
        "Terraform Cloud token": [f'token = "{chars(14)}.atlasv1.{chars(67, URLSAFE, mark)}"'],
        "DigitalOcean token": [f"dop_v1_{chars(64, HEX, mark)}"],
        "Shopify token": [f"shpat_{chars(32, HEX, mark)}"],
        "SendGrid API key": [f"SG.{chars(22, URLSAFE, mark)}.{chars(43, URLSAFE)}"],
        "Azure storage key": [f"DefaultEndpointsProtocol=https;AccountName=x;AccountKey={chars(86, B64, mark)}==;"
                              "EndpointSuffix=core.windows.net"],
        "Kaggle API key": [json.dumps({"username": "me", "key": chars(32, HEX, mark)})],
    }[kind]


# -- by name --------------------------------------------------------------------------------------

# The list (each was sent before), other well-known credential files of the same kind, and
# backups of listed names.
NAMED = [
    ".huggingface/token", ".cache/huggingface/token", "hf_home/huggingface/stored_tokens", ".config/gh/hosts.yml",
    ".terraform.d/credentials.tfrc.json", "terraform.tfvars", "prod.auto.tfvars", "terraform.tfvars.json",
    "terraform.tfstate", "infra/terraform.tfstate.backup", ".terraformrc", ".kaggle/kaggle.json", "kaggle.json",
    ".pgpass", ".my.cnf", ".mylogin.cnf", ".vault-token", ".s3cfg", ".boto", ".passwd-s3fs", ".azure/accessTokens.json",
    ".databrickscfg", "rclone.conf", ".config/rclone/rclone.conf", ".oci/config", "kubeconfig", "_netrc",
    ".dockercfg", ".ngc/config", ".comet.config", "clearml.conf", ".modal.toml", "ngrok.yml", ".mlflow/credentials",
    ".dvc/config.local", ".streamlit/secrets.toml", ".htpasswd", "deploy.ppk", "release.jks", "app.keystore",
    "vault.kdbx",
    ".env~", "id_rsa~", ".netrc.bak", "server.pem.bak", ".env.orig", ".pgpass.old", "id_ed25519.swp",
    ".id_rsa.swp", ".env.swp", ".netrc.swo", "#.netrc#", ".netrc.~1~", "rclone.conf.save", ".env.bak~",
    ".docker/config.json.bak", ".docker.old/config.json", ".aws.bak/credentials", "kaggle.json.backup",
]
# Near-misses: files of those tools that hold no credential, and backups of names not listed.
NOT_NAMED = [
    "token", "huggingface/hub/models--x/config.json", ".cache/huggingface/datasets/x.arrow", "gh/config.yml",
    ".config/gh/config.yml", "kaggle.py", "main.tf", "variables.tf", ".terraform.lock.hcl", "notes.bak",
    "train.py~", "model.old", "weights.orig", "id_rsa.pub.bak", ".id_rsa.pub.swp", "my.cnf.md", "boto.py",
    "s3cfg.md", "azure/readme.md", "rclone.md", ".dvc/config", ".mlflow/runs.txt", "secrets.py", "~", ".bak",
    ".docker/daemon.json.bak", "env.bak", "tfvars.md",
]


@pytest.mark.parametrize("path", NAMED + [f"deep/er/{p}" for p in NAMED[:5]])
def test_listed_credential_files_are_secrets(path):
    assert is_secret(path)  # image.is_secret: the rule, kept importable where it was


@pytest.mark.parametrize("path", NOT_NAMED)
def test_near_misses_are_not_secrets(path):
    assert not is_secret(path)


def test_a_backup_of_every_listed_name_is_listed():
    names = sorted(rule.NAMES) + [f"x{s}" for s in rule.SUFFIXES] + [".env.local", "id_rsa", "id_ecdsa_work"]
    missed = [name + suffix for name in names for suffix in rule.BACKUP_SUFFIXES if not is_secret(name + suffix)]
    assert missed == []
    children = [f"{parent}/{child}{suffix}" for parent, child in rule.CHILDREN for suffix in rule.BACKUP_SUFFIXES]
    assert [p for p in children if not is_secret(p)] == []


# -- by content -----------------------------------------------------------------------------------

CASES = [(kind, text) for kind in rule.KINDS + (rule.SERVICE_ACCOUNT_KEY,) for text in credential(kind)]


@pytest.mark.parametrize("kind, text", CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_every_detector_finds_its_credential(kind, text):
    assert rule.scan(text.encode()) == kind
    padded = ("# notes\n" * 2000 + f"value: {text}\nmore: text\n").encode()  # anywhere in the head
    assert rule.scan(padded) == kind


def notebook(source: str) -> str:
    """A notebook as Jupyter writes it: a cell's source is a JSON list of its lines."""
    return json.dumps({"cells": [{"cell_type": "code", "source": source.splitlines(True), "outputs": [],
                                  "metadata": {}, "execution_count": None}], "nbformat": 4}, indent=1)


@pytest.mark.parametrize("how", ["notebook", "notebook with headers", "python literals", "javascript +"])
def test_a_key_written_as_strings_line_by_line_is_found(how):
    """A PEM block pasted into a notebook cell is a JSON list of lines ("...\\n",\n "..."); in
    source, one string literal a line. Each is the key, as much as the file it came from."""
    key = pem("RSA PRIVATE KEY")
    text = {"notebook": notebook(f'KEY = """{key}"""\n'),
            "notebook with headers": notebook(pem("RSA PRIVATE KEY", headers="Proc-Type: 4,ENCRYPTED\n"
                                                                            "DEK-Info: AES-128-CBC,0F1E2D\n\n")),
            "python literals": "KEY = (\n" + "".join(f'    "{line}\\n"\n' for line in key.splitlines()) + ")\n",
            "javascript +": "const key = " + " +\n  ".join(f"'{line}\\n'" for line in key.splitlines()) + ";\n"}[how]
    assert rule.scan(text.encode()) == "private key"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_credential_in_utf16_text_is_found(encoding):
    """Windows PowerShell's `>` and Out-File write UTF-16: the same token, every other byte NUL."""
    for kind in ("GitHub token", "private key", "AWS secret access key"):
        assert rule.scan(credential(kind)[0].encode(encoding)) == kind


def test_a_token_after_an_escaped_line_break_is_found():
    """In a JSON or Python string, a token right after "\\n" (a log line, a repr) stands alone."""
    tokens = {"GitHub token": credential("GitHub token")[0],
              "Hugging Face token": credential("Hugging Face token")[0].split("=")[1].strip(),
              "AWS secret access key": credential("AWS secret access key")[1].split("\n")[1]}
    for kind, token in tokens.items():
        for before in ("\n", "\r\n", "\t"):
            assert rule.scan(json.dumps({"stdout": f"token:{before}{token}"}).encode()) == kind, repr(before)


def test_data_is_ruled_out_without_running_the_detectors(monkeypatch):
    """A data file (random bytes, numbers) has no run of token characters: one pass rules it out,
    where the 36 detectors made a first fit of a data folder several times slower than hashing it."""
    rule.scan(b"warm")
    monkeypatch.setattr(rule, "_compiled", lambda: pytest.fail("the detectors ran on data"))
    rows = random.Random(4)
    numbers = "\n".join(",".join(f"{rows.random():.6f}" for _ in range(8)) for _ in range(20000)).encode()
    for data in (random.Random(3).randbytes(rule.HEAD_BYTES), numbers[: rule.HEAD_BYTES], bytes(1000)):
        assert rule.scan(data) == ""


def test_every_kind_has_a_case():
    assert set(rule.KINDS) <= {kind for kind, _ in CASES}


NEAR_MISSES = {
    "a PEM header without a key (docs)": "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n",
    "a public key": pem("PUBLIC KEY"),
    "a certificate": pem("CERTIFICATE"),
    "an ssh public key": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA{chars(43, B64)} me@host",
    "a service account with a redacted key": service_account(key="-----BEGIN PRIVATE KEY-----\\nREDACTED\\n"),
    "a PuTTY file named, not included": "convert it to PuTTY-User-Key-File-3: format with puttygen",
    "AWS's documented example": "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
                                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    "an AWS access key id alone": "AKIA" + chars(16, string.ascii_uppercase + string.digits),
    "an AWS secret read from elsewhere": "aws_secret_access_key = ${AWS_SECRET_ACCESS_KEY}\n",
    "a short hf_": "hf_" + chars(20),
    "hf_ in identifiers": "from huggingface_hub import hf_hub_download\nx_hf_" + chars(34) + " = 1\n",
    "a ghp_ one short": "ghp_" + chars(35),
    "a ghp_ one long": "ghp_" + chars(37),
    "a ghp_ inside a word": "xghp_" + chars(36),
    "github_pat_ in a name": "GITHUB_PAT_ENV = 'github_pat_token_environment_variable_name_here'",
    "slack words": "xoxb-not-a-token xoxp-abc",
    "sk- words": "pip install scikit-learn sk-learn disk-" + chars(40) + " task-" + chars(48),
    "a short sk-": "sk-" + chars(20),
    "a test-mode-looking word": "sk_live_" + chars(10),
    "npm words": "npm_config_cache=/tmp npm_" + chars(35),
    "a PyPI prefix alone": "pypi-AgEIcHlwaS5vcmc",
    "a short AIza": "AIza" + chars(34, URLSAFE) + " ",
    "dapi not hex": "dapi" + chars(32, "ghijklmnopqrstuvwxyz"),
    "an Azure placeholder": "AccountKey=<your-account-key>;",
    "a Kaggle placeholder": json.dumps({"username": "me", "key": "YOUR_KEY"}),
    "a LangSmith-ish word": "lsv2_pt_" + chars(31, HEX),
    # Placeholders of docs and examples: the format's length, nothing random in it.
    "an sk- placeholder": 'api_key = os.getenv("OPENAI_API_KEY", "sk-' + "x" * 48 + '")',
    "an hf_ placeholder": "HF_TOKEN=hf_" + "X" * 34,
    "a ghp_ placeholder": "ghp_" + "x" * 36,
    "a PEM placeholder": "-----BEGIN PRIVATE KEY-----\n" + "A" * 64 + "\n-----END PRIVATE KEY-----\n",
}


@pytest.mark.parametrize("text", list(NEAR_MISSES.values()), ids=list(NEAR_MISSES))
def test_near_misses_hold_no_credential(text):
    assert rule.scan(text.encode()) == ""


@pytest.mark.parametrize("blob", ["random", "base64", "urlsafe base64", "zeros", "hex"])
def test_data_holds_no_credential(blob):
    """A MiB of data of each common kind: token prefixes occur in it by chance, tokens must not."""
    data = random.Random(0).randbytes(3 * rule.HEAD_BYTES // 4)
    head = {"random": data + random.Random(1).randbytes(rule.HEAD_BYTES // 4), "base64": base64.b64encode(data),
            "urlsafe base64": base64.urlsafe_b64encode(data), "zeros": bytes(rule.HEAD_BYTES),
            "hex": data.hex().encode()}[blob][: rule.HEAD_BYTES]
    assert rule.scan(head) == ""


def test_fahrs_own_sources_and_docs_hold_no_credential():
    """Real code and prose (PEM headers, AWS variable names, key files named in docs) read clean."""
    files = [p for folder in ("fahr_core", "fahr_sagemaker", "docs", "examples", "templates")
             for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".toml", ".txt", "")]
    files.append(ROOT / "README.md")
    assert len(files) > 30
    assert {str(p.relative_to(ROOT)): k for p in files if (k := rule.scan(p.read_bytes()[: rule.HEAD_BYTES]))} == {}


# -- the context fahr sends -----------------------------------------------------------------------

def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def build_context(folder, artifact="train.py", dockerfile="Dockerfile"):
    return BuildContext(artifact=folder / artifact, context_dir=folder, dockerfile=folder / dockerfile,
                        model_tag="t/train", user_container=artifact == dockerfile)


def tar_of(folder, **kw):
    with context_tar(build_context(folder, **kw)) as stream, tarfile.open(fileobj=stream) as tar:
        return {m.name: tar.extractfile(m).read() if m.isreg() else None for m in tar.getmembers()}


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "proj"
    write(folder / "train.py", "print(1)\n")
    write(folder / "Dockerfile", "FROM python:3.11-slim\nCOPY . .\n")
    write(folder / "notes.md", "# how to train\nexport HF_TOKEN=hf_...\n")
    return folder


# Credentials under names no list holds: each is kept out by its content.
PLANTED = {"conf/key.txt": "private key", "my-project-4f2a.json": rule.SERVICE_ACCOUNT_KEY,
           "credentials.json": rule.SERVICE_ACCOUNT_KEY, "config.ini": "AWS secret access key",
           "notebooks/setup.ipynb": "Hugging Face token", "scripts/push.sh": "GitHub token",
           "settings.py": "OpenAI-style API key"}


def plant(folder, mark=""):
    for path, kind in PLANTED.items():
        text = credential(kind, mark)[0]
        if path.endswith(".ipynb"):
            text = json.dumps({"cells": [{"cell_type": "code", "source": [f"login('{text}')"]}]})
        write(folder / path, text)


def test_the_context_holds_no_credential_under_any_name(project, capfd):
    mark = _random.token_hex(6)
    plant(project, mark)
    members = tar_of(project)
    assert sorted(members) == ["Dockerfile", "conf", "notebooks", "notes.md", "scripts", "train.py"]
    assert not any(mark.encode() in data for data in members.values() if data)
    assert capfd.readouterr().err.splitlines() == [
        "fahr warning kept 7 secret files out of the image: conf/key.txt (private key), config.ini (AWS secret "
        "access key), credentials.json (GCP service-account key), my-project-4f2a.json (GCP service-account key), "
        "notebooks/setup.ipynb (Hugging Face token), …; list a file in .fahr-allow-secrets if what it seems to "
        "hold is no secret"]


def test_names_and_contents_share_one_line(project, capfd):
    write(project / ".env", "A=1\n")
    write(project / "token.txt", credential("GitHub token")[0])
    tar_of(project)
    assert capfd.readouterr().err.splitlines() == [
        "fahr warning kept 2 secret files out of the image: .env, token.txt (GitHub token); "
        "list a file in .fahr-allow-secrets if what it seems to hold is no secret"]


def test_the_allow_file_lets_in_what_only_looks_like_a_credential(project, capfd):
    plant(project)
    write(project / "tests/fixtures/fake_key.pem.txt", pem("RSA PRIVATE KEY"))
    write(project / "tests/fixtures/deeper/sa.json", service_account())
    write(project / ".env", "A=1\n")
    write(project / "keys/server.pem", pem("RSA PRIVATE KEY"))
    write(project / rule.ALLOW_FILE, "# fixtures of our tests, not keys\n./conf/key.txt\n\ntests/fixtures/\n"
                                     "  settings.py  \n.env\nkeys\n")
    members = tar_of(project)
    for path in ("conf/key.txt", "settings.py", "tests/fixtures/fake_key.pem.txt", "tests/fixtures/deeper/sa.json",
                 rule.ALLOW_FILE):
        assert path in members and members[path] == (project / path).read_bytes()
    # Only the content scan is overridden: a listed name stays out, whatever the allow file says.
    assert ".env" not in members and "keys/server.pem" not in members
    assert "my-project-4f2a.json" not in members and "config.ini" not in members
    line = capfd.readouterr().err
    assert "conf/key.txt" not in line and ".env, " in line and "keys/server.pem" in line


@pytest.mark.parametrize("kind", ["a link to /dev/zero", "a dangling link", "a fifo", "a folder", "too big"])
def test_an_allow_file_that_is_no_plain_file_is_one_error(project, tmp_path, kind):
    allow = project / rule.ALLOW_FILE
    if kind == "a link to /dev/zero":
        allow.symlink_to("/dev/zero")
    elif kind == "a dangling link":
        allow.symlink_to(tmp_path / "nowhere")
    elif kind == "a fifo":
        os.mkfifo(allow)  # must not hang
    elif kind == "a folder":
        allow.mkdir()
    else:
        write(allow, "x\n" * (rule.HEAD_BYTES // 2 + 1))
    with pytest.raises(image.UsageError, match=f"^{re.escape(str(allow))} (is not a file|cannot be read|is larger)"):
        tar_of(project)


@pytest.mark.parametrize("which", ["train.py", "Dockerfile", "requirements.txt", "own Dockerfile",
                                   "docker/Dockerfile.real"])
def test_a_credential_in_a_file_the_build_needs_is_refused(project, which):
    """Left out, the script or Dockerfile would break the build (and a Dockerfile's ENV would put the
    credential into the image): refused, naming the file, with the way out."""
    token = credential("Hugging Face token")[0]
    name = "Dockerfile" if which == "own Dockerfile" else which
    if which == "docker/Dockerfile.real":  # the file a Dockerfile that is a link leads to
        write(project / which, (project / "Dockerfile").read_text())
        (project / "Dockerfile").unlink()
        (project / "Dockerfile").symlink_to("docker/Dockerfile.real")
    write(project / name, (project / name).read_text() + token if (project / name).exists() else token)
    kw = {"artifact": "Dockerfile"} if which == "own Dockerfile" else {}
    with pytest.raises(image.UsageError, match=rf"^{re.escape(name)} holds what looks like a Hugging Face token, "
                                               rf"and fahr puts no credential in an image; .* list {name} in "):
        tar_of(project, **kw)
    write(project / rule.ALLOW_FILE, name + "\n")
    assert token.encode() in tar_of(project, **kw)[name]


@pytest.mark.parametrize("name", ["train.py", "requirements.txt"])
def test_a_credential_in_the_file_a_needed_link_leads_to_is_refused(project, name):
    """train.py (or requirements.txt) a link to src/real.py: kept out, the real file would leave
    the image a dangling link and the job a "No such file" at run time; it is refused instead."""
    write(project / "src/real", "print(1)\n" + credential("GitHub token")[0])
    (project / name).unlink(missing_ok=True)
    (project / name).symlink_to("src/real")
    with pytest.raises(image.UsageError, match=r"^src/real holds what looks like a GitHub token, .* list src/real "):
        tar_of(project)


@pytest.mark.parametrize("kind, article", [("AWS secret access key", "an"), ("npm token", "an"),
                                           ("xAI API key", "an"), ("GitHub token", "a"), ("private key", "a")])
def test_the_refusal_reads_well(kind, article):
    with pytest.raises(image.UsageError, match=f"^train.py holds what looks like {article} {kind}, "):
        rule.ContentRule(required=("train.py",)).keeps_out("train.py", kind)


def test_only_the_first_mib_is_read(project):
    token = credential("GitHub token")[0].encode()
    write(project / "late.bin", bytes(rule.HEAD_BYTES - len(token)) + token + bytes(10))
    write(project / "later.bin", bytes(rule.HEAD_BYTES - len(token) + 1) + token)
    members = tar_of(project)
    assert "late.bin" not in members  # ends at the last byte of the first MiB
    assert members["later.bin"] == (project / "later.bin").read_bytes()  # one byte later: not read


def test_a_hard_link_to_a_kept_out_file_is_no_dangling_link(project):
    write(project / "a/key.txt", pem("OPENSSH PRIVATE KEY"))
    os.link(project / "a/key.txt", project / "b.txt")
    members = tar_of(project)
    assert "a/key.txt" not in members and "b.txt" not in members
    write(project / rule.ALLOW_FILE, "b.txt\n")
    members = tar_of(project)
    assert "a/key.txt" not in members and members["b.txt"] == (project / "a/key.txt").read_bytes()


# -- read once, and only what changed -------------------------------------------------------------

@pytest.fixture
def cached(tmp_path, monkeypatch):
    """A cache of its own, hashes trusted however soon after a change, and a count of scans."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_RACY_NS", -10**12)
    scanned = []
    real = cache.scan
    monkeypatch.setattr(cache, "scan", lambda head: scanned.append(head) or real(head))
    return scanned


def entries_of(root, context=None, allowed=frozenset()):
    hashes = ContextHashes(root)
    found = rule.ContentRule(allowed=allowed)
    entries = context_entries(root, stat_context(root, context_files(root).paths), hashes, found)
    hashes.save()
    return [e[0] for e in entries], found.found, hashes


def test_an_unchanged_file_is_not_read_again_and_its_verdict_comes_from_the_cache(project, cached):
    plant(project)
    paths, found, hashes = entries_of(project)
    assert found == PLANTED and not set(found) & set(paths)
    assert len(cached) == len(hashes.hashed) == len(PLANTED) + 3  # each file read once, its head scanned once
    del cached[:]
    again, found_again, hashes = entries_of(project)
    assert (again, found_again, hashes.hashed, cached) == (paths, PLANTED, [], [])
    # The verdict is the cache's: one planted in it is believed without reading the file...
    cache = hash_cache_file(project)
    data = json.loads(cache.read_text())
    assert data["files"]["notes.md"][7] == "" and data["files"]["conf/key.txt"][7] == "private key"
    data["files"]["notes.md"][7] = "GitHub token"
    cache.write_text(json.dumps(data))
    paths, found, hashes = entries_of(project)
    assert "notes.md" not in paths and found["notes.md"] == "GitHub token" and hashes.hashed == cached == []
    # ...until the file changes: then it is read, and judged, again.
    write(project / "notes.md", "# how to train, v2\n")
    paths, found, hashes = entries_of(project)
    assert "notes.md" in paths and "notes.md" not in found and hashes.hashed == ["notes.md"] and len(cached) == 1


def test_a_file_that_comes_to_hold_a_credential_changes_the_fingerprint(project, cached):
    before, _, _ = entries_of(project)
    write(project / "notes.md", "export HF_TOKEN=" + credential("Hugging Face token")[0].split("=")[1])
    after, found, _ = entries_of(project)
    assert set(before) - set(after) == {"notes.md"} and set(after) <= set(before)
    assert found == {"notes.md": "Hugging Face token"}


def test_the_tar_scans_each_changed_file_once_and_agrees_with_the_check(project, cached):
    plant(project)
    big = random.Random(2).randbytes(3 * rule.HEAD_BYTES + 12345)  # the head and the rest, byte-exact
    write(project / "data/big.bin", big)
    paths = context_files(project).paths
    found = rule.ContentRule()
    hashes = ContextHashes(project)
    tar, from_tar = context._context_tar(project, paths, hashes, found)
    hashes.save()
    with tar, tarfile.open(fileobj=tar) as archive:
        assert archive.extractfile("data/big.bin").read() == big
    assert len(cached) == len(PLANTED) + 4 and found.found == PLANTED
    assert [len(h) for h in cached if len(h) >= rule.HEAD_BYTES] == [rule.HEAD_BYTES]  # the big file's head only
    checked, _, hashes = entries_of(project)
    assert [e[0] for e in from_tar] == checked
    assert sorted(hashes.hashed) == sorted(PLANTED)  # the files the tar kept out were not hashed whole
    import hashlib

    assert dict((e[0], e[3]) for e in from_tar)["data/big.bin"] == hashlib.sha256(big).hexdigest()


def test_a_cache_of_the_format_before_the_scan_is_read_afresh(project, cached):
    """Records written before the content scan know no verdict: every file is read once more."""
    entries_of(project)
    cache = hash_cache_file(project)
    data = json.loads(cache.read_text())
    data["format"] = 1
    data["files"] = {k: v[:7] for k, v in data["files"].items()}
    cache.write_text(json.dumps(data))
    write(project / "settings.py", credential("OpenAI-style API key")[0])
    _, found, hashes = entries_of(project)
    assert found == {"settings.py": "OpenAI-style API key"} and "train.py" in hashes.hashed


def test_a_hard_link_to_an_allowed_file_is_judged_under_its_own_name(project, cached):
    """The allow file lets in a path, not an inode: another name of the same file stays out, and
    the tar and the up-to-date check agree on it (else the image is rebuilt at every fit)."""
    write(project / "a/key.txt", pem("OPENSSH PRIVATE KEY"))
    os.link(project / "a/key.txt", project / "b.txt")
    write(project / rule.ALLOW_FILE, "a/key.txt\n")
    members = tar_of(project)
    assert "a/key.txt" in members and "b.txt" not in members
    found = rule.ContentRule(allowed=frozenset({"a/key.txt"}))
    tar, from_tar = context._context_tar(project, context_files(project).paths, ContextHashes(project), found)
    tar.close()
    assert found.found == {"b.txt": "private key"}
    assert [e[0] for e in from_tar] == entries_of(project, allowed=frozenset({"a/key.txt"}))[0]


def test_a_verdict_of_another_scan_is_not_trusted(project, cached):
    """A verdict kept by a fahr whose detectors differ (an upgrade that finds more) is read afresh:
    else a file unchanged since the upgrade keeps the old "nothing found" for good."""
    write(project / "setup.ipynb", notebook(f'KEY = """{pem("RSA PRIVATE KEY")}"""\n'))
    entries_of(project)
    cache = hash_cache_file(project)
    data = json.loads(cache.read_text())
    assert data["scanner"] == rule.SCANNER
    data["scanner"] = "an older fahr's"
    data["files"]["setup.ipynb"][7] = ""  # what that one found
    cache.write_text(json.dumps(data))
    paths, found, hashes = entries_of(project)
    assert found == {"setup.ipynb": "private key"} and "setup.ipynb" not in paths and "train.py" in hashes.hashed


def test_the_scan_is_fast_enough():
    """Each changed file's head is scanned once: a MiB of text must cost milliseconds, not seconds
    (one alternation of all the patterns takes seconds per MiB)."""
    import time

    text = (ROOT / "fahr_core" / "image" / "context.py").read_bytes()
    head = (text * (rule.HEAD_BYTES // len(text) + 1))[: rule.HEAD_BYTES]
    best = min(timed(rule.scan, head, time) for _ in range(3))
    assert best < 1, best


def timed(function, argument, time):
    started = time.perf_counter()
    function(argument)
    return time.perf_counter() - started


# -- real images ----------------------------------------------------------------------------------

def saved(engine, reference, mark: str) -> set[str]:
    """Which ``MARK-NN`` strings ``docker save REFERENCE`` holds: every layer of the image, as the
    engine exports it (uncompressed layer tars)."""
    pattern = re.compile(re.escape(mark.encode()) + rb"[0-9]{2}")
    found, tail = set(), b""
    for chunk in engine.api.get_image(reference, chunk_size=1 << 20):
        data = tail + chunk
        found.update(m.decode() for m in pattern.findall(data))
        tail = data[-64:]
    return found


# What the module's two projects hold: a credential of each kind, each with its own mark; some
# under listed names, most under names no list holds; and one allowed.
E2E_KINDS = [k for k in rule.KINDS if k != "private key"] + ["private key", rule.SERVICE_ACCOUNT_KEY]


def plant_all(folder, mark):
    """Plant every kind under an ordinary name, the issue's listed names, and an allowed key; return
    (marks that must stay out, marks that must go in)."""
    out, inside = [], []
    for i, kind in enumerate(E2E_KINDS):
        name = f"src/conf_{i:02d}.txt" if i % 2 else f"module_{i:02d}.py"
        write(folder / name, f"# settings\n{credential(kind, f'{mark}{i:02d}')[0]}\n")
        out.append(f"{mark}{i:02d}")
    for j, name in enumerate([".huggingface/token", ".cache/huggingface/token", ".config/gh/hosts.yml",
                              ".terraform.d/credentials.tfrc.json", "terraform.tfvars", ".kaggle/kaggle.json",
                              ".pgpass", ".my.cnf", ".vault-token", ".s3cfg", ".boto", ".azure/config",
                              ".databrickscfg", "rclone.conf", ".env~", "id_rsa~", ".netrc.bak", "server.pem.bak"],
                             start=50):
        write(folder / name, f"plain {mark}{j:02d}\n")
        out.append(f"{mark}{j:02d}")
    write(folder / "tests/fixtures/key.txt", pem("RSA PRIVATE KEY", f"{mark}90"))
    write(folder / rule.ALLOW_FILE, "tests/fixtures/key.txt\n")
    write(folder / "readme.txt", f"clean {mark}91\n")
    write(folder / "later.txt", "clean for now\n")
    inside += [f"{mark}90", f"{mark}91"]
    return out, inside


@pytest.fixture(scope="module")
def built(tmp_path_factory, docker_engine):
    """One project with a generated Dockerfile and one container of its own, each planted and fit
    once with the real CLI; their images are removed at the end."""
    root = tmp_path_factory.mktemp("i15secrets")
    tag = _random.token_hex(3)
    gen = root / f"i15secretsgen{tag}"
    write(gen / "train.py", "import os\nprint(sorted(os.listdir('.')))\n")
    byoc = root / f"i15secretsbyoc{tag}" / "container"
    write(byoc / "Dockerfile", "FROM python:3.11-slim\nCOPY . /opt/program/\nRUN chmod +x /opt/program/train\n"
                               "ENV PATH=/opt/program:$PATH\n")
    write(byoc / "train", "#!/bin/sh\nmkdir -p /opt/ml/model && ls -aR /opt/program > /opt/ml/model/listing.txt\n")
    projects = {}
    for name, folder, artifact in (("generated", gen, gen / "train.py"), ("own", byoc, byoc)):
        mark = _random.token_hex(5)
        out, inside = plant_all(folder, mark)
        proc = run_fahr("fit", artifact, f"--config.output_path={root / 'jobs'}", cwd=root)
        reference = f"{gen.name}/train:latest" if name == "generated" else f"{byoc.parent.name}/container:latest"
        projects[name] = {"folder": folder, "artifact": artifact, "proc": proc, "mark": mark, "out": out,
                          "inside": inside, "reference": reference}
    yield projects
    for project in projects.values():
        try:
            docker_engine.images.remove(project["reference"], force=True)
        except Exception:
            pass


@pytest.mark.docker
@pytest.mark.parametrize("which", ["generated", "own"])
def test_no_credential_reaches_the_image(built, docker_engine, which):
    project = built[which]
    proc = project["proc"]
    assert proc.returncode == 0, proc.stderr
    found = saved(docker_engine, project["reference"], project["mark"])
    assert sorted(found & set(project["out"])) == []
    assert sorted(set(project["inside"]) - found) == []
    [line] = [line for line in proc.stderr.splitlines() if "out of the image" in line]
    count = len(E2E_KINDS) + 18
    assert line.startswith(f"fahr warning kept {count} secret files out of the image: ") and line.endswith(
        "; list a file in .fahr-allow-secrets if what it seems to hold is no secret"), line


@pytest.mark.docker
def test_a_file_that_comes_to_hold_a_credential_is_rebuilt_without_it(built, docker_engine):
    project = built["generated"]
    assert project["proc"].returncode == 0, project["proc"].stderr
    later = project["folder"] / "later.txt"
    token = credential("GitHub token", project["mark"] + "92")[0]
    later.write_text(f"clean for now, but: {token}\n")
    proc = run_fahr("fit", project["artifact"], f"--config.output_path={project['folder'].parent / 'jobs'}")
    assert proc.returncode == 0, proc.stderr
    assert "is up to date" not in proc.stderr, proc.stderr
    count = len(E2E_KINDS) + 18 + 1  # one more kept out than by the first fit (the line names the first five)
    assert f"fahr warning kept {count} secret files out of the image: " in proc.stderr, proc.stderr
    found = saved(docker_engine, project["reference"], project["mark"])
    assert f"{project['mark']}92" not in found and f"{project['mark']}91" in found


@pytest.mark.docker
@pytest.mark.parametrize("which", ["script", "own Dockerfile", "allow file a fifo"])
def test_refused_before_anything_is_built(tmp_path, docker_engine, which):
    folder = tmp_path / f"i15secretsref{_random.token_hex(3)}"
    write(folder / "train.py", "print(1)\n")
    write(folder / "Dockerfile", "FROM python:3.11-slim\nCOPY . .\n")  # else fahr first says it wrote one
    artifact = folder / "train.py"
    if which == "script":
        write(folder / "train.py", f"TOKEN = '{credential('GitHub token')[0]}'\nprint(1)\n")
        expected = "fahr error: train.py holds what looks like a GitHub token, and fahr puts no credential in an image"
    elif which == "own Dockerfile":
        write(folder / "Dockerfile", f"FROM python:3.11-slim\nENV HF_TOKEN={credential('Hugging Face token')[0]}\n")
        artifact = folder
        expected = "fahr error: Dockerfile holds what looks like a Hugging Face token"
    else:
        os.mkfifo(folder / rule.ALLOW_FILE)
        expected = f"fahr error: {folder / rule.ALLOW_FILE} is not a file"
    proc = run_fahr("fit", artifact, f"--config.output_path={tmp_path / 'jobs'}", timeout=120)
    assert one_line_error(proc, 2).startswith(expected)
    made = docker_engine.api.images(filters={"label": "fahr.model_tag"})
    assert [i for i in made if folder.name in json.dumps(i.get("Labels"))] == []
    assert not (tmp_path / "jobs").exists()


def test_the_module_imports_without_docker():
    """The rule is fahr's own code: importing it loads no SDK."""
    code = "import sys, fahr_core.secrets; print('docker' in sys.modules, 'boto3' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "False"]


@pytest.mark.docker
def test_the_sagemaker_driver_pushes_no_credential(stack, tmp_path, docker_engine):
    """The secret rule on the other driver: one fit with `--train-driver sagemaker` on the emulated
    AWS; the image the registry holds (pulled back by the digest the job ran) has neither the `.env`
    nor a file whose content is a GitHub token, and the one warning line names both."""
    from aws_emulator.fixtures import run_fahr as run_on_stack
    from aws_emulator.fixtures import job_name_of, sagemaker_args

    mark = _random.token_hex(5)
    folder = tmp_path / f"i15gapssm{_random.token_hex(3)}"
    write(folder / "train.py", "import os\nprint(sorted(os.listdir('.')))\n")
    # The user's own .dockerignore, without .env: the secret rule, not the ignore file fahr writes
    # when there is none, keeps it out (and names it).
    write(folder / ".dockerignore", "__pycache__\n")
    write(folder / ".env", f"API_KEY={mark}01\n")
    write(folder / "deploy/push.sh", f"git push https://{credential('GitHub token', mark + '02')[0]}@github.com/o/r\n")
    write(folder / "readme.txt", f"clean {mark}03\n")
    proc = run_on_stack(stack, "fit", str(folder / "train.py"), *sagemaker_args("i15gaps"), cwd=tmp_path)
    assert proc.code == 0, proc.output
    [line] = [line for line in proc.stderr.splitlines() if "out of the image" in line]
    assert line == ("fahr warning kept 2 secret files out of the image: .env, deploy/push.sh (GitHub token); "
                    "list a file in .fahr-allow-secrets if what it seems to hold is no secret"), line
    pushed = stack.client("sagemaker").describe_training_job(
        TrainingJobName=job_name_of(proc))["AlgorithmSpecification"]["TrainingImage"]
    token = stack.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    pulled = docker_engine.images.pull(pushed, auth_config={"username": user, "password": password})
    try:
        found = saved(docker_engine, pulled.id, mark)
        assert sorted(found) == [f"{mark}03"]  # the image is the project's, without either secret
    finally:
        for reference in (pulled.id, f"{folder.name}/train:latest"):
            try:
                docker_engine.images.remove(reference, force=True)
            except Exception:
                pass
