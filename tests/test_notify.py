"""Told when a job ends (`fit --notify URL`, `notify` in fahr.toml; docs/notifications.md).

A loopback HTTP server of the test (127.0.0.1, an ephemeral port) receives the POSTs: nothing
outside this machine is ever a target. Local jobs are real jobs on the engine, one image for the
module; the exactly-once rule and the POST's own rules are held to account without Docker too.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import secrets
import signal
import subprocess
import textwrap
import threading
import time

import pytest

from conftest import one_line_error, run_fahr
from test_detached import alive as _alive
from test_detached import job_of as _job_of

SCRIPT = textwrap.dedent("""\
    import json, sys, time
    hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
    if hp.get("fail"):
        print("boom: the script failed on purpose", file=sys.stderr, flush=True)
        sys.exit(5)
    time.sleep(float(hp.get("seconds", "0")))
    json.dump({"trained": True}, open("/opt/ml/model/model.json", "w"))
""")


class Receiver:
    """The test's own HTTP server on 127.0.0.1: records each POST (path, headers, raw body);
    ``/fail`` answers 500, ``/redirect`` answers 302 to ``/moved``."""

    def __init__(self):
        self.posts: list[tuple[str, dict, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.posts.append((self.path, dict(self.headers), body))
                if self.path == "/drip":  # a 200 whose body comes a byte every half second, for 30 s
                    self.send_response(200)
                    self.send_header("Content-Length", "60")
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        for _ in range(60):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.5)
                    return
                if self.path == "/fail":
                    self.send_response(500)
                elif self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/moved")
                else:
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, path: str) -> list[dict]:
        with self.lock:
            return [json.loads(body) for p, _, body in self.posts if p == path]

    def raw(self, path: str) -> list[bytes]:
        with self.lock:
            return [body for p, _, body in self.posts if p == path]

    def await_post(self, path: str, seconds: float = 90) -> list[dict]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.to(path):
                return self.to(path)
            time.sleep(0.2)
        raise AssertionError(f"no POST to {path} in {seconds} s; got {self.posts}")


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def made(tmp_path_factory, docker_engine):
    """The project (its image built once, by a first fit) and the jobs' folder of the module."""
    root = tmp_path_factory.mktemp("notify")
    project = root / f"i19notify{secrets.token_hex(3)}"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    jobs = root / "jobs"
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(jobs)}
    run_fahr("fit", project / "train.py", env=env, check=0)
    yield {"project": project, "jobs": jobs, "env": env}
    for job in jobs.iterdir():
        with contextlib.suppress(Exception):
            pid = json.loads((job / "job.json").read_text()).get("follower")
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        for container in docker_engine.containers.list(all=True, filters={"label": f"fahr.job={job.name}"}):
            container.remove(force=True)
    subprocess.run(["docker", "image", "rm", "-f", f"{project.name}/train:latest"], capture_output=True)


def _record(made, job: str) -> dict:
    return json.loads((made["jobs"] / job / "job.json").read_text())


def _follower_gone(made, job: str, seconds: float = 60) -> None:
    pid = _record(made, job).get("follower")
    deadline = time.monotonic() + seconds
    while pid and _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (pid and _alive(pid)), f"the follower {pid} of {job} still runs"


def test_a_followed_local_fit_posts_its_end_once(made, receiver):
    env = {**made["env"], "I19_TOKEN": "s3cr3t-" + secrets.token_hex(8)}
    proc = run_fahr("fit", made["project"] / "train.py", "--notify", f"{receiver.url}/followed",
                    "--secret", "I19_TOKEN", "--env", "VISIBLE=plain-env-value", env=env, check=0)
    job = _job_of(proc.stderr)
    _follower_gone(made, job)  # its follower has ended too: it did not tell it again
    bodies = receiver.to("/followed")
    assert len(bodies) == 1, bodies
    body = bodies[0]
    assert body["schema"] == "fahr.notification/1"
    assert body["job"] == job and body["driver"] == "local" and body["status"] == "Completed"
    assert body["model_tag"] == f"{made['project'].name}/train"
    assert body["failure_kind"] is None and body["failure_line"] is None and body["attempt_of"] is None
    assert isinstance(body["duration_seconds"], float) and body["duration_seconds"] >= 0
    assert body["cost"] == 0  # a local job costs nothing, and says so
    assert body["model"] == str(made["jobs"] / job / "output" / "model.tar.gz")
    raw = receiver.raw("/followed")[0]
    assert env["I19_TOKEN"].encode() not in raw and b"plain-env-value" not in raw and b"VISIBLE" not in raw
    assert _record(made, job)["notified"] is True


