"""The model comes back exactly as the job left it: a job writes a tree with every kind of entry
that packing can get wrong, and a manifest of it computed inside the container; the tree that
`fahr fit --fetch` gives, and the trees that the system's plain `tar xzf` gives of model.tar.gz
and output.tar.gz, must equal that manifest. On the local driver and on the sagemaker driver
against the emulated AWS (whose emulator packs with the same code).
"""

from __future__ import annotations

import inspect
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from aws_emulator.fixtures import BUCKET, job_name_of, sagemaker_args, write_model
from aws_emulator.fixtures import run_fahr as run_fahr_against
from fahr_core.testing import build_tree, tree_manifest as manifest

pytestmark = pytest.mark.docker


TRAIN = "\n".join([
    inspect.getsource(build_tree),
    inspect.getsource(manifest),  # the suite's tree_manifest: the job calls it by that name
    textwrap.dedent("""
        import json, os
        manifest = tree_manifest
        build_tree("/opt/ml/model", "model")
        build_tree("/opt/ml/output/data/tree", "output")
        found = {"model": manifest("/opt/ml/model"), "output": manifest("/opt/ml/output/data/tree")}
        with open("/opt/ml/output/data/manifest.json", "w") as handle:
            json.dump(found, handle)
        print("tree written", flush=True)
    """),
])


def check_expected(expected: dict) -> None:
    """The manifest the job computed describes the tree it was meant to (or nothing is tested)."""
    entries = expected["entries"]
    assert "modèle-poids.json" in entries
    assert max(map(len, entries)) > 255
    assert any(len(part) == 200 for name in entries for part in name.split("/"))
    far = next(n for n in entries if n.endswith("/far.bin"))
    assert expected["hardlinks"] == sorted([["head.bin", "tail.bin"], sorted(["shards/part-0.bin", far])])
    assert entries["latest.json"] == {"type": "symlink", "target": "modèle-poids.json"}
    assert entries["shards/deep-link"] == {"type": "symlink", "target": "../deep"}
    assert entries["empty/inner-empty"]["type"] == "dir"
    assert entries["bin/run.sh"]["mode"] == "0o755" and entries["private.bin"]["mode"] == "0o600"
    assert entries["zero.bin"]["size"] == 0
    digests = [e["sha256"] for e in entries.values() if e["type"] == "file" and e["size"]]
    assert len(set(digests)) == len(digests) - 2  # distinct contents, but for the hard link pairs


def plain_untar(archive: Path, into: Path) -> Path:
    into.mkdir()
    proc = subprocess.run(["tar", "xzf", str(archive), "-C", str(into)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return into


def check_round_trip(fetched: Path, model_tgz: Path, output_tgz: Path, tmp_path: Path) -> None:
    from_output = plain_untar(output_tgz, tmp_path / "plain-output")
    expected = json.loads((from_output / "manifest.json").read_text())
    check_expected(expected["model"])
    check_expected(expected["output"])
    assert sorted(p.name for p in from_output.iterdir()) == ["manifest.json", "tree"]
    assert manifest(from_output / "tree") == expected["output"]
    assert manifest(fetched) == expected["model"]  # fahr fetch
    assert manifest(plain_untar(model_tgz, tmp_path / "plain-model")) == expected["model"]  # plain tar


def test_local_round_trip_keeps_the_tree_exactly(docker_engine, fahr, jobs_dir, tmp_path):
    script = write_model(tmp_path, "packtree", TRAIN)
    fetched = tmp_path / "fetched"
    proc = fahr("fit", script, "--fetch", fetched, check=0)
    assert "tree written" in proc.stdout
    assert "warning" not in proc.stderr
    [job] = [p.parent.name for p in jobs_dir.glob("*/job.json")]
    output = jobs_dir / job / "output"
    check_round_trip(fetched, output / "model.tar.gz", output / "output.tar.gz", tmp_path)


def test_sagemaker_round_trip_keeps_the_tree_exactly(stack, tmp_path):
    script = write_model(tmp_path, "packtree", TRAIN)
    fetched = tmp_path / "fetched"
    result = run_fahr_against(stack, "fit", str(script), *sagemaker_args("packtree"), "--fetch", str(fetched),
                              cwd=tmp_path)
    assert result.code == 0, result.output
    assert "tree written" in result.stdout
    job = job_name_of(result)
    s3 = stack.client("s3")
    for name in ("model.tar.gz", "output.tar.gz"):
        s3.download_file(BUCKET, f"packtree/{job}/output/{name}", str(tmp_path / name))
    check_round_trip(fetched, tmp_path / "model.tar.gz", tmp_path / "output.tar.gz", tmp_path)
