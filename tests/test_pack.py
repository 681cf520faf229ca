"""Packing a job's folder into model.tar.gz / output.tar.gz, without Docker: the engine's archive
is built in memory in the shape the engine's archive API gives it (every entry under ``model/``,
PAX headers for long and non-ASCII names and link targets), repacked by the real code, and read
back with tarfile and with the system's own ``tar``.
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
import tarfile
from pathlib import Path

import docker.errors
import pytest

from fahr_core.contract import CHECKPOINT_MARKER, ContainerJob, ContractRun, TreeMerge, checkpoint_manifest, clash_warning

LONG_DIR = "/".join(f"l{i}" + "x" * 58 for i in range(5))  # 304 characters
LONG_FILE = f"{LONG_DIR}/far.bin"  # over 255 in all
COMPONENT = "c" * 196 + ".txt"  # one name of 200 characters
ACCENTED = "modèle-poids.json"
MTIME = 1_600_000_000


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
          link: str = "", mtime: int = MTIME) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, link, mtime
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def engine_archive(entries, base: str = "model") -> bytes:
    """A tar stream as the engine returns it for ``/opt/ml/<base>``: the folder first, then its
    entries prefixed ``<base>/`` (hard links' targets too), PAX format."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(entry(base, tarfile.DIRTYPE, mode=0o755)[0])
        for info, data in entries:
            info.name = f"{base}/{info.name}"
            if info.islnk():
                info.linkname = f"{base}/{info.linkname}"
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def tree_entries(tag: bytes = b"") -> list:
    return [
        entry("bin", tarfile.DIRTYPE, mode=0o755),
        entry("bin/run.sh", data=b"#!/bin/sh\necho " + tag + b"\n", mode=0o755, mtime=MTIME + 1),
        entry(COMPONENT, data=b"two hundred" + tag, mtime=MTIME + 2),
        entry("empty", tarfile.DIRTYPE, mode=0o750, mtime=MTIME + 3),
        entry("l0" + "x" * 58, tarfile.DIRTYPE, mode=0o755),
        *[entry("/".join(LONG_DIR.split("/")[:i]), tarfile.DIRTYPE, mode=0o755) for i in range(2, 6)],
        entry(LONG_FILE, data=b"far away" + tag, mtime=MTIME + 4),
        entry("latest.json", tarfile.SYMTYPE, link=ACCENTED, mode=0o777),
        entry(ACCENTED, data=b'{"w": 1}' + tag, mtime=MTIME + 5),
        entry("shards", tarfile.DIRTYPE, mode=0o755),
        entry("shards/part-0.bin", tarfile.LNKTYPE, link=LONG_FILE, mtime=MTIME + 4),
        entry("shards/up", tarfile.SYMTYPE, link="../bin", mode=0o777),
        entry("zero.bin", mtime=MTIME + 6),
    ]


def repack(*hosts: tuple[str, bytes], base: str = "model") -> tuple[bytes, list]:
    out_buf = io.BytesIO()
    with tarfile.open(fileobj=out_buf, mode="w:gz", format=tarfile.PAX_FORMAT) as out:
        merge = TreeMerge(out, base)
        for host, raw in hosts:
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
                merge.add(host, tar)
    return out_buf.getvalue(), merge.dropped


def members(packed: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def contents(packed: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg() or m.islnk()}


def untar(packed: bytes, into: Path) -> Path:
    """Extract with the system's tar, as a user would; it must not complain."""
    into.mkdir()
    proc = subprocess.run(["tar", "xzf", "-", "-C", str(into)], input=packed, capture_output=True)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()
    return into


def test_the_engine_shaped_archive_is_what_used_to_break():
    raw = engine_archive(tree_entries())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        stale = {m.name: m.pax_headers for m in tar.getmembers()}
    # The names that need PAX headers carry the prefix there: copying those headers was the bug.
    assert stale[f"model/{ACCENTED}"]["path"] == f"model/{ACCENTED}"
    assert stale[f"model/{LONG_FILE}"]["path"] == f"model/{LONG_FILE}"
    assert stale["model/shards/part-0.bin"]["linkpath"] == f"model/{LONG_FILE}"


def test_long_and_non_ascii_names_lose_the_prefix(tmp_path):
    packed, dropped = repack(("algo-1", engine_archive(tree_entries())))
    assert dropped == []
    found = members(packed)
    assert sorted(found) == sorted(info.name for info, _ in tree_entries())
    for member in found.values():
        assert not member.name.startswith("model"), member.name
        for key in ("path", "linkpath"):
            assert not member.pax_headers.get(key, "").startswith("model/"), member.pax_headers
    assert found[ACCENTED].pax_headers["path"] == ACCENTED  # PAX, written afresh
    assert contents(packed)[COMPONENT] == b"two hundred"

    out = untar(packed, tmp_path / "tar")
    assert (out / ACCENTED).read_bytes() == b'{"w": 1}'
    assert (out / LONG_FILE).read_bytes() == b"far away"
    assert (out / COMPONENT).read_bytes() == b"two hundred"
    assert not (out / "model").exists()


def test_hard_link_to_a_long_named_file(tmp_path):
    packed, _ = repack(("algo-1", engine_archive(tree_entries())))
    link = members(packed)["shards/part-0.bin"]
    assert link.islnk() and link.linkname == LONG_FILE
    assert link.pax_headers["linkpath"] == LONG_FILE
    out = untar(packed, tmp_path / "tar")
    assert os.path.samefile(out / "shards" / "part-0.bin", out / LONG_FILE)
    assert (out / "shards" / "part-0.bin").read_bytes() == b"far away"


def test_symlinks_modes_mtimes_empty_folders_and_empty_files(tmp_path):
    packed, _ = repack(("algo-1", engine_archive(tree_entries())))
    found = members(packed)
    assert found["latest.json"].issym() and found["latest.json"].linkname == ACCENTED
    assert found["shards/up"].linkname == "../bin"  # relative targets kept as they are
    assert found["empty"].isdir() and found["empty"].mode == 0o750
    assert found["bin/run.sh"].mode == 0o755 and found["bin/run.sh"].mtime == MTIME + 1
    assert found["zero.bin"].isreg() and found["zero.bin"].size == 0

    out = untar(packed, tmp_path / "tar")
    assert os.readlink(out / "latest.json") == ACCENTED
    assert (out / "latest.json").read_bytes() == b'{"w": 1}'
    assert os.readlink(out / "shards" / "up") == "../bin"
    assert (out / "shards" / "up" / "run.sh").is_file()
    assert (out / "empty").is_dir() and list((out / "empty").iterdir()) == []
    assert os.stat(out / "bin" / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(out / "bin" / "run.sh").st_mtime == MTIME + 1
    assert (out / "zero.bin").stat().st_size == 0


def test_output_folder_strips_its_own_prefix():
    raw = engine_archive([entry("metrics.json", data=b"{}"), entry("data", tarfile.DIRTYPE)], base="data")
    packed, _ = repack(("algo-1", raw), base="data")
    assert list(members(packed)) == ["metrics.json", "data"]  # a folder named like its parent stays


def test_hosts_merge_first_host_kept_and_the_dropped_host_named(tmp_path):
    one = engine_archive([
        entry("shared.txt", data=b"from algo-1"),
        entry("common", tarfile.DIRTYPE),
        entry("common/algo-1.txt", data=b"1"),
        entry("thing", data=b"a file on algo-1"),
    ])
    two = engine_archive([
        entry("shared.txt", data=b"from algo-2"),
        entry("common", tarfile.DIRTYPE),  # a folder on both: merged, not a clash
        entry("common/algo-2.txt", data=b"2"),
        entry("thing", tarfile.DIRTYPE),  # a folder where algo-1 has a file: dropped, with its contents
        entry("thing/inside.txt", data=b"under algo-2's folder"),
        entry("mine.bin", tarfile.LNKTYPE, link="shared.txt"),  # its target is algo-1's now
    ])
    packed, dropped = repack(("algo-1", one), ("algo-2", two))
    assert dropped == [("shared.txt", "algo-2"), ("thing", "algo-2"), ("thing/inside.txt", "algo-2")]
    files = contents(packed)
    assert files["shared.txt"] == b"from algo-1"
    assert files["thing"] == b"a file on algo-1"
    assert files["common/algo-1.txt"] == b"1" and files["common/algo-2.txt"] == b"2"
    # algo-2's hard link keeps algo-2's content, as a file of its own.
    assert files["mine.bin"] == b"from algo-2" and members(packed)["mine.bin"].isreg()
    assert sum(1 for name in members(packed) if name == "common") == 1
    untar(packed, tmp_path / "tar")  # a consistent tree: no file under a file

    line = clash_warning("model.tar.gz", dropped)
    assert line == ("model.tar.gz: several hosts wrote the same files; dropped shared.txt (algo-2), "
                    "thing (algo-2), thing/inside.txt (algo-2), keeping the copy of the first host that wrote each")
    many = clash_warning("output.tar.gz", [(f"f{i}", "algo-3") for i in range(8)])
    assert "f4 (algo-3) and 3 more," in many and "f5" not in many


# -- pack() itself, on containers that serve the in-memory archives ------------------------------


class Container:
    def __init__(self, host: str, archives: dict[str, bytes] | Exception, fail: OSError | None = None):
        self.labels = {"fahr.host": host}
        self.name = host
        self.archives = archives
        self.fail = fail

    def get_archive(self, path: str):
        if isinstance(self.archives, Exception):
            raise self.archives
        if path not in self.archives:
            raise docker.errors.NotFound(f"Could not find the file {path} in container")
        raw = self.archives[path]

        def chunks():
            yield raw[: len(raw) // 2]
            if self.fail:
                raise self.fail
            yield raw[len(raw) // 2:]

        return chunks(), {}


class Engine:
    def __init__(self, containers):
        self._containers = containers
        self.containers = self

    def list(self, **_):
        return self._containers


def run_with(*containers, count: int) -> ContractRun:
    return ContractRun(ContainerJob("j", "img", instance_count=count), client=Engine(list(containers)))


def test_pack_orders_hosts_numerically_and_warns_once(tmp_path, capsys):
    hosts = [f"algo-{i}" for i in range(1, 11)]
    containers = [Container(h, {"/opt/ml/model": engine_archive([entry("who.txt", data=h.encode())])})
                  for h in reversed(hosts)]
    target = tmp_path / "model.tar.gz"
    assert run_with(*containers, count=10).pack("/opt/ml/model", target) == target
    assert contents(target.read_bytes()) == {"who.txt": b"algo-1"}
    err = capsys.readouterr().err
    # algo-2 comes second, not after algo-10 as a plain sort would have it
    assert "dropped who.txt (algo-2), who.txt (algo-3)" in err and "and 4 more" in err
    assert oct(target.stat().st_mode & 0o777) == oct(0o600)  # a job's files are private
    assert [p.name for p in tmp_path.iterdir()] == ["model.tar.gz"]


def test_pack_of_an_absent_folder_is_an_empty_archive(tmp_path):
    target = run_with(Container("algo-1", {}), count=1).pack("/opt/ml/output/data", tmp_path / "output.tar.gz")
    assert members(target.read_bytes()) == {}


def test_a_failed_pack_leaves_the_target_as_it_was_and_no_partial_file(tmp_path):
    target = tmp_path / "model.tar.gz"
    target.write_bytes(b"previous")
    full = OSError(errno.ENOSPC, "No space left on device")
    broken = Container("algo-1", {"/opt/ml/model": engine_archive([entry("w.bin", data=b"x" * 4096)])}, fail=full)
    with pytest.raises(OSError) as caught:
        run_with(broken, count=1).pack("/opt/ml/model", target)
    assert caught.value.errno == errno.ENOSPC  # not swallowed: the caller maps it
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tar.gz"]


def test_an_engine_that_fails_to_give_the_folder_is_not_an_empty_model(tmp_path):
    gone = Container("algo-1", docker.errors.APIError("500 Server Error: the engine broke"))
    with pytest.raises(docker.errors.APIError):
        run_with(gone, count=1).pack("/opt/ml/model", tmp_path / "model.tar.gz")
    assert list(tmp_path.iterdir()) == []


def test_the_model_merge_counts_any_second_copy_as_a_clash():
    one = engine_archive([entry("given.bin", data=b"epoch 2")])
    two = engine_archive([entry("given.bin", data=b"epoch 2")])
    _, dropped = repack(("algo-1", one), ("algo-2", two))
    assert dropped == [("given.bin", "algo-2")]


# -- copy_out(): the checkpoints merged against what the hosts were given ----------------------


CK = "/opt/ml/checkpoints"


def given_folder(tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, dict]:
    """A checkpoint folder as fahr owns it, and its manifest (what every host is given)."""
    folder = tmp_path / "ckpt"
    folder.mkdir(parents=True)
    (folder / CHECKPOINT_MARKER).write_text("fahr's")
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder, checkpoint_manifest(folder)


def host(name: str, files: dict[str, bytes], extra=()) -> Container:
    entries = [entry(n, data=d) for n, d in files.items()]
    return Container(name, {CK: engine_archive([*extra, *entries], base="checkpoints")})


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def test_a_hosts_untouched_copy_is_not_a_write(tmp_path):
    given = {"epoch.txt": b"2", "ckpt-2.pt": b"w2", "keep.txt": b"k"}
    folder, manifest = given_folder(tmp_path, given)
    assert manifest["epoch.txt"] == ("file", 1, __import__("hashlib").sha256(b"2").hexdigest())
    assert CHECKPOINT_MARKER not in manifest
    # rank 0 (algo-1) moves on to epoch 3 and removes the old checkpoint; algo-2 leaves its copy.
    rank0 = host("algo-1", {"epoch.txt": b"3", "ckpt-3.pt": b"w3", "keep.txt": b"k"})
    idle = host("algo-2", given)
    copied = run_with(idle, rank0, count=2).copy_out(CK, folder, manifest, marker=True, spool_dir=tmp_path / "job")
    assert copied.dropped == [] and copied.skipped == [] and copied.placed
    assert local_files(folder) == {CHECKPOINT_MARKER: local_files(folder)[CHECKPOINT_MARKER],
                                   "ckpt-3.pt": b"w3", "epoch.txt": b"3", "keep.txt": b"k"}
    # The last host writing, the first one idle: the new checkpoint wins over the given copy.
    folder2, manifest2 = given_folder(tmp_path / "two", given)
    rank1 = host("algo-2", {**given, "epoch.txt": b"3"})
    copied = run_with(host("algo-1", given), rank1, count=2).copy_out(CK, folder2, manifest2)
    assert copied.dropped == [] and local_files(folder2)["epoch.txt"] == b"3"
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == []  # the spool went away


def test_hosts_that_changed_a_file_differently_keep_the_first_and_name_the_dropped(tmp_path):
    folder, manifest = given_folder(tmp_path, {"shared.txt": b"given"})
    one = host("algo-1", {"shared.txt": b"by algo-1", "same.txt": b"both", "gone.txt": b"x"})
    two = host("algo-2", {"shared.txt": b"by algo-2", "same.txt": b"both"})
    three = host("algo-3", {"shared.txt": b"given"})
    copied = run_with(one, two, three, count=3).copy_out(CK, folder, manifest)
    assert copied.dropped == [("shared.txt", "algo-2")]  # same bytes from two hosts: no clash
    assert local_files(folder) == {"gone.txt": b"x", "same.txt": b"both", "shared.txt": b"by algo-1"}
    # A given file that some host deleted and none changed is removed; one nobody deleted stays.
    folder2, manifest2 = given_folder(tmp_path / "b", {"old.pt": b"o", "kept.pt": b"k", "d/in.pt": b"i"})
    one = host("algo-1", {"kept.pt": b"k"})  # removed old.pt and the folder d
    two = host("algo-2", {"old.pt": b"o", "kept.pt": b"k", "d/in.pt": b"i"}, extra=[entry("d", tarfile.DIRTYPE)])
    run_with(one, two, count=2).copy_out(CK, folder2, manifest2)
    assert sorted(p.name for p in folder2.iterdir()) == ["kept.pt"]


def test_refused_entries_are_skipped_and_an_absolute_link_inside_becomes_relative(tmp_path):
    folder, manifest = given_folder(tmp_path, {})
    fifo = tarfile.TarInfo("a.fifo")
    fifo.type = tarfile.FIFOTYPE
    odd = [(fifo, b""),
           entry("latest.pt", tarfile.SYMTYPE, link="/opt/ml/checkpoints/ckpt-3.pt"),
           entry("sub", tarfile.DIRTYPE, mode=0o755),
           entry("sub/best.pt", tarfile.SYMTYPE, link="/opt/ml/checkpoints/ckpt-3.pt"),
           entry("passwd", tarfile.SYMTYPE, link="/etc/passwd"),
           entry("up", tarfile.SYMTYPE, link="../../etc")]
    copied = run_with(host("algo-1", {"ckpt-3.pt": b"w3"}, extra=odd), count=1).copy_out(CK, folder, manifest)
    assert sorted(name for name, _ in copied.skipped) == ["a.fifo", "passwd", "up"]
    assert os.readlink(folder / "latest.pt") == "ckpt-3.pt" and (folder / "latest.pt").read_bytes() == b"w3"
    assert os.readlink(folder / "sub" / "best.pt") == "../ckpt-3.pt"
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt-3.pt", "latest.pt", "sub"]


def test_a_checkpoint_folder_the_script_replaced_by_a_link_or_file_is_not_copied(tmp_path):
    folder, manifest = given_folder(tmp_path, {"epoch.txt": b"2"})
    for kind in (tarfile.SYMTYPE, tarfile.REGTYPE):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info, data = entry("checkpoints", kind, data=b"state" if kind == tarfile.REGTYPE else b"",
                               link="/tmp/mine" if kind == tarfile.SYMTYPE else "")
            tar.addfile(info, io.BytesIO(data))
        copied = run_with(Container("algo-1", {CK: buf.getvalue()}), count=1).copy_out(CK, folder, manifest)
        assert copied.not_folders == [("algo-1", "a link" if kind == tarfile.SYMTYPE else "not a folder")]
        assert not copied.placed and (folder / "epoch.txt").read_bytes() == b"2"


def test_the_folder_keeps_its_mode_and_fahrs_marker_and_nothing_is_left_beside_it(tmp_path):
    folder, manifest = given_folder(tmp_path, {})
    folder.chmod(0o700)
    run_with(host("algo-1", {"a.pt": b"a"}), count=1).copy_out(CK, folder, manifest, marker=True,
                                                                spool_dir=tmp_path / "job")
    assert oct(folder.stat().st_mode & 0o777) == oct(0o700)
    assert (folder / CHECKPOINT_MARKER).is_file() and (folder / "a.pt").read_bytes() == b"a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "job"]


def test_a_link_that_leads_out_only_through_another_link_is_skipped_and_the_rest_comes_back(tmp_path):
    # Each link alone stays inside; x leads out through sub/up. The extractor would refuse the
    # whole folder for it: it is skipped as a link leading out is, and everything else comes back.
    folder, manifest = given_folder(tmp_path, {"old.pt": b"o"})
    odd = [entry("sub", tarfile.DIRTYPE, mode=0o755),
           entry("sub/up", tarfile.SYMTYPE, link=".."),
           entry("x", tarfile.SYMTYPE, link="sub/up/../../y"),
           entry("through-x", tarfile.SYMTYPE, link="x/.."),  # inside once x is left out
           entry("best.pt", tarfile.SYMTYPE, link="sub/up/ckpt.pt")]
    copied = run_with(host("algo-1", {"ckpt.pt": b"w"}, extra=odd), count=1).copy_out(
        CK, folder, manifest, marker=True, spool_dir=tmp_path / "job")
    assert copied.skipped == [("x", "algo-1")]
    assert not os.path.lexists(folder / "x") and os.readlink(folder / "through-x") == "x/.."
    assert os.readlink(folder / "sub" / "up") == ".." and (folder / "best.pt").read_bytes() == b"w"
    assert (folder / "ckpt.pt").read_bytes() == b"w" and not (folder / "old.pt").exists()


class Endless(Container):
    """A host whose checkpoint folder holds a file of 3 GiB (sparse, say): its header, then
    zeros for as long as they are read; ``sent`` counts them."""

    sent = 0

    def get_archive(self, path: str):
        def chunks():
            folder, _ = entry("checkpoints", tarfile.DIRTYPE, mode=0o755)
            small, _ = entry("checkpoints/epoch.txt", data=b"1")
            huge, _ = entry("checkpoints/huge.bin")
            huge.size = 3 << 30
            yield folder.tobuf(tarfile.PAX_FORMAT) + small.tobuf(tarfile.PAX_FORMAT) + b"1".ljust(512, b"\0")
            yield huge.tobuf(tarfile.PAX_FORMAT)
            zeros = bytes(1 << 20)
            while True:
                Endless.sent += len(zeros)
                assert Endless.sent <= 8 << 20, "the 3 GiB are being copied"  # a fault here: not a full disk
                yield zeros

        return chunks(), {}


def test_checkpoints_over_the_cap_are_refused_on_a_header_before_the_data_is_copied(tmp_path, monkeypatch):
    from fahr_core.extract import ModelTooLarge

    monkeypatch.setenv("FAHR_MAX_MODEL_BYTES", "100M")
    folder, manifest = given_folder(tmp_path, {"epoch.txt": b"0"})
    with pytest.raises(ModelTooLarge, match=r"it unpacks to more than 100 MiB \(at entry 'huge\.bin'\)"):
        run_with(Endless("algo-1", {}), count=1).copy_out(CK, folder, manifest, marker=True,
                                                          spool_dir=tmp_path / "job")
    assert Endless.sent <= 2 << 20  # the header and what tarfile reads ahead: not the 3 GiB
    assert (folder / "epoch.txt").read_bytes() == b"0" and not (tmp_path / "job").exists()

    # Several hosts whose files are each under the cap but over it together: refused before the
    # merged archive is spooled.
    monkeypatch.setenv("FAHR_MAX_MODEL_BYTES", "1K")
    one, two = host("algo-1", {"a.pt": bytes(700)}), host("algo-2", {"b.pt": bytes(700)})
    with pytest.raises(ModelTooLarge, match=r"more than 1(\.0)? KiB \(at entry 'b\.pt'\)"):
        run_with(one, two, count=2).copy_out(CK, folder, manifest, marker=True, spool_dir=tmp_path / "job")
    assert (folder / "epoch.txt").read_bytes() == b"0" and not (tmp_path / "job").exists()


def test_the_marker_of_the_new_folder_can_be_given(tmp_path):
    folder, manifest = given_folder(tmp_path, {})
    run_with(host("algo-1", {"a.pt": b"a"}), count=1).copy_out(CK, folder, manifest, marker=b"held by a job\n")
    assert (folder / CHECKPOINT_MARKER).read_bytes() == b"held by a job\n"
