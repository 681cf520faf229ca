"""The values of a run, kept importable from here for drivers written before fahr_core.values.

They live in :mod:`fahr_core.values`; import them from :mod:`fahr_core` (``from fahr_core import JobSpec``).
"""

from fahr_core.values import (COMPLETED, FAILED, FINAL_STATES, IN_PROGRESS, STOPPED, STOPPING, BuildContext,
                              FetchRequest, ImageRef, JobHandle, JobResult, JobSpec)

__all__ = ["BuildContext", "COMPLETED", "FAILED", "FINAL_STATES", "FetchRequest", "IN_PROGRESS", "ImageRef",
           "JobHandle", "JobResult", "JobSpec", "STOPPED", "STOPPING"]


# ``fahr_core.jobs`` is both this module (the old import path of the values) and the Python API's
# ``jobs()``: importing a submodule sets the package's attribute of that name to the module, so
# the module itself answers the call.
import sys as _sys
import types as _types


class _CallableModule(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        # Looked up at call time, by name: the API (through run and image) imports this module.
        import importlib

        return importlib.import_module("fahr_core.api").jobs(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
