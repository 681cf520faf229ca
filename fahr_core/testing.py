"""The driver conformance suite: the contract every fahr driver keeps, as tests to subclass.

As fsspec's abstract test classes, the suite ships with the library and a driver's own tests
subclass it, providing fixtures::

    # tests/test_conformance.py of fahr-mydriver
    import pytest
    from fahr_core.testing import DriverConformance

    class TestConformance(DriverConformance):
        @pytest.fixture(scope="class")
        @classmethod
        def driver_name(cls):
            return "mydriver"

        @pytest.fixture(scope="class")
        @classmethod
        def driver_config(cls, tmp_path_factory):
            return {"output_path": str(tmp_path_factory.mktemp("jobs"))}

The suite trains one known model (a stdlib-only script whose behaviour a hyperparameter selects)
through the real ``fahr`` command, a subprocess of the test's Python environment, and reads some
results in-process through the driver's own hooks. Passing it means the driver keeps the contract:

``RunContract``
    the job completes; its logs reach fahr's stdout *while it runs* (a line the model prints,
    then waits ~8 s, must arrive seconds before fahr exits); hyperparameters arrive as strings,
    channel data intact, ``--env`` variables set, ``FAHR_EXECUTION_ENVIRONMENT`` and
    ``TRAINING_JOB_NAME`` set, ``resourceconfig.json`` (current_host among hosts) and
    ``inputdataconfig.json`` (each channel with its TrainingInputMode) written; job names valid
    and unique; a failing model fails with its ``/opt/ml/output/failure``, cut to 1024 characters
    (a 3000-character reason comes back as its 1024-character prefix), and a crash without one
    still has a reason; the job's ``output.tar.gz`` exists and holds the model's output data; a
    ``--detach``ed job can be followed to its end with ``fahr wait JOB``, which knows its model tag.
``ModelContract``
    the model comes back byte for byte; a tree with a non-ASCII name, paths over 100 and 255
    characters, hard link pairs, relative symlinks, an empty folder, an executable and a 0-byte
    file comes back exactly as the job's own manifest of it says.
``FetchContract``
    fetch by tag takes the newest *completed* job of *that* tag (not another tag's newer job, not
    a newer failed one); it refuses a non-empty target and never writes outside it; the driver
    claims no location that is not its own.
``StopContract``
    ``fahr stop`` ends a running job Stopped with SIGTERM and a grace period: the model's SIGTERM
    handler takes 2 s to save a marker, which must come back (in the logs or the output data).
``JobsContract`` (optional hooks: skipped for a driver without them)
    ``list_jobs`` lists the suite's jobs of the model's tag newest first (by ``created``), each
    with its status (the failed one with its reason, the completed one with its artifact), and
    honours ``status`` and ``limit``; ``logs`` of a finished job holds the lines the model printed.
``CleanupContract`` (runs last)
    no container, network or temporary file named after any job of the suite is left behind.

Fixtures a driver overrides (all class-scoped):

``driver_name`` (required)
    the driver's entry-point name.
``driver_config``
    ``{key: value}`` passed as ``--config.KEY=VALUE`` to every command (default: none).
``driver_env``
    extra environment for the ``fahr`` subprocesses and the in-process hook calls, e.g. the
    endpoints of an emulated cloud.
``execution_environment``
    the ``FAHR_EXECUTION_ENVIRONMENT`` the job must see (default: ``driver_name``).
``fetch_location``
    the ``ARTIFACT_LOCATION`` argument of ``fahr fetch`` (default: ``driver_config["output_path"]``
    when there is one, else none).
``channel_uri``
    a function turning a local folder into what ``--input CHANNEL=…`` takes on this driver
    (default: the folder's path; a cloud driver uploads it and returns its URI).
``supports_stop``
    whether the driver implements ``stop`` (default: True; False skips the stop test).
``leftovers``
    a function ``job_name -> list[str]`` naming what the job left behind (default: Docker
    containers and networks whose name or labels hold the job name, and files and folders
    named after it in the temporary folders of the test and of the ``fahr`` subprocesses). A
    driver on another backend adds its own resources (its cloud's instances, buckets' scratch…).
``read_artifact``
    a function ``location -> bytes`` reading an artifact a ``JobResult`` names (default: a local
    path or ``file://`` URI; a cloud driver downloads it).
``foreign_locations``
    artifact locations the driver must not claim (default: URIs of schemes nobody owns); extend
    it with locations of neighbouring drivers.
``job_timeout``
    seconds any one command may take (default: 600).

Fixtures no driver needs to touch: ``workspace`` (the models' folders), ``fahr`` (a
:class:`FahrRunner`), ``driver_session`` (the driver's plugin manager and resolved config, as
``fahr`` itself builds them, for in-process hook calls), and the shared jobs ``trained``,
``failed``, ``detached``: each job costs seconds, so tests share them within the class.

A cloud driver tested against an emulated service (the ``sagemaker`` driver against the AWS
emulator) overrides ``driver_env`` with the emulator's endpoints and credentials,
``driver_config`` with its bucket and role, ``execution_environment`` with ``"sagemaker"``,
``channel_uri`` with an upload to the emulated S3 and ``read_artifact`` with a download from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, Mapping
from urllib.parse import urlparse

import pytest

from fahr_core.names import JOB_NAME, JOB_NAME_MAX

__all__ = [
    "DriverConformance", "DriverFixtures", "RunContract", "ModelContract", "FetchContract", "StopContract",
    "CleanupContract", "JobsContract", "CONFORMANCE_MODEL", "FahrRunner", "build_tree", "tree_manifest", "long_failure_reason",
    "job_names",
]

#: How long the model lingers after its first lines: logs must reach fahr well before it exits.
LINGER_SECONDS = 8
#: The least time between a line's arrival and fahr's exit that counts as "streamed live".
LIVE_MARGIN_SECONDS = 4
#: How long the model's SIGTERM handler takes to save its marker: a stop must grant more.
SIGTERM_WORK_SECONDS = 2
#: SageMaker's FailureReason is the first 1024 characters of /opt/ml/output/failure.
FAILURE_REASON_MAX = 1024
ENV_NAME = "FAHR_CONFORMANCE_ENV"


def build_tree(root, tag):
    """Write, under ``root``, a tree of every kind of entry packing can get wrong.

    Runs inside the job (the conformance model embeds its source), so it uses the stdlib only.
    """
    import os

    def write(rel, data, mode=None):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(path, mode)
        return path

    tag = tag.encode()
    long_dir = "/".join(f"l{i}" + "x" * 58 for i in range(5))  # 304 characters: over 255 in all
    write("modèle-poids.json", b'{"weights": [1, 2]} ' + tag)  # non-ASCII
    write("deep/" + "a" * 50 + "/" + "b" * 50 + "/weights.bin", b"over 100 " + tag)
    far = write(long_dir + "/far.bin", b"over 255 " + tag)
    write("c" * 196 + ".txt", b"a 200-character name " + tag)
    # Hard link pairs: one whose first name is long (tar stores the link under the other name).
    os.makedirs(os.path.join(root, "shards"))
    os.link(far, os.path.join(root, "shards", "part-0.bin"))
    os.link(write("head.bin", b"short names " + tag), os.path.join(root, "tail.bin"))
    os.symlink("modèle-poids.json", os.path.join(root, "latest.json"))  # to a file
    os.symlink("../deep", os.path.join(root, "shards", "deep-link"))  # to a folder, through ..
    os.makedirs(os.path.join(root, "empty", "inner-empty"))
    write("bin/run.sh", b"#!/bin/sh\necho " + tag + b"\n", 0o755)
    write("private.bin", b"owner only " + tag, 0o600)
    write("zero.bin", b"")
    # Distinct mtimes, deepest first, after everything is written (writing changes a folder's).
    paths = [os.path.join(d, n) for d, ds, fs in os.walk(root) for n in ds + fs]
    for i, path in enumerate(sorted(paths, key=lambda p: (-p.count("/"), p))):
        if not os.path.islink(path):
            os.utime(path, (1_600_000_000 + 60 * i,) * 2)


def tree_manifest(root, skip=()):
    """Every entry under ``root`` but ``skip``: kind, sha256, size, permission bits, mtime,
    symlink target; and the groups of paths sharing an inode. Stdlib only (runs in the job too)."""
    import hashlib
    import os
    import stat

    entries, inodes = {}, {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if rel in skip:
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = {"type": "symlink", "target": os.readlink(path)}
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = {"type": "dir", "mtime": int(st.st_mtime)}
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                entries[rel] = {"type": "file", "sha256": digest, "size": st.st_size,
                                "mode": oct(stat.S_IMODE(st.st_mode)), "mtime": int(st.st_mtime)}
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            else:
                entries[rel] = {"type": "other"}
    return {"entries": entries, "hardlinks": sorted(sorted(group) for group in inodes.values())}


def long_failure_reason(token):
    """The 3000-character failure the model writes; its first 1024 characters are the reason."""
    return ("ConformanceError: " + token + " " + "".join(f"{i:04d}." for i in range(600)))[:3000]


_MODEL_BODY = '''
OPT = Path("/opt/ml")
hp = json.loads((OPT / "input/config/hyperparameters.json").read_text())
mode = hp.get("mode", "ok")


def on_sigterm(signum, frame):
    # A model saving a checkpoint: it needs the grace period a stop must give.
    time.sleep(SIGTERM_WORK_SECONDS)
    for folder in (OPT / "checkpoints", OPT / "output/data"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "stopped.txt").write_text("SIGTERM " + hp.get("token", ""))
    print("conformance model: SIGTERM received " + hp.get("token", ""), flush=True)
    sys.exit(128 + signum)


def read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


signal.signal(signal.SIGTERM, on_sigterm)
print(f"conformance model: mode={mode}", flush=True)
if mode == "fail":
    (OPT / "output").mkdir(parents=True, exist_ok=True)
    (OPT / "output/failure").write_text(long_failure_reason(hp.get("token", "")))
    print("failing on purpose", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "crash":
    raise RuntimeError(f"crashed without a failure file {hp.get('token', '')}")
if mode == "empty":  # completes, its model folder holding a folder and no file
    (OPT / "model" / "nothing-here").mkdir(parents=True, exist_ok=True)
    print("conformance model: saved no model", flush=True)
    sys.exit(0)
if mode == "sleep":
    print("sleeping until stopped", flush=True)
    time.sleep(3600)
    sys.exit(0)
if float(hp.get("linger", 0)):
    print("conformance model: lingering", flush=True)
    time.sleep(float(hp["linger"]))
model = OPT / "model"
if mode == "tree":
    build_tree(str(model), hp.get("token", ""))
    found = tree_manifest(str(model))
    (model / "conformance-manifest.json").write_text(json.dumps(found))
    print("conformance model: done", flush=True)
    sys.exit(0)
channels = {}
data = OPT / "input/data"
for channel in sorted(p for p in data.iterdir() if p.is_dir()) if data.is_dir() else []:
    channels[channel.name] = {
        str(f.relative_to(channel)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(channel.rglob("*")) if f.is_file()
    }
(model / "nested" / "deeper").mkdir(parents=True, exist_ok=True)
payload = hashlib.sha256(hp.get("token", "").encode()).digest() * 32768  # 1 MiB, token-specific
(model / "nested" / "deeper" / "weights.bin").write_bytes(payload)
report = {
    "hyperparameters": hp,
    "channels": channels,
    "environment": {k: os.environ.get(k)
                    for k in ("FAHR_EXECUTION_ENVIRONMENT", "TRAINING_JOB_NAME", "TRAINING_JOB_ARN", ENV_NAME)},
    "resourceconfig": read_json(OPT / "input/config/resourceconfig.json"),
    "inputdataconfig": read_json(OPT / "input/config/inputdataconfig.json"),
    "weights_sha256": hashlib.sha256(payload).hexdigest(),
}
(model / "report.json").write_text(json.dumps(report, indent=2))
if mode == "link":
    os.symlink("../../../../../../../../../tmp", model / "escape")
    os.symlink("/etc", model / "absolute")
(OPT / "output/data").mkdir(parents=True, exist_ok=True)
(OPT / "output/data/notes.txt").write_text("output data of " + hp.get("token", ""))
print("conformance model: done", flush=True)
'''

#: The known model: one stdlib-only script whose behaviour the ``mode`` hyperparameter selects.
CONFORMANCE_MODEL = "\n".join([
    '"""fahr\'s conformance model: it reports what it received, fails, sleeps, or writes a tree."""',
    "import hashlib", "import json", "import os", "import signal", "import sys", "import time",
    "from pathlib import Path", "",
    f"SIGTERM_WORK_SECONDS = {SIGTERM_WORK_SECONDS}", f"ENV_NAME = {ENV_NAME!r}", "",
    inspect.getsource(build_tree), inspect.getsource(tree_manifest), inspect.getsource(long_failure_reason),
    _MODEL_BODY,
])