def test_a_detached_local_job_is_told_by_its_follower_once(made, receiver):
    proc = run_fahr("fit", made["project"] / "train.py", "--detach", "--hp", "seconds=2",
                    "--notify", f"{receiver.url}/detached", env=made["env"], check=0)
    job = _job_of(proc.stderr)
    assert "warning" not in proc.stderr  # the local driver tells a detached job's end itself
    body = receiver.await_post("/detached")[0]  # the follower ended it: nobody else followed it
    assert body["job"] == job and body["status"] == "Completed"
    _follower_gone(made, job)
    run_fahr("wait", job, env=made["env"], check=0)  # a later `fahr wait` does not tell it again
    assert len(receiver.to("/detached")) == 1


def test_a_detached_job_without_follower_is_told_by_the_fahr_wait_that_ends_it(made, receiver):
    proc = run_fahr("fit", made["project"] / "train.py", "--detach", "--config.follower=false",
                    "--notify", f"{receiver.url}/waited", env=made["env"], check=0)
    job = _job_of(proc.stderr)
    time.sleep(2)  # it has ended (it trains no time), and nobody finished it: nobody told it
    assert receiver.to("/waited") == []
    run_fahr("wait", job, env=made["env"], check=0)
    (body,) = receiver.to("/waited")
    assert body["job"] == job and body["status"] == "Completed"
    run_fahr("wait", job, env=made["env"], check=0)
    assert len(receiver.to("/waited")) == 1


def test_a_sweep_s_jobs_are_each_told_once(made, receiver, tmp_path_factory, docker_engine):
    """fahr.toml's notify reaches a sweep's jobs (a project of its own: fahr.toml is in its image)."""
    project = tmp_path_factory.mktemp("notifysweep") / f"i19notifysweep{secrets.token_hex(3)}"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    (project / "fahr.toml").write_text(f'notify = "{receiver.url}/sweep"\n')
    try:
        proc = run_fahr("sweep", project / "train.py", "--hp", "seconds=0,0.1", "--parallel", "2",
                        env=made["env"], check=0)
        bodies = receiver.to("/sweep")
        assert sorted(b["status"] for b in bodies) == ["Completed", "Completed"], proc.stderr
        assert len({b["job"] for b in bodies}) == 2
        for job in {b["job"] for b in bodies}:
            _follower_gone(made, job)
        assert len(receiver.to("/sweep")) == 2
    finally:
        subprocess.run(["docker", "image", "rm", "-f", f"{project.name}/train:latest"], capture_output=True)


def test_a_failed_job_is_told_with_its_kind_and_a_failing_url_changes_no_exit_code(made, receiver):
    proc = run_fahr("fit", made["project"] / "train.py", "--hp", "fail=1", "--notify", f"{receiver.url}/fail",
                    env=made["env"])
    assert proc.returncode == 1, proc.stderr  # a failed job's exit code, whatever the receiver answered
    body = receiver.to("/fail")[0]
    assert body["status"] == "Failed" and body["failure_kind"] == "user"
    assert body["failure_line"] and body["model"] is None
    warnings = [line for line in proc.stderr.splitlines() if "could not notify" in line]
    assert len(warnings) == 1 and "500" in warnings[0], proc.stderr


def test_an_unreachable_url_is_one_warning_and_the_fit_succeeds(made):
    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the with ends: nothing listens there
    proc = run_fahr("fit", made["project"] / "train.py", "--notify", f"http://127.0.0.1:{port}/gone",
                    env=made["env"], check=0)
    warnings = [line for line in proc.stderr.splitlines() if "could not notify" in line]
    assert len(warnings) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "127.0.0.1:8080/x", "http://",
                                 "http://127.0.0.1/a b", "http://127.0.0.1:99999999/", "javascript:alert(1)"])
def test_a_url_that_is_not_http_is_refused_before_anything_is_built(tmp_path, url):
    (tmp_path / "train.py").write_text(SCRIPT)
    proc = run_fahr("fit", tmp_path / "train.py", "--notify", url,
                    env={"FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs")})
    line = one_line_error(proc, 2)
    assert "--notify" in line and "http://" in line  # says what a URL must be
    assert not (tmp_path / "jobs").exists()


def test_fahr_toml_notify_is_checked_and_used(tmp_path):
    from fahr_core import plan

    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "fahr.toml").write_text('notify = "gopher://127.0.0.1/"\n')
    proc = run_fahr("fit", tmp_path / "train.py", env={"FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs")})
    assert "notify" in one_line_error(proc, 2)
    (tmp_path / "fahr.toml").write_text('notify = "https://127.0.0.1/hook"\n')
    assert plan.plan_fit(tmp_path / "train.py").notify == "https://127.0.0.1/hook"
    assert plan.plan_fit(tmp_path / "train.py", notify="").notify == ""  # '' turns the file's off
    assert plan.plan_fit(tmp_path / "train.py", notify="http://127.0.0.1:8/x").notify == "http://127.0.0.1:8/x"


