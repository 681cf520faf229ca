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
