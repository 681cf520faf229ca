"""The notebook runner's typing of hyperparameters, and the notebook Dockerfile (no Docker needed)."""

import json

import pytest

from fahr_core import image
from fahr_core.errors import UsageError
from fahr_core.notebook_runner import typed_parameters, typed_value


@pytest.mark.parametrize("raw, default, expected", [
    ("7", "20", 7),
    ("0.5", "0.1", 0.5),
    ("1e-3", "0.0001", 0.001),
    ("false", "True", False),
    ("Yes", "False", True),
    ("hello world", "'x'", "hello world"),
    ("[1, 2]", "[3]", [1, 2]),
    ("{'a': 1}", "{}", {"a": 1}),
    ("3", "None", 3),
    ("text", "None", "text"),
    ("anything", "os.getcwd()", "anything"),
])
def test_values_are_typed_like_the_defaults(raw, default, expected):
    value = typed_value(raw, default)
    assert value == expected and type(value) is type(expected)


def test_an_annotation_wins_over_the_default():
    assert typed_value("3", "None", "int") == 3 and typed_value("3", "1.0", "float") == 3.0


@pytest.mark.parametrize("raw, default", [("many", "20"), ("maybe", "True"), ("x", "0.5"), ("{1}", "[1]")])
def test_a_value_that_does_not_fit_is_refused(raw, default):
    with pytest.raises(ValueError):
        typed_value(raw, default)


def test_parameters_not_in_the_cell_pass_as_strings_and_errors_name_the_parameter():
    declared = {"epochs": {"name": "epochs", "default": "20", "inferred_type_name": "None"}}
    assert typed_parameters(declared, {"epochs": "3", "extra": "7"}) == {"epochs": 3, "extra": "7"}
    with pytest.raises(ValueError, match=r"epochs='many' does not fit the parameters cell's epochs = 20"):
        typed_parameters(declared, {"epochs": "many"})


def test_the_notebook_dockerfile_runs_the_runner_with_papermill():
    text = image.dockerfile_text("train.ipynb", "python:3.11-slim", has_requirements=True)
    lines = text.splitlines()
    runner = next(i for i, line in enumerate(lines) if line.startswith("RUN pip install \"papermill"))
    requirements = lines.index("RUN pip install -r requirements.txt")
    assert runner < requirements < lines.index("COPY . .")  # both dependency layers before the code
    entry = json.loads(next(line for line in lines if line.startswith("ENTRYPOINT "))[len("ENTRYPOINT "):])
    assert entry == ["python", image.LAUNCHER_PATH, "train.ipynb"]
    folder = image.Path(image.__file__).parent.parent  # fahr_core/image/ -> fahr_core/
    # The runner, then the launcher (SIGTERM, the host variables) that calls its run_notebook.
    [program] = image.fahr_files(text, "train.ipynb").values()
    assert program.decode() == (folder / "notebook_runner.py").read_text() + "\n\n" + (folder / "launcher.py").read_text()
    compile(program, "runner", "exec")
    assert lines[-1] == 'CMD ["train"]'


def test_check_artifact_takes_notebooks_and_refuses_broken_ones(tmp_path):
    good = tmp_path / "train.ipynb"
    good.write_text(json.dumps({"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}))
    assert image.check_artifact(good) == good.resolve()
    bad = tmp_path / "bad.ipynb"
    bad.write_text("not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        image.check_artifact(bad)
    other = tmp_path / "model.r"
    other.write_text("")
    with pytest.raises(UsageError, match=r"\(\.py\) or a notebook \(\.ipynb\)"):
        image.check_artifact(other)


HELD = """
import subprocess, sys
from notebook_runner import kernel_output_held

print("before", flush=True)
with kernel_output_held():
    print("a cell's output", flush=True)  # papermill writes the cells' output to sys.stdout
    subprocess.run(["sh", "-c", "echo kernel start-up warning >&2; echo kernel says"])  # the kernel process
    if sys.argv[1] == "fail":
        raise SystemExit(3)
print("after", flush=True)
"""


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
def test_the_kernel_s_own_output_is_shown_only_when_the_run_fails(tmp_path, outcome):
    import subprocess
    import sys

    runner = image.Path(image.__file__).parent.parent / "notebook_runner.py"
    (tmp_path / runner.name).write_text(runner.read_text())  # alone: it runs where fahr is not installed
    proc = subprocess.run([sys.executable, "-c", HELD, outcome], capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path)})
    if outcome == "succeed":
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "before\na cell's output\nafter\n", "")
    else:
        assert (proc.returncode, proc.stdout) == (3, "before\na cell's output\n")
        assert proc.stderr == "the notebook's kernel said:\nkernel start-up warning\nkernel says\n"
