"""``StopContract``: ``fahr stop`` asks the job to end (SIGTERM) and gives it time before
forcing it."""

from __future__ import annotations

import time
import uuid

import pytest

from fahr_core.testing.fixtures import _tar_members
from fahr_core.testing.harness import _job_name, _show, job_names


class StopContract:
    """``fahr stop`` asks the job to end (SIGTERM) and gives it time before forcing it."""

    def test_stop_ends_a_running_job_stopped(self, fahr, model_script, supports_stop, driver_session, read_artifact):
        if not supports_stop:
            pytest.skip("the driver does not support stop")
        token = uuid.uuid4().hex
        stops = []

        def stop(_line, run):  # the model has installed its SIGTERM handler: stop it from elsewhere
            names = job_names(run.stderr_so_far())
            stops.append(fahr("stop", names[-1]) if names else None)

        # Attached, so the model's "sleeping" line says when its SIGTERM handler is in place.
        run = fahr.live("fit", model_script, "--hp", "mode=sleep", "--hp", f"token={token}",
                        until="sleeping until stopped", on_line=stop, patience=300)
        assert run.triggered, "the model's first lines never reached fahr's stdout\n" + _show(run)
        assert stops and stops[0] is not None, "fahr printed no job name before the job's logs\n" + _show(run)
        stopped = stops[0]
        assert stopped.returncode == 0, _show(stopped)
        job = _job_name(run)
        assert run.returncode == 1 and "stopped" in run.stderr.lower(), _show(run)
        started = time.monotonic()
        waited = fahr("wait", job)
        assert waited.returncode == 1, _show(waited)
        assert "stopped" in waited.stderr.lower(), _show(waited)
        assert time.monotonic() - started < 120
        # The marker the SIGTERM handler saved after SIGTERM_WORK_SECONDS comes back: in the logs,
        # or in the output data. A SIGKILL (or too short a grace period) loses both.
        marker = f"conformance model: SIGTERM received {token}"
        if marker in run.stdout or marker in waited.stdout:
            return
        result = driver_session.wait(job)
        members = _tar_members(read_artifact(result.output_artifact)) if result.output_artifact else {}
        assert members.get("stopped.txt") == f"SIGTERM {token}".encode(), (
            "the model's SIGTERM handler never finished: the job was killed without the grace period "
            f"of a SIGTERM then SIGKILL after a timeout\n{_show(run)}\n{_show(waited)}")
