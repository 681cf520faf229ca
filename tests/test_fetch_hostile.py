"""`fahr fetch` of a hostile or broken model, through the real command (no Docker needed).

Each model sits where a completed local job keeps it (<output_path>/<job>/output/model.tar.gz,
with its job.json); fetch must end with exit 2 and one `fahr error:` line naming the entry, and
leave the target folder and everything around it exactly as they were.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile

import pytest
from hostile import GiB, cve_2025_4517, local_job, make_scene, member, snapshot, up_and_out, zero_bomb


TAG = "hostile/train"


@pytest.fixture
def scene(tmp_path):
    """The hostile scene (hostile.make_scene) and jobs/, the local driver's output_path."""
    (tmp_path / "jobs").mkdir()
    return make_scene(tmp_path)


def fetch_refused(fahr, scene, archive_bytes, *, env=None, target=None):
    job = local_job(scene / "jobs", archive_bytes)
    watched = {k: v for k, v in snapshot(scene).items() if not k.startswith("jobs")}
    target = target or scene / "work" / "out"
    proc = fahr("fetch", target, TAG, scene / "jobs", "--job", job, "--overwrite", cwd=scene, env=env)
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("fahr error: refusing the model"), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert {k: v for k, v in snapshot(scene).items() if not k.startswith("jobs")} == watched
    return errors[0]


def tar_bytes(members, **kwargs):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", **kwargs) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def test_cve_2025_4517_archive(fahr, scene, tmp_path):
    # From work/.out.fahr-XXXX (the staging folder), two levels up is the scene: victim-dir.
    line = fetch_refused(fahr, scene, cve_2025_4517(tmp_path / "cve.tar.gz", ups=2).read_bytes())
    assert "passes through the symlink 'a'" in line


def test_symlink_to_the_top_then_up(fahr, scene, tmp_path):
    line = fetch_refused(fahr, scene, up_and_out(tmp_path / "up.tar.gz", ups=2).read_bytes())
    assert "entry 'escape' is a symlink to 'sub/up/../../victim-dir', which leads outside the target" in line


@pytest.mark.parametrize("members", [
    [member("h", tarfile.LNKTYPE, linkname="nowhere.bin")],
    [member("h", tarfile.LNKTYPE, linkname="later.bin"), member("later.bin", data=b"x")],
    [member("d", tarfile.DIRTYPE), member("h", tarfile.LNKTYPE, linkname="d")],
], ids=["missing", "later", "folder"])
def test_hard_link_to_no_earlier_file(fahr, scene, members):
    line = fetch_refused(fahr, scene, tar_bytes(members))
    assert "entry 'h' is a hard link to" in line and "not a file that comes earlier in the archive" in line


def test_ten_gib_of_zeros_over_the_cap(fahr, scene, tmp_path):
    bomb = zero_bomb(tmp_path / "bomb.tar.gz", 10 * GiB).read_bytes()
    line = fetch_refused(fahr, scene, bomb, env={"FAHR_MAX_MODEL_BYTES": "100M"})
    assert "more than 100 MiB (at entry 'zeros.bin'), the limit set by FAHR_MAX_MODEL_BYTES" in line


@pytest.mark.parametrize("value", ["lots", "0", "1.5G"])
def test_bad_cap_is_one_line(fahr, scene, value):
    job = local_job(scene / "jobs", tar_bytes([member("ok.txt", data=b"x")]))
    proc = fahr("fetch", scene / "new", TAG, scene / "jobs", "--job", job, cwd=scene,
                    env={"FAHR_MAX_MODEL_BYTES": value})
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"fahr error: FAHR_MAX_MODEL_BYTES={value!r} is not a size; give a number of bytes such as "
        "68719476736 or 64G (K, M, G, T are powers of 1024), or unset it for the default of 64G"]
    assert not (scene / "new").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB filesystem (tmpfs), for the target's parent."""
    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_model_larger_than_the_free_space(fahr, scene, small_disk):
    (small_disk / "out").mkdir()
    (small_disk / "out" / "old-model.bin").write_bytes(b"old")
    rng = random.Random(3)
    model = tar_bytes([member(f"part-{i}", data=rng.randbytes(512 * 1024)) for i in range(6)])
    before = snapshot(small_disk)
    line = fetch_refused(fahr, scene, model, target=small_disk / "out")
    assert "needs more than the" in line and f"free on the filesystem of {small_disk}" in line
    assert snapshot(small_disk) == before


@pytest.mark.parametrize("case", ["truncated", "random", "long-name", "bad-utf8"])
def test_damaged_archives_and_impossible_names(fahr, scene, case):
    good = tar_bytes([member(f"part-{i}", data=random.Random(i).randbytes(20_000)) for i in range(3)])
    archive, expected = {
        "truncated": (good[: len(good) // 2], "is not a readable tar archive (its compressed data ends early"),
        "random": (random.Random(1).randbytes(4000), "is not a readable tar archive"),
        "long-name": (tar_bytes([member("m" * 300, data=b"x")]), "more than a file name may have (255)"),
        "bad-utf8": (tar_bytes([member("bad-\udcff.bin", data=b"x")], format=tarfile.GNU_FORMAT,
                               encoding="utf-8", errors="surrogateescape"),
                     "entry 'bad-\\udcff.bin' has a name that is not valid UTF-8"),
    }[case]
    assert expected in fetch_refused(fahr, scene, archive)


def test_a_normal_model_still_arrives(fahr, scene):
    job = local_job(scene / "jobs", tar_bytes([
        member("model.json", data=b"{}"),
        member("sub/w.bin", data=b"w"),
        member("sub/link", tarfile.SYMTYPE, linkname="w.bin"),
    ]))
    proc = fahr("fetch", scene / "work" / "out", TAG, scene / "jobs", "--job", job, "--overwrite", cwd=scene)
    assert proc.returncode == 0, proc.stderr
    out = scene / "work" / "out"
    assert sorted(os.listdir(out)) == ["model.json", "sub"]
    assert (out / "sub" / "w.bin").read_bytes() == b"w" and os.readlink(out / "sub" / "link") == "w.bin"
    assert sorted(os.listdir(scene / "work")) == ["out"]


@pytest.mark.parametrize("where", ["the jobs folder", "inside it", "its parent"])
def test_a_fetch_target_that_overlaps_the_jobs_is_refused(fahr, scene, where):
    """With --overwrite, such a target would replace the jobs themselves (the model's own among them)."""
    job = local_job(scene / "jobs", tar_bytes([member("model.json", data=b"{}")]))
    target = {"the jobs folder": scene / "jobs", "inside it": scene / "jobs" / job / "model",
              "its parent": scene}[where]
    before = snapshot(scene)
    proc = fahr("fetch", target, TAG, scene / "jobs", "--job", job, "--overwrite", cwd=scene)
    assert proc.returncode == 2, proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if line.strip()]
    assert line.startswith("fahr error: fetch target ") and "where the jobs and their artifacts are kept" in line
    assert snapshot(scene) == before
