"""Tracker: each fahr job an MLflow run (MLFLOW_TRACKING_URI, else ./mlruns).

fahr tells this plugin about every job it follows (docs/trackers.md of fahr): its start, its
metrics as they come, its end. Each job becomes one MLflow run, found again by its fahr job name
(tag ``fahr.job``), so a job told twice (``fahr fit --detach`` then ``fahr wait``, or a second
``fahr wait``) is one run:

- two processes telling one job at once (two ``fahr wait JOB``) take turns (a lock file per job
  in the temporary folder): one run, each point once;
- experiment: ``MLFLOW_EXPERIMENT_NAME`` when set, else the job's model tag (one per model);
- run name: the job's name; params: its hyperparameters (one MLflow refuses, a name with ``'``
  or over 250 characters, is left out with one warning line; a value is cut at 6000);
- metrics: every point, with its step (the convention's ``step=N``; a point without one gets its
  place in its metric's series, 0, 1, 2…) and the time it was printed; a host other than
  ``algo-1`` of a job of several hosts logs ``algo-N/NAME``;
- tags ``fahr.job``, ``fahr.driver``, ``fahr.model_tag``, ``fahr.sweep``, ``fahr.image``,
  ``fahr.image_digest``, ``fahr.project``, ``fahr.git_commit`` (and MLflow's own
  ``mlflow.source.git.commit``), ``fahr.status``, ``fahr.failure_reason`` and
  ``fahr.model_uri``, where the job's model.tar.gz is (``s3://…``, or ``file://…`` for a local
  job): the model is not copied into MLflow's artifact store;
- status: RUNNING while the job runs, then FINISHED, FAILED or KILLED (stopped).

``FAHR_MLFLOW=off`` (or ``0``, ``false``, ``no``) turns the plugin off: it is then no tracker at
all (its entry point's object has no hooks), so fahr does no tracker's work either.
Nothing of MLflow is imported until fahr tells the first job: ``fahr --help`` and every command
that runs no job stay as fast as without this plugin.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from pathlib import Path

from fahr_core import hookimpl

#: fahr's statuses as MLflow's run statuses.
STATUS = {"Completed": "FINISHED", "Failed": "FAILED", "Stopped": "KILLED"}
#: MLflow's statuses of a run whose job ended: nothing more is recorded in it.
ENDED = frozenset(STATUS.values())
#: What one log_batch call takes (MLflow's limits: 1000 metrics, 100 params, 100 tags).
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
#: MLflow's longest param value and tag value it takes from a client.
MAX_PARAM_VALUE, MAX_TAG_VALUE = 6000, 8000
#: The main host of a job: its metrics keep their names; other hosts' are prefixed.
MAIN_HOST = "algo-1"

_lock = threading.RLock()
_runs: dict[str, "_Run"] = {}  # fahr job name -> its run, in this process
_held: set[str] = set()  # the job locks this process holds (_job_lock)
_client = None


class _Run:
    def __init__(self, run_id: str, ended: bool):
        self.run_id = run_id
        self.ended = ended  # the run's status is final: nothing more is recorded
        self.seen: Counter = Counter()  # points per metric key so far: the step of one without a step


def enabled() -> bool:
    """Whether jobs are recorded (``FAHR_MLFLOW`` is not off)."""
    return os.environ.get("FAHR_MLFLOW", "").strip().lower() not in ("off", "0", "false", "no")


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``; else the file store ``./mlruns`` of the folder fahr runs in.

    MLflow 3.7 made ``sqlite:///mlflow.db`` its default, and since then refuses the file store
    unless ``MLFLOW_ALLOW_FILE_STORE`` is true: the file store needs no database package and is
    what ``mlflow ui --backend-store-uri ./mlruns`` reads, so it is opted into here, for this
    process only, when the user chose no store of their own or chose a file store
    (``MLFLOW_TRACKING_URI=./mlruns`` or ``file:///…``); ``MLFLOW_ALLOW_FILE_STORE=false`` still refuses it.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if uri and "://" in uri and not uri.startswith("file:"):
        return uri  # a server or a database
    # A file store: the default, or one the user named (``file:///…``, ``./mlruns``) and so chose.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri or (Path.cwd() / "mlruns").as_uri()


def client():
    """The MLflow client of this process (imported on first use)."""
    global _client
    with _lock:
        if _client is None:
            from mlflow.tracking import MlflowClient

            _client = MlflowClient(tracking_uri=tracking_uri())
        return _client


def _experiment_id(model_tag: str) -> str:
    from mlflow.exceptions import MlflowException

    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip() or model_tag or "fahr"
    mlflow = client()
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            mlflow.restore_experiment(found.experiment_id)
        return found.experiment_id
    try:
        return mlflow.create_experiment(name)
    except MlflowException:  # made meanwhile by another process (a sweep's jobs)
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _tags(job) -> dict[str, str]:
    tags = {
        "fahr.job": job.job_name,
        "fahr.driver": job.driver,
        "fahr.model_tag": job.model_tag,
        "fahr.sweep": getattr(job, "sweep", "") or "",
        "fahr.image": job.image,
        "fahr.image_digest": job.image_digest,
        "fahr.project": job.project,
        "fahr.git_commit": job.git_commit,
        "fahr.status": "InProgress",
    }
    if job.git_commit:  # MLflow's UI shows it as the run's source version
        tags["mlflow.source.git.commit"] = job.git_commit.removesuffix("-dirty")
    return {key: value[:MAX_TAG_VALUE] for key, value in tags.items() if value}


@contextlib.contextmanager
def _job_lock(job):
    """Held by one process at a time for ``job`` on this machine, while it finds or makes its run
    and while it records its whole series and its end: two ``fahr wait JOB`` at once would
    otherwise each find no run and make one, or each log the points the other lacks."""
    import fcntl
    import hashlib
    import tempfile

    folder = Path(tempfile.gettempdir()) / f"fahr-mlflow-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    key = hashlib.sha256(f"{tracking_uri()}\0{job.job_name}".encode()).hexdigest()[:32]
    with _lock:  # (an RLock: a hook holding it may find the run, which takes it again)
        if key in _held:
            yield
            return
        with open(folder / f"{key}.lock", "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            _held.add(key)
            try:
                yield
            finally:
                _held.discard(key)


def _run_of(job) -> _Run:
    """The job's run: known in this process, found by the job's name, or made now."""
    with _job_lock(job):
        run = _runs.get(job.job_name)
        if run is not None:
            return run
        mlflow = client()
        experiment = _experiment_id(job.model_tag)
        found = mlflow.search_runs([experiment], filter_string=f"tags.`fahr.job` = '{job.job_name}'",
                                   max_results=1)
        if found:
            info = found[0].info
            run = _Run(info.run_id, ended=info.status in ENDED)
        else:
            start = int(job.created * 1000) if job.created else None
            # Its tags with the run, in one call: a run is never left without the tag it is found by.
            made = mlflow.create_run(experiment, start_time=start, run_name=job.job_name, tags=_tags(job))
            run = _Run(made.info.run_id, ended=False)
            _log_params(mlflow, run.run_id, job)
        _runs[job.job_name] = run
        return run


def _log_params(mlflow, run_id: str, job) -> None:
    """The job's hyperparameters as the run's params. One MLflow refuses (a name with ``'`` or
    longer than it takes) is left out, said in one warning line: the others are still logged."""
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException

    params = [Param(key, str(value)[:MAX_PARAM_VALUE]) for key, value in sorted(job.hyperparameters.items())]
    refused = []
    for i in range(0, len(params), MAX_PARAMS):
        batch = params[i:i + MAX_PARAMS]
        try:
            mlflow.log_batch(run_id, params=batch)
        except MlflowException:  # which one: each alone
            for param in batch:
                try:
                    mlflow.log_batch(run_id, params=[param])
                except MlflowException:
                    refused.append(param.key)
    if refused:
        from fahr_core import ui

        names = ", ".join(repr(ui.cut_middle(key, 40)) for key in refused[:5])
        more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
        ui.warn(f"MLflow refused hyperparameter {names}{more} of job {job.job_name} as a param (names may hold "
                "letters, digits, _ - . : / and spaces, 250 at most); the run has the others")


@hookimpl(optionalhook=True)
def job_started(job):
    _run_of(job)


@hookimpl(optionalhook=True)
def job_metrics(job, points, whole):
    from mlflow.entities import Metric

    with _job_lock(job) if whole else _lock:
        run = _run_of(job)
        if run.ended:
            return  # recorded whole already (a second `fahr wait`)
        mlflow = client()
        have: Counter = Counter()
        if whole:
            recorded = mlflow.get_run(run.run_id)
            if recorded.info.status in ENDED:  # by another process meanwhile
                run.ended = True
                return
            # The points a fit killed midway had sent: recorded once.
            for key in recorded.data.metrics:
                have.update((key, m.step, m.value) for m in mlflow.get_metric_history(run.run_id, key))
            run.seen = Counter()
        now = int(time.time() * 1000)
        metrics = []
        for point in points:
            key = point.name if point.host in ("", MAIN_HOST) else f"{point.host}/{point.name}"
            step = point.step if point.step is not None else run.seen[key]
            run.seen[key] += 1
            if have[(key, step, point.value)] > 0:
                have[(key, step, point.value)] -= 1
                continue
            stamp = int(point.time * 1000) if point.time is not None else now
            metrics.append(Metric(key, point.value, stamp, step))
        for i in range(0, len(metrics), MAX_METRICS):
            mlflow.log_batch(run.run_id, metrics=metrics[i:i + MAX_METRICS])


@hookimpl(optionalhook=True)
def job_ended(job, result):
    from mlflow.entities import RunTag

    with _job_lock(job):
        run = _run_of(job)
        mlflow = client()
        if run.ended or mlflow.get_run(run.run_id).info.status in ENDED:
            run.ended = True
            return
        tags = {"fahr.status": result.status, "fahr.failure_reason": result.failure_reason,
                "fahr.model_uri": model_uri(result.model_artifact)}
        tags = [RunTag(key, value[:MAX_TAG_VALUE]) for key, value in tags.items() if value]
        mlflow.log_batch(run.run_id, tags=tags)
        mlflow.set_terminated(run.run_id, STATUS.get(result.status, "FAILED"))
        run.ended = True


def model_uri(location: str) -> str:
    """A job's model location as a URI: a local path as ``file://…``, a URI as it is."""
    if not location or "://" in location:
        return location
    return Path(location).expanduser().absolute().as_uri()


def __getattr__(name: str):
    # The entry point's object (``fahr_mlflow:tracker``), looked up each time fahr loads its
    # plugins: the hooks above, or, with FAHR_MLFLOW off, an object with none.
    if name == "tracker":
        return _Tracker() if enabled() else _Off()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Tracker:
    """This module's hooks, as the object fahr registers."""

    job_started = staticmethod(job_started)
    job_metrics = staticmethod(job_metrics)
    job_ended = staticmethod(job_ended)


class _Off:
    """FAHR_MLFLOW is off: no hooks."""
