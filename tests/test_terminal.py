"""fahr's own lines cannot be forged: untrusted text reaches the terminal visible and on one line.

What fahr prints from text it did not write — a job's failure reason (/opt/ml/output/failure), a
record's secondary status, the name of a checkpoint entry a job made, a job or tag name, a
driver's message — shows ESC, the other C0/C1 controls, DEL, line separators and bidirectional
controls as escapes (``\\x1b``), and never starts a line of its own. The job's own output (``fit``
and ``logs`` stdout) stays byte for byte, as ``docker logs`` shows it (README, "What fahr
guarantees").

The untrusted text comes from a real local job (its failure file, its checkpoint file names, two
hosts writing the same file), from job records written by hand, and from a driver installed as a
real distribution (tests/plugin_fixtures/fahr_hostiledriver) whose every text is hostile.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import pytest

from conftest import ROOT, run_fahr

# What a terminal acts on rather than shows, and what reorders or breaks a line: none of it may
# reach stderr in fahr's lines (newline ends a line; nothing else of the kind is allowed).
FORBIDDEN = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

# The attack of the issue: set the title, clear the screen, write the clipboard, forge a line.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07\nfahr error: forged"
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07"


def assert_terminal_safe(text: str) -> None:
    """No control character but the newlines between lines, and no line fahr did not write."""
    found = FORBIDDEN.search(text)
    assert found is None, f"{found.group()!r} reaches the terminal in:\n{text!r}"
    forged = [line for line in text.splitlines() if line.startswith("fahr error: forged")]
    assert not forged, f"a forged line: {forged}"


def the_error_line(proc, code: int) -> str:
    """The one ``fahr error:`` line, the last on stderr, of a command that ends with ``code``."""
    assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr
    assert_terminal_safe(proc.stderr)
    lines = proc.stderr.splitlines()
    errors = [line for line in lines if line.startswith("fahr error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], proc.stderr
    return errors[0]


# -- the one function: ui.visible ------------------------------------------------------------


def test_every_control_character_is_shown_as_an_escape():
    from fahr_core import ui

    for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]:
        shown = ui.visible(f"a{chr(code)}b")
        expected = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}.get(code, f"\\x{code:02x}")
        assert shown == f"a{expected}b", (hex(code), shown)


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
                                  "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f", "\u061c"])
def test_line_separators_and_bidirectional_controls_are_shown(char):
    from fahr_core import ui

    assert ui.visible(f"job{char}1") == f"job\\u{ord(char):04x}1"


def test_a_message_of_several_lines_becomes_one():
    from fahr_core import ui

    shown = ui.visible(HOSTILE)
    assert shown == SHOWN + "\\nfahr error: forged"
    assert len(shown.splitlines()) == 1 and FORBIDDEN.search(shown) is None


def test_a_lone_surrogate_is_shown_and_can_be_printed():
    from fahr_core import ui

    shown = ui.visible("ckpt-\udcff-\ud800.pt")  # a file name read with surrogateescape
    assert shown == "ckpt-\\udcff-\\ud800.pt"
    shown.encode("utf-8")  # would raise UnicodeEncodeError for a lone surrogate


def test_ordinary_text_is_left_as_it_is():
    from fahr_core import ui

    for text in ("modèle entraîné", "模型/训练", "Größe: 1.5 KiB — fertig …", "🙂 done", "C:\\models\\x1b",
                 "[bold red]not markup[/]", "naïve\u00a0space", "x" * 1000):
        assert ui.visible(text) == text
    assert ui.visible(ui.visible(HOSTILE)) == ui.visible(HOSTILE)  # nothing it writes is escaped again


def test_status_lines_are_text_not_markup(capsys):
    """A quoted text cannot style fahr's line, nor turn into an emoji, nor forge a line."""
    from fahr_core import ui

    ui.warn("[bold red]fahr error:[/] :skull: \\")
    ui.status_change("job[/]", "Training[blink]", f"detail{HOSTILE}")
    ui.error("first line\nfahr error: second\x1b[2J")
    ui.command("fahr fetch ./model a/b --job x[red]")
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "fahr warning [bold red]fahr error:[/] :skull: \\",
        f"fahr job[/]: Training[blink] — detail{SHOWN}\\nfahr error: forged",
        "fahr error: first line fahr error: second\\x1b[2J",  # an error's lines are joined
        "    fahr fetch ./model a/b --job x[red]",
    ]


