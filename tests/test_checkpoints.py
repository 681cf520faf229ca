"""Checkpoints and resume, end to end: a job stopped half way and fitted again resumes.

A model that trains ``epochs`` epochs (about a second each) saves its epoch and state to
/opt/ml/checkpoints after each one, and on start resumes from what it finds there. The first job
waits after epoch ``pause_after`` (a job about to be interrupted: the test can stop it there, and
no later epoch can race the stop); it is stopped with ``fahr stop``. The checkpoint store (the
local driver's ``checkpoint_path``, the emulated SageMaker's ``checkpoint_s3_uri``) must then hold
epoch 2, and the job fitted again must resume at epoch 3 and say so in its model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from aws_emulator.fixtures import BUCKET, sagemaker_args
from aws_emulator.fixtures import run_fahr as run_fahr_on_stack
from aws_emulator.fixtures import write_model
from conftest import FAHR, one_line_error, run_fahr

pytestmark = pytest.mark.docker

RESUMABLE = """\
import json, os, signal, sys, time
from pathlib import Path

def on_sigterm(signum, frame):  # a stop (or a spot interruption): the last checkpoint is saved
    print("stopped", flush=True)
    sys.exit(128 + signum)

signal.signal(signal.SIGTERM, on_sigterm)
hp = json.loads(Path("/opt/ml/input/config/hyperparameters.json").read_text())
epochs, pause_after = int(hp["epochs"]), int(hp.get("pause_after", "0"))
fail_after = int(hp.get("fail_after", "0"))
checkpoints = Path("/opt/ml/checkpoints")
checkpoints.mkdir(parents=True, exist_ok=True)  # as on SageMaker, the script makes it when it may be absent
saved = checkpoints / "state.json"
start, state = 1, 0
if saved.exists():
    found = json.loads(saved.read_text())
    start, state = found["epoch"] + 1, found["state"]
    print(f"resuming at epoch {start}", flush=True)
for epoch in range(start, epochs + 1):
    time.sleep(1)
    state += epoch
    partial = checkpoints / "state.json.partial"
    partial.write_text(json.dumps({"epoch": epoch, "state": state}))
    os.replace(partial, saved)  # a checkpoint is written whole or not at all
    print(f"epoch {epoch} saved", flush=True)
    if epoch == fail_after:
        sys.exit("failing on purpose after epoch %d" % epoch)
    if epoch == pause_after:
        time.sleep(600)  # wait here to be stopped
model = Path("/opt/ml/model")
model.mkdir(parents=True, exist_ok=True)
(model / "model.json").write_text(json.dumps({"started_at": start, "state": state}))
"""


def _watch_for(command: list[str], needle: str, env=None, cwd=None, timeout: float = 180) -> None:
    """Follow ``fahr logs -f`` until a line holds ``needle``; the follower is ended afterwards."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            seen.append(line)
            if needle in line:
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert found.wait(timeout), f"no {needle!r} in the job's logs:\n{''.join(seen)}"
    finally:
        proc.kill()
        proc.wait()


def _job_of(stderr: str) -> str:
    found = re.search(r"launching job (\S+) on driver", stderr)
    assert found, f"no job was launched:\n{stderr}"
    return found.group(1)


# -- local -----------------------------------------------------------------------------------------


