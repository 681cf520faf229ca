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
    try:
        printed = shown(url)  # never a password in an error line
    except ValueError:
        printed = url
    printed = printed if len(printed) <= 80 else printed[:77] + "..."
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url) or len(url) > MAX_URL:
        raise UsageError(f"{source} {printed!r} is not a URL: give one http:// or https:// URL, without spaces, "
                         f"at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError as exc:
        raise UsageError(f"{source} {printed!r} is not a URL ({exc}): give one http:// or https:// URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UsageError(f"{source} {printed!r}: fahr POSTs to http:// or https:// URLs only, "
                         f"not {parts.scheme or 'a URL without a scheme'}")
    if not parts.hostname:
        raise UsageError(f"{source} {printed!r} names no host: give one like https://example.com/hook")
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
    """POST ``body`` as JSON to ``url``; True when it answered 2xx. Anything else is one warning.

    At most :data:`TIMEOUT` seconds in all, whatever the receiver does: the local driver posts
    holding the job's record lock (a `fahr wait` or `fahr stop` of the job waits for it), and a
    socket's timeout bounds each read alone (a receiver answering a byte at a time, or a name
    that takes long to resolve, would hold it for ever). A user:password in the URL is sent as
    HTTP Basic authorization, never as part of the host name.
    """
    import threading
    import urllib.error
    import urllib.request

    from fahr_core import ui

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # No redirect is followed (urllib's default would, to another host or scheme): a 3xx is a failure.
        def redirect_request(self, *args, **kwargs):
            return None  # the 3xx itself is raised as an HTTPError

    data = json.dumps(body, sort_keys=True).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "fahr-notify"}
    target, authorization = _without_userinfo(url)
    if authorization:
        headers["Authorization"] = authorization
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            request = urllib.request.Request(target, data=data, method="POST", headers=headers)
            with urllib.request.build_opener(NoRedirect()).open(request, timeout=TIMEOUT) as response:
                response.read(65536)
            outcome.append(None)
        except urllib.error.HTTPError as exc:
            outcome.append(f"it answered {exc.code} {exc.reason}".rstrip())
        except urllib.error.URLError as exc:
            outcome.append(str(exc.reason))
        except (OSError, ValueError) as exc:  # a timeout, a reset, a URL urllib cannot use
            outcome.append(str(exc) or type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - http.client's own (a malformed answer): told, never a traceback
            outcome.append(f"{type(exc).__name__}: {exc}")

    # A daemon thread: one still waiting on a receiver when fahr exits does not hold fahr.
    thread = threading.Thread(target=attempt, name="fahr-notify", daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    if outcome and outcome[0] is None:
        return True
    why = outcome[0] if outcome else f"no whole answer in {TIMEOUT:g} s"
    ui.warn(f"could not notify {shown(url)} of job {body.get('job')}'s end ({' '.join(why.split())}); "
            "the job is unchanged")
    return False


def _without_userinfo(url: str) -> tuple[str, str]:
    """``url`` without its ``user:password@``, and the Basic authorization they make ('' if none):
    urllib would take them for part of the host name (and ask the name servers for it)."""
    import base64
    from urllib.parse import unquote, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, ""
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    credentials = f"{unquote(user)}:{unquote(password)}".encode("utf-8")
    return urlunsplit(parts._replace(netloc=host)), "Basic " + base64.b64encode(credentials).decode("ascii")


def followed(url: str, handle, result, attempt_of: str = "") -> None:
    """Tell ``url`` the end of a job this process followed, unless its driver tells it itself
    (:attr:`fahr_core.JobHandle.notifies`: the local driver, whoever ends the job)."""
    if url and not getattr(handle, "notifies", False):
        post(url, summary(result, driver=handle.driver, attempt_of=attempt_of))


def shown(url: str) -> str:
    """The URL as fahr prints it: without the credentials it may carry (``user:password@``, or a
    token alone as the user name)."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return url.replace(parts.netloc, "***@" + parts.netloc.rpartition("@")[2], 1)
    return url
