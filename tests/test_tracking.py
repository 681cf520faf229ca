"""The tracker hooks as the core calls them (fahr_core/tracking.py, docs/trackers.md), with fake
trackers on a real plugin manager: who hears what and when, batches, a tracker that raises, a
later process's telling, and nothing done or imported when no plugin is a tracker."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from fahr_core import hookimpl, plugins, tracking, ui
from fahr_core.values import ImageRef, JobHandle, JobResult, MetricPoint


class Fake:
    def __init__(self, fail: str = ""):
        self.heard: list = []
        self.fail = fail

    def _hear(self, hook, **what):
        self.heard.append((hook, what))
        if hook == self.fail:
            raise RuntimeError(f"{hook} refused")

    @hookimpl
    def job_started(self, job):
        self._hear("job_started", job=job)

    @hookimpl
    def job_metrics(self, job, points, whole):
        self._hear("job_metrics", points=list(points), whole=whole)

    @hookimpl
    def job_ended(self, job, result):
        self._hear("job_ended", status=result.status)


def session_with(*trackers):
    pm = plugins.new_manager()
    for number, tracker in enumerate(trackers):
        pm.register(tracker, name=f"plugin:fake{number}")
    return types.SimpleNamespace(pm=pm, config={}, driver="local")


SPEC = types.SimpleNamespace(model_tag="proj/train", image=ImageRef(name="proj/train", image_id="sha256:abc"),
                             hyperparameters={"lr": "0.1"}, project="/p", git_commit="1234", sweep="sw-7",
                             metric_definitions=(("acc", r"acc: (\S+)"),))
HANDLE = JobHandle(driver="local", job_name="proj-train-1", model_tag="proj/train")


def result(status="Completed"):
    return JobResult(job=HANDLE, status=status, model_artifact="/jobs/proj-train-1/model.tar.gz")


def follow(session, *outputs: bytes):
    """What the core does for a fit: launch, the streamed output (to stdout), the end. Not quiet:
    the trackers' warnings, said from their own threads, are seen."""
    tracking.launched(session, SPEC, HANDLE)
    with tracking.following(session, HANDLE) as tracked:
        for data in outputs:
            ui.log_output(data)
    tracking.ended(session, result(), tracked, read_back=lambda job: pytest.fail("a followed job is not read back"))


def test_a_fit_tells_its_start_its_streamed_metrics_and_its_end():
    fake = Fake()
    follow(session_with(fake), b"epoch 0\nfahr-metric loss=0.5 step=0\n", b"acc: 0.75\nfahr-metric loss=0.25 st",
           b"ep=1\n")
    hooks = [hook for hook, _ in fake.heard]
    assert hooks[0] == "job_started" and hooks[-1] == "job_ended" and set(hooks[1:-1]) == {"job_metrics"}
    job = fake.heard[0][1]["job"]
    assert (job.job_name, job.model_tag, job.hyperparameters, job.sweep, job.image_digest, job.git_commit) == (
        "proj-train-1", "proj/train", {"lr": "0.1"}, "sw-7", "sha256:abc", "1234")
    points = [p for hook, what in fake.heard if hook == "job_metrics" for p in what["points"]]
    assert [(p.name, p.value, p.step) for p in points] == [("loss", 0.5, 0), ("acc", 0.75, None), ("loss", 0.25, 1)]
    assert all(not what["whole"] for hook, what in fake.heard if hook == "job_metrics")
    assert fake.heard[-1][1] == {"status": "Completed"}
    assert ui._taps == ()  # the tap ends with the following


def test_a_chatty_job_is_told_in_batches_not_a_call_a_line():
    fake = Fake()
    follow(session_with(fake), b"".join(b"fahr-metric loss=%d step=%d\n" % (i, i) for i in range(2500)))
    sizes = [len(what["points"]) for hook, what in fake.heard if hook == "job_metrics"]
    assert sum(sizes) == 2500 and max(sizes) <= tracking.BATCH_POINTS and len(sizes) <= 3


def test_a_tracker_that_raises_is_said_once_and_breaks_neither_the_job_nor_the_others(capsys):
    broken, sound = Fake(fail="job_started"), Fake()
    follow(session_with(broken, sound), b"fahr-metric loss=1 step=0\n")
    assert [hook for hook, _ in broken.heard] == ["job_started"]  # nothing more of this job
    assert [hook for hook, _ in sound.heard] == ["job_started", "job_metrics", "job_ended"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "fahr warning" in line]
    assert len(warnings) == 1
    assert "plugin fake0 failed recording the start of job proj-train-1: RuntimeError: job_started refused" in warnings[0]


