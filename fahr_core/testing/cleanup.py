"""``CleanupContract``: nothing of a job outlives it; and the default finders of what a job left
behind (Docker containers and networks, temporary files)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterable, Mapping


def _docker_leftovers(job_name: str, env: Mapping[str, str]) -> list[str]:
    """Containers and networks of the engine whose name or labels hold ``job_name``."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return []
    try:
        client = docker.from_env(environment=dict(env))
        client.ping()
    except DockerException:  # no engine (a driver that needs none): there is nothing of it to leave
        return []
    try:
        containers = [(c.name, c.labels) for c in client.containers.list(all=True, ignore_removed=True)]
        networks = [(n.name, n.attrs.get("Labels") or {}) for n in client.networks.list()]
    finally:
        client.close()
    found = []
    for kind, items in (("container", containers), ("network", networks)):
        for name, labels in items:
            if job_name in name or any(job_name in f"{k}={v}" for k, v in (labels or {}).items()):
                found.append(f"docker {kind} {name}")
    return found


def _temp_leftovers(job_name: str, roots: Iterable[tuple[Path, bool]]) -> list[str]:
    """Files and folders named after the job in ``roots``: ``(folder, whole)``, searched whole or
    only at the top (the system's temporary folder is shared with everything on the machine)."""
    found = []
    for root, whole in roots:
        if not root.is_dir():
            continue
        with contextlib.suppress(OSError):
            entries = root.rglob("*") if whole else root.iterdir()
            found += [f"temporary file {p}" for p in entries if job_name in p.name]
    return found

class CleanupContract:
    """Nothing of a job outlives it: containers, networks, temporary files."""

    def test_nothing_is_left_behind(self, fahr, trained, failed, leftovers):
        jobs = list(dict.fromkeys([trained["job"], failed["job"], *fahr.jobs]))
        deadline = time.monotonic() + 30  # a backend may take a moment to remove what a job used
        while True:
            left = [item for job in jobs for item in leftovers(job)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert not left, f"left behind by the suite's jobs {jobs}: {left}"
