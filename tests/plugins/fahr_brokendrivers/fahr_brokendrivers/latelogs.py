"""Defect: prints the job's logs only once the job has ended."""

from fahr_brokendrivers import delegating_hooks, hookimpl, local

globals().update(delegating_hooks("broken-latelogs"))


@hookimpl
def wait(job, config):
    from fahr_core import ui

    held, log_line = [], ui.log_line
    ui.log_line = lambda line, host=None: held.append((line, host))
    try:
        return local.wait(job, config)
    finally:
        ui.log_line = log_line
        for line, host in held:
            log_line(line, host)
