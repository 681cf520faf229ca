"""Defect: ``fahr stop`` kills the job at once (SIGKILL), without SIGTERM's grace period."""

from fahr_brokendrivers import delegating_hooks, hookimpl, local

globals().update(delegating_hooks("broken-sigkill"))


class _NoGrace:
    """The run's config, but stop_timeout 0: `docker stop -t 0` sends SIGKILL right after SIGTERM."""

    def __init__(self, config):
        self._config = config

    def __getitem__(self, key):
        return 0 if key == "stop_timeout" else self._config[key]

    def get(self, key, default=None):
        return 0 if key == "stop_timeout" else self._config.get(key, default)

    def __getattr__(self, name):
        return getattr(self._config, name)


@hookimpl
def stop(job, config):
    return local.stop(job, _NoGrace(config))
