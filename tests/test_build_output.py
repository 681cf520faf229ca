"""An image build shows as progress: a line per Dockerfile step, the steps' own output only when
the build fails (all of it) or with ``--verbose``, none of it with ``--quiet``; and the generated
image runs fahr's launcher as a file that fahr sends with the build context.

The real ``fahr`` command on the real engine. A container of the test's own (a folder with a
Dockerfile) whose RUN step prints a word of its own per case, so that no case hits the layer
cache of another; one generated-Dockerfile project for the launcher.
"""

from __future__ import annotations

import secrets

import pytest

from conftest import one_line_error, run_fahr
from fahr_core import api
from fahr_core.errors import UsageError
from fahr_core.image import LAUNCHER_PATH, entrypoint_program

# The RUN step prints "i17quiet-said-WORD"; the step's own line shows the code, not that text.
DOCKERFILE = """\
FROM python:3.11-slim
RUN python -c "print('i17quiet-said-' + '{word}'){fail}"
RUN printf '#!/bin/sh\\nmkdir -p /opt/ml/model\\necho trained\\n' > /usr/local/bin/train && chmod +x /usr/local/bin/train
"""


@pytest.fixture(scope="module")
def project(docker_engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("buildoutput")
    (root / "i17quietbuild" / "container").mkdir(parents=True)
    yield root
    for tag in ("i17quietbuild/container", "i17quietlaunch/train"):
        for image in docker_engine.images.list(name=tag):
            docker_engine.images.remove(image.id, force=True)


def fit(root, *flags, fail=False):
    """``fahr fit`` of the container, its RUN step printing a new word; (process, the word)."""
    word = secrets.token_hex(4)
    (root / "i17quietbuild" / "container" / "Dockerfile").write_text(
        DOCKERFILE.format(word=word, fail="; raise SystemExit(3)" if fail else ""))
    proc = run_fahr("fit", "i17quietbuild/container", *flags, env={"FAHR_LOCAL_OUTPUT_PATH": str(root / "jobs")},
                    cwd=root)
    return proc, f"i17quiet-said-{word}"


def said(stderr: str, text: str) -> bool:
    return any(line.strip() == text for line in stderr.splitlines())


def test_any_builder_s_output_is_held_and_shown_whole_when_the_build_fails(capsys):
    # What a driver's own build_image prints through ui.build_step/build_output is shown the same way.
    from fahr_core import ui

    with ui.building():
        ui.build_step("Step 1/2 : FROM base")
        ui.build_output("pulled")
    assert capsys.readouterr().err == "Step 1/2 : FROM base\n"
    with pytest.raises(RuntimeError), ui.building():
        ui.build_step("Step 2/2 : RUN make")
        ui.build_output("make: *** [all] Error 2")
        raise RuntimeError("the build failed")
    err = capsys.readouterr().err
    assert err.splitlines() == ["Step 2/2 : RUN make", "fahr the image build failed; its whole output:",
                                "Step 2/2 : RUN make", "  make: *** [all] Error 2"]
    with ui.building(verbose=True):
        ui.build_output("as it comes")
    assert capsys.readouterr().err == "  as it comes\n"
    ui.build_output("outside a build (a push's progress): printed")
    assert "printed" in capsys.readouterr().err


@pytest.mark.docker
def test_a_build_shows_a_line_per_step_and_not_the_steps_output(project):
    proc, text = fit(project)
    assert proc.returncode == 0, proc.stderr
    steps = [line for line in proc.stderr.splitlines() if line.startswith("Step ")]
    assert [line.split(" : ")[0] for line in steps] == [f"Step {n}/6" for n in range(1, 7)], proc.stderr
    assert not said(proc.stderr, text) and " ---> " not in proc.stderr, proc.stderr
    assert proc.stdout == "trained\n"


@pytest.mark.docker
def test_verbose_shows_the_build_s_whole_output(project):
    proc, text = fit(project, "--verbose")
    assert proc.returncode == 0, proc.stderr
    assert said(proc.stderr, text) and " ---> " in proc.stderr, proc.stderr


@pytest.mark.docker
def test_a_failed_build_shows_its_whole_output_then_the_one_error(project):
    proc, text = fit(project, fail=True)
    assert proc.returncode == 2, proc.stderr
    assert said(proc.stderr, text), proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-1].startswith("fahr error: image build failed at step 2/"), proc.stderr
    assert [line for line in lines if line.startswith("fahr error")] == lines[-1:]


@pytest.mark.docker
def test_quiet_shows_none_of_the_build_even_when_it_fails(project):
    proc, _ = fit(project, "--quiet", fail=True)
    assert one_line_error(proc, 2).startswith("fahr error: image build failed at step 2/")


def test_verbose_in_the_python_api_is_a_flag(tmp_path):
    with pytest.raises(UsageError, match="verbose"):
        api.fit(tmp_path / "train.py", verbose="yes")


@pytest.mark.docker
def test_the_image_runs_fahr_s_launcher_file_and_a_new_launcher_rebuilds_it(project, docker_engine, monkeypatch):
    folder = project / "i17quietlaunch"
    folder.mkdir()
    (folder / "train.py").write_text("import helper\nprint('trained with', helper.WORD)\n")
    (folder / "helper.py").write_text("WORD = 'help'\n")  # beside the script: importable, as with `python train.py`
    config = {"output_path": str(project / "jobs")}
    job = api.fit(folder / "train.py", driver="local", config=config, quiet=True)
    assert job.status == "Completed"
    assert all(len(line) <= 200 for line in (folder / "Dockerfile").read_text().splitlines())

    def launcher_in(image_id):
        return docker_engine.containers.run(image_id, entrypoint=["cat", LAUNCHER_PATH], remove=True).decode()

    first = docker_engine.images.get("i17quietlaunch/train:latest").id
    assert launcher_in(first) == entrypoint_program("train.py")
    # A fahr whose launcher differs (nothing of the project changed) builds the image anew.
    changed = entrypoint_program("train.py") + "\n# another fahr's launcher\n"
    monkeypatch.setattr("fahr_core.image.dockerfile.entrypoint_program", lambda name: changed)
    assert api.fit(folder / "train.py", driver="local", config=config, quiet=True).status == "Completed"
    second = docker_engine.images.get("i17quietlaunch/train:latest").id
    assert second != first and launcher_in(second) == changed
