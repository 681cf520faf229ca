"""The core's build (:func:`build`): the context's tar to the user's engine, progress shown live.

A build is skipped when the image under the model's tag is fahr's and carries the fingerprint
of the project as it is now (:mod:`fahr_core.image.fingerprints`); ``context.rebuild`` builds
anyway. An image fahr did not build is never removed; a failed build removes the images its
steps committed.
"""

from __future__ import annotations

import re

from fahr_core import __version__, ui
from fahr_core.errors import BuildError, EnvironmentProblem, FahrError
from fahr_core.image.cache import ContextHashes
from fahr_core.image.context import (_check_dockerfile_sent, _check_required, _context_tar, _dockerfile_in_context,
                                     _ignore_patterns, content_rule, context_fahr_files, context_files,
                                     context_size_warning, context_warn_bytes, fahr_entries, stat_context,
                                     warn_kept_out)
from fahr_core.image.dockerfile import _read_dockerfile
from fahr_core.image.fingerprints import FINGERPRINT_LABEL, context_entries, dockerfile_images, fingerprint
from fahr_core.values import BuildContext, ImageRef

#: The labels of every image fahr builds: the model tag it was built for, and fahr's version. An
#: image under a project's tag without them is not fahr's, and fahr never removes it.
MODEL_TAG_LABEL = "fahr.model_tag"
VERSION_LABEL = "fahr.version"

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")
# Pulling FROM failed for want of a registry: an environment problem, not a Dockerfile error.
_UNREACHABLE = re.compile(
    r"dial tcp|no such host|connection refused|i/o timeout|TLS handshake|server misbehaving|"
    r"network is unreachable|Client.Timeout"
)


