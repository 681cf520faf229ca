"""The fixtures of the conformance suite: those a driver overrides, the suite's own (its models'
folders, the ``fahr`` runner, the jobs the tests share), and the readers of what a job left."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlparse

import pytest

from fahr_core.testing.cleanup import _docker_leftovers, _temp_leftovers
from fahr_core.testing.conformance_model import ENV_NAME
from fahr_core.testing.harness import FahrRunner, _job_name, _show
from fahr_core.testing.levels import FIRST_LEVEL, check_level

#: The model's source, written as the ``train.py`` of the suite's models.
CONFORMANCE_MODEL = (Path(__file__).parent / "conformance_model.py").read_text(encoding="utf-8")
#: How long the model lingers after its first lines: logs must reach fahr well before it exits.
LINGER_SECONDS = 8

MODEL_FOLDER = "fahr-conformance"
MODEL_TAG = f"{MODEL_FOLDER}/train"
OTHER_FOLDER = "fahr-conformance-other"
OTHER_TAG = f"{OTHER_FOLDER}/train"


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


class DriverFixtures:
    """The fixtures: those a driver overrides, then the suite's own; and the API level targeted."""

    #: The plugin API level the driver's test class targets: the conformance rules of higher
    #: levels are warnings for it, not failures (:mod:`fahr_core.testing.levels`). A class that
    #: says nothing targets the level the suite was first published at.
    api_level: str = FIRST_LEVEL

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_level(cls.api_level, cls.__qualname__)

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
    def emptied(cls, fahr, model_script):
        """One job whose model folder holds a folder and no file: it completes all the same."""
        result = fahr("fit", model_script, "--hp", "mode=empty")
        assert result.returncode == 0, _show(result)
        return {"job": _job_name(result), "result": result}

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
        from fahr_core.session import open_session

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
        from fahr_core.values import JobHandle

        with self.session() as session:
            job = JobHandle(driver=self.driver, job_name=job_name, model_tag=model_tag)
            return session.hook.wait(job=job, config=session.config)

    def claims(self, location: str):
        with self.session() as session:
            return session.hook.claims_location(location=location, config=session.config)
