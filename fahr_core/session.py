"""One command's session: the project folder, the driver loaded, its configuration resolved, once.

Every command of the CLI and every call of the Python API opens one :class:`Session` and does all
its work through it: the project folder is decided once (the training artifact's folder for
``fit``, the current folder otherwise), so a ``fahr.toml`` read at the start is the one every later
step sees, and a :class:`fahr_core.api.Job` returned by ``fit`` keeps the session it came from.
The driver's hooks are called through :meth:`Session.call`, the one place that turns a driver
answering ``None`` into a :class:`PluginError` naming what it failed to do.
See docs/architecture.md for the path of a command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from fahr_core import config as cfg
from fahr_core import plugins
from fahr_core.errors import PluginError, UsageError

# What a driver failed to do when a hook answers None: a hook it does not implement (the optional
# ones: logs, list_jobs, stop), or an implementation that forgot to return.
_NOTHING = {
    "build_image": "built nothing (its build_image hook returned None)",
    "push_image": "pushed nothing (its push_image hook returned None)",
    "launch": "launched nothing (its launch hook returned None)",
    "wait": "followed nothing (its wait hook returned None)",
    "fetch": "fetched nothing",
    "stop": "cannot stop jobs",
    "logs": "cannot read logs (it does not implement logs)",
    "list_jobs": "cannot list jobs (it does not implement list_jobs)",
}


@dataclass
class Session:
    """The driver's plugin manager and this command's resolved configuration.

    ``project_dir`` is where ``fahr.toml`` was looked for; ``keys`` are the config keys the loaded
    plugins declare (for :meth:`require`); ``overrides`` the command's own values, so that the
    same session can be opened again (a :class:`fahr_core.api.Job` unpickled elsewhere).
    """

    pm: Any
    config: cfg.Config
    project_dir: Path = field(default_factory=Path.cwd)
    keys: tuple = ()
    overrides: dict = field(default_factory=dict)

    @property
    def hook(self):
        return self.pm.hook

    @property
    def driver(self) -> str:
        return self.config.driver

    def call(self, hook: str, **kwargs: Any) -> Any:
        """The driver's answer to ``hook`` (called with this session's config), never None."""
        result = getattr(self.pm.hook, hook)(**kwargs, config=self.config)
        if result is None:
            raise PluginError(f"driver {self.driver!r} {_NOTHING[hook]}")
        return result

    def ask(self, hook: str, **kwargs: Any) -> Any:
        """The driver's answer to an optional ``hook`` that may be None (the core then does the
        work itself: ``metrics`` read from the logs)."""
        return getattr(self.pm.hook, hook)(**kwargs, config=self.config)

    def require(self, command: str) -> None:
        """Refuse to go on with ``command`` when a key it needs is unset (see :func:`cfg.require`):
        those whose ``required_for`` names it, and the keys marked ``required``, which the hookspec
        ``config_keys`` makes a need of ``fit``, ``wait`` and ``stop``, not of ``fetch``."""
        cfg.require(self.config, self.keys, command, check_required=command in ("fit", "wait", "stop"))

    @property
    def location(self) -> str:
        """The driver's ``output_path`` as the user can paste it anywhere (local paths absolute)."""
        location = str(self.config.get("output_path", "") or "")
        if location and "://" not in location:
            location = os.path.abspath(os.path.expanduser(location))
        return location

    @property
    def chosen_location(self) -> str | None:
        """The output path when it was set for this command rather than left at its default: a
        later ``fahr wait`` must be told it to look in the same place."""
        if "output_path" in self.config and self.config.sources.get("output_path") != "default":
            return self.location
        return None


def open_session(driver: str | None, project_dir: Path, overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
                 *, check_required: bool = True, command: str | None = None) -> Session:
    """Choose the driver, load it and resolve its configuration, reading ``fahr.toml`` (and
    ``pyproject.toml``) in ``project_dir``.

    ``overrides`` are the command's ``--config`` values (Python values from the API, strings from
    the command line). ``check_required`` enforces the keys marked ``required``; ``command``
    (``fit``, ``wait``, ``stop``, ``fetch``) also those whose ``required_for`` names it.
    """
    project = cfg.read_project_file(project_dir)
    name = cfg.choose_driver(driver, project)
    pm = plugins.manager_for(name)
    keys = tuple(plugins.driver_config_keys(pm))
    overrides = dict(overrides.items() if isinstance(overrides, Mapping) else overrides)
    config = cfg.resolve(name, keys, project, overrides, check_required=check_required, command=command)
    return Session(pm, config, Path(project_dir), keys, overrides)


def driver_for_location(location: str, project_dir: Path | None = None,
                        overrides: Mapping[str, Any] | None = None,
                        environ: Mapping[str, str] | None = None) -> str | None:
    """The installed driver that claims an artifact location (``s3://…`` → sagemaker), or None.

    The driver ``FAHR_DRIVER`` or ``fahr.toml``'s ``driver`` (in ``project_dir``) names, if it
    claims the location; else the only driver that claims it. Several claimants is a
    :class:`UsageError` naming them and how to choose. Each driver is asked with its own resolved
    configuration (required keys not enforced; ``overrides`` given to those that declare the key).
    """
    environ = os.environ if environ is None else environ
    project = cfg.read_project_file(project_dir or Path.cwd())
    overrides = dict(overrides or {})
    preferred = environ.get("FAHR_DRIVER") or project.driver

    def claims(name: str) -> bool:
        try:
            pm = plugins.manager_for(name)
        except PluginError:
            return False  # a driver that cannot load claims nothing; naming it is `fahr drivers`' job
        keys = plugins.driver_config_keys(pm)
        declared = {key.name for key in keys}
        config = cfg.resolve(name, keys, project, {k: v for k, v in overrides.items() if k in declared},
                             environ=environ, check_required=False)
        # Implementations written before `config` was passed take `location` alone: pluggy hands
        # each implementation only the arguments it names.
        return bool(pm.hook.claims_location(location=location, config=config))

    installed = plugins.installed_drivers()
    if preferred in installed and claims(preferred):
        return preferred
    claimants = [name for name in sorted(installed) if name != preferred and claims(name)]
    if len(claimants) > 1:
        listed = ", ".join(repr(name) for name in claimants)
        raise UsageError(
            f"{location} is claimed by several installed drivers ({listed}); choose one with "
            f"--train-driver NAME, or set FAHR_DRIVER=NAME"
        )
    return claimants[0] if claimants else None
