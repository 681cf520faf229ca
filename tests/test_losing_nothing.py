"""A full disk, a lost engine, a second Ctrl-C lose nothing (local driver, real Docker engine,
the real `fahr` command).

- A disk too small for the model: exit 3 with one line naming what to free and the exact
  `fahr wait` that finishes the job; the job is not recorded Completed, its container (holding
  the model) is kept, no partial archive is left; once there is room, that `fahr wait` saves the
  very bytes the job wrote and `fahr fetch` brings them back.
- The engine going away while fit follows the job (a proxy of the engine's socket, cut): exit 3,
  one line naming `fahr wait`, the record not left InProgress; `fahr wait` then reconciles.
- Ctrl-C three times while fahr stops a job whose model takes 5 s to exit on SIGTERM: fahr
  finishes the stop (the model's last words are saved), removes everything, exits 130.
"""

import contextlib
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import tarfile
import threading
import time

import pytest

from conftest import FAHR, run_fahr
from test_local_driver import assert_nothing_left, write_script

pytestmark = pytest.mark.docker

ENGINE_SOCKET = "/var/run/docker.sock"


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("fahr error:")]


def printed_command(error_line, verb):
    """The exact `fahr wait|stop …` an error line ends with."""
    start = error_line.index(f"fahr {verb} ")
    return shlex.split(error_line[start:])


