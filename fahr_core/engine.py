"""The user's Docker engine, reached through the Docker SDK (imported only here, on demand).

Part of the API drivers may use: ``engine.client()`` is the checked client of the user's engine,
shared by the whole run; a driver that pushes or pulls images should use it rather than open its own.
"""

from __future__ import annotations

import functools

from fahr_core.errors import EnvironmentProblem, first_line


@functools.lru_cache(maxsize=1)
def client():
    """A Docker SDK client for the user's engine (``DOCKER_HOST`` honoured), checked to answer."""
    return new_client()


def new_client():
    """A new client (own connection pool), checked to answer."""
    import docker  # noqa: deferred on purpose: fahr starts without importing the SDK

    try:
        engine = docker.from_env(timeout=600)
        engine.ping()
    except Exception as exc:
        raise EnvironmentProblem(
            f"no Docker engine answers ({type(exc).__name__}: {first_line(exc)}); start one "
            "(e.g. 'sudo systemctl start docker', or scripts/ensure-docker.sh) or set DOCKER_HOST"
        ) from exc
    return engine

