"""Defect: leaves a Docker network and a temporary file named after each job behind."""

import os
import tempfile

from fahr_brokendrivers import delegating_hooks, hookimpl

globals().update(delegating_hooks("broken-leftovers"))
_launch = launch  # noqa: F821 (set just above)
#: The label tests/test_conformance_meta.py removes the networks by.
LABEL = "fahr.test.leftover"


@hookimpl
def launch(spec, config):
    import docker

    handle = _launch(spec, config)
    client = docker.from_env()
    try:
        client.networks.create(f"leftover-{spec.job_name}", labels={LABEL: "1"})
    finally:
        client.close()
    fd, _ = tempfile.mkstemp(prefix=f"spool-{spec.job_name}-")
    os.close(fd)
    return handle
