"""Where a job's model came from: the project folder it was built from, and its git commit.

A model tag names the artifact's folder and stem only (``projA/src/train.py`` and
``projB/src/train.py`` are both ``src/train``), so each job also records its project folder: the
artifact's folder, absolute and resolved. ``fahr fetch TAG`` run in a folder then prefers the
jobs built from the project that folder names (:func:`project_of_fetch`; README, ``fahr fetch``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

#: How long git may take to answer (a slow network file system, a huge work tree): a fit never
#: waits on it longer, and never fails for it.
_GIT_SECONDS = 5

#: How many entries of the current folder a fetch looks at for the project a tag names (a folder
#: of a million files must not make `fahr fetch` slow).
_SCAN_MAX = 10_000


def project_folder(folder: Path) -> str:
    """``folder`` as jobs record it: absolute, links resolved (``/tmp`` and ``/private/tmp`` are one)."""
    return os.path.realpath(folder)


def git_commit(folder: Path) -> str:
    """``git rev-parse HEAD`` in ``folder``, ``-dirty`` appended when tracked files differ from it;
    '' when git is not installed, ``folder`` is in no work tree (or one without a commit), or git
    does not answer in time. Reads only: git takes no lock (``GIT_OPTIONAL_LOCKS=0``)."""
    git = shutil.which("git")
    if git is None:
        return ""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}

    def ask(*args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run([git, "-C", str(folder), *args], capture_output=True, text=True, env=env,
                                  timeout=_GIT_SECONDS, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError, UnicodeError):
            return None

    head = ask("rev-parse", "--verify", "--quiet", "HEAD")
    commit = head.stdout.strip() if head is not None and head.returncode == 0 else ""
    if not commit or not all(c in "0123456789abcdef" for c in commit):
        return ""
    status = ask("status", "--porcelain", "--untracked-files=no")
    if status is not None and status.returncode == 0 and status.stdout.strip():
        return f"{commit}-dirty"
    return commit


def project_of_fetch(folder: Path, model_tag: str) -> str | None:
    """The project a ``fahr fetch`` of ``model_tag`` run in ``folder`` means, as jobs record it,
    or None when ``folder`` names none.

    A tag's first part is its artifact's folder (``src/train``: ``src/train.py``), so the project
    is ``folder/src`` when that is a folder (``cd projA && fahr fetch ./model src/train`` means
    ``projA/src``), else ``folder`` itself when it is that folder (run in ``projA/src``).
    """
    from fahr_core import names
    from fahr_core.errors import UsageError

    part = model_tag.split("/")[0]

    def tag_part(name: str) -> str | None:  # a folder's name as a tag has it ('My Src' -> 'my-src')
        try:
            return names.model_image_tag(Path("/", name, "train.py")).split("/")[0]
        except UsageError:  # a folder whose name makes no tag (no letter or digit in it) is no tag's
            return None

    inside = Path(folder) / part
    if inside.is_dir():
        return project_folder(inside)
    # The tag's part is the folder's name cleaned up (lowercased, ASCII): `RfollowCase` is
    # `rfollowcase`. One sub-folder of that tag part is the project; several are no one project.
    matches = []
    try:
        with os.scandir(folder) as entries:
            for entry in itertools.islice(entries, _SCAN_MAX):
                if entry.is_dir() and tag_part(entry.name) == part:
                    matches.append(entry.path)
    except OSError:
        pass
    if len(matches) == 1:
        return project_folder(Path(matches[0]))
    if matches:
        return None
    here = Path(folder).absolute()
    return project_folder(here) if tag_part(here.name) == part else None
