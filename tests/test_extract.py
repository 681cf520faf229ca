"""Safe extraction of fetched models: malicious archives are built here, in the test.

Most archives are given to the extractor both ways a driver can hand one over (the ``as_source``
fixture): as a file's path, and as a one-way stream (read only, no seek), as a download that is
still running arrives. Every rule must hold on both.
"""

import io
import os
import tarfile
import time

import pytest

from fahr_core import extract
from fahr_core.extract import UnsafeArchive, place
from fahr_core.errors import UsageError


class OneWay:
    """An archive as a driver's stream hands it over: ``read`` and ``close`` only (no seek, no
    tell, no fileno), at most ``most`` bytes per read; it records whether the core closed it. It
    reads through ``extract._open_raw``, so the ``reads`` fixture counts what it delivers."""

    def __init__(self, path, most=None):
        self.file = extract._open_raw(path)
        self.most, self.closed, self.name = most, False, os.path.basename(path)

    def read(self, size=-1):
        if self.closed:
            raise ValueError("read of a closed stream")
        if self.most and (size is None or size < 0 or size > self.most):
            size = self.most
        return self.file.read(size)

    def close(self):
        self.closed = True
        self.file.close()


@pytest.fixture(params=["path", "stream"])
def as_source(request):
    """Turns an archive's path into what the extractor is given: the path, or a stream of it."""
    opened = []

    def convert(path):
        if request.param == "path":
            return path
        opened.append(OneWay(path))
        return opened[-1]

    yield convert
    assert all(stream.closed for stream in opened)  # the core closed it, whatever happened


