"""An extension plugin (group `fahr.plugins`) that wraps every step and, when
FAHR_STEPTIMER_FILE is set, appends the step's name and duration to that file."""

import json
import os
import time

from fahr_core import hookimpl


def _timed(step):
    start = time.perf_counter()
    result = yield
    path = os.environ.get("FAHR_STEPTIMER_FILE")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"step": step, "seconds": time.perf_counter() - start}) + "\n")
    return result


@hookimpl(wrapper=True)
def build_image():
    return (yield from _timed("build_image"))


@hookimpl(wrapper=True)
def launch():
    return (yield from _timed("launch"))


@hookimpl(wrapper=True)
def wait():
    return (yield from _timed("wait"))
