"""The generated image's launcher (fahr_core/launcher.py) without Docker: the host variables it
derives from resourceconfig.json, and the entrypoint programs it is embedded in, run for real
in a Python subprocess (the file's path redirected: there is no /opt/ml here)."""

import ast
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fahr_core import image, launcher
from fahr_core.launcher import DEFAULT_MASTER_PORT, host_environment

NAMES = ["FAHR_HOSTS", "FAHR_CURRENT_HOST", "FAHR_HOST_RANK", "FAHR_NUM_HOSTS",
         "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NNODES",
         "PET_NNODES", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"]


def resourceconfig(tmp_path, current="algo-2", hosts=("algo-1", "algo-2", "algo-3")):
    path = tmp_path / "resourceconfig.json"
    # SageMaker's shape, as the drivers write it.
    path.write_text(json.dumps({
        "current_host": current, "current_instance_type": "local", "current_group_name": "homogeneousCluster",
        "hosts": list(hosts), "network_interface_name": "eth0",
        "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": "local",
                             "hosts": list(hosts)}],
    }))
    return path


def test_the_variables_come_from_resourceconfig(tmp_path):
    assert host_environment(resourceconfig(tmp_path), environ={}) == {
        "FAHR_HOSTS": "algo-1,algo-2,algo-3",
        "FAHR_CURRENT_HOST": "algo-2",
        "FAHR_HOST_RANK": "1",
        "FAHR_NUM_HOSTS": "3",
        "MASTER_ADDR": "algo-1",
        "MASTER_PORT": "29500",
        "NODE_RANK": "1",
        "NNODES": "3",
        # What torchrun reads for --nnodes, --node-rank, --master-addr, --master-port: a plain
        # `torchrun --nproc-per-node=N train.py` joins the hosts (with only the names above it
        # parsed nnodes 1:1, node_rank 0, master_addr 127.0.0.1: each host trained alone).
        "PET_NNODES": "3",
        "PET_NODE_RANK": "1",
        "PET_MASTER_ADDR": "algo-1",
        "PET_MASTER_PORT": "29500",
        # What env:// init_process_group() reads: the script as one torchrun worker per host.
        "RANK": "1",
        "WORLD_SIZE": "3",
        "LOCAL_RANK": "0",
    }
    assert DEFAULT_MASTER_PORT == "29500"  # torchrun's own default, as documented


def test_a_job_of_one_host_gets_no_torch_variables(tmp_path):
    # One host: torchrun and the script see what they see on a laptop (torchrun then picks a free
    # port itself), and a script telling a distributed run by RANK runs alone.
    env = host_environment(resourceconfig(tmp_path, "algo-1", ["algo-1"]), environ={})
    assert env == {"FAHR_HOSTS": "algo-1", "FAHR_CURRENT_HOST": "algo-1", "FAHR_HOST_RANK": "0",
                   "FAHR_NUM_HOSTS": "1", "MASTER_ADDR": "algo-1", "MASTER_PORT": "29500",
                   "NODE_RANK": "0", "NNODES": "1"}


def test_the_names_are_the_ones_plan_refuses_in_env():
    assert list(launcher.HOST_VARIABLES) == NAMES


def test_torchrun_parses_the_hosts_from_the_variables(tmp_path):
    # torchrun's own parser, when torch is installed (make test-torch's venv): it reads PET_<FLAG>.
    run = pytest.importorskip("torch.distributed.run")
    env = host_environment(resourceconfig(tmp_path), environ={})
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        args = run.parse_args(["--nproc-per-node=2", "train.py"])
    assert (args.nnodes, args.node_rank, args.master_addr, args.master_port) == ("3", 1, "algo-1", 29500)


def test_hosts_keep_resourceconfigs_order_and_the_rank_is_the_index(tmp_path):
    hosts = ("algo-10", "algo-2", "algo-1")  # not sorted: the file's order is the truth
    for rank, host in enumerate(hosts):
        env = host_environment(resourceconfig(tmp_path, host, hosts), environ={})
        assert env["FAHR_HOSTS"] == "algo-10,algo-2,algo-1" and env["MASTER_ADDR"] == "algo-10"
        assert env["FAHR_HOST_RANK"] == env["NODE_RANK"] == str(rank)


