"""A job's own output reaches `fahr fit`, `wait` and `logs` byte for byte (like `docker logs`),
whatever its lines: many, multi-MiB long, ending in \\r\\n or holding \\r, not UTF-8, the last
one without a newline; and the pieces fahr cuts it into are bounded, the work linear. (`fit` reads
the job's output as `docker run` does, straight from the container; the engine's own log, which
`fahr logs` of a running job reads as `docker logs` does, keeps bytes that are not UTF-8 as U+FFFD.)

End to end with the real `fahr` console script and a real Docker engine; the splitter and the
tail of the failure message as units beside them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import FAHR
from fahr_core import joblog
from fahr_core.contract import LABEL_JOB

# The job's output, built the same way in the job and here.
CONTENT = textwrap.dedent("""\
    def content():
        parts = [b"line %d of many\\n" % i for i in range(20000)]
        parts.append(b"a windows line\\r\\n")
        parts.append(b"progress 1\\rprogress 2\\rprogress done\\n")
        parts.append(b"not utf-8: \\xff\\xfe \\xc3 and a split char \\xe2\\x82\\n")
        parts.append(b"x" * (3 * 1024 * 1024 + 7) + b" the end of a 3 MiB line\\n")
        parts.append("unicode \u00e9\u20ac\\n".encode())
        parts.append(b"the last line has no newline")
        return b"".join(parts)
""")

TRAIN = CONTENT + textwrap.dedent("""\
    import json, sys, time
    from pathlib import Path
    data = content()
    for start in range(0, len(data), 100_000):  # in writes that cut lines anywhere
        sys.stdout.buffer.write(data[start:start + 100_000])
        sys.stdout.buffer.flush()
    Path("/opt/ml/model").mkdir(parents=True, exist_ok=True)
    Path("/opt/ml/model/m.txt").write_text("m")
    hp = json.loads(Path("/opt/ml/input/config/hyperparameters.json").read_text())
    time.sleep(float(hp.get("linger", "0")))
""")


def expected() -> bytes:
    scope: dict = {}
    exec(CONTENT, scope)
    return scope["content"]()


def fahr_bytes(*args, env, cwd, timeout=600) -> subprocess.CompletedProcess:
    """The real `fahr`, its stdout as bytes (what a user's `> file` gets)."""
    full_env = {**os.environ, "NO_COLOR": "1", **env}
    return subprocess.run([str(FAHR), *map(str, args)], capture_output=True, env=full_env, cwd=cwd,
                          timeout=timeout)


@pytest.fixture(scope="module")
def scene(tmp_path_factory, docker_engine):
    root = tmp_path_factory.mktemp("output")
    project = root / "i15bounded"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(root / "jobs")}
    fit = fahr_bytes("fit", project / "train.py", "--train-driver", "local", env=env, cwd=root)
    assert fit.returncode == 0, fit.stderr.decode(errors="replace")
    job = max((root / "jobs").iterdir(), key=lambda p: p.stat().st_mtime).name
    yield {"root": root, "project": project, "env": env, "fit": fit, "job": job}
    subprocess.run(["docker", "image", "rm", "-f", "i15bounded/train:latest"], capture_output=True)


def test_fit_prints_the_jobs_output_byte_for_byte(scene):
    assert scene["fit"].stdout == expected()


def test_the_saved_log_is_the_jobs_output(scene):
    log = scene["root"] / "jobs" / scene["job"] / "logs" / "algo-1.log"
    assert log.read_bytes() == expected()


@pytest.mark.parametrize("command", [["logs"], ["wait"]])
def test_logs_and_wait_of_a_finished_job_print_its_output_byte_for_byte(scene, command):
    proc = fahr_bytes(*command, scene["job"], "--train-driver", "local", env=scene["env"], cwd=scene["root"])
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout == expected()


def test_logs_of_a_running_job_print_its_output_byte_for_byte(scene, docker_engine):
    """`fahr logs` (and -f) read a running job from the engine, the 3 MiB line in slices, as
    `docker logs` prints it; so does `fahr wait` from another process than the one that started it."""
    env, root = scene["env"], scene["root"]
    launched = fahr_bytes("fit", scene["project"] / "train.py", "--train-driver", "local", "--detach",
                          "--hp", "linger=8", "--config.follower=false", env=env, cwd=root)
    # Without a follower, its container is kept once it has exited, its whole output (the last
    # line too, which the engine logs at the exit) read from the engine by each command below.
    assert launched.returncode == 0, launched.stderr.decode(errors="replace")
    job = max((root / "jobs").iterdir(), key=lambda p: p.stat().st_mtime).name
    try:
        running_job_output(job, env, root, docker_engine)
    finally:  # a failed assertion leaves no container behind (a passing run has finished the job)
        fahr_bytes("stop", job, "--train-driver", "local", env=env, cwd=root)


