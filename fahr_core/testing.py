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

The suite trains known models through the real ``fahr`` command (a subprocess of the test's
Python environment) and checks: the job completes and the model comes back intact; the job's
FailureReason for a failing model (from ``/opt/ml/output/failure``, and a reason even without
one); hyperparameters (as strings) and channel data reach the code; ``FAHR_EXECUTION_ENVIRONMENT``
and ``TRAINING_JOB_NAME`` are set and job names are valid and unique; fetch takes the newest
completed job, refuses a non-empty target and never writes outside it; stop ends a running job
Stopped (when the driver supports stop).

Fixtures a subclass may override (all class-scoped):

``driver_name`` (required)
    the driver's entry-point name.
``driver_config``
    ``{key: value}`` passed as ``--config.KEY=VALUE`` to every command (default: none).
``driver_env``
    extra environment for the ``fahr`` subprocesses, e.g. endpoints of an emulated cloud.
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
``job_timeout``
    seconds any one command may take (default: 600).

A cloud driver tested against an emulated service (the ``sagemaker`` driver against the AWS
emulator) overrides ``driver_env`` with the emulator's endpoints and credentials,
``driver_config`` with its bucket and role, ``execution_environment`` with ``"sagemaker"``, and
``channel_uri`` with an upload to the emulated S3.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Mapping

import pytest

from fahr_core.names import JOB_NAME, JOB_NAME_MAX

__all__ = ["DriverConformance", "CONFORMANCE_MODEL", "FahrRunner"]