def fit_until_ready(script, env, act, timeout=120):
    """Run ``fahr fit SCRIPT`` until the job prints ``ready``, call ``act(proc)``, and return the
    process (ended) and its stderr."""
    proc = subprocess.Popen([str(FAHR), "fit", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        deadline = time.time() + 300
        for line in proc.stdout:
            if line.strip() == "ready" or time.time() > deadline:
                break
        act(proc)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, err


def job_containers(client, job):
    return client.containers.list(all=True, filters={"label": f"fahr.job={job}"})


def only_record(jobs):
    records = [json.loads(p.read_text()) for p in jobs.glob("*/job.json")]
    assert len(records) == 1, records
    return records[0]


@pytest.fixture
def leftovers(docker_engine):
    """Jobs whose containers these tests keep on purpose: removed at the end even if a test fails."""
    jobs = []
    yield jobs
    for job in jobs:
        for container in job_containers(docker_engine, job):
            container.remove(force=True)
        for network in docker_engine.networks.list(filters={"label": f"fahr.job={job}"}):
            network.remove()


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (we run as root); unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disk_keeps_the_model_until_wait_saves_it(docker_engine, leftovers, small_disk, tmp_path):
    script = write_script(tmp_path / "big", """
        import hashlib, os
        weights = os.urandom(8 * 1024 * 1024)  # incompressible: the archive needs 8 MB too
        open("/opt/ml/model/weights.bin", "wb").write(weights)
        print("sha256", hashlib.sha256(weights).hexdigest(), flush=True)
    """)
    jobs = small_disk / "jobs"
    output_path = f"--config.output_path={jobs}"

    # A disk with no room at all: nothing can be recorded, so nothing is started.
    filler = small_disk / "filler"
    with open(filler, "wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    proc = run_fahr("fit", script, output_path)
    assert proc.returncode == 3, proc.stderr
    [line] = error_lines(proc.stderr)
    assert "No space left on device" in line and "nothing was started" in line, line
    assert "Traceback" not in proc.stderr
    assert list(jobs.iterdir()) == []  # no half-made job folder
    filler.unlink()

    # Room for the record and the logs, not for the model.
    proc = run_fahr("fit", script, output_path)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = error_lines(proc.stderr)
    [digest] = [l.split()[1] for l in proc.stdout.splitlines() if l.startswith("sha256 ")]
    record = only_record(jobs)
    job = record["job_name"]
    leftovers.append(job)
    assert "No space left on device writing model.tar.gz" in line, line
    assert f"in {jobs / job / 'output'}" in line  # where to free space…
    assert "about 8.4 MB uncompressed" in line  # …and roughly how much is needed
    assert line.endswith(f"fahr wait {job} --train-driver local {output_path}")  # what finishes the job
    assert record["status"] == "InProgress"  # not Completed: there is no model to fetch yet
    assert record["secondary_status"].startswith("Uploading failed: No space left on device")
    assert "model_artifact" not in record
    assert sorted(p.name for p in (jobs / job / "output").iterdir()) == []  # no partial archive
    [container] = job_containers(docker_engine, job)  # kept: it holds the model
    assert container.status == "exited"
    refused = run_fahr("fetch", tmp_path / "early", "big/train", jobs, "--job", job)
    assert refused.returncode == 2 and f"fahr wait {job}" in refused.stderr

    # Room again: the printed command saves the very model the job trained, from any folder.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    command = printed_command(line, "wait")
    finished = run_fahr(*command[1:], cwd=tmp_path, check=0)
    assert f"sha256 {digest}" in finished.stdout  # the job's log, replayed
    record = only_record(jobs)
    assert record["status"] == "Completed" and "upload_error" not in record
    assert "secondary_status" not in record
    assert_nothing_left(docker_engine, job)
    run_fahr("fetch", tmp_path / "model", "big/train", jobs, "--job", job, check=0)
    assert hashlib.sha256((tmp_path / "model" / "weights.bin").read_bytes()).hexdigest() == digest


def test_read_only_disk_while_saving_the_logs_keeps_the_job(docker_engine, leftovers, small_disk, tmp_path):
    script = write_script(tmp_path / "ro", """
        import json, time
        print("ready", flush=True)
        time.sleep(3)
        json.dump({"trained": True}, open("/opt/ml/model/model.json", "w"))
    """)
    jobs = small_disk / "jobs"
    env = {**os.environ, "NO_COLOR": "1", "FAHR_LOCAL_OUTPUT_PATH": str(jobs)}
    proc, err = fit_until_ready(
        script, env, lambda proc: subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True))
    assert proc.returncode == 3, err
    assert "Traceback" not in err
    [line] = error_lines(err)
    record = only_record(jobs)
    job = record["job_name"]
    leftovers.append(job)
    assert f"Read-only file system writing the logs of job {job} in {jobs / job / 'logs'}" in line, line
    assert "make it writable, then finish the job with: fahr wait" in line
    assert record["status"] == "InProgress"  # as it was: the disk took nothing, nothing is recorded wrongly
    assert not (jobs / job / "logs" / "algo-1.log").exists()
    [container] = job_containers(docker_engine, job)
    assert container.status == "exited"

    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    run_fahr(*printed_command(line, "wait")[1:], cwd=tmp_path, check=0)
    assert only_record(jobs)["status"] == "Completed"
    assert (jobs / job / "logs" / "algo-1.log").read_text() == "ready\n"
    assert [p.name for p in (jobs / job / "logs").iterdir()] == ["algo-1.log"]  # the copy being followed is tidied
    assert_nothing_left(docker_engine, job)


class EngineProxy:
    """The engine's socket relayed through a socket of our own, which the test can cut."""

    def __init__(self, path):
        self.path = str(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(64)
        self.sockets = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"unix://{self.path}"

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # cut
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(ENGINE_SOCKET)
            with self.lock:
                self.sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source, target):
        try:
            while data := source.recv(65536):
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def cut(self):
        """The engine goes away: no new connection, every open one closed mid-stream."""
        self.server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def test_engine_lost_mid_job_is_reconciled_by_wait(docker_engine, leftovers, tmp_path):
    script = write_script(tmp_path / "lost", """
        import json, time
        print("ready", flush=True)
        time.sleep(8)
        json.dump({"trained": True}, open("/opt/ml/model/model.json", "w"))
        print("done", flush=True)
    """)
    jobs = tmp_path / "jobs"
    proxy = EngineProxy(tmp_path / "engine.sock")
    env = {**os.environ, "NO_COLOR": "1", "DOCKER_HOST": proxy.url, "FAHR_LOCAL_OUTPUT_PATH": str(jobs)}
    proc, err = fit_until_ready(script, env, lambda proc: proxy.cut(), timeout=60)
    assert proc.returncode == 3, err
    assert "Traceback" not in err
    [line] = error_lines(err)
    record = only_record(jobs)
    job = record["job_name"]
    leftovers.append(job)
    assert "lost the Docker engine while following job" in line, line
    assert line.endswith(f"reconcile it with: fahr wait {job} --train-driver local --config.output_path={jobs}")
    assert record["status"] != "InProgress"  # fit has exited: nobody follows the job any more
    assert record["status"] == "Failed" and record["unfinished"] == "follow"
    assert f"'fahr wait {job}" in record["failure_reason"]
    refused = run_fahr("fetch", tmp_path / "early", "lost/train", jobs, "--job", job)
    assert refused.returncode == 2  # nothing to fetch yet

    # With the engine back, the printed command follows the job to its real end.
    [container] = job_containers(docker_engine, job)
    assert container.status == "running"  # the job itself never noticed
    finished = run_fahr(*printed_command(line, "wait")[1:], cwd=tmp_path, check=0)
    assert "done" in finished.stdout.splitlines()
    record = only_record(jobs)
    assert record["status"] == "Completed" and "unfinished" not in record
    assert_nothing_left(docker_engine, job)
    run_fahr("fetch", tmp_path / "model", "lost/train", jobs, "--job", job, check=0)
    assert json.loads((tmp_path / "model" / "model.json").read_text()) == {"trained": True}


def test_every_engine_call_of_a_run_says_the_engine_is_lost(docker_engine, tmp_path, monkeypatch):
    """Connection errors of the Docker SDK (requests/urllib3) become EngineLost, an
    EnvironmentProblem (exit 3), in each step that talks to the engine, not an internal error."""
    import docker

    from fahr_core.contract import ContainerJob, ContractRun, EngineLost
    from fahr_core.errors import EXIT_ENVIRONMENT

    proxy = EngineProxy(tmp_path / "engine.sock")
    client = docker.DockerClient(base_url=proxy.url)
    assert client.ping()
    run = ContractRun(ContainerJob(job_name="fahr-lost-engine-probe", image="python:3.11-slim"), client=client)
    proxy.cut()
    steps = {
        "follow": lambda: run.follow(lambda host, line: None),
        "exit_codes": run.exit_codes,
        "stop": run.stop,
        "save_logs": lambda: run.save_logs(tmp_path / "logs"),
        "cleanup": run.cleanup,
    }
    for name, step in steps.items():
        with pytest.raises(EngineLost) as caught:
            step()
        assert caught.value.exit_code == EXIT_ENVIRONMENT, name
        assert "lost the Docker engine while" in caught.value.message, name
    monkeypatch.setenv("DOCKER_HOST", proxy.url)
    with pytest.raises(EngineLost):
        run.reconnect()


# A model that takes 5 s to exit on SIGTERM, saving something meanwhile.
STUBBORN = """
        import signal, sys, time
        def on_term(signum, frame):
            print("saving before exit", flush=True)
            time.sleep(5)
            open("/opt/ml/output/data/last-words.txt", "w").write("saved")
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        print("ready", flush=True)
        time.sleep(600)
    """


def test_ctrl_c_again_while_stopping_does_not_abandon_the_job(docker_engine, leftovers, tmp_path):
    script = write_script(tmp_path / "stubborn", STUBBORN)
    jobs = tmp_path / "jobs"
    env = {**os.environ, "NO_COLOR": "1", "FAHR_LOCAL_OUTPUT_PATH": str(jobs), "FAHR_LOCAL_STOP_TIMEOUT": "30"}
    started = []

    def impatient(proc):
        started.append(time.time())
        proc.send_signal(signal.SIGINT)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)  # the user, impatient
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)  # and a third time, as a process manager would

    proc, err = fit_until_ready(script, env, impatient)
    assert proc.returncode == 130, err
    assert time.time() - started[0] >= 5  # fahr waited for the model's own 5 s shutdown
    assert "Traceback" not in err
    assert err.count("please wait, Ctrl-C again does not abandon it") == 2, err  # each extra signal is answered
    record = only_record(jobs)
    job = record["job_name"]
    leftovers.append(job)
    assert f"stopping job {job}" in err and f"fahr stop {job} --train-driver local" in err
    assert record["status"] == "Stopped" and record["failure_reason"] == "Stopped by the user (interrupt)"
    assert_nothing_left(docker_engine, job)
    with tarfile.open(jobs / job / "output" / "output.tar.gz") as tar:
        assert tar.extractfile("last-words.txt").read() == b"saved"  # what it saved while stopping
    assert (jobs / job / "logs" / "algo-1.log").read_text().splitlines()[-1] == "saving before exit"


