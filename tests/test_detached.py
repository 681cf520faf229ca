"""A detached local job finishes on its own: packed, recorded with its containers' true times and
tidied when its containers exit, with nobody watching and its terminal gone; no process is left
behind. A foreground `fahr wait` or `fahr stop` goes first (the follower's watch lock).

The first tests run real jobs on the engine, one image for the module; the last ones hold the lock
logic to account without Docker.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import FAHR, run_fahr

# Prints when it starts and ends (the host's clock: the engine is on this machine), sleeps
# SECONDS in between, then saves a model; the host FAIL_ON exits 5 at once.
SCRIPT = textwrap.dedent("""\
    import json, os, sys, time
    hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
    print("began", time.time(), flush=True)
    if hp.get("fail_on") == json.load(open("/opt/ml/input/config/resourceconfig.json"))["current_host"]:
        sys.exit(5)
    time.sleep(float(hp.get("seconds", "2")))
    json.dump({"trained": True}, open("/opt/ml/model/model.json", "w"))
    print("done", time.time(), flush=True)
""")


@pytest.fixture(scope="module")
def made(tmp_path_factory, docker_engine):
    """The project (its image built once, by a first fit) and the jobs' folder of the module."""
    root = tmp_path_factory.mktemp("detached")
    project = root / f"i17detach{secrets.token_hex(3)}"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    jobs = root / "jobs"
    # Files named as modules the follower imports, where fahr runs (not in the project, not in
    # the image): a follower started with the current folder on sys.path died on them.
    (root / "logging.py").write_text("LEVEL = 'info'  # the user's own, not the standard library's\n")
    (root / "secrets.py").write_text("raise SystemExit('the user s own secrets.py was imported')\n")
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(jobs)}
    run_fahr("fit", project / "train.py", "--hp", "seconds=0", env=env, check=0)
    yield {"project": project, "tag": f"{project.name}/train", "jobs": jobs, "env": env, "root": root}
    for job in jobs.iterdir():  # what a failed test left
        with contextlib.suppress(Exception):
            pid = record_of(jobs, job.name).get("follower")
            if pid and alive(pid):
                os.kill(pid, signal.SIGKILL)
        for container in docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job.name}"}):
            container.remove(force=True)
    subprocess.run(["docker", "image", "rm", "-f", f"{project.name}/train:latest"], capture_output=True)


def record_of(jobs: Path, job: str) -> dict:
    return json.loads((jobs / job / "job.json").read_text())


def job_of(stderr: str) -> str:
    found = re.search(r"launching job (\S+) on driver 'local': accepted", stderr)
    assert found, stderr
    return found.group(1)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process. A zombie is not: it is an exit status waiting to be
    read, and this machine's PID 1 (the sandbox's, not an init) never reads its orphans'."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def followers(jobs: Path) -> list[str]:
    """Command lines of the running processes of fahr's local driver that name a job in ``jobs``
    (those of other tests' jobs, in a whole suite's run, are theirs to account for)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if "fahr_core.drivers.local" in line and str(jobs) in line and alive(int(entry.name)):
                    found.append(line)
    return found


def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def printed_times(jobs: Path, job: str) -> tuple[float, float]:
    """When the job's script began and ended, as it printed them (its saved log)."""
    words = dict(line.split() for line in (jobs / job / "logs" / "algo-1.log").read_text().splitlines())
    return float(words["began"]), float(words["done"])


def assert_true_times(record: dict, began: float, done: float) -> None:
    """The record's times are the container's: it started just before the script began and
    ended just after it printed its last line; not when some fahr looked."""
    assert record["started"] <= began and began - record["started"] < 2.0, (record, began)
    assert record["ended"] >= done and record["ended"] - done < 1.0, (record, done)


def assert_nothing_left(docker_engine, jobs: Path, job: str, pid: int) -> None:
    until(lambda: not alive(pid), 15, f"the follower {pid} of {job} exits")  # the job recorded, then tidied
    assert followers(jobs) == []
    assert docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job}"}) == []