def test_the_api_refuses_a_notify_that_is_not_text(tmp_path):
    from fahr_core import api
    from fahr_core.errors import UsageError

    (tmp_path / "train.py").write_text(SCRIPT)
    with pytest.raises(UsageError, match="notify"):
        api.fit(tmp_path / "train.py", notify=5)


# -- without Docker: the POST's rules, and once per job ----------------------------------------


def _result(status="Completed", **fields):
    from fahr_core.values import JobHandle, JobResult

    return JobResult(job=JobHandle(driver="x", job_name="j-1", model_tag="a/b"), status=status, **fields)


def test_a_redirect_is_not_followed(receiver, capsys):
    from fahr_core import notify

    assert notify.post(f"{receiver.url}/redirect", notify.summary(_result())) is False
    assert receiver.to("/moved") == []
    assert "302" in capsys.readouterr().err


def test_a_url_password_is_not_shown_in_the_warning(capsys):
    from fahr_core import notify

    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    notify.post(f"http://user:hunter2@127.0.0.1:{port}/", notify.summary(_result()))
    err = capsys.readouterr().err
    assert "could not notify" in err and "hunter2" not in err


def test_the_core_posts_only_when_the_driver_does_not(receiver):
    from fahr_core import notify
    from fahr_core.values import JobHandle

    result = _result("Failed", failure_reason="it broke", failure_kind="capacity", training_seconds=3)
    notify.followed(f"{receiver.url}/core", JobHandle(driver="x", job_name="j-1", model_tag="a/b", notifies=True),
                    result)
    assert receiver.to("/core") == []
    notify.followed(f"{receiver.url}/core", result.job, result, attempt_of="j-0")
    (body,) = receiver.to("/core")
    assert body["failure_kind"] == "capacity" and body["failure_line"] == "it broke"
    assert body["duration_seconds"] == 3.0 and body["attempt_of"] == "j-0" and body["driver"] == "x"


def test_a_local_job_is_told_once_whoever_ends_it(tmp_path, receiver):
    """Four finishers at once (a fit, a `fahr wait`, a `fahr stop`, the follower): one POST."""
    from fahr_core.drivers.local.finish import _notify_once

    job = tmp_path / "i19notify-once-1"
    job.mkdir(mode=0o700)
    record = {"job_name": job.name, "model_tag": "i19notify/once", "image": "sha256:00", "status": "Completed",
              "started": 100.0, "ended": 112.5, "notify": f"{receiver.url}/once", "attempt_of": "i19notify-once-0"}
    (job / "job.json").write_text(json.dumps(record))
    threads = [threading.Thread(target=_notify_once, args=(job,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (body,) = receiver.to("/once")
    assert body["duration_seconds"] == 12.5 and body["attempt_of"] == "i19notify-once-0"
    assert json.loads((job / "job.json").read_text())["notified"] is True


def test_a_local_job_not_ended_is_not_told(tmp_path, receiver):
    from fahr_core.drivers.local.finish import _notify_once

    job = tmp_path / "i19notify-running-1"
    job.mkdir(mode=0o700)
    (job / "job.json").write_text(json.dumps({"job_name": job.name, "model_tag": "i19notify/once", "image": "x",
                                              "status": "InProgress", "notify": f"{receiver.url}/running"}))
    _notify_once(job)
    assert receiver.to("/running") == []


# -- what review found: the POST bounded in all, credentials, a forged record's URL -------------


def test_a_receiver_answering_a_byte_at_a_time_holds_the_post_at_most_its_timeout(receiver, monkeypatch, capsys):
    """The local driver posts holding the job's record lock: a `fahr stop`/`fahr wait` of the job
    waits for the POST, which must end within TIMEOUT whatever the receiver does."""
    from fahr_core import notify

    monkeypatch.setattr(notify, "TIMEOUT", 1.5)
    began = time.monotonic()
    assert notify.post(f"{receiver.url}/drip", notify.summary(_result())) is False
    assert time.monotonic() - began < 4
    err = capsys.readouterr().err
    assert "could not notify" in err and "1.5 s" in err


def test_a_url_s_user_and_password_are_sent_as_basic_authorization(receiver):
    import base64

    from fahr_core import notify

    url = receiver.url.replace("http://", "http://ann%3Ab:p%40ss@") + "/auth"
    assert notify.check_url(url) == url
    assert notify.post(url, notify.summary(_result())) is True
    with receiver.lock:
        ((_, headers, _),) = [post for post in receiver.posts if post[0] == "/auth"]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"ann:b:p@ss").decode()
    assert "@" not in headers["Host"] and "p@ss" not in headers["Host"]


def test_no_line_fahr_prints_shows_the_url_s_credentials(capsys):
    from types import SimpleNamespace

    from fahr_core import api, notify
    from fahr_core.errors import UsageError
    from fahr_core.values import JobHandle

    with pytest.raises(UsageError) as refused:
        notify.check_url("http://ann:hunter2@127.0.0.1/a b")
    assert "hunter2" not in str(refused.value)
    api._detached_notify(SimpleNamespace(notify="https://tok3n@127.0.0.1/hook"),
                         JobHandle(driver="x", job_name="j-1", model_tag="a/b"))
    err = capsys.readouterr().err
    assert "does not tell https://***@127.0.0.1/hook" in err and "tok3n" not in err


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "http://127.0.0.1/x\r\nX-Forged: 1"])
def test_a_job_record_s_notify_is_checked_as_the_flag_is(tmp_path, url):
    """A job folder is anyone's to edit: its notify is an http(s) URL or the record is refused,
    never handed to urllib (which opens file:// and ftp:// URLs too)."""
    jobs = tmp_path / "jobs"
    job = jobs / "i19notify-forged-1"
    job.mkdir(parents=True, mode=0o700)
    (job / "job.json").write_text(json.dumps({
        "job_name": job.name, "model_tag": "i19notify/forged", "image": "sha256:00", "status": "Completed",
        "started": 100.0, "ended": 112.5, "notify": url}))
    proc = run_fahr("wait", job.name, "--train-driver", "local", env={"FAHR_LOCAL_OUTPUT_PATH": str(jobs)})
    line = one_line_error(proc, 2)
    assert "notify" in line and "http" in line
    assert "notified" not in json.loads((job / "job.json").read_text())


