"""{{ cookiecutter.project_name | replace('\\', '\\\\') | replace('"', '\\"') }}: {{ cookiecutter.description | replace('\\', '\\\\') | replace('"', '\\"') }}

Trains a linear classifier (scikit-learn's SGDClassifier) epoch by epoch on the handwritten
digits that ship with scikit-learn, and prints its accuracy on held-out digits: seconds on a CPU.

It works both ways:

- ``python train.py [epochs=30 alpha=0.001 ...]`` trains here and writes ``./model/``;
- inside a fahr job (``FAHR_EXECUTION_ENVIRONMENT`` is set, whatever the driver) it keeps the
  SageMaker container contract: hyperparameters from ``/opt/ml/input/config/hyperparameters.json``
  (strings, typed like DEFAULTS), the ``train`` channel from ``/opt/ml/input/data/train/``, the model
  to ``/opt/ml/model/`` (packed into model.tar.gz), the reason of a failure to
  ``/opt/ml/output/failure``, and a checkpoint to ``/opt/ml/checkpoints/`` when stopped (SIGTERM).
"""

import json
import os
import signal
import sys
import traceback
from pathlib import Path

IN_JOB = bool(os.environ.get("FAHR_EXECUTION_ENVIRONMENT"))
OPT_ML = Path("/opt/ml")
MODEL_DIR = OPT_ML / "model" if IN_JOB else Path("model")
CHECKPOINT_DIR = OPT_ML / "checkpoints" if IN_JOB else Path("checkpoints")
DATA_DIR = OPT_ML / "input" / "data" if IN_JOB else Path("data")
HYPERPARAMETERS = OPT_ML / "input" / "config" / "hyperparameters.json"

# The one input channel this script reads (--input train=DIR); without any, the bundled digits.
CHANNEL = "train"

# Hyperparameters and their defaults; a job hands every value over as a string.
DEFAULTS = {"epochs": 20, "alpha": 0.0001, "test_size": 0.25, "seed": 0}

_stop_requested = False


def typed(name, raw):
    """A hyperparameter's string value, converted to the type of its default."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown hyperparameter {name!r}; known: {', '.join(DEFAULTS)}")
    default = DEFAULTS[name]
    if isinstance(default, bool):
        return str(raw).strip().lower() in ("1", "true", "yes", "on")
    try:
        return type(default)(raw)
    except ValueError:
        raise ValueError(f"hyperparameter {name}={raw!r} is not a valid {type(default).__name__}") from None


def hyperparameters(argv):
    """DEFAULTS, overridden by the job's hyperparameters.json, or by KEY=VALUE arguments here."""
    given = {}
    if IN_JOB and HYPERPARAMETERS.exists():
        given = json.loads(HYPERPARAMETERS.read_text())
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ValueError(f"argument {arg!r}: expected KEY=VALUE, e.g. epochs=30")
        given[key] = value
    return {**DEFAULTS, **{k: typed(k, v) for k, v in given.items()}}


def load_data():
    """The ``train`` channel's CSV files (features..., label) when given, else (no channel at all)
    scikit-learn's digits. Any other channel, or a ``train`` channel without CSV files, is refused:
    a mistyped ``--input`` must fail the job, not train on the digits unnoticed."""
    import numpy as np
    from sklearn.datasets import load_digits

    channels = sorted(p.name for p in DATA_DIR.iterdir() if p.is_dir()) if DATA_DIR.is_dir() else []
    if not channels:
        digits = load_digits()
        return digits.data, digits.target, "scikit-learn's digits"
    if channels != [CHANNEL]:
        raise ValueError(f"got input channels {', '.join(map(repr, channels))}; this script reads only {CHANNEL!r} "
                         f"(CSV files: features, then the label): pass --input {CHANNEL}=DIR")
    files = sorted((DATA_DIR / CHANNEL).glob("*.csv"))
    if not files:
        raise ValueError(f"input channel {CHANNEL!r} holds no .csv file; this script reads its CSV files "
                         "(features, then the label)")
    rows = np.vstack([np.loadtxt(f, delimiter=",", ndmin=2) for f in files])
    return rows[:, :-1], rows[:, -1].astype(int), f"channel {CHANNEL!r} ({len(files)} CSV files)"


def _on_sigterm(signum, frame):
    global _stop_requested
    _stop_requested = True  # finish the current epoch, save a checkpoint, then stop


def train(hp):
    import joblib
    import numpy as np
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, source = load_data()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=hp["test_size"], random_state=hp["seed"], stratify=y)
    checkpoint = CHECKPOINT_DIR / "checkpoint.joblib"
    if checkpoint.exists():
        state = joblib.load(checkpoint)
        print(f"resuming from {checkpoint} at epoch {state['epoch']}", flush=True)
    else:
        state = {"epoch": 0, "scaler": StandardScaler().fit(X_train),
                 "model": SGDClassifier(loss="log_loss", alpha=hp["alpha"], random_state=hp["seed"])}
    scaler, model = state["scaler"], state["model"]
    X_train = scaler.transform(X_train)
    rng = np.random.default_rng(hp["seed"])
    print(f"training on {len(X_train)} samples of {source} for {hp['epochs']} epochs", flush=True)
    for epoch in range(state["epoch"], hp["epochs"]):
        if _stop_requested:
            CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
            joblib.dump({**state, "epoch": epoch}, checkpoint)
            print(f"stopped at epoch {epoch}; checkpoint saved to {checkpoint}", flush=True)
            sys.exit(128 + signal.SIGTERM)
        order = rng.permutation(len(X_train))
        model.partial_fit(X_train[order], y_train[order], classes=np.unique(y))
        # One line fahr reads as metrics, needing no definitions (`fahr jobs`, Job.metrics):
        # "fahr-metric NAME=VALUE ... step=N".
        loss = log_loss(y_train, model.predict_proba(X_train), labels=model.classes_)
        accuracy = float(model.score(scaler.transform(X_test), y_test))
        print(f"fahr-metric loss={loss:.4f} accuracy={accuracy:.4f} step={epoch}", flush=True)
    accuracy = float(model.score(scaler.transform(X_test), y_test))
    print(f"accuracy={accuracy:.4f} on {len(X_test)} held-out samples", flush=True)

    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    joblib.dump(Pipeline([("scale", scaler), ("classify", model)]), MODEL_DIR / "model.joblib")
    metrics = {"accuracy": accuracy, "data": source, "hyperparameters": hp,
               "types": {k: type(v).__name__ for k, v in hp.items()}}
    (MODEL_DIR / "metrics.json").write_text(json.dumps(metrics, indent=2))
    checkpoint.unlink(missing_ok=True)  # trained to the end: nothing to resume
    print(f"model saved to {MODEL_DIR / 'model.joblib'}", flush=True)


def main(argv):
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        train(hyperparameters(argv))
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if IN_JOB:  # its first 1024 characters become the job's FailureReason: the reason alone,
            # as fahr's failure line shows it; the traceback below goes to the job's log
            (OPT_ML / "output").mkdir(parents=True, exist_ok=True)
            (OPT_ML / "output" / "failure").write_text(reason[:1024])
        traceback.print_exc()
        print(f"training failed: {reason}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
