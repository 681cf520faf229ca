"""The ``local`` driver: train in containers on this machine's Docker engine, as SageMaker would.

Each job runs under the same container contract as SageMaker, and its artifacts are kept in
SageMaker's layout in a local folder:

    <output_path>/<job>/output/model.tar.gz
    <output_path>/<job>/output/output.tar.gz
    <output_path>/<job>/job.json          (fahr's record of the job: status, reason, times)

so that a model that trains here trains on SageMaker unchanged, and ``fahr fetch`` works alike.

This module holds the driver's hooks; each module of the package does one job:

- ``records``: the job records (``job.json``): read checked, written whole, locked; listing a folder's jobs;
- ``lifecycle``: launch, follow and stop a job's containers;
- ``finish``: a job's end: artifacts saved whole, the end recorded, containers removed;
- ``follower``: the process each job has that finishes it when its containers exit, with nobody
  watching (``fit --detach``), a foreground ``fahr wait`` or ``stop`` first;
- ``checkpoint_folders``: which local folder a job's checkpoints go back into, and which job holds it;
- ``checkpoints``: the checkpoint marker, and the hosts' copies merged back into the folder;
- ``logstream``: a job's output, live from its containers or from its saved logs;
- ``fetching``: a finished job's model archive, copied out for ``fahr fetch``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from fahr_core import hookimpl
from fahr_core.config import ConfigKey
from fahr_core.drivers.local import fetching, lifecycle, logstream, metricfile, records
# Names other code and the tests use as fahr_core.drivers.local.X: kept importable from here.
from fahr_core.drivers.local.checkpoint_folders import (GIVEN, IN_USE, _check_not_in_use, _checkpoint_root,  # noqa: F401
                                                         _claim, _claimed, _named, _names, _release,
                                                         _tidy_staging, _user_of)
from fahr_core.drivers.local.logstream import _LIVE_QUEUE, _live_logs, _saved_logs  # noqa: F401
from fahr_core.drivers.local.records import (CLEANUP, FOLLOW, MAX_INSTANCE_COUNT, NAME, RECORD,  # noqa: F401
                                              BadRecord, default_output_path)


@hookimpl
def config_keys():
    return [
        ConfigKey("output_path", str, default_output_path(),
                  "Folder that receives <job>/output/model.tar.gz and output.tar.gz."),
        ConfigKey("instance_count", int, 1,
                  f"Containers (hosts algo-1..algo-N, 1-{MAX_INSTANCE_COUNT}) on a private network, "
                  "to rehearse distributed training."),
        ConfigKey("instance_type", str, "local", "Reported to the container in resourceconfig.json."),
        ConfigKey("gpus", str, "", "GPUs to pass through: 'all', a count, or device ids '0,1'. Empty: none."),
        ConfigKey("memory", str, "",
                  "Memory limit of each host's container, e.g. 512m or 4G (powers of 1024), no swap beyond it; "
                  "a host that needs more is killed and its job fails as out_of_memory. Empty: no limit.",
                  check=lifecycle.memory_problem),
        ConfigKey("cpus", float, 0.0, "CPUs each host's container may use, e.g. 1.5. 0: no limit.",
                  check=lifecycle.cpus_problem),
        ConfigKey("stop_timeout", int, 10, "Seconds between SIGTERM and SIGKILL when a job is stopped."),
        ConfigKey("follower", bool, True,
                  "Start with each job a process that finishes it (artifacts packed, end recorded, containers "
                  "removed) when its containers exit, with nobody waiting (fit --detach). false: 'fahr wait JOB' "
                  "finishes it."),
        ConfigKey("checkpoint_path", str, "",
                  "Folder copied into /opt/ml/checkpoints at start and back (replacing its contents) when "
                  "the job ends, fails or is stopped, so a job fitted again resumes; new or empty at first use (fahr "
                  "marks it with .fahr-checkpoints). Empty: no checkpointing."),
    ]


@hookimpl
def claims_location(location):
    parsed = urlparse(location)
    if parsed.scheme == "file" or (not parsed.scheme and Path(location).exists()):
        return True
    return None


@hookimpl
def check_run(config, inputs, secrets):
    # `secrets` named: this driver delivers JobSpec.secrets (files the launcher reads, never the
    # container's configuration; fahr_core.contract).
    lifecycle.check_run(config, inputs)


@hookimpl
def price(config):
    # Nothing to pay: the line says so, with what the job will be given (max_cost never refuses).
    return records.local_price(config["instance_count"], lifecycle.memory_limit(config["memory"]),
                               float(config["cpus"]))


@hookimpl
def launch(spec, config):
    return lifecycle.launch(spec, config)


@hookimpl
def wait(job, config):
    return lifecycle.wait(job, config)


@hookimpl
def stop(job, config):
    return lifecycle.stop(job, config)


@hookimpl
def fetch(request, config):
    return fetching.fetch(request, config)


@hookimpl
def list_jobs(query, config):
    return records.list_jobs(query, config)


@hookimpl
def logs(job, config, follow):
    return logstream.logs(job, config, follow)


@hookimpl
def metrics(job, config):
    # Kept in the job's folder as they were printed (docs/metrics.md); None: read from its logs.
    record_dir = records._job_dir(config, job.job_name)
    record = records._read_record(record_dir)  # an unknown job is one line, as for logs
    stored = metricfile.read(record_dir)
    if stored is None and not records._ended(record):
        # Running and followed by nobody (detached): its containers' logs, at the lines' own times.
        from fahr_core.contract import ContractRun

        run = ContractRun(records._container_job(record, config))
        if run.containers():
            return metricfile.running(run, record)
        stored = metricfile.read(record_dir)  # it ended meanwhile
    return stored
