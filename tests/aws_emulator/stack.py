"""The emulated AWS of fahr's SageMaker tests and demo: real processes on 127.0.0.1.

- a moto server: S3, ECR's API, IAM, STS, CloudWatch Logs (``AWS_ENDPOINT_URL``);
- a real registry (Debian's ``docker-registry``) with TLS on 127.0.0.1:443 under the host name
  moto's GetAuthorizationToken returns, with moto's token as the password of user ``AWS``
  (system parts set up by ``scripts/ensure-aws-emulation.sh``);
- the SageMaker emulator of this folder (``AWS_ENDPOINT_URL_SAGEMAKER``), which runs the jobs'
  containers on the local Docker engine.

``Stack`` starts and stops them; :meth:`Stack.env` is the environment a ``fahr`` process needs
(fake credentials, the endpoints, nothing from the user's own AWS configuration).

Command line: ``python stack.py run -- COMMAND…`` runs COMMAND with the stack up and that
environment set, then stops the stack (used by ``make demo-sagemaker``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ACCOUNT = "123456789012"
REGION = "us-east-1"
REGISTRY_HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
BUCKET = "fahr-emulated"
ROLE = "fahr-sagemaker-execution"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s:\n{log.read_text()[-3000:]}")


def _die_with_parent() -> None:
    """Run in the child before exec: get SIGTERM when the test process dies, however it dies."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Stack:
    """moto server + registry + SageMaker emulator, started on 127.0.0.1."""

    def __init__(self, workdir: Path | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="fahr-aws-emu-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.moto = self.registry = self.sagemaker = None
        self.moto_port = self.sagemaker_port = 0
        self.registry_log = self.workdir / "registry.log"

    # -- processes -----------------------------------------------------------------------------

    def start(self) -> "Stack":
        try:
            state = subprocess.run(["bash", str(REPO / "scripts/ensure-aws-emulation.sh")], check=True,
                                   capture_output=True, text=True).stdout.strip().splitlines()[-1]
            self.state = Path(state)
            self._start_moto()
            self.start_registry()
            self._start_sagemaker()
            self._seed()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_moto(self) -> None:
        self.moto_port = free_port()
        log = self.workdir / "moto.log"
        self.moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=self._base_env(),
            preexec_fn=_die_with_parent,
        )
        _wait_port(self.moto_port, self.moto, "moto server", log)

    def start_registry(self, htpasswd: Path | None = None) -> None:
        """The registry on 127.0.0.1:443 (TLS, htpasswd), storage in the work folder.

        ``htpasswd`` replaces the file holding moto's token password (to test a refused login).
        """
        try:
            with socket.create_connection(("127.0.0.1", 443), timeout=0.5):
                raise RuntimeError("127.0.0.1:443 is taken: another registry (an earlier run?) is listening")
        except OSError:
            pass
        config = self.workdir / "registry.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.workdir / "registry-data")},
                        "delete": {"enabled": True}},
            "http": {"addr": "127.0.0.1:443",
                     "tls": {"certificate": str(self.state / "cert.pem"), "key": str(self.state / "key.pem")}},
            "auth": {"htpasswd": {"realm": "fahr-emulated-ecr", "path": str(htpasswd or self.state / "htpasswd")}},
        }))
        self.registry = subprocess.Popen(["docker-registry", "serve", str(config)],
                                         stdout=open(self.registry_log, "a"), stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent)
        _wait_port(443, self.registry, "docker-registry", self.registry_log)

    def stop_registry(self) -> None:
        _stop(self.registry)
        self.registry = None

    def _start_sagemaker(self) -> None:
        self.sagemaker_port = free_port()
        log = self.workdir / "sagemaker.log"
        env = {**self.env(), "FAHR_EMU_STOP_TIMEOUT": os.environ.get("FAHR_EMU_STOP_TIMEOUT", "20"),
               "FAHR_EMU_THROTTLE_EVERY": os.environ.get("FAHR_EMU_THROTTLE_EVERY", "4"),
               # long enough that a job on a warm pool, which skips it, is told apart by the records
               "FAHR_EMU_PROVISION_DELAY": os.environ.get("FAHR_EMU_PROVISION_DELAY", "0")}
        env.pop("AWS_ENDPOINT_URL_SAGEMAKER")
        env.pop("AWS_ENDPOINT_URL_PRICING")
        self.sagemaker = subprocess.Popen(
            [sys.executable, str(HERE / "sagemaker_server.py"), "--port", str(self.sagemaker_port)],
            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
            preexec_fn=_die_with_parent,
        )
        _wait_port(self.sagemaker_port, self.sagemaker, "SageMaker emulator", log)

    @contextlib.contextmanager
    def checking_moto(self, free_actions: int = 0):
        """A second moto server that checks credentials (moto's INITIAL_NO_AUTH_ACTION_COUNT):
        unknown access keys get InvalidClientTokenId, as expired or revoked keys do on AWS, and a
        user's calls its IAM policies do not allow get AccessDenied. Its first ``free_actions``
        calls are not checked (to create that user). Yields its endpoint URL."""
        port = free_port()
        log = self.workdir / "moto-checking.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=open(log, "w"), stderr=subprocess.STDOUT,
            env={**self._base_env(), "INITIAL_NO_AUTH_ACTION_COUNT": str(free_actions)}, preexec_fn=_die_with_parent,
        )
        try:
            _wait_port(port, proc, "moto server (checking credentials)", log)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(proc)

    def stop(self) -> None:
        for proc in (self.sagemaker, self.registry, self.moto):
            _stop(proc)
        self._untag_registry_images()

    @staticmethod
    def _untag_registry_images() -> None:
        """Drop the emulated registry's names from the engine's images (pushes tag the images
        they push, the emulator's pulls add digests): the images stay, nothing of the stack does."""
        try:
            import docker

            client = docker.from_env()
            for image in client.images.list():
                for ref in image.tags + image.attrs.get("RepoDigests", []):
                    if ref.startswith(REGISTRY_HOST + "/"):
                        try:
                            client.images.remove(ref, noprune=True)
                        except Exception:
                            pass  # still used by a container, or already gone with a sibling name
        except Exception:
            pass  # best effort: an engine gone away has nothing to tidy

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- environment ---------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        """The caller's environment without any AWS setting: nothing reaches a real account."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FAHR_"))}
        env.update(
            AWS_CONFIG_FILE=str(self.workdir / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.workdir / "no-aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
            NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
        )
        return env

    def env(self, credentials: bool = True) -> dict[str, str]:
        """The environment of a ``fahr`` process against this stack."""
        env = self._base_env()
        env.update(
            AWS_DEFAULT_REGION=REGION,
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.moto_port}",
            AWS_ENDPOINT_URL_SAGEMAKER=f"http://127.0.0.1:{self.sagemaker_port}",
            # The Price List API (GetProducts) is answered by the same emulator.
            AWS_ENDPOINT_URL_PRICING=f"http://127.0.0.1:{self.sagemaker_port}",
        )
        if credentials:
            env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        return env

    def client(self, service: str):
        import boto3

        env = self.env()
        endpoint = env.get(f"AWS_ENDPOINT_URL_{service.upper()}", env["AWS_ENDPOINT_URL"])
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def _seed(self) -> None:
        """A bucket for the artifacts and an execution role, as an account would have them."""
        self.client("s3").create_bucket(Bucket=BUCKET)
        self.client("iam").create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(TRUST))

    def _emulator_state(self) -> dict:
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
        with opener.open(f"http://127.0.0.1:{self.sagemaker_port}/", timeout=5) as reply:
            return json.load(reply)

    def throttled(self) -> int:
        """How many DescribeTrainingJob calls the SageMaker emulator refused with throttling."""
        return self._emulator_state()["throttled"]

    def get_products_calls(self) -> int:
        """How many GetProducts calls (the Price List API) the emulator answered."""
        return self._emulator_state()["get_products_calls"]

    def describe_calls(self) -> dict[str, int]:
        """How many DescribeTrainingJob calls the SageMaker emulator got, by job name."""
        return self._emulator_state()["describe_calls"]

    def warm_from(self) -> dict[str, str]:
        """Job name -> the job whose warm pool the SageMaker emulator placed it on ('' for none)."""
        return self._emulator_state()["warm_from"]

    def manifest_puts(self) -> int:
        """How many manifests the registry has accepted (a push ends with one)."""
        if not self.registry_log.exists():
            return 0
        return sum(1 for line in self.registry_log.read_text(errors="replace").splitlines()
                   if '"PUT /v2/' in line and "/manifests/" in line)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "run" or "--" not in argv:
        print("usage: stack.py run -- COMMAND...", file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1:]
    workdir = Path(tempfile.mkdtemp(prefix="fahr-aws-emu-"))
    with Stack(workdir) as stack:
        env = {**stack.env(), "FAHR_EMU_BUCKET": BUCKET, "FAHR_EMU_ROLE": ROLE,
               "FAHR_EMU_WORKDIR": str(workdir)}
        code = subprocess.call(command, env=env)
    shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
