"""pytest fixtures for the SageMaker end-to-end tests: the emulated AWS (one per session) and a
way to run the real ``fahr`` console script against it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from aws_emulator.stack import BUCKET, ROLE, Stack

FAHR = Path(sys.executable).parent / "fahr"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("fahr error:")]


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """moto server, registry on 127.0.0.1:443 and the SageMaker emulator, for the whole session."""
    with Stack(tmp_path_factory.mktemp("aws-emu")) as running:
        yield running


def run_fahr(stack: Stack, *args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> Result:
    """Run ``fahr ARGS`` as a real process against the stack; its exit code and output."""
    proc = subprocess.run([str(FAHR), *args], cwd=cwd, env=env or stack.env(), capture_output=True,
                          text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def write_model(root: Path, folder: str, code: str) -> Path:
    """``root/folder/train.py`` with ``code``: its model image tag is ``folder/train``."""
    path = root / folder / "train.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code)
    return path


def sagemaker_args(prefix: str = "models") -> list[str]:
    return ["--train-driver=sagemaker", f"--config.output_path=s3://{BUCKET}/{prefix}",
            f"--config.role_name={ROLE}", "--config.poll_interval=2"]


def job_name_of(result: Result) -> str:
    for line in result.stderr.splitlines():
        if "training job " in line and " created in " in line:
            return line.split("training job ", 1)[1].split()[0]
    raise AssertionError(f"no job was created:\n{result.output}")


__all__ = ["BUCKET", "ROLE", "FAHR", "Result", "stack", "run_fahr", "write_model", "sagemaker_args",
           "job_name_of"]
