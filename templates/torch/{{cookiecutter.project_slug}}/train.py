"""{{ cookiecutter.project_name | replace('\\', '\\\\') | replace('"', '\\"') }}: {{ cookiecutter.description | replace('\\', '\\\\') | replace('"', '\\"') }}

Trains a small PyTorch network (DistributedDataParallel) on synthetic regression data, one
worker per GPU, or NPROC_PER_NODE CPU workers (default 1) where there is no GPU, on one host or
many: seconds on a CPU.

It works both ways:

- ``python train.py [epochs=20 lr=0.05 ...]`` trains here and writes ``./model/``;
- inside a fahr job (``FAHR_EXECUTION_ENVIRONMENT`` is set, whatever the driver) it keeps the
  SageMaker container contract: hyperparameters from ``/opt/ml/input/config/hyperparameters.json``
  (strings, typed like DEFAULTS), the model to ``/opt/ml/model/`` (packed into model.tar.gz), the
  reason of a failure to ``/opt/ml/output/failure``, and a checkpoint to ``/opt/ml/checkpoints/``
  each epoch and when stopped, from which the next run resumes.

Either way the script first becomes ``torchrun --nproc-per-node=N train.py`` (as_torchrun), which
starts the workers; in a fahr job of several hosts, fahr has set what torchrun reads to find the
other hosts (PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR, PET_MASTER_PORT), so every host's
workers form one group with no flag given.
"""

import json
import os
import signal
import sys
import traceback
from pathlib import Path

IN_JOB = bool(os.environ.get("FAHR_EXECUTION_ENVIRONMENT"))
OPT_ML = Path("/opt/ml")
MODEL_DIR = OPT_ML / "model" if IN_JOB else Path("model")
CHECKPOINT_DIR = OPT_ML / "checkpoints" if IN_JOB else Path("checkpoints")
HYPERPARAMETERS = OPT_ML / "input" / "config" / "hyperparameters.json"

# Hyperparameters and their defaults; a job hands every value over as a string.
DEFAULTS = {"epochs": 20, "lr": 0.05, "batch_size": 32, "samples": 4096, "features": 16, "seed": 0}

_stop_requested = False


def typed(name, raw):
    """A hyperparameter's string value, converted to the type of its default."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown hyperparameter {name!r}; known: {', '.join(DEFAULTS)}")
    try:
        return type(DEFAULTS[name])(raw)
    except ValueError:
        raise ValueError(f"hyperparameter {name}={raw!r} is not a valid {type(DEFAULTS[name]).__name__}") from None


def hyperparameters(argv):
    """DEFAULTS, overridden by the job's hyperparameters.json, or by KEY=VALUE arguments here."""
    given = {}
    if IN_JOB and HYPERPARAMETERS.exists():
        given = json.loads(HYPERPARAMETERS.read_text())
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ValueError(f"argument {arg!r}: expected KEY=VALUE, e.g. epochs=30")
        given[key] = value
    return {**DEFAULTS, **{k: typed(k, v) for k, v in given.items()}}


def as_torchrun():
    """Become ``torchrun --nproc-per-node=N train.py ARGS``, unless this is one of its workers.

    ``torch.distributed.is_torchelastic_launched()`` tells a worker (torchrun sets
    TORCHELASTIC_RUN_ID); RANK or LOCAL_RANK do not: fahr sets them in a job of several hosts for
    scripts run once per host. ``os.execv`` replaces this process, so torchrun is the job's
    process: it gets the job's SIGTERM on stop and passes it on to every worker.
    """
    import torch

    if torch.distributed.is_torchelastic_launched():
        return
    per_node = os.environ.get("NPROC_PER_NODE") or ("gpu" if torch.cuda.is_available() else "1")
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run",  # that is, `torchrun`
                              f"--nproc-per-node={per_node}", os.path.abspath(__file__), *sys.argv[1:]])


def _on_sigterm(signum, frame):
    global _stop_requested
    _stop_requested = True  # torchrun passes the job's SIGTERM on as it is: stop after this step


def synthetic_data(hp):
    """The same samples on every worker (a seeded generator): y = f(X) + noise."""
    import torch

    generator = torch.Generator().manual_seed(hp["seed"])
    X = torch.randn(hp["samples"], hp["features"], generator=generator)
    w = torch.randn(hp["features"], 1, generator=generator)
    y = torch.sin(X @ w) + 0.05 * torch.randn(hp["samples"], 1, generator=generator)
    return X, y


