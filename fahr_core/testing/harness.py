"""The subprocess harness: the real ``fahr`` command of this Python environment, run against one
driver, and the job names it printed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

from fahr_core.names import JOB_NAME


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

    def __call__(self, *args: str, driver_args: bool = True,
                 env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run ``fahr ARGS`` to its end; ``env``: variables added to its environment for this run."""
        result = subprocess.run(self.command(*args, driver_args=driver_args), cwd=self.cwd,
                                env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=self.timeout)
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
