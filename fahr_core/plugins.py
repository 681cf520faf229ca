"""Finding, loading and assembling plugins.

Drivers are entry points in group ``fahr.drivers`` (the entry point's name is the driver's
name); extension plugins are entry points in group ``fahr.plugins``. Listing drivers reads only
entry-point metadata and the first line of each driver module's docstring, from its source: no
driver module is imported until a run needs it.
"""

from __future__ import annotations

import ast
import difflib
import importlib.metadata as md
import importlib.util
import re
import sys
from dataclasses import dataclass
from importlib.machinery import PathFinder
from typing import Any, Iterable

import pluggy

from fahr_core.errors import PluginError

PROJECT = "fahr"
DRIVER_GROUP = "fahr.drivers"
PLUGIN_GROUP = "fahr.plugins"


@dataclass(frozen=True)
class DriverEntry:
    """An installed driver, as its distribution's metadata describes it."""

    name: str
    value: str
    distribution: str
    version: str
    description: str
    entry_point: Any

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "description": self.description,
            "module": self.value,
        }


def _entries(group: str) -> list[DriverEntry]:
    found = []
    for ep in md.entry_points(group=group):
        dist = ep.dist
        found.append(
            DriverEntry(
                name=ep.name,
                value=ep.value,
                distribution=dist.name if dist else "?",
                version=dist.version if dist else "?",
                description=module_summary(ep.module)
                or ((dist.metadata.get("Summary") or "").strip() if dist else ""),
                entry_point=ep,
            )
        )
    return found


def module_summary(module: str) -> str:
    """The first line of a module's docstring, read from its source: the module is not imported.

    A plugin's own one-line description (``fahr drivers``), without running its code: only the
    module's file is located and parsed. '' when it cannot be read; the caller falls back.
    """
    try:
        loaded = sys.modules.get(module)
        if loaded is not None:
            doc = loaded.__doc__ or ""
        else:
            # find_spec of a top-level name runs no module (it asks the import finders, editable
            # installs' included); the parts below it are looked up in their parent's folders,
            # since find_spec("a.b") would import the package a.
            top, *parts = module.split(".")
            spec = importlib.util.find_spec(top)
            for part in parts:
                if spec is None or spec.submodule_search_locations is None:
                    return ""
                spec = PathFinder.find_spec(part, list(spec.submodule_search_locations))
            if spec is None or not spec.origin or not spec.origin.endswith(".py"):
                return ""
            with open(spec.origin, "rb") as source:
                doc = ast.get_docstring(ast.parse(source.read(), spec.origin)) or ""
    except (OSError, SyntaxError, ValueError, ImportError):
        return ""
    first = doc.strip().splitlines()[0].strip() if doc.strip() else ""
    return re.sub(r"``([^`]+)``", r"\1", first)


def installed_drivers() -> dict[str, DriverEntry]:
    """The installed drivers by name, from metadata and source only (none is imported).

    Two distributions registering the same driver name is a :class:`PluginError` naming both.
    """
    drivers: dict[str, DriverEntry] = {}
    for entry in sorted(_entries(DRIVER_GROUP), key=lambda e: (e.name, e.distribution)):
        other = drivers.get(entry.name)
        if other is not None and other.distribution != entry.distribution:
            raise PluginError(
                f"driver {entry.name!r} is registered by two distributions, "
                f"{other.distribution} {other.version} and {entry.distribution} {entry.version}; "
                "uninstall one of them"
            )
        drivers[entry.name] = entry
    return drivers


