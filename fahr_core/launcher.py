"""fahr's launcher: the generated image's entrypoint, ``python /opt/fahr/launcher.py train.py``.

A file of the image (fahr_core.image.dockerfile_text copies it there from the build context), it
runs where fahr is not installed: standard library only, few imports (it adds to every job's start). It exports the
host variables (host_environment), turns SIGTERM into SystemExit(143) so that ``finally`` blocks
and atexit handlers run on stop, then runs the script in this process (PID 1) as ``__main__``
with ``sys.argv == [script]``, as ``python train.py`` would; SageMaker's ``train`` is dropped.
A notebook image's launcher is notebook_runner.py followed by this source.

Before the script runs, the launcher puts the job's secrets (``fahr fit --secret NAME``) into its
own environment, which the script inherits (job_secrets): on ``local``, files in SECRETS_DIR,
each removed once read; on ``sagemaker``, a job-scoped Secrets Manager secret named by
SECRETS_ARN_ENV, read with the job's role through a SigV4-signed GetSecretValue of its own (the
image may have no AWS SDK). A secret that cannot be read fails the job, saying why without the
value (README, "Secrets"; docs/contract.md).
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
# Where the local driver puts the job's secrets, a file per variable (fahr_core.contract), and the
# variable naming the Secrets Manager secret that holds them on SageMaker (fahr_sagemaker).
SECRETS_DIR = "/run/fahr/secrets"
SECRETS_ARN_ENV = "FAHR_SECRETS_ARN"
FAILURE_FILE = "/opt/ml/output/failure"
# torchrun's default port (torch/distributed/run.py: --master-port defaults to 29500; env://
# itself has no default); an already-set MASTER_PORT (--env MASTER_PORT=...) wins.
DEFAULT_MASTER_PORT = "29500"
# The variables host_environment sets, in its order: every one but MASTER_PORT comes from
# resourceconfig.json alone, so fahr refuses an --env of them (fahr_core.plan). The last seven are
# set in a job of several hosts only: torchrun's own names for its flags --nnodes, --node-rank,
# --master-addr and --master-port (PET_ + the flag's name), so that a plain
# `torchrun --nproc-per-node=N train.py` joins the hosts, and what torchrun gives each of its
# workers (and env:// init_process_group reads), for the script as one process per host. torchrun
# sets RANK, WORLD_SIZE and LOCAL_RANK anew for each worker it starts, over these (its agent
# updates a copy of its own environment with them), and reads none of them itself.
HOST_VARIABLES = ("FAHR_HOSTS", "FAHR_CURRENT_HOST", "FAHR_HOST_RANK", "FAHR_NUM_HOSTS",
                  "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NNODES",
                  "PET_NNODES", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT",
                  "RANK", "WORLD_SIZE", "LOCAL_RANK")


def host_environment(path=None, environ=None):
    """The multi-host variables, from ``resourceconfig.json``: ``{}`` without a usable one.

    Every value but ``MASTER_PORT`` comes from the file, whatever ``environ`` holds: the hosts
    must agree with each other and with the file. The file missing (the image run outside any
    SageMaker runner) sets nothing; a malformed one sets nothing and says why on stderr. A job of
    one host gets no torch variables (``PET_*``, ``RANK``, ...): there torchrun and the script see
    what they would see on a laptop (torchrun then picks a free port itself).
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
    rank, count, port = str(hosts.index(current)), str(len(hosts)), environ.get("MASTER_PORT") or DEFAULT_MASTER_PORT
    values = [",".join(hosts), current, rank, count, hosts[0], port, rank, count]
    if len(hosts) > 1:
        values += [count, rank, hosts[0], port, rank, count, "0"]
    return dict(zip(HOST_VARIABLES, values))


def _is_host_name(name):
    """A name the variables can carry: non-empty printable ASCII without commas (FAHR_HOSTS is
    comma-separated; a NUL or a lone surrogate could not be put in the environment at all)."""
    return (isinstance(name, str) and name != "" and name.isascii() and name.isprintable()
            and "," not in name and " " not in name)


# -- the job's secrets -----------------------------------------------------------------------------


class SecretsUnavailable(Exception):
    """The job's secrets cannot be read: the job fails, saying why (never with a value)."""


