"""Driving the real `vmsim` process the way a hostile host would: signals, closed and
full outputs, vanished terminals. Shared by the machine and Linux tests of that.

Every helper waits with a deadline on something it can poll (a pidfd, a pipe, a pty),
never with a fixed sleep, so a slow machine makes a test slower, not flaky.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Callable

VMSIM = Path(sys.executable).parent / "vmsim"
# Markers of an uncaught exception anywhere, vmsim's or a worker's.
TRACEBACK_MARKS = ("Traceback", "Exception ignored")

# Run by `python -c` as a new session's leader: opening the terminal by name makes it
# the session's controlling terminal (so a hang-up sends SIGHUP), then exec.
TAKE_TERMINAL = ("import os, sys; os.close(os.open(os.ttyname(0), os.O_RDWR)); "
                 "os.execv(sys.argv[1], sys.argv[1:])")


def assert_clean(text: str) -> None:
    """No traceback and no Python complaint, from vmsim or any of its workers."""
    for mark in TRACEBACK_MARKS:
        assert mark not in text, text[-3000:]


def assert_one_error_line(stderr: str, *words: str) -> str:
    """stderr is exactly one `vmsim: error:` line, naming each of `words`."""
    assert_clean(stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmsim: error: "), stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def children(pid: int, running: str | None = None) -> list[int]:
    """The pids of `pid`'s child processes (those of every thread); with `running`, only
    those running that program (or script: a forked shell that has not yet exec'd has
    it among its arguments, not in these places)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as file:
                found += [int(word) for word in file.read().split()]
    except OSError:
        pass
    return [child for child in found if running is None or running in _command_line(child)[:2]]


def _command_line(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return [os.fsdecode(word) for word in file.read().split(b"\0")]
    except OSError:
        return []


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             interval: float = 0.02) -> object:
    """Poll `condition` until it is truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def still_alive_after(pids: list[int], timeout: float) -> list[int]:
    """Wait on pidfds, with one deadline, for every pid to exit; return those that have
    not (a pidfd is readable once its process has exited, child of ours or not)."""
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    try:
        while fds:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(fds), [], [], left)
            for fd in ready:
                os.close(fd)
                del fds[fd]
        return sorted(fds.values())
    finally:
        for fd in fds:
            os.close(fd)


def kill_quietly(pids: list[int]) -> None:
    """Clean up after a failed test: SIGKILL whatever is left."""
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def worker_state(pid: int) -> tuple[str, str]:
    """(state letter, wait channel) of a process: ('S', 'pipe_read') for a pool worker
    waiting for a job, ('R', '0') for one computing."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            state = file.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/wchan") as file:
            return state, file.read()
    except OSError:
        return "gone", ""


def waiting_for_a_job(pid: int) -> bool:
    """A worker blocked reading its task pipe has sent READY: its warm-up is over."""
    state, channel = worker_state(pid)
    return state == "S" and "pipe_read" in channel


def busy(pid: int) -> bool:
    return worker_state(pid)[0] == "R"


class Pty:
    """A pseudo-terminal: the test holds the master, the program gets the slave."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.output = bytearray()

    def raw(self) -> bool:
        """Whether the program has put the terminal in raw mode (the master's termios are
        the slave's on Linux)."""
        return not termios.tcgetattr(self.master)[3] & termios.ICANON

    def read_available(self, timeout: float = 0.05) -> bool:
        """Read what is there; False once the slave side is gone (EIO) or at EOF."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:
            return False
        self.output += data
        return bool(data)

    def read_until(self, marker: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} within {timeout} s: "
                                     f"{bytes(self.output[-2000:])!r}")
            if not self.read_available():
                raise AssertionError(f"the terminal closed before {marker!r}: "
                                     f"{bytes(self.output[-2000:])!r}")

    def drain(self, timeout: float) -> None:
        """Read until every holder of the slave has closed it, or `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.read_available():
            pass

    def close_master(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def close(self) -> None:
        self.close_master()
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")


def start_on_terminal(argv: list[str], terminal: Pty, stderr: int | None = None,
                      controlling: bool = True) -> subprocess.Popen:
    """Start `argv` in a new session with the pty's slave as stdin and stdout (and
    stderr, unless given): with `controlling`, the pty is the session's controlling
    terminal, as in a terminal emulator, so closing the master hangs it up (SIGHUP)."""
    command = [sys.executable, "-c", TAKE_TERMINAL, *argv] if controlling else argv
    return subprocess.Popen(command, stdin=terminal.slave, stdout=terminal.slave,
                            stderr=terminal.slave if stderr is None else stderr,
                            start_new_session=True)