def detach(made, *hps: str) -> str:
    proc = run_fahr("fit", made["project"] / "train.py", "--detach", *hps, env=made["env"], check=0)
    return job_of(proc.stderr)


@pytest.mark.docker
def test_a_detached_job_finishes_on_its_own_after_its_terminal_closed(made, docker_engine, tmp_path):
    """`fahr fit --detach` in a terminal closed right after the launch (SIGHUP to fahr's session):
    with nobody waiting, the job is Completed with its true times, fetchable, its containers
    removed, its follower gone. Before: InProgress (Starting) until someone ran `fahr wait`."""
    env = {**os.environ, "NO_COLOR": "1", **made["env"]}
    master, slave = pty.openpty()
    fit = subprocess.Popen([str(FAHR), "fit", str(made["project"] / "train.py"), "--detach", "--hp", "seconds=3"],
                           stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                           cwd=made["root"])  # beside a logging.py and a secrets.py of the user's
    os.close(slave)
    said = b""
    try:
        while b"launched; follow it with" not in said:
            said += os.read(master, 4096)
    finally:
        os.close(master)  # the terminal closes: the kernel hangs up fahr's session
        with contextlib.suppress(ProcessLookupError):
            os.killpg(fit.pid, signal.SIGHUP)
        fit.wait(timeout=60)
    job = job_of(said.decode(errors="replace"))
    record = until(lambda: (r := record_of(made["jobs"], job))["status"] != "InProgress" and r, 60,
                   f"job {job} ends with nobody waiting")
    pid = record["follower"]
    assert record["status"] == "Completed", record
    assert_true_times(record, *printed_times(made["jobs"], job))
    run_fahr("fetch", tmp_path / "out", made["tag"], "--job", job, env=made["env"], check=0)
    assert json.loads((tmp_path / "out" / "model.json").read_text()) == {"trained": True}
    assert_nothing_left(docker_engine, made["jobs"], job, pid)
    waited = run_fahr("wait", job, env=made["env"], check=0)  # a job finished by its follower: its result
    assert "done" in waited.stdout
    assert 3.0 <= float(re.search(rf"job {job} completed in ([0-9.]+) s", waited.stderr)[1]) < 4.0, waited.stderr


@pytest.mark.docker
def test_stopping_a_detached_job_leaves_no_follower(made, docker_engine):
    token = f"i17detach-{secrets.token_hex(8)}"  # a --secret: the follower, living as long as the job, holds none
    proc = run_fahr("fit", made["project"] / "train.py", "--detach", "--hp", "seconds=600", "--config.stop_timeout=1",
                    "--secret", "I17DETACH_TOKEN", env={**made["env"], "I17DETACH_TOKEN": token}, check=0)
    job = job_of(proc.stderr)
    pid = record_of(made["jobs"], job)["follower"]
    assert alive(pid)
    assert token.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    run_fahr("stop", job, "--config.stop_timeout=1", env=made["env"], check=0)
    record = record_of(made["jobs"], job)
    assert record["status"] == "Stopped" and record["failure_reason"] == "Stopped by 'fahr stop'", record
    assert_nothing_left(docker_engine, made["jobs"], job, pid)


