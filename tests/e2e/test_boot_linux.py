"""Boot the default Linux 6.1 guest of each board on vmsim: it reaches its init and
powers off, and the init's exit code reaches the host (in its `done` line on every
board, and as vmsim's exit status where the board carries it)."""
from __future__ import annotations

import pytest

from tests.support.guest import BoardGuest
from vmsim.harness.results import init_exit, parse_result_lines
from vmsim.core.machine import MachineConfig, create_machine

pytestmark = pytest.mark.linux


def boot_linux(board: BoardGuest, options: str) -> tuple[int, str]:
    output = bytearray()
    machine = create_machine(MachineConfig(kernel=board.paths.kernel, initrd=board.paths.initrd,
                                           append=board.append(options), board=board.board),
                             output=output.extend)
    try:
        status = machine.run()
    finally:
        machine.close()
    return status, output.decode("utf-8", "replace")


def test_linux_reaches_init_and_powers_off_cleanly(board: BoardGuest) -> None:
    status, console = boot_linux(board, "vmsim.run=sanity,idle vmsim.idle_ms=300")
    events = parse_result_lines(console)
    assert {"event": "init-start"} in events, console[-2000:]
    results = {e.get("test"): e.get("result") for e in events if "test" in e}
    assert results == {"sanity": "pass", "idle": "pass"}, console[-2000:]
    assert init_exit(events) == 0, console[-2000:]
    assert status == 0
    for bad in ("Oops", "BUG:", "WARNING:", "Kernel panic", "rcu_sched self-detected stall"):
        assert bad not in console


def test_init_exit_code_passes_through(board: BoardGuest) -> None:
    status, console = boot_linux(board, "vmsim.run=no-such-program")
    assert "@vmsim event=init-start" in console
    assert init_exit(parse_result_lines(console)) == 127, console[-2000:]
    # Only riscv64's sifive-test finisher carries the code out; arm64 powers off
    # through PSCI SYSTEM_OFF, which has none, so vmsim exits 0 there.
    assert status == board.host_status(127), console[-2000:]
