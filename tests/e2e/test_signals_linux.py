"""SIGTERM and SIGHUP while Linux boots, and while it drives the crypto device, with
vmsim on a real terminal (a pty, as in a terminal emulator): the run ends as Ctrl-A x
would, with the status 128 + n, the terminal as it was (`stty -a` before and after,
compared), no traceback on the terminal, and no worker process left.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.guest import built_default_guest
from tests.support.hostile import (
    VMSIM, Pty, assert_clean, children, kill_quietly, start_on_terminal, still_alive_after,
    wait_for,
)
from vmsim.build.guest import GuestPaths

pytestmark = pytest.mark.linux

BOOT_TIMEOUT = 180.0
# The shell runs vmsim in the foreground of its terminal and records around it.
SCRIPT = ('dir=$1; shift; stty -a > "$dir/before"; "$@"; echo $? > "$dir/status"; '
          'stty -a > "$dir/after"')
# When to send the signal: as soon as vmsim has put the terminal in raw mode (the
# kernel is booting, no worker has started), or under load: once RSA requests have gone
# through the device (rsa-keyctl), with AF_ALG stress queued behind, and every cipher
# request is sent to the worker pool (inline-max=0), so that the workers are busy.
BOOT = "console=ttyS0 vmsim.run=idle vmsim.idle_ms=60000"
LOAD = ("console=ttyS0 vmsim.run=rsa-keyctl,afalg-stress vmsim.procs=4 vmsim.ops=100000")
LOAD_DEVICE = ["-device", "virtio-crypto,inline-max=0"]
LOAD_MARK = b"@vmsim event=rsa op="


@pytest.fixture(scope="module")
def guest() -> GuestPaths:
    return built_default_guest()


def pump_until(terminal: Pty, condition, timeout: float, what: str) -> None:
    """Keep reading the terminal (so that vmsim never blocks writing to it) until
    `condition()` holds."""
    def check() -> bool:
        terminal.read_available()
        return bool(condition())
    wait_for(check, timeout, what, interval=0)


@pytest.mark.parametrize("when", ["boot", "load"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_on_a_terminal_restores_it_and_leaves_nothing(guest, tmp_path: Path, signum,
                                                             when) -> None:
    terminal = Pty()
    argv = [str(VMSIM), "run", "--kernel", str(guest.kernel), "--initrd", str(guest.initrd),
            *(["--append", BOOT] if when == "boot" else ["--append", LOAD, *LOAD_DEVICE])]
    shell = start_on_terminal(["/bin/sh", "-c", SCRIPT, "sh", str(tmp_path), *argv], terminal)
    os.close(terminal.slave)                   # EOF on the master once they all have gone
    terminal.slave = -1
    workers: list[int] = []
    try:
        vmsim = wait_for(lambda: next(iter(children(shell.pid, str(VMSIM))), None),
                         BOOT_TIMEOUT, "vmsim to start")     # not the stty before it
        pump_until(terminal, terminal.raw, BOOT_TIMEOUT, "vmsim to make the terminal raw")
        if when == "load":
            pump_until(terminal, lambda: LOAD_MARK in terminal.output, BOOT_TIMEOUT,
                       "RSA requests from the guest")
            pump_until(terminal, lambda: children(vmsim), BOOT_TIMEOUT,
                       "the crypto device's worker processes")
        workers = children(vmsim)
        os.kill(vmsim, signum)
        terminal.drain(BOOT_TIMEOUT)
        shell.wait(BOOT_TIMEOUT)
        survivors = still_alive_after(workers, 1.0)
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
        terminal.close()
        kill_quietly(workers)
    console = terminal.text()
    assert_clean(console)
    assert (tmp_path / "status").read_text().strip() == str(128 + signum), console[-2000:]
    assert (tmp_path / "after").read_text() == (tmp_path / "before").read_text()
    assert survivors == [], "a worker outlived vmsim"
