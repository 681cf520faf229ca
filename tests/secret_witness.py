"""Where a job's secret must never be: the places a test greps for its value (README "Secrets").

:class:`Witness` watches a running job from outside: ``docker inspect`` of its containers and the
command line of every process of this machine (``/proc/*/cmdline``) and of the containers
(``docker top``), as often as it can while the job runs. The other helpers grep what is left after
it: files (archives opened), an image's configuration, history and layers (``docker save``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
import time
from pathlib import Path

# The job prints the hash of the secret it got, never the value: the test proves it arrived.
SCRIPT = """\
import hashlib, os, time
value = os.environ["{name}"]
print("secret sha256", hashlib.sha256(value.encode()).hexdigest(), flush=True)
print("secret files left:", os.path.exists("/run/fahr/secrets"), flush=True)
os.makedirs("/opt/ml/model", exist_ok=True)
open("/opt/ml/model/model.txt", "w").write("a model")
time.sleep(float(os.environ.get("I17_SECRET_SLEEP", "4")))
"""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def found_in_bytes(value: str, data: bytes) -> bool:
    return value.encode() in data


def files_holding(value: str, *roots: Path) -> list[str]:
    """Every file under ``roots`` that holds ``value``, a .tar.gz's members read too."""
    hits = []
    for root in roots:
        for path in Path(root).rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            if found_in_bytes(value, data):
                hits.append(str(path))
            if path.name.endswith((".tar.gz", ".tgz", ".gz")):
                try:
                    data = gzip.decompress(data)
                except OSError:
                    continue
                if found_in_bytes(value, data):
                    hits.append(f"{path} (decompressed)")
    return hits


def image_holds(client, reference: str, value: str) -> list[str]:
    """Where in image ``reference`` the value is: its inspect, its history, its saved layers."""
    image = client.images.get(reference)
    hits = []
    if value in json.dumps(image.attrs):
        hits.append("docker image inspect")
    if value in json.dumps(image.history()):
        hits.append("docker history")
    needle = value.encode()
    saved = io.BytesIO()
    for chunk in image.save(named=False):
        saved.write(chunk)
    saved.seek(0)
    with tarfile.open(fileobj=saved) as tar:  # each layer is a tar of its own: read them whole
        for member in tar:
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()
            if needle in data:
                hits.append(f"docker save: {member.name}")
    return hits


class Witness(threading.Thread):
    """Looks, while a job runs, at its containers (``docker inspect``, ``docker top``) and every
    process's command line, and notes each place that shows ``value``."""

    def __init__(self, client, job_prefix: str, value: str):
        super().__init__(daemon=True)
        self.client, self.prefix, self.value = client, job_prefix, value
        self.hits: set[str] = set()
        self.inspected = 0  # containers of the job seen running: the look happened
        self.cmdlines = 0
        self.topped = 0  # the containers' own processes listed (docker top)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self._look()
            time.sleep(0.2)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=30)

    def _look(self) -> None:
        try:
            containers = self.client.containers.list(filters={"label": "fahr.job"})
        except Exception:
            containers = []
        for container in containers:
            if not container.name.startswith(self.prefix):
                continue
            try:
                attrs = self.client.api.inspect_container(container.id)
            except Exception:
                continue
            if attrs["State"].get("Running"):
                self.inspected += 1
            if self.value in json.dumps(attrs):
                self.hits.add(f"docker inspect {container.name}")
            try:
                processes = json.dumps(container.top())
            except Exception:
                continue  # it ended meanwhile
            self.topped += 1
            if self.value in processes:
                self.hits.add(f"docker top {container.name}")
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    line = handle.read()
            except OSError:
                continue
            self.cmdlines += 1
            if found_in_bytes(self.value, line):
                self.hits.add(f"/proc/{pid}/cmdline: {line[:200]!r}")
