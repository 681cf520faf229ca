"""docs/writing-a-driver.md carries the hook reference generated from the hookspec docstrings."""

import inspect
import subprocess
import sys

from fahrcli import REPO
from fahr_core import hookspecs

SCRIPT = REPO / "scripts" / "gen-driver-docs.py"
DOC = REPO / "docs" / "writing-a-driver.md"


def test_the_hook_reference_is_up_to_date():
    result = subprocess.run([sys.executable, SCRIPT, "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_hook_and_its_whole_docstring_is_in_the_reference():
    text = DOC.read_text()
    hooks = [f for f in vars(hookspecs).values() if inspect.isfunction(f) and hasattr(f, "fahr_spec")]
    assert {f.__name__ for f in hooks} >= {"config_keys", "claims_location", "templates", "build_image",
                                           "push_image", "launch", "wait", "fetch", "stop"}
    for hook in hooks:
        assert f"### `{hook.__name__}(" in text
        assert inspect.cleandoc(hook.__doc__) in text


def test_a_stale_reference_is_caught(tmp_path):
    stale = tmp_path / "doc.md"
    stale.write_text(DOC.read_text().replace("Stops at first non-None result.", "Calls every plugin.", 1))
    result = subprocess.run([sys.executable, SCRIPT, "--check", "--doc", stale], capture_output=True, text=True)
    assert result.returncode == 1 and "out of date" in result.stderr
    subprocess.run([sys.executable, SCRIPT, "--doc", stale], check=True)
    assert stale.read_text() == DOC.read_text()


def _api_section():
    text = DOC.read_text()
    begin = text.index("<!-- BEGIN API REFERENCE")
    return text[begin:text.index("<!-- END API REFERENCE -->", begin)]


def test_every_public_name_and_every_field_of_the_value_types_is_documented():
    import dataclasses

    import fahr_core

    section = _api_section()
    for name in fahr_core.__all__:
        assert f"`{name}" in section, name
    for name in fahr_core.__all__:
        obj = getattr(fahr_core, name)
        if dataclasses.is_dataclass(obj):
            assert f"### `{name}`" in section
            for field in dataclasses.fields(obj):
                row = next((line for line in section.splitlines() if line.startswith(f"| `{field.name}` |")), None)
                assert row is not None, (name, field.name)
                assert row.rstrip(" |").split("|")[-1].strip(), f"{name}.{field.name} has no description"
    for name in fahr_core.ui.__all__:
        assert f"`ui.{name}(" in section


def test_the_doc_states_the_import_path_the_promise_and_the_pin():
    import json

    import fahr_core

    text = " ".join(DOC.read_text().split())
    assert "from fahr_core import" in text
    assert "within 1.x" in text.lower()
    assert "only added, never renamed or removed" in text
    assert "`fahr_core.__all__`" in text and "`fahr_core.testing`" in text
    assert f'PLUGIN_API_VERSION = {fahr_core.PLUGIN_API_VERSION!r}' in text
    assert "fahr init fahr-mybackend --template driver --no-input --set driver_name=mybackend" in text
    pin = json.loads((REPO / "templates" / "driver" / "cookiecutter.json").read_text())["fahr_requirement"]
    assert pin == "fahr>=0.5,<1" and f"`{pin}`" in text


def test_a_stale_api_reference_is_caught(tmp_path):
    stale = tmp_path / "doc.md"
    stale.write_text(DOC.read_text().replace("| `download_dir` |", "| `download_folder` |", 1))
    assert stale.read_text() != DOC.read_text()
    result = subprocess.run([sys.executable, SCRIPT, "--check", "--doc", stale], capture_output=True, text=True)
    assert result.returncode == 1 and "out of date" in result.stderr
    subprocess.run([sys.executable, SCRIPT, "--doc", stale], check=True)
    assert stale.read_text() == DOC.read_text()


def test_the_architecture_names_every_module_and_only_modules_that_exist():
    # docs/architecture.md is the folder map a newcomer reads first: a module added, moved or
    # removed without it is caught here.
    import re

    text = (REPO / "docs" / "architecture.md").read_text()
    core = REPO / "fahr_core"
    places = {p.name for p in core.iterdir()
              if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists()
                                                                      and p.name != "templates")}
    named = set()
    for cell in re.findall(r"`(fahr_core/[^`]+)`", text):
        for part in cell.split(", "):
            name = part.strip("`").removeprefix("fahr_core/").rstrip("/")
            named |= {name, name.split("/")[0]}
    named |= set(re.findall(r"`(\w+\.py)`", text))
    missing = sorted(name for name in places if name.removesuffix("/") not in named)
    assert missing == []
    gone = sorted(name for name in named if not (core / name).exists())
    assert gone == []