def test_local_job_stopped_after_epoch_2_resumes_at_epoch_3(docker_engine, jobs_dir, tmp_path):
    script = tmp_path / "resumable" / "train.py"
    script.parent.mkdir()
    script.write_text(RESUMABLE)
    store = tmp_path / "store" / "ckpt"  # made by fahr, parents and all
    common = ["--hp", "epochs=4", f"--config.checkpoint_path={store}", "--config.stop_timeout=5"]

    first = run_fahr("fit", script, *common, "--hp", "pause_after=2", "--detach", check=0)
    job = _job_of(first.stderr)
    _watch_for([str(FAHR), "logs", job, "-f"], "epoch 2 saved")
    run_fahr("stop", job, check=0)
    record = json.loads((jobs_dir / job / "job.json").read_text())
    assert record["status"] == "Stopped" and record["checkpoint_path"] == str(store)
    assert json.loads((store / "state.json").read_text()) == {"epoch": 2, "state": 3}
    assert sorted(p.name for p in store.parent.iterdir()) == ["ckpt"]  # no staging folder or spool left

    second = run_fahr("fit", script, *common, check=0)
    assert "resuming at epoch 3" in second.stdout
    assert "epoch 1 saved" not in second.stdout and "epoch 4 saved" in second.stdout
    resumed = _job_of(second.stderr)
    run_fahr("fetch", tmp_path / "model", "resumable/train", "--job", resumed, check=0)
    assert json.loads((tmp_path / "model" / "model.json").read_text()) == {"started_at": 3, "state": 10}
    assert json.loads((store / "state.json").read_text()) == {"epoch": 4, "state": 10}  # on completion too

    # A failing job's checkpoints come back as well: the next fit resumes from its last epoch.
    failed = run_fahr("fit", script, "--hp", "epochs=6", "--hp", "fail_after=5", f"--config.checkpoint_path={store}")
    assert failed.returncode == 1, failed.stderr
    assert "resuming at epoch 5" in failed.stdout
    assert json.loads((store / "state.json").read_text()) == {"epoch": 5, "state": 15}


HOSTS = """\
import json, os
from pathlib import Path
hp = json.loads(Path("/opt/ml/input/config/hyperparameters.json").read_text())
me = json.loads(Path("/opt/ml/input/config/resourceconfig.json").read_text())["current_host"]
checkpoints = Path("/opt/ml/checkpoints")
print(me, "found", sorted(p.name for p in checkpoints.iterdir()), flush=True)
if hp.get("replace"):  # the script puts a link (or a file) where its checkpoint folder was
    import shutil
    shutil.rmtree(checkpoints)
    checkpoints.symlink_to("/tmp") if hp["replace"] == "link" else checkpoints.write_text("state")
    raise SystemExit(0)
if me == "algo-1":
    (checkpoints / "stale.txt").unlink(missing_ok=True)  # only one host removes it: it is gone
if me == "algo-2":
    (checkpoints / "epoch.txt").write_text("2")  # only the last host moves on: its file wins
(checkpoints / f"{me}.txt").write_text(me)
(checkpoints / "shared.txt").write_text(f"written by {me}")  # a clash: both hosts write it
if hp.get("escape") and me == "algo-1":
    os.symlink("/etc/passwd", checkpoints / "escape")  # would lead out of checkpoint_path
    os.symlink("/opt/ml/checkpoints/algo-1.txt", checkpoints / "latest.txt")  # absolute, but inside
    os.mkfifo(checkpoints / "a.fifo")
"""


