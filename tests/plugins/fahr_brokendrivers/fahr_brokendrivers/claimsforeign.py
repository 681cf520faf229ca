"""Defect: claims artifact locations that are not its own (every nosuch…:// URI)."""

from urllib.parse import urlparse

from fahr_brokendrivers import delegating_hooks, hookimpl

globals().update(delegating_hooks("broken-claimsforeign"))


@hookimpl
def claims_location(location):
    # Only schemes nobody uses: claiming local folders would change which driver other tests get.
    return True if urlparse(location).scheme.startswith("nosuch") else None
