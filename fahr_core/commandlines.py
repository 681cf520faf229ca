"""The fahr command lines fahr prints for the user to paste: ``fahr wait|stop JOB …`` and
``fahr fetch ./model TAG LOCATION …``.

One place, so that the core and every driver print the same words in the same order, quoted for a
POSIX shell. Part of the plugin API (``from fahr_core import wait_command``) since API level 1.3.
"""

from __future__ import annotations

import shlex

#: What a printed fetch command holds in place of a model tag the driver did not report.
MODEL_TAG_PLACEHOLDER = "MODEL_TAG"


def _output_flag(output_path: str | None) -> list[str]:
    return [f"--config.output_path={output_path}"] if output_path else []


def wait_command(job_name: str, driver: str, output_path: str | None = None) -> str:
    """``fahr wait JOB --train-driver DRIVER [--config.output_path=PATH]``: follows the job to its end
    from any folder (``output_path`` where the driver keeps its jobs in a folder of the user's)."""
    return shlex.join(["fahr", "wait", job_name, "--train-driver", driver, *_output_flag(output_path)])


def stop_command(job_name: str, driver: str, output_path: str | None = None) -> str:
    """``fahr stop JOB --train-driver DRIVER [--config.output_path=PATH]``."""
    return shlex.join(["fahr", "stop", job_name, "--train-driver", driver, *_output_flag(output_path)])


def fetch_command(job_name: str, model_tag: str, driver: str, location: str | None = None,
                  target: str = "./model") -> str:
    """``fahr fetch ./model TAG [LOCATION] --train-driver DRIVER --job JOB``: fetches this job's model
    (``MODEL_TAG`` in place of a tag the driver did not report)."""
    words = ["fahr", "fetch", target, model_tag or MODEL_TAG_PLACEHOLDER, *([location] if location else [])]
    return shlex.join([*words, "--train-driver", driver, "--job", job_name])
