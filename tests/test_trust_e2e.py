"""End to end, on both drivers: a training job that leaves a hostile model cannot make fetch write
outside the folder the user named.

The job itself writes, inside /opt/ml/model, the shape of the CVE-2025-4517 archive: nested
247-character folders reached through one-letter symlinks, then ``escape``, a symlink whose path
looks inside the model but whose target climbs out through the chain. The driver packs that tree
faithfully (it is what the job left); ``fahr fetch`` must refuse it: exit 2, one line naming the
member, no target folder made, nothing written beside it.
"""

from __future__ import annotations

import json

import pytest

from aws_emulator.fixtures import run_fahr as run_fahr_aws
from aws_emulator.fixtures import BUCKET, job_name_of, sagemaker_args, write_model

pytestmark = pytest.mark.docker

HOSTILE = '''\
import json, os
from pathlib import Path
model = Path("/opt/ml/model")
model.mkdir(parents=True, exist_ok=True)
(model / "model.json").write_text(json.dumps({"ok": True}))
os.chdir(model)
letters = "abc"
for letter in letters:
    long = letter * 247
    os.mkdir(long)            # a 247-character folder ...
    os.symlink(long, letter)  # ... reached through a one-letter link
    os.chdir(long)
# At the bottom of the chain, a link back up to the model folder itself: harmless on its own.
os.symlink("../" * len(letters), "l" * 254)
os.chdir(model)
# Lexically a/b/c/lll/../../victim is a/victim, inside the model; through the links it is two
# folders above the model: outside.
os.symlink("/".join(letters) + "/" + "l" * 254 + "/../../victim", "escape")
print("hostile model written", flush=True)
'''


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("fahr error:")]


def _assert_refused(code: int, stderr: str, target, around) -> None:
    assert code == 2, stderr
    errors = _error_lines(stderr)
    assert len(errors) == 1, stderr
    assert "escape" in errors[0], errors[0]
    assert "Traceback" not in stderr
    assert not target.exists()
    # Nothing but what the test put there is beside the target: no staging folder left over.
    assert sorted(p.name for p in around.iterdir()) == ["victim"]
    assert (around / "victim").read_text() == "untouched"


def test_local_job_with_escaping_links_is_not_fetched(docker_engine, fahr, jobs_dir, tmp_path):
    project = tmp_path / "hostile"
    project.mkdir()
    (project / "train.py").write_text(HOSTILE)
    fahr("fit", project / "train.py", check=0)
    [record] = [json.loads(p.read_text()) for p in jobs_dir.glob("*/job.json")]
    around = tmp_path / "fetched"
    around.mkdir()
    (around / "victim").write_text("untouched")
    target = around / "model"
    proc = fahr("fetch", target, "hostile/train", jobs_dir, "--job", record["job_name"])
    _assert_refused(proc.returncode, proc.stderr, target, around)


def test_sagemaker_job_with_escaping_links_is_not_fetched(stack, tmp_path):
    model = write_model(tmp_path, "hostile", HOSTILE)
    fitted = run_fahr_aws(stack, "fit", str(model), *sagemaker_args("hostile"), cwd=tmp_path)
    assert fitted.code == 0, fitted.output
    job = job_name_of(fitted)
    around = tmp_path / "fetched"
    around.mkdir()
    (around / "victim").write_text("untouched")
    target = around / "model"
    fetched = run_fahr_aws(stack, "fetch", str(target), "hostile/train", f"s3://{BUCKET}/hostile",
                           "--train-driver", "sagemaker", "--job", job, cwd=tmp_path)
    _assert_refused(fetched.code, fetched.stderr, target, around)