def test_a_later_process_tells_the_start_the_whole_series_and_the_end():
    fake = Fake()
    session = session_with(fake)
    info = types.SimpleNamespace(model_tag="proj/train", hyperparameters={"lr": "0.1"}, project="/p",
                                 git_commit="1234", metric_definitions=(("acc", "acc: (\\S+)"),), created=1.0)
    stored = [MetricPoint("loss", 0.5, 0, 2.0, "algo-1"), MetricPoint("loss", 0.25, 1, 3.0, "algo-1")]
    asked = []

    def read_back(handle):
        return info, lambda definitions: asked.append(definitions) or stored

    tracking.ended(session, result("Failed"), None, read_back=read_back)  # `fahr wait JOB`
    assert [hook for hook, _ in fake.heard] == ["job_started", "job_metrics", "job_ended"]
    assert fake.heard[0][1]["job"].hyperparameters == {"lr": "0.1"} and fake.heard[0][1]["job"].created == 1.0
    assert fake.heard[1][1] == {"points": stored, "whole": True}
    assert asked == [(("acc", "acc: (\\S+)"),)]  # read with the job's own definitions
    assert fake.heard[2][1] == {"status": "Failed"}


def test_without_trackers_nothing_is_parsed_nor_read_back():
    session = session_with()
    tracking.launched(session, SPEC, HANDLE)
    with tracking.following(session, HANDLE) as tracked:
        assert tracked is None and ui._taps == ()
    tracking.ended(session, result(), tracked, read_back=lambda job: pytest.fail("read back without trackers"))


def test_fahr_mlflow_imports_no_mlflow_and_is_no_tracker_when_off():
    code = ("import os, sys\n"
            "from fahr_core import plugins\n"
            "pm = plugins.manager_for('local')\n"
            "print(len(pm.hook.job_started.get_hookimpls()), 'mlflow' in sys.modules)\n")
    for setting, expected in (("off", "0 False"), ("on", "1 False")):
        env = {"PATH": "/usr/bin:/bin", "FAHR_MLFLOW": setting}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert proc.stdout.split("\n")[0] == expected, proc.stderr


def test_jobs_followed_at_once_are_each_told_their_own_series_whole_at_their_end():
    # A sweep follows several jobs in one process: the streamed output does not say whose it is.
    import dataclasses

    fake = Fake()
    session = session_with(fake)
    other = dataclasses.replace(HANDLE, job_name="proj-train-2")
    stored = {HANDLE.job_name: [MetricPoint("loss", 1.0, 0)], other.job_name: [MetricPoint("loss", 2.0, 0)]}

    def read_back(handle):
        return None, lambda definitions: stored[handle.job_name]

    tracking.launched(session, SPEC, HANDLE)
    tracking.launched(session, SPEC, other)
    with ui.quiet(), tracking.following(session, HANDLE) as first:
        ui.log_output(b"fahr-metric loss=1 step=0\n")  # one job alone: told live
        with tracking.following(session, other) as second:
            ui.log_output(b"fahr-metric loss=2 step=0\n")  # whose? told by neither
        tracking.ended(session, result(), second, read_back=read_back)
    tracking.ended(session, result(), first, read_back=read_back)
    told = [(what["job"].job_name if hook == "job_started" else hook, what.get("points"), what.get("whole"))
            for hook, what in fake.heard if hook != "job_ended"]
    live = [p for _, points, whole in told if whole is False for p in points]
    assert [(p.name, p.value, p.host) for p in live] == [("loss", 1.0, "algo-1")]  # job 1's own, read alone
    assert [entry for entry in told if entry[2] is not False] == [
        ("proj-train-1", None, None), ("proj-train-2", None, None),
        ("job_metrics", stored["proj-train-2"], True),
        ("job_metrics", stored["proj-train-1"], True),
    ]


