"""The generated image's launcher end to end, with the real Docker engine and the real `fahr`:
hosts of a `local` job find FAHR_HOSTS, MASTER_ADDR, NODE_RANK, … and really rendezvous with
them; the same image run by a plain `docker run IMAGE train` (no fahr, no resourceconfig.json)
saves its model under /opt/ml/model, as under any other SageMaker runner; the emulated
`sagemaker` driver's hosts find the same variables (that test uses the emulated AWS: run this
module under `flock /tmp/fahr-emulator.lock`).

One script's image serves every test of the module but the notebook's.
"""

import io
import json
import tarfile
import textwrap

import pytest

from conftest import one_line_error, run_fahr

pytestmark = pytest.mark.docker

NAMES = ["FAHR_HOSTS", "FAHR_CURRENT_HOST", "FAHR_HOST_RANK", "FAHR_NUM_HOSTS",
         "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NNODES",
         "PET_NNODES", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"]


def torch_variables(rank, hosts, port="29500"):
    """What torchrun reads (PET_*) and what env:// init_process_group reads, for host ``rank``."""
    return {"PET_NNODES": str(hosts), "PET_NODE_RANK": str(rank), "PET_MASTER_ADDR": "algo-1",
            "PET_MASTER_PORT": port, "RANK": str(rank), "WORLD_SIZE": str(hosts), "LOCAL_RANK": "0"}

# Each host checks the variables against resourceconfig.json and its own host name; rank 0
# listens on MASTER_PORT and gathers every rank, the others connect to MASTER_ADDR:MASTER_PORT,
# send theirs and receive the full list; each writes what it saw into /opt/ml/model/<host>.json.
# Run without resourceconfig.json (no SageMaker runner) it saves standalone.json, following the
# README's pattern: /opt/ml/model when FAHR_EXECUTION_ENVIRONMENT is set.
SCRIPT = textwrap.dedent("""
    import json, os, socket, sys, time
    from pathlib import Path

    NAMES = %r
    env = {n: os.environ.get(n) for n in NAMES}
    seen = {"env": env, "argv": sys.argv, "hostname": socket.gethostname(),
            "execution_environment": os.environ.get("FAHR_EXECUTION_ENVIRONMENT")}
    model = Path("/opt/ml/model") if os.environ.get("FAHR_EXECUTION_ENVIRONMENT") else Path("model")
    model.mkdir(parents=True, exist_ok=True)
    config = Path("/opt/ml/input/config/resourceconfig.json")
    if not config.exists():
        (model / "standalone.json").write_text(json.dumps(seen))
        sys.exit(0)
    rc = json.loads(config.read_text())
    hosts, me = rc["hosts"], rc["current_host"]
    rank = hosts.index(me)
    problems = [p for p, ok in [
        ("FAHR_HOSTS", env["FAHR_HOSTS"] == ",".join(hosts)),
        ("FAHR_CURRENT_HOST", env["FAHR_CURRENT_HOST"] == me == socket.gethostname()),
        ("FAHR_HOST_RANK", env["FAHR_HOST_RANK"] == env["NODE_RANK"] == str(rank)),
        ("FAHR_NUM_HOSTS", env["FAHR_NUM_HOSTS"] == env["NNODES"] == str(len(hosts))),
        ("MASTER_ADDR", env["MASTER_ADDR"] == hosts[0]),
    ] if not ok]
    if problems:
        Path("/opt/ml/output/failure").write_text(f"wrong {problems}: {env}")
        sys.exit(1)
    port = int(env["MASTER_PORT"])
    if rank == 0:
        server = socket.create_server(("", port))
        server.settimeout(120)
        peers = {}
        while len(peers) < len(hosts) - 1:
            connection, _ = server.accept()
            stream = connection.makefile("rw")
            peers[int(stream.readline())] = (connection, stream)
        received = sorted([rank, *peers])
        for connection, stream in peers.values():
            stream.write(json.dumps(received) + "\\n")
            stream.flush()
            connection.close()
    else:
        deadline = time.time() + 120
        while True:
            try:
                connection = socket.create_connection((env["MASTER_ADDR"], port), timeout=5)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        stream = connection.makefile("rw")
        stream.write(f"{rank}\\n")
        stream.flush()
        received = json.loads(stream.readline())
    seen.update(rank=rank, received=received)
    (model / f"{me}.json").write_text(json.dumps(seen))
    print(f"{me}: rank {rank} received {received} from {env['MASTER_ADDR']}:{port}")
""") % NAMES


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, docker_engine):
    folder = tmp_path_factory.mktemp("launcher")
    project = folder / "hostvars"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    return folder


def fit(workspace, *args):
    return run_fahr("fit", *args, env={"FAHR_LOCAL_OUTPUT_PATH": str(workspace / "jobs")}, check=0)


@pytest.fixture(scope="module")
def three_hosts(workspace):
    """A 3-host job of the script, fetched: the proc and the model folder."""
    out = workspace / "three"
    proc = fit(workspace, workspace / "hostvars" / "train.py", "--config.instance_count=3", "--fetch", out)
    return proc, out


