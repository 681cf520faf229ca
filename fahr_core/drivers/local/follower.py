"""A local job's follower: the process that finishes the job when its containers exit, watched or not.

``launch`` starts one per job (:func:`start`): ``python -m fahr_core.drivers.local.follower JOBDIR
STOP_TIMEOUT``, forked away from the process that launched it, in a session of its own (closing the
terminal, or Ctrl-C there, does not reach it), its input from /dev/null and its output appended to
``<job>/follower.log`` (0600); its pid is recorded in job.json (``follower``). It looks at the
containers when one of them dies or is removed (it holds the engine's event stream open for
that, a minute at a time, looking at them again at least once a minute); once all have exited
it finishes the job with the same code as ``fahr wait`` (fahr_core.drivers.local.finish:
artifacts packed, the end recorded with the containers' own start and end times, containers
removed) and exits. It also exits as soon as someone else has finished the job (``fahr stop``, a
``fahr wait``) or the job's folder is gone, and after ENGINE_PATIENCE seconds without an engine
(recording the job as a `fit` that lost the engine does): nothing is left running after a job.

A ``fahr wait`` (or a ``fit`` following its job) goes first: it holds a shared lock on
``<job>/watch.lock`` while it follows (:func:`watching`), and the follower takes that lock
exclusively before it finishes the job (:func:`_finishing`). So it waits while a live watcher
finishes the job itself and then finds the job ended; a watcher that dies (killed, its terminal
closed) releases the lock with its process, and the follower finishes the job. Whoever finishes
first, the other reads the ended record: ``_finish`` runs under the record's lock and is idempotent.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import subprocess
import sys
import time
from pathlib import Path

from fahr_core import ui
from fahr_core.errors import FahrError, UsageError
from fahr_core.jobfolder import Folder
from fahr_core.values import STOPPED

#: The follower's output (what it printed while finishing, or why it could not), in the job's folder.
LOG = "follower.log"
#: The lock a watching ``fahr wait`` shares, and the follower takes alone before it finishes the job.
WATCH = "watch.lock"
#: The least time between two looks at the containers (the record's end time is the engine's).
POLL = 1.0
#: The longest time between two looks: a look is made as soon as a container dies or is removed
#: (the engine's events), so this only bounds how late a change of the record alone is seen (a
#: finish that failed for a full disk). An idle job costs one request held open and a look (the
#: record, a list, an inspect per host) a minute, not one a second.
LOOK_AT_LEAST_EVERY = 60.0
#: Seconds the follower waits for an engine that stopped answering (a restart) before it gives up.
ENGINE_PATIENCE = 600.0

# Run in a first process in a new session, which forks the follower and exits at once, printing
# its pid: the follower is nobody's child (a long-lived Python that launched it, a notebook, is
# left no zombie to reap) and, not a session leader, can never take a controlling terminal.
_SPAWN = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid:\n"
    "    print(pid, flush=True)\n"
    "    os._exit(0)\n"
    "os.dup2(2, 1)  # /dev/null, as stderr\n"
    "os.execv(sys.executable, [sys.executable, '-P', '-m', 'fahr_core.drivers.local.follower', *sys.argv[1:]])\n"
)
# -P and the root folder as the current one: `python -m`/`-c` put the current folder first on
# sys.path, and fahr runs in the user's project, where a `logging.py` or `secrets.py` would be
# imported in their stead (the follower died on it, the job never finished); nor does the follower,
# living as long as the job, keep the user's folder (a disk to unmount) in use.


def start(job_dir: Path, config, secrets=()) -> int:
    """Start the follower of the job in ``job_dir`` (its containers started); return its pid.
    OSError (or ValueError) when it could not be started: the job runs on, `fahr wait` finishes it.

    ``secrets``: the names of the job's ``--secret`` variables, left out of the follower's
    environment (this fahr read their values from its own): a process living as long as the job
    must not hold them."""
    if not sys.executable:
        raise OSError("this Python does not know its own executable (sys.executable) to run it with")
    with Folder.open(job_dir) as folder:
        os.close(folder.open_own(WATCH))  # made now: a watcher's shared lock needs the file
    # Its output goes to its log once it runs (see main), never to this terminal. (Not the log
    # from the start: a file held open for writing keeps a disk from being remounted read-only.)
    spawner = subprocess.Popen(
        [sys.executable, "-P", "-c", _SPAWN, os.path.abspath(job_dir), str(int(config["stop_timeout"]))],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True, cwd="/",
        close_fds=True, env={name: value for name, value in os.environ.items() if name not in set(secrets)},
    )
    try:
        out, _ = spawner.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        spawner.kill()
        spawner.wait()
        raise OSError(f"{sys.executable} did not start in 60 s") from None
    if spawner.returncode != 0 or not out.strip().isdigit():
        raise OSError(f"{sys.executable} -c exited {spawner.returncode} without starting it")
    return int(out)


@contextlib.contextmanager
def watching(job_dir: Path):
    """Held by a process following the job in the foreground: the follower lets it finish the job.

    A job without the lock file (launched by an older fahr) or without a folder is followed without
    it (the record's reader then says what is wrong). When the follower is finishing the job right
    now, this waits for it, saying so."""
    try:
        with Folder.open(job_dir) as folder:
            fd = folder.open_own(WATCH, create=False)
    except (OSError, UsageError):
        fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                ui.info(f"job {job_dir.name} has ended and its follower is saving it; waiting for it to finish")
                fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)


@contextlib.contextmanager
def _finishing(job_dir: Path):
    """The watch lock, alone: taken once no watcher holds it (a dead one holds nothing)."""
    with Folder.open(job_dir) as folder:
        fd = folder.open_own(WATCH)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def follow(job_dir: Path, config, poll: float = POLL) -> None:
    """Look at the job's containers until they have all exited, then finish the job; return early
    when it is finished by someone else or its folder is gone (a UsageError)."""
    from fahr_core.contract import ContractRun
    from fahr_core.drivers.local.finish import _finish, _notify_once, _remove_left
    from fahr_core.drivers.local.records import CLEANUP, _container_job, _ended, _read_record

    run = ContractRun(_container_job(_read_record(job_dir), config))
    outcome = _await_end(run, job_dir, config, poll)
    with _finishing(job_dir):
        record = _read_record(job_dir)
        if _done(record) or outcome is None:
            if record.get("unfinished") == CLEANUP and _ended(record):  # its finisher killed before removing them
                _remove_left(run, job_dir, config)
            _notify_once(job_dir)  # its finisher killed before telling: told now (once: see _notify_once)
            return
        status, reason, kind = outcome.status, outcome.failure_reason, outcome.failure_kind
        if record.get("stop_requested"):  # its stop ended it, whatever its exit code: as `fahr stop` finishes it
            status, reason, kind = STOPPED, "", ""
        record = _finish(run, job_dir, config, status, reason, kind)
        _notify_once(job_dir)  # under the watch lock: a `fahr wait` starting now finds it told
    ui.status_change(job_dir.name, record["status"])  # in its log, as `fahr wait` says it


def _done(record: dict) -> bool:
    """Finished by a `fahr wait` or `fahr stop`; or a finish failed (a full disk) and said which
    `fahr wait` finishes the job once that is fixed: not tried again behind the user's back."""
    from fahr_core.drivers.local.records import _ended

    return _ended(record) or bool(record.get("upload_error"))


def _await_end(run, job_dir: Path, config, poll: float = POLL, patience: float = ENGINE_PATIENCE):
    """How the job's containers ended (``run.settled()``), looked at when one of them ends (or
    once a minute), ``poll`` seconds apart at least; None once someone else has finished the job. An engine that stops answering is waited for
    ``patience`` seconds (restarted, it answers again, and a job whose containers it killed is
    finished as ended); then the job is recorded as `fit` records one it lost sight of, and the
    EngineLost raised."""
    from fahr_core.contract import EngineLost
    from fahr_core.drivers.local.finish import _lost_sight
    from fahr_core.drivers.local.records import _read_record

    lost_since = None
    while not _done(_read_record(job_dir)):
        looked = time.time()
        try:
            outcome = run.settled()
            if outcome is None:
                run.until_a_host_ends(since=looked, seconds=LOOK_AT_LEAST_EVERY)
        except EngineLost as exc:
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since < patience:
                time.sleep(poll)
                with contextlib.suppress(Exception):
                    run.reconnect()  # a pooled connection to an engine restarted is dead
                continue
            problem = _lost_sight(job_dir.name, job_dir, config, exc, "following")
            raise (problem or exc) from exc
        except Exception as exc:  # a bug: the record says so, with the command that reconciles the job
            _lost_sight(job_dir.name, job_dir, config, exc, "following")
            raise
        lost_since = None
        if outcome is not None:
            return outcome
        time.sleep(max(0.0, poll - (time.time() - looked)))  # an engine whose clock is ahead would answer at once
    return None


class _Log(io.TextIOBase):
    """The follower's output (what fahr says while finishing the job, a traceback), appended to
    its log a write at a time, the file open only meanwhile: a file held open for writing for
    the job's whole life would keep its disk from being remounted read-only."""

    def __init__(self, job_dir: Path):
        self.job_dir = job_dir

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, UsageError):  # the job's folder gone, or a link: nowhere to say it
            with Folder.open(self.job_dir) as folder:
                fd = folder.open_own(LOG, append=True)
                try:
                    os.write(fd, text.encode("utf-8", "replace"))
                finally:
                    os.close(fd)
        return len(text)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        job_dir, stop_timeout = Path(args[0]), int(args[1])
    except (IndexError, ValueError):
        print("usage: python -m fahr_core.drivers.local.follower JOB_DIR STOP_TIMEOUT", file=sys.stderr)
        return 2
    sys.stdout = sys.stderr = _Log(job_dir)
    config = {"output_path": str(job_dir.parent), "stop_timeout": stop_timeout}
    try:
        follow(job_dir, config)
    except FahrError as exc:
        print(f"fahr follower of {job_dir.name}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
