"""Bring your own container: ``fahr fit DIR`` and ``fahr fit DIR/Dockerfile``.

The user's Dockerfile is built as it is (examples/byoc/container, copied into a temporary folder),
the image has no ENTRYPOINT and a ``train`` program on its PATH, and both the ``local`` driver and
the emulated ``sagemaker`` start it as ``IMAGE train``. The real ``fahr`` command throughout, on
the real engine: one image build for the local tests (the later fits hit the build cache).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, one_line_error, run_fahr

EXAMPLE = ROOT / "examples" / "byoc" / "container"
TAG = "byoc/container"
# Two files of the `training` channel: 1+2+3+4 = 10, so scale=2.5 gives 25.
NUMBERS = {"a.txt": "1 2\n3\n", "b.txt": "4\n"}
# Beside the Dockerfile, never run: the folder is a container, not a script's project.
DECOY = "raise SystemExit('train.py must not run in a container of your own')\n"
SECRETS = {".env": "API_KEY=hunter2\n", "id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\n"}


def _copy_example(root: Path) -> Path:
    folder = root / "byoc" / "container"
    shutil.copytree(EXAMPLE, folder)
    return folder


def _model(folder: Path) -> dict:
    return json.loads((folder / "model.json").read_text())


@pytest.fixture(scope="module")
def byoc(tmp_path_factory):
    """The example container (with a train.py decoy and two secrets beside it), its channel data
    and a job folder, shared by the module's local tests."""
    root = tmp_path_factory.mktemp("byoc")
    folder = _copy_example(root)
    (folder / "train.py").write_text(DECOY)
    for name, text in SECRETS.items():
        (folder / name).write_text(text)
    data = root / "numbers"
    data.mkdir()
    for name, text in NUMBERS.items():
        (data / name).write_text(text)
    return {"root": root, "folder": folder, "data": data, "jobs": root / "jobs"}


def _fit_local(byoc, artifact, *args):
    return run_fahr("fit", artifact, f"--config.output_path={byoc['jobs']}", *args, cwd=byoc["root"])


@pytest.fixture(scope="module")
def folder_fit(byoc, docker_engine):
    """``fahr fit DIR`` once, fetching the model: the module's one real image build."""
    out = byoc["root"] / "model-from-folder"
    proc = _fit_local(byoc, byoc["folder"], "--input", f"training={byoc['data']}", "--hp", "scale=2.5",
                      "--fetch", out)
    return proc, out


# -- on local --------------------------------------------------------------------------------------


@pytest.mark.docker
def test_fit_of_the_folder_builds_it_as_is_and_trains(byoc, folder_fit, docker_engine):
    proc, out = folder_fit
    assert proc.returncode == 0, proc.stderr
    assert _model(out) == {"count": 4, "sum": 25.0}  # from the channel and the hyperparameter
    assert "summed 4 numbers, scale 2.5: 25.0" in proc.stdout  # train's own log, streamed
    # Not rebuilt when an earlier run built this very folder's content.
    assert (f"building image {TAG}:latest from {byoc['folder'] / 'Dockerfile'}" in proc.stderr
            or f"image {TAG}:latest is up to date (nothing it is built from changed)" in proc.stderr)
    assert "wrote Dockerfile" not in proc.stderr
    assert (byoc["folder"] / "Dockerfile").read_text() == (EXAMPLE / "Dockerfile").read_text()
    assert not (byoc["folder"] / ".dockerignore").exists()  # nothing written into the user's folder
    # fahr's launcher is not in it: the image runs `train` from its PATH, with no entrypoint.
    config = docker_engine.images.get(f"{TAG}:latest").attrs["Config"]
    assert not config.get("Entrypoint"), config
    assert f"fahr fetch ./model {TAG} " in proc.stderr  # the tag, as the printed fetch command says
    again = run_fahr("fetch", byoc["root"] / "fetched-by-tag", TAG, byoc["jobs"], cwd=byoc["root"])
    assert again.returncode == 0, again.stderr
    assert _model(byoc["root"] / "fetched-by-tag") == {"count": 4, "sum": 25.0}


