"""fahr's plugin API as a stated surface: `fahr_core.__all__`, the plain-data `fahr_core.values`,
a hookspecs module that depends on nothing else of fahr, no import cycle inside fahr_core, and
the drivers fahr ships (and its test driver, and the driver template) built on that surface only."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fahr_core
from conftest import ROOT, run_fahr
from fahrcli import isolated_home  # noqa: F401 (a fixture)

CORE = ROOT / "fahr_core"


# -- the public surface -----------------------------------------------------------------------


def test_every_name_in_all_resolves_and_the_promised_groups_are_there():
    missing = [name for name in fahr_core.__all__ if not hasattr(fahr_core, name)]
    assert missing == []
    assert len(set(fahr_core.__all__)) == len(fahr_core.__all__)
    promised = {
        "__version__", "hookimpl", "PLUGIN_API_VERSION",
        "BuildContext", "ImageRef", "JobSpec", "JobHandle", "JobResult", "FetchRequest",
        "IN_PROGRESS", "COMPLETED", "FAILED", "STOPPING", "STOPPED", "FINAL_STATES",
        "ConfigKey", "Config", "Template", "Stash", "StashKey",
        "FahrError", "UsageError", "ConfigError", "PluginError", "BuildError", "EnvironmentProblem", "JobFailed",
        "EXIT_OK", "EXIT_JOB_FAILED", "EXIT_USAGE", "EXIT_ENVIRONMENT", "EXIT_INTERNAL", "EXIT_INTERRUPTED",
        "job_name", "job_stem", "validate_job_name", "model_image_tag", "validate_model_tag", "JOB_NAME_MAX",
        "docker_client", "ui",
    }
    assert promised <= set(fahr_core.__all__)
    assert fahr_core.PLUGIN_API_VERSION.split(".")[0] == "1"


def test_the_old_import_paths_still_work():
    # A driver written against the API before 1.0 keeps importing.
    from fahr_core import config, scaffold
    from fahr_core.errors import UsageError

    assert config.ConfigKey is fahr_core.ConfigKey and config.Config is fahr_core.Config
    assert scaffold.Template is fahr_core.Template
    assert UsageError is fahr_core.UsageError


OLD_VALUES_PATH = """
import json, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from fahr_core.jobs import (BuildContext, ImageRef, JobSpec, JobHandle, JobResult, FetchRequest, IN_PROGRESS,
                                COMPLETED, FAILED, STOPPING, STOPPED, FINAL_STATES)
import fahr_core
import fahr_core.api
import fahr_core.jobs as old_module_path
names = ("BuildContext", "ImageRef", "JobSpec", "JobHandle", "JobResult", "FetchRequest", "IN_PROGRESS",
         "COMPLETED", "FAILED", "STOPPING", "STOPPED", "FINAL_STATES")
