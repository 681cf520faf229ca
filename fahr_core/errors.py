"""The errors fahr raises, and the exit code each one ends the CLI with.

Only the CLI prints and exits; everything below it raises one of these. Drivers wrap the
exceptions of their SDKs (``raise ConfigError(...) from exc``) so that the user reads one line
that says what is wrong and what to do.
"""

from __future__ import annotations

#: Documented exit codes (README, "Exit codes").
EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERNAL = 4  # a bug in fahr or a driver: any exception that is not a FahrError
EXIT_INTERRUPTED = 130


class FahrError(Exception):
    """Base of fahr's errors: a one-line message and the exit code it maps to."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(FahrError):
    """Bad input on the command line: a missing file, a bad name, a bad flag. Exit 2."""


class ConfigError(FahrError):
    """Bad configuration: unknown key, wrong type, missing required value. Exit 2."""


class PluginError(FahrError):
    """A driver or plugin cannot be found, loaded or used. Exit 2."""


class BuildError(FahrError):
    """The image could not be built from its Dockerfile. Exit 2."""


class EnvironmentProblem(FahrError):
    """Something outside fahr is missing: the Docker engine, credentials, a registry. Exit 3."""

    exit_code = EXIT_ENVIRONMENT


class JobFailed(FahrError):
    """The training job ended Failed or Stopped. Exit 1.

    ``job`` is the :class:`fahr_core.api.Job` that failed when raised through the Python API (its
    status, failure reason and times as they ended; ``job.logs()`` replays its output), else None;
    ``result`` the driver's :class:`fahr_core.JobResult`, when the job's end was waited for.
    """

    exit_code = EXIT_JOB_FAILED

    def __init__(self, message: str, *, result=None, job=None, exit_code: int | None = None):
        super().__init__(message, exit_code=exit_code)
        self.result = result
        self.job = job


def first_line(exc: BaseException, limit: int | None = 200) -> str:
    """The first line of an exception's text (at most ``limit`` characters; '' when it has none):
    how an SDK's or the OS's message is quoted inside fahr's own one-line errors."""
    text = str(exc)
    line = text.splitlines()[0] if text else ""
    return line if limit is None else line[:limit]
