"""The values of a run, kept importable from here for drivers written before fahr_core.values.

Deprecated since fahr 0.2.0, removed in 2.0: import them from :mod:`fahr_core`
(``from fahr_core import JobSpec``). Importing this module warns (``DeprecationWarning``).

``fahr_core.jobs`` is, besides, the Python API's function :func:`fahr_core.api.jobs`: importing
this module leaves that attribute of the package alone (see ``fahr_core/__init__.py``).
"""

import warnings as _warnings

from fahr_core.values import (COMPLETED, FAILED, FINAL_STATES, IN_PROGRESS, STOPPED, STOPPING, BuildContext,
                              FetchRequest, ImageRef, JobHandle, JobResult, JobSpec)

__all__ = ["BuildContext", "COMPLETED", "FAILED", "FINAL_STATES", "FetchRequest", "IN_PROGRESS", "ImageRef",
           "JobHandle", "JobResult", "JobSpec", "STOPPED", "STOPPING"]

# `import fahr_core.jobs as values; values.JobSpec` reads the package's attribute `jobs`, which
# stays the API function (see fahr_core/__init__.py): the function carries the values too, so
# that form of the old path keeps working as well.
def _carry() -> None:
    from fahr_core import api

    for name in __all__:
        setattr(api.jobs, name, globals()[name])


_carry()

_warnings.warn("fahr_core.jobs is deprecated as an import path of the value types (JobSpec, JobHandle, …); "
               "import them from fahr_core (from fahr_core import JobSpec); it goes in fahr 2.0",
               DeprecationWarning, stacklevel=2)
