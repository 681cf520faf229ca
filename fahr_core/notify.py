"""Told when a job ends: a JSON summary POSTed to a URL (``fit --notify URL``, ``notify`` in
fahr.toml; docs/notifications.md holds the schema).

The body is built from how the job ended and nothing else: no hyperparameters, no environment,
no secret. The POST waits :data:`TIMEOUT` seconds at most, follows no redirect, and a failure is
one warning line: a notification never changes how a job ended nor fahr's exit code.
Standard library only (the local driver's follower imports it).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

from fahr_core.errors import UsageError

#: The body's ``schema``: bumped only when a field changes meaning or goes away.
SCHEMA = "fahr.notification/1"
#: Seconds a POST may take, connecting included: a hung receiver must not hold a job's end.
TIMEOUT = 5.0
#: The longest URL taken (what browsers and servers accept).
MAX_URL = 2048


def check_url(url: Any, source: str = "--notify") -> str:
    """``url`` if it is one an http(s) POST can go to, else the UsageError saying why (exit 2)."""
    if not isinstance(url, str):
        raise UsageError(f"{source} must be an http:// or https:// URL, not {type(url).__name__}")
    shown = url if len(url) <= 80 else url[:77] + "..."
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url) or len(url) > MAX_URL:
        raise UsageError(f"{source} {shown!r} is not a URL: give one http:// or https:// URL, without spaces, "
                         f"at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError as exc:
        raise UsageError(f"{source} {shown!r} is not a URL ({exc}): give one http:// or https:// URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UsageError(f"{source} {shown!r}: fahr POSTs to http:// or https:// URLs only, "
                         f"not {parts.scheme or 'a URL without a scheme'}")
    if not parts.hostname:
        raise UsageError(f"{source} {shown!r} names no host: give one like https://example.com/hook")
    return url


def summary(result, *, driver: str = "", attempt_of: str = "", ended: float | None = None) -> dict:
    """The body told of ``result`` (a :class:`fahr_core.JobResult`): docs/notifications.md."""
    job = result.job
    seconds = result.training_seconds
    # What its billable seconds cost at the price its driver reports (a local job's is 0); None
    # when either is unknown: never a guess.
    price = getattr(result, "price", None)
    cost = None if price is None else price.cost(result.billable_seconds)
    return {
        "schema": SCHEMA,
        "job": job.job_name,
        "model_tag": job.model_tag,
        "driver": driver or job.driver,
        "status": result.status,
        "failure_kind": getattr(result, "failure_kind", "") or None,
        "failure_line": result.failure_reason or None,
        "duration_seconds": None if seconds is None else round(float(seconds), 3),
        "cost": None if cost is None else round(cost, 6),
        "model": result.model_artifact or None,
        "attempt_of": attempt_of or None,
        "ended": ended if ended is not None else time.time(),
    }


def post(url: str, body: dict) -> bool:
    """POST ``body`` as JSON to ``url``; True when it answered 2xx. Anything else is one warning."""
    import urllib.error
    import urllib.request

    from fahr_core import ui

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # No redirect is followed (urllib's default would, to another host or scheme): a 3xx is a failure.
        def redirect_request(self, *args, **kwargs):
            return None  # the 3xx itself is raised as an HTTPError

    data = json.dumps(body, sort_keys=True).encode("utf-8")
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "fahr-notify"})
    opener = urllib.request.build_opener(NoRedirect())
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            response.read(65536)
        return True
    except urllib.error.HTTPError as exc:
        why = f"it answered {exc.code} {exc.reason}".rstrip()
    except urllib.error.URLError as exc:
        why = str(exc.reason)
    except (OSError, ValueError) as exc:  # a timeout, a reset, a URL urllib cannot use
        why = str(exc) or type(exc).__name__
    ui.warn(f"could not notify {_shown(url)} of job {body.get('job')}'s end ({' '.join(why.split())}); "
            "the job is unchanged")
    return False


def followed(url: str, handle, result, attempt_of: str = "") -> None:
    """Tell ``url`` the end of a job this process followed, unless its driver tells it itself
    (:attr:`fahr_core.JobHandle.notifies`: the local driver, whoever ends the job)."""
    if url and not getattr(handle, "notifies", False):
        post(url, summary(result, driver=handle.driver, attempt_of=attempt_of))


def _shown(url: str) -> str:
    """The URL as a warning shows it: without the password a URL may carry."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
