"""`fit` never harms the project folder: `--fetch` may not land on the project, on a folder that
holds it, or on the driver's output folder; replacing a fetch folder and regenerating the
Dockerfile are two flags. Through the real `fahr` command.

The refusals come before anything runs: no image is built and no job folder appears (the local
driver's output folder stays absent), so these need no Docker engine.
"""

import hashlib
import json

import pytest

from conftest import run_fahr

ONE_LINE = "expected exactly one line on stderr"


def snapshot(folder):
    """Every file under ``folder`` with its content's digest: what 'nothing changed' compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def project(model_dir):
    """The example project with the user's own notes and Dockerfile beside the script."""
    (model_dir / "notes.md").write_text("my notes: irreplaceable\n")
    (model_dir / "Dockerfile").write_text('FROM python:3.11-slim\nCOPY train.py /t.py\nENTRYPOINT ["python", "/t.py"]\n')
    return model_dir


def refused(result, *words):
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (ONE_LINE, result.stderr)
    assert lines[0].startswith("fahr error: ") and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "building image" not in result.stderr and "launching job" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("where", ["itself", "symlinked alias", "parent", "grandparent"])
def test_fetch_into_the_project_or_a_folder_holding_it_is_refused(project, jobs_dir, tmp_path, where):
    before = snapshot(tmp_path)
    if where == "symlinked alias":
        alias = tmp_path / "alias"
        alias.symlink_to(project, target_is_directory=True)
        before = snapshot(tmp_path)
        fetch = alias
    else:
        fetch = {"itself": project, "parent": project.parent, "grandparent": project.parent.parent}[where]
    # --overwrite is what made it destructive: before, this replaced train.py and notes.md.
    result = run_fahr("fit", project / "train.py", "--train-driver", "local", "--fetch", fetch, "--overwrite")
    refused(result, "--fetch", str(project), "choose another folder")
    assert not jobs_dir.exists()  # nothing was launched
    assert snapshot(tmp_path) == before


def test_fetch_through_a_symlinked_script_path_is_refused_too(project, jobs_dir, tmp_path):
    alias = tmp_path / "alias"
    alias.symlink_to(project, target_is_directory=True)
    before = snapshot(project)
    result = run_fahr("fit", alias / "train.py", "--train-driver", "local", "--fetch", project, "--overwrite")
    refused(result, str(project))
    assert snapshot(project) == before and not jobs_dir.exists()


def test_a_folder_inside_the_project_is_not_refused_for_being_there(project, jobs_dir):
    # `--fetch my-model/model` is the natural place for a model: only its emptiness is checked.
    (project / "model").mkdir()
    (project / "model" / "old.txt").write_text("old model\n")
    result = run_fahr("fit", project / "train.py", "--train-driver", "local", "--fetch", project / "model")
    refused(result, "is not empty", "--overwrite")
    assert "project" not in result.stderr


@pytest.mark.parametrize("where", ["the output folder", "a job's folder in it", "a folder holding it"])
def test_fetch_into_the_default_output_folder_is_refused(project, tmp_path, monkeypatch, where):
    # The local driver's default output_path: $XDG_DATA_HOME/fahr/jobs.
    monkeypatch.delenv("FAHR_LOCAL_OUTPUT_PATH", raising=False)
    data = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    jobs = data / "fahr" / "jobs"
    fetch = {"the output folder": jobs, "a job's folder in it": jobs / "hello-train-20260101-000000-abcd",
             "a folder holding it": data}[where]
    before = snapshot(project)
    result = run_fahr("fit", project / "train.py", "--train-driver", "local", "--fetch", fetch, "--overwrite")
    refused(result, "output folder", str(jobs))
    assert not data.exists()  # no job was made, and the refusal made no folder either
    assert snapshot(project) == before


def test_fetch_into_a_configured_output_folder_is_refused(project, tmp_path, monkeypatch):
    monkeypatch.delenv("FAHR_LOCAL_OUTPUT_PATH", raising=False)
    jobs = tmp_path / "store" / "jobs"
    (tmp_path / "link").symlink_to(tmp_path / "store", target_is_directory=True)
    for fetch in (jobs / "x", tmp_path / "store", tmp_path / "link" / "jobs"):
        result = run_fahr("fit", project / "train.py", "--train-driver", "local",
                          f"--config.output_path={jobs}", "--fetch", fetch)
        refused(result, "output folder", "config.output_path")
    assert not jobs.exists()


def test_overwrite_without_fetch_is_refused_and_names_the_regenerate_flag(project, jobs_dir):
    before = snapshot(project)
    result = run_fahr("fit", project / "train.py", "--train-driver", "local", "--overwrite")
    line = refused(result)
    assert line == ("fahr error: --overwrite replaces a non-empty --fetch folder; "
                    "to regenerate the Dockerfile pass --regenerate-dockerfile")
    assert snapshot(project) == before and not jobs_dir.exists()


def test_fit_help_documents_the_two_flags():
    result = run_fahr("fit", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--regenerate-dockerfile" in text and "Dockerfile.bak" in text
    assert "--overwrite With --fetch: replace a non-empty DIR." in text


@pytest.mark.docker
def test_overwrite_replaces_a_non_empty_fetch_folder_inside_the_project(docker_engine, project, jobs_dir):
    # One real job: --overwrite now means the fetch folder only. The user's Dockerfile is kept
    # (no --regenerate-dockerfile), and the script and notes beside the fetch folder are intact.
    out = project / "model"
    out.mkdir()
    (out / "stale.txt").write_text("from last week\n")
    mine = snapshot(project)
    result = run_fahr("fit", project / "train.py", "--train-driver", "local", "--fetch", out, "--overwrite",
                      "--hp", "slope=3")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["model.json"]
    assert abs(json.loads((out / "model.json").read_text())["slope"] - 3) < 0.1
    after = snapshot(project)
    assert {k: v for k, v in after.items() if not k.startswith("model/")} == \
        {k: v for k, v in mine.items() if not k.startswith("model/")}
    assert not (project / "Dockerfile.bak").exists()


def test_the_project_is_spared_on_the_sagemaker_driver_too(project, tmp_path):
    # Checked before any AWS call (none could answer here): the rule does not depend on the driver.
    before = snapshot(project)
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = run_fahr("fit", project / "train.py", "--train-driver", "sagemaker", "--config.output_path=s3://b/models",
                      "--config.role_name=r", "--fetch", project.parent, "--overwrite", env=env, timeout=120)
    refused(result, "holds the project", str(project))
    assert snapshot(project) == before