def build(context: BuildContext, rebuild: bool = False) -> ImageRef:
    """Build ``context`` on the user's engine with live progress; tag it ``MODEL_TAG:latest``.

    Unless ``context.rebuild`` (or ``rebuild``), no build happens when ``MODEL_TAG:latest``
    already carries the :func:`fingerprint` of the project as it is now (its
    :data:`FINGERPRINT_LABEL`): that image is returned. Content is hashed only for files whose stat changed (:class:`ContextHashes`).
    A context bigger than :func:`context_warn_bytes` draws one warning, built or not.

    The image a build replaces under ``MODEL_TAG:latest`` is removed only when fahr built it
    (:func:`_made_by_fahr`): one the user built or tagged there stays.

    A build that fails (or is interrupted) removes the images its steps committed: the classic
    builder keeps each step's image, and a failed build's last one would stay as a dangling
    ``<none>`` image (``labels`` mark only the final image, so they cannot find it).
    """
    from fahr_core import engine

    api = engine.client().api
    reference = f"{context.model_tag}:latest"
    root = context.context_dir
    dockerfile = _dockerfile_in_context(context)
    threshold = context_warn_bytes()
    files = context_files(root, dockerfile)
    _check_dockerfile_sent(context, files)
    rule = content_rule(context)  # files holding a credential: known once their content is read, below
    dockerfile_text = _read_dockerfile(context.dockerfile)
    fahr = context_fahr_files(context, dockerfile_text)  # fahr's launcher, sent in place of any project file there
    paths = [p for p in files.paths if p not in fahr]
    stats = stat_context(root, paths)
    warning = context_size_warning(stats, threshold)
    if warning:
        ui.warn(warning)
    existing = _inspect(api, reference)
    previous = existing.get("Id", "")
    ours = _made_by_fahr(api, existing, context.model_tag)
    # An image built FROM fahr's carries its labels, the fingerprint too: it is not what fahr built.
    recorded = ((existing.get("Config") or {}).get("Labels") or {}).get(FINGERPRINT_LABEL) if ours else None
    bases = _base_ids(api, dockerfile_text)  # None: unknown before the build, which cannot then be skipped
    hashes = ContextHashes(root)
    _check_required(root, stats, hashes, rule)

    def fingerprint_of(entries: list[list]) -> str:
        return fingerprint(entries=entries, dockerfile=dockerfile, dockerfile_text=dockerfile_text,
                           bases=bases or [], model_tag=context.model_tag,
                           ignore_patterns=_ignore_patterns(root))

    if recorded and previous and bases is not None and not (rebuild or context.rebuild):
        # The secret scan is part of this: a file newly found holding a credential is not in the
        # entries, so an image built with it is not up to date.
        current = fingerprint_of(context_entries(root, stats, hashes, rule) + fahr_entries(fahr))
        hashes.save()
        if current == recorded:
            warn_kept_out(files, rule)
            ui.info(f"image {reference} is up to date (nothing it is built from changed); not rebuilt")
            return ImageRef(name=context.model_tag, tag="latest", image_id=previous)
    step = ""
    steps = cached = 0
    image_id = ""
    committed: list[str] = []  # short ids of the images this build's steps made or reused
    ui.info(f"building image {reference} from {context.dockerfile}")
    # Before the engine is asked: its errors are about the project. Each file is hashed as it is
    # read into the tar, unless its stat shows the hash already known.
    tar, entries = _context_tar(root, paths, hashes, rule, fahr)
    hashes.save()
    warn_kept_out(files, rule)
    labels = {MODEL_TAG_LABEL: context.model_tag, VERSION_LABEL: __version__}
    if bases is not None:
        labels[FINGERPRINT_LABEL] = fingerprint_of(entries)
    before = _all_image_ids(api)
    try:
        try:
            stream = api.build(
                fileobj=tar, custom_context=True, dockerfile=dockerfile,
                tag=reference, rm=True, forcerm=True, decode=True, labels=labels,
            )
            for chunk in stream:
                if "error" in chunk or "errorDetail" in chunk:
                    message = " ".join((chunk.get("error") or chunk["errorDetail"].get("message", "")).split())
                    where = f"image build failed at {step or 'the start'}"
                    if step.startswith("step 1/") and _UNREACHABLE.search(message):
                        raise EnvironmentProblem(
                            f"{where}: the base image cannot be pulled ({message}); build or load it "
                            "locally (scripts/ensure-base-image.sh does python:3.11-slim), or set config base_image"
                        )
                    # The step's own output was streamed above: the error stays one line.
                    raise BuildError(f"{where}: {message}")
                text = chunk.get("stream", "")
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                for line in text.splitlines():
                    if not line.strip():
                        continue
                    match = _STEP.match(line)
                    if match:
                        step = f"step {match.group(1)}/{match.group(2)} ({match.group(3)})"
                        steps += 1
                        ui.build_step(line)
                    elif "Using cache" in line:
                        cached += 1
                    else:
                        made = _COMMITTED.match(line)
                        if made:
                            committed.append(made.group(1))
                        ui.build_output(line)
        except FahrError:
            raise
        except Exception as exc:
            from docker import errors as docker_errors

            if isinstance(exc, docker_errors.APIError) and exc.status_code and exc.status_code < 500:
                raise BuildError(f"image build refused by the engine: {exc.explanation or exc}") from exc
            raise EnvironmentProblem(f"image build failed talking to the Docker engine: {exc}") from exc
        finally:
            tar.close()
        image_id = image_id or _image_id(api, reference)
        if not image_id:
            raise BuildError(f"image build of {reference} produced no image; see the output above")
    except BaseException:
        _remove_leftovers(api, committed, before)
        raise
    if steps and cached == steps - 1:  # FROM is never "cached"
        ui.info(f"image {reference} is up to date (every step cached)")
    if previous and previous != image_id and ours:
        # The image this build replaced, unless a job still uses it or another name points at it:
        # removed by id, the engine would drop a single remaining tag with it (`docker tag` of the
        # user's). One that fahr did not build (`docker tag` or `docker build -t` of the user's own
        # under this name) is the user's, dangling now or not: it stays.
        if not _names(_inspect(api, previous)):
            _remove_quietly(api, previous)
    return ImageRef(name=context.model_tag, tag="latest", image_id=image_id)


