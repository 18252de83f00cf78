"""Settings every test relies on, whatever started the test run."""
from __future__ import annotations

import signal

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Tests send SIGINT, SIGTERM and SIGHUP to vmsim (in process and as a child) and
    expect them to be heard. A run started in the background of a non-interactive shell
    inherits SIGINT ignored, and vmsim keeps an ignored signal ignored (as `nohup`
    asks), so such a run would wait forever: restore the usual dispositions first."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