def driver_entry(name: str) -> DriverEntry:
    """The installed driver called ``name``, or an error that lists the choices."""
    drivers = installed_drivers()
    if name in drivers:
        return drivers[name]
    choices = ", ".join(sorted(drivers)) or "(none installed)"
    close = difflib.get_close_matches(name, drivers, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    install = f" If it is published as fahr-{name}, install it: pip install fahr-{name}." if not close else ""
    raise PluginError(
        f"train driver {name!r} is not installed. Choose one of: {choices}.{hint}{install}"
    )


def load_entry(entry: DriverEntry, kind: str = "driver") -> Any:
    """Import a plugin's module or object; a failure names its distribution and the exception."""
    try:
        return entry.entry_point.load()
    except Exception as exc:  # any import-time error of third-party code
        raise PluginError(
            f"{kind} {entry.name!r} from {entry.distribution} {entry.version} failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def new_manager() -> pluggy.PluginManager:
    """A plugin manager that knows fahr's hookspecs and holds the core defaults.

    Every manager fahr makes is made here, so that ``FAHR_TRACE_PLUGINS=1`` (``fahr --debug``)
    shows each hook call of every one of them (fahr_core/trace.py).
    """
    from fahr_core import defaults, hookspecs, trace

    pm = pluggy.PluginManager(PROJECT)
    trace.watch(pm)
    pm.add_hookspecs(hookspecs)
    pm.register(defaults, name="fahr-core-defaults")
    return pm


def manager_for(driver: str, extra_plugins: Iterable[Any] = ()) -> pluggy.PluginManager:
    """The plugin manager of one run: core defaults, the selected driver, the extension plugins.

    ``extra_plugins`` (modules or objects with ``@hookimpl`` methods) are registered last, after
    the installed extension plugins: tests use them to watch or wrap a run's steps in-process.
    """
    from fahr_core.hookspecs import REQUIRED_DRIVER_HOOKS

    entry = driver_entry(driver)
    plugin = load_entry(entry)
    pm = new_manager()
    _register(pm, plugin, f"driver:{driver}", entry)
    missing = [
        hook
        for hook in REQUIRED_DRIVER_HOOKS
        if not any(impl.plugin is plugin for impl in getattr(pm.hook, hook).get_hookimpls())
    ]
    if missing:
        raise PluginError(
            f"driver {driver!r} from {entry.distribution} {entry.version} does not implement "
            f"the required hook(s) {', '.join(missing)}; it cannot run jobs (report it to its authors)"
        )
    for ext in _entries(PLUGIN_GROUP):
        _register(pm, load_entry(ext, "plugin"), f"plugin:{ext.name}", ext)
    for number, extra in enumerate(extra_plugins):
        try:
            pm.register(extra, name=f"extra:{number}:{getattr(extra, '__name__', type(extra).__name__)}")
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"extra plugin {extra!r} does not fit fahr's hooks: {exc}") from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements a hook fahr does not have: {exc}") from exc
    return pm


def _register(pm: pluggy.PluginManager, plugin: Any, name: str, entry: DriverEntry) -> None:
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginError(
            f"{name.replace(':', ' ')} from {entry.distribution} {entry.version} does not fit fahr's "
            f"hooks: {exc}"
        ) from exc


def driver_config_keys(pm: pluggy.PluginManager) -> list:
    """All configuration keys the plugins of ``pm`` declare, flattened."""
    return [key for keys in pm.hook.config_keys() for key in (keys or [])]


def all_plugins_manager(on_error=None) -> pluggy.PluginManager:
    """A plugin manager with the core, every installed driver and every extension plugin.

    For the hooks that ask all installed plugins (``templates``), not for a run. A plugin that
    fails to load is passed to ``on_error`` (a :class:`PluginError`) and left out, so that one
    broken distribution does not break ``fahr init`` with the built-in templates.
    """
    pm = new_manager()
    entries = [(e, "driver", f"driver:{e.name}") for e in installed_drivers().values()]
    entries += [(e, "plugin", f"plugin:{e.name}") for e in _entries(PLUGIN_GROUP)]
    for entry, kind, name in entries:
        try:
            plugin = load_entry(entry, kind)
            if pm.is_registered(plugin):
                continue
            pm.register(plugin, name=name)
        except (PluginError, ValueError) as exc:
            if on_error is None:
                raise
            on_error(exc if isinstance(exc, PluginError) else PluginError(f"{kind} {entry.name!r}: {exc}"))
    return pm
