"""Defect: writes no ``output.tar.gz`` (the output data is lost)."""

import dataclasses
from pathlib import Path

from fahr_brokendrivers import delegating_hooks, hookimpl, local

globals().update(delegating_hooks("broken-nooutput"))


@hookimpl
def wait(job, config):
    result = local.wait(job, config)
    if result.output_artifact:
        Path(result.output_artifact).unlink(missing_ok=True)
    return dataclasses.replace(result, output_artifact="")