@pytest.mark.docker
def test_ctrl_c_of_a_foreground_wait_stops_the_job_and_leaves_no_follower(made, docker_engine):
    job = detach(made, "--hp", "seconds=600", "--config.stop_timeout=1")
    pid = record_of(made["jobs"], job)["follower"]
    waiting = subprocess.Popen([str(FAHR), "wait", job, "--config.stop_timeout=1"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1", **made["env"]})
    try:
        assert waiting.stdout.readline().startswith("began")  # it follows the job
        waiting.send_signal(signal.SIGINT)
        _, err = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 130, err
    record = record_of(made["jobs"], job)
    assert record["status"] == "Stopped" and record["failure_reason"] == "Stopped by the user (interrupt)", record
    assert_nothing_left(docker_engine, made["jobs"], job, pid)


@pytest.mark.docker
def test_a_foreground_wait_on_a_running_detached_job_streams_and_finishes_it(made, docker_engine):
    job = detach(made, "--hp", "seconds=4")
    pid = record_of(made["jobs"], job)["follower"]
    waited = run_fahr("wait", job, env=made["env"], check=0)
    assert [line.split()[0] for line in waited.stdout.splitlines()] == ["began", "done"]
    assert "Training" in waited.stderr and "follower" not in waited.stderr  # followed live, not replayed
    record = record_of(made["jobs"], job)
    assert record["status"] == "Completed"
    assert_true_times(record, *printed_times(made["jobs"], job))
    assert_nothing_left(docker_engine, made["jobs"], job, pid)


@pytest.mark.docker
def test_a_detached_job_whose_host_fails_is_stopped_and_recorded_by_its_follower(made, docker_engine):
    """Several hosts, one failing at once: as `fahr wait` would, the follower stops the others
    (they would wait for it forever) and records the job Failed, naming that host."""
    job = detach(made, "--hp", "seconds=600", "--hp", "fail_on=algo-2", "--config.instance_count=2",
                 "--config.stop_timeout=1")
    pid = record_of(made["jobs"], job)["follower"]
    record = until(lambda: (r := record_of(made["jobs"], job))["status"] != "InProgress" and r, 60,
                   f"job {job} ends with nobody waiting")
    assert record["status"] == "Failed", record
    assert record["failure_reason"].startswith("AlgorithmError: exit code 5 on algo-2"), record
    assert record["ended"] - record["started"] < 15  # algo-1 stopped, not left to sleep
    assert sorted(os.listdir(made["jobs"] / job / "logs")) == ["algo-1.log", "algo-2.log"]
    assert_nothing_left(docker_engine, made["jobs"], job, pid)
    assert docker_engine.networks.list(filters={"label": f"fahr.job={job}"}) == []


@pytest.mark.docker
def test_a_late_wait_records_the_containers_times_not_its_own(made, docker_engine):
    """Its follower killed, the job is finished by a `fahr wait` run long after it ended: the
    record's times are still the container's. Before: the wait's, 19.6 s for 2 s of training."""
    job = detach(made, "--hp", "seconds=1")
    pid = record_of(made["jobs"], job).get("follower")
    if pid:
        os.kill(pid, signal.SIGKILL)
    [container] = docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job}"})
    assert container.wait(timeout=60)["StatusCode"] == 0
    time.sleep(4)
    assert record_of(made["jobs"], job)["status"] == "InProgress"
    run_fahr("wait", job, env=made["env"], check=0)
    record = record_of(made["jobs"], job)
    assert record["status"] == "Completed"
    assert_true_times(record, *printed_times(made["jobs"], job))
    assert pid and not alive(pid)


@pytest.mark.docker
def test_without_a_follower_a_detached_job_waits_for_fahr_wait(made, docker_engine):
    job = detach(made, "--hp", "seconds=0", "--config.follower=false")
    [container] = docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job}"})
    assert container.wait(timeout=60)["StatusCode"] == 0
    time.sleep(2)
    record = record_of(made["jobs"], job)
    assert record["status"] == "InProgress" and "follower" not in record, record
    assert sorted(os.listdir(made["jobs"] / job)) == ["job.json"]  # no watch lock, no follower's log
    run_fahr("wait", job, env=made["env"], check=0)
    assert record_of(made["jobs"], job)["status"] == "Completed"


