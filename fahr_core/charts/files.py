"""A chart image written to a file the user names: PNG, SVG or HTML by its extension, whole or not
at all (a temporary file in the same folder renamed over the name: fahr_core.jobfolder.replacing_in)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Sequence

from fahr_core.charts import EXTENSIONS, HEIGHT, MAX_IMAGE_CHARTS, WIDTH, Chart
from fahr_core.errors import EnvironmentProblem, UsageError


def kind_of(path: Path) -> str:
    """``png``, ``svg`` or ``html``; another extension is a UsageError naming those it takes."""
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise UsageError(f"--plot {path}: an image is written as {', '.join(EXTENSIONS)} (by the file's "
                         f"extension), not {suffix or 'a name without one'}")
    return suffix[1:]


def check(path: Path) -> str:
    """What can be refused before any job is read: the extension, a folder at the name, a
    folder to write in that is not one."""
    kind = kind_of(path)
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            raise UsageError(f"--plot {path}: is a folder; name a file in it (e.g. {path / ('metrics.' + kind)})")
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UsageError(f"--plot {path}: {exc.strerror}") from None
    if not path.parent.is_dir():
        raise UsageError(f"--plot {path}: the folder {path.parent} does not exist; make it first")
    return kind


def size(charts: Sequence[Chart]) -> tuple[int, int]:
    """An image's width and height in pixels: the charts stacked."""
    return WIDTH, HEIGHT * max(len(charts), 1)


def write(path: Path, charts: Sequence[Chart], title: str = "fahr metrics") -> Path:
    """The charts as the image ``path``'s extension names, written whole (a failure leaves
    ``path`` as it was and nothing beside it)."""
    from fahr_core.jobfolder import replacing_in

    kind = check(path)
    if len(charts) > MAX_IMAGE_CHARTS:
        raise UsageError(f"--plot {path}: {len(charts)} metrics; an image holds at most {MAX_IMAGE_CHARTS} charts: "
                         "choose the metrics shown (--metric NAME, or a glob such as 'val_*')")
    if kind == "png":
        from fahr_core.charts import png

        pieces = png.pieces(charts)  # drawn as written: one chart's pixels in memory at a time
    else:
        from fahr_core.charts import svg

        pieces = iter([(svg.render(charts) if kind == "svg" else svg.page(charts, title)).encode("utf-8")])
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        try:
            with replacing_in(folder, path.name, mode=0o666) as out:
                for data in pieces:
                    out.write(data)
        finally:
            os.close(folder)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise EnvironmentProblem(f"cannot write {path}: {exc.strerror}; free some space and retry") from None
        raise UsageError(f"cannot write {path}: {exc.strerror}; name a file in a folder you can write") from None
    return path
