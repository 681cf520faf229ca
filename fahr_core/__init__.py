"""fahr: train a model on cloud compute with one command.

The public API for plugins is small: ``hookimpl`` to mark implementations, the values of
:mod:`fahr_core.jobs`, :class:`fahr_core.config.ConfigKey`, and the errors of
:mod:`fahr_core.errors`. Nothing here imports Docker or a cloud SDK.
"""

import pluggy

__version__ = "0.1.0"

#: Marks a hook implementation: ``from fahr_core import hookimpl``.
hookimpl = pluggy.HookimplMarker("fahr")

__all__ = ["__version__", "hookimpl"]