# -- a driver whose every text is hostile --------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_driver(tmp_path_factory):
    """The hostile driver installed by pip into a folder of its own, for PYTHONPATH."""
    target = tmp_path_factory.mktemp("hostiledriver")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT / "tests" / "plugin_fixtures" / "fahr_hostiledriver")],
                   check=True, capture_output=True)
    return {"PYTHONPATH": str(target)}


DRIVER_SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07\\x9b31m\\u202e\\rfahr error: forged"
# An error's text of several lines (a carriage return ends one too) is joined with spaces first.
DRIVER_JOINED = DRIVER_SHOWN.replace("\\r", " ")


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "hostile" / "train.py"
    path.parent.mkdir()
    path.write_text("print('hi')\n")
    return path


def test_a_drivers_error_is_one_visible_line(script, hostile_driver):
    proc = run_fahr("fit", script, "--train-driver", "hostile", "--config.fail_in=launch", env=hostile_driver)
    line = the_error_line(proc, 2)
    assert line == f"fahr error: the backend refused the job: {DRIVER_JOINED} fahr error: forged too"


def test_a_drivers_crash_is_one_visible_line(script, hostile_driver):
    proc = run_fahr("fit", script, "--train-driver", "hostile", "--config.fail_in=crash", env=hostile_driver)
    line = the_error_line(proc, 4)
    first = DRIVER_SHOWN.split("\\r")[0]  # an exception that is not fahr's is quoted by its first line
    assert f"RuntimeError: backend crashed{first} (rerun with --debug" in line


def test_a_drivers_statuses_warnings_and_failure_reason_are_visible(script, hostile_driver):
    proc = run_fahr("fit", script, "--train-driver", "hostile", env=hostile_driver)
    error = the_error_line(proc, 1)
    assert error.endswith(f"failed: reason{DRIVER_JOINED}")
    lines = proc.stderr.splitlines()
    assert f"Training{DRIVER_SHOWN} — the backend says{DRIVER_SHOWN}" in proc.stderr
    assert f"fahr warning a file the job wrote: model{DRIVER_SHOWN}.bin" in lines


def test_a_drivers_job_list_is_visible_and_its_json_keeps_the_data(tmp_path, hostile_driver):
    proc = run_fahr("jobs", "--train-driver", "hostile", env=hostile_driver, cwd=tmp_path, check=0)
    assert_terminal_safe(proc.stdout)
    header, row = proc.stdout.splitlines()
    assert row.startswith(f"job{DRIVER_SHOWN}  hostile/train  InProgress (Training{DRIVER_SHOWN}\\udcff)")
    proc = run_fahr("jobs", "--json", "--train-driver", "hostile", env=hostile_driver, cwd=tmp_path, check=0)
    assert_terminal_safe(proc.stdout)  # JSON escapes the controls itself
    [job] = json.loads(proc.stdout)
    assert job["job_name"] == "job\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07\x9b31m\u202e\rfahr error: forged"


@pytest.mark.parametrize("args", [["drivers"], ["drivers", "--verbose"], ["config", "hostile"], ["templates"]])
def test_a_drivers_description_config_help_and_templates_are_visible(tmp_path, hostile_driver, args):
    proc = run_fahr(*args, env=hostile_driver, cwd=tmp_path, check=0)
    assert_terminal_safe(proc.stdout)
    if args == ["drivers"]:
        assert "holds terminal controls\\x1b]0;pwned\\x07\\x1b[2J (fahr's terminal tests)" in proc.stdout
    elif args == ["templates"]:
        assert f"hostile-hello  A template{DRIVER_SHOWN}" in proc.stdout
    else:
        assert f"Where the driver fails{DRIVER_SHOWN}" in proc.stdout


# -- job records written by hand ---------------------------------------------------------------


def test_a_records_names_and_status_are_visible_in_the_job_list(tmp_path):
    out = tmp_path / "jobs"
    name = "hand\x1b[2J\u202e-1"
    (out / name).mkdir(parents=True)
    (out / name / "job.json").write_text(json.dumps({
        "job_name": name, "model_tag": "i15term/train", "status": "InProgress", "image": "x:1", "created": 100.0,
        "secondary_status": f"Training{HOSTILE}"}))
    (out / "broken\x1b]0;pwned\x07-1").mkdir()
    (out / "broken\x1b]0;pwned\x07-1" / "job.json").write_text("{not json")
    proc = run_fahr("jobs", f"--config.output_path={out}", cwd=tmp_path, check=0)
    assert_terminal_safe(proc.stdout + proc.stderr)
    header, row = proc.stdout.splitlines()
    assert row.startswith(f"hand\\x1b[2J\\u202e-1  i15term/train  InProgress (Training{SHOWN}\\nfahr error: forged)")
    [warning] = proc.stderr.splitlines()
    assert warning.startswith(f"fahr warning skipping {out}/broken\\x1b]0;pwned\\x07-1: its job.json is not valid JSON")