def test_only_master_port_is_taken_from_the_environment(tmp_path):
    given = {"MASTER_PORT": "23456", "MASTER_ADDR": "elsewhere", "NODE_RANK": "7", "NNODES": "9",
             "FAHR_HOST_RANK": "5", "FAHR_HOSTS": "a,b", "PET_MASTER_PORT": "1", "RANK": "4"}
    env = host_environment(resourceconfig(tmp_path), environ=given)
    assert env["MASTER_PORT"] == env["PET_MASTER_PORT"] == "23456" and env["RANK"] == "1"
    assert (env["MASTER_ADDR"], env["NODE_RANK"], env["NNODES"], env["FAHR_HOST_RANK"], env["FAHR_HOSTS"]) == (
        "algo-1", "1", "3", "1", "algo-1,algo-2,algo-3")
    assert host_environment(resourceconfig(tmp_path), environ={"MASTER_PORT": ""})["MASTER_PORT"] == "29500"


def test_a_missing_file_sets_nothing_silently(tmp_path, capsys):
    assert host_environment(tmp_path / "absent.json", environ={}) == {}
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("content", [
    "not json",
    "[]",
    json.dumps({"hosts": ["algo-1"]}),
    json.dumps({"current_host": "algo-1"}),
    json.dumps({"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}),
    json.dumps({"current_host": "algo-1", "hosts": []}),
    json.dumps({"current_host": "algo-1", "hosts": "algo-1"}),
    json.dumps({"current_host": "algo-1", "hosts": ["algo-1", 2]}),
    json.dumps({"current_host": "a,b", "hosts": ["a,b"]}),
    json.dumps({"current_host": "a\u0000", "hosts": ["a\u0000"]}),
    '{"current_host": "\\ud800", "hosts": ["\\ud800"]}',
    json.dumps({"current_host": "a\nFOO=1", "hosts": ["a\nFOO=1"]}),
    json.dumps({"current_host": "algo 1", "hosts": ["algo 1"]}),
    json.dumps({"current_host": "", "hosts": [""]}),
    json.dumps({"current_host": "algo-1", "hosts": ["algo-1", "algo-1", "algo-2"]}),
    json.dumps({"current_host": ["algo-1"], "hosts": ["algo-1"]}),
    "[" * 100000,
    json.dumps({"hosts": float("nan")}),
], ids=["not-json", "not-object", "no-current", "no-hosts", "current-not-in-hosts", "no-host",
        "hosts-a-string", "host-not-a-string", "comma", "nul", "lone-surrogate", "newline", "space", "empty-name",
        "duplicate-hosts", "current-unhashable", "nested-too-deep", "nan"])
def test_a_malformed_file_sets_nothing_and_says_so_in_one_line(tmp_path, capsys, content):
    path = tmp_path / "resourceconfig.json"
    path.write_text(content)
    assert host_environment(path, environ={}) == {}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fahr launcher: {path} is unusable (")
    assert err.rstrip().endswith("multi-host variables not set")


def test_an_unusable_file_still_runs_the_script_with_nothing_set(tmp_path):
    # The promise of docs/multi-host.md, through the real program: a lone surrogate (which
    # os.environ cannot hold) and a nesting too deep for the JSON parser end in one stderr line,
    # the script runs, and its exit code is the job's.
    script = tmp_path / "train.py"
    script.write_text(REPORT + "sys.exit(3)\n")
    for content in ('{"current_host": "\\ud800", "hosts": ["\\ud800"]}', "[" * 100000):
        config = tmp_path / "resourceconfig.json"
        config.write_text(content)
        proc = run_program(image.entrypoint_program("train.py"), config, script, env={})
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"fahr launcher: {config} is unusable (")
        assert json.loads(proc.stdout)["env"] == dict.fromkeys(NAMES)


def test_an_interrupt_while_reading_is_not_swallowed(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(launcher.json, "load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        host_environment(resourceconfig(tmp_path), environ={})


def test_an_unreadable_file_sets_nothing(tmp_path, capsys):
    folder = tmp_path / "resourceconfig.json"
    folder.mkdir()  # open() fails (IsADirectoryError): the launcher must not crash on it
    assert host_environment(folder, environ={}) == {}
    assert "is unusable (IsADirectoryError" in capsys.readouterr().err


def test_the_launcher_imports_the_standard_library_only():
    # It runs in the job's image, where fahr is not installed; and it adds to every job's start.
    tree = ast.parse(image.entrypoint_program("train.py"))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    # datetime, hashlib, hmac and urllib only when the job reads a Secrets Manager secret (--secret on sagemaker)
    assert imported == {"json", "os", "signal", "sys", "runpy", "datetime", "hashlib", "hmac", "urllib"}


def test_the_entrypoint_programs_are_the_modules_sources():
    source = (image.Path(launcher.__file__)).read_text()
    assert image.entrypoint_program("train.py") == source
    runner = (image.Path(launcher.__file__).parent / "notebook_runner.py").read_text()
    assert image.entrypoint_program("train.ipynb") == runner + "\n\n" + source
    for name in ("train.py", "train.ipynb"):
        text = image.dockerfile_text(name, "python:3.11-slim", has_requirements=False)
        # The program is a file of the image, which fahr sends with the build context.
        assert image.fahr_files(text, name) == {image.LAUNCHER_IN_CONTEXT: image.entrypoint_program(name).encode()}
        assert f"COPY {image.LAUNCHER_IN_CONTEXT} {image.LAUNCHER_PATH}" in text.splitlines()
        entry = json.loads(next(line for line in text.splitlines() if line.startswith("ENTRYPOINT "))[11:])
        assert entry == ["python", image.LAUNCHER_PATH, name]
        assert "fahr's launcher" in text  # the Dockerfile says where the program comes from


def test_the_generated_dockerfile_reads_as_a_dockerfile():
    for name in ("train.py", "train.ipynb"):
        for requirements in (False, True):
            text = image.dockerfile_text(name, "python:3.11-slim", has_requirements=requirements)
            assert max(map(len, text.splitlines())) <= 100, text


def test_only_the_dockerfile_fahr_writes_gets_the_launcher():
    assert image.fahr_files('FROM python:3.11-slim\nENTRYPOINT ["python", "-c", "..."]\n', "train.py") == {}
    # The frames of the launcher file are fahr's, left out of a failure line, as the old images' were.
    assert {image.LAUNCHER_PATH, "<string>"} <= set(launcher.OWN_FRAME_FILES)


def test_the_launcher_file_runs_the_script_from_the_script_s_folder(tmp_path):
    # As the image runs it: `python /opt/fahr/launcher.py train.py` in the project's folder; the
    # script imports a module beside it, as `python train.py` lets it.
    program = tmp_path / "fahr" / "launcher.py"
    program.parent.mkdir()
    program.write_text(image.entrypoint_program("train.py"))
    project = tmp_path / "program"
    project.mkdir()
    (project / "helper.py").write_text("ANSWER = 42\n")
    (project / "train.py").write_text("import sys, helper\nprint(helper.ANSWER, sys.path[0])\n")
    proc = subprocess.run([sys.executable, str(program), "train.py", "train"], cwd=project,
                          capture_output=True, text=True, env={})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"42 {project}\n"


def test_the_notebook_program_defines_no_name_twice():
    # The runner's source and the launcher's share one namespace in a notebook image.
    def top_level(source):
        names = set()
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names |= {t.id for t in ast.walk(node) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}
        return names

    runner = top_level((image.Path(launcher.__file__).parent / "notebook_runner.py").read_text())
    own = top_level(image.entrypoint_program("train.py"))
    assert "run_notebook" in runner and "main" in own and runner & own == set()


# The program as the image runs it (python -c PROGRAM ARTIFACT train), but with the launcher's
# global RESOURCE_CONFIG pointed at a test file before its `main` runs.
DRIVER = textwrap.dedent("""
    import sys
    program, config, artifact = sys.argv[1:4]
    namespace = {"__name__": "entrypoint"}
    exec(compile(program, "<string>", "exec"), namespace)
    namespace["RESOURCE_CONFIG"] = config
    namespace.update(EXTRA)
    namespace["main"](artifact)
""")


def run_program(program, config, artifact, extra="{}", env=None, **kwargs):
    code = DRIVER.replace("EXTRA", extra)
    return subprocess.run([sys.executable, "-c", code, program, str(config), str(artifact), "train"],
                          capture_output=True, text=True, env=env, **kwargs)


REPORT = textwrap.dedent("""
    import json, os, sys
    names = %r
    print(json.dumps({"argv": sys.argv, "name": __name__,
                      "env": {n: os.environ.get(n) for n in names}}))
""") % NAMES


def test_a_script_runs_with_the_variables_and_argv_as_python_script_gives(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(REPORT)
    proc = run_program(image.entrypoint_program("train.py"), resourceconfig(tmp_path, "algo-3"), script,
                       env={"MASTER_PORT": "23456", "NODE_RANK": "9"})
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["argv"] == [str(script)] and seen["name"] == "__main__"
    assert seen["env"] == {"FAHR_HOSTS": "algo-1,algo-2,algo-3", "FAHR_CURRENT_HOST": "algo-3",
                           "FAHR_HOST_RANK": "2", "FAHR_NUM_HOSTS": "3", "MASTER_ADDR": "algo-1",
                           "MASTER_PORT": "23456", "NODE_RANK": "2", "NNODES": "3",
                           "PET_NNODES": "3", "PET_NODE_RANK": "2", "PET_MASTER_ADDR": "algo-1",
                           "PET_MASTER_PORT": "23456", "RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "0"}


def test_without_resourceconfig_the_script_runs_with_nothing_set(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(REPORT + "sys.exit(3)\n")
    # The real program, unchanged: there is no /opt/ml/input/config/resourceconfig.json here.
    proc = subprocess.run([sys.executable, "-c", image.entrypoint_program("train.py"), str(script), "train"],
                          capture_output=True, text=True, env={})
    assert proc.returncode == 3 and proc.stderr == ""
    seen = json.loads(proc.stdout)
    assert seen["argv"] == [str(script)] and seen["env"] == dict.fromkeys(NAMES)


def test_sigterm_ends_the_script_with_143_after_its_cleanup(tmp_path):
    script = tmp_path / "train.py"
    marker = tmp_path / "cleaned"
    script.write_text(textwrap.dedent(f"""
        import atexit, time
        atexit.register(lambda: open({str(marker)!r}, "w").write("atexit"))
        try:
            print("ready", flush=True)  # inside the try: SIGTERM may come right after it
            time.sleep(60)
        finally:
            print("finally ran", flush=True)
    """))
    proc = subprocess.Popen([sys.executable, "-c", image.entrypoint_program("train.py"), str(script), "train"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert proc.wait(10) == 128 + signal.SIGTERM and time.monotonic() - started < 5
    assert proc.stdout.read() == "finally ran\n" and marker.read_text() == "atexit"


def test_the_notebook_program_exports_the_same_variables_before_running_the_notebook(tmp_path):
    # papermill is not installed here: run_notebook is replaced by one that reports what it sees.
    extra = ("{'run_notebook': lambda nb: print(__import__('json').dumps({'notebook': nb, "
             "'env': {n: __import__('os').environ.get(n) for n in %r}, "
             "'sigterm': __import__('signal').getsignal(15).__name__}))}" % NAMES)
    proc = run_program(image.entrypoint_program("train.ipynb"), resourceconfig(tmp_path, "algo-1"),
                       "train.ipynb", extra=extra, env={})
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen == {"notebook": "train.ipynb", "sigterm": "_stop", "env": host_environment(
        resourceconfig(tmp_path, "algo-1"), environ={})}
    assert seen["env"]["NODE_RANK"] == "0" and seen["env"]["MASTER_ADDR"] == "algo-1"


def test_docs_multi_host_lists_every_variable_and_its_code_compiles(tmp_path):
    import re

    text = (image.Path(launcher.__file__).parents[1] / "docs" / "multi-host.md").read_text()
    documented = re.findall(r"^\| `([A-Z_]+)` \|", text, re.M)
    assert documented == list(host_environment(resourceconfig(tmp_path), environ={}))
    assert f"else `{DEFAULT_MASTER_PORT}`" in text
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        compile(block, "multi-host.md", "exec")
