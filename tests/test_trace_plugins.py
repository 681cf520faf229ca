"""FAHR_TRACE_PLUGINS=1 (and `fahr --debug`, FAHR_DEBUG=1): each hook call on stderr, one line
when it returns: the hook and its argument names, the result's kind, the duration, and every
implementation asked with the kind of its own answer. Never a value (a config, an environment
may hold secrets); an iterator is not consumed, a stream not read.

Real `fahr` processes on commands that need no Docker engine (the test driver `testdrv` builds
and runs nothing), and a tiny in-process plugin manager for what no shipped driver does."""

import io
import re
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest

from conftest import run_fahr
from fahr_core import FahrError, ImageRef, UsageError, hookimpl, hookspecs, plugins, trace, ui

TRACE = "fahr trace "
DURATION = r"in \d+\.\d ms|in \d+\.\d\d s"


def traced(stderr: str) -> list[str]:
    return [line[len(TRACE):] for line in stderr.splitlines() if line.startswith(TRACE)]


def hook_of(line: str) -> str:
    return line.split("(", 1)[0]


# -- real fahr processes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One `fahr fit` on the test driver, traced, with a secret in the job's environment and
    hyperparameters."""
    root = tmp_path_factory.mktemp("trace")
    project = root / "i16trace"
    project.mkdir()
    (project / "train.py").write_text("print('hello')\n")
    proc = run_fahr("fit", project / "train.py", "--train-driver", "testdrv",
                    f"--config.record_dir={root / 'records'}", "--env", "API_TOKEN=s3cr3t-env-value",
                    "--hp", "password=s3cr3t-hp-value", env={"FAHR_TRACE_PLUGINS": "1"}, cwd=root, check=0)
    proc.root = root
    return proc


def test_fetch_of_the_fitted_model(fitted):
    proc = run_fahr("fetch", fitted.root / "model", "i16trace/train", "--train-driver", "testdrv",
                    f"--config.record_dir={fitted.root / 'records'}", env={"FAHR_TRACE_PLUGINS": "1"},
                    cwd=fitted.root, check=0)
    lines = traced(proc.stderr)
    assert [hook_of(line) for line in lines] == ["config_keys", "fetch"]
    assert re.fullmatch(r"fetch\(request, config\) -> Path (" + DURATION + r"); asked driver:testdrv -> Path", lines[1])
    assert proc.stderr.splitlines()[-1].startswith("fahr model of i16trace/train is in ")


def test_fit_traces_each_step_in_order_with_driver_duration_and_result_kind(fitted):
    lines = traced(fitted.stderr)
    steps = [hook_of(line) for line in lines]
    # The run's own steps, in the order fahr asks them (the listing after them is the API's refresh).
    run = steps[:steps.index("wait") + 1]
    assert [s for s in run if s != "config_keys"] == ["check_run", "price", "build_image", "push_image", "launch", "wait"]
    assert run[0] == "config_keys"
    by_hook = {hook_of(line): line for line in lines}
    expected = {
        "config_keys": r"config_keys\(\) -> list\[2\] (?P<d>.+); asked driver:testdrv -> list\[5\], fahr-core-defaults -> list\[3\]$",
        "check_run": r"check_run\(config, inputs, secrets\) -> list\[0\] (?P<d>.+); no implementation$",
        "build_image": r"build_image\(context, config\) -> ImageRef (?P<d>.+); asked driver:testdrv -> ImageRef; wrapped by plugin:steptimer$",
        "push_image": r"push_image\(image, config\) -> ImageRef (?P<d>.+); asked driver:testdrv -> ImageRef$",
        "launch": r"launch\(spec, config\) -> JobHandle (?P<d>.+); asked driver:testdrv -> JobHandle; wrapped by plugin:steptimer$",
        "wait": r"wait\(job, config\) -> JobResult (?P<d>.+); asked driver:testdrv -> JobResult; wrapped by plugin:steptimer$",
    }
    for hook, pattern in expected.items():
        found = re.match(pattern, by_hook[hook])
        assert found, by_hook[hook]
        assert re.fullmatch(DURATION, found["d"]), by_hook[hook]


def test_a_trace_line_comes_when_its_call_returns_among_fahrs_status_lines(fitted):
    stderr = fitted.stderr.splitlines()
    launched = next(i for i, line in enumerate(stderr) if line.startswith(TRACE + "launch("))
    accepted = next(i for i, line in enumerate(stderr) if line.startswith("fahr launching job ") and "accepted" in line)
    waited = next(i for i, line in enumerate(stderr) if line.startswith(TRACE + "wait("))
    completed = next(i for i, line in enumerate(stderr) if re.match(r"fahr job \S+ completed", line))
    assert launched < accepted < waited < completed


def test_no_value_of_a_hook_argument_is_shown(fitted):
    assert "s3cr3t" not in fitted.stderr and "s3cr3t" not in fitted.stdout
    assert "API_TOKEN" not in fitted.stderr and "password" not in fitted.stderr


@pytest.fixture
def empty_jobs(tmp_path):
    folder = tmp_path / "jobs"
    folder.mkdir()
    return folder


def test_config_and_jobs_on_the_local_driver(empty_jobs, tmp_path):
    env = {"FAHR_TRACE_PLUGINS": "1", "FAHR_LOCAL_OUTPUT_PATH": str(empty_jobs)}
    config = run_fahr("config", "local", env=env, cwd=tmp_path, check=0)
    lines = traced(config.stderr)
    assert lines and all(hook_of(line) == "config_keys" for line in lines)
    assert re.fullmatch(r"config_keys\(\) -> list\[2\] (" + DURATION + r"); asked driver:local -> list\[\d+\], "
                        r"fahr-core-defaults -> list\[3\]", lines[0])

    jobs = run_fahr("jobs", env=env, cwd=tmp_path, check=0)
    lines = traced(jobs.stderr)
    assert [hook_of(line) for line in lines] == ["config_keys", "list_jobs"]
    assert re.fullmatch(r"list_jobs\(query, config\) -> list\[0\] (" + DURATION + r"); asked driver:local -> list\[0\]",
                        lines[1])
    # the listing's own lines are untouched: its trace goes before them, on stderr
    assert jobs.stderr.splitlines()[-1] == "fahr no jobs"


def test_a_hook_that_raises_is_traced_and_the_error_stays_one_line_at_the_end(empty_jobs, tmp_path):
    proc = run_fahr("fetch", tmp_path / "model", "i16trace/nothing",
                    env={"FAHR_TRACE_PLUGINS": "1", "FAHR_LOCAL_OUTPUT_PATH": str(empty_jobs)}, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = traced(proc.stderr)
    assert re.fullmatch(r"fetch\(request, config\) -> raised UsageError (" + DURATION + r"); "
                        r"asked driver:local raised UsageError", lines[-1])
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("fahr error: no completed job of 'i16trace/nothing'")


@pytest.mark.parametrize("how", [
    pytest.param({"args": ["--debug"], "env": {}}, id="--debug"),
    pytest.param({"args": [], "env": {"FAHR_DEBUG": "1"}}, id="FAHR_DEBUG=1"),
])
def test_debug_turns_the_trace_on(how, empty_jobs, tmp_path):
    proc = run_fahr(*how["args"], "jobs", env={"FAHR_LOCAL_OUTPUT_PATH": str(empty_jobs), **how["env"]},
                    cwd=tmp_path, check=0)
    assert [hook_of(line) for line in traced(proc.stderr)] == ["config_keys", "list_jobs"]


@pytest.mark.parametrize("value", [None, "0", ""])
def test_without_the_variable_nothing_is_traced(value, empty_jobs, tmp_path):
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(empty_jobs)}
    if value is not None:
        env["FAHR_TRACE_PLUGINS"] = value
    proc = run_fahr("jobs", env=env, cwd=tmp_path, check=0)
    assert proc.stderr.splitlines() == ["fahr no jobs"]


# -- in process: a tiny plugin manager on fahr's own hookspecs ----------------------------------


class Driver:
    """What a driver may do that the shipped ones do not all show."""

    def __init__(self):
        self.log_started = False
        self.stream = io.BytesIO(b"model bytes")

    @hookimpl
    def build_image(self, context, config):
        return None  # leaves the build to the core's default

    @hookimpl
    def logs(self, job, config, follow):
        def lines():
            self.log_started = True
            yield "never read by the trace"
        return lines()

    @hookimpl
    def fetch(self, request, config):
        return self.stream

    @hookimpl
    def wait(self, job, config):
        raise UsageError("no such job")

    @hookimpl
    def stop(self, job, config):
        raise KeyError("a bug")


class CoreDefault:
    @hookimpl(trylast=True)
    def build_image(self, context, config):
        return ImageRef(name="m/train")


@pytest.fixture
def manager(monkeypatch):
    monkeypatch.setenv(trace.ENV, "1")
    pm = pluggy.PluginManager("fahr")
    pm.add_hookspecs(hookspecs)
    trace.watch(pm)
    driver = Driver()
    pm.register(CoreDefault(), name="fahr-core-defaults")
    pm.register(driver, name="driver:tiny")
    return pm, driver


SECRET_CONFIG = {"api_key": "s3cr3t-config-value"}


def test_which_implementation_answered(manager, capsys):
    pm, _ = manager
    assert pm.hook.build_image(context=object(), config=SECRET_CONFIG) == ImageRef(name="m/train")
    (line,) = traced(capsys.readouterr().err)
    assert re.fullmatch(r"build_image\(context, config\) -> ImageRef (" + DURATION + r"); "
                        r"asked driver:tiny -> None, fahr-core-defaults -> ImageRef", line)


def test_an_iterator_is_reported_not_consumed(manager, capsys):
    pm, driver = manager
    lines = pm.hook.logs(job=object(), config=SECRET_CONFIG, follow=True)
    assert re.fullmatch(r"logs\(job, config, follow\) -> iterator (" + DURATION + r"); asked driver:tiny -> iterator",
                        traced(capsys.readouterr().err)[0])
    assert driver.log_started is False
    assert list(lines) == ["never read by the trace"]


def test_a_stream_is_reported_not_read(manager, capsys):
    pm, driver = manager
    assert pm.hook.fetch(request=object(), config=SECRET_CONFIG) is driver.stream
    assert traced(capsys.readouterr().err)[0].startswith("fetch(request, config) -> stream ")
    assert driver.stream.tell() == 0


@pytest.mark.parametrize("hook, raised", [("wait", UsageError), ("stop", KeyError)])
def test_an_exception_is_named_and_passes_through_unchanged(manager, capsys, hook, raised):
    pm, _ = manager
    with pytest.raises(raised) as caught:
        getattr(pm.hook, hook)(job=object(), config=SECRET_CONFIG)
    assert caught.value.__traceback__ is not None
    (line,) = traced(capsys.readouterr().err)
    assert re.fullmatch(rf"{hook}\(job, config\) -> raised {raised.__name__} ({DURATION}); "
                        rf"asked driver:tiny raised {raised.__name__}", line)


def test_no_config_value_is_shown(manager, capsys):
    pm, _ = manager
    pm.hook.build_image(context=object(), config=SECRET_CONFIG)
    with pytest.raises(FahrError):
        pm.hook.wait(job=object(), config=SECRET_CONFIG)
    captured = capsys.readouterr()
    assert len(traced(captured.err)) == 2
    assert "s3cr3t" not in captured.err + captured.out and "api_key" not in captured.err


def test_the_trace_shows_under_quiet(manager, capsys):
    pm, _ = manager
    with ui.quiet():
        pm.hook.build_image(context=object(), config=SECRET_CONFIG)
        ui.info("muted")
    err = capsys.readouterr().err
    assert len(traced(err)) == 1 and "muted" not in err


def test_every_manager_fahr_makes_is_traced(monkeypatch, capsys):
    monkeypatch.setenv(trace.ENV, "1")
    plugins.new_manager().hook.config_keys()
    (line,) = traced(capsys.readouterr().err)
    assert re.fullmatch(r"config_keys\(\) -> list\[1\] (" + DURATION + r"); asked fahr-core-defaults -> list\[3\]", line)


def test_nothing_is_installed_when_off(monkeypatch, capsys):
    monkeypatch.delenv(trace.ENV, raising=False)

    def refused(*args):
        raise AssertionError("hook-call monitoring installed with tracing off")

    monkeypatch.setattr(pluggy.PluginManager, "add_hookcall_monitoring", refused)
    pm = plugins.new_manager()
    pm.hook.config_keys()
    assert traced(capsys.readouterr().err) == []


@pytest.mark.parametrize("value, kind", [
    (None, "None"), (True, "True"), ([1, 2, 3], "list[3]"), ((), "tuple[0]"), ({"k": "secret"}, "dict[1]"),
    ("secret", "str"), (b"secret", "bytes"), (ImageRef(name="m/t"), "ImageRef"),
    (io.BytesIO(b"x"), "stream"), (iter([1]), "iterator"), ((x for x in [1]), "iterator"), (Path("/s3cr3t"), "Path"),
])
def test_kind_never_shows_a_value(value, kind):
    assert trace.kind(value) == kind


def test_a_plugins_name_is_shown_on_one_line_with_its_controls_escaped(monkeypatch, capsys):
    monkeypatch.setenv(trace.ENV, "1")
    pm = pluggy.PluginManager("fahr")
    pm.add_hookspecs(hookspecs)
    trace.watch(pm)
    pm.register(Driver(), name="driver:evil\x1b]0;owned\x07\nfahr error: forged")
    pm.hook.build_image(context=object(), config=SECRET_CONFIG)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\x07" not in err
    assert err.startswith("fahr trace build_image(context, config) -> None")
    assert "driver:evil\\x1b]0;owned\\x07 fahr error: forged -> None" in err


class Recorder:
    """stdout or stderr, writing into one list of events: the order of the two streams."""

    encoding = "utf-8"

    def __init__(self, name, events):
        self.name, self.events = name, events

    @property
    def buffer(self):
        return self

    def write(self, data):
        self.events.append((self.name, data if isinstance(data, str) else data.decode()))
        return len(data)

    def flush(self):
        pass

    def isatty(self):
        return False


def test_the_jobs_output_held_so_far_goes_out_before_a_trace_line(manager, monkeypatch):
    pm, _ = manager
    events = []
    monkeypatch.setattr("sys.stdout", Recorder("stdout", events))
    monkeypatch.setattr("sys.stderr", Recorder("stderr", events))
    ui.log_line("epoch 1", newline=False)  # held, to go out in one write with what follows
    pm.hook.build_image(context=object(), config=SECRET_CONFIG)
    ui.flush_output()
    text = [(stream, data) for stream, data in events if data.strip()]
    assert text[0] == ("stdout", "epoch 1")
    assert text[1][0] == "stderr" and text[1][1].startswith("fahr trace build_image(")


@pytest.mark.parametrize("args", [["--help"], ["fit", "--help"], ["drivers"]])
def test_start_up_does_not_import_the_trace(args):
    code = ("import sys\nfrom fahr_core import cli\nsys.argv = ['fahr', *sys.argv[1:]]\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "print('TRACE', 'fahr_core.trace' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert "TRACE False" in proc.stdout, proc.stdout + proc.stderr
