"""Driver discovery through real installed distributions, and the CLI's errors.

`fahr-testdriver` (tests/plugins/) is installed by scripts/install-dev.sh where only the tests see
it (tests/plugins/.site, on the path of this session and of the `fahr` processes it starts), not
into the environment users are pointed to. The deliberately bad drivers of tests/plugin_fixtures/ are installed here,
with pip, into a folder put on PYTHONPATH for one `fahr` process.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import fahr_core

from conftest import FAHR, ROOT, one_line_error, run_fahr

FIXTURES = ROOT / "tests" / "plugin_fixtures"


@pytest.fixture(scope="session")
def bad_drivers(tmp_path_factory):
    """Each bad driver installed by pip into a folder of its own: name -> folder."""
    installed = {}
    for name in ("brokendriver", "dupdriver", "incompletedriver"):
        target = tmp_path_factory.mktemp(name)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
             "--target", str(target), str(FIXTURES / f"fahr_{name}")],
            check=True, capture_output=True,
        )
        installed[name] = target
    return installed


def test_drivers_lists_installed_distributions():
    proc = run_fahr("drivers", "--json", check=0)
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert rows["local"]["distribution"] == "fahr"
    assert rows["testdrv"]["distribution"] == "fahr-testdriver"
    assert rows["testdrv"]["version"] == "0.0.1"
    # the driver's own one-line description (its module's docstring), not the distribution's summary
    assert rows["testdrv"]["description"].startswith("A driver for fahr's own tests")
    text = run_fahr("drivers", check=0).stdout
    assert "testdrv" in text and "fahr-testdriver 0.0.1" in text


def test_the_environment_users_are_pointed_to_holds_no_test_plugin():
    # `make demo` ends with "use .venv/bin/fahr", the environment `make venv` made and the tests
    # run in: its fahr, as a user runs it (no PYTHONPATH of the tests), lists fahr's drivers and
    # templates, none of the tests'.
    user = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    drivers = subprocess.run([str(FAHR), "drivers", "--json"], env=user, capture_output=True, text=True,
                             check=True).stdout
    assert sorted(row["name"] for row in json.loads(drivers)) == ["local", "sagemaker"]
    templates = subprocess.run([str(FAHR), "templates"], env=user, capture_output=True, text=True, check=True).stdout
    assert "testdrv" not in templates and "model" in templates
    distributions = subprocess.run(
        [sys.executable, "-c",
         "import importlib.metadata as m; print(sorted(d.metadata['Name'] for d in m.distributions()))"],
        env=user, capture_output=True, text=True, check=True).stdout
    assert "fahr-testdriver" not in distributions and "fahr-brokendrivers" not in distributions
    # The test session's own fahr processes find them.
    assert "broken-reference" in run_fahr("drivers", check=0).stdout


def test_drivers_verbose_shows_config_keys():
    rows = {r["name"]: r for r in json.loads(run_fahr("drivers", "--json", "--verbose", check=0).stdout)}
    keys = {k["name"]: k for k in rows["testdrv"]["config"]}
    assert keys["record_dir"]["required"] is True
    assert keys["flavour"] == {"name": "flavour", "type": "int", "default": 1, "required": False,
                               "required_for": [], "help": "A number, to test typed config."}
    assert "base_image" in keys  # the core's own key is part of every driver's configuration


def test_version_lists_drivers():
    out = run_fahr("--version", check=0).stdout
    assert out.startswith(f"fahr {fahr_core.__version__}")
    assert "driver testdrv: fahr-testdriver 0.0.1" in out


PROBE = textwrap.dedent("""
    import json, sys
    sys.argv = ["fahr", *sys.argv[1:]]
    from fahr_core.cli import main
    try:
        main()
    except SystemExit:
        pass
    heavy = sorted(m for m in sys.modules
                   if m.split(".")[0] in ("docker", "boto3", "botocore", "rich", "cookiecutter",
                                          "fahr_testdriver", "fahr_sagemaker")
                   or m == "fahr_core.drivers.local")
    print("MODULES=" + json.dumps(heavy))
