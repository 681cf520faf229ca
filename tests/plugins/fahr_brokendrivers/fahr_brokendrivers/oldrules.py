"""Not a defect at plugin API 1.0: a driver written to the suite of 1.0, as fahr's own ``local``
driver was then. Its jobs see ``TRAINING_JOB_ARN=dockers3:<job>`` (no ARN), every channel has
``"ContentType": "application/octet-stream"`` in ``inputdataconfig.json``, and it never says
whether the model was empty (``JobResult.model_empty`` is None). Plugin API 1.1 made each of
these a broken rule."""

import dataclasses

from fahr_brokendrivers import delegating_hooks, hookimpl, local

globals().update(delegating_hooks("broken-oldrules"))
_launch = launch  # noqa: F821 (set just above)


@hookimpl
def launch(spec, config):
    from fahr_core import contract

    channel_config = contract._channel_config

    def with_a_content_type(channels, content_types):
        return channel_config(channels, {name: "application/octet-stream" for name in channels})

    contract._channel_config = with_a_content_type
    environment = {**spec.environment, "TRAINING_JOB_ARN": f"dockers3:{spec.job_name}"}
    try:
        return _launch(dataclasses.replace(spec, environment=environment), config)
    finally:
        contract._channel_config = channel_config


@hookimpl
def wait(job, config):
    return dataclasses.replace(local.wait(job, config), model_empty=None)
