"""The core's own hook implementations, registered ``trylast`` so that a driver's win.

They are an ordinary plugin: the same hooks any third party implements.
"""

from __future__ import annotations

from pathlib import Path

from fahr_core import hookimpl
from fahr_core.values import ConfigKey, Template

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
        ConfigKey(
            "max_cost",
            float,
            0.0,
            "Dollars: fit refuses a run whose ceiling (price × instances × max_run) exceeds this, before the "
            "build. 0: no limit.",
            check=_max_cost_problem,
        ),
        ConfigKey(
            "price_per_hour",
            float,
            0.0,
            "Dollars per instance-hour of this driver's jobs, over the price the driver says (sagemaker: the AWS "
            "Price List). 0: the driver's.",
            check=_max_cost_problem,
        ),
    ]


def _max_cost_problem(value):
    return None if value >= 0 and value == value and value != float("inf") else "must be a number of dollars, 0 or more"


def _image_reference_problem(value):
    from fahr_core.names import image_reference_problem  # on use: start-up imports stay few

    return image_reference_problem(value)


@hookimpl
def templates():
    return builtin_templates()


def builtin_dir() -> Path:
    """Where the built-in templates are installed (``templates/`` of the source tree)."""
    from importlib import resources

    return Path(str(resources.files("fahr_core.templates")))


def builtin_templates() -> list[Template]:
    """The templates fahr ships: contributed by the core through the ``templates`` hook."""
    root = builtin_dir()
    return [
        Template("model", "A train.py that trains a small scikit-learn model; runs locally and in any fahr job.",
                 str(root / "model")),
        Template("notebook", "A train.ipynb run headless by papermill in the job, with a parameters cell.",
                 str(root / "notebook")),
        Template("torch", "A PyTorch train.py run by torchrun, data-parallel on one host or many; resumes.",
                 str(root / "torch")),
        Template("driver", "A pip-installable fahr-<name> driver plugin that passes fahr's conformance suite.",
                 str(root / "driver")),
    ]


@hookimpl(trylast=True)
def build_image(context, config):
    from fahr_core.image import build  # imports the Docker SDK: only when a build happens

    # `fahr fit --rebuild` (context.rebuild) builds even when the image is up to date.
    return build(context)


@hookimpl(trylast=True)
def push_image(image):
    # The local engine already holds the image: nothing to push.
    return image
