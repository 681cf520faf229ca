"""An experiment tracker (hooks job_started, job_metrics, job_ended) whose every hook raises, when
FAHR_TEST_BROKEN_TRACKER is set; otherwise no tracker at all (no hooks), so that the rest of the
suite's jobs are not tracked by it. tests/test_mlflow.py: such a tracker breaks no job."""

import os

from fahr_core import hookimpl


class _Broken:
    @staticmethod
    @hookimpl(optionalhook=True)
    def job_started(job):
        raise RuntimeError(f"tracker server unreachable for {job.job_name}")

    @staticmethod
    @hookimpl(optionalhook=True)
    def job_metrics(job, points):
        raise RuntimeError("metrics refused")

    @staticmethod
    @hookimpl(optionalhook=True)
    def job_ended(job, result):
        raise RuntimeError("end refused")


class _Off:
    pass


def __getattr__(name):
    if name == "tracker":
        return _Broken() if os.environ.get("FAHR_TEST_BROKEN_TRACKER") else _Off()
    raise AttributeError(name)
