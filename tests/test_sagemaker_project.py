"""A model tag names one project's model on the sagemaker driver too (issue 17, item 2), against
the emulated AWS: the project and commit a job was built from go to its training-job Tags and come
back through sagemaker:Search; `fahr fetch TAG` in a project fetches that project's model.

projB's folder is longer than a tag value holds and has characters a tag refuses: it is stored
shortened (with its hash) and still filtered and chosen exactly.
"""

from __future__ import annotations

import json

import pytest

from aws_emulator.fixtures import job_name_of, run_fahr, sagemaker_args, write_model

pytestmark = pytest.mark.docker

TAG = "i17tagsm/train"

SCRIPT = """\
import json
from pathlib import Path
Path("/opt/ml/model").mkdir(parents=True, exist_ok=True)
Path("/opt/ml/model/model.json").write_text(json.dumps({"project": WHO}))
"""


@pytest.fixture(scope="module")
def made(stack, tmp_path_factory):
    """projA's job, then projB's (a long odd folder), both of i17tagsm/train."""
    root = tmp_path_factory.mktemp("i17tagsm")
    long_b = root / "projB (copy), ~odd" / ("deep" * 20) / ("deeper" * 20) / "projB"
    projects = {"A": root / "projA", "B": long_b}
    jobs = {}
    for name, folder in projects.items():
        script = write_model(folder, "i17tagsm", SCRIPT.replace("WHO", repr(name)))
        result = run_fahr(stack, "fit", str(script), *sagemaker_args("i17tag"), cwd=root)
        assert result.code == 0, result.output
        jobs[name] = job_name_of(result)
    assert len(str(long_b / "i17tagsm")) > 256
    return {"root": root, "jobs": jobs, "projects": {k: (v / "i17tagsm").resolve() for k, v in projects.items()}}


def _rows(stack, made, *args):
    result = run_fahr(stack, "jobs", "--json", TAG, *args, *sagemaker_args("i17tag"), cwd=made["root"])
    assert result.code == 0, result.output
    return {row["job_name"]: row for row in json.loads(result.stdout)}


def test_the_project_goes_to_the_tags_and_comes_back(stack, made):
    rows = _rows(stack, made)
    assert rows[made["jobs"]["A"]]["project"] == str(made["projects"]["A"])
    shortened = rows[made["jobs"]["B"]]["project"]  # too long for a tag: its hash and its end
    assert shortened.startswith("=") and len(shortened) <= 256 and shortened.endswith("/projB/i17tagsm")
    for name in ("A", "B"):
        only = _rows(stack, made, "--project", str(made["projects"][name]))
        assert list(only) == [made["jobs"][name]], only


def test_fetch_in_a_project_gets_its_model(stack, made, tmp_path):
    fetched = run_fahr(stack, "fetch", str(tmp_path / "a"), TAG, *sagemaker_args("i17tag"),
                       cwd=made["root"] / "projA")
    assert fetched.code == 0, fetched.output
    assert json.loads((tmp_path / "a" / "model.json").read_text())["project"] == "A"
    notices = [line for line in fetched.stderr.splitlines() if "another folder" in line]
    assert len(notices) == 1 and made["jobs"]["B"] in notices[0], fetched.output
    theirs = run_fahr(stack, "fetch", str(tmp_path / "b"), TAG, *sagemaker_args("i17tag"),
                      cwd=made["projects"]["B"].parent)
    assert theirs.code == 0, theirs.output
    assert json.loads((tmp_path / "b" / "model.json").read_text())["project"] == "B"
    assert "another folder" not in theirs.stderr