class Hanging(Fake):
    """A tracker whose ``hook`` never returns (a server that never answers), until released."""

    def __init__(self, hang: str, seconds: float = 10):
        super().__init__()
        self.hang, self.seconds, self.release = hang, seconds, __import__("threading").Event()

    def _hear(self, hook, **what):
        super()._hear(hook, **what)
        if hook == self.hang:
            self.release.wait(self.seconds)


@pytest.mark.parametrize("hang", ["job_started", "job_metrics", "job_ended"])
def test_a_tracker_that_hangs_holds_neither_the_output_nor_the_end_of_a_job(hang, monkeypatch, capsys):
    import time

    monkeypatch.setenv("FAHR_TRACKER_TIMEOUT", "0.5")
    hanging, sound = Hanging(hang), Fake()
    started = time.monotonic()
    try:
        follow(session_with(hanging, sound), b"fahr-metric loss=1 step=0\n", *[b"fahr-metric loss=2 step=1\n"] * 3)
        took = time.monotonic() - started
    finally:
        hanging.release.set()
    assert took < 5, took  # the output went on, and the end waited 0.5 s for the tracker, not for ever
    assert [hook for hook, _ in sound.heard][::len(sound.heard) - 1] == ["job_started", "job_ended"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "fahr warning" in line]
    assert len(warnings) == 1, warnings
    assert ("plugin fake0 did not finish recording job proj-train-1 within 0.5 s (FAHR_TRACKER_TIMEOUT) and is "
            "not waited for; the job goes on") in warnings[0]


def test_a_tracker_slower_than_the_output_slows_it_not_and_is_dropped_when_too_far_behind(monkeypatch, capsys):
    # Each batch is a call; a tracker taking a second a call would hold a chatty job's output
    # (and its points, in memory) without end: it is dropped once QUEUED_CALLS calls behind.
    import time

    monkeypatch.setattr(tracking, "BATCH_POINTS", 1)
    slow = Hanging("job_metrics", seconds=0.1)  # 20 s for the 200 calls
    session = session_with(slow)
    started = time.monotonic()
    try:
        follow(session, *[b"fahr-metric loss=%d step=%d\n" % (i, i) for i in range(200)])
        took = time.monotonic() - started
        assert took < 5, took
        (worker,) = session._trackers._workers.values()
        assert worker.calls.qsize() <= tracking.QUEUED_CALLS  # what it is behind is bounded
    finally:
        slow.release.set()
    assert "job_ended" not in [hook for hook, _ in slow.heard]  # dropped for the job
    warnings = [line for line in capsys.readouterr().err.splitlines() if "fahr warning" in line]
    assert len(warnings) == 1 and f"plugin fake0 is {tracking.QUEUED_CALLS} calls behind the output of job " \
        "proj-train-1; the job goes on" in warnings[0], warnings


def test_a_tracker_that_exits_is_a_warning_and_the_end_does_not_wait_for_it(monkeypatch, capsys):
    import time

    class Exiting(Fake):
        def _hear(self, hook, **what):
            super()._hear(hook, **what)
            if hook == "job_started":
                raise SystemExit(3)

    monkeypatch.setenv("FAHR_TRACKER_TIMEOUT", "5")
    exiting, sound = Exiting(), Fake()
    started = time.monotonic()
    follow(session_with(exiting, sound), b"fahr-metric loss=1 step=0\n")
    assert time.monotonic() - started < 4
    assert [hook for hook, _ in sound.heard] == ["job_started", "job_metrics", "job_ended"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "fahr warning" in line]
    assert len(warnings) == 1 and "plugin fake0 failed recording the start of job proj-train-1: SystemExit: 3" \
        in warnings[0], warnings


def test_a_trackers_thread_ends_when_idle_and_a_later_job_starts_another(monkeypatch):
    # A long-lived process (a notebook's fits, each its own session) keeps no thread per fit.
    import threading
    import time

    monkeypatch.setattr(tracking, "IDLE_SECONDS", 0.2)
    fake = Fake()
    session = session_with(fake)
    before = set(threading.enumerate())  # (other tests' trackers may still be busy)
    follow(session, b"fahr-metric loss=1 step=0\n")
    assert [t for t in set(threading.enumerate()) - before if t.name.startswith("fahr-tracker-")]
    time.sleep(1)
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("fahr-tracker-")]
    follow(session, b"fahr-metric loss=2 step=0\n")
    assert [hook for hook, _ in fake.heard].count("job_ended") == 2