def test_three_hosts_find_the_variables_and_rendezvous_on_master_addr_and_port(three_hosts):
    proc, out = three_hosts
    assert sorted(p.name for p in out.iterdir()) == ["algo-1.json", "algo-2.json", "algo-3.json"]
    for rank, host in enumerate(["algo-1", "algo-2", "algo-3"]):
        seen = json.loads((out / f"{host}.json").read_text())
        assert seen["env"] == {"FAHR_HOSTS": "algo-1,algo-2,algo-3", "FAHR_CURRENT_HOST": host,
                               "FAHR_HOST_RANK": str(rank), "FAHR_NUM_HOSTS": "3",
                               "MASTER_ADDR": "algo-1", "MASTER_PORT": "29500",
                               "NODE_RANK": str(rank), "NNODES": "3", **torch_variables(rank, 3)}
        assert seen["rank"] == rank and seen["received"] == [0, 1, 2]  # rank 0 gathered every rank
        assert seen["hostname"] == host and seen["execution_environment"] == "local"  # the driver's name wins
        assert seen["argv"] == ["train.py"]
        assert f"{host}: rank {rank} received [0, 1, 2] from algo-1:29500" in proc.stdout


def test_master_port_from_env_wins_the_others_are_refused(workspace, three_hosts):
    out = workspace / "port"
    fit(workspace, workspace / "hostvars" / "train.py", "--config.instance_count=2", "--fetch", out,
        "--env", "MASTER_PORT=23456")
    for rank, host in enumerate(["algo-1", "algo-2"]):
        seen = json.loads((out / f"{host}.json").read_text())
        assert seen["env"]["MASTER_PORT"] == seen["env"]["PET_MASTER_PORT"] == "23456" and seen["received"] == [0, 1]
        assert seen["env"]["NODE_RANK"] == str(rank) and seen["env"]["MASTER_ADDR"] == "algo-1"
    proc = run_fahr("fit", workspace / "hostvars" / "train.py", "--config.instance_count=2",
                    "--env", "NODE_RANK=7", env={"FAHR_LOCAL_OUTPUT_PATH": str(workspace / "jobs")})
    assert one_line_error(proc, 2) == ("fahr error: --env NODE_RANK=…: fahr sets NODE_RANK on every host of a "
                                       "job from its hosts (docs/multi-host.md); leave it out")


def test_plain_docker_run_saves_the_model_under_opt_ml_model(docker_engine, three_hosts):
    # No fahr, no variable set, no /opt/ml given: the image's own default of
    # FAHR_EXECUTION_ENVIRONMENT makes the README's pattern save under /opt/ml/model.
    container = docker_engine.containers.run("hostvars/train:latest", "train", detach=True)
    try:
        assert container.wait(timeout=120)["StatusCode"] == 0, container.logs().decode()
        assert container.logs(stdout=False, stderr=True).decode() == ""  # no launcher complaint without resourceconfig
        stream, _ = container.get_archive("/opt/ml/model")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            assert [m.name for m in tar.getmembers() if m.isfile()] == ["model/standalone.json"]
            seen = json.load(tar.extractfile("model/standalone.json"))
    finally:
        container.remove(force=True)
    assert seen["execution_environment"] == "sagemaker"
    assert seen["env"] == dict.fromkeys(NAMES)  # no resourceconfig.json: nothing set, nothing made up
    assert seen["argv"] == ["train.py"]


NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 5, "metadata": {},
    "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "id": "c1",
               "source": ["import json, os\n",
                          f"names = {NAMES!r}\n",
                          "host = os.environ['FAHR_CURRENT_HOST']\n",
                          "json.dump({n: os.environ.get(n) for n in names}, open(f'/opt/ml/model/{host}.json', 'w'))\n"]}],
}


def test_a_notebook_image_exports_the_same_variables(workspace):
    project = workspace / "nbhostvars"
    project.mkdir()
    (project / "train.ipynb").write_text(json.dumps(NOTEBOOK))
    out = workspace / "notebook"
    fit(workspace, project / "train.ipynb", "--config.instance_count=2", "--fetch", out)
    for rank, host in enumerate(["algo-1", "algo-2"]):
        assert json.loads((out / f"{host}.json").read_text()) == {
            "FAHR_HOSTS": "algo-1,algo-2", "FAHR_CURRENT_HOST": host, "FAHR_HOST_RANK": str(rank),
            "FAHR_NUM_HOSTS": "2", "MASTER_ADDR": "algo-1", "MASTER_PORT": "29500",
            "NODE_RANK": str(rank), "NNODES": "2", **torch_variables(rank, 2)}


def test_sagemaker_hosts_get_the_same_variables(stack, workspace):
    # The emulated SageMaker runs the same image: the launcher's variables do not depend on the driver.
    from aws_emulator.fixtures import run_fahr as run_on_stack, sagemaker_args

    out = workspace / "sagemaker"
    result = run_on_stack(stack, "fit", str(workspace / "hostvars" / "train.py"), *sagemaker_args("launcher"),
                          "--config.train_instance_count=2", "--fetch", str(out), cwd=workspace)
    assert result.code == 0, result.output
    for rank, host in enumerate(["algo-1", "algo-2"]):
        seen = json.loads((out / f"{host}.json").read_text())
        assert seen["env"] == {"FAHR_HOSTS": "algo-1,algo-2", "FAHR_CURRENT_HOST": host,
                               "FAHR_HOST_RANK": str(rank), "FAHR_NUM_HOSTS": "2",
                               "MASTER_ADDR": "algo-1", "MASTER_PORT": "29500",
                               "NODE_RANK": str(rank), "NNODES": "2", **torch_variables(rank, 2)}
        assert seen["received"] == [0, 1] and seen["execution_environment"] == "sagemaker"
