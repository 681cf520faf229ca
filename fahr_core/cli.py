"""The ``fahr`` command line.

Errors are raised as :class:`fahr_core.errors.FahrError` anywhere below and turned into one line
and an exit code only here. Start-up imports typer and nothing heavy: each command imports what
it needs when it runs (no Docker SDK, no cloud SDK, no driver for ``--help`` or ``drivers``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fahr_core import __version__
from fahr_core.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, FahrError, UsageError, first_line

app = typer.Typer(
    name="fahr",
    help="Train a model on cloud compute with one command: script -> image -> training job -> model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_state = {"debug": False}
_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _echo(line: str) -> None:
    """A line of a listing (stdout) that quotes text fahr did not write (a driver's description,
    a job's name or status): shown, like every line of fahr's own, with controls made visible."""
    from fahr_core import ui

    typer.echo(ui.visible(line))


def _version(value: bool) -> None:
    if not value:
        return
    from fahr_core import api

    typer.echo(f"fahr {__version__}")
    try:
        for row in api.drivers():
            _echo(f"  driver {row['name']}: {row['distribution']} {row['version']}")
    except FahrError as exc:
        _echo(f"  drivers: {exc}")
    raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print fahr's version and the installed drivers' versions.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors and each plugin hook call.")] = False,
) -> None:
    """fahr turns a train.py into a Docker image, runs it as a training job on a driver
    (local Docker engine, SageMaker, …), streams its logs, and brings the model back.

    Exit codes: 0 success; 1 the training job failed or was stopped; 2 usage or configuration
    error; 3 environment problem (no Docker engine, no credentials, registry unreachable);
    4 internal error (a bug: please report it with --debug output); 130 interrupted.
    """
    _state["debug"] = debug or os.environ.get("FAHR_DEBUG", "") not in ("", "0")
    if _state["debug"]:  # each plugin hook call on stderr too, here and in the fahr processes started from here
        from fahr_core import trace

        trace.turn_on()


def _run(work):
    """Run a command's work; map errors to one line and an exit code."""
    from fahr_core import ui

    try:
        return work()
    except FahrError as exc:
        if _state["debug"]:
            import traceback

            traceback.print_exc()
        ui.error(exc.message)
        raise typer.Exit(code=exc.exit_code) from None
    except KeyboardInterrupt:
        from fahr_core import interrupts

        try:
            interrupts.run_cleanups()  # a job launched but not yet followed is stopped, not abandoned
        except FahrError as exc:
            ui.error(exc.message)
            raise typer.Exit(code=exc.exit_code) from None
        ui.error("interrupted")
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    except typer.Exit:
        raise
    except Exception as exc:
        if _state["debug"]:
            raise
        ui.error(f"internal error: {type(exc).__name__}: {first_line(exc, None)} (rerun with --debug for the traceback)")
        raise typer.Exit(code=EXIT_INTERNAL) from None


def _invoke(args=None) -> int:
    """Run the app; click's usage errors (a missing argument, an unknown option, a bad value)
    become one line, ``fahr error: …; see 'fahr CMD --help'``, exit 2, instead of click's box.

    Everything else keeps its own handling: --help and --version exit 0, ``fahr`` alone prints
    the help (exit 2), the commands' errors are mapped by :func:`_run`, ``typer.Exit`` codes pass.
    """
    # click's exceptions, wherever this typer takes click from (newer ones vendor their own copy)
    click_errors = sys.modules[typer.BadParameter.__module__]
    args = sys.argv[1:] if args is None else list(args)
    try:
        code = app(args=args, prog_name="fahr", standalone_mode=False)
    except getattr(click_errors, "NoArgsIsHelpError", ()) as exc:
        exc.show()
        return exc.exit_code
    except click_errors.UsageError as exc:
        from fahr_core import ui

        ui.error(_usage_line(exc, args))
        return EXIT_USAGE
    except click_errors.ClickException as exc:
        from fahr_core import ui

        ui.error(exc.format_message())
        return exc.exit_code
    except typer.Abort:
        from fahr_core import ui

        ui.error("aborted")
        return 1
    return code if isinstance(code, int) else 0


def _usage_line(exc, args: list[str]) -> str:
    """``missing argument 'JOB_NAME'; see 'fahr wait --help'`` from a click usage error."""
    import re

    from fahr_core import ui

    what = ui.one_line(exc.format_message()).rstrip(".")
    what = re.sub(r"\. Did you mean (.+)\?$", r" (did you mean \1?)", what)
    if what[1:2].islower():  # "Missing argument" -> "missing argument", but "PATH …" stays
        what = what[:1].lower() + what[1:]
    command = exc.ctx.command_path if exc.ctx is not None else "fahr"
    if command == "fahr":  # an option error comes without the command's context: find it
        known = typer.main.get_command(app).commands
        at = next((i for i, a in enumerate(args) if a in known), None)
        option = getattr(exc, "option_name", None)
        if at is not None and not (option and option in (a.split("=")[0] for a in args[:at])):
            command = f"fahr {args[at]}"  # (an option before the command's name is fahr's own)
    return f"{what}; see '{command} --help'"


def _cli_config(ctx: typer.Context) -> list[tuple[str, str]]:
    from fahr_core.config import parse_cli_pairs

    return parse_cli_pairs(ctx.args)


def _config_dict(ctx: typer.Context) -> dict[str, str]:
    """The ``--config.KEY=VALUE`` pairs as the API's ``config`` (the last of a repeated key wins)."""
    return dict(_cli_config(ctx))


def _reorder(ctx: typer.Context, *positionals):
    """Positional arguments as the user meant them when a ``--config.KEY=VALUE`` came first.

    click hands an unknown option that precedes the positionals to the first positional slot;
    move every ``--config.…`` into ``ctx.args`` and fill the slots in order from the rest.
    """
    given = [p for p in positionals if p is not None]
    if not any(str(p).startswith("--config.") for p in given):
        return positionals
    words = [str(p) for p in given] + list(ctx.args)
    ctx.args = [w for w in words if w.startswith("--config.")]
    rest = [w for w in words if not w.startswith("--config.")]
    return tuple(rest[i] if i < len(rest) else None for i in range(len(positionals)))


DriverOption = Annotated[
    Optional[str],
    typer.Option("--train-driver", help="Driver to use (see 'fahr drivers'). Default: config, else 'local'."),
]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty target folder.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print none of fahr's own status lines (errors still; the job's output still streams on stdout: redirect it to silence it).")]
FetchDriverOption = Annotated[
    Optional[str],
    typer.Option("--train-driver", help="Driver to fetch with (see 'fahr drivers'). Default: the installed driver "
                 "that claims ARTIFACT_LOCATION; without a location, config, else 'local'."),
]
RetryOption = Annotated[int, typer.Option("--retry", help="Launch again, at most N times, a job that failed for a reason a retry can help with (interrupted, capacity, platform; never user, out_of_memory, timeout): each attempt a new job linked to the first, resuming from the same checkpoints.", metavar="N", min=0, max=20)]