""")


@pytest.mark.parametrize("args", [["--help"], ["drivers"], ["drivers", "--json"], ["fit", "--help"], ["metrics", "--help"],
                                  ["--version"]])
def test_start_up_imports_no_sdk_and_no_driver(args):
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          env={**os.environ, "NO_COLOR": "1"})
    line = [l for l in proc.stdout.splitlines() if l.startswith("MODULES=")]
    assert line, proc.stdout + proc.stderr
    assert json.loads(line[0][len("MODULES="):]) == []


def test_unknown_driver_lists_the_choices(tmp_path):
    (tmp_path / "train.py").write_text("print(1)\n")
    line = one_line_error(run_fahr("fit", tmp_path / "train.py", "--train-driver", "nope"), 2)
    # The development install also holds the conformance suite's broken-* test drivers.
    prefix = "train driver 'nope' is not installed. Choose one of: "
    assert prefix in line, line
    choices = {word.strip(",.;") for word in line.split(prefix, 1)[1].split()}
    assert {"local", "sagemaker", "testdrv"} <= choices, line


def test_broken_driver_names_distribution_and_exception(tmp_path, bad_drivers):
    (tmp_path / "train.py").write_text("print(1)\n")
    proc = run_fahr("fit", tmp_path / "train.py", "--train-driver", "broken",
                    env={"PYTHONPATH": str(bad_drivers["brokendriver"])})
    line = one_line_error(proc, 2)
    assert "driver 'broken' from fahr-brokendriver 9.9.9 failed to import: ModuleNotFoundError" in line


def test_broken_driver_traceback_with_debug(tmp_path, bad_drivers):
    (tmp_path / "train.py").write_text("print(1)\n")
    proc = run_fahr("--debug", "fit", tmp_path / "train.py", "--train-driver", "broken",
                    env={"PYTHONPATH": str(bad_drivers["brokendriver"])})
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_same_driver_name_from_two_distributions(bad_drivers):
    proc = run_fahr("drivers", env={"PYTHONPATH": str(bad_drivers["dupdriver"])})
    line = one_line_error(proc, 2)
    assert "driver 'local' is registered by two distributions" in line
    assert f"fahr {fahr_core.__version__}" in line and "fahr-dupdriver 9.9.9" in line


def test_driver_lacking_required_hooks(tmp_path, bad_drivers):
    (tmp_path / "train.py").write_text("print(1)\n")
    proc = run_fahr("fit", tmp_path / "train.py", "--train-driver", "incomplete",
                    env={"PYTHONPATH": str(bad_drivers["incompletedriver"])})
    line = one_line_error(proc, 2)
    assert "does not implement the required hook(s) wait, fetch" in line


@pytest.mark.parametrize(
    "name,content,message",
    [("missing.py", None, "does not exist"),
     ("train.ipynb", "{}", "is not a Jupyter notebook"),
     ("train.txt", "x", "must be a Python script (.py)")],
)
def test_bad_artifacts(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    line = one_line_error(run_fahr("fit", tmp_path / name, "--train-driver", "testdrv",
                                   f"--config.record_dir={tmp_path}"), 2)
    assert message in line
    assert not (tmp_path / "Dockerfile").exists()  # nothing written for a rejected artifact


def steps(record_dir):
    return [json.loads(l) for l in (record_dir / "steps.jsonl").read_text().splitlines()]


def test_run_walks_the_five_steps_with_layered_config(tmp_path, project):
    record = tmp_path / "rec"
    (project / "fahr.toml").write_text(f'driver = "testdrv"\n[testdrv]\nrecord_dir = "{record}"\nflavour = 5\n')
    timer = tmp_path / "timer.jsonl"
    proc = run_fahr("fit", project / "train.py", "--hp", "lr=0.1", "--hp", "expr=a=b", "--env", "X=1",
                    "--input", "train=s3://b/k", "--config.verbose_steps=true",
                    env={"FAHR_TESTDRV_FLAVOUR": "7", "FAHR_STEPTIMER_FILE": str(timer)}, check=0)
    got = steps(record)
    assert [s["step"] for s in got] == ["build_image", "push_image", "launch", "wait"]
    launch = got[2]
    assert launch["config"]["flavour"] == 7  # env beats file
    assert launch["config"]["verbose_steps"] is True  # typed from the CLI
    assert launch["image"] == "registry.test/proj/train@sha256:" + "1" * 64  # push_image's answer
    assert launch["hyperparameters"] == {"lr": "0.1", "expr": "a=b"}
    assert launch["inputs"] == {"train": "s3://b/k"} and launch["environment"] == {"X": "1"}
    assert launch["job_name"].startswith("proj-train-")
    # The extension plugin wrapped the steps it declared.
    assert [json.loads(l)["step"] for l in timer.read_text().splitlines()] == ["build_image", "launch", "wait"]
    # The exact fetch command is printed, and it works.
    cmd = [l.strip() for l in proc.stderr.splitlines() if l.strip().startswith("fahr fetch ./")]
    assert cmd == [f"fahr fetch ./model proj/train --train-driver testdrv --job {launch['job_name']}"]
    out = tmp_path / "out"
    run_fahr("fetch", out, "proj/train", record, "--train-driver", "testdrv", cwd=project, check=0)
    assert json.loads((out / "hyperparameters.json").read_text()) == {"lr": "0.1", "expr": "a=b"}
    # From a folder without that fahr.toml: record_dir is `required` (for fit, wait and stop, as
    # the hookspec says), not for fetch, which is told the location.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_fahr("fetch", tmp_path / "out2", "proj/train", record, "--train-driver", "testdrv", cwd=elsewhere, check=0)
    assert (tmp_path / "out2" / "hyperparameters.json").is_file()


def test_failed_job_exits_1_with_reason(tmp_path, project):
    proc = run_fahr("fit", project / "train.py", "--train-driver", "testdrv", f"--config.record_dir={tmp_path}",
                    "--config.fail_with=CUDA out of memory")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("fahr error:")]
    assert len(errors) == 1 and errors[0] == proc.stderr.strip().splitlines()[-1]
    line = errors[0]
    assert "failed" in line and "CUDA out of memory" in line


@pytest.mark.parametrize(
    "args,message",
    [(["--config.record_dr=x"], "did you mean config.record_dir?"),
     (["--config.flavour=many"], "config.flavour='many' (from --config.flavour) is not a valid int"),
     (["--hp", "novalue"], "--hp 'novalue': expected --hp KEY=VALUE"),
     (["--input", "bad/name=/x"], "a channel name is 1-64 letters, digits, '.', '-' or '_'"),
     (["--input", "..=/x"], "a channel name is 1-64 letters"),
     (["--env", "A B=1"], "--env A B=…: a variable name is letters, digits and '_'"),
     ([], "driver 'testdrv' needs config.record_dir")],
)
def test_usage_errors_are_one_line_exit_2(project, args, message):
    line = one_line_error(run_fahr("fit", project / "train.py", "--train-driver", "testdrv", *args), 2)
    assert message in line


def test_fetch_errors(tmp_path):
    line = one_line_error(run_fahr("fetch", tmp_path / "o", "Not/A:Tag", "--train-driver", "testdrv"), 2)
    assert "is not a model image tag" in line
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    line = one_line_error(run_fahr("fetch", tmp_path / "full", "a/b", "--train-driver", "testdrv"), 2)
    assert "not empty" in line and "--overwrite" in line
    line = one_line_error(run_fahr("fetch", tmp_path / "o", "a/b", "gs://bucket/x"), 2)
    assert "no installed driver handles gs://bucket/x" in line


def test_config_options_may_come_before_the_positionals(tmp_path, project):
    record = tmp_path / "rec"
    run_fahr("fit", f"--config.record_dir={record}", "--train-driver", "testdrv", project / "train.py", check=0)
    job = steps(record)[-1]["job_name"]
    out = tmp_path / "out"
    run_fahr("fetch", f"--config.record_dir={record}", out, "proj/train", "--train-driver", "testdrv",
             "--job", job, check=0)
    assert (out / "hyperparameters.json").is_file()
    line = one_line_error(run_fahr("fit", "--config.record_dir=x", "--train-driver", "testdrv"), 2)
    assert "missing TRAINING_ARTIFACT" in line