def running_job_output(job: str, env: dict, root: Path, docker_engine) -> None:
    (container,) = docker_engine.containers.list(filters={"label": f"{LABEL_JOB}={job}"})
    deadline = time.monotonic() + 60
    while b"the last line has no newline" not in container.logs() and time.monotonic() < deadline:
        time.sleep(0.5)  # until the job has printed everything (it then lingers)
    # What the engine kept: as the job printed it, but for the bytes that are not UTF-8, which
    # the engine's log (`docker logs`) keeps as U+FFFD.
    want = subprocess.run(["docker", "logs", container.id], capture_output=True, check=True).stdout
    assert b"\xff" not in want and want.count(b"\n") == expected().count(b"\n") and len(want) > 3 * 1024 * 1024
    now = fahr_bytes("logs", job, "--train-driver", "local", env=env, cwd=root)
    assert now.returncode == 0, now.stderr.decode(errors="replace")
    assert now.stdout == want
    assert json.loads((root / "jobs" / job / "job.json").read_text())["status"] == "InProgress"
    followed = fahr_bytes("logs", "-f", job, "--train-driver", "local", env=env, cwd=root)
    assert followed.stdout == want
    waited = fahr_bytes("wait", job, "--train-driver", "local", env=env, cwd=root)
    assert waited.returncode == 0, waited.stderr.decode(errors="replace")
    assert waited.stdout == want
    assert (root / "jobs" / job / "logs" / "algo-1.log").read_bytes() == want


def test_the_api_gives_whole_lines_readable(scene):
    from fahr_core import api

    lines = list(api.Job(scene["job"], driver="local", config={"output_path": str(scene["root"] / "jobs")}).logs())
    text = expected().decode("utf-8", "replace")
    assert lines == text.split("\n")
    assert lines[20000] == "a windows line\r" and len(lines[20003]) > 3 * 1024 * 1024


# -- units ------------------------------------------------------------------------------------


class Counted(bytes):
    """A chunk that counts the bytes the splitter scans for newlines."""

    scanned = 0

    def split(self, *args):
        Counted.scanned += len(self)
        return super().split(*args)


def test_the_splitter_scans_each_byte_once_and_holds_at_most_its_limit():
    """A 1 MiB line fed a byte at a time, then lines of every length in odd chunks: every byte is
    scanned once (the old way re-scanned the whole unfinished line for each chunk: quadratic), what
    is held never passes the limit, and the pieces are the stream."""
    limit = 64 * 1024
    stream = b"y" * (1024 * 1024) + b"\n" + b"".join(b"z" * n + b"\r\n" for n in range(0, 200_000, 997)) + b"end"
    splitter = joblog.LineSplitter(limit)
    pieces, most = [], 0
    Counted.scanned = 0
    for i in range(1024 * 1024 + 1):  # the long line, byte by byte
        pieces += splitter.feed(Counted(stream[i:i + 1]))
        most = max(most, splitter.held)
    position, size = 1024 * 1024 + 1, 1
    while position < len(stream):  # the rest in chunks of growing, odd sizes
        pieces += splitter.feed(Counted(stream[position:position + size]))
        most = max(most, splitter.held)
        position, size = position + size, size * 3 + 1
    pieces.append(splitter.end())
    assert Counted.scanned == len(stream)
    assert most < limit
    assert max(len(p) for p in pieces) <= limit + size
    assert b"".join(pieces) == stream
    assert all(p.endswith(b"\n") or len(p) >= limit for p in pieces[:-1])


def test_saved_logs_are_read_in_bounded_pieces(tmp_path):
    log = tmp_path / "algo-1.log"
    data = b"a" * (5 * 1024 * 1024) + b"\nshort\n" + b"tail"
    log.write_bytes(data)
    with open(log, "rb") as handle:
        pieces = list(joblog.pieces(joblog.read_chunks(handle)))
    assert b"".join(pieces) == data
    assert max(map(len, pieces)) < joblog.MAX_PIECE + joblog.READ_SIZE


