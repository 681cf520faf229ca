"""A tiny model with no dependencies: least-squares fit of y = a*x + b on generated data.

Works both ways: `python train.py` writes ./model/model.json; inside a fahr job
(FAHR_EXECUTION_ENVIRONMENT is set, whatever the driver) it writes /opt/ml/model/model.json,
the folder SageMaker and fahr's local driver pack into model.tar.gz.
"""

import json
import os
import random
import sys
from pathlib import Path

IN_JOB = bool(os.environ.get("FAHR_EXECUTION_ENVIRONMENT"))
OPT_ML = Path("/opt/ml")
MODEL_DIR = OPT_ML / "model" if IN_JOB else Path("model")


def hyperparameters():
    defaults = {"slope": 3.0, "intercept": 1.0, "points": 200, "seed": 0}
    path = OPT_ML / "input/config/hyperparameters.json"
    given = json.loads(path.read_text()) if IN_JOB and path.exists() else {}
    # SageMaker hands every value over as a string: convert with the defaults' types.
    return {k: type(v)(given.get(k, v)) for k, v in defaults.items()}


def main():
    hp = hyperparameters()
    rng = random.Random(hp["seed"])
    xs = [rng.uniform(-10, 10) for _ in range(hp["points"])]
    ys = [hp["slope"] * x + hp["intercept"] + rng.gauss(0, 0.5) for x in xs]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    b = my - a * mx
    mse = sum((a * x + b - y) ** 2 for x, y in zip(xs, ys)) / n
    print(f"trained on {n} points: slope={a:.3f} intercept={b:.3f} mse={mse:.4f}")
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    (MODEL_DIR / "model.json").write_text(json.dumps({"slope": a, "intercept": b, "mse": mse}))
    print(f"model saved to {MODEL_DIR / 'model.json'}")


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:
        if IN_JOB:  # the first 1024 characters become the job's FailureReason
            (OPT_ML / "output").mkdir(parents=True, exist_ok=True)
            (OPT_ML / "output/failure").write_text(f"{type(exc).__name__}: {exc}")
        print(f"training failed: {exc}", file=sys.stderr)
        sys.exit(1)
