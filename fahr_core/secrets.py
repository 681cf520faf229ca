"""What fahr never puts in an image: credential files by name, and credentials by content.

The name rule (:func:`secret_component`) is a list of the well-known credential files of the tools
ML engineers use, and their backups (``.env~``, ``id_rsa.bak``, ``.netrc.orig``, vim's
``.id_rsa.swp``): a path is a secret when any of its components is one, whatever .dockerignore
says. A list can never be complete, so the content rule (:func:`scan`) looks at the first
:data:`HEAD_BYTES` of every file sent for a credential in a documented format (a private key
block, a cloud or API token with its published prefix); it can be overridden for a file that only
looks like one by listing it in :data:`ALLOW_FILE` at the context root (:class:`ContentRule`).
The name rule has no override: a listed name is renamed on purpose, never let in by accident.

README.md "No secret goes into an image" lists both rules; :mod:`fahr_core.image` applies them.
"""

from __future__ import annotations

import functools
import hashlib
import re

from fahr_core.errors import UsageError

# -- by name --------------------------------------------------------------------------------------

# Never sent to the engine, at any depth: a path is a secret when any of its components is one (a
# folder drops its whole subtree). Matched case-insensitively: on macOS `.ENV` is the same file as `.env`.
NAMES = frozenset({
    # version control and the environment
    ".git", ".git-credentials", ".netrc", "_netrc", ".env", ".envrc",
    # clouds (AWS, Azure, Google, Oracle, Kubernetes, S3 tools)
    ".aws", ".azure", ".gcloud", ".oci", ".kube", "kubeconfig", ".s3cfg", ".boto", ".passwd-s3fs",
    # gcloud's credential files, wherever a copy of ~/.config/gcloud sits
    "application_default_credentials.json", "credentials.db", "access_tokens.db", "legacy_credentials",
    # ssh, docker, package registries
    ".ssh", ".dockercfg", ".pypirc", ".npmrc",
    # ML platforms and tools: Hugging Face, Kaggle, Databricks, NVIDIA NGC, Comet, ClearML, Modal,
    # ngrok, rclone, Streamlit's secrets
    ".huggingface", ".kaggle", "kaggle.json", ".databrickscfg", ".ngc", ".comet.config", "clearml.conf",
    ".modal.toml", "ngrok.yml", "rclone.conf", "secrets.toml",
    # databases, Vault, Terraform, web servers
    ".pgpass", ".my.cnf", ".mylogin.cnf", ".vault-token", ".terraform.d", ".terraformrc", "terraform.rc",
    ".htpasswd",
})
# prod.env, server.pem, putty.ppk, a Java or KeePass key store, Terraform variables and state, …
SUFFIXES = (".env", ".pem", ".key", ".p12", ".pfx", ".ppk", ".jks", ".keystore", ".kdbx",
            ".tfvars", ".tfvars.json", ".tfstate")
PREFIXES = (".env.", ".env_")  # .env.local, .env_prod
# A component secret only inside a given parent: ~/.docker/config.json holds registry logins,
# ~/.config/gcloud gcloud's, ~/.config/gh/hosts.yml GitHub's CLI token, ~/.cache/huggingface/token
# the Hugging Face token, ~/.mlflow/credentials MLflow's, .dvc/config.local a DVC remote's; other
# files under those parents are ordinary.
CHILDREN = frozenset({
    (".docker", "config.json"), (".config", "gcloud"), ("gh", "hosts.yml"), ("huggingface", "token"),
    ("huggingface", "stored_tokens"), (".mlflow", "credentials"), (".dvc", "config.local"),
})
# ssh private keys (id_rsa, id_rsa_work, id_ed25519.old, …); their public halves (*.pub) are not secret.
_PRIVATE_KEY = re.compile(r"id_(rsa|dsa|ecdsa|ed25519)([._-].*)?")
#: What editors and tools append to a file they back up: a backup of a listed name is listed too.
BACKUP_SUFFIXES = ("~", ".bak", ".orig", ".old", ".swp", ".save", ".backup")
# The suffixes above, vim's other swap files (.swo, …) and GNU cp's numbered backups (.~1~).
_BACKUP = re.compile(r"(~|\.~[0-9]+~|\.bak|\.orig|\.old|\.save|\.backup|\.sw[a-p])$")


