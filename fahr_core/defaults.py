"""The core's own hook implementations, registered ``trylast`` so that a driver's win.

They are an ordinary plugin: the same hooks any third party implements.
"""

from __future__ import annotations

from fahr_core import hookimpl
from fahr_core.config import ConfigKey

DEFAULT_BASE_IMAGE = "python:3.11-slim"


@hookimpl
def config_keys():
    return [
        ConfigKey(
            "base_image",
            str,
            DEFAULT_BASE_IMAGE,
            "Base image of the Dockerfile fahr generates when the model folder has none.",
            check=_image_reference_problem,
        ),
    ]


def _image_reference_problem(value):
    from fahr_core.image import image_reference_problem  # on use: start-up imports stay few

    return image_reference_problem(value)


@hookimpl
def templates():
    from fahr_core.scaffold import builtin_templates

    return builtin_templates()


@hookimpl(trylast=True)
def build_image(context, config):
    from fahr_core.image import build  # imports the Docker SDK: only when a build happens

    return build(context)


@hookimpl(trylast=True)
def push_image(image):
    # The local engine already holds the image: nothing to push.
    return image