def test_the_failure_tail_keeps_the_last_lines_and_a_bounded_amount():
    tail = joblog.Tail(keep=1000)
    for i in range(100_000):
        tail.add(b"line %d\r\n" % i)
    assert tail.lines(3) == ["line 99997", "line 99998", "line 99999"]
    assert sum(map(len, tail._chunks)) < 1000 + 20


def test_the_api_holds_nothing_back_when_the_driver_says_how_many_hosts(monkeypatch):
    """A finished job's lines come host after host: without the hint, every line was held until a
    second host spoke or the lines ended (all of a one-host job's output in memory). A line a
    driver hands over in slices comes out whole from logs(), in its pieces from _output()."""
    from types import SimpleNamespace

    from fahr_core import LogLine, api

    seen: list[str] = []

    def logs(job, config, follow):
        yield LogLine(host="algo-1", text="first", hosts=1)
        assert seen == ["first"]  # handed over before the next line is read
        yield LogLine(host="algo-1", text="a long ", newline=False, hosts=1)
        yield LogLine(host="algo-1", text="line", hosts=1)
        yield LogLine(host="algo-1", text="no newline at the end", newline=False, hosts=1)

    from fahr_core import Config
    from fahr_core.session import Session

    session = Session(SimpleNamespace(hook=SimpleNamespace(logs=logs)), Config("standin", {}, {}))
    monkeypatch.setattr(api, "_open", lambda *args, **kwargs: session)
    job = api.Job("standin-job-9", driver="standin")
    for line in job.logs():
        seen.append(line)
    assert seen == ["first", "a long line", "no newline at the end"]
    seen[:] = ["first"]
    assert list(job._output(False, None)) == [("first", True), ("a long ", False), ("line", True),
                                              ("no newline at the end", False)]


# -- the handover from the attached stream to the engine's log ------------------------------------

NUMBERED = textwrap.dedent("""\
    import sys
    from pathlib import Path
    out, err = sys.stdout.buffer, sys.stderr.buffer
    out.write(b"\\xff\\xfe\\xe2\\x82\\n")  # not UTF-8
    for i in range(60000):  # the two streams interleaved; their bytes told apart by their alphabets
        err.write(b"e%s;" % str(i).translate(str.maketrans("0123456789", "abcdefghij")).encode())
        out.write(b"o%d\\n" % i)
    Path("/opt/ml/model").mkdir(parents=True, exist_ok=True)
    Path("/opt/ml/model/m.txt").write_text("m")
""")


def streams(output: bytes) -> tuple[bytes, bytes]:
    """The job's stdout and stderr out of their merged bytes."""
    err = bytes(byte for byte in output if byte in b"abcdefghije;")
    return bytes(byte for byte in output if byte not in b"abcdefghije;"), err


# `fahr`, with a hold small enough for a small job to pass it; says when the handover happened.
HANDOVER_FAHR = textwrap.dedent("""\
    import sys
    from fahr_core import contract, cli
    contract._ATTACH_HOLD = 128 * 1024
    original = contract.output_chunks
    def output_chunks(container, follow, *args, **kwargs):
        if follow:  # in `fit`, the engine's log is followed only past an attached stream let go
            sys.stderr.write("fahr test: handover\\n")
        return original(container, follow, *args, **kwargs)
    contract.output_chunks = output_chunks
    cli.main()
""")


def read_slowly(command: list, env: dict, cwd: Path) -> tuple[int, bytes, bytes]:
    """``command`` with its stdout a slow pipe (`… | (sleep 3; cat)`): (exit code, stdout, stderr)."""
    proc = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "NO_COLOR": "1", **env}, cwd=cwd)
    try:
        time.sleep(3)  # nobody reads: what the job prints piles up in fahr, or fahr falls behind
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def numbered(tmp_path_factory, docker_engine):
    """A project printing NUMBERED, its image shared by the tests below."""
    root = tmp_path_factory.mktemp("numbered")
    project = root / "i15bndreviewhandover"
    project.mkdir()
    (project / "train.py").write_text(NUMBERED)
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(root / "jobs")}
    # Built (and run once) now: in the tests below the job must print while their reader is still
    # slow, not after a first build that outlasts it on a loaded machine.
    subprocess.run([FAHR, "fit", str(project / "train.py"), "--train-driver", "local"], capture_output=True,
                   env={**os.environ, **env}, cwd=root, check=True)
    yield {"root": root, "project": project, "env": env}
    subprocess.run(["docker", "image", "rm", "-f", "i15bndreviewhandover/train:latest"], capture_output=True)