def _base_ids(api, text: str) -> list[list[str]] | None:
    """``[[name, id], …]`` of :func:`dockerfile_images` on the engine; None when one is not there
    (the build would pull it) or cannot be named."""
    images = dockerfile_images(text)
    if images is None:
        return None
    resolved = []
    for name in images:
        image_id = _image_id(api, name)
        if not image_id:
            return None
        resolved.append([name, image_id])
    return resolved


def _made_by_fahr(api, attrs: dict, model_tag: str) -> bool:
    """Whether the engine's record ``attrs`` of an image is of one fahr built for ``model_tag``.

    Its labels say so, and its last steps set them: labels are inherited, so an image the user
    built ``FROM`` fahr's (or committed from its container) has them too, under its own steps.
    fahr's build sets its labels in the builder's last steps, one ``LABEL`` each (the classic
    builder's history: ``/bin/sh -c #(nop)  LABEL fahr.model_tag=…``): above the one setting
    the model tag there is nothing but fahr's other labels.
    """
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    if labels.get(MODEL_TAG_LABEL) != model_tag or VERSION_LABEL not in labels:
        return False
    try:
        history = api.history(attrs["Id"])
    except Exception:
        return False  # unknown: treated as the user's (kept, and rebuilt over)
    for step in history:
        created = step.get("CreatedBy") or ""
        if not _FAHR_LABEL_STEP.search(created):
            return False
        if f"{MODEL_TAG_LABEL}=" in created:
            return True
    return False


_FAHR_LABEL_STEP = re.compile(r"#\(nop\)\s+LABEL\s+\"?fahr\.")


# The classic builder's line for the image a step committed (or found in its cache).
_COMMITTED = re.compile(r"^ ---> ([0-9a-f]{12,64})\s*$")


def _all_image_ids(api) -> set[str] | None:
    try:
        return set(api.images(all=True, quiet=True))
    except Exception:
        return None  # then nothing is removed after a failure: only what was surely new may be


def _remove_leftovers(api, committed: list[str], before: set[str] | None) -> None:
    """Remove the images a failed build's steps committed, newest first; only those that did not
    exist before the build (the base image and cache hits stay), and none of their parents.

    ``committed`` is read from the build's output, which a RUN step's own output can imitate: an
    image is taken for one of this build's only when it is also the child of the image the line
    before it named (the classic builder commits each step on top of the previous one).
    """
    if before is None or not committed:
        return
    new = [i for i in (_all_image_ids(api) or ()) if i not in before]
    for index in reversed(range(1, len(committed))):
        short, parent = committed[index], committed[index - 1]
        for image_id in new:
            if (image_id.split(":", 1)[-1].startswith(short)
                    and _inspect(api, image_id).get("Parent", "").split(":", 1)[-1].startswith(parent)):
                _remove_quietly(api, image_id, noprune=True)


def _names(attrs: dict) -> list[str]:
    """The tags and registry digests naming the image of the engine's record ``attrs``."""
    return [name for name in (attrs.get("RepoTags") or []) + (attrs.get("RepoDigests") or [])
            if not name.startswith("<none>")]


def _image_id(api, reference: str) -> str:
    return _inspect(api, reference).get("Id", "")


def _inspect(api, reference: str) -> dict:
    """The engine's record of an image, or {} when it has none by that name."""
    try:
        return api.inspect_image(reference) or {}
    except Exception:
        return {}


def _remove_quietly(api, image_id: str, noprune: bool = False) -> None:
    try:
        api.remove_image(image_id, noprune=noprune)
    except Exception:
        pass  # still used (a running job, another tag): the engine keeps it, and so do we