def test_local_hosts_checkpoints_are_merged_and_untrusted(docker_engine, jobs_dir, tmp_path):
    script = tmp_path / "hosts" / "train.py"
    script.parent.mkdir()
    script.write_text(HOSTS)
    store = tmp_path / "ckpt"
    store.mkdir()  # empty: fahr takes it, and marks it as its own
    first = run_fahr("fit", script, f"--config.checkpoint_path={store}", check=0)
    assert "algo-1 found []" in first.stdout  # fahr's marker is not a checkpoint
    assert (store / ".fahr-checkpoints").is_file()
    for name in list(store.iterdir()):
        if name.name != ".fahr-checkpoints":
            name.unlink()
    (store / "old.txt").write_text("from an earlier job")
    (store / "stale.txt").write_text("removed by the job")
    (store / "epoch.txt").write_text("1")

    proc = run_fahr("fit", script, f"--config.checkpoint_path={store}", "--config.instance_count=2", check=0)
    for host in ("algo-1", "algo-2"):  # every host starts with the folder's contents
        assert f"{host} found ['epoch.txt', 'old.txt', 'stale.txt']" in proc.stdout
    # Merged against what the hosts were given: a host's untouched copy is not a write (algo-2's
    # new epoch.txt beats algo-1's given one; stale.txt, removed by algo-1 and left alone by
    # algo-2, is gone); hosts that wrote a file differently keep the first host's, the other named.
    assert sorted(p.name for p in store.iterdir()) == [".fahr-checkpoints", "algo-1.txt", "algo-2.txt", "epoch.txt",
                                                       "old.txt", "shared.txt"]
    assert (store / "epoch.txt").read_text() == "2"
    assert (store / "shared.txt").read_text() == "written by algo-1"
    assert (store / "old.txt").read_text() == "from an earlier job"
    [warning] = [line for line in proc.stderr.splitlines() if "several hosts wrote the same files" in line]
    assert warning.startswith(f"fahr warning {store}: ") and "dropped shared.txt (algo-2)," in warning

    # Entries that would reach outside checkpoint_path, and a fifo, are skipped (named); the rest
    # comes back, an absolute link into the folder as a relative one.
    proc = run_fahr("fit", script, f"--config.checkpoint_path={store}", "--hp", "escape=1", check=0)
    [warning] = [line for line in proc.stderr.splitlines() if "skipped" in line]
    assert "skipped a.fifo, escape (links leading out of /opt/ml/checkpoints, fifos or devices" in warning, warning
    assert not (store / "escape").is_symlink() and not (store / "a.fifo").exists()
    assert os.readlink(store / "latest.txt") == "algo-1.txt" and (store / "shared.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left

    # The script replaces its checkpoint folder by a link, or a file: the folder stays as it was.
    before = {p.name: (p.read_text() if not p.is_symlink() else os.readlink(p)) for p in store.iterdir()}
    for replace in ("link", "file"):
        proc = run_fahr("fit", script, f"--config.checkpoint_path={store}", "--hp", f"replace={replace}", check=0)
        [warning] = [line for line in proc.stderr.splitlines() if "is not a folder on algo-1" in line]
        assert "the script replaced it" in warning and f"{store} is as it was" in warning, warning
        assert {p.name: (p.read_text() if not p.is_symlink() else os.readlink(p)) for p in store.iterdir()} == before


def test_local_checkpoints_over_the_size_cap_keep_the_job_until_wait_saves_them(docker_engine, jobs_dir, tmp_path):
    script = tmp_path / "big" / "train.py"
    script.parent.mkdir()
    script.write_text('open("/opt/ml/checkpoints/big.bin", "wb").write(bytes(64 * 1024))\n')
    store = tmp_path / "ckpt"
    proc = run_fahr("fit", script, f"--config.checkpoint_path={store}", env={"FAHR_MAX_MODEL_BYTES": "1K"})
    assert proc.returncode == 3, proc.stderr
    job = _job_of(proc.stderr)
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("fahr error:")]
    assert error.startswith("fahr error: the checkpoints unpack to more than 1.0 KiB (at entry 'big.bin'), the "
                            "limit set by FAHR_MAX_MODEL_BYTES (raise it), writing the checkpoints of job "), error
    assert f"then finish the job with: fahr wait {job} " in error
    assert json.loads((jobs_dir / job / "job.json").read_text())["status"] == "InProgress"
    assert docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job}"})  # kept: nothing lost
    assert [p.name for p in store.iterdir()] == [".fahr-checkpoints"]  # fahr's mark only: as it was
    # The job, kept, still holds the folder: its checkpoints are still to come back there.
    refused = run_fahr("fit", script, f"--config.checkpoint_path={store}")
    assert f"job {job} is using that folder" in one_line_error(refused, 2)
    run_fahr("wait", job, check=0)  # the cap back to its default: the checkpoints come back
    assert (store / "big.bin").read_bytes() == bytes(64 * 1024)
    assert json.loads((jobs_dir / job / "job.json").read_text())["status"] == "Completed"
    assert not docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job}"})


