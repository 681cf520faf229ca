"""The values of a run, kept importable from here for drivers written before fahr_core.values.

They live in :mod:`fahr_core.values`; import them from :mod:`fahr_core` (``from fahr_core import JobSpec``).
"""

from fahr_core.values import (COMPLETED, FAILED, FINAL_STATES, IN_PROGRESS, STOPPED, STOPPING, BuildContext,
                              FetchRequest, ImageRef, JobHandle, JobResult, JobSpec)

__all__ = ["BuildContext", "COMPLETED", "FAILED", "FINAL_STATES", "FetchRequest", "IN_PROGRESS", "ImageRef",
           "JobHandle", "JobResult", "JobSpec", "STOPPED", "STOPPING"]