print(json.dumps({
    "same": all(globals()[name] is getattr(fahr_core, name) for name in names),
    "warnings": [(w.category.__name__, str(w.message), w.filename) for w in caught],
    "jobs_is_the_api_function": fahr_core.jobs is fahr_core.api.jobs,
    "module_callable": callable(sys.modules["fahr_core.jobs"]),
    "attribute_form": all(getattr(old_module_path, name) is getattr(fahr_core, name) for name in names)
                      and fahr_core.jobs.JobSpec is fahr_core.JobSpec,
}))
"""


def test_the_values_old_import_path_works_with_a_deprecation_warning_and_the_api_function_stays():
    # A third-party driver of plugin API 1.0 imports its values from fahr_core.jobs: that keeps
    # working until 2.0, with a DeprecationWarning pointing at the driver's own line; the API
    # function fahr_core.jobs is not replaced by the module, and the module is not callable.
    proc = subprocess.run([sys.executable, "-c", OLD_VALUES_PATH], capture_output=True, text=True, check=True)
    seen = json.loads(proc.stdout)
    assert seen["same"] is True
    assert [w[0] for w in seen["warnings"]] == ["DeprecationWarning"]
    assert "from fahr_core import JobSpec" in seen["warnings"][0][1] and "2.0" in seen["warnings"][0][1]
    assert seen["warnings"][0][2] == "<string>"  # the importer's line, not fahr's
    assert seen["jobs_is_the_api_function"] is True
    assert seen["module_callable"] is False
    assert seen["attribute_form"] is True  # import fahr_core.jobs as values; values.JobSpec


def test_fahr_s_own_code_imports_no_value_from_the_old_path():
    root = Path(fahr_core.__file__).resolve().parent
    users = [str(path.relative_to(root.parent)) for path in [*root.rglob("*.py"),
                                                             *(root.parent / "fahr_sagemaker").rglob("*.py")]
             if path.name != "jobs.py" and re.search(r"from fahr_core\.jobs import|import fahr_core\.jobs",
                                                     path.read_text())]
    assert users == []


def test_the_helpers_are_the_core_s_own():
    from fahr_core import engine, names, ui

    assert fahr_core.ui is ui
    assert fahr_core.job_name is names.job_name and fahr_core.validate_model_tag is names.validate_model_tag
    assert fahr_core.JOB_NAME_MAX == names.JOB_NAME_MAX
    assert fahr_core.docker_client.__module__ == "fahr_core"
    assert "engine.client()" in Path(fahr_core.__file__).read_text()  # the shared client, not a new one
    assert callable(engine.client)
    assert set(ui.__all__) <= set(dir(ui)) and "log_line" in ui.__all__ and "status_change" in ui.__all__


IMPORT_PROBE = """
import json, sys
import fahr_core
from fahr_core import *  # every promised name, resolved
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("docker", "boto3", "botocore", "rich", "cookiecutter")
                or m in ("fahr_core.engine", "fahr_core.image", "fahr_core.session", "fahr_core.plugins"))
