"""Runs a training notebook headless inside the image: the notebook image's entrypoint.

A notebook image's program is this source followed by :mod:`fahr_core.launcher`'s, behind
``ENTRYPOINT ["python", "-c", <both sources>, "train.ipynb"]`` (see
:func:`fahr_core.image.dockerfile_text`): the launcher stops on SIGTERM and exports the host
variables as for a script, then calls :func:`run_notebook`. It runs where fahr is not installed,
so it imports only the standard library and papermill, and its source is embedded verbatim.

- hyperparameters (``/opt/ml/input/config/hyperparameters.json``, strings) are typed like the
  defaults of the notebook's ``parameters`` cell and injected by papermill;
- the executed notebook is saved to ``/opt/ml/output/data/`` (it comes back in output.tar.gz);
- a cell that raises ends the job with ``<Error>: <message>`` in ``/opt/ml/output/failure``;
- the kernel's own output (its start-up warnings, the ``KeyboardInterrupt`` it logs when papermill
  shuts it down) is held, and shown only when the run fails; the cells' output streams as it comes.
"""
import ast
import codecs
import contextlib
import json
import os
import sys
import tempfile

OPT_ML = "/opt/ml"
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_ANNOTATED = {"int": 0, "float": 0.0, "bool": False, "str": ""}


def typed_value(raw, default_source, annotation="None"):
    """``raw`` (a string) converted to the type of the parameter's default (or annotation)."""
    if annotation in _ANNOTATED:
        default = _ANNOTATED[annotation]
    else:
        try:
            default = ast.literal_eval(default_source)
        except (ValueError, SyntaxError):
            return raw  # the default is an expression: hand the string over as it is
    if isinstance(default, bool):
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise ValueError("expected true or false")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, str):
        return raw
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        if default is None:
            return raw
        raise ValueError(f"expected a Python literal {type(default).__name__}") from None
    if default is not None and type(value) is not type(default):
        raise ValueError(f"expected a {type(default).__name__}")
    return value


def typed_parameters(declared, given):
    """Hyperparameters as papermill injects them: typed like ``declared`` (inspect_notebook)."""
    params = {}
    for name, raw in given.items():
        spec = declared.get(name)
        if spec is None:
            params[name] = raw  # not in the parameters cell: injected as the string it is
            continue
        try:
            params[name] = typed_value(str(raw), spec["default"], spec.get("inferred_type_name", "None"))
        except ValueError as exc:
            raise ValueError(
                f"hyperparameter {name}={raw!r} does not fit the parameters cell's "
                f"{name} = {spec['default']} ({exc})"
            ) from None
    return params


def fail(reason):
    """Leave the FailureReason and end the job Failed."""
    os.makedirs(f"{OPT_ML}/output", exist_ok=True)
    with open(f"{OPT_ML}/output/failure", "w") as out:
        out.write(reason[:1024])
    print(reason, file=sys.stderr)
    sys.exit(1)


def run_notebook(notebook):
    """Execute ``notebook`` with the job's hyperparameters (called by the launcher's ``main``)."""
    import papermill

    config = f"{OPT_ML}/input/config/hyperparameters.json"
    given = {}
    if os.path.exists(config):
        with open(config) as handle:
            given = json.load(handle)
    try:
        params = typed_parameters(papermill.inspect_notebook(notebook), given)
    except ValueError as exc:
        fail(f"ValueError: {exc}")
    out_dir = f"{OPT_ML}/output/data"
    os.makedirs(out_dir, exist_ok=True)
    executed = os.path.join(out_dir, os.path.basename(notebook))
    print(f"executing {notebook} with parameters {params}; executed notebook: {executed}", flush=True)
    try:
        with kernel_output_held():
            papermill.execute_notebook(
                notebook, executed, parameters=params, kernel_name="python3", progress_bar=False,
                stdout_file=sys.stdout, stderr_file=sys.stderr, cwd=os.path.dirname(os.path.abspath(notebook)),
            )
    except papermill.PapermillExecutionError as exc:
        fail(f"{exc.ename}: {exc.evalue} (cell [{exc.exec_count}] of {os.path.basename(notebook)}; "
             "the executed notebook is in output.tar.gz)")


@contextlib.contextmanager
def kernel_output_held():
    """Hold what the kernel process writes itself, shown (on stderr) only if the block raises.

    The kernel inherits this process's file descriptors 1 and 2: for the block they are a
    temporary file, while ``sys.stdout`` and ``sys.stderr`` (this process's writes, and the cells'
    output that papermill passes on) keep going where they went.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    streams = sys.stdout, sys.stderr
    held = tempfile.TemporaryFile()
    try:
        sys.stdout = open(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
        sys.stderr = open(os.dup(saved[1]), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
        os.dup2(held.fileno(), 1)
        os.dup2(held.fileno(), 2)
        yield
    except BaseException:
        _restore(saved, streams)
        held.seek(0)
        # In pieces: a kernel may have said without end, and memory holds one piece at a time.
        decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")
        piece = held.read(65536)
        if piece:
            sys.stderr.write("the notebook's kernel said:\n")
        while piece:
            sys.stderr.write(decoder.decode(piece))
            piece = held.read(65536)
        sys.stderr.write(decoder.decode(b"", final=True))
        sys.stderr.flush()
        raise
    finally:
        _restore(saved, streams)
        held.close()
        for fd in saved:
            os.close(fd)


def _restore(saved, streams):
    if sys.stdout is not streams[0]:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            stream.close()
        sys.stdout, sys.stderr = streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
