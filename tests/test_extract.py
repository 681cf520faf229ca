"""Safe extraction of fetched models: malicious archives are built here, in the test."""

import io
import os
import tarfile

import pytest

from fahr_core.extract import UnsafeArchive, place
from fahr_core.errors import UsageError


def make_tar(path, members):
    """members: list of (TarInfo-kwargs, bytes-or-None)."""
    with tarfile.open(path, "w:gz") as tar:
        for fields, data in members:
            info = tarfile.TarInfo(fields.pop("name"))
            for k, v in fields.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def test_good_archive_lands_in_target(tmp_path):
    archive = make_tar(tmp_path / "model.tar.gz", [
        ({"name": "model.json"}, b"{}"),
        ({"name": "sub", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
        ({"name": "sub/weights.bin"}, b"\x00\x01"),
        ({"name": "sub/link", "type": tarfile.SYMTYPE, "linkname": "weights.bin"}, None),
    ])
    target = place(archive, tmp_path / "out", extract=True, overwrite=False)
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
def test_malicious_archives_are_refused_and_nothing_is_written(tmp_path, member, message):
    archive = make_tar(tmp_path / "model.tar.gz", [({"name": "ok.txt"}, b"fine"), member])
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchive, match=message):
        place(archive, target, extract=True, overwrite=False)
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


def test_failed_overwrite_keeps_the_old_model(tmp_path):
    archive = make_tar(tmp_path / "m.tar.gz", [({"name": "../evil"}, b"x")])
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(UnsafeArchive):
        place(archive, target, extract=True, overwrite=True)
    assert (target / "old.txt").read_text() == "old"


def test_no_extract_keeps_the_archive(tmp_path):
    archive = make_tar(tmp_path / "model.tar.gz", [({"name": "../evil"}, b"x")])
    target = place(archive, tmp_path / "out", extract=False, overwrite=False)
    assert (target / "model.tar.gz").read_bytes() == archive.read_bytes()


def test_corrupt_archive(tmp_path):
    bad = tmp_path / "model.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(UsageError, match="not a readable tar archive"):
        place(bad, tmp_path / "out", extract=True, overwrite=False)
    assert not (tmp_path / "out").exists()


def test_uncompressed_model_folder(tmp_path):
    source = tmp_path / "files"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "w.bin").write_bytes(b"w")
    target = place(source, tmp_path / "out", extract=True, overwrite=False)
    assert (target / "sub" / "w.bin").read_bytes() == b"w"
