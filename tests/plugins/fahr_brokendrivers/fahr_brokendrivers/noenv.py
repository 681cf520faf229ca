"""Defect: ignores ``--env`` (the job's environment never gets the variables)."""

import dataclasses

from fahr_brokendrivers import delegating_hooks, hookimpl

globals().update(delegating_hooks("broken-noenv"))
_launch = launch  # noqa: F821 (set just above)


@hookimpl
def launch(spec, config):
    return _launch(dataclasses.replace(spec, environment={}), config)
