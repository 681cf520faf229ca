"""Saying what goes into the image: one warning for a big build context (its size and biggest
folders, and how to keep them out), and one for pushing a big image to ECR.

The wording and thresholds are unit-tested; the context warning also through the real CLI on the
real engine (on a build and on a skipped build), the push warning on the emulated AWS.
"""

from __future__ import annotations

import os
import secrets
import stat

import pytest

from conftest import one_line_error, run_fahr
from fahr_core.errors import UsageError
from fahr_core import ui
from fahr_core.image import CONTEXT_WARN_ENV, context_size_warning, context_warn_bytes
from fahr_sagemaker.ecr import IMAGE_WARN_ENV, image_warn_bytes, large_image_warning

GiB, MiB = 1024**3, 1024**2


def st(size: int, mode: int = stat.S_IFREG | 0o644) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, 0, 0, size, 0, 0, 0))


def test_the_context_warning_names_the_biggest_folders_and_the_cure():
    stats = [("data", st(0, stat.S_IFDIR | 0o755)), ("data/a.bin", st(GiB // 2)), ("data/b/c.bin", st(GiB // 2)),
             ("notebooks/x.ipynb", st(120 * MiB)), ("train.py", st(2000)), ("model.pkl", st(80 * MiB))]
    line = context_size_warning(stats, 100 * MiB)
    assert line.startswith("the build context is 1.2 GiB (data/ 1.0 GiB, notebooks/ 120 MiB, model.pkl 80.0 MiB)")
    assert "--input CHANNEL=PATH" in line and "the line data/ in .dockerignore" in line
    assert CONTEXT_WARN_ENV in line and "\n" not in line
    # Small things are not listed: only what is at least a twentieth of the whole, the biggest always.
    line = context_size_warning([("big.bin", st(200 * MiB)), ("small.txt", st(MiB))], 100 * MiB)
    assert "(big.bin 200 MiB)" in line and "the line big.bin in" in line


def test_no_context_warning_at_or_below_the_threshold_or_when_off():
    stats = [("data/a.bin", st(100 * MiB))]
    assert context_size_warning(stats, 100 * MiB) is None
    assert context_size_warning(stats, 0) is None  # 0: never
    assert context_size_warning(stats + [("x", st(1))], 100 * MiB) is not None
    # Folders, links and pipes weigh nothing; only file contents are counted.
    assert context_size_warning([("d", st(10 * GiB, stat.S_IFDIR | 0o755))], 1) is None


def test_thresholds_from_the_environment():
    assert context_warn_bytes({}) == 100 * MiB
    assert context_warn_bytes({CONTEXT_WARN_ENV: "1M"}) == MiB
    assert context_warn_bytes({CONTEXT_WARN_ENV: "2GiB"}) == 2 * GiB
    assert context_warn_bytes({CONTEXT_WARN_ENV: "0"}) == 0
    assert image_warn_bytes({}) == 2 * GiB
    assert image_warn_bytes({IMAGE_WARN_ENV: "500m"}) == 500 * MiB
    for bad in ("lots", "-1", "1.5G", "1X"):
        with pytest.raises(UsageError, match=CONTEXT_WARN_ENV):
            context_warn_bytes({CONTEXT_WARN_ENV: bad})
        with pytest.raises(UsageError, match=IMAGE_WARN_ENV):
            image_warn_bytes({IMAGE_WARN_ENV: bad})


def test_the_push_warning():
    line = large_image_warning("big/train:latest", 3 * GiB, 2 * GiB)
    assert line.startswith("image big/train:latest is 3.0 GiB: every push of a changed layer that big")
    assert "ECR storage" in line and "--input" in line and IMAGE_WARN_ENV in line
    assert large_image_warning("big/train:latest", 2 * GiB, 2 * GiB) is None
    assert large_image_warning("big/train:latest", 3 * GiB, 0) is None
    assert ui.size(512) == "512 bytes" and ui.size(1536) == "1.5 KiB"


@pytest.mark.docker
def test_fit_warns_about_a_big_context_on_a_build_and_on_a_skip(tmp_path, docker_engine):
    folder = tmp_path / f"warn{secrets.token_hex(3)}"
    (folder / "data").mkdir(parents=True)
    (folder / "train.py").write_text("print('ok')\n")
    (folder / "data" / "big.bin").write_bytes(os.urandom(3 * MiB))
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs"),
           CONTEXT_WARN_ENV: "1M"}
    try:
        for skipped in (False, True):
            proc = run_fahr("fit", folder / "train.py", env=env, cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr
            assert ("not rebuilt" in proc.stderr) == skipped
            warnings = [l for l in proc.stderr.splitlines() if "the build context is" in l]
            assert len(warnings) == 1, proc.stderr
            assert warnings[0].startswith("fahr warning the build context is 3.0 MiB (data/ 3.0 MiB)")
            assert "the line data/ in .dockerignore" in warnings[0]
        quiet = run_fahr("fit", folder / "train.py", env={**env, CONTEXT_WARN_ENV: ""}, cwd=tmp_path)
        assert quiet.returncode == 0 and "the build context is" not in quiet.stderr, quiet.stderr
        bad = run_fahr("fit", folder / "train.py", env={**env, CONTEXT_WARN_ENV: "lots"}, cwd=tmp_path)
        assert f"{CONTEXT_WARN_ENV}='lots' is not a size" in one_line_error(bad, 2)
    finally:
        docker_engine.images.remove(f"{folder.name}/train:latest")


@pytest.mark.docker
def test_a_push_of_a_big_image_says_so(stack, tmp_path):
    """On the emulated AWS (run under flock /tmp/fahr-emulator.lock): the warning before a push,
    none when nothing is pushed."""
    from aws_emulator.fixtures import run_fahr as run_on_stack
    from aws_emulator.fixtures import sagemaker_args, write_model

    name = f"bigpush{secrets.token_hex(3)}"
    model = write_model(tmp_path, name, "import os\nos.makedirs('/opt/ml/model', exist_ok=True)\n")
    env = {**stack.env(), IMAGE_WARN_ENV: "1M", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    try:
        first = run_on_stack(stack, "fit", str(model), *sagemaker_args(name), cwd=tmp_path, env=env)
        assert first.code == 0, first.stderr
        [line] = [l for l in first.stderr.splitlines() if "every push of a changed layer" in l]
        assert line.startswith(f"fahr warning image {name}/train:latest is ") and " MiB: " in line
        assert "pushed " in first.stderr
        second = run_on_stack(stack, "fit", str(model), *sagemaker_args(name), cwd=tmp_path, env=env)
        assert second.code == 0, second.stderr
        assert "not rebuilt" in second.stderr and "nothing to push" in second.stderr
        assert "every push of a changed layer" not in second.stderr
    finally:
        import docker

        try:
            docker.from_env().images.remove(f"{name}/train:latest")
        except docker.errors.DockerException:
            pass
