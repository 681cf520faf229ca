"""Push the training image to ECR, once per content.

The remote tag derives from the image's content (its id), so an unchanged image has the same
tag: when the registry already holds it, nothing is pushed. The job then runs the image by its
registry digest, so it runs exactly what was built.
"""

from __future__ import annotations

import base64
import time

from fahr_core import EnvironmentProblem, ImageRef, UsageError, ui

from fahr_sagemaker import aws

_UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "timeout", "tls", "x509",
                "dial tcp", "network is unreachable", "eof", "connection reset")
_REFUSED = ("denied", "unauthorized", "authentication required", "forbidden", "401", "403")


IMAGE_WARN_ENV = "FAHR_IMAGE_WARN_BYTES"
#: Pushing an image bigger than this draws one warning (``FAHR_IMAGE_WARN_BYTES``; 0: never).
DEFAULT_IMAGE_WARN_BYTES = 2 * 1024**3


def image_warn_bytes(environ=None) -> int:
    """The image size above which a push draws a warning (0: never warn)."""
    from fahr_core import env_size

    return env_size(IMAGE_WARN_ENV, DEFAULT_IMAGE_WARN_BYTES, example="2147483648 or 2G", zero="to never warn",
                    environ=environ)


def large_image_warning(reference: str, size: int, threshold: int) -> str | None:
    """The one line about pushing an image bigger than ``threshold`` bytes, else None."""
    if not threshold or size <= threshold:
        return None
    return (f"image {reference} is {ui.size(size)}: every push of a changed layer that big takes time and "
            f"adds to your ECR storage; keep data out of the image (pass it with --input CHANNEL=s3://…, "
            f"or add its folder to .dockerignore; warned above {ui.size(threshold)}: {IMAGE_WARN_ENV})")


def content_tag(image_id: str) -> str:
    """``fahr-<first 20 hex digits of the image id>``: same content, same tag."""
    digest = image_id.split(":", 1)[-1]
    return f"fahr-{digest[:20]}"


def _docker():
    from fahr_core import docker_client  # the core's client for the user's engine (DOCKER_HOST honoured)

    return docker_client()


def ensure_repository(config, name: str) -> str:
    """The ECR repository named after the model image tag, created when missing; its URI."""
    from botocore import exceptions as bex

    ecr = aws.client(config, "ecr")
    with aws.translated(f"looking up ECR repository {name}"):
        try:
            return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryUri"]
        except bex.ClientError as exc:
            if aws.error_code(exc) != "RepositoryNotFoundException":
                raise
        ui.info(f"creating ECR repository {name}")
        try:
            return ecr.create_repository(repositoryName=name)["repository"]["repositoryUri"]
        except bex.ClientError as exc:
            if aws.error_code(exc) != "RepositoryAlreadyExistsException":  # created meanwhile
                raise
            return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryUri"]


def login(config, engine, registry_id: str | None = None) -> dict:
    """GetAuthorizationToken, then log the engine in; the auth config for push and inspect."""
    ecr = aws.client(config, "ecr")
    with aws.translated("getting an ECR login token (ecr:GetAuthorizationToken)"):
        data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    endpoint = data["proxyEndpoint"]
    host = endpoint.split("://", 1)[-1].rstrip("/")
    try:
        engine.login(username=user, password=password, registry=endpoint, reauth=True)
    except Exception as exc:
        raise _registry_error(f"logging in to registry {host}", exc) from exc
    return {"username": user, "password": password, "serveraddress": endpoint}


def _registry_error(what: str, exc: Exception) -> EnvironmentProblem:
    text = str(getattr(exc, "explanation", None) or exc)
    lowered = text.lower()
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if any(word in lowered for word in _REFUSED):
        return EnvironmentProblem(f"registry refused {what}: {first}")
    if any(word in lowered for word in _UNREACHABLE):
        return EnvironmentProblem(f"registry unreachable while {what}: {first}")
    return EnvironmentProblem(f"registry error while {what}: {first}")


def remote_digest(engine, reference: str, auth: dict) -> str:
    """The registry's digest of ``reference`` (``repo:tag``), or '' when it holds no such tag."""
    from docker import errors as docker_errors

    try:
        found = engine.api.inspect_distribution(reference, auth_config=auth)
    except docker_errors.NotFound:
        return ""
    except docker_errors.APIError as exc:
        text = str(exc.explanation or exc).lower()
        if "manifest unknown" in text or "not found" in text or "name unknown" in text:
            return ""
        raise _registry_error(f"checking {reference}", exc) from exc
    return found.get("Descriptor", {}).get("digest", "")