def numbered_output() -> tuple[bytes, bytes]:
    """NUMBERED's stdout and stderr."""
    return (b"\xff\xfe\xe2\x82\n" + b"".join(b"o%d\n" % i for i in range(60000)),
            b"".join(b"e%s;" % str(i).translate(str.maketrans("0123456789", "abcdefghij")).encode()
                     for i in range(60000)))


def test_output_the_attached_stream_lets_go_goes_on_from_the_engines_log_without_a_gap_or_a_repeat(numbered):
    """stdout a slow pipe (`fahr fit … | (sleep 3; cat)`): the attached stream overflows its hold
    and is let go; the engine's log goes on past the bytes passed on, stream by stream (it orders
    stdout against stderr its own way) and counting the bytes that are not UTF-8 as it keeps them
    (U+FFFD): every byte of both streams is there, in order, once. Before: the bytes were
    counted over both streams together, as they came, and lines were lost, repeated or cut."""
    code, out, err = read_slowly([sys.executable, "-c", HANDOVER_FAHR, "fit", numbered["project"] / "train.py",
                                  "--train-driver", "local"], numbered["env"], numbered["root"])
    assert code == 0, err.decode(errors="replace")
    assert b"fahr test: handover" in err  # the case at hand: the stream was let go part way
    assert streams(out) == numbered_output()


def test_wait_from_another_process_gets_and_saves_a_chatty_jobs_output_to_its_end(numbered):
    """`fit --detach`, then `fahr wait`: nothing attached, the output is followed in the engine's
    log, which Docker 20.10 ends when the container stops, whatever it had not sent yet (`docker
    logs -f` loses the same tail) if the reader is behind. Before: `wait` printed and saved the log
    cut there."""
    env, root = numbered["env"], numbered["root"]
    launched = fahr_bytes("fit", numbered["project"] / "train.py", "--train-driver", "local", "--detach",
                          env=env, cwd=root)
    assert launched.returncode == 0, launched.stderr.decode(errors="replace")
    job = max((root / "jobs").iterdir(), key=lambda p: p.stat().st_mtime).name
    code, out, err = read_slowly([FAHR, "wait", job, "--train-driver", "local"], env, root)  # far behind at the end
    assert code == 0, err.decode(errors="replace")
    engine_kept = b"\xef\xbf\xbd" * 4 + numbered_output()[0][4:], numbered_output()[1]  # not UTF-8: U+FFFD
    assert streams(out) == engine_kept
    logs = root / "jobs" / job / "logs"
    assert (logs / "algo-1.log").is_file(), (sorted(p.name for p in logs.parent.rglob("*")), err.decode())
    assert streams((logs / "algo-1.log").read_bytes()) == engine_kept