def train(hp):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    gpu = torch.cuda.is_available()
    dist.init_process_group("nccl" if gpu else "gloo")  # env://: RANK, WORLD_SIZE, MASTER_* from torchrun
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{os.environ['LOCAL_RANK']}" if gpu else "cpu")
    if gpu:
        torch.cuda.set_device(device)

    X, y = synthetic_data(hp)
    per_worker = len(X) // world  # the same number of batches on every worker, or the others wait
    X, y = X[rank::world][:per_worker].to(device), y[rank::world][:per_worker].to(device)

    torch.manual_seed(hp["seed"])
    network = torch.nn.Sequential(torch.nn.Linear(hp["features"], 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    optimizer = torch.optim.SGD(network.parameters(), lr=hp["lr"])
    checkpoint, start = CHECKPOINT_DIR / "checkpoint.pt", 0
    if checkpoint.exists():  # every host has the checkpoints (fahr copies them to each)
        state = torch.load(checkpoint, map_location="cpu")
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
        if rank == 0:
            print(f"resuming from {checkpoint} at epoch {start}", flush=True)
    model = DistributedDataParallel(network.to(device), device_ids=[device.index] if gpu else None)
    if rank == 0:
        print(f"training on {world} workers, {per_worker} samples each, epochs {start}..{hp['epochs'] - 1}",
              flush=True)

    def save_checkpoint(epoch):
        if rank == 0:  # one writer; written whole, then renamed: a stop never leaves half a file
            CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
            torch.save({"epoch": epoch, "model": network.state_dict(), "optimizer": optimizer.state_dict()},
                       checkpoint.with_suffix(".tmp"))
            os.replace(checkpoint.with_suffix(".tmp"), checkpoint)

    for epoch in range(start, hp["epochs"]):
        order = torch.randperm(per_worker, generator=torch.Generator().manual_seed(hp["seed"] * 1000 + epoch))
        total = torch.zeros(2, device=device)  # this worker's summed loss, its samples
        for first in range(0, per_worker, hp["batch_size"]):
            # Every worker stops at the same step: the flag of any of them stops them all.
            stop = torch.tensor([float(_stop_requested)], device=device)
            dist.all_reduce(stop, op=dist.ReduceOp.MAX)
            if stop.item():
                save_checkpoint(epoch)  # this epoch runs again, from the weights it reached
                if rank == 0:
                    print(f"stopped in epoch {epoch}; checkpoint saved to {checkpoint}", flush=True)
                dist.destroy_process_group()
                sys.exit(128 + signal.SIGTERM)
            batch = order[first:first + hp["batch_size"]]
            loss = torch.nn.functional.mse_loss(model(X[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()  # gradients are averaged over all workers of all hosts
            optimizer.step()
            total += torch.stack([loss.detach() * len(batch), torch.tensor(float(len(batch)), device=device)])
        dist.all_reduce(total)
        save_checkpoint(epoch + 1)
        if rank == 0:
            # One line fahr reads as metrics, needing no definitions (`fahr jobs`, Job.metrics):
            # "fahr-metric NAME=VALUE ... step=N".
            print(f"fahr-metric loss={(total[0] / total[1]).item():.6f} step={epoch}", flush=True)

    if rank == 0:
        MODEL_DIR.mkdir(parents=True, exist_ok=True)
        torch.save(network.state_dict(), MODEL_DIR / "model.pt")
        (MODEL_DIR / "metrics.json").write_text(json.dumps({"workers": world, "hyperparameters": hp}, indent=2))
        checkpoint.unlink(missing_ok=True)  # trained to the end: nothing to resume
        print(f"trained on {world} workers; model saved to {MODEL_DIR / 'model.pt'}", flush=True)
    dist.destroy_process_group()


def main(argv):
    try:
        hp = hyperparameters(argv)
        as_torchrun()
        signal.signal(signal.SIGTERM, _on_sigterm)
        train(hp)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if IN_JOB:  # its first 1024 characters become the job's FailureReason: the reason alone,
            # as fahr's failure line shows it; the traceback below goes to the job's log
            (OPT_ML / "output").mkdir(parents=True, exist_ok=True)
            (OPT_ML / "output" / "failure").write_text(reason[:1024])
        traceback.print_exc()
        print(f"training failed: {reason}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