def test_a_resumed_sweep_s_jobs_are_each_told_once(made, receiver, tmp_path_factory):
    """`fahr sweep --resume` follows the running jobs it finds by their listing: a job the local
    driver tells itself must not be told a second time by the core."""
    import re

    project = tmp_path_factory.mktemp("notifyresume") / f"i19notifyresume{secrets.token_hex(3)}"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    (project / "fahr.toml").write_text(f'notify = "{receiver.url}/resumed"\n')
    try:
        proc = run_fahr("sweep", project / "train.py", "--hp", "seconds=4,4.1", "--detach",
                        env=made["env"], check=0)
        (sweep,) = set(re.findall(r"fahr sweep --resume (sw-[\w-]+)", proc.stderr))
        assert "does not tell" not in proc.stderr  # the local driver tells a detached sweep's jobs itself
        run_fahr("sweep", "--resume", sweep, env=made["env"], cwd=project, check=0)
        jobs = {b["job"] for b in receiver.to("/resumed")}
        assert len(jobs) == 2
        for job in jobs:
            _follower_gone(made, job)
        assert sorted(b["job"] for b in receiver.to("/resumed")) == sorted(jobs), receiver.to("/resumed")
    finally:
        subprocess.run(["docker", "image", "rm", "-f", f"{project.name}/train:latest"], capture_output=True)


def test_a_receiver_answering_no_http_is_one_warning_and_the_job_is_told(tmp_path):
    """http.client's own errors (a status line that is not HTTP) are no OSError: once they crashed
    `fahr wait` (exit 4) and left the job untold, to crash every later `fahr wait` again."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    jobs = tmp_path / "jobs"
    job = jobs / "i19notify-garbage-1"
    job.mkdir(parents=True, mode=0o700)
    (job / "job.json").write_text(json.dumps({
        "job_name": job.name, "model_tag": "i19notify/garbage", "image": "sha256:00", "status": "Completed",
        "started": 100.0, "ended": 112.5, "notify": f"http://127.0.0.1:{server.getsockname()[1]}/hook"}))
    try:
        proc = run_fahr("wait", job.name, "--train-driver", "local", env={"FAHR_LOCAL_OUTPUT_PATH": str(jobs)})
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "could not notify" in line]
    assert len(warnings) == 1 and "BadStatusLine" in warnings[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads((job / "job.json").read_text())["notified"] is True


def test_a_detached_sweep_on_a_driver_that_does_not_notify_says_its_jobs_are_not_told(tmp_path):
    """As `fit --detach` (docs/notifications.md, "Who tells it"): a warning, not silence."""
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "fahr.toml").write_text('notify = "https://127.0.0.1:9/hook"\n')
    proc = run_fahr("sweep", tmp_path / "train.py", "--hp", "a=1,2", "--detach", "--train-driver", "testdrv",
                    f"--config.record_dir={tmp_path / 'steps'}", cwd=tmp_path, check=0)
    warnings = [line for line in proc.stderr.splitlines() if "does not tell" in line]
    assert len(warnings) == 1 and "driver 'testdrv'" in warnings[0], proc.stderr