def test_a_hosts_whole_followed_output_is_saved_though_its_container_is_gone(tmp_path):
    """The containers removed between the end of the job and save_logs (by `fahr stop` in
    another process, or anyone's `docker rm`): the output followed to its end was kept as it came
    and is the host's log. Before: a host was saved only from its container, and the whole copy
    of a host without one deleted."""
    from fahr_core.contract import ContainerJob, ContractRun

    class NoContainers:
        def __init__(self):
            self.containers = self

        def list(self, **_):
            return []

    folder = tmp_path / "logs"
    folder.mkdir()
    copy = folder / ".algo-1.log.x.partial"
    copy.write_bytes(b"all of it\n")
    run = ContractRun(ContainerJob("j", "img"), client=NoContainers())
    run._copies["algo-1"] = copy
    run.save_logs(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["algo-1.log"]
    assert (folder / "algo-1.log").read_bytes() == b"all of it\n"


def test_logs_follow_goes_on_in_the_saved_log_past_what_the_engines_log_gave(tmp_path):
    """`fahr logs -f` cut off from the engine (the job ended and its containers went) goes on in
    the saved log past the bytes it printed, counted as the engine's log holds them: each byte
    that is not UTF-8 is 3 there (U+FFFD). Before: counted as 1, and the lines after such bytes
    were printed again in part."""
    from fahr_core.drivers.local import _saved_logs

    (tmp_path / "logs").mkdir()
    raw = b"bad \xff\xfe\xe2\x82 bytes\n" + b"".join(b"line %d\n" % i for i in range(1000))
    (tmp_path / "logs" / "algo-1.log").write_bytes(raw)
    engine = raw.replace(b"\xff\xfe\xe2\x82", b"\xef\xbf\xbd" * 4)
    for seen in (len(engine.split(b"\n")[0]) + 1, 5000, len(engine)):
        rest = b"".join(line.text.encode("utf-8", "surrogateescape") + b"\n" * line.newline
                        for line in _saved_logs(tmp_path, 1, skip={"algo-1": seen}))
        assert rest == engine[seen:]
    rest = [line.text for line in _saved_logs(tmp_path, 1, skip={"algo-1": 6})]  # inside the bytes
    assert rest[:2] == ["\udcfe\udce2\udc82 bytes", "line 0"]


def first_line_then_close(args: list, env: dict, cwd: Path) -> tuple[int, bytes, bytes]:
    """`fahr ARGS | head -1`: stdout read for one line, then closed; (exit code, line, stderr)."""
    proc = subprocess.Popen([str(FAHR), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "NO_COLOR": "1", **env}, cwd=cwd)
    try:
        line = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        return proc.wait(timeout=300), line, err
    finally:
        proc.kill()


@pytest.mark.parametrize("command", ["logs", "wait"])
def test_stdout_closed_by_its_reader_ends_logs_and_wait_of_a_finished_job_quietly(scene, command):
    """`fahr logs JOB | head -1`, as `docker logs … | head -1`: the reader has its line; fahr stops
    printing, exit 0, no error. Before: `fahr error: internal error: BrokenPipeError`, exit 4."""
    code, line, err = first_line_then_close([command, scene["job"], "--train-driver", "local"], scene["env"],
                                            scene["root"])
    assert (code, line) == (0, b"line 0 of many\n"), err.decode(errors="replace")
    assert b"error" not in err


def test_stdout_closed_by_its_reader_still_lets_wait_finish_and_record_the_job(numbered):
    """`fahr wait JOB | head -1` of a running job: the job's output is no longer printed, but it is
    followed to its end, its log saved whole and the job recorded; the exit code is the job's."""
    env, root = numbered["env"], numbered["root"]
    # Without a follower: `wait` follows and finishes the job, whenever it ends (a short one).
    launched = fahr_bytes("fit", numbered["project"] / "train.py", "--train-driver", "local", "--detach",
                          "--config.follower=false", env=env, cwd=root)
    assert launched.returncode == 0, launched.stderr.decode(errors="replace")
    job = max((root / "jobs").iterdir(), key=lambda p: p.stat().st_mtime).name
    code, line, err = first_line_then_close(["wait", job, "--train-driver", "local"], env, root)
    assert code == 0, err.decode(errors="replace")
    assert b"error" not in err and b"Completed" in err
    assert json.loads((root / "jobs" / job / "job.json").read_text())["status"] == "Completed"
    engine_kept = b"\xef\xbf\xbd" * 4 + numbered_output()[0][4:], numbered_output()[1]
    assert streams((root / "jobs" / job / "logs" / "algo-1.log").read_bytes()) == engine_kept


def test_logs_follow_holds_a_bounded_amount_for_a_slow_reader(monkeypatch):
    """`fahr logs -f JOB | slow-reader` of a chatty job: the hosts' streams wait for the reader.
    Before: they read on into an unbounded queue, the whole output in memory (RSS grew with it)."""
    import threading
    from types import SimpleNamespace

    from fahr_core import contract
    from fahr_core.drivers import local

    produced = 0
    released = threading.Event()

    def output_chunks(container, follow, skip=None):
        nonlocal produced
        for i in range(20_000):
            produced += 1
            yield b"line %d\n" % i
        released.set()

    monkeypatch.setattr(contract, "output_chunks", output_chunks)
    run = SimpleNamespace(containers=lambda: {"algo-1": object()})
    lines = local._live_logs(run, True, 1, {})
    assert next(lines).text == "line 0"
    time.sleep(1)  # a slow reader
    assert not released.is_set() and produced <= 2 * local._LIVE_QUEUE
    assert [line.text for line in lines] == ["line %d" % i for i in range(1, 20_000)]
