"""fahr_core.interrupts in-process: the first signal interrupts, later ones are deferred, a shield
defers even the first until its block is done. (The end-to-end case, Ctrl-C three times while
fahr stops a real job, is in test_losing_nothing.py.)"""

import os
import signal
import time

import pytest

from fahr_core import interrupts


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    """A process of its own, as far as the module knows; the test's signal handlers restored."""
    monkeypatch.setattr(interrupts, "_state", {"interrupted": False, "shield": 0, "deferred": 0,
                                               "doing": "cleaning up"})
    saved = {signum: signal.getsignal(signum) for signum in interrupts.SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def deliver(signum):
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs in the main thread at the next bytecode


def test_first_signal_interrupts_later_ones_are_deferred(capfd):
    interrupts.install()
    with pytest.raises(KeyboardInterrupt):
        deliver(signal.SIGTERM)  # SIGTERM is Ctrl-C's twin
    interrupts.doing("stopping job j")
    deliver(signal.SIGINT)  # cleaning up: no exception
    deliver(signal.SIGINT)
    assert interrupts.interrupted()
    err = capfd.readouterr().err
    assert err.count("fahr stopping job j; please wait, Ctrl-C again does not abandon it\n") == 2


def test_a_shield_defers_the_first_signal_to_its_end(capfd):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.shield("saving the model"):
            deliver(signal.SIGINT)
            done.append("saved")  # the block runs to its end…
    assert done == ["saved"]  # …and only then is the interrupt raised
    assert "fahr saving the model; please wait" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is not interrupts._handler  # the test's handler is back


def test_a_shield_without_signal_raises_nothing():
    with interrupts.shield("saving the model"):
        pass
    assert not interrupts.interrupted()