MODEL_FOLDER = "fahr-conformance"
MODEL_TAG = f"{MODEL_FOLDER}/train"
OTHER_FOLDER = "fahr-conformance-other"
OTHER_TAG = f"{OTHER_FOLDER}/train"


class FahrRunner:
    """Runs the ``fahr`` command of this Python environment against one driver.

    Its subprocesses get their own temporary folder (``tmpdir``), so what a driver leaves there
    is found; ``jobs`` lists every job name their output named, for the cleanup check.
    """

    def __init__(self, driver: str, config: Mapping[str, str], env: Mapping[str, str], cwd: Path,
                 timeout: float, tmpdir: Path | None = None):
        self.driver = driver
        self.config_args = [f"--config.{k}={v}" for k, v in config.items()]
        self.env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **env}
        self.env.pop("FAHR_DRIVER", None)
        self.tmpdir = tmpdir
        if tmpdir is not None:
            self.env["TMPDIR"] = str(tmpdir)
        self.cwd = cwd
        self.timeout = timeout
        self.executable = str(Path(sys.executable).parent / "fahr")
        self.jobs: list[str] = []

    def command(self, *args: str, driver_args: bool = True) -> list[str]:
        command = [self.executable, *args]
        if driver_args:
            command += ["--train-driver", self.driver, *self.config_args]
        return command

    def __call__(self, *args: str, driver_args: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(*args, driver_args=driver_args), cwd=self.cwd, env=self.env,
                                capture_output=True, text=True, timeout=self.timeout)
        self.note_jobs(result.stderr + result.stdout)
        return result

    def live(self, *args: str, until: str | None = None,
             on_line: Callable[[str, "LiveRun"], None] | None = None, patience: float | None = None) -> "LiveRun":
        """Run a command, reading its stdout line by line as it comes: see :class:`LiveRun`."""
        return LiveRun(self, list(args), until=until, on_line=on_line, patience=patience)

    def note_jobs(self, text: str) -> None:
        for name in job_names(text):
            if name not in self.jobs:
                self.jobs.append(name)


