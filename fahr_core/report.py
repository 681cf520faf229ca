"""How fahr tells the end of a step: a job launched to run on, a job ended, a model placed.

The lines the user acts on: the command that follows a detached job, the one that fetches a
completed job's model, the one-line error of a failed job, the warning of an empty model.
"""

from __future__ import annotations

import re
from pathlib import Path

from fahr_core import ui
from fahr_core.commandlines import MODEL_TAG_PLACEHOLDER, fetch_command, wait_command
from fahr_core.errors import JobFailed
from fahr_core.values import JobHandle, JobResult, Price


def detached(job: JobHandle, session) -> None:
    """A job launched to run on (``fit --detach``): how to follow it and fetch its model."""
    ui.success(f"job {job.job_name} launched; follow it with:")
    ui.command(wait_command(job.job_name, job.driver, session.chosen_location))
    ui.info("and once it has completed, fetch its model with:")
    ui.command(fetch_command(job.job_name, job.model_tag, job.driver, session.location))


def ended(result: JobResult, session, artifact: Path | None = None) -> JobResult:
    """Print how a job ended; raise :class:`JobFailed` unless it completed.

    ``artifact``: what the job's image was built from (the plan's), when this process knows it:
    a hint about a missing module then names the project's requirements file.
    """
    job = result.job
    line = cost_line(getattr(result, "price", None), result.training_seconds, result.billable_seconds)
    if line:
        ui.info(line)
    timing = ""
    if result.training_seconds is not None:
        timing = f" in {result.training_seconds:.1f} s"
        if result.billable_seconds is not None and result.billable_seconds != result.training_seconds:
            timing += f" (billable {result.billable_seconds:.0f} s)"
    # Before the failure line: a failed job's pool waits, and bills, all the same.
    for line in warm_pool_lines(job.job_name, getattr(result, "warm_pool", None)):  # plugin API 1.6
        ui.info(line)
    if not result.succeeded:
        # One line: the job's output was streamed above, the full reason is in the job's record.
        reason = failure_line(result.failure_reason)
        hint = missing_module_hint(result.failure_reason, artifact)
        kind = getattr(result, "failure_kind", "")  # a driver before plugin API 1.6 reports none
        kind = f" ({kind})" if kind else ""
        raise JobFailed(f"job {job.job_name} {result.status.lower()}{kind}{timing}: {reason}{hint}", result=result)
    ui.success(f"job {job.job_name} completed{timing}; model at {result.model_artifact}")
    driver = job.driver or session.driver
    if result.model_empty:
        ui.warn(empty_model_warning(job.job_name, driver))
    if job.model_tag:
        ui.info("fetch it with:")
    else:  # a driver that does not honour the wait hook's contract: say so rather than print ''
        ui.warn(f"driver {session.driver!r} did not report the model tag of job {job.job_name}; "
                f"fetch it with the command below, {MODEL_TAG_PLACEHOLDER} replaced by the tag it trained")
    ui.command(fetch_command(job.job_name, job.model_tag, job.driver, session.location))
    return result


def warm_pool_lines(job_name: str, pool) -> list[str]:
    """What ``fit`` and ``wait`` say of a job's warm pool (:class:`fahr_core.values.WarmPool`):
    that the job started on another job's pool, and that its own pool waits and bills."""
    import dataclasses

    from fahr_core.values import POOL_AVAILABLE, POOL_REUSED

    if pool is None:
        return []
    lines = []
    if pool.reused_from:
        lines.append(f"job {job_name} started on the warm pool of job {pool.reused_from} (no wait for new instances)")
    if pool.status == POOL_AVAILABLE:
        until = f" until {ui.clock(pool.expires)}" if pool.expires is not None else ""
        billed = f" ({pool.billable_seconds:.0f} s so far)" if pool.billable_seconds is not None else ""
        lines.append(f"warm pool of job {job_name}: Available{until} for a matching job to start on, billed at "
                     f"the instances' price meanwhile{billed}")
    elif pool.status == POOL_REUSED and pool.reused_by:
        lines.append(f"warm pool of job {job_name}: {ui.warm_pool(dataclasses.replace(pool, reused_from=''))}")
    return lines


def empty_model_warning(job_name: str, driver: str) -> str:
    """The one line for a job that completed with nothing in /opt/ml/model.

    The usual cause is a script that saves to /opt/ml/model only when FAHR_EXECUTION_ENVIRONMENT
    is one driver's name (the seed's own snippet tested for 'sagemaker'): under another driver it
    saved to its working folder, which is thrown away with the container.
    """
    return (f"job {job_name} saved no model: /opt/ml/model was empty when it ended. Did the script "
            f"save elsewhere, or save to /opt/ml/model only when FAHR_EXECUTION_ENVIRONMENT is one "
            f"driver's name (it is {driver!r} here)? Test that the variable is set, whatever its "
            f"value, and save under /opt/ml/model")


