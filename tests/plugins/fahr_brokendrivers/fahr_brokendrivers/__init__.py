"""Drivers for testing the conformance suite: each is fahr's ``local`` driver with ONE defect.

``broken-reference`` has none (the suite must pass it); every other module's docstring names its
defect. They claim no artifact location (but ``broken-claimsforeign``, a URI scheme nobody
uses), so that installing them changes nothing for ``fahr fetch DIR TAG LOCATION``.
"""

from __future__ import annotations

import dataclasses

from fahr_core import hookimpl
from fahr_core.drivers import local


def delegating_hooks(name: str) -> dict:
    """The ``local`` driver's hooks under the driver name ``name``, to put in a module's globals."""

    @hookimpl
    def config_keys():
        return local.config_keys()

    @hookimpl
    def claims_location(location):
        return None  # the local driver claims local folders: a copy must not compete with it

    @hookimpl
    def check_run(config, inputs):  # `secrets` not named: fahr refuses --secret for these copies
        return local.check_run(config, inputs, ())

    @hookimpl
    def launch(spec, config):
        return dataclasses.replace(local.launch(spec, config), driver=name)

    @hookimpl
    def wait(job, config):
        return local.wait(job, config)

    @hookimpl
    def stop(job, config):
        return local.stop(job, config)

    @hookimpl
    def fetch(request, config):
        return local.fetch(request, config)

    return {"config_keys": config_keys, "claims_location": claims_location, "check_run": check_run,
            "launch": launch, "wait": wait, "stop": stop, "fetch": fetch}