@pytest.mark.docker
def test_no_secret_of_the_folder_is_in_the_image(byoc, folder_fit, docker_engine):
    proc, _ = folder_fit
    assert proc.returncode == 0, proc.stderr
    assert "kept 2 secret files out of the image: .env, id_rsa" in proc.stderr
    # The example copies its whole folder: the secrets would be in /opt/program if they had been sent.
    listing = docker_engine.containers.run(f"{TAG}:latest", ["ls", "-A", "/opt/program"], remove=True)
    files = set(listing.decode().split())
    assert {"Dockerfile", "train", "train.py"} <= files, files
    assert not files & set(SECRETS), files


@pytest.mark.docker
def test_fit_of_the_dockerfile_is_the_same_container(byoc, folder_fit, docker_engine):
    """DIR/Dockerfile, beside a train.py, is still the user's container (the train.py never runs);
    a base_image set for the run is not used, and fahr says so."""
    first, _ = folder_fit
    assert first.returncode == 0, first.stderr
    image = docker_engine.images.get(f"{TAG}:latest").id
    out = byoc["root"] / "model-from-dockerfile"
    proc = _fit_local(byoc, byoc["folder"] / "Dockerfile", "--input", f"training={byoc['data']}",
                      "--hp", "scale=-1", "--config.base_image=python:3.12-slim", "--fetch", out)
    assert proc.returncode == 0, proc.stderr
    assert _model(out) == {"count": 4, "sum": -10.0}
    assert "config base_image=python:3.12-slim is not used" in proc.stderr
    assert docker_engine.images.get(f"{TAG}:latest").id == image  # the same build, from the cache
    assert f"fahr fetch ./model {TAG} " in proc.stderr


@pytest.mark.docker
@pytest.mark.parametrize("args,reason", [
    (["--hp", "scale=lots"], "hyperparameter scale='lots' is not a number"),
    ([], "channel 'training' is missing or empty: pass --input training=PATH"),
])
def test_bad_input_fails_the_job_with_the_failure_file_as_reason(byoc, folder_fit, args, reason):
    first, _ = folder_fit
    assert first.returncode == 0, first.stderr
    channel = [] if not args else ["--input", f"training={byoc['data']}"]
    line = one_line_error_of_failed_job(_fit_local(byoc, byoc["folder"], *channel, *args))
    assert line.startswith("fahr error: job byoc-container-"), line
    assert line.endswith(f": {reason}"), line