# -- the failure line -------------------------------------------------------------------------------

#: The failure line's length before it is cut. It is cut in its middle: its start says what
#: failed, its end (the exception of a traceback) why, and both stay.
FAILURE_LINE_MAX = 400


def failure_line(reason: str, limit: int = FAILURE_LINE_MAX) -> str:
    """A job's failure reason as one line of at most ``limit`` characters: its lines joined, cut
    in the middle (`` … ``), the last line kept whole (it is cut in its own middle only when it
    alone is longer than ``limit``)."""
    lines = [" ".join(line.split()) for line in reason.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "no reason given"
    last = ui.cut_middle(lines[-1], limit)
    head = " ".join(lines[:-1])
    if not head:
        return last
    if len(head) + 1 + len(last) <= limit:
        return f"{head} {last}"
    room = limit - len(last) - 3  # what is left of the head, and " … "
    return f"{head[:room].rstrip()} … {last}" if room > 0 else last


#: A traceback's header, and one of its frames: what the frames of fahr's launcher are found by.
_TRACEBACK = "Traceback (most recent call last):"
_FRAME = re.compile(r'(?P<indent>\s*)File "(?P<file>[^"]*)", line \d+')


def without_launcher_frames(lines: list[str]) -> list[str]:
    """A job's output lines with the frames of fahr's own launcher left out of its tracebacks.

    The generated image starts the script through the launcher (``fahr_core.launcher.OWN_FRAME_FILES``),
    which hands it to runpy: every traceback of a script starts with
    those frames, which say nothing about the script. They are the outermost frames, so only the
    frames between a traceback's header and its first other frame are dropped (with their source
    lines), never a ``<string>`` frame of the script's own ``exec``. Other lines there are kept:
    the engine may interleave a line of stdout with the traceback on stderr.
    """
    from fahr_core.launcher import OWN_FRAME_FILES

    kept: list[str] = []
    leading = False  # between a traceback's header and its first frame that is not the launcher's
    indent = -1  # the indentation of the launcher frame just dropped; -1: none was
    for line in lines:
        if line.strip() == _TRACEBACK:
            leading, indent = True, -1
            kept.append(line)
            continue
        if leading:
            frame = _FRAME.match(line)
            if frame and (frame["file"] in OWN_FRAME_FILES or frame["file"].endswith("/runpy.py")):
                indent = len(frame["indent"])
                continue
            if not frame and indent >= 0 and len(line) - len(line.lstrip()) > indent:
                continue  # the source line (and its carets) of a launcher frame
            indent = -1
            if frame:
                leading = False
        kept.append(line)
    return kept


_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")
#: A traceback's last line: the exception's (qualified) name, then its message.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b(?::|$)")


def missing_module_hint(reason: str, artifact: Path | None) -> str:
    """For a job that ended with ``ModuleNotFoundError`` (its reason's last line): where the
    module's package is to be listed, the requirements file the image was built from (or that
    there is none); '' for any other end."""
    # The exception is its traceback's last line; a line of stdout may come after it, as the
    # engine copies stdout and stderr separately (under load, out of order): it is looked past.
    lines = [line for line in reason.splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if _EXCEPTION_LINE.match(line.strip())), lines[-1] if lines else "")
    found = _MISSING_MODULE.search(last)
    if not found:
        return ""
    module = found.group(1).split(".")[0]
    missing = f" — {module!r} is not installed in the job's image"
    if artifact is None:  # not this process's build (fahr wait of another's job): no guess
        return (f"{missing}: list its package in the requirements.txt beside the training script "
                "(or install it in your own Dockerfile) and fit again")
    from fahr_core.errors import FahrError
    from fahr_core.image.artifact import DOCKERFILE, is_container
    from fahr_core.image.dockerfile import _read_dockerfile, generated_for, installs_requirements

    folder = Path(artifact).parent
    dockerfile, requirements = folder / DOCKERFILE, folder / "requirements.txt"
    try:
        text = _read_dockerfile(dockerfile)
    except FahrError:
        text = ""
    if is_container(artifact) or generated_for(text) is None:
        return f"{missing}: install it in {dockerfile}, the Dockerfile the image is built from, and fit again"
    if installs_requirements(text):
        return f"{missing}: add its package to {requirements}, which the image installs, and fit again"
    if requirements.is_file():
        return (f"{missing}: {dockerfile} was written before {requirements} existed and does not install "
                "it; add the package there and fit again with --regenerate-dockerfile")
    return (f"{missing}, and the project has no requirements file: write {requirements} listing its "
            "package, then fit again with --regenerate-dockerfile")