class LiveRun:
    """One ``fahr`` process whose stdout lines are timestamped as they arrive.

    ``until``: a text; when a line holding it first arrives, ``on_line(line, run)`` is called (in
    the reading loop, the process running on), e.g. to stop the job from another process;
    ``run.stderr_so_far()`` reads what the process has written on stderr by then. With
    ``patience``, a process whose ``until`` line has not come by then is interrupted.
    ``lines`` holds ``(monotonic time, line)``; ``ended`` the time the process exited.
    """

    def __init__(self, runner: FahrRunner, args: list[str], *, until: str | None = None,
                 on_line: Callable[[str, "LiveRun"], None] | None = None, patience: float | None = None):
        self.lines: list[tuple[float, str]] = []
        self.triggered: str | None = None
        with tempfile.TemporaryFile() as err:
            self._err = err
            proc = subprocess.Popen(runner.command(*args), cwd=runner.cwd, env=runner.env, stdout=subprocess.PIPE,
                                    stderr=err, text=True, errors="replace", bufsize=1)
            timer = threading.Timer(runner.timeout, proc.kill)
            timer.start()

            def impatient():  # the line never came in time: interrupt fahr; the test says why
                if self.triggered is None and proc.poll() is None:
                    proc.send_signal(signal.SIGINT)

            patience_timer = threading.Timer(patience, impatient) if until and patience else None
            if patience_timer:
                patience_timer.start()
            try:
                for line in proc.stdout:
                    self.lines.append((time.monotonic(), line.rstrip("\n")))
                    if until and self.triggered is None and until in line:
                        self.triggered = line
                        if on_line is not None:
                            on_line(line, self)
                self.returncode = proc.wait()
            finally:
                timer.cancel()
                if patience_timer:
                    patience_timer.cancel()
            self.ended = time.monotonic()
            self.stderr = self.stderr_so_far()
        self.stdout = "\n".join(line for _, line in self.lines)
        runner.note_jobs(self.stderr + self.stdout)

    def stderr_so_far(self) -> str:
        return os.pread(self._err.fileno(), 1 << 24, 0).decode("utf-8", "replace")

    def arrival(self, text: str) -> float | None:
        """When the first line holding ``text`` arrived (monotonic), or None."""
        return next((at for at, line in self.lines if text in line), None)


