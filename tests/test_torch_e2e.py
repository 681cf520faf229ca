"""Real PyTorch (DDP over gloo, CPU) across 2 hosts of the `local` driver, with the real Docker
engine and the real `fahr`: a plain `init_process_group()` script run once per host, and the
`torch` template, whose train.py becomes `torchrun --nproc-per-node=2 train.py` with no host
flag. Both hold only because fahr's launcher exports what env:// and torchrun read
(docs/multi-host.md).

Out of the default suite (the image holds torch): `make test-torch` runs it (FAHR_TEST_TORCH=1).
Its base image is python:3.11-slim with torch and numpy installed, from FAHR_TEST_TORCH_WHEEL
(a CPU wheel: an image of about 1 GB) when given, else PyPI's torch (several GB); it is built
once and kept, so that a re-run builds only the projects' own layers.
"""

import json
import os
import re
import shutil
import textwrap
import time
from pathlib import Path

import pytest

from conftest import run_fahr

pytestmark = [pytest.mark.docker, pytest.mark.torch]

if not os.environ.get("FAHR_TEST_TORCH"):
    pytest.skip("real torch in the image: run with `make test-torch`", allow_module_level=True)

BASE = "i19torchrun-torch-base:cpu"

# One process per host, no torchrun: env:// reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
PLAIN = textwrap.dedent("""
    import os
    from pathlib import Path

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(rank)
    for step in range(20):
        x = torch.randn(16, 4, generator=generator)
        loss = (model(x) - x.sum(dim=1, keepdim=True)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)
    weights = [None] * world
    dist.all_gather_object(weights, model.module.weight.detach().tolist())  # needs numpy beside torch
    print(f"rank {rank} of {world} on {os.environ['FAHR_CURRENT_HOST']}: sum {total.item()}, "
          f"same weights {all(w == weights[0] for w in weights)}", flush=True)
    if rank == 0:
        torch.save(model.module.state_dict(), Path("/opt/ml/model") / "model.pt")
    dist.destroy_process_group()
""")


@pytest.fixture(scope="module")
def base_image(docker_engine, tmp_path_factory):
    """python:3.11-slim with torch and numpy: what a project's requirements.txt then finds installed."""
    import docker.errors

    wheel = Path(os.environ["FAHR_TEST_TORCH_WHEEL"]) if os.environ.get("FAHR_TEST_TORCH_WHEEL") else None
    source = wheel.name if wheel else "pypi"
    try:
        if docker_engine.images.get(BASE).labels.get("torch-from") == source:
            return BASE  # built by an earlier run from the same wheel
    except docker.errors.ImageNotFound:
        pass
    context = tmp_path_factory.mktemp("torch-base")
    if wheel:
        shutil.copy(wheel, context / wheel.name)  # the engine follows no link out of the context
        install = (f"COPY {wheel.name} /tmp/\n"
                   f"RUN pip install --no-cache-dir /tmp/{wheel.name} numpy && rm /tmp/{wheel.name}\n")
    else:
        install = "RUN pip install --no-cache-dir torch numpy\n"
    (context / "Dockerfile").write_text(f"FROM python:3.11-slim\nLABEL torch-from={source}\n{install}")
    docker_engine.images.build(path=str(context), tag=BASE, rm=True)
    return BASE


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch-e2e")
    (root / "jobs").mkdir()
    return root


def fit(workspace, artifact, *args):
    return run_fahr("fit", artifact, "--train-driver", "local", f"--config.output_path={workspace / 'jobs'}",
                    *args, cwd=workspace, timeout=1200)