def test_fahr_killed_while_stopping_the_printed_stop_finishes_the_job(docker_engine, leftovers, tmp_path):
    script = write_script(tmp_path / "stubborn", STUBBORN)
    jobs = tmp_path / "jobs"
    env = {**os.environ, "NO_COLOR": "1", "FAHR_LOCAL_OUTPUT_PATH": str(jobs)}
    def killed_while_stopping(proc):
        proc.send_signal(signal.SIGINT)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        time.sleep(1)
        proc.kill()  # SIGKILL: nothing can defer that

    proc, err = fit_until_ready(script, env, killed_while_stopping, timeout=60)
    [hint] = [l for l in err.splitlines() if "Ctrl-C again does not abandon it" in l and "fahr stop" in l]
    command = shlex.split(hint[hint.index("'fahr stop ") + 1:hint.index("' does it")])
    job = only_record(jobs)["job_name"]
    leftovers.append(job)
    assert command == ["fahr", "stop", job, "--train-driver", "local", f"--config.output_path={jobs}"]
    assert only_record(jobs)["status"] == "InProgress"  # fahr was killed in the middle of the stop
    job_containers(docker_engine, job)[0].wait(timeout=60)  # the model's own shutdown ends

    run_fahr(*command[1:], cwd=tmp_path, check=0)
    record = only_record(jobs)
    assert record["status"] == "Stopped" and record["failure_reason"] == "Stopped by the user (interrupt)"
    assert_nothing_left(docker_engine, job)
    with tarfile.open(jobs / job / "output" / "output.tar.gz") as tar:
        assert tar.extractfile("last-words.txt").read() == b"saved"


def test_ctrl_c_while_the_job_starts_stops_it(docker_engine, tmp_path):
    """Ctrl-C as the job's input is copied in: whether it lands in the copy, between the launch
    and the moment fit follows the job, or after, the job ends Stopped and nothing is left."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "big.bin").write_bytes(os.urandom(64 * 1024 * 1024))
    script = write_script(tmp_path / "starting", "import time\nprint('ready', flush=True)\ntime.sleep(600)\n")
    jobs = tmp_path / "jobs"
    env = {**os.environ, "NO_COLOR": "1", "FAHR_LOCAL_OUTPUT_PATH": str(jobs), "FAHR_LOCAL_STOP_TIMEOUT": "2"}
    proc = subprocess.Popen([str(FAHR), "fit", str(script), "--input", f"train={data}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        err = []
        deadline = time.time() + 300
        for line in proc.stderr:
            err.append(line)
            if "copying the input channel train into" in line or time.time() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(err) + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    record = only_record(jobs)
    assert record["status"] == "Stopped", record
    assert_nothing_left(docker_engine, record["job_name"])