def test_bad_checkpoint_path_is_refused_before_building(docker_engine, jobs_dir, tmp_path):
    script = tmp_path / "never" / "train.py"
    script.parent.mkdir()
    script.write_text("print('never runs')\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    here = tmp_path / "here"
    here.mkdir()
    users = tmp_path / "users"  # a folder of the user's own: fahr would replace its files
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    planted = tmp_path / "planted"  # fahr's marker alone does not make the project a checkpoint folder
    (script.parent / ".fahr-checkpoints").write_text("")
    for value, needle in ((a_file, "is a file, not a folder"),
                          (a_file / "sub", "is under"),
                          (jobs_dir.parent, "is a folder holding the jobs' output_path"),
                          (here, "is the current folder"),
                          (script.parent, f"that folder is the project of train.py ({script.parent})"),
                          (users, f"{users} holds files fahr did not put there, and fahr replaces the checkpoint "
                                  "folder's contents; give the checkpoints a folder of their own (new or empty)"),
                          (Path("/etc"), "/etc holds files fahr did not put there")):
        proc = run_fahr("fit", script, f"--config.checkpoint_path={value}", cwd=here)
        line = one_line_error(proc, 2)
        assert line.startswith("fahr error: config.checkpoint_path=") and needle in line, line
    assert (users / "notes.txt").read_text() == "mine" and not planted.exists()
    mount = tmp_path / "mounted"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "none", str(mount)], capture_output=True).returncode == 0:
        try:  # the copy back renames a fresh folder over it: impossible on a mount point
            proc = run_fahr("fit", script, f"--config.checkpoint_path={mount}", cwd=here)
            assert one_line_error(proc, 2).endswith(f"config.checkpoint_path={mount} is a mount point; fahr replaces "
                                                    "the checkpoint folder whole when a job ends: give the "
                                                    "checkpoints a folder inside it")
        finally:
            subprocess.run(["umount", str(mount)], check=True)
    assert not docker_engine.images.list(name="never/train")  # refused before anything was built


def test_the_copy_back_goes_only_into_a_folder_fahr_marked(docker_engine, jobs_dir, tmp_path):
    script = tmp_path / "resumable" / "train.py"
    script.parent.mkdir()
    script.write_text(RESUMABLE)
    store = tmp_path / "ckpt"
    # An interrupted copy back of an earlier job: killed between its two renames, it left the
    # previous folder aside and a staging folder; the next copy back puts the first back.
    first = run_fahr("fit", script, "--hp", "epochs=1", f"--config.checkpoint_path={store}", check=0)
    assert json.loads((store / "state.json").read_text())["epoch"] == 1
    store.rename(tmp_path / ".ckpt.fahr-abcd1234-old")
    (tmp_path / ".ckpt.fahr-abcd1234").mkdir()
    proc = run_fahr("fit", script, "--hp", "epochs=3", "--hp", "pause_after=2", "--detach",
                    f"--config.checkpoint_path={tmp_path / 'ckpt2'}", check=0)
    job = _job_of(proc.stderr)
    _watch_for([str(FAHR), "logs", job, "-f"], "epoch 2 saved")
    # job.json edited to aim the copy back at a folder of the user's: it is left alone.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine")
    beside = tmp_path / ".victim.fahr-abcd1234"  # the user's, named like a staging folder of fahr's
    beside.mkdir()
    (beside / "notes.txt").write_text("mine too")
    record_path = jobs_dir / job / "job.json"
    record = json.loads(record_path.read_text())
    record["checkpoint_path"] = str(victim)
    record_path.write_text(json.dumps(record))
    stopped = run_fahr("stop", job)
    assert stopped.returncode == 0, stopped.stderr
    assert f"were not copied back: {victim} is not a checkpoint folder fahr made" in stopped.stderr
    assert sorted(p.name for p in victim.iterdir()) == ["notes.txt"]
    assert (beside / "notes.txt").read_text() == "mine too"
    shutil.rmtree(beside)
    assert json.loads(record_path.read_text())["status"] == "Stopped"
    assert not (tmp_path / "ckpt").exists() and first.returncode == 0
    again = run_fahr("fit", script, "--hp", "epochs=2", f"--config.checkpoint_path={store}", check=0)
    assert "resuming at epoch 2" in again.stdout, again.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# -- checkpoint folders under attack: one image for all (project i15ckpt) -------------------------