_JOB_NAME_PATTERNS = (
    re.compile(r"launching job (\S+)"),
    re.compile(r"\bjob (\S+) (?:launched|started|is running|completed|failed|stopped)"),
    re.compile(r"fahr wait (\S+)"),
)


def job_names(text: str) -> list[str]:
    """Every job name ``fahr`` printed, in the order printed (``launching job X`` before the
    launch, ``job X launched`` after it, ``fahr wait X``…)."""
    found = []
    for pattern in _JOB_NAME_PATTERNS:
        for match in pattern.finditer(text):
            name = match.group(1).strip("'\".,;:")
            if JOB_NAME.match(name) and name != "JOB":  # not a hint's placeholder ("fahr wait JOB")
                found.append((match.start(), name))
    ordered = []
    for _, name in sorted(found):
        if name not in ordered:
            ordered.append(name)
        else:  # printed again later: it counts as printed last
            ordered.remove(name)
            ordered.append(name)
    return ordered


def _job_name(result) -> str:
    """The job a ``fahr fit`` ran: the last job name it printed (the driver may rename the job
    at launch, and fahr prints the name the driver returned after the one it proposed)."""
    names = job_names(result.stderr + "\n" + result.stdout)
    assert names, f"fahr printed no job name:\n{_show(result)}"
    return names[-1]


def _show(result) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_local(location: str) -> bytes:
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        raise AssertionError(f"{location}: override the read_artifact fixture to read {parsed.scheme}:// artifacts")
    return Path(parsed.path if parsed.scheme == "file" else location).read_bytes()


def _tar_members(data: bytes) -> dict[str, bytes | None]:
    """The entries of a (gzipped) tar: name (without './') -> content, None for non-files."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            out[name] = tar.extractfile(member).read() if member.isfile() else None
    return out


def _docker_leftovers(job_name: str, env: Mapping[str, str]) -> list[str]:
    """Containers and networks of the engine whose name or labels hold ``job_name``."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return []
    try:
        client = docker.from_env(environment=dict(env))
        client.ping()
    except DockerException:  # no engine (a driver that needs none): there is nothing of it to leave
        return []
    try:
        containers = [(c.name, c.labels) for c in client.containers.list(all=True, ignore_removed=True)]
        networks = [(n.name, n.attrs.get("Labels") or {}) for n in client.networks.list()]
    finally:
        client.close()
    found = []
    for kind, items in (("container", containers), ("network", networks)):
        for name, labels in items:
            if job_name in name or any(job_name in f"{k}={v}" for k, v in (labels or {}).items()):
                found.append(f"docker {kind} {name}")
    return found


def _temp_leftovers(job_name: str, roots: Iterable[tuple[Path, bool]]) -> list[str]:
    """Files and folders named after the job in ``roots``: ``(folder, whole)``, searched whole or
    only at the top (the system's temporary folder is shared with everything on the machine)."""
    found = []
    for root, whole in roots:
        if not root.is_dir():
            continue
        with contextlib.suppress(OSError):
            entries = root.rglob("*") if whole else root.iterdir()
            found += [f"temporary file {p}" for p in entries if job_name in p.name]
    return found


