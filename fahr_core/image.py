"""The training image: the Dockerfile fahr writes for a bare script, and the default build.

The generated Dockerfile keeps the SageMaker contract (sagemaker-contract.md): ``docker run IMAGE
train`` trains; the entrypoint is exec-form so the training process is PID 1 and receives
SIGTERM; dependencies sit in a layer before the code so that editing the code reinstalls nothing.

A notebook (``train.ipynb``) is executed headless with papermill by
:mod:`fahr_core.notebook_runner`, whose source is the entrypoint's program.

The built-in templates of ``fahr init`` write their Dockerfile and .dockerignore with
:func:`dockerfile_text` and :data:`DOCKERIGNORE` too: one source for both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import IO

from fahr_core import __version__, ui
from fahr_core.errors import BuildError, EnvironmentProblem, UsageError
from fahr_core.jobs import BuildContext, ImageRef

SUPPORTED_SUFFIXES = (".py", ".ipynb")

#: Installed in notebook images, in their own layer (cached across projects).
NOTEBOOK_REQUIREMENTS = ("papermill>=2.6,<3", "ipykernel>=6.29,<8")

# Never sent to the engine, whatever .dockerignore says: no secret is baked into an image.
ALWAYS_EXCLUDED = (
    ".git", ".env", ".env.*", "**/.env", "**/.env.*", ".aws", "**/.aws", ".ssh", "**/.ssh",
    "*.pem", "**/*.pem", "*.key", "**/*.key", "id_rsa*", "**/id_rsa*", "id_ed25519*",
    "**/id_ed25519*", ".netrc", "**/.netrc", ".pypirc", ".docker/config.json",
)

DOCKERIGNORE = """\
# Written by fahr: what stays out of the training image's build context.
# fahr also always leaves out .git, .env files, .aws, .ssh and key files.
.git
.gitignore
.venv
venv
.env
.env.*
.aws
.ssh
*.pem
*.key
id_rsa*
.netrc
**/__pycache__
**/*.pyc
.pytest_cache
.mypy_cache
.ruff_cache
.ipynb_checkpoints
checkpoints
.fahr
"""

# Runs the script as __main__ with argv as if started as `python train.py`; the trailing
# `train` that SageMaker passes is dropped. SIGTERM becomes SystemExit so `finally` blocks and
# atexit handlers run on stop (a script may install its own handler to checkpoint).
_LAUNCHER = (
    "import runpy,signal,sys;s=sys.argv[1];sys.argv=[s];"
    "signal.signal(signal.SIGTERM,lambda n,f:sys.exit(128+n));"
    "runpy.run_path(s,run_name='__main__')"
)


def _notebook_runner_source() -> str:
    from importlib import resources

    return resources.files("fahr_core").joinpath("notebook_runner.py").read_text(encoding="utf-8")


def dockerfile_text(script_name: str, base_image: str, has_requirements: bool) -> str:
    """The Dockerfile fahr generates for a training script or notebook (also the templates')."""
    notebook = script_name.endswith(".ipynb")
    runner = ""
    if notebook:
        pins = " ".join(f'"{r}"' for r in NOTEBOOK_REQUIREMENTS)
        runner = (
            "# The notebook runner: papermill executes the notebook headless on an IPython kernel.\n"
            f"RUN pip install {pins}\n"
        )
    deps = (
        "# Dependencies first, in their own layer: editing the code does not reinstall them.\n"
        "COPY requirements.txt ./\n"
        "RUN pip install -r requirements.txt\n"
        if has_requirements
        else "# Add a requirements.txt beside the script to install dependencies here.\n"
    )
    if notebook:
        entry = json.dumps(["python", "-c", _notebook_runner_source(), script_name])
        entry_comment = (
            "# Exec form: the runner is PID 1 and receives SIGTERM on stop. The program is\n"
            "# fahr_core/notebook_runner.py: it types the hyperparameters like the defaults of the\n"
            "# notebook's `parameters` cell, runs it with papermill, saves the executed notebook to\n"
            "# /opt/ml/output/data/ and turns a failing cell's error into /opt/ml/output/failure.\n"
        )
    else:
        entry = json.dumps(["python", "-c", _LAUNCHER, script_name])
        entry_comment = "# Exec form: the training process is PID 1 and receives SIGTERM on stop.\n"
    return (
        f"{GENERATED_MARK} {__version__} for {script_name}. Edit freely: fahr never overwrites\n"
        "# it without --regenerate-dockerfile. `docker run IMAGE train` trains (the SageMaker contract).\n"
        f"FROM {base_image}\n"
        "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 \\\n"
        "    PIP_DISABLE_PIP_VERSION_CHECK=1\n"
        "WORKDIR /opt/program\n"
        f"{runner}"
        f"{deps}"
        "COPY . .\n"
        f"{entry_comment}"
        f"ENTRYPOINT {entry}\n"
        'CMD ["train"]\n'
    )


def check_artifact(path: Path) -> Path:
    """The training artifact, absolute, or a :class:`UsageError` saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"training artifact {str(path)!r} does not exist; pass the path of a train.py")
    if not path.is_file():
        raise UsageError(f"training artifact {str(path)!r} is not a file; pass the path of a train.py")
    if path.suffix not in SUPPORTED_SUFFIXES:
        raise UsageError(
            f"{path.name}: a training artifact must be a Python script (.py) or a notebook (.ipynb); "
            f"got {path.suffix or 'no suffix'!r}"
        )
    if path.suffix == ".ipynb":
        _check_notebook(path)
    return path.resolve()


def _check_notebook(path: Path) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path.name} is not a notebook: it is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise UsageError(f"{path.name} is not a Jupyter notebook (no 'cells' list)")
    if data.get("nbformat", 4) < 4:
        raise UsageError(f"{path.name} is nbformat {data.get('nbformat')}; save it as nbformat 4")


GENERATED_MARK = "# Written by fahr"


def prepare_context(artifact: Path, model_tag: str, base_image: str, overwrite: bool,
                    base_image_set: bool = False) -> BuildContext:
    """Write the Dockerfile (and a .dockerignore) when the artifact's folder has none.

    An existing Dockerfile is the user's: it is used as it is. With ``overwrite`` it is
    regenerated, and one that fahr did not write is first kept as ``Dockerfile.bak``.
    ``base_image_set``: the user chose a base image for this run (warn when the Dockerfile in
    use starts from another).
    """
    folder = artifact.parent
    dockerfile = folder / "Dockerfile"
    ignore = folder / ".dockerignore"
    if dockerfile.exists() and not overwrite:
        if base_image_set and f"FROM {base_image}\n" not in dockerfile.read_text(encoding="utf-8", errors="replace"):
            ui.warn(f"config base_image={base_image} is not used: {dockerfile} has its own FROM; "
                    "pass --regenerate-dockerfile to regenerate it")
        return BuildContext(artifact=artifact, context_dir=folder, dockerfile=dockerfile, model_tag=model_tag)
    written = [dockerfile.name]
    if dockerfile.exists():
        current = dockerfile.read_text(encoding="utf-8", errors="replace")
        if not current.startswith(GENERATED_MARK):
            backup = folder / "Dockerfile.bak"
            _write_atomically(backup, current)
            ui.warn(f"your Dockerfile is kept as {backup}")
    _write_atomically(dockerfile, dockerfile_text(artifact.name, base_image, (folder / "requirements.txt").is_file()))
    if not ignore.exists():
        _write_atomically(ignore, DOCKERIGNORE)
        written.append(ignore.name)
    ui.info(f"wrote {' and '.join(written)} in {folder} (edit freely; fahr keeps your changes)")
    return BuildContext(artifact=artifact, context_dir=folder, dockerfile=dockerfile, model_tag=model_tag)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.fahr-tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _ignore_patterns(context_dir: Path) -> list[str]:
    patterns = []
    ignore = context_dir / ".dockerignore"
    if ignore.is_file():
        for line in ignore.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line)
    # Last, because the last matching pattern wins: a `!.env` in .dockerignore cannot undo them.
    return patterns + list(ALWAYS_EXCLUDED)


def context_tar(context: BuildContext) -> IO[bytes]:
    """The build context as a tar stream, without what .dockerignore and ALWAYS_EXCLUDED name."""
    from docker.utils import build as docker_build

    patterns = [p for p in _ignore_patterns(context.context_dir) if p not in ("Dockerfile", ".dockerignore")]
    return docker_build.tar(
        str(context.context_dir), exclude=patterns, dockerfile=(context.dockerfile.name, None), gzip=False
    )


_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")
# Pulling FROM failed for want of a registry: an environment problem, not a Dockerfile error.
_UNREACHABLE = re.compile(
    r"dial tcp|no such host|connection refused|i/o timeout|TLS handshake|server misbehaving|"
    r"network is unreachable|Client.Timeout"
)


def build(context: BuildContext) -> ImageRef:
    """Build ``context`` on the user's engine with live progress; tag it ``MODEL_TAG:latest``."""
    from fahr_core import engine

    api = engine.client().api
    reference = f"{context.model_tag}:latest"
    previous = _image_id(api, reference)
    step = ""
    steps = cached = 0
    image_id = ""
    ui.info(f"building image {reference} from {context.dockerfile}")
    try:
        stream = api.build(
            fileobj=context_tar(context), custom_context=True, dockerfile=context.dockerfile.name,
            tag=reference, rm=True, forcerm=True, decode=True,
            labels={"fahr.model_tag": context.model_tag, "fahr.version": __version__},
        )
        for chunk in stream:
            if "error" in chunk or "errorDetail" in chunk:
                message = " ".join((chunk.get("error") or chunk["errorDetail"].get("message", "")).split())
                where = f"image build failed at {step or 'the start'}"
                if step.startswith("step 1/") and _UNREACHABLE.search(message):
                    raise EnvironmentProblem(
                        f"{where}: the base image cannot be pulled ({message}); build or load it "
                        "locally (scripts/ensure-base-image.sh does python:3.11-slim), or set config base_image"
                    )
                # The step's own output was streamed above: the error stays one line.
                raise BuildError(f"{where}: {message}")
            text = chunk.get("stream", "")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            for line in text.splitlines():
                if not line.strip():
                    continue
                match = _STEP.match(line)
                if match:
                    step = f"step {match.group(1)}/{match.group(2)} ({match.group(3)})"
                    steps += 1
                    ui.build_step(line)
                elif "Using cache" in line:
                    cached += 1
                else:
                    ui.build_output(line)
    except (BuildError, EnvironmentProblem):
        raise
    except Exception as exc:
        from docker import errors as docker_errors

        if isinstance(exc, docker_errors.APIError) and exc.status_code and exc.status_code < 500:
            raise BuildError(f"image build refused by the engine: {exc.explanation or exc}") from exc
        raise EnvironmentProblem(f"image build failed talking to the Docker engine: {exc}") from exc
    image_id = image_id or _image_id(api, reference)
    if not image_id:
        raise BuildError(f"image build of {reference} produced no image; see the output above")
    if steps and cached == steps - 1:  # FROM is never "cached"
        ui.info(f"image {reference} is up to date (every step cached)")
    if previous and previous != image_id:
        _remove_quietly(api, previous)  # the image this build replaced, unless a job still uses it
    return ImageRef(name=context.model_tag, tag="latest", image_id=image_id)


def _image_id(api, reference: str) -> str:
    try:
        return api.inspect_image(reference)["Id"]
    except Exception:
        return ""


def _remove_quietly(api, image_id: str) -> None:
    try:
        api.remove_image(image_id)
    except Exception:
        pass  # still used (a running job, another tag): the engine keeps it, and so do we
