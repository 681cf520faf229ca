"""fahr's performance targets, measured (results go to benchmarks/RESULTS.md by hand).

1. Start-up: `fahr --help` against the floor of any typer CLI, `python -c "import typer"`, both
   run N times in the same session, interleaved; reported as medians and their ratio
   (target: <= 1.5). Also checks that `--help` and `drivers` import no Docker SDK, no boto3 and
   no driver module.
2. Unchanged re-run: a `fahr fit` of an unchanged model, after a first one, must hit the build
   cache and add at most 1.5 s over the container's own run time, measured as
   `docker run --rm IMAGE train` of the same image.

Usage: python benchmarks/run.py [--runs N]   (needs a Docker engine for part 2)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FAHR = BIN / "fahr"


def timed(cmd, env=None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def startup(runs: int) -> dict:
    floor, help_, drivers = [], [], []
    for _ in range(2):  # warm the page cache
        timed([sys.executable, "-c", "import typer"])
        timed([str(FAHR), "--help"])
    for _ in range(runs):
        floor.append(timed([sys.executable, "-c", "import typer"]))
        help_.append(timed([str(FAHR), "--help"]))
        drivers.append(timed([str(FAHR), "drivers"]))
    probe = (
        "import sys, json\n"
        "sys.argv = ['fahr'] + sys.argv[1:]\n"
        "from fahr_core.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('docker','boto3','botocore','fahr_sagemaker','cookiecutter') or m == 'fahr_core.drivers.local')))\n"
    )
    heavy = {}
    for args in (["--help"], ["drivers"]):
        out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True).stdout
        heavy[" ".join(args)] = json.loads(out.strip().splitlines()[-1])
    m_floor, m_help, m_drivers = (statistics.median(x) for x in (floor, help_, drivers))
    return {
        "runs": runs,
        "import_typer_s": round(m_floor, 3),
        "fahr_help_s": round(m_help, 3),
        "fahr_drivers_s": round(m_drivers, 3),
        "help_ratio": round(m_help / m_floor, 2),
        "heavy_modules_imported": heavy,
    }


def rerun(runs: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="fahr-bench-"))
    try:
        model = work / "bench"
        model.mkdir()
        shutil.copy(ROOT / "examples" / "hello" / "train.py", model / "train.py")
        env = {**os.environ, "FAHR_LOCAL_OUTPUT_PATH": str(work / "jobs"), "NO_COLOR": "1"}
        subprocess.run([str(FAHR), "fit", str(model / "train.py")], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        image = "bench/train:latest"
        fits, containers, cached = [], [], 0
        for _ in range(runs):
            containers.append(timed(["docker", "run", "--rm", "-e", "FAHR_EXECUTION_ENVIRONMENT=bench", image, "train"]))
            start = time.perf_counter()
            proc = subprocess.run([str(FAHR), "fit", str(model / "train.py")], env=env, capture_output=True, text=True)
            fits.append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            cached += "up to date (every step cached)" in proc.stderr
        m_fit, m_container = statistics.median(fits), statistics.median(containers)
        return {
            "runs": runs,
            "all_cache_hits": cached == runs,
            "fahr_fit_s": round(m_fit, 3),
            "docker_run_s": round(m_container, 3),
            "overhead_s": round(m_fit - m_container, 3),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--skip-docker", action="store_true")
    args = parser.parse_args()
    results = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "startup": startup(args.runs)}
    if not args.skip_docker:
        results["unchanged_rerun"] = rerun(max(3, args.runs // 3))
    print(json.dumps(results, indent=2))
    ok = results["startup"]["help_ratio"] <= 1.5 and not any(results["startup"]["heavy_modules_imported"].values())
    if "unchanged_rerun" in results:
        r = results["unchanged_rerun"]
        ok = ok and r["all_cache_hits"] and r["overhead_s"] <= 1.5
    print("targets met" if ok else "TARGETS MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