def one_line_error_of_failed_job(proc) -> str:
    """A failed job's exit (1) and its one error line (status lines precede it on stderr)."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fahr error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


# -- what is refused, before anything is built -----------------------------------------------------


def _fit_recorded(tmp_path, artifact, *args):
    """``fahr fit`` on the test driver, which records every step it is asked to do."""
    return run_fahr("fit", artifact, "--train-driver", "testdrv", f"--config.record_dir={tmp_path / 'rec'}", *args,
                    cwd=tmp_path)


def _nothing_built(tmp_path) -> bool:
    return not (tmp_path / "rec" / "steps.jsonl").exists()


def test_a_folder_without_dockerfile_is_one_line(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    line = one_line_error(_fit_recorded(tmp_path, folder), 2)
    assert line == (f"fahr error: {folder} has no Dockerfile; pass a train.py or a notebook (.ipynb), "
                    "or add a Dockerfile whose image has a 'train' program on its PATH")
    assert _nothing_built(tmp_path)
    assert sorted(folder.iterdir()) == []


@pytest.mark.parametrize("script", ["train.py", "train.ipynb"])
def test_a_script_folder_without_dockerfile_names_the_script_to_pass(tmp_path, script):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / script).write_text("print('hi')\n")
    line = one_line_error(_fit_recorded(tmp_path, folder), 2)
    assert line == (f"fahr error: {folder} has no Dockerfile; to train its {script} pass the script: "
                    f"fahr fit {folder / script}")
    assert _nothing_built(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [script]  # no Dockerfile written


def test_a_folder_whose_dockerfile_fahr_wrote_names_the_script(tmp_path):
    """`fahr init my-model && fahr fit my-model`: the Dockerfile is fahr's, for train.py; building it
    as a container would give the same image another tag (tmp/my-model, not my-model/train)."""
    from fahr_core.image import dockerfile_text

    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "train.py").write_text("print('hi')\n")
    (folder / "Dockerfile").write_text(dockerfile_text("train.py", "python:3.11-slim", False))
    line = one_line_error(_fit_recorded(tmp_path, folder), 2)
    assert line.startswith(f"fahr error: {folder / 'Dockerfile'} was written by fahr for a script: "
                           f"pass the script, fahr fit {folder / 'train.py'}"), line
    assert _nothing_built(tmp_path)
    # Pointing at that Dockerfile is choosing it: it is built as a container of one's own.
    proc = _fit_recorded(tmp_path, folder / "Dockerfile")
    assert proc.returncode == 0, proc.stderr
    built = [json.loads(s) for s in (tmp_path / "rec" / "steps.jsonl").read_text().splitlines()][0]
    from fahr_core.names import container_image_tag

    assert (built["step"], built["model_tag"]) == ("build_image", container_image_tag(folder))
    assert built["model_tag"].endswith("/my-model")


@pytest.mark.parametrize("form", ["folder", "dockerfile"])
def test_regenerate_dockerfile_is_refused_for_ones_own_container(tmp_path, form):
    folder = _copy_example(tmp_path)
    artifact = folder if form == "folder" else folder / "Dockerfile"
    line = one_line_error(_fit_recorded(tmp_path, artifact, "--regenerate-dockerfile"), 2)
    assert line == (f"fahr error: --regenerate-dockerfile: {folder / 'Dockerfile'} is your own container's "
                    "Dockerfile, which fahr builds as it is and never rewrites; drop the flag (it is for "
                    "the Dockerfile fahr writes beside a train.py)")
    assert _nothing_built(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["Dockerfile", "train"]


def test_other_file_names_are_not_containers(tmp_path):
    folder = _copy_example(tmp_path)
    shutil.copy(folder / "Dockerfile", folder / "Dockerfile.gpu")
    line = one_line_error(_fit_recorded(tmp_path, folder / "Dockerfile.gpu"), 2)
    assert "a folder holding a Dockerfile (or that Dockerfile)" in line, line
    assert _nothing_built(tmp_path)


# -- the tag, the build context and the Python API (the test driver: no engine) -------------------


@pytest.mark.parametrize("form", ["folder", "folder/", "dockerfile", "relative"])
def test_both_forms_give_the_folders_tag_and_its_dockerfile(tmp_path, form):
    folder = _copy_example(tmp_path)
    artifact = {"folder": str(folder), "folder/": f"{folder}/", "dockerfile": str(folder / "Dockerfile"),
                "relative": "byoc/container"}[form]
    proc = _fit_recorded(tmp_path, artifact)
    assert proc.returncode == 0, proc.stderr
    steps = [json.loads(s) for s in (tmp_path / "rec" / "steps.jsonl").read_text().splitlines()]
    assert (steps[0]["step"], steps[0]["model_tag"], steps[0]["dockerfile"]) == (
        "build_image", TAG, str(folder.resolve() / "Dockerfile"))


def test_a_folder_name_with_a_dot_is_kept_whole():
    from fahr_core import names

    assert names.container_image_tag(Path("/x/byoc/container")) == TAG
    assert names.container_image_tag(Path("/x/Team Models/my.model")) == "team-models/my.model"
    assert names.model_image_tag(Path("/x/byoc/container.py")) == TAG  # a script's stem, as before


def test_the_build_context_says_it_is_the_users_container(tmp_path):
    from fahr_core import image

    folder = _copy_example(tmp_path)
    artifact = image.check_artifact(folder)
    assert artifact == folder.resolve() / "Dockerfile" and image.is_container(artifact)
    context = image.prepare_context(artifact, TAG, "python:3.11-slim", overwrite=False)
    assert context.user_container is True
    assert (context.context_dir, context.dockerfile) == (folder.resolve(), folder.resolve() / "Dockerfile")
    script = tmp_path / "proj" / "train.py"
    script.parent.mkdir()
    script.write_text("print('hi')\n")
    assert image.prepare_context(image.check_artifact(script), "proj/train", "python:3.11-slim",
                                 overwrite=False).user_container is False


def test_the_python_api_fits_a_folder(tmp_path):
    import fahr_core

    folder = _copy_example(tmp_path)
    job = fahr_core.fit(folder, driver="testdrv", config={"record_dir": str(tmp_path / "rec")},
                        hyperparameters={"scale": 2}, quiet=True)
    assert (job.model_tag, job.status) == (TAG, "Completed")
    with pytest.raises(fahr_core.UsageError, match="has no Dockerfile"):
        fahr_core.fit(tmp_path, driver="testdrv", config={"record_dir": str(tmp_path / "rec")}, quiet=True)


# -- on the emulated sagemaker ---------------------------------------------------------------------


@pytest.mark.docker
def test_sagemaker_trains_the_folder_and_the_model_comes_from_s3(stack, tmp_path):
    from aws_emulator.fixtures import BUCKET, job_name_of, sagemaker_args
    from aws_emulator.fixtures import run_fahr as run_on_stack

    folder = _copy_example(tmp_path)
    data = tmp_path / "numbers"
    data.mkdir()
    for name, text in NUMBERS.items():
        (data / name).write_text(text)
    result = run_on_stack(stack, "fit", str(folder), *sagemaker_args("byoc"), "--input", f"training={data}",
                          "--hp", "scale=3", cwd=tmp_path)
    assert result.code == 0, result.output
    job = job_name_of(result)
    info = stack.client("sagemaker").describe_training_job(TrainingJobName=job)
    assert f".amazonaws.com/{TAG}@sha256:" in info["AlgorithmSpecification"]["TrainingImage"]
    fetched = run_on_stack(stack, "fetch", str(tmp_path / "model"), TAG, f"s3://{BUCKET}/byoc", cwd=tmp_path)
    assert fetched.code == 0, fetched.output
    assert job in fetched.stderr
    assert _model(tmp_path / "model") == {"count": 4, "sum": 30.0}


@pytest.mark.docker
def test_an_image_without_a_train_program_is_one_line(tmp_path, docker_engine):
    """The project's fault (exit 2), not the engine's; no container is left behind."""
    folder = tmp_path / "notrain" / "box"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM python:3.11-slim\n")
    proc = run_fahr("fit", folder, f"--config.output_path={tmp_path / 'jobs'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fahr error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].startswith("fahr error: the image of job notrain-box-"), errors[0]
    assert errors[0].endswith("cannot be started as 'IMAGE train': it has no program 'train' on its PATH; "
                              "put one there (e.g. COPY train /usr/local/bin/train)"), errors[0]
    assert not docker_engine.containers.list(all=True, filters={"name": "notrain-box-"})


@pytest.mark.docker
def test_a_train_program_nobody_may_run_is_one_line_that_says_chmod(tmp_path, docker_engine):
    """The engine calls it "not found"; fahr finds the file on the PATH and names the fix."""
    folder = tmp_path / "review-fix-noexec" / "box"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY train /usr/local/bin/train\n")
    (folder / "train").write_text("#!/bin/sh\necho never\n")
    (folder / "train").chmod(0o644)  # as a file saved by an editor is
    proc = run_fahr("fit", folder, f"--config.output_path={tmp_path / 'jobs'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fahr error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].endswith("cannot be started as 'IMAGE train': /usr/local/bin/train is not executable; make "
                              "it so (chmod 755 train before building, or RUN chmod 755 /usr/local/bin/train in "
                              "the Dockerfile)"), errors[0]
    assert not docker_engine.containers.list(all=True, filters={"name": "review-fix-noexec-box-"})