def job_secrets(environ=None, folder=None, urlopen=None, now=None):
    """The job's secrets, variable name -> value: the files of ``folder`` (each removed once
    read, then the folder: the script finds them in its environment only), and the Secrets
    Manager secret ``environ[SECRETS_ARN_ENV]`` names, a JSON object of them."""
    environ = os.environ if environ is None else environ
    folder = SECRETS_DIR if folder is None else folder
    secrets = {}
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        names = []
    except OSError as exc:
        raise SecretsUnavailable(f"cannot read the job's secrets in {folder} ({exc.strerror}); "
                                 "the image's user must be able to read it") from None
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as handle:
                secrets[name] = handle.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretsUnavailable(f"cannot read the job's secret {name} in {folder} "
                                     f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
        try:
            os.remove(path)
        except OSError:
            pass  # read-only for this user: the container, and the file with it, goes at the job's end
    if names:
        try:
            os.rmdir(folder)
        except OSError:
            pass
    arn = environ.get(SECRETS_ARN_ENV)
    if arn:
        secrets.update(secrets_manager_secrets(arn, environ, urlopen, now))
    return secrets


def secrets_manager_secrets(arn, environ, urlopen=None, now=None):
    """The JSON object of name -> value that the Secrets Manager secret ``arn`` holds, read with
    the container's credentials (the endpoint AWS_ENDPOINT_URL_SECRETS_MANAGER, else
    AWS_ENDPOINT_URL, else the region's, as the AWS SDKs choose it)."""
    import urllib.error
    import urllib.request

    parts = arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "secretsmanager" or not parts[3]:
        raise SecretsUnavailable(f"{SECRETS_ARN_ENV}={arn!r} is not the ARN of a Secrets Manager secret")
    region = parts[3]
    if urlopen is None:
        # Never through a proxy of the image's: the request carries the job's credentials.
        urlopen = urllib.request.build_opener(urllib.request.ProxyHandler({})).open
    endpoint = (environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER") or environ.get("AWS_ENDPOINT_URL")
                or f"https://secretsmanager.{region}.amazonaws.com")
    access_key, secret_key, token = aws_credentials(environ, urlopen)
    body = json.dumps({"SecretId": arn}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "secretsmanager.GetSecretValue"}
    url = endpoint.rstrip("/") + "/"
    headers = sigv4_headers("POST", url, headers, body, access_key, secret_key, token, region, "secretsmanager",
                            now)
    try:
        with urlopen(urllib.request.Request(url, data=body, headers=headers, method="POST"), timeout=30) as reply:
            answer = json.load(reply)
        values = json.loads(answer["SecretString"])
        if not (isinstance(values, dict) and all(isinstance(v, str) for v in values.values())):
            raise ValueError("not a JSON object of strings")
    except urllib.error.HTTPError as exc:
        try:
            problem = json.load(exc)
            problem = f"{problem.get('__type', '').split('#')[-1]}: {problem.get('message') or problem.get('Message')}"
        except Exception:
            problem = f"HTTP {exc.code}"
        raise SecretsUnavailable(f"cannot read the job's secrets ({arn}): {problem}; the job's role needs "
                                 "secretsmanager:GetSecretValue on it") from None
    except Exception as exc:
        raise SecretsUnavailable(f"cannot read the job's secrets ({arn}): {type(exc).__name__}: {exc}") from None
    return values


def aws_credentials(environ, urlopen):
    """(access key, secret key, session token) of the container: its credentials endpoint
    (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, as SageMaker gives a training container, or
    AWS_CONTAINER_CREDENTIALS_FULL_URI on loopback or https), else AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY."""
    import urllib.parse
    import urllib.request

    url = None
    if environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        url = "http://169.254.170.2" + environ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
    elif environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        url = environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "https" and parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SecretsUnavailable("AWS_CONTAINER_CREDENTIALS_FULL_URI must be https or on loopback "
                                     "(as the AWS SDKs require)")
    if url:
        headers = {}
        token = environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        if not token and environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"):
            try:
                with open(environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], encoding="utf-8") as handle:
                    token = handle.read().strip()
            except OSError as exc:
                raise SecretsUnavailable(f"cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE ({exc.strerror})") from None
        if token:
            headers["Authorization"] = token
        try:
            with urlopen(urllib.request.Request(url, headers=headers), timeout=10) as reply:
                answer = json.load(reply)
            return answer["AccessKeyId"], answer["SecretAccessKey"], answer.get("Token") or ""
        except Exception as exc:
            raise SecretsUnavailable(f"cannot get the job's AWS credentials from the container credentials "
                                     f"endpoint ({type(exc).__name__})") from None
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        return environ["AWS_ACCESS_KEY_ID"], environ["AWS_SECRET_ACCESS_KEY"], environ.get("AWS_SESSION_TOKEN", "")
    raise SecretsUnavailable("no AWS credentials in the container to read the job's secrets with")


def sigv4_headers(method, url, headers, body, access_key, secret_key, token, region, service, now=None):
    """``headers`` with the AWS Signature Version 4 ones added (X-Amz-Date, X-Amz-Security-Token,
    Authorization), every given header signed, as botocore's SigV4Auth signs a request."""
    import datetime
    import hashlib
    import hmac
    import urllib.parse

    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    parsed = urllib.parse.urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parsed.scheme)
    host = parsed.hostname if parsed.port in (None, default_port) else f"{parsed.hostname}:{parsed.port}"
    signed = dict(headers)
    signed["X-Amz-Date"] = amz_date
    if token:
        signed["X-Amz-Security-Token"] = token
    canonical = {name.lower(): " ".join(str(value).split()) for name, value in signed.items()}
    canonical["host"] = host
    names = sorted(canonical)
    query = "&".join(sorted(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                            for k, v in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)))
    request = "\n".join([
        method,
        urllib.parse.quote(parsed.path or "/", safe="/~"),
        query,
        "".join(f"{name}:{canonical[name]}\n" for name in names),
        ";".join(names),
        hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                               f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return signed


def _fail(message):
    """End the job before the script runs: ``message`` on stderr and as its failure reason."""
    try:
        print(message, file=sys.stderr, flush=True)
        with open(FAILURE_FILE, "w", encoding="utf-8") as handle:
            handle.write(message)
    except Exception:
        pass  # the exit code says it failed all the same
    sys.exit(1)


def _stop(signum, frame):
    sys.exit(128 + signum)


def main(artifact):
    """Run ``artifact`` (a script, or in a notebook image a notebook) as the job's process."""
    signal.signal(signal.SIGTERM, _stop)
    os.environ.update(host_environment())
    try:
        os.environ.update(job_secrets())
    except SecretsUnavailable as exc:
        _fail(f"fahr launcher: {exc}")
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