# -- costs (docs/sagemaker.md, "Costs") -------------------------------------------------------------


def overridden(price: Price | None, config) -> Price | None:
    """``price`` at ``config.price_per_hour`` when that is set (fahr's own key, for every driver
    that says its price); the driver's price otherwise."""
    import dataclasses

    override = config.get("price_per_hour") or 0.0
    if price is None or not override or price.source == "config.price_per_hour":
        return price
    return dataclasses.replace(price, per_hour=float(override), source="config.price_per_hour")


def estimate_line(price: Price) -> str:
    """The line ``fit`` prints before the launch: the hourly price and the ceiling, or why the
    price is not known (never a guess)."""
    what = f" ({price.resources})" if price.resources else ""
    if price.per_hour is None:
        return (f"price unknown{what}: {price.source or 'the driver cannot say'}; set config.price_per_hour "
                "(dollars per instance-hour) to know it")
    if price.per_hour == 0:
        return f"cost: $0{what}: {price.source or 'this driver costs nothing'}"
    count = f"{price.instances} instance{'s' * (price.instances != 1)}"
    line = f"about {ui.dollars(price.per_hour)}/h × {count}"
    if price.ceiling is not None:
        line += f"; at most {ui.dollars(price.ceiling)} if it runs max_run ({price.max_seconds:.0f} s)"
    if price.spot:
        line += " (spot: the on-demand price is the ceiling; spot is billed less)"
    return line + (f" — {price.source}" if price.source else "")


def refuse_over(price: Price | None, max_cost: float, driver: str, has_max_run: bool = True) -> None:
    """Refuse (exit 2) a run whose ceiling exceeds ``max_cost`` dollars (0: no limit), or whose
    ceiling is not known while a limit is set: a limit that cannot be checked is no limit.
    ``has_max_run``: the driver has a ``max_run`` key (``local`` has none: never advise it)."""
    from fahr_core.errors import ConfigError

    if not max_cost:
        return
    if price is None:
        raise ConfigError(f"max_cost is ${max_cost:g} but driver {driver!r} does not say what a run costs, so "
                          "the limit cannot be checked; drop max_cost for this driver")
    if price.per_hour is None:
        raise ConfigError(f"max_cost is ${max_cost:g} but the price is unknown ({price.source or 'the driver cannot say'}); "
                          "set the price of one instance-hour with --config.price_per_hour=DOLLARS (or in fahr.toml), "
                          "or drop max_cost")
    ceiling = price.ceiling
    if ceiling is None:
        if not has_max_run:
            raise ConfigError(f"max_cost is ${max_cost:g} but driver {driver!r} has no longest run time (no max_run) "
                              f"to bound a run's cost at ${price.per_hour:g}/h; drop max_cost (or price_per_hour) "
                              "for this driver")
        raise ConfigError(f"max_cost is ${max_cost:g} but the run has no longest run time to bound its cost; "
                          "set max_run, or drop max_cost")
    if ceiling > max_cost:
        raise ConfigError(f"the run may cost up to {ui.dollars(ceiling)} ({ui.dollars(price.per_hour)}/h × "
                          f"{price.instances} × {price.max_seconds:.0f} s of max_run), more than max_cost "
                          f"${max_cost:g}; lower max_run or train_instance_count, or raise max_cost")


def cost_line(price: Price | None, training_seconds: float | None, billable_seconds: float | None) -> str:
    """The line after a job: what its billable seconds cost (and what spot saved), or for a job
    that costs nothing, its duration and resources; '' when the driver says no price."""
    if price is None:
        return ""
    what = f", {price.resources}" if price.resources else ""
    if price.per_hour == 0:
        ran = f"ran {training_seconds:.1f} s" if training_seconds is not None else "ran"
        return f"cost: $0 ({ran}{what}): {price.source or 'this driver costs nothing'}"
    if price.per_hour is None:
        billed = f"{billable_seconds:.0f} billable s" if billable_seconds is not None else "billable time unknown"
        return f"cost: unknown ({billed}{what}): {price.source or 'no price'}"
    cost = price.cost(billable_seconds)
    if cost is None:
        return f"cost: unknown (no billable seconds reported{what}; {ui.dollars(price.per_hour)}/h each)"
    line = (f"cost: about {ui.dollars(cost)} ({billable_seconds:.0f} billable s × {price.instances} × "
            f"{ui.dollars(price.per_hour)}/h{what})")
    saved = price.cost(training_seconds - billable_seconds) if price.spot and training_seconds else None
    if saved is not None and saved > 0:
        line += f"; spot saved {ui.dollars(saved)} ({(1 - billable_seconds / training_seconds) * 100:.0f}%)"
    return line
