"""`fahr init` and `fahr templates` through the real command: choices, answers, refusals."""

import json
import subprocess
import sys

import pytest

from fahrcli import isolated_home, run_fahr, show  # noqa: F401 (isolated_home is a fixture)

EXPECTED_MODEL_FILES = {".dockerignore", "Dockerfile", "README.md", "fahr.toml", "requirements.txt",
                        "tests/test_train.py", "train.py"}


def files_of(folder):
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_templates_lists_the_built_ins_and_a_plugins_template(tmp_path):
    result = run_fahr("templates", "--json", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert list(rows)[:4] == ["model", "notebook", "torch", "driver"]
    assert all(row["description"] and "\n" not in row["description"] for row in rows.values())
    assert rows["testdrv-hello"]["source"] == "driver:testdrv"  # contributed through the hook
    plain = run_fahr("templates", cwd=tmp_path)
    assert plain.returncode == 0 and len(plain.stdout.splitlines()) == len(rows)
    assert plain.stdout.splitlines()[0].split()[0] == "model"


def test_init_defaults_to_the_model_template_named_after_the_folder(tmp_path, isolated_home):
    result = run_fahr("init", "iris-model", "--no-input", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    project = tmp_path / "iris-model"
    assert files_of(project) == EXPECTED_MODEL_FILES
    assert "# iris-model" in (project / "README.md").read_text()
    assert "fahr fit iris-model/train.py" in (project / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "iris-model"]  # no staging folder left


def test_init_without_directory_uses_the_project_slug(tmp_path, isolated_home):
    result = run_fahr("init", "--no-input", "--set", "project_name=My Fine Model", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    assert files_of(tmp_path / "my-fine-model") == EXPECTED_MODEL_FILES


def test_set_answers_reach_the_files(tmp_path, isolated_home):
    result = run_fahr("init", "proj", "--no-input", "--set", "base_image=python:3.12-slim",
                      "--set", "driver=sagemaker", "--set", "description=Digits, but mine.", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    project = tmp_path / "proj"
    assert (project / "Dockerfile").read_text().splitlines()[2] == "FROM python:3.12-slim"
    assert 'driver = "sagemaker"' in (project / "fahr.toml").read_text()
    assert "Digits, but mine." in (project / "train.py").read_text()


def test_the_dockerfile_is_the_one_fahr_fit_writes(tmp_path, isolated_home):
    from fahr_core.image import DOCKERIGNORE, dockerfile_text

    assert run_fahr("init", "m", "--no-input", cwd=tmp_path).returncode == 0
    assert run_fahr("init", "n", "--no-input", "--template", "notebook", cwd=tmp_path).returncode == 0
    assert (tmp_path / "m" / "Dockerfile").read_text() == dockerfile_text("train.py", "python:3.11-slim", True)
    assert (tmp_path / "n" / "Dockerfile").read_text() == dockerfile_text("train.ipynb", "python:3.11-slim", True)
    assert (tmp_path / "m" / ".dockerignore").read_text() == DOCKERIGNORE


@pytest.mark.parametrize("name, message", [
    ("!!!", "makes no valid Docker repository name"),
    ("---", "makes no valid Docker repository name"),
])
def test_a_name_that_makes_no_docker_name_fails_before_writing(tmp_path, isolated_home, name, message):
    result = run_fahr("init", "--no-input", "--set", f"project_name={name}", cwd=tmp_path)
    assert result.returncode == 2, show(result)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, show(result)
    assert list(tmp_path.iterdir()) == [tmp_path / "home"]


def test_a_folder_whose_name_makes_no_model_tag_fails_before_writing(tmp_path, isolated_home):
    # `fahr fit 日本/train.py` could never tag its image: refuse the folder now, not then.
    result = run_fahr("init", "日本", "--no-input", cwd=tmp_path)
    assert result.returncode == 2, show(result)
    assert "its characters '日本' cannot appear" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "日本").exists()


def test_templates_that_cannot_be_had_fail_in_one_line(tmp_path, isolated_home):
    # A git URL on loopback where nothing listens: the clone fails without leaving the machine.
    result = run_fahr("init", "a", "--template", "https://127.0.0.1:1/x.git", "--no-input", cwd=tmp_path)
    assert result.returncode == 2, show(result)
    assert "cannot fetch it" in result.stderr and "Traceback" not in result.stderr, show(result)
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "a").exists()
    bad = tmp_path / "badtpl"
    bad.mkdir()
    (bad / "cookiecutter.json").write_text('{"project_name": "x",')
    result = run_fahr("init", "b", "--template", bad, "--no-input", cwd=tmp_path)
    assert result.returncode == 2 and "cookiecutter.json is unreadable" in result.stderr, show(result)
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


def test_a_driver_name_that_makes_no_python_package_fails_before_writing(tmp_path, isolated_home):
    target = tmp_path / "drv"
    result = run_fahr("init", target, "--template", "driver", "--no-input", "--set", "driver_name=9lives", cwd=tmp_path)
    assert result.returncode == 2, show(result)
    assert "driver name '9lives' is not valid" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not target.exists()
    result = run_fahr("init", target, "--template", "driver", "--no-input", "--set", "package_name=class",
                      cwd=tmp_path)
    assert result.returncode == 2 and "no valid Python package name" in result.stderr, show(result)
    assert not target.exists()


def test_a_non_empty_folder_is_refused_without_overwrite(tmp_path, isolated_home):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "train.py").write_text("mine\n")
    result = run_fahr("init", target, "--no-input", cwd=tmp_path)
    assert result.returncode == 2, show(result)
    assert "is not empty" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert files_of(target) == {"train.py"} and (target / "train.py").read_text() == "mine\n"

    result = run_fahr("init", target, "--no-input", "--overwrite", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    assert files_of(target) == EXPECTED_MODEL_FILES
    assert (target / "train.py").read_text() != "mine\n"


def test_an_empty_folder_is_fine(tmp_path, isolated_home):
    (tmp_path / "empty").mkdir()
    result = run_fahr("init", "empty", "--no-input", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    assert files_of(tmp_path / "empty") == EXPECTED_MODEL_FILES


@pytest.mark.parametrize("args, message", [
    (["--template", "nope"], "Choose one of: model, notebook, torch, driver"),
    (["--set", "colour=blue"], "has no such variable"),
    (["--set", "driver=kubernetes"], "choices are ['local', 'sagemaker']"),
    (["--set", "oops"], "expected --set KEY=VALUE"),
])
def test_bad_options_fail_with_one_line(tmp_path, isolated_home, args, message):
    result = run_fahr("init", "x", "--no-input", *args, cwd=tmp_path)
    assert result.returncode == 2, show(result)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, show(result)
    assert not (tmp_path / "x").exists()


def test_a_template_from_a_path_and_from_a_git_url(tmp_path, isolated_home):
    from fahr_core.scaffold import builtin_dir

    by_path = run_fahr("init", "p", "--no-input", "--template", builtin_dir() / "model", cwd=tmp_path)
    assert by_path.returncode == 0, show(by_path)
    assert files_of(tmp_path / "p") == EXPECTED_MODEL_FILES

    repo = tmp_path / "tpl-repo"
    plugin_template = __import__("fahr_testdriver").__file__
    import shutil
    from pathlib import Path

    shutil.copytree(Path(plugin_template).parent / "template", repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "template"], check=True)
    by_url = run_fahr("init", "g", "--no-input", "--template", f"git+file://{repo}", "--set", "greeting=hi git",
                      cwd=tmp_path)
    assert by_url.returncode == 0, show(by_url)
    assert (tmp_path / "g" / "hello.txt").read_text().strip() == "hi git"


def test_a_plugins_template_renders(tmp_path, isolated_home):
    result = run_fahr("init", "hello", "--template", "testdrv-hello", "--no-input", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    assert files_of(tmp_path / "hello") == {"hello.txt"}
    assert (tmp_path / "hello" / "hello.txt").read_text().strip() == "hello from the test driver's template"


def test_prompts_take_answers_from_stdin(tmp_path, isolated_home):
    # Without --no-input cookiecutter asks each variable in turn; the answers come from stdin.
    answers = "asked\n\n\n\n\n"
    result = run_fahr("init", "--template", "model", cwd=tmp_path, input=answers)
    assert result.returncode == 0, show(result)
    assert files_of(tmp_path / "asked") == EXPECTED_MODEL_FILES


def test_questions_without_answers_fail_with_a_hint(tmp_path, isolated_home):
    result = subprocess.run([str(__import__("fahrcli").FAHR), "init", "q"], cwd=tmp_path, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 2, show(result)
    assert "pass --no-input" in result.stderr and not (tmp_path / "q").exists()


def test_help_imports_neither_cookiecutter_nor_docker():
    code = (
        "import sys\n"
        "from fahr_core import cli\n"
        "sys.argv = ['fahr', '--help']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('cookiecutter', 'docker', 'papermill', 'jinja2', 'fahr_testdriver') or m == 'fahr_core.drivers.local')\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout, result.stdout
    assert " init " in result.stdout and " templates " in result.stdout
