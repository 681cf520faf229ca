"""``Job.logs(follow=True)`` hands a line over as soon as the job printed it, even when the job
then stays quiet (no Docker: the driver's ``logs`` hook is a stand-in that sleeps between lines)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from fahr_core import Config, LogLine, api


def stand_in_session(lines_and_pauses, release: threading.Event):
    def logs(job, config, follow):
        for item in lines_and_pauses:
            if item == "wait":
                release.wait(timeout=30)  # the job says nothing until the test has seen line one
            else:
                yield LogLine(host=item[0], text=item[1])

    from fahr_core.session import Session

    return Session(SimpleNamespace(hook=SimpleNamespace(logs=logs)), Config("standin", {}, {}))


def test_a_followed_quiet_job_shows_its_first_line_without_waiting_for_the_next(monkeypatch):
    release = threading.Event()
    session = stand_in_session([("algo-1", "epoch 1"), "wait", ("algo-1", "epoch 2")], release)
    monkeypatch.setattr(api, "_open", lambda *args, **kwargs: session)
    lines = api.Job("standin-job-1", driver="standin").logs(follow=True)
    started = time.monotonic()
    assert next(lines) == "epoch 1"  # within the 2 s the hosts are waited for, not after epoch 2
    assert time.monotonic() - started < 25
    release.set()
    assert list(lines) == ["epoch 2"]


def test_several_hosts_are_prefixed_when_followed(monkeypatch):
    release = threading.Event()
    release.set()
    session = stand_in_session([("algo-1", "a"), ("algo-2", "b"), ("algo-1", "c")], release)
    monkeypatch.setattr(api, "_open", lambda *args, **kwargs: session)
    assert list(api.Job("standin-job-2", driver="standin").logs(follow=True)) == [
        "[algo-1] a", "[algo-2] b", "[algo-1] c"]
