"""Settings every test relies on, whatever started the test run."""
from __future__ import annotations

import signal

import pytest

from tests.support.guest import BOARD_ARCHES, BoardGuest, board_guest


def pytest_configure(config: pytest.Config) -> None:
    """Tests send SIGINT, SIGTERM and SIGHUP to vmsim (in process and as a child) and
    expect them to be heard. A run started in the background of a non-interactive shell
    inherits SIGINT ignored, and vmsim keeps an ignored signal ignored (as `nohup`
    asks), so such a run would wait forever: restore the usual dispositions first."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)


@pytest.fixture(scope="module", params=BOARD_ARCHES)
def board(request: pytest.FixtureRequest) -> BoardGuest:
    """The board a Linux end-to-end test runs on, with its default guest: every test
    that takes it runs once per board, with ids `[riscv64]` and `[arm64]`."""
    return board_guest(request.param)