TRUSTED = """\
import json, os, time
from pathlib import Path
hp = json.loads(Path("/opt/ml/input/config/hyperparameters.json").read_text())
checkpoints = Path("/opt/ml/checkpoints")
checkpoints.mkdir(parents=True, exist_ok=True)
(checkpoints / hp.get("name", "a.txt")).write_text("written")
if hp.get("links"):  # each link stays inside alone; x leads out through sub/up
    (checkpoints / "sub").mkdir(exist_ok=True)
    os.symlink("..", checkpoints / "sub" / "up")
    os.symlink("sub/up/../../y", checkpoints / "x")
if hp.get("sparse"):  # 3 GiB that take no room in the container
    with open(checkpoints / "huge.bin", "wb") as huge:
        huge.truncate(3 << 30)
if hp.get("hold"):
    print("holding", flush=True)
    time.sleep(600)
"""


@pytest.fixture(scope="module")
def trusted(tmp_path_factory):
    """The script every case below fits: built once, its image then up to date."""
    script = tmp_path_factory.mktemp("trusted") / "i15ckpt" / "train.py"
    script.parent.mkdir()
    script.write_text(TRUSTED)
    return script


def test_checkpoint_path_overlapping_the_jobs_or_the_fetch_folder_is_refused_before_building(
        docker_engine, jobs_dir, tmp_path):
    script = tmp_path / "i15ckptnever" / "train.py"
    script.parent.mkdir()
    script.write_text("print('never runs')\n")
    jobs_dir.mkdir()
    proc = run_fahr("fit", script, f"--config.checkpoint_path={jobs_dir / 'ckpt'}")
    assert f"is inside the jobs' output_path ({jobs_dir}), where fahr keeps" in one_line_error(proc, 2)
    store = tmp_path / "store" / "ckpt"
    for fetch, flags in ((store, ["--overwrite"]), (store / "model", []), (store.parent, ["--overwrite"])):
        proc = run_fahr("fit", script, f"--config.checkpoint_path={store}", "--fetch", fetch, *flags)
        line = one_line_error(proc, 2)
        assert line == (f"fahr error: --fetch {fetch}: that folder overlaps the checkpoint folder {store} "
                        "(config.checkpoint_path), which the job's checkpoints replace when it ends; choose a folder "
                        "outside it"), line
    assert list(jobs_dir.iterdir()) == [] and not store.exists()
    assert not docker_engine.images.list(name="i15ckptnever/train")  # refused before anything was built


def test_a_second_job_on_a_checkpoint_folder_in_use_is_refused_naming_the_first(docker_engine, jobs_dir, tmp_path,
                                                                                 trusted):
    store = tmp_path / "ckpt"
    first = run_fahr("fit", trusted, f"--config.checkpoint_path={store}", "--config.stop_timeout=1", "--hp", "hold=1",
                     "--detach", check=0)
    job = _job_of(first.stderr)
    try:
        _watch_for([str(FAHR), "logs", job, "-f"], "holding")
        second = run_fahr("fit", trusted, f"--config.checkpoint_path={store}", "--hp", "name=b.txt")
        line = one_line_error(second, 2)
        assert line.startswith(f"fahr error: config.checkpoint_path={store}: job {job} is using that folder"), line
        assert f"'fahr wait {job} --train-driver local --config.output_path={jobs_dir}'" in line, line
        assert [p.name for p in jobs_dir.iterdir()] == [job]  # nothing launched
    finally:
        run_fahr("stop", job, check=0)
    assert (store / "a.txt").read_text() == "written"
    assert b"in use" not in (store / ".fahr-checkpoints").read_bytes()  # its end freed the folder
    # The first job has ended: the folder is free again, and both jobs' files are there. A link
    # that leads out only through another one is skipped; the rest comes back.
    third = run_fahr("fit", trusted, f"--config.checkpoint_path={store}", "--hp", "name=b.txt", "--hp", "links=1",
                     check=0)
    [warning] = [line for line in third.stderr.splitlines() if "skipped" in line]
    assert "skipped x (links leading out of /opt/ml/checkpoints" in warning, warning
    assert sorted(p.name for p in store.iterdir()) == [".fahr-checkpoints", "a.txt", "b.txt", "sub"]
    assert os.readlink(store / "sub" / "up") == ".."


