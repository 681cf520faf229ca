"""``FetchContract``: fetch finds the right job and writes only where it is told; the driver
claims only its own locations."""

from __future__ import annotations

import json
import uuid

from fahr_core.names import JOB_NAME
from fahr_core.testing.fixtures import MODEL_TAG, OTHER_FOLDER
from fahr_core.testing.harness import _job_name, _show


class FetchContract:
    """Fetch finds the right job and writes only where it is told; claims are the driver's own."""

    def test_job_names_are_unique_and_fetch_takes_the_newest(self, fahr, trained, model_script, workspace,
                                                            fetch_location):
        """Tag A completes, then tag B, then tag A fails: fetch of A without --job gets A's
        completed job (not B's newer model, not A's newer failed job, not A's older one)."""
        token = uuid.uuid4().hex
        result = fahr("fit", model_script, "--hp", "mode=ok", "--hp", f"token={token}")
        assert result.returncode == 0, _show(result)
        job = _job_name(result)
        assert job != trained["job"] and JOB_NAME.match(job)
        other = fahr("fit", str(workspace / OTHER_FOLDER / "train.py"), "--hp", "mode=ok", "--hp", "token=other")
        assert other.returncode == 0, _show(other)
        failing = fahr("fit", model_script, "--hp", "mode=fail", "--hp", "token=newer-failure")
        assert failing.returncode == 1, _show(failing)
        assert len({job, _job_name(other), _job_name(failing), trained["job"]}) == 4
        target = workspace / "fetched-newest"
        fetched = self.fetch(fahr, fetch_location, target)
        assert fetched.returncode == 0, _show(fetched)
        got = json.loads((target / "report.json").read_text())["hyperparameters"]["token"]
        assert got == token, f"fetch of {MODEL_TAG} without --job got the model of {got!r}, not of job {job}"

    def test_fetch_refuses_a_non_empty_target(self, fahr, trained, workspace, fetch_location):
        target = workspace / "occupied"
        target.mkdir()
        (target / "keep.txt").write_text("mine")
        fetched = self.fetch(fahr, fetch_location, target, trained["job"])
        assert fetched.returncode == 2, _show(fetched)
        assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
        assert (target / "keep.txt").read_text() == "mine"

    def test_fetch_never_writes_outside_the_target(self, fahr, model_script, workspace, fetch_location):
        result = fahr("fit", model_script, "--hp", "mode=link", "--hp", "token=link")
        assert result.returncode == 0, _show(result)
        target = workspace / "fetched-links"
        fetched = self.fetch(fahr, fetch_location, target, _job_name(result))
        assert fetched.returncode in (0, 2), _show(fetched)
        for path in target.rglob("*") if target.exists() else []:
            assert path.resolve().is_relative_to(target.resolve()), f"{path} leads outside {target}"
        if fetched.returncode == 2:  # the core refused the model: nothing may have been written
            assert "fahr error: refusing the model" in fetched.stderr, _show(fetched)
            assert not target.exists(), _show(fetched)

    def test_the_driver_claims_no_foreign_location(self, driver_session, foreign_locations):
        for location in ["nosuch://bucket/x", *foreign_locations]:
            assert not driver_session.claims(location), f"the driver claims {location}, which is not its own"
