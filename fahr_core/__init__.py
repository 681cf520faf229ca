"""fahr: train a model on cloud compute with one command.

This module is fahr's plugin API: everything a driver or an extension plugin needs is importable
from here (``from fahr_core import hookimpl, JobSpec, ConfigKey, ui``), and only the names in
``__all__`` (with :mod:`fahr_core.testing`, the test API) are promised. Within one major version of
``PLUGIN_API_VERSION`` (1.x), names are only added, and the value types' fields and the hooks'
arguments are only added, never renamed or removed. Other ``fahr_core.*`` modules are fahr's
internals and may change in any release.

Importing this module stays cheap: the value types and errors are plain Python; the job-name
helpers and ``ui`` are imported on first use, and ``docker_client()`` imports the Docker SDK only
when called.
"""

from __future__ import annotations

import sys as _sys
import types as _types
from typing import TYPE_CHECKING, Any

import pluggy

from fahr_core.errors import (EXIT_ENVIRONMENT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_JOB_FAILED, EXIT_OK,
                              EXIT_USAGE, BuildError, ConfigError, EnvironmentProblem, FahrError, JobFailed,
                              PluginError, UsageError)

if TYPE_CHECKING:  # for readers and type checkers; at run time these come from __getattr__
    from fahr_core import ui
    from fahr_core.hookspecs import REQUIRED_DRIVER_HOOKS
    from fahr_core.values import (CAPACITY, FAILURE_KINDS, INTERRUPTED, OUT_OF_MEMORY, PLATFORM, RETRYABLE_KINDS,
                                  TIMEOUT, USER)
    from fahr_core.values import (COMPLETED, FAILED, FINAL_STATES, IN_PROGRESS, STOPPED, STOPPING, BuildContext,
                                  Config, ConfigKey, FetchRequest, ImageRef, JobHandle, JobInfo, JobQuery, JobResult,
                                  JobSpec, LogLine, MetricPoint, Price, Stash, StashKey, Template, TrackedJob)
    from fahr_core.extract import check_listing
    from fahr_core.commandlines import fetch_command, stop_command, wait_command
    from fahr_core.config import env_size
    from fahr_core.inputs import hash_files
    from fahr_core.launcher import SECRETS_ARN_ENV, SECRETS_DIR
    from fahr_core.metrics import from_logs as metrics_from_logs
    from fahr_core.names import (JOB_NAME_MAX, job_name, job_stem, model_image_tag, validate_job_name,
                                 validate_model_tag)

__version__ = "0.5.0"

#: The version of the plugin API (this module's ``__all__``, the hooks, the value types and
#: :mod:`fahr_core.testing`). A driver pins the fahr releases of one major version of it; fahr
#: 0.x implements plugin API 1.x, so drivers depend on ``fahr>=0.1,<1``.
PLUGIN_API_VERSION = "1.6"

#: Marks a hook implementation: ``from fahr_core import hookimpl``.
hookimpl = pluggy.HookimplMarker("fahr")



def docker_client():
    """The Docker SDK client of the user's engine (``DOCKER_HOST`` honoured), checked to answer.

    Shared by the whole run: a driver that pushes or pulls images uses it rather than opening its
    own. Raises :class:`EnvironmentProblem` when no engine answers. Imports the Docker SDK on the
    first call, never at import time.
    """
    from fahr_core import engine

    return engine.client()


def cache_folder():
    """fahr's cache folder, a :class:`~pathlib.Path`: ``$XDG_CACHE_HOME/fahr``, else
    ``~/.cache/fahr``; it may not exist yet. A plugin keeps what it caches in a folder of its own
    name there, and treats what it reads back as untrusted: checked, a bad file ignored and
    written anew (atomically), never a crash. (Added in plugin API 1.6.)"""
    from fahr_core.image.cache import fahr_cache_dir

    return fahr_cache_dir()


_VALUES = ("COMPLETED", "FAILED", "FINAL_STATES", "IN_PROGRESS", "STOPPED", "STOPPING", "BuildContext", "Config",
           # why a job did not complete (plugin API 1.6)
           "USER", "OUT_OF_MEMORY", "TIMEOUT", "INTERRUPTED", "CAPACITY", "PLATFORM", "FAILURE_KINDS",
           "RETRYABLE_KINDS",
           # warm pools (plugin API 1.6)
           "WarmPool", "POOL_IN_USE", "POOL_AVAILABLE", "POOL_REUSED", "POOL_TERMINATED",
           "ConfigKey", "FetchRequest", "ImageRef", "JobHandle", "JobInfo", "JobQuery", "JobResult", "JobSpec",
           "LogLine", "MetricPoint", "Price", "Stash", "StashKey", "Template", "TrackedJob")