fahr_core.docker_client  # named, not called
print(json.dumps(loaded))
"""


def test_importing_fahr_core_and_all_of_its_names_stays_cheap():
    proc = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == []


# -- fahr_core.values: plain data -------------------------------------------------------------


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, anywhere in it (TYPE_CHECKING blocks and functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def test_values_imports_only_the_standard_library_and_does_no_io():
    source = CORE / "values.py"
    foreign = [(line, name) for line, name in _imports(source)
               if name.split(".")[0] not in sys.stdlib_module_names | {"__future__"}]
    assert foreign == []
    calls = {node.func.id for node in ast.walk(ast.parse(source.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not calls & {"open", "print", "input", "exec", "eval", "__import__"}


def test_hookspecs_imports_only_pluggy_and_the_values():
    names = {name for _, name in _imports(CORE / "hookspecs.py")}
    assert names <= {"__future__", "pathlib", "typing", "pluggy", "fahr_core.values"}, names
    assert "fahr_core.values" in names


def test_the_stash_takes_typed_keys():
    from fahr_core import Stash, StashKey

    count, label = StashKey[int](), StashKey[str]()
    stash = Stash()
    assert count not in stash and stash.get(count, 7) == 7 and len(stash) == 0
    stash[count] = 1
    stash[label] = "one"
    assert count in stash and stash[count] == 1 and stash.get(count, 7) == 1 and stash[label] == "one"
    assert stash.setdefault(count, 5) == 1 and stash.setdefault(StashKey[int](), 5) == 5
    del stash[count]
    assert count not in stash
    with pytest.raises(KeyError):
        stash[count]
    with pytest.raises(KeyError):
        del stash[count]
    assert StashKey[int]() not in stash  # keys compare by identity: a new key is another key
    for bad in ("count", 1, None):
        with pytest.raises(TypeError, match="StashKey"):
            stash[bad] = 1
        with pytest.raises(TypeError, match="StashKey"):
            stash.get(bad, None)


def test_every_config_has_a_fresh_stash():
    from fahr_core import Config, Stash, StashKey

    key = StashKey[str]()
    one, two = Config("d", {"a": 1}, {"a": "default"}), Config("d", {"a": 1}, {"a": "default"})
    assert isinstance(one.stash, Stash)
    one.stash[key] = "computed"
    assert key not in two.stash and one.stash[key] == "computed"
    assert dict(one) == {"a": 1}  # the stash is not a configuration key


def test_the_sagemaker_preflight_is_kept_in_the_run_s_stash():
    from fahr_core import Config
    from fahr_sagemaker import aws

    assert "id(config)" not in (ROOT / "fahr_sagemaker/src/fahr_sagemaker/aws.py").read_text()
    config = Config("sagemaker", {}, {})
    checked = aws.Checked(account="123456789012", region="eu-west-1",
                          role_arn="arn:aws:iam::123456789012:role/r", output=aws.parse_s3("s3://fahr-models/p", "x"))
    config.stash[aws.CHECKED] = checked
    assert aws.preflight(config) is checked  # the run's answer, no AWS call (the config is empty)
    with pytest.raises(fahr_core.ConfigError, match="output_path"):
        aws.preflight(Config("sagemaker", {"output_path": ""}, {}))  # another run checks anew


# -- no import cycle inside fahr_core ---------------------------------------------------------


def _core_modules() -> dict[str, Path]:
    modules = {}
    for path in CORE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        if "templates" in rel.parts:
            continue
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_graph(module_level_only: bool) -> dict[str, set[str]]:
    """fahr_core's intra-package imports: module -> the fahr_core modules it imports.

    ``from fahr_core import ui`` is an edge to fahr_core.ui; ``from fahr_core import hookimpl`` to the
    package itself. With ``module_level_only`` False, imports inside functions and ``if
    TYPE_CHECKING:`` count too: a deferred import is still a dependency.
    """
    modules = _core_modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        if module_level_only:
            nodes = [n for top in tree.body
                     if not (isinstance(top, ast.If) and "TYPE_CHECKING" in ast.unparse(top.test))
                     for n in ([top] if not isinstance(top, (ast.If, ast.Try)) else ast.walk(top))]
        else:
            nodes = list(ast.walk(tree))
        edges = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.split(".")[0] == "fahr_core"}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "fahr_core":
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in modules else node.module)
        graph[name] = edges - {name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


@pytest.mark.parametrize("module_level_only", [True, False], ids=["module-level", "with-deferred-imports"])
def test_fahr_core_has_no_import_cycle(module_level_only):
    graph = import_graph(module_level_only)
    assert {"fahr_core.defaults", "fahr_core.scaffold", "fahr_core.plugins", "fahr_core.hookspecs"} <= set(graph)
    assert find_cycles(graph) == []


def test_the_cli_goes_through_the_api_alone():
    # The CLI parses, calls fahr_core.api, prints and maps errors: it never loads a driver, opens a
    # session or walks a command's steps itself (docs/architecture.md).
    graph = import_graph(module_level_only=False)
    assert "fahr_core.api" in graph["fahr_core.cli"]
    assert graph["fahr_core.cli"] & {"fahr_core.plugins", "fahr_core.session", "fahr_core.plan",
                                     "fahr_core.report", "fahr_core.image", "fahr_core.extract"} == set()


def test_the_cycle_finder_finds_the_cycle_fahr_had():
    # defaults -> scaffold -> plugins -> defaults (through deferred imports), as before 1.0.
    graph = {"fahr_core.defaults": {"fahr_core.scaffold"}, "fahr_core.scaffold": {"fahr_core.plugins"},
             "fahr_core.plugins": {"fahr_core.defaults", "fahr_core.hookspecs"}, "fahr_core.hookspecs": set()}
    assert find_cycles(graph) == [["fahr_core.defaults", "fahr_core.scaffold", "fahr_core.plugins",
                                   "fahr_core.defaults"]]


def test_each_fahr_core_module_imports_alone_in_a_fresh_interpreter():
    names = sorted(n for n in _core_modules() if n != "fahr_core.notebook_runner")  # runs in the job's image
    script = ("import importlib, subprocess, sys\n"
              "bad = []\n"
              f"for name in {names!r}:\n"
              "    p = subprocess.run([sys.executable, '-c', 'import ' + name], capture_output=True, text=True)\n"
              "    if p.returncode: bad.append((name, p.stderr.strip().splitlines()[-1]))\n"
              "print(bad)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


# -- the drivers fahr ships use the public surface only -----------------------------------------


def private_imports(folder: Path) -> list[str]:
    """``file:line`` of every use of fahr_core beyond ``fahr_core.__all__`` and ``fahr_core.testing``."""
    public = set(fahr_core.__all__)
    found = []
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            bad = None
            if isinstance(node, ast.Import):
                bad = [a.name for a in node.names if a.name.startswith("fahr_core.") and a.name != "fahr_core.testing"]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "fahr_core":
                    bad = [f"fahr_core.{a.name}" for a in node.names if a.name not in public and a.name != "testing"]
                elif node.module.startswith("fahr_core.") and node.module != "fahr_core.testing":
                    bad = [node.module]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "fahr_core":
                bad = [] if node.attr in public or node.attr == "testing" else [f"fahr_core.{node.attr}"]
            if bad:
                found.append(f"{path}:{node.lineno}: {', '.join(bad)}")
    return found


@pytest.mark.parametrize("tree", ["fahr_sagemaker/src", "tests/plugins/fahr_testdriver"])
def test_shipped_plugins_use_only_the_public_surface(tree):
    assert list((ROOT / tree).rglob("*.py"))
    assert private_imports(ROOT / tree) == []


def test_the_driver_template_uses_only_the_public_surface(tmp_path, isolated_home):
    # Scanned as rendered (the template's source is Jinja). Its hooks/ are fahr's own code, run by
    # fahr while rendering, and are not part of the generated package.
    from cookiecutter.main import cookiecutter

    from fahr_core.scaffold import builtin_dir

    project = Path(cookiecutter(str(builtin_dir() / "driver"), no_input=True, output_dir=str(tmp_path)))
    assert {p.name for p in project.rglob("*.py")} == {"__init__.py", "test_conformance.py", "test_driver.py"}
    assert private_imports(project) == []


def test_the_surface_check_names_the_offending_file_and_line(tmp_path):
    (tmp_path / "bad.py").write_text(
        "import fahr_core\n"
        "from fahr_core import hookimpl, ui\n"
        "from fahr_core.testing import DriverConformance\n"
        "from fahr_core.jobs import JobSpec\n"
        "import fahr_core.engine\n"
        "from fahr_core import plugins\n"
        "fahr_core.names.job_name('a/b')\n"
        "fahr_core.job_name('a/b')\n"
    )
    found = private_imports(tmp_path)
    assert found == [f"{tmp_path / 'bad.py'}:4: fahr_core.jobs", f"{tmp_path / 'bad.py'}:5: fahr_core.engine",
                     f"{tmp_path / 'bad.py'}:6: fahr_core.plugins", f"{tmp_path / 'bad.py'}:7: fahr_core.names"]


# -- in-process plugins -------------------------------------------------------------------------


class Watcher:
    """An extra plugin: declares a key, checks the run, and wraps launch."""

    def __init__(self):
        self.calls = []

    @fahr_core.hookimpl
    def config_keys(self):
        return [fahr_core.ConfigKey("watch_label", str, "unset", "A key an extra plugin declares.")]

    @fahr_core.hookimpl
    def check_run(self, config, inputs):
        self.calls.append(("check_run", config["watch_label"], dict(inputs)))

    @fahr_core.hookimpl(wrapper=True)
    def launch(self, spec, config):
        self.calls.append(("before launch", spec.job_name))
        handle = yield
        self.calls.append(("after launch", handle.driver))
        return fahr_core.JobHandle(driver=handle.driver, job_name=handle.job_name, model_tag=handle.model_tag,
                                   details={**handle.details, "watched": True})


def test_manager_for_registers_extra_plugins_after_the_driver(tmp_path):
    from fahr_core import config as cfg
    from fahr_core import plugins

    watcher = Watcher()
    pm = plugins.manager_for("testdrv", extra_plugins=[watcher])
    names = [name for name, _ in pm.list_name_plugin()]
    assert names.index("driver:testdrv") < names.index(next(n for n in names if n.startswith("extra:")))
    keys = plugins.driver_config_keys(pm)
    config = cfg.resolve("testdrv", keys, cfg.read_project_file(tmp_path),
                         overrides=[("record_dir", str(tmp_path / "rec")), ("watch_label", "from-cli")], environ={})
    assert config["watch_label"] == "from-cli" and config.sources["watch_label"] == "--config.watch_label"

    pm.hook.check_run(config=config, inputs={"train": "/data"}, secrets=())
    spec = fahr_core.JobSpec(job_name="hello-1", model_tag="hello/train", image=fahr_core.ImageRef(name="hello/train"))
    handle = pm.hook.launch(spec=spec, config=config)

    assert watcher.calls == [("check_run", "from-cli", {"train": "/data"}), ("before launch", "hello-1"),
                             ("after launch", "testdrv")]
    assert handle.details["watched"] is True  # the wrapper's answer is the hook's answer
    steps = [json.loads(line)["step"] for line in (tmp_path / "rec" / "steps.jsonl").read_text().splitlines()]
    assert steps == ["launch"]  # the driver's launch ran inside the wrapper


def test_an_extra_plugin_that_does_not_fit_is_a_plugin_error():
    class Wrong:
        @fahr_core.hookimpl
        def launch(self, spec, config, rocket):  # an argument the hook does not have
            return None

    with pytest.raises(fahr_core.PluginError, match="extra plugin"):
        from fahr_core import plugins

        plugins.manager_for("testdrv", extra_plugins=[Wrong()])


# -- the CLI texts -------------------------------------------------------------------------------


def test_fahr_drivers_shows_each_driver_s_own_description():
    rows = {row["name"]: row for row in json.loads(run_fahr("drivers", "--json", check=0).stdout)}
    assert rows["testdrv"]["description"] == (
        "A driver for fahr's own tests, installed as a real distribution (`fahr-testdriver`).")
    assert rows["local"]["description"].startswith("The local driver: train in containers")
    assert rows["sagemaker"]["description"].startswith("The sagemaker driver of fahr: train on AWS SageMaker")
    text = run_fahr("drivers", check=0).stdout
    assert "A driver for fahr's own tests" in text


def test_the_description_is_read_without_running_the_module(tmp_path):
    from fahr_core.plugins import module_summary

    pkg = tmp_path / "sumpkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('raise SystemExit("the package ran")\n')
    (pkg / "sub" / "__init__.py").write_text('raise SystemExit("the subpackage ran")\n')
    (pkg / "sub" / "drv.py").write_text('"""The ``drv`` driver: runs jobs.\n\nMore here.\n"""\nraise SystemExit("ran")\n')
    (pkg / "plain.py").write_text("x = 1\n")
    (pkg / "broken.py").write_text('"""Half\n')
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from fahr_core.plugins import module_summary as m; "
              "print([m('sumpkg.sub.drv'), m('sumpkg.plain'), m('sumpkg.broken'), m('sumpkg.nothing'), m('nosuch')]); "
              "print(sorted(n for n in sys.modules if n.startswith('sumpkg')))")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["['The drv driver: runs jobs.', '', '', '', '']", "[]"]
    assert module_summary("json") == "JSON (JavaScript Object Notation) <https://json.org> is a subset of"


def test_fahr_drivers_verbose_marks_required_keys():
    text = run_fahr("drivers", "--verbose", check=0).stdout
    assert "    record_dir (str, required, default '')" in text
    assert "    flavour (int, default 1)" in text


def test_fetch_help_names_the_claiming_driver_and_no_dockerfile():
    text = " ".join(run_fahr("fetch", "--help", check=0).stdout.split())
    assert "Dockerfile" not in text
    assert "the driver that claims it is used" in text
    assert "--train-driver" in text and "claims ARTIFACT_LOCATION" in text


def test_wait_for_an_unknown_local_job_suggests_the_train_driver(tmp_path):
    proc = run_fahr("wait", "hello-train-20260101-000000-abcd", cwd=tmp_path,
                    env={"FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs"), "FAHR_DRIVER": ""})
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fahr error: no local job record at ")
    assert lines[0].endswith("; if it ran on another driver, pass --train-driver NAME")