class DriverFixtures:
    """The fixtures: those a driver overrides, then the suite's own."""

    # -- fixtures a driver's tests provide ---------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def driver_name(cls) -> str:
        raise NotImplementedError("override the driver_name fixture with your driver's name")

    @pytest.fixture(scope="class")
    @classmethod
    def driver_config(cls) -> Mapping[str, str]:
        return {}

    @pytest.fixture(scope="class")
    @classmethod
    def driver_env(cls) -> Mapping[str, str]:
        return {}

    @pytest.fixture(scope="class")
    @classmethod
    def execution_environment(cls, driver_name) -> str:
        return driver_name

    @pytest.fixture(scope="class")
    @classmethod
    def fetch_location(cls, driver_config) -> str | None:
        return driver_config.get("output_path")

    @pytest.fixture(scope="class")
    @classmethod
    def channel_uri(cls) -> Callable[[Path], str]:
        return str

    @pytest.fixture(scope="class")
    @classmethod
    def supports_stop(cls) -> bool:
        return True

    @pytest.fixture(scope="class")
    @classmethod
    def leftovers(cls, fahr) -> Callable[[str], list[str]]:
        def find(job_name: str) -> list[str]:
            roots = [(Path(tempfile.gettempdir()), False)] + ([(fahr.tmpdir, True)] if fahr.tmpdir else [])
            return _docker_leftovers(job_name, fahr.env) + _temp_leftovers(job_name, roots)

        return find

    @pytest.fixture(scope="class")
    @classmethod
    def read_artifact(cls) -> Callable[[str], bytes]:
        return _read_local

    @pytest.fixture(scope="class")
    @classmethod
    def foreign_locations(cls) -> list[str]:
        return ["nosuch://bucket/x", "nosuch-scheme://conformance/model.tar.gz"]

    @pytest.fixture(scope="class")
    @classmethod
    def job_timeout(cls) -> float:
        return 600

    # -- the suite's own fixtures ------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def workspace(cls, tmp_path_factory) -> Path:
        root = tmp_path_factory.mktemp("conformance")
        for folder in (MODEL_FOLDER, OTHER_FOLDER):
            (root / folder).mkdir()
            (root / folder / "train.py").write_text(CONFORMANCE_MODEL)
        (root / "cwd").mkdir()
        (root / "fahr-tmp").mkdir()
        return root

    @pytest.fixture(scope="class")
    @classmethod
    def fahr(cls, driver_name, driver_config, driver_env, workspace, job_timeout) -> FahrRunner:
        return FahrRunner(driver_name, driver_config, driver_env, workspace / "cwd", job_timeout,
                          tmpdir=workspace / "fahr-tmp")

    @pytest.fixture(scope="class")
    @classmethod
    def driver_session(cls, driver_name, driver_config, driver_env, workspace):
        """The driver's plugin manager and resolved config, as ``fahr`` builds them, in-process."""
        return _InProcess(driver_name, driver_config, driver_env, workspace / "cwd")

    @pytest.fixture(scope="class")
    @classmethod
    def model_script(cls, workspace) -> str:
        return str(workspace / MODEL_FOLDER / "train.py")

    @staticmethod
    def fetch(fahr, fetch_location, target: Path, job: str | None = None, *extra: str, tag: str = MODEL_TAG):
        """``fahr fetch TARGET TAG [LOCATION] [--job JOB]``."""
        args = ["fetch", str(target), tag]
        if fetch_location:
            args.append(fetch_location)
        if job:
            args += ["--job", job]
        return fahr(*args, *extra)

    @pytest.fixture(scope="class")
    @classmethod
    def channel(cls, workspace) -> dict[str, str]:
        folder = workspace / "channel-train"
        (folder / "sub").mkdir(parents=True)
        (folder / "a.csv").write_text("1,2,3\n4,5,6\n")
        (folder / "sub" / "b.bin").write_bytes(os.urandom(4096))
        return {str(p.relative_to(folder)): _sha256(p) for p in folder.rglob("*") if p.is_file()}

    @pytest.fixture(scope="class")
    @classmethod
    def trained(cls, fahr, model_script, workspace, channel, channel_uri, fetch_location):
        """One completed job with hyperparameters, a channel and --env, its stdout timed as it
        arrived, its model fetched. The model lingers after its first lines (live logs)."""
        token = uuid.uuid4().hex
        hyperparameters = {"mode": "ok", "token": token, "learning_rate": "0.01", "epochs": "3",
                           "phrase": "two words = and more", "linger": str(LINGER_SECONDS)}
        env_value = f"set by --env {token} = with spaces"
        hp_args = [arg for k, v in hyperparameters.items() for arg in ("--hp", f"{k}={v}")]
        result = fahr.live("fit", model_script, *hp_args, "--env", f"{ENV_NAME}={env_value}",
                           "--input", f"train={channel_uri(workspace / 'channel-train')}")
        assert result.returncode == 0, _show(result)
        job = _job_name(result)
        target = workspace / "fetched-first"
        fetched = cls.fetch(fahr, fetch_location, target, job)
        assert fetched.returncode == 0, _show(fetched)
        return {"job": job, "token": token, "hyperparameters": hyperparameters, "model": target,
                "env_value": env_value, "result": result,
                "report": json.loads((target / "report.json").read_text())}

    @pytest.fixture(scope="class")
    @classmethod
    def failed(cls, fahr, model_script):
        """One job of a model that fails with a 3000-character /opt/ml/output/failure."""
        token = uuid.uuid4().hex
        result = fahr("fit", model_script, "--hp", "mode=fail", "--hp", f"token={token}")
        assert result.returncode == 1, _show(result)
        return {"job": _job_name(result), "token": token, "result": result}

    @pytest.fixture(scope="class")
    @classmethod
    def detached(cls, fahr, model_script):
        """A job launched with --detach, then followed to its end by ``fahr wait JOB``."""
        token = uuid.uuid4().hex
        launched = fahr("fit", model_script, "--hp", "mode=ok", "--hp", f"token={token}", "--detach")
        assert launched.returncode == 0, _show(launched)
        job = _job_name(launched)
        waited = fahr("wait", job)
        return {"job": job, "token": token, "launched": launched, "waited": waited}


class _InProcess:
    """Calls the driver's hooks in this process, with the config ``fahr`` would resolve."""

    def __init__(self, driver: str, config: Mapping[str, str], env: Mapping[str, str], cwd: Path):
        self.driver, self.config, self.env, self.cwd = driver, dict(config), dict(env), cwd

    @contextlib.contextmanager
    def session(self):
        from fahr_core.run import open_session

        patch = pytest.MonkeyPatch()
        try:
            for key, value in self.env.items():
                patch.setenv(key, value)
            patch.delenv("FAHR_DRIVER", raising=False)
            patch.chdir(self.cwd)
            yield open_session(self.driver, self.cwd, list(self.config.items()))
        finally:
            patch.undo()

    def wait(self, job_name: str, model_tag: str = MODEL_TAG):
        """The driver's ``wait`` hook on a job (which has ended): its :class:`JobResult`."""
        from fahr_core.jobs import JobHandle

        with self.session() as session:
            job = JobHandle(driver=self.driver, job_name=job_name, model_tag=model_tag)
            return session.hook.wait(job=job, config=session.config)

    def claims(self, location: str):
        with self.session() as session:
            return session.hook.claims_location(location=location, config=session.config)