def _forms(name: str) -> list[str]:
    """``name`` and the names it is a backup of: ``.env.bak~`` → ``.env.bak``, ``.env``; vim's swap
    file ``.id_rsa.swp`` → ``id_rsa`` too; emacs's ``#.netrc#`` → ``.netrc``."""
    forms = [name]
    while True:
        match = _BACKUP.search(name)
        if match and match.start() > 0:
            name = name[: match.start()]
            if match.group().startswith(".sw") and name.startswith(".") and len(name) > 1:
                forms.append(name)
                name = name[1:]  # vim prepends a dot to the name it swaps for
        elif len(name) > 2 and name.startswith("#") and name.endswith("#"):
            name = name[1:-1]
        else:
            return forms
        forms.append(name)


def _listed(forms: list[str], parents: list[str]) -> bool:
    for name in forms:
        if (
            name in NAMES
            or name.startswith(PREFIXES)
            or name.endswith(SUFFIXES)
            or any((parent, name) in CHILDREN for parent in parents)
        ):
            return True
    return any(_PRIVATE_KEY.fullmatch(f) for f in forms) and not any(f.endswith(".pub") for f in forms)


def secret_component(parts: list[str] | tuple[str, ...]) -> int | None:
    """The index of the first component of a relative path that makes it a secret, else None."""
    parents: list[str] = [""]
    for i, part in enumerate(parts):
        forms = _forms(part.lower())
        if _listed(forms, parents):
            return i
        parents = forms
    return None


def is_secret(relative_path: str) -> bool:
    """Whether fahr keeps ``relative_path`` (``/``-separated, relative to the build context) out by name."""
    return secret_component([p for p in relative_path.split("/") if p not in ("", ".")]) is not None


# -- by content -----------------------------------------------------------------------------------

#: How much of a file the content scan reads: credentials sit in configuration and source files,
#: and a big file's head is where its text, if any, begins.
HEAD_BYTES = 1 << 20

# What a token is made of: a match preceded or followed by one of these is part of a longer word
# (a base64 blob, an identifier), not a token.
_WORD = rb"A-Za-z0-9_-"
# ...unless that letter ends an escape: in a JSON or Python string a token may follow a "\\n".
_ESCAPE = rb"\\[nrt]"
# Between the lines of a PEM block: a line break, or one written as an escape inside a string, or
# the end of one string and the start of the next (a notebook's source is a JSON list of lines;
# Python and JavaScript join string literals with nothing or "+").
_PEM_BREAK = rb"(?:\s|\\[rn]|[\"',+])+"


def _token(prefix: bytes, body: bytes, word: bytes = _WORD) -> bytes:
    """A token: ``prefix`` (a literal) then ``body``, standing alone. The look-behind sits after the
    literal so that ``re`` still searches for the literal first (see :data:`_DETECTORS`)."""
    literal = re.escape(prefix)
    return (literal + rb"(?:(?<![" + word + rb"]" + literal + rb")|(?<=" + _ESCAPE + literal + rb"))" + body
            + rb"(?![" + _WORD + rb"])")


# After an AWS secret access key's name: its value, 40 characters (not the documentation's example).
_AWS_SECRET = rb"[\"']?\s*[:=]\s*[\"']?(?![A-Za-z0-9/+]*EXAMPLE)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"