@pytest.mark.docker
def test_containers_left_by_a_fahr_killed_after_recording_the_end_are_removed_by_the_follower(made, docker_engine):
    """A fahr killed between writing the job's final record and removing its containers (here:
    at the removal): the record says so, and the follower that finds the job ended removes them,
    as `fahr wait` would. Before: the follower exited, the containers were left forever."""
    job = detach(made, "--hp", "seconds=0", "--config.follower=false")
    job_dir = made["jobs"] / job
    [container] = docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job}"})
    assert container.wait(timeout=60)["StatusCode"] == 0
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent("""\
        import os, sys
        from pathlib import Path
        from fahr_core.contract import ContractRun
        from fahr_core.drivers.local.finish import _finish
        from fahr_core.drivers.local.records import _container_job, _read_record
        job_dir = Path(sys.argv[1])
        config = {"output_path": str(job_dir.parent), "stop_timeout": 1}
        run = ContractRun(_container_job(_read_record(job_dir), config))
        run.cleanup = lambda: os._exit(9)  # killed right there
        _finish(run, job_dir, config, "Completed", "")
    """), str(job_dir)], capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    record = record_of(made["jobs"], job)
    assert record["status"] == "Completed" and record["unfinished"] == "cleanup", record
    subprocess.run([sys.executable, "-m", "fahr_core.drivers.local.follower", str(job_dir), "1"], check=True, timeout=120)
    assert docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job}"}) == []
    record = record_of(made["jobs"], job)
    assert record["status"] == "Completed" and "unfinished" not in record, record


# -- without Docker ---------------------------------------------------------------------------------


@pytest.fixture
def job_dir(tmp_path):
    folder = tmp_path / "jobs" / "j"
    folder.mkdir(parents=True)
    (folder / "watch.lock").touch()
    return folder


def test_the_follower_waits_for_a_foreground_watcher(job_dir):
    from fahr_core.drivers.local.follower import _finishing, watching

    order = []

    def follower():
        with _finishing(job_dir):
            order.append("follower")

    with watching(job_dir):
        thread = threading.Thread(target=follower)
        thread.start()
        time.sleep(0.5)
        order.append("watcher")
    thread.join(timeout=10)
    assert order == ["watcher", "follower"]