def make_tar(path, members):
    """members: list of (TarInfo-kwargs, bytes-or-None)."""
    with tarfile.open(path, "w:gz") as tar:
        for fields, data in members:
            fields = dict(fields)  # a parameter of the test, shared by its runs: not changed here
            info = tarfile.TarInfo(fields.pop("name"))
            for k, v in fields.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def test_good_archive_lands_in_target(tmp_path, as_source):
    archive = make_tar(tmp_path / "model.tar.gz", [
        ({"name": "model.json"}, b"{}"),
        ({"name": "sub", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
        ({"name": "sub/weights.bin"}, b"\x00\x01"),
        ({"name": "sub/link", "type": tarfile.SYMTYPE, "linkname": "weights.bin"}, None),
    ])
    target = place(as_source(archive), tmp_path / "out", extract=True, overwrite=False)
    assert (target / "model.json").read_bytes() == b"{}"
    assert (target / "sub" / "weights.bin").read_bytes() == b"\x00\x01"
    assert os.readlink(target / "sub" / "link") == "weights.bin"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz", "out"]  # no staging left


@pytest.mark.parametrize(
    "member,message",
    [
        (({"name": "/etc/evil"}, b"x"), "absolute path"),
        (({"name": "../evil"}, b"x"), "'..'"),
        (({"name": "a/../../evil"}, b"x"), "'..'"),
        (({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None), "leads outside"),
        (({"name": "a/link", "type": tarfile.SYMTYPE, "linkname": "../../x"}, None), "leads outside"),
        (({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../outside"}, None), "leads outside"),
        (({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None), "device"),
        (({"name": "fifo", "type": tarfile.FIFOTYPE}, None), "device or pipe"),
    ],
)
def test_malicious_archives_are_refused_and_nothing_is_written(tmp_path, member, message, as_source):
    archive = make_tar(tmp_path / "model.tar.gz", [({"name": "ok.txt"}, b"fine"), member])
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchive, match=message):
        place(as_source(archive), target, extract=True, overwrite=False)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz"]
    assert not (tmp_path.parent / "evil").exists()


def test_non_empty_target_needs_overwrite(tmp_path):
    archive = make_tar(tmp_path / "m.tar.gz", [({"name": "new.txt"}, b"new")])
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(UsageError, match="not empty.*--overwrite"):
        place(archive, target, extract=True, overwrite=False)
    assert (target / "old.txt").read_text() == "old"
    place(archive, target, extract=True, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tar.gz", "out"]  # no staging, no old copy left


def test_failed_overwrite_keeps_the_old_model(tmp_path, as_source):
    archive = make_tar(tmp_path / "m.tar.gz", [({"name": "../evil"}, b"x")])
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(UnsafeArchive):
        place(as_source(archive), target, extract=True, overwrite=True)
    assert (target / "old.txt").read_text() == "old"


def test_no_extract_keeps_the_archive(tmp_path, as_source):
    archive = make_tar(tmp_path / "model.tar.gz", [({"name": "../evil"}, b"x")])
    target = place(as_source(archive), tmp_path / "out", extract=False, overwrite=False)
    assert os.listdir(target) == ["model.tar.gz"]
    assert (target / "model.tar.gz").read_bytes() == archive.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["model.tar.gz", "out"]


def test_corrupt_archive(tmp_path, as_source):
    bad = tmp_path / "model.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(UsageError, match="^refusing the model: model.tar.gz is not a readable tar archive"):
        place(as_source(bad), tmp_path / "out", extract=True, overwrite=False)
    assert not (tmp_path / "out").exists()
    assert os.listdir(tmp_path) == ["model.tar.gz"]


def test_uncompressed_model_folder(tmp_path):
    source = tmp_path / "files"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "w.bin").write_bytes(b"w")
    target = place(source, tmp_path / "out", extract=True, overwrite=False)
    assert (target / "sub" / "w.bin").read_bytes() == b"w"


# -- hostile archives: escapes the filesystem would not show ---------------------------------------

import gzip  # noqa: E402
import random  # noqa: E402

from hostile import (GiB, MiB, counted_folds, counted_steps, cve_2025_4517, member, snapshot,  # noqa: E402
                     up_and_out, write_tar, zero_bomb)

from fahr_core.extract import DamagedArchive, ModelTooLarge  # noqa: E402


@pytest.fixture
def scene(tmp_path, as_source):
    """A victim folder outside, and a target folder (work/out) that already holds a model; the
    archives of the test are given as a path or as a stream (``as_source``)."""
    victim = tmp_path / "victim-dir"
    victim.mkdir()
    (victim / "victim.txt").write_text("precious")
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "out" / "old-model.bin").write_bytes(b"old")
    before = snapshot(tmp_path)
    return tmp_path, work / "out", before, as_source


def refused(scene, archive, error=UnsafeArchive, **kwargs):
    root, target, before, as_source = scene
    with pytest.raises(error) as caught:
        place(as_source(archive), target, extract=True, overwrite=True, **kwargs)
    archives = (".tar", ".tar.gz")  # the test's own, written beside the scene
    assert {k: v for k, v in snapshot(root).items() if not ("/" not in k and k.endswith(archives))} == before  # target byte-identical, victim untouched, no staging folder left
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and message.startswith("refusing the model")
    return message


def test_cve_2025_4517_pattern_is_refused_and_nothing_is_written(scene):
    archive = cve_2025_4517(scene[0] / "m.tar.gz", ups=2)
    message = refused(scene, archive)
    assert "passes through the symlink 'a'" in message and "'a/b/c/d/" in message


@pytest.mark.parametrize("through", ["victim.txt", "planted.txt"])
def test_cve_2025_4517_escape_symlink_itself_is_refused(scene, through):
    # Without the long link at the end of the chain, 'escape' itself is the first bad entry.
    comp, members, so_far = "d" * 247, [], ""
    for step in "abcdefghijklmnop":
        members += [member(os.path.join(so_far, comp), tarfile.DIRTYPE, mode=0o755),
                    member(os.path.join(so_far, step), tarfile.SYMTYPE, linkname=comp)]
        so_far = os.path.join(so_far, comp)
    chain = "/".join("abcdefghijklmnop")
    members += [member("escape", tarfile.SYMTYPE, linkname=chain + "/.." * 18 + "/victim-dir"),
                member(f"escape/{through}", data=b"OWNED")]
    message = refused(scene, write_tar(scene[0] / "m.tar.gz", members))
    assert "entry 'escape' is a symlink to" in message and "leads outside the target" in message



def test_a_chain_of_long_link_texts_costs_bounded_work(scene, monkeypatch):
    # Each link's text walks 800 times into 'd' and back, through the previous link: all inside,
    # but resolving the last would walk ~60,000 components, and every later link to it again
    # (a 1 KB archive kept fetch busy for minutes). Resolution stops at MAX_RESOLVE_PARTS.
    walks = []
    real = extract._Tree.resolve

    def counting(self, folder, link, fold=False):
        walks.append(link)
        return real(self, folder, link, fold)

    monkeypatch.setattr(extract._Tree, "resolve", counting)
    members = [member("d", tarfile.DIRTYPE, mode=0o755),
               member("l0", tarfile.SYMTYPE, linkname="/".join(["d/.."] * 800))]
    for k in range(1, 39):
        members.append(member(f"l{k}", tarfile.SYMTYPE, linkname=f"l{k - 1}/" + "/".join(["d/.."] * 800)))
    members += [member(f"x{i}", tarfile.SYMTYPE, linkname="l38") for i in range(50)]
    message = refused(scene, write_tar(scene[0] / "m.tar.gz", members))
    assert "entry 'l5' is a symlink to" in message and f"{extract.MAX_RESOLVE_PARTS} path components" in message
    assert len(walks) <= 2 * 6  # refused at the sixth link (each checked as is and case-folded)

def test_a_deep_archive_costs_work_linear_in_its_depth(tmp_path, monkeypatch):
    # 300 nested folders in one entry, a symlink down through all of them, and
    # files at the bottom: each path's case-folded form was computed anew for each of its
    # beginnings (and at each step of a link's resolution): a million folds for an 8 KB
    # archive: seconds of CPU per entry.
    folds = counted_folds(monkeypatch)
    deep = "/".join(["d"] * 300)
    members = [member(deep, tarfile.DIRTYPE, mode=0o755), member("l", tarfile.SYMTYPE, linkname=deep)]
    members += [member(f"{deep}/f{i}", data=b"x") for i in range(5)]
    place(write_tar(tmp_path / "m.tar", members, mode="w"), tmp_path / "out", extract=True, overwrite=False)
    assert (tmp_path / "out" / deep / "f4").read_bytes() == b"x"
    components = sum(len(info.name.split("/")) + len(info.linkname.split("/")) for info, _ in members)
    assert len(folds) <= 4 * components, f"{len(folds)} folds for {components} path components"


def _unpack_counting(tmp_path, monkeypatch, members, name):
    """Unpack ``members`` into a fresh folder; the folders opened and the names folded meanwhile."""
    opens, folds, real_open = [], counted_folds(monkeypatch), os.open

    def counting_open(path, flags, *args, **kwargs):
        if flags & os.O_DIRECTORY:
            opens.append(path)
        return real_open(path, flags, *args, **kwargs)

    archive = write_tar(tmp_path / f"{name}.tar", members, mode="w")
    with monkeypatch.context() as patch:
        patch.setattr(extract.os, "open", counting_open)
        out = place(archive, tmp_path / name, extract=True, overwrite=False)
    work = (len(opens), len(folds))
    folds.clear()
    extract.remove_tree(out)  # pytest's own clean-up recurses once per level
    return work


def _nested(n):
    """'d', 'd/d', 'd/d/d', ...: ``n`` folder entries nested in each other."""
    return [member("/".join(["d"] * i), tarfile.DIRTYPE, mode=0o755) for i in range(1, n + 1)]


def _nested_with_links(n):
    """``n`` nested folders listed deepest first (their times are set last, in that order), each
    with a file, a symlink to it and a hard link to it."""
    members = []
    for i in range(n, 0, -1):
        folder = "/".join(["d"] * i)
        members += [member(folder, tarfile.DIRTYPE, mode=0o755), member(f"{folder}/f", data=b"x"),
                    member(f"{folder}/l", tarfile.SYMTYPE, linkname="f"),
                    member(f"{folder}/h", tarfile.LNKTYPE, linkname=f"{folder}/f")]
    return members


def test_nested_folder_entries_cost_work_linear_in_their_number(tmp_path, monkeypatch):
    # 'd', 'd/d', 'd/d/d', ...: 2,000 such entries (6.5 MB) took 75 s, 1,000 took 9 s. Each entry's
    # folder was opened again from the top, one level at a time, and each of its beginnings was
    # hashed (and its name folded) anew: cubic in the depth. Each entry now costs a few steps.
    opens_500, folds_500 = _unpack_counting(tmp_path, monkeypatch, _nested(500), "n500")
    opens_1000, folds_1000 = _unpack_counting(tmp_path, monkeypatch, _nested(1000), "n1000")
    assert opens_1000 <= 2.2 * opens_500 and opens_1000 <= 4 * 1000, (opens_500, opens_1000)
    assert folds_1000 <= 2.2 * folds_500 and folds_1000 <= 2 * 1000, (folds_500, folds_1000)


def test_files_and_links_in_nested_folders_cost_work_linear_in_their_number(tmp_path, monkeypatch):
    # The same few steps per entry for files, symlinks and hard links in them (see _nested_with_links).
    opens_250, folds_250 = _unpack_counting(tmp_path, monkeypatch, _nested_with_links(250), "n250")
    opens_500, folds_500 = _unpack_counting(tmp_path, monkeypatch, _nested_with_links(500), "n500")
    assert opens_500 <= 2.2 * opens_250, (opens_250, opens_500)
    assert folds_500 <= 2.2 * folds_250, (folds_250, folds_500)


def test_nested_names_cost_steps_linear_in_their_number(tmp_path):
    # Besides opening folders, each entry checked each of its beginnings (and made each one a
    # tuple, hashed whole): a step a component, N²/2 for N nested folders; a symlink's check
    # folded each component of its folder. The steps of the check and of the unpacking, without
    # the filesystem's own work.
    def listing(n):
        keys = [("/".join(["d"] * i) + "/", 0) for i in range(1, n + 1)]
        return counted_steps(extract, lambda: extract.check_listing(keys, noun="S3 key"))

    def unpacking(n):
        archive = write_tar(tmp_path / f"{n}.tar", _nested_with_links(n), mode="w")
        steps = counted_steps(extract, lambda: place(archive, tmp_path / f"out{n}", extract=True, overwrite=False))
        extract.remove_tree(tmp_path / f"out{n}")  # pytest's own clean-up recurses once per level
        return steps

    for count in (listing, unpacking):
        small, large = count(250), count(500)
        assert large <= 2.2 * small, (count.__name__, small, large)


def test_a_refused_model_1500_folders_deep_leaves_nothing(scene):
    # Its names stay under PATH_MAX; removing the half-written staging folder recursed once per
    # level (shutil.rmtree) and raised RecursionError: exit 4, and the staging folder stayed.
    deep = "/".join(["d"] * 1500)
    members = [member(deep, tarfile.DIRTYPE, mode=0o755), member(f"{deep}/f", data=b"x"),
               member("../escape", data=b"OWNED")]
    message = refused(scene, write_tar(scene[0] / "m.tar", members, mode="w"))
    assert "entry '../escape' climbs out with '..'" in message


def test_overwriting_a_model_1500_folders_deep(tmp_path):
    deep = "/".join(["d"] * 1500)
    old = write_tar(tmp_path / "old.tar", [member(deep, tarfile.DIRTYPE, mode=0o755), member(f"{deep}/f", data=b"x")])
    new = write_tar(tmp_path / "new.tar", [member("model.bin", data=b"new")])
    place(old, tmp_path / "out", extract=True, overwrite=False)
    place(new, tmp_path / "out", extract=True, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["new.tar", "old.tar", "out"]  # the old model is gone, whole
    assert os.listdir(tmp_path / "out") == ["model.bin"]


def test_remove_tree_follows_no_symlink(tmp_path):
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "precious.txt").write_text("precious")
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f").write_text("x")
    (tree / "a" / "out").symlink_to(tmp_path / "victim")
    (tree / "top-file").write_text("x")
    extract.remove_tree(tree)
    assert sorted(os.listdir(tmp_path)) == ["victim"]
    assert (tmp_path / "victim" / "precious.txt").read_text() == "precious"
    extract.remove_tree(tmp_path / "victim" / "precious.txt")  # a file: removed
    extract.remove_tree(tmp_path / "missing")  # nothing there: nothing to do
    assert os.listdir(tmp_path / "victim") == []


def test_symlink_to_the_top_then_up_is_refused(scene):
    # normpath('sub/up/../victim-dir') looks inside; the kernel goes sub/up -> top, then up and out.
    message = refused(scene, up_and_out(scene[0] / "m.tar.gz"))
    assert "entry 'escape' is a symlink to 'sub/up/../victim-dir', which leads outside" in message


def test_a_later_symlink_cannot_turn_an_earlier_one_outwards(scene):
    # 't -> s/../x' is inside while 's' is nothing; 's -> .' is inside; together t leads out.
    message = refused(scene, write_tar(scene[0] / "m.tar.gz", [
        member("t", tarfile.SYMTYPE, linkname="s/../victim-dir"),
        member("s", tarfile.SYMTYPE, linkname="."),
    ]))
    assert "entry 't' is a symlink to 's/../victim-dir', which leads outside" in message


@pytest.mark.parametrize("members,expected", [
    ([member("a", tarfile.SYMTYPE, linkname="b"), member("b", tarfile.SYMTYPE, linkname="a")],
     "entry 'b' is a symlink to 'a', which goes through more than 40 symlinks"),
    ([member("f", data=b"x"), member("f/g", data=b"y")], "entry 'f/g' passes through 'f', which is a file"),
    ([member("d", tarfile.SYMTYPE, linkname="real"), member("real", tarfile.DIRTYPE),
      member("d/inner.txt", data=b"x")], "entry 'd/inner.txt' passes through the symlink 'd'"),
    ([member("x", data=b"1"), member("x", tarfile.DIRTYPE)], "appears twice in the archive (as a file, then as a dir)"),
    ([member("x", tarfile.SYMTYPE, linkname="y"), member("x", data=b"1")], "appears twice"),
    ([member(".", data=b"1")], "names the target folder itself"),
    ([member("f", data=b"1"), member("h", tarfile.LNKTYPE, linkname="f\udcff")],
     "entry 'h' has a link target that is not valid UTF-8"),
    ([member("evil\n\x1b[2J/../../x", data=b"1")], "entry 'evil\\n\\x1b[2J/../../x' climbs out with '..'"),
    ([member("blk", tarfile.BLKTYPE)], "is a device or pipe"),
    ([member("odd", b"Q")], "unknown type"),
    ([member("nul", tarfile.SYMTYPE, linkname="/")], "leads outside"),
    # On a filesystem that ignores case (macOS), 'S' is 's': both readings must stay inside.
    ([member("t", tarfile.SYMTYPE, linkname="s/../victim-dir"), member("S", tarfile.SYMTYPE, linkname=".")],
     "entry 't' is a symlink to 's/../victim-dir', which leads outside"),
    ([member("D", tarfile.SYMTYPE, linkname="real"), member("d/inner.txt", data=b"x")],
     "entry 'd/inner.txt' passes through the symlink 'd'"),
])
def test_other_hostile_entries(scene, members, expected):
    assert expected in refused(scene, write_tar(scene[0] / "m.tar.gz", members))


# -- hard links ---------------------------------------------------------------------------------


@pytest.mark.parametrize("members,bad", [
    ([member("h", tarfile.LNKTYPE, linkname="nowhere.bin")], "h"),
    ([member("h", tarfile.LNKTYPE, linkname="later.bin"), member("later.bin", data=b"x")], "h"),
    ([member("d", tarfile.DIRTYPE), member("h", tarfile.LNKTYPE, linkname="d")], "h"),
    ([member("f", data=b"x"), member("s", tarfile.SYMTYPE, linkname="f"),
      member("h", tarfile.LNKTYPE, linkname="s")], "h"),
    ([member("sub/f", data=b"x"), member("s", tarfile.SYMTYPE, linkname="sub"),
      member("h", tarfile.LNKTYPE, linkname="s/f")], "h"),
    ([member("f", data=b"x"), member("f", tarfile.LNKTYPE, linkname="f")], "f"),
])
def test_hard_link_must_point_to_an_earlier_file(scene, members, bad):
    message = refused(scene, write_tar(scene[0] / "m.tar.gz", members))
    assert f"entry {bad!r}" in message
    assert "is not a file that comes earlier in the archive" in message or "appears twice" in message


def test_good_archive_keeps_its_tree(tmp_path, as_source):
    long_name = "deep/" + "n" * 120 + "/modèle-poids.json"
    archive = write_tar(tmp_path / "m.tar.gz", [
        member("./", tarfile.DIRTYPE, mode=0o755),
        member("./run.sh", data=b"#!/bin/sh\n", mode=0o755),
        member("./empty.bin", data=b""),
        member("./empty-dir", tarfile.DIRTYPE, mode=0o755),
        member(long_name, data=b"{}"),
        member("weights.bin", data=b"w" * 3000),
        member("same.bin", tarfile.LNKTYPE, linkname="weights.bin"),
        member("sub/up", tarfile.SYMTYPE, linkname="../weights.bin"),
        member("top", tarfile.SYMTYPE, linkname="."),
        member("weights.bin", data=b"v2"),  # a later copy replaces a file, as with tar
        member("setuid", data=b"x", mode=0o4777),
    ])
    target = place(as_source(archive), tmp_path / "out", extract=True, overwrite=False)
    assert os.access(target / "run.sh", os.X_OK) and not os.access(target / "empty.bin", os.X_OK)
    assert (target / "empty.bin").read_bytes() == b"" and (target / "empty-dir").is_dir()
    assert (target / long_name).read_bytes() == b"{}"
    assert (target / "weights.bin").read_bytes() == b"v2"
    assert (target / "same.bin").read_bytes() == b"w" * 3000  # linked to the first copy, as tar does
    assert os.readlink(target / "sub" / "up") == "../weights.bin"
    assert (target / "setuid").stat().st_mode & 0o7777 == 0o755
    assert (target / "run.sh").stat().st_mtime == 1_700_000_000


# -- sizes, checked while streaming -------------------------------------------------------------


@pytest.fixture
def reads(monkeypatch):
    """How many bytes of the downloaded archive extraction has read."""
    count = {"bytes": 0}
    real = extract._open_raw

    class Counting:
        def __init__(self, path):
            self.file = real(path)

        def read(self, size=-1):
            data = self.file.read(size)
            count["bytes"] += len(data)
            return data

        def __getattr__(self, name):
            return getattr(self.file, name)

    monkeypatch.setattr(extract, "_open_raw", Counting)
    return count


def test_ten_gib_of_zeros_is_refused_after_reading_its_first_header(scene, reads, monkeypatch):
    archive = zero_bomb(scene[0] / "bomb.tar.gz", 10 * GiB)
    assert archive.stat().st_size < 12 * MiB
    monkeypatch.setenv("FAHR_MAX_MODEL_BYTES", "1G")
    message = refused(scene, archive, ModelTooLarge)
    assert "more than 1.0 GiB (at entry 'zeros.bin')" in message and "FAHR_MAX_MODEL_BYTES" in message
    assert reads["bytes"] < 1 * MiB  # one header decompressed, not 10 GiB


def test_ten_gib_of_zeros_is_refused_by_the_free_space(scene, reads, monkeypatch):
    archive = zero_bomb(scene[0] / "bomb.tar.gz", 10 * GiB)
    monkeypatch.setattr(extract, "free_space", lambda folder: extract.FreeSpace(5 * GiB, None, 4096))
    message = refused(scene, archive, ModelTooLarge)
    assert "needs more than the 5.0 GiB free on the filesystem of" in message and "'zeros.bin'" in message
    assert reads["bytes"] < 1 * MiB


def random_parts(path, count, size, seed=7):
    rng = random.Random(seed)
    return write_tar(path, [member(f"part-{i}", data=rng.randbytes(size)) for i in range(count)])


def test_cap_stops_decompression_at_the_entry_that_crosses_it(scene, reads, monkeypatch):
    archive = random_parts(scene[0] / "m.tar.gz", 24, 512 * 1024)  # 12 MiB that gzip cannot shrink
    monkeypatch.setenv("FAHR_MAX_MODEL_BYTES", "2M")
    message = refused(scene, archive, ModelTooLarge)
    assert "(at entry 'part-3')" in message  # the 4th half-MiB crosses 2 MiB (with its headers)
    assert reads["bytes"] < 3 * MiB < archive.stat().st_size


@pytest.mark.parametrize("space,crossing", [
    (extract.FreeSpace(3 * MiB, None, 4096), "part-2"),  # 1 MiB margin: room for two
    (extract.FreeSpace(1 * GiB, 3, 4096), "part-3"),  # no inode for a fourth file
])
def test_free_space_is_checked_per_entry(scene, reads, monkeypatch, space, crossing):
    archive = random_parts(scene[0] / "m.tar.gz", 8, 1 * MiB)
    monkeypatch.setattr(extract, "free_space", lambda folder: space)
    message = refused(scene, archive, ModelTooLarge)
    assert f"(at entry {crossing!r})" in message
    assert reads["bytes"] < 5 * MiB < archive.stat().st_size


def test_a_huge_extended_header_is_not_read_into_memory(scene, reads):
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, 10 * GiB
    bomb = scene[0] / "pax.tar.gz"
    bomb.write_bytes(gzip.compress(info.tobuf(tarfile.GNU_FORMAT) + bytes(64 * MiB)))
    message = refused(scene, bomb, DamagedArchive)
    assert "an extended tar header claims 10737418240 bytes" in message
    assert reads["bytes"] < 1 * MiB


def test_a_bomb_after_the_end_of_the_archive_is_not_decompressed(scene, reads):
    bomb = zero_bomb(scene[0] / "zeros.tar.gz", 10 * GiB).read_bytes()
    model = write_tar(scene[0] / "m.tar.gz", [member("ok.txt", data=b"ok")])
    with open(model, "ab") as out:
        out.write(bomb)  # gzip members may follow each other: this is one valid gzip file
    message = refused(scene, model, DamagedArchive)
    assert "it holds more than 1.0 MiB after its end-of-archive marker" in message
    assert reads["bytes"] < 1 * MiB


@pytest.mark.parametrize("value,expected", [
    ("", 64 * GiB), ("1000", 1000), ("64G", 64 * GiB), ("10MiB", 10 * MiB), ("5 k", 5 * 1024), ("2T", 2 * 1024**4),
])
def test_max_model_bytes(monkeypatch, value, expected):
    monkeypatch.setenv("FAHR_MAX_MODEL_BYTES", value)
    assert extract.max_model_bytes() == expected


@pytest.mark.parametrize("value", ["abc", "-1", "0", "1.5G", "12X", "9" * 30, "G"])
def test_max_model_bytes_refuses_nonsense(monkeypatch, tmp_path, value):
    monkeypatch.setenv("FAHR_MAX_MODEL_BYTES", value)
    with pytest.raises(UsageError, match=r"^FAHR_MAX_MODEL_BYTES=.* is not a size; give a number of bytes"):
        extract.max_model_bytes()


# -- damaged archives and impossible names ----------------------------------------------------------


def good_bytes(tmp_path):
    return random_parts(tmp_path / "good.tar.gz", 3, 20_000).read_bytes()


@pytest.mark.parametrize("cut", [1, 10, 100, 1000, -1000, -9, -1])
def test_truncated_gzip(scene, cut):
    data = good_bytes(scene[0])
    (scene[0] / "m.tar.gz").write_bytes(data[:cut])
    assert "is not a readable tar archive" in refused(scene, scene[0] / "m.tar.gz", DamagedArchive)


def test_bad_crc(scene):
    data = bytearray(good_bytes(scene[0]))
    data[-6] ^= 0xFF  # in the CRC of the gzip trailer
    (scene[0] / "m.tar.gz").write_bytes(bytes(data))
    assert "compressed data is damaged" in refused(scene, scene[0] / "m.tar.gz", DamagedArchive)


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes(scene, seed):
    data = random.Random(seed).randbytes(5000)
    if seed % 2:
        data = b"\x1f\x8b\x08\x00" + data  # looks like gzip
    (scene[0] / "m.tar.gz").write_bytes(data)
    assert "is not a readable tar archive" in refused(scene, scene[0] / "m.tar.gz", DamagedArchive)


def test_raw_tar_without_its_end_is_refused(scene):
    raw = write_tar(scene[0] / "raw.tar", [member("a", data=b"x" * 2000), member("b", data=b"y" * 2000)], mode="w")
    data = raw.read_bytes()
    (scene[0] / "m.tar").write_bytes(data[: 512 + 2048])  # a's header and data, then nothing
    raw.unlink()
    assert "ends before its end-of-archive marker" in refused(scene, scene[0] / "m.tar", DamagedArchive)


def test_name_longer_than_name_max(scene):
    message = refused(scene, write_tar(scene[0] / "m.tar.gz", [member("m" * 300, data=b"x")]))
    assert "'mmmmmmmmmm" in message and "(300 characters)" in message
    assert "path component of 300 bytes, more than a file name may have (255)" in message


def test_name_longer_than_path_max(scene):
    name = "/".join(["p" * 200] * 21)
    assert "more than a path may have" in refused(scene, write_tar(scene[0] / "m.tar.gz", [member(name, data=b"x")]))


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_invalid_utf8_name(scene, fmt):
    archive = write_tar(scene[0] / "m.tar.gz", [member("ok.txt", data=b"x"), member("bad-\udcff.bin", data=b"x")],
                        format=fmt, encoding="utf-8", errors="surrogateescape")
    message = refused(scene, archive)
    assert "entry 'bad-\\udcff.bin' has a name that is not valid UTF-8" in message


# -- a model that arrives as a folder: the same rules ------------------------------------------------


def test_folder_with_a_symlink_leading_out_is_refused(scene, tmp_path):
    source = tmp_path / "files"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "up").symlink_to("..")
    (source / "escape").symlink_to("sub/up/../victim-dir")  # walked before sub/up: caught at the end
    before = scene[2]
    with pytest.raises(UnsafeArchive, match="entry 'escape' is a symlink to 'sub/up/../victim-dir', which leads"):
        place(source, scene[1], extract=True, overwrite=True)
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("files")} == before


@pytest.mark.parametrize("make,expected", [
    (lambda p: os.mkfifo(p / "pipe"), "'pipe' is a device or pipe"),
    (lambda p: (p / "abs").symlink_to("/etc/passwd"), "'abs' is a symlink to '/etc/passwd', which leads outside"),
])
def test_folder_with_special_entries_is_refused(tmp_path, make, expected):
    source = tmp_path / "files"
    source.mkdir()
    (source / "ok.txt").write_text("ok")
    make(source)
    with pytest.raises(UnsafeArchive, match=expected):
        place(source, tmp_path / "out", extract=True, overwrite=False)
    assert not (tmp_path / "out").exists() and sorted(os.listdir(tmp_path)) == ["files"]


def test_folder_keeps_links_and_modes(tmp_path):
    source = tmp_path / "files"
    (source / "sub").mkdir(parents=True)
    (source / "w.bin").write_bytes(b"w")
    os.link(source / "w.bin", source / "sub" / "again.bin")
    (source / "sub" / "up").symlink_to("../w.bin")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    target = place(source, tmp_path / "out", extract=True, overwrite=False)
    assert (target / "sub" / "again.bin").stat().st_ino == (target / "w.bin").stat().st_ino
    assert os.readlink(target / "sub" / "up") == "../w.bin"
    assert os.access(target / "run.sh", os.X_OK)


def test_folder_larger_than_the_cap_is_refused(tmp_path, monkeypatch):
    source = tmp_path / "files"
    source.mkdir()
    for i in range(3):
        (source / f"f{i}").write_bytes(bytes(1000))
    monkeypatch.setenv("FAHR_MAX_MODEL_BYTES", "2500")
    with pytest.raises(ModelTooLarge, match="at entry 'f2'"):
        place(source, tmp_path / "out", extract=True, overwrite=False)
    assert sorted(os.listdir(tmp_path)) == ["files"]


def test_a_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    # The free-space probe is made to lie, as if another program filled the disk meanwhile.
    import subprocess

    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        archive = random_parts(tmp_path / "m.tar.gz", 6, 512 * 1024)
        monkeypatch.setattr(extract, "free_space", lambda folder: extract.FreeSpace(1 * GiB, None, 4096))
        with pytest.raises(UsageError, match=r"^cannot unpack entry 'part-\d' beside .*: No space left on device; "
                                             "nothing was written$"):
            place(archive, disk / "out", extract=True, overwrite=False)
        assert os.listdir(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# -- a model that arrives as a stream: what only a stream can do ----------------------------------


class Failing(OneWay):
    """A download that breaks off after ``after`` bytes, raising ``error``."""

    def __init__(self, path, after, error):
        super().__init__(path, most=64 * 1024)
        self.after, self.error, self.given = after, error, 0

    def read(self, size=-1):
        if self.given >= self.after:
            raise self.error
        data = super().read(size)
        self.given += len(data)
        return data


def test_a_stream_in_tiny_reads_arrives_whole(tmp_path):
    archive = random_parts(tmp_path / "m.tar.gz", 3, 50_000)
    stream = OneWay(archive, most=7)
    target = place(stream, tmp_path / "out", extract=True, overwrite=False)
    rng = random.Random(7)
    assert [(target / f"part-{i}").read_bytes() == rng.randbytes(50_000) for i in range(3)] == [True] * 3
    assert stream.closed and sorted(os.listdir(tmp_path)) == ["m.tar.gz", "out"]


@pytest.mark.parametrize("error,kind,expected", [
    (ConnectionResetError(104, "Connection reset by peer"), extract.SourceFailed,
     "^reading the model failed: \\[Errno 104\\] Connection reset by peer; nothing was written; fetch it again$"),
    (extract.EnvironmentProblem("cannot reach AWS while downloading s3://b/m.tar.gz"), extract.EnvironmentProblem,
     "^cannot reach AWS while downloading s3://b/m.tar.gz$"),
])
def test_a_stream_that_fails_midway_is_its_own_error_and_leaves_the_target(tmp_path, error, kind, expected):
    # Not "a damaged archive": the download failed, and its one line (and exit code) says so.
    root, target = tmp_path, tmp_path / "work" / "out"
    target.mkdir(parents=True)
    (target / "old-model.bin").write_bytes(b"old")
    archive = random_parts(root / "m.tar.gz", 8, 256 * 1024)
    before = {k: v for k, v in snapshot(root).items() if k != "m.tar.gz"}
    stream = Failing(archive, 1024 * 1024, error)
    with pytest.raises(kind, match=expected) as caught:
        place(stream, target, extract=True, overwrite=True)
    assert caught.value.exit_code == 3
    assert stream.closed and stream.given >= 1024 * 1024  # it failed midway, with files written to staging
    assert {k: v for k, v in snapshot(root).items() if k != "m.tar.gz"} == before


def test_a_stream_is_closed_when_the_target_is_refused_before_reading(tmp_path):
    archive = make_tar(tmp_path / "m.tar.gz", [({"name": "new.txt"}, b"new")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    stream = OneWay(archive)
    with pytest.raises(UsageError, match="not empty"):
        place(stream, tmp_path / "out", extract=True, overwrite=False)
    assert stream.closed and (tmp_path / "out" / "old.txt").read_text() == "old"


@pytest.mark.parametrize("name,kept", [("weights.tar.gz", "weights.tar.gz"), (None, "model.tar.gz"),
                                       ("..", "model.tar.gz"), ("/abs/dir/x.tar", "x.tar")])
def test_no_extract_writes_the_stream_under_its_name(tmp_path, name, kept):
    archive = make_tar(tmp_path / "m.tar.gz", [({"name": "a.txt"}, b"a")])
    stream = OneWay(archive)
    stream.name = name
    target = place(stream, tmp_path / "out", extract=False, overwrite=False)
    assert os.listdir(target) == [kept] and (target / kept).read_bytes() == archive.read_bytes()
    assert stream.closed


def test_no_extract_of_a_stream_larger_than_the_free_space(tmp_path, monkeypatch):
    archive = random_parts(tmp_path / "m.tar.gz", 4, 1 * MiB)
    monkeypatch.setattr(extract, "free_space", lambda folder: extract.FreeSpace(3 * MiB, None, 4096))
    stream = OneWay(archive)
    with pytest.raises(ModelTooLarge, match="^refusing the model: m.tar.gz does not fit in the 2.0 MiB free"):
        place(stream, tmp_path / "out", extract=False, overwrite=False)
    assert stream.closed and os.listdir(tmp_path) == ["m.tar.gz"]


def test_refused_links_are_the_ones_the_extractor_would_refuse_and_only_those():
    sub_up, x = ("sub", "up"), ("x",)
    assert extract.refused_links([(sub_up, ".."), (x, "sub/up/../../y")]) == {x}  # out only through sub/up
    assert extract.refused_links([(sub_up, ".."), (("ok",), "sub/up/a.pt")]) == set()
    assert extract.refused_links([(("abs",), "/etc"), (("up",), "../etc")]) == {("abs",), ("up",)}
    # Checked as each comes, as the extractor does: a link leading out until a later one exists.
    assert extract.refused_links([(("a",), "z/../.."), (("z",), "sub/deeper")]) == {("a",)}
    # On a filesystem that ignores case, 'S/up' is the link 's/up'.
    assert extract.refused_links([(("s", "up"), ".."), (x, "S/up/../../y")]) == {x}
    loop = [((f"l{i}",), f"l{i + 1}") for i in range(50)]  # more than 40 links in a row
    assert ("l0",) in extract.refused_links(loop)


def test_refused_links_costs_what_the_links_cost_not_their_square():
    # 10,000 links that stay inside, then 10,000 that lead out: each refusal used to rebuild the
    # folded map of all the links kept (100 million steps, minutes); now each costs its own.
    n = 10_000
    inside = [((f"g{i}",), "x") for i in range(n)]
    out = [((f"b{i}",), "../x") for i in range(n)]
    started = time.monotonic()
    assert extract.refused_links(inside + out) == {path for path, _ in out}
    assert time.monotonic() - started < 10  # about 0.4 s here; quadratic, it took minutes
    # A refused link takes only itself out of the folded map: 'S' still leads into d/e there.
    assert extract.refused_links([(("S",), "d/e"), (("s",), ".."), (("x",), "S/../..")]) == {("s",)}