def model_files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_plain_init_process_group_script_trains_across_2_hosts(workspace, base_image):
    project = workspace / "i19torchrun-plain"
    project.mkdir()
    (project / "train.py").write_text(PLAIN)
    (project / "requirements.txt").write_text("torch\nnumpy\n")
    out = workspace / "plain-out"
    result = fit(workspace, project / "train.py", "--config.instance_count=2", f"--config.base_image={base_image}",
                 "--fetch", out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for rank, host in enumerate(["algo-1", "algo-2"]):
        assert f"rank {rank} of 2 on {host}: sum 3.0, same weights True" in result.stdout
    assert model_files(out) == ["model.pt"]


def test_the_torch_template_trains_across_2_hosts_under_plain_torchrun(workspace, base_image):
    init = run_fahr("init", "i19torchrun-ddp", "--template", "torch", "--no-input", "--set",
                    f"base_image={base_image}", cwd=workspace, env={"HOME": str(workspace)})
    assert init.returncode == 0, init.stderr
    project = workspace / "i19torchrun-ddp"
    out = workspace / "ddp-out"
    result = fit(workspace, project / "train.py", "--config.instance_count=2", "--env", "NPROC_PER_NODE=2",
                 "--hp", "epochs=3", "--hp", "samples=1024", "--fetch", out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # 2 hosts x 2 workers form one group of 4 (with only NNODES & co. set, torchrun ran each host alone: 2).
    assert "training on 4 workers, 256 samples each" in result.stdout
    assert [line.split("step=")[1] for line in result.stdout.splitlines() if "fahr-metric loss=" in line] == \
        ["0", "1", "2"]  # the global rank 0 alone prints the metrics
    assert model_files(out) == ["metrics.json", "model.pt"]
    assert json.loads((out / "metrics.json").read_text())["workers"] == 4
    # Trained to the end: the checkpoint written each epoch was removed, and fahr kept that.
    assert not list((project / ".fahr" / "checkpoints").glob("*.pt"))


def test_the_torch_template_trains_on_one_host_as_written(workspace, base_image):
    # One host: no PET_* variables, torchrun rendezvouses on its own (a free port on localhost).
    project = workspace / "i19torchrun-ddp"
    assert project.exists(), "baked by the test before"
    result = fit(workspace, project / "train.py", "--env", "NPROC_PER_NODE=2", "--hp", "epochs=1",
                 "--hp", "samples=512", "--fetch", workspace / "one-host-out")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "training on 2 workers, 256 samples each" in result.stdout
    assert json.loads((workspace / "one-host-out" / "metrics.json").read_text())["workers"] == 2


def test_a_stopped_torchrun_job_checkpoints_on_every_host_and_the_next_fit_resumes(workspace, base_image):
    # torchrun passes the job's SIGTERM on as a plain SIGTERM: the template's own handler lets the
    # 4 workers of 2 hosts stop at the same step and rank 0 save; the next fit resumes from it.
    project = workspace / "i19torchrun-ddp"
    assert project.exists(), "baked by the test before"
    common = ["--config.instance_count=2", "--env", "NPROC_PER_NODE=2", "--hp", "samples=1024"]
    launched = fit(workspace, project / "train.py", *common, "--hp", "epochs=100000", "--detach")
    assert launched.returncode == 0, launched.stderr
    job = re.search(r"launching job (\S+)", launched.stderr).group(1)
    jobs = {"FAHR_LOCAL_OUTPUT_PATH": str(workspace / "jobs")}
    deadline = time.monotonic() + 300
    while "fahr-metric loss=" not in run_fahr("logs", job, env=jobs).stdout:
        assert time.monotonic() < deadline, run_fahr("logs", job, env=jobs).stdout[-2000:]
        time.sleep(1)
    stopped = run_fahr("stop", job, env=jobs)
    assert stopped.returncode == 0, stopped.stderr
    logs = run_fahr("logs", job, env=jobs).stdout
    assert "[algo-1] stopped in epoch " in logs, logs[-3000:]
    stopped_in = int(logs.split("stopped in epoch ")[1].split(";")[0])
    assert (project / ".fahr" / "checkpoints" / "checkpoint.pt").is_file()

    result = fit(workspace, project / "train.py", *common, "--hp", f"epochs={stopped_in + 2}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"resuming from /opt/ml/checkpoints/checkpoint.pt at epoch {stopped_in}" in result.stdout
    assert "training on 4 workers" in result.stdout
    assert [line.split("step=")[1] for line in result.stdout.splitlines() if "fahr-metric loss=" in line] == \
        [str(stopped_in), str(stopped_in + 1)]
    assert not (project / ".fahr" / "checkpoints" / "checkpoint.pt").exists()  # trained to the end