class RunContract:
    """A job runs as the SageMaker container contract says, and ends as SageMaker's would."""

    def test_the_logs_are_streamed(self, trained):
        assert "conformance model: mode=ok" in trained["result"].stdout
        assert "conformance model: done" in trained["result"].stdout

    def test_the_logs_arrive_while_the_job_runs(self, trained):
        result = trained["result"]
        seen = result.arrival("conformance model: lingering")
        assert seen is not None, "the model's line never reached fahr's stdout\n" + _show(result)
        # The model waits LINGER_SECONDS after that line: a driver that prints the logs only once
        # the job has ended shows it a fraction of a second before fahr exits.
        assert result.ended - seen >= LIVE_MARGIN_SECONDS, (
            f"the model's line reached fahr's stdout only {result.ended - seen:.1f} s before fahr exited, "
            f"though the model went on for {LINGER_SECONDS} s after it: the logs are not streamed live")

    def test_hyperparameters_reach_the_code_as_strings(self, trained):
        hyperparameters = trained["report"]["hyperparameters"]
        assert hyperparameters == trained["hyperparameters"]

    def test_channel_data_reaches_the_code(self, trained, channel):
        assert trained["report"]["channels"] == {"train": channel}

    def test_the_env_option_reaches_the_code(self, trained):
        seen = trained["report"]["environment"][ENV_NAME]
        assert seen == trained["env_value"], f"the job did not see --env {ENV_NAME}=…: it saw {seen!r}"

    def test_the_job_finds_its_resource_and_input_config(self, trained):
        resource, inputs = trained["report"]["resourceconfig"], trained["report"]["inputdataconfig"]
        assert isinstance(resource, dict), "no readable /opt/ml/input/config/resourceconfig.json"
        assert resource.get("current_host") in resource.get("hosts", []), resource
        assert isinstance(inputs, dict), "no readable /opt/ml/input/config/inputdataconfig.json"
        assert sorted(inputs) == ["train"], inputs
        assert inputs["train"].get("TrainingInputMode"), inputs

    def test_the_job_sees_its_environment_and_a_valid_name(self, trained, execution_environment):
        env = trained["report"]["environment"]
        assert env["FAHR_EXECUTION_ENVIRONMENT"] == execution_environment
        assert env["TRAINING_JOB_NAME"] == trained["job"]
        assert JOB_NAME.match(trained["job"]) and len(trained["job"]) <= JOB_NAME_MAX
        # SageMaker's variable holds the job's ARN; a backend without ARNs leaves it unset.
        arn = env.get("TRAINING_JOB_ARN")
        assert arn is None or re.fullmatch(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:training-job/"
                                           + re.escape(trained["job"]), arn, re.IGNORECASE), arn
        # A channel given no content type has none (as on SageMaker).
        assert "ContentType" not in trained["report"]["inputdataconfig"]["train"], trained["report"]["inputdataconfig"]

    def test_a_failing_model_fails_with_its_failure_reason(self, fahr, failed, workspace, fetch_location):
        result, token = failed["result"], failed["token"]
        assert f"ConformanceError: {token}" in result.stderr, _show(result)
        target = workspace / "fetched-failed"
        fetched = self.fetch(fahr, fetch_location, target, failed["job"])
        assert fetched.returncode != 0, "a failed job must have no model to fetch\n" + _show(fetched)
        assert not target.exists() or not any(target.iterdir())

    def test_the_failure_reason_is_cut_to_1024_characters(self, failed, driver_session):
        result = driver_session.wait(failed["job"])
        full = long_failure_reason(failed["token"])
        assert result.status == "Failed", result
        assert result.failure_reason, "the JobResult of a failed job has no failure_reason"
        assert len(result.failure_reason) <= FAILURE_REASON_MAX, (
            f"failure_reason is {len(result.failure_reason)} characters; SageMaker keeps the first "
            f"{FAILURE_REASON_MAX} of /opt/ml/output/failure")
        assert full.startswith(result.failure_reason) and len(result.failure_reason) >= 100, result.failure_reason

    def test_a_crash_without_failure_file_still_has_a_reason(self, fahr, model_script):
        result = fahr("fit", model_script, "--hp", "mode=crash")
        assert result.returncode == 1, _show(result)
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        assert "failed" in result.stderr and "no reason given" not in result.stderr, _show(result)
        assert last, _show(result)

    def test_the_job_writes_its_output_data_archive(self, trained, driver_session, read_artifact):
        result = driver_session.wait(trained["job"])
        assert result.status == "Completed", result
        assert result.output_artifact, "the JobResult names no output.tar.gz (output_artifact is empty)"
        members = _tar_members(read_artifact(result.output_artifact))
        assert members.get("notes.txt") == f"output data of {trained['token']}".encode(), sorted(members)

    def test_a_detached_job_can_be_waited_for(self, fahr, detached, workspace, fetch_location):
        waited = detached["waited"]
        assert waited.returncode == 0, _show(waited)
        target = workspace / "fetched-detached"
        fetched = self.fetch(fahr, fetch_location, target, detached["job"])
        assert fetched.returncode == 0, _show(fetched)
        assert json.loads((target / "report.json").read_text())["hyperparameters"]["token"] == detached["token"]

    def test_a_job_waited_for_by_name_knows_its_model_tag(self, detached):
        """``fahr wait JOB`` rebuilds the handle from the name alone: the driver fills in the tag,
        so the fetch command fahr prints names it (never ``fahr fetch ./model '' …``)."""
        waited = detached["waited"]
        assert waited.returncode == 0, _show(waited)
        fetch_lines = [line for line in waited.stderr.splitlines() if "fahr fetch " in line and "--job" in line]
        assert fetch_lines, _show(waited)
        assert all(f" {MODEL_TAG} " in f"{line} " for line in fetch_lines), _show(waited)


