"""Boot the default Linux 6.1 guest on vmsim: it reaches its init and powers off with
the init's exit code."""
from __future__ import annotations

import pytest

from tests.support.guest import built_default_guest

from vmsim.build.guest import GuestPaths
from vmsim.harness.results import parse_result_lines
from vmsim.core.machine import Machine, MachineConfig

pytestmark = pytest.mark.linux


@pytest.fixture(scope="module")
def guest() -> GuestPaths:
    paths = built_default_guest()
    return paths


def boot_linux(guest: GuestPaths, append: str) -> tuple[int, str]:
    output = bytearray()
    machine = Machine(MachineConfig(kernel=guest.kernel, initrd=guest.initrd, append=append),
                      output=output.extend)
    try:
        status = machine.run()
    finally:
        machine.close()
    return status, output.decode("utf-8", "replace")


def test_linux_reaches_init_and_powers_off_cleanly(guest: GuestPaths) -> None:
    status, console = boot_linux(guest, "console=ttyS0 vmsim.run=sanity,idle vmsim.idle_ms=300")
    events = parse_result_lines(console)
    assert {"event": "init-start"} in events, console[-2000:]
    results = {e.get("test"): e.get("result") for e in events if "test" in e}
    assert results == {"sanity": "pass", "idle": "pass"}, console[-2000:]
    assert status == 0
    for bad in ("Oops", "BUG:", "WARNING:", "Kernel panic", "rcu_sched self-detected stall"):
        assert bad not in console


def test_init_exit_code_passes_through(guest: GuestPaths) -> None:
    status, console = boot_linux(guest, "console=ttyS0 vmsim.run=no-such-program")
    assert "@vmsim event=init-start" in console
    assert status == 127
