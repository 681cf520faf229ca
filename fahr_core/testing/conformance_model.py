"""fahr's conformance model: it reports what it received, fails, sleeps, or writes a tree.

The suite writes this file's own text as the ``train.py`` of its models (``CONFORMANCE_MODEL``),
so it runs inside the job and uses the standard library only. Its behaviour is selected by the
``mode`` hyperparameter. The suite imports ``build_tree``, ``tree_manifest`` and
``long_failure_reason`` from here too, so the job and the checks share one copy of each.
"""

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

#: How long the model's SIGTERM handler takes to save its marker: a stop must grant more.
SIGTERM_WORK_SECONDS = 2
#: The variable the suite sets with ``--env``; the model reports what it saw.
ENV_NAME = "FAHR_CONFORMANCE_ENV"
# Given with --secret: the model reports the hash of what it got, never the value.
SECRET_NAME = "CONFORMANCE_SECRET"


def build_tree(root, tag):
    """Write, under ``root``, a tree of every kind of entry packing can get wrong.

    Self-contained (its imports inside): tests embed its source in models of their own.
    """
    import os

    def write(rel, data, mode=None):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(path, mode)
        return path

    tag = tag.encode()
    long_dir = "/".join(f"l{i}" + "x" * 58 for i in range(5))  # 304 characters: over 255 in all
    write("modèle-poids.json", b'{"weights": [1, 2]} ' + tag)  # non-ASCII
    write("deep/" + "a" * 50 + "/" + "b" * 50 + "/weights.bin", b"over 100 " + tag)
    far = write(long_dir + "/far.bin", b"over 255 " + tag)
    write("c" * 196 + ".txt", b"a 200-character name " + tag)
    # Hard link pairs: one whose first name is long (tar stores the link under the other name).
    os.makedirs(os.path.join(root, "shards"))
    os.link(far, os.path.join(root, "shards", "part-0.bin"))
    os.link(write("head.bin", b"short names " + tag), os.path.join(root, "tail.bin"))
    os.symlink("modèle-poids.json", os.path.join(root, "latest.json"))  # to a file
    os.symlink("../deep", os.path.join(root, "shards", "deep-link"))  # to a folder, through ..
    os.makedirs(os.path.join(root, "empty", "inner-empty"))
    write("bin/run.sh", b"#!/bin/sh\necho " + tag + b"\n", 0o755)
    write("private.bin", b"owner only " + tag, 0o600)
    write("zero.bin", b"")
    # Distinct mtimes, deepest first, after everything is written (writing changes a folder's).
    paths = [os.path.join(d, n) for d, ds, fs in os.walk(root) for n in ds + fs]
    for i, path in enumerate(sorted(paths, key=lambda p: (-p.count("/"), p))):
        if not os.path.islink(path):
            os.utime(path, (1_600_000_000 + 60 * i,) * 2)


def tree_manifest(root, skip=()):
    """Every entry under ``root`` but ``skip``: kind, sha256, size, permission bits, mtime,
    symlink target; and the groups of paths sharing an inode. Self-contained, as ``build_tree``."""
    import hashlib
    import os
    import stat
    entries, inodes = {}, {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if rel in skip:
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = {"type": "symlink", "target": os.readlink(path)}
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = {"type": "dir", "mtime": int(st.st_mtime)}
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                entries[rel] = {"type": "file", "sha256": digest, "size": st.st_size,
                                "mode": oct(stat.S_IMODE(st.st_mode)), "mtime": int(st.st_mtime)}
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            else:
                entries[rel] = {"type": "other"}
    return {"entries": entries, "hardlinks": sorted(sorted(group) for group in inodes.values())}


def long_failure_reason(token):
    """The 3000-character failure the model writes; its first 1024 characters are the reason."""
    return ("ConformanceError: " + token + " " + "".join(f"{i:04d}." for i in range(600)))[:3000]


def read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main():
    opt = Path("/opt/ml")
    hp = json.loads((opt / "input/config/hyperparameters.json").read_text())
    mode = hp.get("mode", "ok")

    def on_sigterm(signum, frame):
        # A model saving a checkpoint: it needs the grace period a stop must give.
        time.sleep(SIGTERM_WORK_SECONDS)
        for folder in (opt / "checkpoints", opt / "output/data"):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "stopped.txt").write_text("SIGTERM " + hp.get("token", ""))
        print("conformance model: SIGTERM received " + hp.get("token", ""), flush=True)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    print(f"conformance model: mode={mode}", flush=True)
    if mode == "fail":
        (opt / "output").mkdir(parents=True, exist_ok=True)
        (opt / "output/failure").write_text(long_failure_reason(hp.get("token", "")))
        print("failing on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "crash":
        raise RuntimeError(f"crashed without a failure file {hp.get('token', '')}")
    if mode == "empty":  # completes, its model folder holding a folder and no file
        (opt / "model" / "nothing-here").mkdir(parents=True, exist_ok=True)
        print("conformance model: saved no model", flush=True)
        sys.exit(0)
    if mode == "sleep":
        print("sleeping until stopped", flush=True)
        time.sleep(3600)
        sys.exit(0)
    if float(hp.get("linger", 0)):
        print("conformance model: lingering", flush=True)
        time.sleep(float(hp["linger"]))
    model = opt / "model"
    if mode == "tree":
        build_tree(str(model), hp.get("token", ""))
        found = tree_manifest(str(model))
        (model / "conformance-manifest.json").write_text(json.dumps(found))
        print("conformance model: done", flush=True)
        sys.exit(0)
    channels = {}
    data = opt / "input/data"
    for channel in sorted(p for p in data.iterdir() if p.is_dir()) if data.is_dir() else []:
        channels[channel.name] = {
            str(f.relative_to(channel)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(channel.rglob("*")) if f.is_file()
        }
    (model / "nested" / "deeper").mkdir(parents=True, exist_ok=True)
    payload = hashlib.sha256(hp.get("token", "").encode()).digest() * 32768  # 1 MiB, token-specific
    (model / "nested" / "deeper" / "weights.bin").write_bytes(payload)
    report = {
        "hyperparameters": hp,
        "channels": channels,
        "environment": {k: os.environ.get(k)
                        for k in ("FAHR_EXECUTION_ENVIRONMENT", "TRAINING_JOB_NAME", "TRAINING_JOB_ARN", ENV_NAME)},
        "resourceconfig": read_json(opt / "input/config/resourceconfig.json"),
        "inputdataconfig": read_json(opt / "input/config/inputdataconfig.json"),
        "weights_sha256": hashlib.sha256(payload).hexdigest(),
        "secret_sha256": (hashlib.sha256(os.environ[SECRET_NAME].encode()).hexdigest()
                          if SECRET_NAME in os.environ else None),
    }
    (model / "report.json").write_text(json.dumps(report, indent=2))
    if mode == "link":
        os.symlink("../../../../../../../../../tmp", model / "escape")
        os.symlink("/etc", model / "absolute")
    (opt / "output/data").mkdir(parents=True, exist_ok=True)
    (opt / "output/data/notes.txt").write_text("output data of " + hp.get("token", ""))
    print("conformance model: done", flush=True)


if __name__ == "__main__":
    main()
