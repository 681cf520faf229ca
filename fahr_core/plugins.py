"""Finding, loading and assembling plugins.

Drivers are entry points in group ``fahr.drivers`` (the entry point's name is the driver's
name); extension plugins are entry points in group ``fahr.plugins``. Listing drivers reads only
entry-point metadata: no driver module is imported until a run needs it.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
from dataclasses import dataclass
from typing import Any

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
                description=(dist.metadata.get("Summary") or "").strip() if dist else "",
                entry_point=ep,
            )
        )
    return found


def installed_drivers() -> dict[str, DriverEntry]:
    """The installed drivers by name, from metadata only.

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
    """A plugin manager that knows fahr's hookspecs and holds the core defaults."""
    from fahr_core import defaults, hookspecs

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(defaults, name="fahr-core-defaults")
    return pm


def manager_for(driver: str) -> pluggy.PluginManager:
    """The plugin manager of one run: core defaults, the selected driver, the extension plugins."""
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