def test_a_dead_watcher_lets_the_follower_finish(job_dir):
    from fahr_core.drivers.local.follower import _finishing

    watcher = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import sys, time
        from pathlib import Path
        from fahr_core.drivers.local.follower import watching
        with watching(Path({str(job_dir)!r})):
            print("watching", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout.readline().strip() == "watching"
        done = threading.Event()

        def follower():
            with _finishing(job_dir):
                done.set()

        threading.Thread(target=follower, daemon=True).start()
        assert not done.wait(0.5)  # the live watcher goes first
        watcher.kill()  # killed, its terminal closed: the kernel frees its lock
        assert done.wait(10)
    finally:
        watcher.kill()
        watcher.wait()


def test_a_watcher_waits_for_a_follower_finishing_and_says_so(job_dir, capsys):
    from fahr_core.drivers.local.follower import _finishing, watching

    entered = threading.Event()

    def watcher():
        with watching(job_dir):
            entered.set()

    with _finishing(job_dir):
        thread = threading.Thread(target=watcher)
        thread.start()
        assert not entered.wait(0.5)
    assert entered.wait(10)
    thread.join()
    assert "its follower is saving it" in capsys.readouterr().err


def test_a_job_without_a_watch_file_is_watched_without_a_lock(tmp_path):
    """A job launched by an older fahr (no follower, no lock file), or no job folder at all (the
    record's reader says what is wrong): nothing to wait for, nothing made."""
    from fahr_core.drivers.local.follower import watching

    (tmp_path / "old").mkdir()
    for folder in (tmp_path / "old", tmp_path / "missing"):
        with watching(folder):
            pass
    assert os.listdir(tmp_path / "old") == []


def test_the_watch_lock_is_never_opened_through_a_link(job_dir, tmp_path):
    from fahr_core.drivers.local.follower import _finishing
    from fahr_core.jobfolder import Refused

    victim = tmp_path / "victim"
    victim.write_text("mine")
    (job_dir / "watch.lock").unlink()
    (job_dir / "watch.lock").symlink_to(victim)
    with pytest.raises(Refused):
        with _finishing(job_dir):
            pass
    assert victim.read_text() == "mine"


class FakeContainer:
    """A host as the engine's API shows it: its State, its stop (exit 143 a second later)."""

    def __init__(self, host, code=None, started="2026-12-03T13:52:30Z", finished=None, status=None):
        self.labels = {"fahr.job": "j", "fahr.host": host}
        self.name = self.id = f"j-{host}"
        self.stopped = False
        running = code is None
        self.attrs = {"State": {"Status": status or ("running" if running else "exited"),
                                "ExitCode": 0 if running else code,
                                "StartedAt": started, "FinishedAt": finished or "0001-01-01T00:00:00Z"}}

    def reload(self):
        pass

    def stop(self, timeout):
        self.stopped = True
        self.attrs["State"].update(Status="exited", ExitCode=143, FinishedAt="2026-12-03T13:52:41Z")

    def get_archive(self, path):
        raise RuntimeError("no failure file")

    def logs(self, tail):
        return b"giving up\n"


def fake_run(*containers, hosts=None):
    """A run of a job of ``hosts`` hosts (one per container unless said) on an engine that has ``containers``."""
    from types import SimpleNamespace

    from fahr_core.contract import ContainerJob, ContractRun

    client = SimpleNamespace(containers=SimpleNamespace(list=lambda **_: list(containers)))
    return ContractRun(ContainerJob(job_name="j", image="i", instance_count=hosts or len(containers)), client=client)


def settled(*containers, hosts=None):
    return fake_run(*containers, hosts=hosts).settled()


def test_a_look_at_the_hosts_tells_how_the_job_ended_and_stops_the_peers_of_a_failed_one():
    """The follower's look (ContractRun.settled): None while a host runs; a failed host's peers
    are stopped, and it is named once they have exited, its exit the first; the job's times are
    the first start and the last end."""
    assert settled(FakeContainer("algo-1")) is None
    ok = settled(FakeContainer("algo-1", 0, finished="2026-12-03T13:52:40Z"),
                 FakeContainer("algo-2", 0, started="2026-12-03T13:52:29Z", finished="2026-12-03T13:52:39Z"))
    assert (ok.status, ok.exit_codes, ok.started_at, ok.ended_at) == (
        "Completed", {"algo-1": 0, "algo-2": 0}, 1796305949.0, 1796305960.0)
    waiting, failed = FakeContainer("algo-1"), FakeContainer("algo-2", 5, finished="2026-12-03T13:52:35Z")
    assert settled(waiting, failed) is None and waiting.stopped  # stopped: it would wait for algo-2 forever
    ended = settled(waiting, failed)
    assert ended.status == "Failed" and ended.exit_codes == {"algo-1": 143, "algo-2": 5}
    assert ended.failure_reason.startswith("AlgorithmError: exit code 5 on algo-2; last output:\ngiving up")
    gone = settled()
    assert gone.status == "Failed" and "gone" in gone.failure_reason


def test_a_host_removed_by_hand_fails_the_job_and_its_peers_are_stopped():
    """`docker rm -f` of one host of two: the job failed, as `fahr wait` records it, and the other
    host (which would wait for it forever) is stopped. Before: ignored; the job recorded Completed
    once the other host ended."""
    peer = FakeContainer("algo-2")
    assert settled(peer, hosts=2) is None and peer.stopped
    for ended in (settled(peer, hosts=2), settled(FakeContainer("algo-2", 0, finished="2026-12-03T13:52:40Z"), hosts=2)):
        assert ended.status == "Failed", ended
        assert ended.failure_reason == "The container of host algo-1 is gone (removed outside fahr)", ended


def test_a_host_that_never_started_is_a_failure_not_a_job_running_forever():
    """A container left `created` (the fahr launching the job was stopped while starting it):
    nothing will ever start it. Before: the follower's look said it ran, forever; and `fahr wait`
    recorded the job Completed, the engine's wait on it answering 0 at once."""
    never = settled(FakeContainer("algo-1", status="created"))
    assert never.status == "Failed" and never.failure_reason == "host algo-1 never started", never
    peer = FakeContainer("algo-1")
    assert settled(peer, FakeContainer("algo-2", status="created")) is None and peer.stopped

    class Created(FakeContainer):
        def wait(self):
            return {"StatusCode": 0}  # what the engine answers for a container never started

        def logs(self, **_):
            return iter(())

    followed = fake_run(Created("algo-1", status="created")).follow(lambda host, data: None)
    assert followed.status == "Failed" and followed.failure_reason == "host algo-1 never started", followed


class FakeRun:
    """A run whose looks at the hosts answer ``answers`` in turn (an exception is raised)."""

    def __init__(self, *answers):
        self.answers = list(answers)

    def settled(self):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def reconnect(self):
        pass

    def until_a_host_ends(self, since, seconds):
        pass


@pytest.fixture
def running_job(job_dir):
    (job_dir / "job.json").write_text(json.dumps({"job_name": "j", "model_tag": "a/b", "status": "InProgress",
                                                  "image": "a/b:latest"}))
    return job_dir, {"output_path": str(job_dir.parent), "stop_timeout": 1}


def test_the_follower_waits_out_an_engine_restart(running_job):
    from fahr_core.contract import EngineLost, Outcome
    from fahr_core.drivers.local.follower import _await_end

    job_dir, config = running_job
    ended = Outcome("Completed")
    lost = EngineLost("lost the Docker engine while looking")
    assert _await_end(FakeRun(None, lost, lost, None, ended), job_dir, config, poll=0.01, patience=30) is ended
    assert record_of(job_dir.parent, "j")["status"] == "InProgress"


def test_an_idle_job_costs_its_follower_a_held_request_not_a_look_a_second(running_job):
    """While the job's host runs, the follower holds the engine's event stream open rather than
    listing and inspecting the containers every second (20 idle jobs were 40 requests a second),
    and still finishes the job as soon as the host exits."""
    from types import SimpleNamespace

    from fahr_core.drivers.local.follower import _await_end

    job_dir, config = running_job
    host, died, requests = FakeContainer("algo-1"), threading.Event(), []

    def reload():
        requests.append("inspect")

    def listed(**_):
        requests.append("list")
        return [host]

    def events(since, until, filters, decode):
        assert filters == {"label": "fahr.job=j", "type": "container", "event": ["die", "destroy"]}
        if died.wait(until - time.time()):
            yield {"status": "die"}

    host.reload = reload
    run = fake_run(host)
    run.client = SimpleNamespace(containers=SimpleNamespace(list=listed), events=events)

    def exit_later():
        time.sleep(3)
        host.attrs["State"].update(Status="exited", FinishedAt="2026-12-03T13:52:40Z")
        died.set()

    began = time.monotonic()
    threading.Thread(target=exit_later, daemon=True).start()
    outcome = _await_end(run, job_dir, config)
    assert outcome.status == "Completed" and 3 <= time.monotonic() - began < 4.5  # at once, on a busy machine too
    assert requests == ["list", "inspect", "list", "inspect"]  # a look at the start, one at the exit


def test_the_follower_gives_up_on_an_engine_gone_for_good_and_says_so_in_the_record(running_job):
    from fahr_core.contract import EngineLost
    from fahr_core.drivers.local.follower import _await_end
    from fahr_core.errors import EnvironmentProblem

    job_dir, config = running_job
    lost = EngineLost("lost the Docker engine while looking")
    with pytest.raises(EnvironmentProblem):
        _await_end(FakeRun(lost, lost, lost), job_dir, config, poll=0.01, patience=0.015)
    record = record_of(job_dir.parent, "j")
    assert record["status"] == "Failed" and record["unfinished"] == "follow", record
    assert "'fahr wait j --train-driver local" in record["failure_reason"], record


def test_the_follower_stops_looking_once_someone_else_finished_the_job(running_job):
    from fahr_core.drivers.local.follower import _await_end

    job_dir, config = running_job

    class FinishedMeanwhile(FakeRun):
        def settled(self):
            record = record_of(job_dir.parent, "j")
            (job_dir / "job.json").write_text(json.dumps({**record, "status": "Stopped"}))
            return None

    assert _await_end(FinishedMeanwhile(), job_dir, config, poll=0.01) is None


def test_a_follower_that_cannot_be_started_is_one_warning_and_the_job_runs_on(running_job, tmp_path, capsys):
    from fahr_core.drivers.local.lifecycle import _start_follower

    job_dir, config = running_job
    (job_dir / "watch.lock").unlink()
    (job_dir / "watch.lock").symlink_to(tmp_path / "elsewhere")  # planted: nothing opened through it
    _start_follower(job_dir, config)
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith("fahr warning could not start the process that finishes job j when it ends "
                              f"({job_dir / 'watch.lock'} is a symbolic link, not the file fahr made); "), warning
    assert warning.endswith(f"it trains on, and 'fahr wait j --train-driver local --config.output_path={job_dir.parent}' "
                            "finishes it"), warning
    assert "follower" not in record_of(job_dir.parent, "j") and not (tmp_path / "elsewhere").exists()


def test_the_engines_times_are_read_to_the_microsecond():
    from fahr_core.contract import _engine_time, _span

    assert _engine_time("2026-12-03T13:52:32.123456789Z") == pytest.approx(1796305952.123456)
    assert _engine_time("2026-12-03T14:52:32.5+01:00") == pytest.approx(1796305952.5)
    for never in ("0001-01-01T00:00:00Z", "", None, "yesterday"):
        assert _engine_time(never) is None
    hosts = [{"StartedAt": "2026-12-03T13:52:30Z", "FinishedAt": "2026-12-03T13:52:40Z"},
             {"StartedAt": "2026-12-03T13:52:31Z", "FinishedAt": "2026-12-03T13:52:45Z"}]
    assert _span(hosts) == (1796305950.0, 1796305965.0)  # the first start, the last end
    assert _span([{"StartedAt": "2026-12-03T13:52:30Z", "FinishedAt": "0001-01-01T00:00:00Z"}]) == (None, None)


HANGUP = textwrap.dedent("""\
    import os, signal, sys, time
    from fahr_core import interrupts
    interrupts.install()
    interrupts.until_followed("j", lambda: None)  # a job launched: an interrupt would stop it
    if sys.argv[1] == "attended":
        interrupts.attended("j")  # its follower started: it finishes the job
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(10)
    except KeyboardInterrupt:
        sys.exit(42)  # the launch cleans up, as after Ctrl-C
""")


def test_a_closed_terminal_interrupts_a_launch_that_nothing_else_would_finish():
    """SIGHUP while a job starts (a big --input being copied): fahr is interrupted as by Ctrl-C,
    which removes what the launch made and records it; once the job's follower runs, fahr dies of
    it as before, and the follower finishes the job. Before: killed mid-launch, the job was left
    InProgress, its container `created` forever."""
    for case, code in (("unattended", 42), ("attended", -signal.SIGHUP)):
        done = subprocess.run([sys.executable, "-c", HANGUP, case], capture_output=True, text=True, timeout=60)
        assert done.returncode == code, (case, done)


def test_the_follower_imports_neither_docker_nor_the_cli():
    out = subprocess.run([sys.executable, "-c", "import sys, fahr_core.drivers.local.follower\n"
                          "print(sorted(m for m in ('docker', 'typer', 'boto3', 'fahr_core.cli') if m in sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_record_with_a_wrong_follower_is_refused(tmp_path):
    from fahr_core.drivers.local.records import BadRecord, _read_record

    job = tmp_path / "j"
    job.mkdir()
    for wrong in ("12", True, -1, 2**40):
        (job / "job.json").write_text(json.dumps({"job_name": "j", "model_tag": "a/b", "status": "InProgress",
                                                  "image": "a/b:latest", "follower": wrong}))
        with pytest.raises(BadRecord, match="follower"):
            _read_record(job)