# -- a real local job ----------------------------------------------------------------------------

# Two hosts: both write a checkpoint file of the same name (a clash, named in a warning); algo-1
# also makes a fifo (skipped, named in a warning), prints colours (its own output, kept as it is)
# and fails with the hostile reason.
JOB = f"""\
import json, os, time
from pathlib import Path
me = json.loads(Path("/opt/ml/input/config/resourceconfig.json").read_text())["current_host"]
checkpoints = Path("/opt/ml/checkpoints")
checkpoints.mkdir(parents=True, exist_ok=True)
(checkpoints / "clash\\x1b[2J.txt").write_text(me)
if me == "algo-1":
    os.mkfifo(checkpoints / "pipe\\x1b]0;pwned\\x07.fifo")
    print("\\x1b[1mepoch 1\\x1b[0m", flush=True)
    time.sleep(3)  # algo-2 has written its copy by now
    Path("/opt/ml/output/failure").write_text({HOSTILE!r})
    raise SystemExit(1)
"""


@pytest.fixture(scope="module")
def failed_job(docker_engine, tmp_path_factory):
    """The job above, fitted once on two hosts with a checkpoint folder: (process, jobs folder)."""
    root = tmp_path_factory.mktemp("i15term")
    script = root / f"i15term{uuid.uuid4().hex[:6]}" / "train.py"
    script.parent.mkdir()
    script.write_text(JOB)
    store = root / "ckpt"
    store.mkdir()
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(root / "jobs")}
    proc = run_fahr("fit", script, f"--config.checkpoint_path={store}", "--config.instance_count=2", env=env)
    return proc, env


@pytest.mark.docker
def test_a_failure_file_cannot_forge_fahrs_lines(failed_job):
    proc, _ = failed_job
    error = the_error_line(proc, 1)
    assert error.startswith("fahr error: job ") and error.endswith(f": {SHOWN} fahr error: forged"), error


@pytest.mark.docker
def test_checkpoint_names_in_warnings_are_visible(failed_job):
    proc, _ = failed_job
    [skipped] = [line for line in proc.stderr.splitlines() if " skipped " in line]
    assert "skipped pipe\\x1b]0;pwned\\x07.fifo (links leading out of" in skipped, skipped
    [clash] = [line for line in proc.stderr.splitlines() if "several hosts wrote the same files" in line]
    assert "dropped clash\\x1b[2J.txt (algo-2)" in clash, clash


@pytest.mark.docker
def test_the_jobs_own_output_stays_byte_for_byte(failed_job):
    proc, env = failed_job
    assert "[algo-1] \x1b[1mepoch 1\x1b[0m\n" in proc.stdout
    [job] = json.loads(run_fahr("jobs", "--json", env=env, check=0).stdout)
    logs = run_fahr("logs", job["job_name"], "--host", "algo-1", env=env, check=0)
    assert logs.stdout == "\x1b[1mepoch 1\x1b[0m\n"
    assert job["failure_reason"] == HOSTILE  # the record keeps the data; only the terminal sees escapes


@pytest.mark.docker
def test_a_failure_reason_from_sagemaker_cannot_forge_fahrs_lines(stack, tmp_path):
    """The same attack through the emulated SageMaker: FailureReason is the job's failure file."""
    from aws_emulator.fixtures import run_fahr as run_fahr_on_stack
    from aws_emulator.fixtures import sagemaker_args, write_model

    model = write_model(tmp_path, f"i15term{uuid.uuid4().hex[:6]}", f"""\
from pathlib import Path
print("\\x1b[1mepoch 1\\x1b[0m", flush=True)
Path("/opt/ml/output/failure").write_text({HOSTILE!r})
raise SystemExit(1)
""")
    result = run_fahr_on_stack(stack, "fit", str(model), *sagemaker_args(), cwd=tmp_path)
    error = the_error_line(subprocess.CompletedProcess([], result.code, result.stdout, result.stderr), 1)
    assert re.search(r" failed \(user\) in [0-9.]+ s: ", error) and error.endswith(f": {SHOWN} fahr error: forged"), error
    assert "\x1b[1mepoch 1\x1b[0m\n" in result.stdout  # the job's own output, as it printed it