# Each detector is (kind, pattern). Every pattern starts with a literal, which Python's re finds
# with a fast substring search: a few dozen such searches over 1 MiB take milliseconds, where one
# alternation of them all (no literal prefix) takes seconds. Formats are the vendors' documented ones.
_DETECTORS: tuple[tuple[str, bytes], ...] = (
    # A PEM block (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP, … PRIVATE KEY) with key material after
    # its headers, also written as strings line by line (_PEM_BREAK); a header alone (in docs) is no key.
    ("private key", rb"-----BEGIN [A-Z0-9 ]{0,24}PRIVATE KEY(?: BLOCK)?-----" + _PEM_BREAK
                    + rb"(?:[A-Za-z-]+: [^\r\n\\\"']*" + _PEM_BREAK + rb")*[A-Za-z0-9+/=]{40}"),
    ("private key", rb"PuTTY-User-Key-File-[23]: [\s\S]{0,8000}?Private-Lines: [0-9]+"),
    ("private key", rb"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"),
    # AWS: a secret access key under its name, or right after its access key id (the console's CSV).
    ("AWS secret access key", rb"ecret(?:_access_key|AccessKey)" + _AWS_SECRET),
    ("AWS secret access key", rb"ECRET_ACCESS_KEY" + _AWS_SECRET),
    ("AWS secret access key", rb"A(?:(?<![A-Za-z0-9/+]A)|(?<=" + _ESCAPE + rb"A))(?:KIA|SIA)[0-9A-Z]{16}"
                              rb"(?<!EXAMPLE)[\s,;:|\"']{1,8}[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
    ("Hugging Face token", _token(b"hf_", rb"[A-Za-z0-9]{34,}")),
    ("GitHub token", _token(b"gh", rb"[pousr]_[A-Za-z0-9]{36}")),
    ("GitHub token", _token(b"github_pat_", rb"[A-Za-z0-9]{22}_[A-Za-z0-9]{59}")),
    ("GitLab token", _token(b"gl", rb"(?:pat|dt|rt|ptt|cbt|soat|oas)-[A-Za-z0-9_-]{20,}")),
    ("Slack token", _token(b"xox", rb"[abeoprs]-[0-9]+-[0-9A-Za-z-]{10,}")),
    ("Slack webhook", rb"hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,}"),
    ("Anthropic API key", _token(b"sk-ant-", rb"[a-z]+[0-9]*-[A-Za-z0-9_-]{32,}")),
    ("OpenAI-style API key", _token(b"sk-", rb"(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}|[A-Za-z0-9]{32,})")),
    ("Stripe secret key", _token(b"sk_", rb"(?:live|test)_[A-Za-z0-9]{24,}")),
    ("Stripe secret key", _token(b"rk_", rb"(?:live|test)_[A-Za-z0-9]{24,}")),
    ("npm token", _token(b"npm_", rb"[A-Za-z0-9]{36}")),
    ("PyPI token", _token(b"pypi-AgE", rb"(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,}")),
    ("Google API key", _token(b"AIza", rb"[0-9A-Za-z_-]{35}", rb"+/" + _WORD)),
    ("Google OAuth client secret", _token(b"GOCSPX-", rb"[A-Za-z0-9_-]{28}")),
    ("Databricks token", _token(b"dapi", rb"[0-9a-f]{32}(?:-[0-9]+)?", rb"+/" + _WORD)),
    ("Replicate token", _token(b"r8_", rb"[A-Za-z0-9]{37}")),
    ("Groq API key", _token(b"gsk_", rb"[A-Za-z0-9]{52}")),
    ("Perplexity API key", _token(b"pplx-", rb"[A-Za-z0-9]{48}")),
    ("xAI API key", _token(b"xai-", rb"[A-Za-z0-9]{80}")),
    ("LangSmith API key", _token(b"lsv2_", rb"(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}")),
    ("Docker Hub token", _token(b"dckr_pat_", rb"[A-Za-z0-9_-]{27,}")),
    ("Vault token", _token(b"hv", rb"[sbr]\.[A-Za-z0-9_-]{24,}")),
    ("Terraform Cloud token", rb"\.atlasv1\.(?<=[A-Za-z0-9]{14}\.atlasv1\.)[A-Za-z0-9_-]{60,}"),
    ("DigitalOcean token", _token(b"do", rb"[opr]_v1_[a-f0-9]{64}")),
    ("Shopify token", _token(b"shp", rb"(?:at|ca|pa|ss)_[a-fA-F0-9]{32}")),
    ("SendGrid API key", _token(b"SG.", rb"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")),
    ("Azure storage key", rb"AccountKey=[A-Za-z0-9+/]{86}=="),
    ("Kaggle API key", rb"\"username\"\s*:\s*\"[^\"\n]{1,100}\"\s*,\s*\"key\"\s*:\s*\"[0-9a-f]{32}\""),
)
#: Every kind the scan names, in the order it looks for them.
KINDS = tuple(dict.fromkeys(kind for kind, _ in _DETECTORS))
# A private key inside a GCP service account's JSON key file is named for what it is.
_SERVICE_ACCOUNT = re.compile(rb"\"type\"\s*:\s*\"service_account\"")
SERVICE_ACCOUNT_KEY = "GCP service-account key"


@functools.cache
def _compiled() -> tuple[tuple[str, re.Pattern[bytes]], ...]:
    return tuple((kind, re.compile(pattern)) for kind, pattern in _DETECTORS)  # at first use: fahr starts fast


# Every credential above holds a run of at least 16 of these characters (its random part; for
# PuTTY its header). Data (random bytes: weights, arrays, images, compressed files; numbers) has
# none such, and one pass of bytes.translate tells, where the detectors read the head 36 times:
# most of a data folder's files are then ruled out at the speed of hashing them.
_RUN_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_.-")
_RUN_TABLE = bytes(0x61 if byte in _RUN_CHARS else 0 for byte in range(256))
_RUN = b"a" * 16
# A credential is random: its longest run of those characters holds this many distinct ones.
# Placeholders in docs and examples (sk-xxxx…, hf_XXXX…, AAAA… after a key header) do not.
_DISTINCT = 8
_LONGEST_RUN = re.compile(rb"[A-Za-z0-9+/=_.-]{16,}")


def _random_enough(match: bytes) -> bool:
    runs = _LONGEST_RUN.findall(match)
    return bool(runs) and len(set(max(runs, key=len))) >= _DISTINCT


def _text_of(head: bytes) -> bytes:
    """``head`` as UTF-8 when it is UTF-16 text (a BOM, or ASCII with every other byte NUL: what
    Windows PowerShell's ``>`` writes), else ``head`` itself."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    elif len(head) >= 32 and not any(head[1:32:2]) and all(head[0:32:2]):
        encoding = "utf-16-le"
    elif len(head) >= 32 and not any(head[0:32:2]) and all(head[1:32:2]):
        encoding = "utf-16-be"
    else:
        return head
    return head[: len(head) & ~1].decode(encoding, errors="replace").encode("utf-8", errors="replace")


def scan(head: bytes) -> str:
    """The kind of the first credential found in ``head`` (a file's first :data:`HEAD_BYTES`), or ""."""
    head = _text_of(head)
    if _RUN not in head.translate(_RUN_TABLE):
        return ""
    for kind, pattern in _compiled():
        if any(_random_enough(match.group()) for match in pattern.finditer(head)):
            if kind == "private key" and _SERVICE_ACCOUNT.search(head):
                return SERVICE_ACCOUNT_KEY
            return kind
    return ""


#: Names what :func:`scan` finds: a verdict kept by an earlier fahr whose scan differs is not
#: trusted (:class:`fahr_core.image.ContextHashes` reads such a file again). Bump ``_SCAN_LOGIC``
#: when :func:`scan` changes other than in its patterns.
_SCAN_LOGIC = 2
SCANNER = hashlib.sha256(repr((_SCAN_LOGIC, _DETECTORS, _RUN_CHARS, _DISTINCT)).encode()).hexdigest()[:16]


#: The file at the build context's root listing files whose content may look like a credential
#: (read by :func:`fahr_core.image.content_rule`, as every small file of the project).
ALLOW_FILE = ".fahr-allow-secrets"


def parse_allowed(text: str) -> frozenset[str]:
    """The paths an :data:`ALLOW_FILE` lists: one a line, relative to the context (``./`` and a
    trailing ``/`` are allowed), ``#`` comments; a folder stands for everything under it."""
    allowed = set()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            parts = [p for p in line.split("/") if p not in ("", ".")]
            if parts:
                allowed.add("/".join(parts))
    return frozenset(allowed)


class ContentRule:
    """The content half of the rule for one build context: which files a credential keeps out.

    ``required`` are the files the build cannot do without (the Dockerfile, the training script):
    one holding a credential is refused (:class:`UsageError`) rather than kept out.
    ``found`` maps each file kept out to the kind of credential it holds.
    """

    def __init__(self, allowed: frozenset[str] = frozenset(), required: tuple[str, ...] = ()) -> None:
        self.allowed = allowed  # parse_allowed's paths
        self.required = frozenset(required)
        self.found: dict[str, str] = {}

    def is_allowed(self, relative: str) -> bool:
        parts = relative.split("/")
        return any("/".join(parts[:i]) in self.allowed for i in range(1, len(parts) + 1))

    def keeps_out(self, relative: str, kind: str) -> bool:
        """Whether the file at ``relative``, whose scan found ``kind`` ("" for nothing), stays out."""
        if not kind or self.is_allowed(relative):
            self.found.pop(relative, None)
            return False
        if relative in self.required:
            shown = relative if relative.isprintable() else repr(relative)
            article = "an" if kind[0] in "AEIOaeio" or kind.startswith(("npm", "xAI")) else "a"
            raise UsageError(f"{shown} holds what looks like {article} {kind}, and fahr puts no credential in an "
                             f"image; remove it from the file, or list {shown} in {ALLOW_FILE} if it is not one")
        self.found[relative] = kind
        return True