@app.command(context_settings=_EXTRA)
def fit(
    ctx: typer.Context,
    training_artifact: Annotated[Path, typer.Argument(help="The training script (my-model/train.py), notebook, or your own container: a folder holding a Dockerfile (byoc/container), or that Dockerfile.", show_default=False, metavar="TRAINING_ARTIFACT")],
    train_driver: DriverOption = None,
    hp: Annotated[list[str], typer.Option("--hp", help="Hyperparameter KEY=VALUE (repeatable); the job sees strings.")] = [],
    input: Annotated[list[str], typer.Option("--input", help="Input channel CHANNEL=PATH_OR_URI (repeatable).")] = [],
    env: Annotated[list[str], typer.Option("--env", help="Environment variable KEY=VALUE for the job (repeatable).")] = [],
    secret: Annotated[list[str], typer.Option("--secret", help="Give the job the variable NAME with the value of $NAME here, seen by nothing else: not job.json, logs, the image, command lines (repeatable).", metavar="NAME")] = [],
    metric: Annotated[list[str], typer.Option("--metric", help="A metric read from the job's output: NAME=REGEX, the regex's one capture group the value (repeatable; over fahr.toml's [metrics]). Lines 'fahr-metric NAME=VALUE … [step=N]' need none; NAME alone names one for SageMaker's console.", metavar="NAME=REGEX")] = [],
    detach: Annotated[bool, typer.Option("--detach", help="Return once the job is launched.")] = False,
    retry: RetryOption = 0,
    fetch: Annotated[Optional[Path], typer.Option("--fetch", help="After success, fetch and extract the model into DIR (never the project's folder or the driver's output folder).", metavar="DIR")] = None,
    notify: Annotated[Optional[str], typer.Option("--notify", help="POST a JSON summary of the job's end (status, failure kind and line, duration, model) to this http(s) URL, detached jobs too on local; over fahr.toml's notify, '' for none (docs/notifications.md).", metavar="URL")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With --fetch: replace a non-empty DIR.")] = False,
    regenerate_dockerfile: Annotated[bool, typer.Option("--regenerate-dockerfile", help="Write the Dockerfile anew (one fahr did not write is kept as Dockerfile.bak); not for your own container.")] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build the image even when nothing it is built from changed (files, Dockerfile, base image); the engine's layer cache still applies.")] = False,
    quiet: QuietOption = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print the image build's whole output as it comes (without it: a line per Dockerfile step, and the whole output only when the build fails).")] = False,
) -> None:
    """Build the image, push it, launch a training job and follow it to the end.

    Your own container (a folder holding a Dockerfile, or that Dockerfile) is built as it is and
    started as 'IMAGE train'.

    The image is not rebuilt when nothing it is built from changed since the last build: its
    files, its Dockerfile, its base image (--rebuild builds anyway). A build context over 100 MiB
    (FAHR_CONTEXT_WARN_BYTES) draws a warning naming its biggest folders.

    Driver configuration: --config.KEY=VALUE (repeatable; see 'fahr config DRIVER').
    """

    def work():
        from fahr_core import api
        from fahr_core.config import parse_pairs

        (artifact,) = _reorder(ctx, training_artifact)
        if artifact is None:
            raise UsageError("missing TRAINING_ARTIFACT: fahr fit path/to/train.py|path/to/container-folder [--config.KEY=VALUE …]")
        api.fit(
            Path(artifact),
            driver=train_driver,
            config=_config_dict(ctx),
            hyperparameters=parse_pairs(hp, "--hp"),
            inputs=parse_pairs(input, "--input"),
            environment=parse_pairs(env, "--env"),
            secrets=list(secret),
            metrics=dict(pair.partition("=")[::2] for pair in metric),
            wait=not detach,
            retry=retry,
            notify=notify,
            fetch_to=fetch,
            overwrite=overwrite,
            regenerate_dockerfile=regenerate_dockerfile,
            rebuild=rebuild,
            quiet="status" if quiet else False,
            verbose=verbose,
        )

    _run(work)


@app.command(context_settings=_EXTRA, name="fetch")
def fetch_(
    ctx: typer.Context,
    local_target_directory: Annotated[Path, typer.Argument(help="Folder to put the model in (new or empty).", show_default=False, metavar="LOCAL_TARGET_DIRECTORY")],
    model_image_tag: Annotated[str, typer.Argument(help="The model image tag: .../foo/model.py -> foo/model.", show_default=False, metavar="MODEL_IMAGE_TAG")],
    artifact_location: Annotated[Optional[str], typer.Argument(help="Where the driver keeps artifacts (its output_path, e.g. s3://bucket/models); the driver that claims it is used.", show_default=False, metavar="[ARTIFACT_LOCATION]")] = None,
    train_driver: FetchDriverOption = None,
    job: Annotated[Optional[str], typer.Option("--job", help="Fetch this job; default: the newest completed job of the tag.")] = None,
    no_extract: Annotated[bool, typer.Option("--no-extract", help="Keep model.tar.gz (output.tar.gz) as it is.")] = False,
    overwrite: OverwriteOption = False,
    output: Annotated[bool, typer.Option("--output", help="Fetch the job's output.tar.gz (its /opt/ml/output/data: other outputs, a notebook's executed copy) instead of its model; with --job, of a failed or stopped job too.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Without --job: refuse (exit 1) when the newest job of the tag (of this project) did not complete, or none was built from this project, instead of fetching another.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Download a trained model and extract it safely into LOCAL_TARGET_DIRECTORY.

    With --output, the job's other outputs instead, under the same rules, into their own folder:
    'fahr fetch ./model TAG --job JOB' and 'fahr fetch ./output TAG --job JOB --output' bring back
    everything the job produced.
    """

    def work():
        from fahr_core import api

        target, tag, location = _reorder(ctx, local_target_directory, model_image_tag, artifact_location)
        if tag is None:
            raise UsageError("missing MODEL_IMAGE_TAG: fahr fetch DIR TAG [LOCATION]")
        api.fetch(Path(target), tag, location, driver=train_driver, config=_config_dict(ctx),
                  job=job, extract=not no_extract, overwrite=overwrite, quiet="status" if quiet else False, output=output,
                  strict=strict)

    _run(work)


@app.command(context_settings=_EXTRA)
def wait(
    ctx: typer.Context,
    job_name: Annotated[str, typer.Argument(help="The job's name, as 'fahr fit' printed it.", show_default=False, metavar="JOB_NAME")],
    train_driver: DriverOption = None,
    quiet: QuietOption = False,
) -> None:
    """Follow a launched job to its end, streaming its logs (after fit --detach)."""

    def work():
        from fahr_core import api

        # Built from the name alone, not looked up: a driver without list_jobs still waits.
        api.Job(job_name, driver=train_driver, config=_config_dict(ctx), quiet="status" if quiet else False).wait()

    _run(work)


@app.command(context_settings=_EXTRA)
def stop(
    ctx: typer.Context,
    job_name: Annotated[Optional[str], typer.Argument(help="The job's name.", show_default=False, metavar="JOB_NAME")] = None,
    train_driver: DriverOption = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="Stop every running job of this sweep instead (its id, as 'fahr sweep' printed it).", metavar="ID")] = None,
) -> None:
    """Stop a running job (SIGTERM, then SIGKILL after the driver's grace period), or every job of a sweep."""

    def work():
        from fahr_core import api, ui

        if sweep is not None:
            if job_name is not None:
                raise UsageError("give JOB_NAME or --sweep ID, not both")
            stopped = api.stop_sweep(sweep, driver=train_driver, config=_config_dict(ctx))
            for name in stopped:
                ui.success(f"stop requested for {name}")
            if not stopped:
                ui.info(f"no job of sweep {sweep} is running")
            return
        if job_name is None:
            raise UsageError("missing JOB_NAME: fahr stop JOB_NAME, or fahr stop --sweep ID")
        if api.Job(job_name, driver=train_driver, config=_config_dict(ctx)).stop():
            ui.success(f"stop requested for {job_name}")
        else:
            ui.info(f"job {job_name} has already ended")

    _run(work)


@app.command(context_settings=_EXTRA)
def jobs(
    ctx: typer.Context,
    model_image_tag: Annotated[Optional[str], typer.Argument(help="Only the jobs of this model image tag (foo/model).", show_default=False, metavar="[MODEL_IMAGE_TAG]")] = None,
    status: Annotated[Optional[str], typer.Option("--status", help="Only jobs in this status: InProgress, Completed, Failed, Stopping, Stopped.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most N jobs (the newest).", min=1)] = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output (times in ISO 8601, UTC).")] = False,
    project: Annotated[Optional[Path], typer.Option("--project", help="Only the jobs built from this folder (the folder of their script, notebook or Dockerfile).", show_default=False)] = None,
    sort: Annotated[Optional[str], typer.Option("--sort", help="Order by a metric's last value, lowest first; -METRIC highest first (jobs without it last).", metavar="[-]METRIC")] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="Only the jobs of this sweep (its id, as 'fahr sweep' printed it).", metavar="ID")] = None,
    cost: Annotated[bool, typer.Option("--cost", help="A COST column: each job's billable seconds at its price (0 on local); with --json, price_per_hour, instances and cost.")] = False,
    train_driver: DriverOption = None,
) -> None:
    """List the driver's jobs, newest first: name, tag, status, start, duration, billable seconds,
    the hyperparameters that differ between them, each metric's last value, the project folder
    each was built from and its git commit."""

    def work():
        import json

        from fahr_core import api

        (tag,) = _reorder(ctx, model_image_tag)
        found = api.jobs(tag, driver=train_driver, config=_config_dict(ctx), status=status, limit=limit,
                         project=project, sort=sort, sweep=sweep, cost=cost)
        finals = api.final_metrics_of(found)
        if json_:
            typer.echo(json.dumps([{**_job_row(job), **(_cost_row(job) if cost else {}),
                                    "hyperparameters": job.hyperparameters, "final_metrics": final}
                                   for job, final in zip(found, finals)], indent=2))
            return
        _print_table(found, finals, cost=cost)

    _run(work)


def _iso(moment) -> str | None:
    return None if moment is None else moment.isoformat()


def _job_row(job) -> dict:
    return {"job_name": job.name, "model_tag": job.model_tag, "driver": job.driver, "status": job.status,
            "secondary_status": job.secondary_status, "created": _iso(job.created), "started": _iso(job.started),
            "ended": _iso(job.ended), "duration_seconds": _duration(job), "training_seconds": job.training_seconds,
            "billable_seconds": job.billable_seconds, "failure_reason": job.failure_reason,
            "failure_kind": job.failure_kind, "attempt_of": job.attempt_of,
            "warm_pool": _warm_pool_row(job.warm_pool),
            "model_artifact": job.model_artifact, "project": job.project, "git_commit": job.git_commit}


def _warm_pool_row(pool) -> dict | None:
    """A job's warm pool (plugin API 1.6) in ``fahr jobs --json``; None without one."""
    if pool is None:
        return None
    from datetime import datetime, timezone

    expires = None if pool.expires is None else datetime.fromtimestamp(pool.expires, timezone.utc)
    return {"status": pool.status, "billable_seconds": pool.billable_seconds, "expires": _iso(expires),
            "reused_by": pool.reused_by, "reused_from": pool.reused_from}


def _cost_row(job) -> dict:
    """``fahr jobs --cost --json``'s fields: the price the driver reports and what it came to."""
    price = job.price
    return {"price_per_hour": None if price is None else price.per_hour,
            "instances": None if price is None else price.instances,
            "spot": None if price is None else price.spot,
            "price_source": "" if price is None else price.source,
            "cost": None if job.cost is None else round(job.cost, 6)}


def _cost_cell(job) -> str:
    from fahr_core import ui

    if job.cost is None:
        return "unknown" if job.done or job.price is None else "-"
    return "$0" if job.cost == 0 else ui.dollars(job.cost)


def _duration(job) -> float | None:
    """Seconds from start to end (to now while it runs), as far as the driver knows."""
    from datetime import datetime, timezone

    if job.started is None:
        return None
    end = job.ended or (None if job.done else datetime.now(timezone.utc))
    return None if end is None else round((end - job.started).total_seconds(), 3)


def _ago(moment) -> str:
    from datetime import datetime, timezone

    seconds = max(0.0, (datetime.now(timezone.utc) - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _project(job) -> str:
    """The folder a job was built from, ``~`` for the home folder, with its commit's first 7
    digits (``*`` when the tree had changes); ``-`` when not recorded."""
    import os

    if not job.project:
        return "-"
    home = os.path.expanduser("~")
    where = "~" + job.project[len(home):] if home != "/" and (job.project + "/").startswith(home + "/") else job.project
    commit = job.git_commit[:7] + ("*" if job.git_commit.endswith("-dirty") else "")
    return f"{where} @{commit}" if commit else where


def _differing(found) -> list[str]:
    """The hyperparameters whose values are not the same in every listed job (one missing counts)."""
    from fahr_core.charts import differing

    return differing([job.hyperparameters for job in found])


def _number(value: float) -> str:
    return f"{value:.4g}"


def _print_table(found, finals=None, cost: bool = False) -> None:
    from fahr_core import ui

    if not found:
        ui.info("no jobs")
        return
    finals = finals or [{} for _ in found]
    hps = _differing(found)
    metric_names = sorted({name for final in finals for name in final})
    # Names as well as values come from the jobs' records (a job folder can be edited): shown visibly.
    pools = any(job.warm_pool is not None for job in found)  # the column only when a driver reports pools
    header = tuple(map(ui.visible, ("JOB", "TAG", "STATUS", "STARTED", "DURATION", "BILLABLE", *(("COST",) * cost),
                                    *(("WARM POOL",) if pools else ()), *hps, *metric_names, "PROJECT")))
    rows = []
    for job, final in zip(found, finals):
        started = "-"
        if job.started is not None:
            started = f"{job.started.astimezone().strftime('%Y-%m-%d %H:%M')} ({_ago(job.started)})"
        billable = "-" if job.billable_seconds is None else f"{job.billable_seconds:.0f} s"
        status = job.status + (f" ({job.secondary_status})" if job.secondary_status and not job.done else "")
        if job.failure_kind:  # why it did not complete: user, out_of_memory, timeout, interrupted…
            status += f" ({job.failure_kind})"
        name = job.name + (f" (retry of {job.attempt_of})" if job.attempt_of else "")
        values = [job.hyperparameters.get(name, "-") for name in hps]
        values += [_number(final[name]) if name in final else "-" for name in metric_names]
        pool = (ui.warm_pool(job.warm_pool) if job.warm_pool is not None else "-",) if pools else ()
        rows.append(tuple(map(ui.visible, (name, job.model_tag or "-", status, started, _span(_duration(job)),
                                           billable, *((_cost_cell(job),) if cost else ()), *pool, *values,
                                           _project(job)))))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@app.command(context_settings=_EXTRA)
def sweep(
    ctx: typer.Context,
    training_artifact: Annotated[Optional[Path], typer.Argument(help="The training script, notebook or container, as for 'fahr fit' (not with --resume).", show_default=False, metavar="[TRAINING_ARTIFACT]")] = None,
    hp: Annotated[list[str], typer.Option("--hp", help="NAME=VALUE for every job; NAME=V1,V2,… a grid axis (\\, a comma in a value); NAME=uniform:LOW:HIGH, loguniform:LOW:HIGH, int:LOW:HIGH or choice:A,B a range drawn --trials times (repeatable).", metavar="NAME=SPEC")] = [],
    trials: Annotated[Optional[int], typer.Option("--trials", help="Random points drawn of the ranges (each grid point gets the same draws).", metavar="N")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the draws: the same seed, the same points in the same order (default: one chosen and printed).")] = None,
    objective: Annotated[Optional[str], typer.Option("--objective", help="What best means: a metric's last value, METRIC:min or METRIC:max; ranks the leaderboard.", metavar="METRIC:min|max")] = None,
    parallel: Annotated[Optional[int], typer.Option("--parallel", help="Jobs running at once (default: half the CPUs on local, 4 on other drivers).", metavar="K")] = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Launch the points of sweep ID not Completed or running, follow them all to the leaderboard.", metavar="ID")] = None,
    train_driver: DriverOption = None,
    input: Annotated[list[str], typer.Option("--input", help="Input channel CHANNEL=PATH_OR_URI for every job (repeatable).")] = [],
    env: Annotated[list[str], typer.Option("--env", help="Environment variable KEY=VALUE for every job (repeatable).")] = [],
    secret: Annotated[list[str], typer.Option("--secret", help="Give every job the variable NAME with the value of $NAME here (as 'fahr fit --secret').", metavar="NAME")] = [],
    metric: Annotated[list[str], typer.Option("--metric", help="A metric read from the jobs' output, NAME=REGEX (as 'fahr fit --metric').", metavar="NAME=REGEX")] = [],
    detach: Annotated[bool, typer.Option("--detach", help="Launch every point at once and return ('fahr sweep --resume ID' follows them).")] = False,
    retry: RetryOption = 0,
    fetch: Annotated[Optional[Path], typer.Option("--fetch", help="Once all have ended, fetch the best job's model into DIR (needs --objective).", metavar="DIR")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With --fetch: replace a non-empty DIR.")] = False,
    regenerate_dockerfile: Annotated[bool, typer.Option("--regenerate-dockerfile", help="Write the Dockerfile anew, as 'fahr fit'.")] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build the image even when nothing it is built from changed.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="The leaderboard as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table nor status lines: the leaderboard alone (errors still).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print the image build's whole output as it comes.")] = False,
) -> None:
    """Train one image with many hyperparameters: a grid, random points of ranges, or both.

    The image is built and pushed once; each point is a job of its own, at most --parallel at
    once, shown in a live table; at the end a leaderboard, best first by --objective. A failing
    job does not stop the others. Ctrl-C stops them all on local; on other drivers it leaves them
    running and prints 'fahr stop --sweep ID'. Exit 0 when at least one job completed, 1 when
    none did. Driver configuration: --config.KEY=VALUE (repeatable), for every job.
    """

    def work():
        import json

        from fahr_core import api
        from fahr_core.config import parse_pairs
        from fahr_core.errors import EXIT_JOB_FAILED

        (artifact,) = _reorder(ctx, training_artifact)
        result = api.sweep(
            None if artifact is None else Path(artifact), hyperparameters=list(hp), trials=trials, seed=seed,
            objective=objective, parallel=parallel, resume=resume, driver=train_driver,
            config=_config_dict(ctx), inputs=parse_pairs(input, "--input"), environment=parse_pairs(env, "--env"),
            secrets=list(secret), metrics=dict(pair.partition("=")[::2] for pair in metric), wait=not detach,
            retry=retry, quiet="status" if quiet else False, fetch_to=fetch, overwrite=overwrite,
            regenerate_dockerfile=regenerate_dockerfile, rebuild=rebuild, verbose=verbose)
        if detach:
            return
        board = result.leaderboard()
        if json_:
            typer.echo(json.dumps({"sweep": result.id, "objective": str(result.objective) if result.objective else None,
                                   "leaderboard": board}, indent=2))
        else:
            _print_leaderboard(result, board)
        if not any(row["status"] == "Completed" for row in board):
            raise FahrError(f"no job of sweep {result.id} completed", exit_code=EXIT_JOB_FAILED)

    _run(work)


def _print_leaderboard(result, board) -> None:
    """The sweep's end on stdout: a row per point, best first, the objective's column first."""
    from fahr_core import ui

    names = list(dict.fromkeys(k for row in board for k in row["hyperparameters"]))
    metric = result.objective.metric if result.objective else None
    others = sorted({k for row in board for k in row["final_metrics"]} - {metric})
    header = tuple(map(ui.visible, ("RANK", "JOB", *names, "STATUS", "DURATION", *([metric] if metric else []), *others)))
    rows = []
    for row in board:
        status = row["status"] + (f": {row['failure']}" if row["failure"] else "")
        values = [_number(row["objective"]) if row["objective"] is not None else "-"] if metric else []
        values += [_number(row["final_metrics"][k]) if k in row["final_metrics"] else "-" for k in others]
        cells = (str(row["rank"] or "-"), row["job"] or "-", *(row["hyperparameters"].get(n, "-") for n in names),
                 status, _span(row["seconds"]), *values)
        rows.append(tuple(map(ui.visible, cells)))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    typer.echo(f"sweep {result.id}" + (f", best first by {result.objective}" if result.objective else
                                        " (no --objective: not ranked)"))
    for row in (header, *rows):
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@app.command(context_settings=_EXTRA)
def logs(
    ctx: typer.Context,
    job_name: Annotated[str, typer.Argument(help="The job's name (see 'fahr jobs').", show_default=False, metavar="JOB_NAME")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing lines as the job prints them, until it ends.")] = False,
    host: Annotated[Optional[str], typer.Option("--host", help="Only this host's lines (algo-1, algo-2, …).", metavar="algo-N")] = None,
    train_driver: DriverOption = None,
) -> None:
    """Print a job's output (to stdout), from the start; lines are prefixed [algo-N] when it has several hosts."""

    def work():
        import re

        from fahr_core import api, ui

        (name,) = _reorder(ctx, job_name)
        if host is not None and not re.fullmatch(r"algo-[1-9][0-9]*", host):
            raise UsageError(f"--host {host}: a host is named algo-N (algo-1, algo-2, …)")
        try:
            for text, ends in api.Job(name, driver=train_driver, config=_config_dict(ctx))._output(follow, host):
                ui.log_line(text, newline=ends)  # the job's output as it printed it, byte for byte
                if ui.output_closed():
                    break  # `fahr logs … | head`: the reader has what it wanted
        finally:
            ui.flush_output()

    _run(work)


@app.command(context_settings=_EXTRA)
def metrics(
    ctx: typer.Context,
    job_names: Annotated[Optional[list[str]], typer.Argument(help="The jobs' names (see 'fahr jobs').", show_default=False, metavar="JOB")] = None,
    metric: Annotated[list[str], typer.Option("--metric", help="Only this metric (repeatable; a glob such as 'val_*' too).", metavar="NAME")] = [],
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="The jobs of this sweep (its id, as 'fahr sweep' printed it), beside any JOB given.", metavar="ID")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Every point as JSON: job, metric, value, step, time (ISO 8601, UTC), host.")] = False,
    csv_: Annotated[bool, typer.Option("--csv", help="Every point as CSV, the same columns, a header line first.")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the charts as an image: FILE.png, FILE.svg, or FILE.html (a page of them).", metavar="FILE")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading a running job's metrics until it ends: on a terminal the charts are redrawn, else new points print as lines.")] = False,
    train_driver: DriverOption = None,
) -> None:
    """Chart the jobs' metrics in the terminal: a line chart per metric, the jobs overlaid
    (docs/metrics.md)."""

    def work():
        from fahr_core import api
        from fahr_core.charts import show

        names = [name for name in job_names or () if not name.startswith("--config.")]
        ctx.args = [name for name in job_names or () if name.startswith("--config.")] + list(ctx.args)
        if not names and sweep is None:
            raise UsageError("missing JOB: fahr metrics JOB [JOB ...], or fahr metrics --sweep ID")
        if sweep is not None:
            # The sweep's jobs, found with its driver and configuration (its record's, as jobs --sweep).
            of_sweep = api.jobs(sweep=sweep, driver=train_driver, config=_config_dict(ctx))
            if not of_sweep:
                raise UsageError(f"sweep {sweep} has no jobs; see 'fahr jobs --sweep {sweep}'")
            names = [*names, *(job for job in reversed(of_sweep) if job.name not in names)]
        show.show(lambda: api.compare(names, metrics=metric or None, driver=train_driver,
                                            config=_config_dict(ctx)),
                        json_=json_, csv_=csv_, plot=plot, follow=follow)

    _run(work)


@app.command()
def drivers(
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show each driver's config keys (imports the drivers).")] = False,
) -> None:
    """List the installed drivers and what each is for (read from their files; no driver is imported)."""

    def work():
        import json

        from fahr_core import api

        rows = api.drivers(keys=verbose)
        if json_:
            typer.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            _echo(f"{row['name']:<12} {row['distribution']} {row['version']}  {row['description']}")
            for key in row.get("config", []):
                _echo(f"    {key['name']} ({key['type']}{_required_mark(key)}, default {key['default']!r}): {key['help']}")

    _run(work)


def _required_mark(row: dict) -> str:
    if row["required"]:
        return ", required"
    if row["required_for"]:
        return f", required for {' and '.join(row['required_for'])}"
    return ""


@app.command(context_settings=_EXTRA)
def config(
    ctx: typer.Context,
    driver: Annotated[Optional[str], typer.Argument(help="Driver whose keys to show; default: the configured one.", show_default=False, metavar="[DRIVER]")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show a driver's config keys: type, help, and the value in force here with its source."""

    def work():
        import json

        from fahr_core import api

        shown = api.settings(driver, _config_dict(ctx))
        if json_:
            typer.echo(json.dumps(shown, indent=2, default=str))
            return
        _echo(f"driver {shown['driver']}")
        for row in shown["keys"]:
            req = _required_mark(row)
            _echo(f"  config.{row['name']} ({row['type']}{req}) = {row['value']!r}   [{row['source']}]")
            _echo(f"      {row['help']}  (env: {row['env']})")

    _run(work)


@app.command()
def init(
    directory: Annotated[Optional[Path], typer.Argument(help="The new project's folder (new or empty). Default: ./<project_slug>.", show_default=False)] = None,
    template: Annotated[Optional[str], typer.Option("--template", "-t", help="A template name (see 'fahr templates'), a folder, or a git URL. Default: model.", metavar="NAME|PATH|GIT_URL")] = None,
    no_input: Annotated[bool, typer.Option("--no-input", help="Ask nothing: take the defaults and the --set values.")] = False,
    set_: Annotated[list[str], typer.Option("--set", help="Answer a template variable: KEY=VALUE (repeatable).", metavar="KEY=VALUE")] = [],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Render into a non-empty folder, replacing same-named files.")] = False,
) -> None:
    """Start a project from a template: a model, a notebook, or a driver plugin."""

    def work():
        from fahr_core import scaffold, ui

        result = scaffold.init(directory, template, no_input=no_input,
                               settings=scaffold.parse_settings(set_), overwrite=overwrite)
        ui.success(f"created {result.target} from template {result.template.name} ({len(result.files)} files)")
        if (result.target / "README.md").is_file():
            ui.info(f"next steps: {result.target / 'README.md'}")

    _run(work)


@app.command()
def templates(
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the templates 'fahr init --template' knows, with a one-line description each."""

    def work():
        import json

        from fahr_core import api

        found = api.templates()
        if json_:
            typer.echo(json.dumps([{"name": t.name, "description": t.description, "location": t.location,
                                    "source": t.source} for t in found.values()], indent=2))
            return
        width = max((len(name) for name in found), default=0)
        for t in found.values():
            _echo(f"{t.name:<{width}}  {t.description}")

    _run(work)


def main() -> None:
    """Console-script entry point: SIGTERM is handled like Ctrl-C (stop, clean up, exit 130), and
    a second one while fahr cleans up is deferred rather than abandoning the job half-stopped."""
    from fahr_core import interrupts

    interrupts.install()
    for stream in (sys.stdout, sys.stderr):  # a character the terminal's encoding lacks (a job's
        try:  # hyperparameter 模型 on a latin-1 stdout) is written as its escape, not an internal error
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a text stream fahr can reconfigure
            pass
    sys.exit(_invoke())


if __name__ == "__main__":  # python -m fahr_core.cli
    sys.exit(main())
