"""A driver whose every text holds terminal controls\x1b]0;pwned\x07\x1b[2J (fahr's terminal tests).

Its messages, statuses, job names and config help are what a hostile backend could send: each
sets the terminal's title (OSC 0), clears the screen, writes the clipboard (OSC 52), reorders the
line (U+202E) and starts a line of its own that looks like fahr's. ``config.fail_in`` chooses where
it fails: ``launch`` (a FahrError), ``crash`` (any other exception), else the job fails in ``wait``.
"""

from pathlib import Path

from fahr_core import (FAILED, IN_PROGRESS, ConfigError, ConfigKey, ImageRef, JobHandle, JobInfo, JobResult, Template,
                       hookimpl, ui)

#: A title, a clear screen, the clipboard, a C1 CSI, a right-to-left override, a forged line.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07\x9b31m\u202e\rfahr error: forged"


@hookimpl
def config_keys():
    return [ConfigKey("fail_in", str, "", f"Where the driver fails{HOSTILE}")]


@hookimpl
def templates():
    return [Template("hostile-hello", f"A template{HOSTILE}", str(Path(__file__).parent))]


@hookimpl
def build_image(context, config):
    return ImageRef(name=context.model_tag, image_id="sha256:" + "0" * 64)


@hookimpl
def push_image(image, config):
    return ImageRef(name=image.name, digest="sha256:" + "1" * 64)


@hookimpl
def launch(spec, config):
    if config["fail_in"] == "launch":
        raise ConfigError(f"the backend refused the job: {HOSTILE}\nfahr error: forged too")
    if config["fail_in"] == "crash":
        raise RuntimeError(f"backend crashed{HOSTILE}")
    return JobHandle(driver="hostile", job_name=spec.job_name, model_tag=spec.model_tag)


@hookimpl
def wait(job, config):
    ui.status_change(job.job_name, f"Training{HOSTILE}", f"the backend says{HOSTILE}")
    ui.warn(f"a file the job wrote: model{HOSTILE}.bin")
    return JobResult(job=job, status=FAILED, failure_reason=f"reason{HOSTILE}")


@hookimpl
def fetch(request, config):
    return None


@hookimpl
def list_jobs(query, config):
    return [JobInfo(job_name=f"job{HOSTILE}", model_tag="hostile/train", driver="hostile", status=IN_PROGRESS,
                    secondary_status=f"Training{HOSTILE}\udcff")]  # and a lone surrogate