#: The known model: one stdlib-only script whose behaviour the ``mode`` hyperparameter selects.
CONFORMANCE_MODEL = '''\
"""fahr's conformance model: it reports what it received, or fails, sleeps, or leaves a link."""
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

OPT = Path("/opt/ml")


def on_sigterm(signum, frame):
    (OPT / "checkpoints").mkdir(parents=True, exist_ok=True)
    (OPT / "checkpoints" / "stopped.txt").write_text("SIGTERM")
    print("SIGTERM received", flush=True)
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, on_sigterm)
hp = json.loads((OPT / "input/config/hyperparameters.json").read_text())
mode = hp.get("mode", "ok")
print(f"conformance model: mode={mode}", flush=True)
if mode == "fail":
    (OPT / "output").mkdir(parents=True, exist_ok=True)
    (OPT / "output/failure").write_text(f"ConformanceError: {hp.get('token', '')}")
    print("failing on purpose", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "crash":
    raise RuntimeError(f"crashed without a failure file {hp.get('token', '')}")
if mode == "sleep":
    print("sleeping until stopped", flush=True)
    time.sleep(3600)
    sys.exit(0)
channels = {}
data = OPT / "input/data"
for channel in sorted(p for p in data.iterdir() if p.is_dir()) if data.is_dir() else []:
    channels[channel.name] = {
        str(f.relative_to(channel)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(channel.rglob("*")) if f.is_file()
    }
model = OPT / "model"
(model / "nested" / "deeper").mkdir(parents=True, exist_ok=True)
payload = hashlib.sha256(hp.get("token", "").encode()).digest() * 32768  # 1 MiB, token-specific
(model / "nested" / "deeper" / "weights.bin").write_bytes(payload)
report = {
    "hyperparameters": hp,
    "channels": channels,
    "environment": {k: os.environ.get(k) for k in ("FAHR_EXECUTION_ENVIRONMENT", "TRAINING_JOB_NAME")},
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

MODEL_FOLDER = "fahr-conformance"
MODEL_TAG = f"{MODEL_FOLDER}/train"


class FahrRunner:
    """Runs the ``fahr`` command of this Python environment against one driver."""

    def __init__(self, driver: str, config: Mapping[str, str], env: Mapping[str, str], cwd: Path,
                 timeout: float):
        self.driver = driver
        self.config_args = [f"--config.{k}={v}" for k, v in config.items()]
        self.env = {**os.environ, **env}
        self.env.pop("FAHR_DRIVER", None)
        self.cwd = cwd
        self.timeout = timeout
        self.executable = str(Path(sys.executable).parent / "fahr")

    def __call__(self, *args: str, driver_args: bool = True) -> subprocess.CompletedProcess:
        command = [self.executable, *args]
        if driver_args:
            command += ["--train-driver", self.driver, *self.config_args]
        return subprocess.run(command, cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=self.timeout)


def _job_name(result: subprocess.CompletedProcess) -> str:
    found = re.search(r"launching job (\S+)", result.stderr) or re.search(r"fahr wait (\S+)", result.stderr)
    assert found, f"fahr printed no job name:\n{result.stderr}"
    return found.group(1)


def _show(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class DriverConformance:
    """The contract every driver keeps. Subclass it in the driver's tests; see the module doc."""

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
    def job_timeout(cls) -> float:
        return 600

    # -- the suite's own fixtures ------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def workspace(cls, tmp_path_factory) -> Path:
        root = tmp_path_factory.mktemp("conformance")
        model = root / MODEL_FOLDER
        model.mkdir()
        (model / "train.py").write_text(CONFORMANCE_MODEL)
        (root / "cwd").mkdir()
        return root

    @pytest.fixture(scope="class")
    @classmethod
    def fahr(cls, driver_name, driver_config, driver_env, workspace, job_timeout) -> FahrRunner:
        return FahrRunner(driver_name, driver_config, driver_env, workspace / "cwd", job_timeout)

    @pytest.fixture(scope="class")
    @classmethod
    def model_script(cls, workspace) -> str:
        return str(workspace / MODEL_FOLDER / "train.py")

    @staticmethod
    def fetch(fahr, fetch_location, target: Path, job: str | None = None, *extra: str):
        """``fahr fetch TARGET fahr-conformance/train [LOCATION] [--job JOB]``."""
        args = ["fetch", str(target), MODEL_TAG]
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
        """One completed job with hyperparameters and a channel, its model fetched."""
        token = uuid.uuid4().hex
        hyperparameters = {"mode": "ok", "token": token, "learning_rate": "0.01", "epochs": "3",
                           "phrase": "two words = and more"}
        hp_args = [arg for k, v in hyperparameters.items() for arg in ("--hp", f"{k}={v}")]
        result = fahr("fit", model_script, *hp_args,
                      "--input", f"train={channel_uri(workspace / 'channel-train')}")
        assert result.returncode == 0, _show(result)
        job = _job_name(result)
        target = workspace / "fetched-first"
        fetched = cls.fetch(fahr, fetch_location, target, job)
        assert fetched.returncode == 0, _show(fetched)
        return {"job": job, "token": token, "hyperparameters": hyperparameters, "model": target,
                "result": result, "report": json.loads((target / "report.json").read_text())}

    # -- the contract ------------------------------------------------------------------------

    def test_the_model_comes_back_intact(self, trained):
        model = trained["model"]
        files = sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file())
        assert files == ["nested/deeper/weights.bin", "report.json"]
        weights = model / "nested" / "deeper" / "weights.bin"
        assert weights.stat().st_size == 1024 * 1024
        assert _sha256(weights) == trained["report"]["weights_sha256"]
        expected = hashlib.sha256(trained["token"].encode()).digest() * 32768
        assert weights.read_bytes() == expected

    def test_the_logs_are_streamed(self, trained):
        assert "conformance model: mode=ok" in trained["result"].stdout
        assert "conformance model: done" in trained["result"].stdout

    def test_hyperparameters_reach_the_code_as_strings(self, trained):
        assert trained["report"]["hyperparameters"] == trained["hyperparameters"]

    def test_channel_data_reaches_the_code(self, trained, channel):
        assert trained["report"]["channels"] == {"train": channel}

    def test_the_job_sees_its_environment_and_a_valid_name(self, trained, execution_environment):
        env = trained["report"]["environment"]
        assert env["FAHR_EXECUTION_ENVIRONMENT"] == execution_environment
        assert env["TRAINING_JOB_NAME"] == trained["job"]
        assert JOB_NAME.match(trained["job"]) and len(trained["job"]) <= JOB_NAME_MAX

    def test_a_failing_model_fails_with_its_failure_reason(self, fahr, model_script, workspace, fetch_location):
        token = uuid.uuid4().hex
        result = fahr("fit", model_script, "--hp", "mode=fail", "--hp", f"token={token}")
        assert result.returncode == 1, _show(result)
        assert f"ConformanceError: {token}" in result.stderr, _show(result)
        job = _job_name(result)
        target = workspace / "fetched-failed"
        fetched = self.fetch(fahr, fetch_location, target, job)
        assert fetched.returncode != 0, "a failed job must have no model to fetch\n" + _show(fetched)
        assert not target.exists() or not any(target.iterdir())

    def test_a_crash_without_failure_file_still_has_a_reason(self, fahr, model_script):
        result = fahr("fit", model_script, "--hp", "mode=crash")
        assert result.returncode == 1, _show(result)
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        assert "failed" in result.stderr and "no reason given" not in result.stderr, _show(result)
        assert last, _show(result)

    def test_job_names_are_unique_and_fetch_takes_the_newest(self, fahr, trained, model_script, workspace,
                                                            fetch_location):
        token = uuid.uuid4().hex
        result = fahr("fit", model_script, "--hp", "mode=ok", "--hp", f"token={token}")
        assert result.returncode == 0, _show(result)
        job = _job_name(result)
        assert job != trained["job"] and JOB_NAME.match(job)
        target = workspace / "fetched-newest"
        fetched = self.fetch(fahr, fetch_location, target)
        assert fetched.returncode == 0, _show(fetched)
        assert json.loads((target / "report.json").read_text())["hyperparameters"]["token"] == token

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

    def test_stop_ends_a_running_job_stopped(self, fahr, model_script, supports_stop):
        if not supports_stop:
            pytest.skip("the driver does not support stop")
        launched = fahr("fit", model_script, "--hp", "mode=sleep", "--detach")
        assert launched.returncode == 0, _show(launched)
        job = _job_name(launched)
        time.sleep(3)  # let the model start and install its SIGTERM handler
        stopped = fahr("stop", job)
        assert stopped.returncode == 0, _show(stopped)
        started = time.monotonic()
        waited = fahr("wait", job)
        assert waited.returncode == 1, _show(waited)
        assert "stopped" in waited.stderr.lower(), _show(waited)
        assert time.monotonic() - started < 120
