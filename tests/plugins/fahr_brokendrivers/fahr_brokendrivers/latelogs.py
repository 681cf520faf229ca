"""Defect: prints the job's logs only once the job has ended."""

from fahr_brokendrivers import delegating_hooks, hookimpl, local

globals().update(delegating_hooks("broken-latelogs"))


@hookimpl
def wait(job, config):
    from fahr_core import ui

    # Both ways a driver prints the job's output: text lines and raw bytes.
    held, log_line, log_output = [], ui.log_line, ui.log_output
    ui.log_line = lambda *args, **kwargs: held.append((log_line, args, kwargs))
    ui.log_output = lambda *args, **kwargs: held.append((log_output, args, kwargs))
    try:
        return local.wait(job, config)
    finally:
        ui.log_line, ui.log_output = log_line, log_output
        for show, args, kwargs in held:
            show(*args, **kwargs)