def test_a_sparse_checkpoint_over_the_cap_is_refused_before_it_is_copied(docker_engine, jobs_dir, tmp_path, trusted):
    store = tmp_path / "ckpt"
    started = time.monotonic()
    proc = run_fahr("fit", trusted, f"--config.checkpoint_path={store}", "--hp", "sparse=1",
                    env={"FAHR_MAX_MODEL_BYTES": "100M"})
    took = time.monotonic() - started
    job = _job_of(proc.stderr)
    try:
        assert proc.returncode == 3, proc.stderr
        [error] = [line for line in proc.stderr.splitlines() if line.startswith("fahr error:")]
        assert error.startswith("fahr error: the checkpoints unpack to more than 100 MiB (at entry 'huge.bin')"), error
        assert [p.name for p in store.iterdir()] == [".fahr-checkpoints"]
        assert [p.name for p in (jobs_dir / job).iterdir() if p.name.endswith(".partial")] == []
        assert took < 30, f"{took:.0f} s: the 3 GiB were copied before the cap applied"
    finally:  # the job kept its containers for `fahr wait`: removed here, its 3 GiB never copied
        for container in docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job}"}):
            container.remove(force=True)
        for network in docker_engine.networks.list(filters={"label": f"fahr.job={job}"}):
            network.remove()


# -- the emulated SageMaker ------------------------------------------------------------------------


def test_sagemaker_job_stopped_after_epoch_2_resumes_at_epoch_3(stack, tmp_path):
    model = write_model(tmp_path, "resumable", RESUMABLE)
    prefix = f"ckpt/{uuid.uuid4().hex[:8]}"
    s3 = stack.client("s3")
    common = [*sagemaker_args("resumable"), "--hp", "epochs=4", f"--config.checkpoint_s3_uri=s3://{BUCKET}/{prefix}"]

    first = run_fahr_on_stack(stack, "fit", str(model), *common, "--hp", "pause_after=2", "--detach", cwd=tmp_path)
    assert first.code == 0, first.output
    job = _job_of(first.stderr)
    _watch_for([str(FAHR), "logs", job, "-f", "--train-driver", "sagemaker", "--config.poll_interval=1"],
               "epoch 2 saved", env=stack.env(), cwd=tmp_path)
    stopped = run_fahr_on_stack(stack, "stop", job, "--train-driver", "sagemaker", cwd=tmp_path)
    assert stopped.code == 0, stopped.output
    waited = run_fahr_on_stack(stack, "wait", job, "--train-driver", "sagemaker", "--config.poll_interval=1",
                               cwd=tmp_path)
    assert waited.code == 1 and "Stopped" in waited.stderr, waited.output
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")["Contents"]]
    assert keys == [f"{prefix}/state.json"]
    saved = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/state.json")["Body"].read())
    assert saved == {"epoch": 2, "state": 3}

    second = run_fahr_on_stack(stack, "fit", str(model), *common, "--fetch", str(tmp_path / "model"), cwd=tmp_path)
    assert second.code == 0, second.output
    assert "resuming at epoch 3" in second.stdout and "epoch 1 saved" not in second.stdout
    assert json.loads((tmp_path / "model" / "model.json").read_text()) == {"started_at": 3, "state": 10}
    saved = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/state.json")["Body"].read())
    assert saved == {"epoch": 4, "state": 10}


SYS_FILE = Path("/sys/kernel/mm/transparent_hugepage/enabled")  # says 4096 bytes, holds fewer


@pytest.mark.skipif(not SYS_FILE.is_file(), reason="needs a /sys file whose size lies")
def test_a_file_that_cannot_be_copied_into_the_job_is_one_line_exit_2(docker_engine, jobs_dir, tmp_path):
    script = tmp_path / "review-fix-copyin" / "train.py"
    script.parent.mkdir()
    script.write_text("print('never runs')\n")
    proc = run_fahr("fit", script, "--input", f"training={SYS_FILE}")
    assert proc.returncode == 2, proc.stderr  # not an internal error (4)
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("fahr error:")]
    assert "Traceback" not in proc.stderr
    assert line.startswith(f"fahr error: cannot copy {SYS_FILE} into the job ("), line
    [job] = [p.name for p in jobs_dir.iterdir() if p.name.startswith("review-fix-copyin-train-")]
    assert json.loads((jobs_dir / job / "job.json").read_text())["status"] == "Failed"
    assert not docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job}"})
