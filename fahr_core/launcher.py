"""fahr's launcher: the generated image's entrypoint, ``python /opt/fahr/launcher.py train.py``.

A file of the image (fahr_core.image.dockerfile_text copies it there from the build context), it
runs where fahr is not installed: standard library only, few imports (it adds to every job's start). It exports the
host variables (host_environment), turns SIGTERM into SystemExit(143) so that ``finally`` blocks
and atexit handlers run on stop, then runs the script in this process (PID 1) as ``__main__``
with ``sys.argv == [script]``, as ``python train.py`` would; SageMaker's ``train`` is dropped.
A notebook image's launcher is notebook_runner.py followed by this source.
"""
import json
import os
import signal
import sys

RESOURCE_CONFIG = "/opt/ml/input/config/resourceconfig.json"
# The files of this launcher's frames, the outermost of every traceback of the script: the launcher
# (fahr_core.image.LAUNCHER_PATH; "<string>" in the images of fahr 0.2, which ran it as `python -c`),
# and runpy, which runs the script. fahr leaves them out of a failed job's reason
# (fahr_core.report.without_launcher_frames).
OWN_FRAME_FILES = ("/opt/fahr/launcher.py", "<string>", "<frozen runpy>")
# torch.distributed's own default port; an already-set MASTER_PORT (--env MASTER_PORT=...) wins.
DEFAULT_MASTER_PORT = "29500"


def host_environment(path=None, environ=None):
    """The multi-host variables, from ``resourceconfig.json``: ``{}`` without a usable one.

    Every value but ``MASTER_PORT`` comes from the file, whatever ``environ`` holds: the hosts
    must agree with each other and with the file. The file missing (the image run outside any
    SageMaker runner) sets nothing; a malformed one sets nothing and says why on stderr.
    """
    path = RESOURCE_CONFIG if path is None else path
    environ = os.environ if environ is None else environ
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
        hosts, current = config["hosts"], config["current_host"]
        if not (isinstance(hosts, list) and hosts and all(_is_host_name(h) for h in hosts)):
            raise ValueError("'hosts' must be a list of host names (printable ASCII, no spaces or commas)")
        if len(set(hosts)) != len(hosts):
            raise ValueError("'hosts' names a host more than once")
        if not _is_host_name(current) or current not in hosts:
            raise ValueError("'current_host' must be one of 'hosts'")
    except FileNotFoundError:
        return {}
    except Exception as exc:  # any unusable file (even one nested too deep to parse): the script runs
        problem = f"{type(exc).__name__}: {exc}".encode("ascii", "backslashreplace").decode("ascii")
        problem = " ".join(problem.split())[:200]
        try:
            print(f"fahr launcher: {path} is unusable ({problem}); multi-host variables not set",
                  file=sys.stderr, flush=True)
        except Exception:
            pass  # no stderr to say it on: the script runs all the same
        return {}
    rank = str(hosts.index(current))
    return {
        "FAHR_HOSTS": ",".join(hosts),
        "FAHR_CURRENT_HOST": current,
        "FAHR_HOST_RANK": rank,
        "FAHR_NUM_HOSTS": str(len(hosts)),
        "MASTER_ADDR": hosts[0],
        "MASTER_PORT": environ.get("MASTER_PORT") or DEFAULT_MASTER_PORT,
        "NODE_RANK": rank,
        "NNODES": str(len(hosts)),
    }


def _is_host_name(name):
    """A name the variables can carry: non-empty printable ASCII without commas (FAHR_HOSTS is
    comma-separated; a NUL or a lone surrogate could not be put in the environment at all)."""
    return (isinstance(name, str) and name != "" and name.isascii() and name.isprintable()
            and "," not in name and " " not in name)


def _stop(signum, frame):
    sys.exit(128 + signum)


def main(artifact):
    """Run ``artifact`` (a script, or in a notebook image a notebook) as the job's process."""
    signal.signal(signal.SIGTERM, _stop)
    os.environ.update(host_environment())
    if artifact.endswith(".ipynb"):
        # Defined by notebook_runner.py, whose source precedes this one in a notebook image.
        globals()["run_notebook"](artifact)
        return
    import runpy

    sys.argv = [artifact]
    sys.path[0] = os.path.dirname(os.path.abspath(artifact))  # the script's folder, not the launcher's
    runpy.run_path(artifact, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1])