def push(image: ImageRef, config) -> ImageRef:
    """Push ``image`` to its ECR repository unless the registry already holds its content.

    The local tag of the registry's name the push needs is removed afterwards only when fahr made
    it; one naming another image is a :class:`UsageError` (it is never moved)."""
    engine = _docker()
    repo_uri = ensure_repository(config, image.name)
    auth = login(config, engine)
    image_id = image.image_id or engine.api.inspect_image(image.reference)["Id"]
    tag = content_tag(image_id)
    remote = f"{repo_uri}:{tag}"
    digest = remote_digest(engine, remote, auth)
    if digest:
        ui.info(f"image unchanged, already in ECR as {remote} ({digest[:19]}…): nothing to push")
        return ImageRef(name=repo_uri, tag=tag, image_id=image_id, digest=digest)
    warning = large_image_warning(f"{image.name}:{image.tag}", _image_size(engine, image_id), image_warn_bytes())
    if warning:
        ui.warn(warning)
    # The push needs a local tag of the registry's name. One the user already has (an image pulled
    # from the registry) is theirs: used as it is, and kept; fahr removes only the tag it made.
    had = _local_id(engine, remote)
    if had and had != image_id:
        raise UsageError(f"the local image tag {remote} names another image than the one to push "
                         f"({had[:19]}…, not {image_id[:19]}…); fahr pushes under that name: remove or "
                         f"rename that tag (docker rmi {remote}) and fit again")
    if not had:
        engine.api.tag(image_id, repo_uri, tag)
    try:
        digest = _push_with_progress(engine, repo_uri, tag, auth)
    finally:
        if not had:
            try:  # the local registry-named tag fahr made was only a vehicle for the push
                engine.api.remove_image(remote, noprune=True)
            except Exception:
                pass
    ui.success(f"pushed {remote} ({digest[:19]}…)")
    return ImageRef(name=repo_uri, tag=tag, image_id=image_id, digest=digest)


def _local_id(engine, reference: str) -> str:
    """The id of the local image ``reference`` names, or '' when there is none."""
    from docker import errors as docker_errors

    try:
        return engine.api.inspect_image(reference)["Id"]
    except docker_errors.ImageNotFound:
        return ""
    except docker_errors.APIError as exc:
        raise EnvironmentProblem(f"the Docker engine cannot look up {reference}: {exc.explanation or exc}") from exc


def _image_size(engine, image_id: str) -> int:
    try:
        return int(engine.api.inspect_image(image_id).get("Size") or 0)
    except Exception:
        return 0  # the push itself will say what is wrong with the image


def _push_with_progress(engine, repo_uri: str, tag: str, auth: dict) -> str:
    """Push, printing each layer's status as it changes (and its progress every few seconds)."""
    ui.info(f"pushing {repo_uri}:{tag}")
    states: dict[str, str] = {}
    last_progress: dict[str, float] = {}
    digest = ""
    try:
        for chunk in engine.api.push(repo_uri, tag=tag, auth_config=auth, stream=True, decode=True):
            if "error" in chunk or "errorDetail" in chunk:
                message = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
                raise _registry_error(f"the push of {repo_uri}:{tag}", RuntimeError(message))
            aux = chunk.get("aux") or {}
            if aux.get("Digest"):
                digest = aux["Digest"]
            layer, status = chunk.get("id", ""), chunk.get("status", "")
            if not layer or not status or layer == tag:
                continue
            now = time.monotonic()
            if status != states.get(layer):
                states[layer] = status
                last_progress[layer] = now
                if status not in ("Preparing", "Waiting"):
                    ui.build_output(f"layer {layer}: {status}")
            elif status == "Pushing" and now - last_progress.get(layer, 0) >= 5:
                last_progress[layer] = now
                ui.build_output(f"layer {layer}: {chunk.get('progress', '').strip() or status}")
    except EnvironmentProblem:
        raise
    except Exception as exc:
        raise _registry_error(f"pushing {repo_uri}:{tag}", exc) from exc
    if not digest:
        raise EnvironmentProblem(f"the push of {repo_uri}:{tag} reported no digest; retry")
    return digest
