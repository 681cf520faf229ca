"""A model tag names one project's model; fetch never hands out the wrong model silently (issue 17,
items 1 and 2), on the local driver with a real Docker engine and the real `fahr` console script.

projA/i17tagsrc/train.py and projB/i17tagsrc/train.py share the tag i17tagsrc/train and the
output folder. Each job records the folder it was built from (and its git commit); `fahr fetch
TAG` run in projA fetches projA's model and says that a newer one came from projB; a newest job
that is not Completed is named in one line before the older model is fetched, or refused with
--strict (exit 1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from conftest import one_line_error, run_fahr

TAG = "i17tagsrc/train"

# Writes which project it is (its own copy says) into the model; fails when asked.
SCRIPT = textwrap.dedent("""\
    import json, sys
    from pathlib import Path
    ml = Path("/opt/ml")
    hp = json.loads((ml / "input/config/hyperparameters.json").read_text())
    if hp.get("fail") == "1":
        print("failing as asked", flush=True)
        sys.exit(1)
    (ml / "model").mkdir(parents=True, exist_ok=True)
    (ml / "model/model.json").write_text(json.dumps({"project": WHO}))
""")

GIT = ["git", "-c", "user.name=fahr tests", "-c", "user.email=tests@example.invalid", "-c", "commit.gpgsign=false"]


def _script(root: Path, project: str) -> Path:
    folder = root / project / "i17tagsrc"
    folder.mkdir(parents=True)
    (folder / "train.py").write_text(SCRIPT.replace("WHO", repr(project)))
    return folder / "train.py"


def _newest(out: Path) -> dict:
    return max((json.loads(p.read_text()) for p in out.glob("*/job.json")), key=lambda r: r["created"])


@pytest.fixture(scope="module")
def made(tmp_path_factory, docker_engine):
    """projA (a git work tree) fitted, then projB (none): one job each, in one output folder."""
    root = tmp_path_factory.mktemp("i17tag")
    out = root / "jobs"
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(out)}
    a, b = _script(root, "projA"), _script(root, "projB")
    subprocess.run([*GIT, "init", "-q", str(root / "projA")], check=True)
    subprocess.run([*GIT, "-C", str(root / "projA"), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(root / "projA"), "commit", "-q", "-m", "A"], check=True)
    commit = subprocess.run([*GIT, "-C", str(root / "projA"), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    jobs = {}
    for name, script in (("A", a), ("B", b)):
        run_fahr("fit", script, env=env, cwd=root, check=0)
        jobs[name] = _newest(out)["job_name"]
    return {"root": root, "out": out, "env": env, "jobs": jobs, "commit": commit,
            "A": (root / "projA" / "i17tagsrc").resolve(), "B": (root / "projB" / "i17tagsrc").resolve()}


def _fetch(made, cwd: Path, target: Path, *extra: str):
    return run_fahr("fetch", target, TAG, *extra, env=made["env"], cwd=cwd)


def _model(target: Path) -> str:
    return json.loads((target / "model.json").read_text())["project"]


def test_each_job_records_its_project_and_commit(made):
    rows = {row["job_name"]: row for row in json.loads(
        run_fahr("jobs", "--json", TAG, env=made["env"], cwd=made["root"], check=0).stdout)}
    assert rows[made["jobs"]["A"]]["project"] == str(made["A"])
    assert rows[made["jobs"]["A"]]["git_commit"] == made["commit"]
    assert rows[made["jobs"]["B"]]["project"] == str(made["B"])
    assert rows[made["jobs"]["B"]]["git_commit"] == ""  # projB is in no git work tree
    table = run_fahr("jobs", TAG, env=made["env"], cwd=made["root"], check=0).stdout
    assert "PROJECT" in table.splitlines()[0]
    line_a = next(line for line in table.splitlines() if line.startswith(made["jobs"]["A"]))
    assert f"projA/i17tagsrc @{made['commit'][:7]}" in line_a


def test_fetch_in_a_project_gets_its_model_and_names_the_newer_one(made, tmp_path):
    fetched = _fetch(made, made["root"] / "projA", tmp_path / "a")
    assert fetched.returncode == 0, fetched.stderr
    assert _model(tmp_path / "a") == "projA"  # not projB's, although projB's is newer
    notices = [line for line in fetched.stderr.splitlines() if "another folder" in line]
    assert len(notices) == 1, fetched.stderr
    assert made["jobs"]["B"] in notices[0] and str(made["B"]) in notices[0] and made["jobs"]["A"] in notices[0]
    # Run in the script's own folder, the project is that folder.
    here = _fetch(made, made["A"], tmp_path / "a-here")
    assert here.returncode == 0, here.stderr
    assert _model(tmp_path / "a-here") == "projA"
    # In projB: its own model, the newest; nothing to say about another folder.
    theirs = _fetch(made, made["root"] / "projB", tmp_path / "b")
    assert theirs.returncode == 0, theirs.stderr
    assert _model(tmp_path / "b") == "projB" and "another folder" not in theirs.stderr


def test_fetch_outside_any_project_gets_the_newest(made, tmp_path):
    elsewhere = made["root"] / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    fetched = _fetch(made, elsewhere, tmp_path / "m")
    assert fetched.returncode == 0, fetched.stderr
    assert _model(tmp_path / "m") == "projB"


def test_fetch_in_a_project_without_jobs_says_so_or_refuses(made, tmp_path):
    lonely = made["root"] / "projC" / "i17tagsrc"
    lonely.mkdir(parents=True)
    fetched = _fetch(made, made["root"] / "projC", tmp_path / "c")
    assert fetched.returncode == 0, fetched.stderr
    assert _model(tmp_path / "c") == "projB"
    assert f"no job of {TAG} was built from {lonely.resolve()}" in fetched.stderr
    strict = _fetch(made, made["root"] / "projC", tmp_path / "c-strict", "--strict")
    line = one_line_error(strict, 1)
    assert "--strict" in line and str(lonely.resolve()) in line
    assert not (tmp_path / "c-strict").exists()


def test_a_tag_asked_from_inside_its_project_names_the_tag_its_jobs_have(made, tmp_path):
    # Inside projA/i17tagsrc the script is `train.py`, so `train` is what a user types; the jobs
    # built there are tagged from the folder fit ran in. The error names their tag, exit 2, not
    # "train it first".
    inside = made["root"] / "projA" / "i17tagsrc"
    wrong = run_fahr("fetch", tmp_path / "w", "train", env=made["env"], cwd=inside)
    line = one_line_error(wrong, 2)
    assert "no completed job of 'train'" in line and f"tagged {TAG!r}" in line and f"fahr fetch TARGET {TAG}" in line
    assert not (tmp_path / "w").exists()
    right = _fetch(made, inside, tmp_path / "r")  # as the line says, from the same folder
    assert right.returncode == 0, right.stderr
    assert _model(tmp_path / "r") == "projA"


def test_jobs_filters_by_project(made):
    def listed(*args, cwd=made["root"]):
        return [row["job_name"] for row in json.loads(
            run_fahr("jobs", "--json", *args, env=made["env"], cwd=cwd, check=0).stdout)]

    assert listed("--project", made["A"]) == [made["jobs"]["A"]]
    assert listed("--project", "i17tagsrc", cwd=made["root"] / "projB") == [made["jobs"]["B"]]
    assert listed("--project", made["root"]) == []  # the parent of both built nothing itself
    missing = run_fahr("jobs", "--project", made["root"] / "nowhere", env=made["env"], cwd=made["root"])
    assert "is not a folder" in one_line_error(missing, 2)


def test_old_records_without_a_project_still_read(made):
    """A job.json of before (no project, no git_commit) lists, belongs to no project, and is
    fetched like any job outside one."""
    old = made["out"] / "i17tag-old-record"
    shutil.copytree(made["out"] / made["jobs"]["B"], old)
    record = json.loads((old / "job.json").read_text())
    for key in ("project", "git_commit"):
        record.pop(key)
    record.update(job_name=old.name, created=record["created"] - 3600)
    (old / "job.json").write_text(json.dumps(record))
    try:
        rows = {row["job_name"]: row for row in json.loads(
            run_fahr("jobs", "--json", TAG, env=made["env"], cwd=made["root"], check=0).stdout)}
        assert rows[old.name]["project"] == "" and rows[old.name]["git_commit"] == ""
        assert old.name not in [row["job_name"] for row in json.loads(run_fahr(
            "jobs", "--json", "--project", made["B"], env=made["env"], cwd=made["root"], check=0).stdout)]
    finally:
        shutil.rmtree(old)


@pytest.fixture(scope="module")
def failed_in_a(made):
    """projA fitted again, failing: the newest job of projA (and of the tag) is Failed."""
    run_fahr("fit", made["A"] / "train.py", "--hp", "fail=1", env=made["env"], cwd=made["root"], check=1)
    made["jobs"]["A-failed"] = _newest(made["out"])["job_name"]
    return made


def test_a_newest_job_that_failed_is_named_then_the_older_model_fetched(failed_in_a, tmp_path):
    made = failed_in_a
    fetched = _fetch(made, made["root"] / "projA", tmp_path / "a")
    assert fetched.returncode == 0, fetched.stderr
    assert _model(tmp_path / "a") == "projA"
    notice = [line for line in fetched.stderr.splitlines() if made["jobs"]["A-failed"] in line]
    assert len(notice) == 1 and "is Failed" in notice[0] and made["jobs"]["A"] in notice[0], fetched.stderr
    strict = _fetch(made, made["root"] / "projA", tmp_path / "strict", "--strict")
    line = one_line_error(strict, 1)
    assert made["jobs"]["A-failed"] in line and "Failed" in line and "--strict" in line
    assert not (tmp_path / "strict").exists()
    # Outside any project, the tag's newest job is the failed one: said, then projB's model.
    elsewhere = made["root"] / "elsewhere2"
    elsewhere.mkdir()
    outside = _fetch(made, elsewhere, tmp_path / "any")
    assert outside.returncode == 0, outside.stderr
    assert _model(tmp_path / "any") == "projB"
    assert f"the newest job of {TAG}, {made['jobs']['A-failed']}, is Failed" in outside.stderr
    # --job is what the user asked for: no notice, no refusal.
    named = _fetch(made, elsewhere, tmp_path / "named", "--job", made["jobs"]["A"], "--strict")
    assert named.returncode == 0, named.stderr
    assert _model(tmp_path / "named") == "projA" and "Failed" not in named.stderr


def test_a_newest_job_in_progress_is_named_too(failed_in_a, tmp_path):
    """A job still running (its record InProgress, newest) is named as such; --strict refuses."""
    made = failed_in_a
    running = made["out"] / "i17tag-running"
    shutil.copytree(made["out"] / made["jobs"]["B"], running)
    shutil.rmtree(running / "output", ignore_errors=True)
    record = json.loads((running / "job.json").read_text())
    record.update(job_name=running.name, status="InProgress", secondary_status="Training", created=time.time())
    for key in ("ended", "model_artifact", "output_artifact"):
        record.pop(key, None)
    (running / "job.json").write_text(json.dumps(record))
    try:
        fetched = _fetch(made, made["root"] / "projB", tmp_path / "b")
        assert fetched.returncode == 0, fetched.stderr
        assert _model(tmp_path / "b") == "projB"
        notice = [line for line in fetched.stderr.splitlines() if running.name in line]
        assert len(notice) == 1 and f"{running.name}, is InProgress" in notice[0], fetched.stderr
        assert notice[0].endswith(f"fetching the newest Completed one built from {made['B']}, job {made['jobs']['B']}")
        strict = _fetch(made, made["root"] / "projB", tmp_path / "strict", "--strict")
        assert "is InProgress" in one_line_error(strict, 1)
    finally:
        shutil.rmtree(running)


def test_the_python_api_has_the_same_choice(failed_in_a, tmp_path, monkeypatch):
    import fahr_core
    from fahr_core.errors import FahrError

    made = failed_in_a
    monkeypatch.setenv("FAHR_LOCAL_OUTPUT_PATH", str(made["out"]))
    monkeypatch.chdir(made["root"] / "projA")
    fahr_core.fetch(tmp_path / "api", TAG, quiet=True)
    assert _model(tmp_path / "api") == "projA"
    with pytest.raises(FahrError) as refused:
        fahr_core.fetch(tmp_path / "api-strict", TAG, strict=True, quiet=True)
    assert refused.value.exit_code == 1 and made["jobs"]["A-failed"] in str(refused.value)
    assert not (tmp_path / "api-strict").exists()
    assert [job.name for job in fahr_core.jobs(TAG, project=made["B"])] == [made["jobs"]["B"]]
    assert fahr_core.job(made["jobs"]["A"]).project == str(made["A"])


# -- the project and commit a job records: unit tests on the real filesystem and the real git ------

def test_git_commit_of_a_work_tree_clean_and_dirty(tmp_path):
    from fahr_core import provenance

    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "train.py").write_text("print(1)\n")
    assert provenance.git_commit(repo / "src") == ""  # no work tree yet
    subprocess.run([*GIT, "init", "-q", str(repo)], check=True)
    assert provenance.git_commit(repo / "src") == ""  # a work tree without a commit
    subprocess.run([*GIT, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*GIT, "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert provenance.git_commit(repo / "src") == head
    (repo / "new.txt").write_text("untracked files do not make it dirty")
    assert provenance.git_commit(repo / "src") == head
    (repo / "src" / "train.py").write_text("print(2)\n")
    assert provenance.git_commit(repo / "src") == f"{head}-dirty"
    assert not (repo / ".git" / "index.lock").exists()


def test_no_git_is_no_commit_and_no_failure(tmp_path, monkeypatch):
    from fahr_core import provenance

    monkeypatch.setenv("PATH", str(tmp_path))  # no git on it
    assert provenance.git_commit(tmp_path) == ""
    broken = tmp_path / "git"
    broken.write_text("#!/bin/sh\nexit 7\n")
    broken.chmod(0o755)
    assert provenance.git_commit(tmp_path) == ""


def test_the_project_a_fetch_means(tmp_path):
    from fahr_core import provenance

    (tmp_path / "projA" / "src").mkdir(parents=True)
    (tmp_path / "My Proj").mkdir()
    real = str((tmp_path / "projA" / "src").resolve())
    assert provenance.project_of_fetch(tmp_path / "projA", "src/train") == real  # the folder the tag names
    assert provenance.project_of_fetch(tmp_path / "projA" / "src", "src/train") == real  # that folder itself
    assert provenance.project_of_fetch(tmp_path / "projA", "other/train") is None  # a folder of no such tag
    assert provenance.project_of_fetch(tmp_path / "My Proj", "my-proj/train") == str((tmp_path / "My Proj").resolve())
    (tmp_path / "日本").mkdir()
    assert provenance.project_of_fetch(tmp_path / "日本", "src/train") is None  # a name that makes no tag
    os.symlink(tmp_path / "projA", tmp_path / "link")
    assert provenance.project_of_fetch(tmp_path / "link", "src/train") == real  # links resolved, as jobs record it
    # The tag's part is the folder's name cleaned up: `RfollowCase/` is tagged `rfollowcase/…`,
    # `Ünits Src/` `units-src/…` (a fetch from their parent found no project and fell back to any
    # folder's newest model, silently, even with --strict).
    (tmp_path / "p1" / "RfollowCase").mkdir(parents=True)
    (tmp_path / "p1" / "Ünits Src").mkdir()
    assert provenance.project_of_fetch(tmp_path / "p1", "rfollowcase/train") == str((tmp_path / "p1" / "RfollowCase").resolve())
    assert provenance.project_of_fetch(tmp_path / "p1", "units-src/train") == str((tmp_path / "p1" / "Ünits Src").resolve())
    (tmp_path / "p1" / "rfollowCASE").mkdir()  # two folders of one tag part: no one project
    assert provenance.project_of_fetch(tmp_path / "p1", "rfollowcase/train") is None


# -- the choice against drivers of before plugin API 1.4 (in-process, a stand-in driver) ----------

class _Driver:
    """A driver's list_jobs as one before plugin API 1.4 answers: filters by tag, status and
    limit, ignores JobQuery.project and reports no project."""

    def __init__(self, infos, lists=True):
        from types import SimpleNamespace

        self.infos, self.queries = infos, []
        self.driver = "old"
        self.pm = SimpleNamespace(hook=SimpleNamespace(list_jobs=SimpleNamespace(
            get_hookimpls=lambda: [object()] if lists else [])))

    def call(self, hook, query):
        assert hook == "list_jobs"
        self.queries.append(query)
        found = [i for i in self.infos if i.model_tag == query.model_tag and query.status in (None, i.status)]
        return found[:query.limit]


def _info(name, status):
    from fahr_core import JobInfo

    return JobInfo(job_name=name, model_tag="src/train", driver="old", status=status)


def test_a_driver_before_1_4_gets_the_newest_completed_and_no_project_line(tmp_path, capsys):
    from fahr_core import api

    (tmp_path / "src").mkdir()  # a project the tag names: the old driver cannot tell it
    driver = _Driver([_info("new-failed", "Failed"), _info("older-ok", "Completed")])
    assert api._choose(driver, "src/train", tmp_path, strict=False) == "older-ok"
    said = capsys.readouterr().err
    assert "new-failed, is Failed; fetching the newest Completed one, job older-ok" in said
    assert "built from" not in said and "another folder" not in said
    assert all(query.limit == 1 for query in driver.queries)  # never a listing of every job
    assert api._choose(_Driver([], lists=False), "src/train", tmp_path, strict=True) is None  # the driver's own choice
    assert api._choose(_Driver([_info("only-failed", "Failed")]), "src/train", tmp_path, strict=True) is None