class ModelContract:
    """The model comes back exactly as the job left it."""

    def test_the_model_comes_back_intact(self, trained):
        model = trained["model"]
        files = sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file())
        assert files == ["nested/deeper/weights.bin", "report.json"]
        weights = model / "nested" / "deeper" / "weights.bin"
        assert weights.stat().st_size == 1024 * 1024
        assert _sha256(weights) == trained["report"]["weights_sha256"]
        expected = hashlib.sha256(trained["token"].encode()).digest() * 32768
        assert weights.read_bytes() == expected

    def test_a_model_with_no_file_is_reported(self, fahr, model_script, trained):
        # Every driver says when /opt/ml/model was empty (JobResult.model_empty): fahr warns.
        result = fahr("fit", model_script, "--hp", "mode=empty")
        assert result.returncode == 0, _show(result)
        assert "saved no model: /opt/ml/model was empty" in result.stderr, _show(result)
        assert "saved no model" not in trained["result"].stderr, _show(trained["result"])

    def test_links_long_and_non_ascii_names_survive(self, fahr, model_script, workspace, fetch_location):
        token = uuid.uuid4().hex
        result = fahr("fit", model_script, "--hp", "mode=tree", "--hp", f"token={token}")
        assert result.returncode == 0, _show(result)
        target = workspace / "fetched-tree"
        fetched = self.fetch(fahr, fetch_location, target, _job_name(result))
        assert fetched.returncode == 0, _show(fetched)
        expected = json.loads((target / "conformance-manifest.json").read_text())
        entries = expected["entries"]
        # The job's manifest describes the tree it was meant to (or nothing would be tested).
        assert "modèle-poids.json" in entries and max(map(len, entries)) > 255
        assert any(100 < len(name) <= 255 for name in entries)
        assert len(expected["hardlinks"]) == 2 and entries["zero.bin"]["size"] == 0
        found = tree_manifest(str(target), skip=("conformance-manifest.json",))
        missing = sorted(set(entries) - set(found["entries"]))
        assert not missing, f"lost in the round trip: {missing}"
        changed = {k: (entries[k], found["entries"].get(k)) for k in entries if entries[k] != found["entries"].get(k)}
        assert not changed, f"changed in the round trip: {changed}"
        assert found == expected


class FetchContract:
    """Fetch finds the right job and writes only where it is told; claims are the driver's own."""

    def test_job_names_are_unique_and_fetch_takes_the_newest(self, fahr, trained, model_script, workspace,
                                                            fetch_location):
        """Tag A completes, then tag B, then tag A fails: fetch of A without --job gets A's
        completed job (not B's newer model, not A's newer failed job, not A's older one)."""
        token = uuid.uuid4().hex
        result = fahr("fit", model_script, "--hp", "mode=ok", "--hp", f"token={token}")
        assert result.returncode == 0, _show(result)
        job = _job_name(result)
        assert job != trained["job"] and JOB_NAME.match(job)
        other = fahr("fit", str(workspace / OTHER_FOLDER / "train.py"), "--hp", "mode=ok", "--hp", "token=other")
        assert other.returncode == 0, _show(other)
        failing = fahr("fit", model_script, "--hp", "mode=fail", "--hp", "token=newer-failure")
        assert failing.returncode == 1, _show(failing)
        assert len({job, _job_name(other), _job_name(failing), trained["job"]}) == 4
        target = workspace / "fetched-newest"
        fetched = self.fetch(fahr, fetch_location, target)
        assert fetched.returncode == 0, _show(fetched)
        got = json.loads((target / "report.json").read_text())["hyperparameters"]["token"]
        assert got == token, f"fetch of {MODEL_TAG} without --job got the model of {got!r}, not of job {job}"

    def test_fetch_refuses_a_non_empty_target(self, fahr, trained, workspace, fetch_location):
        target = workspace / "occupied"
        target.mkdir()
        (target / "keep.txt").write_text("mine")
        fetched = self.fetch(fahr, fetch_location, target, trained["job"])
        assert fetched.returncode == 2, _show(fetched)
        assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
        assert (target / "keep.txt").read_text() == "mine"

    def test_fetch_never_writes_outside_the_target(self, fahr, model_script, workspace, fetch_location):
        result = fahr("fit", model_script, "--hp", "mode=link", "--hp", "token=link")
        assert result.returncode == 0, _show(result)
        target = workspace / "fetched-links"
        fetched = self.fetch(fahr, fetch_location, target, _job_name(result))
        assert fetched.returncode in (0, 2), _show(fetched)
        for path in target.rglob("*") if target.exists() else []:
            assert path.resolve().is_relative_to(target.resolve()), f"{path} leads outside {target}"
        if fetched.returncode == 2:  # the core refused the model: nothing may have been written
            assert "fahr error: refusing the model" in fetched.stderr, _show(fetched)
            assert not target.exists(), _show(fetched)

    def test_the_driver_claims_no_foreign_location(self, driver_session, foreign_locations):
        for location in ["nosuch://bucket/x", *foreign_locations]:
            assert not driver_session.claims(location), f"the driver claims {location}, which is not its own"