# The CLI imports this package for every command, `fahr --help` included: the value types (their
# dataclasses cost milliseconds to create) and the hookspecs load when a plugin first asks for them.
_LAZY = {
    **{name: ("fahr_core.values", name) for name in _VALUES},
    "REQUIRED_DRIVER_HOOKS": ("fahr_core.hookspecs", "REQUIRED_DRIVER_HOOKS"),
    "ui": ("fahr_core.ui", None),
    "job_name": ("fahr_core.names", "job_name"),
    "job_stem": ("fahr_core.names", "job_stem"),
    "validate_job_name": ("fahr_core.names", "validate_job_name"),
    "model_image_tag": ("fahr_core.names", "model_image_tag"),
    "validate_model_tag": ("fahr_core.names", "validate_model_tag"),
    "JOB_NAME_MAX": ("fahr_core.names", "JOB_NAME_MAX"),
    # a driver that fetches a model file by file checks the names as archive entries (API 1.2)
    "check_listing": ("fahr_core.extract", "check_listing"),
    # the command lines a driver prints for the user to paste, and the size parser (API 1.3)
    **{name: ("fahr_core.commandlines", name) for name in ("wait_command", "stop_command", "fetch_command")},
    "env_size": ("fahr_core.config", "env_size"),
    # a local input's files with their hashes, cached: content-addressed uploads (API 1.6)
    "hash_files": ("fahr_core.inputs", "hash_files"),
    # where the launcher finds a job's secrets: the local driver's folder, sagemaker's variable (API 1.4)
    **{name: ("fahr_core.launcher", name) for name in ("SECRETS_DIR", "SECRETS_ARN_ENV")},
    # the core's metric parser, for a driver's metrics hook that adds what its backend keeps (API 1.5)
    "metrics_from_logs": ("fahr_core.metrics", "from_logs"),
    # the Python API (fahr_core.api): train, list, follow and fetch jobs from a notebook or script
    **{name: ("fahr_core.api", name) for name in ("Job", "fit", "jobs", "job", "fetch", "compare")},
    # sweeps (fahr_core.api.sweep; the value it returns is fahr_core.sweeps.Sweep)
    "sweep": ("fahr_core.api", "sweep"),
    "stop_sweep": ("fahr_core.api", "stop_sweep"),
    "Sweep": ("fahr_core.sweeps", "Sweep"),
}


class _Package(_types.ModuleType):
    """This package's module. Importing a submodule sets the package's attribute of the same name
    to it: ``fahr_core.jobs`` (the value types' deprecated old import path) would then hide the
    API function ``fahr_core.jobs``. The function stays; the module is in ``sys.modules``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "jobs" and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    # Imported on first use so that `import fahr_core` (and `fahr --help`) stays fast.
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fahr_core' has no attribute {name!r}")


__all__ = [
    # versions and hooks
    "__version__",
    "PLUGIN_API_VERSION",
    "hookimpl",
    "REQUIRED_DRIVER_HOOKS",
    # values
    "BuildContext",
    "ImageRef",
    "JobSpec",
    "Price",
    "JobHandle",
    "JobResult",
    "FetchRequest",
    "JobQuery",
    "JobInfo",
    "LogLine",
    "MetricPoint",
    "TrackedJob",
    "ConfigKey",
    "Config",
    "Template",
    "Stash",
    "StashKey",
    # job states
    "IN_PROGRESS",
    "COMPLETED",
    "FAILED",
    "STOPPING",
    "STOPPED",
    "FINAL_STATES",
    # why a job did not complete (plugin API 1.6)
    "USER",
    "OUT_OF_MEMORY",
    "TIMEOUT",
    "INTERRUPTED",
    "CAPACITY",
    "PLATFORM",
    "FAILURE_KINDS",
    "RETRYABLE_KINDS",
    # a job's warm pool (plugin API 1.6)
    "WarmPool",
    "POOL_IN_USE",
    "POOL_AVAILABLE",
    "POOL_REUSED",
    "POOL_TERMINATED",
    # errors and exit codes
    "FahrError",
    "UsageError",
    "ConfigError",
    "PluginError",
    "BuildError",
    "EnvironmentProblem",
    "JobFailed",
    "EXIT_OK",
    "EXIT_JOB_FAILED",
    "EXIT_USAGE",
    "EXIT_ENVIRONMENT",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    # helpers
    "job_name",
    "job_stem",
    "validate_job_name",
    "model_image_tag",
    "validate_model_tag",
    "JOB_NAME_MAX",
    "check_listing",
    "wait_command",
    "stop_command",
    "fetch_command",
    "env_size",
    "hash_files",
    "SECRETS_DIR",
    "SECRETS_ARN_ENV",
    "metrics_from_logs",
    "docker_client",
    "cache_folder",
    "ui",
    # the Python API
    "fit",
    "jobs",
    "job",
    "fetch",
    "compare",
    "Job",
    "sweep",
    "stop_sweep",
    "Sweep",
]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