class StopContract:
    """``fahr stop`` asks the job to end (SIGTERM) and gives it time before forcing it."""

    def test_stop_ends_a_running_job_stopped(self, fahr, model_script, supports_stop, driver_session, read_artifact):
        if not supports_stop:
            pytest.skip("the driver does not support stop")
        token = uuid.uuid4().hex
        stops = []

        def stop(_line, run):  # the model has installed its SIGTERM handler: stop it from elsewhere
            names = job_names(run.stderr_so_far())
            stops.append(fahr("stop", names[-1]) if names else None)

        # Attached, so the model's "sleeping" line says when its SIGTERM handler is in place.
        run = fahr.live("fit", model_script, "--hp", "mode=sleep", "--hp", f"token={token}",
                        until="sleeping until stopped", on_line=stop, patience=300)
        assert run.triggered, "the model's first lines never reached fahr's stdout\n" + _show(run)
        assert stops and stops[0] is not None, "fahr printed no job name before the job's logs\n" + _show(run)
        stopped = stops[0]
        assert stopped.returncode == 0, _show(stopped)
        job = _job_name(run)
        assert run.returncode == 1 and "stopped" in run.stderr.lower(), _show(run)
        started = time.monotonic()
        waited = fahr("wait", job)
        assert waited.returncode == 1, _show(waited)
        assert "stopped" in waited.stderr.lower(), _show(waited)
        assert time.monotonic() - started < 120
        # The marker the SIGTERM handler saved after SIGTERM_WORK_SECONDS comes back: in the logs,
        # or in the output data. A SIGKILL (or too short a grace period) loses both.
        marker = f"conformance model: SIGTERM received {token}"
        if marker in run.stdout or marker in waited.stdout:
            return
        result = driver_session.wait(job)
        members = _tar_members(read_artifact(result.output_artifact)) if result.output_artifact else {}
        assert members.get("stopped.txt") == f"SIGTERM {token}".encode(), (
            "the model's SIGTERM handler never finished: the job was killed without the grace period "
            f"of a SIGTERM then SIGKILL after a timeout\n{_show(run)}\n{_show(waited)}")


class JobsContract:
    """The optional hooks ``list_jobs`` and ``logs`` (skipped for a driver that lacks them)."""

    @staticmethod
    def _list(driver_session, **query):
        from fahr_core.values import JobQuery

        with driver_session.session() as session:
            infos = session.hook.list_jobs(query=JobQuery(**query), config=session.config)
        if infos is None:
            pytest.skip(f"driver {driver_session.driver!r} does not implement list_jobs")
        return list(infos)

    def test_the_suite_s_jobs_are_listed_newest_first(self, driver_session, trained, failed):
        from fahr_core.values import COMPLETED, FAILED

        infos = self._list(driver_session, model_tag=MODEL_TAG)
        by_name = {info.job_name: info for info in infos}
        assert trained["job"] in by_name and failed["job"] in by_name, \
            f"list_jobs({MODEL_TAG!r}) lacks the suite's jobs {trained['job']}, {failed['job']}: {sorted(by_name)}"
        assert all(info.model_tag == MODEL_TAG for info in infos), "list_jobs(model_tag=…) gave another tag's jobs"
        created = [info.created for info in infos]
        assert None not in created and created == sorted(created, reverse=True), \
            f"list_jobs is not newest first: {[(i.job_name, i.created) for i in infos]}"
        assert by_name[trained["job"]].status == COMPLETED and by_name[trained["job"]].model_artifact
        assert by_name[failed["job"]].status == FAILED and failed["token"] in by_name[failed["job"]].failure_reason
        failures = self._list(driver_session, model_tag=MODEL_TAG, status=FAILED)
        assert failed["job"] in {i.job_name for i in failures} and all(i.status == FAILED for i in failures)
        assert [i.job_name for i in self._list(driver_session, model_tag=MODEL_TAG, limit=1)] == [infos[0].job_name]

    def test_the_logs_of_a_finished_job_hold_its_lines(self, driver_session, trained):
        from fahr_core.values import JobHandle

        with driver_session.session() as session:
            job = JobHandle(driver=driver_session.driver, job_name=trained["job"], model_tag="")
            lines = session.hook.logs(job=job, config=session.config, follow=False)
            if lines is None:
                pytest.skip(f"driver {driver_session.driver!r} does not implement logs")
            lines = list(lines)
        texts = [line.text for line in lines]
        assert "conformance model: done" in texts, f"logs({trained['job']}) lacks the model's last line: {texts[-20:]}"
        assert all(re.fullmatch(r"algo-[1-9][0-9]*", line.host) for line in lines)


class CleanupContract:
    """Nothing of a job outlives it: containers, networks, temporary files."""

    def test_nothing_is_left_behind(self, fahr, trained, failed, leftovers):
        jobs = list(dict.fromkeys([trained["job"], failed["job"], *fahr.jobs]))
        deadline = time.monotonic() + 30  # a backend may take a moment to remove what a job used
        while True:
            left = [item for job in jobs for item in leftovers(job)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert not left, f"left behind by the suite's jobs {jobs}: {left}"


class DriverConformance(CleanupContract, JobsContract, StopContract, FetchContract, ModelContract, RunContract, DriverFixtures):
    """The contract every driver keeps. Subclass it in the driver's tests; see the module doc.

    pytest runs the mixins' tests from the last base to the first: CleanupContract, first here,
    runs last and so sees every job of the suite.
    """
